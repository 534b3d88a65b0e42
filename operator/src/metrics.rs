//! Operator metrics in the Prometheus text format, plus the small HTTP server that serves them
//! with `/healthz`. Counters are plain atomics: the operator exports a handful of series and
//! needs no metrics library for that.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use crate::crd::LifecycleState;

/// Reconcile counters and the lifecycle state of every StreamJob.
#[derive(Debug, Default)]
pub struct Metrics {
    reconciles: AtomicU64,
    failures: AtomicU64,
    reconcile_micros: AtomicU64,
    states: Mutex<BTreeMap<String, LifecycleState>>,
}

impl Metrics {
    /// Counts a finished reconcile and its duration.
    pub fn reconciled(&self, took: Duration) {
        self.reconciles.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.reconcile_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// Counts a failed reconcile.
    pub fn failed(&self) {
        self.failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Records the lifecycle state of `namespace/name`.
    pub fn set_state(&self, key: String, state: LifecycleState) {
        if let Ok(mut states) = self.states.lock() {
            states.insert(key, state);
        }
    }

    /// Forgets a deleted StreamJob.
    pub fn forget(&self, key: &str) {
        if let Ok(mut states) = self.states.lock() {
            states.remove(key);
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let counter = |out: &mut String, name: &str, help: &str, value: f64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        };
        counter(
            &mut out,
            "weir_operator_reconciles_total",
            "Reconciles run.",
            self.reconciles.load(Ordering::Relaxed) as f64,
        );
        counter(
            &mut out,
            "weir_operator_reconcile_errors_total",
            "Reconciles that failed.",
            self.failures.load(Ordering::Relaxed) as f64,
        );
        counter(
            &mut out,
            "weir_operator_reconcile_duration_seconds_total",
            "Time spent reconciling.",
            self.reconcile_micros.load(Ordering::Relaxed) as f64 / 1e6,
        );
        let mut counts: BTreeMap<&'static str, u64> = LifecycleState::ALL
            .iter()
            .map(|s| (state_name(*s), 0))
            .collect();
        if let Ok(states) = self.states.lock() {
            for state in states.values() {
                *counts.entry(state_name(*state)).or_default() += 1;
            }
        }
        let _ = writeln!(
            out,
            "# HELP weir_operator_streamjobs StreamJobs per lifecycle state.\n# TYPE weir_operator_streamjobs gauge"
        );
        for (state, count) in counts {
            let _ = writeln!(out, "weir_operator_streamjobs{{state=\"{state}\"}} {count}");
        }
        out
    }
}

/// The status spelling of a lifecycle state.
pub fn state_name(state: LifecycleState) -> &'static str {
    match state {
        LifecycleState::Created => "CREATED",
        LifecycleState::Deploying => "DEPLOYING",
        LifecycleState::Running => "RUNNING",
        LifecycleState::Stable => "STABLE",
        LifecycleState::Upgrading => "UPGRADING",
        LifecycleState::Suspended => "SUSPENDED",
        LifecycleState::RollingBack => "ROLLING_BACK",
        LifecycleState::RolledBack => "ROLLED_BACK",
        LifecycleState::Failed => "FAILED",
        LifecycleState::Deleting => "DELETING",
    }
}

/// Serves `/metrics` and `/healthz` until the task is dropped.
pub async fn serve(addr: SocketAddr, metrics: Arc<Metrics>) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<Incoming>| {
                let metrics = metrics.clone();
                async move { Ok::<_, Infallible>(respond(request.uri().path(), &metrics)) }
            });
            // A client that hangs up mid-request is not the operator's problem.
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn respond(path: &str, metrics: &Metrics) -> Response<Full<Bytes>> {
    let (status, body) = match path {
        "/metrics" => (StatusCode::OK, metrics.render()),
        "/healthz" => (StatusCode::OK, "ok\n".to_string()),
        _ => (StatusCode::NOT_FOUND, "not found\n".to_string()),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_counts_reconciles_errors_and_jobs_per_state() {
        let metrics = Metrics::default();
        metrics.reconciled(Duration::from_millis(250));
        metrics.reconciled(Duration::from_millis(250));
        metrics.failed();
        metrics.set_state("a/x".into(), LifecycleState::Stable);
        metrics.set_state("a/y".into(), LifecycleState::Stable);
        metrics.set_state("b/z".into(), LifecycleState::Upgrading);
        metrics.forget("b/z");
        let text = metrics.render();
        assert!(
            text.contains("weir_operator_reconciles_total 2\n"),
            "{text}"
        );
        assert!(
            text.contains("weir_operator_reconcile_errors_total 1\n"),
            "{text}"
        );
        assert!(
            text.contains("weir_operator_reconcile_duration_seconds_total 0.5\n"),
            "{text}"
        );
        assert!(
            text.contains("weir_operator_streamjobs{state=\"STABLE\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("weir_operator_streamjobs{state=\"UPGRADING\"} 0\n"),
            "{text}"
        );
    }

    #[test]
    fn healthz_answers_ok_and_unknown_paths_are_not_found() {
        let metrics = Metrics::default();
        assert_eq!(respond("/healthz", &metrics).status(), StatusCode::OK);
        assert_eq!(respond("/nope", &metrics).status(), StatusCode::NOT_FOUND);
    }
}
