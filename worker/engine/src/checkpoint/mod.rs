//! Checkpoint and savepoint data: what each operator subtask contributes, how it is written
//! (`<dir>/<job-id>/chk-<n>/` with a `_metadata` file naming every state file), and how a
//! checkpoint is read back and redistributed to subtasks at any parallelism.
//!
//! The format is canonical and backend-independent: keyed state is a list of key groups, each
//! holding its named states' entries (serialized key ++ namespace, serialized value) and its
//! timers; non-keyed ("list") state is a list of opaque elements redistributed round-robin.
//!
//! The one exception is the rocksdb backend's incremental checkpoints: each keyed subtask
//! contributes an [`IncrementalHandle`] (its key group range, the SST files it references
//! under `<job-id>/shared/`, and its private MANIFEST/CURRENT/OPTIONS files under
//! `chk-<n>/`), recorded in `_metadata`. Savepoints are always canonical.

pub use weir_storage::{Bytes, FileStore, ObjectStore, StorageOptions};

use crate::error::{Error, Result};
use crate::keygroup::KeyGroupRange;
pub use crate::state::{
    DeferredKeyed, IncrementalHandle, IncrementalRestore, LocalIncrementalSnapshot, StateFile,
};
use crate::state::{KeyGroupSnapshot, KeyedRestore, KeyedSnapshot};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

mod compat;
pub use compat::{CheckedOperator, Finding, JobOperator, RestoreCheck};

/// What a snapshot is taken for (Flink's `SnapshotType` in its `CheckpointOptions`). It
/// travels with the barrier, so every task decides from the barrier itself how to take its
/// part, not from job-wide flags that a later trigger could overwrite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SnapshotKind {
    /// A periodic checkpoint: may be unaligned and incremental; its completion commits sinks.
    Checkpoint,
    /// A savepoint: always aligned and canonical; it commits no side effects (a later
    /// checkpoint does; see fault-tolerance.md, "Savepoints and side effects").
    Savepoint,
    /// A stop-with-savepoint: a savepoint after which tasks process nothing more; with
    /// `drain`, sources first end event time so every window and timer fires into it.
    StopWithSavepoint {
        /// Emit the final watermark before the barrier.
        drain: bool,
    },
}

impl SnapshotKind {
    /// A savepoint of either kind: aligned, canonical, owned by the user.
    pub fn is_savepoint(self) -> bool {
        !matches!(self, SnapshotKind::Checkpoint)
    }

    /// Tasks stop at this barrier once the snapshot completes.
    pub fn stops(self) -> bool {
        matches!(self, SnapshotKind::StopWithSavepoint { .. })
    }

    /// Sources end event time before this barrier.
    pub fn drains(self) -> bool {
        matches!(self, SnapshotKind::StopWithSavepoint { drain: true })
    }
}

/// A checkpoint barrier: everything a task received before it belongs to snapshot `id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Barrier {
    /// The checkpoint id (savepoints take ids from the same sequence).
    pub id: u64,
    /// What the snapshot is for.
    pub kind: SnapshotKind,
}

impl Barrier {
    /// The barrier of periodic checkpoint `id`.
    pub fn checkpoint(id: u64) -> Barrier {
        Barrier {
            id,
            kind: SnapshotKind::Checkpoint,
        }
    }
}

/// The state one operator subtask contributes to a checkpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorSubtaskState {
    /// Keyed state and timers, per key group.
    pub keyed: Vec<KeyGroupSnapshot>,
    /// Non-keyed list state (source splits, pending sink files); elements are redistributed
    /// round-robin when the parallelism changes.
    pub list: Vec<Vec<u8>>,
    /// Restoring: every element of the operator's list state, whatever the parallelism, for
    /// operators that decide themselves which elements a subtask takes (as Flink's union list
    /// state): a Kafka source's partitions belong to the subtask their hash names, a Kafka
    /// sink's transactions to the subtask owning their transactional id. Never stored.
    #[serde(skip)]
    pub list_union: Vec<Vec<u8>>,
    /// Records an unaligned checkpoint overtook: read from an input channel after the task's
    /// snapshot and before that channel's barrier. Replayed before new input on restore.
    pub in_flight: Vec<InFlightBatch>,
    /// Taking a checkpoint: the local RocksDB checkpoint the coordinator uploads
    /// incrementally (never part of the state file).
    #[serde(skip)]
    pub incremental: Option<LocalIncrementalSnapshot>,
    /// Restoring: the incremental RocksDB handles overlapping this subtask's key groups.
    #[serde(skip)]
    pub incremental_restore: Option<IncrementalRestore>,
    /// Taking a checkpoint: the `hashmap` backend's keyed state, frozen copy-on-write on the
    /// task thread and serialized into `keyed` by the coordinator ([`Self::resolved`]).
    #[serde(skip)]
    pub deferred_keyed: Option<DeferredKeyed>,
}

impl From<KeyedSnapshot> for OperatorSubtaskState {
    fn from(s: KeyedSnapshot) -> Self {
        OperatorSubtaskState {
            keyed: s.keyed,
            incremental: s.incremental,
            deferred_keyed: s.deferred_keyed,
            ..Default::default()
        }
    }
}

/// One batch of in-flight records of an unaligned checkpoint, in channel order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InFlightBatch {
    /// The operator input (0, or 1 for the second input of a two-input operator).
    pub input: u32,
    /// The subtask that read it (its share is redistributed when the parallelism changes).
    pub owner: u32,
    /// The encoded batch.
    pub data: Vec<u8>,
}

impl OperatorSubtaskState {
    /// True when there is nothing to store.
    pub fn is_empty(&self) -> bool {
        self.incremental.is_none() && self.deferred_keyed.is_none() && self.canonical_is_empty()
    }

    /// This state with deferred keyed state serialized and merged (key groups in order, the
    /// timers already in `keyed` kept).
    pub fn resolved(&self) -> Result<std::borrow::Cow<'_, Self>> {
        let Some(deferred) = &self.deferred_keyed else {
            return Ok(std::borrow::Cow::Borrowed(self));
        };
        let mut merged: BTreeMap<u32, KeyGroupSnapshot> = self
            .keyed
            .iter()
            .map(|g| (g.key_group, g.clone()))
            .collect();
        for g in deferred.produce()? {
            if g.states.is_empty() {
                continue;
            }
            merged
                .entry(g.key_group)
                .or_insert_with(|| KeyGroupSnapshot {
                    key_group: g.key_group,
                    ..Default::default()
                })
                .states = g.states;
        }
        Ok(std::borrow::Cow::Owned(OperatorSubtaskState {
            keyed: merged.into_values().collect(),
            list: self.list.clone(),
            list_union: Vec::new(),
            in_flight: self.in_flight.clone(),
            incremental: self.incremental.clone(),
            incremental_restore: None,
            deferred_keyed: None,
        }))
    }

    /// The keyed part, as a keyed store restores it.
    pub(crate) fn keyed_restore(&self) -> KeyedRestore<'_> {
        KeyedRestore {
            keyed: &self.keyed,
            incremental: self.incremental_restore.as_ref(),
        }
    }

    /// True when the canonical part (the state file) would hold nothing.
    pub fn canonical_is_empty(&self) -> bool {
        self.list.is_empty()
            && self.in_flight.is_empty()
            && self.keyed.iter().all(|g| {
                g.states.is_empty() && g.event_timers.is_empty() && g.processing_timers.is_empty()
            })
    }
}

/// State files written before they carried a [`StateBinding`] (read, never written).
const STATE_MAGIC_V1: &[u8; 8] = b"WEIRST01";
/// State files that say which operator, subtask and checkpoint they belong to.
const STATE_MAGIC: &[u8; 8] = b"WEIRST02";
/// Identifies the `_metadata` format: v2 lists state files that carry their binding.
pub const METADATA_FORMAT: &str = "weir-checkpoint-v2";
/// `_metadata` of checkpoints whose state files carry no binding (still restored).
const METADATA_FORMAT_V1: &str = "weir-checkpoint-v1";

fn checksum(bytes: &[u8]) -> u64 {
    crate::keygroup::hash_key_bytes(bytes)
}

/// What a state file says it is. `_metadata` lists a file under an operator and a subtask of
/// one checkpoint; a restore checks the file's own binding against that place, so another
/// operator's file, a stale file of an older checkpoint or one of another job is refused
/// naming the file, instead of restoring the wrong state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateBinding {
    /// The job that wrote it.
    pub job_id: String,
    /// The checkpoint or savepoint it belongs to.
    pub checkpoint_id: u64,
    /// The operator's uid.
    pub uid: String,
    /// The subtask's index at checkpoint time.
    pub subtask: u32,
}

impl std::fmt::Display for StateBinding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "operator '{}' subtask {} of checkpoint {} of job {}",
            self.uid, self.subtask, self.checkpoint_id, self.job_id
        )
    }
}

/// Encodes a subtask's state file: magic, postcard body (its binding, then its state),
/// checksum of the body.
pub fn encode_state(binding: &StateBinding, state: &OperatorSubtaskState) -> Result<Vec<u8>> {
    let encode_err = |e: postcard::Error| Error::State {
        state: "checkpoint".into(),
        reason: e.to_string(),
    };
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(STATE_MAGIC);
    let out = postcard::to_extend(binding, out).map_err(encode_err)?;
    let mut out = postcard::to_extend(state, out).map_err(encode_err)?;
    let sum = checksum(&out[STATE_MAGIC.len()..]);
    out.extend_from_slice(&sum.to_le_bytes());
    Ok(out)
}

/// Decodes a state file, rejecting anything truncated or corrupted; returns its binding
/// (`None` for a file of the format before bindings) with its state. Restores use
/// [`decode_state`], which also checks the binding.
pub fn decode_state_file(
    path: &str,
    bytes: &[u8],
) -> Result<(Option<StateBinding>, OperatorSubtaskState)> {
    let bad = |why: &str| {
        Error::Restore(format!(
            "state file {path} is {why}; the checkpoint cannot be used"
        ))
    };
    let v1 = bytes.get(..8) == Some(STATE_MAGIC_V1.as_slice());
    if bytes.len() < 16 || !(v1 || &bytes[..8] == STATE_MAGIC) {
        return Err(bad("not a Weir state file or truncated"));
    }
    let body = &bytes[8..bytes.len() - 8];
    let sum = u64::from_le_bytes(bytes[bytes.len() - 8..].try_into().expect("8 bytes"));
    if checksum(body) != sum {
        return Err(bad("corrupt (checksum mismatch)"));
    }
    let undecodable = |e: postcard::Error| bad(&format!("undecodable ({e})"));
    if v1 {
        return Ok((None, postcard::from_bytes(body).map_err(undecodable)?));
    }
    let (binding, rest) = postcard::take_from_bytes(body).map_err(undecodable)?;
    Ok((
        Some(binding),
        postcard::from_bytes(rest).map_err(undecodable)?,
    ))
}

/// Decodes the state file `_metadata` lists at `expected` (`None`: a checkpoint of the format
/// before bindings), refusing a file that belongs elsewhere.
pub fn decode_state(
    path: &str,
    bytes: &[u8],
    expected: Option<&StateBinding>,
) -> Result<OperatorSubtaskState> {
    let (binding, state) = decode_state_file(path, bytes)?;
    match (binding, expected) {
        (Some(b), Some(e)) if b == *e => Ok(state),
        (None, None) => Ok(state),
        (Some(b), Some(e)) => Err(Error::Restore(format!(
            "state file {path} holds the state of {b}, but _metadata lists it for {e}: the \
             checkpoint directory was changed by hand or mixed up; restore from an intact copy"
        ))),
        (None, Some(e)) => Err(Error::Restore(format!(
            "state file {path} was written by an older Weir (no binding), but _metadata lists it \
             for {e}: it is not part of this checkpoint"
        ))),
        (Some(b), None) => Err(Error::Restore(format!(
            "state file {path} holds the state of {b}, but the checkpoint's _metadata is of the \
             older format: it is not part of this checkpoint"
        ))),
    }
}

/// One operator in a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorMetadata {
    /// The operator's uid (explicit, or derived from its position and name).
    pub uid: String,
    /// Its name, for messages.
    pub name: String,
    /// Parallelism at checkpoint time.
    pub parallelism: usize,
    /// State file of each subtask relative to the checkpoint directory (`None`: no state).
    pub files: Vec<Option<String>>,
    /// Incremental RocksDB handle of each subtask (empty: none; else one per subtask).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub incremental: Vec<Option<IncrementalHandle>>,
}

/// The `_metadata` file of a checkpoint or savepoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointMetadata {
    /// Always [`METADATA_FORMAT`].
    pub format: String,
    /// The job that wrote it.
    pub job_id: String,
    /// Checkpoint number.
    pub checkpoint_id: u64,
    /// True for savepoints.
    pub savepoint: bool,
    /// `pipeline.max-parallelism` of the job (key groups); must match on restore.
    pub max_parallelism: usize,
    /// When it was taken (epoch ms).
    pub timestamp: i64,
    /// Every stateful operator.
    pub operators: Vec<OperatorMetadata>,
}

impl CheckpointMetadata {
    /// Whether its state files carry a [`StateBinding`] to check (every checkpoint since
    /// the v2 format).
    pub fn binds_files(&self) -> bool {
        self.format != METADATA_FORMAT_V1
    }

    /// Parses and validates a `_metadata` file.
    pub fn decode(path: &str, bytes: &[u8]) -> Result<Self> {
        let m: CheckpointMetadata = serde_json::from_slice(bytes).map_err(|e| {
            Error::Restore(format!(
                "{path} is not a valid checkpoint metadata file (truncated or corrupt: {e})"
            ))
        })?;
        if m.format != METADATA_FORMAT && m.format != METADATA_FORMAT_V1 {
            return Err(Error::Restore(format!(
                "{path} has format '{}', expected '{METADATA_FORMAT}'",
                m.format
            )));
        }
        let mut listed = std::collections::HashSet::new();
        for file in m.operators.iter().flat_map(|op| op.files.iter().flatten()) {
            if !listed.insert(file) {
                return Err(Error::Restore(format!(
                    "{path} is inconsistent: it lists state file '{file}' more than once"
                )));
            }
        }
        for op in &m.operators {
            if op.files.len() != op.parallelism {
                return Err(Error::Restore(format!(
                    "{path} is inconsistent: operator '{}' has parallelism {} but {} state files",
                    op.uid,
                    op.parallelism,
                    op.files.len()
                )));
            }
            if !op.incremental.is_empty() && op.incremental.len() != op.parallelism {
                return Err(Error::Restore(format!(
                    "{path} is inconsistent: operator '{}' has parallelism {} but {} incremental handles",
                    op.uid,
                    op.parallelism,
                    op.incremental.len()
                )));
            }
        }
        Ok(m)
    }
}

/// A checkpoint loaded for restoring: every operator's state merged across its old subtasks.
#[derive(Debug)]
pub struct RestorePlan {
    /// Where it came from (for messages and metrics).
    pub path: String,
    /// Its metadata.
    pub metadata: CheckpointMetadata,
    operators: BTreeMap<String, OperatorSubtaskState>,
    /// Incremental handles per operator uid.
    handles: BTreeMap<String, Vec<IncrementalHandle>>,
    /// The job directory's store (where `shared/` is), when there are handles.
    job_store: Option<Arc<dyn ObjectStore>>,
}

impl RestorePlan {
    /// Opens the checkpoint or savepoint at `uri` (`file:///dir`, `/dir` or `s3://...`) and
    /// loads it; incremental RocksDB files are read from its parent (the job directory).
    pub fn open(uri: &str, storage: &StorageOptions) -> Result<Self> {
        let store = weir_storage::open(uri, storage).map_err(|e| {
            Error::Restore(format!(
                "cannot open '{uri}' ({}): {}",
                weir_contract::options::SAVEPOINT_PATH.key,
                crate::error::report(&e)
            ))
        })?;
        let mut plan = RestorePlan::load(&*store, "")?;
        plan.path = uri.to_string();
        if plan.handles.values().any(|h| !h.is_empty()) {
            let trimmed = uri.trim_end_matches('/');
            let parent = trimmed
                .rsplit_once('/')
                .map(|(p, _)| p)
                .filter(|p| !p.is_empty() && !p.ends_with(':') && !p.ends_with("//"))
                .ok_or_else(|| {
                    Error::Restore(format!(
                        "'{uri}' holds incremental RocksDB state, whose shared files live in its \
                         parent directory, but it has no parent; restore from <dir>/<job-id>/chk-<n>"
                    ))
                })?;
            plan.job_store = Some(weir_storage::open(parent, storage).map_err(|e| {
                Error::Restore(format!(
                    "cannot open '{parent}': {}",
                    crate::error::report(&e)
                ))
            })?);
        }
        Ok(plan)
    }

    /// Reads `_metadata` and every state file of the checkpoint at `dir` in `store`.
    pub fn load(store: &dyn ObjectStore, dir: &str) -> Result<Self> {
        let join = |name: &str| match dir.trim_end_matches('/') {
            "" => name.to_string(),
            d => format!("{d}/{name}"),
        };
        let meta_path = join("_metadata");
        let bytes = store.get(&meta_path).map_err(|e| {
            Error::Restore(format!(
                "cannot read {meta_path}: {}",
                crate::error::report(&e)
            ))
        })?;
        let metadata = CheckpointMetadata::decode(&meta_path, &bytes)?;
        let mut operators = BTreeMap::new();
        let mut handles = BTreeMap::new();
        for op in &metadata.operators {
            handles.insert(
                op.uid.clone(),
                op.incremental.iter().flatten().cloned().collect::<Vec<_>>(),
            );
            let mut merged = OperatorSubtaskState::default();
            for (subtask, f) in op.files.iter().enumerate() {
                let Some(f) = f else { continue };
                let p = join(f);
                let bytes = store.get(&p).map_err(|e| {
                    Error::Restore(format!(
                        "cannot read state file {p}: {}",
                        crate::error::report(&e)
                    ))
                })?;
                let expected = metadata.binds_files().then(|| StateBinding {
                    job_id: metadata.job_id.clone(),
                    checkpoint_id: metadata.checkpoint_id,
                    uid: op.uid.clone(),
                    subtask: subtask as u32,
                });
                let s = decode_state(&p, &bytes, expected.as_ref())?;
                merged.keyed.extend(s.keyed);
                merged.list.extend(s.list);
                merged.in_flight.extend(s.in_flight);
            }
            operators.insert(op.uid.clone(), merged);
        }
        Ok(RestorePlan {
            path: dir.to_string(),
            metadata,
            operators,
            handles,
            job_store: None,
        })
    }

    /// Checks the plan against the job's operators: max parallelism must match, and state
    /// of operators the job no longer has is an error unless `allow_non_restored`. The rules
    /// are [`RestorePlan::job_findings`], which `weir check` reports too.
    pub fn validate(
        &self,
        uids: &[String],
        max_parallelism: usize,
        allow_non_restored: bool,
    ) -> Result<()> {
        let findings = self.job_findings(uids, max_parallelism, allow_non_restored);
        if let Some(f @ Finding::MaxParallelism { .. }) = findings.first() {
            return Err(Error::Restore(format!("{}: {f}", self.path)));
        }
        let mut removed: Vec<&str> = findings
            .iter()
            .filter(|f| f.refuses())
            .filter_map(Finding::uid)
            .collect();
        removed.sort_unstable();
        if !removed.is_empty() {
            return Err(Error::Restore(format!(
                "{} holds state for operators the job does not have: {}; give them the same uid, or set \
                 {}: true to drop that state",
                self.path,
                removed.join(", "),
                weir_contract::options::SAVEPOINT_IGNORE_UNCLAIMED_STATE.key
            )));
        }
        Ok(())
    }

    /// The share of operator `uid`'s state that subtask `index` of `parallelism` restores.
    pub fn for_subtask(
        &self,
        uid: &str,
        index: usize,
        parallelism: usize,
        max_parallelism: usize,
    ) -> Option<Arc<OperatorSubtaskState>> {
        let all = self.operators.get(uid)?;
        let range = KeyGroupRange::for_subtask(index, parallelism, max_parallelism);
        Some(Arc::new(OperatorSubtaskState {
            keyed: all
                .keyed
                .iter()
                .filter(|g| range.contains(g.key_group as usize))
                .cloned()
                .collect(),
            list: all
                .list
                .iter()
                .enumerate()
                .filter(|(i, _)| i % parallelism == index)
                .map(|(_, e)| e.clone())
                .collect(),
            list_union: all.list.clone(),
            // Every subtask sees all of it: only the task knows how its inputs are
            // partitioned, so it picks its share (see `graph::restored_in_flight`).
            in_flight: all.in_flight.clone(),
            incremental: None,
            incremental_restore: self.job_store.as_ref().map(|store| IncrementalRestore {
                store: store.clone(),
                handles: self
                    .handles
                    .get(uid)
                    .into_iter()
                    .flatten()
                    .filter(|h| h.key_groups.start < range.end && range.start < h.key_groups.end)
                    .cloned()
                    .collect(),
            }),
            deferred_keyed: None,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{SnapshotEntry, StateSnapshot};

    fn group(kg: u32, key: &[u8]) -> KeyGroupSnapshot {
        KeyGroupSnapshot {
            key_group: kg,
            states: vec![StateSnapshot {
                name: "s".into(),
                entries: vec![SnapshotEntry {
                    key: key.to_vec(),
                    value: vec![1],
                    stamp: 0,
                }],
            }],
            ..Default::default()
        }
    }

    #[test]
    fn state_files_round_trip_and_reject_truncation_and_corruption() {
        let s = OperatorSubtaskState {
            keyed: vec![group(3, b"k")],
            list: vec![b"split".to_vec()],
            ..Default::default()
        };
        let b = binding("op", 0, 1);
        let bytes = encode_state(&b, &s).unwrap();
        assert_eq!(decode_state("f", &bytes, Some(&b)).unwrap(), s);
        let err = decode_state("f", &bytes[..bytes.len() - 3], Some(&b))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("corrupt") || err.contains("truncated"),
            "{err}"
        );
        let mut flipped = bytes.clone();
        flipped[10] ^= 0xff;
        assert!(
            decode_state("f", &flipped, Some(&b))
                .unwrap_err()
                .to_string()
                .contains("checksum mismatch")
        );
    }

    #[test]
    fn truncated_metadata_is_rejected_with_the_path() {
        let m = CheckpointMetadata {
            format: METADATA_FORMAT.into(),
            job_id: "j".into(),
            checkpoint_id: 1,
            savepoint: false,
            max_parallelism: 128,
            timestamp: 0,
            operators: vec![],
        };
        let bytes = serde_json::to_vec(&m).unwrap();
        assert_eq!(
            CheckpointMetadata::decode("x/_metadata", &bytes).unwrap(),
            m
        );
        let err = CheckpointMetadata::decode("x/_metadata", &bytes[..bytes.len() / 2])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("x/_metadata is not a valid checkpoint metadata file"),
            "{err}"
        );
    }

    #[test]
    fn restore_plan_hands_each_subtask_its_key_groups_and_a_share_of_list_state() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path());
        // Old parallelism 2 over 8 key groups: subtask 0 owns 0..4, subtask 1 owns 4..8.
        let s0 = OperatorSubtaskState {
            keyed: vec![group(1, b"a"), group(3, b"b")],
            list: vec![b"x".to_vec()],
            ..Default::default()
        };
        let s1 = OperatorSubtaskState {
            keyed: vec![group(5, b"c"), group(7, b"d")],
            list: vec![b"y".to_vec(), b"z".to_vec()],
            ..Default::default()
        };
        store
            .put(
                "chk-1/op-0",
                encode_state(&binding("op", 0, 1), &s0).unwrap().into(),
            )
            .unwrap();
        store
            .put(
                "chk-1/op-1",
                encode_state(&binding("op", 1, 1), &s1).unwrap().into(),
            )
            .unwrap();
        let meta = CheckpointMetadata {
            format: METADATA_FORMAT.into(),
            job_id: "j".into(),
            checkpoint_id: 1,
            savepoint: false,
            max_parallelism: 8,
            timestamp: 0,
            operators: vec![OperatorMetadata {
                uid: "op".into(),
                name: "op".into(),
                parallelism: 2,
                files: vec![Some("op-0".into()), Some("op-1".into())],
                incremental: vec![],
            }],
        };
        store
            .put("chk-1/_metadata", serde_json::to_vec(&meta).unwrap().into())
            .unwrap();
        let plan = RestorePlan::load(&store, "chk-1").unwrap();
        plan.validate(&["op".into()], 8, false).unwrap();
        // New parallelism 3 over 8 key groups: 0..3, 3..6, 6..8.
        let kgs = |i| {
            plan.for_subtask("op", i, 3, 8)
                .unwrap()
                .keyed
                .iter()
                .map(|g| g.key_group)
                .collect::<Vec<_>>()
        };
        assert_eq!((kgs(0), kgs(1), kgs(2)), (vec![1], vec![3, 5], vec![7]));
        let lists: Vec<usize> = (0..3)
            .map(|i| plan.for_subtask("op", i, 3, 8).unwrap().list.len())
            .collect();
        assert_eq!(lists, vec![1, 1, 1]);
        // Union list state: every subtask sees every element.
        for i in 0..3 {
            let mut all = plan.for_subtask("op", i, 3, 8).unwrap().list_union.clone();
            all.sort();
            assert_eq!(all, vec![b"x".to_vec(), b"y".to_vec(), b"z".to_vec()]);
        }
        let err = plan
            .validate(&["other".into()], 8, false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("operators the job does not have: op"), "{err}");
        assert!(plan.validate(&["other".into()], 8, true).is_ok());
        assert!(
            plan.validate(&["op".into()], 16, false)
                .unwrap_err()
                .to_string()
                .contains("max-parallelism 8")
        );
    }

    fn binding(uid: &str, subtask: u32, checkpoint_id: u64) -> StateBinding {
        StateBinding {
            job_id: "j".into(),
            checkpoint_id,
            uid: uid.into(),
            subtask,
        }
    }

    /// Writes a checkpoint `chk-<id>` of operators `a` and `b` (parallelism 2 each) and
    /// returns its metadata.
    fn write_checkpoint(store: &FileStore, id: u64) -> CheckpointMetadata {
        let mut operators = Vec::new();
        for uid in ["a", "b"] {
            let mut files = Vec::new();
            for subtask in 0..2u32 {
                let state = OperatorSubtaskState {
                    list: vec![format!("{uid}{subtask}@{id}").into_bytes()],
                    ..Default::default()
                };
                let name = format!("{uid}-{subtask}");
                let bytes = encode_state(&binding(uid, subtask, id), &state).unwrap();
                store
                    .put(&format!("chk-{id}/{name}"), bytes.into())
                    .unwrap();
                files.push(Some(name));
            }
            operators.push(OperatorMetadata {
                uid: uid.into(),
                name: uid.into(),
                parallelism: 2,
                files,
                incremental: vec![],
            });
        }
        let meta = CheckpointMetadata {
            format: METADATA_FORMAT.into(),
            job_id: "j".into(),
            checkpoint_id: id,
            savepoint: false,
            max_parallelism: 8,
            timestamp: 0,
            operators,
        };
        store
            .put(
                &format!("chk-{id}/_metadata"),
                serde_json::to_vec(&meta).unwrap().into(),
            )
            .unwrap();
        meta
    }

    fn load_error(store: &FileStore, dir: &str) -> String {
        crate::error::report(&RestorePlan::load(store, dir).unwrap_err())
    }

    #[test]
    fn a_state_file_placed_where_it_does_not_belong_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path());
        write_checkpoint(&store, 1);
        let meta = write_checkpoint(&store, 2);
        assert!(RestorePlan::load(&store, "chk-2").is_ok());
        let copy = |from: &str, to: &str| {
            let bytes = store.get(from).unwrap();
            store.put(to, bytes).unwrap();
        };

        // Another operator's file under this operator's name.
        copy("chk-2/b-0", "chk-2/a-0");
        let err = load_error(&store, "chk-2");
        assert!(
            err.contains("state file chk-2/a-0 holds the state of operator 'b' subtask 0")
                && err.contains("lists it for operator 'a' subtask 0 of checkpoint 2"),
            "{err}"
        );
        write_checkpoint(&store, 2);

        // Another subtask's file of the same operator.
        copy("chk-2/a-1", "chk-2/a-0");
        let err = load_error(&store, "chk-2");
        assert!(
            err.contains("holds the state of operator 'a' subtask 1"),
            "{err}"
        );
        write_checkpoint(&store, 2);

        // A stale file of an older checkpoint.
        copy("chk-1/a-1", "chk-2/a-1");
        let err = load_error(&store, "chk-2");
        assert!(
            err.contains(
                "state file chk-2/a-1 holds the state of operator 'a' subtask 1 of checkpoint 1"
            ),
            "{err}"
        );
        write_checkpoint(&store, 2);

        // `_metadata` naming one file twice.
        let mut twice = meta.clone();
        twice.operators[1].files[0] = Some("a-0".into());
        store
            .put(
                "chk-2/_metadata",
                serde_json::to_vec(&twice).unwrap().into(),
            )
            .unwrap();
        let err = load_error(&store, "chk-2");
        assert!(
            err.contains("lists state file 'a-0' more than once"),
            "{err}"
        );
    }

    #[test]
    fn checkpoints_of_the_format_before_bindings_still_restore() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path());
        let state = OperatorSubtaskState {
            list: vec![b"split".to_vec()],
            ..Default::default()
        };
        // A v1 state file: magic, postcard body, checksum of the body.
        let body = postcard::to_allocvec(&state).unwrap();
        let mut v1 = STATE_MAGIC_V1.to_vec();
        v1.extend_from_slice(&body);
        v1.extend_from_slice(&checksum(&body).to_le_bytes());
        store.put("chk-1/op-0", v1.clone().into()).unwrap();
        let meta = CheckpointMetadata {
            format: METADATA_FORMAT_V1.into(),
            job_id: "j".into(),
            checkpoint_id: 1,
            savepoint: false,
            max_parallelism: 8,
            timestamp: 0,
            operators: vec![OperatorMetadata {
                uid: "op".into(),
                name: "op".into(),
                parallelism: 1,
                files: vec![Some("op-0".into())],
                incremental: vec![],
            }],
        };
        store
            .put("chk-1/_metadata", serde_json::to_vec(&meta).unwrap().into())
            .unwrap();
        let plan = RestorePlan::load(&store, "chk-1").unwrap();
        assert_eq!(plan.for_subtask("op", 0, 1, 8).unwrap().list, state.list);
        // A v1 file listed by v2 metadata is not part of that checkpoint.
        write_checkpoint(&store, 2);
        store.put("chk-2/a-0", v1.into()).unwrap();
        let err = load_error(&store, "chk-2");
        assert!(
            err.contains("state file chk-2/a-0 was written by an older Weir"),
            "{err}"
        );
    }
}
