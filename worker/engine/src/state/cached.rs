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
//! subtask and, under a memory budget, at most its share of managed memory
//! (`state.backend.rocksdb.memory.write-cache-ratio` of it, split between the instances), in
//! bytes estimated per entry: its key, the table slot, the value's in-memory size and the
//! length of its last encoding (read from RocksDB or written back), which stands for what
//! the value holds on the heap. A value that grows between write-backs is charged its
//! growth at the next one.
//!
//! A write-back that outgrows a memtable goes to RocksDB as one sorted SST file
//! ([`RocksStore::ingest_sorted`]), so that a checkpoint interval adds one level-0 file and
//! incremental checkpoints stay proportional to what changed.

use super::rocksdb::RocksStore;
use super::{CurrentKey, StateTtlConfig, StateValue, TtlUpdateType};
use crate::error::{Error, Result};
use crate::time::Timestamp;
use hashbrown::HashMap;
use hashbrown::hash_map::EntryRef;
use std::any::{Any, TypeId};

/// Entries per `WriteBatch` when the cache is written back ([`CachedRocks::write_back`]).
const WRITE_BACK_BATCH: usize = 16_384;

/// What a memtable entry costs RocksDB besides its key and value (skiplist node, sequence
/// number, length prefixes; an estimate).
const MEMTABLE_ENTRY_BYTES: usize = 32;

/// What an entry costs the cache besides its key and value: its slot in the table (key box
/// and [`Cached`]) at hashbrown's maximum load of 7/8, plus its control byte.
const SLOT_BYTES: usize = std::mem::size_of::<(Box<[u8]>, Cached)>() * 8 / 7 + 1;

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
    /// `size_of::<V>()`: what a boxed value takes before anything it owns on the heap.
    size: usize,
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
    /// Bytes charged to the cache for this entry (see the module doc).
    charge: u32,
    /// The length of its last encoding (stamp and value), 0 before it has one.
    encoded: u32,
}

/// The rocksdb store with its write-back cache and what it needs per registered state to
/// decode, encode and expire values.
pub(super) struct CachedRocks {
    pub(super) db: RocksStore,
    states: Vec<StateInfo>,
    /// Entries by their RocksDB key.
    cache: HashMap<Box<[u8]>, Cached>,
    capacity: usize,
    /// The byte bound (0: none) and the bytes charged for the entries cached now.
    byte_capacity: usize,
    bytes: usize,
    /// Scratch: the RocksDB key of the entry in use, and an encoding buffer.
    key: Vec<u8>,
    buf: Vec<u8>,
}

impl CachedRocks {
    pub(super) fn new(db: RocksStore, capacity: usize, byte_capacity: u64) -> Self {
        CachedRocks {
            db,
            states: Vec::new(),
            cache: HashMap::new(),
            capacity,
            byte_capacity: byte_capacity as usize,
            bytes: 0,
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
            size: std::mem::size_of::<V>(),
        });
        id
    }

    /// The entries the cache holds at most (`state.backend.rocksdb.write-cache.entries`).
    pub(super) fn capacity(&self) -> usize {
        self.capacity
    }

    /// The bytes charged for the entries cached now (see the module doc).
    pub(super) fn bytes(&self) -> usize {
        self.bytes
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
        let bytes = &mut self.bytes;
        let slot = match self.cache.entry_ref(&self.key[..]) {
            EntryRef::Occupied(e) => e.into_mut(),
            EntryRef::Vacant(e) => {
                let (stamp, value, len) = match db.read(&self.key, |bytes| {
                    bytes.map(|b| (super::rocksdb::decode_entry::<V>(&info.name, b), b.len()))
                }) {
                    Some(((stamp, v), len)) => {
                        (stamp, Some(Box::new(v) as Box<dyn Any + Send>), len)
                    }
                    None => (0, None, 0),
                };
                let charge = charge(self.key.len(), info.size, len);
                *bytes += charge as usize;
                e.insert(Cached {
                    stored: value.is_some(),
                    value,
                    stamp,
                    state: id as u32,
                    dirty: false,
                    charge,
                    encoded: len as u32,
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
            && let Some(gone) = self.cache.remove(&self.key[..])
        {
            self.bytes -= gone.charge as usize;
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
        let bytes = &mut self.bytes;
        let size = self.states[id].size;
        let slot = self.cache.entry_ref(&self.key[..]).or_insert_with(|| {
            let charge = charge(self.key.len(), size, 0);
            *bytes += charge as usize;
            Cached {
                value: None,
                stamp: now,
                state: id as u32,
                dirty: true,
                // Not read: RocksDB may hold an older value.
                stored: true,
                charge,
                encoded: 0,
            }
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

    /// Writes every changed entry to RocksDB, in key order; the cache keeps its live entries
    /// (now clean). After this RocksDB holds the whole state.
    ///
    /// A write-back the memtable can hold goes through it in batches of [`WRITE_BACK_BATCH`]
    /// entries; a larger one becomes one sorted SST file ([`RocksStore::ingest_sorted`]:
    /// one level-0 file per checkpoint, not several that each trigger compactions).
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
        let (states, buf, bytes) = (&self.states, &mut self.buf, &mut self.bytes);
        // What the entries would take in a memtable: key, encoding (the value's size in
        // memory before its first one) and the skiplist's own bytes per entry.
        let size: u64 = dirty
            .iter()
            .map(|(k, s)| {
                let value = match s.encoded {
                    0 => states[s.state as usize].size,
                    n => n as usize,
                };
                (k.len() + value + MEMTABLE_ENTRY_BYTES) as u64
            })
            .sum();
        if size > self.db.memtable_bytes() {
            self.db.ingest_sorted(|add| {
                for (k, slot) in dirty {
                    match settle(states, k.len(), slot, buf, bytes)? {
                        Op::Put => add(k, Some(buf))?,
                        Op::Delete => add(k, None)?,
                        Op::Nothing => {}
                    }
                }
                Ok(())
            })?;
        } else {
            let mut batch = rocksdb::WriteBatch::default();
            for (k, slot) in dirty {
                if batch.len() >= WRITE_BACK_BATCH {
                    self.db.write(std::mem::take(&mut batch))?;
                }
                match settle(states, k.len(), slot, buf, bytes)? {
                    Op::Put => batch.put(k, &buf),
                    Op::Delete => batch.delete(k),
                    Op::Nothing => {}
                }
            }
            if !batch.is_empty() {
                self.db.write(batch)?;
            }
        }
        let bytes = &mut self.bytes;
        self.cache.retain(|_, s| {
            let keep = s.value.is_some();
            if !keep {
                *bytes -= s.charge as usize;
            }
            keep
        });
        Ok(())
    }

    /// Makes room for the entry in use (its key in `key`) when it is not cached and the
    /// cache is full.
    fn make_room(&mut self) {
        let full = self.cache.len() >= self.capacity.max(1)
            || (self.byte_capacity > 0 && self.bytes >= self.byte_capacity);
        if full && !self.cache.contains_key(&self.key[..]) {
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
        self.bytes = 0;
    }

    /// Drops every cached entry without writing it (the database was replaced under it).
    pub(super) fn discard(&mut self) {
        self.cache.clear();
        self.bytes = 0;
    }
}

/// What a write-back does with one changed entry.
enum Op {
    /// Put the value encoded in the buffer.
    Put,
    Delete,
    Nothing,
}

/// Marks a changed entry clean and says what RocksDB must do for it, encoding a live value
/// (stamp and postcard bytes) into `buf`; the entry's charge follows its new encoding.
fn settle(
    states: &[StateInfo],
    key: usize,
    slot: &mut Cached,
    buf: &mut Vec<u8>,
    bytes: &mut usize,
) -> Result<Op> {
    slot.dirty = false;
    match &slot.value {
        Some(v) => {
            let info = &states[slot.state as usize];
            buf.clear();
            buf.extend_from_slice(&slot.stamp.to_le_bytes());
            (info.encode)(v.as_ref(), buf).map_err(|e| Error::State {
                state: info.name.clone(),
                reason: format!("cannot be serialized for RocksDB: {e}"),
            })?;
            slot.stored = true;
            let old = slot.charge as usize;
            slot.charge = charge(key, info.size, buf.len());
            slot.encoded = buf.len() as u32;
            *bytes = *bytes + slot.charge as usize - old;
            Ok(Op::Put)
        }
        None if slot.stored => {
            slot.stored = false;
            Ok(Op::Delete)
        }
        None => Ok(Op::Nothing),
    }
}

/// The bytes charged for an entry with a key of `key` bytes, a value of `size` bytes in
/// memory and `encoded` bytes encoded (0: not known yet).
fn charge(key: usize, size: usize, encoded: usize) -> u32 {
    (SLOT_BYTES + key + size + encoded).min(u32::MAX as usize) as u32
}

fn downcast<V: 'static>(v: &mut (dyn Any + Send)) -> &mut V {
    v.downcast_mut::<V>()
        .expect("state accessed with the type it was registered with")
}
