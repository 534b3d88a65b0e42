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
//!
//! One file per job: `assigner` (which windows a record belongs to), `aggregate` (aggregate
//! functions), `function` (how a window's contents become output), `stream` (the builder
//! on a keyed stream) and `operator` (state, timers, firing).

mod aggregate;
mod assigner;
mod function;
mod operator;
mod stream;

pub use aggregate::{AggregateFunction, agg};
pub use assigner::WindowSpec;
pub use stream::WindowedStream;

use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

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
