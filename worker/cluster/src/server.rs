//! The REST server: hyper 1 on a single-threaded tokio runtime of its own thread (the engine
//! is thread-based; nothing here may block that runtime). Savepoint triggers are recorded and
//! answered at once; the savepoint itself runs on a plain thread through the job's
//! [`JobClient`], and its outcome is kept under the trigger id for polling.
//!
//! With a [`RestSecurity`] it serves TLS (tokio-rustls) and, with a token, answers `401` to
//! every request without `Authorization: Bearer <token>` except the probes' `/healthz` and
//! `/readyz`, which must work for a kubelet that holds no secret, and the dashboard's files
//! (`/`, `/web/*`, crate::dashboard), which hold no data. What the dashboard reads about
//! vertices is built in crate::vertices.

use crate::checkpoints::{self, Vertices};
use crate::prometheus;
use crate::vertices::{self, STREAMING, Samples};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{ALLOW, AUTHORIZATION, CONTENT_TYPE, HeaderValue, WWW_AUTHENTICATE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use weir_contract::JobState;
use weir_contract::options;
use weir_contract::rest::{
    self, ConfigEntry, ErrorBody, JobDetails, JobIdWithState, JobOverview, JobPlan, JobsList,
    JobsOverview, Readiness, Route, SavepointStatus, SavepointTriggerRequest,
    StopWithSavepointRequest, TaskCounts, TriggerResponse, VertexMetrics,
};
use weir_contract::security::{RestSecurity, SecurityError, Token};
use weir_engine::config::{CheckpointRetention, CheckpointingMode};
use weir_engine::runtime::cluster::TaskManagerInfo;
use weir_engine::runtime::metrics::JobSnapshot;
use weir_engine::runtime::{JobClient, JobStatus, JobTopology};

/// Request bodies larger than this are rejected (the API's bodies are a few hundred bytes).
const MAX_BODY: usize = 64 * 1024;

/// What keeps clients from exhausting the process: however many connect, the REST server
/// holds at most `max_connections` sockets (the rest wait in the kernel's listen backlog,
/// costing the process nothing), and closes a connection that does not send a complete
/// request header within `idle_timeout` — so idle or slow clients cannot use up the file
/// descriptors the job needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// Connections served at once.
    pub max_connections: usize,
    /// Longest wait for a request's header, including between requests on a kept-alive
    /// connection.
    pub idle_timeout: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_connections: 64,
            idle_timeout: Duration::from_secs(30),
        }
    }
}

/// Why the REST server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The address is taken or not local.
    #[error(
        "cannot listen on {address}:{port} ({}, {}): choose a free port, or 0 for any",
        options::REST_ADDRESS.key,
        options::REST_PORT.key
    )]
    Bind {
        address: String,
        port: u16,
        #[source]
        source: std::io::Error,
    },
    /// The runtime or thread could not be created.
    #[error("cannot start the REST server's runtime")]
    Runtime(#[source] std::io::Error),
    /// The token or TLS files cannot be used.
    #[error(transparent)]
    Security(#[from] SecurityError),
}

/// A savepoint or stop-with-savepoint requested over REST, by trigger id.
struct Trigger {
    job_id: String,
    /// `None` while in progress; then the location or the failure message.
    outcome: Arc<Mutex<Option<Result<String, String>>>>,
    /// Whether a client has been told the outcome (see [`RestServer::await_savepoint_results`]).
    reported: Arc<AtomicBool>,
}

/// What the server knows of a job beyond its [`JobClient`]: how it was built, for the plan
/// and the dashboard. Whoever builds the job (`weir run`, `weir jobmanager`) passes it to
/// [`RestServer::add_described_job`].
#[derive(Debug, Clone, Default)]
pub struct JobDescription {
    /// Its tasks and the edges between them (`StreamExecutionEnvironment::topology`).
    pub topology: Option<JobTopology>,
    /// For a SQL job, the streaming plan its EXPLAIN prints.
    pub sql_explain: Option<String>,
}

struct State {
    /// Required of every request but the probes', when set.
    token: Option<Token>,
    jobs: Mutex<Vec<JobClient>>,
    /// By job id.
    descriptions: Mutex<HashMap<String, Arc<JobDescription>>>,
    /// `/jobmanager/config`: the process's configuration, secrets redacted.
    config: Mutex<Vec<ConfigEntry>>,
    /// What rates and time shares are measured against.
    samples: Mutex<Samples>,
    triggers: Mutex<HashMap<String, Trigger>>,
    /// The snapshot each job's per-second rates in `/metrics` are measured against.
    baselines: Mutex<HashMap<String, JobSnapshot>>,
}

/// The REST API of this process's jobs; stops when dropped.
pub struct RestServer {
    addr: SocketAddr,
    scheme: &'static str,
    state: Arc<State>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for RestServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestServer")
            .field("addr", &self.addr)
            .finish()
    }
}

impl RestServer {
    /// Listens on `address:port` (port 0: any free port) and serves until dropped, within
    /// the default [`ServerLimits`].
    pub fn start(address: &str, port: u16) -> Result<RestServer, ServerError> {
        Self::start_with(address, port, ServerLimits::default())
    }

    /// [`RestServer::start`] within `limits`.
    pub fn start_with(
        address: &str,
        port: u16,
        limits: ServerLimits,
    ) -> Result<RestServer, ServerError> {
        Self::start_secured(address, port, limits, &RestSecurity::default())
    }

    /// [`RestServer::start_with`], serving TLS and requiring the token as `security` says.
    /// The certificate and key are loaded here, so bad files fail the start naming them.
    pub fn start_secured(
        address: &str,
        port: u16,
        limits: ServerLimits,
        security: &RestSecurity,
    ) -> Result<RestServer, ServerError> {
        let tls = security.server_tls()?.map(tokio_rustls::TlsAcceptor::from);
        let bind_err = |source| ServerError::Bind {
            address: address.to_string(),
            port,
            source,
        };
        let listener = std::net::TcpListener::bind((address, port)).map_err(bind_err)?;
        listener.set_nonblocking(true).map_err(bind_err)?;
        let addr = listener.local_addr().map_err(bind_err)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(ServerError::Runtime)?;
        let state = Arc::new(State {
            token: security.token.clone(),
            jobs: Mutex::new(Vec::new()),
            descriptions: Mutex::new(HashMap::new()),
            config: Mutex::new(Vec::new()),
            samples: Mutex::new(Samples::default()),
            triggers: Mutex::new(HashMap::new()),
            baselines: Mutex::new(HashMap::new()),
        });
        let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
        let served = state.clone();
        let thread = std::thread::Builder::new()
            .name("weir rest".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => {
                            tracing::error!(error = %e, "the REST server cannot use its socket");
                            return;
                        }
                    };
                    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
                    loop {
                        // Accept only with a free slot: a flood waits in the backlog.
                        let slot = tokio::select! {
                            _ = &mut rx => break,
                            slot = slots.clone().acquire_owned() => slot.expect("never closed"),
                        };
                        let stream = tokio::select! {
                            _ = &mut rx => break,
                            accepted = listener.accept() => match accepted {
                                Ok((stream, _)) => stream,
                                Err(e) => {
                                    // Out of file descriptors, most likely: back off, keep serving.
                                    tracing::warn!(error = %e, "the REST server cannot accept a connection");
                                    tokio::time::sleep(Duration::from_millis(100)).await;
                                    continue;
                                }
                            },
                        };
                        let state = served.clone();
                        let tls = tls.clone();
                        tokio::spawn(async move {
                            let _slot = slot;
                            match tls {
                                None => serve_connection(stream, state, limits).await,
                                Some(acceptor) => {
                                    // A client that never completes the handshake holds a
                                    // slot no longer than one that never sends a header.
                                    let handshake = tokio::time::timeout(
                                        limits.idle_timeout,
                                        acceptor.accept(stream),
                                    );
                                    match handshake.await {
                                        Ok(Ok(stream)) => serve_connection(stream, state, limits).await,
                                        Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake with a REST client failed"),
                                        Err(_) => tracing::debug!("a REST client did not complete the TLS handshake in time"),
                                    }
                                }
                            }
                        });
                    }
                });
            })
            .map_err(ServerError::Runtime)?;
        Ok(RestServer {
            addr,
            scheme: security.scheme(),
            state,
            shutdown: Some(tx),
            thread: Some(thread),
        })
    }

    /// Serves `job` from now on.
    pub fn add_job(&self, job: JobClient) {
        self.state.jobs.lock().expect("not poisoned").push(job);
    }

    /// Serves `job` from now on, with its plan's edges and EXPLAIN text.
    pub fn add_described_job(&self, job: JobClient, description: JobDescription) {
        self.state
            .descriptions
            .lock()
            .expect("not poisoned")
            .insert(job.job_id().to_string(), Arc::new(description));
        self.add_job(job);
    }

    /// What `/jobmanager/config` lists: the process's configuration (every key with its
    /// value). Values of keys that name a secret (a password, a secret, an access key) are
    /// replaced by `******`, as Flink's web UI does.
    pub fn set_configuration(&self, entries: Vec<(String, String)>) {
        *self.state.config.lock().expect("not poisoned") = entries
            .into_iter()
            .map(|(key, value)| {
                let value = if is_sensitive(&key) {
                    "******".to_string()
                } else {
                    value
                };
                ConfigEntry { key, value }
            })
            .collect();
    }

    /// The address actually bound (the port is known here when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://host:port` of this server (`https://` with TLS).
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    /// Keeps serving until every savepoint triggered through this server has ended and its
    /// outcome has been read by a client, or `max` has passed; returns whether all were read.
    /// A process that exits when its job ends (`weir run`) calls this first, so the `weir stop`
    /// that ended the job still learns where the savepoint is.
    pub fn await_savepoint_results(&self, max: Duration) -> bool {
        let deadline = Instant::now() + max;
        loop {
            let unread = self
                .state
                .triggers
                .lock()
                .expect("not poisoned")
                .values()
                .any(|t| !t.reported.load(Ordering::Acquire));
            if !unread {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Serves HTTP/1.1 on one accepted connection (plain or TLS) until it closes.
async fn serve_connection<I>(io: I, state: Arc<State>, limits: ServerLimits)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = service_fn(move |req| {
        let state = state.clone();
        async move { Ok::<_, Infallible>(handle(&state, req).await) }
    });
    let _ = http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits.idle_timeout)
        .serve_connection(TokioIo::new(io), svc)
        .await;
}

impl Drop for RestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// An error answer: status and Flink's `{"errors": [...]}` body.
struct ApiError {
    status: StatusCode,
    message: String,
    allow: Option<&'static str>,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            allow: None,
        }
    }
    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
}

type Answer = Result<(StatusCode, Value), ApiError>;

/// The contract's name of an engine job status.
pub fn job_state(status: JobStatus) -> JobState {
    match status {
        JobStatus::Created => JobState::Created,
        JobStatus::Running => JobState::Running,
        JobStatus::Restarting => JobState::Restarting,
        JobStatus::Cancelling => JobState::Cancelling,
        JobStatus::Canceled => JobState::Canceled,
        JobStatus::Finished => JobState::Finished,
        JobStatus::Failed => JobState::Failed,
    }
}

fn state_of(job: &JobClient) -> JobState {
    job_state(job.status())
}

/// A contract type as a JSON answer.
fn to_json(value: &impl serde::Serialize) -> Value {
    serde_json::to_value(value).expect("REST types serialize")
}

fn error_json(message: String) -> Value {
    to_json(&ErrorBody {
        errors: vec![message],
    })
}

fn json_response(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// Whether a configuration key's value is a secret (Flink's `GlobalConfiguration`
/// sensitive keys): a file naming where a secret is, is not one.
fn is_sensitive(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    !k.ends_with("-file")
        && [
            "password",
            "secret",
            "access-key",
            "apikey",
            "api-key",
            "token",
        ]
        .iter()
        .any(|w| k.contains(w))
}

/// Whether a request may pass: always without a token, and for the probes' paths, which a
/// kubelet calls without credentials (they tell only whether the process and its job run),
/// and the dashboard's page and assets (they hold no data; the page asks for the token).
fn authorized(state: &State, req: &Request<Incoming>) -> bool {
    let Some(token) = &state.token else {
        return true;
    };
    if matches!(
        Route::parse(req.uri().path()),
        Some(Route::Healthz | Route::Readyz | Route::Dashboard { .. })
    ) {
        return true;
    }
    token.matches_bearer(req.headers().get(AUTHORIZATION).map(|v| v.as_bytes()))
}

async fn handle(state: &State, req: Request<Incoming>) -> Response<Full<Bytes>> {
    if !authorized(state, &req) {
        let mut r = json_response(
            StatusCode::UNAUTHORIZED,
            &error_json(format!(
                "missing or wrong bearer token: send 'Authorization: Bearer <token>' with the token of {} (security.md)",
                options::REST_TOKEN_FILE.key
            )),
        );
        r.headers_mut()
            .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return r;
    }
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return json_response(
                StatusCode::BAD_REQUEST,
                &error_json(format!("cannot read the request body: {e}")),
            );
        }
    };
    if let Some(Route::Dashboard { asset }) = Route::parse(&path)
        && method == Method::GET
    {
        return dashboard_response(&asset);
    }
    if Route::parse(&path) == Some(Route::Metrics) && method == Method::GET {
        let text = metrics_text(state);
        let mut r = Response::new(Full::new(Bytes::from(text)));
        r.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        return r;
    }
    match route(state, &method, &path, &query, &body) {
        Ok((status, value)) => json_response(status, &value),
        Err(e) => {
            let mut r = json_response(e.status, &error_json(e.message));
            if let Some(allow) = e.allow {
                r.headers_mut()
                    .insert(ALLOW, HeaderValue::from_static(allow));
            }
            r
        }
    }
}

/// Checks the method against what the route allows: 405 with `Allow` otherwise.
fn only(method: &Method, route: &Route) -> Result<(), ApiError> {
    let allow = route.allow();
    if allow.split(", ").any(|m| m == method.as_str()) {
        Ok(())
    } else {
        Err(ApiError {
            status: StatusCode::METHOD_NOT_ALLOWED,
            message: format!("method {method} is not allowed here; use {allow}"),
            allow: Some(allow),
        })
    }
}

/// A dashboard asset, or 404 naming the file.
fn dashboard_response(asset: &str) -> Response<Full<Bytes>> {
    let Some(a) = crate::dashboard::asset(asset) else {
        return json_response(
            StatusCode::NOT_FOUND,
            &error_json(format!("the dashboard has no file '{asset}'")),
        );
    };
    let mut r = Response::new(Full::new(Bytes::from_static(a.body)));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(a.content_type));
    r.headers_mut().insert(
        hyper::header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // The page may only load its own scripts and styles, and talk to this server.
    r.headers_mut().insert(
        hyper::header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self'; frame-ancestors 'none'",
        ),
    );
    r
}

fn route(state: &State, method: &Method, path: &str, query: &str, body: &[u8]) -> Answer {
    let route = Route::parse(path).ok_or_else(|| {
        ApiError::not_found(format!(
            "no such REST endpoint: {path} (see docs/rest-api.md)"
        ))
    })?;
    only(method, &route)?;
    match &route {
        Route::Overview => Ok((StatusCode::OK, overview(state))),
        Route::Config => Ok((StatusCode::OK, dashboard_config())),
        Route::TaskManagers => {
            let list: Vec<Value> = taskmanagers(&jobs(state))
                .iter()
                .map(taskmanager_json)
                .collect();
            Ok((StatusCode::OK, json!({"taskmanagers": list})))
        }
        Route::Metrics => unreachable!("served before routing"),
        Route::Healthz => Ok((
            StatusCode::OK,
            to_json(&Readiness {
                status: "ok".into(),
                job: None,
            }),
        )),
        Route::Readyz => readyz(state),
        Route::Jobs => {
            let jobs = JobsList {
                jobs: jobs(state)
                    .iter()
                    .map(|j| JobIdWithState {
                        id: j.job_id().to_string(),
                        status: state_of(j),
                    })
                    .collect(),
            };
            Ok((StatusCode::OK, to_json(&jobs)))
        }
        Route::JobsOverview => {
            let jobs = JobsOverview {
                jobs: jobs(state).iter().map(job_overview).collect(),
            };
            Ok((StatusCode::OK, to_json(&jobs)))
        }
        Route::Job { job } => {
            let job = find_job(state, job)?;
            if method == Method::PATCH {
                cancel(&job, query)
            } else {
                let description = description(state, &job);
                Ok((
                    StatusCode::OK,
                    to_json(&job_details(&job, description.topology.as_ref())),
                ))
            }
        }
        Route::Checkpoints { job } => Ok((
            StatusCode::OK,
            to_json(&checkpoints::checkpoints(&find_job(state, job)?)),
        )),
        Route::CheckpointConfig { job } => checkpoint_config(&find_job(state, job)?),
        Route::Exceptions { job } => Ok((StatusCode::OK, exceptions(&find_job(state, job)?))),
        Route::TriggerSavepoint { job } => {
            let job = find_job(state, job)?;
            let r: SavepointTriggerRequest = parse_body(body)?;
            trigger(
                state,
                &job,
                r.target_directory,
                r.trigger_id,
                Kind::Savepoint {
                    cancel_job: r.cancel_job,
                },
            )
        }
        Route::Stop { job } => {
            let job = find_job(state, job)?;
            let r: StopWithSavepointRequest = parse_body(body)?;
            trigger(
                state,
                &job,
                r.target_directory,
                r.trigger_id,
                Kind::Stop { drain: r.drain },
            )
        }
        Route::SavepointStatus { job, trigger } => {
            let job = find_job(state, job)?;
            savepoint_status(state, &job, trigger)
        }
        Route::JobPlan { job } => {
            let job = find_job(state, job)?;
            let description = description(state, &job);
            Ok((
                StatusCode::OK,
                to_json(&JobPlan {
                    plan: vertices::plan(&job, description.topology.as_ref()),
                    sql_explain: description.sql_explain.clone(),
                }),
            ))
        }
        Route::Vertex { job, vertex }
        | Route::VertexBackPressure { job, vertex }
        | Route::VertexWatermarks { job, vertex } => {
            let job = find_job(state, job)?;
            let (now, earlier) = state.samples.lock().expect("not poisoned").measure(&job);
            let name = vertices::vertex_named(&job, &now, vertex).ok_or_else(|| {
                ApiError::not_found(format!(
                    "job {} has no vertex {vertex}; GET {} lists its vertices",
                    job.job_id(),
                    Route::Job {
                        job: job.job_id().into()
                    }
                    .path()
                ))
            })?;
            let body = match &route {
                Route::Vertex { .. } => {
                    let tms = job.taskmanagers();
                    // Subtask i of every vertex runs in slot i.
                    let placement: Vec<(String, String)> = job
                        .subtask_taskmanagers()
                        .into_iter()
                        .map(|id| {
                            let host = tms
                                .iter()
                                .find(|t| t.id == id)
                                .and_then(|t| t.data_addr.rsplit_once(':'))
                                .map_or(String::new(), |(host, _)| host.to_string());
                            (id, host)
                        })
                        .collect();
                    let topology = description(state, &job).topology.clone();
                    to_json(&vertices::details(
                        &job,
                        topology.as_ref(),
                        &now,
                        earlier.as_ref(),
                        &name,
                        &placement,
                    ))
                }
                Route::VertexBackPressure { .. } => {
                    to_json(&vertices::backpressure(&now, earlier.as_ref(), &name))
                }
                _ => to_json(&vertices::watermarks(&now, &name)),
            };
            Ok((StatusCode::OK, body))
        }
        Route::CheckpointDetails { job, checkpoint }
        | Route::CheckpointSubtasks {
            job, checkpoint, ..
        } => {
            let job = find_job(state, job)?;
            let record = checkpoints::find(&job, *checkpoint).ok_or_else(|| {
                ApiError::not_found(format!(
                    "job {} has no checkpoint {checkpoint} in its history (only the most recent are kept); GET {} lists them",
                    job.job_id(),
                    Route::Checkpoints { job: job.job_id().into() }.path()
                ))
            })?;
            let vertices = Vertices::of(&job);
            let Route::CheckpointSubtasks { vertex, .. } = &route else {
                return Ok((
                    StatusCode::OK,
                    to_json(&checkpoints::record_json(&vertices, &record)),
                ));
            };
            let (name, n) = vertices.named(vertex).ok_or_else(|| {
                ApiError::not_found(format!(
                    "job {} has no vertex {vertex}; GET {} lists its vertices",
                    job.job_id(),
                    Route::Job {
                        job: job.job_id().into()
                    }
                    .path()
                ))
            })?;
            Ok((
                StatusCode::OK,
                to_json(&checkpoints::task_details(&record, name, n)),
            ))
        }
        Route::TaskManager { taskmanager } => {
            let tms = taskmanagers(&jobs(state));
            let t = tms.iter().find(|t| &t.id == taskmanager).ok_or_else(|| {
                ApiError::not_found(format!(
                    "no TaskManager {taskmanager}; GET {} lists them",
                    Route::TaskManagers.path()
                ))
            })?;
            Ok((StatusCode::OK, taskmanager_json(t)))
        }
        Route::JobManagerConfig => Ok((
            StatusCode::OK,
            to_json(&*state.config.lock().expect("not poisoned")),
        )),
        Route::Dashboard { .. } => unreachable!("served before routing"),
    }
}

fn description(state: &State, job: &JobClient) -> Arc<JobDescription> {
    state
        .descriptions
        .lock()
        .expect("not poisoned")
        .get(job.job_id())
        .cloned()
        .unwrap_or_default()
}

fn jobs(state: &State) -> Vec<JobClient> {
    state.jobs.lock().expect("not poisoned").clone()
}

fn find_job(state: &State, id: &str) -> Result<JobClient, ApiError> {
    jobs(state)
        .into_iter()
        .find(|j| j.job_id() == id)
        .ok_or_else(|| ApiError::not_found(format!("job {id} not found; GET /jobs lists the jobs")))
}

/// A request body as the route's type: empty means every field at its default; anything
/// else must be a JSON object whose fields have the right types.
fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let v: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!("the request body is not valid JSON: {e}"))
        })?
    };
    if !v.is_object() {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    }
    serde_json::from_value(v)
        .map_err(|e| ApiError::bad_request(format!("the request body does not fit: {e}")))
}

fn overview(state: &State) -> Value {
    let jobs = jobs(state);
    let count = |s: JobStatus| jobs.iter().filter(|j| j.status() == s).count();
    let running = jobs.iter().filter(|j| !j.status().is_terminal()).count();
    let tms = taskmanagers(&jobs);
    let slots: usize = tms.iter().map(|t| t.slots).sum();
    let used: usize = tms.iter().map(|t| t.slots_in_use).sum();
    json!({
        "taskmanagers": tms.len(),
        "slots-total": slots,
        "slots-available": slots.saturating_sub(used),
        "jobs-running": running,
        "jobs-finished": count(JobStatus::Finished),
        "jobs-cancelled": count(JobStatus::Canceled),
        "jobs-failed": count(JobStatus::Failed),
        "flink-version": env!("CARGO_PKG_VERSION"),
        "flink-commit": "weir",
    })
}

/// The TaskManagers of the application's job (the newest job still running, else the
/// newest): a cluster's registered TaskManagers, or this process for `weir run`.
pub(crate) fn taskmanagers(jobs: &[JobClient]) -> Vec<TaskManagerInfo> {
    jobs.iter()
        .rev()
        .find(|j| !j.status().is_terminal())
        .or(jobs.last())
        .map(JobClient::taskmanagers)
        .unwrap_or_default()
}

/// Flink's `/taskmanagers` item; `memoryConfiguration` holds the budget's split (bytes),
/// `weir` what has no Flink name.
fn taskmanager_json(t: &TaskManagerInfo) -> Value {
    let (host, port) = t.data_addr.rsplit_once(':').unwrap_or((&t.data_addr, ""));
    let memory = t.memory.as_ref().map(|m| {
        json!({
            "totalProcessMemory": m.process,
            "frameworkOffHeap": m.framework,
            "networkMemory": m.network,
            "managedMemory": m.managed,
            "taskHeap": m.task,
        })
    });
    json!({
        "id": t.id,
        "path": host,
        "dataPort": port.parse::<u16>().ok(),
        "slotsNumber": t.slots,
        "freeSlots": t.slots.saturating_sub(t.slots_in_use),
        "timeSinceLastHeartbeat": t.since_heartbeat_ms,
        "memoryConfiguration": memory,
        "weir": {
            "residentMemory": t.rss_bytes,
            "networkBuffers": t.memory.as_ref().map(|m| m.buffers()),
            "segmentSize": t.memory.as_ref().map(|m| m.segment),
        },
    })
}

fn dashboard_config() -> Value {
    json!({
        "refresh-interval": 3000,
        "timezone-name": "Coordinated Universal Time",
        "timezone-offset": 0,
        "flink-version": env!("CARGO_PKG_VERSION"),
        "flink-revision": "weir",
        "features": {"web-submit": false, "web-cancel": true, "web-rescale": false, "web-history": false},
    })
}

fn readyz(state: &State) -> Answer {
    let jobs = jobs(state);
    // Ready once a job is registered and not ended: a JobManager waiting for its
    // TaskManagers (CREATED) is ready, since they can only find it through a ready Service.
    match jobs.iter().find(|j| !j.status().is_terminal()) {
        Some(j) => Ok((
            StatusCode::OK,
            to_json(&Readiness {
                status: "ready".into(),
                job: Some(j.job_id().to_string()),
            }),
        )),
        None => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            match jobs.first() {
                None => "no job yet".to_string(),
                Some(j) => format!("job {} is {}", j.job_id(), state_of(j)),
            },
        )),
    }
}

pub(crate) fn duration(job: &JobClient) -> i64 {
    job.end_time()
        .unwrap_or_else(weir_engine::time::now_ms)
        .saturating_sub(job.start_time())
}

/// One vertex per task (operator chain): name, parallelism, state counts, record counts.
struct Vertex {
    name: String,
    parallelism: usize,
    running: usize,
    finished: usize,
    records_in: u64,
    records_out: u64,
    backpressured_ms: u64,
    idle_ms: u64,
}

fn vertices(job: &JobClient) -> (Vec<Vertex>, JobSnapshot) {
    let snapshot = job.metrics();
    let mut out: Vec<Vertex> = Vec::new();
    for t in &snapshot.tasks {
        let i = match out.iter().position(|v| v.name == t.name) {
            Some(i) => i,
            None => {
                out.push(Vertex {
                    name: t.name.clone(),
                    parallelism: 0,
                    running: 0,
                    finished: 0,
                    records_in: 0,
                    records_out: 0,
                    backpressured_ms: 0,
                    idle_ms: 0,
                });
                out.len() - 1
            }
        };
        let v = &mut out[i];
        v.parallelism += 1;
        if t.finished {
            v.finished += 1;
        } else {
            v.running += 1;
        }
        v.records_in += t.records_in;
        v.records_out += t.records_out;
        v.backpressured_ms += t.backpressured_ms;
        v.idle_ms += t.idle_ms;
    }
    (out, snapshot)
}

/// Task state counts in Flink's shape; subtasks of an ended job count in its end state.
fn task_counts(job: &JobClient, running: usize, finished: usize) -> TaskCounts {
    let status = job.status();
    let (mut r, mut canceled, mut failed) = (running, 0, 0);
    match status {
        JobStatus::Canceled => (canceled, r) = (r, 0),
        JobStatus::Failed => (failed, r) = (r, 0),
        _ => {}
    }
    if status == JobStatus::Finished {
        r = 0;
    }
    let finished = finished
        + if status == JobStatus::Finished {
            running
        } else {
            0
        };
    TaskCounts {
        total: (running + finished) as u64,
        running: r as u64,
        finished: finished as u64,
        canceled: canceled as u64,
        failed: failed as u64,
        ..TaskCounts::default()
    }
}

fn job_overview(job: &JobClient) -> JobOverview {
    let (vs, _) = vertices(job);
    let (running, finished) = vs
        .iter()
        .fold((0, 0), |(r, f), v| (r + v.running, f + v.finished));
    JobOverview {
        jid: job.job_id().to_string(),
        name: job.name().to_string(),
        state: state_of(job),
        start_time: job.start_time(),
        end_time: job.end_time().unwrap_or(-1),
        duration: duration(job),
        last_modification: job.end_time().unwrap_or(job.start_time()),
        tasks: task_counts(job, running, finished),
    }
}

fn job_details(job: &JobClient, topology: Option<&JobTopology>) -> JobDetails {
    let state = state_of(job);
    let now = weir_engine::time::now_ms();
    let mut timestamps = std::collections::BTreeMap::from([
        (JobState::Created, job.start_time()),
        (JobState::Running, job.start_time()),
    ]);
    if let Some(end) = job.end_time() {
        timestamps.insert(state, end);
    }
    let (vs, snapshot) = vertices(job);
    let vertex_list = vs
        .iter()
        .map(|v| rest::Vertex {
            id: vertices::vertex_id(job, &v.name),
            name: v.name.clone(),
            parallelism: v.parallelism as u64,
            status: if v.running == 0
                && v.finished > 0
                && !state.is_terminal()
                && state != JobState::Cancelling
            {
                JobState::Finished
            } else {
                state
            },
            start_time: job.start_time(),
            end_time: job.end_time().unwrap_or(-1),
            duration: duration(job),
            tasks: task_counts(job, v.running, v.finished),
            metrics: VertexMetrics {
                read_records: v.records_in,
                read_records_complete: true,
                write_records: v.records_out,
                write_records_complete: true,
                accumulated_backpressured_time: v.backpressured_ms,
                accumulated_idle_time: v.idle_ms,
                accumulated_busy_time: (vertices::busy_ms(job, &snapshot, 0)
                    * v.parallelism as u64)
                    .saturating_sub(v.backpressured_ms + v.idle_ms),
                ..VertexMetrics::default()
            },
        })
        .collect();
    let (running, finished) = vs
        .iter()
        .fold((0, 0), |(r, f), v| (r + v.running, f + v.finished));
    JobDetails {
        jid: job.job_id().to_string(),
        name: job.name().to_string(),
        is_stoppable: false,
        state,
        job_type: STREAMING.into(),
        start_time: job.start_time(),
        end_time: job.end_time().unwrap_or(-1),
        duration: duration(job),
        now,
        timestamps,
        vertices: vertex_list,
        status_counts: task_counts(job, running, finished),
        plan: vertices::plan(job, topology),
    }
}

fn checkpoint_config(job: &JobClient) -> Answer {
    let c = job.checkpoint_config();
    let Some(interval) = c.interval else {
        return Err(ApiError::not_found(format!(
            "checkpointing is not enabled for job {} (set {})",
            job.job_id(),
            options::CHECKPOINTING_INTERVAL.key
        )));
    };
    Ok((
        StatusCode::OK,
        json!({
            "mode": match c.mode {
                CheckpointingMode::ExactlyOnce => "exactly_once",
                CheckpointingMode::AtLeastOnce => "at_least_once",
            },
            "interval": interval.as_millis() as u64,
            "timeout": c.timeout.as_millis() as u64,
            "min_pause": c.min_pause.as_millis() as u64,
            "max_concurrent": 1,
            "externalization": {
                "enabled": true,
                "delete_on_cancellation": c.retention == CheckpointRetention::DeleteOnCancellation,
            },
            "checkpoint_storage": c.dir,
            "savepoints_dir": c.savepoints_dir,
            "num_retained": c.retained,
            "unaligned_checkpoints": false,
            "tolerable_failed_checkpoints": c.tolerable_failures,
            "checkpoints_after_tasks_finish": false,
        }),
    ))
}

fn exceptions(job: &JobClient) -> Value {
    let failures = job.failures();
    let root = failures.last();
    let entries: Vec<Value> = failures
        .iter()
        .rev()
        .map(|f| {
            json!({
                "exceptionName": rest::FAILURE_CLASS,
                "stacktrace": f.message,
                "timestamp": f.timestamp,
                "taskName": f.task,
                "location": null,
                "concurrentExceptions": [],
            })
        })
        .collect();
    let all: Vec<Value> = failures
        .iter()
        .rev()
        .map(|f| json!({"exception": f.message, "task": f.task, "location": null, "timestamp": f.timestamp}))
        .collect();
    json!({
        "root-exception": root.map(|f| f.message.clone()),
        "timestamp": root.map(|f| f.timestamp),
        "all-exceptions": all,
        "truncated": false,
        "exceptionHistory": {"entries": entries, "truncated": false},
    })
}

fn cancel(job: &JobClient, query: &str) -> Answer {
    let (param, cancel_mode) = rest::CANCEL_QUERY;
    let mode = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == param)
        .map_or(cancel_mode, |(_, v)| v);
    if mode != cancel_mode {
        let stop_path = Route::Stop {
            job: ":jobid".into(),
        };
        return Err(ApiError::bad_request(format!(
            "mode '{mode}' is not supported; use PATCH {}, or POST {} for stop-with-savepoint",
            rest::cancel_path(":jobid"),
            stop_path.path()
        )));
    }
    if job.status().is_terminal() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("job {} has already ended ({})", job.job_id(), state_of(job)),
        ));
    }
    job.cancel();
    Ok((StatusCode::ACCEPTED, json!({})))
}

/// Whether a savepoint may be written to `target`, a directory a REST client asked for: never
/// through a `.` or `..` segment, and, once the job names any root (`state.savepoints.dir`,
/// `state.savepoints.allowed-roots`), only at or below one of them — anyone who reaches the
/// port could otherwise make the process write wherever it may.
fn confine_target(target: &str, roots: &[&str]) -> Result<(), String> {
    let path = |uri: &str| {
        uri.strip_prefix("file://")
            .unwrap_or(uri)
            .trim_end_matches('/')
            .to_string()
    };
    let t = path(target);
    let after_scheme = t.split_once("://").map_or(t.as_str(), |(_, rest)| rest);
    if after_scheme.split('/').any(|seg| seg == ".." || seg == ".") {
        return Err(format!(
            "savepoint target '{target}' has a '.' or '..' segment; name the directory plainly"
        ));
    }
    if roots.is_empty()
        || roots.iter().any(|r| {
            let r = path(r);
            t == r || t.starts_with(&format!("{r}/"))
        })
    {
        return Ok(());
    }
    Err(format!(
        "savepoint target '{target}' is outside the directories savepoints may be written to ({}); \
         use one of them, or add it to {}",
        roots.join(", "),
        options::SAVEPOINT_ALLOWED_ROOTS.key
    ))
}

enum Kind {
    Savepoint { cancel_job: bool },
    Stop { drain: bool },
}

fn trigger(
    state: &State,
    job: &JobClient,
    target: Option<String>,
    trigger_id: Option<String>,
    kind: Kind,
) -> Answer {
    let mut triggers = state.triggers.lock().expect("not poisoned");
    // A repeated trigger id is the same operation: answer it again, start nothing.
    if let Some(id) = &trigger_id
        && triggers.get(id).is_some_and(|t| t.job_id == job.job_id())
    {
        return Ok((
            StatusCode::ACCEPTED,
            to_json(&TriggerResponse {
                request_id: id.clone(),
            }),
        ));
    }
    if target.is_none() && job.checkpoint_config().savepoints_dir.is_none() {
        let field = match kind {
            Kind::Savepoint { .. } => "target-directory",
            Kind::Stop { .. } => "targetDirectory",
        };
        return Err(ApiError::bad_request(format!(
            "no savepoint directory: pass '{field}' or set {}",
            options::SAVEPOINTS_DIR.key
        )));
    }
    if let Some(t) = &target {
        let cfg = job.checkpoint_config();
        let roots: Vec<&str> = cfg
            .savepoints_dir
            .iter()
            .chain(&cfg.savepoint_roots)
            .map(String::as_str)
            .collect();
        confine_target(t, &roots).map_err(ApiError::bad_request)?;
    }
    if job.status().is_terminal() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "job {} has already ended ({}); no savepoint can be taken",
                job.job_id(),
                state_of(job)
            ),
        ));
    }
    let id = trigger_id.unwrap_or_else(new_trigger_id);
    let outcome = Arc::new(Mutex::new(None));
    triggers.insert(
        id.clone(),
        Trigger {
            job_id: job.job_id().to_string(),
            outcome: outcome.clone(),
            reported: Arc::new(AtomicBool::new(false)),
        },
    );
    drop(triggers);
    let job = job.clone();
    let spawned = std::thread::Builder::new()
        .name(format!("savepoint {id}"))
        .spawn(move || {
            let target = target.as_deref();
            let r = match kind {
                Kind::Savepoint { cancel_job } => {
                    let r = job.trigger_savepoint(target);
                    if cancel_job && r.is_ok() {
                        job.cancel();
                    }
                    r
                }
                Kind::Stop { drain } => job.stop_with_savepoint(target, drain),
            };
            *outcome.lock().expect("not poisoned") = Some(r.map_err(|e| weir_engine::report(&e)));
        });
    if let Err(e) = spawned {
        state.triggers.lock().expect("not poisoned").remove(&id);
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot start the savepoint: {e}"),
        ));
    }
    Ok((
        StatusCode::ACCEPTED,
        to_json(&TriggerResponse { request_id: id }),
    ))
}

fn new_trigger_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let mix = |x: u64| {
        let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    format!(
        "{:016x}{:016x}",
        mix(nanos ^ u64::from(std::process::id())),
        mix(n ^ nanos.rotate_left(17))
    )
}

fn savepoint_status(state: &State, job: &JobClient, trigger_id: &str) -> Answer {
    let triggers = state.triggers.lock().expect("not poisoned");
    let t = triggers
        .get(trigger_id)
        .filter(|t| t.job_id == job.job_id())
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "no savepoint with trigger id {trigger_id} for job {}",
                job.job_id()
            ))
        })?;
    let outcome = t.outcome.lock().expect("not poisoned").clone();
    if outcome.is_some() {
        t.reported.store(true, Ordering::Release);
    }
    let body = to_json(&SavepointStatus::of(outcome));
    Ok((StatusCode::OK, body))
}

fn metrics_text(state: &State) -> String {
    let jobs = jobs(state);
    let mut baselines = state.baselines.lock().expect("not poisoned");
    let mut views = Vec::new();
    for j in &jobs {
        let now = j.metrics();
        let base = baselines.get(j.job_id()).cloned();
        // Rates are measured over at least a second; a restart resets the counters.
        let fresh = base
            .as_ref()
            .is_none_or(|b| now.elapsed_ms < b.elapsed_ms || now.elapsed_ms - b.elapsed_ms >= 1000);
        if fresh {
            baselines.insert(j.job_id().to_string(), now.clone());
        }
        let base = base.filter(|b| b.elapsed_ms <= now.elapsed_ms);
        views.push((j.clone(), now, base));
    }
    drop(baselines);
    let views: Vec<prometheus::JobView<'_>> = views
        .iter()
        .map(|(job, now, base)| prometheus::JobView {
            job,
            now,
            previous: base.as_ref(),
        })
        .collect();
    prometheus::render(&views, &taskmanagers(&jobs))
}
