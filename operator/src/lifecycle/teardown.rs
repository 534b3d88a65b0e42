//! TearingDown: the restore path is recorded; remove the old JobManager and TaskManagers so no
//! old process can resubmit the job while the new one starts. A suspension ends here.

use std::time::Duration;

use crate::crd::{LifecycleState, ReconcilePhase, RolloutIntent};

use super::{Action, EventType, POLL, SETTLED, Stepper, deploying};

pub(super) fn decide(step: &mut Stepper<'_, '_>) -> (Action, Duration) {
    if step.obs().cluster_exists {
        return (Action::TearDown, POLL);
    }
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
