//! Runtime operators that wrap typed user functions: they downcast incoming batches, call
//! the function per record, and hand typed output batches back to the runtime.

use super::functions::{
    Collector, KeyedContext, KeyedProcessFunction, ProcessContext, ProcessFunction, RuntimeContext,
    SideOutputs, TimeDomain,
};
use super::watermarks::{WHOLE_STREAM, WatermarkGenerator};
use crate::connectors::{ReaderPoll, SinkWriter, SourceReader};
use crate::error::Result;
use crate::keygroup::{Key, key_group_for_bytes, serialize_key, subtask_for_key_group};
use crate::runtime::graph::PartitionFn;
use crate::runtime::{
    Batch, Operator, Output, Rec, SourceOperator, SourcePoll, SubtaskInfo, downcast,
};
use crate::state::KeyedStore;
use crate::time::{
    MAX_WATERMARK, MIN_WATERMARK, NO_TIMESTAMP, Timestamp, WatermarkStrategy, now_ms,
};
use std::sync::Arc;

/// Extracts the key of a record.
pub(crate) type KeyFn<K, T> = Arc<dyn Fn(&T) -> K + Send + Sync>;

/// Writes the serialized key of a record into a buffer (see `KeyedStream::with_key_bytes`).
pub(crate) type KeyWriter<T> = Arc<dyn Fn(&T, &mut Vec<u8>) + Send + Sync>;

/// Writes `value`'s key bytes with `write` into `scratch` and, unless they equal `last`
/// (when `last` holds a key: `have_last`), swaps them into `last`. Returns whether the key
/// changed. Debug builds check the bytes against what the key function's key serializes to.
#[inline(always)]
pub(crate) fn note_written_key<K: Key, T>(
    write: &KeyWriter<T>,
    key_fn: &KeyFn<K, T>,
    value: &T,
    scratch: &mut Vec<u8>,
    last: &mut Vec<u8>,
    have_last: bool,
) -> bool {
    write(value, scratch);
    debug_assert_eq!(
        *scratch,
        {
            let mut b = Vec::new();
            serialize_key(&key_fn(value), &mut b);
            b
        },
        "the key writer disagrees with the key function"
    );
    if have_last && crate::bytes::eq(scratch, last) {
        return false;
    }
    std::mem::swap(scratch, last);
    true
}

/// The partitioner of a `key_by` edge: routes each record to the subtask owning its key group.
/// Given the stream's key writer (`with_key_bytes`), it hashes the bytes the writer writes
/// instead of building and serializing each record's key: this runs for every record crossing
/// a keyed exchange, which a job at parallelism 1 (the edge chained) never pays.
pub(crate) fn key_partitioner_with<K: Key, T: super::Data>(
    key_fn: KeyFn<K, T>,
    key_writer: Option<KeyWriter<T>>,
) -> PartitionFn {
    Arc::new(
        move |batch: Batch, n: usize, max_par: usize, out: &mut Vec<(usize, Batch)>| {
            let recs = downcast::<T>(batch);
            let mut parts: Vec<Vec<Rec<T>>> = (0..n)
                .map(|_| Vec::with_capacity(recs.len() / n + 1))
                .collect();
            let mut buf = Vec::new();
            for r in recs {
                match &key_writer {
                    Some(write) => {
                        write(&r.value, &mut buf);
                        debug_assert_eq!(
                            buf,
                            {
                                let mut b = Vec::new();
                                serialize_key(&key_fn(&r.value), &mut b);
                                b
                            },
                            "the key writer disagrees with the key function"
                        );
                    }
                    None => serialize_key(&key_fn(&r.value), &mut buf),
                }
                let kg = key_group_for_bytes(&buf, max_par);
                parts[subtask_for_key_group(kg, n, max_par)].push(r);
            }
            out.extend(
                parts
                    .into_iter()
                    .enumerate()
                    .filter(|(_, p)| !p.is_empty())
                    .map(|(i, p)| (i, Box::new(p) as Batch)),
            );
        },
    )
}

/// A function from one typed batch to another.
pub(crate) type BatchFn<T, U> = Arc<dyn Fn(Vec<Rec<T>>) -> Vec<Rec<U>> + Send + Sync>;

/// Applies a function batch-wise: map, filter and flat_map are all this.
pub(crate) struct BatchFnOp<T, U> {
    f: BatchFn<T, U>,
}

impl<T, U> BatchFnOp<T, U> {
    pub(crate) fn new(f: BatchFn<T, U>) -> Self {
        BatchFnOp { f }
    }
}

impl<T: super::Data, U: super::Data> Operator for BatchFnOp<T, U> {
    fn process(&mut self, _input: usize, batch: Batch, out: &mut Output) -> Result<()> {
        out.emit(0, Box::new((self.f)(downcast::<T>(batch))));
        Ok(())
    }
}

/// A fallible batch-wise function (see `DataStream::transform_batches`).
pub(crate) type TryBatchFn<T, U> = Arc<dyn Fn(Vec<Rec<T>>) -> Result<Vec<Rec<U>>> + Send + Sync>;

/// Applies a fallible function batch-wise; an error fails the task.
pub(crate) struct TryBatchFnOp<T, U> {
    pub(crate) f: TryBatchFn<T, U>,
}

impl<T: super::Data, U: super::Data> Operator for TryBatchFnOp<T, U> {
    fn process(&mut self, _input: usize, batch: Batch, out: &mut Output) -> Result<()> {
        out.emit(0, Box::new((self.f)(downcast::<T>(batch))?));
        Ok(())
    }
}

/// Passes batches through unchanged (union).
pub(crate) struct IdentityOp;

impl Operator for IdentityOp {
    fn process(&mut self, _input: usize, batch: Batch, out: &mut Output) -> Result<()> {
        out.emit(0, batch);
        Ok(())
    }
}

/// Assigns timestamps and generates watermarks (bounded out-of-orderness, idleness) in the
/// middle of a job: the stream is one split.
pub(crate) struct WatermarkOp<T> {
    clock: WatermarkGenerator<T>,
}

impl<T> WatermarkOp<T> {
    pub(crate) fn new(strategy: WatermarkStrategy<T>) -> Self {
        WatermarkOp {
            clock: WatermarkGenerator::new(strategy, now_ms()),
        }
    }
}

impl<T: super::Data> Operator for WatermarkOp<T> {
    fn process(&mut self, _input: usize, batch: Batch, out: &mut Output) -> Result<()> {
        let mut recs = downcast::<T>(batch);
        let now = now_ms();
        self.clock.on_records(WHOLE_STREAM, &mut recs, now, out)?;
        self.clock.drop_missing(&mut recs);
        out.emit(0, Box::new(recs));
        self.clock.advance(now, out);
        Ok(())
    }

    fn skipped(&self) -> u64 {
        self.clock.skipped()
    }

    /// Upstream watermarks are replaced by this strategy's; only end-of-input passes.
    fn watermark(&mut self, wm: Timestamp, out: &mut Output) -> Result<()> {
        if wm == MAX_WATERMARK && self.clock.emitted() < MAX_WATERMARK {
            self.clock.set_emitted(MAX_WATERMARK);
            out.watermark(wm);
        }
        Ok(())
    }

    fn next_processing_time(&mut self) -> Option<Timestamp> {
        self.clock.next_idle_check()
    }

    fn processing_time(&mut self, now: Timestamp, out: &mut Output) -> Result<()> {
        self.clock.advance(now, out);
        Ok(())
    }
}

/// Runs a [`ProcessFunction`].
pub(crate) struct ProcessOp<F: ProcessFunction> {
    f: F,
    info: SubtaskInfo,
    side: SideOutputs,
    watermark: Timestamp,
}

impl<F: ProcessFunction> ProcessOp<F> {
    pub(crate) fn new(f: F, info: SubtaskInfo) -> Self {
        ProcessOp {
            f,
            info,
            side: SideOutputs::default(),
            watermark: MIN_WATERMARK,
        }
    }
}

impl<F: ProcessFunction> Operator for ProcessOp<F> {
    fn process(&mut self, _input: usize, batch: Batch, out: &mut Output) -> Result<()> {
        let mut coll = Collector::new();
        for r in downcast::<F::In>(batch) {
            coll.ts = r.ts;
            let mut ctx = ProcessContext {
                timestamp: r.ts,
                side: &mut self.side,
                watermark: self.watermark,
            };
            self.f.process_element(r.value, &mut ctx, &mut coll)?;
        }
        out.emit(0, Box::new(coll.buf));
        self.side.flush(&self.info, out);
        Ok(())
    }

    fn watermark(&mut self, wm: Timestamp, out: &mut Output) -> Result<()> {
        self.watermark = wm;
        out.watermark(wm);
        Ok(())
    }
}

/// Runs a [`KeyedProcessFunction`] with its keyed state and timers.
pub(crate) struct KeyedProcessOp<F: KeyedProcessFunction> {
    f: F,
    key_fn: KeyFn<F::Key, F::In>,
    info: SubtaskInfo,
    keyed: KeyedStore,
    watermark: Timestamp,
    side: SideOutputs,
    /// The serialized key of the latest record (valid while a batch's key is set).
    key_buf: Vec<u8>,
    /// Writes a record's serialized key without building it (see `with_key_bytes`).
    key_writer: Option<KeyWriter<F::In>>,
    key_scratch: Vec<u8>,
}

impl<F: KeyedProcessFunction> KeyedProcessOp<F> {
    pub(crate) fn new(f: F, key_fn: KeyFn<F::Key, F::In>, info: SubtaskInfo) -> Self {
        KeyedProcessOp {
            f,
            key_fn,
            keyed: info.keyed_store(),
            info,
            watermark: MIN_WATERMARK,
            side: SideOutputs::default(),
            key_buf: Vec::new(),
            key_writer: None,
            key_scratch: Vec::new(),
        }
    }

    /// Finds each record's key bytes with `writer` (when there is one): the key is then
    /// built once per run of records with the same key instead of once per record.
    pub(crate) fn with_key_writer(mut self, writer: Option<KeyWriter<F::In>>) -> Self {
        self.key_writer = writer;
        self
    }

    /// Makes `value`'s key current (its bytes in `key_buf` and in the state backend) unless
    /// it is `current` already; returns the current key.
    fn note_key<'a>(&mut self, value: &F::In, current: &'a mut Option<F::Key>) -> &'a F::Key {
        if let Some(write) = &self.key_writer {
            let have_last = current.is_some();
            let (scratch, last) = (&mut self.key_scratch, &mut self.key_buf);
            if note_written_key(write, &self.key_fn, value, scratch, last, have_last) {
                self.keyed.backend.set_current_key_bytes(&self.key_buf);
                *current = Some((self.key_fn)(value));
            }
            return current.as_ref().expect("set above");
        }
        let key = (self.key_fn)(value);
        if current.as_ref() != Some(&key) {
            serialize_key(&key, &mut self.key_buf);
            self.keyed.backend.set_current_key_bytes(&self.key_buf);
        }
        current.insert(key)
    }

    fn fire(&mut self, domain: TimeDomain, until: Timestamp, out: &mut Output) -> Result<()> {
        let mut coll = Collector::new();
        self.keyed.backend.now = now_ms();
        loop {
            let queue = match domain {
                TimeDomain::EventTime => &mut self.keyed.event_timers,
                TimeDomain::ProcessingTime => &mut self.keyed.processing_timers,
            };
            let Some(t) = queue.pop_due(until) else { break };
            self.keyed.backend.set_current_key_bytes(t.key());
            let key: F::Key = postcard::from_bytes(t.key()).map_err(|e| crate::Error::State {
                state: "timer key".into(),
                reason: e.to_string(),
            })?;
            coll.ts = if domain == TimeDomain::EventTime {
                t.ts
            } else {
                NO_TIMESTAMP
            };
            let mut ctx = KeyedContext {
                backend: &mut self.keyed.backend,
                key: &key,
                timestamp: coll.ts,
                event_timers: &mut self.keyed.event_timers,
                processing_timers: &mut self.keyed.processing_timers,
                watermark: self.watermark,
                side: &mut self.side,
                time_domain: Some(domain),
            };
            self.f.on_timer(t.ts, &mut ctx, &mut coll)?;
        }
        out.emit(0, Box::new(coll.buf));
        self.side.flush(&self.info, out);
        Ok(())
    }
}

impl<F: KeyedProcessFunction> Operator for KeyedProcessOp<F> {
    fn open(&mut self) -> Result<()> {
        let mut ctx = RuntimeContext {
            backend: &mut self.keyed.backend,
            subtask: self.info.index,
            parallelism: self.info.parallelism,
        };
        self.f.open(&mut ctx)?;
        // After open(): states registered there receive their restored entries.
        self.keyed.restore(
            self.info
                .restored
                .as_deref()
                .map(crate::checkpoint::OperatorSubtaskState::keyed_restore),
        )
    }

    fn snapshot_state(
        &mut self,
        barrier: crate::checkpoint::Barrier,
    ) -> Result<crate::checkpoint::OperatorSubtaskState> {
        self.keyed
            .snapshot(barrier.id, barrier.kind.is_savepoint())
            .map(Into::into)
    }

    fn process(&mut self, _input: usize, batch: Batch, out: &mut Output) -> Result<()> {
        let mut coll = Collector::new();
        self.keyed.backend.now = now_ms();
        // Records of a key often come in runs: the key is serialized and set once per run.
        // (Only within a batch: a timer firing between batches sets another key.)
        let mut current: Option<F::Key> = None;
        for r in downcast::<F::In>(batch) {
            let key = self.note_key(&r.value, &mut current);
            coll.ts = r.ts;
            let mut ctx = KeyedContext {
                backend: &mut self.keyed.backend,
                key,
                timestamp: r.ts,
                event_timers: &mut self.keyed.event_timers,
                processing_timers: &mut self.keyed.processing_timers,
                watermark: self.watermark,
                side: &mut self.side,
                time_domain: None,
            };
            self.f.process_element(r.value, &mut ctx, &mut coll)?;
        }
        out.emit(0, Box::new(coll.buf));
        self.side.flush(&self.info, out);
        Ok(())
    }

    fn watermark(&mut self, wm: Timestamp, out: &mut Output) -> Result<()> {
        self.watermark = wm;
        self.fire(TimeDomain::EventTime, wm, out)?;
        out.watermark(wm);
        Ok(())
    }

    fn next_processing_time(&mut self) -> Option<Timestamp> {
        self.keyed.processing_timers.peek()
    }

    fn processing_time(&mut self, now: Timestamp, out: &mut Output) -> Result<()> {
        self.fire(TimeDomain::ProcessingTime, now, out)
    }

    fn end_of_input(&mut self, out: &mut Output) -> Result<()> {
        self.fire(TimeDomain::ProcessingTime, Timestamp::MAX, out)
    }

    fn state_entries(&self) -> usize {
        self.keyed.entries()
    }

    fn gauges(&self) -> Vec<crate::runtime::Gauge> {
        crate::runtime::Gauge::all(self.keyed.rocksdb_properties())
    }
}

/// Feeds batches to a [`SinkWriter`].
pub(crate) struct SinkOp<T> {
    writer: Box<dyn SinkWriter<T>>,
}

impl<T> SinkOp<T> {
    pub(crate) fn new(writer: Box<dyn SinkWriter<T>>) -> Self {
        SinkOp { writer }
    }
}

impl<T: super::Data> Operator for SinkOp<T> {
    fn process(&mut self, _input: usize, batch: Batch, _out: &mut Output) -> Result<()> {
        self.writer.write(downcast::<T>(batch))
    }
    fn watermark(&mut self, _wm: Timestamp, _out: &mut Output) -> Result<()> {
        Ok(())
    }
    fn end_of_input(&mut self, _out: &mut Output) -> Result<()> {
        self.writer.finish()
    }
    fn snapshot_state(
        &mut self,
        barrier: crate::checkpoint::Barrier,
    ) -> Result<crate::checkpoint::OperatorSubtaskState> {
        Ok(crate::checkpoint::OperatorSubtaskState {
            list: self.writer.snapshot_state(barrier.id)?,
            ..Default::default()
        })
    }
    fn notify_checkpoint_complete(&mut self, id: u64) -> Result<()> {
        self.writer.notify_checkpoint_complete(id)
    }
}

/// Adapts a typed [`SourceReader`] to the runtime and, given a watermark strategy,
/// generates the source's watermarks per split (see [`SourceReader::open_splits`]).
pub(crate) struct SourceOp<T> {
    reader: Box<dyn SourceReader<T>>,
    watermarks: Option<WatermarkGenerator<T>>,
    /// Milliseconds between the last emitted record's event time and its emission.
    emit_lag: Option<i64>,
    /// Declared idle: without a strategy, a split-aware reader with no split open.
    idle: bool,
}

impl<T> SourceOp<T> {
    pub(crate) fn new(
        reader: Box<dyn SourceReader<T>>,
        strategy: Option<WatermarkStrategy<T>>,
    ) -> Self {
        SourceOp {
            reader,
            watermarks: strategy.map(|s| WatermarkGenerator::new(s, now_ms())),
            emit_lag: None,
            idle: false,
        }
    }

    fn emit(&mut self, records: Vec<Rec<T>>, now: Timestamp, out: &mut Output)
    where
        T: super::Data,
    {
        // The last record only: a source's records all carry timestamps or none do (those
        // left without one were dropped), and a search would walk every untimed batch.
        if let Some(last) = records.last()
            && last.ts != NO_TIMESTAMP
        {
            self.emit_lag = Some(now.saturating_sub(last.ts));
        }
        out.emit(0, Box::new(records));
    }
}

impl<T: super::Data> SourceOperator for SourceOp<T> {
    fn poll(&mut self, max: usize, out: &mut Output) -> Result<SourcePoll> {
        let polled = self.reader.poll(max)?;
        let now = now_ms();
        if self.watermarks.is_none() {
            // A split-aware reader with nothing to read (a Kafka subtask without a
            // partition) is idle, as Flink's readers without splits are: otherwise the
            // watermarks assigned downstream (SQL's WATERMARK FOR) would wait on it for good.
            if let Some(open) = self.reader.open_splits() {
                let records = matches!(&polled, ReaderPoll::Records(r) | ReaderPoll::SplitRecords { records: r, .. } if !r.is_empty());
                let idle = open.is_empty() && !records;
                if idle != self.idle {
                    self.idle = idle;
                    out.idle(idle);
                }
            }
            return Ok(match polled {
                ReaderPoll::Records(r) | ReaderPoll::SplitRecords { records: r, .. } => {
                    self.emit(r, now, out);
                    SourcePoll::Ready
                }
                ReaderPoll::Pending(ms) => SourcePoll::Pending(ms),
                ReaderPoll::End => SourcePoll::End,
            });
        }
        let split_aware = self.reader.open_splits();
        let clock = self.watermarks.as_mut().expect("checked above");
        let next = match polled {
            ReaderPoll::Records(mut r) => {
                clock.on_records(WHOLE_STREAM, &mut r, now, out)?;
                clock.drop_missing(&mut r);
                self.emit(r, now, out);
                SourcePoll::Ready
            }
            ReaderPoll::SplitRecords { mut records, runs } => {
                if split_aware.is_some() {
                    let mut at = 0;
                    for (split, n) in runs {
                        let end = (at + n).min(records.len());
                        clock.on_records(split, &mut records[at..end], now, out)?;
                        at = end;
                    }
                } else {
                    clock.on_records(WHOLE_STREAM, &mut records, now, out)?;
                }
                clock.drop_missing(&mut records);
                self.emit(records, now, out);
                SourcePoll::Ready
            }
            ReaderPoll::Pending(ms) => SourcePoll::Pending(ms),
            // The runtime sends the final watermark.
            ReaderPoll::End => return Ok(SourcePoll::End),
        };
        let clock = self.watermarks.as_mut().expect("checked above");
        if let Some(open) = split_aware {
            clock.set_splits(&open, now);
        }
        clock.advance(now, out);
        Ok(next)
    }
    fn next_processing_time(&self) -> Option<Timestamp> {
        self.watermarks.as_ref()?.next_idle_check()
    }
    fn skipped(&self) -> u64 {
        self.reader.skipped() + self.watermarks.as_ref().map_or(0, |w| w.skipped())
    }
    fn gauges(&self) -> Vec<crate::runtime::Gauge> {
        let mut g = self.reader.gauges();
        if let Some(lag) = self.emit_lag {
            g.push(crate::runtime::Gauge::new(
                crate::runtime::metrics::CURRENT_EMIT_EVENT_TIME_LAG,
                lag as f64,
            ));
        }
        g
    }
    fn snapshot_state(&mut self) -> Result<Vec<Vec<u8>>> {
        self.reader.snapshot_state()
    }
    fn notify_checkpoint_complete(&mut self, id: u64) -> Result<()> {
        self.reader.notify_checkpoint_complete(id)
    }
}
