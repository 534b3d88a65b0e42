//! Window assigners: which windows (and, for sliced windows, which slice) a record
//! belongs to.

use super::TimeWindow;
use crate::error::{Error, Result};
use crate::time::{Timestamp, duration_ms};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
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
    pub(super) kind: Kind,
    pub(super) event_time: bool,
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

    pub(super) fn validate(&self) -> Result<()> {
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
pub(super) const MAX_SLICES_PER_WINDOW: i64 = 256;

pub(super) fn gcd(mut a: i64, mut b: i64) -> i64 {
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
    pub(super) fn slice_len(&self) -> Option<i64> {
        let (size, len) = match self.kind {
            Kind::Sliding { size, slide, .. } => (size, gcd(size, slide)),
            Kind::Cumulating { max_size, step, .. } => (max_size, step),
            Kind::Tumbling { .. } | Kind::Session { .. } => return None,
        };
        (len > 0 && size / len <= MAX_SLICES_PER_WINDOW).then_some(len)
    }

    /// The end of the window `ts` falls into that ends last; `None` when it falls into none
    /// (sliding windows with a slide longer than their size leave gaps).
    pub(super) fn last_window_end(&self, ts: Timestamp) -> Option<Timestamp> {
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
    pub(super) fn slice_of(&self, ts: Timestamp, len: i64) -> TimeWindow {
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
    pub(super) fn slices_freed_by(&self, w: &TimeWindow) -> (Timestamp, Timestamp) {
        match self.kind {
            Kind::Sliding { size, slide, .. } => (w.start, w.start + slide.min(size)),
            Kind::Cumulating { max_size, .. } if w.end - w.start == max_size => (w.start, w.end),
            _ => (w.start, w.start),
        }
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
}
