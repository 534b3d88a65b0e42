//! A savepoint upgrade driven end to end over HTTP: the lifecycle decides, the real REST
//! client observes and triggers savepoints on a stub JobManager (stateful, idempotent trigger
//! ids, stop-with-savepoint finishes the job), and an in-memory cluster stands in for
//! Kubernetes. Only the status carries over between steps, as across operator restarts, and
//! the operator dies once between recording a savepoint trigger and sending it.

mod common;

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use common::fixture;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use weir_operator::crd::{LifecycleState, StreamJobStatus};
use weir_operator::jobmanager::JobManagerClient;
use weir_operator::lifecycle::{self, Action, Inputs, Observation, PreflightOutcome};

#[derive(Default)]
struct Stub {
    run: u32,
    state: &'static str,
    checkpoint: u32,
    /// trigger id -> (polls left, stop, location)
    operations: HashMap<String, (u32, bool, String)>,
    /// Savepoint requests received, including repeats.
    requests: Vec<String>,
}

impl Stub {
    fn job_id(&self) -> String {
        format!("{:032x}", self.run)
    }

    fn answer(&mut self, method: &Method, path: &str, body: &Value) -> (StatusCode, Value) {
        let job = self.job_id();
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        match (method, parts.as_slice()) {
            (&Method::GET, ["jobs"]) => (
                StatusCode::OK,
                json!({"jobs": [{"id": job, "status": self.state}]}),
            ),
            (&Method::GET, ["jobs", id]) if *id == job => (
                StatusCode::OK,
                json!({"jid": job, "state": self.state, "start-time": 1767225600000i64}),
            ),
            (&Method::GET, ["jobs", id, "checkpoints"]) if *id == job => (
                StatusCode::OK,
                json!({"latest": {"completed": {"external_path":
                    format!("file:///cp/{job}/chk-{}", self.checkpoint)}}}),
            ),
            (&Method::GET, ["jobs", _, "savepoints", trigger]) => {
                match self.operations.get_mut(*trigger) {
                    None => (StatusCode::NOT_FOUND, json!({"errors": ["unknown"]})),
                    Some((polls, _, _)) if *polls > 0 => {
                        *polls -= 1;
                        (StatusCode::OK, json!({"status": {"id": "IN_PROGRESS"}}))
                    }
                    Some((_, stop, location)) => {
                        if *stop {
                            self.state = "FINISHED";
                        }
                        (
                            StatusCode::OK,
                            json!({"status": {"id": "COMPLETED"}, "operation": {"location": location}}),
                        )
                    }
                }
            }
            (&Method::POST, ["jobs", id, kind @ ("stop" | "savepoints")]) if *id == job => {
                let trigger = body["triggerId"].as_str().unwrap().to_string();
                self.requests.push(trigger.clone());
                let dir = body["targetDirectory"]
                    .as_str()
                    .or(body["target-directory"].as_str())
                    .unwrap();
                let location = format!("{dir}/savepoint-{}", &trigger[..6]);
                self.operations
                    .entry(trigger.clone())
                    .or_insert((1, *kind == "stop", location));
                (StatusCode::ACCEPTED, json!({"request-id": trigger}))
            }
            _ => (StatusCode::NOT_FOUND, json!({"errors": ["not found"]})),
        }
    }
}

async fn serve(stub: Arc<Mutex<Stub>>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let stub = stub.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<Incoming>| {
                    let stub = stub.clone();
                    async move {
                        let method = request.method().clone();
                        let path = request.uri().path().to_string();
                        let bytes = request.into_body().collect().await.unwrap().to_bytes();
                        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                        let (status, answer) = stub.lock().unwrap().answer(&method, &path, &body);
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
    base
}

#[tokio::test]
async fn a_savepoint_upgrade_over_http_survives_a_crash_between_recording_and_sending_the_trigger()
{
    let stub = Arc::new(Mutex::new(Stub {
        run: 1,
        state: "RUNNING",
        checkpoint: 1,
        ..Stub::default()
    }));
    let base = serve(stub.clone()).await;

    let mut spec = fixture("savepoint.yaml").spec;
    // Persisted state: only the status survives an operator restart.
    let mut status = StreamJobStatus::default();
    let mut cluster_exists = false;
    let mut deployed_restores: Vec<Option<String>> = Vec::new();
    let mut now: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
    // What the pre-flight check's pod reports (the check is on by default).
    let mut preflight: Option<PreflightOutcome> = None;

    for step in 0..40 {
        if step == 3 {
            spec.image = "weir:1.3".into();
        }
        // A fresh client per step: nothing carries over but the status.
        let client = JobManagerClient::new();
        let job = if cluster_exists {
            client.observe_job(&base).await.unwrap()
        } else {
            None
        };
        let savepoint = match (&status.savepoints.pending, &job) {
            (Some(p), Some(_)) => Some(
                client
                    .savepoint_status(&base, &p.job_id, &p.trigger_id)
                    .await
                    .unwrap(),
            ),
            _ => None,
        };
        let observation = Observation {
            job,
            savepoint,
            cluster_exists,
            storage_latest_checkpoint: None,
            can_delete_s3: false,
            initial_snapshot: None,
            preflight: preflight.clone(),
        };
        let decided = lifecycle::decide(&Inputs {
            spec: &spec,
            generation: Some(1),
            status: &status,
            observation: &observation,
            now,
            fresh_trigger_id: format!("{step:02}aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
        });
        status = decided.status;
        if step == 3 {
            // The upgrade starts with the pre-flight check; its pod finds the state compatible.
            assert!(
                matches!(decided.action, Action::RunPreflight { .. }),
                "{:?}",
                decided.action
            );
            preflight = Some(PreflightOutcome::Compatible);
            now += jiff::SignedDuration::from_secs(5);
            continue;
        }
        if step == 4 {
            // The operator dies right after recording the savepoint trigger, before sending it.
            assert!(
                matches!(decided.action, Action::TriggerSavepoint { .. }),
                "{:?}",
                decided.action
            );
            now += jiff::SignedDuration::from_secs(5);
            continue;
        }
        match decided.action {
            Action::TriggerSavepoint {
                job_id,
                trigger_id,
                target_directory,
                stop,
            } => client
                .trigger_savepoint(&base, &job_id, &trigger_id, &target_directory, stop)
                .await
                .unwrap(),
            Action::TearDown => {
                cluster_exists = false;
            }
            Action::Deploy { restore_path, .. } => {
                let mut stub = stub.lock().unwrap();
                if !cluster_exists || deployed_restores.last() != Some(&restore_path) {
                    if cluster_exists || !deployed_restores.is_empty() {
                        stub.run += 1;
                    }
                    stub.state = "RUNNING";
                    stub.checkpoint = 1;
                    deployed_restores.push(restore_path);
                }
                cluster_exists = true;
            }
            _ => {}
        }
        now += jiff::SignedDuration::from_secs(5);
        if step > 4
            && status.lifecycle_state == LifecycleState::Stable
            && deployed_restores.len() == 2
        {
            break;
        }
    }

    let stub = stub.lock().unwrap();
    assert_eq!(status.lifecycle_state, LifecycleState::Stable);
    assert_eq!(
        stub.operations.len(),
        1,
        "exactly one savepoint: {:?}",
        stub.requests
    );
    assert_eq!(
        stub.requests,
        ["04aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"],
        "the trigger recorded before the crash is the one sent after it"
    );
    let location = status.savepoints.last.as_ref().unwrap().location.clone();
    assert_eq!(location, "s3://state/orders/savepoints/savepoint-04aaaa");
    assert_eq!(deployed_restores, [None, Some(location)]);
    assert_eq!(
        status.job_status.job_id.as_deref(),
        Some(stub.job_id().as_str())
    );
    assert_eq!(status.job_status.previous_job_ids, [format!("{:032x}", 1)]);
}
