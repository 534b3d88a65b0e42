//! The JobManager side: registered TaskManagers, deploying an attempt onto their slots,
//! mirroring checkpoints to them, and the RPC port they register on.

use super::protocol::{Conn, ToJm, ToTm, accept_handshake, peer_of, recv};
use super::taskmanager::CANCELLED;
use super::{ClusterConfig, JobSpec, PreparedJob};
use crate::error::{Error, Result};
use crate::runtime::coordinator::{Ack, CheckpointControl};
use crate::runtime::exec::{Shared, StartedTasks};
use crate::runtime::graph::{JobGraph, PlanOptions};
use crate::runtime::memory::MemoryBudget;
use crate::runtime::metrics::{JobMetrics, OperatorMetrics, TaskMetrics};
use crate::runtime::persist::SubtaskAck;
use crate::runtime::secure as rpc;
use std::io::BufReader;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

pub(super) struct TmEntry {
    id: u64,
    slots: usize,
    data_addr: String,
    conn: Arc<Conn>,
    last_seen: Instant,
    memory: Option<MemoryBudget>,
    rss_bytes: Option<u64>,
}

/// A registered TaskManager as the JobManager sees it (`GET /taskmanagers`, metrics).
#[derive(Debug, Clone, PartialEq)]
pub struct TaskManagerInfo {
    /// Its id (assigned at registration; `local` for `weir run`).
    pub id: String,
    /// Where its data port listens.
    pub data_addr: String,
    /// Slots it offers.
    pub slots: usize,
    /// Slots running subtasks of the current attempt.
    pub slots_in_use: usize,
    /// Milliseconds since its last message.
    pub since_heartbeat_ms: u64,
    /// Its memory budget, if it has one.
    pub memory: Option<MemoryBudget>,
    /// Its resident memory as last reported.
    pub rss_bytes: Option<u64>,
}

/// One attempt as the JobManager tracks it.
pub(super) struct RemoteAttempt {
    attempt: u64,
    ctl: Arc<CheckpointControl>,
    cancel: Arc<AtomicBool>,
    errors: Arc<Mutex<Vec<Error>>>,
    metrics: Arc<JobMetrics>,
    /// Per task: ended.
    ended: Mutex<Vec<bool>>,
    ended_changed: Condvar,
    /// TaskManager id per slot, once deployed.
    slots: Mutex<Vec<u64>>,
}

impl RemoteAttempt {
    fn fail(&self, e: Error) {
        if !self.cancel.load(Relaxed) {
            tracing::warn!(attempt = self.attempt, error = %crate::error::report(&e), "attempt failed");
        }
        self.errors.lock().expect("not poisoned").push(e);
        self.cancel.store(true, Relaxed);
    }

    fn end_task(&self, task: usize) {
        let mut e = self.ended.lock().expect("not poisoned");
        if let Some(slot) = e.get_mut(task) {
            *slot = true;
        }
        if let Some(t) = self.metrics.tasks.get(task) {
            t.finished.store(true, Relaxed);
        }
        self.ended_changed.notify_all();
    }
}

/// The JobManager's side of the cluster: registered TaskManagers and the current attempt.
pub(crate) struct Deployer {
    spec: JobSpec,
    cfg: ClusterConfig,
    /// Where the RPC port is bound (the real port when `jobmanager.rpc.port` is 0).
    rpc_bound: SocketAddr,
    tms: Mutex<Vec<TmEntry>>,
    tms_changed: Condvar,
    current: Mutex<Option<Arc<RemoteAttempt>>>,
    next_tm: AtomicU64,
}

/// What the supervisor hands a cluster attempt.
pub(crate) struct AttemptRequest<'a> {
    pub(crate) attempt: u64,
    pub(crate) graph: &'a JobGraph,
    pub(crate) opts: &'a PlanOptions,
    pub(crate) restore_path: Option<String>,
    pub(crate) cancel: Arc<AtomicBool>,
    pub(crate) errors: Arc<Mutex<Vec<Error>>>,
    pub(crate) ctl: Arc<CheckpointControl>,
    pub(crate) shared: Arc<Shared>,
}

impl Deployer {
    /// Binds the RPC port and starts accepting TaskManagers.
    pub(crate) fn start(spec: JobSpec, cfg: ClusterConfig) -> Result<Arc<Self>> {
        let bind = format!("{}:{}", cfg.rpc_bind_host, cfg.rpc_port);
        let listener = TcpListener::bind(&bind)
            .map_err(|e| Error::io("cannot bind the JobManager RPC port", bind.clone(), e))?;
        let rpc_bound = listener
            .local_addr()
            .map_err(|e| Error::io("cannot read the address of", bind.clone(), e))?;
        tracing::info!(address = %rpc_bound, "JobManager RPC listening");
        let d = Arc::new(Deployer {
            spec,
            cfg,
            rpc_bound,
            tms: Mutex::new(Vec::new()),
            tms_changed: Condvar::new(),
            current: Mutex::new(None),
            next_tm: AtomicU64::new(1),
        });
        let acceptor = d.clone();
        std::thread::Builder::new()
            .name("rpc-accept".into())
            .spawn(move || {
                for conn in listener.incoming().flatten() {
                    let d = acceptor.clone();
                    let _ = std::thread::Builder::new()
                        .name("rpc-tm".into())
                        .spawn(move || d.serve(conn));
                }
            })
            .map_err(|e| Error::io("cannot spawn thread for", "the RPC port", e))?;
        let monitor = d.clone();
        std::thread::Builder::new()
            .name("heartbeats".into())
            .spawn(move || monitor.monitor())
            .map_err(|e| Error::io("cannot spawn thread for", "heartbeats", e))?;
        Ok(d)
    }

    /// Pings every TaskManager and drops those not heard from within the timeout.
    fn monitor(&self) {
        loop {
            std::thread::sleep(self.cfg.heartbeat_interval);
            let mut lost = Vec::new();
            for tm in self.tms.lock().expect("not poisoned").iter() {
                if tm.last_seen.elapsed() > self.cfg.heartbeat_timeout {
                    lost.push(tm.id);
                } else {
                    let _ = tm.conn.send(&ToTm::Ping);
                }
            }
            for id in lost {
                self.lost(id, "heartbeat timeout");
            }
        }
    }

    fn current(&self, attempt: u64) -> Option<Arc<RemoteAttempt>> {
        self.current
            .lock()
            .expect("not poisoned")
            .clone()
            .filter(|a| a.attempt == attempt)
    }

    fn serve(&self, tcp: TcpStream) {
        let peer = peer_of(&tcp);
        let stream = match rpc::accept(tcp, self.cfg.rpc_tls.as_ref(), self.cfg.heartbeat_timeout) {
            Ok(s) => s,
            Err(e) => {
                let reason = crate::error::report(&e);
                tracing::warn!(%peer, %reason, "refused a TaskManager connection");
                return;
            }
        };
        let conn = match stream
            .try_clone()
            .map_err(|e| Error::io("cannot clone", "a TaskManager connection", e))
            .and_then(|s| Conn::new(s, peer.clone()))
        {
            Ok(c) => Arc::new(c),
            Err(_) => return,
        };
        // A peer that goes silent in the handshake or before registering gives up its thread.
        let _ = stream.set_read_timeout(Some(self.cfg.heartbeat_timeout));
        let mut reader = BufReader::new(stream);
        if let Err(reason) = accept_handshake(&conn, &mut reader, self.cfg.rpc_token.as_ref()) {
            tracing::warn!(%peer, %reason, "refused a TaskManager connection");
            conn.close();
            return;
        }
        let Ok(ToJm::Register {
            slots,
            data_addr,
            memory,
        }) = recv::<ToJm>(&mut reader, &peer)
        else {
            return;
        };
        let _ = reader.get_ref().set_read_timeout(None);
        let id = self.next_tm.fetch_add(1, Relaxed);
        if conn
            .send(&ToTm::Registered {
                tm: id,
                job: self.spec.clone(),
            })
            .is_err()
        {
            return;
        }
        tracing::info!(taskmanager = id, %peer, %data_addr, slots, "TaskManager registered");
        self.tms.lock().expect("not poisoned").push(TmEntry {
            id,
            slots: slots as usize,
            data_addr,
            conn: conn.clone(),
            last_seen: Instant::now(),
            memory,
            rss_bytes: None,
        });
        self.tms_changed.notify_all();
        let reason = loop {
            let msg = match recv::<ToJm>(&mut reader, &peer) {
                Ok(m) => m,
                Err(e) => break crate::error::report(&e),
            };
            if let Some(tm) = self
                .tms
                .lock()
                .expect("not poisoned")
                .iter_mut()
                .find(|t| t.id == id)
            {
                tm.last_seen = Instant::now();
                if let ToJm::Heartbeat {
                    rss_bytes: Some(rss),
                    ..
                } = &msg
                {
                    tm.rss_bytes = Some(*rss);
                }
            } else {
                break "dropped after a heartbeat timeout".to_string();
            }
            self.handle(msg);
        };
        self.lost(id, &reason);
    }

    fn handle(&self, msg: ToJm) {
        match msg {
            ToJm::Register { .. } => {}
            ToJm::Heartbeat { attempt, tasks, .. } => {
                if let Some(a) = self.current(attempt) {
                    for r in tasks {
                        let Some(t) = a.metrics.tasks.get(r.task as usize) else {
                            continue;
                        };
                        t.backpressured_ns.store(r.backpressured_ns, Relaxed);
                        t.idle_ns.store(r.idle_ns, Relaxed);
                        for (m, o) in t.operators.iter().zip(&r.operators) {
                            m.records_in.store(o.records_in, Relaxed);
                            m.records_out.store(o.records_out, Relaxed);
                            m.watermark.store(o.watermark, Relaxed);
                            m.state_entries.store(o.state_entries, Relaxed);
                            m.skipped.store(o.skipped, Relaxed);
                            m.gauges
                                .lock()
                                .expect("never poisoned")
                                .clone_from(&o.gauges);
                        }
                    }
                }
            }
            ToJm::Ack {
                attempt,
                id,
                states,
                timing,
            } => {
                if let Some(a) = self.current(attempt) {
                    let states = states
                        .into_iter()
                        .map(|(uid, sub, r)| {
                            let s = match r {
                                Ok(p) => SubtaskAck::Persisted(p),
                                Err(e) => SubtaskAck::Failed(e),
                            };
                            (uid, sub as usize, s)
                        })
                        .collect();
                    let _ = a.ctl.acks.send(Ack { id, states, timing });
                }
            }
            ToJm::TaskEnded {
                attempt,
                task,
                error,
            } => {
                if let Some(a) = self.current(attempt) {
                    if let Some(e) = error {
                        let (name, sub) = a
                            .metrics
                            .tasks
                            .get(task as usize)
                            .map(|t| (t.name.clone(), t.subtask))
                            .unwrap_or_default();
                        let source = if e == CANCELLED {
                            Error::Cancelled
                        } else {
                            Error::User(e)
                        };
                        a.fail(Error::Task {
                            task: name,
                            subtask: sub,
                            source: Box::new(source),
                        });
                    }
                    a.end_task(task as usize);
                }
            }
            ToJm::Broken { attempt, message } => {
                if let Some(a) = self.current(attempt) {
                    a.fail(Error::User(message));
                }
            }
        }
    }

    /// Where the RPC port is bound.
    pub(crate) fn rpc_bound(&self) -> SocketAddr {
        self.rpc_bound
    }

    /// The registered TaskManagers.
    pub(crate) fn taskmanagers(&self) -> Vec<TaskManagerInfo> {
        let in_use: Vec<u64> = self
            .current
            .lock()
            .expect("not poisoned")
            .as_ref()
            .map(|a| a.slots.lock().expect("not poisoned").clone())
            .unwrap_or_default();
        self.tms
            .lock()
            .expect("not poisoned")
            .iter()
            .map(|t| TaskManagerInfo {
                id: t.id.to_string(),
                data_addr: t.data_addr.clone(),
                slots: t.slots,
                slots_in_use: in_use.iter().filter(|&&i| i == t.id).count(),
                since_heartbeat_ms: t.last_seen.elapsed().as_millis() as u64,
                memory: t.memory.clone(),
                rss_bytes: t.rss_bytes,
            })
            .collect()
    }

    /// The TaskManager each slot of the current attempt was deployed to: slot `i` runs
    /// subtask `i` of every task. Empty between attempts.
    pub(crate) fn placement(&self) -> Vec<u64> {
        self.current
            .lock()
            .expect("not poisoned")
            .as_ref()
            .map(|a| a.slots.lock().expect("not poisoned").clone())
            .unwrap_or_default()
    }

    fn lost(&self, id: u64, reason: &str) {
        let entry = {
            let mut tms = self.tms.lock().expect("not poisoned");
            let Some(pos) = tms.iter().position(|t| t.id == id) else {
                return;
            };
            tms.remove(pos)
        };
        entry.conn.close();
        tracing::warn!(taskmanager = id, reason, "TaskManager lost");
        let current = self.current.lock().expect("not poisoned").clone();
        if let Some(a) = current {
            let slots = a.slots.lock().expect("not poisoned").clone();
            if slots.contains(&id) {
                a.fail(Error::User(format!(
                    "TaskManager {id} at {} was lost: {reason}",
                    entry.conn.peer
                )));
                // Its tasks will never report: count them as ended.
                let tasks: Vec<usize> = a
                    .metrics
                    .tasks
                    .iter()
                    .enumerate()
                    .filter(|(_, t)| slots.get(t.subtask) == Some(&id))
                    .map(|(i, _)| i)
                    .collect();
                for t in tasks {
                    a.end_task(t);
                }
            }
        }
        self.tms_changed.notify_all();
    }

    /// Starts an attempt: a thread waits for slots, deploys, mirrors checkpoint control to
    /// the TaskManagers and ends when every task has ended.
    pub(crate) fn start_attempt(self: &Arc<Self>, req: AttemptRequest<'_>) -> Result<StartedTasks> {
        let list = req.graph.task_list(req.opts.chaining);
        let mut operators = Vec::new();
        let tasks: Vec<Arc<TaskMetrics>> = list
            .iter()
            .map(|(name, subtask, ops)| {
                let ops: Vec<Arc<OperatorMetrics>> = ops
                    .iter()
                    .map(|(op, source, sink)| {
                        Arc::new(OperatorMetrics::new(op, *subtask, *source, *sink))
                    })
                    .collect();
                operators.extend(ops.iter().cloned());
                Arc::new(TaskMetrics {
                    name: name.clone(),
                    subtask: *subtask,
                    operators: ops,
                    backpressured_ns: AtomicU64::new(0),
                    idle_ns: AtomicU64::new(0),
                    finished: AtomicBool::new(false),
                })
            })
            .collect();
        let expected = tasks.len();
        let metrics = Arc::new(JobMetrics {
            operators,
            tasks,
            started: Instant::now(),
        });
        let attempt = Arc::new(RemoteAttempt {
            attempt: req.attempt,
            ctl: req.ctl,
            cancel: req.cancel,
            errors: req.errors,
            metrics: metrics.clone(),
            ended: Mutex::new(vec![false; expected]),
            ended_changed: Condvar::new(),
            slots: Mutex::new(Vec::new()),
        });
        let needed = req.graph.slots_needed();
        let (d, restore, shared) = (self.clone(), req.restore_path, req.shared);
        let thread = std::thread::Builder::new()
            .name(format!("attempt {}", req.attempt))
            .spawn(move || d.run_attempt(&attempt, needed, restore, &shared))
            .map_err(|e| Error::io("cannot spawn thread for", "an attempt", e))?;
        Ok(StartedTasks {
            threads: vec![thread],
            metrics,
            expected,
        })
    }

    fn run_attempt(
        &self,
        a: &Arc<RemoteAttempt>,
        needed: usize,
        restore: Option<String>,
        shared: &Shared,
    ) {
        *self.current.lock().expect("not poisoned") = Some(a.clone());
        // Wait for enough slots.
        let mut waited_log = Instant::now();
        let assignment = loop {
            if a.cancel.load(Relaxed) {
                return self.finish_attempt(a);
            }
            let tms = self.tms.lock().expect("not poisoned");
            let available: usize = tms.iter().map(|t| t.slots).sum();
            if available >= needed {
                let mut slots = Vec::with_capacity(needed);
                for t in tms.iter() {
                    for _ in 0..t.slots {
                        if slots.len() < needed {
                            slots.push(t.id);
                        }
                    }
                }
                break slots;
            }
            if waited_log.elapsed() > Duration::from_secs(10) {
                waited_log = Instant::now();
                tracing::info!(available, needed, "waiting for TaskManager slots");
            }
            drop(
                self.tms_changed
                    .wait_timeout(tms, Duration::from_millis(200))
                    .expect("not poisoned"),
            );
        };
        *a.slots.lock().expect("not poisoned") = assignment.clone();
        let tms: Vec<(u64, Arc<Conn>, String)> = {
            let all = self.tms.lock().expect("not poisoned");
            all.iter()
                .filter(|t| assignment.contains(&t.id))
                .map(|t| (t.id, t.conn.clone(), t.data_addr.clone()))
                .collect()
        };
        let peers: Vec<(u32, String)> = assignment
            .iter()
            .enumerate()
            .filter_map(|(slot, id)| {
                tms.iter()
                    .find(|t| t.0 == *id)
                    .map(|t| (slot as u32, t.2.clone()))
            })
            .collect();
        let base = a.ctl.latest_barrier();
        let base_target = a
            .ctl
            .target
            .lock()
            .expect("not poisoned")
            .clone()
            .filter(|(id, _)| *id == base.id)
            .map(|(_, target)| target);
        for (id, conn, _) in &tms {
            let slots = assignment
                .iter()
                .enumerate()
                .filter(|(_, t)| *t == id)
                .map(|(s, _)| s as u32)
                .collect();
            let msg = ToTm::Deploy {
                attempt: a.attempt,
                slots,
                peers: peers.clone(),
                restore: restore.clone(),
                checkpoint_base: base,
                base_target: base_target.clone(),
            };
            if let Err(e) = conn.send(&msg) {
                a.fail(e);
            }
        }
        tracing::info!(
            attempt = a.attempt,
            taskmanagers = tms.len(),
            slots = needed,
            "job deployed"
        );
        {
            let mut s = shared.status.lock().expect("not poisoned");
            if matches!(
                *s,
                crate::runtime::JobStatus::Created | crate::runtime::JobStatus::Restarting
            ) {
                *s = crate::runtime::JobStatus::Running;
            }
        }
        let conns: Vec<Arc<Conn>> = tms.into_iter().map(|t| t.1).collect();
        self.mirror(a, &conns);
        self.finish_attempt(a);
    }

    /// Forwards checkpoint control to the TaskManagers until every task has ended.
    fn mirror(&self, a: &RemoteAttempt, conns: &[Arc<Conn>]) {
        let send = |m: &ToTm| {
            for c in conns {
                let _ = c.send(m);
            }
        };
        let ctl = &a.ctl;
        let (mut trigger, mut completed, mut aborted) = (
            ctl.trigger.load(SeqCst),
            ctl.completed.load(SeqCst),
            ctl.aborted.load(SeqCst),
        );
        let mut cancel_sent: Option<Instant> = None;
        loop {
            let t = ctl.trigger.load(SeqCst);
            if t > trigger {
                trigger = t;
                let target = ctl.target.lock().expect("not poisoned").clone();
                let barrier = *ctl.barrier.lock().expect("not poisoned");
                if let Some((id, target)) = target.filter(|(id, _)| *id == t && barrier.id == t) {
                    send(&ToTm::Trigger {
                        attempt: a.attempt,
                        id,
                        target,
                        kind: barrier.kind,
                    });
                }
            }
            let c = ctl.completed.load(SeqCst);
            if c > completed {
                completed = c;
                send(&ToTm::Completed {
                    attempt: a.attempt,
                    id: c,
                });
            }
            let x = ctl.aborted.load(SeqCst);
            if x > aborted {
                aborted = x;
                send(&ToTm::Aborted {
                    attempt: a.attempt,
                    id: x,
                });
            }
            if a.cancel.load(Relaxed) {
                match cancel_sent {
                    None => {
                        send(&ToTm::Cancel { attempt: a.attempt });
                        cancel_sent = Some(Instant::now());
                    }
                    // TaskManagers that neither report nor drop their connection: stop waiting.
                    Some(t) if t.elapsed() > Duration::from_secs(60) => {
                        tracing::warn!(
                            attempt = a.attempt,
                            "tasks did not report cancellation within 60 s"
                        );
                        return;
                    }
                    Some(_) => {}
                }
            }
            let ended = a.ended.lock().expect("not poisoned");
            if ended.iter().all(|e| *e) {
                return;
            }
            drop(
                a.ended_changed
                    .wait_timeout(ended, Duration::from_millis(2))
                    .expect("not poisoned"),
            );
        }
    }

    fn finish_attempt(&self, a: &Arc<RemoteAttempt>) {
        let mut cur = self.current.lock().expect("not poisoned");
        if cur.as_ref().is_some_and(|c| Arc::ptr_eq(c, a)) {
            *cur = None;
        }
    }
}

/// Starts the JobManager side of a cluster job: the RPC port for TaskManagers and the
/// supervisor, which waits for slots and runs the job on them.
pub(crate) fn spawn_jobmanager(
    name: &str,
    job: PreparedJob,
    spec: JobSpec,
    cluster: ClusterConfig,
) -> Result<crate::runtime::JobHandle> {
    let deployer = Deployer::start(spec, cluster)?;
    crate::runtime::exec::spawn(
        name,
        &job.graph,
        &job.opts,
        job.batch_size,
        job.checkpointing,
        Some(deployer),
    )
}
