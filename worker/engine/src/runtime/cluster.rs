//! The cluster runtime: one JobManager and N TaskManagers as separate processes running one
//! job (Flink's application mode).
//!
//! The JobManager runs the same supervisor and checkpoint coordinator as `weir run`; only
//! where tasks run differs. TaskManagers register over the control connection (typed
//! messages, postcard-encoded, length-framed over TCP) offering slots; the JobManager waits
//! until the job's slots are available, gives each TaskManager its slots (slot `i` runs
//! subtask `i` of every task, as Flink's slot sharing does) and mirrors checkpoint triggers,
//! completions and aborts to them. Each TaskManager builds the same job graph from the job
//! spec, runs its subtasks, exchanges records with the others over the network exchange
//! ([`super::net`]), writes its tasks' checkpoint state to storage itself and acknowledges
//! with a small summary. A TaskManager that is lost (connection closed, heartbeat timeout)
//! fails the attempt; the supervisor restarts the job from its latest completed checkpoint
//! once enough slots are registered again.
//!
//! Every control connection first passes the connection layer ([`super::secure`]: TLS with
//! certificates on both sides when `security.ssl.internal.enabled`), then opens with a
//! handshake ([`Handshake`]) before any message: with
//! `security.internal.token-file` set, the TaskManager and the JobManager each prove they
//! hold the shared secret (HMAC-SHA256 over both sides' random challenges; the secret never
//! crosses the wire), so a process without it can neither register as a TaskManager nor pose
//! as the JobManager and send commands.

use super::coordinator::{Ack, CheckpointControl};
use super::exec::{Shared, StartedTasks, TaskEnded, prepare_tasks, spawn_tasks};
use super::graph::{JobGraph, PlanOptions};
use super::memory::{MemoryBudget, MemoryConfig};
use super::metrics::{JobMetrics, OperatorMetrics, TaskMetrics};
use super::net::{DataServer, OnBroken, read_frame, start_outputs, write_frame};
use super::persist::{ConfirmedShared, PersistTarget, Persisted, SubtaskAck, open_target, persist};
use super::secure::{self as rpc, RpcStream, RpcTls};
use crate::checkpoint::{Barrier, ObjectStore, RestorePlan, SnapshotKind};
use crate::config::{CheckpointConfig, CheckpointingMode, Config};
use crate::error::{Error, Result};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};
use std::io::BufReader;
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use weir_contract::options::{self as opt, ConfigOption};
use weir_contract::security::{self, Token};

/// The job a cluster runs, as the JobManager was told (`weir jobmanager <job> [args]`):
/// TaskManagers build the same graph from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSpec {
    /// Registered job name (or SQL file, once SQL jobs run on clusters).
    pub name: String,
    /// Job arguments, `key=value`.
    pub args: Vec<String>,
    /// The JobManager's configuration (every key set explicitly).
    pub config: Vec<(String, String)>,
}

/// A job graph with everything needed to run it, detached from the (single-threaded)
/// environment that built it.
pub struct PreparedJob {
    pub(crate) graph: JobGraph,
    pub(crate) opts: PlanOptions,
    pub(crate) batch_size: usize,
    pub(crate) checkpointing: CheckpointConfig,
}

impl std::fmt::Debug for PreparedJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedJob")
            .field("operators", &self.graph.nodes.len())
            .finish()
    }
}

/// Addresses and timeouts of the cluster (`jobmanager.*`, `taskmanager.*`, `heartbeat.*`).
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// `jobmanager.rpc.address`: where TaskManagers reach the JobManager.
    pub rpc_address: String,
    /// `jobmanager.rpc.port`.
    pub rpc_port: u16,
    /// `jobmanager.bind-host`: the address the JobManager's RPC port binds to.
    pub rpc_bind_host: String,
    /// `taskmanager.numberOfTaskSlots`.
    pub slots: usize,
    /// `taskmanager.host`: the address a TaskManager's data port binds to and advertises.
    pub taskmanager_host: String,
    /// `taskmanager.data.port` (0: any free port).
    pub data_port: u16,
    /// `heartbeat.interval`.
    pub heartbeat_interval: Duration,
    /// `heartbeat.timeout`.
    pub heartbeat_timeout: Duration,
    /// The memory keys: a TaskManager's budget.
    pub memory: MemoryConfig,
    /// `security.internal.token-file`'s secret, which both ends of the RPC must hold.
    pub rpc_token: Option<Token>,
    /// `security.ssl.internal.*`: TLS with certificates on both ends of the RPC.
    pub rpc_tls: Option<RpcTls>,
}

impl ClusterConfig {
    /// Reads the cluster keys; `pod_ip` (the `POD_IP` environment variable) is the default
    /// bind address of both ports.
    pub fn from_config(c: &Config, pod_ip: Option<&str>) -> Result<Self> {
        let port = |o: ConfigOption| -> Result<u16> {
            let (key, v) = (o.key, c.get(o));
            v.parse().map_err(|_| {
                Error::Config(format!(
                    "'{key}' must be a port number (0-65535), got '{v}'"
                ))
            })
        };
        let or = |o: ConfigOption, fallback: &str| -> String {
            match c.get(o) {
                "" => pod_ip.unwrap_or(fallback).to_string(),
                v => v.to_string(),
            }
        };
        let heartbeat_interval = c.duration(opt::HEARTBEAT_INTERVAL)?;
        let heartbeat_timeout = c.duration(opt::HEARTBEAT_TIMEOUT)?;
        if heartbeat_timeout <= heartbeat_interval {
            return Err(Error::Config(format!(
                "'{}' ({heartbeat_timeout:?}) must be longer than '{}' ({heartbeat_interval:?})",
                opt::HEARTBEAT_TIMEOUT.key,
                opt::HEARTBEAT_INTERVAL.key
            )));
        }
        Ok(ClusterConfig {
            rpc_address: c.get(opt::RPC_ADDRESS).to_string(),
            rpc_port: port(opt::RPC_PORT)?,
            // Off Kubernetes only this host reaches the RPC port unless told otherwise.
            rpc_bind_host: or(opt::RPC_BIND_HOST, "127.0.0.1"),
            slots: c.positive(opt::TASK_SLOTS)?,
            taskmanager_host: or(opt::TASKMANAGER_HOST, "127.0.0.1"),
            data_port: port(opt::DATA_PORT)?,
            heartbeat_interval,
            heartbeat_timeout,
            memory: c.memory()?,
            rpc_token: weir_contract::security::internal_token(|o| c.get(o).to_string())
                .map_err(|e| Error::Config(e.to_string()))?,
            rpc_tls: weir_contract::security::internal_tls(|o| c.get(o).to_string())
                .map_err(|e| Error::Config(e.to_string()))?
                .map(|(server, client)| RpcTls { server, client }),
        })
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct OpReport {
    records_in: u64,
    records_out: u64,
    watermark: Timestamp,
    state_entries: u64,
    skipped: u64,
    gauges: Vec<super::metrics::Gauge>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct TaskReport {
    task: u32,
    backpressured_ns: u64,
    finished: bool,
    operators: Vec<OpReport>,
}

/// TaskManager → JobManager.
#[derive(Debug, Serialize, Deserialize)]
enum ToJm {
    Register {
        slots: u32,
        data_addr: String,
        memory: Option<MemoryBudget>,
    },
    Heartbeat {
        attempt: u64,
        tasks: Vec<TaskReport>,
        rss_bytes: Option<u64>,
    },
    Ack {
        attempt: u64,
        id: u64,
        states: Vec<(String, u32, std::result::Result<Persisted, String>)>,
    },
    TaskEnded {
        attempt: u64,
        task: u32,
        error: Option<String>,
    },
    Broken {
        attempt: u64,
        message: String,
    },
}

/// JobManager → TaskManager.
#[derive(Debug, Serialize, Deserialize)]
enum ToTm {
    Registered {
        tm: u64,
        job: JobSpec,
    },
    Deploy {
        attempt: u64,
        slots: Vec<u32>,
        peers: Vec<(u32, String)>,
        restore: Option<String>,
        /// The latest barrier triggered when the tasks were deployed: sources inject it
        /// first (the JobManager does not send that trigger again).
        checkpoint_base: Barrier,
        /// Where that barrier's snapshot is written, if it is one in flight (a checkpoint
        /// triggered while the tasks were being deployed); without it the TaskManager could
        /// not persist what its sources snapshot for it.
        base_target: Option<PersistTarget>,
    },
    Trigger {
        attempt: u64,
        id: u64,
        target: PersistTarget,
        /// What the snapshot is for; travels with the barrier.
        kind: SnapshotKind,
    },
    Completed {
        attempt: u64,
        id: u64,
    },
    Aborted {
        attempt: u64,
        id: u64,
    },
    Cancel {
        attempt: u64,
    },
    Ping,
}

/// The first frames of every control connection, before [`ToJm::Register`]: the JobManager
/// challenges, the TaskManager answers with its proof and a challenge of its own, and the
/// JobManager accepts with its proof (or refuses, saying why).
#[derive(Debug, Serialize, Deserialize)]
enum Handshake {
    Challenge {
        nonce: [u8; 32],
    },
    Proof {
        /// HMAC of [`TM_PROOF`] and both challenges; `None` without a secret.
        tag: Option<Vec<u8>>,
        nonce: [u8; 32],
    },
    Accepted {
        /// HMAC of [`JM_PROOF`] and both challenges; `None` without a secret.
        tag: Option<Vec<u8>>,
    },
    Refused {
        reason: String,
    },
}

/// What each side signs, so neither side's proof can be replayed as the other's.
const TM_PROOF: &[u8] = b"weir rpc: taskmanager";
const JM_PROOF: &[u8] = b"weir rpc: jobmanager";

fn proof_message(role: &[u8], jm_nonce: &[u8; 32], tm_nonce: &[u8; 32]) -> Vec<u8> {
    [role, jm_nonce, tm_nonce].concat()
}

/// The key a refusal names, so the log says what to set.
fn secret_key() -> &'static str {
    weir_contract::options::INTERNAL_TOKEN_FILE.key
}

/// The JobManager's side of the handshake; `Err` says why the peer was refused (and has
/// been told so).
fn accept_handshake(
    conn: &Conn,
    reader: &mut impl std::io::Read,
    token: Option<&Token>,
) -> std::result::Result<(), String> {
    let jm_nonce = security::nonce();
    conn.send(&Handshake::Challenge { nonce: jm_nonce })
        .map_err(|e| crate::error::report(&e))?;
    let Handshake::Proof {
        tag,
        nonce: tm_nonce,
    } = recv::<Handshake>(reader, &conn.peer).map_err(|e| crate::error::report(&e))?
    else {
        return Err("it did not answer the challenge".into());
    };
    let refusal = match (token, &tag) {
        (None, _) => None,
        (Some(_), None) => Some(format!(
            "it presented no RPC secret (set {} on the TaskManager)",
            secret_key()
        )),
        (Some(t), Some(tag)) if !t.verify(&proof_message(TM_PROOF, &jm_nonce, &tm_nonce), tag) => {
            Some(format!(
                "its RPC secret differs from this JobManager's ({})",
                secret_key()
            ))
        }
        (Some(_), Some(_)) => None,
    };
    if let Some(reason) = refusal {
        let _ = conn.send(&Handshake::Refused {
            reason: reason.clone(),
        });
        return Err(reason);
    }
    let tag = token.map(|t| t.sign(&proof_message(JM_PROOF, &jm_nonce, &tm_nonce)));
    conn.send(&Handshake::Accepted { tag })
        .map_err(|e| crate::error::report(&e))
}

/// The TaskManager's side: answers the challenge and checks the JobManager's proof.
fn offer_handshake(
    conn: &Conn,
    reader: &mut impl std::io::Read,
    token: Option<&Token>,
) -> Result<()> {
    let peer = &conn.peer;
    let Handshake::Challenge { nonce: jm_nonce } = recv::<Handshake>(reader, peer)? else {
        return Err(Error::User(format!(
            "{peer} did not open the RPC handshake: is it a Weir JobManager?"
        )));
    };
    let tm_nonce = security::nonce();
    let tag = token.map(|t| t.sign(&proof_message(TM_PROOF, &jm_nonce, &tm_nonce)));
    conn.send(&Handshake::Proof {
        tag,
        nonce: tm_nonce,
    })?;
    match recv::<Handshake>(reader, peer)? {
        Handshake::Accepted { tag } => match (token, tag) {
            (None, _) => Ok(()),
            (Some(t), Some(tag))
                if t.verify(&proof_message(JM_PROOF, &jm_nonce, &tm_nonce), &tag) =>
            {
                Ok(())
            }
            (Some(_), _) => Err(Error::User(format!(
                "the JobManager at {peer} did not prove it holds this TaskManager's RPC secret ({}): refusing its commands",
                secret_key()
            ))),
        },
        Handshake::Refused { reason } => Err(Error::User(format!(
            "the JobManager at {peer} refused this TaskManager: {reason}"
        ))),
        other => Err(Error::User(format!(
            "unexpected RPC handshake message from {peer}: {other:?}"
        ))),
    }
}

/// One end of a control connection: sends whole messages, one writer at a time.
struct Conn {
    stream: Mutex<RpcStream>,
    peer: String,
}

/// The address of the far end of `stream`, for messages.
fn peer_of(stream: &TcpStream) -> String {
    stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "?".into())
}

impl Conn {
    fn new(stream: RpcStream, peer: String) -> Result<Self> {
        stream
            .set_write_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| Error::io("cannot configure connection to", peer.clone(), e))?;
        Ok(Conn {
            stream: Mutex::new(stream),
            peer,
        })
    }

    fn send<T: Serialize>(&self, msg: &T) -> Result<()> {
        let bytes = postcard::to_allocvec(msg).expect("messages encode");
        let mut s = self.stream.lock().expect("not poisoned");
        write_frame(&mut *s, 0, &bytes)
            .map_err(|e| Error::io("cannot send to", self.peer.clone(), e))
    }

    fn close(&self) {
        self.stream.lock().expect("not poisoned").shutdown();
    }
}

fn recv<T: for<'de> Deserialize<'de>>(r: &mut impl std::io::Read, peer: &str) -> Result<T> {
    let (_, bytes) = read_frame(r).map_err(|e| Error::io("connection lost to", peer, e))?;
    postcard::from_bytes(&bytes)
        .map_err(|e| Error::User(format!("malformed message from {peer}: {e}")))
}

// ---------------------------------------------------------------------------------------
// JobManager

struct TmEntry {
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
struct RemoteAttempt {
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
                    let _ = a.ctl.acks.send(Ack { id, states });
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
            if matches!(*s, super::JobStatus::Created | super::JobStatus::Restarting) {
                *s = super::JobStatus::Running;
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
) -> Result<super::JobHandle> {
    let deployer = Deployer::start(spec, cluster)?;
    super::exec::spawn(
        name,
        &job.graph,
        &job.opts,
        job.batch_size,
        job.checkpointing,
        Some(deployer),
    )
}

// ---------------------------------------------------------------------------------------
// TaskManager

const CANCELLED: &str = "cancelled";

/// One attempt's tasks running in this TaskManager.
struct TmAttempt {
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

fn connect(addr: &str) -> Result<TcpStream> {
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

fn serve_jobmanager(
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
                            rss_bytes: super::memory::resident_bytes(),
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

fn report(tasks: &[(u32, Arc<TaskMetrics>)]) -> Vec<TaskReport> {
    tasks
        .iter()
        .map(|(g, t)| TaskReport {
            task: *g,
            backpressured_ns: t.backpressured_ns.load(Relaxed),
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

fn stop_attempt(a: TmAttempt, data: &DataServer) {
    a.cancel.store(true, Relaxed);
    for t in a.threads {
        let _ = t.join();
    }
    data.unregister(a.attempt);
}

fn handle_tm(
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
fn local_tasks(job: &PreparedJob, slots: &[u32]) -> Vec<u32> {
    job.graph
        .task_list(job.opts.chaining)
        .iter()
        .enumerate()
        .filter(|(_, (_, s, _))| slots.contains(&(*s as u32)))
        .map(|(g, _)| g as u32)
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn deploy(
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
                        super::persist::discard_local(&state);
                        states.push((uid, subtask as u32, r.map_err(|e| crate::error::report(&e))));
                    }
                    if conn
                        .send(&ToJm::Ack {
                            attempt,
                            id: ack.id,
                            states,
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
                if super::exec::is_cancellation(e) {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the handshake over loopback TCP with the JobManager holding `jm` and the
    /// TaskManager `tm`; returns the JobManager's refusal and the TaskManager's error.
    fn handshake(jm: Option<&str>, tm: Option<&str>) -> (Option<String>, Option<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let jm = jm.and_then(Token::new);
        let jm_side = std::thread::spawn(move || {
            let (tcp, _) = listener.accept().unwrap();
            let stream = RpcStream::Tcp(tcp);
            let conn = Conn::new(stream.try_clone().unwrap(), "tm".into()).unwrap();
            let mut reader = BufReader::new(stream);
            accept_handshake(&conn, &mut reader, jm.as_ref()).err()
        });
        let stream = RpcStream::Tcp(TcpStream::connect(addr).unwrap());
        let conn = Conn::new(stream.try_clone().unwrap(), "jm".into()).unwrap();
        let mut reader = BufReader::new(stream);
        let tm_error = offer_handshake(&conn, &mut reader, tm.and_then(Token::new).as_ref())
            .err()
            .map(|e| e.to_string());
        (jm_side.join().unwrap(), tm_error)
    }

    #[test]
    fn the_rpc_handshake_passes_only_when_both_sides_hold_the_same_secret() {
        assert_eq!(handshake(Some("s"), Some("s")), (None, None));
        assert_eq!(handshake(None, None), (None, None));
        let (jm, tm) = handshake(Some("s"), Some("other"));
        assert!(jm.unwrap().contains("its RPC secret differs"));
        assert!(tm.unwrap().contains("refused this TaskManager"));
        let (jm, tm) = handshake(Some("s"), None);
        assert!(jm.unwrap().contains("presented no RPC secret"));
        assert!(tm.unwrap().contains("refused this TaskManager"));
        // A JobManager without the secret cannot command a TaskManager that holds it.
        let (jm, tm) = handshake(None, Some("s"));
        assert_eq!(jm, None);
        assert!(
            tm.as_deref()
                .unwrap()
                .contains("did not prove it holds this TaskManager's RPC secret"),
            "{tm:?}"
        );
    }
}
