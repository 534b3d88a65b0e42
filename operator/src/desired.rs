//! Renders the Kubernetes objects a StreamJob should own: the worker ConfigMap, the JobManager
//! Service and Deployment, the TaskManager Deployment, the optional Ingress, and the pod of a
//! pre-flight check. Pure: it reads a spec (which may be
//! the last stable spec during a rollback, not the one in the resource) and the restore path
//! the lifecycle chose, and never talks to the API server.

use std::collections::BTreeMap;

use k8s_openapi::DeepMerge;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvVar,
    EnvVarSource, HTTPGetAction, KeyToPath, ObjectFieldSelector, Pod, PodSpec, PodTemplateSpec,
    Probe, ResourceRequirements, SecretKeySelector, SecretVolumeSource, Service, ServicePort,
    ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec, IngressTLS, ServiceBackendPort,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Resource;

use crate::crd::{StreamJob, StreamJobSpec};
use crate::names::{self, config as keys};

/// Why the desired objects could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("the StreamJob has no {0}; it must come from the API server")]
    MissingMetadata(&'static str),

    #[error("podTemplate is not a valid PodTemplateSpec: {0}")]
    PodTemplate(#[source] serde_json::Error),

    #[error("could not render the worker config file")]
    ConfigFile(#[source] serde_yaml::Error),
}

/// Everything a running StreamJob owns, ready for server-side apply.
#[derive(Clone, Debug, PartialEq)]
pub struct DesiredObjects {
    pub config_map: ConfigMap,
    pub jobmanager_service: Service,
    pub jobmanager: Deployment,
    pub taskmanager: Deployment,
}

/// Renders the objects for `spec`, restoring from `restore_path` when set. `job` supplies the
/// name, namespace and uid for names and owner references.
pub fn build(
    job: &StreamJob,
    spec: &StreamJobSpec,
    restore_path: Option<&str>,
) -> Result<DesiredObjects, BuildError> {
    let meta = JobMeta::of(job)?;
    let config = worker_config(&meta.name, spec, restore_path);
    let config_text = serde_yaml::to_string(&config).map_err(BuildError::ConfigFile)?;
    let config_hash = names::fnv1a_hex(config_text.as_bytes());

    let mut config_data = BTreeMap::from([(names::CONFIG_FILE.to_string(), config_text)]);
    if let Some(sql) = &spec.job.sql {
        config_data.insert(names::SQL_FILE.to_string(), sql.clone());
    }
    let config_map = ConfigMap {
        metadata: meta.object_meta(names::config_map_name(&meta.name), None),
        data: Some(config_data),
        ..ConfigMap::default()
    };

    let jm_name = names::jobmanager_name(&meta.name);
    let jobmanager_service = Service {
        metadata: meta.object_meta(jm_name.clone(), Some(names::COMPONENT_JOBMANAGER)),
        spec: Some(ServiceSpec {
            selector: Some(meta.selector(names::COMPONENT_JOBMANAGER)),
            ports: Some(vec![
                service_port(names::REST_PORT_NAME, names::REST_PORT),
                service_port(names::RPC_PORT_NAME, names::RPC_PORT),
            ]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    };

    let jobmanager = deployment(
        &meta,
        spec,
        Role::JobManager,
        1,
        // Two JobManagers for one job would both run it; Recreate never overlaps them.
        Some(DeploymentStrategy {
            type_: Some("Recreate".to_string()),
            ..DeploymentStrategy::default()
        }),
        &config_hash,
    )?;
    let taskmanager = deployment(
        &meta,
        spec,
        Role::TaskManager,
        spec.task_manager.replicas,
        None,
        &config_hash,
    )?;

    Ok(DesiredObjects {
        config_map,
        jobmanager_service,
        jobmanager,
        taskmanager,
    })
}

/// The Ingress `spec.ingress` asks for, routing to the JobManager Service's REST port (the
/// REST API and the dashboard), or `None` without `spec.ingress`. Pure, like [`build`]; the
/// controller applies it on every reconcile and deletes it when the field goes.
pub fn ingress(job: &StreamJob, spec: &StreamJobSpec) -> Result<Option<Ingress>, BuildError> {
    let Some(wanted) = &spec.ingress else {
        return Ok(None);
    };
    let meta = JobMeta::of(job)?;
    let fill = |text: &str| {
        text.replace("{{name}}", &meta.name)
            .replace("{{namespace}}", &meta.namespace)
    };
    let template = fill(&wanted.template);
    let (host, path) = match template.split_once('/') {
        Some((host, path)) => (host.to_string(), format!("/{path}")),
        None => (template.clone(), "/".to_string()),
    };
    // A path with a regular expression is the controller's to interpret.
    let path_type = if path.contains(['(', '[', '*', '$', '|']) {
        "ImplementationSpecific"
    } else {
        "Prefix"
    };
    let mut metadata = meta.object_meta(
        names::jobmanager_name(&meta.name),
        Some(names::COMPONENT_JOBMANAGER),
    );
    if let Some(labels) = metadata.labels.as_mut() {
        for (key, value) in &wanted.labels {
            labels.entry(key.clone()).or_insert_with(|| value.clone());
        }
    }
    metadata.annotations = (!wanted.annotations.is_empty()).then(|| wanted.annotations.clone());
    let backend = IngressBackend {
        service: Some(IngressServiceBackend {
            name: names::jobmanager_name(&meta.name),
            port: Some(ServiceBackendPort {
                name: Some(names::REST_PORT_NAME.to_string()),
                number: None,
            }),
        }),
        ..IngressBackend::default()
    };
    let tls: Vec<IngressTLS> = wanted
        .tls
        .iter()
        .map(|t| IngressTLS {
            hosts: (!t.hosts.is_empty()).then(|| t.hosts.iter().map(|h| fill(h)).collect()),
            secret_name: t.secret_name.clone(),
        })
        .collect();
    Ok(Some(Ingress {
        metadata,
        spec: Some(IngressSpec {
            ingress_class_name: wanted.class_name.clone(),
            rules: Some(vec![IngressRule {
                host: (!host.is_empty()).then_some(host),
                http: Some(HTTPIngressRuleValue {
                    paths: vec![HTTPIngressPath {
                        path: Some(path),
                        path_type: path_type.to_string(),
                        backend,
                    }],
                }),
            }]),
            tls: (!tls.is_empty()).then_some(tls),
            ..IngressSpec::default()
        }),
        ..Ingress::default()
    }))
}

/// The worker configuration as flat Flink-style keys. User `config` keys come first and the
/// operator's keys are laid over them (validation already rejects overlaps).
pub fn worker_config(
    job_name: &str,
    spec: &StreamJobSpec,
    restore_path: Option<&str>,
) -> BTreeMap<String, String> {
    let mut config = spec.config.clone();
    let mut set = |key: &str, value: String| {
        config.insert(key.to_string(), value);
    };
    set(keys::PARALLELISM_DEFAULT, spec.job.parallelism.to_string());
    set(keys::TASK_SLOTS, spec.task_manager.slots.to_string());
    set(keys::RPC_ADDRESS, names::jobmanager_name(job_name));
    set(keys::RPC_PORT, names::RPC_PORT.to_string());
    set(keys::REST_PORT, names::REST_PORT.to_string());
    if let Some(checkpoints) = &spec.checkpoints {
        set(keys::CHECKPOINTS_DIR, checkpoints.dir.clone());
        set(keys::CHECKPOINT_INTERVAL, checkpoints.interval.clone());
        set(keys::CHECKPOINTS_RETAINED, checkpoints.retained.to_string());
    }
    if let Some(dir) = spec.savepoint_dir() {
        set(keys::SAVEPOINTS_DIR, dir.to_string());
    }
    if let Some(path) = restore_path {
        set(keys::SAVEPOINT_PATH, path.to_string());
        if spec.job.allow_non_restored_state {
            set(keys::SAVEPOINT_IGNORE_UNCLAIMED, "true".to_string());
        }
    }
    if let Some(storage) = &spec.storage {
        if let Some(endpoint) = &storage.endpoint {
            set(keys::S3_ENDPOINT, endpoint.clone());
        }
        if let Some(region) = &storage.region {
            set(keys::S3_REGION, region.clone());
        }
        set(keys::S3_PATH_STYLE, storage.path_style.to_string());
    }
    if let Some(security) = &spec.security {
        if security.token_secret_name.is_some() {
            // One secret serves both: the REST API's bearer token and the RPC's handshake.
            let token = format!("{}/{}", names::TOKEN_MOUNT_PATH, names::TOKEN_KEY);
            set(keys::REST_TOKEN_FILE, token.clone());
            set(keys::INTERNAL_TOKEN_FILE, token);
        }
        // Each TLS Secret's switch on, its file keys at its mount. The REST CA is for `weir`
        // run inside the JobManager pod (`kubectl exec`).
        let tls_secrets = [
            (
                security.tls.is_some(),
                names::TLS_MOUNT_PATH,
                [
                    keys::SSL_REST_ENABLED,
                    keys::SSL_REST_CERT_FILE,
                    keys::SSL_REST_KEY_FILE,
                    keys::SSL_REST_CA_FILE,
                ],
            ),
            (
                security.internal_tls.is_some(),
                names::INTERNAL_TLS_MOUNT_PATH,
                [
                    keys::SSL_INTERNAL_ENABLED,
                    keys::SSL_INTERNAL_CERT_FILE,
                    keys::SSL_INTERNAL_KEY_FILE,
                    keys::SSL_INTERNAL_CA_FILE,
                ],
            ),
        ];
        for (on, mount, [enabled, cert, key, ca]) in tls_secrets {
            if on {
                set(enabled, "true".to_string());
                for (k, file) in [
                    (cert, names::TLS_CERT_KEY),
                    (key, names::TLS_KEY_KEY),
                    (ca, names::TLS_CA_KEY),
                ] {
                    set(k, format!("{mount}/{file}"));
                }
            }
        }
    }
    // A TaskManager lives within its container's memory (limit, else request), unless the
    // user budgets it explicitly.
    if !config.contains_key(keys::MEMORY_PROCESS_SIZE)
        && let Some(bytes) = taskmanager_memory(spec)
    {
        config.insert(keys::MEMORY_PROCESS_SIZE.to_string(), bytes.to_string());
    }
    config
}

/// The TaskManager container's memory limit (else its request) in bytes.
fn taskmanager_memory(spec: &StreamJobSpec) -> Option<u64> {
    let r = spec.task_manager.resources.as_ref()?;
    let q = r
        .limits
        .as_ref()
        .and_then(|l| l.get("memory"))
        .or_else(|| r.requests.as_ref().and_then(|l| l.get("memory")))?;
    quantity_bytes(&q.0)
}

/// A Kubernetes quantity (`4Gi`, `512M`, `1e9`, `1073741824`) in bytes; `None` if it is not
/// a whole number of bytes this understands.
pub fn quantity_bytes(q: &str) -> Option<u64> {
    let q = q.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    let n: f64 = num.parse().ok()?;
    let factor: f64 = match suffix {
        "" => 1.0,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        s if s.starts_with(['e', 'E']) => 10f64.powi(s[1..].parse().ok()?),
        _ => return None,
    };
    let bytes = n * factor;
    (bytes.is_finite() && bytes >= 1.0 && bytes < u64::MAX as f64).then_some(bytes as u64)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    JobManager,
    TaskManager,
}

impl Role {
    fn component(self) -> &'static str {
        match self {
            Role::JobManager => names::COMPONENT_JOBMANAGER,
            Role::TaskManager => names::COMPONENT_TASKMANAGER,
        }
    }

    fn container(self) -> &'static str {
        match self {
            Role::JobManager => names::JOBMANAGER_CONTAINER,
            Role::TaskManager => names::TASKMANAGER_CONTAINER,
        }
    }

    fn other(self) -> Role {
        match self {
            Role::JobManager => Role::TaskManager,
            Role::TaskManager => Role::JobManager,
        }
    }

    fn object_name(self, job: &str) -> String {
        match self {
            Role::JobManager => names::jobmanager_name(job),
            Role::TaskManager => names::taskmanager_name(job),
        }
    }
}

fn deployment(
    meta: &JobMeta,
    spec: &StreamJobSpec,
    role: Role,
    replicas: i32,
    strategy: Option<DeploymentStrategy>,
    config_hash: &str,
) -> Result<Deployment, BuildError> {
    let generated = pod_template(meta, spec, role, config_hash);
    // The user's template is the base and the generated one is merged over it: the operator's
    // fields win, while lists keyed by name (containers, env, volumes) keep the user's extra
    // entries, so sidecars and extra mounts survive.
    let template = match &spec.pod_template {
        Some(user) => {
            let mut merged: PodTemplateSpec =
                serde_json::from_value(user.clone()).map_err(BuildError::PodTemplate)?;
            // One template serves both roles: a container named for the other role is meant
            // for that role's pods only.
            if let Some(pod) = merged.spec.as_mut() {
                pod.containers
                    .retain(|c| c.name != role.other().container());
            }
            merged.merge_from(generated);
            merged
        }
        None => generated,
    };
    Ok(Deployment {
        metadata: meta.object_meta(role.object_name(&meta.name), Some(role.component())),
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(meta.selector(role.component())),
                ..LabelSelector::default()
            },
            strategy,
            template,
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    })
}

fn pod_template(
    meta: &JobMeta,
    spec: &StreamJobSpec,
    role: Role,
    config_hash: &str,
) -> PodTemplateSpec {
    let config_path = format!("{}/{}", names::CONFIG_MOUNT_PATH, names::CONFIG_FILE);
    let mut args = match role {
        Role::JobManager => vec![names::CMD_JOBMANAGER.to_string()],
        Role::TaskManager => vec![names::CMD_TASKMANAGER.to_string()],
    };
    args.push(names::ARG_CONFIG.to_string());
    args.push(config_path);
    if role == Role::JobManager {
        args.push(names::ARG_RECOVERY_DIR.to_string());
        args.push(names::RECOVERY_MOUNT_PATH.to_string());
        args.extend(job_args(spec));
    }

    let mut env = vec![EnvVar {
        name: names::ENV_POD_IP.to_string(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: "status.podIP".to_string(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }];
    env.extend(storage_env(spec));

    let resources = match role {
        Role::JobManager => spec.job_manager.resources.clone(),
        Role::TaskManager => spec.task_manager.resources.clone(),
    };
    let (ports, readiness_probe) = match role {
        Role::JobManager => (
            Some(vec![
                container_port(names::REST_PORT_NAME, names::REST_PORT),
                container_port(names::RPC_PORT_NAME, names::RPC_PORT),
            ]),
            Some(Probe {
                http_get: Some(HTTPGetAction {
                    path: Some(names::ready_path()),
                    port: IntOrString::String(names::REST_PORT_NAME.to_string()),
                    // The kubelet does not verify the certificate of an HTTPS probe, and
                    // the readiness path needs no token.
                    scheme: tls_secret(spec).map(|_| "HTTPS".to_string()),
                    ..HTTPGetAction::default()
                }),
                period_seconds: Some(5),
                ..Probe::default()
            }),
        ),
        Role::TaskManager => (None, None),
    };

    let mut mounts = vec![VolumeMount {
        name: names::CONFIG_VOLUME.to_string(),
        mount_path: names::CONFIG_MOUNT_PATH.to_string(),
        read_only: Some(true),
        ..VolumeMount::default()
    }];
    let mut volumes = vec![Volume {
        name: names::CONFIG_VOLUME.to_string(),
        config_map: Some(ConfigMapVolumeSource {
            name: names::config_map_name(&meta.name),
            ..ConfigMapVolumeSource::default()
        }),
        ..Volume::default()
    }];
    if role == Role::JobManager {
        mounts.push(VolumeMount {
            name: names::RECOVERY_VOLUME.to_string(),
            mount_path: names::RECOVERY_MOUNT_PATH.to_string(),
            ..VolumeMount::default()
        });
        volumes.push(Volume {
            name: names::RECOVERY_VOLUME.to_string(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        });
    }
    let token_secret = spec
        .security
        .as_ref()
        .and_then(|s| s.token_secret_name.as_ref());
    if let Some(secret) = token_secret {
        mounts.push(secret_mount(names::TOKEN_VOLUME, names::TOKEN_MOUNT_PATH));
        volumes.push(secret_volume(
            names::TOKEN_VOLUME,
            secret,
            &[names::TOKEN_KEY],
        ));
    }
    // Every process presents the RPC's certificate.
    if let Some(tls) = spec.security.as_ref().and_then(|s| s.internal_tls.as_ref()) {
        mounts.push(secret_mount(
            names::INTERNAL_TLS_VOLUME,
            names::INTERNAL_TLS_MOUNT_PATH,
        ));
        volumes.push(secret_volume(
            names::INTERNAL_TLS_VOLUME,
            &tls.secret_name,
            &[names::TLS_CERT_KEY, names::TLS_KEY_KEY, names::TLS_CA_KEY],
        ));
    }
    // Only the JobManager serves REST; TaskManagers never see its private key.
    if let (Role::JobManager, Some(secret)) = (role, tls_secret(spec)) {
        mounts.push(secret_mount(names::TLS_VOLUME, names::TLS_MOUNT_PATH));
        volumes.push(secret_volume(
            names::TLS_VOLUME,
            secret,
            &[names::TLS_CERT_KEY, names::TLS_KEY_KEY, names::TLS_CA_KEY],
        ));
    }
    let container = Container {
        name: role.container().to_string(),
        image: Some(spec.image.clone()),
        image_pull_policy: spec.image_pull_policy.map(|p| p.as_str().to_string()),
        args: Some(args),
        env: Some(env),
        ports,
        readiness_probe,
        resources,
        volume_mounts: Some(mounts),
        ..Container::default()
    };

    let mut labels = meta.labels(Some(role.component()));
    labels.extend(meta.selector(role.component()));
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels),
            annotations: Some(BTreeMap::from([(
                names::ANNOTATION_CONFIG_HASH.to_string(),
                config_hash.to_string(),
            )])),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            containers: vec![container],
            service_account_name: spec.service_account.clone(),
            volumes: Some(volumes),
            ..PodSpec::default()
        }),
    }
}

/// The job on the `weir` command line (`jobmanager`, `check`), in the positional form of
/// `weir run <job.sql | registered-job-name> [args]`.
fn job_args(spec: &StreamJobSpec) -> Vec<String> {
    match (&spec.job.sql, &spec.job.entry) {
        (Some(_), _) => vec![format!("{}/{}", names::CONFIG_MOUNT_PATH, names::SQL_FILE)],
        (None, Some(entry)) => std::iter::once(entry.clone())
            .chain(spec.job.args.iter().cloned())
            .collect(),
        (None, None) => Vec::new(),
    }
}

/// The storage credentials from `storage.credentialsSecret` as environment variables (by
/// reference, never copied).
fn storage_env(spec: &StreamJobSpec) -> Vec<EnvVar> {
    let Some(secret) = spec
        .storage
        .as_ref()
        .and_then(|s| s.credentials_secret.as_ref())
    else {
        return Vec::new();
    };
    [
        names::ENV_AWS_ACCESS_KEY_ID,
        names::ENV_AWS_SECRET_ACCESS_KEY,
    ]
    .into_iter()
    .map(|variable| EnvVar {
        name: variable.to_string(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.clone(),
                key: variable.to_string(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    })
    .collect()
}

/// What the pre-flight check's container asks for and may use: `weir check` plans the job and
/// reads one checkpoint's metadata, far less than the JobManager it stands in for needs.
pub const PREFLIGHT_CPU_REQUEST: &str = "100m";
pub const PREFLIGHT_MEMORY_REQUEST: &str = "256Mi";
pub const PREFLIGHT_CPU_LIMIT: &str = "1";
pub const PREFLIGHT_MEMORY_LIMIT: &str = "512Mi";

/// The objects of a pre-flight check: a ConfigMap with the worker configuration (and SQL) of
/// `spec`, the spec about to be rolled out, and the pod `pod` running `weir check` from
/// `spec`'s image against the checkpoint or savepoint `state`. The pod runs once (restart
/// policy `Never`); its report is the tail of its log, which Kubernetes keeps as the
/// container's termination message when the check fails.
///
/// It runs where and as the job's pods run: from `podTemplate` it takes the pod's pull
/// Secrets, service account (`serviceAccount` wins), security context and scheduling
/// (node selector, tolerations, affinity, priority and runtime class), host aliases and DNS
/// settings, and of the `jobmanager` container the env, `envFrom`, volume mounts (with the
/// volumes they mount) and security context, so it reads the state with the job's
/// credentials. Sidecars, init containers and labels are left out: a sidecar would keep a
/// run-once pod from ever finishing.
pub fn preflight(
    job: &StreamJob,
    spec: &StreamJobSpec,
    state: &str,
    pod: &str,
) -> Result<(ConfigMap, Pod), BuildError> {
    let meta = JobMeta::of(job)?;
    let config = worker_config(&meta.name, spec, Some(state));
    let config_text = serde_yaml::to_string(&config).map_err(BuildError::ConfigFile)?;
    let mut data = BTreeMap::from([(names::CONFIG_FILE.to_string(), config_text)]);
    if let Some(sql) = &spec.job.sql {
        data.insert(names::SQL_FILE.to_string(), sql.clone());
    }
    let config_map_name = names::preflight_config_map_name(&meta.name);
    let config_map = ConfigMap {
        metadata: meta.object_meta(config_map_name.clone(), Some(names::COMPONENT_PREFLIGHT)),
        data: Some(data),
        ..ConfigMap::default()
    };
    let template: PodTemplateSpec = match &spec.pod_template {
        Some(user) => serde_json::from_value(user.clone()).map_err(BuildError::PodTemplate)?,
        None => PodTemplateSpec::default(),
    };
    let user_pod = template.spec.unwrap_or_default();
    let user_container = user_pod
        .containers
        .iter()
        .find(|c| c.name == names::JOBMANAGER_CONTAINER)
        .cloned()
        .unwrap_or_default();

    use weir_contract::check;
    let mut args = vec![
        check::COMMAND.to_string(),
        names::ARG_CONFIG.to_string(),
        format!("{}/{}", names::CONFIG_MOUNT_PATH, names::CONFIG_FILE),
        check::ARG_STATE.to_string(),
        state.to_string(),
    ];
    args.extend(job_args(spec));
    // The user's variables, with the storage Secret's laid over them as on the job's pods.
    let mut env = user_container.env.unwrap_or_default();
    for variable in storage_env(spec) {
        env.retain(|e| e.name != variable.name);
        env.push(variable);
    }
    let mut mounts: Vec<VolumeMount> = user_container
        .volume_mounts
        .unwrap_or_default()
        .into_iter()
        .filter(|m| m.name != names::CONFIG_VOLUME && m.mount_path != names::CONFIG_MOUNT_PATH)
        .collect();
    let mut volumes: Vec<Volume> = user_pod
        .volumes
        .unwrap_or_default()
        .into_iter()
        .filter(|v| mounts.iter().any(|m| m.name == v.name))
        .collect();
    mounts.push(VolumeMount {
        name: names::CONFIG_VOLUME.to_string(),
        mount_path: names::CONFIG_MOUNT_PATH.to_string(),
        read_only: Some(true),
        ..VolumeMount::default()
    });
    volumes.push(Volume {
        name: names::CONFIG_VOLUME.to_string(),
        config_map: Some(ConfigMapVolumeSource {
            name: config_map_name,
            ..ConfigMapVolumeSource::default()
        }),
        ..Volume::default()
    });
    let quantities = |cpu: &str, memory: &str| {
        BTreeMap::from([
            ("cpu".to_string(), Quantity(cpu.to_string())),
            ("memory".to_string(), Quantity(memory.to_string())),
        ])
    };
    let container = Container {
        name: names::COMPONENT_PREFLIGHT.to_string(),
        image: Some(spec.image.clone()),
        image_pull_policy: spec.image_pull_policy.map(|p| p.as_str().to_string()),
        args: Some(args),
        env: Some(env),
        env_from: user_container.env_from,
        resources: Some(ResourceRequirements {
            requests: Some(quantities(PREFLIGHT_CPU_REQUEST, PREFLIGHT_MEMORY_REQUEST)),
            limits: Some(quantities(PREFLIGHT_CPU_LIMIT, PREFLIGHT_MEMORY_LIMIT)),
            ..ResourceRequirements::default()
        }),
        security_context: user_container.security_context,
        termination_message_policy: Some("FallbackToLogsOnError".to_string()),
        volume_mounts: Some(mounts),
        ..Container::default()
    };
    let pod = Pod {
        metadata: meta.object_meta(pod.to_string(), Some(names::COMPONENT_PREFLIGHT)),
        spec: Some(PodSpec {
            containers: vec![container],
            restart_policy: Some("Never".to_string()),
            service_account_name: spec
                .service_account
                .clone()
                .or(user_pod.service_account_name),
            automount_service_account_token: user_pod.automount_service_account_token,
            image_pull_secrets: user_pod.image_pull_secrets,
            security_context: user_pod.security_context,
            node_selector: user_pod.node_selector,
            tolerations: user_pod.tolerations,
            affinity: user_pod.affinity,
            priority_class_name: user_pod.priority_class_name,
            runtime_class_name: user_pod.runtime_class_name,
            host_aliases: user_pod.host_aliases,
            dns_policy: user_pod.dns_policy,
            dns_config: user_pod.dns_config,
            volumes: Some(volumes),
            ..PodSpec::default()
        }),
        ..Pod::default()
    };
    Ok((config_map, pod))
}

/// The Secret holding the REST API's certificate, if TLS is on.
fn tls_secret(spec: &StreamJobSpec) -> Option<&String> {
    spec.security
        .as_ref()
        .and_then(|s| s.tls.as_ref())
        .map(|t| &t.secret_name)
}

fn secret_mount(volume: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: volume.to_string(),
        mount_path: path.to_string(),
        read_only: Some(true),
        ..VolumeMount::default()
    }
}

/// A volume of `keys` of `secret`, each a file of its own name. The default mode (0644) stays:
/// the files belong to root and the worker runs as another user.
fn secret_volume(volume: &str, secret: &str, keys: &[&str]) -> Volume {
    Volume {
        name: volume.to_string(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret.to_string()),
            items: Some(
                keys.iter()
                    .map(|k| KeyToPath {
                        key: k.to_string(),
                        path: k.to_string(),
                        ..KeyToPath::default()
                    })
                    .collect(),
            ),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    }
}

fn service_port(name: &str, port: i32) -> ServicePort {
    ServicePort {
        name: Some(name.to_string()),
        port,
        target_port: Some(IntOrString::String(name.to_string())),
        protocol: Some("TCP".to_string()),
        ..ServicePort::default()
    }
}

fn container_port(name: &str, port: i32) -> ContainerPort {
    ContainerPort {
        name: Some(name.to_string()),
        container_port: port,
        protocol: Some("TCP".to_string()),
        ..ContainerPort::default()
    }
}

/// The parts of the StreamJob's metadata every child needs.
struct JobMeta {
    name: String,
    namespace: String,
    owner: OwnerReference,
}

impl JobMeta {
    fn of(job: &StreamJob) -> Result<Self, BuildError> {
        let name = job
            .metadata
            .name
            .clone()
            .ok_or(BuildError::MissingMetadata("metadata.name"))?;
        let namespace = job
            .metadata
            .namespace
            .clone()
            .ok_or(BuildError::MissingMetadata("metadata.namespace"))?;
        let owner = job
            .controller_owner_ref(&())
            .ok_or(BuildError::MissingMetadata("metadata.uid"))?;
        Ok(JobMeta {
            name,
            namespace,
            owner,
        })
    }

    fn labels(&self, component: Option<&str>) -> BTreeMap<String, String> {
        let mut labels = BTreeMap::from([
            (names::LABEL_NAME.to_string(), names::APP_NAME.to_string()),
            (names::LABEL_INSTANCE.to_string(), self.name.clone()),
            (
                names::LABEL_MANAGED_BY.to_string(),
                names::FIELD_MANAGER.to_string(),
            ),
            (names::LABEL_JOB.to_string(), self.name.clone()),
        ]);
        if let Some(component) = component {
            labels.insert(names::LABEL_COMPONENT.to_string(), component.to_string());
        }
        labels
    }

    /// The labels a selector matches on: few and immutable, since a Deployment's selector
    /// cannot change after creation.
    fn selector(&self, component: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            (names::LABEL_JOB.to_string(), self.name.clone()),
            (names::LABEL_COMPONENT.to_string(), component.to_string()),
        ])
    }

    fn object_meta(&self, name: String, component: Option<&str>) -> ObjectMeta {
        ObjectMeta {
            name: Some(name),
            namespace: Some(self.namespace.clone()),
            labels: Some(self.labels(component)),
            owner_references: Some(vec![self.owner.clone()]),
            ..ObjectMeta::default()
        }
    }
}
