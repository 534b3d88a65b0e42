//! Checking: before an upgrade stops the running job, the new spec's image runs `weir check`
//! against the job's newest checkpoint (else its last savepoint) in a pod of its own
//! (`job.preflight`, `bestEffort` by default). A job that could not restore that state is
//! refused here, with nothing stopped: the old job keeps running on the old spec, the status
//! and a Warning Event name the operators, and the refused spec is not tried again until the
//! spec changes. A check that cannot run or decide (no state to check yet, the image cannot
//! be pulled, the pod fails otherwise, or takes longer than `savepoints.timeout`) refuses
//! with `required` (which waits for a first checkpoint) and is skipped, with an Event saying
//! why, with `bestEffort`.

use std::time::Duration;

use crate::crd::{
    DesiredJobState, PreflightMode, PreflightRefusal, PreflightStatus, ReconcilePhase,
    RolloutIntent, StreamJobSpec, UpgradeMode,
};

use super::{
    Action, EventType, POLL, PreflightOutcome, Stepper, elapsed, idle, needs_restart, spec_json,
};

/// Whether the pre-flight check refused `spec` (and it has not changed since).
pub(super) fn refused(step: &Stepper<'_, '_>, spec: &StreamJobSpec) -> bool {
    step.status
        .reconciliation
        .refused
        .as_ref()
        .is_some_and(|r| r.spec == spec_json(spec))
}

/// How an upgrade from the deployed spec goes on, as far as the pre-flight check goes.
pub(super) enum Begin {
    /// The check started: the step to take.
    Checking((Action, Duration)),
    /// The upgrade goes ahead unchecked (nothing to check, or `job.preflight: disabled`).
    Unchecked,
    /// `required`, and there is no state to check against yet: the job keeps running on its
    /// deployed spec until a checkpoint or savepoint exists, then the check starts.
    Waiting,
}

/// The start of the `required` message while waiting for state to check against; the error
/// is cleared once the check can start.
const WAITING: &str = "the pre-flight check cannot run yet";

/// Starts the check of an upgrade from `deployed` to `spec` when `job.preflight` asks for one
/// and there is state to check.
pub(super) fn begin(
    step: &mut Stepper<'_, '_>,
    deployed: &StreamJobSpec,
    spec: &StreamJobSpec,
) -> Begin {
    // A new restartNonce alone redeploys the very job that runs: nothing new to check.
    let mut same_nonce = deployed.clone();
    same_nonce.job.restart_nonce = spec.job.restart_nonce;
    if spec.job.preflight == PreflightMode::Disabled
        || spec.job.upgrade_mode == UpgradeMode::Stateless
        || !needs_restart(&same_nonce, spec)
    {
        return Begin::Unchecked;
    }
    // The state the upgrade would restore: the newest checkpoint (a savepoint taken now has
    // the same operators and schemas), else the last savepoint.
    let state = step.last_state().or_else(|| {
        step.status
            .savepoints
            .last
            .as_ref()
            .map(|s| s.location.clone())
    });
    let Some(state) = state else {
        // Nothing to check against: the savepoint the upgrade takes is the first state there
        // is. `required` holds the upgrade until there is some; `bestEffort` says so and goes.
        let why = "the job has no completed checkpoint or savepoint yet";
        if spec.job.preflight == PreflightMode::Required {
            let message = format!(
                "{WAITING}: {why}; job.preflight is required, so the job keeps running on its \
                 previous spec until its first checkpoint (or a savepoint: job.\
                 savepointTriggerNonce) completes, or set job.preflight: bestEffort"
            );
            if step.status.error.as_deref() != Some(message.as_str()) {
                step.event(EventType::Warning, "PreflightWaiting", message.clone());
            }
            step.status.error = Some(message);
            return Begin::Waiting;
        }
        step.event(
            EventType::Normal,
            "PreflightSkipped",
            format!(
                "pre-flight check skipped: {why}; upgrading unchecked (job.preflight: bestEffort)"
            ),
        );
        return Begin::Unchecked;
    };
    if waiting(step) {
        step.status.error = None;
    }
    step.status.reconciliation.intent = Some(RolloutIntent::Upgrade);
    step.enter(ReconcilePhase::Checking);
    step.status.reconciliation.preflight = Some(PreflightStatus {
        state: state.clone(),
        spec: spec_json(spec),
        started_at: step.now_text(),
    });
    step.event(
        EventType::Normal,
        "PreflightCheck",
        format!("checking that the new spec can restore {state} before stopping the job"),
    );
    Begin::Checking((
        Action::RunPreflight {
            spec: Box::new(spec.clone()),
            state,
        },
        POLL,
    ))
}

/// Whether `required` is holding an upgrade until there is state to check against.
pub(super) fn waiting(step: &Stepper<'_, '_>) -> bool {
    step.status
        .error
        .as_deref()
        .is_some_and(|e| e.starts_with(WAITING))
}

pub(super) fn decide(step: &mut Stepper<'_, '_>) -> (Action, Duration) {
    let spec = step.spec().clone();
    let Some(check) = step.status.reconciliation.preflight.clone() else {
        // Nothing recorded to wait for: start over.
        return abandon(step);
    };
    // Never stuck: a suspension or another spec change ends this check at once.
    if spec.job.state == DesiredJobState::Suspended || check.spec != spec_json(&spec) {
        return abandon(step);
    }
    let timeout = step.savepoint_timeout();
    let timed_out = elapsed(Some(&check.started_at), timeout, step.now());
    match step.obs().preflight.clone() {
        Some(PreflightOutcome::Compatible) => {
            step.status.reconciliation.preflight = None;
            step.event(
                EventType::Normal,
                "PreflightPassed",
                format!("the new spec can restore {}; upgrading", check.state),
            );
            idle::start_rollout(step, &spec, RolloutIntent::Upgrade)
        }
        Some(PreflightOutcome::Incompatible(why)) => refuse(
            step,
            &spec,
            "IncompatibleState",
            format!(
                "the new spec cannot restore the running job's state {}: {why}; the job keeps \
                 running on its previous spec. Change the spec (or set job.allowNonRestoredState \
                 to drop that state, or job.preflight: disabled)",
                check.state
            ),
        ),
        Some(PreflightOutcome::Failed(why)) => match step.last_state() {
            // The job checkpointed on while the check read its state, and retention may have
            // deleted what the check was reading: check the newer state, a few times.
            Some(newer)
                if newer != check.state && step.status.reconciliation.retries < RECHECKS =>
            {
                recheck(step, spec, check, newer, why)
            }
            _ => undecided(step, &spec, &check, why),
        },
        None | Some(PreflightOutcome::Running) if timed_out => undecided(
            step,
            &spec,
            &check,
            format!(
                "it did not finish within {}s (savepoints.timeout)",
                timeout.as_secs()
            ),
        ),
        // Gone before it reported (deleted by hand, evicted): started again, idempotently.
        None => (
            Action::RunPreflight {
                spec: Box::new(spec),
                state: check.state,
            },
            POLL,
        ),
        Some(PreflightOutcome::Running) => (Action::None, POLL),
    }
}

/// How often a check that could not decide is started again against newer state.
const RECHECKS: u32 = 3;

/// Starts the check again against `newer`, the job's newest state since the check started.
fn recheck(
    step: &mut Stepper<'_, '_>,
    spec: StreamJobSpec,
    check: PreflightStatus,
    newer: String,
    why: String,
) -> (Action, Duration) {
    step.status.reconciliation.retries += 1;
    step.event(
        EventType::Normal,
        "PreflightRetry",
        format!(
            "the pre-flight check of {} could not decide ({why}); the job has newer state since: \
             checking against {newer}",
            check.state
        ),
    );
    step.status.reconciliation.preflight = Some(PreflightStatus {
        state: newer.clone(),
        started_at: step.now_text(),
        ..check
    });
    (
        Action::RunPreflight {
            spec: Box::new(spec),
            state: newer,
        },
        POLL,
    )
}

/// The check could not decide: refuse with `required`, upgrade with a Warning otherwise.
fn undecided(
    step: &mut Stepper<'_, '_>,
    spec: &StreamJobSpec,
    check: &PreflightStatus,
    why: String,
) -> (Action, Duration) {
    let message = format!(
        "the pre-flight check of {} could not decide: {why}",
        check.state
    );
    if spec.job.preflight == PreflightMode::Required {
        return refuse(
            step,
            spec,
            "PreflightFailed",
            format!(
                "{message}; job.preflight is required, so the job keeps running on its previous spec"
            ),
        );
    }
    step.status.reconciliation.preflight = None;
    step.event(
        EventType::Warning,
        "PreflightFailed",
        format!("{message}; check skipped, upgrading unchecked (job.preflight: bestEffort)"),
    );
    idle::start_rollout(step, spec, RolloutIntent::Upgrade)
}

/// Ends the rollout before anything was stopped, recording the refused spec.
fn refuse(
    step: &mut Stepper<'_, '_>,
    spec: &StreamJobSpec,
    reason: &'static str,
    message: String,
) -> (Action, Duration) {
    let reconciliation = &mut step.status.reconciliation;
    reconciliation.preflight = None;
    reconciliation.intent = None;
    reconciliation.refused = Some(PreflightRefusal {
        spec: spec_json(spec),
        message: message.clone(),
    });
    step.enter(ReconcilePhase::Idle);
    step.status.error = Some(message.clone());
    step.event(EventType::Warning, reason, message);
    (Action::None, POLL)
}

/// Drops the check and decides again from Idle (which checks the current spec, suspends, …).
fn abandon(step: &mut Stepper<'_, '_>) -> (Action, Duration) {
    step.status.reconciliation.preflight = None;
    step.status.reconciliation.intent = None;
    step.enter(ReconcilePhase::Idle);
    idle::decide(step)
}
