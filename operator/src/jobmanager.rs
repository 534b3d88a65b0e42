//! Client for the JobManager REST API, reduced to what the lifecycle observes and triggers: the
//! job, its latest checkpoint, and savepoint triggers and their status. It is the contract's
//! client ([`weir_contract::client`]) with the contract's types, the same the worker's server
//! answers with; reading the answers into the lifecycle's terms is split into pure functions
//! so it is tested without a server.
//!
//! Savepoint requests carry a `triggerId` chosen by the operator (as Flink's REST API accepts):
//! the JobManager must treat a repeated trigger id as the same operation, which is what makes
//! re-sending after an operator restart safe.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use serde_json::Value;
use weir_contract::client::{ClientSecurity, RestClient};
use weir_contract::rest::{
    CheckpointingStatistics, JobDetails, JobsList, Route, SavepointOutcome, SavepointStatus,
    SavepointTriggerRequest, StopWithSavepointRequest,
};

use crate::lifecycle::{JobState, ObservedJob, SavepointProgress};
use crate::names;

/// Why a REST call failed: the contract client's errors.
pub use weir_contract::client::ClientError as RestError;

/// How long one REST call may take; a JobManager that does not answer in time counts as
/// unreachable for this reconcile.
const TIMEOUT: Duration = Duration::from_secs(10);

/// A REST client shared by all reconciles (one connection pool for every JobManager).
#[derive(Clone, Debug)]
pub struct JobManagerClient {
    rest: RestClient,
}

impl Default for JobManagerClient {
    fn default() -> Self {
        Self::new()
    }
}

/// `Ok(None)` for a 404 (no such job or trigger yet), the answer otherwise.
fn found<T>(result: Result<T, RestError>) -> Result<Option<T>, RestError> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

impl JobManagerClient {
    pub fn new() -> Self {
        JobManagerClient {
            rest: RestClient::new("http://unset.invalid").with_timeout(TIMEOUT),
        }
    }

    /// The same client sending a job's token and trusting its CA (`spec.security`).
    pub fn secured(&self, security: &ClientSecurity) -> Result<JobManagerClient, RestError> {
        Ok(JobManagerClient {
            rest: self.rest.clone().with_security(security)?,
        })
    }

    /// `base` with the `https` scheme, for a JobManager serving TLS.
    pub fn https(base: &str) -> String {
        match base.strip_prefix("http://") {
            Some(rest) => format!("https://{rest}"),
            None => base.to_string(),
        }
    }

    /// Base URL of a StreamJob's JobManager Service.
    pub fn base_url(job_name: &str, namespace: &str) -> String {
        format!(
            "http://{}.{namespace}.svc:{}",
            names::jobmanager_name(job_name),
            names::REST_PORT
        )
    }

    /// Base URL of a JobManager pod: its pod IP and the REST port, preferring a Ready pod.
    /// Pod IPs are reachable wherever the operator runs, including control planes without
    /// cluster DNS or kube-proxy (Endpoints cannot help there: they reject loopback pod IPs,
    /// which a process-based kubelet hands out). `None` when no pod has an IP yet.
    pub fn base_url_from_pods(pods: &[Pod]) -> Option<String> {
        let ip_of = |pod: &Pod| {
            let status = pod.status.as_ref()?;
            if status.phase.as_deref() != Some("Running") {
                return None;
            }
            status.pod_ip.clone().filter(|ip| !ip.is_empty())
        };
        let ready = |pod: &&Pod| {
            pod.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        };
        let ip = pods
            .iter()
            .filter(ready)
            .find_map(ip_of)
            .or_else(|| pods.iter().find_map(ip_of))?;
        let port = names::REST_PORT;
        // IPv6 addresses need brackets in a URL.
        Some(if ip.contains(':') {
            format!("http://[{ip}]:{port}")
        } else {
            format!("http://{ip}:{port}")
        })
    }

    /// The job of an application-mode JobManager, with its latest completed checkpoint.
    pub async fn observe_job(&self, base: &str) -> Result<Option<ObservedJob>, RestError> {
        let rest = self.rest.at(base);
        let Some(jobs) = found(rest.jobs().await)? else {
            return Ok(None);
        };
        let Some(job_id) = first_job_id(&jobs) else {
            return Ok(None);
        };
        let Some(details) = found(rest.job(&job_id).await)? else {
            return Ok(None);
        };
        let checkpoints = found(rest.checkpoints(&job_id).await)?;
        let latest_checkpoint = checkpoints.as_ref().and_then(latest_checkpoint);
        let restores = checkpoints.as_ref().map_or(0, |c| c.counts.restored);
        let (state, start_time) = job_state_and_start(&details);
        Ok(Some(ObservedJob {
            job_id,
            state,
            start_time,
            latest_checkpoint,
            restores,
        }))
    }

    /// Status of a savepoint trigger; `Unknown` when the JobManager has never seen it.
    pub async fn savepoint_status(
        &self,
        base: &str,
        job_id: &str,
        trigger_id: &str,
    ) -> Result<SavepointProgress, RestError> {
        let rest = self.rest.at(base);
        Ok(
            match found(rest.savepoint_status(job_id, trigger_id).await)? {
                None => SavepointProgress::Unknown,
                Some(status) => progress(&status),
            },
        )
    }

    /// Triggers a savepoint (or a stop-with-savepoint) under the operator's trigger id.
    pub async fn trigger_savepoint(
        &self,
        base: &str,
        job_id: &str,
        trigger_id: &str,
        target_directory: &str,
        stop: bool,
    ) -> Result<(), RestError> {
        let rest = self.rest.at(base);
        let sent = match trigger_request(trigger_id, target_directory, stop) {
            TriggerRequest::Stop(request) => rest.stop(job_id, &request).await,
            TriggerRequest::Savepoint(request) => rest.trigger_savepoint(job_id, &request).await,
        };
        // A 404 (the job is gone) is not an error here: the trigger's status then reads
        // `Unknown`, and the lifecycle decides from that.
        found(sent).map(|_| ())
    }
}

/// A savepoint trigger as the operator sends it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TriggerRequest {
    /// `POST /jobs/:jobid/stop`.
    Stop(StopWithSavepointRequest),
    /// `POST /jobs/:jobid/savepoints`.
    Savepoint(SavepointTriggerRequest),
}

impl TriggerRequest {
    /// The route it goes to.
    pub fn route(&self, job_id: &str) -> Route {
        let job = job_id.to_string();
        match self {
            TriggerRequest::Stop(_) => Route::Stop { job },
            TriggerRequest::Savepoint(_) => Route::TriggerSavepoint { job },
        }
    }

    /// Its JSON body.
    pub fn body(&self) -> Value {
        match self {
            TriggerRequest::Stop(r) => serde_json::to_value(r),
            TriggerRequest::Savepoint(r) => serde_json::to_value(r),
        }
        .expect("request types serialize")
    }
}

/// URL and body of a savepoint trigger. Stop-with-savepoint uses Flink's camelCase body,
/// a plain savepoint its kebab-case one; both carry the operator's `triggerId`.
pub fn savepoint_request(
    base: &str,
    job_id: &str,
    trigger_id: &str,
    target_directory: &str,
    stop: bool,
) -> (String, Value) {
    let request = trigger_request(trigger_id, target_directory, stop);
    (
        format!("{base}{}", request.route(job_id).path()),
        request.body(),
    )
}

/// The trigger the operator sends: stop-with-savepoint (never draining: the job is resumed
/// from it) or a plain savepoint (never cancelling), both under the operator's `triggerId`.
fn trigger_request(trigger_id: &str, target_directory: &str, stop: bool) -> TriggerRequest {
    if stop {
        TriggerRequest::Stop(StopWithSavepointRequest {
            target_directory: Some(target_directory.to_string()),
            drain: false,
            trigger_id: Some(trigger_id.to_string()),
        })
    } else {
        TriggerRequest::Savepoint(SavepointTriggerRequest {
            target_directory: Some(target_directory.to_string()),
            cancel_job: false,
            trigger_id: Some(trigger_id.to_string()),
        })
    }
}

/// The job of `GET /jobs`. An application-mode JobManager runs one job; if several are
/// listed, a non-terminal one is preferred.
pub fn first_job_id(jobs: &JobsList) -> Option<String> {
    jobs.jobs
        .iter()
        .find(|j| !j.status.is_terminal())
        .or_else(|| jobs.jobs.first())
        .map(|j| j.id.clone())
}

/// State and start time (RFC 3339) from `GET /jobs/:id`.
pub fn job_state_and_start(details: &JobDetails) -> (JobState, Option<String>) {
    let start_time = Some(details.start_time)
        .filter(|ms| *ms > 0)
        .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
        .map(|t| t.to_string());
    (details.state, start_time)
}

/// `external_path` of the latest completed checkpoint from `GET /jobs/:id/checkpoints`.
pub fn latest_checkpoint(checkpoints: &CheckpointingStatistics) -> Option<String> {
    checkpoints.latest.completed.as_ref()?.external_path.clone()
}

/// The job id in `GET /jobs` (see [`first_job_id`]); `None` for another shape.
pub fn parse_first_job_id(body: &Value) -> Option<String> {
    first_job_id(&serde_json::from_value(body.clone()).ok()?)
}

/// State and start time from `GET /jobs/:id` (see [`job_state_and_start`]).
pub fn parse_job_details(body: &Value) -> Option<(JobState, Option<String>)> {
    Some(job_state_and_start(
        &serde_json::from_value(body.clone()).ok()?,
    ))
}

/// The latest completed checkpoint from `GET /jobs/:id/checkpoints` (see [`latest_checkpoint`]).
pub fn parse_latest_checkpoint(body: &Value) -> Option<String> {
    latest_checkpoint(&serde_json::from_value(body.clone()).ok()?)
}

/// Progress from `GET /jobs/:id/savepoints/:triggerid` (see [`progress`]).
pub fn parse_savepoint_status(body: &Value) -> Option<SavepointProgress> {
    Some(progress(&serde_json::from_value(body.clone()).ok()?))
}

/// Progress from `GET /jobs/:id/savepoints/:triggerid`; a failure keeps the cause's first line.
pub fn progress(status: &SavepointStatus) -> SavepointProgress {
    match status.outcome() {
        SavepointOutcome::InProgress => SavepointProgress::InProgress,
        SavepointOutcome::Completed(location) => SavepointProgress::Completed { location },
        SavepointOutcome::Failed(cause) => SavepointProgress::Failed {
            cause: cause.lines().next().unwrap_or("").to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_running_job_is_picked_from_the_job_list() {
        let body = json!({"jobs": [
            {"id": "old", "status": "FINISHED"},
            {"id": "a1b2", "status": "RUNNING"}
        ]});
        assert_eq!(parse_first_job_id(&body).as_deref(), Some("a1b2"));
        assert_eq!(parse_first_job_id(&json!({"jobs": []})), None);
    }

    #[test]
    fn job_details_give_state_and_start_time() {
        let body = json!({"jid": "a1b2", "state": "RUNNING", "start-time": 1767225600000i64});
        assert_eq!(
            parse_job_details(&body),
            Some((JobState::Running, Some("2026-01-01T00:00:00Z".to_string())))
        );
        assert_eq!(parse_job_details(&json!({"state": "BOGUS"})), None);
    }

    #[test]
    fn the_latest_completed_checkpoint_path_is_read() {
        let body = json!({
            "counts": {"completed": 3},
            "latest": {"completed": {"id": 3, "external_path": "s3://b/cp/a1b2/chk-3"}}
        });
        assert_eq!(
            parse_latest_checkpoint(&body).as_deref(),
            Some("s3://b/cp/a1b2/chk-3")
        );
        assert_eq!(
            parse_latest_checkpoint(&json!({"latest": {"completed": null}})),
            None
        );
    }

    #[test]
    fn savepoint_status_distinguishes_progress_location_and_failure() {
        assert_eq!(
            parse_savepoint_status(&json!({"status": {"id": "IN_PROGRESS"}})),
            Some(SavepointProgress::InProgress)
        );
        assert_eq!(
            parse_savepoint_status(&json!({
                "status": {"id": "COMPLETED"},
                "operation": {"location": "s3://b/sp/savepoint-a1b2-x"}
            })),
            Some(SavepointProgress::Completed {
                location: "s3://b/sp/savepoint-a1b2-x".into()
            })
        );
        assert_eq!(
            parse_savepoint_status(&json!({
                "status": {"id": "COMPLETED"},
                "operation": {"failure-cause": {"class": "IOException", "stack-trace": "IOException: disk full\n\tat x"}}
            })),
            Some(SavepointProgress::Failed {
                cause: "IOException: disk full".into()
            })
        );
    }

    #[test]
    fn stop_and_plain_savepoints_use_their_flink_paths_and_carry_the_trigger_id() {
        let (url, body) = savepoint_request("http://jm:8081", "a1b2", "t1", "s3://b/sp", true);
        assert_eq!(url, "http://jm:8081/jobs/a1b2/stop");
        assert_eq!(
            body,
            json!({"targetDirectory": "s3://b/sp", "drain": false, "triggerId": "t1"})
        );
        let (url, body) = savepoint_request("http://jm:8081", "a1b2", "t2", "s3://b/sp", false);
        assert_eq!(url, "http://jm:8081/jobs/a1b2/savepoints");
        assert_eq!(body["cancel-job"], false);
        assert_eq!(body["triggerId"], "t2");
    }

    fn pod(ip: &str, phase: &str, ready: bool) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": format!("jm-{ip}")},
            "status": {
                "phase": phase,
                "podIP": ip,
                "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]
            }
        }))
        .unwrap()
    }

    #[test]
    fn the_jobmanager_address_is_a_running_pods_ip_preferring_a_ready_one() {
        let pods = [
            pod("127.0.0.5", "Pending", false),
            pod("127.0.0.6", "Running", false),
            pod("127.0.0.7", "Running", true),
        ];
        assert_eq!(
            JobManagerClient::base_url_from_pods(&pods).as_deref(),
            Some("http://127.0.0.7:8081")
        );
        assert_eq!(
            JobManagerClient::base_url_from_pods(&pods[..2]).as_deref(),
            Some("http://127.0.0.6:8081")
        );
        assert_eq!(
            JobManagerClient::base_url_from_pods(&[pod("fd00::5", "Running", true)]).as_deref(),
            Some("http://[fd00::5]:8081")
        );
        assert_eq!(JobManagerClient::base_url_from_pods(&pods[..1]), None);
    }

    #[test]
    fn the_base_url_is_the_jobmanager_service() {
        assert_eq!(
            JobManagerClient::base_url("orders", "shop"),
            "http://orders-jobmanager.shop.svc:8081"
        );
    }
}
