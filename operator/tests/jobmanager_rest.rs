//! The JobManager REST client against a stub JobManager on 127.0.0.1 that answers with the
//! contract's JSON and records what it was sent, and against a real REST server with a token
//! and TLS, as `spec.security` sets them up.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use weir_operator::jobmanager::JobManagerClient;
use weir_operator::lifecycle::{JobState, SavepointProgress};

type Log = Arc<Mutex<Vec<(Method, String, Value)>>>;

fn answer(method: &Method, path: &str) -> (StatusCode, Value) {
    match (method, path) {
        (&Method::GET, "/jobs") => (
            StatusCode::OK,
            json!({"jobs": [{"id": "a1b2", "status": "RUNNING"}]}),
        ),
        (&Method::GET, "/jobs/a1b2") => (
            StatusCode::OK,
            json!({"jid": "a1b2", "state": "RUNNING", "start-time": 1767225600000i64}),
        ),
        (&Method::GET, "/jobs/a1b2/checkpoints") => (
            StatusCode::OK,
            json!({"latest": {"completed": {"id": 4, "external_path": "file:///cp/a1b2/chk-4"}}}),
        ),
        (&Method::GET, "/jobs/a1b2/savepoints/done") => (
            StatusCode::OK,
            json!({"status": {"id": "COMPLETED"}, "operation": {"location": "file:///sp/savepoint-a1b2-1"}}),
        ),
        (&Method::POST, "/jobs/a1b2/stop") => (StatusCode::ACCEPTED, json!({"request-id": "t1"})),
        (&Method::GET, "/broken/jobs") => (
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"errors": ["boom"]}),
        ),
        _ => (StatusCode::NOT_FOUND, json!({"errors": ["Not found"]})),
    }
}

/// Starts the stub and returns its base URL and request log.
async fn stub() -> (String, Log) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let log: Log = Arc::default();
    let served = log.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let log = served.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<Incoming>| {
                    let log = log.clone();
                    async move {
                        let method = request.method().clone();
                        let path = request.uri().path().to_string();
                        let body = request.into_body().collect().await.unwrap().to_bytes();
                        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                        log.lock()
                            .unwrap()
                            .push((method.clone(), path.clone(), body));
                        let (status, answer) = answer(&method, &path);
                        let mut response =
                            Response::new(Full::new(Bytes::from(answer.to_string())));
                        *response.status_mut() = status;
                        Ok::<_, Infallible>(response)
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (base, log)
}

#[tokio::test]
async fn the_job_its_state_and_its_latest_checkpoint_are_observed() {
    let (base, _) = stub().await;
    let job = JobManagerClient::new()
        .observe_job(&base)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(job.job_id, "a1b2");
    assert_eq!(job.state, JobState::Running);
    assert_eq!(job.start_time.as_deref(), Some("2026-01-01T00:00:00Z"));
    assert_eq!(
        job.latest_checkpoint.as_deref(),
        Some("file:///cp/a1b2/chk-4")
    );
}

#[tokio::test]
async fn a_trigger_id_the_jobmanager_never_saw_is_unknown_and_a_done_one_has_its_location() {
    let (base, _) = stub().await;
    let client = JobManagerClient::new();
    assert_eq!(
        client
            .savepoint_status(&base, "a1b2", "never-sent")
            .await
            .unwrap(),
        SavepointProgress::Unknown
    );
    assert_eq!(
        client
            .savepoint_status(&base, "a1b2", "done")
            .await
            .unwrap(),
        SavepointProgress::Completed {
            location: "file:///sp/savepoint-a1b2-1".into()
        }
    );
}

#[tokio::test]
async fn stop_with_savepoint_posts_the_target_directory_and_the_operators_trigger_id() {
    let (base, log) = stub().await;
    JobManagerClient::new()
        .trigger_savepoint(&base, "a1b2", "t1", "file:///sp", true)
        .await
        .unwrap();
    let log = log.lock().unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].0, Method::POST);
    assert_eq!(log[0].1, "/jobs/a1b2/stop");
    assert_eq!(
        log[0].2,
        json!({"targetDirectory": "file:///sp", "drain": false, "triggerId": "t1"})
    );
}

#[tokio::test]
async fn a_server_error_is_reported_with_its_status_and_body() {
    let (base, _) = stub().await;
    let error = JobManagerClient::new()
        .observe_job(&format!("{base}/broken"))
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(message.contains("500"), "{message}");
    assert!(message.contains("boom"), "{message}");
}

#[tokio::test]
async fn an_unreachable_jobmanager_is_an_error_not_a_hang() {
    // Port 9 on loopback: nothing listens there.
    let result = JobManagerClient::new()
        .observe_job("http://127.0.0.1:9")
        .await;
    assert!(result.is_err());
}

/// A real REST server requiring `token` over TLS with `certs`, serving a running job.
fn secured_jobmanager(
    certs: &weir_contract::security::testing::TestCertificates,
    out: &std::path::Path,
) -> (weir_cluster::RestServer, weir_engine::runtime::JobHandle) {
    use weir_engine::api::StreamExecutionEnvironment;
    use weir_engine::connectors::{DataGen, FileSink};
    let env = StreamExecutionEnvironment::with_config(weir_engine::config::Config::default());
    env.from_source(
        DataGen::new(1, |g| g.index).rows_per_second(50.0),
        None,
        "gen",
    )
    .sink_to(FileSink::json_lines(out));
    let job = env.execute_async("secured").unwrap();
    let security = weir_contract::security::RestSecurity {
        token: weir_contract::security::Token::new("operator-token"),
        tls: Some(weir_contract::security::TlsFiles {
            cert: Some(certs.cert.clone()),
            key: Some(certs.key.clone()),
            ca: None,
        }),
    };
    let server =
        weir_cluster::RestServer::start_secured("127.0.0.1", 0, Default::default(), &security)
            .unwrap();
    server.add_job(job.client());
    (server, job)
}

#[tokio::test]
async fn with_spec_security_the_client_sends_the_token_and_checks_the_service_name_on_the_certificate()
 {
    use weir_contract::client::ClientSecurity;
    use weir_contract::security::{Token, testing::TestCertificates, tls};
    use weir_operator::names;
    let dir = tempfile::tempdir().unwrap();
    // Valid for the Service's name only, as the docs ask; the operator calls the pod's IP.
    let service = names::jobmanager_service_dns("orders", "shop");
    let certs = TestCertificates::generate(dir.path(), &[&service]);
    let out = tempfile::tempdir().unwrap();
    let (server, job) = secured_jobmanager(&certs, out.path());
    let base = JobManagerClient::https(&format!("http://{}", server.local_addr()));
    assert!(base.starts_with("https://127.0.0.1:"), "{base}");
    let ca = tls::client_config_from_pem(&std::fs::read(&certs.ca).unwrap()).unwrap();
    let security = |token: Option<&str>, server_name: Option<&str>| ClientSecurity {
        token: token.and_then(Token::new),
        tls: Some(ca.clone()),
        server_name: server_name.map(str::to_string),
    };

    let operator = JobManagerClient::new()
        .secured(&security(Some("operator-token"), Some(&service)))
        .unwrap();
    let observed = operator.observe_job(&base).await.unwrap().unwrap();
    assert_eq!(observed.job_id, job.job_id());
    assert_eq!(observed.state, JobState::Running);

    // Without the name the certificate does not match the address.
    let by_address = JobManagerClient::new()
        .secured(&security(Some("operator-token"), None))
        .unwrap();
    let e = by_address.observe_job(&base).await.unwrap_err();
    assert!(e.to_string().contains("cannot reach"), "{e}");
    // Without the token the JobManager refuses.
    let anonymous = JobManagerClient::new()
        .secured(&security(None, Some(&service)))
        .unwrap();
    let e = anonymous.observe_job(&base).await.unwrap_err().to_string();
    assert!(e.contains("401") && e.contains("bearer token"), "{e}");
    job.cancel();
}
