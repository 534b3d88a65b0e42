//! Deleting: the finalizer's cleanup. With a deletion savepoint (`savepointOnDeletion`, on by
//! default with a savepoint directory) the job is first stopped with a savepoint (same
//! write-ahead trigger id as an upgrade; a stop-with-savepoint of an upgrade or suspension
//! already in flight counts as it). Never stuck: after [`STOP_SAVEPOINT_ATTEMPTS`] failed
//! attempts, or when the job is not RUNNING, the pods are removed and the newest state there is
//! (a suspended job's suspend savepoint, else the newest completed checkpoint) is recorded as
//! the deletion snapshot instead. Then the JobManager and TaskManagers are removed; the
//! ConfigMap and Service go with their owner. Savepoints in storage are the user's data and
//! are kept.

use std::time::Duration;

use crate::crd::{LifecycleState, PendingSavepoint, SavepointTrigger};

use super::JobState;
use super::idle::trigger_name;
use super::stopping::{STOP_SAVEPOINT_ATTEMPTS, savepoint_failed};
use super::{
    Action, EventNote, EventType, Inputs, POLL, SavepointProgress, Stepper, elapsed,
    record_observation,
};

/// The outcome of one cleanup decision.
#[derive(Clone, Debug, PartialEq)]
pub struct Deletion {
    /// Status to write before acting.
    pub status: crate::crd::StreamJobStatus,
    pub action: Action,
    pub events: Vec<EventNote>,
    /// Everything is cleaned up: the finalizer can be removed.
    pub done: bool,
    pub requeue_after: Duration,
}

/// Decides the next cleanup step of a StreamJob being deleted.
pub fn decide_deletion(inputs: &Inputs<'_>) -> Deletion {
    let mut status = inputs.status.clone();
    record_observation(&mut status, inputs.observation);
    status.lifecycle_state = LifecycleState::Deleting;
    let mut step = Stepper {
        inputs,
        status,
        events: Vec::new(),
    };
    let (action, requeue_after) = savepoint_then_teardown(&mut step);
    super::conditions::update(&mut step.status, inputs.generation, inputs.now, None);
    let done = action == Action::None
        && !inputs.observation.cluster_exists
        && { step.status.savepoints.pending.is_none() }
        && step.status.reconciliation.retry_at.is_none();
    Deletion {
        status: step.status,
        action,
        events: step.events,
        done,
        requeue_after,
    }
}

fn savepoint_then_teardown(step: &mut Stepper<'_, '_>) -> (Action, Duration) {
    let wants_savepoint = step.spec().deletion_savepoint();
    let taken = step
        .status
        .savepoints
        .last
        .as_ref()
        .is_some_and(|s| s.trigger == SavepointTrigger::Deletion);

    if let Some(pending) = step.status.savepoints.pending.clone() {
        if !wants_savepoint {
            step.status.savepoints.pending = None;
        } else {
            match step.obs().savepoint.clone() {
                Some(SavepointProgress::Completed { location }) => {
                    step.status.savepoints.pending = None;
                    // A stop-with-savepoint of an upgrade or suspension in flight when the
                    // deletion came stopped the job: it is the state to keep.
                    let recorded = if pending.trigger.stops_job() {
                        deletion(&pending.job_id)
                    } else {
                        pending.clone()
                    };
                    step.record_savepoint(location.clone(), &recorded);
                    step.status.error = None;
                    step.event(
                        EventType::Normal,
                        "SavepointCompleted",
                        format!(
                            "{} savepoint completed at {location}",
                            trigger_name(pending.trigger)
                        ),
                    );
                    return savepoint_then_teardown(step);
                }
                Some(SavepointProgress::Failed { cause }) => {
                    let out = savepoint_failed(step, &pending, cause);
                    if !gave_up(step) {
                        return out;
                    }
                }
                Some(SavepointProgress::Unknown) => {
                    let dir = step.spec().savepoint_dir().unwrap_or_default().to_string();
                    return (
                        Action::TriggerSavepoint {
                            job_id: pending.job_id.clone(),
                            trigger_id: pending.trigger_id.clone(),
                            target_directory: dir,
                            stop: pending.trigger.stops_job(),
                        },
                        POLL,
                    );
                }
                Some(SavepointProgress::InProgress) | None => {
                    let timeout = step.savepoint_timeout();
                    if !elapsed(Some(&pending.triggered_at), timeout, step.now()) {
                        return (Action::None, POLL);
                    }
                    let cause = format!("not completed within {}s", timeout.as_secs());
                    let out = savepoint_failed(step, &pending, cause);
                    if !gave_up(step) {
                        return out;
                    }
                }
            }
        }
    } else if wants_savepoint && !taken {
        let running = step.obs().running_job().cloned();
        match (running, step.spec().savepoint_dir()) {
            (Some(job), Some(dir)) if !gave_up(step) => {
                if let Some(wait) = step.backing_off() {
                    return (Action::None, wait);
                }
                let dir = dir.to_string();
                let trigger_id = step.inputs.fresh_trigger_id.clone();
                step.status.savepoints.pending = Some(PendingSavepoint {
                    trigger_id: trigger_id.clone(),
                    triggered_at: step.now_text(),
                    ..deletion(&job.job_id)
                });
                step.event(
                    EventType::Normal,
                    "SavepointTriggered",
                    format!("stopping the job with a deletion savepoint ({trigger_id})"),
                );
                return (
                    Action::TriggerSavepoint {
                        job_id: job.job_id,
                        trigger_id,
                        target_directory: dir,
                        stop: true,
                    },
                    POLL,
                );
            }
            // No savepoint can be taken (the job is not RUNNING, or its savepoints keep
            // failing): once the pods are gone, keep the newest state there is instead.
            _ if step.obs().cluster_exists => {}
            _ => keep_newest_state(step),
        }
    }

    step.status.reconciliation.retry_at = None;
    if step.obs().cluster_exists {
        step.event(
            EventType::Normal,
            "Cleanup",
            "removing the JobManager and TaskManagers".into(),
        );
        return (Action::TearDown, POLL);
    }
    (Action::None, POLL)
}

/// A pending deletion savepoint of `job_id`, to be filled in.
fn deletion(job_id: &str) -> PendingSavepoint {
    PendingSavepoint {
        trigger_id: String::new(),
        job_id: job_id.to_string(),
        trigger: SavepointTrigger::Deletion,
        triggered_at: String::new(),
        nonce: None,
    }
}

/// Whether the deletion savepoint failed often enough to settle for a checkpoint.
fn gave_up(step: &Stepper<'_, '_>) -> bool {
    step.status.reconciliation.retries >= STOP_SAVEPOINT_ATTEMPTS
}

/// With the pods gone, records the newest state the job has as its deletion snapshot: the
/// suspend savepoint of a suspended job, else the newest completed checkpoint (storage has the
/// final word once the pods are gone, so no committed output is replayed). Without any, a
/// Warning says the job is deleted without state.
fn keep_newest_state(step: &mut Stepper<'_, '_>) {
    if step.status.job_status.state.as_deref() == Some(JobState::Finished.as_str()) {
        // A finished job has no state worth resuming.
        return;
    }
    let suspended = step.inputs.status.lifecycle_state == LifecycleState::Suspended;
    let newest = if suspended {
        step.status.reconciliation.restore_path.clone()
    } else {
        step.last_state()
    };
    let job_id = step.status.job_status.job_id.clone().unwrap_or_default();
    match newest {
        Some(location) => {
            step.record_savepoint(location.clone(), &deletion(&job_id));
            step.status.error = None;
            step.event(
                EventType::Warning,
                "SavepointFallback",
                format!(
                    "no deletion savepoint could be taken; the job's newest state {location} is \
                     kept as its deletion snapshot instead"
                ),
            );
        }
        None => step.event(
            EventType::Warning,
            "SavepointSkipped",
            format!(
                "the job is not {} and has no checkpoint, so it is deleted without state",
                JobState::Running
            ),
        ),
    }
}
