//! The traits user code implements (`KeyedProcessFunction`, `ProcessFunction`) and the
//! contexts they receive: current key and timestamp, keyed state, timers, side outputs.

use crate::error::Result;
use crate::keygroup::Key;
pub use crate::runtime::Data;
use crate::runtime::{BatchData, Rec};
use crate::state::{
    KeyedStateAccess, KeyedStateBackend, ListState, MapState, ReducingState, StateDescriptor,
    StateValue, ValueState,
};
use crate::time::{NO_TIMESTAMP, Timestamp, now_ms};
use crate::timers::TimerQueue;
use std::marker::PhantomData;
use std::sync::Arc;

/// Identifies a side output of type `T`.
///
/// ```
/// use weir_engine::api::OutputTag;
/// let late: OutputTag<String> = OutputTag::new("late-events");
/// # let _ = late;
/// ```
pub struct OutputTag<T> {
    pub(crate) id: String,
    _p: PhantomData<fn() -> T>,
}

impl<T> Clone for OutputTag<T> {
    fn clone(&self) -> Self {
        OutputTag {
            id: self.id.clone(),
            _p: PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for OutputTag<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OutputTag({})", self.id)
    }
}

impl<T> OutputTag<T> {
    /// A tag; the id must be unique within the operator that emits to it.
    pub fn new(id: impl Into<String>) -> Self {
        OutputTag {
            id: id.into(),
            _p: PhantomData,
        }
    }
}

/// Buffers side-output records per tag until the operator flushes them.
#[derive(Default)]
pub(crate) struct SideOutputs {
    bufs: Vec<(String, Box<dyn BatchData>)>,
}

impl SideOutputs {
    pub(crate) fn push<T: Data>(&mut self, tag: &OutputTag<T>, rec: Rec<T>) {
        let pos = match self.bufs.iter().position(|(id, _)| *id == tag.id) {
            Some(p) => p,
            None => {
                self.bufs
                    .push((tag.id.clone(), Box::new(Vec::<Rec<T>>::new())));
                self.bufs.len() - 1
            }
        };
        self.bufs[pos]
            .1
            .as_any_mut()
            .downcast_mut::<Vec<Rec<T>>>()
            .expect("a side-output tag id is used with one type")
            .push(rec);
    }

    /// Emits buffered records on their ports; tags nobody consumes are discarded, as in Flink.
    pub(crate) fn flush(
        &mut self,
        info: &crate::runtime::SubtaskInfo,
        out: &mut crate::runtime::Output,
    ) {
        for (id, buf) in &mut self.bufs {
            if buf.is_empty() {
                continue;
            }
            let batch = buf.take();
            if let Some(port) = info.side_port(id) {
                out.emit(port, batch);
            }
        }
    }
}

/// Where a function's output records go. Records inherit the timestamp of the input record
/// (or of the timer) being processed.
pub struct Collector<O> {
    pub(crate) buf: Vec<Rec<O>>,
    pub(crate) ts: Timestamp,
}

impl<O> Collector<O> {
    pub(crate) fn new() -> Self {
        Collector {
            buf: Vec::new(),
            ts: NO_TIMESTAMP,
        }
    }

    /// Emits a record.
    pub fn collect(&mut self, value: O) {
        self.buf.push(Rec { ts: self.ts, value });
    }

    /// Emits a record with an explicit event timestamp.
    pub fn collect_with_timestamp(&mut self, value: O, ts: Timestamp) {
        self.buf.push(Rec { ts, value });
    }
}

/// Which clock fired a timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeDomain {
    /// The watermark passed the timer.
    EventTime,
    /// The wall clock passed the timer.
    ProcessingTime,
}

/// Registers state in a keyed function's `open`.
pub struct RuntimeContext<'a> {
    pub(crate) backend: &'a mut KeyedStateBackend,
    pub(crate) subtask: usize,
    pub(crate) parallelism: usize,
}

impl RuntimeContext<'_> {
    /// Index of this subtask.
    pub fn subtask_index(&self) -> usize {
        self.subtask
    }
    /// Parallelism of this operator.
    pub fn parallelism(&self) -> usize {
        self.parallelism
    }
    /// A single value per key.
    pub fn value_state<T: StateValue>(&mut self, desc: StateDescriptor) -> ValueState<T> {
        ValueState::register(self.backend, &desc)
    }
    /// A list per key.
    pub fn list_state<T: StateValue>(&mut self, desc: StateDescriptor) -> ListState<T> {
        ListState::register(self.backend, &desc)
    }
    /// A map per key.
    pub fn map_state<K: Key, V: StateValue>(&mut self, desc: StateDescriptor) -> MapState<K, V> {
        MapState::register(self.backend, &desc)
    }
    /// A value per key folded with `reduce`.
    pub fn reducing_state<T: StateValue>(
        &mut self,
        desc: StateDescriptor,
        reduce: impl Fn(&T, &T) -> T + Send + Sync + 'static,
    ) -> ReducingState<T> {
        ReducingState::register(self.backend, &desc, Arc::new(reduce))
    }
}

/// Timers of the current key.
pub struct TimerService<'a> {
    pub(crate) event: &'a mut TimerQueue,
    pub(crate) processing: &'a mut TimerQueue,
    pub(crate) key: &'a [u8],
    pub(crate) watermark: Timestamp,
}

impl TimerService<'_> {
    /// Fires `on_timer` once the watermark reaches `ts`.
    pub fn register_event_time_timer(&mut self, ts: Timestamp) {
        self.event.register(ts, self.key, &[]);
    }
    /// Fires `on_timer` once the wall clock reaches `ts` (epoch ms).
    pub fn register_processing_time_timer(&mut self, ts: Timestamp) {
        self.processing.register(ts, self.key, &[]);
    }
    /// Cancels an event-time timer of the current key.
    pub fn delete_event_time_timer(&mut self, ts: Timestamp) {
        self.event.delete(ts, self.key, &[]);
    }
    /// Cancels a processing-time timer of the current key.
    pub fn delete_processing_time_timer(&mut self, ts: Timestamp) {
        self.processing.delete(ts, self.key, &[]);
    }
    /// The current watermark.
    pub fn current_watermark(&self) -> Timestamp {
        self.watermark
    }
    /// The current processing time (epoch ms).
    pub fn current_processing_time(&self) -> Timestamp {
        now_ms()
    }
}

/// What a keyed function sees while handling a record or a timer.
pub struct KeyedContext<'a, K> {
    pub(crate) backend: &'a mut KeyedStateBackend,
    pub(crate) key: &'a K,
    pub(crate) timestamp: Timestamp,
    pub(crate) event_timers: &'a mut TimerQueue,
    pub(crate) processing_timers: &'a mut TimerQueue,
    pub(crate) watermark: Timestamp,
    pub(crate) side: &'a mut SideOutputs,
    pub(crate) time_domain: Option<TimeDomain>,
}

impl<K> KeyedStateAccess for KeyedContext<'_, K> {
    fn backend(&mut self) -> &mut KeyedStateBackend {
        self.backend
    }
}

impl<K> KeyedContext<'_, K> {
    /// The key being processed.
    pub fn current_key(&self) -> &K {
        self.key
    }
    /// The record's (or timer's) event timestamp, if it has one.
    pub fn timestamp(&self) -> Option<Timestamp> {
        (self.timestamp != NO_TIMESTAMP).then_some(self.timestamp)
    }
    /// Which clock fired the timer being handled (`None` while handling a record).
    pub fn time_domain(&self) -> Option<TimeDomain> {
        self.time_domain
    }
    /// The current watermark.
    pub fn current_watermark(&self) -> Timestamp {
        self.watermark
    }
    /// Timers of the current key.
    pub fn timer_service(&mut self) -> TimerService<'_> {
        TimerService {
            event: self.event_timers,
            processing: self.processing_timers,
            key: &self.backend.current.bytes,
            watermark: self.watermark,
        }
    }
    /// Emits `value` to side output `tag`, with the current timestamp.
    pub fn output<T: Data>(&mut self, tag: &OutputTag<T>, value: T) {
        self.side.push(
            tag,
            Rec {
                ts: self.timestamp,
                value,
            },
        );
    }
}

/// Processes a keyed stream record by record, with keyed state and timers — Flink's
/// `KeyedProcessFunction`. One instance per subtask is cloned from the one you pass.
///
/// ```
/// use weir_engine::api::{Collector, KeyedContext, KeyedProcessFunction, RuntimeContext};
/// use weir_engine::state::{StateDescriptor, ValueState};
/// use weir_engine::Result;
///
/// #[derive(Clone, Default)]
/// struct CountPerUser { count: ValueState<u64> }
///
/// impl KeyedProcessFunction for CountPerUser {
///     type Key = String;
///     type In = (String, i64);
///     type Out = (String, u64);
///     fn open(&mut self, ctx: &mut RuntimeContext<'_>) -> Result<()> {
///         self.count = ctx.value_state(StateDescriptor::new("count"));
///         Ok(())
///     }
///     fn process_element(&mut self, e: Self::In, ctx: &mut KeyedContext<'_, String>, out: &mut Collector<Self::Out>) -> Result<()> {
///         let c = self.count.value(ctx).unwrap_or(0) + 1;
///         self.count.update(ctx, c);
///         ctx.timer_service().register_event_time_timer(e.1 + 60_000);
///         Ok(())
///     }
///     fn on_timer(&mut self, _ts: i64, ctx: &mut KeyedContext<'_, String>, out: &mut Collector<Self::Out>) -> Result<()> {
///         let c = self.count.value(ctx).unwrap_or(0);
///         out.collect((ctx.current_key().clone(), c));
///         self.count.clear(ctx);
///         Ok(())
///     }
/// }
/// ```
pub trait KeyedProcessFunction: Clone + Send + Sync + 'static {
    /// The key type of the keyed stream.
    type Key: Key;
    /// Input records.
    type In: Data;
    /// Output records.
    type Out: Data;
    /// Registers state; runs once per subtask before any record.
    fn open(&mut self, _ctx: &mut RuntimeContext<'_>) -> Result<()> {
        Ok(())
    }
    /// Handles one record of the current key.
    fn process_element(
        &mut self,
        value: Self::In,
        ctx: &mut KeyedContext<'_, Self::Key>,
        out: &mut Collector<Self::Out>,
    ) -> Result<()>;
    /// Handles a timer of the current key.
    fn on_timer(
        &mut self,
        _timestamp: Timestamp,
        _ctx: &mut KeyedContext<'_, Self::Key>,
        _out: &mut Collector<Self::Out>,
    ) -> Result<()> {
        Ok(())
    }
}

/// What a non-keyed process function sees.
pub struct ProcessContext<'a> {
    pub(crate) timestamp: Timestamp,
    pub(crate) side: &'a mut SideOutputs,
    pub(crate) watermark: Timestamp,
}

impl ProcessContext<'_> {
    /// The record's event timestamp, if it has one.
    pub fn timestamp(&self) -> Option<Timestamp> {
        (self.timestamp != NO_TIMESTAMP).then_some(self.timestamp)
    }
    /// The current watermark.
    pub fn current_watermark(&self) -> Timestamp {
        self.watermark
    }
    /// Emits `value` to side output `tag`.
    pub fn output<T: Data>(&mut self, tag: &OutputTag<T>, value: T) {
        self.side.push(
            tag,
            Rec {
                ts: self.timestamp,
                value,
            },
        );
    }
}

/// Processes records one by one with access to timestamps and side outputs — Flink's
/// `ProcessFunction` (no keyed state or timers: key the stream for those).
pub trait ProcessFunction: Clone + Send + Sync + 'static {
    /// Input records.
    type In: Data;
    /// Output records.
    type Out: Data;
    /// Handles one record.
    fn process_element(
        &mut self,
        value: Self::In,
        ctx: &mut ProcessContext<'_>,
        out: &mut Collector<Self::Out>,
    ) -> Result<()>;
}
