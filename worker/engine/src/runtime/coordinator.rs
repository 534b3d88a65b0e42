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

use crate::checkpoint::{
    CheckpointMetadata, IncrementalHandle, LocalIncrementalSnapshot, METADATA_FORMAT, ObjectStore,
    OperatorMetadata, OperatorSubtaskState, encode_state,
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
    /// Highest checkpoint id completed; tasks notify their operators.
    pub(crate) completed: AtomicU64,
    /// Where tasks acknowledge.
    pub(crate) acks: Sender<Ack>,
    /// Aligned (exactly-once) or not.
    pub(crate) exactly_once: bool,
    /// Checkpoints let barriers overtake queued records (exactly-once only).
    pub(crate) unaligned: bool,
    /// Id of the latest savepoint: its barriers always align, so savepoints hold no
    /// in-flight records and stay canonical.
    pub(crate) savepoint: AtomicU64,
    /// Id of a stop-with-savepoint: tasks stop at its barrier (0: none).
    pub(crate) stop_at: AtomicU64,
    /// Highest checkpoint id that failed; tasks stopped at it resume.
    pub(crate) aborted: AtomicU64,
    /// Id of a draining stop-with-savepoint: sources emit the final (MAX) watermark before
    /// its barrier, so every event-time window and timer fires into the savepoint (0: none).
    pub(crate) drain_at: AtomicU64,
}

/// A task's acknowledgement of a checkpoint: the state of each chained operator.
pub(crate) struct Ack {
    pub(crate) id: u64,
    pub(crate) states: Vec<(String, usize, OperatorSubtaskState)>,
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
    /// Bytes written.
    pub size_bytes: u64,
    /// Where it was written.
    pub external_path: Option<String>,
    /// Why it failed.
    pub failure: Option<String>,
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
    /// Id of the latest savepoint triggered; keyed operators snapshot canonically for it.
    pub(crate) savepoint_at: Arc<AtomicU64>,
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
    states: Vec<(String, usize, OperatorSubtaskState)>,
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
                    let id = self.next_id.fetch_add(1, Relaxed) + 1;
                    let savepoint = queued.pop_front();
                    let mut stats = self.stats.lock().expect("not poisoned");
                    stats.triggered += 1;
                    stats.history.push_back(CheckpointRecord {
                        id,
                        is_savepoint: savepoint.is_some(),
                        status: CheckpointStatus::InProgress,
                        trigger_timestamp: crate::time::now_ms(),
                        end_timestamp: None,
                        size_bytes: 0,
                        external_path: None,
                        failure: None,
                    });
                    while stats.history.len() > HISTORY {
                        stats.history.pop_front();
                    }
                    drop(stats);
                    // Set before the trigger so every task sees them with the barrier.
                    if savepoint.is_some() {
                        self.ctl.savepoint.store(id, SeqCst);
                        // Keyed operators then snapshot canonically (no incremental handles).
                        self.savepoint_at.store(id, SeqCst);
                    }
                    if let Some(s) = savepoint.as_ref().filter(|s| s.stop) {
                        if s.drain {
                            self.ctl.drain_at.store(id, SeqCst);
                        }
                        self.ctl.stop_at.store(id, SeqCst);
                    }
                    pending = Some(Pending {
                        id,
                        started: Instant::now(),
                        states: Vec::new(),
                        acks: 0,
                        savepoint,
                    });
                    self.ctl.trigger.store(id, SeqCst);
                }
            }
            match self.acks.recv_timeout(Duration::from_millis(20)) {
                Ok(ack) => {
                    if let Some(p) = pending.as_mut().filter(|p| p.id == ack.id) {
                        p.acks += 1;
                        p.states.extend(ack.states);
                        if p.acks == self.expected {
                            let p = pending.take().expect("present");
                            self.complete(p);
                            next_trigger = self
                                .cfg
                                .interval
                                .map(|i| Instant::now() + i.max(self.cfg.min_pause));
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

    /// Removes the local RocksDB checkpoint directories of `p` (uploaded or abandoned).
    fn discard_local(states: &[(String, usize, OperatorSubtaskState)]) {
        for (_, _, s) in states {
            if let Some(local) = &s.incremental {
                let _ = std::fs::remove_dir_all(&local.dir);
                if let Some(parent) = local.dir.parent() {
                    // Succeeds only once the backend is gone and nothing else is left.
                    let _ = std::fs::remove_dir(parent);
                }
            }
        }
    }

    fn fail(&self, p: Pending, msg: String) {
        Self::discard_local(&p.states);
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

    fn complete(&self, mut p: Pending) {
        let savepoint = p.savepoint.take();
        let mut uploaded = Vec::new();
        let result = self.write(&p, savepoint.as_ref(), &mut uploaded);
        Self::discard_local(&p.states);
        match result {
            Ok(Written {
                path,
                size,
                full_size,
                shared,
            }) => {
                // Savepoints complete like checkpoints for sinks (their data is durable too);
                // mark completion before answering so a stop that follows commits it.
                self.ctl.completed.fetch_max(p.id, Relaxed);
                if let Some(r) = savepoint {
                    tracing::info!(savepoint = %path, "savepoint completed");
                    let mut s = self.stats.lock().expect("not poisoned");
                    s.savepoints_completed += 1;
                    s.last_savepoint = s.finish(
                        p.id,
                        CheckpointStatus::Completed,
                        Some(path.clone()),
                        size,
                        None,
                    );
                    drop(s);
                    let _ = r.reply.send(Ok(path));
                } else {
                    self.consecutive_failures.store(0, Relaxed);
                    let mut s = self.stats.lock().expect("not poisoned");
                    s.completed += 1;
                    s.last_completed_id = Some(p.id);
                    s.last_completed_path = Some(path.clone());
                    s.last_duration_ms = p.started.elapsed().as_millis() as u64;
                    s.last_size_bytes = size;
                    s.last_full_size_bytes = full_size;
                    s.finish(
                        p.id,
                        CheckpointStatus::Completed,
                        Some(path.clone()),
                        size,
                        None,
                    );
                    drop(s);
                    self.shared.borrow_mut().add(p.id, shared);
                    self.retain(p.id, path);
                }
            }
            Err(e) => {
                // Files this attempt uploaded that no retained checkpoint references.
                if let Some(store) = &self.store {
                    let shared = self.shared.borrow();
                    for o in uploaded.iter().filter(|o| !shared.contains(o)) {
                        let _ = store.delete(&format!("{}/{o}", self.job_id));
                    }
                }
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

    /// Uploads a subtask's local RocksDB checkpoint: SST files no retained checkpoint
    /// references yet into `shared/`, private files into `<chk>/<name>-rocksdb/`. Returns the
    /// handle for `_metadata`; adds the bytes uploaded to `size`.
    fn upload_incremental(
        &self,
        store: &dyn ObjectStore,
        chk: &str,
        name: &str,
        local: &LocalIncrementalSnapshot,
        size: &mut u64,
        uploaded: &mut Vec<String>,
    ) -> Result<IncrementalHandle> {
        let mut handle = local.handle.clone();
        let read = |file: &str| {
            let p = local.dir.join(file);
            std::fs::read(&p).map_err(|e| Error::io("cannot read RocksDB checkpoint file", p, e))
        };
        for f in &handle.shared {
            if self.shared.borrow().contains(&f.object) || uploaded.contains(&f.object) {
                continue;
            }
            store.put(
                &format!("{}/{}", self.job_id, f.object),
                read(&f.name)?.into(),
            )?;
            *size += f.size;
            uploaded.push(f.object.clone());
        }
        for f in &mut handle.private {
            f.object = format!("{chk}/{name}-rocksdb/{}", f.name);
            store.put(
                &format!("{}/{}", self.job_id, f.object),
                read(&f.name)?.into(),
            )?;
            *size += f.size;
        }
        Ok(handle)
    }

    /// Writes the state files (and uploads incremental RocksDB files) then `_metadata`.
    fn write(
        &self,
        p: &Pending,
        savepoint: Option<&SavepointRequest>,
        uploaded: &mut Vec<String>,
    ) -> Result<Written> {
        let (store, base): (Arc<dyn ObjectStore>, String) = match savepoint {
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
                let suffix = super::exec::random_u64();
                let name = format!(
                    "savepoint-{}-{:012x}",
                    &self.job_id[..6],
                    suffix & 0xffff_ffff_ffff
                );
                (weir_storage::open(&dir, &self.cfg.storage)?, name)
            }
            None => {
                let store = self
                    .store
                    .clone()
                    .ok_or_else(|| Error::Config("state.checkpoints.dir is not set".into()))?;
                (store, format!("{}/chk-{}", self.job_id, p.id))
            }
        };
        let mut files: BTreeMap<String, Vec<Option<String>>> = BTreeMap::new();
        let mut handles: BTreeMap<String, Vec<Option<IncrementalHandle>>> = BTreeMap::new();
        let mut size = 0u64;
        let mut full_size = 0u64;
        for (uid, subtask, state) in &p.states {
            if state.is_empty() {
                continue;
            }
            // The hashmap backend's keyed state is serialized here, off the task thread.
            let state = &*state.resolved()?;
            let op = self
                .operators
                .iter()
                .find(|o| o.uid == *uid)
                .expect("known operator");
            let name = format!("{uid}-{subtask}");
            let entry = files
                .entry(uid.clone())
                .or_insert_with(|| vec![None; op.parallelism]);
            if !state.canonical_is_empty() {
                let bytes = encode_state(state)?;
                size += bytes.len() as u64;
                full_size += bytes.len() as u64;
                store.put(&format!("{base}/{name}"), bytes.into())?;
                entry[*subtask] = Some(name.clone());
            }
            if let Some(local) = &state.incremental {
                if savepoint.is_some() {
                    return Err(Error::User(
                        "a savepoint received incremental RocksDB state; savepoints must be canonical".into(),
                    ));
                }
                let chk = format!("chk-{}", p.id);
                let handle =
                    self.upload_incremental(&*store, &chk, &name, local, &mut size, uploaded)?;
                full_size += handle.full_size();
                handles
                    .entry(uid.clone())
                    .or_insert_with(|| vec![None; op.parallelism])[*subtask] = Some(handle);
            }
        }
        let meta = CheckpointMetadata {
            format: METADATA_FORMAT.into(),
            job_id: self.job_id.clone(),
            checkpoint_id: p.id,
            savepoint: savepoint.is_some(),
            max_parallelism: self.max_parallelism,
            timestamp: crate::time::now_ms(),
            operators: files
                .into_iter()
                .map(|(uid, files)| {
                    let op = self
                        .operators
                        .iter()
                        .find(|o| o.uid == uid)
                        .expect("known operator");
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
        store.put(&format!("{base}/_metadata"), bytes.into())?;
        let shared = meta
            .operators
            .iter()
            .flat_map(|o| shared_objects(&o.incremental))
            .collect();
        Ok(Written {
            path: store.uri(&base),
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
