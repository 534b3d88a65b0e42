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
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use crate::crd::{LifecycleState, RolloutIntent};

/// Reconcile counters, the lifecycle state of every StreamJob with the time spent in each, and
/// how long rollouts and snapshots take.
#[derive(Debug, Default)]
pub struct Metrics {
    reconciles: AtomicU64,
    failures: AtomicU64,
    reconcile_micros: AtomicU64,
    states: Mutex<BTreeMap<String, (LifecycleState, Instant)>>,
    /// Seconds StreamJobs spent in each state, summed over jobs.
    state_seconds: Mutex<BTreeMap<&'static str, f64>>,
    /// Rollouts in flight: what for and since when.
    rollouts: Mutex<BTreeMap<String, (RolloutIntent, Instant)>>,
    /// Finished rollouts per intent: count and total seconds.
    rollout_durations: Mutex<BTreeMap<&'static str, (u64, f64)>>,
    /// Completed snapshots: count and total seconds from trigger to completion.
    snapshot_durations: Mutex<(u64, f64)>,
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

    /// Records the lifecycle state of `namespace/name` at `now`, adding the time since the
    /// previous record to the state it was in.
    pub fn set_state(&self, key: String, state: LifecycleState, now: Instant) {
        let Ok(mut states) = self.states.lock() else {
            return;
        };
        if let Some((previous, since)) = states.insert(key, (state, now))
            && let Ok(mut seconds) = self.state_seconds.lock()
        {
            *seconds.entry(state_name(previous)).or_default() +=
                now.saturating_duration_since(since).as_secs_f64();
        }
    }

    /// Follows the rollout of `namespace/name`: `intent` is the status' current one. A rollout
    /// ends when the intent clears (or changes, e.g. an upgrade turning into a rollback).
    pub fn rollout(&self, key: &str, intent: Option<RolloutIntent>, now: Instant) {
        let Ok(mut rollouts) = self.rollouts.lock() else {
            return;
        };
        let running = rollouts.get(key).copied();
        match (running, intent) {
            (Some((was, _)), Some(is)) if was == is => {}
            (running, intent) => {
                if let Some((was, since)) = running {
                    rollouts.remove(key);
                    if let Ok(mut durations) = self.rollout_durations.lock() {
                        let entry = durations.entry(intent_name(was)).or_default();
                        entry.0 += 1;
                        entry.1 += now.saturating_duration_since(since).as_secs_f64();
                    }
                }
                if let Some(is) = intent {
                    rollouts.insert(key.to_string(), (is, now));
                }
            }
        }
    }

    /// Counts a completed snapshot and how long it took.
    pub fn snapshot_completed(&self, took: Duration) {
        if let Ok(mut durations) = self.snapshot_durations.lock() {
            durations.0 += 1;
            durations.1 += took.as_secs_f64();
        }
    }

    /// Forgets a deleted StreamJob.
    pub fn forget(&self, key: &str) {
        if let Ok(mut states) = self.states.lock() {
            states.remove(key);
        }
        if let Ok(mut rollouts) = self.rollouts.lock() {
            rollouts.remove(key);
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
            for (state, _) in states.values() {
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
        let _ = writeln!(
            out,
            "# HELP weir_operator_state_seconds_total Time StreamJobs spent in each lifecycle state.\n# TYPE weir_operator_state_seconds_total counter"
        );
        if let Ok(seconds) = self.state_seconds.lock() {
            for (state, total) in seconds.iter() {
                let _ = writeln!(
                    out,
                    "weir_operator_state_seconds_total{{state=\"{state}\"}} {total}"
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP weir_operator_rollout_duration_seconds Rollouts (deploy, upgrade, suspend, resume, restart, rollback) from start to end.\n# TYPE weir_operator_rollout_duration_seconds summary"
        );
        if let Ok(durations) = self.rollout_durations.lock() {
            for (intent, (count, total)) in durations.iter() {
                let _ = writeln!(
                    out,
                    "weir_operator_rollout_duration_seconds_sum{{intent=\"{intent}\"}} {total}\nweir_operator_rollout_duration_seconds_count{{intent=\"{intent}\"}} {count}"
                );
            }
        }
        if let Ok(durations) = self.snapshot_durations.lock() {
            let _ = writeln!(
                out,
                "# HELP weir_operator_snapshot_duration_seconds StreamJobSnapshots from trigger to completion.\n# TYPE weir_operator_snapshot_duration_seconds summary\nweir_operator_snapshot_duration_seconds_sum {}\nweir_operator_snapshot_duration_seconds_count {}",
                durations.1, durations.0
            );
        }
        out
    }
}

/// The metric label of a rollout intent.
fn intent_name(intent: RolloutIntent) -> &'static str {
    match intent {
        RolloutIntent::Deploy => "deploy",
        RolloutIntent::Upgrade => "upgrade",
        RolloutIntent::Suspend => "suspend",
        RolloutIntent::Resume => "resume",
        RolloutIntent::Restart => "restart",
        RolloutIntent::Rollback => "rollback",
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
        let now = Instant::now();
        metrics.set_state("a/x".into(), LifecycleState::Stable, now);
        metrics.set_state("a/y".into(), LifecycleState::Stable, now);
        metrics.set_state("b/z".into(), LifecycleState::Upgrading, now);
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
    fn time_in_each_state_and_rollout_and_snapshot_durations_are_exported() {
        let metrics = Metrics::default();
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        metrics.set_state("a/x".into(), LifecycleState::Deploying, at(0));
        metrics.rollout("a/x", Some(RolloutIntent::Deploy), at(0));
        metrics.set_state("a/x".into(), LifecycleState::Stable, at(30));
        metrics.rollout("a/x", None, at(30));
        metrics.set_state("a/x".into(), LifecycleState::Upgrading, at(90));
        metrics.rollout("a/x", Some(RolloutIntent::Upgrade), at(90));
        metrics.rollout("a/x", Some(RolloutIntent::Upgrade), at(95));
        // The upgrade fails and turns into a rollback: two rollouts.
        metrics.rollout("a/x", Some(RolloutIntent::Rollback), at(100));
        metrics.set_state("a/x".into(), LifecycleState::RolledBack, at(120));
        metrics.rollout("a/x", None, at(120));
        metrics.snapshot_completed(Duration::from_millis(1500));
        let text = metrics.render();
        for line in [
            "weir_operator_state_seconds_total{state=\"DEPLOYING\"} 30\n",
            "weir_operator_state_seconds_total{state=\"STABLE\"} 60\n",
            "weir_operator_state_seconds_total{state=\"UPGRADING\"} 30\n",
            "weir_operator_rollout_duration_seconds_sum{intent=\"deploy\"} 30\n",
            "weir_operator_rollout_duration_seconds_count{intent=\"upgrade\"} 1\n",
            "weir_operator_rollout_duration_seconds_sum{intent=\"upgrade\"} 10\n",
            "weir_operator_rollout_duration_seconds_sum{intent=\"rollback\"} 20\n",
            "weir_operator_snapshot_duration_seconds_sum 1.5\n",
            "weir_operator_snapshot_duration_seconds_count 1\n",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
    }

    #[test]
    fn healthz_answers_ok_and_unknown_paths_are_not_found() {
        let metrics = Metrics::default();
        assert_eq!(respond("/healthz", &metrics).status(), StatusCode::OK);
        assert_eq!(respond("/nope", &metrics).status(), StatusCode::NOT_FOUND);
    }
}
