//! The `rocksdb` backend's typed layer: a write-back cache of decoded values in front of the
//! subtask's RocksDB instance ([`super::rocksdb`]).
//!
//! Operators touch the same entries again and again: a window's accumulator (or a key's
//! slices) per batch and again when its timer fires, a window join's row list once per row,
//! an interval join's buffer once per row and once per expiry timer. Going to RocksDB for each
//! costs a lookup, a decode of the whole value, an encode and a write; a list that grows row by
//! row costs quadratic bytes. Here an entry is read and decoded once, then changed in memory
//! as the `hashmap` backend changes it, and written back encoded once: when the cache is full
//! (all dirty entries in one `WriteBatch` without WAL, then the cache starts empty) or when
//! RocksDB must hold everything (a checkpoint or savepoint, a metric read; the cache stays).
//! An entry removed before it was ever written never reaches RocksDB at all: windows and
//! join rows that live shorter than a cache cycle cost no RocksDB write or delete.
//!
//! The cache holds at most `state.backend.rocksdb.write-cache.entries` entries per operator
//! subtask; values it holds live on the heap like the `hashmap` backend's, so the bound is in
//! entries, not bytes.

use super::rocksdb::RocksStore;
use super::{CurrentKey, StateTtlConfig, StateValue, TtlUpdateType};
use crate::error::{Error, Result};
use crate::time::Timestamp;
use hashbrown::HashMap;
use hashbrown::hash_map::EntryRef;
use std::any::{Any, TypeId};

/// Entries per `WriteBatch` when the cache is written back ([`CachedRocks::write_back`]).
const WRITE_BACK_BATCH: usize = 16_384;

/// Encodes a cached value of one state's type after `out` (postcard).
type EncodeFn = fn(&(dyn Any + Send), &mut Vec<u8>) -> std::result::Result<(), postcard::Error>;

fn encode_any<V: StateValue>(
    v: &(dyn Any + Send),
    out: &mut Vec<u8>,
) -> std::result::Result<(), postcard::Error> {
    let v = v.downcast_ref::<V>().expect("cached with its state's type");
    let buf = postcard::to_extend(v, std::mem::take(out))?;
    *out = buf;
    Ok(())
}

/// What the cache knows about one registered state.
struct StateInfo {
    name: String,
    ttl: Option<StateTtlConfig>,
    ty: TypeId,
    encode: EncodeFn,
}

/// One cached entry: its live value (`None`: absent, expired or removed) and what RocksDB
/// holds for it.
struct Cached {
    value: Option<Box<dyn Any + Send>>,
    stamp: Timestamp,
    state: u32,
    /// Changed since it was read or last written back.
    dirty: bool,
    /// RocksDB may hold a value under this key: removing the entry then needs a delete.
    stored: bool,
}

/// The rocksdb store with its write-back cache and what it needs per registered state to
/// decode, encode and expire values.
pub(super) struct CachedRocks {
    pub(super) db: RocksStore,
    states: Vec<StateInfo>,
    /// Entries by their RocksDB key.
    cache: HashMap<Box<[u8]>, Cached>,
    capacity: usize,
    /// Scratch: the RocksDB key of the entry in use, and an encoding buffer.
    key: Vec<u8>,
    buf: Vec<u8>,
}

impl CachedRocks {
    pub(super) fn new(db: RocksStore, capacity: usize) -> Self {
        CachedRocks {
            db,
            states: Vec::new(),
            cache: HashMap::new(),
            capacity,
            key: Vec::new(),
            buf: Vec::new(),
        }
    }

    /// Registers state `name` holding values of type `V`; returns its index.
    pub(super) fn register<V: StateValue>(
        &mut self,
        name: &str,
        ttl: Option<StateTtlConfig>,
    ) -> usize {
        let id = self.db.register(name);
        debug_assert_eq!(id, self.states.len());
        self.states.push(StateInfo {
            name: name.to_string(),
            ttl,
            ty: TypeId::of::<V>(),
            encode: encode_any::<V>,
        });
        id
    }

    /// The entries the cache holds at most (`state.backend.rocksdb.write-cache.entries`).
    pub(super) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Whether state `id` holds values of type `V`.
    pub(super) fn holds<V: StateValue>(&self, id: usize) -> bool {
        self.states[id].ty == TypeId::of::<V>()
    }

    /// The entry of state `id` for the current key in `ns`, read from RocksDB when it is not
    /// cached, with an expired value already dropped.
    fn slot<V: StateValue>(
        &mut self,
        id: usize,
        c: &CurrentKey,
        ns: &[u8],
        now: Timestamp,
    ) -> &mut Cached {
        self.db.ensure_open();
        self.db
            .encode_key(id, c.key_group, &c.bytes, ns, &mut self.key);
        self.make_room();
        let info = &self.states[id];
        let db = &self.db;
        let slot = match self.cache.entry_ref(&self.key[..]) {
            EntryRef::Occupied(e) => e.into_mut(),
            EntryRef::Vacant(e) => {
                let (stamp, value) = match db.read(&self.key, |bytes| {
                    bytes.map(|b| super::rocksdb::decode_entry::<V>(&info.name, b))
                }) {
                    Some((stamp, v)) => (stamp, Some(Box::new(v) as Box<dyn Any + Send>)),
                    None => (0, None),
                };
                e.insert(Cached {
                    stored: value.is_some(),
                    value,
                    stamp,
                    state: id as u32,
                    dirty: false,
                })
            }
        };
        if let Some(t) = info.ttl
            && slot.value.is_some()
            && now - slot.stamp >= t.ttl_ms
        {
            slot.value = None;
            slot.dirty = true;
        }
        slot
    }

    /// Forgets the entry in use when neither the cache nor RocksDB holds a value for it: it
    /// is absent either way, and the room goes to live entries.
    fn forget_if_gone(&mut self) {
        if let Some(s) = self.cache.get(&self.key[..])
            && s.value.is_none()
            && !s.stored
        {
            self.cache.remove(&self.key[..]);
        }
    }

    /// The live value for the current key in `ns`, honouring TTL.
    pub(super) fn get<V: StateValue>(
        &mut self,
        id: usize,
        c: &CurrentKey,
        ns: &[u8],
        now: Timestamp,
    ) -> Option<V> {
        let touch = self.states[id]
            .ttl
            .is_some_and(|t| t.update == TtlUpdateType::OnReadAndWrite);
        let slot = self.slot::<V>(id, c, ns, now);
        let v = downcast::<V>(slot.value.as_deref_mut()?).clone();
        if touch {
            slot.stamp = now;
            slot.dirty = true;
        }
        Some(v)
    }

    /// Applies `f` in place, creating the value with `init` when absent (or expired).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn update_with<V: StateValue, R>(
        &mut self,
        id: usize,
        c: &CurrentKey,
        ns: &[u8],
        now: Timestamp,
        init: impl FnOnce() -> V,
        f: impl FnOnce(&mut V) -> R,
    ) -> (R, bool) {
        let slot = self.slot::<V>(id, c, ns, now);
        let created = slot.value.is_none();
        let v = slot.value.get_or_insert_with(|| Box::new(init()));
        slot.stamp = now;
        slot.dirty = true;
        (f(downcast::<V>(v.as_mut())), created)
    }

    /// Applies `f` in place when there is a live value, removing it when `f` says so.
    pub(super) fn mutate<V: StateValue, R>(
        &mut self,
        id: usize,
        c: &CurrentKey,
        ns: &[u8],
        now: Timestamp,
        f: impl FnOnce(&mut V) -> (R, bool),
    ) -> Option<R> {
        let slot = self.slot::<V>(id, c, ns, now);
        let Some(v) = slot.value.as_deref_mut() else {
            self.forget_if_gone();
            return None;
        };
        let (r, keep) = f(downcast::<V>(v));
        slot.stamp = now;
        slot.dirty = true;
        if !keep {
            slot.value = None;
            self.forget_if_gone();
        }
        Some(r)
    }

    /// Replaces the value (without reading the one it replaces).
    pub(super) fn put<V: StateValue>(
        &mut self,
        id: usize,
        c: &CurrentKey,
        ns: &[u8],
        now: Timestamp,
        value: V,
    ) {
        self.db
            .encode_key(id, c.key_group, &c.bytes, ns, &mut self.key);
        self.make_room();
        let slot = self
            .cache
            .entry_ref(&self.key[..])
            .or_insert_with(|| Cached {
                value: None,
                stamp: now,
                state: id as u32,
                dirty: true,
                // Not read: RocksDB may hold an older value.
                stored: true,
            });
        slot.value = Some(Box::new(value));
        slot.stamp = now;
        slot.dirty = true;
    }

    /// Removes the value and returns it when it was live.
    pub(super) fn remove<V: StateValue>(
        &mut self,
        id: usize,
        c: &CurrentKey,
        ns: &[u8],
        now: Timestamp,
    ) -> Option<V> {
        let slot = self.slot::<V>(id, c, ns, now);
        let v = slot.value.take();
        if v.is_some() {
            slot.dirty = true;
        }
        self.forget_if_gone();
        v.map(|b| *b.downcast::<V>().expect("cached with its state's type"))
    }

    /// Writes every changed entry to RocksDB, in key order and in batches of
    /// [`WRITE_BACK_BATCH`] entries; the cache keeps its live entries (now clean). After this
    /// RocksDB holds the whole state.
    ///
    /// Why sorted and batched: a full cache writes up to a million entries at once. In hash
    /// order, each one's memtable insert searched the skiplist from its top, comparing keys
    /// that share their long key-group-and-state prefix; and one batch cannot be split across
    /// memtables, so the memtable grew far past its budget. Sorted, consecutive inserts reuse
    /// the skiplist position of the previous one; batched, the memtable can be switched and
    /// flushed between batches (bench/README.md, *Large state*: a 1,000,000-entry write-back
    /// took 15 s).
    pub(super) fn write_back(&mut self) -> Result<()> {
        let mut dirty: Vec<(&Box<[u8]>, &mut Cached)> =
            self.cache.iter_mut().filter(|(_, s)| s.dirty).collect();
        dirty.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let mut batch = rocksdb::WriteBatch::default();
        for (k, slot) in dirty {
            if batch.len() >= WRITE_BACK_BATCH {
                self.db.write(std::mem::take(&mut batch))?;
            }
            match &slot.value {
                Some(v) => {
                    let info = &self.states[slot.state as usize];
                    self.buf.clear();
                    self.buf.extend_from_slice(&slot.stamp.to_le_bytes());
                    (info.encode)(v.as_ref(), &mut self.buf).map_err(|e| Error::State {
                        state: info.name.clone(),
                        reason: format!("cannot be serialized for RocksDB: {e}"),
                    })?;
                    batch.put(k, &self.buf);
                    slot.stored = true;
                }
                None if slot.stored => {
                    batch.delete(k);
                    slot.stored = false;
                }
                None => {}
            }
            slot.dirty = false;
        }
        self.cache.retain(|_, s| s.value.is_some());
        if !batch.is_empty() {
            self.db.write(batch)?;
        }
        Ok(())
    }

    /// Makes room for the entry in use (its key in `key`) when it is not cached and the
    /// cache is full.
    fn make_room(&mut self) {
        if self.cache.len() >= self.capacity.max(1) && !self.cache.contains_key(&self.key[..]) {
            self.evict();
        }
    }

    /// Writes changed entries back and empties the cache.
    fn evict(&mut self) {
        if let Err(e) = self.write_back() {
            // The access that needs the room has no error path (state handles return values,
            // as in Flink); the task fails and restarts from its last checkpoint.
            panic!("{}", crate::error::report(&e));
        }
        self.cache.clear();
    }

    /// Drops every cached entry without writing it (the database was replaced under it).
    pub(super) fn discard(&mut self) {
        self.cache.clear();
    }
}

fn downcast<V: 'static>(v: &mut (dyn Any + Send)) -> &mut V {
    v.downcast_mut::<V>()
        .expect("state accessed with the type it was registered with")
}
