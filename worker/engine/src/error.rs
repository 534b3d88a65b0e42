//! The engine's error type. One enum for the whole engine: every variant names what was wrong
//! and, where possible, the offending value and what to do about it.

use std::path::PathBuf;

/// Errors raised while building or running a job.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The job graph is inconsistent (caught before anything runs).
    #[error("invalid job: {0}")]
    InvalidJob(String),
    /// A configuration key or value is wrong.
    #[error("configuration: {0}")]
    Config(String),
    /// A record could not be decoded and the decode-error policy is `fail`.
    #[error("cannot decode record at {}:{line}: {reason}", file.display())]
    Decode {
        /// The file the record came from.
        file: PathBuf,
        /// 1-based line number.
        line: u64,
        /// What the decoder said.
        reason: String,
    },
    /// A file or directory could not be read or written.
    #[error("{action} {}", path.display())]
    Io {
        /// What was being attempted, e.g. "cannot open".
        action: &'static str,
        /// The path concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// State could not be encoded or decoded.
    #[error("state serialization for '{state}': {reason}")]
    State {
        /// The state's name.
        state: String,
        /// What failed.
        reason: String,
    },
    /// A record reached an event-time operation without a timestamp.
    #[error(
        "operator '{0}' received a record without an event timestamp; in a DataStream job, \
         call assign_timestamps_and_watermarks (or pass a WatermarkStrategy to from_source) \
         upstream (SQL gives every row the event time of its table's WATERMARK FOR column, \
         and handles rows without one per the job's decode-error policy)"
    )]
    MissingTimestamp(String),
    /// A task failed; carries the task name so the user knows where.
    #[error("task '{task}' (subtask {subtask}) failed")]
    Task {
        /// Task (operator chain) name.
        task: String,
        /// Subtask index.
        subtask: usize,
        /// The failure.
        #[source]
        source: Box<Error>,
    },
    /// User code panicked.
    #[error("user code panicked: {0}")]
    Panic(String),
    /// Checkpoint or savepoint storage failed.
    #[error(transparent)]
    Storage(#[from] weir_storage::StorageError),
    /// The RocksDB state backend failed.
    #[error("RocksDB state backend: {action} {}: {reason}", path.display())]
    RocksDb {
        /// What was being attempted, e.g. "cannot open".
        action: &'static str,
        /// The database or checkpoint directory.
        path: PathBuf,
        /// RocksDB's message.
        reason: String,
    },
    /// A checkpoint or savepoint cannot be restored.
    #[error("cannot restore: {0}")]
    Restore(String),
    /// The job was cancelled.
    #[error("job was cancelled")]
    Cancelled,
    /// A user function returned an error.
    #[error("{0}")]
    User(String),
    /// A connector outside the engine (Kafka, …) failed; its own typed error is the cause.
    #[error("{connector}")]
    Connector {
        /// The connector, e.g. `kafka`.
        connector: &'static str,
        /// The connector's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl Error {
    /// An error from user code, e.g. `Err(Error::user("amount must be positive"))`.
    pub fn user(msg: impl Into<String>) -> Self {
        Error::User(msg.into())
    }

    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

/// Formats an error with all its causes: `outer: cause: root cause`.
pub fn report(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Result alias used throughout the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;
