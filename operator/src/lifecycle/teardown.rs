//! TearingDown: the restore path is recorded; remove the old JobManager and TaskManagers so no
//! old process can resubmit the job while the new one starts. A suspension ends here.

use std::time::Duration;

use crate::crd::{LifecycleState, ReconcilePhase, RolloutIntent};

use super::{Action, EventType, POLL, SETTLED, Stepper, deploying};

pub(super) fn decide(step: &mut Stepper<'_, '_>) -> (Action, Duration) {
    if step.obs().cluster_exists {
        return (Action::TearDown, POLL);
    }
    settle_last_state(step);
    if step.status.reconciliation.intent == Some(RolloutIntent::Suspend) {
        step.enter(ReconcilePhase::Idle);
        step.status.reconciliation.intent = None;
        step.status.lifecycle_state = LifecycleState::Suspended;
        step.status.job_status.state = None;
        let from = step
            .status
            .reconciliation
            .restore_path
            .clone()
            .unwrap_or_else(|| "empty state".to_string());
        step.event(
            EventType::Normal,
            "Suspended",
            format!("the job is suspended; it resumes from {from}"),
        );
        return (Action::None, SETTLED);
    }
    step.enter(ReconcilePhase::Deploying);
    deploying::decide(step)
}

/// A rollout that restores from the old run's latest checkpoint chose it while the run was
/// still going: checkpoints it completed until its pods were gone are newer, and their output
/// is already committed by the exactly-once sinks, so restoring from the one chosen earlier
/// would emit it again. Once the pods are gone storage has the final word: restore from the
/// newest checkpoint of that run. A savepoint (or any other location) is left alone.
fn settle_last_state(step: &mut Stepper<'_, '_>) {
    let Some(newest) = step.obs().storage_latest_checkpoint.clone() else {
        return;
    };
    let Some(chosen) = step.status.reconciliation.restore_path.clone() else {
        return;
    };
    let (Some((run, n)), Some((newest_run, m))) = (checkpoint_of(&chosen), checkpoint_of(&newest))
    else {
        return;
    };
    if run == newest_run && m > n {
        step.event(
            EventType::Normal,
            "LastState",
            format!(
                "the old run completed checkpoints until it stopped: restoring from {newest} \
                 instead of {chosen}"
            ),
        );
        step.status.reconciliation.restore_path = Some(newest);
    }
}

/// `<run>/chk-<n>` (a trailing slash allowed) split into the run's directory and `n`.
fn checkpoint_of(location: &str) -> Option<(&str, u64)> {
    let (run, last) = location.trim_end_matches('/').rsplit_once('/')?;
    Some((run, last.strip_prefix("chk-")?.parse().ok()?))
}
