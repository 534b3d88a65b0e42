//! Writing one subtask's part of a checkpoint or savepoint: its state file and, for
//! incremental RocksDB checkpoints, the SST files not stored yet. The checkpoint coordinator
//! does this for tasks in its own process; a TaskManager does it for its tasks and sends the
//! coordinator only the small [`Persisted`] summary, so state never travels through the
//! JobManager. Either way it runs off the task threads.

use crate::checkpoint::{
    IncrementalHandle, ObjectStore, OperatorSubtaskState, StateBinding, encode_state,
};
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

/// Where one checkpoint or savepoint is written; fixed when it is triggered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PersistTarget {
    /// The directory URI the store is opened at (`state.checkpoints.dir`, or the savepoint
    /// directory).
    pub(crate) dir: String,
    /// The checkpoint's or savepoint's own directory inside it (`<job-id>/chk-<n>`,
    /// `savepoint-<job>-<random>`).
    pub(crate) base: String,
    /// The job id: incremental files are shared under `<job-id>/shared/` of `dir`.
    pub(crate) job_id: String,
    /// A savepoint (canonical state only).
    pub(crate) savepoint: bool,
    /// The checkpoint's (or savepoint's) id, which its state files are bound to.
    pub(crate) checkpoint_id: u64,
}

/// What one operator subtask's state became in storage: what `_metadata` records.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Persisted {
    /// The state file's name inside the target's base, if it has canonical state.
    pub(crate) file: Option<String>,
    /// The incremental RocksDB handle, with every file's object filled in.
    pub(crate) handle: Option<IncrementalHandle>,
    /// Bytes written now.
    pub(crate) size: u64,
    /// Bytes the state references (shared files uploaded earlier included).
    pub(crate) full_size: u64,
    /// Shared objects uploaded now (relative to `<job-id>/`): deleted again if the
    /// checkpoint fails and nothing else references them.
    pub(crate) uploaded: Vec<String>,
    /// Microseconds spent writing it (Flink's asynchronous part of a subtask's checkpoint).
    pub(crate) write_us: u64,
}

/// A subtask's acknowledgement payload: its state as taken on the task thread, or already
/// persisted by its TaskManager.
pub(crate) enum SubtaskAck {
    Raw(OperatorSubtaskState),
    Persisted(Persisted),
    /// The TaskManager could not write it: the checkpoint fails.
    Failed(String),
}

/// Writes one subtask's state. `stored(object)` says whether a shared object is already in
/// storage and referenced by a checkpoint that stays retained while this one is pending.
pub(crate) fn persist(
    store: &dyn ObjectStore,
    target: &PersistTarget,
    uid: &str,
    subtask: usize,
    state: &OperatorSubtaskState,
    stored: &dyn Fn(&str) -> bool,
) -> Result<Persisted> {
    let mut out = Persisted::default();
    if state.is_empty() {
        discard_local(state);
        return Ok(out);
    }
    let started = std::time::Instant::now();
    let r = persist_inner(store, target, uid, subtask, state, stored, &mut out);
    out.write_us = started.elapsed().as_micros() as u64;
    discard_local(state);
    if r.is_err() {
        // The checkpoint fails and its directory goes with it, but shared objects live
        // outside it: remove the ones uploaded before the failure (best effort).
        for o in &out.uploaded {
            let _ = store.delete(&format!("{}/{o}", target.job_id));
        }
    }
    r.map(|()| out)
}

fn persist_inner(
    store: &dyn ObjectStore,
    target: &PersistTarget,
    uid: &str,
    subtask: usize,
    state: &OperatorSubtaskState,
    stored: &dyn Fn(&str) -> bool,
    out: &mut Persisted,
) -> Result<()> {
    // The hashmap backend's keyed state is serialized here, off the task thread.
    let state = &*state.resolved()?;
    let name = format!("{uid}-{subtask}");
    if !state.canonical_is_empty() {
        let binding = StateBinding {
            job_id: target.job_id.clone(),
            checkpoint_id: target.checkpoint_id,
            uid: uid.to_string(),
            subtask: subtask as u32,
        };
        let bytes = encode_state(&binding, state)?;
        out.size += bytes.len() as u64;
        out.full_size += bytes.len() as u64;
        store.put(&format!("{}/{name}", target.base), bytes.into())?;
        out.file = Some(name.clone());
    }
    let Some(local) = &state.incremental else {
        return Ok(());
    };
    if target.savepoint {
        return Err(Error::User(
            "a savepoint received incremental RocksDB state; savepoints must be canonical".into(),
        ));
    }
    let mut handle = local.handle.clone();
    let read = |file: &str| {
        let p = local.dir.join(file);
        std::fs::read(&p).map_err(|e| Error::io("cannot read RocksDB checkpoint file", p, e))
    };
    for f in &handle.shared {
        if stored(&f.object) || out.uploaded.contains(&f.object) {
            continue;
        }
        store.put(
            &format!("{}/{}", target.job_id, f.object),
            read(&f.name)?.into(),
        )?;
        out.size += f.size;
        out.uploaded.push(f.object.clone());
    }
    let chk = target
        .base
        .rsplit('/')
        .next()
        .unwrap_or(&target.base)
        .to_string();
    for f in &mut handle.private {
        f.object = format!("{chk}/{name}-rocksdb/{}", f.name);
        store.put(
            &format!("{}/{}", target.job_id, f.object),
            read(&f.name)?.into(),
        )?;
        out.size += f.size;
    }
    out.full_size += handle.full_size();
    out.handle = Some(handle);
    Ok(())
}

/// Removes the local RocksDB checkpoint directory of a state (uploaded or abandoned).
pub(crate) fn discard_local(state: &OperatorSubtaskState) {
    if let Some(local) = &state.incremental {
        let _ = std::fs::remove_dir_all(&local.dir);
        if let Some(parent) = local.dir.parent() {
            // Succeeds only once the backend is gone and nothing else is left.
            let _ = std::fs::remove_dir(parent);
        }
    }
}

/// The shared objects a TaskManager may skip uploading: those its subtasks referenced in the
/// latest checkpoint it knows completed (retention always keeps that one, so its files stay
/// until a newer checkpoint that references them has completed). Flink's TaskManagers
/// reuse only confirmed handles in the same way.
#[derive(Debug, Default)]
pub(crate) struct ConfirmedShared {
    pending: BTreeMap<u64, HashSet<String>>,
    confirmed: HashSet<String>,
}

impl ConfirmedShared {
    /// Records the shared objects checkpoint `id` referenced from here.
    pub(crate) fn referenced(&mut self, id: u64, handle: &IncrementalHandle) {
        self.pending
            .entry(id)
            .or_default()
            .extend(handle.shared.iter().map(|f| f.object.clone()));
    }

    /// Checkpoint `id` completed: its objects become the reusable set.
    pub(crate) fn completed(&mut self, id: u64) {
        if let Some(objects) = self.pending.remove(&id) {
            self.confirmed = objects;
        }
        self.pending = self.pending.split_off(&(id + 1));
    }

    /// Whether `object` is stored and protected.
    pub(crate) fn contains(&self, object: &str) -> bool {
        self.confirmed.contains(object)
    }
}

/// Opens the store a target is written to.
pub(crate) fn open_target(
    target: &PersistTarget,
    storage: &weir_storage::StorageOptions,
) -> Result<Arc<dyn ObjectStore>> {
    Ok(weir_storage::open(&target.dir, storage)?)
}
