//! A small blocking client for the REST API, used by `weir list|savepoint|stop|cancel`: hyper's
//! client on a current-thread runtime, one request at a time.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// How long one request may take.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Why a REST call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The address is not an `http://host:port` URL.
    #[error("invalid REST address '{url}': use http://host:port")]
    Url {
        url: String,
        #[source]
        source: hyper::http::Error,
    },
    /// Nothing answered.
    #[error(
        "cannot reach the REST API at {url}: is the job running with rest.port set? (--address or WEIR_REST_URL)"
    )]
    Unreachable {
        url: String,
        #[source]
        source: hyper_util::client::legacy::Error,
    },
    /// No answer in time.
    #[error("the REST API at {url} did not answer within {:?}", TIMEOUT)]
    Timeout { url: String },
    /// The answer could not be read.
    #[error("reading the answer from {url} failed")]
    Body {
        url: String,
        #[source]
        source: hyper::Error,
    },
    /// An error status, with the server's `errors`.
    #[error("{url} answered {status}: {message}")]
    Status {
        url: String,
        status: StatusCode,
        message: String,
    },
    /// The answer is not the JSON expected.
    #[error("unexpected answer from {url}: {body}")]
    Unexpected { url: String, body: String },
    /// The savepoint failed; the job keeps running.
    #[error("savepoint {trigger} of job {job} failed: {cause}")]
    SavepointFailed {
        job: String,
        trigger: String,
        cause: String,
    },
    /// The savepoint did not complete in time.
    #[error("savepoint {trigger} of job {job} did not complete within {timeout:?}")]
    SavepointTimeout {
        job: String,
        trigger: String,
        timeout: Duration,
    },
    /// The runtime could not be created.
    #[error("cannot start the HTTP client's runtime")]
    Runtime(#[source] std::io::Error),
}

/// A savepoint's progress as `GET /jobs/:jobid/savepoints/:triggerid` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SavepointStatus {
    /// Not complete yet.
    InProgress,
    /// Written at this location.
    Completed(String),
    /// Failed with this cause.
    Failed(String),
}

/// A blocking REST client for one server.
pub struct RestClient {
    base: String,
    runtime: tokio::runtime::Runtime,
    http: Client<HttpConnector, Full<Bytes>>,
}

impl std::fmt::Debug for RestClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestClient")
            .field("base", &self.base)
            .finish()
    }
}

impl RestClient {
    /// A client for the server at `base` (`http://host:port`).
    pub fn new(base: &str) -> Result<RestClient, ClientError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(ClientError::Runtime)?;
        let http = {
            let _guard = runtime.enter();
            Client::builder(TokioExecutor::new()).build_http()
        };
        Ok(RestClient {
            base: base.trim_end_matches('/').to_string(),
            runtime,
            http,
        })
    }

    /// Sends one request; returns the status and the JSON body (`Null` when empty).
    pub fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Value), ClientError> {
        let url = format!("{}{path}", self.base);
        let request = Request::builder()
            .method(method)
            .uri(&url)
            .header("content-type", "application/json")
            .body(Full::new(
                body.map(|b| Bytes::from(b.to_string())).unwrap_or_default(),
            ))
            .map_err(|source| ClientError::Url {
                url: url.clone(),
                source,
            })?;
        let (status, bytes) = self.runtime.block_on(async {
            let response = tokio::time::timeout(TIMEOUT, self.http.request(request))
                .await
                .map_err(|_| ClientError::Timeout { url: url.clone() })?
                .map_err(|source| ClientError::Unreachable {
                    url: url.clone(),
                    source,
                })?;
            let status = response.status();
            let bytes = response
                .into_body()
                .collect()
                .await
                .map_err(|source| ClientError::Body {
                    url: url.clone(),
                    source,
                })?
                .to_bytes();
            Ok::<_, ClientError>((status, bytes))
        })?;
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Ok((status, value))
    }

    /// Like [`RestClient::call`], but an error status is an error carrying the server's message.
    pub fn call_ok(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ClientError> {
        let (status, value) = self.call(method, path, body)?;
        if !status.is_success() {
            let message = value
                .get("errors")
                .and_then(Value::as_array)
                .map(|e| {
                    e.iter()
                        .map(|m| m.as_str().map_or_else(|| m.to_string(), str::to_string))
                        .collect::<Vec<_>>()
                        .join("; ")
                })
                .unwrap_or_else(|| value.to_string());
            return Err(ClientError::Status {
                url: format!("{}{path}", self.base),
                status,
                message,
            });
        }
        Ok(value)
    }

    /// `GET /jobs/overview`: the jobs with id, name, state and start time.
    pub fn jobs_overview(&self) -> Result<Vec<Value>, ClientError> {
        let v = self.call_ok(Method::GET, "/jobs/overview", None)?;
        v.get("jobs")
            .and_then(Value::as_array)
            .cloned()
            .ok_or_else(|| ClientError::Unexpected {
                url: format!("{}/jobs/overview", self.base),
                body: v.to_string(),
            })
    }

    fn request_id(&self, path: &str, body: &Value) -> Result<String, ClientError> {
        let v = self.call_ok(Method::POST, path, Some(body))?;
        v.get("request-id")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| ClientError::Unexpected {
                url: format!("{}{path}", self.base),
                body: v.to_string(),
            })
    }

    /// `POST /jobs/:jobid/savepoints`; returns the trigger id.
    pub fn trigger_savepoint(
        &self,
        job: &str,
        target: Option<&str>,
        cancel_job: bool,
    ) -> Result<String, ClientError> {
        self.request_id(
            &format!("/jobs/{job}/savepoints"),
            &json!({"target-directory": target, "cancel-job": cancel_job}),
        )
    }

    /// `POST /jobs/:jobid/stop` (stop-with-savepoint); returns the trigger id.
    pub fn stop(
        &self,
        job: &str,
        target: Option<&str>,
        drain: bool,
    ) -> Result<String, ClientError> {
        self.request_id(
            &format!("/jobs/{job}/stop"),
            &json!({"targetDirectory": target, "drain": drain}),
        )
    }

    /// `GET /jobs/:jobid/savepoints/:triggerid`.
    pub fn savepoint_status(
        &self,
        job: &str,
        trigger: &str,
    ) -> Result<SavepointStatus, ClientError> {
        let path = format!("/jobs/{job}/savepoints/{trigger}");
        let v = self.call_ok(Method::GET, &path, None)?;
        let unexpected = || ClientError::Unexpected {
            url: format!("{}{path}", self.base),
            body: v.to_string(),
        };
        match v.pointer("/status/id").and_then(Value::as_str) {
            Some("IN_PROGRESS") => Ok(SavepointStatus::InProgress),
            Some("COMPLETED") => {
                if let Some(l) = v.pointer("/operation/location").and_then(Value::as_str) {
                    return Ok(SavepointStatus::Completed(l.to_string()));
                }
                let cause = v
                    .pointer("/operation/failure-cause/stack-trace")
                    .and_then(Value::as_str)
                    .ok_or_else(unexpected)?;
                Ok(SavepointStatus::Failed(cause.to_string()))
            }
            _ => Err(unexpected()),
        }
    }

    /// Polls a savepoint until it completes; returns its location.
    pub fn wait_for_savepoint(
        &self,
        job: &str,
        trigger: &str,
        timeout: Duration,
    ) -> Result<String, ClientError> {
        let start = Instant::now();
        loop {
            match self.savepoint_status(job, trigger)? {
                SavepointStatus::Completed(location) => return Ok(location),
                SavepointStatus::Failed(cause) => {
                    return Err(ClientError::SavepointFailed {
                        job: job.into(),
                        trigger: trigger.into(),
                        cause,
                    });
                }
                SavepointStatus::InProgress if start.elapsed() > timeout => {
                    return Err(ClientError::SavepointTimeout {
                        job: job.into(),
                        trigger: trigger.into(),
                        timeout,
                    });
                }
                SavepointStatus::InProgress => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// `PATCH /jobs/:jobid?mode=cancel`.
    pub fn cancel(&self, job: &str) -> Result<(), ClientError> {
        self.call_ok(Method::PATCH, &format!("/jobs/{job}?mode=cancel"), None)?;
        Ok(())
    }
}
