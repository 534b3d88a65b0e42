//! Stopping: choose the state the next deployment restores from. `savepoint` mode stops the job
//! with a savepoint and waits for its location; `last-state` takes the latest checkpoint;
//! `stateless` takes nothing. A failed or timed-out savepoint leaves the old job running, sets
//! `status.error` and retries with backoff; it never falls back to stateless. Also polls
//! savepoints taken while the job keeps running (manual and periodic).

use std::time::Duration;

use crate::crd::{
    DesiredJobState, LifecycleState, PendingSavepoint, ReconcilePhase, RolloutIntent,
    SavepointTrigger, StreamJobSpec, UpgradeMode,
};

use super::JobState;
use super::idle::trigger_name;
use super::{
    Action, EventType, POLL, SavepointProgress, Stepper, elapsed, needs_restart, spec_json,
    teardown,
};

pub(super) fn decide(step: &mut Stepper<'_, '_>) -> (Action, Duration) {
    let spec: StreamJobSpec = step.spec().clone();
    if let Some(out) = follow_the_spec(step, &spec) {
        return out;
    }
    let intent = step
        .status
        .reconciliation
        .intent
        .unwrap_or(RolloutIntent::Upgrade);

    let mode = match intent {
        // A failed job cannot take a savepoint; its checkpoints are its state.
        RolloutIntent::Restart => UpgradeMode::LastState,
        _ => spec.job.upgrade_mode,
    };
    match mode {
        UpgradeMode::Stateless => {
            step.status.reconciliation.restore_path = None;
            proceed(step)
        }
        UpgradeMode::LastState => last_state(step),
        UpgradeMode::Savepoint => {
            let pending_stop = step
                .status
                .savepoints
                .pending
                .as_ref()
                .is_some_and(|p| p.trigger.stops_job());
            if !pending_stop && step.obs().running_job().is_none() {
                // Nothing is running to take a savepoint of, so there is nothing newer than the
                // run's last checkpoint; restoring from it keeps all state the job has.
                step.event(
                    EventType::Warning,
                    "JobNotRunning",
                    format!(
                        "the job is not {}, so no savepoint can be taken; restoring from its \
                         latest checkpoint instead",
                        JobState::Running
                    ),
                );
                return last_state(step);
            }
            stop_with_savepoint(step, &spec, intent)
        }
    }
}

/// Never stuck: while this phase waits (for a savepoint, or a retry after one failed), the
/// user may change their mind. `job.state: suspended` turns the rollout into a suspension; a
/// new spec becomes the rollout's target; going back to the running spec while nothing has
/// been stopped yet cancels the rollout. `None`: carry on.
fn follow_the_spec(step: &mut Stepper<'_, '_>, spec: &StreamJobSpec) -> Option<(Action, Duration)> {
    let intent = step.status.reconciliation.intent;
    let stop_in_flight = step
        .status
        .savepoints
        .pending
        .as_ref()
        .is_some_and(|p| p.trigger.stops_job());
    if spec.job.state == DesiredJobState::Suspended {
        if !matches!(intent, Some(RolloutIntent::Suspend)) {
            step.status.reconciliation.intent = Some(RolloutIntent::Suspend);
            step.event(
                EventType::Normal,
                "SpecChanged",
                "job.state is suspended: the rollout in progress becomes a suspension".into(),
            );
        }
        return None;
    }
    if !matches!(
        intent,
        Some(RolloutIntent::Upgrade | RolloutIntent::Suspend | RolloutIntent::Restart)
    ) {
        return None;
    }
    let target = step
        .status
        .reconciliation
        .last_reconciled_spec
        .as_deref()
        .and_then(|s| serde_json::from_str::<StreamJobSpec>(s).ok())?;
    let running = step
        .status
        .reconciliation
        .last_stable_spec
        .as_deref()
        .and_then(|s| serde_json::from_str::<StreamJobSpec>(s).ok());
    let same = |a: &StreamJobSpec, b: &StreamJobSpec| {
        !needs_restart(a, b) && a.job.restart_nonce == b.job.restart_nonce
    };
    let back_to_running = running.as_ref().is_some_and(|r| same(r, spec));
    if !stop_in_flight
        && back_to_running
        && intent != Some(RolloutIntent::Restart)
        && step.obs().running_job().is_some()
    {
        // Nothing was stopped and the job already runs what is asked for.
        step.status.reconciliation.last_reconciled_spec = Some(spec_json(spec));
        step.status.reconciliation.intent = None;
        step.status.lifecycle_state = LifecycleState::Stable;
        step.status.error = None;
        step.enter(ReconcilePhase::Idle);
        step.event(
            EventType::Normal,
            "RolloutCancelled",
            "the spec is back to the running one; the rollout is cancelled".into(),
        );
        return Some((Action::None, POLL));
    }
    if !same(&target, spec) || intent == Some(RolloutIntent::Suspend) {
        step.status.reconciliation.last_reconciled_spec = Some(spec_json(spec));
        if intent == Some(RolloutIntent::Suspend) {
            step.status.reconciliation.intent = Some(RolloutIntent::Upgrade);
            step.event(
                EventType::Normal,
                "SpecChanged",
                "job.state is running again: the suspension in progress becomes an upgrade".into(),
            );
        } else {
            step.event(
                EventType::Normal,
                "SpecChanged",
                "the spec changed while the job was being stopped; the rollout now deploys the \
                 new spec"
                    .into(),
            );
        }
    }
    None
}

fn last_state(step: &mut Stepper<'_, '_>) -> (Action, Duration) {
    let state = step.last_state();
    step.status.reconciliation.restore_path = state;
    proceed(step)
}

fn proceed(step: &mut Stepper<'_, '_>) -> (Action, Duration) {
    step.status.error = None;
    step.enter(ReconcilePhase::TearingDown);
    teardown::decide(step)
}

fn stop_with_savepoint(
    step: &mut Stepper<'_, '_>,
    spec: &StreamJobSpec,
    intent: RolloutIntent,
) -> (Action, Duration) {
    let Some(dir) = spec.savepoint_dir().map(str::to_string) else {
        // Validation rejects this spec; stay put rather than lose state.
        let wait = step.fail(
            "SavepointError",
            "upgradeMode is savepoint but savepoints.dir is not set".into(),
        );
        return (Action::None, wait);
    };

    let Some(pending) = step.status.savepoints.pending.clone() else {
        if let Some(out) = suspend_fallback(step, intent) {
            return out;
        }
        if let Some(wait) = step.backing_off() {
            return (Action::None, wait);
        }
        let Some(job) = step.obs().running_job().cloned() else {
            return (Action::None, POLL);
        };
        let trigger = match intent {
            RolloutIntent::Suspend => SavepointTrigger::Suspend,
            _ => SavepointTrigger::Upgrade,
        };
        let trigger_id = step.inputs.fresh_trigger_id.clone();
        // Written before the request is sent: after a restart the same id is sent again, which
        // the JobManager answers with the savepoint already under way.
        step.status.savepoints.pending = Some(PendingSavepoint {
            trigger_id: trigger_id.clone(),
            job_id: job.job_id.clone(),
            trigger,
            triggered_at: step.now_text(),
            nonce: None,
        });
        step.event(
            EventType::Normal,
            "SavepointTriggered",
            format!(
                "stopping the job with a savepoint for the {} ({trigger_id})",
                trigger_name(trigger)
            ),
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
    };

    match step.obs().savepoint.clone() {
        Some(SavepointProgress::Completed { location }) => {
            step.status.savepoints.pending = None;
            step.record_savepoint(location.clone(), &pending);
            step.status.reconciliation.restore_path = Some(location.clone());
            step.event(
                EventType::Normal,
                "SavepointCompleted",
                format!("savepoint completed at {location}"),
            );
            proceed(step)
        }
        Some(SavepointProgress::Failed { cause }) => {
            let out = savepoint_failed(step, &pending, cause);
            suspend_fallback(step, intent).unwrap_or(out)
        }
        Some(SavepointProgress::Unknown) => resend(step, &pending, dir),
        Some(SavepointProgress::InProgress) | None => {
            let out = wait_or_time_out(step, &pending);
            suspend_fallback(step, intent).unwrap_or(out)
        }
    }
}

/// Failed stop-with-savepoint attempts after which a suspension (or a deletion) settles for
/// the newest completed checkpoint instead.
pub const STOP_SAVEPOINT_ATTEMPTS: u32 = 3;

/// A suspension whose savepoint failed [`STOP_SAVEPOINT_ATTEMPTS`] times suspends with the
/// newest completed checkpoint instead: the job is stopped either way, and a checkpoint loses
/// no state (exactly-once sinks absorb the replay). Without any checkpoint it keeps retrying.
fn suspend_fallback(
    step: &mut Stepper<'_, '_>,
    intent: RolloutIntent,
) -> Option<(Action, Duration)> {
    if intent != RolloutIntent::Suspend
        || step.status.savepoints.pending.is_some()
        || step.status.reconciliation.retries < STOP_SAVEPOINT_ATTEMPTS
    {
        return None;
    }
    let checkpoint = step.last_state()?;
    step.event(
        EventType::Warning,
        "SavepointFallback",
        format!(
            "the suspend savepoint failed {} times; suspending with the newest completed \
             checkpoint {checkpoint} instead",
            step.status.reconciliation.retries
        ),
    );
    Some(last_state(step))
}

/// The savepoint is still running (or not reported yet): poll again, or fail it once it has
/// run longer than the savepoint timeout.
fn wait_or_time_out(step: &mut Stepper<'_, '_>, pending: &PendingSavepoint) -> (Action, Duration) {
    if elapsed(
        Some(&pending.triggered_at),
        step.savepoint_timeout(),
        step.now(),
    ) {
        let cause = format!(
            "not completed within {}s",
            step.savepoint_timeout().as_secs()
        );
        return savepoint_failed(step, pending, cause);
    }
    (Action::None, POLL)
}

/// The JobManager never saw the trigger (the operator stopped between recording and sending
/// it): send the same trigger id again.
fn resend(
    step: &mut Stepper<'_, '_>,
    pending: &PendingSavepoint,
    dir: String,
) -> (Action, Duration) {
    step.status.error = None;
    (
        Action::TriggerSavepoint {
            job_id: pending.job_id.clone(),
            trigger_id: pending.trigger_id.clone(),
            target_directory: dir,
            stop: pending.trigger.stops_job(),
        },
        POLL,
    )
}

pub(super) fn savepoint_failed(
    step: &mut Stepper<'_, '_>,
    pending: &PendingSavepoint,
    cause: String,
) -> (Action, Duration) {
    step.status.savepoints.pending = None;
    if pending.trigger == SavepointTrigger::Manual {
        // A manual savepoint answers one nonce; the user bumps it again to retry.
        step.status.savepoints.last_trigger_nonce = pending.nonce;
    }
    let keeps_running = if pending.trigger.stops_job() {
        "; the job keeps running on its current spec"
    } else {
        ""
    };
    let wait = step.fail(
        "SavepointError",
        format!(
            "{} savepoint {} failed: {cause}{keeps_running}",
            trigger_name(pending.trigger),
            pending.trigger_id
        ),
    );
    (Action::None, wait)
}

/// Polls a manual or periodic savepoint; the job keeps running whatever the outcome.
pub(super) fn poll_running_savepoint(step: &mut Stepper<'_, '_>) -> (Action, Duration) {
    let Some(pending) = step.status.savepoints.pending.clone() else {
        return (Action::None, POLL);
    };
    match step.obs().savepoint.clone() {
        Some(SavepointProgress::Completed { location }) => {
            step.status.savepoints.pending = None;
            if pending.trigger == SavepointTrigger::Manual {
                step.status.savepoints.last_trigger_nonce = pending.nonce;
            }
            step.record_savepoint(location.clone(), &pending);
            step.status.error = None;
            step.status.reconciliation.retries = 0;
            step.status.reconciliation.retry_at = None;
            step.event(
                EventType::Normal,
                "SavepointCompleted",
                format!("savepoint completed at {location}"),
            );
            (Action::None, POLL)
        }
        Some(SavepointProgress::Failed { cause }) => savepoint_failed(step, &pending, cause),
        Some(SavepointProgress::Unknown) => match step.spec().savepoint_dir() {
            Some(dir) => {
                let dir = dir.to_string();
                resend(step, &pending, dir)
            }
            None => savepoint_failed(step, &pending, "savepoints.dir was removed".into()),
        },
        Some(SavepointProgress::InProgress) | None => wait_or_time_out(step, &pending),
    }
}
