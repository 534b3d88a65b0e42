//! Event time: timestamps, watermarks and the strategies that generate them.
//!
//! A watermark `w` promises that no more records with timestamp `<= w` are expected. The
//! bounded-out-of-orderness strategy emits `max_seen - bound - 1`, exactly as Flink does, so
//! jobs ported from Flink fire their windows at the same moments.

use std::sync::Arc;
use std::time::Duration;

/// Milliseconds since the Unix epoch (event time or processing time).
pub type Timestamp = i64;

/// Timestamp of a record that has none (before timestamps are assigned).
pub const NO_TIMESTAMP: Timestamp = i64::MIN;
/// The smallest watermark: nothing is known yet.
pub const MIN_WATERMARK: Timestamp = i64::MIN;
/// The watermark sent at end of input: every event-time timer fires.
pub const MAX_WATERMARK: Timestamp = i64::MAX;

/// Current wall-clock time in milliseconds since the epoch (processing time).
pub fn now_ms() -> Timestamp {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub(crate) fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Formats a timestamp for humans (`2026-01-01T00:01:00.000Z`), or `-` when unset.
pub fn format_ts(ts: Timestamp) -> String {
    if ts == MIN_WATERMARK || ts == NO_TIMESTAMP {
        return "-".into();
    }
    if ts == MAX_WATERMARK {
        return "end".into();
    }
    let secs = ts.div_euclid(1000);
    let ms = ts.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60
    )
}

/// The (year, month, day) of `z` days since 1970-01-01 in the proleptic Gregorian calendar
/// (Howard Hinnant's days-to-civil algorithm).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

type TimestampFn<T> = Arc<dyn Fn(&T) -> Timestamp + Send + Sync>;

/// Says why a record has no timestamp (for the decode-error policy's error or warning).
pub(crate) type MissingFn<T> = Arc<dyn Fn(&T) -> String + Send + Sync>;

/// How records get their event timestamps and how watermarks are derived from them.
///
/// ```
/// use std::time::Duration;
/// use weir_engine::time::WatermarkStrategy;
/// #[derive(Clone)]
/// struct Click { ts: i64 }
/// let strategy = WatermarkStrategy::<Click>::for_bounded_out_of_orderness(Duration::from_secs(5))
///     .with_timestamp_assigner(|c| c.ts)
///     .with_idleness(Duration::from_secs(60));
/// # let _ = strategy;
/// ```
pub struct WatermarkStrategy<T> {
    pub(crate) bound_ms: i64,
    pub(crate) idleness_ms: Option<i64>,
    pub(crate) assigner: Option<TimestampFn<T>>,
    /// What to do with a record the assigner gives no timestamp (`None`: pass it on).
    pub(crate) missing: Option<(crate::config::DecodeErrorPolicy, MissingFn<T>)>,
}

impl<T> Clone for WatermarkStrategy<T> {
    fn clone(&self) -> Self {
        WatermarkStrategy {
            bound_ms: self.bound_ms,
            idleness_ms: self.idleness_ms,
            assigner: self.assigner.clone(),
            missing: self.missing.clone(),
        }
    }
}

impl<T> WatermarkStrategy<T> {
    /// Watermarks trail the largest timestamp seen by `bound`.
    pub fn for_bounded_out_of_orderness(bound: Duration) -> Self {
        WatermarkStrategy {
            bound_ms: duration_ms(bound),
            idleness_ms: None,
            assigner: None,
            missing: None,
        }
    }

    /// Timestamps never decrease: watermark = largest timestamp seen - 1.
    pub fn for_monotonous_timestamps() -> Self {
        Self::for_bounded_out_of_orderness(Duration::ZERO)
    }

    /// Extracts the event timestamp (epoch milliseconds) from each record.
    pub fn with_timestamp_assigner(
        mut self,
        f: impl Fn(&T) -> Timestamp + Send + Sync + 'static,
    ) -> Self {
        self.assigner = Some(Arc::new(f));
        self
    }

    /// Handles records the assigner gives no timestamp ([`NO_TIMESTAMP`]) as undecodable
    /// input: policy `fail` fails the task with `why`'s message, `skip` drops the record and
    /// counts it in the `skipped` metric. Without this they pass on untimed, and an event-time
    /// operator downstream fails on them.
    pub fn on_missing_timestamp(
        mut self,
        policy: crate::config::DecodeErrorPolicy,
        why: impl Fn(&T) -> String + Send + Sync + 'static,
    ) -> Self {
        self.missing = Some((policy, Arc::new(why)));
        self
    }

    /// Marks this input idle when it produces nothing for `timeout` of processing time, so
    /// downstream watermarks advance without it.
    pub fn with_idleness(mut self, timeout: Duration) -> Self {
        self.idleness_ms = Some(duration_ms(timeout));
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_format_as_utc() {
        assert_eq!(format_ts(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_ts(1_767_225_660_123), "2026-01-01T00:01:00.123Z");
        assert_eq!(format_ts(MIN_WATERMARK), "-");
    }
}
