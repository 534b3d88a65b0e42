//! Windows: tumbling, sliding, cumulating and session windows on event or processing time, the
//! aggregate functions that fold them, and the operator that keeps their contents in keyed
//! state and fires them with timers.
//!
//! Semantics follow Flink's default event-time trigger: a window fires when the watermark
//! passes its last millisecond (`end - 1`); with allowed lateness it stays in state until
//! `end - 1 + lateness`, and each late record fires it again with the updated result.
//! Records too late for every window go to the late side output when one is set.
//!
//! Sliding and cumulating windows aggregated without allowed lateness are sliced, as Flink's
//! window aggregation: a record updates the accumulator of its (key, slice) only, and a window
//! merges its slices' accumulators when it fires (see `WindowOperator::slice_len`).

use crate::api::DataStream;
use crate::api::{Collector, Data, KeyedStream, OutputTag, key_partitioner, note_written_key};
use crate::error::{Error, Result};
use crate::keygroup::{Key, serialize_key};
use crate::runtime::graph::Partitioning;
use crate::runtime::{Batch, Operator, Output, Rec, SubtaskInfo, downcast};
use crate::state::{KeyedStore, StateDescriptor, StateValue};
use crate::time::{MIN_WATERMARK, NO_TIMESTAMP, Timestamp, duration_ms, now_ms};
use crate::timers::Timer;
use serde::{Deserialize, Serialize};
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

/// A half-open time interval `[start, end)` in epoch milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TimeWindow {
    /// First millisecond in the window.
    pub start: Timestamp,
    /// First millisecond after the window.
    pub end: Timestamp,
}

impl TimeWindow {
    /// The last timestamp that belongs to the window; results carry it as their timestamp.
    pub fn max_timestamp(&self) -> Timestamp {
        self.end - 1
    }

    fn to_bytes(self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.start.to_be_bytes());
        b[8..].copy_from_slice(&self.end.to_be_bytes());
        b
    }

    fn from_bytes(b: &[u8]) -> Self {
        let start = i64::from_be_bytes(b[..8].try_into().expect("16-byte namespace"));
        let end = i64::from_be_bytes(b[8..16].try_into().expect("16-byte namespace"));
        TimeWindow { start, end }
    }

    fn intersects(&self, o: &TimeWindow) -> bool {
        self.start <= o.end && self.end >= o.start
    }

    fn cover(&self, o: &TimeWindow) -> TimeWindow {
        TimeWindow {
            start: self.start.min(o.start),
            end: self.end.max(o.end),
        }
    }
}

/// A window result: the key, the window and the aggregated value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Windowed<K, V> {
    /// The key the result belongs to.
    pub key: K,
    /// The window.
    pub window: TimeWindow,
    /// The aggregated value.
    pub value: V,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Tumbling {
        size: i64,
        offset: i64,
    },
    Sliding {
        size: i64,
        slide: i64,
        offset: i64,
    },
    Cumulating {
        max_size: i64,
        step: i64,
        offset: i64,
    },
    Session {
        gap: i64,
    },
}

/// Which windows a record belongs to.
///
/// ```
/// use std::time::Duration;
/// use weir_engine::window::WindowSpec;
/// let minute = WindowSpec::tumbling(Duration::from_secs(60));
/// let hop = WindowSpec::sliding(Duration::from_secs(60), Duration::from_secs(10));
/// let day_so_far = WindowSpec::cumulating(Duration::from_secs(86_400), Duration::from_secs(3_600));
/// let session = WindowSpec::session(Duration::from_secs(30)).processing_time();
/// # let _ = (minute, hop, session);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowSpec {
    kind: Kind,
    event_time: bool,
}

impl WindowSpec {
    /// Fixed-size, non-overlapping windows aligned to the epoch (event time).
    pub fn tumbling(size: Duration) -> Self {
        WindowSpec {
            kind: Kind::Tumbling {
                size: duration_ms(size),
                offset: 0,
            },
            event_time: true,
        }
    }

    /// Windows of `size` starting every `slide` (event time).
    pub fn sliding(size: Duration, slide: Duration) -> Self {
        WindowSpec {
            kind: Kind::Sliding {
                size: duration_ms(size),
                slide: duration_ms(slide),
                offset: 0,
            },
            event_time: true,
        }
    }

    /// Windows that grow by `step` from the start of each `max_size` period: a record at
    /// `ts` belongs to `[start, start + step)`, `[start, start + 2 step)` … up to
    /// `[start, start + max_size)` where they contain `ts` (Flink's CUMULATE; event time).
    /// `max_size` must be a multiple of `step`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use weir_engine::window::WindowSpec;
    /// let spec = WindowSpec::cumulating(Duration::from_secs(60), Duration::from_secs(20));
    /// let ends: Vec<i64> = spec.windows_of(25_000).iter().map(|w| w.end).collect();
    /// assert_eq!(ends, vec![40_000, 60_000]);
    /// ```
    pub fn cumulating(max_size: Duration, step: Duration) -> Self {
        WindowSpec {
            kind: Kind::Cumulating {
                max_size: duration_ms(max_size),
                step: duration_ms(step),
                offset: 0,
            },
            event_time: true,
        }
    }

    /// Per-key windows that close after `gap` without records, merging when they meet
    /// (event time).
    pub fn session(gap: Duration) -> Self {
        WindowSpec {
            kind: Kind::Session {
                gap: duration_ms(gap),
            },
            event_time: true,
        }
    }

    /// Shifts window boundaries by `offset` (e.g. to align days to a time zone).
    pub fn with_offset(mut self, offset: Duration) -> Self {
        let o = duration_ms(offset);
        match &mut self.kind {
            Kind::Tumbling { offset, .. }
            | Kind::Sliding { offset, .. }
            | Kind::Cumulating { offset, .. } => *offset = o,
            Kind::Session { .. } => {}
        }
        self
    }

    /// Uses the wall clock instead of event time.
    pub fn processing_time(mut self) -> Self {
        self.event_time = false;
        self
    }

    fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidJob(m));
        match self.kind {
            Kind::Tumbling { size, .. } if size <= 0 => bad(format!(
                "tumbling window size must be positive, got {size} ms"
            )),
            Kind::Sliding { size, slide, .. } if size <= 0 || slide <= 0 => bad(format!(
                "sliding window size and slide must be positive, got {size} ms / {slide} ms"
            )),
            Kind::Cumulating { max_size, step, .. }
                if step <= 0 || max_size <= 0 || max_size % step != 0 =>
            {
                bad(format!(
                    "cumulating windows need a positive step and a max size that is a multiple of it, got step {step} ms / max size {max_size} ms"
                ))
            }
            Kind::Session { gap } if gap <= 0 => {
                bad(format!("session gap must be positive, got {gap} ms"))
            }
            _ => Ok(()),
        }
    }

    fn start_of(ts: i64, offset: i64, size: i64) -> i64 {
        ts - (ts - offset).rem_euclid(size)
    }

    /// The windows a record at `ts` belongs to (for sessions: its own `[ts, ts + gap)`,
    /// before merging).
    pub fn windows_of(&self, ts: Timestamp) -> Vec<TimeWindow> {
        let mut out = Vec::new();
        self.assign(ts, &mut out);
        out
    }

    /// The windows `ts` falls into, appended to `out`.
    pub(crate) fn assign(&self, ts: Timestamp, out: &mut Vec<TimeWindow>) {
        out.clear();
        match self.kind {
            Kind::Tumbling { size, offset } => {
                let start = Self::start_of(ts, offset, size);
                out.push(TimeWindow {
                    start,
                    end: start + size,
                });
            }
            Kind::Sliding {
                size,
                slide,
                offset,
            } => {
                let mut start = Self::start_of(ts, offset, slide);
                while start > ts - size {
                    out.push(TimeWindow {
                        start,
                        end: start + size,
                    });
                    start -= slide;
                }
            }
            Kind::Cumulating {
                max_size,
                step,
                offset,
            } => {
                let start = Self::start_of(ts, offset, max_size);
                // The first window that contains ts, then each longer one up to max_size.
                let mut end = Self::start_of(ts, offset, step) + step;
                while end <= start + max_size {
                    out.push(TimeWindow { start, end });
                    end += step;
                }
            }
            Kind::Session { gap } => out.push(TimeWindow {
                start: ts,
                end: ts + gap,
            }),
        }
    }
}

/// Sliced windows merge at most this many slices per window; a sliding window with more
/// (its size and slide have a small greatest common divisor) keeps per-window state.
const MAX_SLICES_PER_WINDOW: i64 = 256;

fn gcd(mut a: i64, mut b: i64) -> i64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

impl WindowSpec {
    /// The length of the slices sliding and cumulating windows are cut into (Flink's
    /// `SliceAssigner`): `gcd(size, slide)` for sliding windows, the step for cumulating ones.
    /// `None` for windows that are not sliced: tumbling and session windows, and windows of
    /// more than [`MAX_SLICES_PER_WINDOW`] slices.
    fn slice_len(&self) -> Option<i64> {
        let (size, len) = match self.kind {
            Kind::Sliding { size, slide, .. } => (size, gcd(size, slide)),
            Kind::Cumulating { max_size, step, .. } => (max_size, step),
            Kind::Tumbling { .. } | Kind::Session { .. } => return None,
        };
        (len > 0 && size / len <= MAX_SLICES_PER_WINDOW).then_some(len)
    }

    /// The end of the window `ts` falls into that ends last; `None` when it falls into none
    /// (sliding windows with a slide longer than their size leave gaps).
    fn last_window_end(&self, ts: Timestamp) -> Option<Timestamp> {
        match self.kind {
            Kind::Tumbling { size, offset } => Some(Self::start_of(ts, offset, size) + size),
            Kind::Sliding {
                size,
                slide,
                offset,
            } => {
                let end = Self::start_of(ts, offset, slide) + size;
                (end > ts).then_some(end)
            }
            Kind::Cumulating {
                max_size, offset, ..
            } => Some(Self::start_of(ts, offset, max_size) + max_size),
            Kind::Session { gap } => Some(ts + gap),
        }
    }

    /// The slice of length `len` that `ts` falls into; slices align with the windows.
    fn slice_of(&self, ts: Timestamp, len: i64) -> TimeWindow {
        let offset = match self.kind {
            Kind::Tumbling { offset, .. }
            | Kind::Sliding { offset, .. }
            | Kind::Cumulating { offset, .. } => offset,
            Kind::Session { .. } => 0,
        };
        let start = Self::start_of(ts, offset, len);
        TimeWindow {
            start,
            end: start + len,
        }
    }

    /// The slices of `w` (as `[from, to)`) that no window firing after `w` covers: a
    /// sliding window is the last to cover the slices of its first `slide`, a cumulating
    /// window of the full `max_size` the last to cover all of its slices.
    fn slices_freed_by(&self, w: &TimeWindow) -> (Timestamp, Timestamp) {
        match self.kind {
            Kind::Sliding { size, slide, .. } => (w.start, w.start + slide.min(size)),
            Kind::Cumulating { max_size, .. } if w.end - w.start == max_size => (w.start, w.end),
            _ => (w.start, w.start),
        }
    }
}

/// Incrementally aggregates records into an accumulator — Flink's `AggregateFunction`.
/// Tuples of aggregate functions aggregate side by side: `(count(), sum(f))`.
pub trait AggregateFunction<T>: Send + Sync + 'static {
    /// The running state; kept in keyed state per window.
    type Acc: StateValue;
    /// The result.
    type Out: Data;
    /// A fresh accumulator.
    fn create_accumulator(&self) -> Self::Acc;
    /// Folds one record in.
    fn add(&self, value: &T, acc: &mut Self::Acc);
    /// The result for an accumulator.
    fn get_result(&self, acc: &Self::Acc) -> Self::Out;
    /// Folds `other` into `acc`: session windows merge, and sliding and cumulating windows
    /// (without allowed lateness) keep one accumulator per slice and merge a window's slices,
    /// oldest first, when it fires. Merging the accumulators of two sets of records must give
    /// the accumulator of all of them.
    fn merge(&self, other: Self::Acc, acc: &mut Self::Acc);
    /// [`merge`](Self::merge) from a borrowed accumulator: sliced windows merge the slices
    /// that later windows still need this way. The default merges a clone of `other`.
    fn merge_ref(&self, other: &Self::Acc, acc: &mut Self::Acc) {
        self.merge(other.clone(), acc)
    }
}

/// Built-in aggregate functions.
pub mod agg {
    use super::AggregateFunction;
    use crate::state::StateValue;
    use std::marker::PhantomData;

    /// Numbers that can be summed, compared and averaged.
    pub trait Numeric:
        StateValue + Copy + PartialOrd + Default + std::ops::Add<Output = Self>
    {
        /// As a float, for averages.
        fn to_f64(self) -> f64;
    }
    macro_rules! numeric {
        ($($t:ty),*) => {$(impl Numeric for $t { fn to_f64(self) -> f64 { self as f64 } })*};
    }
    numeric!(i32, i64, u32, u64, f32, f64, usize);

    /// Counts records.
    #[derive(Debug, Clone, Copy, Default)]
    pub struct Count;
    /// `COUNT(*)`.
    pub fn count() -> Count {
        Count
    }
    impl<T> AggregateFunction<T> for Count {
        type Acc = u64;
        type Out = u64;
        fn create_accumulator(&self) -> u64 {
            0
        }
        fn add(&self, _: &T, acc: &mut u64) {
            *acc += 1;
        }
        fn get_result(&self, acc: &u64) -> u64 {
            *acc
        }
        fn merge(&self, other: u64, acc: &mut u64) {
            *acc += other;
        }
    }

    macro_rules! field_agg {
        ($(#[$m:meta])* $name:ident, $ctor:ident, $acc:ty, $out:ty, $init:expr, |$a:ident, $v:ident| $add:expr, |$r:ident| $res:expr, |$o:ident, $into:ident| $merge:expr) => {
            $(#[$m])*
            pub struct $name<F, N> { f: F, _p: PhantomData<fn() -> N> }
            $(#[$m])*
            pub fn $ctor<T, N: Numeric, F: Fn(&T) -> N + Send + Sync + 'static>(f: F) -> $name<F, N> {
                $name { f, _p: PhantomData }
            }
            impl<T, N: Numeric, F: Fn(&T) -> N + Send + Sync + 'static> AggregateFunction<T> for $name<F, N> {
                type Acc = $acc;
                type Out = $out;
                fn create_accumulator(&self) -> $acc { $init }
                fn add(&self, value: &T, $a: &mut $acc) { let $v = (self.f)(value); $add }
                fn get_result(&self, $r: &$acc) -> $out { $res }
                fn merge(&self, $o: $acc, $into: &mut $acc) { $merge }
            }
        };
    }

    field_agg!(
        /// `SUM(f(record))`.
        Sum, sum, N, N, N::default(), |a, v| *a = *a + v, |r| *r, |o, into| *into = *into + o
    );
    field_agg!(
        /// `MIN(f(record))`.
        Min, min, Option<N>, N, None,
        |a, v| *a = Some(match *a { Some(x) if x <= v => x, _ => v }),
        |r| r.unwrap_or_default(),
        |o, into| if let Some(v) = o { *into = Some(match *into { Some(x) if x <= v => x, _ => v }) }
    );
    field_agg!(
        /// `MAX(f(record))`.
        Max, max, Option<N>, N, None,
        |a, v| *a = Some(match *a { Some(x) if x >= v => x, _ => v }),
        |r| r.unwrap_or_default(),
        |o, into| if let Some(v) = o { *into = Some(match *into { Some(x) if x >= v => x, _ => v }) }
    );
    field_agg!(
        /// `AVG(f(record))` as a float.
        Avg, avg, (f64, u64), f64, (0.0, 0),
        |a, v| { a.0 += v.to_f64(); a.1 += 1 },
        |r| if r.1 == 0 { 0.0 } else { r.0 / r.1 as f64 },
        |o, into| { into.0 += o.0; into.1 += o.1 }
    );

    macro_rules! tuple_agg {
        ($($n:tt $a:ident),*) => {
            impl<T, $($a: AggregateFunction<T>),*> AggregateFunction<T> for ($($a,)*) {
                type Acc = ($($a::Acc,)*);
                type Out = ($($a::Out,)*);
                fn create_accumulator(&self) -> Self::Acc { ($(self.$n.create_accumulator(),)*) }
                fn add(&self, value: &T, acc: &mut Self::Acc) { $(self.$n.add(value, &mut acc.$n);)* }
                fn get_result(&self, acc: &Self::Acc) -> Self::Out { ($(self.$n.get_result(&acc.$n),)*) }
                fn merge(&self, other: Self::Acc, acc: &mut Self::Acc) { $(self.$n.merge(other.$n, &mut acc.$n);)* }
                fn merge_ref(&self, other: &Self::Acc, acc: &mut Self::Acc) { $(self.$n.merge_ref(&other.$n, &mut acc.$n);)* }
            }
        };
    }
    tuple_agg!(0 A, 1 B);
    tuple_agg!(0 A, 1 B, 2 C);
    tuple_agg!(0 A, 1 B, 2 C, 3 D);
}

/// How a window's contents become output: the shared core of aggregate, reduce and process.
trait WindowFunction<K, T>: Send + Sync + 'static {
    type Acc: StateValue;
    type Out: Data;
    /// Whether sliding and cumulating windows may keep one accumulator per slice and merge
    /// a window's slices when it fires. `reduce` and `process` may not: merging hands a
    /// reduce function partial results (which needs it associative and commutative) and a
    /// process function its records grouped by slice instead of in arrival order.
    const SLICEABLE: bool = false;
    fn create(&self) -> Self::Acc;
    fn add(&self, acc: &mut Self::Acc, value: &T);
    fn merge(&self, other: Self::Acc, acc: &mut Self::Acc);
    /// [`merge`](Self::merge) from a borrowed accumulator (the default merges a clone).
    fn merge_ref(&self, other: &Self::Acc, acc: &mut Self::Acc) {
        self.merge(other.clone(), acc)
    }
    /// Emits the result of `acc`; `key` is the window's key, decoded for this call.
    fn emit(
        &self,
        key: K,
        window: &TimeWindow,
        acc: &Self::Acc,
        out: &mut Collector<Self::Out>,
    ) -> Result<()>;
}

/// An aggregate with the function that turns a window's result into output (for plain
/// `aggregate`: a [`Windowed`]).
struct AggWindow<A, E, O> {
    agg: A,
    emit: E,
    _out: PhantomData<fn() -> O>,
}

impl<K, T, A, E, O> WindowFunction<K, T> for AggWindow<A, E, O>
where
    K: Key,
    A: AggregateFunction<T>,
    O: Data,
    E: Fn(K, &TimeWindow, A::Out, &mut Collector<O>) -> Result<()> + Send + Sync + 'static,
{
    type Acc = A::Acc;
    type Out = O;
    const SLICEABLE: bool = true;
    fn create(&self) -> A::Acc {
        self.agg.create_accumulator()
    }
    fn add(&self, acc: &mut A::Acc, value: &T) {
        self.agg.add(value, acc)
    }
    fn merge(&self, other: A::Acc, acc: &mut A::Acc) {
        self.agg.merge(other, acc)
    }
    fn merge_ref(&self, other: &A::Acc, acc: &mut A::Acc) {
        self.agg.merge_ref(other, acc)
    }
    fn emit(
        &self,
        key: K,
        window: &TimeWindow,
        acc: &A::Acc,
        out: &mut Collector<O>,
    ) -> Result<()> {
        (self.emit)(key, window, self.agg.get_result(acc), out)
    }
}

type ReduceFn<T> = Arc<dyn Fn(&T, &T) -> T + Send + Sync>;
struct ReduceWindow<T>(ReduceFn<T>);

impl<K: Key, T: StateValue> WindowFunction<K, T> for ReduceWindow<T> {
    type Acc = Option<T>;
    type Out = Windowed<K, T>;
    fn create(&self) -> Option<T> {
        None
    }
    fn add(&self, acc: &mut Option<T>, value: &T) {
        *acc = Some(match acc.take() {
            Some(a) => (self.0)(&a, value),
            None => value.clone(),
        });
    }
    fn merge(&self, other: Option<T>, acc: &mut Option<T>) {
        if let Some(o) = other {
            <Self as WindowFunction<K, T>>::add(self, acc, &o);
        }
    }
    fn emit(
        &self,
        key: K,
        window: &TimeWindow,
        acc: &Option<T>,
        out: &mut Collector<Self::Out>,
    ) -> Result<()> {
        if let Some(v) = acc {
            out.collect(Windowed {
                key,
                window: *window,
                value: v.clone(),
            });
        }
        Ok(())
    }
}

type ProcessWindowFn<K, T, O> =
    Arc<dyn Fn(&K, &TimeWindow, &[T], &mut Collector<O>) -> Result<()> + Send + Sync>;
struct ProcessWindow<K, T, O>(ProcessWindowFn<K, T, O>);

impl<K: Key, T: StateValue, O: Data> WindowFunction<K, T> for ProcessWindow<K, T, O> {
    type Acc = Vec<T>;
    type Out = O;
    fn create(&self) -> Vec<T> {
        Vec::new()
    }
    fn add(&self, acc: &mut Vec<T>, value: &T) {
        acc.push(value.clone())
    }
    fn merge(&self, mut other: Vec<T>, acc: &mut Vec<T>) {
        acc.append(&mut other)
    }
    fn emit(
        &self,
        key: K,
        window: &TimeWindow,
        acc: &Vec<T>,
        out: &mut Collector<O>,
    ) -> Result<()> {
        (self.0)(&key, window, acc, out)
    }
}

/// A keyed stream grouped into windows; finish it with `aggregate`, `reduce` or `process`.
pub struct WindowedStream<K, T> {
    keyed: KeyedStream<K, T>,
    spec: WindowSpec,
    lateness_ms: i64,
    late_tag: Option<String>,
}

impl<K, T> std::fmt::Debug for WindowedStream<K, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WindowedStream({:?})", self.spec)
    }
}

impl<K: Key, T: Data> WindowedStream<K, T> {
    pub(crate) fn new(keyed: KeyedStream<K, T>, spec: WindowSpec) -> Self {
        WindowedStream {
            keyed,
            spec,
            lateness_ms: 0,
            late_tag: None,
        }
    }

    /// Keeps windows for `lateness` after they fire; late records re-fire them.
    pub fn allowed_lateness(mut self, lateness: Duration) -> Self {
        self.lateness_ms = duration_ms(lateness);
        self
    }

    /// Sends records too late for any window to side output `tag` (read it with
    /// `get_side_output` on the result) instead of dropping them.
    pub fn side_output_late_data(mut self, tag: &OutputTag<T>) -> Self {
        self.late_tag = Some(tag.id.clone());
        self
    }

    fn build<W: WindowFunction<K, T>>(self, name: &str, f: W) -> DataStream<W::Out> {
        let f = Arc::new(f);
        let (spec, lateness, late_tag) = (self.spec, self.lateness_ms, self.late_tag);
        let key_fn = self.keyed.key_fn.clone();
        let key_writer = self.keyed.key_writer.clone();
        let invalid = spec.validate().err().map(|e| e.to_string());
        self.keyed.stream.add_operator(
            name,
            Partitioning::Hash(key_partitioner(self.keyed.key_fn.clone())),
            move |info| {
                if let Some(msg) = &invalid {
                    return Err(Error::InvalidJob(
                        msg.trim_start_matches("invalid job: ").to_string(),
                    ));
                }
                Ok(Box::new(WindowOperator::new(
                    spec,
                    lateness,
                    late_tag.clone(),
                    f.clone(),
                    (key_fn.clone(), key_writer.clone()),
                    info.clone(),
                )) as Box<dyn Operator>)
            },
        )
    }

    /// Aggregates each window incrementally; emits one `Windowed` result per key and window.
    pub fn aggregate<A: AggregateFunction<T>>(self, f: A) -> DataStream<Windowed<K, A::Out>> {
        self.aggregate_with(f, |key, window, value, out| {
            out.collect(Windowed {
                key,
                window: *window,
                value,
            });
            Ok(())
        })
    }

    /// Aggregates each window incrementally, then hands each window's key, bounds and result
    /// to `emit` (Flink's `aggregate(aggregateFunction, windowFunction)`): output in any
    /// shape, built once, without a [`Windowed`] in between. Records `emit` collects carry
    /// the window's last millisecond as their time unless it collects them with another.
    pub fn aggregate_with<A, O>(
        self,
        f: A,
        emit: impl Fn(K, &TimeWindow, A::Out, &mut Collector<O>) -> Result<()> + Send + Sync + 'static,
    ) -> DataStream<O>
    where
        A: AggregateFunction<T>,
        O: Data,
    {
        self.build(
            "Window(aggregate)",
            AggWindow {
                agg: f,
                emit,
                _out: PhantomData,
            },
        )
    }

    /// Reduces each window's records pairwise.
    pub fn reduce(
        self,
        f: impl Fn(&T, &T) -> T + Send + Sync + 'static,
    ) -> DataStream<Windowed<K, T>>
    where
        T: StateValue,
    {
        self.build("Window(reduce)", ReduceWindow(Arc::new(f)))
    }

    /// Calls `f` with all of a window's records when it fires.
    pub fn process<O: Data>(
        self,
        f: impl Fn(&K, &TimeWindow, &[T], &mut Collector<O>) -> Result<()> + Send + Sync + 'static,
    ) -> DataStream<O>
    where
        T: StateValue,
    {
        self.build("Window(process)", ProcessWindow(Arc::new(f)))
    }
}

const NONE: u32 = u32::MAX;

/// One batch's records grouped by key and window set. Keys are numbered ("slots") by first
/// appearance; each slot has a chain of groups, each group a chain of records that fall into
/// the same windows. A record joins its key's last group when its windows are the same
/// (the common case: a batch spans little event time), else starts a new group, so walking
/// a key's groups in order visits its records in batch order.
#[derive(Default)]
struct BatchGroups {
    /// Serialized keys back to back; `spans[slot]` delimits one.
    arena: Vec<u8>,
    spans: Vec<(u32, u32)>,
    /// Slot by key bytes.
    table: hashbrown::HashTable<u32>,
    hasher: hashbrown::DefaultHashBuilder,
    /// Per slot: its first and last group.
    slot_groups: Vec<(u32, u32)>,
    groups: Vec<Group>,
    /// Per record of the batch: the next record of its group.
    next_rec: Vec<u32>,
}

/// Records of one key that fall into the same windows (on sliced operators: into the same
/// slice, which is `first`, with `windows` 1).
struct Group {
    /// A record's time (what the windows are assigned from) and the windows it gives: the
    /// first window and how many there are identify the set for every window kind.
    ts: Timestamp,
    first: TimeWindow,
    windows: usize,
    head: u32,
    tail: u32,
    next: u32,
}

impl BatchGroups {
    fn clear(&mut self, records: usize) {
        self.arena.clear();
        self.spans.clear();
        self.table.clear();
        self.slot_groups.clear();
        self.groups.clear();
        self.next_rec.clear();
        self.next_rec.resize(records, NONE);
    }

    fn key(&self, slot: usize) -> &[u8] {
        let (a, b) = self.spans[slot];
        &self.arena[a as usize..b as usize]
    }

    /// The number of the key `bytes`, assigning the next one when it is new to the batch.
    fn slot_of(&mut self, bytes: &[u8]) -> u32 {
        use std::hash::BuildHasher;
        let hash = self.hasher.hash_one(bytes);
        let (arena, spans) = (&self.arena, &self.spans);
        let eq = |s: &u32| {
            let (a, b) = spans[*s as usize];
            crate::bytes::eq(&arena[a as usize..b as usize], bytes)
        };
        if let Some(s) = self.table.find(hash, eq) {
            return *s;
        }
        let slot = self.spans.len() as u32;
        let start = self.arena.len() as u32;
        self.arena.extend_from_slice(bytes);
        self.spans.push((start, self.arena.len() as u32));
        self.slot_groups.push((NONE, NONE));
        let (arena, spans, hasher) = (&self.arena, &self.spans, &self.hasher);
        self.table.insert_unique(hash, slot, |s| {
            let (a, b) = spans[*s as usize];
            hasher.hash_one(&arena[a as usize..b as usize])
        });
        slot
    }

    /// Adds record `rec` at `ts` with windows `windows` (non-empty) to the key in `slot`.
    fn add(&mut self, slot: u32, rec: u32, ts: Timestamp, windows: &[TimeWindow]) {
        let slot = slot as usize;
        let last = self.slot_groups[slot].1;
        if last != NONE {
            let g = &mut self.groups[last as usize];
            if g.first == windows[0] && g.windows == windows.len() {
                self.next_rec[g.tail as usize] = rec;
                g.tail = rec;
                return;
            }
        }
        let id = self.groups.len() as u32;
        self.groups.push(Group {
            ts,
            first: windows[0],
            windows: windows.len(),
            head: rec,
            tail: rec,
            next: NONE,
        });
        if last == NONE {
            self.slot_groups[slot].0 = id;
        } else {
            self.groups[last as usize].next = id;
        }
        self.slot_groups[slot].1 = id;
    }
}

/// State names of the window operator's layouts: per (key, window), per key (sessions),
/// per (key, slice).
const WINDOWS_STATE: &str = "window-contents";
const SESSIONS_STATE: &str = "window-sessions";
const SLICES_STATE: &str = "window-slices";

struct WindowOperator<K, T, W: WindowFunction<K, T>> {
    spec: WindowSpec,
    lateness: i64,
    late_port: Option<usize>,
    f: Arc<W>,
    key_fn: crate::api::KeyExtractor<K, T>,
    key_writer: Option<crate::api::KeyWriter<T>>,
    keyed: KeyedStore,
    /// Per (key, window) accumulators; for sessions, per key a list of (window, acc); for
    /// sliced windows, per key a list of (slice start, acc), oldest first.
    state: usize,
    /// The slice length when the operator keeps per-slice state (sliding or cumulating
    /// windows, a function that merges, no allowed lateness): one accumulator per (key,
    /// slice), one timer per (key, window), a window's slices merged when it fires. A key's
    /// slices are one state entry, so adding to a slice and firing a window are one state
    /// access each, whichever of the window's slices the key has records in.
    slice_len: Option<i64>,
    watermark: Timestamp,
    /// The latest record's key, serialized in `key_buf` (`None` when the key writer wrote
    /// it without building the key).
    last_key: Option<K>,
    key_buf: Vec<u8>,
    /// Whether `key_buf` holds the latest record's key; the writer's scratch buffer.
    key_noted: bool,
    key_scratch: Vec<u8>,
    windows: Vec<TimeWindow>,
    /// The current batch's keys and (key, window, record) triples, reused across batches.
    batch: BatchGroups,
    /// Per record of the current batch: whether a window took it.
    accepted: Vec<bool>,
    late_dropped: u64,
    restored: Option<std::sync::Arc<crate::checkpoint::OperatorSubtaskState>>,
    _p: PhantomData<fn() -> T>,
}

impl<K: Key, T: Data, W: WindowFunction<K, T>> WindowOperator<K, T, W> {
    fn new(
        spec: WindowSpec,
        lateness: i64,
        late_tag: Option<String>,
        f: Arc<W>,
        (key_fn, key_writer): (
            crate::api::KeyExtractor<K, T>,
            Option<crate::api::KeyWriter<T>>,
        ),
        info: SubtaskInfo,
    ) -> Self {
        let mut keyed = info.keyed_store();
        let lateness = if spec.event_time { lateness } else { 0 };
        let slice_len = spec.slice_len().filter(|_| W::SLICEABLE && lateness == 0);
        let state = if matches!(spec.kind, Kind::Session { .. }) {
            keyed
                .backend
                .register::<Vec<(TimeWindow, W::Acc)>>(&StateDescriptor::new(SESSIONS_STATE))
        } else if slice_len.is_some() {
            keyed
                .backend
                .register::<Vec<(Timestamp, W::Acc)>>(&StateDescriptor::new(SLICES_STATE))
        } else {
            keyed
                .backend
                .register::<W::Acc>(&StateDescriptor::new(WINDOWS_STATE))
        };
        WindowOperator {
            spec,
            lateness,
            slice_len,
            late_port: late_tag.and_then(|t| info.side_port(&t)),
            f,
            key_fn,
            key_writer,
            keyed,
            state,
            watermark: MIN_WATERMARK,
            last_key: None,
            key_buf: Vec::new(),
            key_noted: false,
            key_scratch: Vec::new(),
            windows: Vec::new(),
            batch: BatchGroups::default(),
            accepted: Vec::new(),
            late_dropped: 0,
            restored: info.restored.clone(),
            _p: PhantomData,
        }
    }

    /// The time that places a record in windows: its event time, or `now` for
    /// processing-time windows.
    fn record_time(&self, rec: &Rec<T>, now: Timestamp) -> Result<Timestamp> {
        if !self.spec.event_time {
            return Ok(now);
        }
        if rec.ts == NO_TIMESTAMP {
            return Err(Error::MissingTimestamp("window".into()));
        }
        Ok(rec.ts)
    }

    /// Makes `key` the current record's key in `key_buf`, serializing it only when it differs
    /// from the previous record's (records of a key often come in runs: a hot key, or a
    /// cascaded window's rows). Returns whether it changed.
    fn note_key(&mut self, key: K) -> bool {
        if self.last_key.as_ref() == Some(&key) {
            return false;
        }
        serialize_key(&key, &mut self.key_buf);
        self.last_key = Some(key);
        self.key_noted = true;
        true
    }

    /// [`note_key`](Self::note_key) for the key of `value`: with a key writer, its bytes are
    /// written and compared without building the key. Returns whether it changed.
    fn note_record_key(&mut self, value: &T) -> bool {
        let Some(write) = &self.key_writer else {
            return self.note_key((self.key_fn)(value));
        };
        let (scratch, last) = (&mut self.key_scratch, &mut self.key_buf);
        if !note_written_key(write, &self.key_fn, value, scratch, last, self.key_noted) {
            return false;
        }
        self.last_key = None;
        self.key_noted = true;
        true
    }

    /// The key of `value`, the record [`note_record_key`](Self::note_record_key) noted last.
    fn record_key(&self, value: &T) -> K {
        self.last_key
            .clone()
            .unwrap_or_else(|| (self.key_fn)(value))
    }

    fn cleanup_time(&self, w: &TimeWindow) -> Timestamp {
        w.max_timestamp().saturating_add(self.lateness)
    }

    /// Registers the firing and cleanup timers of a window of the current key.
    fn register_timers(&mut self, w: &TimeWindow) {
        let ns = w.to_bytes();
        let key = &self.keyed.backend.current.bytes;
        if self.spec.event_time {
            if w.max_timestamp() > self.watermark {
                self.keyed
                    .event_timers
                    .register(w.max_timestamp(), key, &ns);
            }
            let cleanup = self.cleanup_time(w);
            if cleanup != w.max_timestamp() || w.max_timestamp() <= self.watermark {
                self.keyed.event_timers.register(cleanup, key, &ns);
            }
        } else {
            self.keyed
                .processing_timers
                .register(w.max_timestamp(), key, &ns);
        }
    }

    fn delete_timers(&mut self, w: &TimeWindow) {
        let ns = w.to_bytes();
        let key = &self.keyed.backend.current.bytes;
        if self.spec.event_time {
            self.keyed.event_timers.delete(w.max_timestamp(), key, &ns);
            self.keyed
                .event_timers
                .delete(self.cleanup_time(w), key, &ns);
        } else {
            self.keyed
                .processing_timers
                .delete(w.max_timestamp(), key, &ns);
        }
    }

    /// Adds the records of one batch to their (non-session) windows. Records that share a
    /// key and a window are folded into that window's accumulator under one state access and
    /// one timer registration, in their order in the batch, so results are those of adding
    /// them one by one. Windows already behind the watermark (late but within allowed
    /// lateness) take each record on its own, since each one fires the window again.
    /// Returns, per record, whether any window took it.
    fn add_batch_to_windows(
        &mut self,
        recs: &[Rec<T>],
        now: Timestamp,
        coll: &mut Collector<W::Out>,
        accepted: &mut Vec<bool>,
    ) -> Result<()> {
        let mut windows = std::mem::take(&mut self.windows);
        let mut batch = std::mem::take(&mut self.batch);
        batch.clear(recs.len());
        accepted.clear();
        // The slot of the noted key in this batch, once known.
        let mut slot = None;
        for (i, rec) in recs.iter().enumerate() {
            let ts = self.record_time(rec, now)?;
            if self.note_record_key(&rec.value) {
                slot = None;
            }
            self.spec.assign(ts, &mut windows);
            let mut took = false;
            let mut on_time = false;
            for w in &windows {
                if self.spec.event_time && self.cleanup_time(w) <= self.watermark {
                    continue; // window already purged
                }
                took = true;
                if self.spec.event_time && w.max_timestamp() <= self.watermark {
                    self.keyed.backend.set_current_key_bytes(&self.key_buf);
                    let key = self.record_key(&rec.value);
                    self.add_late(key, &rec.value, w, coll)?;
                } else {
                    on_time = true;
                }
            }
            if on_time {
                let s = *slot.get_or_insert_with(|| batch.slot_of(&self.key_buf));
                batch.add(s, i as u32, ts, &windows);
            }
            // A time no window covers (in the gaps of windows shorter than their slide) is
            // passed over, and counted as late only if it is behind the watermark (as Flink
            // does).
            if windows.is_empty() {
                took = !self.spec.event_time || ts.saturating_add(self.lateness) > self.watermark;
            }
            accepted.push(took);
        }
        for slot in 0..batch.spans.len() {
            self.keyed.backend.set_current_key_bytes(batch.key(slot));
            let mut g = batch.slot_groups[slot].0;
            while g != NONE {
                let group = &batch.groups[g as usize];
                self.spec.assign(group.ts, &mut windows);
                for w in &windows {
                    if self.spec.event_time && w.max_timestamp() <= self.watermark {
                        continue; // purged, or late: taken record by record above
                    }
                    let f = &self.f;
                    let next = &batch.next_rec;
                    let (_, created) = self.keyed.backend.update_with(
                        self.state,
                        &w.to_bytes(),
                        || f.create(),
                        |acc| {
                            let mut r = group.head;
                            while r != NONE {
                                f.add(acc, &recs[r as usize].value);
                                r = next[r as usize];
                            }
                        },
                    );
                    if created {
                        self.register_timers(w);
                    }
                }
                g = group.next;
            }
        }
        self.windows = windows;
        self.batch = batch;
        Ok(())
    }

    /// Adds the records of one batch to their slices (sliced operators). Records that share a
    /// key and a slice are folded into the slice's accumulator under one access to the key's
    /// slices, in their order in the batch. A slice new to its key registers a timer for each
    /// window covering it that has not fired and covers no other slice of the key. A record is
    /// taken when one of its windows has not fired (with no allowed lateness, the windows
    /// that have fired never read the slice again); its slice is still in state then, since
    /// a slice is dropped only once every window covering it has fired.
    /// Returns, per record, whether a window took it.
    fn add_batch_to_slices(
        &mut self,
        recs: &[Rec<T>],
        now: Timestamp,
        len: i64,
        accepted: &mut Vec<bool>,
    ) -> Result<()> {
        let mut windows = std::mem::take(&mut self.windows);
        let mut batch = std::mem::take(&mut self.batch);
        batch.clear(recs.len());
        accepted.clear();
        let event_time = self.spec.event_time;
        let mut slot = None;
        // The latest record's slice and the end of the last window covering it, the same for
        // every time in the slice (slices align with window starts and ends): records mostly
        // come in time order, so both are mostly reused rather than divided out again.
        let mut last: Option<(TimeWindow, Option<Timestamp>)> = None;
        for (i, rec) in recs.iter().enumerate() {
            let ts = self.record_time(rec, now)?;
            let (slice, last_end) = match last {
                Some((s, end)) if s.start <= ts && ts < s.end => (s, end),
                _ => *last.insert((self.spec.slice_of(ts, len), self.spec.last_window_end(ts))),
            };
            // Taken when the window ending last has not fired. A time no window covers (in
            // the gaps of windows shorter than their slide) is passed over, and counted as
            // late only if it is behind the watermark (as Flink does).
            let (add, accept) = match last_end {
                Some(end) => {
                    let on_time = !event_time || end - 1 > self.watermark;
                    (on_time, on_time)
                }
                None => (false, !event_time || ts > self.watermark),
            };
            if add {
                if self.note_record_key(&rec.value) {
                    slot = None;
                }
                let s = *slot.get_or_insert_with(|| batch.slot_of(&self.key_buf));
                batch.add(s, i as u32, ts, std::slice::from_ref(&slice));
            }
            accepted.push(accept);
        }
        for slot in 0..batch.spans.len() {
            self.keyed.backend.set_current_key_bytes(batch.key(slot));
            let mut g = batch.slot_groups[slot].0;
            while g != NONE {
                let group = &batch.groups[g as usize];
                let f = &self.f;
                let next = &batch.next_rec;
                let spec = self.spec;
                let start = group.first.start;
                let (created, _) = self.keyed.backend.update_with(
                    self.state,
                    &[],
                    Vec::new,
                    |slices: &mut Vec<(Timestamp, W::Acc)>| {
                        // Records mostly go to the newest slice: search from the back.
                        let at = slices
                            .iter()
                            .rposition(|(s, _)| *s <= start)
                            .map_or(0, |p| p + 1);
                        let created = at == 0 || slices[at - 1].0 != start;
                        if created {
                            slices.insert(at, (start, f.create()));
                            // The new slice's windows that cover another slice of the key
                            // have their timer: it was registered with that slice, and they
                            // have not fired since (a window that fired before that slice
                            // was created has not become unfired).
                            spec.assign(group.ts, &mut windows);
                            windows.retain(|w| {
                                !slices
                                    .iter()
                                    .any(|(s, _)| *s != start && *s >= w.start && *s < w.end)
                            });
                        }
                        let acc = &mut slices[if created { at } else { at - 1 }].1;
                        let mut r = group.head;
                        while r != NONE {
                            f.add(acc, &recs[r as usize].value);
                            r = next[r as usize];
                        }
                        created
                    },
                );
                if created {
                    let key = &self.keyed.backend.current.bytes;
                    for w in &windows {
                        if !event_time {
                            self.keyed.processing_timers.register(
                                w.max_timestamp(),
                                key,
                                &w.to_bytes(),
                            );
                        } else if w.max_timestamp() > self.watermark {
                            // Registered once per (key, window): see the retain above.
                            self.keyed.event_timer_batches.register(
                                w.max_timestamp(),
                                key,
                                &w.to_bytes(),
                            );
                        }
                    }
                }
                g = group.next;
            }
        }
        self.windows = windows;
        self.batch = batch;
        Ok(())
    }

    /// Fires window `w` of the current key on a sliced operator: merges the accumulators of
    /// its slices, oldest first, emits the result, and drops the slices no later window
    /// covers (and the key's entry with its last slice).
    fn fire_slices(&mut self, key: K, w: &TimeWindow, coll: &mut Collector<W::Out>) -> Result<()> {
        let (free_from, free_to) = self.spec.slices_freed_by(w);
        let f = &self.f;
        let fired =
            self.keyed
                .backend
                .mutate(self.state, &[], |slices: &mut Vec<(Timestamp, W::Acc)>| {
                    let mut acc: Option<W::Acc> = None;
                    let mut i = 0;
                    while i < slices.len() && slices[i].0 < w.end {
                        let start = slices[i].0;
                        if start < w.start {
                            i += 1;
                            continue;
                        }
                        // A slice no later window needs is merged by value; the others
                        // are merged from where they are (the first one copied).
                        if start >= free_from && start < free_to {
                            let part = slices.remove(i).1;
                            match &mut acc {
                                None => acc = Some(part),
                                Some(a) => f.merge(part, a),
                            }
                        } else {
                            i += 1;
                            let part = &slices[i - 1].1;
                            match &mut acc {
                                None => acc = Some(part.clone()),
                                Some(a) => f.merge_ref(part, a),
                            }
                        }
                    }
                    // The key's entry goes with its last slice, in the same lookup.
                    (acc, !slices.is_empty())
                });
        match fired.flatten() {
            Some(acc) => {
                coll.ts = w.max_timestamp();
                self.f.emit(key, w, &acc, coll)
            }
            None => Ok(()),
        }
    }

    /// Adds one record to a window of the current key that has fired already and is kept
    /// for allowed lateness: the window fires again with the updated contents.
    fn add_late(
        &mut self,
        key: K,
        value: &T,
        w: &TimeWindow,
        coll: &mut Collector<W::Out>,
    ) -> Result<()> {
        let f = &self.f;
        let ns = w.to_bytes();
        let (_, created) =
            self.keyed
                .backend
                .update_with(self.state, &ns, || f.create(), |acc| f.add(acc, value));
        if created {
            self.register_timers(w);
        }
        let acc = self
            .keyed
            .backend
            .get::<W::Acc>(self.state, &ns)
            .expect("just updated");
        coll.ts = w.max_timestamp();
        self.f.emit(key, w, &acc, coll)
    }

    fn add_to_session(
        &mut self,
        key: &K,
        rec: &Rec<T>,
        ts: Timestamp,
        coll: &mut Collector<W::Out>,
    ) -> Result<bool> {
        let Kind::Session { gap } = self.spec.kind else {
            unreachable!("session operator")
        };
        let mut merged = TimeWindow {
            start: ts,
            end: ts + gap,
        };
        let sessions: Vec<(TimeWindow, W::Acc)> = self
            .keyed
            .backend
            .remove(self.state, &[])
            .unwrap_or_default();
        let (overlapping, mut keep): (Vec<_>, Vec<_>) = sessions
            .into_iter()
            .partition(|(w, _)| w.intersects(&merged));
        for (w, _) in &overlapping {
            merged = merged.cover(w);
        }
        if self.spec.event_time && self.cleanup_time(&merged) <= self.watermark {
            // Only possible when nothing was merged: existing sessions are never past cleanup.
            keep.extend(overlapping);
            if !keep.is_empty() {
                self.keyed.backend.put(self.state, &[], keep);
            }
            return Ok(false);
        }
        let mut acc = self.f.create();
        for (w, a) in overlapping {
            self.delete_timers(&w);
            self.f.merge(a, &mut acc);
        }
        self.f.add(&mut acc, &rec.value);
        self.register_timers(&merged);
        if self.spec.event_time && merged.max_timestamp() <= self.watermark {
            coll.ts = merged.max_timestamp();
            self.f.emit(key.clone(), &merged, &acc, coll)?;
        }
        keep.push((merged, acc));
        keep.sort_by_key(|(w, _)| w.start);
        self.keyed.backend.put(self.state, &[], keep);
        Ok(true)
    }

    /// A record no window took: to the late side output when there is one, else dropped
    /// and counted.
    fn reject(&mut self, rec: Rec<T>, late: &mut Vec<Rec<T>>) {
        match self.late_port {
            Some(_) => late.push(rec),
            None => self.late_dropped += 1,
        }
    }

    /// Handles a due timer: fire the window at its end, drop it at its cleanup time.
    fn on_timer(&mut self, t: Timer, coll: &mut Collector<W::Out>) -> Result<()> {
        self.fire_timer(t.ts, t.key(), t.ns(), coll)
    }

    /// A timer at `ts` of key `key_bytes` and window `ns` fired.
    fn fire_timer(
        &mut self,
        ts: Timestamp,
        key_bytes: &[u8],
        ns: &[u8],
        coll: &mut Collector<W::Out>,
    ) -> Result<()> {
        self.keyed.backend.set_current_key_bytes(key_bytes);
        let key: K = postcard::from_bytes(key_bytes).map_err(|e| Error::State {
            state: "window timer key".into(),
            reason: e.to_string(),
        })?;
        let w = TimeWindow::from_bytes(ns);
        if self.slice_len.is_some() {
            return self.fire_slices(key, &w, coll);
        }
        let fire = ts == w.max_timestamp();
        let cleanup = !self.spec.event_time || ts == self.cleanup_time(&w);
        coll.ts = w.max_timestamp();
        if matches!(self.spec.kind, Kind::Session { .. }) {
            let mut sessions: Vec<(TimeWindow, W::Acc)> = self
                .keyed
                .backend
                .remove(self.state, &[])
                .unwrap_or_default();
            if let Some(pos) = sessions.iter().position(|(s, _)| *s == w) {
                if fire {
                    self.f.emit(key, &w, &sessions[pos].1, coll)?;
                }
                if cleanup {
                    sessions.remove(pos);
                }
            }
            if !sessions.is_empty() {
                self.keyed.backend.put(self.state, &[], sessions);
            }
        } else {
            let ns = w.to_bytes();
            if cleanup {
                // Fired and dropped at once (no allowed lateness): one removal, no copy.
                let acc = self.keyed.backend.remove::<W::Acc>(self.state, &ns);
                if fire && let Some(acc) = acc {
                    self.f.emit(key, &w, &acc, coll)?;
                }
            } else if fire && let Some(acc) = self.keyed.backend.get::<W::Acc>(self.state, &ns) {
                self.f.emit(key, &w, &acc, coll)?;
            }
        }
        Ok(())
    }
}

impl<K: Key, T: Data, W: WindowFunction<K, T>> Operator for WindowOperator<K, T, W> {
    fn open(&mut self) -> Result<()> {
        let restored = self.restored.take();
        // A checkpoint of the other layout (per window vs per slice) cannot be converted:
        // its state is unclaimed here, and the restore fails naming it.
        self.keyed.restore(
            restored
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
        let recs = downcast::<T>(batch);
        let mut coll = Collector::new();
        let mut late = Vec::new();
        let now = now_ms();
        self.keyed.backend.now = now;
        if !matches!(self.spec.kind, Kind::Session { .. }) {
            let mut accepted = std::mem::take(&mut self.accepted);
            match self.slice_len {
                Some(len) => self.add_batch_to_slices(&recs, now, len, &mut accepted)?,
                None => self.add_batch_to_windows(&recs, now, &mut coll, &mut accepted)?,
            }
            if accepted.iter().any(|a| !a) {
                for (rec, took) in recs.into_iter().zip(&accepted) {
                    if !took {
                        self.reject(rec, &mut late);
                    }
                }
            }
            self.accepted = accepted;
        } else {
            for rec in recs {
                let ts = self.record_time(&rec, now)?;
                self.note_key((self.key_fn)(&rec.value));
                self.keyed.backend.set_current_key_bytes(&self.key_buf);
                let key = self.last_key.clone().expect("noted above");
                if !self.add_to_session(&key, &rec, ts, &mut coll)? {
                    self.reject(rec, &mut late);
                }
            }
        }
        out.emit(0, Box::new(coll.buf));
        if let Some(port) = self.late_port {
            out.emit(port, Box::new(late));
        }
        Ok(())
    }

    fn watermark(&mut self, wm: Timestamp, out: &mut Output) -> Result<()> {
        self.watermark = wm;
        let mut coll = Collector::new();
        // Both event-time queues, in time order (restored timers of a sliced operator sit in
        // the per-timer queue, its new ones in batches).
        loop {
            let batch = self.keyed.event_timer_batches.peek();
            match self.keyed.event_timers.peek() {
                Some(t) if t <= wm && batch.is_none_or(|b| t <= b) => {
                    let t = self.keyed.event_timers.pop_due(wm).expect("peeked");
                    self.on_timer(t, &mut coll)?;
                }
                _ => match self.keyed.event_timer_batches.pop_due(wm) {
                    Some((ts, timers)) => {
                        for (key, ns) in timers.iter() {
                            self.fire_timer(ts, key, ns, &mut coll)?;
                        }
                    }
                    None => break,
                },
            }
        }
        out.emit(0, Box::new(coll.buf));
        out.watermark(wm);
        Ok(())
    }

    fn next_processing_time(&mut self) -> Option<Timestamp> {
        self.keyed.processing_timers.peek()
    }

    fn processing_time(&mut self, now: Timestamp, out: &mut Output) -> Result<()> {
        let mut coll = Collector::new();
        while let Some(t) = self.keyed.processing_timers.pop_due(now) {
            self.on_timer(t, &mut coll)?;
        }
        out.emit(0, Box::new(coll.buf));
        Ok(())
    }

    fn end_of_input(&mut self, out: &mut Output) -> Result<()> {
        self.processing_time(Timestamp::MAX, out)
    }

    fn state_entries(&self) -> usize {
        self.keyed.entries()
    }

    fn skipped(&self) -> u64 {
        self.late_dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn windows(spec: WindowSpec, ts: i64) -> Vec<(i64, i64)> {
        let mut v = Vec::new();
        spec.assign(ts, &mut v);
        v.into_iter().map(|w| (w.start, w.end)).collect()
    }

    #[test]
    fn tumbling_windows_align_to_the_epoch_and_offset() {
        let m = WindowSpec::tumbling(Duration::from_secs(60));
        assert_eq!(windows(m, 0), vec![(0, 60_000)]);
        assert_eq!(windows(m, 59_999), vec![(0, 60_000)]);
        assert_eq!(windows(m, 60_000), vec![(60_000, 120_000)]);
        assert_eq!(windows(m, -1), vec![(-60_000, 0)]);
        let shifted = m.with_offset(Duration::from_secs(15));
        assert_eq!(windows(shifted, 10_000), vec![(-45_000, 15_000)]);
    }

    #[test]
    fn sliding_windows_cover_every_window_containing_the_timestamp() {
        let s = WindowSpec::sliding(Duration::from_secs(10), Duration::from_secs(5));
        assert_eq!(windows(s, 12_000), vec![(10_000, 20_000), (5_000, 15_000)]);
        assert_eq!(windows(s, 10_000), vec![(10_000, 20_000), (5_000, 15_000)]);
        assert_eq!(windows(s, 9_999), vec![(5_000, 15_000), (0, 10_000)]);
    }

    #[test]
    fn cumulating_windows_grow_by_step_from_each_max_size_period() {
        let c = WindowSpec::cumulating(Duration::from_secs(60), Duration::from_secs(20));
        // 25 s is past the first step: every window ending after it, up to the full minute.
        assert_eq!(windows(c, 25_000), vec![(0, 40_000), (0, 60_000)]);
        assert_eq!(windows(c, 0), vec![(0, 20_000), (0, 40_000), (0, 60_000)]);
        assert_eq!(windows(c, 19_999), windows(c, 0));
        assert_eq!(windows(c, 59_999), vec![(0, 60_000)]);
        // The next period starts over.
        assert_eq!(
            windows(c, 60_000),
            vec![(60_000, 80_000), (60_000, 100_000), (60_000, 120_000)]
        );
        assert_eq!(windows(c, -1), vec![(-60_000, 0)]);
        let shifted = c.with_offset(Duration::from_secs(10));
        assert_eq!(windows(shifted, 5_000), vec![(-50_000, 10_000)]);
        let uneven = WindowSpec::cumulating(Duration::from_secs(50), Duration::from_secs(20));
        assert!(uneven.validate().is_err());
    }

    #[test]
    fn sliding_and_cumulating_windows_are_cut_into_slices_aligned_with_them() {
        let w = |start, end| TimeWindow { start, end };
        let secs = Duration::from_secs;
        let hop = WindowSpec::sliding(secs(10), secs(4));
        assert_eq!(hop.slice_len(), Some(2_000), "gcd of size and slide");
        assert_eq!(hop.slice_of(5_500, 2_000), w(4_000, 6_000));
        assert_eq!(hop.slice_of(-1, 2_000), w(-2_000, 0));
        assert_eq!(hop.last_window_end(5_500), Some(14_000));
        // [4,14) is the last window over the slices of [4,8); [8,18) covers the rest.
        assert_eq!(hop.slices_freed_by(&w(4_000, 14_000)), (4_000, 8_000));
        // A slide longer than the size leaves time in no window.
        let gaps = WindowSpec::sliding(secs(2), secs(5));
        assert_eq!(gaps.slice_len(), Some(1_000));
        assert_eq!(gaps.last_window_end(1_000), Some(2_000));
        assert_eq!(gaps.last_window_end(3_000), None);
        assert_eq!(gaps.slices_freed_by(&w(0, 2_000)), (0, 2_000));
        let cumulate = WindowSpec::cumulating(secs(60), secs(20));
        assert_eq!(cumulate.slice_len(), Some(20_000));
        assert_eq!(cumulate.last_window_end(25_000), Some(60_000));
        assert_eq!(cumulate.slices_freed_by(&w(0, 40_000)), (0, 0));
        assert_eq!(cumulate.slices_freed_by(&w(0, 60_000)), (0, 60_000));
        let shifted = cumulate.with_offset(secs(10));
        assert_eq!(shifted.slice_of(5_000, 20_000), w(-10_000, 10_000));
        // Not sliced: tumbling windows, and windows of more than 256 slices.
        assert_eq!(WindowSpec::tumbling(secs(10)).slice_len(), None);
        let fine = WindowSpec::sliding(Duration::from_millis(1_001), secs(1));
        assert_eq!(fine.slice_len(), None);
    }

    #[test]
    fn aggregate_tuples_combine_and_merge() {
        use agg::*;
        let f = (
            count(),
            sum(|x: &i64| *x),
            min(|x: &i64| *x),
            avg(|x: &i64| *x),
        );
        let mut a = AggregateFunction::<i64>::create_accumulator(&f);
        for v in [4, -2, 10] {
            f.add(&v, &mut a);
        }
        let mut b = AggregateFunction::<i64>::create_accumulator(&f);
        f.add(&1, &mut b);
        f.merge(b, &mut a);
        assert_eq!(f.get_result(&a), (4, 13, -2, 3.25));
        let mx = max(|x: &f64| *x);
        let mut m = AggregateFunction::<f64>::create_accumulator(&mx);
        mx.add(&1.5, &mut m);
        mx.add(&-3.0, &mut m);
        assert_eq!(mx.get_result(&m), 1.5);
    }
}
