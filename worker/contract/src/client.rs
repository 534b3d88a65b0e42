//! The one client of the REST API ([`crate::rest`]): hyper's HTTP/1.1 client with a timeout
//! per request, typed calls for what clients read and trigger, and one error taxonomy. The
//! operator calls it from its async reconcilers; the `weir` CLI through the blocking wrapper
//! in `weir-cluster`.

use crate::rest::{
    CheckpointingStatistics, ErrorBody, JobDetails, JobsList, JobsOverview, Route, SavepointStatus,
    SavepointTriggerRequest, StopWithSavepointRequest, TriggerResponse, cancel_path,
};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
pub use hyper::{Method, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::time::Duration;

/// How long one request may take unless [`RestClient::with_timeout`] says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a REST call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The address is not an `http://host:port` URL.
    #[error("invalid REST address '{url}': use http://host:port")]
    Url {
        /// The URL.
        url: String,
        /// What was wrong with it.
        #[source]
        source: hyper::http::Error,
    },
    /// Nothing answered.
    #[error(
        "cannot reach the REST API at {url}: is the JobManager running and serving REST (rest.port)?"
    )]
    Unreachable {
        /// The URL.
        url: String,
        /// The connection error.
        #[source]
        source: hyper_util::client::legacy::Error,
    },
    /// No answer in time.
    #[error("the REST API at {url} did not answer within {timeout:?}")]
    Timeout {
        /// The URL.
        url: String,
        /// The time allowed.
        timeout: Duration,
    },
    /// The answer could not be read.
    #[error("reading the answer from {url} failed")]
    Body {
        /// The URL.
        url: String,
        /// The transport error.
        #[source]
        source: hyper::Error,
    },
    /// An error status, with the server's `errors`.
    #[error("{url} answered {status}: {message}")]
    Status {
        /// The URL.
        url: String,
        /// The status.
        status: StatusCode,
        /// The server's messages, joined (or the body when it has none).
        message: String,
    },
    /// The answer is not the JSON the route promises.
    #[error("unexpected answer from {url}: {body}")]
    Unexpected {
        /// The URL.
        url: String,
        /// The body as received.
        body: String,
        /// What did not fit.
        #[source]
        source: serde_json::Error,
    },
}

impl ClientError {
    /// Whether the server answered 404: an unknown job, trigger id or path.
    pub fn is_not_found(&self) -> bool {
        matches!(self, ClientError::Status { status, .. } if *status == StatusCode::NOT_FOUND)
    }
}

/// A client of one REST server. Cloning shares the connection pool; [`RestClient::at`]
/// addresses another server with the same pool.
#[derive(Clone, Debug)]
pub struct RestClient {
    base: String,
    timeout: Duration,
    http: Client<HttpConnector, Full<Bytes>>,
}

impl RestClient {
    /// A client for the server at `base` (`http://host:port`).
    pub fn new(base: &str) -> RestClient {
        RestClient {
            base: base.trim_end_matches('/').to_string(),
            timeout: DEFAULT_TIMEOUT,
            http: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// The same client with another time limit per request.
    pub fn with_timeout(mut self, timeout: Duration) -> RestClient {
        self.timeout = timeout;
        self
    }

    /// The same client (and connection pool) for the server at `base`.
    pub fn at(&self, base: &str) -> RestClient {
        RestClient {
            base: base.trim_end_matches('/').to_string(),
            ..self.clone()
        }
    }

    /// `http://host:port` of the server.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends one request to `path` (with query); returns the status and the JSON body
    /// (`Null` when empty, a string when not JSON).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Value), ClientError> {
        let url = format!("{}{path}", self.base);
        let (status, bytes) = self.send(method, &url, body).await?;
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Ok((status, value))
    }

    async fn send(
        &self,
        method: Method,
        url: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        let request = Request::builder()
            .method(method)
            .uri(url)
            .header("content-type", "application/json")
            .body(Full::new(
                body.map(|b| Bytes::from(b.to_string())).unwrap_or_default(),
            ))
            .map_err(|source| ClientError::Url {
                url: url.to_string(),
                source,
            })?;
        let response = tokio::time::timeout(self.timeout, self.http.request(request))
            .await
            .map_err(|_| ClientError::Timeout {
                url: url.to_string(),
                timeout: self.timeout,
            })?
            .map_err(|source| ClientError::Unreachable {
                url: url.to_string(),
                source,
            })?;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|source| ClientError::Body {
                url: url.to_string(),
                source,
            })?
            .to_bytes();
        Ok((status, bytes))
    }

    /// Sends one request and reads the answer as `T`; an error status is an error carrying
    /// the server's messages.
    pub async fn fetch<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.base);
        let unexpected = |bytes: &[u8], source| ClientError::Unexpected {
            url: url.clone(),
            body: String::from_utf8_lossy(bytes).into_owned(),
            source,
        };
        let body = body
            .map(serde_json::to_value)
            .transpose()
            .map_err(|e| unexpected(b"", e))?;
        let (status, bytes) = self.send(method, &url, body.as_ref()).await?;
        if !status.is_success() {
            let message = match serde_json::from_slice::<ErrorBody>(&bytes) {
                Ok(e) if !e.errors.is_empty() => e.errors.join("; "),
                _ => String::from_utf8_lossy(&bytes).into_owned(),
            };
            return Err(ClientError::Status {
                url: url.clone(),
                status,
                message,
            });
        }
        let bytes: &[u8] = if bytes.is_empty() {
            &b"null"[..]
        } else {
            &bytes[..]
        };
        serde_json::from_slice(bytes).map_err(|e| unexpected(bytes, e))
    }

    async fn get<T: DeserializeOwned>(&self, route: Route) -> Result<T, ClientError> {
        self.fetch(Method::GET, &route.path(), None::<&()>).await
    }

    /// `GET /jobs`.
    pub async fn jobs(&self) -> Result<JobsList, ClientError> {
        self.get(Route::Jobs).await
    }

    /// `GET /jobs/overview`.
    pub async fn jobs_overview(&self) -> Result<JobsOverview, ClientError> {
        self.get(Route::JobsOverview).await
    }

    /// `GET /jobs/:jobid`.
    pub async fn job(&self, job: &str) -> Result<JobDetails, ClientError> {
        self.get(Route::Job { job: job.into() }).await
    }

    /// `GET /jobs/:jobid/checkpoints`.
    pub async fn checkpoints(&self, job: &str) -> Result<CheckpointingStatistics, ClientError> {
        self.get(Route::Checkpoints { job: job.into() }).await
    }

    /// `POST /jobs/:jobid/savepoints`; returns the trigger id.
    pub async fn trigger_savepoint(
        &self,
        job: &str,
        request: &SavepointTriggerRequest,
    ) -> Result<String, ClientError> {
        let route = Route::TriggerSavepoint { job: job.into() };
        let answer: TriggerResponse = self
            .fetch(Method::POST, &route.path(), Some(request))
            .await?;
        Ok(answer.request_id)
    }

    /// `POST /jobs/:jobid/stop` (stop-with-savepoint); returns the trigger id.
    pub async fn stop(
        &self,
        job: &str,
        request: &StopWithSavepointRequest,
    ) -> Result<String, ClientError> {
        let route = Route::Stop { job: job.into() };
        let answer: TriggerResponse = self
            .fetch(Method::POST, &route.path(), Some(request))
            .await?;
        Ok(answer.request_id)
    }

    /// `GET /jobs/:jobid/savepoints/:triggerid`.
    pub async fn savepoint_status(
        &self,
        job: &str,
        trigger: &str,
    ) -> Result<SavepointStatus, ClientError> {
        self.get(Route::SavepointStatus {
            job: job.into(),
            trigger: trigger.into(),
        })
        .await
    }

    /// `PATCH /jobs/:jobid?mode=cancel`.
    pub async fn cancel(&self, job: &str) -> Result<(), ClientError> {
        let _: Value = self
            .fetch(Method::PATCH, &cancel_path(job), None::<&()>)
            .await?;
        Ok(())
    }
}
