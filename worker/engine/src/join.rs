//! Interval joins of two keyed streams (Flink's `KeyedStream#intervalJoin`), with outer
//! variants: a row of either input joins the rows of the other input that have the same key
//! and an event time within bounds of its own, and waits until the watermark makes a new
//! partner impossible. An outer side's rows that joined nothing are handed to the join
//! function when they expire.
//!
//! One semantics, two layouts, chosen by `state.backend.type`:
//! - `hashmap`: each input's rows sit in time buckets (each covers a fixed span of event
//!   time) in arrival order. A row is appended to its bucket; a bucket goes as a whole once
//!   the watermark has passed every row in it; a probe reads the buckets its bounds overlap,
//!   through a key index that a bucket builds once it has been probed a few times. A row
//!   costs an append instead of a keyed state entry and a timer, and expiry is sequential.
//!   Buckets are shared copy-on-write with a checkpoint, which serializes them off the task
//!   thread.
//! - `rocksdb`: each key's rows are one keyed state value in RocksDB, expired by event-time
//!   timers, as Flink does, so the join's state is bounded by the disk, not the heap.
//!
//! Both snapshot the same canonical state, a value `rows` per key holding both inputs' rows
//! in time order and one event-time timer per key and expiry time, so a savepoint of either
//! restores into the other, at any parallelism.

use crate::api::{
    Collector, Data, DataStream, KeyedContext, KeyedProcessFunction, KeyedStream, RuntimeContext,
    key_partitioner,
};
use crate::checkpoint::{DeferredKeyed, OperatorSubtaskState};
use crate::config::StateBackendKind;
use crate::error::{Error, Result};
use crate::keygroup::{Key, KeyGroupRange, key_group_for_bytes, serialize_key};
use crate::runtime::graph::Partitioning;
use crate::runtime::{Batch, Operator, Output, SubtaskInfo, downcast};
use crate::state::{
    KeyGroupSnapshot, SnapshotEntry, StateDescriptor, StateSnapshot, StateValue, ValueState,
};
use crate::time::{MIN_WATERMARK, NO_TIMESTAMP, Timestamp};
use hashbrown::{DefaultHashBuilder, HashTable};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::hash::BuildHasher;
use std::sync::Arc;

/// The name of the join's keyed state in snapshots.
const ROWS_STATE: &str = "rows";

/// A record of either input of an interval join, as the join operator receives them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum JoinSide<L, R> {
    /// A record of the left input (the stream `interval_join` was called on).
    Left(L),
    /// A record of the right input.
    Right(R),
}

/// What an interval join does with its rows (Flink's `ProcessJoinFunction`, plus the
/// unmatched rows of outer joins).
pub trait IntervalJoinFunction: Clone + Send + Sync + 'static {
    /// The left input's rows.
    type Left: StateValue;
    /// The right input's rows.
    type Right: StateValue;
    /// The join's results.
    type Out: Data;

    /// Called for each pair of rows with equal keys whose times lie within the bounds, once,
    /// when the later of the two arrives; other pairs of the same new row follow in their
    /// rows' time order. Emits the pair's results and returns whether the pair joined: `false`
    /// (a further condition on the pair did not hold) leaves an outer side's row unmatched.
    /// Results carry the later of the two rows' timestamps.
    fn join(
        &self,
        left: &Self::Left,
        right: &Self::Right,
        out: &mut Collector<Self::Out>,
    ) -> Result<bool>;

    /// A left row of a left or full outer join that joined nothing, when the watermark passes
    /// its last possible partner (at once for a row too late to wait, or without a time).
    fn left_unmatched(&self, _left: Self::Left, _out: &mut Collector<Self::Out>) -> Result<()> {
        Ok(())
    }

    /// A right row of a right or full outer join that joined nothing (see `left_unmatched`).
    fn right_unmatched(&self, _right: Self::Right, _out: &mut Collector<Self::Out>) -> Result<()> {
        Ok(())
    }
}

/// An interval join being configured: see [`KeyedStream::interval_join`].
pub struct IntervalJoinBuilder<K, L, R> {
    left: KeyedStream<K, L>,
    right: KeyedStream<K, R>,
    bounds: Bounds,
}

impl<K: Key, L: StateValue> KeyedStream<K, L> {
    /// Joins this stream (the left input) with `other` on equal keys: a left row at time `l`
    /// and a right row at time `r` join when `lower <= r - l <= upper` (set with
    /// [`IntervalJoinBuilder::between`]). Rows wait for partners until the watermark passes
    /// the last time a partner could have. Times are the records' event timestamps; a record
    /// without one joins nothing.
    ///
    /// ```
    /// use weir_engine::api::{Collector, StreamExecutionEnvironment};
    /// use weir_engine::connectors::CollectSink;
    /// use weir_engine::join::IntervalJoinFunction;
    /// use weir_engine::time::WatermarkStrategy;
    ///
    /// // Orders and the payments made for them at most 10 ms later.
    /// #[derive(Clone)]
    /// struct Paid;
    /// impl IntervalJoinFunction for Paid {
    ///     type Left = (u32, i64); // (order, time)
    ///     type Right = (u32, i64); // (order, time of payment)
    ///     type Out = (u32, i64);
    ///     fn join(&self, o: &(u32, i64), p: &(u32, i64), out: &mut Collector<(u32, i64)>)
    ///         -> weir_engine::Result<bool> {
    ///         out.collect((o.0, p.1 - o.1));
    ///         Ok(true)
    ///     }
    /// }
    /// let env = StreamExecutionEnvironment::new();
    /// let stamped = |v: Vec<(u32, i64)>| {
    ///     env.from_collection(v).assign_timestamps_and_watermarks(
    ///         WatermarkStrategy::for_monotonous_timestamps()
    ///             .with_timestamp_assigner(|e: &(u32, i64)| e.1),
    ///     )
    /// };
    /// let orders = stamped(vec![(1, 100), (2, 105)]).key_by(|o| o.0);
    /// let payments = stamped(vec![(1, 104), (2, 130)]).key_by(|p| p.0);
    /// let (sink, out) = CollectSink::new();
    /// orders.interval_join(&payments).between(0, 10).process(Paid).sink_to(sink);
    /// env.execute("doc").unwrap();
    /// assert_eq!(out.values(), vec![(1, 4)]); // order 2 was paid 25 ms later
    /// ```
    pub fn interval_join<R: StateValue>(
        &self,
        other: &KeyedStream<K, R>,
    ) -> IntervalJoinBuilder<K, L, R> {
        IntervalJoinBuilder {
            left: self.clone(),
            right: other.clone(),
            bounds: Bounds {
                lower: 0,
                upper: 0,
                keep_left: false,
                keep_right: false,
            },
        }
    }
}

impl<K: Key, L: StateValue, R: StateValue> IntervalJoinBuilder<K, L, R> {
    /// A left row at `l` and a right row at `r` join when `lower <= r - l <= upper`
    /// (milliseconds; either may be negative). Default: both 0.
    pub fn between(mut self, lower: i64, upper: i64) -> Self {
        self.bounds.lower = lower;
        self.bounds.upper = upper;
        self
    }

    /// Keeps left rows that join nothing (a left outer join).
    pub fn left_outer(mut self) -> Self {
        self.bounds.keep_left = true;
        self
    }

    /// Keeps right rows that join nothing (a right outer join).
    pub fn right_outer(mut self) -> Self {
        self.bounds.keep_right = true;
        self
    }

    /// Runs the join with `f`.
    pub fn process<F: IntervalJoinFunction<Left = L, Right = R>>(self, f: F) -> DataStream<F::Out> {
        let bounds = self.bounds;
        let (lk, rk) = (self.left.key_fn.clone(), self.right.key_fn.clone());
        let keys = Keys {
            left: lk,
            right: rk,
        };
        let tagged = self
            .left
            .stream
            .map(JoinSide::<L, R>::Left)
            .union(&[self.right.stream.map(JoinSide::<L, R>::Right)]);
        let ks = keys.clone();
        let key_fn: crate::api::KeyExtractor<K, JoinSide<L, R>> =
            Arc::new(move |v: &JoinSide<L, R>| match v {
                JoinSide::Left(l) => (ks.left)(l),
                JoinSide::Right(r) => (ks.right)(r),
            });
        tagged.add_operator(
            "IntervalJoin",
            Partitioning::Hash(key_partitioner(key_fn.clone())),
            move |info| {
                if bounds.lower > bounds.upper {
                    return Err(Error::InvalidJob(format!(
                        "interval join bounds can never hold: lower {} ms > upper {} ms",
                        bounds.lower, bounds.upper
                    )));
                }
                Ok(match info.state_backend.kind {
                    StateBackendKind::RocksDb => Box::new(crate::api::KeyedProcessOp::new(
                        KeyedIntervalJoin {
                            f: f.clone(),
                            bounds,
                            rows: ValueState::default(),
                            _k: std::marker::PhantomData,
                        },
                        key_fn.clone(),
                        info.clone(),
                    )) as Box<dyn Operator>,
                    StateBackendKind::HashMap => Box::new(BufferedIntervalJoin::new(
                        f.clone(),
                        bounds,
                        keys.clone(),
                        info.clone(),
                    )),
                })
            },
        )
    }
}

/// The key extractors of both inputs.
struct Keys<K, L, R> {
    left: crate::api::KeyExtractor<K, L>,
    right: crate::api::KeyExtractor<K, R>,
}

impl<K, L, R> Clone for Keys<K, L, R> {
    fn clone(&self) -> Self {
        Keys {
            left: self.left.clone(),
            right: self.right.clone(),
        }
    }
}

/// The join's time bounds and outer sides, shared by both layouts.
#[derive(Debug, Clone, Copy)]
struct Bounds {
    /// `lower <= right - left <= upper`, in milliseconds.
    lower: i64,
    upper: i64,
    keep_left: bool,
    keep_right: bool,
}

impl Bounds {
    /// When a row at `ts` of the left (`left`) or right input can no longer join: the
    /// watermark reaching this time.
    fn expiry(&self, left: bool, ts: Timestamp) -> Timestamp {
        if left {
            ts.saturating_add(self.upper)
        } else {
            ts.saturating_sub(self.lower)
        }
    }

    /// The other input's times a row at `ts` of input `left` joins, inclusive.
    fn range(&self, left: bool, ts: Timestamp) -> (Timestamp, Timestamp) {
        if left {
            (ts.saturating_add(self.lower), ts.saturating_add(self.upper))
        } else {
            (ts.saturating_sub(self.upper), ts.saturating_sub(self.lower))
        }
    }

    /// The latest time of input `left` whose rows have expired at watermark `wm`.
    fn dead_up_to(&self, left: bool, wm: Timestamp) -> Timestamp {
        if wm == MIN_WATERMARK {
            return Timestamp::MIN;
        }
        if left {
            wm.saturating_sub(self.upper)
        } else {
            wm.saturating_add(self.lower)
        }
    }
}

/// A buffered row, as snapshots store it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Waiting<T> {
    ts: Timestamp,
    value: T,
    matched: bool,
}

/// The rows of one key waiting for partners, per input, each in time order (rows of equal
/// time in arrival order): the canonical state of both layouts.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Buffers<L, R> {
    left: Vec<Waiting<L>>,
    right: Vec<Waiting<R>>,
}

impl<L, R> Default for Buffers<L, R> {
    fn default() -> Self {
        Buffers {
            left: Vec::new(),
            right: Vec::new(),
        }
    }
}

/// Adds `row` to a time-ordered buffer, after the rows of equal time.
fn insert_sorted<T>(buf: &mut Vec<Waiting<T>>, row: Waiting<T>) {
    if buf.last().is_none_or(|l| l.ts <= row.ts) {
        buf.push(row);
    } else {
        let at = buf.partition_point(|w| w.ts <= row.ts);
        buf.insert(at, row);
    }
}

/// Joins a new row with the time-ordered rows `others` of the other input that lie within
/// `[lo, hi]`, oldest first; `join` says whether a pair joined, and those rows are marked
/// matched when `mark`. Returns whether any pair joined.
fn probe_sorted<O>(
    others: &mut [Waiting<O>],
    (lo, hi): (Timestamp, Timestamp),
    mark: bool,
    mut join: impl FnMut(&O, Timestamp) -> Result<bool>,
) -> Result<bool> {
    let from = others.partition_point(|w| w.ts < lo);
    let mut any = false;
    for w in &mut others[from..] {
        if w.ts > hi {
            break;
        }
        if join(&w.value, w.ts)? {
            any = true;
            w.matched |= mark;
        }
    }
    Ok(any)
}

// ---- rocksdb: a key's rows in one keyed state value, expired by timers ------------------

/// The keyed-state layout: Flink's interval join operator.
struct KeyedIntervalJoin<K, F: IntervalJoinFunction> {
    f: F,
    bounds: Bounds,
    rows: ValueState<Buffers<F::Left, F::Right>>,
    _k: std::marker::PhantomData<fn() -> K>,
}

impl<K, F: IntervalJoinFunction> Clone for KeyedIntervalJoin<K, F> {
    fn clone(&self) -> Self {
        KeyedIntervalJoin {
            f: self.f.clone(),
            bounds: self.bounds,
            rows: self.rows.clone(),
            _k: std::marker::PhantomData,
        }
    }
}

impl<K, F: IntervalJoinFunction> KeyedIntervalJoin<K, F> {
    /// Joins `input` (at `ts`) with the other input's rows of its key in `bufs`.
    fn probe(
        &self,
        bufs: &mut Buffers<F::Left, F::Right>,
        input: &JoinSide<F::Left, F::Right>,
        ts: Timestamp,
        out: &mut Collector<F::Out>,
    ) -> Result<bool> {
        let b = self.bounds;
        match input {
            JoinSide::Left(l) => {
                probe_sorted(&mut bufs.right, b.range(true, ts), b.keep_right, |r, rt| {
                    out.ts = ts.max(rt);
                    self.f.join(l, r, out)
                })
            }
            JoinSide::Right(r) => {
                probe_sorted(&mut bufs.left, b.range(false, ts), b.keep_left, |l, lt| {
                    out.ts = ts.max(lt);
                    self.f.join(l, r, out)
                })
            }
        }
    }
}

impl<K: Key, F: IntervalJoinFunction> KeyedProcessFunction for KeyedIntervalJoin<K, F> {
    type Key = K;
    type In = JoinSide<F::Left, F::Right>;
    type Out = F::Out;

    fn open(&mut self, ctx: &mut RuntimeContext<'_>) -> Result<()> {
        self.rows = ctx.value_state(StateDescriptor::new(ROWS_STATE));
        Ok(())
    }

    fn process_element(
        &mut self,
        input: Self::In,
        ctx: &mut KeyedContext<'_, K>,
        out: &mut Collector<F::Out>,
    ) -> Result<()> {
        let b = self.bounds;
        let Some(ts) = ctx.timestamp().filter(|&t| t != NO_TIMESTAMP) else {
            return unmatched(&self.f, input, NO_TIMESTAMP, b, out);
        };
        let left = matches!(input, JoinSide::Left(_));
        let expiry = b.expiry(left, ts);
        if expiry > ctx.current_watermark() {
            self.rows
                .update_with(ctx, Buffers::default, |bufs| -> Result<()> {
                    let matched = self.probe(bufs, &input, ts, out)?;
                    match input {
                        JoinSide::Left(value) => {
                            insert_sorted(&mut bufs.left, Waiting { ts, value, matched })
                        }
                        JoinSide::Right(value) => {
                            insert_sorted(&mut bufs.right, Waiting { ts, value, matched })
                        }
                    }
                    Ok(())
                })?;
            // Rows of a key expiring together share one timer.
            ctx.timer_service().register_event_time_timer(expiry);
        } else {
            // Too late to wait for partners: joins what waits, then is dropped (or handed on
            // unmatched).
            let matched = self
                .rows
                .mutate(ctx, |bufs| self.probe(bufs, &input, ts, out))
                .transpose()?
                .unwrap_or(false);
            if !matched {
                unmatched(&self.f, input, ts, b, out)?;
            }
        }
        Ok(())
    }

    fn on_timer(
        &mut self,
        t: Timestamp,
        ctx: &mut KeyedContext<'_, K>,
        out: &mut Collector<F::Out>,
    ) -> Result<()> {
        let b = self.bounds;
        let mut expired = (Vec::new(), Vec::new());
        self.rows.mutate_or_clear(ctx, |bufs| {
            // Expiry grows with time, so the expired rows are a prefix.
            let n = bufs.left.partition_point(|w| b.expiry(true, w.ts) <= t);
            expired.0.extend(bufs.left.drain(..n));
            let n = bufs.right.partition_point(|w| b.expiry(false, w.ts) <= t);
            expired.1.extend(bufs.right.drain(..n));
            ((), !(bufs.left.is_empty() && bufs.right.is_empty()))
        });
        for w in expired.0 {
            if b.keep_left && !w.matched {
                out.ts = w.ts;
                self.f.left_unmatched(w.value, out)?;
            }
        }
        for w in expired.1 {
            if b.keep_right && !w.matched {
                out.ts = w.ts;
                self.f.right_unmatched(w.value, out)?;
            }
        }
        Ok(())
    }
}

/// Hands a row that joined nothing to the function, when its input is an outer side.
fn unmatched<F: IntervalJoinFunction>(
    f: &F,
    input: JoinSide<F::Left, F::Right>,
    ts: Timestamp,
    b: Bounds,
    out: &mut Collector<F::Out>,
) -> Result<()> {
    out.ts = ts;
    match input {
        JoinSide::Left(l) if b.keep_left => f.left_unmatched(l, out),
        JoinSide::Right(r) if b.keep_right => f.right_unmatched(r, out),
        _ => Ok(()),
    }
}

// ---- hashmap: time buckets in arrival order ----------------------------------------------

const NONE: u32 = u32::MAX;

/// Probes of a bucket without an index before it builds one, and the size below which a
/// bucket is always scanned.
const SCANS_BEFORE_INDEX: u32 = 2;
const SMALL_BUCKET: usize = 16;

/// A buffered row of the bucket layout.
#[derive(Debug, Clone)]
struct Slot<T> {
    ts: Timestamp,
    /// The hash of the row's key (this process only; never stored).
    hash: u64,
    matched: bool,
    value: T,
}

impl<T> Slot<T> {
    fn new(ts: Timestamp, hash: u64, matched: bool, value: T) -> Self {
        Slot {
            ts,
            hash,
            matched,
            value,
        }
    }
}

/// The rows of one input whose times fall in `[start, start + width)`, in arrival order.
#[derive(Debug, Clone)]
struct Bucket<T> {
    start: Timestamp,
    rows: Vec<Slot<T>>,
    /// Built once the bucket has been probed a few times.
    index: Option<KeyIndex>,
    scans: u32,
    /// Rows at or before this time were handed on as unmatched already (outer inputs).
    emitted_up_to: Timestamp,
}

impl<T> Bucket<T> {
    fn new(start: Timestamp) -> Self {
        Bucket {
            start,
            rows: Vec::new(),
            index: None,
            scans: 0,
            emitted_up_to: Timestamp::MIN,
        }
    }

    fn build_index(&mut self) {
        let mut index = KeyIndex {
            heads: HashTable::with_capacity(self.rows.len()),
            prev: Vec::with_capacity(self.rows.len()),
        };
        for (i, s) in self.rows.iter().enumerate() {
            index.add(s.hash, i as u32);
        }
        self.index = Some(index);
    }

    fn push(&mut self, slot: Slot<T>) {
        if let Some(index) = &mut self.index {
            index.add(slot.hash, self.rows.len() as u32);
        }
        self.rows.push(slot);
    }
}

/// A bucket's rows by key hash: the newest row of each hash, and per row the previous row
/// of its hash.
#[derive(Debug, Clone)]
struct KeyIndex {
    heads: HashTable<(u64, u32)>,
    prev: Vec<u32>,
}

impl KeyIndex {
    /// Adds row `i` (the bucket's newest) with key hash `hash`.
    fn add(&mut self, hash: u64, i: u32) {
        match self.heads.find_mut(hash, |e| e.0 == hash) {
            Some(head) => {
                self.prev.push(head.1);
                head.1 = i;
            }
            None => {
                self.prev.push(NONE);
                self.heads.insert_unique(hash, (hash, i), |e| e.0);
            }
        }
    }

    /// The rows with key hash `hash`, newest first.
    fn rows(&self, hash: u64) -> impl Iterator<Item = u32> + '_ {
        let head = self.heads.find(hash, |e| e.0 == hash).map_or(NONE, |e| e.1);
        std::iter::successors((head != NONE).then_some(head), |&i| {
            let p = self.prev[i as usize];
            (p != NONE).then_some(p)
        })
    }
}

/// One input's buckets, oldest first.
#[derive(Debug)]
struct Buckets<T> {
    buckets: VecDeque<Arc<Bucket<T>>>,
    width: i64,
    len: usize,
}

impl<T: Clone> Buckets<T> {
    fn new(width: i64) -> Self {
        Buckets {
            buckets: VecDeque::new(),
            width,
            len: 0,
        }
    }

    fn push(&mut self, slot: Slot<T>) {
        let start = slot.ts - slot.ts.rem_euclid(self.width);
        // Rows mostly arrive in time order: their bucket is the newest.
        let pos = match self.buckets.back() {
            Some(b) if b.start == start => self.buckets.len() - 1,
            Some(b) if b.start > start => {
                match self.buckets.binary_search_by_key(&start, |b| b.start) {
                    Ok(p) => p,
                    Err(p) => {
                        self.buckets.insert(p, Arc::new(Bucket::new(start)));
                        p
                    }
                }
            }
            _ => {
                self.buckets.push_back(Arc::new(Bucket::new(start)));
                self.buckets.len() - 1
            }
        };
        Arc::make_mut(&mut self.buckets[pos]).push(slot);
        self.len += 1;
    }

    /// Puts each bucket's rows in time order (equal times keep their order); before any
    /// probe, since an index refers to rows by position.
    fn sort_rows(&mut self) {
        for b in self.buckets.iter_mut() {
            let b = Arc::make_mut(b);
            debug_assert!(b.index.is_none());
            b.rows.sort_by_key(|s| s.ts);
        }
    }

    /// The rows with key hash `hash` and a time in `[lo, hi]` for which `same_key` holds,
    /// as (bucket position, row) in time order (equal times in arrival order).
    fn find(
        &mut self,
        hash: u64,
        (lo, hi): (Timestamp, Timestamp),
        same_key: impl Fn(&T) -> bool,
        found: &mut Vec<(u32, u32)>,
    ) {
        found.clear();
        if lo > hi {
            return;
        }
        let first = self
            .buckets
            .partition_point(|b| b.start.saturating_add(self.width) <= lo);
        for pos in first..self.buckets.len() {
            let bucket = &mut self.buckets[pos];
            if bucket.start > hi {
                break;
            }
            let from = found.len();
            let hit =
                |s: &Slot<T>| s.hash == hash && s.ts >= lo && s.ts <= hi && same_key(&s.value);
            if bucket.index.is_none()
                && bucket.rows.len() >= SMALL_BUCKET
                && bucket.scans >= SCANS_BEFORE_INDEX
                && let Some(b) = Arc::get_mut(bucket)
            {
                b.build_index();
            }
            match &bucket.index {
                Some(index) => {
                    found.extend(
                        index
                            .rows(hash)
                            .filter(|&i| hit(&bucket.rows[i as usize]))
                            .map(|i| (pos as u32, i)),
                    );
                    found[from..].reverse();
                }
                None => {
                    for (i, s) in bucket.rows.iter().enumerate() {
                        if hit(s) {
                            found.push((pos as u32, i as u32));
                        }
                    }
                    // Counted only while no checkpoint shares the bucket (a shared one is
                    // copied on write, which a counter is not worth).
                    if let Some(b) = Arc::get_mut(bucket) {
                        b.scans += 1;
                    }
                }
            }
            let rows = &bucket.rows;
            if !found[from..].is_sorted_by_key(|&(_, i)| rows[i as usize].ts) {
                found[from..].sort_by_key(|&(_, i)| rows[i as usize].ts);
            }
        }
    }

    /// Joins a new row with the waiting rows of key hash `hash` in `range` that have its key
    /// (`same_key`), oldest first, as [`probe_sorted`] does for one key's rows: `join` says
    /// whether a pair joined, and those rows are marked matched when `mark`. Returns whether
    /// any pair joined.
    fn join_waiting(
        &mut self,
        hash: u64,
        range: (Timestamp, Timestamp),
        same_key: impl Fn(&T) -> bool,
        mark: bool,
        found: &mut Vec<(u32, u32)>,
        mut join: impl FnMut(&T, Timestamp) -> Result<bool>,
    ) -> Result<bool> {
        self.find(hash, range, same_key, found);
        let mut any = false;
        for &(pos, i) in found.iter() {
            let s = &self.buckets[pos as usize].rows[i as usize];
            if join(&s.value, s.ts)? {
                any = true;
                if mark && !s.matched {
                    Arc::make_mut(&mut self.buckets[pos as usize]).rows[i as usize].matched = true;
                }
            }
        }
        Ok(any)
    }

    /// Drops the rows at or before `dead`, whole buckets at a time (a bucket goes once all
    /// its rows have expired). When `keep`, first hands every expired row that joined
    /// nothing to `unmatched`, in time order, each once.
    fn expire(
        &mut self,
        dead: Timestamp,
        keep: bool,
        mut unmatched: impl FnMut(Timestamp, T) -> Result<()>,
    ) -> Result<()> {
        while let Some(front) = self.buckets.front() {
            if front.start.saturating_add(self.width - 1) > dead {
                break;
            }
            let b = self.buckets.pop_front().expect("a front bucket");
            self.len -= b.rows.len();
            if keep {
                let b = Arc::unwrap_or_clone(b);
                let from = b.emitted_up_to;
                let mut rows: Vec<Slot<T>> = b
                    .rows
                    .into_iter()
                    .filter(|s| !s.matched && s.ts > from)
                    .collect();
                rows.sort_by_key(|s| s.ts);
                for s in rows {
                    unmatched(s.ts, s.value)?;
                }
            }
        }
        // The oldest bucket partly expired: its expired unmatched rows go now, and stay in it
        // (dead to probes) until the whole bucket goes.
        if keep
            && let Some(front) = self.buckets.front_mut()
            && front.start <= dead
            && front.emitted_up_to < dead
        {
            let from = front.emitted_up_to;
            let b = Arc::make_mut(front);
            b.emitted_up_to = dead;
            let mut due: Vec<&Slot<T>> = b
                .rows
                .iter()
                .filter(|s| !s.matched && s.ts > from && s.ts <= dead)
                .collect();
            due.sort_by_key(|s| s.ts);
            for s in due {
                unmatched(s.ts, s.value.clone())?;
            }
        }
        Ok(())
    }
}

/// The bucket layout (see the module docs).
struct BufferedIntervalJoin<K, F: IntervalJoinFunction> {
    f: F,
    bounds: Bounds,
    keys: Keys<K, F::Left, F::Right>,
    left: Buckets<F::Left>,
    right: Buckets<F::Right>,
    hasher: DefaultHashBuilder,
    watermark: Timestamp,
    info: SubtaskInfo,
    found: Vec<(u32, u32)>,
}

impl<K: Key, F: IntervalJoinFunction> BufferedIntervalJoin<K, F> {
    fn new(f: F, bounds: Bounds, keys: Keys<K, F::Left, F::Right>, info: SubtaskInfo) -> Self {
        // About eight buckets span the join's interval: a probe reads a few, and a row stays
        // at most an eighth of the interval (at least a second) longer than it must.
        let width = (bounds.upper.saturating_sub(bounds.lower) / 8).max(1000);
        BufferedIntervalJoin {
            f,
            bounds,
            keys,
            left: Buckets::new(width),
            right: Buckets::new(width),
            hasher: DefaultHashBuilder::default(),
            watermark: MIN_WATERMARK,
            info,
            found: Vec::new(),
        }
    }

    /// Joins a new row with the other input's waiting rows, then keeps it waiting (or,
    /// too late to wait, hands it on unmatched).
    fn on_row(
        &mut self,
        input: JoinSide<F::Left, F::Right>,
        ts: Timestamp,
        out: &mut Collector<F::Out>,
    ) -> Result<()> {
        let b = self.bounds;
        if ts == NO_TIMESTAMP {
            return unmatched(&self.f, input, ts, b, out);
        }
        let left = matches!(input, JoinSide::Left(_));
        let key = match &input {
            JoinSide::Left(l) => (self.keys.left)(l),
            JoinSide::Right(r) => (self.keys.right)(r),
        };
        let hash = self.hasher.hash_one(&key);
        let (lo, hi) = b.range(left, ts);
        // The other input's rows the watermark has passed wait no more.
        let range = (
            lo.max(b.dead_up_to(!left, self.watermark).saturating_add(1)),
            hi,
        );
        let (f, found) = (&self.f, &mut self.found);
        let matched = match &input {
            JoinSide::Left(l) => {
                let rk = &self.keys.right;
                self.right.join_waiting(
                    hash,
                    range,
                    |r| rk(r) == key,
                    b.keep_right,
                    found,
                    |r, rt| {
                        out.ts = ts.max(rt);
                        f.join(l, r, out)
                    },
                )?
            }
            JoinSide::Right(r) => {
                let lk = &self.keys.left;
                self.left.join_waiting(
                    hash,
                    range,
                    |l| lk(l) == key,
                    b.keep_left,
                    found,
                    |l, lt| {
                        out.ts = ts.max(lt);
                        f.join(l, r, out)
                    },
                )?
            }
        };
        if b.expiry(left, ts) > self.watermark {
            match input {
                JoinSide::Left(value) => self.left.push(Slot::new(ts, hash, matched, value)),
                JoinSide::Right(value) => self.right.push(Slot::new(ts, hash, matched, value)),
            }
        } else if !matched {
            unmatched(&self.f, input, ts, b, out)?;
        }
        Ok(())
    }

    /// Loads restored `rows` entries (of either layout) into buckets.
    fn restore(&mut self, restored: &OperatorSubtaskState) -> Result<()> {
        let mut store = self.info.keyed_store();
        let id = store
            .backend
            .register::<Buffers<F::Left, F::Right>>(&StateDescriptor::new(ROWS_STATE));
        // Refuses state this join does not own; timers are implied by the rows.
        store.restore(Some(restored.keyed_restore()))?;
        for (key, bufs) in store.backend.take_entries::<Buffers<F::Left, F::Right>>(id) {
            let key: K = postcard::from_bytes(&key).map_err(|e| Error::State {
                state: ROWS_STATE.into(),
                reason: format!("cannot decode a key written by a snapshot ({e})"),
            })?;
            let hash = self.hasher.hash_one(&key);
            for w in bufs.left {
                self.left.push(Slot::new(w.ts, hash, w.matched, w.value));
            }
            for w in bufs.right {
                self.right.push(Slot::new(w.ts, hash, w.matched, w.value));
            }
        }
        // Keys were restored one after another: put each bucket back in time order.
        self.left.sort_rows();
        self.right.sort_rows();
        Ok(())
    }
}

impl<K: Key, F: IntervalJoinFunction> Operator for BufferedIntervalJoin<K, F> {
    fn open(&mut self) -> Result<()> {
        match self.info.restored.take() {
            Some(restored) => self.restore(&restored),
            None => Ok(()),
        }
    }

    fn process(&mut self, _input: usize, batch: Batch, out: &mut Output) -> Result<()> {
        let mut coll = Collector::new();
        for rec in downcast::<JoinSide<F::Left, F::Right>>(batch) {
            self.on_row(rec.value, rec.ts, &mut coll)?;
        }
        out.emit(0, Box::new(coll.buf));
        Ok(())
    }

    fn watermark(&mut self, wm: Timestamp, out: &mut Output) -> Result<()> {
        self.watermark = wm;
        let b = self.bounds;
        let mut coll = Collector::new();
        let f = &self.f;
        self.left
            .expire(b.dead_up_to(true, wm), b.keep_left, |ts, l| {
                coll.ts = ts;
                f.left_unmatched(l, &mut coll)
            })?;
        self.right
            .expire(b.dead_up_to(false, wm), b.keep_right, |ts, r| {
                coll.ts = ts;
                f.right_unmatched(r, &mut coll)
            })?;
        out.emit(0, Box::new(coll.buf));
        out.watermark(wm);
        Ok(())
    }

    fn state_entries(&self) -> usize {
        self.left.len + self.right.len
    }

    fn snapshot_state(
        &mut self,
        _barrier: crate::checkpoint::Barrier,
    ) -> Result<OperatorSubtaskState> {
        // The buckets are shared with the checkpoint (the next write to one copies it) and
        // serialized off the task thread.
        let frozen = Frozen {
            left: self.left.buckets.iter().cloned().collect(),
            right: self.right.buckets.iter().cloned().collect(),
            left_dead: self.bounds.dead_up_to(true, self.watermark),
            right_dead: self.bounds.dead_up_to(false, self.watermark),
            bounds: self.bounds,
            keys: self.keys.clone(),
            range: KeyGroupRange::for_subtask(
                self.info.index,
                self.info.parallelism,
                self.info.max_parallelism,
            ),
            max_parallelism: self.info.max_parallelism,
            rows_name: crate::state::state_name(ROWS_STATE, self.info.state_schema.as_deref()),
        };
        Ok(OperatorSubtaskState {
            deferred_keyed: Some(DeferredKeyed::new(move || frozen.serialize())),
            ..Default::default()
        })
    }
}

/// The bucket layout's rows as a checkpoint saw them.
struct Frozen<K, L, R> {
    left: Vec<Arc<Bucket<L>>>,
    right: Vec<Arc<Bucket<R>>>,
    left_dead: Timestamp,
    right_dead: Timestamp,
    bounds: Bounds,
    keys: Keys<K, L, R>,
    range: KeyGroupRange,
    max_parallelism: usize,
    /// The `rows` state's name in checkpoints (with the operator's schema tag).
    rows_name: String,
}

/// [`Buffers`] over borrowed rows: serializes identically.
#[derive(Serialize)]
struct BuffersRef<'a, L, R> {
    left: Vec<WaitingRef<'a, L>>,
    right: Vec<WaitingRef<'a, R>>,
}

#[derive(Serialize)]
struct WaitingRef<'a, T> {
    ts: Timestamp,
    value: &'a T,
    matched: bool,
}

impl<L, R> Default for BuffersRef<'_, L, R> {
    fn default() -> Self {
        BuffersRef {
            left: Vec::new(),
            right: Vec::new(),
        }
    }
}

/// The rows of one input's frozen buckets that have not expired (time after `dead`), each
/// with its (key group, serialized key).
fn live_rows<'a, K: Key, T>(
    buckets: &'a [Arc<Bucket<T>>],
    dead: Timestamp,
    key: &'a crate::api::KeyExtractor<K, T>,
    max_parallelism: usize,
) -> impl Iterator<Item = ((usize, Vec<u8>), WaitingRef<'a, T>)> + 'a {
    buckets
        .iter()
        .flat_map(|b| &b.rows)
        .filter(move |s| s.ts > dead)
        .map(move |s| {
            let mut bytes = Vec::new();
            serialize_key(&key(&s.value), &mut bytes);
            let kg = key_group_for_bytes(&bytes, max_parallelism);
            let w = WaitingRef {
                ts: s.ts,
                value: &s.value,
                matched: s.matched,
            };
            ((kg, bytes), w)
        })
}

impl<K: Key, L: StateValue, R: StateValue> Frozen<K, L, R> {
    /// The canonical keyed snapshot: per key group, a `rows` value per key and a timer per
    /// key and expiry time, as the keyed-state layout writes them.
    fn serialize(&self) -> Result<Vec<KeyGroupSnapshot>> {
        let mut per_key: BTreeMap<(usize, Vec<u8>), BuffersRef<'_, L, R>> = BTreeMap::new();
        let max_par = self.max_parallelism;
        for (key, w) in live_rows(&self.left, self.left_dead, &self.keys.left, max_par) {
            per_key.entry(key).or_default().left.push(w);
        }
        for (key, w) in live_rows(&self.right, self.right_dead, &self.keys.right, max_par) {
            per_key.entry(key).or_default().right.push(w);
        }
        let mut groups: BTreeMap<usize, KeyGroupSnapshot> = BTreeMap::new();
        for ((kg, key), mut bufs) in per_key {
            bufs.left.sort_by_key(|w| w.ts);
            bufs.right.sort_by_key(|w| w.ts);
            let mut expiries: Vec<Timestamp> = bufs
                .left
                .iter()
                .map(|w| self.bounds.expiry(true, w.ts))
                .chain(bufs.right.iter().map(|w| self.bounds.expiry(false, w.ts)))
                .collect();
            expiries.sort_unstable();
            expiries.dedup();
            let value = postcard::to_allocvec(&bufs).map_err(|e| Error::State {
                state: ROWS_STATE.into(),
                reason: e.to_string(),
            })?;
            let g = groups.entry(kg).or_insert_with(|| KeyGroupSnapshot {
                key_group: kg as u32,
                states: vec![StateSnapshot {
                    name: self.rows_name.clone(),
                    entries: Vec::new(),
                }],
                ..Default::default()
            });
            g.event_timers
                .extend(expiries.into_iter().map(|t| (t, key.clone(), Vec::new())));
            g.states[0].entries.push(SnapshotEntry {
                key,
                value,
                stamp: 0,
            });
        }
        debug_assert!(groups.keys().all(|kg| self.range.contains(*kg)));
        Ok(groups
            .into_values()
            .map(|mut g| {
                g.event_timers.sort();
                g
            })
            .collect())
    }
}
