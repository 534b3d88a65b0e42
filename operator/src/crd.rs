//! The `StreamJob` custom resource (`weir.dev/v1alpha1`): spec and status types. The doc
//! comments on the fields are the CRD's descriptions, and the schemars attributes carry the
//! validation OpenAPI can express (enums, minimums, patterns, defaults); everything else is
//! checked by [`crate::validate`]. The schema must stay structural and use nothing newer than
//! what `apiextensions.k8s.io/v1` offered in Kubernetes 1.20 (no CEL rules).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Pattern every duration field accepts: the contract's duration grammar, an integer and an
/// optional unit (`500ms`, `30s`, `5m`, `5min`, `2h`, `7d`; a bare number is milliseconds),
/// exactly what the operator's validation and the worker accept.
pub const DURATION_PATTERN: &str = weir_contract::duration::PATTERN;

/// A Weir streaming job: the operator runs it as a JobManager and TaskManagers and carries its
/// state across upgrades, suspensions and restarts.
// Each printcolumn repeats `type_`, which clippy takes for a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, Deserialize, Serialize, PartialEq, JsonSchema)]
#[kube(
    group = "weir.dev",
    version = "v1alpha1",
    kind = "StreamJob",
    namespaced,
    shortname = "sj",
    status = "StreamJobStatus",
    doc = "A Weir streaming job, run by weir-operator as a JobManager and TaskManagers.",
    printcolumn(
        name = "Job State",
        type_ = "string",
        json_path = ".status.jobStatus.state",
        description = "State of the job as the JobManager reports it"
    ),
    printcolumn(
        name = "Lifecycle",
        type_ = "string",
        json_path = ".status.lifecycleState",
        description = "Lifecycle state of the resource"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether the job runs on the requested (or last stable) spec"
    ),
    printcolumn(
        name = "Degraded",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Degraded\")].reason",
        description = "Why the job needs attention (Healthy when it does not)"
    ),
    printcolumn(
        name = "Last Savepoint",
        type_ = "date",
        json_path = ".status.savepoints.last.timestamp",
        description = "Age of the newest completed savepoint"
    ),
    printcolumn(
        name = "Parallelism",
        type_ = "integer",
        json_path = ".spec.job.parallelism",
        description = "Default parallelism of the job"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct StreamJobSpec {
    /// Worker image running both the JobManager and the TaskManagers.
    /// Changing it restarts the job with its state (per `upgradeMode`).
    #[schemars(length(min = 1))]
    pub image: String,

    /// Pull policy for the worker image; the cluster default applies when unset.
    /// Changing it restarts the job with its state (per `upgradeMode`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<ImagePullPolicy>,

    /// Service account the worker pods run as; it needs no Kubernetes permissions.
    /// Changing it restarts the job with its state (per `upgradeMode`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,

    /// What to run and how to carry its state across changes.
    /// Changing it: see each field.
    pub job: JobSpec,

    /// JobManager pod settings.
    /// Changing it restarts the job with its state (per `upgradeMode`).
    #[serde(default)]
    pub job_manager: JobManagerSpec,

    /// TaskManager pod settings.
    /// Changing it restarts the job with its state (per `upgradeMode`).
    #[serde(default)]
    pub task_manager: TaskManagerSpec,

    /// Periodic checkpoints. Without them `last-state` upgrades and `restartFailed` have
    /// nothing to restore from.
    /// Changing it restarts the job with its state (per `upgradeMode`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoints: Option<CheckpointSpec>,

    /// Savepoint location, periodic savepoints and savepoint history retention. Required by
    /// `upgradeMode: savepoint`.
    /// Changing it: `dir` restarts the job with its state, the rest takes effect without a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub savepoints: Option<SavepointSpec>,

    /// S3-compatible object storage used by `s3://` checkpoint and savepoint directories.
    /// Changing it restarts the job with its state (per `upgradeMode`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageSpec>,

    /// Authentication and TLS of the job's REST API and of the RPC between its JobManager
    /// and TaskManagers, from Secrets the operator mounts into the pods (and reads itself to
    /// call the REST API). Unset: both are open to whoever reaches the pods (security.md).
    /// Changing it restarts the job with its state (per `upgradeMode`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security: Option<SecuritySpec>,

    /// Extra worker configuration keys (Flink-style names such as
    /// `execution.checkpointing.mode`), written into the worker config file. Keys the operator
    /// derives from other fields are rejected here.
    /// Changing it restarts the job with its state (per `upgradeMode`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, String>,

    /// A PodTemplateSpec merged under the generated JobManager and TaskManager pod templates:
    /// the operator's fields win, containers and volumes merge by name, anything else (sidecars,
    /// tolerations, node selectors, extra volumes) is kept.
    /// Changing it restarts the job with its state (per `upgradeMode`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserve_unknown_object")]
    pub pod_template: Option<serde_json::Value>,

    /// Health checks: a job that keeps restarting or stops completing checkpoints is
    /// redeployed from its newest completed checkpoint. Changing it takes effect without a
    /// restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthSpec>,

    /// Stop the job with a savepoint when the resource is deleted, recorded as a
    /// StreamJobSnapshot that outlives the StreamJob (a new StreamJob starts from it with
    /// `job.initialSnapshotName`). Unset: on whenever `savepoints.dir` is set. `false` opts
    /// out; `true` requires `savepoints.dir`. Changing it takes effect without a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub savepoint_on_deletion: Option<bool>,

    /// An Ingress for the JobManager's REST API and dashboard, created by the operator, owned by
    /// the StreamJob and removed with it (or when this field is removed). Changing it takes
    /// effect without a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<IngressSpec>,
}

/// The per-StreamJob Ingress, as the Flink Kubernetes operator's `spec.ingress`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IngressSpec {
    /// `host/path`, either part optional, with `{{name}}` and `{{namespace}}` replaced by the
    /// StreamJob's: `{{name}}.{{namespace}}.weir.example.com` (a host per job, path `/`) or
    /// `weir.example.com/{{namespace}}/{{name}}(/|$)(.*)` (one host, a path per job; a path
    /// with a regular expression has pathType `ImplementationSpecific`, pair it with the
    /// controller's rewrite annotation, e.g. nginx's `rewrite-target: /$2`).
    #[schemars(length(min = 1))]
    pub template: String,

    /// The IngressClass (`spec.ingressClassName`). Unset: the cluster's default class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_name: Option<String>,

    /// Annotations of the Ingress (a controller's settings: rewrites, auth, timeouts).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,

    /// Labels added to the operator's own labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,

    /// TLS: hosts and the Secret holding their certificate, as the Ingress's `spec.tls`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tls: Vec<IngressTls>,
}

/// One `spec.tls` entry of the Ingress.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IngressTls {
    /// Hosts the certificate covers (`{{name}}` and `{{namespace}}` are replaced).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// The Secret holding `tls.crt` and `tls.key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
}

/// What the job runs and how its state is carried.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobSpec {
    /// Streaming SQL statements to run. Exactly one of `sql` and `entry` is set.
    /// Changing it restarts the job with its state (per `upgradeMode`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sql: Option<String>,

    /// Name of a job registered in the worker image. Exactly one of `sql` and `entry` is set.
    /// Changing it restarts the job with its state (per `upgradeMode`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry: Option<String>,

    /// Arguments passed to the `entry` job.
    /// Changing it restarts the job with its state (per `upgradeMode`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,

    /// Default parallelism of the job's operators.
    /// Changing it rescales: the job restarts with its state (per `upgradeMode`) at the new parallelism.
    #[serde(default = "default_one")]
    #[schemars(range(min = 1))]
    pub parallelism: i32,

    /// How state is carried across a change that needs a restart: `stateless` starts empty,
    /// `savepoint` stops with a savepoint and restores from it, `last-state` restores from the
    /// latest completed checkpoint.
    /// Changing it takes effect without a restart.
    #[serde(default)]
    pub upgrade_mode: UpgradeMode,

    /// Desired state: `running`, or `suspended` to stop the job (with a savepoint in
    /// `savepoint` mode) and remove its pods while keeping the resource.
    /// Changing it suspends or resumes the job (with its state); nothing else restarts.
    #[serde(default)]
    pub state: DesiredJobState,

    /// Savepoint or checkpoint the first deployment restores from.
    /// Changing it takes effect without a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_savepoint_path: Option<String>,

    /// Name of a StreamJobSnapshot in the same namespace the first deployment restores from
    /// (for example the snapshot a deleted StreamJob left behind). The deployment waits until
    /// that snapshot is `Completed`. Not together with `initialSavepointPath`.
    /// Changing it takes effect without a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_snapshot_name: Option<String>,

    /// Allow restoring when the savepoint holds state no operator of the job claims.
    /// Changing it restarts the job with its state (per `upgradeMode`).
    #[serde(default)]
    pub allow_non_restored_state: bool,

    /// Change this number to take a savepoint now (the job keeps running).
    /// Changing it takes effect without a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub savepoint_trigger_nonce: Option<i64>,

    /// Change this number to redeploy the job, carrying state per `upgradeMode`.
    /// Changing it restarts the job with its state (that is its purpose).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_nonce: Option<i64>,

    /// Restart a FAILED job from its latest completed checkpoint.
    /// Changing it takes effect without a restart.
    #[serde(default)]
    pub restart_failed: bool,

    /// After an upgrade, roll back to the last stable spec when the new job is not RUNNING with
    /// a completed checkpoint within this duration (e.g. `5m`). Unset disables rollback.
    /// Changing it takes effect without a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub upgrade_readiness_timeout: Option<String>,

    /// Pre-flight state compatibility check before a `savepoint` or `last-state` upgrade:
    /// the new image runs `weir check` in a short-lived pod against the running job's newest
    /// checkpoint (else its last savepoint), and an upgrade whose job could not restore that
    /// state is refused before the running job is stopped. `bestEffort` (the default) refuses
    /// incompatible state and upgrades anyway, with an Event saying why the check was
    /// skipped, when it cannot run or decide (no checkpoint yet, image, storage, timeout);
    /// `required` refuses then too (and waits for a first checkpoint); `disabled` skips it.
    /// Changing it takes effect without a restart.
    #[serde(default)]
    pub preflight: PreflightMode,
}

/// Whether and how strictly upgrades are checked before the running job is stopped.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum PreflightMode {
    /// No check. (Not `off`: YAML 1.1, which kubectl reads, takes an unquoted `off` for
    /// `false`.)
    Disabled,
    /// Refuse incompatible state; upgrade with an Event when the check cannot run or decide.
    #[default]
    BestEffort,
    /// Refuse incompatible state, and refuse when the check cannot decide.
    Required,
}

/// How state is carried across a restart.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum UpgradeMode {
    /// Tear down and start from empty state (or `initialSavepointPath` on first deploy).
    #[default]
    Stateless,
    /// Stop with a savepoint, then restore from it.
    Savepoint,
    /// Restore from the latest completed checkpoint.
    LastState,
}

/// Desired state of the job.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DesiredJobState {
    #[default]
    Running,
    Suspended,
}

/// Container image pull policy.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
pub enum ImagePullPolicy {
    Always,
    IfNotPresent,
    Never,
}

impl ImagePullPolicy {
    /// The Kubernetes spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ImagePullPolicy::Always => "Always",
            ImagePullPolicy::IfNotPresent => "IfNotPresent",
            ImagePullPolicy::Never => "Never",
        }
    }
}

/// JobManager pod settings.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobManagerSpec {
    /// CPU and memory requests and limits of the JobManager container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

/// TaskManager pod settings.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaskManagerSpec {
    /// Number of TaskManager pods.
    #[serde(default = "default_one")]
    #[schemars(range(min = 1))]
    pub replicas: i32,

    /// Task slots per TaskManager (`taskmanager.numberOfTaskSlots`).
    #[serde(default = "default_one")]
    #[schemars(range(min = 1))]
    pub slots: i32,

    /// CPU and memory requests and limits of the TaskManager container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

impl Default for TaskManagerSpec {
    fn default() -> Self {
        TaskManagerSpec {
            replicas: 1,
            slots: 1,
            resources: None,
        }
    }
}

/// Periodic checkpoints.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointSpec {
    /// Checkpoint directory URI (`s3://bucket/path` or `file:///path`).
    #[schemars(regex(pattern = r"^(s3|file)://.+"))]
    pub dir: String,

    /// Time between checkpoints (e.g. `30s`).
    #[serde(default = "default_checkpoint_interval")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub interval: String,

    /// Completed checkpoints the live job keeps (`state.checkpoints.num-retained`).
    #[serde(default = "default_one")]
    #[schemars(range(min = 1))]
    pub retained: i32,
}

/// Savepoint location, periodic savepoints and history retention.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SavepointSpec {
    /// Savepoint directory URI (`s3://bucket/path` or `file:///path`).
    /// Changing it restarts the job with its state (per `upgradeMode`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^(s3|file)://.+"))]
    pub dir: Option<String>,

    /// Take a savepoint this often while the job runs (e.g. `6h`). Unset disables periodic
    /// savepoints.
    /// Changing it takes effect without a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub periodic_interval: Option<String>,

    /// Keep at most this many savepoints in the history; older ones are deleted from storage.
    /// Changing it takes effect without a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub history_max_count: Option<i32>,

    /// Delete savepoints older than this (e.g. `7d`). The newest completed savepoint and one an
    /// upgrade or restore still needs are never deleted.
    /// Changing it takes effect without a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub history_max_age: Option<String>,

    /// How long a savepoint may take before it counts as failed and is retried (e.g. `10m`).
    /// Changing it takes effect without a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub timeout: Option<String>,
}

/// Health checks that need no HA setup: the operator watches the JobManager's counters and
/// redeploys an unhealthy job from its newest completed checkpoint (last-state), with a
/// `HealthRestart` Warning Event and the `Degraded` condition saying why. A FINISHED job, or
/// one being suspended or deleted, is never restarted.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthSpec {
    /// Redeploy when the job restarts (restores from a checkpoint after a failure) more than
    /// this many times within `restartsWindow`. Unset: restarts are not checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub restarts_threshold: Option<i32>,

    /// The window `restartsThreshold` counts in (e.g. `10m`).
    #[serde(default = "default_restarts_window")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub restarts_window: String,

    /// Redeploy when the job, RUNNING, completes no checkpoint for this long (e.g. `10m`);
    /// counted from its deployment or its last completed checkpoint. Needs `checkpoints`.
    /// Unset: checkpoint progress is not checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub checkpoint_progress_timeout: Option<String>,
}

fn default_restarts_window() -> String {
    "10m".to_string()
}

/// S3-compatible object storage settings.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// Endpoint URL of an S3-compatible server (`s3.endpoint`); AWS when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^https?://.+"))]
    pub endpoint: Option<String>,

    /// Region (`s3.region`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,

    /// Use path-style bucket addressing (`s3.path-style-access`), as most S3-compatible servers
    /// need.
    #[serde(default)]
    pub path_style: bool,

    /// Name of a Secret in the job's namespace with the keys `AWS_ACCESS_KEY_ID` and
    /// `AWS_SECRET_ACCESS_KEY`; passed to the worker as environment variables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<String>,
}

/// Token authentication and TLS (`spec.security`).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecuritySpec {
    /// Name of a Secret in the job's namespace whose key `token` holds a shared secret (for
    /// example `kubectl create secret generic orders-token --from-literal=token=$(openssl
    /// rand -hex 32)`). It becomes the REST API's bearer token (every endpoint but the probes'
    /// requires it) and the secret the TaskManagers must prove to register with the
    /// JobManager. The operator sends it on its own REST calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub token_secret_name: Option<String>,

    /// TLS for the REST API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSpec>,

    /// Mutually authenticated TLS for the RPC between the JobManager and the TaskManagers:
    /// a Secret like `tls`'s, mounted on every pod, whose certificate is valid for
    /// `<name>-jobmanager` (`jobmanager.rpc.address`) and for both server and client
    /// authentication. Every process presents it and accepts only peers whose certificate
    /// chains to its `ca.crt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub internal_tls: Option<TlsSpec>,
}

/// The REST API's certificate (`spec.security.tls`).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TlsSpec {
    /// Name of a Secret in the job's namespace with the keys `tls.crt`, `tls.key` and
    /// `ca.crt` (PEM; what cert-manager writes). The certificate must be valid for the
    /// JobManager Service's name, `<name>-jobmanager.<namespace>.svc`: the JobManager serves
    /// HTTPS with it, and the operator trusts `ca.crt` and checks that name.
    #[schemars(length(min = 1))]
    pub secret_name: String,
}

/// Observed state, written by the operator before each action it takes.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StreamJobStatus {
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Lifecycle state of the resource.
    #[serde(default)]
    pub lifecycle_state: LifecycleState,

    /// The job as the JobManager last reported it.
    #[serde(default)]
    pub job_status: JobStatus,

    /// Completed, pending and historical savepoints.
    #[serde(default)]
    pub savepoints: SavepointStatus,

    /// Progress of the operator's own work, written ahead of each step.
    #[serde(default)]
    pub reconciliation: ReconciliationStatus,

    /// What the health checks (`spec.health`) have seen.
    #[serde(default)]
    pub health: HealthStatus,

    /// Standard conditions: `Ready` (running on the requested or last stable spec), `Running`
    /// (the JobManager reports RUNNING), `Reconciling` (a rollout, savepoint or deletion is in
    /// flight) and `Degraded` (the last step failed, the job FAILED or was rolled back, the
    /// spec is invalid, or the health check redeployed it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,

    /// Why the last step failed; cleared when a step succeeds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Lifecycle state of a StreamJob.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LifecycleState {
    /// Seen, nothing deployed yet.
    #[default]
    Created,
    /// Pods applied, the job is not RUNNING yet.
    Deploying,
    /// The job is RUNNING but has not completed a checkpoint since it was deployed.
    Running,
    /// The job is RUNNING and healthy; its spec is the last stable spec.
    Stable,
    /// A change is being rolled out (savepoint, teardown, redeploy).
    Upgrading,
    /// The job is stopped on request; the resource and its state are kept.
    Suspended,
    /// The upgraded job did not become ready in time; the last stable spec is being redeployed.
    RollingBack,
    /// The last stable spec runs again after a failed upgrade.
    RolledBack,
    /// The job failed and is not restarted automatically.
    Failed,
    /// The resource is being deleted.
    Deleting,
}

impl LifecycleState {
    /// Every state, for metrics that count resources per state.
    pub const ALL: [LifecycleState; 10] = [
        LifecycleState::Created,
        LifecycleState::Deploying,
        LifecycleState::Running,
        LifecycleState::Stable,
        LifecycleState::Upgrading,
        LifecycleState::Suspended,
        LifecycleState::RollingBack,
        LifecycleState::RolledBack,
        LifecycleState::Failed,
        LifecycleState::Deleting,
    ];
}

/// The job as the JobManager reported it.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobStatus {
    /// Job id assigned by the JobManager.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,

    /// Job state from the REST API (CREATED, RUNNING, FAILING, FAILED, CANCELLING, CANCELED,
    /// FINISHED, RESTARTING, SUSPENDED).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,

    /// When the current job was started (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,

    /// Location of the latest completed checkpoint of the current job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_checkpoint: Option<String>,

    /// Job ids of earlier runs whose checkpoint directories are deleted once the current run
    /// has completed its first checkpoint.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub previous_job_ids: Vec<String>,
}

/// Savepoints taken by the operator.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SavepointStatus {
    /// The newest completed savepoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<SavepointInfo>,

    /// Completed savepoints, oldest first, subject to `historyMaxCount`/`historyMaxAge`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<SavepointInfo>,

    /// A savepoint triggered and not finished yet. Recorded before the trigger is sent, so the
    /// same trigger id is reused after an operator restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<PendingSavepoint>,

    /// Savepoint locations removed from the history whose deletion from storage has not been
    /// confirmed yet.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disposing: Vec<String>,

    /// The `savepointTriggerNonce` the last manual savepoint was taken for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_trigger_nonce: Option<i64>,
}

/// A completed savepoint.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SavepointInfo {
    /// Savepoint location URI.
    pub location: String,
    /// When it completed (RFC 3339).
    pub timestamp: String,
    /// Why it was taken.
    pub trigger: SavepointTrigger,
    /// The job it was taken of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    /// Name of the StreamJobSnapshot recording it, once the operator has created it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
}

/// Why a savepoint was taken.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SavepointTrigger {
    /// Before an upgrade (stop-with-savepoint).
    Upgrade,
    /// Before suspending (stop-with-savepoint).
    Suspend,
    /// Before deleting the resource (stop-with-savepoint).
    Deletion,
    /// `savepointTriggerNonce` changed.
    Manual,
    /// `savepoints.periodicInterval` elapsed.
    Periodic,
}

impl SavepointTrigger {
    /// Whether this savepoint stops the job (stop-with-savepoint) rather than leaving it running.
    pub fn stops_job(self) -> bool {
        matches!(
            self,
            SavepointTrigger::Upgrade | SavepointTrigger::Suspend | SavepointTrigger::Deletion
        )
    }
}

/// A savepoint that has been (or is about to be) triggered.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PendingSavepoint {
    /// Trigger id chosen by the operator and sent with the request, so re-sending it after a
    /// restart cannot start a second savepoint.
    pub trigger_id: String,
    /// Job the savepoint is taken of.
    pub job_id: String,
    /// Why it was triggered.
    pub trigger: SavepointTrigger,
    /// When it was triggered (RFC 3339); the timeout counts from here.
    pub triggered_at: String,
    /// The `savepointTriggerNonce` a manual savepoint answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<i64>,
}

/// What the health checks have seen of the current run.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthStatus {
    /// The run the counters below belong to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    /// Start of the current restart-counting window (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_start: Option<String>,
    /// The job's restore count at the start of the window.
    #[serde(default)]
    pub restores_at_window_start: u64,
    /// The newest completed checkpoint seen, and when it was first seen (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_checkpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_checkpoint_at: Option<String>,
    /// Why the health check last redeployed the job; cleared once it is stable again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_restart_reason: Option<String>,
    /// Redeployments by the health check since the resource was created.
    #[serde(default)]
    pub restarts: u32,
}

/// The operator's own progress, written ahead of each action.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReconciliationStatus {
    /// JSON of the spec the operator is deploying or has deployed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reconciled_spec: Option<String>,

    /// JSON of the last spec whose job became RUNNING and completed a checkpoint; the rollback
    /// target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_stable_spec: Option<String>,

    /// Step of the current rollout.
    #[serde(default)]
    pub phase: ReconcilePhase,

    /// What the current rollout is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intent: Option<RolloutIntent>,

    /// Savepoint or checkpoint the next deployment restores from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_path: Option<String>,

    /// When the current deployment was applied (RFC 3339); the readiness timeout counts from
    /// here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployed_at: Option<String>,

    /// Failed attempts of the current step, for backoff.
    #[serde(default)]
    pub retries: u32,

    /// Restarts of FAILED jobs since the job was last stable; spaces out the next restart.
    #[serde(default)]
    pub failed_restarts: u32,

    /// Earliest time of the next attempt after a failure (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<String>,

    /// The pre-flight check in flight (phase `Checking`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preflight: Option<PreflightStatus>,

    /// A spec the pre-flight check refused: it is not rolled out (and not checked again)
    /// until the spec changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<PreflightRefusal>,
}

/// A spec the pre-flight check refused, and why.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PreflightRefusal {
    /// JSON of the refused spec.
    pub spec: String,
    /// Why: the operators whose state it cannot restore, or why the check could not decide.
    pub message: String,
}

/// A pre-flight check: what it checks and since when. Its pod is `NAME-preflight-<hash of
/// the spec and state>`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PreflightStatus {
    /// The checkpoint or savepoint it checks the new spec against.
    pub state: String,
    /// JSON of the spec being checked.
    pub spec: String,
    /// When the check started (RFC 3339).
    pub started_at: String,
}

/// Step of a rollout. Every rollout walks a prefix of Stopping → TearingDown → Deploying →
/// AwaitingReady and ends in Idle; a checked upgrade (`job.preflight`) starts with Checking.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
pub enum ReconcilePhase {
    /// Nothing in flight.
    #[default]
    Idle,
    /// Checking that the new spec can restore the running job's state (`job.preflight`),
    /// before anything is stopped.
    Checking,
    /// Taking the savepoint or choosing the checkpoint the next deployment restores from.
    Stopping,
    /// Removing the old JobManager and TaskManagers.
    TearingDown,
    /// Applying the new deployment.
    Deploying,
    /// Waiting for the new job to run and complete a checkpoint.
    AwaitingReady,
}

/// What a rollout is for.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
pub enum RolloutIntent {
    /// First deployment of the resource.
    Deploy,
    /// The spec changed.
    Upgrade,
    /// `job.state` became `suspended`.
    Suspend,
    /// `job.state` became `running` again.
    Resume,
    /// A FAILED job is restarted (`restartFailed`).
    Restart,
    /// The upgraded job did not become ready; the last stable spec is redeployed.
    Rollback,
}

/// A condition in the standard Kubernetes shape.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Condition type, e.g. `Ready`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    #[schemars(regex(pattern = r"^(True|False|Unknown)$"))]
    pub status: String,
    /// One CamelCase word saying why.
    pub reason: String,
    /// Human-readable detail.
    #[serde(default)]
    pub message: String,
    /// When the status last changed (RFC 3339).
    pub last_transition_time: String,
    /// Generation the condition was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

fn default_one() -> i32 {
    1
}

fn default_checkpoint_interval() -> String {
    "1m".to_string()
}

/// Schema of a free-form object: the apiserver keeps its fields as given. The operator parses
/// it as a PodTemplateSpec during validation.
fn preserve_unknown_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// The parts of a spec whose change restarts the job, carrying its state per `upgradeMode`,
/// as each field's doc comment says ("Changing it …"). Every field is named in
/// [`StreamJobSpec::restart_fields`], so a new field does not compile until it is classified.
#[derive(Debug, PartialEq)]
pub struct RestartFields<'a> {
    image: &'a String,
    image_pull_policy: &'a Option<ImagePullPolicy>,
    service_account: &'a Option<String>,
    sql: &'a Option<String>,
    entry: &'a Option<String>,
    args: &'a Vec<String>,
    parallelism: i32,
    allow_non_restored_state: bool,
    restart_nonce: Option<i64>,
    job_manager: &'a JobManagerSpec,
    task_manager: &'a TaskManagerSpec,
    checkpoints: &'a Option<CheckpointSpec>,
    savepoint_dir: Option<&'a String>,
    storage: &'a Option<StorageSpec>,
    security: &'a Option<SecuritySpec>,
    config: &'a BTreeMap<String, String>,
    pod_template: &'a Option<serde_json::Value>,
}

impl StreamJobSpec {
    /// What of this spec restarts the job when it changes; see [`RestartFields`].
    pub fn restart_fields(&self) -> RestartFields<'_> {
        let StreamJobSpec {
            image,
            image_pull_policy,
            service_account,
            job,
            job_manager,
            task_manager,
            checkpoints,
            savepoints,
            storage,
            security,
            config,
            pod_template,
            health: _,
            savepoint_on_deletion: _,
            ingress: _,
        } = self;
        let JobSpec {
            sql,
            entry,
            args,
            parallelism,
            upgrade_mode: _,
            state: _,
            initial_savepoint_path: _,
            initial_snapshot_name: _,
            allow_non_restored_state,
            savepoint_trigger_nonce: _,
            restart_nonce,
            restart_failed: _,
            upgrade_readiness_timeout: _,
            preflight: _,
        } = job;
        RestartFields {
            image,
            image_pull_policy,
            service_account,
            sql,
            entry,
            args,
            parallelism: *parallelism,
            allow_non_restored_state: *allow_non_restored_state,
            restart_nonce: *restart_nonce,
            job_manager,
            task_manager,
            checkpoints,
            savepoint_dir: savepoints.as_ref().and_then(|s| s.dir.as_ref()),
            storage,
            security,
            config,
            pod_template,
        }
    }

    /// The savepoint directory, if configured.
    pub fn savepoint_dir(&self) -> Option<&str> {
        self.savepoints.as_ref().and_then(|s| s.dir.as_deref())
    }

    /// Whether deleting the resource stops the job with a savepoint: `savepointOnDeletion`,
    /// on by default whenever there is a savepoint directory.
    pub fn deletion_savepoint(&self) -> bool {
        self.savepoint_on_deletion
            .unwrap_or(self.savepoint_dir().is_some())
    }
}

/// A savepoint or checkpoint of a StreamJob as a resource of its own. Creating one takes a
/// savepoint of the referenced job (or registers `spec.path`); deleting one with
/// `disposeOnDelete` deletes its objects from storage, whether the job runs or not.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, Deserialize, Serialize, PartialEq, JsonSchema)]
#[kube(
    group = "weir.dev",
    version = "v1alpha1",
    kind = "StreamJobSnapshot",
    namespaced,
    shortname = "sjs",
    status = "StreamJobSnapshotStatus",
    doc = "A savepoint or checkpoint of a StreamJob, taken or registered by weir-operator.",
    printcolumn(
        name = "Job",
        type_ = "string",
        json_path = ".spec.jobName",
        description = "The StreamJob this snapshot is of"
    ),
    printcolumn(
        name = "Kind",
        type_ = "string",
        json_path = ".spec.kind",
        description = "savepoint or checkpoint"
    ),
    printcolumn(
        name = "State",
        type_ = "string",
        json_path = ".status.state",
        description = "Pending, InProgress, Completed or Failed"
    ),
    printcolumn(
        name = "Trigger",
        type_ = "string",
        json_path = ".status.trigger",
        description = "Why it was taken"
    ),
    printcolumn(
        name = "Path",
        type_ = "string",
        json_path = ".status.path",
        description = "Where it is in storage"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct StreamJobSnapshotSpec {
    /// Name of the StreamJob (same namespace) the snapshot is of. Its `savepoints.dir` is
    /// where a new savepoint goes, and its `storage` how the operator reaches it.
    #[schemars(length(min = 1))]
    pub job_name: String,

    /// `savepoint` or `checkpoint`. A checkpoint cannot be taken on request: a `checkpoint`
    /// snapshot registers `path`.
    #[serde(default)]
    pub kind: SnapshotKind,

    /// An existing savepoint or checkpoint to register instead of taking a new savepoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^(s3|file)://.+"))]
    pub path: Option<String>,

    /// Delete the snapshot's objects from storage when this resource is deleted (done by the
    /// operator, also while the job is suspended or gone). Off by default: the data is kept.
    #[serde(default)]
    pub dispose_on_delete: bool,
}

/// What a StreamJobSnapshot holds.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SnapshotKind {
    #[default]
    Savepoint,
    Checkpoint,
}

/// Observed state of a StreamJobSnapshot, written by the operator before each action.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StreamJobSnapshotStatus {
    /// `Pending` (waiting to trigger or retry), `InProgress`, `Completed` or `Failed` (for
    /// good; `reason` says why).
    #[serde(default)]
    pub state: SnapshotState,

    /// Location of the completed snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,

    /// Why it was taken; absent for a registered `spec.path`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<SavepointTrigger>,

    /// The savepoint trigger id, recorded before the request is sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger_id: Option<String>,

    /// The job it was taken of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,

    /// Bytes in storage, when the operator could list them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<i64>,

    /// When the current attempt was triggered (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub triggered_at: Option<String>,

    /// When it completed or failed for good (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,

    /// Why the last attempt failed (with the retry to come), or why it failed for good.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,

    /// Failed attempts so far.
    #[serde(default)]
    pub attempts: u32,

    /// Earliest time of the next attempt (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<String>,

    /// The job's storage settings when the snapshot completed, so the operator can delete it
    /// after the StreamJob is gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageSpec>,
}

/// Where a StreamJobSnapshot is in its life.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
pub enum SnapshotState {
    #[default]
    Pending,
    InProgress,
    Completed,
    Failed,
}
