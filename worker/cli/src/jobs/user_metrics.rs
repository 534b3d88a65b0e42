//! The main example: synthetic click events, one-minute tumbling event-time windows, event
//! count and amount per user, printed as each window closes.

use super::{JobArgs, JobDef};
use anyhow::Result;
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use weir_engine::api::StreamExecutionEnvironment;
use weir_engine::connectors::{DataGen, FileSink, PrintSink};
use weir_engine::time::{WatermarkStrategy, format_ts};
use weir_engine::window::{WindowSpec, Windowed, agg};

pub const JOB: JobDef = JobDef {
    name: "user-metrics",
    about: "clicks per user in 1-minute tumbling event-time windows (generated data, printed)",
    args: &[
        ("events", "100000", "number of events to generate"),
        ("users", "8", "number of distinct users"),
        (
            "rate",
            "0",
            "events per second; 0 means as fast as possible",
        ),
        (
            "output",
            "-",
            "directory for exactly-once JSON-lines results; '-' prints them",
        ),
    ],
    build,
};

/// 2026-01-01T00:00:00Z: generated event time starts here.
pub const EPOCH_2026: i64 = 1_767_225_600_000;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Click {
    pub user_id: String,
    pub amount: f64,
    pub ts: i64,
}

fn build(env: &StreamExecutionEnvironment, args: &JobArgs) -> Result<()> {
    let events: u64 = args.number("events")?;
    let users: u64 = args.number::<u64>("users")?.max(1);
    let rate: f64 = args.number("rate")?;
    // 20 ms of event time per event, with up to 2 s of disorder.
    let mut clicks = DataGen::new(7, move |g| Click {
        user_id: format!("user_{}", g.rng.gen_range(0..users)),
        amount: (g.rng.gen_range(100..10_000) as f64) / 100.0,
        ts: EPOCH_2026 + g.index as i64 * 20 - g.rng.gen_range(0..2_000),
    })
    .bounded(events);
    if rate > 0.0 {
        clicks = clicks.rows_per_second(rate);
    }
    let lines = env
        .from_source(
            clicks,
            Some(
                WatermarkStrategy::for_bounded_out_of_orderness(Duration::from_secs(2))
                    .with_timestamp_assigner(|c: &Click| c.ts),
            ),
            "Clicks",
        )
        .uid("clicks")
        .key_by(|c: &Click| c.user_id.clone())
        .window(WindowSpec::tumbling(Duration::from_secs(60)))
        .aggregate((agg::count(), agg::sum(|c: &Click| c.amount)))
        .uid("clicks-per-minute")
        .map(|w: Windowed<String, (u64, f64)>| {
            format!(
                "{} .. {}  {:<8} events={:<5} amount={:.2}",
                format_ts(w.window.start),
                &format_ts(w.window.end)[11..],
                w.key,
                w.value.0,
                w.value.1
            )
        })
        .uid("format");
    match args.get("output") {
        "-" => lines.sink_to(PrintSink::display()).name("Print"),
        dir => lines.sink_to(FileSink::json_lines(dir)).name("Files"),
    }
    .uid("sink");
    Ok(())
}
