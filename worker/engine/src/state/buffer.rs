//! The time-bucketed buffer: keyed rows waiting by event time, as an interval join keeps each
//! input's rows until no partner can arrive (state shaped for its operator, as Arroyo's
//! `ExpiringTimeKeyMap`). One per registered buffer state; the operator appends a row, joins a
//! new row with the rows of its key in a time range, and expires the rows the watermark has
//! passed. The backend snapshots, restores and rescales it with the operator's other keyed
//! state.
//!
//! In memory (both backends) rows sit in time buckets (each covers `width` ms of event time)
//! in arrival order: a row is appended to its bucket, a bucket goes as a whole once the
//! watermark has passed every row in it, and a probe reads the buckets its range overlaps
//! through a key index a bucket builds once it has been probed a few times. Buckets are
//! shared copy-on-write with a `hashmap` checkpoint, which serializes them off the task
//! thread.
//!
//! A buffer state is one side of a state name: an operator with two inputs registers two
//! buffers under one name, told apart by a side byte.
//!
//! On `rocksdb` the buckets are a write-back cache of at most
//! `state.backend.rocksdb.write-cache.entries` rows in front of RocksDB, where each row is one
//! entry keyed `key group | state | side | bucket start | key | time | sequence number` (times
//! order-preserving big-endian): rows are written blind (no read-modify-write of a list), once
//! per cache cycle, and never when they expire within it. When the cache is full its oldest
//! buckets go to RocksDB whole, leaving behind the hashes of their keys so that a probe seeks
//! RocksDB only for a bucket that holds its key; expired buckets go with one range delete per
//! key group when a checkpoint or savepoint writes the cache back (the cache stays).
//!
//! The canonical (savepoint) format of both backends: per key group, one entry per row whose
//! key is the RocksDB key after the state's name and whose value is `(matched, row)`.

use super::SnapshotEntry;
use super::rocksdb::{RocksStore, name_prefix};
use crate::error::{Error, Result};
use crate::keygroup::{Key, KeyGroupRange, key_group_for_bytes, serialize_key};
use crate::time::Timestamp;
use hashbrown::{DefaultHashBuilder, HashSet, HashTable};
use rocksdb::WriteBatch;
use std::any::Any;
use std::collections::{BTreeSet, VecDeque};
use std::hash::BuildHasher;
use std::marker::PhantomData;
use std::sync::Arc;

/// The key of a buffered row (the operator's key extractor).
pub type RowKeyFn<K, T> = Arc<dyn Fn(&T) -> K + Send + Sync>;

/// An order-preserving encoding of a time (signed, so the sign bit is flipped).
fn enc(ts: Timestamp) -> [u8; 8] {
    ((ts as u64) ^ (1 << 63)).to_be_bytes()
}

fn dec(b: &[u8]) -> Timestamp {
    (u64::from_be_bytes(b.try_into().expect("8 bytes")) ^ (1 << 63)) as i64
}

const NONE: u32 = u32::MAX;

/// Probes of a bucket without an index before it builds one, and the size below which a
/// bucket is always scanned.
const SCANS_BEFORE_INDEX: u32 = 2;
const SMALL_BUCKET: usize = 16;

/// A buffered row.
#[derive(Debug, Clone)]
struct Slot<T> {
    ts: Timestamp,
    /// The hash of the row's key (this process only; never stored).
    hash: u64,
    /// Unique per buffer: tells rows of equal key and time apart in RocksDB.
    seq: u64,
    matched: bool,
    /// RocksDB holds the row as it is (rocksdb only).
    stored: bool,
    value: T,
}

/// The rows of one input whose times fall in `[start, start + width)`, in arrival order.
#[derive(Debug, Clone)]
struct Bucket<T> {
    start: Timestamp,
    rows: Vec<Slot<T>>,
    /// Built once the bucket has been probed a few times.
    index: Option<KeyIndex>,
    scans: u32,
    /// Rows at or before this time were handed on as unmatched already (outer inputs).
    emitted_up_to: Timestamp,
    /// Some row is not in RocksDB as it is (rocksdb only).
    dirty: bool,
}

impl<T> Bucket<T> {
    fn new(start: Timestamp) -> Self {
        Bucket {
            start,
            rows: Vec::new(),
            index: None,
            scans: 0,
            emitted_up_to: Timestamp::MIN,
            dirty: false,
        }
    }

    fn build_index(&mut self) {
        let mut index = KeyIndex {
            heads: HashTable::with_capacity(self.rows.len()),
            prev: Vec::with_capacity(self.rows.len()),
        };
        for (i, s) in self.rows.iter().enumerate() {
            index.add(s.hash, i as u32);
        }
        self.index = Some(index);
    }

    fn push(&mut self, slot: Slot<T>) {
        if let Some(index) = &mut self.index {
            index.add(slot.hash, self.rows.len() as u32);
        }
        self.dirty |= !slot.stored;
        self.rows.push(slot);
    }
}

/// A bucket's rows by key hash: the newest row of each hash, and per row the previous row
/// of its hash.
#[derive(Debug, Clone)]
struct KeyIndex {
    heads: HashTable<(u64, u32)>,
    prev: Vec<u32>,
}

impl KeyIndex {
    /// Adds row `i` (the bucket's newest) with key hash `hash`.
    fn add(&mut self, hash: u64, i: u32) {
        match self.heads.find_mut(hash, |e| e.0 == hash) {
            Some(head) => {
                self.prev.push(head.1);
                head.1 = i;
            }
            None => {
                self.prev.push(NONE);
                self.heads.insert_unique(hash, (hash, i), |e| e.0);
            }
        }
    }

    /// The rows with key hash `hash`, newest first.
    fn rows(&self, hash: u64) -> impl Iterator<Item = u32> + '_ {
        let head = self.heads.find(hash, |e| e.0 == hash).map_or(NONE, |e| e.1);
        std::iter::successors((head != NONE).then_some(head), |&i| {
            let p = self.prev[i as usize];
            (p != NONE).then_some(p)
        })
    }
}

/// The buckets in memory, oldest first.
#[derive(Debug)]
struct Buckets<T> {
    buckets: VecDeque<Arc<Bucket<T>>>,
    width: i64,
    len: usize,
}

impl<T: Clone> Buckets<T> {
    fn new(width: i64) -> Self {
        Buckets {
            buckets: VecDeque::new(),
            width,
            len: 0,
        }
    }

    fn start_of(&self, ts: Timestamp) -> Timestamp {
        ts - ts.rem_euclid(self.width)
    }

    #[inline]
    fn push(&mut self, slot: Slot<T>) {
        let start = self.start_of(slot.ts);
        // Rows mostly arrive in time order: their bucket is the newest.
        let pos = match self.buckets.back() {
            Some(b) if b.start == start => self.buckets.len() - 1,
            Some(b) if b.start > start => {
                match self.buckets.binary_search_by_key(&start, |b| b.start) {
                    Ok(p) => p,
                    Err(p) => {
                        self.buckets.insert(p, Arc::new(Bucket::new(start)));
                        p
                    }
                }
            }
            _ => {
                self.buckets.push_back(Arc::new(Bucket::new(start)));
                self.buckets.len() - 1
            }
        };
        Arc::make_mut(&mut self.buckets[pos]).push(slot);
        self.len += 1;
    }

    /// Puts each bucket's rows in time order (equal times keep their order); before any
    /// probe, since an index refers to rows by position.
    fn sort_rows(&mut self) {
        for b in self.buckets.iter_mut() {
            let b = Arc::make_mut(b);
            debug_assert!(b.index.is_none());
            b.rows.sort_by_key(|s| (s.ts, s.seq));
        }
    }

    /// The rows with key hash `hash` and a time in `[lo, hi]` for which `same_key` holds,
    /// as (bucket position, row) in time order (equal times in arrival order).
    #[inline]
    fn find(
        &mut self,
        hash: u64,
        (lo, hi): (Timestamp, Timestamp),
        same_key: impl Fn(&T) -> bool,
        found: &mut Vec<(u32, u32)>,
    ) {
        found.clear();
        if lo > hi {
            return;
        }
        let first = self
            .buckets
            .partition_point(|b| b.start.saturating_add(self.width) <= lo);
        for pos in first..self.buckets.len() {
            let bucket = &mut self.buckets[pos];
            if bucket.start > hi {
                break;
            }
            let from = found.len();
            let hit =
                |s: &Slot<T>| s.hash == hash && s.ts >= lo && s.ts <= hi && same_key(&s.value);
            if bucket.index.is_none()
                && bucket.rows.len() >= SMALL_BUCKET
                && bucket.scans >= SCANS_BEFORE_INDEX
                && let Some(b) = Arc::get_mut(bucket)
            {
                b.build_index();
            }
            match &bucket.index {
                Some(index) => {
                    found.extend(
                        index
                            .rows(hash)
                            .filter(|&i| hit(&bucket.rows[i as usize]))
                            .map(|i| (pos as u32, i)),
                    );
                    found[from..].reverse();
                }
                None => {
                    for (i, s) in bucket.rows.iter().enumerate() {
                        if hit(s) {
                            found.push((pos as u32, i as u32));
                        }
                    }
                    // Counted only while no checkpoint shares the bucket (a shared one is
                    // copied on write, which a counter is not worth).
                    if let Some(b) = Arc::get_mut(bucket) {
                        b.scans += 1;
                    }
                }
            }
            let rows = &bucket.rows;
            if !found[from..].is_sorted_by_key(|&(_, i)| rows[i as usize].ts) {
                found[from..].sort_by_key(|&(_, i)| rows[i as usize].ts);
            }
        }
    }

    /// Joins a new row with the rows of key hash `hash` in `range` that have its key
    /// (`same_key`), oldest first: `join` says whether a pair joined, and those rows are
    /// marked matched when `mark`. Returns whether any pair joined.
    #[inline]
    fn join_waiting(
        &mut self,
        hash: u64,
        range: (Timestamp, Timestamp),
        same_key: impl Fn(&T) -> bool,
        mark: bool,
        found: &mut Vec<(u32, u32)>,
        mut join: impl FnMut(&T, Timestamp) -> Result<bool>,
    ) -> Result<bool> {
        self.find(hash, range, same_key, found);
        let mut any = false;
        for &(pos, i) in found.iter() {
            let s = &self.buckets[pos as usize].rows[i as usize];
            if join(&s.value, s.ts)? {
                any = true;
                if mark && !s.matched {
                    let b = Arc::make_mut(&mut self.buckets[pos as usize]);
                    let s = &mut b.rows[i as usize];
                    s.matched = true;
                    if s.stored {
                        s.stored = false;
                        b.dirty = true;
                    }
                }
            }
        }
        Ok(any)
    }

    /// Drops the rows at or before `dead`, whole buckets at a time (a bucket goes once all
    /// its rows have expired). When `keep`, first hands every expired row that joined
    /// nothing to `unmatched`, in time order, each once.
    fn expire(
        &mut self,
        dead: Timestamp,
        keep: bool,
        mut unmatched: impl FnMut(Timestamp, T) -> Result<()>,
    ) -> Result<()> {
        while let Some(front) = self.buckets.front() {
            if front.start.saturating_add(self.width - 1) > dead {
                break;
            }
            let b = self.buckets.pop_front().expect("a front bucket");
            self.len -= b.rows.len();
            if keep {
                let b = Arc::unwrap_or_clone(b);
                let from = b.emitted_up_to;
                let mut rows: Vec<Slot<T>> = b
                    .rows
                    .into_iter()
                    .filter(|s| !s.matched && s.ts > from)
                    .collect();
                rows.sort_by_key(|s| s.ts);
                for s in rows {
                    unmatched(s.ts, s.value)?;
                }
            }
        }
        // The oldest bucket partly expired: its expired unmatched rows go now, and stay in it
        // (dead to probes) until the whole bucket goes.
        if keep
            && let Some(front) = self.buckets.front_mut()
            && front.start <= dead
            && front.emitted_up_to < dead
        {
            let from = front.emitted_up_to;
            let b = Arc::make_mut(front);
            b.emitted_up_to = dead;
            let mut due: Vec<&Slot<T>> = b
                .rows
                .iter()
                .filter(|s| !s.matched && s.ts > from && s.ts <= dead)
                .collect();
            due.sort_by_key(|s| s.ts);
            for s in due {
                unmatched(s.ts, s.value.clone())?;
            }
        }
        Ok(())
    }
}

/// A bucket whose rows are in RocksDB only: what a probe needs to know to skip it.
#[derive(Debug)]
struct Spilled {
    start: Timestamp,
    /// The hashes of its rows' keys.
    hashes: HashSet<u64>,
    rows: usize,
    /// As [`Bucket::emitted_up_to`].
    emitted_up_to: Timestamp,
}

/// The rocksdb side of a buffer.
struct Disk {
    /// `len ++ name ++ side`: the RocksDB key part after the key group.
    prefix: Vec<u8>,
    /// Rows kept in memory at most.
    capacity: usize,
    /// Buckets in RocksDB only, oldest first; their starts are not in memory.
    spilled: VecDeque<Spilled>,
    /// Key groups RocksDB may hold rows of.
    key_groups: BTreeSet<u16>,
    /// Buckets before this start are deleted from RocksDB; those before `delete_to` are to
    /// be at the next snapshot's write-back.
    deleted_to: Timestamp,
    delete_to: Timestamp,
    /// Scratch: a serialized key and a RocksDB key.
    key: Vec<u8>,
    row_key: Vec<u8>,
}

impl Disk {
    /// `key group | state | side | bucket start` into `out`.
    fn bucket_key(&self, kg: usize, start: Timestamp, out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(&(kg as u16).to_be_bytes());
        out.extend_from_slice(&self.prefix);
        out.extend_from_slice(&enc(start));
    }

    fn spilled_at(&mut self, start: Timestamp) -> Option<&mut Spilled> {
        let pos = self
            .spilled
            .binary_search_by_key(&start, |s| s.start)
            .ok()?;
        Some(&mut self.spilled[pos])
    }
}

/// The end (exclusive) of the buckets of width `width` that lie wholly at or before `dead`.
fn dead_buckets_end(dead: Timestamp, width: i64) -> Timestamp {
    let next = dead.saturating_add(1);
    next - next.rem_euclid(width)
}

/// A row's RocksDB value: TTL stamp (unused: 0) ++ postcard `(matched, row)`.
fn encode_row<T: serde::Serialize>(matched: bool, value: &T, out: &mut Vec<u8>) -> Result<()> {
    out.clear();
    out.extend_from_slice(&0i64.to_le_bytes());
    let buf =
        postcard::to_extend(&(matched, value), std::mem::take(out)).map_err(|e| Error::State {
            state: "time buffer".into(),
            reason: format!("a row cannot be serialized: {e}"),
        })?;
    *out = buf;
    Ok(())
}

fn decode_row<T: serde::de::DeserializeOwned>(name: &str, bytes: &[u8]) -> Result<(bool, T)> {
    postcard::from_bytes(bytes).map_err(|e| Error::State {
        state: name.to_string(),
        reason: format!(
            "cannot decode a buffered row ({e}); did the row type change since the checkpoint?"
        ),
    })
}

/// A row read from RocksDB.
struct DiskRow<T> {
    key: Vec<u8>,
    ts: Timestamp,
    matched: bool,
    value: T,
}

/// One buffer state of one operator subtask (see the module docs).
pub(crate) struct TimeBuffer<K, T> {
    name: String,
    side: u8,
    key_fn: RowKeyFn<K, T>,
    hasher: DefaultHashBuilder,
    rows: Buckets<T>,
    found: Vec<(u32, u32)>,
    seq: u64,
    /// Rows at or before this time have expired.
    dead: Timestamp,
    max_parallelism: usize,
    disk: Option<Disk>,
}

impl<K: Key, T: super::StateValue> TimeBuffer<K, T> {
    /// A buffer of buckets `width` ms wide; on rocksdb (`disk`: the state's key prefix and
    /// the rows kept in memory) backed by RocksDB.
    pub(super) fn new(
        name: String,
        side: u8,
        width: i64,
        key_fn: RowKeyFn<K, T>,
        hasher: DefaultHashBuilder,
        max_parallelism: usize,
        rocks_capacity: Option<usize>,
    ) -> Self {
        let disk = rocks_capacity.map(|capacity| Disk {
            prefix: {
                let mut p = name_prefix(&name);
                p.push(side);
                p
            },
            capacity: capacity.max(1),
            spilled: VecDeque::new(),
            key_groups: BTreeSet::new(),
            deleted_to: Timestamp::MIN,
            delete_to: Timestamp::MIN,
            key: Vec::new(),
            row_key: Vec::new(),
        });
        TimeBuffer {
            name,
            side,
            key_fn,
            hasher,
            rows: Buckets::new(width.max(1)),
            found: Vec::new(),
            seq: 0,
            dead: Timestamp::MIN,
            max_parallelism,
            disk,
        }
    }

    /// Appends a row of key hash `hash` at `ts`.
    #[inline]
    pub(crate) fn push(
        &mut self,
        db: Option<&mut RocksStore>,
        hash: u64,
        ts: Timestamp,
        matched: bool,
        value: T,
    ) -> Result<()> {
        let seq = self.seq;
        self.seq += 1;
        if let Some(disk) = &mut self.disk
            && !disk.spilled.is_empty()
        {
            let start = self.rows.start_of(ts);
            if let Some(sp) = disk.spilled_at(start) {
                // A late row of a bucket in RocksDB: it goes there too.
                sp.hashes.insert(hash);
                sp.rows += 1;
                let db = db.expect("a rocksdb buffer has a database");
                serialize_key(&(self.key_fn)(&value), &mut disk.key);
                let kg = key_group_for_bytes(&disk.key, self.max_parallelism);
                let mut k = std::mem::take(&mut disk.row_key);
                disk.bucket_key(kg, start, &mut k);
                k.extend_from_slice(&disk.key);
                k.extend_from_slice(&enc(ts));
                k.extend_from_slice(&seq.to_be_bytes());
                let mut v = Vec::new();
                encode_row(matched, &value, &mut v)?;
                let mut batch = WriteBatch::default();
                batch.put(&k, &v);
                disk.row_key = k;
                disk.key_groups.insert(kg as u16);
                return db.write(batch);
            }
        }
        self.rows.push(Slot {
            ts,
            hash,
            seq,
            matched,
            stored: false,
            value,
        });
        if self
            .disk
            .as_ref()
            .is_some_and(|d| self.rows.len > d.capacity)
        {
            self.spill(db.expect("a rocksdb buffer has a database"))?;
        }
        Ok(())
    }

    /// Joins a new row of key `key` (hash `hash`) with the rows of that key in `range`,
    /// oldest first: `join` says whether a pair joined, and those rows are marked matched
    /// when `mark`. Returns whether any pair joined.
    #[inline]
    pub(crate) fn join(
        &mut self,
        db: Option<&mut RocksStore>,
        hash: u64,
        key: &K,
        range: (Timestamp, Timestamp),
        mark: bool,
        mut join: impl FnMut(&T, Timestamp) -> Result<bool>,
    ) -> Result<bool> {
        let key_fn = &self.key_fn;
        let same_key = |v: &T| key_fn(v) == *key;
        let in_rocksdb = self.disk.as_ref().is_some_and(|d| !d.spilled.is_empty());
        if !in_rocksdb {
            return self
                .rows
                .join_waiting(hash, range, same_key, mark, &mut self.found, join);
        }
        let db = db.expect("a rocksdb buffer has a database");
        let disk = self.disk.as_mut().expect("checked above");
        let (lo, hi) = range;
        let width = self.rows.width;
        let mut any = false;
        let mut from = lo;
        let mut key_written = false;
        let first = disk
            .spilled
            .partition_point(|s| s.start.saturating_add(width) <= lo);
        for pos in first..disk.spilled.len() {
            let sp = &disk.spilled[pos];
            if sp.start > hi {
                break;
            }
            // Buckets in memory before this one (their starts differ from every spilled one).
            if from < sp.start {
                let part = (from, sp.start - 1);
                any |= self.rows.join_waiting(
                    hash,
                    part,
                    same_key,
                    mark,
                    &mut self.found,
                    &mut join,
                )?;
            }
            from = sp.start.saturating_add(width);
            if !sp.hashes.contains(&hash) {
                continue;
            }
            if !key_written {
                serialize_key(key, &mut disk.key);
                key_written = true;
            }
            let kg = key_group_for_bytes(&disk.key, self.max_parallelism);
            let (a, b) = (lo.max(sp.start), hi.min(sp.start.saturating_add(width - 1)));
            let mut base = std::mem::take(&mut disk.row_key);
            disk.bucket_key(kg, sp.start, &mut base);
            base.extend_from_slice(&disk.key);
            let rows = scan_rows::<T>(db, &self.name, &base, a, b)?;
            disk.row_key = base;
            let mut batch = WriteBatch::default();
            let mut v = Vec::new();
            for r in rows {
                if join(&r.value, r.ts)? {
                    any = true;
                    if mark && !r.matched {
                        encode_row(true, &r.value, &mut v)?;
                        batch.put(&r.key, &v);
                    }
                }
            }
            if !batch.is_empty() {
                db.write(batch)?;
            }
        }
        if from <= hi {
            any |=
                self.rows
                    .join_waiting(hash, (from, hi), same_key, mark, &mut self.found, join)?;
        }
        Ok(any)
    }

    /// Drops the rows at or before `dead`. When `keep`, first hands every expired row that
    /// joined nothing to `unmatched`, in time order, each once.
    pub(crate) fn expire(
        &mut self,
        db: Option<&mut RocksStore>,
        dead: Timestamp,
        keep: bool,
        mut unmatched: impl FnMut(Timestamp, T) -> Result<()>,
    ) -> Result<()> {
        if dead <= self.dead {
            return Ok(());
        }
        self.dead = dead;
        let width = self.rows.width;
        let Some(disk) = &mut self.disk else {
            return self.rows.expire(dead, keep, unmatched);
        };
        disk.delete_to = disk.delete_to.max(dead_buckets_end(dead, width));
        if disk.spilled.front().is_none_or(|s| s.start > dead) {
            return self.rows.expire(dead, keep, unmatched);
        }
        // Rows of memory and of RocksDB: handed on together in time order.
        let mut due = Vec::new();
        self.rows.expire(dead, keep, |ts, v| {
            due.push((ts, v));
            Ok(())
        })?;
        let db = db.expect("a rocksdb buffer has a database");
        let mut base = Vec::new();
        while let Some((start, emitted)) = disk
            .spilled
            .front()
            .filter(|s| s.start <= dead)
            .map(|s| (s.start, s.emitted_up_to))
        {
            if keep && emitted < dead {
                for &kg in &disk.key_groups {
                    disk.bucket_key(kg as usize, start, &mut base);
                    for_each_row::<T>(db, &self.name, &base, |r| {
                        if !r.matched && r.ts > emitted && r.ts <= dead {
                            due.push((r.ts, r.value));
                        }
                    })?;
                }
                disk.spilled[0].emitted_up_to = dead;
            }
            if start.saturating_add(width - 1) > dead {
                break;
            }
            disk.spilled.pop_front();
        }
        due.sort_by_key(|d| d.0);
        for (ts, v) in due {
            unmatched(ts, v)?;
        }
        Ok(())
    }

    /// Rows waiting, in memory and in RocksDB.
    pub(crate) fn len(&self) -> usize {
        self.rows.len
            + self
                .disk
                .as_ref()
                .map_or(0, |d| d.spilled.iter().map(|s| s.rows).sum())
    }

    /// Writes every row RocksDB does not hold as it is (rocksdb). For a `snapshot`, also
    /// deletes the expired rows RocksDB still holds; between snapshots they stay, as no probe
    /// reaches them, so that range deletes (which every RocksDB read then passes) come once
    /// per checkpoint, not once per cache cycle.
    fn write_back_rows(&mut self, db: &mut RocksStore, snapshot: bool) -> Result<()> {
        let Some(disk) = &mut self.disk else {
            return Ok(());
        };
        let mut batch = WriteBatch::default();
        let mut k = Vec::new();
        if snapshot && disk.delete_to > disk.deleted_to {
            let (from, to) = (disk.deleted_to, disk.delete_to);
            for &kg in &disk.key_groups {
                let mut a = Vec::new();
                disk.bucket_key(kg as usize, from, &mut a);
                disk.bucket_key(kg as usize, to, &mut k);
                batch.delete_range(&a, &k);
            }
            disk.deleted_to = to;
        }
        let dead = self.dead;
        let mut v = Vec::new();
        for b in self.rows.buckets.iter_mut() {
            // Rows in a partly expired bucket stay (dead to probes) but leave RocksDB: a
            // restored buffer holds no expired row.
            let part_dead = b.start <= dead;
            if !b.dirty && !part_dead {
                continue;
            }
            let b = Arc::make_mut(b);
            let start = b.start;
            for s in b.rows.iter_mut() {
                let dead_row = s.ts <= dead;
                if s.stored != dead_row {
                    continue;
                }
                serialize_key(&(self.key_fn)(&s.value), &mut disk.key);
                let kg = key_group_for_bytes(&disk.key, self.max_parallelism);
                disk.bucket_key(kg, start, &mut k);
                k.extend_from_slice(&disk.key);
                k.extend_from_slice(&enc(s.ts));
                k.extend_from_slice(&s.seq.to_be_bytes());
                if dead_row {
                    batch.delete(&k);
                    s.stored = false;
                } else {
                    encode_row(s.matched, &s.value, &mut v)?;
                    batch.put(&k, &v);
                    disk.key_groups.insert(kg as u16);
                    s.stored = true;
                }
            }
            b.dirty = false;
        }
        // The same for the partly expired bucket in RocksDB.
        if snapshot
            && let Some(sp) = disk.spilled.front()
            && sp.start <= dead
        {
            for &kg in &disk.key_groups {
                disk.bucket_key(kg as usize, sp.start, &mut k);
                scan(db, &k, &upper(&k), |key, value| {
                    let ts = dec(&key[key.len() - 16..key.len() - 8]);
                    let _ = value;
                    if ts <= dead {
                        batch.delete(key);
                    }
                    Ok(())
                })?;
            }
        }
        if !batch.is_empty() {
            db.write(batch)?;
        }
        Ok(())
    }

    /// Writes the memory back and moves its oldest buckets to RocksDB until half of the
    /// capacity is left.
    fn spill(&mut self, db: &mut RocksStore) -> Result<()> {
        self.write_back_rows(db, false)?;
        let disk = self.disk.as_mut().expect("rocksdb");
        while self.rows.len > disk.capacity / 2
            && let Some(b) = self.rows.buckets.pop_front()
        {
            self.rows.len -= b.rows.len();
            let sp = Spilled {
                start: b.start,
                hashes: b.rows.iter().map(|s| s.hash).collect(),
                rows: b.rows.len(),
                emitted_up_to: b.emitted_up_to,
            };
            let at = disk.spilled.partition_point(|s| s.start < sp.start);
            disk.spilled.insert(at, sp);
        }
        Ok(())
    }

    /// Reads the buffer back from RocksDB after a restore (the database holds it whole).
    fn reload(&mut self, db: &mut RocksStore, range: KeyGroupRange) -> Result<()> {
        let Some(disk) = &mut self.disk else {
            return Ok(());
        };
        self.rows = Buckets::new(self.rows.width);
        disk.spilled.clear();
        disk.key_groups.clear();
        let mut k = Vec::new();
        let mut rows = Vec::new();
        for kg in range.start..range.end {
            k.clear();
            k.extend_from_slice(&(kg as u16).to_be_bytes());
            k.extend_from_slice(&disk.prefix);
            let base = k.len();
            scan(db, &k, &upper(&k), |key, value| {
                let ts = dec(&key[key.len() - 16..key.len() - 8]);
                let seq = u64::from_be_bytes(key[key.len() - 8..].try_into().expect("8"));
                let (matched, value): (bool, T) =
                    decode_row(&self.name, super::rocksdb::split_value(value).1)?;
                debug_assert!(key.len() >= base + 24);
                rows.push((kg, ts, seq, matched, value));
                Ok(())
            })?;
        }
        for (kg, ts, seq, matched, value) in rows {
            disk.key_groups.insert(kg as u16);
            self.seq = self.seq.max(seq + 1);
            let hash = self.hasher.hash_one((self.key_fn)(&value));
            self.rows.push(Slot {
                ts,
                hash,
                seq,
                matched,
                stored: true,
                value,
            });
        }
        self.rows.sort_rows();
        let capacity = disk.capacity;
        if self.rows.len > capacity {
            self.spill(db)?;
        }
        Ok(())
    }
}

/// The first key after every key starting with `prefix`.
fn upper(prefix: &[u8]) -> Vec<u8> {
    let mut u = prefix.to_vec();
    u.extend_from_slice(&[0xff; 32]);
    u
}

/// Hands every entry in `[from, to)` to `f`.
fn scan(
    db: &RocksStore,
    from: &[u8],
    to: &[u8],
    f: impl FnMut(&[u8], &[u8]) -> Result<()>,
) -> Result<()> {
    db.scan(from, to, f)
}

/// The rows under `base` (`key group | state | bucket | key`) with a time in `[a, b]`, in
/// time order.
fn scan_rows<T: serde::de::DeserializeOwned>(
    db: &RocksStore,
    name: &str,
    base: &[u8],
    a: Timestamp,
    b: Timestamp,
) -> Result<Vec<DiskRow<T>>> {
    let mut from = base.to_vec();
    from.extend_from_slice(&enc(a));
    let mut to = base.to_vec();
    to.extend_from_slice(&enc(b));
    to.extend_from_slice(&[0xff; 9]);
    let mut out = Vec::new();
    scan(db, &from, &to, |key, value| {
        // Exactly this key: its time and sequence number follow it.
        if key.len() != base.len() + 16 {
            return Ok(());
        }
        let (matched, value) = decode_row(name, super::rocksdb::split_value(value).1)?;
        out.push(DiskRow {
            key: key.to_vec(),
            ts: dec(&key[base.len()..base.len() + 8]),
            matched,
            value,
        });
        Ok(())
    })?;
    Ok(out)
}

/// Every row of one bucket in one key group (`base`: `key group | state | bucket`).
fn for_each_row<T: serde::de::DeserializeOwned>(
    db: &RocksStore,
    name: &str,
    base: &[u8],
    mut f: impl FnMut(DiskRow<T>),
) -> Result<()> {
    scan(db, base, &upper(base), |key, value| {
        let (matched, value) = decode_row(name, super::rocksdb::split_value(value).1)?;
        f(DiskRow {
            key: Vec::new(),
            ts: dec(&key[key.len() - 16..key.len() - 8]),
            matched,
            value,
        });
        Ok(())
    })
}

/// A typed handle on a buffer state (see the module docs), registered with
/// `KeyedStateBackend::register_time_buffer`.
pub(crate) struct TimeBufferState<K, T> {
    pub(super) id: usize,
    pub(super) _p: PhantomData<fn() -> (K, T)>,
}

impl<K, T> Clone for TimeBufferState<K, T> {
    fn clone(&self) -> Self {
        TimeBufferState {
            id: self.id,
            _p: PhantomData,
        }
    }
}

/// A buffer state without its types, as the backend holds it.
pub(super) trait AnyBuffer: Send {
    fn as_any_mut(&mut self) -> &mut dyn Any;
    fn name(&self) -> &str;
    fn side(&self) -> u8;
    fn len(&self) -> usize;
    /// rocksdb: makes RocksDB hold the whole buffer (a checkpoint, a savepoint).
    fn write_back(&mut self, db: &mut RocksStore) -> Result<()>;
    /// rocksdb: reads the buffer back after a restore.
    fn reload(&mut self, db: &mut RocksStore, range: KeyGroupRange) -> Result<()>;
    /// hashmap: the rows as they are now, shared copy-on-write.
    fn freeze(&self) -> Box<dyn FrozenBuffer>;
    /// hashmap: adds restored rows of key group `kg`.
    fn restore_group(&mut self, kg: usize, entries: &[SnapshotEntry]) -> Result<()>;
    /// hashmap: after every restored group.
    fn finish_restore(&mut self);
}

/// A buffer's rows as a checkpoint saw them, serialized off the task thread.
pub(super) trait FrozenBuffer: Send {
    fn name(&self) -> &str;
    /// Canonical entries of the live rows, with their key groups.
    fn serialize(&self) -> Result<Vec<(usize, SnapshotEntry)>>;
}

struct Frozen<K, T> {
    name: String,
    side: u8,
    buckets: Vec<Arc<Bucket<T>>>,
    dead: Timestamp,
    key_fn: RowKeyFn<K, T>,
    max_parallelism: usize,
}

impl<K: Key, T: super::StateValue> FrozenBuffer for Frozen<K, T> {
    fn name(&self) -> &str {
        &self.name
    }

    fn serialize(&self) -> Result<Vec<(usize, SnapshotEntry)>> {
        let mut out = Vec::new();
        let mut key = Vec::new();
        for b in &self.buckets {
            for s in b.rows.iter().filter(|s| s.ts > self.dead) {
                serialize_key(&(self.key_fn)(&s.value), &mut key);
                let kg = key_group_for_bytes(&key, self.max_parallelism);
                let mut k = Vec::with_capacity(key.len() + 25);
                k.push(self.side);
                k.extend_from_slice(&enc(b.start));
                k.extend_from_slice(&key);
                k.extend_from_slice(&enc(s.ts));
                k.extend_from_slice(&s.seq.to_be_bytes());
                let value =
                    postcard::to_allocvec(&(s.matched, &s.value)).map_err(|e| Error::State {
                        state: self.name.clone(),
                        reason: e.to_string(),
                    })?;
                out.push((
                    kg,
                    SnapshotEntry {
                        key: k,
                        value,
                        stamp: 0,
                    },
                ));
            }
        }
        Ok(out)
    }
}

impl<K: Key, T: super::StateValue> AnyBuffer for TimeBuffer<K, T> {
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn side(&self) -> u8 {
        self.side
    }

    fn len(&self) -> usize {
        TimeBuffer::len(self)
    }

    fn write_back(&mut self, db: &mut RocksStore) -> Result<()> {
        self.write_back_rows(db, true)
    }

    fn reload(&mut self, db: &mut RocksStore, range: KeyGroupRange) -> Result<()> {
        TimeBuffer::reload(self, db, range)
    }

    fn freeze(&self) -> Box<dyn FrozenBuffer> {
        Box::new(Frozen {
            name: self.name.clone(),
            side: self.side,
            buckets: self.rows.buckets.iter().cloned().collect(),
            dead: self.dead,
            key_fn: self.key_fn.clone(),
            max_parallelism: self.max_parallelism,
        })
    }

    fn restore_group(&mut self, _kg: usize, entries: &[SnapshotEntry]) -> Result<()> {
        for e in entries {
            let k = &e.key;
            if k.len() < 25 {
                return Err(Error::State {
                    state: self.name.clone(),
                    reason: format!(
                        "a snapshot entry's key of {} bytes is no buffered row's (side, bucket, \
                         key, time, sequence number: 25 bytes at least); is the checkpoint of \
                         another layout of this state?",
                        k.len()
                    ),
                });
            }
            if k[0] != self.side {
                continue;
            }
            let ts = dec(&k[k.len() - 16..k.len() - 8]);
            let seq = u64::from_be_bytes(k[k.len() - 8..].try_into().expect("8 bytes"));
            let (matched, value): (bool, T) = decode_row(&self.name, &e.value)?;
            let hash = self.hasher.hash_one((self.key_fn)(&value));
            self.seq = self.seq.max(seq + 1);
            self.rows.push(Slot {
                ts,
                hash,
                seq,
                matched,
                stored: false,
                value,
            });
        }
        Ok(())
    }

    fn finish_restore(&mut self) {
        self.rows.sort_rows();
    }
}

#[cfg(test)]
mod tests {
    use super::super::{KeyGroupSnapshot, KeyedStateBackend};
    use super::*;

    type Row = (String, Timestamp);

    fn heap() -> KeyedStateBackend {
        KeyedStateBackend::new(KeyGroupRange { start: 0, end: 128 }, 128)
    }

    fn rocks(dir: &std::path::Path, cache: usize) -> KeyedStateBackend {
        let range = KeyGroupRange { start: 0, end: 128 };
        let mut b =
            KeyedStateBackend::new_rocksdb(range, 128, dir, "op", 0, Default::default(), cache);
        b.rocks().unwrap().unwrap().open(None).unwrap();
        b
    }

    fn register(
        b: &mut KeyedStateBackend,
        hasher: &DefaultHashBuilder,
    ) -> TimeBufferState<String, Row> {
        b.register_time_buffer("rows", 1, 10, Arc::new(|r: &Row| r.0.clone()), *hasher)
            .unwrap()
    }

    /// Pushes rows of keys a..d at times 0..60, joins and marks some, expires the oldest
    /// (handing on unmatched rows); returns what joined and what was handed on.
    fn exercise(
        b: &mut KeyedStateBackend,
        s: &TimeBufferState<String, Row>,
        h: &DefaultHashBuilder,
    ) -> (Vec<Row>, Vec<Row>) {
        for i in 0..60i64 {
            let row = (["a", "b", "c", "d"][i as usize % 4].to_string(), i);
            let hash = h.hash_one(&row.0);
            let (buf, db) = b.time_buffer(s);
            buf.push(db, hash, row.1, false, row).unwrap();
        }
        let mut joined = Vec::new();
        for (k, range) in [("a", (3, 30)), ("c", (0, 45)), ("b", (50, 70))] {
            let key = k.to_string();
            let (buf, db) = b.time_buffer(s);
            buf.join(db, h.hash_one(&key), &key, range, true, |r, _| {
                joined.push(r.clone());
                Ok(true)
            })
            .unwrap();
        }
        let mut unmatched = Vec::new();
        for dead in [15, 25] {
            let (buf, db) = b.time_buffer(s);
            buf.expire(db, dead, true, |_, r| {
                unmatched.push(r);
                Ok(())
            })
            .unwrap();
        }
        (joined, unmatched)
    }

    fn canonical(b: &mut KeyedStateBackend) -> Vec<KeyGroupSnapshot> {
        let mut groups = b.snapshot().unwrap();
        groups.retain(|g| !g.states.is_empty());
        groups
    }

    #[test]
    fn a_buffer_behaves_and_snapshots_alike_in_memory_and_in_rocksdb_and_restores_into_either() {
        let h = DefaultHashBuilder::default();
        let mut mem = heap();
        let s = register(&mut mem, &h);
        let (joined, unmatched) = exercise(&mut mem, &s, &h);
        // Rows of a in [3, 30] in time order, then c in [0, 45], then b in [50, 70].
        let times = |k: &str, lo: i64, hi: i64| -> Vec<Row> {
            (lo..=hi)
                .filter(|i| ["a", "b", "c", "d"][*i as usize % 4] == k)
                .map(|i| (k.to_string(), i))
                .collect()
        };
        let mut want = times("a", 3, 30);
        want.extend(times("c", 0, 45));
        want.extend(times("b", 50, 59));
        assert_eq!(joined, want);
        // Rows at or before 25 that joined nothing: b and d, and a at 0, in time order.
        let mut want: Vec<Row> = (0..=25)
            .filter(|i| i % 4 == 1 || i % 4 == 3 || *i == 0)
            .map(|i| (["a", "b", "c", "d"][i as usize % 4].to_string(), i))
            .collect();
        want.sort_by_key(|r| r.1);
        assert_eq!(unmatched, want);
        let expected = canonical(&mut mem);
        let rows: usize = expected
            .iter()
            .flat_map(|g| &g.states)
            .map(|s| s.entries.len())
            .sum();
        assert_eq!(rows, 60 - 26, "expired rows are not in the snapshot");

        // In RocksDB behind memory for 3 rows (most rows in RocksDB only), or for all of them.
        for cache in [3, 1000] {
            let dir = tempfile::tempdir().unwrap();
            let mut db = rocks(dir.path(), cache);
            let s = register(&mut db, &h);
            assert_eq!(
                exercise(&mut db, &s, &h),
                (joined.clone(), unmatched.clone())
            );
            assert_eq!(canonical(&mut db), expected, "cache of {cache}");

            // A snapshot of either restores into the other and goes on alike.
            let dir2 = tempfile::tempdir().unwrap();
            let mut db2 = rocks(dir2.path(), cache);
            let s2 = register(&mut db2, &h);
            db2.restore(&expected).unwrap();
            let mut mem2 = heap();
            let m2 = register(&mut mem2, &h);
            mem2.restore(&canonical(&mut db)).unwrap();
            for (b, s) in [(&mut db2, &s2), (&mut mem2, &m2)] {
                let key = "d".to_string();
                let (buf, db) = b.time_buffer(s);
                let mut got = Vec::new();
                buf.join(db, h.hash_one(&key), &key, (0, 100), false, |r, _| {
                    got.push(r.1);
                    Ok(true)
                })
                .unwrap();
                assert_eq!(got, (27..60).filter(|i| i % 4 == 3).collect::<Vec<_>>());
                assert_eq!(canonical(b), expected);
            }
        }
    }
}
