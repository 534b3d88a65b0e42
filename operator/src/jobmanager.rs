//! Client for the JobManager REST API (Flink-compatible paths and field names, see
//! ARCHITECTURE.md), reduced to what the lifecycle observes and triggers: the job, its latest
//! checkpoint, and savepoint triggers and their status. Response parsing is split into pure
//! functions so it is tested without a server.
//!
//! Savepoint requests carry a `triggerId` chosen by the operator (as Flink's REST API accepts):
//! the JobManager must treat a repeated trigger id as the same operation, which is what makes
//! re-sending after an operator restart safe.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};

use crate::lifecycle::{JobState, ObservedJob, SavepointProgress};
use crate::names;

/// How long one REST call may take; a JobManager that does not answer in time counts as
/// unreachable for this reconcile.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Why a REST call failed.
#[derive(Debug, thiserror::Error)]
pub enum RestError {
    #[error("invalid JobManager URL {url}")]
    Url {
        url: String,
        #[source]
        source: hyper::http::Error,
    },
    #[error("JobManager at {url} is unreachable")]
    Unreachable {
        url: String,
        #[source]
        source: hyper_util::client::legacy::Error,
    },
    #[error("JobManager at {url} did not answer within {}s", TIMEOUT.as_secs())]
    Timeout { url: String },
    #[error("reading the JobManager's answer from {url} failed")]
    Body {
        url: String,
        #[source]
        source: hyper::Error,
    },
    #[error("JobManager answered {status} for {url}: {body}")]
    Status {
        url: String,
        status: StatusCode,
        body: String,
    },
    #[error("JobManager sent malformed JSON for {url}")]
    Json {
        url: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("JobManager's answer for {url} lacks {field}")]
    Missing { url: String, field: &'static str },
}

/// A REST client shared by all reconciles.
#[derive(Clone, Debug)]
pub struct JobManagerClient {
    http: Client<HttpConnector, Full<Bytes>>,
}

impl Default for JobManagerClient {
    fn default() -> Self {
        Self::new()
    }
}

impl JobManagerClient {
    pub fn new() -> Self {
        JobManagerClient {
            http: Client::builder(TokioExecutor::new()).build_http(),
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
        let url = format!("{base}/jobs");
        let Some(jobs) = self.call(Method::GET, &url, None).await? else {
            return Ok(None);
        };
        let Some(job_id) = parse_first_job_id(&jobs) else {
            return Ok(None);
        };
        let url = format!("{base}/jobs/{job_id}");
        let Some(details) = self.call(Method::GET, &url, None).await? else {
            return Ok(None);
        };
        let (state, start_time) = parse_job_details(&details).ok_or(RestError::Missing {
            url: url.clone(),
            field: "state",
        })?;
        let url = format!("{base}/jobs/{job_id}/checkpoints");
        let latest_checkpoint = self
            .call(Method::GET, &url, None)
            .await?
            .and_then(|c| parse_latest_checkpoint(&c));
        Ok(Some(ObservedJob {
            job_id,
            state,
            start_time,
            latest_checkpoint,
        }))
    }

    /// Status of a savepoint trigger; `Unknown` when the JobManager has never seen it.
    pub async fn savepoint_status(
        &self,
        base: &str,
        job_id: &str,
        trigger_id: &str,
    ) -> Result<SavepointProgress, RestError> {
        let url = format!("{base}/jobs/{job_id}/savepoints/{trigger_id}");
        match self.call(Method::GET, &url, None).await? {
            None => Ok(SavepointProgress::Unknown),
            Some(body) => parse_savepoint_status(&body).ok_or(RestError::Missing {
                url,
                field: "status.id",
            }),
        }
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
        let (url, body) = savepoint_request(base, job_id, trigger_id, target_directory, stop);
        self.call(Method::POST, &url, Some(body)).await?;
        Ok(())
    }

    /// Sends one request; `Ok(None)` for 404.
    async fn call(
        &self,
        method: Method,
        url: &str,
        body: Option<Value>,
    ) -> Result<Option<Value>, RestError> {
        let bytes = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
        let request = Request::builder()
            .method(method)
            .uri(url)
            .header("content-type", "application/json")
            .body(Full::new(bytes))
            .map_err(|source| RestError::Url {
                url: url.to_string(),
                source,
            })?;
        let response = tokio::time::timeout(TIMEOUT, self.http.request(request))
            .await
            .map_err(|_| RestError::Timeout {
                url: url.to_string(),
            })?
            .map_err(|source| RestError::Unreachable {
                url: url.to_string(),
                source,
            })?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|source| RestError::Body {
                url: url.to_string(),
                source,
            })?
            .to_bytes();
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(RestError::Status {
                url: url.to_string(),
                status,
                body: String::from_utf8_lossy(&body).into_owned(),
            });
        }
        if body.is_empty() {
            return Ok(Some(Value::Null));
        }
        serde_json::from_slice(&body)
            .map(Some)
            .map_err(|source| RestError::Json {
                url: url.to_string(),
                source,
            })
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
    if stop {
        (
            format!("{base}/jobs/{job_id}/stop"),
            json!({"targetDirectory": target_directory, "drain": false, "triggerId": trigger_id}),
        )
    } else {
        (
            format!("{base}/jobs/{job_id}/savepoints"),
            json!({"target-directory": target_directory, "cancel-job": false, "triggerId": trigger_id}),
        )
    }
}

/// The id of the job in `GET /jobs` (`{"jobs":[{"id","status"}]}`). An application-mode
/// JobManager runs one job; if several are listed, a non-terminal one is preferred.
pub fn parse_first_job_id(body: &Value) -> Option<String> {
    let jobs = body.get("jobs")?.as_array()?;
    let terminal = |j: &&Value| {
        matches!(
            j.get("status").and_then(Value::as_str),
            Some("FINISHED" | "CANCELED" | "FAILED")
        )
    };
    jobs.iter()
        .find(|j| !terminal(j))
        .or_else(|| jobs.first())
        .and_then(|j| j.get("id")?.as_str().map(str::to_string))
}

/// State and start time from `GET /jobs/:id` (`state`, `start-time` in epoch milliseconds).
pub fn parse_job_details(body: &Value) -> Option<(JobState, Option<String>)> {
    let state = JobState::parse(body.get("state")?.as_str()?)?;
    let start_time = body
        .get("start-time")
        .and_then(Value::as_i64)
        .filter(|ms| *ms > 0)
        .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
        .map(|t| t.to_string());
    Some((state, start_time))
}

/// `external_path` of the latest completed checkpoint from `GET /jobs/:id/checkpoints`.
pub fn parse_latest_checkpoint(body: &Value) -> Option<String> {
    body.get("latest")?
        .get("completed")?
        .get("external_path")?
        .as_str()
        .map(str::to_string)
}

/// Progress from `GET /jobs/:id/savepoints/:triggerid`.
pub fn parse_savepoint_status(body: &Value) -> Option<SavepointProgress> {
    match body.get("status")?.get("id")?.as_str()? {
        "IN_PROGRESS" => Some(SavepointProgress::InProgress),
        "COMPLETED" => {
            let operation = body.get("operation");
            if let Some(location) = operation
                .and_then(|o| o.get("location"))
                .and_then(Value::as_str)
            {
                return Some(SavepointProgress::Completed {
                    location: location.to_string(),
                });
            }
            // Flink reports the cause as an object with the exception; a string is accepted too.
            let cause = operation
                .and_then(|o| o.get("failure-cause"))
                .map(|c| match c {
                    Value::String(s) => s.clone(),
                    other => other
                        .get("stack-trace")
                        .or_else(|| other.get("class"))
                        .and_then(Value::as_str)
                        .and_then(|s| s.lines().next())
                        .map(str::to_string)
                        .unwrap_or_else(|| other.to_string()),
                })
                .unwrap_or_else(|| "completed without a location".to_string());
            Some(SavepointProgress::Failed { cause })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
