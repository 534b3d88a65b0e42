//! Deploying: apply the objects of the target spec with the recorded restore path. The phase
//! moves to AwaitingReady in the same status write, before the apply, so a restart re-applies
//! (idempotent) rather than deploying twice.

use std::time::Duration;

use crate::crd::{LifecycleState, ReconcilePhase, RolloutIntent};

use super::{Action, EventType, POLL, Stepper, running_spec};

pub(super) fn decide(step: &mut Stepper<'_, '_>) -> (Action, Duration) {
    let rollback = step.status.reconciliation.intent == Some(RolloutIntent::Rollback);
    step.status.lifecycle_state = if rollback {
        LifecycleState::RollingBack
    } else {
        LifecycleState::Deploying
    };
    step.enter(ReconcilePhase::AwaitingReady);
    step.status.reconciliation.deployed_at = Some(step.now_text());
    // The new run has completed no checkpoint yet; the old run's would mislead readiness.
    step.status.job_status.last_checkpoint = None;
    let Some(spec) = running_spec(&step.status) else {
        return (Action::None, POLL);
    };
    let restore_path = step.status.reconciliation.restore_path.clone();
    step.event(
        EventType::Normal,
        "Submit",
        format!(
            "deploying the job from {}",
            restore_path.as_deref().unwrap_or("empty state")
        ),
    );
    (
        Action::Deploy {
            spec: Box::new(spec),
            restore_path,
        },
        POLL,
    )
}
