//! The lifecycle and upgrade state machine, as pure functions. [`decide`] takes the spec, the
//! current status and an [`Observation`] of the JobManager and the cluster, and returns the
//! status to write and the one [`Action`] to take after writing it.
//!
//! The status is the machine's only memory and is written before the action (write-ahead):
//! an operator that dies between writing and acting runs `decide` again on the written status
//! and repeats the same, idempotent action. Savepoints are idempotent because the operator picks
//! the trigger id, records it, and only then sends it; re-sending a known trigger id never
//! starts a second savepoint.
//!
//! A rollout walks Stopping → TearingDown → Deploying → AwaitingReady → Idle, one file per
//! phase; [`idle`] starts rollouts and handles manual and periodic savepoints and retention.
//! An upgrade with `job.preflight` first walks Checking: the new spec is checked against the
//! running job's state, and a refusal ends it before anything is stopped.

mod awaiting;
mod checking;
pub mod conditions;
mod deleting;
mod deploying;
mod health;
pub mod history;
mod idle;
mod stopping;
mod teardown;

use std::time::Duration;

use jiff::Timestamp;

pub use deleting::{Deletion, decide_deletion};
pub use idle::trigger_name;

use crate::crd::{
    LifecycleState, PendingSavepoint, ReconcilePhase, SavepointInfo, StreamJobSpec, StreamJobStatus,
};
use crate::duration;

/// How often a step that waits on the JobManager looks again.
pub const POLL: Duration = Duration::from_secs(5);
/// How often a settled job is looked at.
pub const SETTLED: Duration = Duration::from_secs(60);
/// Default for `savepoints.timeout`.
pub const DEFAULT_SAVEPOINT_TIMEOUT: Duration = Duration::from_secs(600);
const BACKOFF_BASE: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// Job states of the JobManager REST API: the contract's, with Flink's names.
pub use weir_contract::JobState;

/// The job as the JobManager reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct ObservedJob {
    pub job_id: String,
    pub state: JobState,
    /// Start time (RFC 3339).
    pub start_time: Option<String>,
    /// `external_path` of the latest completed checkpoint.
    pub latest_checkpoint: Option<String>,
    /// How often the run restored from a checkpoint (`counts.restored`): its restarts after
    /// failures, plus one when it was deployed from a savepoint or checkpoint.
    pub restores: u64,
}

/// What the JobManager says about the pending savepoint's trigger id.
#[derive(Clone, Debug, PartialEq)]
pub enum SavepointProgress {
    /// The JobManager does not know the trigger id: the request never reached it.
    Unknown,
    InProgress,
    Completed {
        location: String,
    },
    Failed {
        cause: String,
    },
}

/// Everything the controller saw before calling [`decide`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observation {
    /// The job, when the JobManager answered; `None` when it is unreachable or has no job.
    pub job: Option<ObservedJob>,
    /// Progress of `status.savepoints.pending`, when one is pending and the JobManager answered.
    pub savepoint: Option<SavepointProgress>,
    /// Whether a JobManager or TaskManager Deployment of this job exists.
    pub cluster_exists: bool,
    /// Latest completed checkpoint found by listing `checkpoints.dir`, for when the JobManager
    /// is gone.
    pub storage_latest_checkpoint: Option<String>,
    /// Whether the operator can delete `s3://` locations of this job (an `http://` endpoint and
    /// credentials are configured). `file://` locations can always be deleted.
    pub can_delete_s3: bool,
    /// The StreamJobSnapshot named by `job.initialSnapshotName`, looked up before the first
    /// deployment.
    pub initial_snapshot: Option<InitialSnapshot>,
    /// What the pre-flight check's pod says (`status.reconciliation.preflight`), when the pod
    /// exists.
    pub preflight: Option<PreflightOutcome>,
}

/// What the pre-flight check's pod says.
#[derive(Clone, Debug, PartialEq)]
pub enum PreflightOutcome {
    /// Not finished.
    Running,
    /// `weir check` exited 0: the new spec can restore the state.
    Compatible,
    /// `weir check` exited 2: it cannot; why (the operators and what changed).
    Incompatible(String),
    /// The check could not decide (another exit code, the image did not start): why.
    Failed(String),
}

/// The snapshot a first deployment restores from, as far as it is known.
#[derive(Clone, Debug, PartialEq)]
pub enum InitialSnapshot {
    /// Completed at this location.
    Ready(String),
    /// Missing, not completed yet, or failed: why.
    NotReady(String),
}

impl Observation {
    fn job_state(&self) -> Option<JobState> {
        self.job.as_ref().map(|j| j.state)
    }

    fn running_job(&self) -> Option<&ObservedJob> {
        self.job.as_ref().filter(|j| j.state == JobState::Running)
    }
}

/// Inputs of one decision.
#[derive(Clone, Debug)]
pub struct Inputs<'a> {
    pub spec: &'a StreamJobSpec,
    pub generation: Option<i64>,
    pub status: &'a StreamJobStatus,
    pub observation: &'a Observation,
    pub now: Timestamp,
    /// A fresh, unique trigger id, used only if this step triggers a new savepoint.
    pub fresh_trigger_id: String,
}

/// The one thing to do after the status is written.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Nothing; look again after [`Step::requeue_after`].
    None,
    /// Server-side apply the desired objects of `spec`, restoring from `restore_path`.
    Deploy {
        spec: Box<StreamJobSpec>,
        restore_path: Option<String>,
    },
    /// Delete the JobManager and TaskManager Deployments (the ConfigMap and Service stay).
    TearDown,
    /// Send the savepoint request recorded in `status.savepoints.pending`.
    TriggerSavepoint {
        job_id: String,
        trigger_id: String,
        target_directory: String,
        /// Stop the job with the savepoint (`POST /jobs/:id/stop`) instead of leaving it running.
        stop: bool,
    },
    /// Delete savepoints from storage; then call [`disposed`].
    DisposeSavepoints { locations: Vec<String> },
    /// Delete `<dir>/<job-id>/` of earlier runs; then call [`checkpoints_deleted`].
    DeleteCheckpoints { dir: String, job_ids: Vec<String> },
    /// Start the pre-flight check's pod (with the new image, named after `spec`) checking
    /// `spec` against the checkpoint or savepoint `state`; an existing pod of that name is
    /// left as it is.
    RunPreflight {
        spec: Box<StreamJobSpec>,
        state: String,
    },
}

/// Severity of an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

/// An event for the resource, with a stable reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventNote {
    pub type_: EventType,
    pub reason: &'static str,
    pub message: String,
}

/// The outcome of one decision.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    /// Status to write before acting.
    pub status: StreamJobStatus,
    pub action: Action,
    pub events: Vec<EventNote>,
    pub requeue_after: Duration,
}

/// Decides the next step. See the module documentation.
pub fn decide(inputs: &Inputs<'_>) -> Step {
    let mut status = inputs.status.clone();
    status.observed_generation = inputs.generation;
    record_observation(&mut status, inputs.observation);
    health::track(&mut status, inputs.observation, inputs.now);
    let mut step = Stepper {
        inputs,
        status,
        events: Vec::new(),
    };
    let (action, requeue_after) = match step.status.reconciliation.phase {
        ReconcilePhase::Idle => idle::decide(&mut step),
        ReconcilePhase::Checking => checking::decide(&mut step),
        ReconcilePhase::Stopping => stopping::decide(&mut step),
        ReconcilePhase::TearingDown => teardown::decide(&mut step),
        ReconcilePhase::Deploying => deploying::decide(&mut step),
        ReconcilePhase::AwaitingReady => awaiting::decide(&mut step),
    };
    conditions::update(&mut step.status, inputs.generation, inputs.now, None);
    Step {
        status: step.status,
        action,
        events: step.events,
        requeue_after,
    }
}

/// Records that `locations` were deleted from storage.
pub fn disposed(status: &mut StreamJobStatus, locations: &[String]) {
    status
        .savepoints
        .disposing
        .retain(|l| !locations.contains(l));
}

/// Records that the checkpoint directories of `job_ids` were deleted.
pub fn checkpoints_deleted(status: &mut StreamJobStatus, job_ids: &[String]) {
    status
        .job_status
        .previous_job_ids
        .retain(|id| !job_ids.contains(id));
}

/// The spec whose objects should be running now: the last stable spec while rolling back or
/// rolled back, the last reconciled spec otherwise.
pub fn running_spec(status: &StreamJobStatus) -> Option<StreamJobSpec> {
    let text = match status.lifecycle_state {
        LifecycleState::RollingBack | LifecycleState::RolledBack => status
            .reconciliation
            .last_stable_spec
            .as_ref()
            .or(status.reconciliation.last_reconciled_spec.as_ref()),
        _ => status.reconciliation.last_reconciled_spec.as_ref(),
    }?;
    serde_json::from_str(text).ok()
}

/// Serialises a spec the way the status stores it.
pub fn spec_json(spec: &StreamJobSpec) -> String {
    // A spec is plain data; serialising it cannot fail.
    serde_json::to_string(spec).unwrap_or_default()
}

/// Whether going from `deployed` to `desired` needs the job restarted: whether a field whose
/// doc comment says "Changing it restarts the job" changed ([`StreamJobSpec::restart_fields`]).
pub fn needs_restart(deployed: &StreamJobSpec, desired: &StreamJobSpec) -> bool {
    deployed.restart_fields() != desired.restart_fields()
}

/// Mutable state of one decision, shared by the phase functions.
pub(crate) struct Stepper<'i, 'a> {
    pub inputs: &'i Inputs<'a>,
    pub status: StreamJobStatus,
    pub events: Vec<EventNote>,
}

impl Stepper<'_, '_> {
    fn spec(&self) -> &StreamJobSpec {
        self.inputs.spec
    }

    fn obs(&self) -> &Observation {
        self.inputs.observation
    }

    fn now(&self) -> Timestamp {
        self.inputs.now
    }

    fn now_text(&self) -> String {
        self.inputs.now.to_string()
    }

    fn event(&mut self, type_: EventType, reason: &'static str, message: String) {
        self.events.push(EventNote {
            type_,
            reason,
            message,
        });
    }

    /// Sets the phase, clearing the retry state of the previous one.
    fn enter(&mut self, phase: ReconcilePhase) {
        let reconciliation = &mut self.status.reconciliation;
        reconciliation.phase = phase;
        reconciliation.retries = 0;
        reconciliation.retry_at = None;
    }

    /// Whether a failed step is still backing off.
    fn backing_off(&self) -> Option<Duration> {
        let retry_at = parse_time(self.status.reconciliation.retry_at.as_deref()?)?;
        let wait = self.now().duration_until(retry_at);
        let wait = Duration::try_from(wait).ok()?;
        (!wait.is_zero()).then_some(wait)
    }

    /// Records a failure: the error, a Warning event, and the backoff before the retry.
    fn fail(&mut self, reason: &'static str, message: String) -> Duration {
        let retries = self.status.reconciliation.retries;
        let delay = backoff(retries);
        let message = format!("{message}; retrying in {}s", delay.as_secs());
        self.status.reconciliation.retries = retries.saturating_add(1);
        self.status.reconciliation.retry_at = Some(add(self.now(), delay).to_string());
        self.status.error = Some(message.clone());
        self.event(EventType::Warning, reason, message);
        delay
    }

    /// Appends a completed savepoint to `last` and the history.
    fn record_savepoint(&mut self, location: String, pending: &PendingSavepoint) {
        let info = SavepointInfo {
            location,
            timestamp: self.now_text(),
            trigger: pending.trigger,
            job_id: Some(pending.job_id.clone()),
            snapshot: None,
        };
        let savepoints = &mut self.status.savepoints;
        if !savepoints
            .history
            .iter()
            .any(|s| s.location == info.location)
        {
            savepoints.history.push(info.clone());
        }
        savepoints.last = Some(info);
    }

    /// Whether the controller can delete `location`; others stay listed in the status.
    fn can_delete(&self, location: &str) -> bool {
        crate::storage::supports(location)
            || (location.starts_with("s3://") && self.obs().can_delete_s3)
    }

    fn savepoint_timeout(&self) -> Duration {
        self.spec()
            .savepoints
            .as_ref()
            .and_then(|s| s.timeout.as_deref())
            .and_then(|t| duration::parse(t).ok())
            .unwrap_or(DEFAULT_SAVEPOINT_TIMEOUT)
    }

    /// The newest state the current run is known to have: its latest checkpoint from the
    /// JobManager, else the newest found in storage (at least as new as the recorded one),
    /// else the one last recorded, else what it was itself restored from.
    fn last_state(&self) -> Option<String> {
        self.obs()
            .job
            .as_ref()
            .and_then(|j| j.latest_checkpoint.clone())
            .or_else(|| self.obs().storage_latest_checkpoint.clone())
            .or_else(|| self.status.job_status.last_checkpoint.clone())
            .or_else(|| self.status.reconciliation.restore_path.clone())
    }
}

/// Copies what the JobManager reports into `status.jobStatus`. A new job id means a new run:
/// the old id's checkpoints become eligible for retention cleanup.
fn record_observation(status: &mut StreamJobStatus, observation: &Observation) {
    let Some(job) = &observation.job else {
        return;
    };
    let job_status = &mut status.job_status;
    if let Some(previous) = job_status.job_id.as_ref()
        && *previous != job.job_id
    {
        if !job_status.previous_job_ids.contains(previous) {
            job_status.previous_job_ids.push(previous.clone());
        }
        job_status.last_checkpoint = None;
    }
    job_status.job_id = Some(job.job_id.clone());
    job_status.state = Some(job.state.as_str().to_string());
    if job.start_time.is_some() {
        job_status.start_time = job.start_time.clone();
    }
    if job.latest_checkpoint.is_some() {
        job_status.last_checkpoint = job.latest_checkpoint.clone();
    }
}

/// Exponential backoff: 10 s, 20 s, 40 s, … capped at 5 minutes.
pub fn backoff(retries: u32) -> Duration {
    let factor = 1u32.checked_shl(retries.min(16)).unwrap_or(u32::MAX);
    BACKOFF_BASE.saturating_mul(factor).min(BACKOFF_MAX)
}

/// Parses an RFC 3339 time from the status; a garbled one counts as long ago.
pub(crate) fn parse_time(text: &str) -> Option<Timestamp> {
    text.parse().ok()
}

pub(crate) fn add(time: Timestamp, duration: Duration) -> Timestamp {
    jiff::SignedDuration::try_from(duration)
        .ok()
        .and_then(|d| time.checked_add(d).ok())
        .unwrap_or(Timestamp::MAX)
}

/// Whether `since + after` is at or before `now`.
pub(crate) fn elapsed(since: Option<&str>, after: Duration, now: Timestamp) -> bool {
    match since.and_then(parse_time) {
        Some(since) => add(since, after) <= now,
        None => true,
    }
}
