//! Backpressure made visible: generated clicks, keyed by user, running totals, into a sink that accepts only
//! `sink-rate` records per second. The source can produce far faster; bounded channels (and
//! credit-based flow control between TaskManagers) slow it to the sink's pace, and its task
//! reports the time it spends blocked as `backPressuredTimeMsPerSecond`.

use super::user_metrics::{Click, EPOCH_2026};
use super::{JobArgs, JobDef};
use anyhow::Result;
use rand::Rng;
use std::time::{Duration, Instant};
use weir_engine::api::StreamExecutionEnvironment;
use weir_engine::connectors::{DataGen, Sink, SinkWriter};
use weir_engine::runtime::{Rec, SubtaskInfo};

pub const JOB: JobDef = JobDef {
    name: "slow-sink",
    about: "backpressure demo: generated clicks, keyed by user, into a sink throttled to sink-rate records/s",
    args: &[
        ("events", "100000000", "number of events to generate"),
        ("users", "64", "number of distinct users"),
        (
            "sink-rate",
            "20000",
            "records per second each sink subtask accepts",
        ),
    ],
    build,
};

/// Accepts at most `rate` records per second per subtask, sleeping to hold the pace.
struct ThrottledSink {
    rate: f64,
}

struct Throttled {
    rate: f64,
    start: Option<Instant>,
    written: u64,
}

impl Sink<(String, f64)> for ThrottledSink {
    fn create_writer(
        &self,
        _info: &SubtaskInfo,
    ) -> weir_engine::Result<Box<dyn SinkWriter<(String, f64)>>> {
        Ok(Box::new(Throttled {
            rate: self.rate,
            start: None,
            written: 0,
        }))
    }
}

impl SinkWriter<(String, f64)> for Throttled {
    fn write(&mut self, records: Vec<Rec<(String, f64)>>) -> weir_engine::Result<()> {
        let start = *self.start.get_or_insert_with(Instant::now);
        self.written += records.len() as u64;
        let due = Duration::from_secs_f64(self.written as f64 / self.rate);
        if let Some(wait) = due.checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
        Ok(())
    }
}

fn build(env: &StreamExecutionEnvironment, args: &JobArgs) -> Result<()> {
    let events: u64 = args.number("events")?;
    let users: u64 = args.number::<u64>("users")?.max(1);
    let rate: f64 = args.number("sink-rate")?;
    anyhow::ensure!(rate > 0.0, "--arg sink-rate must be positive");
    let clicks = DataGen::new(3, move |g| Click {
        user_id: format!("user_{}", g.rng.gen_range(0..users)),
        amount: (g.rng.gen_range(100..10_000) as f64) / 100.0,
        ts: EPOCH_2026 + g.index as i64 * 20,
    })
    .bounded(events);
    env.from_source(clicks, None, "Clicks")
        .uid("clicks")
        .key_by(|c: &Click| c.user_id.clone())
        .reduce(|total: &Click, c: &Click| Click {
            amount: total.amount + c.amount,
            ..c.clone()
        })
        .name("Totals")
        .uid("totals")
        .map(|c: Click| (c.user_id, c.amount))
        .uid("pairs")
        .sink_to(ThrottledSink { rate })
        .name("SlowSink")
        .uid("slow-sink");
    Ok(())
}
