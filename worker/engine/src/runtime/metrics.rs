//! Live counters of a running job: records in/out and watermark per operator subtask, time
//! blocked on full output channels (backpressure) and waiting for input (idle) per task, state size, and the gauges a
//! connector reports (Flink's connector metrics: a Kafka source's lag and offsets). Updated with
//! relaxed atomics by the tasks, read by the progress display, the REST API and `/metrics`.

use crate::time::{MIN_WATERMARK, Timestamp};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Every source's gauge: milliseconds between the last emitted record's event time and its
/// emission (Flink's standard source metric).
pub const CURRENT_EMIT_EVENT_TIME_LAG: &str = "currentEmitEventTimeLag";

/// A value a connector reports about one operator subtask, named as in Flink: `name` is the
/// metric's identifier below the operator's scope, its groups joined by `.`
/// (`pendingRecords`, `KafkaSourceReader.topic.partition.currentOffset`), and `labels` the
/// values of its key-value groups (`topic`, `partition`), which Flink's Prometheus reporter
/// also turns into labels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gauge {
    /// The identifier below the operator scope.
    pub name: String,
    /// Key-value group values.
    pub labels: Vec<(String, String)>,
    /// The value now.
    pub value: f64,
}

impl Gauge {
    /// A gauge without labels.
    pub fn new(name: impl Into<String>, value: f64) -> Self {
        Gauge {
            name: name.into(),
            labels: Vec::new(),
            value,
        }
    }

    /// Gauges without labels, one per `(name, value)`.
    pub(crate) fn all(values: Vec<(String, f64)>) -> Vec<Gauge> {
        values.into_iter().map(|(n, v)| Gauge::new(n, v)).collect()
    }

    /// Adds a key-value group's value.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.push((key.into(), value.into()));
        self
    }
}

/// Counters of one operator subtask.
#[derive(Debug)]
pub(crate) struct OperatorMetrics {
    pub(crate) name: String,
    pub(crate) subtask: usize,
    pub(crate) is_source: bool,
    pub(crate) is_sink: bool,
    pub(crate) records_in: AtomicU64,
    pub(crate) records_out: AtomicU64,
    pub(crate) watermark: AtomicI64,
    pub(crate) state_entries: AtomicU64,
    pub(crate) skipped: AtomicU64,
    /// What the operator's connector reported last (see [`Gauge`]).
    pub(crate) gauges: Mutex<Vec<Gauge>>,
}

impl OperatorMetrics {
    pub(crate) fn new(name: &str, subtask: usize, is_source: bool, is_sink: bool) -> Self {
        OperatorMetrics {
            name: name.to_string(),
            subtask,
            is_source,
            is_sink,
            records_in: AtomicU64::new(0),
            records_out: AtomicU64::new(0),
            watermark: AtomicI64::new(MIN_WATERMARK),
            state_entries: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            gauges: Mutex::new(Vec::new()),
        }
    }
}

/// Counters of one task (an operator chain at one subtask index).
#[derive(Debug)]
pub(crate) struct TaskMetrics {
    pub(crate) name: String,
    pub(crate) subtask: usize,
    /// The chained operators, in chain order.
    pub(crate) operators: Vec<Arc<OperatorMetrics>>,
    pub(crate) backpressured_ns: AtomicU64,
    /// Time spent waiting for input (or, for a source, for data to poll): with
    /// backpressure, what tells a busy task from an idle one.
    pub(crate) idle_ns: AtomicU64,
    pub(crate) finished: AtomicBool,
}

/// Every counter of a job, shared between its tasks and whoever observes the job.
#[derive(Debug)]
pub struct JobMetrics {
    pub(crate) operators: Vec<Arc<OperatorMetrics>>,
    pub(crate) tasks: Vec<Arc<TaskMetrics>>,
    pub(crate) started: Instant,
}

/// A point-in-time copy of an operator subtask's counters.
#[derive(Debug, Clone, PartialEq)]
pub struct OperatorMetricsSnapshot {
    /// Operator name.
    pub name: String,
    /// Name of the task (operator chain) it runs in.
    pub task: String,
    /// Subtask index.
    pub subtask: usize,
    /// Records received.
    pub records_in: u64,
    /// Records emitted (all outputs).
    pub records_out: u64,
    /// Current input watermark.
    pub watermark: Timestamp,
    /// Keyed state entries held.
    pub state_entries: u64,
    /// Records skipped (undecodable input) or dropped as late without a side output.
    pub skipped: u64,
    /// What its connector reports (a source's lag, offsets).
    pub gauges: Vec<Gauge>,
}

/// A point-in-time copy of a task's counters.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskMetricsSnapshot {
    /// Task name (its chained operators joined by ` -> `).
    pub name: String,
    /// Subtask index.
    pub subtask: usize,
    /// Records the task received from other tasks (its first operator's input; 0 for sources).
    pub records_in: u64,
    /// Records the task emitted (its last operator's output).
    pub records_out: u64,
    /// Total time spent blocked on full output channels.
    pub backpressured_ms: u64,
    /// Total time spent waiting for input (Flink's idle time); the rest is busy time.
    pub idle_ms: u64,
    /// Whether the task has finished.
    pub finished: bool,
}

/// A point-in-time view of a whole job.
#[derive(Debug, Clone)]
pub struct JobSnapshot {
    /// Time since the job started, in milliseconds.
    pub elapsed_ms: u64,
    /// Records produced by all sources.
    pub records_in: u64,
    /// Records consumed by all sinks.
    pub records_out: u64,
    /// Records skipped anywhere (decode errors under policy `skip`, late records dropped).
    pub skipped: u64,
    /// The event-time progress of the job: the smallest watermark that reached a sink.
    pub watermark: Timestamp,
    /// Per operator subtask.
    pub operators: Vec<OperatorMetricsSnapshot>,
    /// Per task.
    pub tasks: Vec<TaskMetricsSnapshot>,
}

impl JobSnapshot {
    /// Backpressure ratio (0.0–1.0) of each task between `earlier` and `self`: the fraction
    /// of wall time it spent blocked because a downstream channel was full.
    pub fn backpressure_since(&self, earlier: &JobSnapshot) -> Vec<(String, usize, f64)> {
        let dt = self.elapsed_ms.saturating_sub(earlier.elapsed_ms).max(1) as f64;
        self.tasks
            .iter()
            .zip(&earlier.tasks)
            .map(|(now, then)| {
                let blocked = now.backpressured_ms.saturating_sub(then.backpressured_ms) as f64;
                (now.name.clone(), now.subtask, (blocked / dt).min(1.0))
            })
            .collect()
    }
}

impl JobMetrics {
    /// Reads every counter.
    pub fn snapshot(&self) -> JobSnapshot {
        let operators: Vec<_> = self
            .operators
            .iter()
            .map(|m| OperatorMetricsSnapshot {
                name: m.name.clone(),
                task: self
                    .tasks
                    .iter()
                    .find(|t| t.operators.iter().any(|o| Arc::ptr_eq(o, m)))
                    .map_or_else(|| m.name.clone(), |t| t.name.clone()),
                subtask: m.subtask,
                records_in: m.records_in.load(Relaxed),
                records_out: m.records_out.load(Relaxed),
                watermark: m.watermark.load(Relaxed),
                state_entries: m.state_entries.load(Relaxed),
                skipped: m.skipped.load(Relaxed),
                gauges: m.gauges.lock().expect("never poisoned").clone(),
            })
            .collect();
        let records_in = self
            .operators
            .iter()
            .filter(|m| m.is_source)
            .map(|m| m.records_out.load(Relaxed))
            .sum();
        let records_out = self
            .operators
            .iter()
            .filter(|m| m.is_sink)
            .map(|m| m.records_in.load(Relaxed))
            .sum();
        let watermark = self
            .operators
            .iter()
            .filter(|m| m.is_sink)
            .map(|m| m.watermark.load(Relaxed))
            .min()
            .unwrap_or(MIN_WATERMARK);
        JobSnapshot {
            elapsed_ms: self.started.elapsed().as_millis() as u64,
            records_in,
            records_out,
            skipped: operators.iter().map(|o| o.skipped).sum(),
            watermark,
            operators,
            tasks: self
                .tasks
                .iter()
                .map(|t| TaskMetricsSnapshot {
                    name: t.name.clone(),
                    subtask: t.subtask,
                    records_in: t.operators.first().map_or(0, |o| {
                        if o.is_source {
                            0
                        } else {
                            o.records_in.load(Relaxed)
                        }
                    }),
                    records_out: t
                        .operators
                        .last()
                        .map_or(0, |o| o.records_out.load(Relaxed)),
                    backpressured_ms: t.backpressured_ns.load(Relaxed) / 1_000_000,
                    idle_ms: t.idle_ns.load(Relaxed) / 1_000_000,
                    finished: t.finished.load(Relaxed),
                })
                .collect(),
        }
    }
}
