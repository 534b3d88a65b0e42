//! Local execution: every task instance runs on its own thread in this process, next to a
//! checkpoint coordinator. The first task to fail cancels the others; a supervisor then
//! restarts the job from its latest completed checkpoint while the restart strategy allows,
//! and otherwise reports that first real error.

use super::coordinator::{
    Ack, CheckpointControl, CheckpointStats, Coordinator, OperatorInfo, SavepointRequest,
};
use super::graph::{JobGraph, PlanOptions};
use super::metrics::{JobMetrics, JobSnapshot, TaskMetrics};
use super::task::Task;
use crate::checkpoint::{Barrier, ObjectStore, RestorePlan};
use crate::config::{CheckpointConfig, CheckpointRetention, CheckpointingMode};
use crate::error::{Error, Result};
use crate::keygroup::random_u64;
use crossbeam_channel::{Sender, unbounded};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

/// How a job ended successfully.
#[derive(Debug, Clone)]
pub struct JobResult {
    /// The job's name.
    pub name: String,
    /// The job's id (names its checkpoint directory).
    pub job_id: String,
    /// Wall time from start to the last task finishing.
    pub elapsed_ms: u64,
    /// Final counters of the last attempt.
    pub metrics: JobSnapshot,
    /// Checkpoint statistics.
    pub checkpoints: CheckpointStats,
    /// How many times the job was restarted after a failure.
    pub restarts: u64,
}

/// The lifecycle state of a job, named as in Flink (`GET /jobs/:jobid` `state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStatus {
    /// Waiting for resources (a JobManager waiting for TaskManager slots).
    Created,
    /// Tasks are running.
    Running,
    /// A task failed; waiting for the restart delay before the next attempt.
    Restarting,
    /// Cancel was requested; tasks are stopping.
    Cancelling,
    /// Cancelled.
    Canceled,
    /// Every source ended (or a stop-with-savepoint completed) and every task finished.
    Finished,
    /// Failed and the restart strategy gave up.
    Failed,
}

impl JobStatus {
    /// Flink's name of the state (`RUNNING`, `CANCELED`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Created => "CREATED",
            JobStatus::Running => "RUNNING",
            JobStatus::Restarting => "RESTARTING",
            JobStatus::Cancelling => "CANCELLING",
            JobStatus::Canceled => "CANCELED",
            JobStatus::Finished => "FINISHED",
            JobStatus::Failed => "FAILED",
        }
    }

    /// True for states the job never leaves.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobStatus::Canceled | JobStatus::Finished | JobStatus::Failed
        )
    }
}

/// A failure of the job: one that restarted it, or the one that ended it.
#[derive(Debug, Clone, PartialEq)]
pub struct JobFailure {
    /// The error with its causes.
    pub message: String,
    /// When it happened (epoch ms).
    pub timestamp: i64,
    /// The task that failed, when a task failed (`name (subtask)`).
    pub task: Option<String>,
}

/// How many failures [`JobClient::failures`] remembers.
const FAILURE_HISTORY: usize = 16;

pub(crate) struct Shared {
    cancel: AtomicBool,
    pub(crate) status: Mutex<JobStatus>,
    failures: Mutex<VecDeque<JobFailure>>,
    start_ms: i64,
    end_ms: AtomicI64,
    attempt_cancel: Mutex<Arc<AtomicBool>>,
    pub(crate) metrics: Mutex<Arc<JobMetrics>>,
    finished: AtomicBool,
    restarts: AtomicU64,
    stats: Arc<Mutex<CheckpointStats>>,
    savepoints: Mutex<Option<Sender<SavepointRequest>>>,
    /// Where the tasks run: a cluster's TaskManagers, else this process (its slots and
    /// memory budget).
    cluster: Option<Arc<super::cluster::Deployer>>,
    local: (usize, Option<super::memory::MemoryBudget>),
}

impl Shared {
    pub(crate) fn record_failure(&self, e: &Error) {
        let task = match e {
            Error::Task { task, subtask, .. } => Some(format!("{task} ({subtask})")),
            _ => None,
        };
        let mut f = self.failures.lock().expect("not poisoned");
        f.push_back(JobFailure {
            message: crate::error::report(e),
            timestamp: crate::time::now_ms(),
            task,
        });
        while f.len() > FAILURE_HISTORY {
            f.pop_front();
        }
    }

    pub(crate) fn set_status(&self, s: JobStatus) {
        *self.status.lock().expect("not poisoned") = s;
    }
}

/// A running job. Dropping it does not stop the job; call [`JobHandle::cancel`] for that.
pub struct JobHandle {
    client: JobClient,
    supervisor: JoinHandle<Result<JobSnapshot>>,
    started: Instant,
}

/// A cloneable, thread-safe view of a job with its controls: what the REST API serves.
/// It stays valid after the job ended (the final state, counters and failure remain).
#[derive(Clone)]
pub struct JobClient {
    name: String,
    job_id: String,
    shared: Arc<Shared>,
    cfg: Arc<CheckpointConfig>,
}

impl std::fmt::Debug for JobClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobClient")
            .field("name", &self.name)
            .field("job_id", &self.job_id)
            .finish()
    }
}

impl JobClient {
    /// The job id (32 hex digits, as in Flink).
    pub fn job_id(&self) -> &str {
        &self.job_id
    }

    /// The job's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The job's lifecycle state.
    pub fn status(&self) -> JobStatus {
        *self.shared.status.lock().expect("not poisoned")
    }

    /// When the job started (epoch ms).
    pub fn start_time(&self) -> i64 {
        self.shared.start_ms
    }

    /// When the job ended (epoch ms); `None` while it runs.
    pub fn end_time(&self) -> Option<i64> {
        Some(self.shared.end_ms.load(Relaxed)).filter(|t| *t > 0)
    }

    /// Live counters of the current attempt (the last attempt's once the job ended).
    pub fn metrics(&self) -> JobSnapshot {
        self.shared.metrics.lock().expect("not poisoned").snapshot()
    }

    /// Checkpoint statistics so far.
    pub fn checkpoints(&self) -> CheckpointStats {
        self.shared.stats.lock().expect("not poisoned").clone()
    }

    /// The checkpoint settings the job runs with.
    pub fn checkpoint_config(&self) -> &CheckpointConfig {
        &self.cfg
    }

    /// Where a JobManager's RPC port is bound (`None` for a job running in this process):
    /// the real port when `jobmanager.rpc.port` is 0.
    pub fn rpc_address(&self) -> Option<std::net::SocketAddr> {
        self.shared.cluster.as_ref().map(|c| c.rpc_bound())
    }

    /// Where the job's tasks run: the registered TaskManagers of a cluster, or this process
    /// (one TaskManager called `local`).
    pub fn taskmanagers(&self) -> Vec<super::cluster::TaskManagerInfo> {
        match &self.shared.cluster {
            Some(c) => c.taskmanagers(),
            None => {
                let (slots, memory) = &self.shared.local;
                vec![super::cluster::TaskManagerInfo {
                    id: "local".into(),
                    data_addr: String::new(),
                    slots: *slots,
                    slots_in_use: if self.status().is_terminal() {
                        0
                    } else {
                        *slots
                    },
                    since_heartbeat_ms: 0,
                    memory: memory.clone(),
                    rss_bytes: super::memory::resident_bytes(),
                }]
            }
        }
    }

    /// The id (as in [`JobClient::taskmanagers`]) of the TaskManager each subtask index runs
    /// on: subtask `i` of every task shares slot `i`. Empty while a cluster job waits for
    /// slots or between attempts.
    pub fn subtask_taskmanagers(&self) -> Vec<String> {
        match &self.shared.cluster {
            Some(c) => c.placement().iter().map(u64::to_string).collect(),
            None => vec!["local".to_string(); self.shared.local.0],
        }
    }

    /// Restarts so far.
    pub fn restarts(&self) -> u64 {
        self.shared.restarts.load(Relaxed)
    }

    /// Failures so far, oldest first (the last one is Flink's root exception).
    pub fn failures(&self) -> Vec<JobFailure> {
        self.shared
            .failures
            .lock()
            .expect("not poisoned")
            .iter()
            .cloned()
            .collect()
    }

    /// Asks every task to stop; the job ends CANCELED.
    pub fn cancel(&self) {
        {
            let mut s = self.shared.status.lock().expect("not poisoned");
            if !s.is_terminal() {
                *s = JobStatus::Cancelling;
            }
        }
        self.shared.cancel.store(true, Relaxed);
        self.shared
            .attempt_cancel
            .lock()
            .expect("not poisoned")
            .store(true, Relaxed);
    }

    /// Takes a savepoint into `target` (or `state.savepoints.dir`) and returns its location
    /// once it is complete; blocks until then. The job keeps running. A savepoint requested
    /// while another is in progress is queued behind it.
    pub fn trigger_savepoint(&self, target: Option<&str>) -> Result<String> {
        self.savepoint(target, false, false)
    }

    /// Stop-with-savepoint without waiting for the job to end: returns the location once
    /// the savepoint is complete (the tasks then stop). With `drain`, sources first advance
    /// event time to the end (a MAX watermark), so every event-time window and timer fires
    /// before the savepoint, and the job ends FINISHED.
    pub fn stop_with_savepoint(&self, target: Option<&str>, drain: bool) -> Result<String> {
        self.savepoint(target, true, drain)
    }

    fn savepoint(&self, target: Option<&str>, stop: bool, drain: bool) -> Result<String> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let sender = self.shared.savepoints.lock().expect("not poisoned").clone();
        let sender = sender.ok_or_else(|| Error::User("the job is not running".into()))?;
        sender
            .send(SavepointRequest {
                target: target.map(str::to_string),
                stop,
                drain,
                reply: tx,
            })
            .map_err(|_| Error::User("the job is not running".into()))?;
        rx.recv()
            .map_err(|_| Error::User("the job ended before the savepoint completed".into()))?
    }
}

impl std::fmt::Debug for JobHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobHandle")
            .field("name", &self.client.name)
            .field("job_id", &self.client.job_id)
            .finish()
    }
}

impl JobHandle {
    /// The job id (32 hex digits, as in Flink).
    pub fn job_id(&self) -> &str {
        &self.client.job_id
    }

    /// A cloneable view of the job with its controls, e.g. for the REST API.
    pub fn client(&self) -> JobClient {
        self.client.clone()
    }

    /// Live counters of the current attempt.
    pub fn metrics(&self) -> JobSnapshot {
        self.client.metrics()
    }

    /// Checkpoint statistics so far.
    pub fn checkpoints(&self) -> CheckpointStats {
        self.client.checkpoints()
    }

    /// Restarts so far.
    pub fn restarts(&self) -> u64 {
        self.client.restarts()
    }

    /// True once the job has ended (finished, failed for good, or cancelled).
    pub fn is_finished(&self) -> bool {
        self.client.shared.finished.load(Relaxed)
    }

    /// Asks every task to stop; [`JobHandle::wait`] then returns an error.
    pub fn cancel(&self) {
        self.client.cancel()
    }

    /// Takes a savepoint into `target` (or `state.savepoints.dir`) and returns its location
    /// once it is complete. The job keeps running.
    pub fn trigger_savepoint(&self, target: Option<&str>) -> Result<String> {
        self.client.trigger_savepoint(target)
    }

    /// Stop-with-savepoint: every task stops at the savepoint's barrier, sinks commit what
    /// it covers, and the job ends; nothing after the barrier is processed, so restoring
    /// from the savepoint continues exactly where this run stopped. If the savepoint fails,
    /// the job keeps running and the error is returned.
    pub fn stop_with_savepoint(self, target: Option<&str>) -> Result<String> {
        let path = self.client.stop_with_savepoint(target, false)?;
        self.wait()?;
        Ok(path)
    }

    /// Draining stop-with-savepoint (`weir stop --drain`): sources stop and emit the final
    /// watermark before the savepoint's barrier, so every event-time window and timer fires
    /// and is committed with the savepoint; then the job ends FINISHED. Meant for ending a
    /// job for good: a job restored from this savepoint sees event time already at its end.
    pub fn drain_with_savepoint(self, target: Option<&str>) -> Result<String> {
        let path = self.client.stop_with_savepoint(target, true)?;
        self.wait()?;
        Ok(path)
    }

    /// Waits for the job to end and returns its result or its first failure.
    pub fn wait(self) -> Result<JobResult> {
        let metrics = self
            .supervisor
            .join()
            .unwrap_or_else(|p| Err(Error::Panic(panic_message(p))))?;
        let c = self.client;
        Ok(JobResult {
            elapsed_ms: self.started.elapsed().as_millis() as u64,
            metrics,
            checkpoints: c.checkpoints(),
            restarts: c.restarts(),
            name: c.name,
            job_id: c.job_id,
        })
    }
}

pub(crate) fn is_cancellation(e: &Error) -> bool {
    match e {
        Error::Cancelled => true,
        Error::Task { source, .. } => is_cancellation(source),
        _ => false,
    }
}

pub(crate) fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

fn new_job_id() -> String {
    format!("{:016x}{:016x}", random_u64(), random_u64())
}

/// Starts the job: a supervisor thread runs attempts until one finishes, the job is
/// cancelled, or the restart strategy gives up.
pub(crate) fn spawn(
    name: &str,
    graph: &JobGraph,
    opts: &PlanOptions,
    batch_size: usize,
    cfg: CheckpointConfig,
    cluster: Option<Arc<super::cluster::Deployer>>,
) -> Result<JobHandle> {
    graph.validate(opts.max_parallelism)?;
    let job_id = new_job_id();
    let store: Option<Arc<dyn ObjectStore>> = match &cfg.dir {
        Some(d) => Some(weir_storage::open(d, &cfg.storage)?),
        None => None,
    };
    let mut initial = None;
    let mut restore_ms = None;
    let mut last_restore = None;
    if let Some(path) = &cfg.restore_from {
        last_restore = Some((path.clone(), crate::time::now_ms()));
        let t = Instant::now();
        let plan = load_plan(path, &cfg.storage)?;
        plan.validate(
            &graph.uids(),
            opts.max_parallelism,
            opts.allow_unclaimed_state,
        )?;
        restore_ms = Some(t.elapsed().as_millis() as u64);
        initial = Some(Arc::new(plan));
    }
    let shared = Arc::new(Shared {
        cancel: AtomicBool::new(false),
        status: Mutex::new(if cluster.is_some() {
            JobStatus::Created
        } else {
            JobStatus::Running
        }),
        failures: Mutex::new(VecDeque::new()),
        start_ms: crate::time::now_ms(),
        end_ms: AtomicI64::new(0),
        attempt_cancel: Mutex::new(Arc::new(AtomicBool::new(false))),
        metrics: Mutex::new(Arc::new(JobMetrics {
            operators: vec![],
            tasks: vec![],
            started: Instant::now(),
        })),
        finished: AtomicBool::new(false),
        restarts: AtomicU64::new(0),
        stats: Arc::new(Mutex::new(CheckpointStats {
            restore_ms,
            restored: u64::from(last_restore.is_some()),
            last_restore,
            ..Default::default()
        })),
        savepoints: Mutex::new(None),
        cluster: cluster.clone(),
        local: (graph.slots_needed(), opts.memory.clone()),
    });
    let cfg = Arc::new(cfg);
    let sup = Supervisor {
        name: name.to_string(),
        job_id: job_id.clone(),
        graph: graph.clone(),
        opts: opts.clone(),
        batch_size,
        cfg: cfg.clone(),
        store,
        shared: shared.clone(),
        next_id: Arc::new(AtomicU64::new(0)),
        retained: Arc::new(Mutex::new(VecDeque::new())),
        cluster,
        attempts: AtomicU64::new(0),
    };
    // Instantiate the first attempt here so graph errors surface from execute(). A
    // connector that cannot start (a broker unreachable, a login refused) fails the attempt
    // as a failing task does, and the restart strategy decides, as in Flink.
    let first = match sup.start_attempt(initial, cfg_restore(&sup.cfg)) {
        Err(e @ Error::Connector { .. }) => Err(e),
        other => Ok(other?),
    };
    let supervisor = std::thread::Builder::new()
        .name(format!("{name} supervisor"))
        .spawn(move || {
            let r = sup.supervise(first);
            sup.ended(&r);
            r
        })
        .map_err(|e| Error::io("cannot spawn supervisor thread for", name.to_string(), e))?;
    Ok(JobHandle {
        client: JobClient {
            name: name.to_string(),
            job_id,
            shared,
            cfg,
        },
        supervisor,
        started: Instant::now(),
    })
}

fn cfg_restore(cfg: &CheckpointConfig) -> Option<String> {
    cfg.restore_from.clone()
}

/// Loads a checkpoint or savepoint given as `file:///dir` or an absolute path.
fn load_plan(path: &str, storage: &weir_storage::StorageOptions) -> Result<RestorePlan> {
    RestorePlan::open(path, storage)
}

struct Supervisor {
    name: String,
    job_id: String,
    graph: JobGraph,
    opts: PlanOptions,
    batch_size: usize,
    cfg: Arc<CheckpointConfig>,
    store: Option<Arc<dyn ObjectStore>>,
    shared: Arc<Shared>,
    next_id: Arc<AtomicU64>,
    retained: Arc<Mutex<VecDeque<(u64, String)>>>,
    /// Runs attempts on TaskManagers instead of local threads.
    cluster: Option<Arc<super::cluster::Deployer>>,
    attempts: AtomicU64,
}

struct Attempt {
    threads: Vec<JoinHandle<()>>,
    errors: Arc<Mutex<Vec<Error>>>,
    coordinator: Option<JoinHandle<()>>,
    done: Arc<AtomicBool>,
    metrics: Arc<JobMetrics>,
}

impl Supervisor {
    /// Records how the job ended; a cancelled job's checkpoints are deleted when
    /// `execution.checkpointing.externalized-checkpoint-retention` says so.
    fn ended(&self, r: &Result<JobSnapshot>) {
        let status = match r {
            Ok(_) => JobStatus::Finished,
            Err(e) if is_cancellation(e) => {
                if self.cfg.retention == CheckpointRetention::DeleteOnCancellation
                    && let Some(store) = &self.store
                {
                    // Nothing else writes there once every task and the coordinator stopped.
                    match store.delete_prefix(&format!("{}/", self.job_id)) {
                        Ok(n) => {
                            tracing::info!(job = %self.name, objects = n, "deleted the cancelled job's checkpoints (DELETE_ON_CANCELLATION)")
                        }
                        Err(e) => {
                            tracing::warn!(job = %self.name, error = %e, "cannot delete the cancelled job's checkpoints")
                        }
                    }
                    self.retained.lock().expect("not poisoned").clear();
                }
                JobStatus::Canceled
            }
            Err(e) => {
                self.shared.record_failure(e);
                JobStatus::Failed
            }
        };
        self.shared.set_status(status);
        self.shared.end_ms.store(crate::time::now_ms(), Relaxed);
        self.shared.finished.store(true, Relaxed);
    }

    fn supervise(&self, first: Result<Attempt>) -> Result<JobSnapshot> {
        let mut attempt = first;
        loop {
            let mut error = match attempt.and_then(|a| self.join(a)) {
                Ok(snapshot) => return Ok(snapshot),
                Err(e) => e,
            };
            // A restart whose restore cannot be read or started (storage briefly down, too
            // many open files) is a failed attempt like any other: the restart strategy
            // decides whether and when to try again.
            attempt = loop {
                let restarts = self.shared.restarts.load(Relaxed);
                let random = (random_u64() >> 11) as f64 / (1u64 << 53) as f64;
                let delay = self.cfg.restart.delay(restarts, random);
                let Some(delay) =
                    delay.filter(|_| !self.shared.cancel.load(Relaxed) && !is_cancellation(&error))
                else {
                    return Err(error);
                };
                tracing::warn!(job = %self.name, error = %crate::error::report(&error), restart = restarts + 1, "job failed; restarting from the latest checkpoint");
                self.shared.record_failure(&error);
                self.shared.set_status(JobStatus::Restarting);
                std::thread::sleep(delay);
                if self.shared.cancel.load(Relaxed) {
                    return Err(Error::Cancelled);
                }
                self.shared.restarts.fetch_add(1, Relaxed);
                match self.restart() {
                    Ok(a) => break Ok(a),
                    Err(e) => error = e,
                }
            };
            let mut status = self.shared.status.lock().expect("not poisoned");
            if *status == JobStatus::Restarting && self.cluster.is_none() {
                *status = JobStatus::Running;
            }
        }
    }

    /// Waits for every task and the coordinator of `attempt`; its first error (a real one
    /// before a cancellation), or the job's final counters when it ended without one.
    fn join(&self, mut attempt: Attempt) -> Result<JobSnapshot> {
        for t in attempt.threads.drain(..) {
            let _ = t.join();
        }
        attempt.done.store(true, Relaxed);
        if let Some(c) = attempt.coordinator.take() {
            let _ = c.join();
        }
        *self.shared.savepoints.lock().expect("not poisoned") = None;
        let mut errors = std::mem::take(&mut *attempt.errors.lock().expect("not poisoned"));
        let Some(pos) = errors
            .iter()
            .position(|e| !is_cancellation(e))
            .or((!errors.is_empty()).then_some(0))
        else {
            return Ok(attempt.metrics.snapshot());
        };
        Err(errors.swap_remove(pos))
    }

    /// Starts the next attempt from the latest completed checkpoint (or, before the first,
    /// from where the job started).
    fn restart(&self) -> Result<Attempt> {
        let latest = self
            .retained
            .lock()
            .expect("not poisoned")
            .back()
            .map(|(_, p)| p.clone());
        let from = latest.clone().or_else(|| self.cfg.restore_from.clone());
        let plan = match latest {
            Some(path) => Some(Arc::new(load_plan(&path, &self.cfg.storage)?)),
            // Nothing checkpointed yet: start over from the initial state.
            None => self
                .cfg
                .restore_from
                .as_deref()
                .map(|p| load_plan(p, &self.cfg.storage))
                .transpose()?
                .map(Arc::new),
        };
        let path = from.filter(|_| plan.is_some());
        if let Some(from) = path.clone() {
            let mut s = self.shared.stats.lock().expect("not poisoned");
            s.restored += 1;
            s.last_restore = Some((from, crate::time::now_ms()));
        }
        self.start_attempt(plan, path)
    }

    /// Starts one attempt of the job from `restore` (loaded from `restore_path`).
    fn start_attempt(
        &self,
        restore: Option<Arc<RestorePlan>>,
        restore_path: Option<String>,
    ) -> Result<Attempt> {
        let mut opts = self.opts.clone();
        opts.restore = restore;
        let cancel = Arc::new(AtomicBool::new(self.shared.cancel.load(Relaxed)));
        *self.shared.attempt_cancel.lock().expect("not poisoned") = cancel.clone();
        let errors = Arc::new(Mutex::new(Vec::new()));
        let (ack_tx, ack_rx) = unbounded::<Ack>();
        let base = self.next_id.load(Relaxed);
        let ctl = Arc::new(CheckpointControl {
            trigger: AtomicU64::new(base),
            completed: AtomicU64::new(base),
            acks: ack_tx,
            exactly_once: self.cfg.mode == CheckpointingMode::ExactlyOnce,
            unaligned: self.cfg.unaligned,
            aborted: AtomicU64::new(0),
            // `trigger` and `barrier` agree from the start: a source injects what
            // `barrier` holds once `trigger` is above its last barrier.
            barrier: Mutex::new(Barrier::checkpoint(base)),
            target: Mutex::new(None),
        });
        let attempt_no = self.attempts.fetch_add(1, Relaxed) + 1;
        let started = match &self.cluster {
            None => self.start_local(&opts, &cancel, &errors, &ctl)?,
            Some(cluster) => cluster.start_attempt(super::cluster::AttemptRequest {
                attempt: attempt_no,
                graph: &self.graph,
                opts: &opts,
                restore_path,
                cancel: cancel.clone(),
                errors: errors.clone(),
                ctl: ctl.clone(),
                shared: self.shared.clone(),
            })?,
        };
        let StartedTasks {
            threads,
            metrics,
            expected,
        } = started;
        let task_metrics = metrics.tasks.clone();
        *self.shared.metrics.lock().expect("not poisoned") = metrics.clone();

        let done = Arc::new(AtomicBool::new(false));
        let (sp_tx, sp_rx) = unbounded();
        *self.shared.savepoints.lock().expect("not poisoned") = Some(sp_tx);
        let coordinator = Coordinator {
            job_id: self.job_id.clone(),
            cfg: (*self.cfg).clone(),
            store: self.store.clone(),
            ctl,
            acks: ack_rx,
            savepoints: sp_rx,
            expected,
            operators: (0..self.graph.nodes.len())
                .map(|i| OperatorInfo {
                    uid: self.graph.uid(i),
                    name: self.graph.nodes[i].name.clone(),
                    parallelism: self.graph.nodes[i].parallelism,
                })
                .collect(),
            max_parallelism: opts.max_parallelism,
            stats: self.shared.stats.clone(),
            next_id: self.next_id.clone(),
            retained: self.retained.clone(),
            done: done.clone(),
            any_task_finished: Arc::new(move || {
                task_metrics.iter().any(|t| t.finished.load(Relaxed))
            }),
            fail_job: {
                let (errors, cancel) = (errors.clone(), cancel.clone());
                Arc::new(move |e| {
                    tracing::error!(error = %e, "failing the job");
                    errors.lock().expect("not poisoned").push(e);
                    cancel.store(true, Relaxed);
                })
            },
            consecutive_failures: AtomicU64::new(0),
            shared: Default::default(),
        };
        let coordinator = std::thread::Builder::new()
            .name(format!("{} checkpoints", self.name))
            .spawn(move || coordinator.run())
            .map_err(|e| Error::io("cannot spawn coordinator thread for", self.name.clone(), e))?;

        Ok(Attempt {
            threads,
            errors,
            coordinator: Some(coordinator),
            done,
            metrics,
        })
    }
}

/// What starting an attempt's tasks produced.
pub(crate) struct StartedTasks {
    /// Threads that end when every task of the attempt has ended.
    pub(crate) threads: Vec<JoinHandle<()>>,
    pub(crate) metrics: Arc<JobMetrics>,
    /// Number of tasks (acknowledgements per checkpoint).
    pub(crate) expected: usize,
}

impl Supervisor {
    /// Instantiates every task in this process, one thread each.
    fn start_local(
        &self,
        opts: &PlanOptions,
        cancel: &Arc<AtomicBool>,
        errors: &Arc<Mutex<Vec<Error>>>,
        ctl: &Arc<CheckpointControl>,
    ) -> Result<StartedTasks> {
        let (instances, operators) = self.graph.instantiate(opts)?;
        let expected = instances.len();
        let (tasks, task_metrics) = prepare_tasks(
            instances,
            cancel,
            self.batch_size,
            opts.max_parallelism,
            ctl,
        );
        let metrics = Arc::new(JobMetrics {
            operators,
            tasks: task_metrics,
            started: Instant::now(),
        });
        let threads = spawn_tasks(tasks, cancel, errors, Arc::new(|_, _| {}))?;
        Ok(StartedTasks {
            threads,
            metrics,
            expected,
        })
    }
}

/// A task with the channels it reads.
pub(crate) type RunnableTask = (Task, Vec<super::graph::InputChannel>);

/// Wraps task instances into runnable tasks with their metrics.
pub(crate) fn prepare_tasks(
    instances: Vec<super::graph::TaskInstance>,
    cancel: &Arc<AtomicBool>,
    batch_size: usize,
    max_parallelism: usize,
    ctl: &Arc<CheckpointControl>,
) -> (Vec<RunnableTask>, Vec<Arc<TaskMetrics>>) {
    let mut tasks = Vec::new();
    let mut task_metrics = Vec::new();
    for inst in instances {
        let m = Arc::new(TaskMetrics {
            name: inst.name.clone(),
            subtask: inst.subtask,
            operators: inst.members.iter().map(|m| m.metrics.clone()).collect(),
            backpressured_ns: AtomicU64::new(0),
            idle_ns: AtomicU64::new(0),
            finished: AtomicBool::new(false),
        });
        task_metrics.push(m.clone());
        tasks.push(Task::new(
            inst,
            cancel.clone(),
            m,
            batch_size,
            max_parallelism,
            Some(ctl.clone()),
        ));
    }
    (tasks, task_metrics)
}

/// Runs each task on its own thread. The first to fail records its error and cancels the
/// others; `ended(index, result)` is told about every task that ends (TaskManagers report it).
pub(crate) fn spawn_tasks(
    tasks: Vec<RunnableTask>,
    cancel: &Arc<AtomicBool>,
    errors: &Arc<Mutex<Vec<Error>>>,
    ended: TaskEnded,
) -> Result<Vec<JoinHandle<()>>> {
    let mut threads = Vec::new();
    for (index, (task, inputs)) in tasks.into_iter().enumerate() {
        let (cancel, errors, ended) = (cancel.clone(), errors.clone(), ended.clone());
        let thread_name = format!("{} ({})", task.name(), task.subtask());
        let t = std::thread::Builder::new()
            .name(thread_name.chars().take(60).collect())
            .spawn(move || {
                let (tname, sub) = (task.name().to_string(), task.subtask());
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| task.run(inputs)))
                    .unwrap_or_else(|p| Err(Error::Panic(panic_message(p))));
                let r = r.map_err(|e| Error::Task { task: tname.clone(), subtask: sub, source: Box::new(e) });
                ended(index, r.as_ref().err());
                if let Err(e) = r {
                    if !is_cancellation(&e) {
                        tracing::error!(task = %tname, subtask = sub, error = %crate::error::report(&e), "task failed; cancelling the job");
                    }
                    errors.lock().expect("not poisoned").push(e);
                    cancel.store(true, Relaxed);
                }
            })
            .map_err(|e| Error::io("cannot spawn task thread for", thread_name, e))?;
        threads.push(t);
    }
    Ok(threads)
}

/// Told about every task that ends: its index in the attempt and its error, if any.
pub(crate) type TaskEnded = Arc<dyn Fn(usize, Option<&Error>) + Send + Sync>;
