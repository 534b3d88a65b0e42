//! Watermark generation from a [`WatermarkStrategy`], one generator per split, as Flink's
//! `SourceOperator` does: each split (a Kafka partition, a file) has its own bounded
//! out-of-orderness clock and idleness timer, and the output watermark is the minimum over
//! the splits that are not idle. A split that is behind therefore holds the watermark back
//! even when another split of the same subtask runs ahead, and a split that has produced
//! nothing for the idleness timeout stops holding it back until it produces again.
//!
//! A stream that is not split-aware (a plain reader, `assign_timestamps_and_watermarks` in the
//! middle of a job) is one split that never ends.

use crate::connectors::SplitId;
use crate::runtime::{Output, Rec};
use crate::time::{MIN_WATERMARK, NO_TIMESTAMP, Timestamp, WatermarkStrategy};

/// The split of a stream that has no splits of its own.
pub(crate) const WHOLE_STREAM: SplitId = 0;

/// One split's event-time clock.
#[derive(Debug, Clone, Copy)]
struct SplitClock {
    id: SplitId,
    /// Largest timestamp seen in this split.
    max_ts: Timestamp,
    /// Processing time of its last record (or of its creation).
    last_active: Timestamp,
    idle: bool,
}

impl SplitClock {
    fn new(id: SplitId, now: Timestamp) -> Self {
        SplitClock {
            id,
            max_ts: MIN_WATERMARK,
            last_active: now,
            idle: false,
        }
    }
}

/// Assigns timestamps and combines per-split watermarks into the output's watermark and
/// idleness.
pub(crate) struct WatermarkGenerator<T> {
    strategy: WatermarkStrategy<T>,
    /// The splits being read, in the order they were opened (a handful per subtask: a
    /// vector beats a map).
    splits: Vec<SplitClock>,
    /// The last watermark emitted: watermarks never go back, even when a new split opens
    /// behind it.
    emitted: Timestamp,
    /// Whether the output is declared idle.
    idle: bool,
    /// Records left without a timestamp and dropped (`on_missing_timestamp` with `skip`).
    skipped: u64,
    /// Whether records since the last [`Self::drop_missing`] were left without a timestamp
    /// to drop (most batches have none: no pass over them).
    untimed: bool,
}

impl<T> WatermarkGenerator<T> {
    /// A generator over the single split [`WHOLE_STREAM`].
    pub(crate) fn new(strategy: WatermarkStrategy<T>, now: Timestamp) -> Self {
        WatermarkGenerator {
            strategy,
            splits: vec![SplitClock::new(WHOLE_STREAM, now)],
            emitted: MIN_WATERMARK,
            idle: false,
            skipped: 0,
            untimed: false,
        }
    }

    /// Records dropped for want of a timestamp so far.
    pub(crate) fn skipped(&self) -> u64 {
        self.skipped
    }

    /// Drops the records [`Self::on_records`] left without a timestamp, when the strategy
    /// handles them as undecodable input (`on_missing_timestamp` with `skip`); otherwise
    /// they pass on untimed, as before.
    pub(crate) fn drop_missing(&mut self, recs: &mut Vec<Rec<T>>) {
        if std::mem::take(&mut self.untimed) {
            recs.retain(|r| r.ts != NO_TIMESTAMP);
        }
    }

    /// Assigns timestamps to `recs`, a run of records of `split` about to be emitted, and
    /// notes their progress. Declares the output active again first if it was idle, so the
    /// records are not taken as coming from an idle input.
    ///
    /// A record the assigner gives no timestamp follows `on_missing_timestamp`: `fail` is
    /// this error, `skip` counts it (the caller drops it with [`Self::drop_missing`]).
    pub(crate) fn on_records(
        &mut self,
        split: SplitId,
        recs: &mut [Rec<T>],
        now: Timestamp,
        out: &mut Output,
    ) -> crate::error::Result<()> {
        if recs.is_empty() {
            return Ok(());
        }
        // One pass: assign, take the maximum and count the untimed records. NO_TIMESTAMP is
        // MIN_WATERMARK, so an untimed record never raises the maximum.
        const _: () = assert!(NO_TIMESTAMP == MIN_WATERMARK);
        let (mut max, mut missing) = (MIN_WATERMARK, 0usize);
        match &self.strategy.assigner {
            Some(f) => {
                for r in recs.iter_mut() {
                    r.ts = f(&r.value);
                    max = max.max(r.ts);
                    missing += usize::from(r.ts == NO_TIMESTAMP);
                }
            }
            None => {
                for r in recs.iter() {
                    max = max.max(r.ts);
                    missing += usize::from(r.ts == NO_TIMESTAMP);
                }
            }
        }
        if missing > 0
            && let Some((policy, why)) = &self.strategy.missing
        {
            self.untimed = true;
            for r in recs.iter().filter(|r| r.ts == NO_TIMESTAMP) {
                if *policy == crate::config::DecodeErrorPolicy::Fail {
                    return Err(crate::error::Error::User(why(&r.value)));
                }
                self.skipped += 1;
                if self.skipped <= 10 || self.skipped.is_power_of_two() {
                    tracing::warn!(reason = %why(&r.value), skipped = self.skipped, "skipping a record without an event timestamp");
                }
            }
        }
        let clock = match self.splits.iter().position(|s| s.id == split) {
            Some(i) => &mut self.splits[i],
            None => {
                // Records of a split the reader did not list yet: it is open now.
                self.splits.push(SplitClock::new(split, now));
                self.splits.last_mut().expect("just pushed")
            }
        };
        clock.max_ts = clock.max_ts.max(max);
        clock.last_active = now;
        clock.idle = false;
        if self.idle {
            self.idle = false;
            out.idle(false);
        }
        Ok(())
    }

    /// The splits open now: new ones start holding the watermark back (until idle), those
    /// gone (finished) stop counting.
    pub(crate) fn set_splits(&mut self, open: &[SplitId], now: Timestamp) {
        self.splits.retain(|s| open.contains(&s.id));
        for id in open {
            if !self.splits.iter().any(|s| s.id == *id) {
                self.splits.push(SplitClock::new(*id, now));
            }
        }
    }

    /// Marks splits idle whose idleness timeout passed and emits the combined watermark
    /// (the minimum over active splits) if it advanced, or declares the output idle when no
    /// split is active.
    pub(crate) fn advance(&mut self, now: Timestamp, out: &mut Output) {
        if let Some(ms) = self.strategy.idleness_ms {
            for s in &mut self.splits {
                if !s.idle && now.saturating_sub(s.last_active) >= ms {
                    s.idle = true;
                }
            }
        }
        self.combine(out);
    }

    /// Emits the minimum over the splits that are not idle if it advanced, or declares the
    /// output idle when every split is.
    fn combine(&mut self, out: &mut Output) {
        let bound = self.strategy.bound_ms;
        let of = |s: &SplitClock| {
            if s.max_ts == MIN_WATERMARK {
                MIN_WATERMARK
            } else {
                s.max_ts.saturating_sub(bound).saturating_sub(1)
            }
        };
        let combined = self.splits.iter().filter(|s| !s.idle).map(of).min();
        match combined {
            None => {
                // Every split idle: what they read is all there is for now, so the watermark
                // first covers the splits that have records. Otherwise splits that went quiet
                // in the wrong order (the one with records first, an empty one after) would
                // leave those records uncovered until new ones arrive.
                let read = self.splits.iter().filter(|s| s.max_ts != MIN_WATERMARK);
                if let Some(wm) = read.map(of).min()
                    && wm > self.emitted
                {
                    self.emitted = wm;
                    out.watermark(wm);
                }
                if !self.idle {
                    self.idle = true;
                    out.idle(true);
                }
            }
            Some(wm) => {
                if self.idle {
                    // A split opened: it holds the watermark from now on.
                    self.idle = false;
                    out.idle(false);
                }
                if wm > self.emitted {
                    self.emitted = wm;
                    out.watermark(wm);
                }
            }
        }
    }

    /// When [`WatermarkGenerator::advance`] must run next for an idleness timeout to be
    /// noticed on time (`None`: no timeout pending).
    pub(crate) fn next_idle_check(&self) -> Option<Timestamp> {
        let ms = self.strategy.idleness_ms?;
        self.splits
            .iter()
            .filter(|s| !s.idle)
            .map(|s| s.last_active.saturating_add(ms))
            .min()
    }

    /// The largest watermark emitted so far.
    pub(crate) fn emitted(&self) -> Timestamp {
        self.emitted
    }

    /// Records that the final watermark went out.
    pub(crate) fn set_emitted(&mut self, wm: Timestamp) {
        self.emitted = self.emitted.max(wm);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::OutItem;
    use std::time::Duration;

    fn rec(ts: Timestamp) -> Rec<()> {
        Rec { ts, value: () }
    }

    fn strategy(idle_ms: Option<u64>) -> WatermarkStrategy<()> {
        let s = WatermarkStrategy::for_bounded_out_of_orderness(Duration::from_millis(100));
        match idle_ms {
            Some(ms) => s.with_idleness(Duration::from_millis(ms)),
            None => s,
        }
    }

    /// What `out` says, as (watermarks, idle changes).
    fn seen(out: Output) -> (Vec<Timestamp>, Vec<bool>) {
        let mut wms = Vec::new();
        let mut idle = Vec::new();
        for item in out.items {
            match item {
                OutItem::Watermark(w) => wms.push(w),
                OutItem::Idle(i) => idle.push(i),
                OutItem::Data(..) => {}
            }
        }
        (wms, idle)
    }

    #[test]
    fn the_watermark_is_the_minimum_over_splits_and_waits_for_an_empty_one() {
        let mut g = WatermarkGenerator::new(strategy(None), 0);
        g.set_splits(&[1, 2], 0);
        let mut out = Output::default();
        g.on_records(1, &mut [rec(5_000)], 0, &mut out).unwrap();
        g.advance(10_000, &mut out);
        assert_eq!(seen(out), (vec![], vec![]), "split 2 has nothing yet");
        let mut out = Output::default();
        g.on_records(2, &mut [rec(2_000)], 10, &mut out).unwrap();
        g.advance(10, &mut out);
        assert_eq!(seen(out).0, vec![2_000 - 100 - 1]);
        // Split 2 finishes: only split 1 counts.
        let mut out = Output::default();
        g.set_splits(&[1], 20);
        g.advance(20, &mut out);
        assert_eq!(seen(out).0, vec![5_000 - 100 - 1]);
    }

    /// Both splits pass the idleness timeout before the next check: the output goes idle,
    /// but not before the watermark covers the records read (without that, no watermark
    /// ever covered them until new records came: a flaky Kafka test).
    #[test]
    fn when_every_split_goes_idle_the_watermark_first_covers_what_was_read() {
        let mut g = WatermarkGenerator::new(strategy(Some(500)), 0);
        g.set_splits(&[1, 2], 0);
        let mut out = Output::default();
        g.on_records(1, &mut [rec(5_000)], 10, &mut out).unwrap();
        g.advance(10, &mut out);
        let mut out = Output::default();
        g.advance(2_000, &mut out);
        assert_eq!(seen(out), (vec![5_000 - 101], vec![true]));
    }

    #[test]
    fn an_idle_split_stops_holding_back_until_it_has_records_again() {
        let mut g = WatermarkGenerator::new(strategy(Some(1_000)), 0);
        g.set_splits(&[1, 2], 0);
        let mut out = Output::default();
        g.on_records(1, &mut [rec(5_000)], 900, &mut out).unwrap();
        g.advance(999, &mut out);
        assert_eq!(
            seen(out).0,
            Vec::<Timestamp>::new(),
            "split 2 is not idle yet"
        );
        assert_eq!(g.next_idle_check(), Some(1_000));
        let mut out = Output::default();
        g.advance(1_000, &mut out);
        assert_eq!(seen(out).0, vec![5_000 - 101], "split 2 went idle");
        // Split 2 comes back behind: it holds the watermark again (which never regresses).
        let mut out = Output::default();
        g.on_records(2, &mut [rec(3_000)], 1_100, &mut out).unwrap();
        g.on_records(1, &mut [rec(9_000)], 1_100, &mut out).unwrap();
        g.advance(1_100, &mut out);
        assert_eq!(seen(out).0, Vec::<Timestamp>::new());
        let mut out = Output::default();
        g.on_records(2, &mut [rec(8_000)], 1_200, &mut out).unwrap();
        g.advance(1_200, &mut out);
        assert_eq!(seen(out).0, vec![8_000 - 101]);
    }

    #[test]
    fn the_output_is_idle_when_every_split_is_and_active_with_the_next_record() {
        let mut g = WatermarkGenerator::new(strategy(Some(1_000)), 0);
        let mut out = Output::default();
        g.advance(1_000, &mut out);
        assert_eq!(seen(out), (vec![], vec![true]));
        let mut out = Output::default();
        g.on_records(WHOLE_STREAM, &mut [rec(2_000)], 1_500, &mut out)
            .unwrap();
        g.advance(1_500, &mut out);
        assert_eq!(seen(out), (vec![2_000 - 101], vec![false]));
    }

    #[test]
    fn a_reader_without_splits_is_idle_even_without_an_idleness_timeout() {
        let mut g = WatermarkGenerator::new(strategy(None), 0);
        g.set_splits(&[], 0);
        let mut out = Output::default();
        g.advance(0, &mut out);
        assert_eq!(seen(out), (vec![], vec![true]));
        // A split appears (partition discovery): it holds the watermark from now on.
        g.set_splits(&[7], 10);
        let mut out = Output::default();
        g.advance(10, &mut out);
        assert_eq!(seen(out), (vec![], vec![false]));
    }
}
