//! The one client of the REST API ([`crate::rest`]): hyper's HTTP/1.1 client with a timeout
//! per request, typed calls for what clients read and trigger, and one error taxonomy. The
//! operator calls it from its async reconcilers; the `weir` CLI through the blocking wrapper
//! in `weir-cluster`. With [`RestClient::with_security`] it sends the bearer token and speaks
//! TLS to `https://` servers, trusting only the configured CA.

use crate::rest::{
    CheckpointingStatistics, ErrorBody, JobDetails, JobsList, JobsOverview, Route, SavepointStatus,
    SavepointTriggerRequest, StopWithSavepointRequest, TriggerResponse, cancel_path,
};
use crate::security::{Token, tls};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::header::{AUTHORIZATION, HeaderValue};
pub use hyper::{Method, StatusCode};
use hyper_rustls::{FixedServerNameResolver, HttpsConnector};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::sync::Arc;
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
    /// An `https://` address, but no CA to verify the server with.
    #[error(
        "{url} is https but no CA is configured to verify it: set security.ssl.rest.enabled and security.ssl.rest.ca-file"
    )]
    NoCa {
        /// The URL.
        url: String,
    },
    /// The server name to verify the certificate against is not a DNS name or address.
    #[error("'{name}' cannot be a TLS server name")]
    ServerName {
        /// The name.
        name: String,
    },
    /// The token cannot be sent in a header.
    #[error("the REST token holds characters an HTTP header cannot carry (use printable ASCII)")]
    Token,
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

/// How a client proves itself and checks the server: the bearer token to send, and for
/// `https://` the TLS configuration (its trusted CA) and, optionally, the name the server's
/// certificate must carry when it differs from the URL's host (the operator calls pod IPs
/// but verifies the Service's DNS name).
#[derive(Clone, Debug, Default)]
pub struct ClientSecurity {
    /// Sent as `Authorization: Bearer <token>`.
    pub token: Option<Token>,
    /// Trusted CAs; `None`: plain HTTP only.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// The name to verify the server's certificate against instead of the URL's host.
    pub server_name: Option<String>,
}

/// A client of one REST server. Cloning shares the connection pool; [`RestClient::at`]
/// addresses another server with the same pool (and the same token and trust).
#[derive(Clone, Debug)]
pub struct RestClient {
    base: String,
    timeout: Duration,
    token: Option<Token>,
    has_ca: bool,
    http: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

fn http_client(
    tls: Arc<rustls::ClientConfig>,
    server_name: Option<&str>,
) -> Result<Client<HttpsConnector<HttpConnector>, Full<Bytes>>, ClientError> {
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config((*tls).clone())
        .https_or_http();
    let builder = match server_name {
        Some(name) => {
            let server = rustls::pki_types::ServerName::try_from(name.to_string())
                .map_err(|_| ClientError::ServerName { name: name.into() })?;
            builder.with_server_name_resolver(FixedServerNameResolver::new(server))
        }
        None => builder,
    };
    Ok(Client::builder(TokioExecutor::new()).build(builder.enable_http1().build()))
}

impl RestClient {
    /// A client for the server at `base` (`http://host:port`), without token or TLS.
    pub fn new(base: &str) -> RestClient {
        RestClient {
            base: base.trim_end_matches('/').to_string(),
            timeout: DEFAULT_TIMEOUT,
            token: None,
            has_ca: false,
            http: http_client(tls::untrusting_client(), None).expect("no server name to check"),
        }
    }

    /// The same client sending `security`'s token and trusting its CA (a new connection
    /// pool).
    pub fn with_security(mut self, security: &ClientSecurity) -> Result<RestClient, ClientError> {
        self.token = security.token.clone();
        if let Some(tls) = &security.tls {
            self.http = http_client(tls.clone(), security.server_name.as_deref())?;
            self.has_ca = true;
        }
        Ok(self)
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
        if url.starts_with("https:") && !self.has_ca {
            return Err(ClientError::NoCa { url: url.into() });
        }
        let mut request = Request::builder()
            .method(method)
            .uri(url)
            .header("content-type", "application/json");
        if let Some(token) = &self.token {
            let value = HeaderValue::from_str(&format!("Bearer {}", token.secret()))
                .map_err(|_| ClientError::Token)?;
            request = request.header(AUTHORIZATION, value);
        }
        let request = request
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
