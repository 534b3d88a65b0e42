//! The REST API between a JobManager and its clients (the `weir` CLI, the operator, curl):
//! every path as a [`Route`], and the JSON bodies the clients send and read as typed values.
//! Paths and field names are Flink's (its `*Headers` and message classes), so Flink tooling
//! carries over. The server builds these types and the clients parse them, so a renamed field
//! is one edit; endpoints only the dashboard (worker/cluster/dashboard) or no client reads
//! (`/overview`, `/config`, `/taskmanagers`, `/jobs/:id/exceptions`,
//! `/jobs/:id/checkpoints/config`, `/metrics`) have a route but their bodies are the
//! server's alone. docs/rest-api.md describes each endpoint.
//!
//! Response types read leniently (a missing field takes its default), as Flink's clients do:
//! a client can read a JobManager that reports less than Weir does.
//!
//! ```
//! use weir_contract::rest::Route;
//! let route = Route::SavepointStatus { job: "a1b2".into(), trigger: "t1".into() };
//! assert_eq!(route.path(), "/jobs/a1b2/savepoints/t1");
//! assert_eq!(Route::parse(&route.path()), Some(route));
//! ```

use crate::JobState;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The REST port a JobManager serves when `rest.port` is unset (Flink's), and the one the
/// job-control commands and the operator call.
pub const DEFAULT_PORT: u16 = 8081;

/// One endpoint of the REST API, with its path parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET /overview`: cluster counts.
    Overview,
    /// `GET /config`: the dashboard configuration.
    Config,
    /// `GET /taskmanagers`: the registered TaskManagers.
    TaskManagers,
    /// `GET /metrics`: Prometheus text.
    Metrics,
    /// `GET /healthz`: liveness.
    Healthz,
    /// `GET /readyz`: readiness ([`Readiness`]).
    Readyz,
    /// `GET /jobs`: [`JobsList`].
    Jobs,
    /// `GET /jobs/overview`: [`JobsOverview`].
    JobsOverview,
    /// `GET /jobs/:jobid` ([`JobDetails`]); `PATCH /jobs/:jobid?mode=cancel` cancels.
    Job {
        /// The job id.
        job: String,
    },
    /// `GET /jobs/:jobid/checkpoints`: [`CheckpointingStatistics`].
    Checkpoints {
        /// The job id.
        job: String,
    },
    /// `GET /jobs/:jobid/checkpoints/config`.
    CheckpointConfig {
        /// The job id.
        job: String,
    },
    /// `GET /jobs/:jobid/exceptions`.
    Exceptions {
        /// The job id.
        job: String,
    },
    /// `POST /jobs/:jobid/savepoints`: [`SavepointTriggerRequest`] → [`TriggerResponse`].
    TriggerSavepoint {
        /// The job id.
        job: String,
    },
    /// `POST /jobs/:jobid/stop`: [`StopWithSavepointRequest`] → [`TriggerResponse`].
    Stop {
        /// The job id.
        job: String,
    },
    /// `GET /jobs/:jobid/savepoints/:triggerid`: [`SavepointStatus`].
    SavepointStatus {
        /// The job id.
        job: String,
        /// The trigger id.
        trigger: String,
    },
    /// `GET /jobs/:jobid/plan`: [`JobPlan`].
    JobPlan {
        /// The job id.
        job: String,
    },
    /// `GET /jobs/:jobid/vertices/:vertexid`: [`VertexDetails`], per subtask.
    Vertex {
        /// The job id.
        job: String,
        /// The vertex id (as in [`Vertex::id`]).
        vertex: String,
    },
    /// `GET /jobs/:jobid/vertices/:vertexid/backpressure`: [`VertexBackPressure`].
    VertexBackPressure {
        /// The job id.
        job: String,
        /// The vertex id.
        vertex: String,
    },
    /// `GET /jobs/:jobid/vertices/:vertexid/watermarks`: a list of [`WatermarkMetric`].
    VertexWatermarks {
        /// The job id.
        job: String,
        /// The vertex id.
        vertex: String,
    },
    /// `GET /jobs/:jobid/checkpoints/details/:checkpointid`: [`CheckpointStatistics`].
    CheckpointDetails {
        /// The job id.
        job: String,
        /// The checkpoint id.
        checkpoint: u64,
    },
    /// `GET /jobs/:jobid/checkpoints/details/:checkpointid/subtasks/:vertexid`:
    /// [`TaskCheckpointDetails`], one vertex's part of a checkpoint per subtask.
    CheckpointSubtasks {
        /// The job id.
        job: String,
        /// The checkpoint id.
        checkpoint: u64,
        /// The vertex id.
        vertex: String,
    },
    /// `GET /taskmanagers/:taskmanagerid`: one TaskManager with its memory.
    TaskManager {
        /// The TaskManager id.
        taskmanager: String,
    },
    /// `GET /jobmanager/config`: the process's configuration as `[{"key", "value"}]`
    /// ([`ConfigEntry`]), secrets redacted.
    JobManagerConfig,
    /// `GET /` and `GET /web/:file`: the dashboard's page and assets (no token needed: they
    /// hold no data; the page asks for the token).
    Dashboard {
        /// The asset's file name; [`DASHBOARD_INDEX`] for `/`.
        asset: String,
    },
}

/// The dashboard asset served at `/`.
pub const DASHBOARD_INDEX: &str = "index.html";

/// Where the dashboard's assets other than the page are served: `/web/<file>`.
const WEB: &str = "web";

const JOBS: &str = "jobs";

impl Route {
    /// The path, without query.
    pub fn path(&self) -> String {
        match self {
            Route::Overview => "/overview".into(),
            Route::Config => "/config".into(),
            Route::TaskManagers => "/taskmanagers".into(),
            Route::Metrics => "/metrics".into(),
            Route::Healthz => "/healthz".into(),
            Route::Readyz => "/readyz".into(),
            Route::Jobs => format!("/{JOBS}"),
            Route::JobsOverview => format!("/{JOBS}/overview"),
            Route::Job { job } => format!("/{JOBS}/{job}"),
            Route::Checkpoints { job } => format!("/{JOBS}/{job}/checkpoints"),
            Route::CheckpointConfig { job } => format!("/{JOBS}/{job}/checkpoints/config"),
            Route::Exceptions { job } => format!("/{JOBS}/{job}/exceptions"),
            Route::TriggerSavepoint { job } => format!("/{JOBS}/{job}/savepoints"),
            Route::Stop { job } => format!("/{JOBS}/{job}/stop"),
            Route::SavepointStatus { job, trigger } => {
                format!("/{JOBS}/{job}/savepoints/{trigger}")
            }
            Route::JobPlan { job } => format!("/{JOBS}/{job}/plan"),
            Route::Vertex { job, vertex } => format!("/{JOBS}/{job}/vertices/{vertex}"),
            Route::VertexBackPressure { job, vertex } => {
                format!("/{JOBS}/{job}/vertices/{vertex}/backpressure")
            }
            Route::VertexWatermarks { job, vertex } => {
                format!("/{JOBS}/{job}/vertices/{vertex}/watermarks")
            }
            Route::CheckpointDetails { job, checkpoint } => {
                format!("/{JOBS}/{job}/checkpoints/details/{checkpoint}")
            }
            Route::CheckpointSubtasks {
                job,
                checkpoint,
                vertex,
            } => format!("/{JOBS}/{job}/checkpoints/details/{checkpoint}/subtasks/{vertex}"),
            Route::TaskManager { taskmanager } => format!("/taskmanagers/{taskmanager}"),
            Route::JobManagerConfig => "/jobmanager/config".into(),
            Route::Dashboard { asset } if asset == DASHBOARD_INDEX => "/".into(),
            Route::Dashboard { asset } => format!("/{WEB}/{asset}"),
        }
    }

    /// The route a request path (without query) names; `None` for any other path.
    pub fn parse(path: &str) -> Option<Route> {
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        let job = |id: &str| id.to_string();
        Some(match parts.as_slice() {
            ["overview"] => Route::Overview,
            ["config"] => Route::Config,
            ["taskmanagers"] => Route::TaskManagers,
            ["metrics"] => Route::Metrics,
            ["healthz"] => Route::Healthz,
            ["readyz"] => Route::Readyz,
            [JOBS] => Route::Jobs,
            [JOBS, "overview"] => Route::JobsOverview,
            [JOBS, id] => Route::Job { job: job(id) },
            [JOBS, id, "checkpoints"] => Route::Checkpoints { job: job(id) },
            [JOBS, id, "checkpoints", "config"] => Route::CheckpointConfig { job: job(id) },
            [JOBS, id, "exceptions"] => Route::Exceptions { job: job(id) },
            [JOBS, id, "savepoints"] => Route::TriggerSavepoint { job: job(id) },
            [JOBS, id, "stop"] => Route::Stop { job: job(id) },
            [JOBS, id, "savepoints", trigger] => Route::SavepointStatus {
                job: job(id),
                trigger: trigger.to_string(),
            },
            [JOBS, id, "plan"] => Route::JobPlan { job: job(id) },
            [JOBS, id, "vertices", v] => Route::Vertex {
                job: job(id),
                vertex: v.to_string(),
            },
            [JOBS, id, "vertices", v, "backpressure"] => Route::VertexBackPressure {
                job: job(id),
                vertex: v.to_string(),
            },
            [JOBS, id, "vertices", v, "watermarks"] => Route::VertexWatermarks {
                job: job(id),
                vertex: v.to_string(),
            },
            [JOBS, id, "checkpoints", "details", c] => Route::CheckpointDetails {
                job: job(id),
                checkpoint: c.parse().ok()?,
            },
            [JOBS, id, "checkpoints", "details", c, "subtasks", v] => Route::CheckpointSubtasks {
                job: job(id),
                checkpoint: c.parse().ok()?,
                vertex: v.to_string(),
            },
            ["taskmanagers", tm] => Route::TaskManager {
                taskmanager: tm.to_string(),
            },
            ["jobmanager", "config"] => Route::JobManagerConfig,
            [""] => Route::Dashboard {
                asset: DASHBOARD_INDEX.into(),
            },
            [WEB, file] if !file.is_empty() => Route::Dashboard {
                asset: file.to_string(),
            },
            _ => return None,
        })
    }

    /// The HTTP methods the route answers, as an `Allow` header lists them.
    pub fn allow(&self) -> &'static str {
        match self {
            Route::Job { .. } => "GET, PATCH",
            Route::TriggerSavepoint { .. } | Route::Stop { .. } => "POST",
            _ => "GET",
        }
    }
}

/// The query parameter of `PATCH /jobs/:jobid` that says what to do, and its one value.
pub const CANCEL_QUERY: (&str, &str) = ("mode", "cancel");

/// Path and query that cancel a job: `/jobs/:jobid?mode=cancel`.
pub fn cancel_path(job: &str) -> String {
    format!(
        "{}?{}={}",
        Route::Job { job: job.into() }.path(),
        CANCEL_QUERY.0,
        CANCEL_QUERY.1
    )
}

/// Every error answer: `{"errors": ["what was wrong and what to do"]}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The messages.
    #[serde(default)]
    pub errors: Vec<String>,
}

/// `GET /readyz` when ready (`{"status": "ready", "job": id}`) and `GET /healthz`
/// (`{"status": "ok"}`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Readiness {
    /// `ok` or `ready`.
    pub status: String,
    /// The job that makes the process ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
}

/// `GET /jobs`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct JobsList {
    /// Every job the server knows.
    #[serde(default)]
    pub jobs: Vec<JobIdWithState>,
}

/// One job of [`JobsList`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobIdWithState {
    /// The job id (32 hex digits).
    pub id: String,
    /// Its state.
    pub status: JobState,
}

/// `GET /jobs/overview`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct JobsOverview {
    /// Every job the server knows.
    #[serde(default)]
    pub jobs: Vec<JobOverview>,
}

/// One job of [`JobsOverview`]. Times are epoch milliseconds, `-1` for "not yet".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobOverview {
    /// The job id.
    pub jid: String,
    /// The job's name.
    #[serde(default)]
    pub name: String,
    /// Its state.
    pub state: JobState,
    /// When it started.
    #[serde(rename = "start-time", default)]
    pub start_time: i64,
    /// When it ended.
    #[serde(rename = "end-time", default = "minus_one")]
    pub end_time: i64,
    /// Milliseconds from start to end (or now).
    #[serde(default)]
    pub duration: i64,
    /// When its state last changed.
    #[serde(rename = "last-modification", default)]
    pub last_modification: i64,
    /// Its subtasks by state.
    #[serde(default)]
    pub tasks: TaskCounts,
}

fn minus_one() -> i64 {
    -1
}

/// Subtasks by execution state, in Flink's shape.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
#[allow(missing_docs)]
pub struct TaskCounts {
    pub total: u64,
    pub created: u64,
    pub scheduled: u64,
    pub deploying: u64,
    pub running: u64,
    pub finished: u64,
    pub canceling: u64,
    pub canceled: u64,
    pub failed: u64,
    pub reconciling: u64,
    pub initializing: u64,
}

/// `GET /jobs/:jobid`: one vertex per task (an operator chain).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobDetails {
    /// The job id.
    pub jid: String,
    /// The job's name.
    #[serde(default)]
    pub name: String,
    /// Whether stop (without savepoint) is supported: never.
    #[serde(rename = "isStoppable", default)]
    pub is_stoppable: bool,
    /// Its state.
    pub state: JobState,
    /// `STREAMING`.
    #[serde(rename = "job-type", default)]
    pub job_type: String,
    /// When it started (epoch ms).
    #[serde(rename = "start-time", default)]
    pub start_time: i64,
    /// When it ended, `-1` while running.
    #[serde(rename = "end-time", default = "minus_one")]
    pub end_time: i64,
    /// Milliseconds from start to end (or now).
    #[serde(default)]
    pub duration: i64,
    /// The server's clock when answering.
    #[serde(default)]
    pub now: i64,
    /// When the job entered each state it has been in.
    #[serde(default)]
    pub timestamps: BTreeMap<JobState, i64>,
    /// Its tasks.
    #[serde(default)]
    pub vertices: Vec<Vertex>,
    /// All subtasks by state.
    #[serde(rename = "status-counts", default)]
    pub status_counts: TaskCounts,
    /// The job graph.
    #[serde(default)]
    pub plan: Plan,
}

/// One task of [`JobDetails`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vertex {
    /// A stable 32-hex-digit id.
    pub id: String,
    /// The chain's name.
    pub name: String,
    /// Its subtasks.
    pub parallelism: u64,
    /// The job's state, or `FINISHED` when the task's subtasks have all finished.
    pub status: JobState,
    /// When it started (epoch ms).
    #[serde(rename = "start-time")]
    pub start_time: i64,
    /// When it ended, `-1` while running.
    #[serde(rename = "end-time")]
    pub end_time: i64,
    /// Milliseconds from start to end (or now).
    pub duration: i64,
    /// Its subtasks by state.
    pub tasks: TaskCounts,
    /// Its record counts.
    pub metrics: VertexMetrics,
}

/// Record counts and time shares of a [`Vertex`] (or one subtask): `read-records` came from
/// other tasks (0 for sources), `write-records` were emitted by its last operator. Bytes are
/// not measured.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
#[allow(missing_docs)]
pub struct VertexMetrics {
    pub read_bytes: u64,
    pub read_bytes_complete: bool,
    pub write_bytes: u64,
    pub write_bytes_complete: bool,
    pub read_records: u64,
    pub read_records_complete: bool,
    pub write_records: u64,
    pub write_records_complete: bool,
    pub accumulated_backpressured_time: u64,
    /// Milliseconds spent waiting for input, summed over subtasks.
    pub accumulated_idle_time: u64,
    /// Milliseconds neither backpressured nor idle, summed over subtasks.
    pub accumulated_busy_time: u64,
}

/// The job graph of [`JobDetails`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Plan {
    /// The job id.
    pub jid: String,
    /// The job's name.
    pub name: String,
    /// `STREAMING`.
    #[serde(rename = "type")]
    pub job_type: String,
    /// One node per vertex.
    pub nodes: Vec<PlanNode>,
}

/// One node of a [`Plan`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
#[allow(missing_docs)]
pub struct PlanNode {
    pub id: String,
    pub parallelism: u64,
    pub operator: String,
    pub description: String,
    /// The edges feeding it (none for a source).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<PlanInput>,
}

/// An edge into a [`PlanNode`], as Flink's plan has it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct PlanInput {
    /// The input's position.
    pub num: u64,
    /// The producing node's id.
    pub id: String,
    /// How records are distributed: `FORWARD`, `REBALANCE` or `HASH`.
    pub ship_strategy: String,
    /// `pipelined_bounded`: bounded channels, as Flink's streaming exchanges.
    pub exchange: String,
}

/// `GET /jobs/:jobid/plan`: Flink's `{"plan": ...}`, and for SQL jobs the streaming plan
/// the SQL planner printed for EXPLAIN.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct JobPlan {
    /// The job graph.
    pub plan: Plan,
    /// The EXPLAIN text of a SQL job; `null` for other jobs.
    #[serde(rename = "sql-explain")]
    pub sql_explain: Option<String>,
}

/// `GET /jobs/:jobid/vertices/:vertexid`: one vertex and its subtasks.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct VertexDetails {
    /// The vertex id.
    pub id: String,
    /// The chain's name.
    pub name: String,
    /// Its subtasks.
    pub parallelism: u64,
    /// The server's clock when answering.
    pub now: i64,
    /// One entry per subtask.
    pub subtasks: Vec<SubtaskDetails>,
    /// What Flink reports only through its metric system or checkpoint details.
    pub weir: VertexGauges,
}

/// The `weir` part of [`VertexDetails`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct VertexGauges {
    /// Bytes its operators' state takes in the latest completed checkpoint or savepoint
    /// (`null` before the first, or when the server does not know the vertex's operators).
    pub checkpointed_state_size: Option<u64>,
}

/// One subtask of [`VertexDetails`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubtaskDetails {
    /// The subtask index.
    pub subtask: u64,
    /// Its state.
    pub status: JobState,
    /// The job's restarts so far (Flink's attempt number).
    pub attempt: u64,
    /// The TaskManager it runs on (`local` in `weir run`; empty while not deployed).
    #[serde(rename = "taskmanager-id")]
    pub taskmanager_id: String,
    /// That TaskManager's host (its data address without the port; empty in `weir run`).
    #[serde(default)]
    pub host: String,
    /// When it started (epoch ms).
    #[serde(rename = "start-time")]
    pub start_time: i64,
    /// When it ended, `-1` while running.
    #[serde(rename = "end-time")]
    pub end_time: i64,
    /// Milliseconds from start to end (or now).
    pub duration: i64,
    /// Its counters.
    pub metrics: VertexMetrics,
    /// What Flink reports only through its metric system.
    pub weir: SubtaskGauges,
}

/// The `weir` part of [`SubtaskDetails`]: live values per subtask.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct SubtaskGauges {
    /// Its input watermark (epoch ms; `i64::MIN` before the first).
    pub current_input_watermark: i64,
    /// Keyed state entries its operators hold.
    pub state_entries: u64,
    /// Records received per second, over the last second or more.
    pub records_in_per_second: f64,
    /// Records emitted per second.
    pub records_out_per_second: f64,
}

/// `GET /jobs/:jobid/vertices/:vertexid/backpressure`: the share of time each subtask
/// spent blocked on full output channels, waiting for input, and working, over the last
/// second or more. Levels are Flink's: `ok` up to 10%, `low` up to 50%, `high` above.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct VertexBackPressure {
    /// `ok` (measured) or `deprecated`.
    pub status: String,
    /// The worst subtask's level.
    #[serde(rename = "backpressure-level")]
    pub backpressure_level: String,
    /// When the ratios were measured (epoch ms).
    #[serde(rename = "end-timestamp")]
    pub end_timestamp: i64,
    /// One entry per subtask.
    pub subtasks: Vec<SubtaskBackPressure>,
}

/// One subtask of [`VertexBackPressure`].
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SubtaskBackPressure {
    /// The subtask index.
    pub subtask: u64,
    /// `ok`, `low` or `high`.
    #[serde(rename = "backpressure-level")]
    pub backpressure_level: String,
    /// Backpressured share, 0–1.
    pub ratio: f64,
    /// Idle share, 0–1.
    #[serde(rename = "idleRatio")]
    pub idle_ratio: f64,
    /// Busy share, 0–1.
    #[serde(rename = "busyRatio")]
    pub busy_ratio: f64,
}

/// One entry of `GET /jobs/:jobid/vertices/:vertexid/watermarks`: Flink's metric shape,
/// `{"id": "<subtask>.currentInputWatermark", "value": "<epoch ms>"}` (a string, as Flink's).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct WatermarkMetric {
    /// `<subtask>.currentInputWatermark`.
    pub id: String,
    /// The watermark in epoch milliseconds.
    pub value: String,
}

/// One entry of `GET /jobmanager/config`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ConfigEntry {
    /// The option's key.
    pub key: String,
    /// Its value (`******` for secrets).
    pub value: String,
}

/// `GET /jobs/:jobid/checkpoints`. Counts include savepoints, as Flink's do.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct CheckpointingStatistics {
    /// How many of each.
    pub counts: CheckpointCounts,
    /// Sizes and durations of the completed ones in the history.
    pub summary: CheckpointSummary,
    /// The latest of each kind.
    pub latest: LatestCheckpoints,
    /// The last 10 checkpoints and savepoints, newest first.
    pub history: Vec<CheckpointStatistics>,
}

/// Counts of [`CheckpointingStatistics`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
#[allow(missing_docs)]
pub struct CheckpointCounts {
    pub restored: u64,
    pub total: u64,
    pub in_progress: u64,
    pub completed: u64,
    pub failed: u64,
}

/// Summary of [`CheckpointingStatistics`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
#[allow(missing_docs)]
pub struct CheckpointSummary {
    pub state_size: MinMaxAvg,
    pub checkpointed_size: MinMaxAvg,
    pub end_to_end_duration: MinMaxAvg,
}

/// Minimum, maximum and average of a statistic.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
#[allow(missing_docs)]
pub struct MinMaxAvg {
    pub min: i64,
    pub max: i64,
    pub avg: i64,
}

/// The `latest` part of [`CheckpointingStatistics`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct LatestCheckpoints {
    /// The latest completed checkpoint (not savepoint): what a `last-state` restore uses.
    pub completed: Option<CheckpointStatistics>,
    /// The latest savepoint.
    pub savepoint: Option<CheckpointStatistics>,
    /// The latest failed checkpoint or savepoint.
    pub failed: Option<CheckpointStatistics>,
    /// Where the job's state was last restored from.
    pub restored: Option<RestoredCheckpoint>,
}

/// Where a checkpoint or savepoint is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CheckpointState {
    /// Triggered, not yet complete.
    InProgress,
    /// Written.
    #[default]
    Completed,
    /// Aborted.
    Failed,
}

/// One checkpoint or savepoint. Times are epoch milliseconds, `-1` for "not yet".
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct CheckpointStatistics {
    /// Flink's statistics class (`.CompletedCheckpointStatistics`, ...).
    #[serde(rename = "className")]
    pub class_name: String,
    /// The checkpoint id.
    pub id: u64,
    /// Its state.
    pub status: CheckpointState,
    /// Whether it is a savepoint.
    pub is_savepoint: bool,
    /// `CANONICAL` for savepoints.
    #[serde(rename = "savepointFormat")]
    pub savepoint_format: Option<String>,
    /// `CHECKPOINT` or `SAVEPOINT`.
    pub checkpoint_type: String,
    /// When it was triggered.
    pub trigger_timestamp: i64,
    /// When the last acknowledgement arrived.
    pub latest_ack_timestamp: i64,
    /// Bytes it references, including files shared with earlier incremental checkpoints.
    pub state_size: u64,
    /// Bytes this checkpoint wrote (full checkpoints: the same as `state_size`).
    pub checkpointed_size: u64,
    /// Milliseconds from trigger to completion.
    pub end_to_end_duration: i64,
    /// Always 0: an aligning task leaves a blocked channel's records in the channel rather
    /// than buffering them.
    pub alignment_buffered: u64,
    /// Always 0.
    pub processed_data: u64,
    /// Bytes of in-flight records unaligned barriers overtook, stored with it.
    pub persisted_data: u64,
    /// Subtasks (tasks at a subtask index) that take part.
    pub num_subtasks: u64,
    /// Subtasks that acknowledged it so far.
    pub num_acknowledged_subtasks: u64,
    /// Per vertex id: its subtasks' part.
    pub tasks: BTreeMap<String, TaskCheckpointStatistics>,
    /// What Flink reports only per subtask: the slowest subtask's figures.
    pub weir: CheckpointTimes,
    /// Its directory.
    pub external_path: Option<String>,
    /// Whether it was discarded.
    pub discarded: bool,
    /// When it failed (failed ones only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_timestamp: Option<i64>,
    /// Why it failed (failed ones only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_message: Option<String>,
}

/// The `weir` part of [`CheckpointStatistics`] and [`TaskCheckpointStatistics`]: the
/// largest of their subtasks' figures, in milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct CheckpointTimes {
    /// From a subtask's first barrier to its last (aligned checkpoints), or until it had
    /// collected the records its barrier overtook (unaligned).
    pub alignment_duration: u64,
    /// From the trigger to a subtask's first barrier.
    pub start_delay: u64,
}

/// One vertex's part of a checkpoint (an entry of [`CheckpointStatistics::tasks`]).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct TaskCheckpointStatistics {
    /// The checkpoint id.
    pub id: u64,
    /// `COMPLETED` once every subtask acknowledged, else the checkpoint's state.
    pub status: CheckpointState,
    /// When its last acknowledgement arrived (epoch ms; `-1` before the first).
    pub latest_ack_timestamp: i64,
    /// Bytes its subtasks wrote.
    pub checkpointed_size: u64,
    /// Bytes its subtasks' state references.
    pub state_size: u64,
    /// Milliseconds from the trigger to its last acknowledgement.
    pub end_to_end_duration: i64,
    /// Always 0 (see [`CheckpointStatistics::alignment_buffered`]).
    pub alignment_buffered: u64,
    /// Always 0.
    pub processed_data: u64,
    /// Bytes of overtaken in-flight records its subtasks stored.
    pub persisted_data: u64,
    /// Its subtasks.
    pub num_subtasks: u64,
    /// Those that acknowledged.
    pub num_acknowledged_subtasks: u64,
    /// Its slowest subtask's alignment and start delay.
    pub weir: CheckpointTimes,
}

/// `GET /jobs/:jobid/checkpoints/details/:checkpointid/subtasks/:vertexid`: a vertex's part
/// of a checkpoint, summarised and per subtask (Flink's
/// `TaskCheckpointStatisticsWithSubtaskDetails`; summaries give min, max and average only).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct TaskCheckpointDetails {
    /// The vertex's totals.
    #[serde(flatten)]
    pub task: TaskCheckpointStatistics,
    /// Over the subtasks that acknowledged.
    pub summary: TaskCheckpointSummary,
    /// Every subtask, by index.
    pub subtasks: Vec<SubtaskCheckpointStatistics>,
}

/// The `summary` of [`TaskCheckpointDetails`], in bytes and milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
#[allow(missing_docs)]
pub struct TaskCheckpointSummary {
    pub checkpointed_size: MinMaxAvg,
    pub state_size: MinMaxAvg,
    pub end_to_end_duration: MinMaxAvg,
    pub checkpoint_duration: CheckpointDurationSummary,
    pub alignment: CheckpointAlignmentSummary,
    pub start_delay: MinMaxAvg,
}

/// Synchronous (snapshot on the task thread) and asynchronous (writing to storage) parts.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
#[allow(missing_docs)]
pub struct CheckpointDurationSummary {
    pub sync: MinMaxAvg,
    #[serde(rename = "async")]
    pub async_: MinMaxAvg,
}

/// Alignment over the subtasks: bytes buffered, processed, persisted, and its duration.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
#[allow(missing_docs)]
pub struct CheckpointAlignmentSummary {
    pub buffered: MinMaxAvg,
    pub processed: MinMaxAvg,
    pub persisted: MinMaxAvg,
    pub duration: MinMaxAvg,
}

/// One subtask of [`TaskCheckpointDetails`]: its index and status (`completed`, or
/// `pending_or_failed` before it acknowledged), and once acknowledged its figures.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SubtaskCheckpointStatistics {
    /// The subtask index.
    pub index: u64,
    /// `completed` or `pending_or_failed`.
    pub status: String,
    /// What it reported, once it acknowledged.
    #[serde(flatten)]
    pub acknowledged: Option<SubtaskAcknowledgement>,
}

/// An acknowledged subtask's part of a checkpoint (bytes and milliseconds).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SubtaskAcknowledgement {
    /// When its acknowledgement arrived (epoch ms).
    pub ack_timestamp: i64,
    /// From the trigger to its acknowledgement.
    pub end_to_end_duration: i64,
    /// Bytes its state references.
    pub state_size: u64,
    /// Bytes it wrote.
    pub checkpointed_size: u64,
    /// Its synchronous and asynchronous parts.
    pub checkpoint: CheckpointDuration,
    /// Its alignment.
    pub alignment: CheckpointAlignment,
    /// From the trigger to its first barrier.
    pub start_delay: u64,
    /// Whether its barrier overtook queued records.
    pub unaligned_checkpoint: bool,
    /// Whether the checkpoint was aborted before it completed.
    pub aborted: bool,
}

/// A subtask's synchronous and asynchronous checkpoint durations (ms).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct CheckpointDuration {
    pub sync: u64,
    #[serde(rename = "async")]
    pub async_: u64,
}

/// A subtask's alignment: bytes buffered (always 0), processed (0), persisted (overtaken
/// in-flight records), and its duration (ms).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct CheckpointAlignment {
    pub buffered: u64,
    pub processed: u64,
    pub persisted: u64,
    pub duration: u64,
}

/// `latest.restored` of [`CheckpointingStatistics`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RestoredCheckpoint {
    /// The checkpoint id (0 for a savepoint).
    pub id: u64,
    /// When the restore happened.
    pub restore_timestamp: i64,
    /// Whether it was a savepoint.
    pub is_savepoint: bool,
    /// Where it was.
    pub external_path: String,
}

/// `POST /jobs/:jobid/savepoints`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SavepointTriggerRequest {
    /// Where the savepoint goes; default `state.savepoints.dir`.
    #[serde(rename = "target-directory", skip_serializing_if = "Option::is_none")]
    pub target_directory: Option<String>,
    /// Cancel the job once the savepoint is complete.
    #[serde(rename = "cancel-job")]
    pub cancel_job: bool,
    /// The client's id for the operation: a repeated id is the same operation.
    #[serde(rename = "triggerId", skip_serializing_if = "Option::is_none")]
    pub trigger_id: Option<String>,
}

/// `POST /jobs/:jobid/stop` (stop-with-savepoint).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct StopWithSavepointRequest {
    /// Where the savepoint goes; default `state.savepoints.dir`.
    #[serde(rename = "targetDirectory", skip_serializing_if = "Option::is_none")]
    pub target_directory: Option<String>,
    /// Emit the final watermark first, so every window and timer fires.
    pub drain: bool,
    /// The client's id for the operation: a repeated id is the same operation.
    #[serde(rename = "triggerId", skip_serializing_if = "Option::is_none")]
    pub trigger_id: Option<String>,
}

/// The answer to both triggers: the id to poll [`Route::SavepointStatus`] with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TriggerResponse {
    /// The trigger id.
    #[serde(rename = "request-id")]
    pub request_id: String,
}

/// `GET /jobs/:jobid/savepoints/:triggerid`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavepointStatus {
    /// `IN_PROGRESS` or `COMPLETED` (which includes failed).
    pub status: QueueStatus,
    /// The outcome once completed; `null` before.
    #[serde(default)]
    pub operation: Option<SavepointOperation>,
}

/// Flink's `QueueStatus`: `{"id": "IN_PROGRESS" | "COMPLETED"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueStatus {
    /// The state.
    pub id: OperationState,
}

/// Whether an asynchronous operation is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OperationState {
    /// Still running.
    InProgress,
    /// Done, successfully or not.
    Completed,
}

/// The outcome of a completed savepoint: a location or a failure cause.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SavepointOperation {
    /// Where the savepoint was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// Why it failed.
    #[serde(
        rename = "failure-cause",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub failure_cause: Option<FailureCause>,
}

/// Flink's serialized exception; a bare string is read as its stack trace.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct FailureCause {
    /// The error type.
    pub class: String,
    /// The error chain.
    #[serde(rename = "stack-trace")]
    pub stack_trace: String,
    /// Always `null` (a Java-serialized exception in Flink).
    #[serde(rename = "serialized-throwable")]
    pub serialized_throwable: Option<String>,
}

impl<'de> Deserialize<'de> for FailureCause {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Wire {
            Text(String),
            Object {
                #[serde(default)]
                class: String,
                #[serde(rename = "stack-trace", default)]
                stack_trace: String,
                #[serde(rename = "serialized-throwable", default)]
                serialized_throwable: Option<String>,
            },
        }
        Ok(match Wire::deserialize(d)? {
            Wire::Text(stack_trace) => FailureCause {
                stack_trace,
                ..FailureCause::default()
            },
            Wire::Object {
                class,
                stack_trace,
                serialized_throwable,
            } => FailureCause {
                class,
                stack_trace,
                serialized_throwable,
            },
        })
    }
}

/// What a savepoint trigger came to, as a client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SavepointOutcome {
    /// Not complete yet.
    InProgress,
    /// Written at this location.
    Completed(String),
    /// Failed with this cause.
    Failed(String),
}

impl SavepointStatus {
    /// The status for an outcome (`None`: in progress), as the server answers it.
    pub fn of(outcome: Option<Result<String, String>>) -> SavepointStatus {
        let (id, operation) = match outcome {
            None => (OperationState::InProgress, None),
            Some(Ok(location)) => (
                OperationState::Completed,
                Some(SavepointOperation {
                    location: Some(location),
                    failure_cause: None,
                }),
            ),
            Some(Err(message)) => (
                OperationState::Completed,
                Some(SavepointOperation {
                    location: None,
                    failure_cause: Some(FailureCause {
                        class: FAILURE_CLASS.to_string(),
                        stack_trace: message,
                        serialized_throwable: None,
                    }),
                }),
            ),
        };
        SavepointStatus {
            status: QueueStatus { id },
            operation,
        }
    }

    /// What it says: in progress, a location, or a failure with its cause (a completed
    /// operation with neither is a failure too).
    pub fn outcome(&self) -> SavepointOutcome {
        if self.status.id == OperationState::InProgress {
            return SavepointOutcome::InProgress;
        }
        let operation = self.operation.clone().unwrap_or_default();
        if let Some(location) = operation.location {
            return SavepointOutcome::Completed(location);
        }
        let cause = operation
            .failure_cause
            .map(|c| {
                if c.stack_trace.is_empty() {
                    c.class
                } else {
                    c.stack_trace
                }
            })
            .unwrap_or_else(|| "completed without a location".to_string());
        SavepointOutcome::Failed(cause)
    }
}

/// The error type the server names in failure causes and exception histories.
pub const FAILURE_CLASS: &str = "weir_engine::Error";
