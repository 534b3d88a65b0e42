//! What tests of the engine and of the crates built on it share (not an API for jobs).

use crate::api::{DataStream, StreamExecutionEnvironment};
use crate::connectors::DataGen;
use crate::time::WatermarkStrategy;
use std::time::Duration;

/// The seed of a randomized test: `WEIR_TEST_SEED`, else the clock. Print it in every
/// assertion so a failure can be replayed.
pub fn test_seed() -> u64 {
    match std::env::var("WEIR_TEST_SEED") {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("WEIR_TEST_SEED must be a number, got '{v}'")),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("the clock is after 1970")
            .as_nanos() as u64,
    }
}

/// `count` generated events `(k<index % 7>, index)` from 3 source splits, 10 ms of event time
/// apart, at `rate` per second; source uid `gen`. Restored splits may be up to one round (128
/// events) apart: watermarks allow 2 s of disorder.
pub fn keyed_events(
    env: &StreamExecutionEnvironment,
    count: u64,
    rate: f64,
) -> DataStream<(String, u64)> {
    env.from_source(
        DataGen::new(3, |g| (format!("k{}", g.index % 7), g.index))
            .bounded(count)
            .rows_per_second(rate),
        Some(
            WatermarkStrategy::for_bounded_out_of_orderness(Duration::from_secs(2))
                .with_timestamp_assigner(|e: &(String, u64)| e.1 as i64 * 10),
        ),
        "gen",
    )
    .uid("gen")
}
