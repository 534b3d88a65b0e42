//! Idle: no rollout in flight. Starts one when the spec or desired state changes or a failed job
//! should be restarted; otherwise looks after savepoints (pending, manual, periodic), savepoint
//! history and checkpoint retention, and keeps the running objects applied.

use std::time::Duration;

use crate::crd::{
    DesiredJobState, LifecycleState, PendingSavepoint, ReconcilePhase, RolloutIntent,
    SavepointTrigger, StreamJobSpec,
};
use crate::duration;

use super::{
    Action, EventType, InitialSnapshot, JobState, POLL, SETTLED, Stepper, add, backoff, checking,
    deploying, elapsed, health, history, needs_restart, parse_time, running_spec, spec_json,
    stopping,
};

pub(super) fn decide(step: &mut Stepper<'_, '_>) -> (Action, Duration) {
    let spec = step.spec().clone();
    let Some(deployed) = step
        .status
        .reconciliation
        .last_reconciled_spec
        .as_deref()
        .and_then(|s| serde_json::from_str::<StreamJobSpec>(s).ok())
    else {
        return first_deployment(step, &spec);
    };

    // A savepoint in flight finishes before anything else starts: its trigger id is the only
    // handle on it. Never stuck: a change waiting for it waits at most CHANGE_GRACE, then the
    // savepoint is abandoned (the rollout takes its own state).
    if let Some(pending) = step.status.savepoints.pending.clone() {
        let waited_enough = elapsed(Some(&pending.triggered_at), CHANGE_GRACE, step.now());
        if !(waited_enough && change_waiting(step, &spec, &deployed)) {
            return stopping::poll_running_savepoint(step);
        }
        step.status.savepoints.pending = None;
        if pending.trigger == SavepointTrigger::Manual {
            step.status.savepoints.last_trigger_nonce = pending.nonce;
        }
        step.status.reconciliation.retry_at = None;
        step.event(
            EventType::Warning,
            "SavepointAbandoned",
            format!(
                "{} savepoint {} is not done after {}s and a change is waiting; it is no \
                 longer waited for",
                trigger_name(pending.trigger),
                pending.trigger_id,
                CHANGE_GRACE.as_secs()
            ),
        );
    }
    if let Some(wait) = step.backing_off() {
        return (Action::None, wait);
    }

    let suspended = step.status.lifecycle_state == LifecycleState::Suspended;
    match (spec.job.state, suspended) {
        (DesiredJobState::Suspended, false) => {
            return start_rollout(step, &spec, RolloutIntent::Suspend);
        }
        (DesiredJobState::Running, true) => {
            step.status.reconciliation.last_reconciled_spec = Some(spec_json(&spec));
            step.status.reconciliation.intent = Some(RolloutIntent::Resume);
            step.status.lifecycle_state = LifecycleState::Deploying;
            step.event(
                EventType::Normal,
                "Resumed",
                "job.state is running; redeploying from the state saved at suspension".into(),
            );
            return deploying::decide(step);
        }
        (DesiredJobState::Suspended, true) => {
            // Changes made while suspended take effect on resume.
            step.status.reconciliation.last_reconciled_spec = Some(spec_json(&spec));
            return disposal_or_rest(step);
        }
        (DesiredJobState::Running, false) => {}
    }

    let rolled_back = step.status.lifecycle_state == LifecycleState::RolledBack;
    // A spec the pre-flight check refused waits for the next change; a changed one is new.
    let refused = checking::refused(step, &spec);
    if !refused
        && let Some(old) = step.status.reconciliation.refused.take()
        && step.status.error.as_deref() == Some(old.message.as_str())
    {
        step.status.error = None;
    }
    let mut waiting = false;
    if !refused
        && (needs_restart(&deployed, &spec) || spec.job.restart_nonce != deployed.job.restart_nonce)
    {
        // Said once, not on every look while `required` waits for state to check against.
        if !checking::waiting(step) {
            step.event(
                EventType::Normal,
                "SpecChanged",
                format!(
                    "spec changed; upgrading with upgradeMode {}",
                    upgrade_mode_name(&spec)
                ),
            );
        }
        match checking::begin(step, &deployed, &spec) {
            checking::Begin::Checking(checked) => return checked,
            checking::Begin::Unchecked => {
                return start_rollout(step, &spec, RolloutIntent::Upgrade);
            }
            checking::Begin::Waiting => waiting = true,
        }
    }
    if !waiting && checking::waiting(step) {
        // The change it waited to check is gone (reverted).
        step.status.error = None;
    }
    // Same job, other settings (savepoint schedule, retention, timeouts): take them as they are.
    // After a rollback the rejected spec stays recorded, so it is not retried until it changes;
    // a spec the pre-flight check refused, or is waiting to check, is not taken at all (the
    // job runs the previous one).
    if !rolled_back && !refused && !waiting {
        step.status.reconciliation.last_reconciled_spec = Some(spec_json(&spec));
    }

    if step.obs().job_state() == Some(JobState::Failed) {
        step.status.lifecycle_state = LifecycleState::Failed;
        if spec.job.restart_failed {
            // A job that fails again right after each restart is restarted ever more slowly.
            let restarts = step.status.reconciliation.failed_restarts;
            let wait = backoff(restarts);
            if !elapsed(
                step.status.reconciliation.deployed_at.as_deref(),
                wait,
                step.now(),
            ) {
                step.status.error = Some(format!(
                    "the job {}; restart {} is due {}s after the last deployment",
                    JobState::Failed,
                    restarts + 1,
                    wait.as_secs()
                ));
                return (Action::None, POLL);
            }
            step.status.reconciliation.failed_restarts = restarts.saturating_add(1);
            step.event(
                EventType::Warning,
                "Restart",
                format!(
                    "the job {}; restarting from its latest checkpoint (job.restartFailed)",
                    JobState::Failed
                ),
            );
            return start_rollout(step, &spec, RolloutIntent::Restart);
        }
    }

    if let Some(step_out) = health::check(step, &spec) {
        return step_out;
    }
    if let Some(step_out) = manual_or_periodic_savepoint(step, &spec) {
        return step_out;
    }
    let (action, wait) = disposal_or_rest(step);
    // Come back when the next periodic savepoint is due, not only after the settled interval.
    let wait = match periodic_due_in(step, &spec) {
        Some(due) => wait.min(due.max(Duration::from_secs(1))),
        None => wait,
    };
    // A job that is not observed RUNNING with a checkpoint (e.g. its JobManager container was
    // restarted and resumes as a new run) is looked at again soon, so the status catches up.
    // The health checks look on every reconcile: a settled job is looked at every
    // HEALTH_POLL instead of every minute.
    let wait = if spec.health.is_some() {
        wait.min(HEALTH_POLL)
    } else {
        wait
    };
    let settled = match step.obs().job_state() {
        Some(JobState::Running) => {
            spec.checkpoints.is_none() || step.status.job_status.last_checkpoint.is_some()
        }
        Some(JobState::Failed | JobState::Finished | JobState::Canceled) => true,
        _ => false,
    };
    (action, if settled { wait } else { wait.min(POLL) })
}

/// How often a settled job with `spec.health` is looked at.
pub const HEALTH_POLL: Duration = Duration::from_secs(10);

/// How long a spec change or suspension waits for a manual or periodic savepoint in flight.
pub const CHANGE_GRACE: Duration = Duration::from_secs(60);

/// Whether the spec asks for something a savepoint in flight holds up.
fn change_waiting(step: &Stepper<'_, '_>, spec: &StreamJobSpec, deployed: &StreamJobSpec) -> bool {
    let suspended = step.status.lifecycle_state == LifecycleState::Suspended;
    (spec.job.state == DesiredJobState::Suspended) != suspended
        || needs_restart(deployed, spec)
        || spec.job.restart_nonce != deployed.job.restart_nonce
}

fn first_deployment(step: &mut Stepper<'_, '_>, spec: &StreamJobSpec) -> (Action, Duration) {
    let mut restore_path = spec.job.initial_savepoint_path.clone();
    if let Some(name) = &spec.job.initial_snapshot_name {
        // Nothing is recorded until the snapshot is there: deploying without it would start
        // from empty state.
        match step.obs().initial_snapshot.clone() {
            Some(InitialSnapshot::Ready(path)) => restore_path = Some(path),
            other => {
                let why = match other {
                    Some(InitialSnapshot::NotReady(why)) => why,
                    _ => "not looked up yet".to_string(),
                };
                let message = format!(
                    "waiting for StreamJobSnapshot {name} (job.initialSnapshotName) to complete: \
                     {why}"
                );
                if step.status.error.as_deref() != Some(message.as_str()) {
                    step.event(
                        EventType::Warning,
                        "InitialSnapshotNotReady",
                        message.clone(),
                    );
                }
                step.status.error = Some(message);
                return (Action::None, POLL);
            }
        }
    }
    step.status.error = None;
    let reconciliation = &mut step.status.reconciliation;
    reconciliation.last_reconciled_spec = Some(spec_json(spec));
    reconciliation.restore_path = restore_path;
    if spec.job.state == DesiredJobState::Suspended {
        step.status.lifecycle_state = LifecycleState::Suspended;
        return (Action::None, SETTLED);
    }
    reconciliation.intent = Some(RolloutIntent::Deploy);
    step.event(
        EventType::Normal,
        "Submit",
        "deploying the job for the first time".into(),
    );
    deploying::decide(step)
}

/// Starts a rollout: records the target spec and intent, then lets the Stopping phase choose
/// what the next deployment restores from.
pub(super) fn start_rollout(
    step: &mut Stepper<'_, '_>,
    spec: &StreamJobSpec,
    intent: RolloutIntent,
) -> (Action, Duration) {
    step.status.reconciliation.last_reconciled_spec = Some(spec_json(spec));
    step.status.reconciliation.intent = Some(intent);
    step.status.lifecycle_state = LifecycleState::Upgrading;
    step.enter(ReconcilePhase::Stopping);
    stopping::decide(step)
}

/// When the next periodic savepoint is due: `periodicInterval` after the newest savepoint, or
/// after the start of the run when there is none. `None` without a periodic schedule; zero when
/// it is due now.
fn periodic_due_in(step: &Stepper<'_, '_>, spec: &StreamJobSpec) -> Option<Duration> {
    spec.savepoint_dir()?;
    let interval = spec
        .savepoints
        .as_ref()?
        .periodic_interval
        .as_deref()
        .and_then(|i| duration::parse(i).ok())?;
    let since = step
        .status
        .savepoints
        .last
        .as_ref()
        .map(|s| s.timestamp.clone())
        .or_else(|| step.status.reconciliation.deployed_at.clone())
        .or_else(|| step.status.job_status.start_time.clone());
    let Some(since) = since.as_deref().and_then(parse_time) else {
        return Some(Duration::ZERO);
    };
    let due = add(since, interval);
    Some(
        step.now()
            .duration_until(due)
            .try_into()
            .unwrap_or(Duration::ZERO),
    )
}

fn manual_or_periodic_savepoint(
    step: &mut Stepper<'_, '_>,
    spec: &StreamJobSpec,
) -> Option<(Action, Duration)> {
    let job = step.obs().running_job()?.clone();
    let dir = spec.savepoint_dir()?.to_string();
    let nonce = spec.job.savepoint_trigger_nonce;
    let trigger = if nonce.is_some() && nonce != step.status.savepoints.last_trigger_nonce {
        SavepointTrigger::Manual
    } else {
        if periodic_due_in(step, spec)? > Duration::ZERO {
            return None;
        }
        SavepointTrigger::Periodic
    };
    let trigger_id = step.inputs.fresh_trigger_id.clone();
    step.status.savepoints.pending = Some(PendingSavepoint {
        trigger_id: trigger_id.clone(),
        job_id: job.job_id.clone(),
        trigger,
        triggered_at: step.now_text(),
        nonce: (trigger == SavepointTrigger::Manual)
            .then_some(nonce)
            .flatten(),
    });
    step.event(
        EventType::Normal,
        "SavepointTriggered",
        format!(
            "{} savepoint triggered ({trigger_id})",
            trigger_name(trigger)
        ),
    );
    Some((
        Action::TriggerSavepoint {
            job_id: job.job_id,
            trigger_id,
            target_directory: dir,
            stop: false,
        },
        POLL,
    ))
}

/// Savepoint history cleanup, then checkpoint retention, then keeping the objects applied.
fn disposal_or_rest(step: &mut Stepper<'_, '_>) -> (Action, Duration) {
    // Savepoints the operator cannot delete yet stay in the history rather than being retried.
    let expired: Vec<String> = history::expired(step.spec(), &step.status, step.now())
        .into_iter()
        .filter(|location| step.can_delete(location))
        .collect();
    if !expired.is_empty() {
        step.status
            .savepoints
            .history
            .retain(|s| !expired.contains(&s.location));
        step.status.savepoints.disposing.extend(expired);
    }
    if !step.status.savepoints.disposing.is_empty() {
        let locations = step.status.savepoints.disposing.clone();
        step.event(
            EventType::Normal,
            "Cleanup",
            format!("deleting {} expired savepoint(s)", locations.len()),
        );
        return (Action::DisposeSavepoints { locations }, POLL);
    }

    if let Some(action) = checkpoint_retention(step) {
        return (action, POLL);
    }

    if step.status.lifecycle_state == LifecycleState::Suspended {
        return (Action::None, SETTLED);
    }
    match running_spec(&step.status) {
        Some(spec) => (
            Action::Deploy {
                spec: Box::new(spec),
                restore_path: step.status.reconciliation.restore_path.clone(),
            },
            SETTLED,
        ),
        None => (Action::None, SETTLED),
    }
}

/// Once the current run has completed a checkpoint, earlier runs' checkpoint directories are no
/// longer needed, unless one holds the path the current run was restored from.
fn checkpoint_retention(step: &mut Stepper<'_, '_>) -> Option<Action> {
    let healthy = matches!(
        step.status.lifecycle_state,
        LifecycleState::Stable | LifecycleState::RolledBack
    );
    if !healthy || step.status.job_status.last_checkpoint.is_none() {
        return None;
    }
    let dir = step.spec().checkpoints.as_ref()?.dir.clone();
    if !step.can_delete(&dir) {
        return None;
    }
    let restore = step.status.reconciliation.restore_path.clone();
    let job_ids: Vec<String> = step
        .status
        .job_status
        .previous_job_ids
        .iter()
        .filter(|id| restore.as_deref().is_none_or(|r| !r.contains(id.as_str())))
        .cloned()
        .collect();
    if job_ids.is_empty() {
        return None;
    }
    step.event(
        EventType::Normal,
        "Cleanup",
        format!("deleting checkpoints of earlier runs {job_ids:?}"),
    );
    Some(Action::DeleteCheckpoints { dir, job_ids })
}

fn upgrade_mode_name(spec: &StreamJobSpec) -> &'static str {
    match spec.job.upgrade_mode {
        crate::crd::UpgradeMode::Stateless => "stateless",
        crate::crd::UpgradeMode::Savepoint => "savepoint",
        crate::crd::UpgradeMode::LastState => "last-state",
    }
}

/// How a savepoint trigger is spelled in messages and snapshot names.
pub fn trigger_name(trigger: SavepointTrigger) -> &'static str {
    match trigger {
        SavepointTrigger::Upgrade => "upgrade",
        SavepointTrigger::Suspend => "suspend",
        SavepointTrigger::Deletion => "deletion",
        SavepointTrigger::Manual => "manual",
        SavepointTrigger::Periodic => "periodic",
    }
}
