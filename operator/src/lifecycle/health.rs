//! Health checks without HA (`spec.health`): the JobManager's restore counter and checkpoint
//! progress, sampled on every decision into `status.health`, and the redeployment of an
//! unhealthy STABLE job from its newest completed checkpoint. The redeployment is an ordinary
//! `Restart` rollout, which always restores last-state; nothing needs Flink-style HA metadata
//! since the checkpoint path is in the status (or found in storage).
//!
//! Restarts are counted in tumbling windows of `restartsWindow`: the window starts at the first
//! sample of a run and again whenever one has passed, and the job is unhealthy when its restore
//! count grew by more than `restartsThreshold` since the window started. Checkpoint progress is
//! measured from the newer of the deployment and the last time a new checkpoint was seen.

use std::time::Duration;

use jiff::Timestamp;

use crate::crd::{LifecycleState, RolloutIntent, StreamJobSpec, StreamJobStatus};
use crate::duration;

use super::{Action, EventType, JobState, Observation, Stepper, elapsed, idle, parse_time};

/// Updates the samples in `status.health` from what the JobManager reports.
pub(super) fn track(status: &mut StreamJobStatus, observation: &Observation, now: Timestamp) {
    let Some(job) = &observation.job else {
        return;
    };
    let now_text = now.to_string();
    let health = &mut status.health;
    if health.job_id.as_deref() != Some(job.job_id.as_str()) {
        // A new run: its counters start from here.
        health.job_id = Some(job.job_id.clone());
        health.window_start = Some(now_text.clone());
        health.restores_at_window_start = job.restores;
        health.last_checkpoint = job.latest_checkpoint.clone();
        health.last_checkpoint_at = Some(now_text);
        return;
    }
    if job.latest_checkpoint.is_some() && job.latest_checkpoint != health.last_checkpoint {
        health.last_checkpoint = job.latest_checkpoint.clone();
        health.last_checkpoint_at = Some(now_text);
    }
}

/// Starts a last-state redeployment when the job is unhealthy; `None` when it is healthy, not
/// checked, or in no state to be restarted (not settled, FINISHED, FAILED: that is
/// `restartFailed`'s).
pub(super) fn check(
    step: &mut Stepper<'_, '_>,
    spec: &StreamJobSpec,
) -> Option<(Action, Duration)> {
    let settings = spec.health.as_ref()?;
    // Only a settled job on its own spec: a rolled-back one would be redeployed on the spec
    // that was rejected, and one not ready yet is the readiness timeout's.
    if step.status.lifecycle_state != LifecycleState::Stable {
        return None;
    }
    let job = step.obs().job.clone()?;
    if !matches!(
        job.state,
        JobState::Running | JobState::Restarting | JobState::Failing | JobState::Created
    ) {
        return None;
    }
    let health = &step.status.health;
    if health.job_id.as_deref() != Some(job.job_id.as_str()) {
        return None;
    }
    let now = step.now();
    let mut reason = None;
    if let (Some(threshold), Ok(window)) = (
        settings
            .restarts_threshold
            .and_then(|t| u64::try_from(t).ok()),
        duration::parse(&settings.restarts_window),
    ) {
        let restarts = job.restores.saturating_sub(health.restores_at_window_start);
        if restarts > threshold {
            reason = Some(format!(
                "the job restarted {restarts} times within {}s (more than restartsThreshold \
                 {threshold})",
                window.as_secs()
            ));
        } else if elapsed(health.window_start.as_deref(), window, now) {
            let health = &mut step.status.health;
            health.window_start = Some(now.to_string());
            health.restores_at_window_start = job.restores;
        }
    }
    if reason.is_none()
        && job.state == JobState::Running
        && spec.checkpoints.is_some()
        && let Some(timeout) = settings
            .checkpoint_progress_timeout
            .as_deref()
            .and_then(|t| duration::parse(t).ok())
    {
        let health = &step.status.health;
        let since = [
            health.last_checkpoint_at.as_deref(),
            step.status.reconciliation.deployed_at.as_deref(),
        ]
        .into_iter()
        .flatten()
        .filter_map(parse_time)
        .max();
        if elapsed(since.map(|t| t.to_string()).as_deref(), timeout, now) {
            reason = Some(format!(
                "no checkpoint completed for {}s (checkpointProgressTimeout), the last being {}",
                timeout.as_secs(),
                health.last_checkpoint.as_deref().unwrap_or("none")
            ));
        }
    }
    let reason = reason?;
    let message = format!("{reason}; redeploying from the newest completed checkpoint");
    step.status.health.last_restart_reason = Some(reason);
    step.status.health.restarts = step.status.health.restarts.saturating_add(1);
    step.event(EventType::Warning, "HealthRestart", message);
    Some(idle::start_rollout(step, spec, RolloutIntent::Restart))
}
