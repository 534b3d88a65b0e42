//! The runtime: type-erased operators connected by bounded channels that carry batches,
//! watermarks and end-of-input markers, run as one thread per task (a chain of operators
//! at one subtask index).
//!
//! The runtime never looks inside a batch: the typed API wraps `Vec<Rec<T>>` (and the SQL
//! layer wraps Arrow `RecordBatch`) behind [`BatchData`], so one runtime serves both.

pub mod cluster;
pub(crate) mod coordinator;
pub(crate) mod exec;
pub(crate) mod graph;
pub mod memory;
pub mod metrics;
pub(crate) mod net;
pub(crate) mod persist;
pub mod secure;
pub(crate) mod task;

use crate::error::Result;
use crate::time::Timestamp;
use std::any::Any;
use std::sync::Arc;

pub use coordinator::{
    CheckpointRecord, CheckpointStats, CheckpointStatus, SubtaskCheckpointStats,
};
pub use exec::{JobClient, JobFailure, JobHandle, JobResult, JobStatus};
pub use graph::{JobTopology, TopologyEdge, TopologyTask};
pub use metrics::{Gauge, JobMetrics, OperatorMetricsSnapshot, TaskMetricsSnapshot};

/// A batch of records as the runtime sees it: countable, clonable, and downcastable by the
/// operator that knows its type.
pub trait BatchData: Send + 'static {
    /// Number of records in the batch.
    fn len(&self) -> usize;
    /// True when the batch holds no record.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// A deep copy, used when one output feeds several consumers.
    fn clone_batch(&self) -> Box<dyn BatchData>;
    /// For downcasting to the concrete batch type.
    fn into_any(self: Box<Self>) -> Box<dyn Any>;
    /// For reading the concrete batch type (encoding).
    fn as_any(&self) -> &dyn Any;
    /// For appending to a batch of known type in place.
    fn as_any_mut(&mut self) -> &mut dyn Any;
    /// Moves the contents out, leaving an empty batch of the same type.
    fn take(&mut self) -> Box<dyn BatchData>;
}

/// A record with its event timestamp ([`crate::time::NO_TIMESTAMP`] when it has none).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Rec<T> {
    /// Event time in epoch milliseconds.
    pub ts: Timestamp,
    /// The record.
    pub value: T,
}

impl<T: Clone + Send + 'static> BatchData for Vec<Rec<T>> {
    fn len(&self) -> usize {
        Vec::len(self)
    }
    fn clone_batch(&self) -> Box<dyn BatchData> {
        Box::new(self.clone())
    }
    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
    fn take(&mut self) -> Box<dyn BatchData> {
        Box::new(std::mem::take(self))
    }
}

/// A type-erased batch.
pub type Batch = Box<dyn BatchData>;

/// Anything that can flow through a stream. Implemented for every type that qualifies.
///
/// Records are serializable (derive `serde::Serialize` and `serde::Deserialize`) because they
/// may leave the process: in-flight data persisted by unaligned checkpoints, and exchanges
/// between TaskManagers. Within a process they move by ownership and are never encoded.
pub trait Data: Clone + Send + serde::Serialize + serde::de::DeserializeOwned + 'static {}
impl<T: Clone + Send + serde::Serialize + serde::de::DeserializeOwned + 'static> Data for T {}

/// Encodes and decodes the batches of one stream type: in-flight data of unaligned
/// checkpoints (and, later, batches crossing process boundaries). Chosen where the stream's
/// type is known, when the graph is built.
#[derive(Clone, Copy)]
pub(crate) struct BatchCodec {
    pub(crate) encode: fn(&dyn BatchData) -> Result<Vec<u8>>,
    pub(crate) decode: fn(&[u8]) -> Result<Batch>,
}

impl BatchCodec {
    /// The codec of `Vec<Rec<T>>` batches (postcard).
    pub(crate) fn of<T: Data>() -> Self {
        fn encode<T: Data>(b: &dyn BatchData) -> Result<Vec<u8>> {
            let recs = b
                .as_any()
                .downcast_ref::<Vec<Rec<T>>>()
                .expect("batch type checked when the graph was built");
            postcard::to_allocvec(recs).map_err(|e| crate::error::Error::State {
                state: format!("in-flight records of type {}", std::any::type_name::<T>()),
                reason: e.to_string(),
            })
        }
        fn decode<T: Data>(bytes: &[u8]) -> Result<Batch> {
            let recs: Vec<Rec<T>> = postcard::from_bytes(bytes).map_err(|e| {
                crate::error::Error::Restore(format!(
                    "cannot decode in-flight records of type {} ({e}); did the stream's type change?",
                    std::any::type_name::<T>()
                ))
            })?;
            Ok(Box::new(recs))
        }
        BatchCodec {
            encode: encode::<T>,
            decode: decode::<T>,
        }
    }
}

/// Recovers the typed records of a batch produced by the typed API.
pub(crate) fn downcast<T: 'static>(b: Batch) -> Vec<Rec<T>> {
    *b.into_any()
        .downcast::<Vec<Rec<T>>>()
        .expect("batch type checked when the graph was built")
}

/// What travels through a channel between tasks.
pub(crate) enum Event {
    Data(Batch),
    Watermark(Timestamp),
    /// The sender went idle (`true`) or active again (`false`).
    Idle(bool),
    /// Checkpoint barrier: everything before it belongs to its snapshot, and it says what
    /// the snapshot is for.
    Barrier(crate::checkpoint::Barrier),
    End,
}

/// What an operator emits while handling one call.
pub(crate) enum OutItem {
    Data(usize, Batch),
    Watermark(Timestamp),
    Idle(bool),
}

/// Collects what an operator emits; the task routes it after the call returns.
#[derive(Default)]
pub struct Output {
    pub(crate) items: Vec<OutItem>,
}

impl Output {
    /// Emits a batch on output port `port` (0 is the main output, others are side outputs).
    pub fn emit(&mut self, port: usize, batch: Batch) {
        if !batch.is_empty() {
            self.items.push(OutItem::Data(port, batch));
        }
    }

    /// Forwards a watermark to every consumer.
    pub fn watermark(&mut self, wm: Timestamp) {
        self.items.push(OutItem::Watermark(wm));
    }

    /// Declares this output idle or active again.
    pub fn idle(&mut self, idle: bool) {
        self.items.push(OutItem::Idle(idle));
    }
}

/// Facts about the subtask an operator instance runs as.
#[derive(Debug, Clone)]
pub struct SubtaskInfo {
    /// Operator name.
    pub name: String,
    /// This subtask's index.
    pub index: usize,
    /// The operator's parallelism.
    pub parallelism: usize,
    /// `pipeline.max-parallelism` (number of key groups).
    pub max_parallelism: usize,
    /// Output port of each side-output tag consumed downstream.
    pub side_ports: Arc<Vec<String>>,
    /// What sources do with records they cannot decode.
    pub decode_errors: crate::config::DecodeErrorPolicy,
    /// The operator's uid (explicit or derived), which names its state in checkpoints.
    pub uid: String,
    /// The operator's declared state schema ([`DataStream::state_schema`]),
    /// which names its states with their base names.
    pub state_schema: Option<String>,
    /// State restored from a checkpoint or savepoint, already narrowed to this subtask.
    pub restored: Option<Arc<crate::checkpoint::OperatorSubtaskState>>,
    /// The keyed state backend (`state.backend.*`).
    pub state_backend: crate::config::StateBackendConfig,
    /// RocksDB memory from the process's budget (fitted when tasks are deployed).
    pub rocksdb_memory: crate::state::RocksMemory,
    /// `execution.savepoint.ignore-unclaimed-state`: restored keyed state that the operator
    /// does not register is dropped instead of failing the restore.
    pub allow_unclaimed_state: bool,
    /// How connectors open `s3://` and `file://` locations (the job's `s3.*` keys), as
    /// checkpoints do.
    pub storage: Arc<weir_storage::StorageOptions>,
    /// `execution.checkpointing.interval` (`None`: checkpointing disabled). With
    /// [`SubtaskInfo::restart`], what a transactional sink checks its transaction timeout
    /// against: a transaction must outlive a checkpoint interval plus a restart.
    pub checkpoint_interval: Option<std::time::Duration>,
    /// The job's restart strategy.
    pub restart: crate::config::RestartStrategy,
}

impl SubtaskInfo {
    /// The output port of side-output tag `id`, if anything consumes it.
    pub fn side_port(&self, id: &str) -> Option<usize> {
        self.side_ports.iter().position(|t| t == id).map(|i| i + 1)
    }

    /// An empty keyed store (state and timers) for this subtask's key groups, on the
    /// configured backend.
    pub(crate) fn keyed_store(&self) -> crate::state::KeyedStore {
        crate::state::KeyedStore::new(crate::state::StoreOwner {
            name: &self.name,
            uid: &self.uid,
            index: self.index,
            parallelism: self.parallelism,
            max_parallelism: self.max_parallelism,
            state_schema: self.state_schema.clone(),
            backend: &self.state_backend,
            rocksdb_memory: self.rocksdb_memory.clone(),
            allow_unclaimed_state: self.allow_unclaimed_state,
        })
    }

    /// Subtask 0 of 1 of an operator named and uid'ed `name`, restoring `restored`, with
    /// every other field at its default: for unit tests of sources and sinks.
    #[cfg(test)]
    pub(crate) fn for_test(
        name: &str,
        restored: Option<crate::checkpoint::OperatorSubtaskState>,
    ) -> Self {
        SubtaskInfo {
            name: name.into(),
            index: 0,
            parallelism: 1,
            max_parallelism: 128,
            side_ports: Arc::new(Vec::new()),
            decode_errors: crate::config::DecodeErrorPolicy::Fail,
            uid: name.into(),
            state_schema: None,
            state_backend: Default::default(),
            rocksdb_memory: Default::default(),
            allow_unclaimed_state: false,
            storage: Default::default(),
            checkpoint_interval: None,
            restart: crate::config::RestartStrategy::None,
            restored: restored.map(Arc::new),
        }
    }
}

/// A stream operator as the runtime drives it. Implemented by the typed API's wrappers; user
/// code implements the typed function traits instead.
pub trait Operator: Send {
    /// Called once before any record.
    fn open(&mut self) -> Result<()> {
        Ok(())
    }
    /// Handles one batch arriving on input `input`.
    fn process(&mut self, input: usize, batch: Batch, out: &mut Output) -> Result<()>;
    /// The combined input watermark advanced to `wm`. The default forwards it.
    fn watermark(&mut self, wm: Timestamp, out: &mut Output) -> Result<()> {
        out.watermark(wm);
        Ok(())
    }
    /// All inputs became idle (`true`) or one became active again (`false`).
    fn idle(&mut self, idle: bool, out: &mut Output) -> Result<()> {
        out.idle(idle);
        Ok(())
    }
    /// The earliest processing time (epoch ms) at which [`Operator::processing_time`] must run.
    fn next_processing_time(&mut self) -> Option<Timestamp> {
        None
    }
    /// Processing time reached `now`.
    fn processing_time(&mut self, _now: Timestamp, _out: &mut Output) -> Result<()> {
        Ok(())
    }
    /// Every input ended (after the final watermark): flush everything.
    fn end_of_input(&mut self, _out: &mut Output) -> Result<()> {
        Ok(())
    }
    /// Number of keyed state entries held (state size metric).
    fn state_entries(&self) -> usize {
        0
    }
    /// Records this operator dropped or skipped on purpose (e.g. corrupt input), for metrics.
    fn skipped(&self) -> u64 {
        0
    }
    /// The operator's own gauges (its state backend's RocksDB metrics), read a few times a
    /// second on the task thread.
    fn gauges(&self) -> Vec<metrics::Gauge> {
        Vec::new()
    }
    /// The synchronous part of the snapshot `barrier` stands for: a copy of this subtask's
    /// state. Runs when the barrier has passed every input, before the barrier moves on.
    fn snapshot_state(
        &mut self,
        _barrier: crate::checkpoint::Barrier,
    ) -> Result<crate::checkpoint::OperatorSubtaskState> {
        Ok(Default::default())
    }
    /// Checkpoint `checkpoint_id` is durable everywhere: commit side effects (sinks).
    fn notify_checkpoint_complete(&mut self, _checkpoint_id: u64) -> Result<()> {
        Ok(())
    }
}

/// What a source subtask's poll says about what comes next.
pub enum SourcePoll {
    /// Records may be ready: poll again at once.
    Ready,
    /// Nothing now; poll again after the given number of milliseconds.
    Pending(u64),
    /// This subtask's input is exhausted.
    End,
}

/// A source subtask as the runtime drives it.
pub trait SourceOperator: Send {
    /// Emits at most `max` records into `out`, with the watermarks and idleness changes the
    /// source generates.
    fn poll(&mut self, max: usize, out: &mut Output) -> Result<SourcePoll>;
    /// The earliest processing time (epoch ms) at which the source must be polled again
    /// whatever the reader said (an idleness timeout).
    fn next_processing_time(&self) -> Option<Timestamp> {
        None
    }
    /// Records skipped because they could not be decoded (policy `skip`).
    fn skipped(&self) -> u64 {
        0
    }
    /// The reader's position (one element per split), stored as list state.
    fn snapshot_state(&mut self) -> Result<Vec<Vec<u8>>> {
        Ok(Vec::new())
    }
    /// Checkpoint `checkpoint_id` completed.
    fn notify_checkpoint_complete(&mut self, _checkpoint_id: u64) -> Result<()> {
        Ok(())
    }
    /// The reader's own metrics (lag, offsets), read a few times a second.
    fn gauges(&self) -> Vec<metrics::Gauge> {
        Vec::new()
    }
}
