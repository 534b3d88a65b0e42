//! The Kafka source's metrics, named as Flink's `KafkaSource` names them, and the consumer
//! context that gathers what librdkafka reports asynchronously for them: each partition's
//! end offset (from the client's statistics) and the results of offset commits (made by [`crate::commit`]).
//!
//! The names are identifiers below the operator's scope (see
//! [`weir_engine::runtime::Gauge`]); `/metrics` renders them as
//! `weir_taskmanager_job_task_operator_<name with . and - as _>` with `topic` and
//! `partition` labels.

use rdkafka::ClientContext;
use rdkafka::consumer::ConsumerContext;
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Records in the source's partitions not read yet: the sum of their `records-lag`
/// (Flink's standard source metric).
pub const PENDING_RECORDS: &str = "pendingRecords";
/// Milliseconds between a record's timestamp and when it was fetched, for the last record
/// fetched (Flink's standard source metric).
pub const FETCH_EVENT_TIME_LAG: &str = "currentFetchEventTimeLag";
/// Per partition: the offset of the last record read (-1: none yet).
pub const CURRENT_OFFSET: &str = "KafkaSourceReader.topic.partition.currentOffset";
/// Per partition: the offset last committed to the consumer group (-1: none yet), which is
/// the position of the latest completed checkpoint.
pub const COMMITTED_OFFSET: &str = "KafkaSourceReader.topic.partition.committedOffset";
/// Per partition: records between the source's position and the partition's end (its last
/// stable offset under `read_committed`).
pub const RECORDS_LAG: &str = "KafkaSourceReader.topic.partition.records-lag";
/// Offset commits to the consumer group that succeeded.
pub const COMMITS_SUCCEEDED: &str = "KafkaSourceReader.commitsSucceeded";
/// Offset commits to the consumer group that failed.
pub const COMMITS_FAILED: &str = "KafkaSourceReader.commitsFailed";

/// The reader's consumer context: collects partition ends and commit results from the
/// callbacks librdkafka runs while the reader polls.
pub(crate) struct ReaderContext {
    /// Under `read_committed` a partition ends at its last stable offset, else at its high
    /// watermark.
    read_committed: bool,
    ends: Mutex<HashMap<(String, i32), i64>>,
    committed: Mutex<HashMap<(String, i32), i64>>,
    commits_succeeded: AtomicU64,
    commits_failed: AtomicU64,
    /// The brokers refused the consumer's credentials.
    pub(crate) auth: crate::AuthWatch,
}

impl ReaderContext {
    pub(crate) fn new(read_committed: bool) -> Self {
        ReaderContext {
            read_committed,
            ends: Mutex::default(),
            committed: Mutex::default(),
            commits_succeeded: AtomicU64::new(0),
            commits_failed: AtomicU64::new(0),
            auth: crate::AuthWatch::default(),
        }
    }

    /// The end offset of a partition from the latest statistics, if known.
    pub(crate) fn end(&self, topic: &str, partition: i32) -> Option<i64> {
        let ends = self.ends.lock().expect("never poisoned");
        ends.get(&(topic.to_string(), partition)).copied()
    }

    /// The offset last committed for a partition, if any.
    pub(crate) fn committed(&self, topic: &str, partition: i32) -> Option<i64> {
        let c = self.committed.lock().expect("never poisoned");
        c.get(&(topic.to_string(), partition)).copied()
    }

    /// (succeeded, failed) commits.
    pub(crate) fn commits(&self) -> (u64, u64) {
        (
            self.commits_succeeded.load(Relaxed),
            self.commits_failed.load(Relaxed),
        )
    }
}

impl ClientContext for ReaderContext {
    /// Served by the consumer's polls: records a refused login, so that the metadata
    /// request it holds up fails with it (see `AuthWatch`).
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.auth.observe(fac, log_message);
        crate::log_librdkafka(level, fac, log_message);
    }

    /// Takes only the partition ends from the statistics JSON (decoding it whole into
    /// rdkafka's `Statistics` would fail on any field a broker leaves out).
    fn stats_raw(&self, statistics: &[u8]) {
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(statistics) else {
            return;
        };
        let Some(topics) = v.get("topics").and_then(|t| t.as_object()) else {
            return;
        };
        let field = if self.read_committed {
            "ls_offset"
        } else {
            "hi_offset"
        };
        let mut ends = self.ends.lock().expect("never poisoned");
        for (topic, t) in topics {
            let Some(parts) = t.get("partitions").and_then(|p| p.as_object()) else {
                continue;
            };
            for (p, stats) in parts {
                // Partition -1 is librdkafka's internal "unassigned" partition.
                let Ok(p) = p.parse::<i32>() else { continue };
                if let Some(end) = stats.get(field).and_then(|o| o.as_i64())
                    && p >= 0
                    && end >= 0
                {
                    ends.insert((topic.clone(), p), end);
                }
            }
        }
    }

    /// librdkafka reports reaching a partition's end (`enable.partition.eof`, which the
    /// reader needs for bounded reads and idleness) as a "global error" too; it is the normal
    /// course of reading, not worth an ERROR line a second per partition.
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::PartitionEOF) {
            tracing::trace!("librdkafka: {error}: {reason}");
        } else {
            tracing::error!("librdkafka: {error}: {reason}");
        }
    }
}

/// Commits go through the committer thread, which reports their results itself.
impl ConsumerContext for ReaderContext {}

impl ReaderContext {
    /// A commit of `offsets` succeeded or failed.
    pub(crate) fn record_commit(&self, ok: bool, offsets: &[(String, i32, i64)]) {
        if !ok {
            self.commits_failed.fetch_add(1, Relaxed);
            return;
        }
        self.commits_succeeded.fetch_add(1, Relaxed);
        let mut c = self.committed.lock().expect("never poisoned");
        for (t, p, o) in offsets {
            c.insert((t.clone(), *p), *o);
        }
    }
}
