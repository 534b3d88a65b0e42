//! Live progress on stderr while a job runs, and the final summary.

use anyhow::{Context, Result};
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::{Duration, Instant};
use weir_engine::runtime::JobHandle;
use weir_engine::runtime::metrics::JobSnapshot;
use weir_engine::time::format_ts;

fn rate(n: u64, ms: u64) -> f64 {
    n as f64 * 1000.0 / ms.max(1) as f64
}

fn human(x: f64) -> String {
    match x {
        x if x >= 1e6 => format!("{:.2}M", x / 1e6),
        x if x >= 1e3 => format!("{:.1}k", x / 1e3),
        x => format!("{x:.0}"),
    }
}

fn line(prev: &JobSnapshot, now: &JobSnapshot) -> String {
    let dt = now.elapsed_ms.saturating_sub(prev.elapsed_ms);
    let bp = now
        .backpressure_since(prev)
        .into_iter()
        .map(|(_, _, r)| r)
        .fold(0.0, f64::max);
    format!(
        "{:>6.1}s  in {:>8}/s  out {:>8}/s  total in {}  watermark {}  backpressure max {:>3.0}%",
        now.elapsed_ms as f64 / 1000.0,
        human(rate(now.records_in - prev.records_in, dt)),
        human(rate(now.records_out - prev.records_out, dt)),
        now.records_in,
        format_ts(now.watermark),
        bp * 100.0
    )
}

/// Shows progress until the job ends, then prints the summary (and writes it as JSON).
pub fn run(handle: JobHandle, name: &str, show: bool, summary_json: Option<&Path>) -> Result<()> {
    let tty = std::io::stderr().is_terminal();
    let every = if tty {
        Duration::from_millis(500)
    } else {
        Duration::from_secs(2)
    };
    let mut prev = handle.metrics();
    let mut last = Instant::now();
    while !handle.is_finished() {
        std::thread::sleep(Duration::from_millis(50));
        if show && last.elapsed() >= every {
            let now = handle.metrics();
            let l = line(&prev, &now);
            if tty {
                eprint!("\r\x1b[2K{l}");
            } else {
                eprintln!("{l}");
            }
            let _ = std::io::stderr().flush();
            prev = now;
            last = Instant::now();
        }
    }
    if show && tty {
        eprintln!();
    }
    let result = handle
        .wait()
        .with_context(|| format!("job '{name}' failed"))?;
    let m = &result.metrics;
    eprintln!(
        "job '{name}' {} in {:.2}s: {} records in ({}/s), {} records out, {} skipped",
        weir_contract::JobState::Finished,
        result.elapsed_ms as f64 / 1000.0,
        m.records_in,
        human(rate(m.records_in, result.elapsed_ms)),
        m.records_out,
        m.skipped
    );
    let c = &result.checkpoints;
    if c.triggered > 0 || result.restarts > 0 {
        eprintln!(
            "checkpoints: {} completed, {} failed; latest {}; restarts {}",
            c.completed,
            c.failed,
            c.last_completed_path.as_deref().unwrap_or("-"),
            result.restarts
        );
    }
    if show {
        for t in &m.tasks {
            eprintln!(
                "  task {} ({})  backpressured {:.0}% of the time",
                t.name,
                t.subtask,
                100.0 * t.backpressured_ms as f64 / result.elapsed_ms.max(1) as f64
            );
        }
    }
    if let Some(path) = summary_json {
        let json = serde_json::json!({
            "job": name,
            "elapsed_ms": result.elapsed_ms,
            "records_in": m.records_in,
            "records_out": m.records_out,
            "skipped": m.skipped,
            "job_id": result.job_id,
            "restarts": result.restarts,
            "checkpoints": {
                "completed": c.completed,
                "failed": c.failed,
                "latest_path": c.last_completed_path,
                "last_duration_ms": c.last_duration_ms,
                "last_size_bytes": c.last_size_bytes,
            },
        });
        std::fs::write(path, json.to_string() + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}
