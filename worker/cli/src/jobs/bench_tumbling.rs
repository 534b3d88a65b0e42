//! The engine-core benchmark job (bench/engine-core.sh): JSON-lines events from a file,
//! one-minute tumbling event-time windows, COUNT and SUM(amount) per user, output discarded
//! (or written as JSON lines with `--arg output=DIR` to check results).

use super::user_metrics::Click;
use super::{JobArgs, JobDef};
use anyhow::Result;
use std::time::Duration;
use weir_engine::api::StreamExecutionEnvironment;
use weir_engine::connectors::{BlackholeSink, FileSink, FileSource};
use weir_engine::time::WatermarkStrategy;
use weir_engine::window::{WindowSpec, agg};

pub const JOB: JobDef = JobDef {
    name: "bench-tumbling",
    about: "benchmark: JSON lines -> 1-minute tumbling COUNT/SUM(amount) per user -> blackhole",
    args: &[
        (
            "input",
            "",
            "JSON-lines file or directory of {\"user_id\",\"amount\",\"ts\"} events",
        ),
        (
            "output",
            "-",
            "directory for JSON-lines results; '-' discards them",
        ),
    ],
    build,
};

fn build(env: &StreamExecutionEnvironment, args: &JobArgs) -> Result<()> {
    let windows = env
        .from_source(
            FileSource::<Click>::json_lines(args.get("input")),
            Some(
                WatermarkStrategy::for_monotonous_timestamps()
                    .with_timestamp_assigner(|c: &Click| c.ts),
            ),
            "Events",
        )
        .key_by(|c: &Click| c.user_id.clone())
        .window(WindowSpec::tumbling(Duration::from_secs(60)))
        .aggregate((agg::count(), agg::sum(|c: &Click| c.amount)))
        .uid("tumbling-count-sum");
    match args.get("output") {
        "-" => windows.sink_to(BlackholeSink).name("Blackhole"),
        dir => windows.sink_to(FileSink::json_lines(dir)).name("Files"),
    };
    Ok(())
}
