//! The desired Kubernetes objects of a StreamJob, rendered from small YAML fixtures.

mod common;

use std::collections::BTreeMap;

use common::fixture;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Container, PodSpec};
use weir_operator::desired::{DesiredObjects, build, worker_config};
use weir_operator::names;

fn render(name: &str, restore: Option<&str>) -> DesiredObjects {
    let job = fixture(name);
    build(&job, &job.spec, restore).expect("fixture renders")
}

fn pod_spec(deployment: &Deployment) -> &PodSpec {
    deployment
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
}

fn container<'a>(deployment: &'a Deployment, name: &str) -> &'a Container {
    pod_spec(deployment)
        .containers
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

fn config_file(objects: &DesiredObjects) -> BTreeMap<String, String> {
    let text = &objects.config_map.data.as_ref().unwrap()[names::CONFIG_FILE];
    serde_yaml::from_str(text).unwrap()
}

#[test]
fn a_stateless_job_gets_one_recreated_jobmanager_and_its_taskmanagers() {
    let objects = render("stateless.yaml", None);
    let jm = objects.jobmanager.spec.as_ref().unwrap();
    assert_eq!(jm.replicas, Some(1));
    assert_eq!(
        jm.strategy.as_ref().unwrap().type_.as_deref(),
        Some("Recreate")
    );
    assert_eq!(objects.taskmanager.spec.as_ref().unwrap().replicas, Some(2));
    assert_eq!(
        objects.jobmanager.metadata.name.as_deref(),
        Some("clicks-jobmanager")
    );
    assert_eq!(
        objects.taskmanager.metadata.name.as_deref(),
        Some("clicks-taskmanager")
    );
    assert_eq!(
        objects.jobmanager.metadata.namespace.as_deref(),
        Some("analytics")
    );

    let config = config_file(&objects);
    assert_eq!(config["parallelism.default"], "2");
    assert_eq!(config["jobmanager.rpc.address"], "clicks-jobmanager");
    assert!(!config.contains_key("execution.savepoint.path"));
    assert!(!config.contains_key("state.savepoints.dir"));

    let jm_args = container(&objects.jobmanager, "jobmanager")
        .args
        .clone()
        .unwrap();
    assert_eq!(
        jm_args,
        [
            "jobmanager",
            "--config",
            "/etc/weir/weir-conf.yaml",
            "--recovery-dir",
            "/var/run/weir/recovery",
            "/etc/weir/job.sql"
        ]
    );
    // The JobManager's recovery directory is an emptyDir: it outlives a crashed process (the
    // restarted one resumes from the latest checkpoint) but not the pod.
    let jm_pod = objects
        .jobmanager
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap();
    let recovery = jm_pod
        .volumes
        .as_ref()
        .unwrap()
        .iter()
        .find(|v| v.name == "weir-recovery")
        .expect("a weir-recovery volume on the JobManager");
    assert!(recovery.empty_dir.is_some());
    assert!(
        container(&objects.jobmanager, "jobmanager")
            .volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .any(|m| m.name == "weir-recovery" && m.mount_path == "/var/run/weir/recovery")
    );
    let tm_pod = objects
        .taskmanager
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap();
    assert!(
        !tm_pod
            .volumes
            .as_ref()
            .unwrap()
            .iter()
            .any(|v| v.name == "weir-recovery")
    );
    assert_eq!(
        objects.config_map.data.as_ref().unwrap()["job.sql"],
        "INSERT INTO out SELECT * FROM clicks"
    );
    let tm_args = container(&objects.taskmanager, "taskmanager")
        .args
        .clone()
        .unwrap();
    assert_eq!(
        tm_args,
        ["taskmanager", "--config", "/etc/weir/weir-conf.yaml"]
    );
}

#[test]
fn the_jobmanager_service_exposes_rest_and_rpc_and_selects_only_the_jobmanager() {
    let objects = render("stateless.yaml", None);
    let service = objects.jobmanager_service.spec.as_ref().unwrap();
    let ports: Vec<(Option<&str>, i32)> = service
        .ports
        .as_ref()
        .unwrap()
        .iter()
        .map(|p| (p.name.as_deref(), p.port))
        .collect();
    assert_eq!(ports, [(Some("rest"), 8081), (Some("rpc"), 6123)]);
    let selector = service.selector.as_ref().unwrap();
    assert_eq!(selector[names::LABEL_COMPONENT], "jobmanager");
    assert_eq!(selector[names::LABEL_JOB], "clicks");
    // The pods the Service selects carry the selector labels.
    let pod_labels = objects
        .jobmanager
        .spec
        .as_ref()
        .unwrap()
        .template
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .as_ref()
        .unwrap();
    for (key, value) in selector {
        assert_eq!(pod_labels.get(key), Some(value));
    }
}

#[test]
fn every_child_is_owned_by_the_stream_job() {
    let objects = render("stateless.yaml", None);
    let metas = [
        &objects.config_map.metadata,
        &objects.jobmanager_service.metadata,
        &objects.jobmanager.metadata,
        &objects.taskmanager.metadata,
    ];
    for meta in metas {
        let owners = meta.owner_references.as_ref().unwrap();
        assert_eq!(owners.len(), 1);
        assert_eq!(owners[0].kind, "StreamJob");
        assert_eq!(owners[0].api_version, "weir.dev/v1alpha1");
        assert_eq!(owners[0].name, "clicks");
        assert_eq!(owners[0].uid, "6f1c2b9e-0000-4000-8000-000000000001");
        assert_eq!(owners[0].controller, Some(true));
        assert_eq!(
            meta.labels.as_ref().unwrap()[names::LABEL_MANAGED_BY],
            "weir-operator"
        );
    }
}

#[test]
fn a_savepoint_job_gets_its_dirs_storage_and_user_config_in_the_config_file() {
    let objects = render("savepoint.yaml", None);
    let config = config_file(&objects);
    let expected = [
        ("parallelism.default", "4"),
        ("taskmanager.numberOfTaskSlots", "2"),
        ("state.checkpoints.dir", "s3://state/orders/checkpoints"),
        ("execution.checkpointing.interval", "30s"),
        ("state.checkpoints.num-retained", "3"),
        ("state.savepoints.dir", "s3://state/orders/savepoints"),
        ("s3.endpoint", "http://s3.storage:9000"),
        ("s3.region", "eu-west-1"),
        ("s3.path-style-access", "true"),
        ("jobmanager.rpc.address", "orders-jobmanager"),
        ("jobmanager.rpc.port", "6123"),
        ("rest.port", "8081"),
        ("execution.checkpointing.mode", "EXACTLY_ONCE"),
        ("state.backend.type", "rocksdb"),
    ];
    for (key, value) in expected {
        assert_eq!(config.get(key).map(String::as_str), Some(value), "{key}");
    }
    let args = container(&objects.jobmanager, "jobmanager")
        .args
        .clone()
        .unwrap();
    assert_eq!(&args[5..], ["order-totals", "--window", "1m"]);
}

#[test]
fn a_restore_path_becomes_the_savepoint_path_with_non_restored_state_allowed() {
    let restored = render(
        "savepoint.yaml",
        Some("s3://state/orders/savepoints/savepoint-ab12-xyz"),
    );
    let config = config_file(&restored);
    assert_eq!(
        config["execution.savepoint.path"],
        "s3://state/orders/savepoints/savepoint-ab12-xyz"
    );
    assert_eq!(config["execution.savepoint.ignore-unclaimed-state"], "true");

    // A new restore path changes the config hash, so the pods roll even under a plain apply.
    let fresh = render("savepoint.yaml", None);
    let hash = |o: &DesiredObjects| {
        o.jobmanager
            .spec
            .as_ref()
            .unwrap()
            .template
            .metadata
            .as_ref()
            .unwrap()
            .annotations
            .as_ref()
            .unwrap()[names::ANNOTATION_CONFIG_HASH]
            .clone()
    };
    assert_ne!(hash(&restored), hash(&fresh));
}

#[test]
fn a_last_state_job_restores_from_the_given_checkpoint() {
    let objects = render("last-state.yaml", Some("file:///data/checkpoints/j1/chk-7"));
    let config = config_file(&objects);
    assert_eq!(
        config["execution.savepoint.path"],
        "file:///data/checkpoints/j1/chk-7"
    );
    assert_eq!(config["state.checkpoints.dir"], "file:///data/checkpoints");
    assert!(!config.contains_key("execution.savepoint.ignore-unclaimed-state"));
}

#[test]
fn storage_credentials_come_from_the_secret_as_aws_environment_variables() {
    let objects = render("savepoint.yaml", None);
    for (deployment, name) in [
        (&objects.jobmanager, "jobmanager"),
        (&objects.taskmanager, "taskmanager"),
    ] {
        let env = container(deployment, name).env.clone().unwrap();
        for variable in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
            let var = env.iter().find(|e| e.name == variable).unwrap();
            assert_eq!(var.value, None, "credentials never appear in plain text");
            let secret = var
                .value_from
                .as_ref()
                .unwrap()
                .secret_key_ref
                .as_ref()
                .unwrap();
            assert_eq!(secret.name, "orders-s3");
            assert_eq!(secret.key, variable);
        }
    }
}

#[test]
fn a_job_without_a_credentials_secret_gets_no_aws_variables() {
    let objects = render("stateless.yaml", None);
    let env = container(&objects.jobmanager, "jobmanager")
        .env
        .clone()
        .unwrap();
    assert!(env.iter().all(|e| !e.name.starts_with("AWS_")));
    assert!(env.iter().any(|e| e.name == names::ENV_POD_IP));
}

#[test]
fn resources_service_account_and_pull_policy_reach_the_pods() {
    let objects = render("savepoint.yaml", None);
    let jm = container(&objects.jobmanager, "jobmanager");
    let requests = jm.resources.as_ref().unwrap().requests.as_ref().unwrap();
    assert_eq!(requests["cpu"].0, "500m");
    assert_eq!(requests["memory"].0, "1Gi");
    let tm = container(&objects.taskmanager, "taskmanager");
    let limits = tm.resources.as_ref().unwrap().limits.as_ref().unwrap();
    assert_eq!(limits["cpu"].0, "2");
    assert_eq!(tm.image_pull_policy.as_deref(), Some("IfNotPresent"));
    assert_eq!(tm.image.as_deref(), Some("weir:1.2"));
    assert_eq!(
        pod_spec(&objects.taskmanager)
            .service_account_name
            .as_deref(),
        Some("weir-worker")
    );
}

#[test]
fn the_taskmanager_memory_limit_becomes_its_memory_budget_unless_configured() {
    // savepoint.yaml: taskManager limits memory 4Gi.
    let config = config_file(&render("savepoint.yaml", None));
    assert_eq!(
        config
            .get("taskmanager.memory.process.size")
            .map(String::as_str),
        Some("4294967296")
    );
    let mut job = fixture("savepoint.yaml");
    job.spec
        .config
        .insert("taskmanager.memory.process.size".into(), "3g".into());
    let config = worker_config("orders", &job.spec, None);
    assert_eq!(config["taskmanager.memory.process.size"], "3g");
    // Without resources nothing is budgeted.
    let config = config_file(&render("stateless.yaml", None));
    assert!(!config.contains_key("taskmanager.memory.process.size"));
    use weir_operator::desired::quantity_bytes as q;
    assert_eq!(q("512Mi"), Some(512 << 20));
    assert_eq!(q("1G"), Some(1_000_000_000));
    assert_eq!(q("1.5Gi"), Some(1_610_612_736));
    assert_eq!(q("2e9"), Some(2_000_000_000));
    assert_eq!(q("100m"), None, "milli-bytes are not bytes");
}

#[test]
fn the_pod_template_is_merged_under_the_generated_pod() {
    let objects = render("pod-template.yaml", None);
    let pod = pod_spec(&objects.jobmanager);

    // The user's scheduling settings and extra volume survive.
    assert_eq!(pod.node_selector.as_ref().unwrap()["disktype"], "ssd");
    assert_eq!(
        pod.tolerations.as_ref().unwrap()[0].key.as_deref(),
        Some("dedicated")
    );
    let volumes: Vec<&str> = pod
        .volumes
        .as_ref()
        .unwrap()
        .iter()
        .map(|v| v.name.as_str())
        .collect();
    assert!(
        volumes.contains(&"cache") && volumes.contains(&names::CONFIG_VOLUME),
        "{volumes:?}"
    );

    // The sidecar is kept; the jobmanager container merges by name and the operator wins.
    let names_: Vec<&str> = pod.containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names_.len(), 2, "{names_:?}");
    assert!(names_.contains(&"log-shipper"));
    let jm = container(&objects.jobmanager, "jobmanager");
    assert_eq!(jm.image.as_deref(), Some("weir:dev"));
    let env = jm.env.as_ref().unwrap();
    assert!(
        env.iter()
            .any(|e| e.name == "RUST_LOG" && e.value.as_deref() == Some("debug"))
    );
    assert!(env.iter().any(|e| e.name == names::ENV_POD_IP));
    let mounts: Vec<&str> = jm
        .volume_mounts
        .as_ref()
        .unwrap()
        .iter()
        .map(|m| m.mount_path.as_str())
        .collect();
    assert!(
        mounts.contains(&"/cache") && mounts.contains(&names::CONFIG_MOUNT_PATH),
        "{mounts:?}"
    );

    // User labels are kept, but the selector labels are the operator's.
    let labels = objects
        .jobmanager
        .spec
        .as_ref()
        .unwrap()
        .template
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .as_ref()
        .unwrap();
    assert_eq!(labels["team"], "data");
    assert_eq!(labels[names::LABEL_COMPONENT], "jobmanager");
}

#[test]
fn a_pod_template_container_for_the_jobmanager_stays_out_of_taskmanager_pods() {
    let objects = render("pod-template.yaml", None);
    let names_: Vec<&str> = pod_spec(&objects.taskmanager)
        .containers
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert!(names_.contains(&"taskmanager"));
    assert!(names_.contains(&"log-shipper"));
    assert!(!names_.contains(&"jobmanager"), "{names_:?}");
}

#[test]
fn the_worker_config_lets_the_operator_keys_win_over_user_keys() {
    // Validation rejects such a spec; the renderer must still never let a user key override
    // the restore path the lifecycle chose.
    let mut job = fixture("stateless.yaml");
    job.spec.config.insert(
        "execution.savepoint.path".to_string(),
        "s3://wrong".to_string(),
    );
    let config = worker_config("clicks", &job.spec, Some("s3://right"));
    assert_eq!(config["execution.savepoint.path"], "s3://right");
}

/// The Secret volume `volume` of a pod (`None` when it has none), as (secret, keys).
fn secret_volume(deployment: &Deployment, volume: &str) -> Option<(String, Vec<String>)> {
    let v = pod_spec(deployment)
        .volumes
        .as_ref()?
        .iter()
        .find(|v| v.name == volume)?;
    let secret = v.secret.as_ref().unwrap();
    let keys = secret
        .items
        .as_ref()
        .unwrap()
        .iter()
        .map(|i| i.key.clone())
        .collect();
    Some((secret.secret_name.clone().unwrap(), keys))
}

fn mount_path(deployment: &Deployment, container_name: &str, volume: &str) -> Option<String> {
    container(deployment, container_name)
        .volume_mounts
        .as_ref()?
        .iter()
        .find(|m| m.name == volume)
        .map(|m| m.mount_path.clone())
}

#[test]
fn security_mounts_the_token_and_rpc_certificate_everywhere_and_the_rest_certificate_on_the_jobmanager()
 {
    let objects = render("secured.yaml", None);
    let config = config_file(&objects);
    let token = format!("{}/{}", names::TOKEN_MOUNT_PATH, names::TOKEN_KEY);
    assert_eq!(config["security.rest.token-file"], token);
    assert_eq!(config["security.internal.token-file"], token);
    assert_eq!(config["security.ssl.rest.enabled"], "true");
    assert_eq!(
        config["security.ssl.rest.cert-file"],
        format!("{}/tls.crt", names::TLS_MOUNT_PATH)
    );
    assert_eq!(
        config["security.ssl.rest.key-file"],
        format!("{}/tls.key", names::TLS_MOUNT_PATH)
    );
    assert_eq!(
        config["security.ssl.rest.ca-file"],
        format!("{}/ca.crt", names::TLS_MOUNT_PATH)
    );
    assert_eq!(config["security.ssl.internal.enabled"], "true");
    for (key, file) in [("cert", "tls.crt"), ("key", "tls.key"), ("ca", "ca.crt")] {
        assert_eq!(
            config[&format!("security.ssl.internal.{key}-file")],
            format!("{}/{file}", names::INTERNAL_TLS_MOUNT_PATH)
        );
    }

    for (deployment, name) in [
        (&objects.jobmanager, names::JOBMANAGER_CONTAINER),
        (&objects.taskmanager, names::TASKMANAGER_CONTAINER),
    ] {
        assert_eq!(
            secret_volume(deployment, names::TOKEN_VOLUME),
            Some(("orders-token".to_string(), vec!["token".to_string()])),
            "{name}"
        );
        assert_eq!(
            mount_path(deployment, name, names::TOKEN_VOLUME).as_deref(),
            Some(names::TOKEN_MOUNT_PATH)
        );
        // Both ends of the RPC present the internal certificate.
        assert_eq!(
            secret_volume(deployment, names::INTERNAL_TLS_VOLUME),
            Some((
                "orders-rpc-tls".to_string(),
                vec!["tls.crt".into(), "tls.key".into(), "ca.crt".into()]
            )),
            "{name}"
        );
        assert_eq!(
            mount_path(deployment, name, names::INTERNAL_TLS_VOLUME).as_deref(),
            Some(names::INTERNAL_TLS_MOUNT_PATH)
        );
    }
    assert_eq!(
        secret_volume(&objects.jobmanager, names::TLS_VOLUME),
        Some((
            "orders-jobmanager-tls".to_string(),
            vec!["tls.crt".into(), "tls.key".into(), "ca.crt".into()]
        ))
    );
    assert_eq!(
        mount_path(
            &objects.jobmanager,
            names::JOBMANAGER_CONTAINER,
            names::TLS_VOLUME
        )
        .as_deref(),
        Some(names::TLS_MOUNT_PATH)
    );
    assert_eq!(
        secret_volume(&objects.taskmanager, names::TLS_VOLUME),
        None,
        "TaskManagers serve no REST and never get the private key"
    );
    // The readiness probe speaks HTTPS to the open readiness path.
    let probe = container(&objects.jobmanager, names::JOBMANAGER_CONTAINER)
        .readiness_probe
        .as_ref()
        .unwrap()
        .http_get
        .as_ref()
        .unwrap();
    assert_eq!(probe.scheme.as_deref(), Some("HTTPS"));
    assert_eq!(probe.path.as_deref(), Some("/readyz"));
}

#[test]
fn without_security_no_secret_is_mounted_and_the_probe_speaks_http() {
    let objects = render("stateless.yaml", None);
    let config = config_file(&objects);
    assert!(
        config.keys().all(|k| !k.starts_with("security.")),
        "{config:?}"
    );
    assert_eq!(
        secret_volume(&objects.jobmanager, names::TOKEN_VOLUME),
        None
    );
    assert_eq!(secret_volume(&objects.jobmanager, names::TLS_VOLUME), None);
    let probe = container(&objects.jobmanager, names::JOBMANAGER_CONTAINER)
        .readiness_probe
        .clone()
        .unwrap()
        .http_get
        .unwrap();
    assert_eq!(probe.scheme, None);
}

#[test]
fn an_ingress_template_routes_a_host_or_a_path_to_the_jobmanager_rest_port() {
    let mut job = fixture("stateless.yaml");
    assert!(
        weir_operator::desired::ingress(&job, &job.spec)
            .unwrap()
            .is_none(),
        "no spec.ingress, no Ingress"
    );
    let namespace = job.metadata.namespace.clone().unwrap();

    // A path per job below one host, with a regular expression and a rewrite annotation.
    job.spec.ingress = Some(
        serde_yaml::from_str(
            "template: weir.example.com/{{namespace}}/{{name}}(/|$)(.*)\n\
         className: nginx\n\
         annotations: {nginx.ingress.kubernetes.io/rewrite-target: /$2}\n\
         labels: {team: data}\n\
         tls: [{hosts: ['weir.example.com'], secretName: weir-tls}]\n",
        )
        .unwrap(),
    );
    let ingress = weir_operator::desired::ingress(&job, &job.spec)
        .unwrap()
        .unwrap();
    assert_eq!(ingress.metadata.name.as_deref(), Some("clicks-jobmanager"));
    assert_eq!(
        ingress.metadata.owner_references.as_ref().unwrap()[0].kind,
        "StreamJob"
    );
    assert_eq!(ingress.metadata.labels.as_ref().unwrap()["team"], "data");
    assert_eq!(
        ingress.metadata.annotations.as_ref().unwrap()["nginx.ingress.kubernetes.io/rewrite-target"],
        "/$2"
    );
    let spec = ingress.spec.as_ref().unwrap();
    assert_eq!(spec.ingress_class_name.as_deref(), Some("nginx"));
    let rule = &spec.rules.as_ref().unwrap()[0];
    assert_eq!(rule.host.as_deref(), Some("weir.example.com"));
    let path = &rule.http.as_ref().unwrap().paths[0];
    assert_eq!(
        path.path.as_deref(),
        Some(format!("/{namespace}/clicks(/|$)(.*)").as_str())
    );
    assert_eq!(path.path_type, "ImplementationSpecific");
    let service = path.backend.service.as_ref().unwrap();
    assert_eq!(service.name, "clicks-jobmanager");
    assert_eq!(
        service.port.as_ref().unwrap().name.as_deref(),
        Some(names::REST_PORT_NAME)
    );
    let tls = &spec.tls.as_ref().unwrap()[0];
    assert_eq!(tls.secret_name.as_deref(), Some("weir-tls"));

    // A host per job: the whole host, path `/` as a prefix, the cluster's default class.
    job.spec.ingress =
        Some(serde_yaml::from_str("template: '{{name}}.{{namespace}}.weir.example.com'").unwrap());
    let ingress = weir_operator::desired::ingress(&job, &job.spec)
        .unwrap()
        .unwrap();
    let spec = ingress.spec.as_ref().unwrap();
    assert_eq!(spec.ingress_class_name, None);
    let rule = &spec.rules.as_ref().unwrap()[0];
    assert_eq!(
        rule.host.as_deref(),
        Some(format!("clicks.{namespace}.weir.example.com").as_str())
    );
    let path = &rule.http.as_ref().unwrap().paths[0];
    assert_eq!(
        (path.path.as_deref(), path.path_type.as_str()),
        (Some("/"), "Prefix")
    );
    assert!(ingress.metadata.annotations.is_none() && spec.tls.is_none());
}

#[test]
fn a_preflight_check_runs_weir_check_from_the_new_image_against_the_state_with_its_storage() {
    let job = fixture("savepoint.yaml");
    let mut spec = job.spec.clone();
    spec.image = "weir:1.3".into();
    let state = "s3://state/orders/checkpoints/j1/chk-7";
    let pod_name =
        names::preflight_pod_name("orders", &weir_operator::lifecycle::spec_json(&spec), state);
    let (config_map, pod) =
        weir_operator::desired::preflight(&job, &spec, state, &pod_name).unwrap();
    assert_eq!(pod.metadata.name.as_deref(), Some(pod_name.as_str()));
    assert!(pod_name.starts_with("orders-preflight-"), "{pod_name}");
    // Another spec, another pod.
    assert_ne!(
        pod_name,
        names::preflight_pod_name(
            "orders",
            &weir_operator::lifecycle::spec_json(&job.spec),
            state
        )
    );
    let owner = &pod.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("StreamJob", "orders")
    );
    let spec_of_pod = pod.spec.as_ref().unwrap();
    assert_eq!(spec_of_pod.restart_policy.as_deref(), Some("Never"));
    let c = &spec_of_pod.containers[0];
    assert_eq!(c.image.as_deref(), Some("weir:1.3"));
    assert_eq!(
        c.args.as_ref().unwrap(),
        &[
            "check",
            "--config",
            "/etc/weir/weir-conf.yaml",
            "--state",
            state,
            "order-totals",
            "--window",
            "1m"
        ]
    );
    assert_eq!(
        c.termination_message_policy.as_deref(),
        Some("FallbackToLogsOnError")
    );
    let env: Vec<&str> = c
        .env
        .as_ref()
        .unwrap()
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    assert_eq!(env, ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]);
    let volume = &spec_of_pod.volumes.as_ref().unwrap()[0];
    assert_eq!(
        volume.config_map.as_ref().unwrap().name,
        config_map.metadata.name.clone().unwrap()
    );
    // The configuration the new job would get: its storage and allowNonRestoredState.
    let config: BTreeMap<String, String> =
        serde_yaml::from_str(&config_map.data.as_ref().unwrap()[names::CONFIG_FILE]).unwrap();
    assert_eq!(config["s3.endpoint"], "http://s3.storage:9000");
    assert_eq!(config["execution.savepoint.ignore-unclaimed-state"], "true");
    assert_eq!(config["parallelism.default"], "4");
}

#[test]
fn a_preflight_pod_is_read_as_compatible_incompatible_naming_operators_or_undecided() {
    use weir_operator::controller::preflight_outcome;
    use weir_operator::lifecycle::PreflightOutcome;
    let pod = |status: serde_json::Value| -> k8s_openapi::api::core::v1::Pod {
        serde_json::from_value(serde_json::json!({"metadata": {"name": "p"}, "status": status}))
            .unwrap()
    };
    let exited = |code: i32, message: &str| {
        pod(
            serde_json::json!({"phase": if code == 0 { "Succeeded" } else { "Failed" },
            "containerStatuses": [{"name": "preflight", "image": "weir", "imageID": "", "ready": false,
            "restartCount": 0, "state": {"terminated": {"exitCode": code, "message": message}}}]}),
        )
    };
    assert_eq!(
        preflight_outcome(&pod(serde_json::json!({"phase": "Pending"}))),
        PreflightOutcome::Running
    );
    assert_eq!(
        preflight_outcome(&exited(0, "")),
        PreflightOutcome::Compatible
    );
    let report = "s3://b/chk-3 (checkpoint 3 of job j, pipeline.max-parallelism 128)\n  \
        sql-3-3-group-aggregate 'GroupAggregate': parallelism 1 -> 1; states accumulators @6826110c\n\
        INCOMPATIBLE: /etc/weir/job.sql cannot restore from s3://b/chk-3\n  \
        refused: operator 'GroupAggregate' (uid sql-3-3-group-aggregate) changed its state schema\n  \
        refused: operator 'Sink' (uid x) has state in the checkpoint but is not in the job\n";
    assert_eq!(
        preflight_outcome(&exited(2, report)),
        PreflightOutcome::Incompatible(
            "operator 'GroupAggregate' (uid sql-3-3-group-aggregate) changed its state schema; \
             operator 'Sink' (uid x) has state in the checkpoint but is not in the job"
                .into()
        )
    );
    let PreflightOutcome::Failed(why) = preflight_outcome(&exited(
        1,
        "error: cannot restore: cannot read _metadata: access denied",
    )) else {
        panic!("exit code 1 is undecided");
    };
    assert!(
        why.contains("code 1") && why.contains("access denied"),
        "{why}"
    );
    // A container that cannot start is a check that cannot run, not one still running.
    let PreflightOutcome::Failed(why) = preflight_outcome(&pod(serde_json::json!({
        "phase": "Pending",
        "containerStatuses": [{"name": "preflight", "image": "weir:typo", "imageID": "",
            "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "ImagePullBackOff",
            "message": "Back-off pulling image \"weir:typo\""}}}]
    }))) else {
        panic!("an image that cannot be pulled is undecided");
    };
    assert!(
        why.contains("ImagePullBackOff") && why.contains("weir:typo"),
        "{why}"
    );
    // Waiting to be started is still running.
    assert_eq!(
        preflight_outcome(&pod(serde_json::json!({
            "phase": "Pending",
            "containerStatuses": [{"name": "preflight", "image": "weir", "imageID": "",
                "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": "ContainerCreating"}}}]
        }))),
        PreflightOutcome::Running
    );
}

#[test]
fn a_preflight_pod_runs_where_and_as_the_jobs_pods_run_with_their_credentials_and_a_small_fixed_size()
 {
    let mut job = fixture("savepoint.yaml");
    job.spec.service_account = None;
    job.spec.job_manager.resources = Some(
        serde_json::from_value(serde_json::json!({"limits": {"cpu": "4", "memory": "8Gi"}}))
            .unwrap(),
    );
    job.spec.pod_template = Some(serde_json::json!({
        "metadata": {"labels": {"team": "data"}, "annotations": {"sidecar.istio.io/inject": "true"}},
        "spec": {
            "serviceAccountName": "streaming",
            "imagePullSecrets": [{"name": "registry"}],
            "securityContext": {"runAsNonRoot": true, "fsGroup": 2000},
            "nodeSelector": {"disktype": "ssd"},
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "streaming",
                             "effect": "NoSchedule"}],
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [
                    {"key": "zone", "operator": "In", "values": ["a"]}]}]}}},
            "volumes": [
                {"name": "aws-token", "projected": {"sources": [{"serviceAccountToken":
                    {"audience": "sts.amazonaws.com", "path": "token"}}]}},
                {"name": "cache", "emptyDir": {}}
            ],
            "initContainers": [{"name": "warm-up", "image": "busybox"}],
            "containers": [
                {"name": "jobmanager",
                 "env": [{"name": "AWS_WEB_IDENTITY_TOKEN_FILE", "value": "/var/run/aws/token"},
                         {"name": "AWS_ACCESS_KEY_ID", "value": "overridden-by-the-secret"}],
                 "envFrom": [{"secretRef": {"name": "extra-credentials"}}],
                 "volumeMounts": [{"name": "aws-token", "mountPath": "/var/run/aws"}],
                 "securityContext": {"readOnlyRootFilesystem": true}},
                {"name": "taskmanager", "volumeMounts": [{"name": "cache", "mountPath": "/cache"}]},
                {"name": "log-shipper", "image": "shipper:1"}
            ]
        }
    }));
    let state = "s3://state/orders/checkpoints/j1/chk-7";
    let (_, pod) =
        weir_operator::desired::preflight(&job, &job.spec, state, "orders-preflight-1").unwrap();
    let spec = pod.spec.as_ref().unwrap();
    // Where and as whom: the template's pod settings.
    assert_eq!(spec.service_account_name.as_deref(), Some("streaming"));
    assert_eq!(
        json(&spec.image_pull_secrets),
        serde_json::json!([{"name": "registry"}])
    );
    assert_eq!(
        json(&spec.security_context),
        serde_json::json!({"runAsNonRoot": true, "fsGroup": 2000})
    );
    assert_eq!(
        json(&spec.node_selector),
        serde_json::json!({"disktype": "ssd"})
    );
    assert_eq!(
        json(&spec.tolerations),
        serde_json::json!([{"key": "dedicated", "operator": "Equal", "value": "streaming",
                            "effect": "NoSchedule"}])
    );
    assert_eq!(
        json(&spec.affinity)["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
            [0]["matchExpressions"][0]["key"],
        "zone"
    );
    // One container, run once: no sidecar or init container could keep it from finishing.
    assert_eq!(spec.containers.len(), 1);
    assert!(spec.init_containers.is_none());
    assert_eq!(pod.metadata.annotations, None);
    let c = &spec.containers[0];
    assert_eq!(c.name, "preflight");
    // The JobManager container's credentials: its env (the storage Secret's keys win) and
    // envFrom, and the volumes its mounts need, besides the check's own configuration.
    let env: Vec<(String, serde_json::Value)> = c
        .env
        .as_ref()
        .unwrap()
        .iter()
        .map(|e| (e.name.clone(), serde_json::to_value(e).unwrap()))
        .collect();
    let names: Vec<&str> = env.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY"
        ]
    );
    assert_eq!(
        env[1].1["valueFrom"]["secretKeyRef"]["name"],
        job.spec
            .storage
            .as_ref()
            .unwrap()
            .credentials_secret
            .clone()
            .unwrap()
            .as_str()
    );
    assert_eq!(
        json(&c.env_from),
        serde_json::json!([{"secretRef": {"name": "extra-credentials"}}])
    );
    let mounts: Vec<(&str, &str)> = c
        .volume_mounts
        .as_ref()
        .unwrap()
        .iter()
        .map(|m| (m.name.as_str(), m.mount_path.as_str()))
        .collect();
    assert_eq!(
        mounts,
        [
            ("aws-token", "/var/run/aws"),
            (names::CONFIG_VOLUME, "/etc/weir")
        ]
    );
    let volumes: Vec<&str> = spec
        .volumes
        .as_ref()
        .unwrap()
        .iter()
        .map(|v| v.name.as_str())
        .collect();
    assert_eq!(volumes, ["aws-token", names::CONFIG_VOLUME]);
    assert_eq!(
        json(&c.security_context),
        serde_json::json!({"readOnlyRootFilesystem": true})
    );
    // A small fixed size, not the JobManager's 4 CPUs and 8 GiB.
    assert_eq!(
        json(&c.resources),
        serde_json::json!({"requests": {"cpu": "100m", "memory": "256Mi"},
                           "limits": {"cpu": "1", "memory": "512Mi"}})
    );

    // The StreamJob's serviceAccount wins over the template's, as on the job's pods.
    job.spec.service_account = Some("weir-jobs".into());
    let (_, pod) =
        weir_operator::desired::preflight(&job, &job.spec, state, "orders-preflight-1").unwrap();
    assert_eq!(
        pod.spec.unwrap().service_account_name.as_deref(),
        Some("weir-jobs")
    );
}

/// A field as JSON, for comparing with `json!` literals.
fn json<T: serde::Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).unwrap()
}
