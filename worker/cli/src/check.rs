//! `weir check`: whether a job, as it would be started now, can restore a checkpoint or
//! savepoint, decided without running it or any cluster. It plans the job exactly as `weir
//! run` does and applies the restore's own rules to the plan and the checkpoint
//! ([`StreamExecutionEnvironment::check_restore`]). The operator runs it before it stops a
//! job for an upgrade, so an upgrade that could not restore is refused while the old job
//! still runs.
//!
//! Exit codes (`weir_contract::check`): 0 compatible, 2 incompatible, 1 an error (the job
//! does not plan, the checkpoint cannot be read).

use anyhow::{Context, Result};
use std::io::Write;
use std::path::PathBuf;
use weir_contract::options;
use weir_engine::api::StreamExecutionEnvironment;
use weir_engine::checkpoint::RestoreCheck;
use weir_engine::config::Config;

use weir_contract::check::{EXIT_COMPATIBLE, EXIT_INCOMPATIBLE, REFUSED_PREFIX};

/// What `weir check` is given.
#[derive(clap::Args)]
pub struct CheckArgs {
    /// The checkpoint or savepoint directory to check (`file:///…`, `/…` or `s3://…`).
    #[arg(long, short = 's', value_name = "URI")]
    state: String,
    /// Config file of `key: value` lines (see docs/configuration.md).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Default parallelism (overrides `parallelism.default`).
    #[arg(long, short)]
    parallelism: Option<usize>,
    /// A job argument, `key=value` (repeatable), as `weir run` takes it.
    #[arg(long = "arg", value_name = "KEY=VALUE")]
    args: Vec<String>,
    /// A configuration override, `key=value` (repeatable; applied last).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Drop state the job does not claim instead of refusing it
    /// (`execution.savepoint.ignore-unclaimed-state: true`).
    #[arg(long)]
    allow_non_restored_state: bool,
    /// Print the outcome as one JSON object (errors too, as `{"error": …}`).
    #[arg(long)]
    json: bool,
    /// A registered job name (see `weir jobs`), or a Flink SQL script ending in `.sql`.
    job: String,
    /// Job arguments, `key=value` (as `weir jobmanager` takes them).
    job_args: Vec<String>,
}

/// Runs the check and prints its outcome; returns the process's exit code.
pub fn run(a: &CheckArgs) -> i32 {
    let outcome = check(a);
    let mut out = std::io::stdout().lock();
    let code = match &outcome {
        Ok(c) if c.compatible => EXIT_COMPATIBLE,
        Ok(_) => EXIT_INCOMPATIBLE,
        Err(_) => 1,
    };
    let printed = match (&outcome, a.json) {
        (Ok(c), true) => serde_json::to_writer(&mut out, c)
            .map_err(std::io::Error::from)
            .and_then(|()| writeln!(out)),
        (Ok(c), false) => out.write_all(report(c, &a.job).as_bytes()),
        (Err(e), true) => writeln!(out, "{}", serde_json::json!({ "error": format!("{e:#}") })),
        (Err(e), false) => {
            eprintln!("error: {e:#}");
            Ok(())
        }
    };
    match printed.and_then(|()| out.flush()) {
        Ok(()) => code,
        Err(e) => {
            eprintln!("error: cannot write the outcome: {e}");
            1
        }
    }
}

fn check(a: &CheckArgs) -> Result<RestoreCheck> {
    let mut conf = Config::load(a.config.as_deref())?;
    if let Some(p) = a.parallelism {
        conf.set(options::PARALLELISM_DEFAULT.key, &p.to_string())?;
    }
    for (k, v) in crate::set_options(&a.set)? {
        conf.set(k, v)?;
    }
    if a.allow_non_restored_state {
        conf.set(options::SAVEPOINT_IGNORE_UNCLAIMED_STATE.key, "true")?;
    }
    let env = StreamExecutionEnvironment::with_config(conf);
    let args: Vec<String> = a.args.iter().chain(&a.job_args).cloned().collect();
    crate::plan_job(&env, &a.job, &args, false, false)?
        .with_context(|| format!("{} has nothing to run, so nothing to check", a.job))?;
    Ok(env.check_restore(&a.state)?)
}

/// The human-readable report: the checkpoint, each of its operators and where its state
/// goes, then the verdict with every finding.
fn report(c: &RestoreCheck, job: &str) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let kind = if c.savepoint {
        "savepoint"
    } else {
        "checkpoint"
    };
    let _ = writeln!(
        s,
        "{} ({kind} {} of job {}, {} {})",
        c.path,
        c.checkpoint_id,
        c.job_id,
        options::MAX_PARALLELISM.key,
        c.max_parallelism
    );
    for op in &c.operators {
        let to = match op.job_parallelism {
            Some(p) => format!("parallelism {} -> {p}", op.parallelism),
            None => format!("parallelism {} -> not in the job", op.parallelism),
        };
        let states = match op.states.as_slice() {
            [] => "no keyed state".to_string(),
            s => format!("states {}", s.join(", ")),
        };
        let _ = writeln!(s, "  {} '{}': {to}; {states}", op.uid, op.name);
    }
    if c.compatible {
        let _ = writeln!(s, "compatible: {job} can restore from {}", c.path);
    } else {
        let _ = writeln!(s, "INCOMPATIBLE: {job} cannot restore from {}", c.path);
    }
    for f in &c.findings {
        let mark = if f.refuses() {
            REFUSED_PREFIX
        } else {
            "dropped: "
        };
        let _ = writeln!(s, "  {mark}{f}");
    }
    s
}
