//! The StreamJob's conditions, derived from the rest of its status after every decision, so
//! `kubectl wait --for=condition=Ready streamjob/NAME` and dashboards read one standard shape:
//!
//! - `Ready`: the job runs on the spec the user asked for (STABLE) or on the last stable spec
//!   after a failed upgrade (ROLLED_BACK).
//! - `Running`: the JobManager reports the job RUNNING.
//! - `Reconciling`: the operator is in the middle of something (a rollout, a savepoint, the
//!   deletion) and will look again soon.
//! - `Degraded`: something needs attention: the last step failed, the job FAILED, the spec is
//!   invalid, an upgrade was rolled back, the pre-flight check refused the spec (until it
//!   changes), or the health check redeployed the job (until it is stable again).
//!
//! A condition's `lastTransitionTime` moves only when its `status` flips; a new reason or
//! message alone keeps it.

use jiff::Timestamp;

use crate::crd::{Condition, LifecycleState, ReconcilePhase, RolloutIntent, StreamJobStatus};

use super::JobState;

/// Condition types, in the order they are listed in the status.
pub const READY: &str = "Ready";
pub const RUNNING: &str = "Running";
pub const RECONCILING: &str = "Reconciling";
pub const DEGRADED: &str = "Degraded";

/// The `Ready` and `Degraded` reason of a spec the operator refused.
pub const VALIDATION_ERROR: &str = "ValidationError";
/// `Degraded` while the pre-flight check's refusal of the spec stands.
pub const INCOMPATIBLE_STATE: &str = "IncompatibleState";

/// One condition's new value, before its transition time is settled.
struct Value {
    type_: &'static str,
    status: bool,
    reason: &'static str,
    message: String,
}

/// Recomputes `status.conditions` from the rest of the status. `invalid` carries the
/// validation message of a refused spec, which overrides `Ready` and `Degraded`.
pub fn update(
    status: &mut StreamJobStatus,
    generation: Option<i64>,
    now: Timestamp,
    invalid: Option<&str>,
) {
    let error = status.error.clone().unwrap_or_default();
    let values = [
        ready(status, &error, invalid),
        running(status),
        reconciling(status),
        degraded(status, &error, invalid),
    ];
    let now = now.to_string();
    status.conditions = values
        .into_iter()
        .map(|value| {
            let status_text = if value.status { "True" } else { "False" };
            let last_transition_time = status
                .conditions
                .iter()
                .find(|c| c.type_ == value.type_ && c.status == status_text)
                .map_or_else(|| now.clone(), |c| c.last_transition_time.clone());
            Condition {
                type_: value.type_.to_string(),
                status: status_text.to_string(),
                reason: value.reason.to_string(),
                message: value.message,
                last_transition_time,
                observed_generation: generation,
            }
        })
        .collect();
}

/// The condition of type `type_`, if the status has one.
pub fn get<'s>(status: &'s StreamJobStatus, type_: &str) -> Option<&'s Condition> {
    status.conditions.iter().find(|c| c.type_ == type_)
}

fn ready(status: &StreamJobStatus, error: &str, invalid: Option<&str>) -> Value {
    use LifecycleState as L;
    let (ok, reason) = match status.lifecycle_state {
        _ if invalid.is_some() => (false, VALIDATION_ERROR),
        // Checking a new spec: the job still runs the previous one, untouched.
        _ if status.reconciliation.phase == ReconcilePhase::Checking => (false, "Reconciling"),
        L::Stable => (true, "Stable"),
        L::RolledBack => (true, "RolledBack"),
        L::Suspended => (false, "Suspended"),
        L::Failed => (false, "Failed"),
        L::Deleting => (false, "Deleting"),
        _ if !error.is_empty() => (false, "Error"),
        _ => (false, "Reconciling"),
    };
    Value {
        type_: READY,
        status: ok,
        reason,
        message: invalid.unwrap_or(error).to_string(),
    }
}

fn running(status: &StreamJobStatus) -> Value {
    let state = status.job_status.state.as_deref();
    let running = state == Some(JobState::Running.as_str());
    let reason = match state {
        _ if status.lifecycle_state == LifecycleState::Suspended => "Suspended",
        None => "NoJob",
        Some(_) if running => "JobRunning",
        Some(_) => "JobNotRunning",
    };
    let message = match (&status.job_status.job_id, state) {
        (Some(id), Some(state)) => format!("job {id} is {state}"),
        _ => String::new(),
    };
    Value {
        type_: RUNNING,
        status: running && status.lifecycle_state != LifecycleState::Suspended,
        reason,
        message,
    }
}

fn reconciling(status: &StreamJobStatus) -> Value {
    let reconciliation = &status.reconciliation;
    let (busy, reason, message) = if status.lifecycle_state == LifecycleState::Deleting {
        (
            true,
            "Deleting",
            "stopping and removing the job".to_string(),
        )
    } else if reconciliation.phase != ReconcilePhase::Idle {
        let reason = match reconciliation.intent {
            Some(RolloutIntent::Deploy) | None => "Deploying",
            Some(RolloutIntent::Upgrade) => "Upgrading",
            Some(RolloutIntent::Suspend) => "Suspending",
            Some(RolloutIntent::Resume) => "Resuming",
            Some(RolloutIntent::Restart) => "Restarting",
            Some(RolloutIntent::Rollback) => "RollingBack",
        };
        (true, reason, format!("phase {:?}", reconciliation.phase))
    } else if let Some(pending) = &status.savepoints.pending {
        (
            true,
            "SavepointInProgress",
            format!("savepoint {} of job {}", pending.trigger_id, pending.job_id),
        )
    } else {
        (false, "Idle", String::new())
    };
    Value {
        type_: RECONCILING,
        status: busy,
        reason,
        message,
    }
}

fn degraded(status: &StreamJobStatus, error: &str, invalid: Option<&str>) -> Value {
    if invalid.is_none()
        && let Some(why) = &status.health.last_restart_reason
    {
        // Until the redeployed job is stable again.
        return Value {
            type_: DEGRADED,
            status: true,
            reason: "HealthRestart",
            message: why.clone(),
        };
    }
    if invalid.is_none()
        && let Some(refused) = &status.reconciliation.refused
    {
        // Until the spec changes: the job runs its previous spec.
        return Value {
            type_: DEGRADED,
            status: true,
            reason: INCOMPATIBLE_STATE,
            message: refused.message.clone(),
        };
    }
    let (bad, reason) = match status.lifecycle_state {
        _ if invalid.is_some() => (true, VALIDATION_ERROR),
        LifecycleState::Failed => (true, "Failed"),
        LifecycleState::RolledBack => (true, "RolledBack"),
        _ if !error.is_empty() => (true, "Error"),
        _ => (false, "Healthy"),
    };
    Value {
        type_: DEGRADED,
        status: bad,
        reason,
        message: invalid.unwrap_or(error).to_string(),
    }
}
