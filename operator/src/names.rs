//! Names the operator shares with the worker and with itself: labels, environment variables,
//! ports, configuration keys, the field manager and the finalizer. Everything a second place
//! would otherwise spell as a string literal lives here, so a rename is one edit.

/// API group of the StreamJob resource.
pub const GROUP: &str = "weir.dev";

/// Field manager for every server-side apply the operator makes; one manager means the operator
/// never fights itself over field ownership.
pub const FIELD_MANAGER: &str = "weir-operator";

/// Finalizer that holds a StreamJob until its deletion savepoint and cleanup have run.
pub const FINALIZER: &str = "weir.dev/cleanup";

/// Finalizer that holds a StreamJobSnapshot with `disposeOnDelete` until its objects are
/// deleted from storage.
pub const SNAPSHOT_FINALIZER: &str = "weir.dev/dispose";

/// Label on the StreamJobSnapshots a StreamJob's own savepoints create: why it was taken
/// (`upgrade`, `suspend`, `deletion`, `manual`, `periodic`).
pub const LABEL_SNAPSHOT_TRIGGER: &str = "weir.dev/snapshot-trigger";

/// Container names inside the generated pods; a user's `podTemplate` merges into the container
/// with the same name.
pub const JOBMANAGER_CONTAINER: &str = "jobmanager";
pub const TASKMANAGER_CONTAINER: &str = "taskmanager";

/// Component values for [`LABEL_COMPONENT`].
pub const COMPONENT_JOBMANAGER: &str = "jobmanager";
pub const COMPONENT_TASKMANAGER: &str = "taskmanager";

/// Recommended Kubernetes labels, plus the job label the selectors rely on.
pub const LABEL_NAME: &str = "app.kubernetes.io/name";
pub const LABEL_INSTANCE: &str = "app.kubernetes.io/instance";
pub const LABEL_COMPONENT: &str = "app.kubernetes.io/component";
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const LABEL_JOB: &str = "weir.dev/job";
/// Value of [`LABEL_NAME`] on everything the operator creates.
pub const APP_NAME: &str = "weir";

/// Annotation carrying a hash of the rendered worker config, so a config change rolls the pods.
pub const ANNOTATION_CONFIG_HASH: &str = "weir.dev/config-hash";

/// Ports of the JobManager: REST (Flink's default 8081) and the TaskManager RPC port.
pub const REST_PORT: i32 = weir_contract::rest::DEFAULT_PORT as i32;
pub const RPC_PORT: i32 = weir_contract::options::DEFAULT_RPC_PORT as i32;
pub const REST_PORT_NAME: &str = "rest";
pub const RPC_PORT_NAME: &str = "rpc";

/// Where the ConfigMap holding the worker configuration is mounted, and the file inside it.
pub const CONFIG_VOLUME: &str = "weir-config";
pub const CONFIG_MOUNT_PATH: &str = "/etc/weir";
pub const CONFIG_FILE: &str = "weir-conf.yaml";
/// File in the same ConfigMap holding `job.sql`, passed to the JobManager as its job.
pub const SQL_FILE: &str = "job.sql";

/// JobManager readiness endpoint (the contract's `Route::Readyz`), for the readiness probe.
pub fn ready_path() -> String {
    weir_contract::rest::Route::Readyz.path()
}

/// Worker subcommands (`weir jobmanager --config <file>`).
pub const CMD_JOBMANAGER: &str = "jobmanager";
pub const CMD_TASKMANAGER: &str = "taskmanager";
pub const ARG_CONFIG: &str = "--config";
/// The JobManager's emptyDir, which outlives a crashed JobManager process but not its pod: a
/// restarted process resumes from the previous run's latest checkpoint recorded there.
pub const ARG_RECOVERY_DIR: &str = "--recovery-dir";
pub const RECOVERY_VOLUME: &str = "weir-recovery";
pub const RECOVERY_MOUNT_PATH: &str = "/var/run/weir/recovery";

/// Standard AWS credential environment variables read by the worker's S3 client.
pub const ENV_AWS_ACCESS_KEY_ID: &str = "AWS_ACCESS_KEY_ID";
pub const ENV_AWS_SECRET_ACCESS_KEY: &str = "AWS_SECRET_ACCESS_KEY";
/// Downward-API variable giving each pod its own address.
pub const ENV_POD_IP: &str = "POD_IP";

/// Comma-separated namespaces the operator watches (the chart's `watchNamespaces`); unset or
/// empty: every namespace.
pub const ENV_WATCH_NAMESPACES: &str = "WEIR_OPERATOR_WATCH_NAMESPACES";

/// The operator's switch (set by the chart's `jobSecurity.required`) that makes `spec.security`
/// with a token and TLS mandatory for every StreamJob.
pub const ENV_REQUIRE_SECURITY: &str = "WEIR_OPERATOR_REQUIRE_SECURITY";

/// `spec.security`: where the token and TLS Secrets are mounted, and their keys.
pub const TOKEN_VOLUME: &str = "weir-token";
pub const TOKEN_MOUNT_PATH: &str = "/var/run/secrets/weir/token";
/// The token Secret's key (and the file it becomes).
pub const TOKEN_KEY: &str = "token";
pub const TLS_VOLUME: &str = "weir-tls";
pub const TLS_MOUNT_PATH: &str = "/var/run/secrets/weir/tls";
pub const INTERNAL_TLS_VOLUME: &str = "weir-internal-tls";
pub const INTERNAL_TLS_MOUNT_PATH: &str = "/var/run/secrets/weir/internal-tls";
/// The keys of a `kubernetes.io/tls` Secret (plus cert-manager's `ca.crt`).
pub const TLS_CERT_KEY: &str = "tls.crt";
pub const TLS_KEY_KEY: &str = "tls.key";
pub const TLS_CA_KEY: &str = "ca.crt";

/// The DNS name of the JobManager Service, which its certificate must carry.
pub fn jobmanager_service_dns(job: &str, namespace: &str) -> String {
    format!("{}.{namespace}.svc", jobmanager_name(job))
}

/// Flink-compatible configuration keys the operator writes: the contract's options
/// (`weir_contract::options`), whose keys the worker reads.
pub mod config {
    use weir_contract::options as o;

    pub const PARALLELISM_DEFAULT: &str = o::PARALLELISM_DEFAULT.key;
    pub const TASK_SLOTS: &str = o::TASK_SLOTS.key;
    pub const CHECKPOINTS_DIR: &str = o::CHECKPOINTS_DIR.key;
    pub const SAVEPOINTS_DIR: &str = o::SAVEPOINTS_DIR.key;
    pub const CHECKPOINT_INTERVAL: &str = o::CHECKPOINTING_INTERVAL.key;
    pub const CHECKPOINTS_RETAINED: &str = o::CHECKPOINTS_RETAINED.key;
    pub const SAVEPOINT_PATH: &str = o::SAVEPOINT_PATH.key;
    pub const SAVEPOINT_IGNORE_UNCLAIMED: &str = o::SAVEPOINT_IGNORE_UNCLAIMED_STATE.key;
    pub const S3_ENDPOINT: &str = o::S3_ENDPOINT.key;
    pub const S3_REGION: &str = o::S3_REGION.key;
    pub const S3_PATH_STYLE: &str = o::S3_PATH_STYLE_ACCESS.key;
    pub const REST_ADDRESS: &str = o::REST_ADDRESS.key;
    pub const REST_PORT: &str = o::REST_PORT.key;
    pub const RPC_ADDRESS: &str = o::RPC_ADDRESS.key;
    pub const RPC_PORT: &str = o::RPC_PORT.key;
    /// Derived from the TaskManager container's memory limit unless the user sets it.
    pub const MEMORY_PROCESS_SIZE: &str = o::MEMORY_PROCESS_SIZE.key;
    pub const REST_TOKEN_FILE: &str = o::REST_TOKEN_FILE.key;
    pub const INTERNAL_TOKEN_FILE: &str = o::INTERNAL_TOKEN_FILE.key;
    pub const SSL_REST_ENABLED: &str = o::SSL_REST_ENABLED.key;
    pub const SSL_REST_CERT_FILE: &str = o::SSL_REST_CERT_FILE.key;
    pub const SSL_REST_KEY_FILE: &str = o::SSL_REST_KEY_FILE.key;
    pub const SSL_REST_CA_FILE: &str = o::SSL_REST_CA_FILE.key;
    pub const SSL_INTERNAL_ENABLED: &str = o::SSL_INTERNAL_ENABLED.key;
    pub const SSL_INTERNAL_CERT_FILE: &str = o::SSL_INTERNAL_CERT_FILE.key;
    pub const SSL_INTERNAL_KEY_FILE: &str = o::SSL_INTERNAL_KEY_FILE.key;
    pub const SSL_INTERNAL_CA_FILE: &str = o::SSL_INTERNAL_CA_FILE.key;

    /// Keys the operator owns: a user `config` entry for one of these is rejected by
    /// validation, because silently overriding either side would hide a mistake.
    pub const OPERATOR_OWNED: &[&str] = &[
        PARALLELISM_DEFAULT,
        TASK_SLOTS,
        CHECKPOINTS_DIR,
        SAVEPOINTS_DIR,
        CHECKPOINT_INTERVAL,
        CHECKPOINTS_RETAINED,
        SAVEPOINT_PATH,
        SAVEPOINT_IGNORE_UNCLAIMED,
        S3_ENDPOINT,
        S3_REGION,
        S3_PATH_STYLE,
        REST_ADDRESS,
        REST_PORT,
        RPC_ADDRESS,
        RPC_PORT,
        REST_TOKEN_FILE,
        INTERNAL_TOKEN_FILE,
        SSL_REST_ENABLED,
        SSL_REST_CERT_FILE,
        SSL_REST_KEY_FILE,
        SSL_REST_CA_FILE,
        SSL_INTERNAL_ENABLED,
        SSL_INTERNAL_CERT_FILE,
        SSL_INTERNAL_KEY_FILE,
        SSL_INTERNAL_CA_FILE,
    ];
}

/// Name of the JobManager Deployment and Service, which is also `jobmanager.rpc.address`.
pub fn jobmanager_name(job: &str) -> String {
    format!("{job}-jobmanager")
}

/// Name of the TaskManager Deployment.
pub fn taskmanager_name(job: &str) -> String {
    format!("{job}-taskmanager")
}

/// Name of the ConfigMap holding the worker configuration.
pub fn config_map_name(job: &str) -> String {
    format!("{job}-config")
}

/// Component label and container name of the pre-flight check's pod.
pub const COMPONENT_PREFLIGHT: &str = "preflight";

/// Name of the ConfigMap holding the worker configuration (and SQL) of the spec being
/// checked before an upgrade.
pub fn preflight_config_map_name(job: &str) -> String {
    format!("{job}-preflight")
}

/// Name of the pod checking `spec_json` against the checkpoint or savepoint `state` before an
/// upgrade: one per spec and state checked, so a repeated start finds the same pod and a
/// changed spec (or a check retried against newer state) gets a new one.
pub fn preflight_pod_name(job: &str, spec_json: &str, state: &str) -> String {
    let key = format!("{spec_json}\n{state}");
    format!("{job}-preflight-{}", &fnv1a_hex(key.as_bytes())[..8])
}

/// A stable, dependency-free 64-bit FNV-1a hash in hex: enough to tell rendered configs or
/// specs apart in names and annotations.
pub(crate) fn fnv1a_hex(bytes: &[u8]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{hash:016x}")
}
