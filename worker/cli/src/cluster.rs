//! `weir jobmanager` and `weir taskmanager`: the two processes of a cluster (what the
//! operator deploys as pods). The JobManager plans the job named on its command line (a
//! registered job or a `.sql` script), serves
//! the REST API and waits for TaskManagers; each TaskManager registers at
//! `jobmanager.rpc.address`, receives the job from the JobManager and runs its slots' subtasks.

use crate::jobs;
use anyhow::{Context, Result};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;
use weir_contract::options;
use weir_engine::api::StreamExecutionEnvironment;
use weir_engine::config::Config;
use weir_engine::runtime::cluster::{ClusterConfig, JobSpec, PreparedJob, run_taskmanager};

/// The pod's address (Kubernetes downward API), the default bind address of every port.
fn pod_ip() -> Option<String> {
    std::env::var("POD_IP").ok().filter(|v| !v.is_empty())
}

fn load(config: Option<&Path>, set: &[String]) -> Result<Config> {
    let mut conf = Config::load(config)?;
    for (k, v) in crate::set_options(set)? {
        conf.set(k, v)?;
    }
    Ok(conf)
}

/// Sets `shutdown` on SIGTERM or Ctrl-C.
fn on_termination(shutdown: Arc<AtomicBool>) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the signal handler")?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            rt.block_on(async {
                use tokio::signal::unix::{SignalKind, signal};
                match signal(SignalKind::terminate()) {
                    Ok(mut term) => {
                        tokio::select! {
                            _ = term.recv() => {}
                            _ = tokio::signal::ctrl_c() => {}
                        }
                    }
                    Err(_) => {
                        let _ = tokio::signal::ctrl_c().await;
                    }
                }
            });
            tracing::info!("termination requested");
            shutdown.store(true, Relaxed);
        })
        .context("cannot spawn the signal handler")?;
    Ok(())
}

/// Builds a job's graph from a job spec: a registered job, or a SQL script, whose spec
/// carries the script text as its only argument (TaskManagers need no copy of the file).
fn build(spec: &JobSpec) -> weir_engine::Result<PreparedJob> {
    let user = |e: anyhow::Error| weir_engine::Error::User(format!("{e:#}"));
    let mut conf = Config::default();
    for (k, v) in &spec.config {
        conf.set(k, v)?;
    }
    let env = StreamExecutionEnvironment::with_config(conf);
    if spec.name.ends_with(".sql") {
        let [text] = spec.args.as_slice() else {
            return Err(weir_engine::Error::User(format!(
                "the job spec of SQL job {} must carry the script text as its only argument",
                spec.name
            )));
        };
        // The registry the JobManager planned with: the same worker build.
        let udfs = crate::udfs::registry().map_err(|e| user(e.into()))?;
        let connectors = crate::connectors::registry().map_err(|e| user(e.into()))?;
        weir_sql::plan_with(&env, text, &udfs, &connectors)
            .map_err(|e| weir_engine::Error::User(format!("{}:{e}", spec.name)))?;
    } else {
        let def = jobs::find(&spec.name).map_err(user)?;
        let args = jobs::JobArgs::parse(def, &spec.args).map_err(user)?;
        (def.build)(&env, &args).map_err(user)?;
    }
    env.prepare()
}

/// `weir jobmanager`: plans the job, serves REST, runs the job on TaskManagers; keeps
/// serving REST after the job ended until terminated. With `recovery_dir` (a directory that
/// outlives the process but not the pod, e.g. an emptyDir), a restarted JobManager resumes
/// from the previous run's latest checkpoint instead of `execution.savepoint.path`.
pub fn jobmanager(
    config: Option<&Path>,
    set: &[String],
    recovery_dir: Option<&Path>,
    job: &str,
    args: &[String],
) -> Result<()> {
    let mut conf = load(config, set)?;
    if let Some(dir) = recovery_dir {
        crate::recovery::resume(dir, &mut conf, "JobManager")?;
    }
    let restored_from = conf.checkpointing()?.restore_from;
    let pod_ip = pod_ip();
    if let Some(ip) = &pod_ip
        && conf.rest()?.address == "127.0.0.1"
    {
        // On Kubernetes the REST API answers at the pod's address (probes, the Service).
        conf.set(options::REST_ADDRESS.key, ip)?;
    }
    if conf.rest()?.port.is_none() {
        conf.set(
            options::REST_PORT.key,
            &weir_contract::rest::DEFAULT_PORT.to_string(),
        )?;
    }
    let cluster = ClusterConfig::from_config(&conf, pod_ip.as_deref())?;
    let rest = conf.rest()?;
    // Read before the job starts: a missing token or certificate file fails the start.
    let rest_security = conf.rest_security()?;
    let config = conf.entries();
    let env = StreamExecutionEnvironment::with_config(conf);
    let mut sql_explain = None;
    let (name, spec) = if job.ends_with(".sql") {
        let planned = crate::sql::plan(&env, job, args, false, true)?
            .with_context(|| format!("{job} has nothing to run on a cluster"))?;
        sql_explain = Some(planned.explain);
        let spec = JobSpec {
            name: job.to_string(),
            args: vec![planned.text],
            config: config.clone(),
        };
        (planned.name, spec)
    } else {
        let def = jobs::find(job)?;
        let job_args = jobs::JobArgs::parse(def, args)?;
        (def.build)(&env, &job_args)?;
        let spec = JobSpec {
            name: def.name.to_string(),
            args: args.to_vec(),
            config: config.clone(),
        };
        (def.name.to_string(), spec)
    };
    let shutdown = Arc::new(AtomicBool::new(false));
    on_termination(shutdown.clone())?;
    let description = weir_cluster::JobDescription {
        topology: Some(env.topology()?),
        sql_explain,
    };
    let handle = env.execute_on_cluster(&name, spec, cluster.clone())?;
    if let Some(dir) = recovery_dir {
        crate::recovery::record(dir, handle.job_id(), restored_from.as_deref())?;
    }
    let server = weir_cluster::RestServer::start_secured(
        &rest.address,
        rest.port.unwrap_or(weir_contract::rest::DEFAULT_PORT),
        weir_cluster::ServerLimits::default(),
        &rest_security,
    )?;
    server.set_configuration(config);
    server.add_described_job(handle.client(), description);
    eprintln!(
        "JobManager: REST API {}  RPC {}  (job {})",
        server.url(),
        handle.client().rpc_address().map_or_else(
            || format!("{}:{}", cluster.rpc_bind_host, cluster.rpc_port),
            |a| a.to_string()
        ),
        handle.job_id()
    );
    let client = handle.client();
    let mut reported = false;
    while !shutdown.load(Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        if !reported && handle.is_finished() {
            reported = true;
            eprintln!(
                "job {} ended {}; the REST API stays up until the JobManager is terminated",
                client.job_id(),
                weir_cluster::job_state(client.status())
            );
        }
    }
    Ok(())
}

/// `weir taskmanager`: registers with the JobManager and runs subtasks until terminated.
pub fn taskmanager(config: Option<&Path>, set: &[String]) -> Result<()> {
    let conf = load(config, set)?;
    let cluster = ClusterConfig::from_config(&conf, pod_ip().as_deref())?;
    let shutdown = Arc::new(AtomicBool::new(false));
    on_termination(shutdown.clone())?;
    eprintln!(
        "TaskManager: {} slot(s), JobManager at {}:{}",
        cluster.slots, cluster.rpc_address, cluster.rpc_port
    );
    run_taskmanager(&cluster, &build, &shutdown)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sql_spec(text: &str) -> JobSpec {
        JobSpec {
            name: "udf.sql".into(),
            args: vec![text.into()],
            config: Vec::new(),
        }
    }

    #[test]
    fn a_taskmanager_plans_sql_calling_the_builds_udfs_from_the_job_spec() {
        let script = |f: &str| {
            format!(
                "CREATE TABLE users (user_id STRING) WITH ('connector' = 'datagen', 'number-of-rows' = '3');
                 CREATE TABLE out (u STRING, e STRING) WITH ('connector' = 'blackhole');
                 CREATE TEMPORARY FUNCTION enrich AS 'enrich_user';
                 INSERT INTO out SELECT enrich_user(user_id), {f}(user_id) FROM users;"
            )
        };
        // The job spec carries only the script: the functions come from this build's registry.
        build(&sql_spec(&script("enrich"))).expect("the TaskManager resolves the UDFs");
        let Err(e) = build(&sql_spec(&script("not_registered"))) else {
            panic!("an unknown function must fail the TaskManager's planning");
        };
        assert!(
            e.to_string().starts_with("udf.sql:4:") && e.to_string().contains("not_registered"),
            "{e}"
        );
    }
}
