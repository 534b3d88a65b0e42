//! `weir`: run stream jobs. `weir run` executes a job in this process (an embedded
//! mini-cluster: every operator subtask on its own thread), showing live progress, and
//! serves the REST API when `rest.port` is set; `weir list|savepoint|stop|cancel` talk to
//! that API like Flink's CLI; `weir check` tells whether a job can restore a checkpoint.

mod check;
mod cluster;
mod connectors;
mod control;
mod jobs;
mod objects;
mod progress;
mod recovery;
mod sql;
mod udfs;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use weir_contract::options;
use weir_engine::api::StreamExecutionEnvironment;
use weir_engine::config::Config;

// Stream processing allocates and frees many short-lived batches and strings, often on
// different threads; mimalloc does that markedly faster than glibc's malloc (bench/README.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `--set key=value` options as trimmed (key, value) pairs.
fn set_options(set: &[String]) -> Result<Vec<(&str, &str)>> {
    set.iter()
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.trim(), v.trim()))
                .with_context(|| format!("--set '{kv}' must look like key=value"))
        })
        .collect()
}

/// How long `weir run` keeps its REST API up after the job ended, until the client of a
/// savepoint triggered through it (`weir stop`) has read the savepoint's location.
const SAVEPOINT_RESULT_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

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
        /// A directory where this run records its job id: started again with the same
        /// directory after a crash, `weir run` resumes from that run's latest completed
        /// checkpoint (as `weir jobmanager --recovery-dir`).
        #[arg(long, value_name = "DIR")]
        recovery_dir: Option<PathBuf>,
    },
    /// Check, without running it, that a job can restore a checkpoint or savepoint.
    #[command(
        long_about = format!("Plan the job as `weir run` would (same job, arguments and \
configuration) and check it against a checkpoint or savepoint with the rules of a restore: the \
same {}, state of every operator in it claimed by an operator of the job with the same uid \
(unless --allow-non-restored-state), and each operator's state schema unchanged (for SQL: the \
aggregates, GROUP BY keys and join inputs). Nothing runs and no cluster is needed.\n\n\
Exit code: 0 compatible, 2 incompatible, 1 an error (the job does not plan, the checkpoint \
cannot be read).\n\n\
Examples:\n  weir check --state file:///tmp/savepoints/savepoint-1a2b3c examples/user_metrics.sql\n  \
weir check --state s3://state/orders/cp/3f1c.../chk-42 --config weir-conf.yaml --json job.sql",
            options::MAX_PARALLELISM.key)
    )]
    #[command(name = weir_contract::check::COMMAND)]
    Check(check::CheckArgs),
    /// List the jobs built into this binary with their arguments.
    Jobs,
    /// List the jobs of a running `weir` process (over its REST API).
    List {
        #[command(flatten)]
        rest: control::RestArgs,
    },
    /// Take a savepoint of a running job, wait for it and print its location.
    #[command(
        long_about = "Take a savepoint of a running job and print its location once it \
is complete; the job keeps running. Restore from it with `weir run <job> -s <location>`.\n\n\
Example:\n  weir savepoint 3f1c... file:///tmp/savepoints --address http://127.0.0.1:8081"
    )]
    Savepoint {
        /// The job id (`weir list`).
        job_id: String,
        /// Where to write it (default: `state.savepoints.dir` of the job).
        target_dir: Option<String>,
        #[command(flatten)]
        rest: control::RestArgs,
    },
    /// Stop a job with a savepoint: nothing after the savepoint is processed.
    Stop {
        /// The job id (`weir list`).
        job_id: String,
        /// Where to write the savepoint (default: `state.savepoints.dir` of the job).
        #[arg(long, short = 'p', value_name = "DIR")]
        savepoint_path: Option<String>,
        /// Advance event time to the end first, so every window and timer fires (for
        /// ending a job for good, not for upgrades).
        #[arg(long, short = 'd')]
        drain: bool,
        #[command(flatten)]
        rest: control::RestArgs,
    },
    /// Run a JobManager: plan the job, serve the REST API, run the job on TaskManagers.
    #[command(
        long_about = format!("Run the JobManager of a cluster for one job (application mode): it \
plans the job, serves the REST API ({}, default {}), waits for TaskManagers to \
register at {} with enough slots, runs the job on them, coordinates \
checkpoints and restarts the job from its latest checkpoint when a TaskManager is lost. \
It keeps serving REST after the job ended, until SIGTERM.\n\n\
Example:\n  weir jobmanager --config weir-conf.yaml user-metrics events=1000000",
            options::REST_PORT.key, weir_contract::rest::DEFAULT_PORT, options::RPC_PORT.key)
    )]
    Jobmanager {
        /// Config file of `key: value` lines (see docs/configuration.md).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// A configuration override, `key=value` (repeatable; applied last).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// A directory that survives the process but not its pod (Kubernetes emptyDir): a
        /// restarted JobManager resumes from the previous run's latest checkpoint found there.
        #[arg(long, value_name = "DIR")]
        recovery_dir: Option<PathBuf>,
        /// A registered job name (see `weir jobs`).
        job: String,
        /// Job arguments, `key=value`.
        args: Vec<String>,
    },
    /// Run a TaskManager: register with the JobManager and run subtasks in its slots.
    Taskmanager {
        /// Config file of `key: value` lines (see docs/configuration.md).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// A configuration override, `key=value` (repeatable; applied last).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
    /// Cancel a job (its checkpoints are kept unless configured otherwise).
    Cancel {
        /// The job id (`weir list`).
        job_id: String,
        #[command(flatten)]
        rest: control::RestArgs,
    },
    /// List or read the objects of a checkpoint/savepoint store (for scripts and tests).
    #[command(hide = true)]
    Objects {
        #[command(subcommand)]
        command: objects::ObjectsCommand,
    },
}

fn main() {
    let filter = || {
        tracing_subscriber::EnvFilter::try_from_env("WEIR_LOG").unwrap_or_else(|_| "warn".into())
    };
    // WEIR_LOG_FORMAT=json: one JSON object per line, for log collectors on Kubernetes.
    if std::env::var("WEIR_LOG_FORMAT").is_ok_and(|f| f == "json") {
        tracing_subscriber::fmt()
            .json()
            .with_writer(std::io::stderr)
            .with_env_filter(filter())
            .init();
    } else {
        // Colours only on a terminal: files and `kubectl logs` get plain text.
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_env_filter(filter())
            .init();
    }
    if let Err(e) = run(Cli::parse()) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

/// Plans `job` (a registered job's name or a `.sql` script) with its `key=value` `args`
/// onto `env`: its name and, for SQL, its streaming plan. `None` when there is nothing to
/// run: with `explain` (the plans are printed instead) or a script that only explains.
/// `echo` prints the output of a script's EXPLAIN statements.
fn plan_job(
    env: &StreamExecutionEnvironment,
    job: &str,
    args: &[String],
    explain: bool,
    echo: bool,
) -> Result<Option<(String, Option<String>)>> {
    if job.ends_with(".sql") {
        return Ok(sql::plan(env, job, args, explain, echo)?.map(|p| (p.name, Some(p.explain))));
    }
    let def = jobs::find(job)?;
    let job_args = jobs::JobArgs::parse(def, args)?;
    (def.build)(env, &job_args)?;
    if explain {
        print!("{}", env.explain()?);
        return Ok(None);
    }
    Ok(Some((def.name.to_string(), None)))
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
        Command::Check(args) => {
            let code = check::run(&args);
            if code != 0 {
                std::process::exit(code);
            }
            Ok(())
        }
        Command::List { rest } => control::list(&rest),
        Command::Savepoint {
            job_id,
            target_dir,
            rest,
        } => control::savepoint(&rest, &job_id, target_dir.as_deref()),
        Command::Stop {
            job_id,
            savepoint_path,
            drain,
            rest,
        } => control::stop(&rest, &job_id, savepoint_path.as_deref(), drain),
        Command::Cancel { job_id, rest } => control::cancel(&rest, &job_id),
        Command::Objects { command } => objects::run(&command),
        Command::Jobmanager {
            config,
            set,
            recovery_dir,
            job,
            args,
        } => cluster::jobmanager(
            config.as_deref(),
            &set,
            recovery_dir.as_deref(),
            &job,
            &args,
        ),
        Command::Taskmanager { config, set } => cluster::taskmanager(config.as_deref(), &set),
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
            recovery_dir,
        } => {
            let mut conf = Config::load(config.as_deref())?;
            if let Some(p) = parallelism {
                conf.set(options::PARALLELISM_DEFAULT.key, &p.to_string())?;
            }
            if let Some(path) = &from_savepoint {
                conf.set(options::SAVEPOINT_PATH.key, path)?;
            }
            for (k, v) in set_options(&set)? {
                conf.set(k, v)?;
            }
            if let Some(dir) = &recovery_dir {
                recovery::resume(dir, &mut conf, "weir run")?;
            }
            let checkpointing = conf.checkpointing()?;
            let rest = conf.rest()?;
            // Read before the job starts: a missing token or certificate file fails the start.
            let rest_security = match rest.port {
                Some(_) => conf.rest_security()?,
                None => Default::default(),
            };
            let config = conf.entries();
            let env = StreamExecutionEnvironment::with_config(conf);
            let Some((name, sql_explain)) = plan_job(&env, &job, &args, explain, true)? else {
                return Ok(());
            };
            let description = weir_cluster::JobDescription {
                topology: Some(env.topology()?),
                sql_explain,
            };
            let handle = env.execute_async(&name)?;
            if let Some(dir) = &recovery_dir {
                recovery::record(dir, handle.job_id(), checkpointing.restore_from.as_deref())?;
            }
            match (&checkpointing.dir, checkpointing.interval) {
                (Some(dir), Some(_)) => eprintln!(
                    "job {} started; checkpoints go to {}/",
                    handle.job_id(),
                    weir_contract::layout::checkpoint_run_dir(dir, handle.job_id())
                ),
                _ => eprintln!("job {} started; checkpointing is off", handle.job_id()),
            }
            let server = match rest.port {
                Some(port) => {
                    let server = weir_cluster::RestServer::start_secured(
                        &rest.address,
                        port,
                        weir_cluster::ServerLimits::default(),
                        &rest_security,
                    )?;
                    server.set_configuration(config);
                    server.add_described_job(handle.client(), description);
                    eprintln!("REST API: {}  (job {})", server.url(), handle.job_id());
                    eprintln!("dashboard: {}/", server.url());
                    Some(server)
                }
                None => None,
            };
            let result = progress::run(handle, &name, !no_progress, summary_json.as_deref());
            // The `weir stop`/`weir savepoint` that ended the job is still polling for the
            // savepoint's location: answer it before the process (and its REST API) goes away.
            if let Some(server) = &server
                && !server.await_savepoint_results(SAVEPOINT_RESULT_GRACE)
            {
                eprintln!(
                    "a savepoint's outcome was not read within {}s of the job's end; the REST API stops now",
                    SAVEPOINT_RESULT_GRACE.as_secs()
                );
            }
            result
        }
    }
}
