//! The TaskManager side: registering with the JobManager, running the subtasks of the
//! slots it is given, and reporting.

use super::protocol::{Conn, OpReport, TaskReport, ToJm, ToTm, offer_handshake, peer_of, recv};
use super::{ClusterConfig, JobSpec, PreparedJob};
use crate::checkpoint::{Barrier, ObjectStore, RestorePlan};
use crate::config::CheckpointingMode;
use crate::error::{Error, Result};
use crate::runtime::coordinator::{Ack, CheckpointControl};
use crate::runtime::exec::{TaskEnded, prepare_tasks, spawn_tasks};
use crate::runtime::memory::MemoryBudget;
use crate::runtime::metrics::TaskMetrics;
use crate::runtime::net::{DataServer, OnBroken, start_outputs};
use crate::runtime::persist::{ConfirmedShared, PersistTarget, SubtaskAck, open_target, persist};
use crate::runtime::secure as rpc;
use std::collections::{BTreeSet, HashMap};
use std::io::BufReader;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub(super) const CANCELLED: &str = "cancelled";

/// One attempt's tasks running in this TaskManager.
pub(super) struct TmAttempt {
    attempt: u64,
    cancel: Arc<AtomicBool>,
    ctl: Arc<CheckpointControl>,
    targets: Arc<Mutex<HashMap<u64, PersistTarget>>>,
    confirmed: Arc<Mutex<ConfirmedShared>>,
    /// Global task index and metrics of each local task.
    tasks: Vec<(u32, Arc<TaskMetrics>)>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// Runs a TaskManager until `shutdown` is set: registers with the JobManager (again after
/// losing it), runs the subtasks of the slots it is given, and reports.
pub fn run_taskmanager(
    cfg: &ClusterConfig,
    build: &dyn Fn(&JobSpec) -> Result<PreparedJob>,
    shutdown: &AtomicBool,
) -> Result<()> {
    // Fail fast: a budget too small for the slots is a configuration error.
    let memory = cfg.memory.plan(cfg.slots)?;
    if let Some(b) = &memory {
        b.log();
    }
    let data = DataServer::start(&cfg.taskmanager_host, cfg.data_port, 64)?;
    tracing::info!(data = %data.addr(), "TaskManager data port listening");
    let jm = format!("{}:{}", cfg.rpc_address, cfg.rpc_port);
    let mut job: Option<(JobSpec, Arc<PreparedJob>)> = None;
    let mut logged = false;
    // The last loss logged and when: a refusal repeats every half second, its log line at
    // most every 30 s.
    let mut last_loss: Option<(String, Instant)> = None;
    while !shutdown.load(Relaxed) {
        let stream = match connect(&jm) {
            Ok(s) => s,
            Err(e) => {
                if !logged {
                    tracing::warn!(jobmanager = %jm, error = %crate::error::report(&e), "cannot reach the JobManager; retrying");
                    logged = true;
                }
                std::thread::sleep(Duration::from_millis(250));
                continue;
            }
        };
        logged = false;
        match serve_jobmanager(cfg, &memory, stream, &data, build, &mut job, shutdown) {
            Ok(()) => {}
            Err(e) => {
                let error = crate::error::report(&e);
                let repeated = last_loss.as_ref().is_some_and(|(last, at)| {
                    *last == error && at.elapsed() < Duration::from_secs(30)
                });
                if !repeated {
                    tracing::warn!(jobmanager = %jm, %error, "lost the JobManager; re-registering");
                    last_loss = Some((error, Instant::now()));
                }
                // A refused handshake fails again at once: do not hammer the JobManager.
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }
    Ok(())
}

pub(super) fn connect(addr: &str) -> Result<TcpStream> {
    let resolved: Vec<SocketAddr> = addr
        .to_socket_addrs()
        .map_err(|e| Error::io("cannot resolve", addr, e))?
        .collect();
    let mut last = None;
    for a in resolved {
        match TcpStream::connect_timeout(&a, Duration::from_secs(2)) {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    Err(Error::io(
        "cannot connect to",
        addr,
        last.unwrap_or_else(|| std::io::Error::other("no address")),
    ))
}

pub(super) fn serve_jobmanager(
    cfg: &ClusterConfig,
    memory: &Option<MemoryBudget>,
    tcp: TcpStream,
    data: &Arc<DataServer>,
    build: &dyn Fn(&JobSpec) -> Result<PreparedJob>,
    job: &mut Option<(JobSpec, Arc<PreparedJob>)>,
    shutdown: &AtomicBool,
) -> Result<()> {
    let peer = peer_of(&tcp);
    let stream = rpc::connect(
        tcp,
        &cfg.rpc_address,
        cfg.rpc_tls.as_ref(),
        cfg.heartbeat_timeout,
    )
    .map_err(|e| {
        Error::User(format!(
            "the JobManager at {peer}: {}",
            crate::error::report(&e)
        ))
    })?;
    stream
        .set_read_timeout(Some(cfg.heartbeat_timeout))
        .map_err(|e| Error::io("cannot configure", "the JobManager connection", e))?;
    let conn = Arc::new(Conn::new(
        stream
            .try_clone()
            .map_err(|e| Error::io("cannot clone", "the JobManager connection", e))?,
        peer.clone(),
    )?);
    let mut reader = BufReader::new(stream);
    offer_handshake(&conn, &mut reader, cfg.rpc_token.as_ref())?;
    conn.send(&ToJm::Register {
        slots: cfg.slots as u32,
        data_addr: data.addr().to_string(),
        memory: memory.clone(),
    })?;
    let ToTm::Registered { tm, job: spec } = recv::<ToTm>(&mut reader, &peer)? else {
        return Err(Error::User(format!(
            "{peer} did not accept the registration"
        )));
    };
    tracing::info!(taskmanager = tm, jobmanager = %peer, job = %spec.name, "registered with the JobManager");
    if job.as_ref().is_none_or(|(s, _)| *s != spec) {
        *job = Some((spec.clone(), Arc::new(build(&spec)?)));
    }
    let prepared = job.as_ref().expect("set above").1.clone();
    let current: Arc<Mutex<Option<TmAttempt>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let heartbeat = {
        let (conn, current, stop) = (conn.clone(), current.clone(), stop.clone());
        let interval = cfg.heartbeat_interval;
        std::thread::Builder::new()
            .name("heartbeat".into())
            .spawn(move || {
                while !stop.load(Relaxed) {
                    let msg = {
                        let cur = current.lock().expect("not poisoned");
                        let (attempt, tasks) = cur
                            .as_ref()
                            .map_or((0, Vec::new()), |a| (a.attempt, report(&a.tasks)));
                        ToJm::Heartbeat {
                            attempt,
                            tasks,
                            rss_bytes: crate::runtime::memory::resident_bytes(),
                        }
                    };
                    if conn.send(&msg).is_err() {
                        break;
                    }
                    let step = Duration::from_millis(50);
                    let mut slept = Duration::ZERO;
                    while slept < interval.min(Duration::from_secs(1)) && !stop.load(Relaxed) {
                        std::thread::sleep(step);
                        slept += step;
                    }
                }
            })
            .map_err(|e| Error::io("cannot spawn thread for", "heartbeats", e))?
    };
    let result = loop {
        if shutdown.load(Relaxed) {
            break Ok(());
        }
        let msg = match recv::<ToTm>(&mut reader, &peer) {
            Ok(m) => m,
            Err(Error::Io { source, .. })
                if matches!(
                    source.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                break Err(Error::User(format!(
                    "no message from the JobManager within heartbeat.timeout ({:?})",
                    cfg.heartbeat_timeout
                )));
            }
            Err(e) => break Err(e),
        };
        if let Err(e) = handle_tm(msg, &conn, data, &prepared, memory, &current) {
            break Err(e);
        }
    };
    stop.store(true, Relaxed);
    // Without its JobManager an attempt cannot checkpoint or commit: stop it.
    let running = current.lock().expect("not poisoned").take();
    if let Some(a) = running {
        stop_attempt(a, data);
    }
    conn.close();
    let _ = heartbeat.join();
    result
}

pub(super) fn report(tasks: &[(u32, Arc<TaskMetrics>)]) -> Vec<TaskReport> {
    tasks
        .iter()
        .map(|(g, t)| TaskReport {
            task: *g,
            backpressured_ns: t.backpressured_ns.load(Relaxed),
            idle_ns: t.idle_ns.load(Relaxed),
            finished: t.finished.load(Relaxed),
            operators: t
                .operators
                .iter()
                .map(|o| OpReport {
                    records_in: o.records_in.load(Relaxed),
                    records_out: o.records_out.load(Relaxed),
                    watermark: o.watermark.load(Relaxed),
                    state_entries: o.state_entries.load(Relaxed),
                    skipped: o.skipped.load(Relaxed),
                    gauges: o.gauges.lock().expect("never poisoned").clone(),
                })
                .collect(),
        })
        .collect()
}

pub(super) fn stop_attempt(a: TmAttempt, data: &DataServer) {
    a.cancel.store(true, Relaxed);
    for t in a.threads {
        let _ = t.join();
    }
    data.unregister(a.attempt);
}

pub(super) fn handle_tm(
    msg: ToTm,
    conn: &Arc<Conn>,
    data: &Arc<DataServer>,
    job: &Arc<PreparedJob>,
    memory: &Option<MemoryBudget>,
    current: &Arc<Mutex<Option<TmAttempt>>>,
) -> Result<()> {
    let with = |attempt: u64, f: &dyn Fn(&TmAttempt)| {
        if let Some(a) = current
            .lock()
            .expect("not poisoned")
            .as_ref()
            .filter(|a| a.attempt == attempt)
        {
            f(a);
        }
    };
    match msg {
        ToTm::Ping | ToTm::Registered { .. } => {}
        ToTm::Deploy {
            attempt,
            slots,
            peers,
            restore,
            checkpoint_base,
            base_target,
        } => {
            let old = current.lock().expect("not poisoned").take();
            if let Some(old) = old {
                stop_attempt(old, data);
            }
            let globals = local_tasks(job, &slots);
            match deploy(
                attempt,
                &slots,
                &peers,
                restore,
                (checkpoint_base, base_target),
                conn,
                data,
                job,
                memory,
            ) {
                Ok(a) => *current.lock().expect("not poisoned") = Some(a),
                Err(e) => {
                    let message = crate::error::report(&e);
                    tracing::error!(attempt, error = %message, "cannot deploy the tasks");
                    conn.send(&ToJm::Broken {
                        attempt,
                        message: message.clone(),
                    })?;
                    for task in globals {
                        conn.send(&ToJm::TaskEnded {
                            attempt,
                            task,
                            error: Some(message.clone()),
                        })?;
                    }
                }
            }
        }
        ToTm::Trigger {
            attempt,
            id,
            target,
            kind,
        } => with(attempt, &|a| {
            a.targets
                .lock()
                .expect("not poisoned")
                .insert(id, target.clone());
            a.ctl.announce(Barrier { id, kind });
        }),
        ToTm::Completed { attempt, id } => with(attempt, &|a| {
            a.confirmed.lock().expect("not poisoned").completed(id);
            a.targets
                .lock()
                .expect("not poisoned")
                .retain(|k, _| *k > id);
            a.ctl.completed.fetch_max(id, SeqCst);
        }),
        ToTm::Aborted { attempt, id } => with(attempt, &|a| {
            a.ctl.aborted.fetch_max(id, SeqCst);
        }),
        ToTm::Cancel { attempt } => with(attempt, &|a| a.cancel.store(true, Relaxed)),
    }
    Ok(())
}

/// Global indices of the tasks the given slots run, in instantiation order.
pub(super) fn local_tasks(job: &PreparedJob, slots: &[u32]) -> Vec<u32> {
    job.graph
        .task_list(job.opts.chaining)
        .iter()
        .enumerate()
        .filter(|(_, (_, s, _))| slots.contains(&(*s as u32)))
        .map(|(g, _)| g as u32)
        .collect()
}

#[allow(clippy::too_many_arguments)]
pub(super) fn deploy(
    attempt: u64,
    slots: &[u32],
    peers: &[(u32, String)],
    restore: Option<String>,
    (checkpoint_base, base_target): (Barrier, Option<PersistTarget>),
    conn: &Arc<Conn>,
    data: &Arc<DataServer>,
    job: &PreparedJob,
    memory: &Option<MemoryBudget>,
) -> Result<TmAttempt> {
    let local: BTreeSet<usize> = slots.iter().map(|s| *s as usize).collect();
    let mut opts = job.opts.clone();
    opts.memory = memory.clone();
    opts.restore = match &restore {
        Some(path) => Some(Arc::new(RestorePlan::open(
            path,
            &job.checkpointing.storage,
        )?)),
        None => None,
    };
    let inst = job
        .graph
        .instantiate_slots(&opts, &|s| local.contains(&s))?;
    let globals = local_tasks(job, slots);
    let cancel = Arc::new(AtomicBool::new(false));
    let (ack_tx, ack_rx) = crossbeam_channel::unbounded::<Ack>();
    let ctl = Arc::new(CheckpointControl {
        trigger: AtomicU64::new(checkpoint_base.id),
        completed: AtomicU64::new(checkpoint_base.id),
        acks: ack_tx,
        exactly_once: job.checkpointing.mode == CheckpointingMode::ExactlyOnce,
        unaligned: job.checkpointing.unaligned,
        aborted: AtomicU64::new(0),
        barrier: Mutex::new(checkpoint_base),
        target: Mutex::new(None),
    });
    let targets: Arc<Mutex<HashMap<u64, PersistTarget>>> = Arc::new(Mutex::new(
        base_target
            .map(|t| (checkpoint_base.id, t))
            .into_iter()
            .collect(),
    ));
    let confirmed: Arc<Mutex<ConfirmedShared>> = Arc::default();
    // Persist acknowledged state off the task threads and tell the JobManager.
    {
        let (targets, confirmed, conn) = (targets.clone(), confirmed.clone(), conn.clone());
        let storage = job.checkpointing.storage.clone();
        std::thread::Builder::new()
            .name("checkpoint-upload".into())
            .spawn(move || {
                let mut stores: HashMap<String, Arc<dyn ObjectStore>> = HashMap::new();
                for ack in ack_rx {
                    let target = targets.lock().expect("not poisoned").get(&ack.id).cloned();
                    let mut states = Vec::new();
                    for (uid, subtask, state) in ack.states {
                        let SubtaskAck::Raw(state) = state else {
                            continue;
                        };
                        let r = (|| {
                            let target = target.as_ref().ok_or_else(|| {
                                Error::User(format!("checkpoint {} has no target", ack.id))
                            })?;
                            let store = match stores.get(&target.dir) {
                                Some(s) => s.clone(),
                                None => {
                                    let s = open_target(target, &storage)?;
                                    stores.insert(target.dir.clone(), s.clone());
                                    s
                                }
                            };
                            let known = confirmed.lock().expect("not poisoned");
                            let done = persist(&*store, target, &uid, subtask, &state, &|o| {
                                known.contains(o)
                            })?;
                            drop(known);
                            if let Some(h) = &done.handle {
                                confirmed
                                    .lock()
                                    .expect("not poisoned")
                                    .referenced(ack.id, h);
                            }
                            Ok::<_, Error>(done)
                        })();
                        crate::runtime::persist::discard_local(&state);
                        states.push((uid, subtask as u32, r.map_err(|e| crate::error::report(&e))));
                    }
                    if conn
                        .send(&ToJm::Ack {
                            attempt,
                            id: ack.id,
                            states,
                            timing: ack.timing,
                        })
                        .is_err()
                    {
                        break;
                    }
                }
            })
            .map_err(|e| Error::io("cannot spawn thread for", "checkpoint uploads", e))?;
    }
    let on_broken: OnBroken = {
        let conn = conn.clone();
        Arc::new(move |message: String| {
            let _ = conn.send(&ToJm::Broken { attempt, message });
        })
    };
    data.register(
        attempt,
        inst.remote_inputs,
        cancel.clone(),
        on_broken.clone(),
    );
    let addrs: HashMap<u32, SocketAddr> = peers
        .iter()
        .filter_map(|(slot, a)| a.parse().ok().map(|a| (*slot, a)))
        .collect();
    start_outputs(
        attempt,
        inst.remote_outputs,
        &|sub| addrs.get(&(sub as u32)).copied(),
        cancel.clone(),
        on_broken,
    )?;
    let errors = Arc::new(Mutex::new(Vec::new()));
    let (tasks, task_metrics) = prepare_tasks(
        inst.tasks,
        &cancel,
        job.batch_size,
        opts.max_parallelism,
        &ctl,
    );
    let ended: TaskEnded = {
        let (conn, globals) = (conn.clone(), globals.clone());
        Arc::new(move |i: usize, e: Option<&Error>| {
            let error = e.map(|e| {
                if crate::runtime::exec::is_cancellation(e) {
                    CANCELLED.to_string()
                } else {
                    crate::error::report(e)
                }
            });
            let _ = conn.send(&ToJm::TaskEnded {
                attempt,
                task: globals[i],
                error,
            });
        })
    };
    let threads = spawn_tasks(tasks, &cancel, &errors, ended)?;
    tracing::info!(attempt, slots = ?slots, tasks = globals.len(), "tasks deployed");
    Ok(TmAttempt {
        attempt,
        cancel,
        ctl,
        targets,
        confirmed,
        tasks: globals.into_iter().zip(task_metrics).collect(),
        threads,
    })
}
