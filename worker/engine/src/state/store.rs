//! What one keyed operator subtask owns and checkpoints: its backend and timers
//! ([`KeyedStore`]), what it contributes to a snapshot and restores from.

use super::{
    IncrementalRestore, KeyGroupSnapshot, KeyedStateBackend, LocalIncrementalSnapshot, RocksMemory,
    schema_tag,
};
use crate::error::{Error, Result};
use crate::keygroup::KeyGroupRange;
use std::sync::Arc;

/// Produces keyed state off the task thread: serializes a frozen (copy-on-write) view.
type KeyedProducer = Box<dyn FnOnce() -> Result<Vec<KeyGroupSnapshot>> + Send>;

/// Keyed state whose serialization was deferred to the coordinator (runs once).
#[derive(Clone)]
pub struct DeferredKeyed(Arc<std::sync::Mutex<Option<KeyedProducer>>>);

impl DeferredKeyed {
    /// Wraps the producer.
    pub fn new(f: impl FnOnce() -> Result<Vec<KeyGroupSnapshot>> + Send + 'static) -> Self {
        DeferredKeyed(Arc::new(std::sync::Mutex::new(Some(Box::new(f)))))
    }

    /// Runs the producer; it runs once, so a second call is an error.
    pub fn produce(&self) -> Result<Vec<KeyGroupSnapshot>> {
        let produce = self
            .0
            .lock()
            .expect("not poisoned")
            .take()
            .ok_or_else(|| Error::User("deferred keyed state was already serialized".into()))?;
        produce()
    }
}

impl std::fmt::Debug for DeferredKeyed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeferredKeyed")
    }
}

impl PartialEq for DeferredKeyed {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for DeferredKeyed {}

/// Who a [`KeyedStore`] belongs to: the subtask (its key groups), the operator (its uid
/// names the RocksDB directory and restore errors) and the backend it runs on.
pub(crate) struct StoreOwner<'a> {
    pub(crate) name: &'a str,
    pub(crate) uid: &'a str,
    pub(crate) index: usize,
    pub(crate) parallelism: usize,
    pub(crate) max_parallelism: usize,
    pub(crate) state_schema: Option<String>,
    pub(crate) backend: &'a crate::config::StateBackendConfig,
    pub(crate) rocksdb_memory: RocksMemory,
    pub(crate) allow_unclaimed_state: bool,
}

/// What a [`KeyedStore`] contributes to a snapshot; the checkpoint layer files it into the
/// subtask's state.
pub(crate) struct KeyedSnapshot {
    /// Canonical key groups: state (unless deferred or incremental) and timers.
    pub(crate) keyed: Vec<KeyGroupSnapshot>,
    /// rocksdb with incremental checkpoints: the local checkpoint to upload.
    pub(crate) incremental: Option<LocalIncrementalSnapshot>,
    /// hashmap: the state frozen copy-on-write, serialized by the coordinator.
    pub(crate) deferred_keyed: Option<DeferredKeyed>,
}

/// What a [`KeyedStore`] restores from: the canonical key groups narrowed to its subtask,
/// and the incremental RocksDB handles overlapping them.
#[derive(Clone, Copy)]
pub(crate) struct KeyedRestore<'a> {
    pub(crate) keyed: &'a [KeyGroupSnapshot],
    pub(crate) incremental: Option<&'a IncrementalRestore>,
}

/// Everything keyed that one operator subtask owns and checkpoints: its state backend and
/// its event-time and processing-time timers.
pub(crate) struct KeyedStore {
    pub(crate) backend: KeyedStateBackend,
    pub(crate) event_timers: crate::timers::TimerQueue,
    /// Event-time timers unique by construction, fired a time at a time (sliced windows).
    /// Snapshotted with `event_timers`; restored timers all go to `event_timers`.
    pub(crate) event_timer_batches: crate::timers::TimerBatches,
    pub(crate) processing_timers: crate::timers::TimerQueue,
    /// `state.backend.incremental` (rocksdb only).
    incremental: bool,
    /// The operator's uid and name, for restore errors.
    uid: String,
    name: String,
    /// `execution.savepoint.ignore-unclaimed-state`.
    allow_unclaimed_state: bool,
    /// RocksDB properties reported as gauges (`state.backend.rocksdb.metrics.*`).
    rocksdb_metrics: Vec<String>,
}

impl KeyedStore {
    /// An empty store for the key groups of subtask `owner.index`, on the configured backend.
    pub(crate) fn new(owner: StoreOwner<'_>) -> Self {
        let range =
            KeyGroupRange::for_subtask(owner.index, owner.parallelism, owner.max_parallelism);
        let cfg = owner.backend;
        let mut backend = match cfg.kind {
            crate::config::StateBackendKind::HashMap => {
                KeyedStateBackend::new(range, owner.max_parallelism)
            }
            crate::config::StateBackendKind::RocksDb => KeyedStateBackend::new_rocksdb(
                range,
                owner.max_parallelism,
                &cfg.local_dir,
                owner.uid,
                owner.index,
                owner.rocksdb_memory,
                cfg.write_cache_entries,
            ),
        };
        backend.set_schema(owner.state_schema);
        KeyedStore {
            backend,
            event_timers: Default::default(),
            event_timer_batches: Default::default(),
            processing_timers: Default::default(),
            incremental: cfg.incremental,
            uid: owner.uid.to_string(),
            name: owner.name.to_string(),
            allow_unclaimed_state: owner.allow_unclaimed_state,
            rocksdb_metrics: cfg.rocksdb_metrics.clone(),
        }
    }

    /// The RocksDB properties switched on by `state.backend.rocksdb.metrics.*`, named like
    /// them (Flink's names), with their values; none on `hashmap` or before the database is
    /// open. (Operators report them as gauges: the runtime's type, a layer up.)
    pub(crate) fn rocksdb_properties(&self) -> Vec<(String, f64)> {
        self.rocksdb_metrics
            .iter()
            .filter_map(|name| Some((name.clone(), self.backend.rocks_property(name)? as f64)))
            .collect()
    }

    /// State entries plus timers (the state-size metric; estimated for rocksdb).
    pub(crate) fn entries(&self) -> usize {
        self.backend.entries()
            + self.event_timers.len()
            + self.event_timer_batches.len()
            + self.processing_timers.len()
    }

    /// Snapshots state and timers for checkpoint `id`: canonical key groups, except that the
    /// rocksdb backend with incremental checkpoints (and no savepoint, which is always
    /// canonical) contributes a local RocksDB checkpoint the coordinator uploads, and only
    /// timers canonically.
    pub(crate) fn snapshot(&mut self, id: u64, savepoint: bool) -> Result<KeyedSnapshot> {
        let range = self.backend.range;
        let mut incremental = None;
        let mut deferred_keyed = None;
        let empty_groups = || -> Vec<KeyGroupSnapshot> {
            (range.start..range.end)
                .map(|kg| KeyGroupSnapshot {
                    key_group: kg as u32,
                    ..Default::default()
                })
                .collect()
        };
        let rocksdb = self.backend.is_rocksdb();
        let mut groups = if rocksdb && self.incremental && !savepoint {
            let names = self.backend.all_state_names();
            let db = self.backend.rocks()?.expect("the rocksdb backend");
            incremental = Some(db.checkpoint(id, names)?);
            empty_groups()
        } else if rocksdb {
            self.backend.snapshot()?
        } else {
            // hashmap: freeze copy-on-write here; the coordinator serializes.
            deferred_keyed = self.backend.snapshot_deferred();
            empty_groups()
        };
        let start = range.start;
        for (kg, timers) in self
            .event_timers
            .for_key_group(self.backend.max_parallelism)
        {
            groups[kg - start].event_timers = timers;
        }
        for (kg, timers) in self
            .event_timer_batches
            .for_key_group(self.backend.max_parallelism)
        {
            let g = &mut groups[kg - start].event_timers;
            g.extend(timers);
            g.sort();
        }
        for (kg, timers) in self
            .processing_timers
            .for_key_group(self.backend.max_parallelism)
        {
            groups[kg - start].processing_timers = timers;
        }
        groups.retain(|g| {
            !g.states.is_empty() || !g.event_timers.is_empty() || !g.processing_timers.is_empty()
        });
        Ok(KeyedSnapshot {
            keyed: groups,
            incremental,
            deferred_keyed,
        })
    }

    /// Restores state and timers (key groups outside the range are ignored), then reports the
    /// first error met applying state to states registered before the restore. The rocksdb
    /// backend opens its database here: from an incremental checkpoint's files when they
    /// cover exactly this range, else by copying the overlapping key groups.
    pub(crate) fn restore(&mut self, restored: Option<KeyedRestore<'_>>) -> Result<()> {
        let handles = restored.as_ref().and_then(|s| s.incremental);
        match self.backend.rocks()? {
            Some(rocks) => rocks.open(handles)?,
            None if handles.is_some_and(|h| !h.handles.is_empty()) => {
                return Err(Error::Restore(
                    "this checkpoint holds incremental RocksDB state; restore it with \
                     state.backend.type: rocksdb, or take a savepoint (always canonical) to \
                     switch backends"
                        .into(),
                ));
            }
            None => {}
        }
        if let Some(state) = restored {
            self.backend.restore(state.keyed)?;
            for g in state
                .keyed
                .iter()
                .filter(|g| self.backend.range.contains(g.key_group as usize))
            {
                for (ts, k, ns) in &g.event_timers {
                    self.event_timers.register(*ts, k, ns);
                }
                for (ts, k, ns) in &g.processing_timers {
                    self.processing_timers.register(*ts, k, ns);
                }
            }
        }
        if let Some(e) = self.backend.take_restore_error() {
            return Err(e);
        }
        // States are registered before the restore (in `open()` or the operator's
        // constructor): what none of them claimed would be lost silently.
        let unclaimed = self.backend.unclaimed_states();
        if !unclaimed.is_empty() && !self.allow_unclaimed_state {
            let mut now = match self.backend.state_names() {
                [] => String::new(),
                names => format!(
                    " (it has {})",
                    names
                        .iter()
                        .map(|n| format!("'{n}'"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            if let Some(schema) = &self.backend.schema {
                now.push_str(&format!(
                    "; its state schema {} is {schema}, the checkpoint's was another",
                    schema_tag(schema)
                ));
            }
            return Err(Error::Restore(format!(
                "operator '{}' (uid {}) has no state named {} that the checkpoint holds for it{now}; \
                 its state layout changed since the checkpoint was taken (for SQL, a different \
                 Weir version or query). Restore from a checkpoint of the same job version; or \
                 end that job with a draining stop (`weir stop --drain`), which leaves no window \
                 or join state behind; or give the operator a new uid, or set \
                 execution.savepoint.ignore-unclaimed-state: true to drop that state",
                self.name,
                self.uid,
                unclaimed
                    .iter()
                    .map(|n| format!("'{n}'"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        Ok(())
    }
}
