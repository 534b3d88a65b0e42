//! Checkpoint duration under backpressure, aligned vs unaligned (run by
//! `bench/unaligned-checkpoints.sh`). A fast generator feeds a deliberately slow stage behind a
//! rebalance, so every channel into it stays full; checkpoints are triggered every 100 ms.
//! Aligned barriers wait behind the queued records; unaligned ones overtake them. Prints one
//! line per mode: `<mode> checkpoints=<n> median_ms=<m> max_ms=<x> failed=<f> elapsed_ms=<t>`.
//!
//! Args: `[events] [slow-micros]` (default 400000 events, 20 µs per record in the slow stage).

use std::time::{Duration, Instant};
use weir_engine::api::StreamExecutionEnvironment;
use weir_engine::config::Config;
use weir_engine::connectors::{BlackholeSink, DataGen};
use weir_engine::time::WatermarkStrategy;
use weir_engine::window::{WindowSpec, agg};

fn main() -> weir_engine::Result<()> {
    let mut args = std::env::args().skip(1);
    let events: u64 = args.next().map_or(400_000, |a| a.parse().expect("events"));
    let slow_us: u64 = args.next().map_or(20, |a| a.parse().expect("slow-micros"));
    for unaligned in [false, true] {
        let chk = std::env::temp_dir().join(format!("weir-bp-{}-{unaligned}", std::process::id()));
        let mut c = Config::default();
        for (k, v) in [
            ("parallelism.default", "2".to_string()),
            ("pipeline.batch-size", "512".into()),
            ("execution.checkpointing.interval", "100ms".into()),
            ("execution.checkpointing.unaligned", unaligned.to_string()),
            ("state.checkpoints.dir", format!("file://{}", chk.display())),
        ] {
            c.set(k, &v)?;
        }
        let env = StreamExecutionEnvironment::with_config(c);
        env.from_source(
            DataGen::new(1, |g| (g.index % 64, g.index)).bounded(events),
            Some(
                WatermarkStrategy::for_bounded_out_of_orderness(Duration::from_secs(1))
                    .with_timestamp_assigner(|e: &(u64, u64)| e.1 as i64),
            ),
            "gen",
        )
        .rebalance()
        .map(move |e: (u64, u64)| {
            // Busy-wait: sleeping has a granularity far above a few microseconds.
            let until = Instant::now() + Duration::from_micros(slow_us);
            while Instant::now() < until {}
            e
        })
        .key_by(|e: &(u64, u64)| e.0)
        .window(WindowSpec::tumbling(Duration::from_secs(1)))
        .aggregate(agg::count())
        .sink_to(BlackholeSink);
        let job = env.execute_async(if unaligned { "unaligned" } else { "aligned" })?;
        let mut durations = Vec::new();
        let mut last = None;
        while !job.is_finished() {
            let s = job.checkpoints();
            if s.last_completed_id != last {
                last = s.last_completed_id;
                durations.push(s.last_duration_ms);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let result = job.wait()?;
        let _ = std::fs::remove_dir_all(&chk);
        durations.sort_unstable();
        let median = durations.get(durations.len() / 2).copied().unwrap_or(0);
        let max = durations.last().copied().unwrap_or(0);
        println!(
            "{} checkpoints={} median_ms={median} max_ms={max} failed={} elapsed_ms={}",
            if unaligned { "unaligned" } else { "aligned  " },
            durations.len(),
            result.checkpoints.failed,
            result.elapsed_ms
        );
    }
    Ok(())
}
