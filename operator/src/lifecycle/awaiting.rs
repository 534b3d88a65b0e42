//! AwaitingReady: the new job is deployed; wait until it is RUNNING and has completed a
//! checkpoint (or just RUNNING when it takes no checkpoints). That spec then becomes the last
//! stable spec. When `job.upgradeReadinessTimeout` passes first, roll back to the last stable
//! spec from the same restore path; no HA setup is needed since the path is in the status.

use std::time::Duration;

use crate::crd::{DesiredJobState, LifecycleState, ReconcilePhase, RolloutIntent, StreamJobSpec};
use crate::duration;

use super::{
    Action, EventType, JobState, POLL, SETTLED, Stepper, elapsed, idle, needs_restart,
    running_spec, spec_json, teardown,
};

pub(super) fn decide(step: &mut Stepper<'_, '_>) -> (Action, Duration) {
    let spec: StreamJobSpec = step.spec().clone();
    let intent = step.status.reconciliation.intent;
    let rollback = intent == Some(RolloutIntent::Rollback);

    // A spec change while the new job is still not ready replaces it right away: the job has
    // nothing newer than its own checkpoints or its restore path.
    let target = step
        .status
        .reconciliation
        .last_reconciled_spec
        .as_deref()
        .and_then(|s| serde_json::from_str::<StreamJobSpec>(s).ok());
    if let Some(target) = &target
        && (needs_restart(target, &spec) || target.job.restart_nonce != spec.job.restart_nonce)
        && !(rollback && target == &spec)
    {
        step.event(
            EventType::Normal,
            "SpecChanged",
            "spec changed before the new job became ready; redeploying".into(),
        );
        step.status.reconciliation.last_reconciled_spec = Some(spec_json(&spec));
        step.status.reconciliation.intent = Some(RolloutIntent::Upgrade);
        let state = step.last_state();
        step.status.reconciliation.restore_path = state;
        step.status.lifecycle_state = LifecycleState::Upgrading;
        step.enter(ReconcilePhase::TearingDown);
        return teardown::decide(step);
    }

    // A job that never became ready can still be suspended; Stopping takes a savepoint if it
    // runs, else its latest checkpoint.
    if spec.job.state == DesiredJobState::Suspended {
        return idle::start_rollout(step, &spec, RolloutIntent::Suspend);
    }

    if !step.obs().cluster_exists {
        // The status was written but the apply never happened: apply now.
        if let Some(spec) = running_spec(&step.status) {
            return (
                Action::Deploy {
                    spec: Box::new(spec),
                    restore_path: step.status.reconciliation.restore_path.clone(),
                },
                POLL,
            );
        }
    }

    let takes_checkpoints = running_spec(&step.status).is_some_and(|s| s.checkpoints.is_some());
    match step.obs().job_state() {
        Some(JobState::Running)
            if !takes_checkpoints || step.status.job_status.last_checkpoint.is_some() =>
        {
            return ready(step, rollback);
        }
        // A bounded job that finished all its input before its first checkpoint did what it
        // should; rolling it back would run the end of its input a second time.
        Some(JobState::Finished) => return ready(step, rollback),
        Some(JobState::Running) => {
            step.status.lifecycle_state = if rollback {
                LifecycleState::RollingBack
            } else {
                LifecycleState::Running
            };
        }
        _ => {}
    }

    let timeout = spec
        .job
        .upgrade_readiness_timeout
        .as_deref()
        .and_then(|t| duration::parse(t).ok());
    let deployed_at = step.status.reconciliation.deployed_at.clone();
    match timeout {
        Some(timeout) if elapsed(deployed_at.as_deref(), timeout, step.now()) => {
            timed_out(step, intent, timeout)
        }
        None if step.obs().job_state() == Some(JobState::Failed) => {
            // Without a readiness timeout there is no rollback; Idle restarts the job if
            // job.restartFailed is set, else it stays FAILED.
            step.enter(ReconcilePhase::Idle);
            step.status.reconciliation.intent = None;
            step.status.lifecycle_state = LifecycleState::Failed;
            idle::decide(step)
        }
        _ => (Action::None, POLL),
    }
}

fn ready(step: &mut Stepper<'_, '_>, rollback: bool) -> (Action, Duration) {
    step.enter(ReconcilePhase::Idle);
    step.status.reconciliation.intent = None;
    step.status.error = None;
    if rollback {
        step.status.lifecycle_state = LifecycleState::RolledBack;
        step.event(
            EventType::Normal,
            "Rollback",
            "rolled back: the last stable spec is running again".into(),
        );
    } else {
        step.status.lifecycle_state = LifecycleState::Stable;
        step.status.reconciliation.failed_restarts = 0;
        step.status.health.last_restart_reason = None;
        step.status.reconciliation.last_stable_spec =
            step.status.reconciliation.last_reconciled_spec.clone();
        let message = if step.obs().job_state() == Some(JobState::Finished) {
            format!("the job {} its input", JobState::Finished)
        } else {
            format!(
                "the job is {} and has completed a checkpoint",
                JobState::Running
            )
        };
        step.event(EventType::Normal, "Stable", message);
    }
    (Action::None, SETTLED)
}

fn timed_out(
    step: &mut Stepper<'_, '_>,
    intent: Option<RolloutIntent>,
    timeout: Duration,
) -> (Action, Duration) {
    let has_stable = step.status.reconciliation.last_stable_spec.is_some()
        && step.status.reconciliation.last_stable_spec
            != step.status.reconciliation.last_reconciled_spec;
    let can_roll_back = matches!(
        intent,
        Some(RolloutIntent::Upgrade | RolloutIntent::Resume | RolloutIntent::Restart)
    ) && has_stable;
    if can_roll_back {
        let message = format!(
            "the upgraded job was not ready within {}s; rolling back to the last stable spec \
             from {}",
            timeout.as_secs(),
            step.status
                .reconciliation
                .restore_path
                .as_deref()
                .unwrap_or("empty state")
        );
        step.status.error = Some(message.clone());
        step.event(EventType::Warning, "Rollback", message);
        step.status.reconciliation.intent = Some(RolloutIntent::Rollback);
        step.status.lifecycle_state = LifecycleState::RollingBack;
        step.enter(ReconcilePhase::TearingDown);
        return teardown::decide(step);
    }
    if step.status.lifecycle_state != LifecycleState::Failed {
        let message = format!(
            "the job was not ready within {}s and there is no other stable spec to roll back to",
            timeout.as_secs()
        );
        step.status.error = Some(message.clone());
        step.event(EventType::Warning, "NotReady", message);
        step.status.lifecycle_state = LifecycleState::Failed;
    }
    (Action::None, SETTLED)
}
