//! `weir`: run stream jobs. `weir run` executes a job in this process (an embedded
//! mini-cluster: every operator subtask on its own thread), showing live progress.

mod jobs;
mod progress;
mod sql;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use weir_engine::api::StreamExecutionEnvironment;
use weir_engine::config::Config;

// Stream processing allocates and frees many short-lived batches and strings, often on
// different threads; mimalloc does that markedly faster than glibc's malloc (bench/README.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "weir",
    version,
    about = "Weir: stateful stream processing with event time, windows and keyed state",
    long_about = "Weir runs stateful stream-processing jobs: sources, keyed state, event-time \
windows and timers, sinks.\n\nStart with `weir jobs` to see the jobs built into this binary, \
then `weir run user-metrics` to run the main example on generated data."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a job locally in this process until its input ends (or Ctrl-C).
    #[command(
        long_about = "Run a job locally in this process until its sources are exhausted: \
every window and timer is flushed and the job FINISHES. Progress (records in/out per second, \
watermark, backpressure) is shown on stderr; results go to the job's sinks.\n\n\
Examples:\n  weir run user-metrics\n  weir run examples/user_metrics.sql\n  weir run user-metrics --parallelism 4 --arg events=1000000\n  \
weir run bench-tumbling --arg input=events.jsonl --summary-json out.json"
    )]
    Run {
        /// A registered job name (see `weir jobs`), or a Flink SQL script ending in `.sql`.
        job: String,
        /// Config file of `key: value` lines (Flink-style keys; see docs/configuration.md).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Default parallelism (overrides `parallelism.default`).
        #[arg(long, short)]
        parallelism: Option<usize>,
        /// Restore from this checkpoint or savepoint directory (`execution.savepoint.path`).
        #[arg(long, short = 's', value_name = "URI")]
        from_savepoint: Option<String>,
        /// A job argument, `key=value` (repeatable; `weir jobs` lists each job's arguments).
        #[arg(long = "arg", value_name = "KEY=VALUE")]
        args: Vec<String>,
        /// A configuration override, `key=value` (repeatable; applied last).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Print the physical plan (tasks, chaining, exchanges) and exit.
        #[arg(long)]
        explain: bool,
        /// Don't show live progress.
        #[arg(long)]
        no_progress: bool,
        /// Write the final summary as JSON to this file.
        #[arg(long, value_name = "FILE")]
        summary_json: Option<PathBuf>,
    },
    /// List the jobs built into this binary with their arguments.
    Jobs,
}

fn main() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WEIR_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .init();
    if let Err(e) = run(Cli::parse()) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Jobs => {
            for j in jobs::JOBS {
                println!("{:<16} {}", j.name, j.about);
                for (name, default, help) in j.args {
                    let d = if default.is_empty() {
                        "required".to_string()
                    } else {
                        format!("default {default}")
                    };
                    println!("    --arg {name}=...  {help} ({d})");
                }
            }
            Ok(())
        }
        Command::Run {
            job,
            config,
            parallelism,
            from_savepoint,
            args,
            set,
            explain,
            no_progress,
            summary_json,
        } => {
            let mut conf = Config::load(config.as_deref())?;
            if let Some(p) = parallelism {
                conf.set("parallelism.default", &p.to_string())?;
            }
            if let Some(path) = &from_savepoint {
                conf.set("execution.savepoint.path", path)?;
            }
            for kv in &set {
                let (k, v) = kv
                    .split_once('=')
                    .with_context(|| format!("--set '{kv}' must look like key=value"))?;
                conf.set(k.trim(), v.trim())?;
            }
            let env = StreamExecutionEnvironment::with_config(conf);
            if job.ends_with(".sql") {
                let (show, summary) = (!no_progress, summary_json.as_deref());
                return sql::run(&env, &job, &args, explain, show, summary);
            }
            let def = jobs::find(&job)?;
            let job_args = jobs::JobArgs::parse(def, &args)?;
            (def.build)(&env, &job_args)?;
            if explain {
                print!("{}", env.explain()?);
                return Ok(());
            }
            let handle = env.execute_async(def.name)?;
            progress::run(handle, def.name, !no_progress, summary_json.as_deref())
        }
    }
}
