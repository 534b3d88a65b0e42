//! The StreamJobSnapshot life, as pure functions like [`crate::lifecycle`]: [`decide`] takes
//! the snapshot, what the controller saw of its StreamJob, and returns the status to write and
//! the one action to take after writing it; [`disposal`] says what deleting it removes.
//!
//! A snapshot walks Pending → InProgress → Completed, or ends Failed with the reason. The
//! trigger id is recorded before the request is sent (write-ahead), so an operator restart
//! asks about the same savepoint instead of taking a second one. A failed attempt (job not
//! found or not RUNNING, savepoint failed or timed out) is retried with the lifecycle's backoff
//! up to [`MAX_ATTEMPTS`] times. A `spec.path` is registered as it is, without a trigger.
//!
//! The StreamJob's own savepoints (upgrade, suspend, deletion, manual, periodic) are recorded
//! as snapshots too; [`for_savepoint`] renders them.

use std::time::Duration;

use jiff::Timestamp;

use crate::crd::{
    SavepointInfo, SavepointTrigger, SnapshotKind, SnapshotState, StorageSpec,
    StreamJobSnapshotSpec, StreamJobSnapshotStatus,
};
use crate::lifecycle::{
    EventNote, EventType, JobState, ObservedJob, POLL, SavepointProgress, add, backoff, elapsed,
    parse_time,
};

/// Attempts before a snapshot is Failed for good (10 s, 20 s, 40 s, 80 s apart).
pub const MAX_ATTEMPTS: u32 = 5;

/// What the controller saw before calling [`decide`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SnapshotObservation {
    /// The referenced StreamJob exists.
    pub job_exists: bool,
    /// Its `savepoints.dir`.
    pub savepoint_dir: Option<String>,
    /// Its `savepoints.timeout`, or the default.
    pub timeout: Duration,
    /// Its storage settings, kept in the status so a deletion needs no StreamJob.
    pub storage: Option<StorageSpec>,
    /// The job, when its JobManager answered.
    pub job: Option<ObservedJob>,
    /// Progress of `status.triggerId`, when one is recorded and the JobManager answered.
    pub savepoint: Option<SavepointProgress>,
}

/// Inputs of one decision.
#[derive(Clone, Debug)]
pub struct SnapshotInputs<'a> {
    pub spec: &'a StreamJobSnapshotSpec,
    pub status: &'a StreamJobSnapshotStatus,
    pub observation: &'a SnapshotObservation,
    pub now: Timestamp,
    /// A fresh trigger id, used only if this step triggers a new savepoint.
    pub fresh_trigger_id: String,
}

/// The one thing to do after the status is written.
#[derive(Clone, Debug, PartialEq)]
pub enum SnapshotAction {
    None,
    /// Send the savepoint request recorded in the status (the job keeps running).
    TriggerSavepoint {
        job_id: String,
        trigger_id: String,
        target_directory: String,
    },
}

/// The outcome of one decision.
#[derive(Clone, Debug, PartialEq)]
pub struct SnapshotStep {
    pub status: StreamJobSnapshotStatus,
    pub action: SnapshotAction,
    pub events: Vec<EventNote>,
    /// When to look again; `None` once the snapshot is settled (Completed or Failed).
    pub requeue_after: Option<Duration>,
}

struct Stepper<'i, 'a> {
    inputs: &'i SnapshotInputs<'a>,
    status: StreamJobSnapshotStatus,
    events: Vec<EventNote>,
}

/// Decides the next step. See the module documentation.
pub fn decide(inputs: &SnapshotInputs<'_>) -> SnapshotStep {
    let mut step = Stepper {
        inputs,
        status: inputs.status.clone(),
        events: Vec::new(),
    };
    let (action, requeue_after) = match step.status.state {
        SnapshotState::Completed | SnapshotState::Failed => (SnapshotAction::None, None),
        SnapshotState::Pending => pending(&mut step),
        SnapshotState::InProgress => in_progress(&mut step),
    };
    SnapshotStep {
        status: step.status,
        action,
        events: step.events,
        requeue_after,
    }
}

fn pending(step: &mut Stepper<'_, '_>) -> (SnapshotAction, Option<Duration>) {
    let spec = step.inputs.spec;
    let obs = step.inputs.observation;
    if let Some(path) = &spec.path {
        step.status.path = Some(path.clone());
        step.status.storage = obs.storage.clone();
        return complete(step, format!("registered {path}"));
    }
    if spec.kind == SnapshotKind::Checkpoint {
        return fail_for_good(
            step,
            "a checkpoint cannot be taken on request; set spec.path to register an existing \
             checkpoint, or use kind savepoint"
                .into(),
        );
    }
    if let Some(retry_at) = step.status.retry_at.as_deref().and_then(parse_time)
        && let Ok(wait) = Duration::try_from(step.inputs.now.duration_until(retry_at))
        && !wait.is_zero()
    {
        return (SnapshotAction::None, Some(wait));
    }
    if !obs.job_exists {
        return attempt_failed(step, format!("StreamJob {} not found", spec.job_name));
    }
    let Some(dir) = obs.savepoint_dir.clone() else {
        return fail_for_good(
            step,
            format!(
                "StreamJob {} has no savepoints.dir to take a savepoint into",
                spec.job_name
            ),
        );
    };
    let Some(job) = obs.job.as_ref().filter(|j| j.state == JobState::Running) else {
        let state = obs
            .job
            .as_ref()
            .map_or("not reachable".to_string(), |j| j.state.to_string());
        return attempt_failed(
            step,
            format!(
                "the job of StreamJob {} is {state}, not {}",
                spec.job_name,
                JobState::Running
            ),
        );
    };
    let trigger_id = step.inputs.fresh_trigger_id.clone();
    step.status.state = SnapshotState::InProgress;
    step.status.trigger = Some(SavepointTrigger::Manual);
    step.status.trigger_id = Some(trigger_id.clone());
    step.status.job_id = Some(job.job_id.clone());
    step.status.triggered_at = Some(step.inputs.now.to_string());
    step.status.retry_at = None;
    step.status.storage = obs.storage.clone();
    step.events.push(EventNote {
        type_: EventType::Normal,
        reason: "SavepointTriggered",
        message: format!("savepoint of job {} triggered ({trigger_id})", job.job_id),
    });
    (
        SnapshotAction::TriggerSavepoint {
            job_id: job.job_id.clone(),
            trigger_id,
            target_directory: dir,
        },
        Some(POLL),
    )
}

fn in_progress(step: &mut Stepper<'_, '_>) -> (SnapshotAction, Option<Duration>) {
    let obs = step.inputs.observation;
    let (Some(job_id), Some(trigger_id)) =
        (step.status.job_id.clone(), step.status.trigger_id.clone())
    else {
        // A status without its trigger cannot be asked about: start over.
        step.status.state = SnapshotState::Pending;
        return pending(step);
    };
    match obs.savepoint.clone() {
        Some(SavepointProgress::Completed { location }) => {
            step.status.path = Some(location.clone());
            complete(step, format!("savepoint completed at {location}"))
        }
        Some(SavepointProgress::Failed { cause }) => {
            attempt_failed(step, format!("savepoint {trigger_id} failed: {cause}"))
        }
        Some(SavepointProgress::Unknown) => match &obs.savepoint_dir {
            // The request never reached the JobManager: send the same trigger id again.
            Some(dir) if obs.job.as_ref().is_some_and(|j| j.job_id == job_id) => (
                SnapshotAction::TriggerSavepoint {
                    job_id,
                    trigger_id,
                    target_directory: dir.clone(),
                },
                Some(POLL),
            ),
            _ => attempt_failed(
                step,
                format!("job {job_id} no longer runs; savepoint {trigger_id} was never taken"),
            ),
        },
        Some(SavepointProgress::InProgress) | None => {
            if elapsed(
                step.status.triggered_at.as_deref(),
                obs.timeout,
                step.inputs.now,
            ) {
                let cause = format!(
                    "savepoint {trigger_id} not completed within {}s",
                    obs.timeout.as_secs()
                );
                return attempt_failed(step, cause);
            }
            (SnapshotAction::None, Some(POLL))
        }
    }
}

fn complete(step: &mut Stepper<'_, '_>, message: String) -> (SnapshotAction, Option<Duration>) {
    step.status.state = SnapshotState::Completed;
    step.status.time = Some(step.inputs.now.to_string());
    step.status.reason = None;
    step.status.retry_at = None;
    step.events.push(EventNote {
        type_: EventType::Normal,
        reason: "SnapshotCompleted",
        message,
    });
    (SnapshotAction::None, None)
}

/// One attempt failed: back to Pending with a backoff, or Failed once the attempts are used up.
fn attempt_failed(step: &mut Stepper<'_, '_>, cause: String) -> (SnapshotAction, Option<Duration>) {
    let attempts = step.status.attempts.saturating_add(1);
    step.status.attempts = attempts;
    step.status.trigger_id = None;
    step.status.triggered_at = None;
    if attempts >= MAX_ATTEMPTS {
        return fail_for_good(
            step,
            format!("{cause} (attempt {attempts} of {MAX_ATTEMPTS})"),
        );
    }
    let delay = backoff(attempts - 1);
    let message = format!(
        "{cause}; attempt {attempts} of {MAX_ATTEMPTS}, retrying in {}s",
        delay.as_secs()
    );
    step.status.state = SnapshotState::Pending;
    step.status.retry_at = Some(add(step.inputs.now, delay).to_string());
    step.status.reason = Some(message.clone());
    step.events.push(EventNote {
        type_: EventType::Warning,
        reason: "SnapshotRetry",
        message,
    });
    (SnapshotAction::None, Some(delay))
}

fn fail_for_good(step: &mut Stepper<'_, '_>, reason: String) -> (SnapshotAction, Option<Duration>) {
    step.status.state = SnapshotState::Failed;
    step.status.time = Some(step.inputs.now.to_string());
    step.status.retry_at = None;
    step.status.reason = Some(reason.clone());
    step.events.push(EventNote {
        type_: EventType::Warning,
        reason: "SnapshotFailed",
        message: reason,
    });
    (SnapshotAction::None, None)
}

/// What deleting a snapshot does to storage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Disposal {
    /// Nothing to delete (`disposeOnDelete` off, or the snapshot never completed).
    Keep,
    /// Delete the objects under this location, then let the resource go.
    Delete(String),
    /// A StreamJob still restores from it (a restarted JobManager pod or a rollback would need
    /// it): hold the deletion, saying which; setting `disposeOnDelete: false` lets it go.
    InUse { location: String, by: String },
}

/// What deleting `spec`/`status` removes from storage. `in_use_by` names a StreamJob whose
/// current or next deployment restores from the snapshot's path.
pub fn disposal(
    spec: &StreamJobSnapshotSpec,
    status: &StreamJobSnapshotStatus,
    in_use_by: Option<&str>,
) -> Disposal {
    let location = match (&status.state, &status.path) {
        (SnapshotState::Completed, Some(path)) if spec.dispose_on_delete => path.clone(),
        _ => return Disposal::Keep,
    };
    match in_use_by {
        Some(by) => Disposal::InUse {
            location,
            by: by.to_string(),
        },
        None => Disposal::Delete(location),
    }
}

/// Name of the StreamJobSnapshot recording a StreamJob's savepoint: the job's name, why it
/// was taken, and a digest of its location (stable, so re-creating it is idempotent).
pub fn name_for(job_name: &str, savepoint: &SavepointInfo) -> String {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in savepoint.location.bytes() {
        hash = (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193);
    }
    let trigger = crate::lifecycle::trigger_name(savepoint.trigger);
    // Object names are at most 253 characters; the suffix is 8 + the trigger's length + 2.
    let prefix: String = job_name.chars().take(253 - 30).collect();
    format!("{prefix}-{trigger}-{hash:08x}")
}

/// The spec and status of the StreamJobSnapshot recording a StreamJob's savepoint.
pub fn for_savepoint(
    job_name: &str,
    savepoint: &SavepointInfo,
    storage: Option<&StorageSpec>,
) -> (StreamJobSnapshotSpec, StreamJobSnapshotStatus) {
    // A deletion that could take no savepoint keeps the newest checkpoint instead.
    let is_checkpoint = savepoint
        .location
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .and_then(weir_contract::layout::checkpoint_number)
        .is_some();
    let spec = StreamJobSnapshotSpec {
        job_name: job_name.to_string(),
        kind: if is_checkpoint {
            SnapshotKind::Checkpoint
        } else {
            SnapshotKind::Savepoint
        },
        path: Some(savepoint.location.clone()),
        // The StreamJob's retention decides when its savepoints go, and a deleted StreamJob
        // keeps them: the resource alone never deletes the data.
        dispose_on_delete: false,
    };
    let status = StreamJobSnapshotStatus {
        state: SnapshotState::Completed,
        path: Some(savepoint.location.clone()),
        trigger: Some(savepoint.trigger),
        job_id: savepoint.job_id.clone(),
        time: Some(savepoint.timestamp.clone()),
        storage: storage.cloned(),
        ..StreamJobSnapshotStatus::default()
    };
    (spec, status)
}
