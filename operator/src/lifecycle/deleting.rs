//! Deleting: the finalizer's cleanup. With `savepointOnDeletion` the job is first stopped with a
//! savepoint (same write-ahead trigger id and failure handling as an upgrade: a failed
//! savepoint blocks the deletion and is retried; set `savepointOnDeletion: false` to give up on
//! it). Then the JobManager and TaskManagers are removed; the ConfigMap and Service go with
//! their owner. Savepoints in storage are the user's data and are kept.

use std::time::Duration;

use crate::crd::{LifecycleState, PendingSavepoint, SavepointTrigger};

use super::JobState;
use super::stopping::savepoint_failed;
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
                    step.record_savepoint(location.clone(), &pending);
                    step.status.error = None;
                    step.event(
                        EventType::Normal,
                        "SavepointCompleted",
                        format!("deletion savepoint completed at {location}"),
                    );
                }
                Some(SavepointProgress::Failed { cause }) => {
                    return savepoint_failed(step, &pending, cause);
                }
                Some(SavepointProgress::Unknown) => {
                    let dir = step.spec().savepoint_dir().unwrap_or_default().to_string();
                    return (
                        Action::TriggerSavepoint {
                            job_id: pending.job_id.clone(),
                            trigger_id: pending.trigger_id.clone(),
                            target_directory: dir,
                            stop: true,
                        },
                        POLL,
                    );
                }
                Some(SavepointProgress::InProgress) | None => {
                    let timeout = step.savepoint_timeout();
                    if elapsed(Some(&pending.triggered_at), timeout, step.now()) {
                        let cause = format!("not completed within {}s", timeout.as_secs());
                        return savepoint_failed(step, &pending, cause);
                    }
                    return (Action::None, POLL);
                }
            }
        }
    } else if wants_savepoint && !taken {
        if let Some(wait) = step.backing_off() {
            return (Action::None, wait);
        }
        match (
            step.obs().running_job().cloned(),
            step.spec().savepoint_dir(),
        ) {
            (Some(job), Some(dir)) => {
                let dir = dir.to_string();
                let trigger_id = step.inputs.fresh_trigger_id.clone();
                step.status.savepoints.pending = Some(PendingSavepoint {
                    trigger_id: trigger_id.clone(),
                    job_id: job.job_id.clone(),
                    trigger: SavepointTrigger::Deletion,
                    triggered_at: step.now_text(),
                    nonce: None,
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
            _ => step.event(
                EventType::Warning,
                "SavepointSkipped",
                format!(
                    "the job is not {}, so no deletion savepoint can be taken",
                    JobState::Running
                ),
            ),
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
