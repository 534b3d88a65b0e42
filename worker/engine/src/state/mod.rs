//! Keyed state: the backend that stores it per key group, and the typed handles user
//! functions use (`ValueState`, `ListState`, `MapState`, `ReducingState`) with optional TTL.
//!
//! Every entry is addressed by (state, key group, serialized key ++ namespace). The
//! namespace is empty for plain keyed state and holds the window for window state. Two
//! backends sit behind the same typed API (`state.backend.type`):
//!
//! - `hashmap`: values are kept as typed Rust values in memory ([`heap`](self::heap));
//!   serialization happens only when a snapshot is taken, so the hot path never encodes
//!   values.
//! - `rocksdb`: values live postcard-encoded in a local RocksDB instance per operator subtask
//!   ([`rocksdb`](self::rocksdb)), checkpointed incrementally (only new SST files upload),
//!   behind a write-back cache of decoded values ([`cached`](self::cached)) so that an entry
//!   used again and again is read, decoded, encoded and written once per cache cycle.
//!
//! [`KeyedStateBackend`] holds what both share (the registered states, the key in scope, the
//! clock for TTL) and one `Store` per backend, an enum matched in each accessor, so that every
//! access is statically dispatched.
//!
//! Files: this one holds the backend and the snapshot format; `heap` and `rocksdb` the two
//! stores, `cached` the rocksdb store's typed cache; `handles` the typed handles; `store`
//! what one keyed operator subtask owns and checkpoints (`KeyedStore`: backend and timers).
//!
//! Timers stay on the heap with either backend (Flink's `HEAP` timer service) and are
//! checkpointed in the canonical format.

mod buffer;
mod cached;
mod handles;
mod heap;
mod local_dir;
pub(crate) mod rocksdb;
mod store;

pub(crate) use buffer::{RowKeyFn, TimeBuffer, TimeBufferState};
pub use handles::{KeyedStateAccess, ListState, MapState, ReducingState, ValueState};
pub use store::DeferredKeyed;
pub(crate) use store::{KeyedRestore, KeyedSnapshot, KeyedStore, StoreOwner};

pub use self::rocksdb::{
    IncrementalHandle, IncrementalRestore, LocalIncrementalSnapshot, RocksMemory, StateFile,
};

use crate::error::{Error, Result};
use crate::keygroup::{KeyGroupRange, key_group_for_bytes};
use crate::time::{Timestamp, duration_ms};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::time::Duration;

/// A value that can live in keyed state. Implemented for every type that qualifies.
/// `Sync` because a checkpoint shares the (copy-on-write) state with the thread that
/// serializes it.
pub trait StateValue: Clone + Serialize + DeserializeOwned + Send + Sync + 'static {}
impl<T> StateValue for T where T: Clone + Serialize + DeserializeOwned + Send + Sync + 'static {}

/// When a TTL'd entry's clock restarts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TtlUpdateType {
    /// Only creating or writing the entry restarts its lifetime (Flink's default).
    OnCreateAndWrite,
    /// Reading it restarts its lifetime too.
    OnReadAndWrite,
}

/// Time-to-live for keyed state, in processing time. Expired entries are never returned
/// and are removed when touched.
///
/// ```
/// use std::time::Duration;
/// use weir_engine::state::{StateTtlConfig, TtlUpdateType};
/// let ttl = StateTtlConfig::new(Duration::from_secs(3600)).update_type(TtlUpdateType::OnReadAndWrite);
/// # let _ = ttl;
/// ```
#[derive(Debug, Clone, Copy)]
pub struct StateTtlConfig {
    ttl_ms: i64,
    update: TtlUpdateType,
}

impl StateTtlConfig {
    /// Entries expire `ttl` after they were last written.
    pub fn new(ttl: Duration) -> Self {
        StateTtlConfig {
            ttl_ms: duration_ms(ttl),
            update: TtlUpdateType::OnCreateAndWrite,
        }
    }

    /// Chooses when the lifetime restarts.
    pub fn update_type(mut self, update: TtlUpdateType) -> Self {
        self.update = update;
        self
    }
}

/// Names a piece of keyed state and its options. The name identifies the state in
/// snapshots, so keep it stable across job versions.
#[derive(Debug, Clone)]
pub struct StateDescriptor {
    name: String,
    ttl: Option<StateTtlConfig>,
}

impl StateDescriptor {
    /// A descriptor for state called `name`.
    pub fn new(name: impl Into<String>) -> Self {
        StateDescriptor {
            name: name.into(),
            ttl: None,
        }
    }

    /// Enables time-to-live (`None`: none, for state whose TTL is optional, such as SQL's
    /// `table.exec.state.ttl`).
    pub fn with_ttl(mut self, ttl: impl Into<Option<StateTtlConfig>>) -> Self {
        self.ttl = ttl.into();
        self
    }
}

/// One state entry in a snapshot: serialized key and namespace, serialized value, and the
/// TTL time stamp.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct SnapshotEntry {
    /// Serialized key followed by the namespace bytes (the window, for window state).
    pub key: Vec<u8>,
    /// The value, postcard-encoded.
    pub value: Vec<u8>,
    /// Last write (or read, per TTL config) in processing time.
    pub stamp: Timestamp,
}

/// All entries of one named state in one key group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct StateSnapshot {
    /// The state's name (from its descriptor).
    pub name: String,
    /// Entries sorted by key.
    pub entries: Vec<SnapshotEntry>,
}

/// Everything keyed about one key group of one operator: its states and timers. This is the
/// unit that moves between subtasks when a job is restored at another parallelism.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct KeyGroupSnapshot {
    /// The key group.
    pub key_group: u32,
    /// Named states with entries in this key group.
    pub states: Vec<StateSnapshot>,
    /// Event-time timers `(time, key, namespace)` of keys in this key group.
    pub event_timers: Vec<(Timestamp, Vec<u8>, Vec<u8>)>,
    /// Processing-time timers of keys in this key group.
    pub processing_timers: Vec<(Timestamp, Vec<u8>, Vec<u8>)>,
}

/// The key whose state is currently in scope.
#[derive(Debug, Default, Clone)]
pub(crate) struct CurrentKey {
    pub(crate) bytes: Vec<u8>,
    pub(crate) key_group: usize,
}

/// The tag of a declared state schema that ends the names of the operator's states: ` @`
/// and 8 hex digits of its hash (short: RocksDB keys start with the state's name).
pub(crate) fn schema_tag(schema: &str) -> String {
    let hash = crate::keygroup::hash_key_bytes(schema.as_bytes()) >> 32;
    format!("@{hash:08x}")
}

/// The schema tag a checkpointed state's name ends with ([`state_name`]), if it has one.
pub(crate) fn schema_tag_of(name: &str) -> Option<&str> {
    let (_, tag) = name.rsplit_once(' ')?;
    let hex = tag.strip_prefix('@')?;
    (hex.len() == 8 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then_some(tag)
}

/// The name state `base` of an operator with the declared state `schema` has in
/// checkpoints: `base` followed by the schema's tag, if there is a schema. The backend names
/// registered states with it; operators that write their snapshots themselves call it too.
pub(crate) fn state_name(base: &str, schema: Option<&str>) -> String {
    match schema {
        Some(s) => format!("{base} {}", schema_tag(s)),
        None => base.to_string(),
    }
}

/// Adds the canonical entries of frozen buffers to `groups` (one per key group of `range`, in
/// order), each state's entries sorted by key.
fn add_buffers(
    range: KeyGroupRange,
    groups: &mut [KeyGroupSnapshot],
    frozen: &[Box<dyn buffer::FrozenBuffer>],
) -> Result<()> {
    for f in frozen {
        let mut per_group: Vec<Vec<SnapshotEntry>> = vec![Vec::new(); range.len()];
        for (kg, e) in f.serialize()? {
            per_group[kg - range.start].push(e);
        }
        for (g, entries) in groups.iter_mut().zip(per_group) {
            if entries.is_empty() {
                continue;
            }
            // The sides of a state share its name (and the key's first byte tells them apart).
            match g.states.iter_mut().find(|s| s.name == f.name()) {
                Some(s) => s.entries.extend(entries),
                None => g.states.push(StateSnapshot {
                    name: f.name().to_string(),
                    entries,
                }),
            }
        }
    }
    for g in groups.iter_mut() {
        for s in g.states.iter_mut() {
            if frozen.iter().any(|f| f.name() == s.name) {
                s.entries.sort_by(|a, b| a.key.cmp(&b.key));
            }
        }
    }
    Ok(())
}

/// The keyed state backend of one operator subtask: the states registered, the key in
/// scope, and the store holding the values ([`Store`]: one implementation per backend).
pub struct KeyedStateBackend {
    range: KeyGroupRange,
    max_parallelism: usize,
    names: Vec<String>,
    pub(crate) current: CurrentKey,
    /// Processing time used for TTL decisions; set by the operator before user code runs.
    pub(crate) now: Timestamp,
    /// The operator's declared state schema, whose tag ends every state's name
    /// ([`state_name`]).
    schema: Option<String>,
    store: Store,
    /// Time-bucketed buffer states ([`buffer`]), named apart from the states in `names`.
    buffers: Vec<Box<dyn buffer::AnyBuffer>>,
}

/// Where the values live (`state.backend.type`). An enum rather than a trait object: state
/// is read and written per record, and matching two variants costs no more than the check
/// for a backend it replaces, with every access statically dispatched and inlined.
enum Store {
    /// Typed values in memory ([`heap`]).
    HashMap(heap::HeapStore),
    /// Postcard-encoded values in a local RocksDB instance ([`rocksdb`]) behind a write-back
    /// cache of decoded values ([`cached`]); boxed, as it is large.
    RocksDb(Box<cached::CachedRocks>),
}

impl std::fmt::Debug for KeyedStateBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyedStateBackend")
            .field("range", &self.range)
            .field("states", &self.names)
            .finish()
    }
}

impl KeyedStateBackend {
    /// A backend for the key groups in `range`.
    pub fn new(range: KeyGroupRange, max_parallelism: usize) -> Self {
        Self::with_store(range, max_parallelism, Store::HashMap(Default::default()))
    }

    fn with_store(range: KeyGroupRange, max_parallelism: usize, store: Store) -> Self {
        KeyedStateBackend {
            range,
            max_parallelism,
            names: Vec::new(),
            current: CurrentKey::default(),
            now: 0,
            schema: None,
            store,
            buffers: Vec::new(),
        }
    }

    /// Names every state registered from now on with a tag of `schema`
    /// (`"<name> @<hash>"`).
    pub(crate) fn set_schema(&mut self, schema: Option<String>) {
        self.schema = schema;
    }

    /// A backend keeping state in a local RocksDB instance under `local_dir`.
    pub(crate) fn new_rocksdb(
        range: KeyGroupRange,
        max_parallelism: usize,
        local_dir: &std::path::Path,
        uid: &str,
        subtask: usize,
        memory: RocksMemory,
        cache_entries: usize,
    ) -> Self {
        let cache_bytes = memory.write_cache_bytes;
        let db = rocksdb::RocksStore::new(local_dir, uid, subtask, range, memory);
        let cached = cached::CachedRocks::new(db, cache_entries, cache_bytes);
        let store = Store::RocksDb(Box::new(cached));
        Self::with_store(range, max_parallelism, store)
    }

    /// True for the `rocksdb` backend.
    pub fn is_rocksdb(&self) -> bool {
        matches!(self.store, Store::RocksDb(_))
    }

    /// The RocksDB instance of the `rocksdb` backend, holding the whole state: the write
    /// cache's changes are written to it first.
    pub(crate) fn rocks(&mut self) -> Result<Option<&mut rocksdb::RocksStore>> {
        match &mut self.store {
            Store::RocksDb(r) => {
                r.write_back()?;
                for b in &mut self.buffers {
                    b.write_back(&mut r.db)?;
                }
                Ok(Some(&mut r.db))
            }
            Store::HashMap(_) => Ok(None),
        }
    }

    /// Registers (or finds) the table called `name` holding values of type `V`.
    pub(crate) fn register<V: StateValue>(&mut self, desc: &StateDescriptor) -> usize {
        let named;
        let desc = match &self.schema {
            Some(schema) => {
                named = StateDescriptor {
                    name: state_name(&desc.name, Some(schema)),
                    ttl: desc.ttl,
                };
                &named
            }
            None => desc,
        };
        if let Some(id) = self.names.iter().position(|n| *n == desc.name) {
            let same_type = match &mut self.store {
                Store::HashMap(h) => h.holds::<V>(id),
                Store::RocksDb(r) => r.holds::<V>(id),
            };
            assert!(
                same_type,
                "state '{}' registered twice with different types",
                desc.name
            );
            return id;
        }
        match &mut self.store {
            Store::HashMap(h) => h.register::<V>(desc, self.range.len()),
            Store::RocksDb(r) => {
                let id = r.register::<V>(&desc.name, desc.ttl);
                debug_assert_eq!(id, self.names.len());
            }
        }
        self.names.push(desc.name.clone());
        self.names.len() - 1
    }

    /// The key groups this backend owns.
    pub fn key_group_range(&self) -> KeyGroupRange {
        self.range
    }

    /// Snapshots every registered state, one entry per key group that holds data.
    pub fn snapshot(&mut self) -> Result<Vec<KeyGroupSnapshot>> {
        match &mut self.store {
            Store::HashMap(h) => {
                let mut groups = h.snapshot(self.range, &self.names)?;
                let frozen: Vec<_> = self.buffers.iter().map(|b| b.freeze()).collect();
                add_buffers(self.range, &mut groups, &frozen)?;
                Ok(groups)
            }
            Store::RocksDb(r) => {
                r.write_back()?;
                for b in &mut self.buffers {
                    b.write_back(&mut r.db)?;
                }
                r.db.snapshot_canonical()
            }
        }
    }

    /// The `hashmap` backend's state frozen copy-on-write, to be serialized by the caller
    /// (on another thread) into what [`Self::snapshot`] returns. `None` for rocksdb.
    pub(crate) fn snapshot_deferred(&self) -> Option<DeferredKeyed> {
        match &self.store {
            Store::HashMap(h) if self.buffers.is_empty() => {
                Some(h.snapshot_deferred(self.range, &self.names))
            }
            Store::HashMap(h) => {
                let tables = h.snapshot_deferred(self.range, &self.names);
                let frozen: Vec<_> = self.buffers.iter().map(|b| b.freeze()).collect();
                let range = self.range;
                Some(DeferredKeyed::new(move || {
                    let mut groups = tables.produce()?;
                    add_buffers(range, &mut groups, &frozen)?;
                    Ok(groups)
                }))
            }
            Store::RocksDb(_) => None,
        }
    }

    /// Loads restored key groups. Groups outside this backend's range are ignored (another
    /// subtask owns them); states not registered yet are applied when they are.
    pub fn restore(&mut self, groups: &[KeyGroupSnapshot]) -> Result<()> {
        match &mut self.store {
            Store::HashMap(h) => {
                let buffer_names: Vec<&str> = self.buffers.iter().map(|b| b.name()).collect();
                h.restore(self.range, &self.names, &buffer_names, groups)?;
                for b in &mut self.buffers {
                    let name = b.name().to_string();
                    for g in groups
                        .iter()
                        .filter(|g| self.range.contains(g.key_group as usize))
                    {
                        for st in g.states.iter().filter(|st| st.name == name) {
                            b.restore_group(g.key_group as usize, &st.entries)?;
                        }
                    }
                    b.finish_restore();
                }
                Ok(())
            }
            Store::RocksDb(r) => {
                r.discard();
                r.db.restore_canonical(groups)?;
                for b in &mut self.buffers {
                    b.reload(&mut r.db, self.range)?;
                }
                Ok(())
            }
        }
    }

    /// The first error met while applying restored state to a state registered late.
    pub(crate) fn take_restore_error(&mut self) -> Option<Error> {
        match &mut self.store {
            Store::HashMap(h) => h.take_restore_error(),
            Store::RocksDb(_) => None,
        }
    }

    /// Names of restored states that no registered state claimed.
    pub fn unclaimed_states(&self) -> Vec<String> {
        let mut v: Vec<String> = match &self.store {
            Store::RocksDb(r) => r
                .db
                .restored_names()
                .iter()
                .filter(|n| !self.names.contains(n) && !self.buffers.iter().any(|b| b.name() == *n))
                .cloned()
                .collect(),
            Store::HashMap(h) => h.unclaimed(),
        };
        v.sort();
        v
    }

    /// Sets the current key from its serialized bytes.
    pub(crate) fn set_current_key_bytes(&mut self, bytes: &[u8]) {
        self.current.bytes.clear();
        self.current.bytes.extend_from_slice(bytes);
        self.current.key_group = key_group_for_bytes(bytes, self.max_parallelism);
        crate::keygroup::debug_assert_owned(&self.range, self.current.key_group);
    }

    /// Total number of entries across all states (a state-size metric).
    pub fn entries(&self) -> usize {
        let buffered: usize = self.buffers.iter().map(|b| b.len()).sum();
        buffered
            + match &self.store {
                Store::HashMap(h) => h.entries(),
                Store::RocksDb(r) => r.db.entries(),
            }
    }

    /// The names of every registered state, buffers included (an incremental checkpoint
    /// lists them).
    pub(crate) fn all_state_names(&self) -> Vec<String> {
        let mut names = self.names.clone();
        for b in &self.buffers {
            if !names.iter().any(|n| n == b.name()) {
                names.push(b.name().to_string());
            }
        }
        names
    }

    /// Registers side `side` of the time-bucketed buffer state called `name` ([`buffer`]):
    /// rows of type `T` keyed by `key_fn` (hashed with `hasher`, as the caller hashes the
    /// keys it passes), in buckets `width` ms wide. Register before the restore (restored
    /// entries of a buffer registered later are reported unclaimed).
    pub(crate) fn register_time_buffer<K: crate::keygroup::Key, T: StateValue>(
        &mut self,
        name: &str,
        side: u8,
        width: i64,
        key_fn: RowKeyFn<K, T>,
        hasher: hashbrown::DefaultHashBuilder,
    ) -> Result<TimeBufferState<K, T>> {
        let name = state_name(name, self.schema.as_deref());
        assert!(
            !self.names.contains(&name)
                && !self
                    .buffers
                    .iter()
                    .any(|b| b.name() == name && b.side() == side),
            "state '{name}' (side {side}) registered twice"
        );
        let capacity = match &self.store {
            Store::RocksDb(r) => Some(r.capacity()),
            Store::HashMap(_) => None,
        };
        let b = TimeBuffer::new(
            name.clone(),
            side,
            width,
            key_fn,
            hasher,
            self.max_parallelism,
            capacity,
        );
        self.buffers.push(Box::new(b));
        Ok(TimeBufferState {
            id: self.buffers.len() - 1,
            _p: std::marker::PhantomData,
        })
    }

    /// The buffer `state` and, on rocksdb, the database behind it.
    #[inline]
    pub(crate) fn time_buffer<K: crate::keygroup::Key, T: StateValue>(
        &mut self,
        state: &TimeBufferState<K, T>,
    ) -> (&mut TimeBuffer<K, T>, Option<&mut rocksdb::RocksStore>) {
        let b = self.buffers[state.id]
            .as_any_mut()
            .downcast_mut::<TimeBuffer<K, T>>()
            .expect("a buffer accessed with the types it was registered with");
        let db = match &mut self.store {
            Store::RocksDb(r) => {
                r.db.ensure_open();
                Some(&mut r.db)
            }
            Store::HashMap(_) => None,
        };
        (b, db)
    }

    /// A RocksDB integer property of the `rocksdb` backend's open instance (metrics).
    pub(crate) fn rocks_property(&self, name: &str) -> Option<u64> {
        match &self.store {
            // Weir's own gauge (`state.backend.rocksdb.metrics.write-cache-usage`).
            Store::RocksDb(r) if name == "rocksdb.write-cache-usage" => Some(r.bytes() as u64),
            Store::RocksDb(r) => r.db.int_property(name),
            Store::HashMap(_) => None,
        }
    }

    /// The state names registered so far, in registration order.
    pub fn state_names(&self) -> &[String] {
        &self.names
    }

    /// Index of the current key's group among this backend's key groups.
    #[inline]
    fn group_index(&self) -> usize {
        self.current.key_group - self.range.start
    }

    /// Reads the value for the current key in namespace `ns`, honouring TTL.
    #[inline]
    pub(crate) fn get<V: StateValue>(&mut self, id: usize, ns: &[u8]) -> Option<V> {
        let idx = self.group_index();
        match &mut self.store {
            Store::HashMap(h) => h.get(id, idx, &self.current, ns, self.now),
            Store::RocksDb(r) => r.get(id, &self.current, ns, self.now),
        }
    }

    /// Applies `f` to the value for the current key in `ns`, creating it with `init` when
    /// absent (or expired). Returns `f`'s result and whether the entry was newly created.
    #[inline]
    pub(crate) fn update_with<V: StateValue, R>(
        &mut self,
        id: usize,
        ns: &[u8],
        init: impl FnOnce() -> V,
        f: impl FnOnce(&mut V) -> R,
    ) -> (R, bool) {
        let idx = self.group_index();
        match &mut self.store {
            Store::HashMap(h) => h.update_with(id, idx, &self.current, ns, self.now, init, f),
            Store::RocksDb(r) => r.update_with(id, &self.current, ns, self.now, init, f),
        }
    }

    /// Applies `f` to the value for the current key in `ns` in place, when there is one (not
    /// expired); `None` otherwise. `f` also says whether to keep the value: when it does not,
    /// the entry is removed in the same lookup. The `hashmap` backend never copies the value;
    /// `rocksdb` reads, applies and writes it back (or deletes it).
    #[inline]
    pub(crate) fn mutate<V: StateValue, R>(
        &mut self,
        id: usize,
        ns: &[u8],
        f: impl FnOnce(&mut V) -> (R, bool),
    ) -> Option<R> {
        let idx = self.group_index();
        match &mut self.store {
            Store::HashMap(h) => h.mutate(id, idx, &self.current, ns, self.now, f),
            Store::RocksDb(r) => r.mutate(id, &self.current, ns, self.now, f),
        }
    }

    /// Replaces the value for the current key in `ns`.
    #[inline]
    pub(crate) fn put<V: StateValue>(&mut self, id: usize, ns: &[u8], value: V) {
        let idx = self.group_index();
        match &mut self.store {
            Store::HashMap(h) => h.put(id, idx, &self.current, ns, self.now, value),
            Store::RocksDb(r) => r.put(id, &self.current, ns, self.now, value),
        }
    }

    /// Removes and returns the value for the current key in `ns`.
    #[inline]
    pub(crate) fn remove<V: StateValue>(&mut self, id: usize, ns: &[u8]) -> Option<V> {
        let idx = self.group_index();
        match &mut self.store {
            Store::HashMap(h) => h.remove(id, idx, &self.current, ns, self.now),
            Store::RocksDb(r) => r.remove(id, &self.current, ns, self.now),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keygroup::serialize_key;
    use std::sync::Arc;

    fn backend() -> KeyedStateBackend {
        KeyedStateBackend::new(KeyGroupRange { start: 0, end: 128 }, 128)
    }

    fn set_key(b: &mut KeyedStateBackend, k: &str) {
        let mut buf = Vec::new();
        serialize_key(&k.to_string(), &mut buf);
        b.set_current_key_bytes(&buf);
    }

    #[test]
    fn a_frozen_snapshot_is_copy_on_write_and_serializes_the_state_as_it_was() {
        let mut b = backend();
        let s = ValueState::<u64>::register(&mut b, &StateDescriptor::new("count"));
        for (k, v) in [("alice", 1), ("bob", 2)] {
            set_key(&mut b, k);
            s.update(&mut b, v);
        }
        let expected = b.snapshot().unwrap();
        let deferred = b.snapshot_deferred().expect("hashmap backend defers");
        // Processing goes on before the snapshot is serialized: writes copy the key group's
        // map instead of changing what the snapshot shares.
        set_key(&mut b, "alice");
        s.update(&mut b, 100);
        set_key(&mut b, "carol");
        s.update(&mut b, 3);
        let frozen = crate::checkpoint::OperatorSubtaskState {
            deferred_keyed: Some(deferred),
            ..Default::default()
        };
        let resolved = frozen.resolved().unwrap().into_owned();
        let mut want = expected;
        want.retain(|g| !g.states.is_empty());
        assert_eq!(resolved.keyed, want);
        set_key(&mut b, "alice");
        assert_eq!(
            s.value(&mut b),
            Some(100),
            "the live state has the new value"
        );
        assert!(
            frozen.resolved().is_err(),
            "a deferred snapshot is serialized once"
        );
    }

    #[test]
    fn value_state_is_scoped_to_the_current_key() {
        let mut b = backend();
        let s = ValueState::<u64>::register(&mut b, &StateDescriptor::new("count"));
        set_key(&mut b, "alice");
        s.update(&mut b, 3);
        set_key(&mut b, "bob");
        assert_eq!(s.value(&mut b), None);
        s.update(&mut b, 7);
        set_key(&mut b, "alice");
        assert_eq!(s.value(&mut b), Some(3));
        s.clear(&mut b);
        assert_eq!(s.value(&mut b), None);
        set_key(&mut b, "bob");
        assert_eq!(s.value(&mut b), Some(7));
        assert_eq!(b.entries(), 1);
    }

    #[test]
    fn list_map_and_reducing_state_accumulate_per_key() {
        let mut b = backend();
        let l = ListState::<String>::register(&mut b, &StateDescriptor::new("l"));
        let m = MapState::<String, i32>::register(&mut b, &StateDescriptor::new("m"));
        let r = ReducingState::<i64>::register(
            &mut b,
            &StateDescriptor::new("r"),
            Arc::new(|a, b| a + b),
        );
        set_key(&mut b, "k");
        l.add(&mut b, "a".into());
        l.add(&mut b, "b".into());
        m.put(&mut b, "x".into(), 1);
        m.put(&mut b, "y".into(), 2);
        m.remove(&mut b, &"x".to_string());
        for v in [5, 10, -3] {
            r.add(&mut b, v);
        }
        assert_eq!(l.get(&mut b), vec!["a".to_string(), "b".to_string()]);
        assert_eq!(m.entries(&mut b), vec![("y".to_string(), 2)]);
        assert_eq!(m.get(&mut b, &"y".to_string()), Some(2));
        assert_eq!(r.get(&mut b), Some(12));
        set_key(&mut b, "other");
        assert!(l.get(&mut b).is_empty());
        assert_eq!(r.get(&mut b), None);
    }

    #[test]
    fn ttl_expires_entries_after_the_configured_time() {
        let mut b = backend();
        let desc =
            StateDescriptor::new("v").with_ttl(StateTtlConfig::new(Duration::from_millis(100)));
        let s = ValueState::<u32>::register(&mut b, &desc);
        set_key(&mut b, "k");
        b.now = 1_000;
        s.update(&mut b, 1);
        b.now = 1_099;
        assert_eq!(s.value(&mut b), Some(1), "alive 99 ms after the write");
        b.now = 1_100;
        assert_eq!(
            s.value(&mut b),
            None,
            "expired exactly 100 ms after the write"
        );
        assert_eq!(b.entries(), 0, "expired entry removed when touched");
    }

    #[test]
    fn ttl_on_read_and_write_extends_lifetime_on_reads() {
        let mut b = backend();
        let ttl = StateTtlConfig::new(Duration::from_millis(100))
            .update_type(TtlUpdateType::OnReadAndWrite);
        let s = ValueState::<u32>::register(&mut b, &StateDescriptor::new("v").with_ttl(ttl));
        let w = ValueState::<u32>::register(
            &mut b,
            &StateDescriptor::new("w").with_ttl(StateTtlConfig::new(Duration::from_millis(100))),
        );
        set_key(&mut b, "k");
        b.now = 0;
        s.update(&mut b, 1);
        w.update(&mut b, 1);
        b.now = 80;
        assert_eq!(s.value(&mut b), Some(1));
        assert_eq!(w.value(&mut b), Some(1));
        b.now = 150; // 70 ms after the read, 150 ms after the write
        assert_eq!(s.value(&mut b), Some(1), "read at 80 restarted the clock");
        assert_eq!(w.value(&mut b), None, "on-create-and-write ignores reads");
    }

    fn rocks_backend(dir: &std::path::Path, cache_entries: usize) -> KeyedStateBackend {
        let range = KeyGroupRange { start: 0, end: 128 };
        let mut b = KeyedStateBackend::new_rocksdb(
            range,
            128,
            dir,
            "op",
            0,
            Default::default(),
            cache_entries,
        );
        b.rocks().unwrap().unwrap().open(None).unwrap();
        b
    }

    #[test]
    fn rocksdb_instances_use_the_memory_budget_shared_cache_and_write_buffer_limit() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = crate::config::Config::default();
        let mut mem = cfg.memory().unwrap();
        mem.process = Some(512 << 20);
        let budget = mem.plan(2).unwrap().unwrap();
        let fitted = budget
            .fit(
                crate::runtime::memory::Footprint {
                    channels: 4,
                    rocksdb_instances: 2,
                },
                8,
            )
            .unwrap();
        let range = KeyGroupRange { start: 0, end: 128 };
        let mut stores: Vec<KeyedStateBackend> = (0..2)
            .map(|i| {
                let mut b = KeyedStateBackend::new_rocksdb(
                    range,
                    128,
                    dir.path(),
                    "op",
                    i,
                    fitted.rocks.clone(),
                    100,
                );
                b.rocks().unwrap().unwrap().open(None).unwrap();
                b
            })
            .collect();
        let cache = fitted.rocks.block_cache_bytes();
        let write_cache = (budget.managed as f64 * 0.25) as u64;
        assert_eq!(
            cache,
            budget.managed - (budget.managed as f64 * 0.5) as u64 - write_cache
        );
        assert_eq!(fitted.rocks.write_cache_bytes(), write_cache / 2);
        for b in &mut stores {
            exercise(b);
            let rocks = b.rocks().unwrap().unwrap();
            let (capacity, path) = rocks.property("rocksdb.block-cache-capacity");
            assert_eq!(capacity, Some(cache), "the budget's block cache");
            // RocksDB records the options it runs with in OPTIONS-* files.
            let options: String = std::fs::read_dir(&path)
                .unwrap()
                .filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().starts_with("OPTIONS-"))
                .map(|e| std::fs::read_to_string(e.path()).unwrap())
                .collect();
            let limit = fitted.rocks.write_buffer_bytes();
            assert!(
                options.contains(&format!("db_write_buffer_size={limit}")),
                "memtables capped at {limit}"
            );
            assert!(options.contains(&format!("write_buffer_size={}", limit / 2)));
        }
        // One cache for both: what one instance reads counts against the other's capacity.
        let (a, _) = stores[0]
            .rocks()
            .unwrap()
            .unwrap()
            .property("rocksdb.block-cache-usage");
        let (b, _) = stores[1]
            .rocks()
            .unwrap()
            .unwrap()
            .property("rocksdb.block-cache-usage");
        assert!(
            a.unwrap() > 0,
            "index and filter blocks of the flushed SSTs are cached"
        );
        assert_eq!(a, b, "the usage of one shared cache");
    }

    /// The same operations through the typed API on `b`.
    fn exercise(b: &mut KeyedStateBackend) {
        let v = ValueState::<u64>::register(b, &StateDescriptor::new("count"));
        let l = ListState::<String>::register(b, &StateDescriptor::new("l"));
        let m = MapState::<String, i32>::register(b, &StateDescriptor::new("m"));
        let r =
            ReducingState::<i64>::register(b, &StateDescriptor::new("r"), Arc::new(|a, b| a + b));
        let t = ValueState::<u32>::register(
            b,
            &StateDescriptor::new("ttl").with_ttl(StateTtlConfig::new(Duration::from_millis(100))),
        );
        for (i, k) in ["alice", "bob", "carol", "dave"].iter().enumerate() {
            set_key(b, k);
            b.now = 1_000;
            v.update(b, i as u64);
            l.add(b, format!("{k}-1"));
            l.add(b, format!("{k}-2"));
            // One entry per map: a HashMap's encoding order is not canonical.
            m.put(b, "x".into(), i as i32);
            r.add(b, 10);
            r.add(b, i as i64);
            t.update(b, 1);
        }
        set_key(b, "bob");
        v.clear(b);
        m.put(b, "y".into(), 2);
        m.remove(b, &"x".to_string());
        b.now = 1_050;
        assert_eq!(t.value(b), Some(1), "alive 50 ms after the write");
        b.now = 1_100;
        assert_eq!(t.value(b), None, "expired 100 ms after the write");
        set_key(b, "alice");
        assert_eq!(v.value(b), Some(0));
        assert_eq!(l.get(b), vec!["alice-1".to_string(), "alice-2".to_string()]);
        assert_eq!(m.get(b, &"x".to_string()), Some(0));
        assert_eq!(r.get(b), Some(10));
        set_key(b, "bob");
        assert_eq!(v.value(b), None);
        assert_eq!(m.entries(b), vec![("y".to_string(), 2)]);
        assert_eq!(
            v.mutate(b, |x| *x += 1),
            None,
            "unset values are not created"
        );
        set_key(b, "carol");
        assert_eq!(v.mutate_or_clear(b, |x| (*x, true)), Some(2));
        assert_eq!(v.mutate(b, |x| *x += 10), Some(()));
        assert_eq!(v.value(b), Some(12), "changed in place and kept");
        set_key(b, "dave");
        assert_eq!(v.mutate_or_clear(b, |x| (*x, false)), Some(3));
        assert_eq!(v.value(b), None, "cleared when not kept");
    }

    fn canonical(b: &mut KeyedStateBackend) -> Vec<KeyGroupSnapshot> {
        let mut groups = b.snapshot().unwrap();
        groups.retain(|g| !g.states.is_empty());
        for g in &mut groups {
            g.states.sort_by(|a, b| a.name.cmp(&b.name));
        }
        groups
    }

    #[test]
    fn rocksdb_and_hashmap_backends_behave_alike_and_snapshot_identically() {
        // Write caches of no entry, of fewer entries than the test touches (written back and
        // read again in between), and of all of them.
        for cache in [0, 3, 100_000] {
            let dir = tempfile::tempdir().unwrap();
            let mut heap = backend();
            let mut rocks = rocks_backend(dir.path(), cache);
            exercise(&mut heap);
            exercise(&mut rocks);
            let expected = canonical(&mut heap);
            assert!(!expected.is_empty());
            assert_eq!(canonical(&mut rocks), expected, "cache of {cache}");

            // A canonical snapshot restores into the other backend and back unchanged.
            let dir2 = tempfile::tempdir().unwrap();
            let mut rocks2 = rocks_backend(dir2.path(), cache);
            rocks2.restore(&expected).unwrap();
            assert_eq!(canonical(&mut rocks2), expected);
            let mut heap2 = backend();
            heap2.restore(&canonical(&mut rocks2)).unwrap();
            let v = ValueState::<u64>::register(&mut heap2, &StateDescriptor::new("count"));
            ListState::<String>::register(&mut heap2, &StateDescriptor::new("l"));
            MapState::<String, i32>::register(&mut heap2, &StateDescriptor::new("m"));
            ValueState::<i64>::register(&mut heap2, &StateDescriptor::new("r"));
            ValueState::<u32>::register(&mut heap2, &StateDescriptor::new("ttl"));
            set_key(&mut heap2, "carol");
            assert_eq!(v.value(&mut heap2), Some(12));
            assert_eq!(canonical(&mut heap2), expected);
        }
    }

    /// What RocksDB itself holds, bypassing the write cache: (state, key ++ namespace) →
    /// value bytes.
    fn in_rocksdb(b: &mut KeyedStateBackend) -> Vec<(String, Vec<u8>, Vec<u8>)> {
        let Store::RocksDb(r) = &mut b.store else {
            panic!("rocksdb backend")
        };
        r.db.snapshot_canonical()
            .unwrap()
            .into_iter()
            .flat_map(|g| g.states)
            .flat_map(|s| {
                let name = s.name;
                s.entries
                    .into_iter()
                    .map(move |e| (name.clone(), e.key, e.value))
            })
            .collect()
    }

    fn key_bytes(k: &str) -> Vec<u8> {
        let mut buf = Vec::new();
        serialize_key(&k.to_string(), &mut buf);
        buf
    }

    #[test]
    fn the_rocksdb_write_cache_writes_each_entry_once_when_full_or_asked_and_never_a_short_lived_one()
     {
        let dir = tempfile::tempdir().unwrap();
        let mut b = rocks_backend(dir.path(), 3);
        let v = ValueState::<u64>::register(&mut b, &StateDescriptor::new("v"));
        let l = ListState::<u32>::register(&mut b, &StateDescriptor::new("l"));
        set_key(&mut b, "a");
        for _ in 0..100 {
            v.update_with(&mut b, || 0, |x| *x += 1);
        }
        for i in 0..50 {
            l.add(&mut b, i);
        }
        // A row list that lives and dies within one cache cycle (a window join's window).
        set_key(&mut b, "gone");
        l.add(&mut b, 7);
        assert_eq!(l.take(&mut b), vec![7]);
        assert!(in_rocksdb(&mut b).is_empty(), "nothing written yet");

        // A checkpoint needs RocksDB to hold the state: each live entry written once.
        b.rocks().unwrap().unwrap();
        let stored = in_rocksdb(&mut b);
        let a = key_bytes("a");
        assert_eq!(
            stored,
            vec![
                (
                    "l".to_string(),
                    a.clone(),
                    postcard::to_allocvec(&(0..50u32).collect::<Vec<_>>()).unwrap()
                ),
                (
                    "v".to_string(),
                    a.clone(),
                    postcard::to_allocvec(&100u64).unwrap()
                ),
            ],
            "the entry removed before the write-back never reached RocksDB"
        );

        // More keys than the cache holds: the cache writes back and starts over; values
        // evicted are read back from RocksDB.
        for k in ["b", "c", "d", "e", "f"] {
            set_key(&mut b, k);
            v.update(&mut b, 1);
        }
        let written: Vec<Vec<u8>> = in_rocksdb(&mut b).into_iter().map(|(_, k, _)| k).collect();
        assert!(written.contains(&key_bytes("b")), "{written:?}");
        set_key(&mut b, "a");
        assert_eq!(v.value(&mut b), Some(100));
        assert_eq!(l.get(&mut b).len(), 50);
        // A removal of a written entry is a delete at the next write-back.
        v.clear(&mut b);
        b.rocks().unwrap().unwrap();
        let after: Vec<(String, Vec<u8>)> = in_rocksdb(&mut b)
            .into_iter()
            .map(|(s, k, _)| (s, k))
            .collect();
        assert!(!after.contains(&("v".to_string(), a.clone())), "{after:?}");
        assert!(after.contains(&("l".to_string(), a)));
        assert_eq!(after.len(), 6, "l of a, v of b..f: {after:?}");
    }

    #[test]
    fn an_incremental_checkpoint_after_touching_a_tenth_of_the_keys_adds_files_of_about_a_tenth_of_the_state()
     {
        // Memtables smaller than what an interval changes (the large-state benchmark's
        // shape): 1 MiB for the instance, 512 KiB each; the write cache holds every key.
        let dir = tempfile::tempdir().unwrap();
        let memory = RocksMemory {
            block_cache: Some(::rocksdb::Cache::new_lru_cache(8 << 20)),
            block_cache_bytes: 8 << 20,
            write_buffer_bytes: 1 << 20,
            write_cache_bytes: 0,
        };
        let range = KeyGroupRange { start: 0, end: 128 };
        let mut b =
            KeyedStateBackend::new_rocksdb(range, 128, dir.path(), "op", 0, memory, 1_000_000);
        b.rocks().unwrap().unwrap().open(None).unwrap();
        let count = ValueState::<u64>::register(&mut b, &StateDescriptor::new("count"));
        const KEYS: u64 = 200_000;
        let mut expected = vec![0u64; KEYS as usize];
        // Bytes of the SST files a checkpoint references that no earlier one did: what the
        // checkpoint uploads.
        let mut uploaded = std::collections::HashSet::new();
        let mut checkpoint = |b: &mut KeyedStateBackend, id: u64| -> (u64, u64) {
            let names = b.all_state_names();
            let snapshot = b.rocks().unwrap().unwrap().checkpoint(id, names).unwrap();
            let new: u64 = snapshot
                .handle
                .shared
                .iter()
                .filter(|f| uploaded.insert(f.name.clone()))
                .map(|f| f.size)
                .sum();
            let full = snapshot.handle.shared.iter().map(|f| f.size).sum();
            (new, full)
        };
        let mut touch = |b: &mut KeyedStateBackend, round: u64, every: u64| {
            for i in (0..KEYS).filter(|i| (i * 7_919 + round * 104_729).is_multiple_of(every)) {
                set_key(b, &format!("key-{i}"));
                count.update_with(b, || 0, |c| *c += 1);
                expected[i as usize] += 1;
            }
        };
        touch(&mut b, 0, 1);
        let (first, full) = checkpoint(&mut b, 1);
        assert_eq!(first, full, "the first checkpoint uploads the whole state");
        let mut sizes = Vec::new();
        for round in 1..=6 {
            touch(&mut b, round, 10);
            let (new, full) = checkpoint(&mut b, round + 1);
            sizes.push((new, full));
        }
        for (i, (new, full)) in sizes.iter().enumerate() {
            assert!(
                *new < full / 4,
                "checkpoint {} after touching 10 % of the keys uploads {new} bytes of a {full}-byte \
                 state (all rounds, new/full: {sizes:?})",
                i + 2
            );
        }
        // Removals go in the same way (deletes in the ingested file).
        let gone: Vec<u64> = (0..KEYS).filter(|i| i % 10 == 3).collect();
        for i in &gone {
            set_key(&mut b, &format!("key-{i}"));
            count.clear(&mut b);
            expected[*i as usize] = 0;
        }
        let names = b.all_state_names();
        let last = b.rocks().unwrap().unwrap().checkpoint(8, names).unwrap();
        // The last checkpoint's files hold every key's count, and none of the removed keys.
        let db =
            ::rocksdb::DB::open_for_read_only(&::rocksdb::Options::default(), &last.dir, false)
                .unwrap();
        let mut stored = 0;
        let mut total = 0;
        for item in db.iterator(::rocksdb::IteratorMode::Start) {
            let (_, v) = item.unwrap();
            stored += 1;
            total += postcard::from_bytes::<u64>(&v[8..]).unwrap();
        }
        assert_eq!(stored, KEYS as usize - gone.len());
        assert_eq!(total, expected.iter().sum::<u64>());
    }

    #[test]
    fn the_rocksdb_write_cache_stays_within_its_bytes_and_loses_nothing_when_it_writes_back() {
        let dir = tempfile::tempdir().unwrap();
        let limit = 256 << 10;
        let memory = RocksMemory {
            write_cache_bytes: limit,
            ..Default::default()
        };
        let range = KeyGroupRange { start: 0, end: 128 };
        // Bounded in entries far above what the bytes allow.
        let mut b =
            KeyedStateBackend::new_rocksdb(range, 128, dir.path(), "op", 0, memory, 1_000_000);
        b.rocks().unwrap().unwrap().open(None).unwrap();
        let rows = ListState::<String>::register(&mut b, &StateDescriptor::new("rows"));
        let mut peak = 0;
        for round in 0..3 {
            for i in 0..5_000 {
                set_key(&mut b, &format!("key-{i}"));
                rows.add(
                    &mut b,
                    format!("row {round} of key {i}, padded to some length"),
                );
                peak = peak.max(b.rocks_property("rocksdb.write-cache-usage").unwrap());
            }
        }
        // One entry over: the bound is checked before an entry comes in.
        assert!(
            peak <= limit + 1_024,
            "the write cache grew to {peak} bytes, its bound is {limit}"
        );
        assert!(peak > limit / 2, "the cache was used: {peak} bytes at most");
        for i in [0, 2_500, 4_999] {
            set_key(&mut b, &format!("key-{i}"));
            assert_eq!(
                rows.get(&mut b),
                (0..3)
                    .map(|r| format!("row {r} of key {i}, padded to some length"))
                    .collect::<Vec<_>>(),
                "key-{i}'s rows after write-backs"
            );
        }
    }
}
