//! Job metrics in the Prometheus text exposition format (version 0.0.4), named the way
//! Flink's Prometheus reporter names them with `weir` in place of `flink`: the scope joined
//! by `_` (`weir_jobmanager_job_lastCheckpointDuration`,
//! `weir_taskmanager_job_task_operator_numRecordsIn`), scope variables as labels (`job_id`,
//! `job_name`, `task_name`, `operator_name`, `subtask_index`). [`render`] is the only
//! renderer.

use std::fmt::Write;
use weir_engine::runtime::JobClient;
use weir_engine::runtime::cluster::TaskManagerInfo;
use weir_engine::runtime::metrics::JobSnapshot;
use weir_engine::time::{MAX_WATERMARK, MIN_WATERMARK, now_ms};

/// One job to render: its counters now and, for per-second rates, an earlier snapshot of
/// the same attempt (`None`: rates are averaged since the attempt started).
#[derive(Debug)]
pub struct JobView<'a> {
    /// The job.
    pub job: &'a JobClient,
    /// Its counters now.
    pub now: &'a JobSnapshot,
    /// An earlier snapshot to measure rates against.
    pub previous: Option<&'a JobSnapshot>,
}

/// A metric family: its samples in insertion order, with help and type once.
struct Family {
    name: String,
    help: String,
    kind: &'static str,
    samples: Vec<(String, f64)>,
}

#[derive(Default)]
struct Families(Vec<Family>);

impl Families {
    fn add(
        &mut self,
        name: &str,
        kind: &'static str,
        help: &str,
        labels: &[(&str, &str)],
        value: f64,
    ) {
        let i = match self.0.iter().position(|f| f.name == name) {
            Some(i) => i,
            None => {
                self.0.push(Family {
                    name: name.to_string(),
                    help: help.to_string(),
                    kind,
                    samples: Vec::new(),
                });
                self.0.len() - 1
            }
        };
        let mut l = String::new();
        for (k, v) in labels {
            if !l.is_empty() {
                l.push(',');
            }
            let _ = write!(l, "{k}=\"{}\"", escape(v));
        }
        self.0[i].samples.push((l, value));
    }

    fn text(&self) -> String {
        let mut out = String::new();
        for f in &self.0 {
            let _ = writeln!(out, "# HELP {} {}", f.name, f.help);
            let _ = writeln!(out, "# TYPE {} {}", f.name, f.kind);
            for (labels, v) in &f.samples {
                let _ = writeln!(out, "{}{{{labels}}} {}", f.name, number(*v));
            }
        }
        out
    }
}

/// Label values escape backslash, double quote and newline.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// A connector metric's identifier as a Prometheus name: scope separators and other
/// characters Prometheus does not allow become `_`, as Flink's reporter does
/// (`KafkaSourceReader.topic.partition.currentOffset` →
/// `KafkaSourceReader_topic_partition_currentOffset`).
fn metric_name(id: &str) -> String {
    id.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

fn rate(now: u64, then: u64, ms: u64) -> f64 {
    now.saturating_sub(then) as f64 * 1000.0 / ms.max(1) as f64
}

/// Renders every job's metrics and those of the TaskManagers running them.
pub fn render(jobs: &[JobView<'_>], taskmanagers: &[TaskManagerInfo]) -> String {
    let mut f = Families::default();
    let running = jobs
        .iter()
        .filter(|j| !j.job.status().is_terminal())
        .count();
    f.add(
        "weir_jobmanager_numRunningJobs",
        "gauge",
        "jobs not yet finished, cancelled or failed",
        &[],
        running as f64,
    );
    for view in jobs {
        job_metrics(&mut f, view);
        task_metrics(&mut f, view);
    }
    taskmanager_metrics(&mut f, taskmanagers);
    f.text()
}

fn job_metrics(f: &mut Families, view: &JobView<'_>) {
    let job = view.job;
    let labels = [("job_id", job.job_id()), ("job_name", job.name())];
    let s = job.checkpoints();
    let end = job.end_time().unwrap_or_else(now_ms);
    let g = "gauge";
    let mut add = |name: &str, help: &str, v: f64| {
        f.add(&format!("weir_jobmanager_job_{name}"), g, help, &labels, v)
    };
    add(
        "uptime",
        "milliseconds the job has been running",
        end.saturating_sub(job.start_time()) as f64,
    );
    add(
        "numRestarts",
        "restarts after failures",
        job.restarts() as f64,
    );
    add(
        "totalNumberOfCheckpoints",
        "checkpoints and savepoints triggered",
        s.triggered as f64,
    );
    add(
        "numberOfCompletedCheckpoints",
        "checkpoints and savepoints completed",
        (s.completed + s.savepoints_completed) as f64,
    );
    add(
        "numberOfFailedCheckpoints",
        "checkpoints and savepoints failed",
        s.failed as f64,
    );
    add(
        "numberOfInProgressCheckpoints",
        "checkpoints and savepoints in progress",
        s.in_progress() as f64,
    );
    add(
        "lastCompletedCheckpointId",
        &format!(
            "id of the latest completed checkpoint (-1: none yet; its path is in GET {})",
            weir_contract::rest::Route::Checkpoints { job: ":id".into() }.path()
        ),
        s.last_completed_id.map_or(-1.0, |id| id as f64),
    );
    add(
        "lastCheckpointDuration",
        "milliseconds from trigger to completion of the latest checkpoint",
        s.last_duration_ms as f64,
    );
    add(
        "lastCheckpointSize",
        "bytes written by the latest checkpoint",
        s.last_size_bytes as f64,
    );
    add(
        "lastCheckpointFullSize",
        "bytes the latest checkpoint references, including shared files uploaded by earlier incremental checkpoints",
        s.last_full_size_bytes as f64,
    );
    for (uid, bytes) in &s.last_operator_sizes {
        f.add(
            "weir_jobmanager_job_operator_lastCheckpointFullSize",
            g,
            "bytes of the operator's state (all subtasks) in the latest completed checkpoint or savepoint",
            &[
                ("job_id", job.job_id()),
                ("job_name", job.name()),
                ("operator_uid", uid.as_str()),
            ],
            *bytes as f64,
        );
    }
    let mut add = |name: &str, help: &str, v: f64| {
        f.add(&format!("weir_jobmanager_job_{name}"), g, help, &labels, v)
    };
    add(
        "lastCheckpointRestoreTimestamp",
        "when the job last restored state (epoch ms; -1: never)",
        s.last_restore.as_ref().map_or(-1.0, |(_, t)| *t as f64),
    );
    add(
        "lastCheckpointRestoreTime",
        "milliseconds to load the restored state (-1: never restored)",
        s.restore_ms.map_or(-1.0, |ms| ms as f64),
    );
}

fn taskmanager_metrics(f: &mut Families, tms: &[TaskManagerInfo]) {
    for t in tms {
        let labels = [("tm_id", t.id.as_str())];
        f.add(
            "weir_taskmanager_Status_Slots_Total",
            "gauge",
            "slots the TaskManager offers",
            &labels,
            t.slots as f64,
        );
        f.add(
            "weir_taskmanager_Status_Slots_Available",
            "gauge",
            "slots not running subtasks",
            &labels,
            t.slots.saturating_sub(t.slots_in_use) as f64,
        );
        if let Some(rss) = t.rss_bytes {
            f.add(
                "weir_taskmanager_Status_Memory_Resident",
                "gauge",
                "resident memory of the TaskManager process in bytes (as last reported)",
                &labels,
                rss as f64,
            );
        }
        if let Some(m) = &t.memory {
            for (component, bytes) in [
                ("process", m.process),
                ("framework", m.framework),
                ("network", m.network),
                ("managed", m.managed),
                ("task", m.task),
            ] {
                f.add(
                    "weir_taskmanager_Status_Memory_Budget",
                    "gauge",
                    &format!(
                        "the TaskManager's memory budget ({}) and its split, in bytes",
                        weir_contract::options::MEMORY_PROCESS_SIZE.key
                    ),
                    &[("tm_id", t.id.as_str()), ("component", component)],
                    bytes as f64,
                );
            }
            f.add(
                "weir_taskmanager_Status_Shuffle_Netty_TotalMemorySegments",
                "gauge",
                &format!(
                    "network buffers ({} each) in the budget",
                    weir_contract::options::MEMORY_SEGMENT_SIZE.key
                ),
                &labels,
                m.buffers() as f64,
            );
        }
    }
}

fn task_metrics(f: &mut Families, view: &JobView<'_>) {
    let job = view.job;
    let now = view.now;
    let prev = view.previous;
    let dt = prev.map_or(now.elapsed_ms, |p| {
        now.elapsed_ms.saturating_sub(p.elapsed_ms)
    });
    let wall = now_ms();
    for (i, o) in now.operators.iter().enumerate() {
        let sub = o.subtask.to_string();
        let labels = [
            ("job_id", job.job_id()),
            ("job_name", job.name()),
            ("task_name", o.task.as_str()),
            ("operator_name", o.name.as_str()),
            ("subtask_index", sub.as_str()),
        ];
        let before = prev
            .and_then(|p| p.operators.get(i))
            .filter(|p| p.name == o.name);
        let p = "weir_taskmanager_job_task_operator_";
        let c = "counter";
        let g = "gauge";
        f.add(
            &format!("{p}numRecordsIn"),
            c,
            "records received",
            &labels,
            o.records_in as f64,
        );
        f.add(
            &format!("{p}numRecordsOut"),
            c,
            "records emitted",
            &labels,
            o.records_out as f64,
        );
        f.add(
            &format!("{p}numRecordsInPerSecond"),
            g,
            "records received per second since the previous scrape",
            &labels,
            rate(o.records_in, before.map_or(0, |b| b.records_in), dt),
        );
        f.add(
            &format!("{p}numRecordsOutPerSecond"),
            g,
            "records emitted per second since the previous scrape",
            &labels,
            rate(o.records_out, before.map_or(0, |b| b.records_out), dt),
        );
        f.add(
            &format!("{p}numRecordsSkipped"),
            c,
            "records skipped (undecodable input under decode-error-policy skip, late records dropped)",
            &labels,
            o.skipped as f64,
        );
        f.add(
            &format!("{p}stateEntries"),
            g,
            "keyed state entries and timers held by the operator subtask (exact on hashmap; on rocksdb RocksDB's estimate-num-keys)",
            &labels,
            o.state_entries as f64,
        );
        for gauge in &o.gauges {
            let mut l: Vec<(&str, &str)> = labels.to_vec();
            l.extend(gauge.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            f.add(
                &format!("{p}{}", metric_name(&gauge.name)),
                g,
                "reported by the operator's connector (docs/kafka.md) or RocksDB state backend (state.backend.rocksdb.metrics.*)",
                &l,
                gauge.value,
            );
        }
        if o.watermark != MIN_WATERMARK {
            f.add(
                &format!("{p}currentOutputWatermark"),
                g,
                "event time (epoch ms) the operator has advanced to and forwards",
                &labels,
                o.watermark as f64,
            );
            if o.watermark != MAX_WATERMARK {
                f.add(
                    &format!("{p}watermarkLag"),
                    g,
                    "milliseconds the operator's watermark is behind the wall clock",
                    &labels,
                    wall.saturating_sub(o.watermark) as f64,
                );
            }
        }
    }
    for (i, t) in now.tasks.iter().enumerate() {
        let sub = t.subtask.to_string();
        let labels = [
            ("job_id", job.job_id()),
            ("job_name", job.name()),
            ("task_name", t.name.as_str()),
            ("subtask_index", sub.as_str()),
        ];
        let before = prev
            .and_then(|p| p.tasks.get(i))
            .filter(|p| p.name == t.name);
        f.add(
            "weir_taskmanager_job_task_backPressuredTimeMsPerSecond",
            "gauge",
            "milliseconds per second the task was blocked on full output channels",
            &labels,
            rate(
                t.backpressured_ms,
                before.map_or(0, |b| b.backpressured_ms),
                dt,
            )
            .min(1000.0),
        );
        f.add(
            "weir_taskmanager_job_task_accumulatedBackPressuredTimeMs",
            "counter",
            "milliseconds the task was blocked on full output channels in total",
            &labels,
            t.backpressured_ms as f64,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_escape_quotes_backslashes_and_newlines() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn connector_metric_identifiers_become_prometheus_names() {
        assert_eq!(
            metric_name("KafkaSourceReader.topic.partition.currentOffset"),
            "KafkaSourceReader_topic_partition_currentOffset"
        );
        assert_eq!(metric_name("records-lag"), "records_lag");
    }

    #[test]
    fn numbers_print_as_integers_when_whole() {
        assert_eq!(number(3.0), "3");
        assert_eq!(number(2.5), "2.5");
        assert_eq!(number(f64::INFINITY), "+Inf");
    }
}
