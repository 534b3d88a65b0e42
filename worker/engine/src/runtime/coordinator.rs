//! The checkpoint coordinator: triggers numbered checkpoints at the configured interval (and
//! savepoints on request), collects every task's acknowledgement with its state, writes the
//! state files and then `_metadata` — on its own thread, so tasks keep processing while
//! checkpoints upload — and only then declares the checkpoint complete, which lets sinks
//! commit. Failed or timed-out checkpoints are counted and logged; they never fail the job.
//!
//! Incremental RocksDB checkpoints are uploaded here too: only SST files no retained
//! checkpoint references yet go to `<job-id>/shared/`; shared files are reference-counted
//! across retained checkpoints (counts rebuilt from their `_metadata` when an attempt starts)
//! and deleted when no retained checkpoint needs them any more.

use super::persist::{PersistTarget, Persisted, SubtaskAck, persist};
use crate::checkpoint::{
    Barrier, CheckpointMetadata, IncrementalHandle, METADATA_FORMAT, ObjectStore, OperatorMetadata,
    SnapshotKind,
};
use crate::config::CheckpointConfig;
use crate::error::{Error, Result};
use crossbeam_channel::{Receiver, Sender};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Shared between the coordinator and the tasks of one job attempt.
pub(crate) struct CheckpointControl {
    /// Highest checkpoint id triggered; sources inject its barrier when they see it.
    pub(crate) trigger: AtomicU64,
    /// The barrier of the latest trigger (set before `trigger`, its id never below it):
    /// what sources inject.
    pub(crate) barrier: Mutex<Barrier>,
    /// Highest checkpoint id completed; tasks notify their operators.
    pub(crate) completed: AtomicU64,
    /// Where tasks acknowledge.
    pub(crate) acks: Sender<Ack>,
    /// Aligned (exactly-once) or not.
    pub(crate) exactly_once: bool,
    /// Checkpoints let barriers overtake queued records (exactly-once only).
    pub(crate) unaligned: bool,
    /// Highest checkpoint id that failed; tasks stopped at it resume.
    pub(crate) aborted: AtomicU64,
    /// Where the latest triggered checkpoint is written (set before `trigger`): what a
    /// TaskManager needs to persist its tasks' state itself.
    pub(crate) target: Mutex<Option<(u64, PersistTarget)>>,
}

impl CheckpointControl {
    /// Triggers `barrier`: sources see its id in `trigger` and inject it.
    pub(crate) fn announce(&self, barrier: Barrier) {
        *self.barrier.lock().expect("not poisoned") = barrier;
        self.trigger.fetch_max(barrier.id, SeqCst);
    }

    /// The barrier a source injects once it sees `trigger` above its last one: the latest
    /// triggered (a source that missed a trigger skips to the newest, as before).
    pub(crate) fn latest_barrier(&self) -> Barrier {
        *self.barrier.lock().expect("not poisoned")
    }
}

/// A task's acknowledgement of a checkpoint: the state of each chained operator, and how
/// the task took it.
pub(crate) struct Ack {
    pub(crate) id: u64,
    pub(crate) states: Vec<(String, usize, SubtaskAck)>,
    pub(crate) timing: TaskTiming,
}

/// How one task (an operator chain at one subtask index) took its part of a checkpoint,
/// measured on its thread; travels with the acknowledgement, also from a TaskManager.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct TaskTiming {
    /// The task's name (the vertex).
    pub(crate) task: String,
    pub(crate) subtask: usize,
    /// When its first barrier arrived (epoch ms; for a source: when it saw the trigger).
    pub(crate) first_barrier_ms: i64,
    /// From the first barrier to the last (aligned), or until every record the barrier
    /// overtook was collected (unaligned).
    pub(crate) alignment_us: u64,
    /// Snapshotting its operators on the task thread.
    pub(crate) sync_us: u64,
    /// Whether the barrier overtook queued records.
    pub(crate) unaligned: bool,
    /// Bytes of overtaken records stored with the checkpoint (unaligned only).
    pub(crate) persisted_bytes: u64,
}

/// A request to take a savepoint; answered with its location.
pub(crate) struct SavepointRequest {
    pub(crate) target: Option<String>,
    /// Stop the job at this savepoint (no record after it is processed).
    pub(crate) stop: bool,
    /// With `stop`: advance event time to the end first (`drain`).
    pub(crate) drain: bool,
    pub(crate) reply: Sender<Result<String>>,
}

/// Checkpoint statistics of a job (Flink's checkpoint counts and latest-completed info).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CheckpointStats {
    /// Checkpoints triggered.
    pub triggered: u64,
    /// Checkpoints completed.
    pub completed: u64,
    /// Checkpoints failed (write errors, timeouts).
    pub failed: u64,
    /// Id of the latest completed checkpoint.
    pub last_completed_id: Option<u64>,
    /// Location of the latest completed checkpoint (`external_path`).
    pub last_completed_path: Option<String>,
    /// Duration of the latest completed checkpoint, trigger to `_metadata` written.
    pub last_duration_ms: u64,
    /// Bytes written by the latest completed checkpoint (for incremental RocksDB
    /// checkpoints: only the new files uploaded; Flink's "checkpointed size").
    pub last_size_bytes: u64,
    /// Bytes the latest completed checkpoint references, including shared files uploaded by
    /// earlier checkpoints (Flink's "full checkpoint data size").
    pub last_full_size_bytes: u64,
    /// Time to load the state the job was restored from.
    pub restore_ms: Option<u64>,
    /// Message of the latest failure.
    pub last_failure: Option<String>,
    /// Bytes each operator (by uid) references in the latest completed checkpoint or
    /// savepoint, summed over its subtasks (Flink's per-operator checkpointed state size).
    pub last_operator_sizes: BTreeMap<String, u64>,
    /// Savepoints completed (not counted in `completed`).
    pub savepoints_completed: u64,
    /// The latest completed savepoint.
    pub last_savepoint: Option<CheckpointRecord>,
    /// The latest failed checkpoint or savepoint.
    pub last_failed: Option<CheckpointRecord>,
    /// How many times the job restored state (from `execution.savepoint.path` or after a
    /// failure from its latest checkpoint).
    pub restored: u64,
    /// The latest restore: where from and when (epoch ms).
    pub last_restore: Option<(String, i64)>,
    /// The most recent checkpoints and savepoints, oldest first, at most [`HISTORY`].
    pub history: VecDeque<CheckpointRecord>,
}

/// How many checkpoints [`CheckpointStats::history`] remembers (Flink's
/// `web.checkpoints.history` default).
pub const HISTORY: usize = 10;

/// What became of one checkpoint or savepoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointStatus {
    /// Triggered, not all tasks acknowledged yet.
    InProgress,
    /// `_metadata` written.
    Completed,
    /// Expired, could not be written, or the job ended first.
    Failed,
}

/// One checkpoint or savepoint, for the history in [`CheckpointStats`].
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointRecord {
    /// Checkpoint id (savepoints share the id sequence).
    pub id: u64,
    /// A savepoint rather than a periodic checkpoint.
    pub is_savepoint: bool,
    /// Its fate so far.
    pub status: CheckpointStatus,
    /// When it was triggered (epoch ms).
    pub trigger_timestamp: i64,
    /// When it completed or failed (epoch ms).
    pub end_timestamp: Option<i64>,
    /// Bytes written (for incremental RocksDB checkpoints only the new files: Flink's
    /// checkpointed size).
    pub size_bytes: u64,
    /// Bytes it references, including shared files earlier checkpoints uploaded (Flink's
    /// full checkpoint data size); the same as `size_bytes` unless incremental.
    pub full_size_bytes: u64,
    /// Where it was written.
    pub external_path: Option<String>,
    /// Why it failed.
    pub failure: Option<String>,
    /// Every subtask that acknowledged it so far, in order of acknowledgement.
    pub subtasks: Vec<SubtaskCheckpointStats>,
}

/// One subtask's part of a checkpoint (Flink's per-subtask checkpoint statistics). A
/// subtask is a task (operator chain) at one subtask index; sizes sum over its operators.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubtaskCheckpointStats {
    /// The task's name (the REST API's vertex).
    pub task: String,
    /// The subtask index.
    pub subtask: usize,
    /// When the coordinator received its acknowledgement (epoch ms).
    pub ack_timestamp: i64,
    /// Bytes its state references, shared incremental files included.
    pub state_size: u64,
    /// Bytes it wrote for this checkpoint.
    pub checkpointed_size: u64,
    /// Milliseconds snapshotting on the task thread.
    pub sync_ms: u64,
    /// Milliseconds writing its state to storage.
    pub async_ms: u64,
    /// Milliseconds from its first barrier to its last (aligned checkpoints), or until it had
    /// collected every record its barrier overtook (unaligned).
    pub alignment_ms: u64,
    /// Milliseconds from the trigger to its first barrier.
    pub start_delay_ms: u64,
    /// Whether its barrier overtook queued records.
    pub unaligned: bool,
    /// Bytes of overtaken records stored with the checkpoint.
    pub persisted_data: u64,
}

impl CheckpointRecord {
    /// The longest alignment of any of its subtasks, in milliseconds: what held it up.
    pub fn alignment_ms(&self) -> u64 {
        self.subtasks
            .iter()
            .map(|s| s.alignment_ms)
            .max()
            .unwrap_or(0)
    }
}

impl CheckpointStats {
    /// Checkpoints and savepoints triggered but neither completed nor failed.
    pub fn in_progress(&self) -> u64 {
        self.triggered
            .saturating_sub(self.completed + self.savepoints_completed + self.failed)
    }

    fn record(&mut self, id: u64) -> Option<&mut CheckpointRecord> {
        self.history.iter_mut().rev().find(|r| r.id == id)
    }

    /// Marks checkpoint `id` done; returns the updated record.
    fn finish(
        &mut self,
        id: u64,
        status: CheckpointStatus,
        path: Option<String>,
        size: u64,
        failure: Option<String>,
    ) -> Option<CheckpointRecord> {
        let r = self.record(id)?;
        r.status = status;
        r.end_timestamp = Some(crate::time::now_ms());
        r.external_path = path;
        r.size_bytes = size;
        r.failure = failure;
        Some(r.clone())
    }
}

/// What the coordinator needs to know about the job's operators.
#[derive(Clone)]
pub(crate) struct OperatorInfo {
    pub(crate) uid: String,
    pub(crate) name: String,
    pub(crate) parallelism: usize,
}

pub(crate) struct Coordinator {
    pub(crate) job_id: String,
    pub(crate) cfg: CheckpointConfig,
    pub(crate) store: Option<Arc<dyn ObjectStore>>,
    pub(crate) ctl: Arc<CheckpointControl>,
    pub(crate) acks: Receiver<Ack>,
    pub(crate) savepoints: Receiver<SavepointRequest>,
    pub(crate) expected: usize,
    pub(crate) operators: Vec<OperatorInfo>,
    pub(crate) max_parallelism: usize,
    pub(crate) stats: Arc<Mutex<CheckpointStats>>,
    pub(crate) next_id: Arc<AtomicU64>,
    pub(crate) retained: Arc<Mutex<VecDeque<(u64, String)>>>,
    pub(crate) done: Arc<AtomicBool>,
    pub(crate) any_task_finished: Arc<dyn Fn() -> bool + Send + Sync>,
    /// Fails the current attempt (too many consecutive checkpoint failures).
    pub(crate) fail_job: Arc<dyn Fn(Error) + Send + Sync>,
    pub(crate) consecutive_failures: AtomicU64,
    /// Reference counts of `shared/` files across retained checkpoints.
    pub(crate) shared: RefCell<SharedFiles>,
}

/// Which retained checkpoint references which `shared/` object, and how many reference each.
#[derive(Debug, Default)]
pub(crate) struct SharedFiles {
    refs: HashMap<String, usize>,
    by_checkpoint: BTreeMap<u64, Vec<String>>,
}

impl SharedFiles {
    fn contains(&self, object: &str) -> bool {
        self.refs.contains_key(object)
    }

    fn add(&mut self, id: u64, objects: Vec<String>) {
        for o in &objects {
            *self.refs.entry(o.clone()).or_default() += 1;
        }
        self.by_checkpoint.entry(id).or_default().extend(objects);
    }

    /// Drops checkpoint `id`'s references; returns the objects nothing references any more.
    fn release(&mut self, id: u64) -> Vec<String> {
        let mut unused = Vec::new();
        for o in self.by_checkpoint.remove(&id).unwrap_or_default() {
            if let Some(n) = self.refs.get_mut(&o) {
                *n -= 1;
                if *n == 0 {
                    self.refs.remove(&o);
                    unused.push(o);
                }
            }
        }
        unused
    }
}

/// Bytes per operator uid, summed over subtasks.
fn operator_sizes(persisted: &[(String, usize, Persisted)]) -> BTreeMap<String, u64> {
    let mut sizes = BTreeMap::new();
    for (uid, _, done) in persisted {
        *sizes.entry(uid.clone()).or_default() += done.full_size;
    }
    sizes
}

fn shared_objects(handles: &[Option<IncrementalHandle>]) -> Vec<String> {
    handles
        .iter()
        .flatten()
        .flat_map(|h| h.shared.iter().map(|f| f.object.clone()))
        .collect()
}

struct Pending {
    id: u64,
    started: Instant,
    target: PersistTarget,
    store: Arc<dyn ObjectStore>,
    persisted: Vec<(String, usize, Persisted)>,
    acks: usize,
    savepoint: Option<SavepointRequest>,
}

impl Coordinator {
    pub(crate) fn run(self) {
        self.rebuild_shared_refs();
        let mut next_trigger = self.cfg.interval.map(|i| Instant::now() + i);
        let mut pending: Option<Pending> = None;
        let mut queued: VecDeque<SavepointRequest> = VecDeque::new();
        while !self.done.load(Relaxed) {
            while let Ok(r) = self.savepoints.try_recv() {
                queued.push_back(r);
            }
            let due = next_trigger.is_some_and(|t| Instant::now() >= t) || !queued.is_empty();
            if pending.is_none() && due {
                if (self.any_task_finished)() {
                    for r in queued.drain(..) {
                        let _ = r.reply.send(Err(Error::User(
                            "cannot take a savepoint: some tasks have already finished".into(),
                        )));
                    }
                    next_trigger = None;
                } else {
                    let savepoint = queued.pop_front();
                    match self.target(self.next_id.load(Relaxed) + 1, savepoint.as_ref()) {
                        Ok((target, store)) => {
                            pending = Some(self.trigger(target, store, savepoint));
                        }
                        Err(e) => {
                            // Nothing was triggered: only this request fails.
                            if let Some(r) = savepoint {
                                let _ = r.reply.send(Err(e));
                            } else {
                                tracing::warn!(error = %crate::error::report(&e), "cannot trigger a checkpoint");
                                next_trigger = self.cfg.interval.map(|i| Instant::now() + i);
                            }
                        }
                    }
                }
            }
            match self.acks.recv_timeout(Duration::from_millis(20)) {
                Ok(ack) => {
                    if let Some(p) = pending.as_mut().filter(|p| p.id == ack.id) {
                        p.acks += 1;
                        if let Err(e) = self.accept(p, ack) {
                            let p = pending.take().expect("present");
                            let msg = format!(
                                "checkpoint {} could not be written: {}",
                                p.id,
                                crate::error::report(&e)
                            );
                            self.fail(p, msg);
                            next_trigger = self.cfg.interval.map(|i| Instant::now() + i);
                        } else if p.acks == self.expected {
                            let p = pending.take().expect("present");
                            self.complete(p);
                            next_trigger = self
                                .cfg
                                .interval
                                .map(|i| Instant::now() + i.max(self.cfg.min_pause));
                        }
                    } else {
                        // Late for a checkpoint that failed: drop what it left on local disk.
                        for (_, _, state) in &ack.states {
                            if let SubtaskAck::Raw(s) = state {
                                super::persist::discard_local(s);
                            }
                        }
                    }
                }
                Err(_) => {
                    if let Some(p) = pending
                        .as_ref()
                        .filter(|p| p.started.elapsed() > self.cfg.timeout)
                    {
                        let msg = format!(
                            "checkpoint {} expired after {:?} before all tasks acknowledged",
                            p.id, self.cfg.timeout
                        );
                        let p = pending.take().expect("present");
                        self.fail(p, msg);
                        next_trigger = self.cfg.interval.map(|i| Instant::now() + i);
                    }
                }
            }
        }
        if let Some(p) = pending {
            self.fail(p, "the job ended before the checkpoint completed".into());
        }
        for r in queued {
            let _ = r.reply.send(Err(Error::User(
                "the job ended before the savepoint was taken".into(),
            )));
        }
    }

    /// Rebuilds the shared-file reference counts from the retained checkpoints' metadata
    /// (they survive restarts; the counts live in this attempt's coordinator).
    fn rebuild_shared_refs(&self) {
        let Some(store) = &self.store else { return };
        let retained: Vec<u64> = self
            .retained
            .lock()
            .expect("not poisoned")
            .iter()
            .map(|(id, _)| *id)
            .collect();
        let mut shared = self.shared.borrow_mut();
        *shared = SharedFiles::default();
        for id in retained {
            let path = format!("{}/chk-{id}/_metadata", self.job_id);
            match store
                .get(&path)
                .map_err(Error::from)
                .and_then(|b| CheckpointMetadata::decode(&path, &b))
            {
                Ok(m) => {
                    for op in &m.operators {
                        shared.add(id, shared_objects(&op.incremental));
                    }
                }
                Err(e) => {
                    tracing::warn!(checkpoint = id, error = %crate::error::report(&e), "cannot read a retained checkpoint's metadata; its shared files are not protected")
                }
            }
        }
    }

    /// Where checkpoint `id` (or the savepoint `savepoint` asks for) is written.
    fn target(
        &self,
        id: u64,
        savepoint: Option<&SavepointRequest>,
    ) -> Result<(PersistTarget, Arc<dyn ObjectStore>)> {
        match savepoint {
            Some(req) => {
                let dir = req
                    .target
                    .clone()
                    .or_else(|| self.cfg.savepoints_dir.clone())
                    .ok_or_else(|| {
                        Error::Config(
                            "no savepoint directory: pass one or set state.savepoints.dir".into(),
                        )
                    })?;
                let suffix = crate::keygroup::random_u64();
                let base = format!(
                    "savepoint-{}-{:012x}",
                    &self.job_id[..6],
                    suffix & 0xffff_ffff_ffff
                );
                let store = weir_storage::open(&dir, &self.cfg.storage)?;
                let target = PersistTarget {
                    dir,
                    base,
                    job_id: self.job_id.clone(),
                    savepoint: true,
                    checkpoint_id: id,
                };
                Ok((target, store))
            }
            None => {
                let (Some(store), Some(dir)) = (self.store.clone(), self.cfg.dir.clone()) else {
                    return Err(Error::Config("state.checkpoints.dir is not set".into()));
                };
                let target = PersistTarget {
                    dir,
                    base: format!("{}/chk-{id}", self.job_id),
                    job_id: self.job_id.clone(),
                    savepoint: false,
                    checkpoint_id: id,
                };
                Ok((target, store))
            }
        }
    }

    /// Triggers the next checkpoint (a savepoint when `savepoint` is given) into `target`.
    fn trigger(
        &self,
        target: PersistTarget,
        store: Arc<dyn ObjectStore>,
        savepoint: Option<SavepointRequest>,
    ) -> Pending {
        let id = self.next_id.fetch_add(1, Relaxed) + 1;
        let mut stats = self.stats.lock().expect("not poisoned");
        stats.triggered += 1;
        stats.history.push_back(CheckpointRecord {
            id,
            is_savepoint: savepoint.is_some(),
            status: CheckpointStatus::InProgress,
            trigger_timestamp: crate::time::now_ms(),
            end_timestamp: None,
            size_bytes: 0,
            full_size_bytes: 0,
            external_path: None,
            failure: None,
            subtasks: Vec::new(),
        });
        while stats.history.len() > HISTORY {
            stats.history.pop_front();
        }
        drop(stats);
        let kind = match &savepoint {
            None => SnapshotKind::Checkpoint,
            Some(s) if s.stop => SnapshotKind::StopWithSavepoint { drain: s.drain },
            Some(_) => SnapshotKind::Savepoint,
        };
        *self.ctl.target.lock().expect("not poisoned") = Some((id, target.clone()));
        self.ctl.announce(Barrier { id, kind });
        Pending {
            id,
            started: Instant::now(),
            target,
            store,
            persisted: Vec::new(),
            acks: 0,
            savepoint,
        }
    }

    /// Takes one task's acknowledgement: writes the state it carries (state persisted by a
    /// TaskManager is only recorded) and records the task's figures in the history.
    fn accept(&self, p: &mut Pending, ack: Ack) -> Result<()> {
        let ack_timestamp = crate::time::now_ms();
        let first = p.persisted.len();
        let result = self.persist_ack(p, ack.states);
        let mine = &p.persisted[first..];
        let t = ack.timing;
        let mut stats = self.stats.lock().expect("not poisoned");
        if let Some(r) = stats.record(p.id) {
            let ms = |us: u64| us / 1000;
            r.subtasks.push(SubtaskCheckpointStats {
                start_delay_ms: (t.first_barrier_ms - r.trigger_timestamp).max(0) as u64,
                task: t.task,
                subtask: t.subtask,
                ack_timestamp,
                state_size: mine.iter().map(|(_, _, d)| d.full_size).sum(),
                checkpointed_size: mine.iter().map(|(_, _, d)| d.size).sum(),
                sync_ms: ms(t.sync_us),
                async_ms: ms(mine.iter().map(|(_, _, d)| d.write_us).sum()),
                alignment_ms: ms(t.alignment_us),
                unaligned: t.unaligned,
                persisted_data: t.persisted_bytes,
            });
        }
        result
    }

    /// Writes (or, when a TaskManager wrote it, records) each operator's state of one
    /// acknowledgement into `p.persisted`.
    fn persist_ack(&self, p: &mut Pending, states: Vec<(String, usize, SubtaskAck)>) -> Result<()> {
        let mut result = Ok(());
        for (uid, subtask, state) in states {
            let persisted = match state {
                SubtaskAck::Persisted(done) => done,
                SubtaskAck::Raw(state) if result.is_ok() => {
                    let shared = self.shared.borrow();
                    match persist(&*p.store, &p.target, &uid, subtask, &state, &|o| {
                        shared.contains(o)
                    }) {
                        Ok(done) => done,
                        Err(e) => {
                            result = Err(e);
                            continue;
                        }
                    }
                }
                SubtaskAck::Raw(state) => {
                    super::persist::discard_local(&state);
                    continue;
                }
                SubtaskAck::Failed(e) => {
                    if result.is_ok() {
                        result = Err(Error::User(format!("{uid} ({subtask}): {e}")));
                    }
                    continue;
                }
            };
            p.persisted.push((uid, subtask, persisted));
        }
        result
    }

    fn fail(&self, p: Pending, msg: String) {
        self.discard(&p);
        tracing::warn!(checkpoint = p.id, "{msg}");
        // Tasks that stopped at this (stop-with-)savepoint's barrier carry on.
        self.ctl.aborted.fetch_max(p.id, Relaxed);
        let mut s = self.stats.lock().expect("not poisoned");
        s.failed += 1;
        s.last_failure = Some(msg.clone());
        s.last_failed = s.finish(p.id, CheckpointStatus::Failed, None, 0, Some(msg.clone()));
        drop(s);
        let is_savepoint = p.savepoint.is_some();
        if let Some(r) = p.savepoint {
            let _ = r.reply.send(Err(Error::User(msg.clone())));
        }
        // Savepoint failures are reported to the caller; only checkpoints count here.
        if !is_savepoint {
            let n = self.consecutive_failures.fetch_add(1, Relaxed) + 1;
            if n > self.cfg.tolerable_failures {
                (self.fail_job)(Error::User(format!(
                    "{n} consecutive checkpoint failures exceed execution.checkpointing.tolerable-failed-checkpoints \
                     ({}); last: {msg}",
                    self.cfg.tolerable_failures
                )));
            }
        }
    }

    /// Deletes what a failed checkpoint wrote: its directory and the shared files it
    /// uploaded that no retained checkpoint references. Best effort: storage may be down.
    fn discard(&self, p: &Pending) {
        let _ = p.store.delete_prefix(&format!("{}/", p.target.base));
        let shared = self.shared.borrow();
        for o in p
            .persisted
            .iter()
            .flat_map(|(_, _, d)| &d.uploaded)
            .filter(|o| !shared.contains(o))
        {
            let _ = p.store.delete(&format!("{}/{o}", self.job_id));
        }
    }

    fn complete(&self, mut p: Pending) {
        let savepoint = p.savepoint.take();
        match self.write(&p) {
            Ok(Written {
                path,
                size,
                full_size,
                shared,
            }) => {
                // Only checkpoints and stop-with-savepoints commit side effects (Flink >= 1.15):
                // recovery restores the latest *checkpoint*, so a savepoint that committed would
                // have its output written again after a failure. What a savepoint's barrier
                // pre-committed stays pending and is committed with the next checkpoint (or on
                // restore from this savepoint). A stop is marked complete before answering, so
                // the stopped tasks commit before the job ends.
                if commits_side_effects(savepoint.as_ref()) {
                    self.ctl.completed.fetch_max(p.id, Relaxed);
                }
                let mut s = self.stats.lock().expect("not poisoned");
                s.last_operator_sizes = operator_sizes(&p.persisted);
                s.finish(
                    p.id,
                    CheckpointStatus::Completed,
                    Some(path.clone()),
                    size,
                    None,
                );
                if let Some(r) = s.record(p.id) {
                    r.full_size_bytes = full_size;
                }
                if let Some(r) = savepoint {
                    tracing::info!(savepoint = %path, "savepoint completed");
                    s.savepoints_completed += 1;
                    s.last_savepoint = s.record(p.id).cloned();
                    drop(s);
                    let _ = r.reply.send(Ok(path));
                } else {
                    self.consecutive_failures.store(0, Relaxed);
                    s.completed += 1;
                    s.last_completed_id = Some(p.id);
                    s.last_completed_path = Some(path.clone());
                    s.last_duration_ms = p.started.elapsed().as_millis() as u64;
                    s.last_size_bytes = size;
                    s.last_full_size_bytes = full_size;
                    drop(s);
                    self.shared.borrow_mut().add(p.id, shared);
                    self.retain(p.id, path);
                }
            }
            Err(e) => {
                let msg = format!(
                    "checkpoint {} could not be written: {}",
                    p.id,
                    crate::error::report(&e)
                );
                p.savepoint = savepoint;
                self.fail(p, msg);
            }
        }
    }

    /// Writes `_metadata` from every subtask's persisted state: the checkpoint is then
    /// complete.
    fn write(&self, p: &Pending) -> Result<Written> {
        let mut files: BTreeMap<String, Vec<Option<String>>> = BTreeMap::new();
        let mut handles: BTreeMap<String, Vec<Option<IncrementalHandle>>> = BTreeMap::new();
        let mut size = 0u64;
        let mut full_size = 0u64;
        for (uid, subtask, done) in &p.persisted {
            size += done.size;
            full_size += done.full_size;
            if done.file.is_none() && done.handle.is_none() {
                continue;
            }
            let op = self
                .operators
                .iter()
                .find(|o| o.uid == *uid)
                .ok_or_else(|| Error::User(format!("state for unknown operator '{uid}'")))?;
            let entry = files
                .entry(uid.clone())
                .or_insert_with(|| vec![None; op.parallelism]);
            if let Some(slot) = entry.get_mut(*subtask) {
                slot.clone_from(&done.file);
            }
            if let Some(handle) = &done.handle
                && let Some(slot) = handles
                    .entry(uid.clone())
                    .or_insert_with(|| vec![None; op.parallelism])
                    .get_mut(*subtask)
            {
                *slot = Some(handle.clone());
            }
        }
        let meta = CheckpointMetadata {
            format: METADATA_FORMAT.into(),
            job_id: self.job_id.clone(),
            checkpoint_id: p.id,
            savepoint: p.target.savepoint,
            max_parallelism: self.max_parallelism,
            timestamp: crate::time::now_ms(),
            operators: files
                .into_iter()
                .map(|(uid, files)| {
                    let op = self
                        .operators
                        .iter()
                        .find(|o| o.uid == uid)
                        .expect("checked above");
                    OperatorMetadata {
                        incremental: handles.remove(&uid).unwrap_or_default(),
                        uid,
                        name: op.name.clone(),
                        parallelism: op.parallelism,
                        files,
                    }
                })
                .collect(),
        };
        let bytes = serde_json::to_vec_pretty(&meta).expect("metadata encodes");
        size += bytes.len() as u64;
        full_size += bytes.len() as u64;
        let base = &p.target.base;
        p.store.put(&format!("{base}/_metadata"), bytes.into())?;
        let shared = meta
            .operators
            .iter()
            .flat_map(|o| shared_objects(&o.incremental))
            .collect();
        Ok(Written {
            path: p.store.uri(base),
            size,
            full_size,
            shared,
        })
    }

    /// Keeps the newest `state.checkpoints.num-retained` checkpoints; deletes the rest, and
    /// the shared files no retained checkpoint references any more.
    fn retain(&self, id: u64, path: String) {
        let mut r = self.retained.lock().expect("not poisoned");
        r.push_back((id, path));
        while r.len() > self.cfg.retained {
            let (old, _) = r.pop_front().expect("non-empty");
            let unused = self.shared.borrow_mut().release(old);
            let Some(store) = &self.store else { continue };
            // The trailing slash keeps chk-1 from matching chk-10.
            if let Err(e) = store.delete_prefix(&format!("{}/chk-{old}/", self.job_id)) {
                tracing::warn!(checkpoint = old, error = %e, "cannot delete a checkpoint beyond retention");
            }
            for o in unused {
                if let Err(e) = store.delete(&format!("{}/{o}", self.job_id)) {
                    tracing::warn!(file = %o, error = %e, "cannot delete a shared file no checkpoint references");
                }
            }
        }
    }
}

/// Whether completing a checkpoint lets sinks commit: every periodic checkpoint and every
/// stop-with-savepoint does; a savepoint the job runs on after does not (docs/fault-tolerance.md,
/// *Savepoints and side effects*).
fn commits_side_effects(savepoint: Option<&SavepointRequest>) -> bool {
    savepoint.is_none_or(|s| s.stop)
}

/// What writing a checkpoint produced.
struct Written {
    path: String,
    /// Bytes uploaded.
    size: u64,
    /// Bytes referenced.
    full_size: u64,
    /// Shared objects the checkpoint references.
    shared: Vec<String>,
}
