//! Interval joins of two keyed streams (Flink's `KeyedStream#intervalJoin`), with outer
//! variants: a row of either input joins the rows of the other input that have the same key
//! and an event time within bounds of its own, and waits until the watermark makes a new
//! partner impossible. An outer side's rows that joined nothing are handed to the join
//! function when they expire.
//!
//! Each input's rows wait in a time-bucketed buffer state that the state layer provides on
//! either backend (`state/buffer.rs`): a row is appended to the bucket of its time, a new row
//! probes the other input's buffer for its key within its bounds, and the watermark expires
//! whole buckets, so a row costs an append instead of a keyed state entry and a timer. The
//! state layer snapshots, restores and rescales the buffers like any keyed state (a
//! savepoint of either backend restores into the other, at any parallelism).

use crate::api::{Collector, Data, DataStream, KeyWriter, KeyedStream, key_partitioner_with};
use crate::checkpoint::OperatorSubtaskState;
use crate::error::{Error, Result};
use crate::keygroup::Key;
use crate::runtime::graph::Partitioning;
use crate::runtime::{Batch, Operator, Output, SubtaskInfo, downcast};
use crate::state::{KeyedStore, StateValue, TimeBufferState};
use crate::time::{MIN_WATERMARK, NO_TIMESTAMP, Timestamp};
use hashbrown::DefaultHashBuilder;
use serde::{Deserialize, Serialize};
use std::hash::BuildHasher;
use std::sync::Arc;

/// The name of the join's buffer state in snapshots (both inputs' rows, by side).
const ROWS_STATE: &str = "rows";
const LEFT: u8 = 0;
const RIGHT: u8 = 1;

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
        // With both sides' key writers, the exchange hashes the bytes they write instead of
        // building and serializing every row's key (the cost of p > 1: at p = 1 the edge is
        // chained and nothing is hashed).
        let writer: Option<KeyWriter<JoinSide<L, R>>> =
            match (self.left.key_writer.clone(), self.right.key_writer.clone()) {
                (Some(wl), Some(wr)) => Some(Arc::new(move |v: &JoinSide<L, R>, buf| match v {
                    JoinSide::Left(l) => wl(l, buf),
                    JoinSide::Right(r) => wr(r, buf),
                })),
                _ => None,
            };
        tagged.add_operator(
            "IntervalJoin",
            Partitioning::Hash(key_partitioner_with(key_fn.clone(), writer)),
            move |info| {
                if bounds.lower > bounds.upper {
                    return Err(Error::InvalidJob(format!(
                        "interval join bounds can never hold: lower {} ms > upper {} ms",
                        bounds.lower, bounds.upper
                    )));
                }
                Ok(
                    Box::new(IntervalJoin::new(f.clone(), bounds, keys.clone(), info)?)
                        as Box<dyn Operator>,
                )
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

/// The join's time bounds and outer sides.
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

/// The interval join operator (see the module docs).
struct IntervalJoin<K, F: IntervalJoinFunction> {
    f: F,
    bounds: Bounds,
    keys: Keys<K, F::Left, F::Right>,
    keyed: KeyedStore,
    left: TimeBufferState<K, F::Left>,
    right: TimeBufferState<K, F::Right>,
    /// Hashes the keys as both buffers do.
    hasher: DefaultHashBuilder,
    watermark: Timestamp,
    restored: Option<Arc<OperatorSubtaskState>>,
}

impl<K: Key, F: IntervalJoinFunction> IntervalJoin<K, F> {
    fn new(
        f: F,
        bounds: Bounds,
        keys: Keys<K, F::Left, F::Right>,
        info: &SubtaskInfo,
    ) -> Result<Self> {
        // About eight buckets span the join's interval: a probe reads a few, and a row stays
        // at most an eighth of the interval (at least a second) longer than it must.
        let width = (bounds.upper.saturating_sub(bounds.lower) / 8).max(1000);
        let hasher = DefaultHashBuilder::default();
        let mut keyed = info.keyed_store();
        let left = keyed.backend.register_time_buffer(
            ROWS_STATE,
            LEFT,
            width,
            keys.left.clone(),
            hasher,
        )?;
        let right = keyed.backend.register_time_buffer(
            ROWS_STATE,
            RIGHT,
            width,
            keys.right.clone(),
            hasher,
        )?;
        Ok(IntervalJoin {
            f,
            bounds,
            keys,
            keyed,
            left,
            right,
            hasher,
            watermark: MIN_WATERMARK,
            restored: info.restored.clone(),
        })
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
        let (f, backend) = (&self.f, &mut self.keyed.backend);
        let matched = match &input {
            JoinSide::Left(l) => {
                let (rows, db) = backend.time_buffer(&self.right);
                rows.join(db, hash, &key, range, b.keep_right, |r, rt| {
                    out.ts = ts.max(rt);
                    f.join(l, r, out)
                })?
            }
            JoinSide::Right(r) => {
                let (rows, db) = backend.time_buffer(&self.left);
                rows.join(db, hash, &key, range, b.keep_left, |l, lt| {
                    out.ts = ts.max(lt);
                    f.join(l, r, out)
                })?
            }
        };
        if b.expiry(left, ts) > self.watermark {
            match input {
                JoinSide::Left(value) => {
                    let (rows, db) = backend.time_buffer(&self.left);
                    rows.push(db, hash, ts, matched, value)?;
                }
                JoinSide::Right(value) => {
                    let (rows, db) = backend.time_buffer(&self.right);
                    rows.push(db, hash, ts, matched, value)?;
                }
            }
        } else if !matched {
            unmatched(&self.f, input, ts, b, out)?;
        }
        Ok(())
    }
}

impl<K: Key, F: IntervalJoinFunction> Operator for IntervalJoin<K, F> {
    fn open(&mut self) -> Result<()> {
        let restored = self.restored.take();
        // Refuses state this join does not own.
        self.keyed
            .restore(restored.as_deref().map(OperatorSubtaskState::keyed_restore))
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
        let (f, backend) = (&self.f, &mut self.keyed.backend);
        let (rows, db) = backend.time_buffer(&self.left);
        rows.expire(db, b.dead_up_to(true, wm), b.keep_left, |ts, l| {
            coll.ts = ts;
            f.left_unmatched(l, &mut coll)
        })?;
        let (rows, db) = backend.time_buffer(&self.right);
        rows.expire(db, b.dead_up_to(false, wm), b.keep_right, |ts, r| {
            coll.ts = ts;
            f.right_unmatched(r, &mut coll)
        })?;
        out.emit(0, Box::new(coll.buf));
        out.watermark(wm);
        Ok(())
    }

    fn state_entries(&self) -> usize {
        self.keyed.entries()
    }

    fn gauges(&self) -> Vec<crate::runtime::Gauge> {
        crate::runtime::Gauge::all(self.keyed.rocksdb_properties())
    }

    fn snapshot_state(
        &mut self,
        barrier: crate::checkpoint::Barrier,
    ) -> Result<OperatorSubtaskState> {
        self.keyed
            .snapshot(barrier.id, barrier.kind.is_savepoint())
            .map(Into::into)
    }
}
