//! The `rocksdb` keyed state backend: one local RocksDB instance per keyed operator subtask.
//!
//! Key layout: `key group (u16, big-endian) ++ state name length (u16, big-endian) ++ state
//! name ++ serialized key ++ namespace`, so every key group is one contiguous key range and
//! rescaling copies ranges. Value layout: `TTL stamp (i64, little-endian) ++ postcard value`,
//! the same value bytes the canonical snapshot format carries.
//!
//! The write-ahead log is disabled (checkpoints provide durability, as in Flink): a checkpoint
//! flushes the memtable and takes a RocksDB checkpoint (hard links to the immutable SST files
//! plus copies of MANIFEST/CURRENT/OPTIONS) in the working directory. The coordinator thread
//! uploads that directory asynchronously; the task only pays for the flush and the links.
//!
//! RocksDB calls block; they run on the task's own thread (tasks are threads), never on an
//! async executor.

use super::{KeyGroupSnapshot, SnapshotEntry, StateSnapshot, StateValue};
use crate::error::{Error, Result};
use crate::keygroup::KeyGroupRange;
use crate::time::Timestamp;
use rocksdb::{
    BlockBasedIndexType, BlockBasedOptions, DB, Direction, IngestExternalFileOptions, IteratorMode,
    Options, SstFileWriter, WriteBatch, WriteOptions,
};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use weir_storage::ObjectStore;

fn db_error(action: &'static str, path: &Path, e: rocksdb::Error) -> Error {
    Error::RocksDb {
        action,
        path: path.to_path_buf(),
        reason: e.into_string(),
    }
}

/// A file of an incremental RocksDB checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateFile {
    /// Its name in the RocksDB directory (`000012.sst`, `MANIFEST-000005`, ...).
    pub name: String,
    /// Where it is stored, relative to the job's checkpoint directory (`<dir>/<job-id>/`):
    /// `shared/<instance>-000012.sst` or `chk-<n>/<uid>-<subtask>-rocksdb/MANIFEST-000005`.
    pub object: String,
    /// Size in bytes.
    pub size: u64,
}

/// What one rocksdb subtask's incremental checkpoint consists of (recorded in `_metadata`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncrementalHandle {
    /// The key groups the database holds.
    pub key_groups: KeyGroupRange,
    /// Names of the states in the database.
    pub states: Vec<String>,
    /// SST files, immutable and shared between checkpoints (reference-counted).
    pub shared: Vec<StateFile>,
    /// MANIFEST, CURRENT, OPTIONS and the like: this checkpoint's own copies.
    pub private: Vec<StateFile>,
}

impl IncrementalHandle {
    /// Bytes of every file the handle references.
    pub fn full_size(&self) -> u64 {
        self.shared
            .iter()
            .chain(&self.private)
            .map(|f| f.size)
            .sum()
    }
}

/// A RocksDB checkpoint on local disk waiting for the coordinator to upload it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalIncrementalSnapshot {
    /// The directory of hard links (removed once uploaded or abandoned).
    pub dir: std::path::PathBuf,
    /// The handle, with private files' objects still empty.
    pub handle: IncrementalHandle,
}

/// Incremental handles to restore from, with the store of the job directory they live in.
#[derive(Debug, Clone)]
pub struct IncrementalRestore {
    /// The store rooted at the checkpoint's job directory (`<dir>/<job-id>`).
    pub store: Arc<dyn ObjectStore>,
    /// Handles overlapping the restoring subtask's key groups.
    pub handles: Vec<IncrementalHandle>,
}

impl PartialEq for IncrementalRestore {
    fn eq(&self, other: &Self) -> bool {
        self.handles == other.handles && self.store.uri("") == other.store.uri("")
    }
}
impl Eq for IncrementalRestore {}

/// RocksDB's memtable size when no budget sets one (its `write_buffer_size` default).
const DEFAULT_MEMTABLE_BYTES: u64 = 64 << 20;

/// The RocksDB memory of one instance: a block cache shared with the other instances of the
/// process, a limit on its memtables and on its write cache ([`super::cached`]). Empty
/// without a budget (RocksDB's defaults; the write cache bounded in entries only).
#[derive(Clone, Default)]
pub struct RocksMemory {
    pub(crate) block_cache: Option<rocksdb::Cache>,
    pub(crate) block_cache_bytes: u64,
    pub(crate) write_buffer_bytes: u64,
    pub(crate) write_cache_bytes: u64,
}

impl RocksMemory {
    /// The shared block cache's capacity (0: RocksDB's default cache per instance).
    pub fn block_cache_bytes(&self) -> u64 {
        self.block_cache_bytes
    }

    /// This instance's memtable limit (0: RocksDB's default).
    pub fn write_buffer_bytes(&self) -> u64 {
        self.write_buffer_bytes
    }

    /// This instance's write cache limit in bytes (0: bounded in entries only).
    pub fn write_cache_bytes(&self) -> u64 {
        self.write_cache_bytes
    }

    /// One memtable's size: half the instance's limit (two memtables, one being flushed
    /// while the other fills), or RocksDB's default.
    pub(crate) fn memtable_bytes(&self) -> u64 {
        match self.write_buffer_bytes {
            0 => DEFAULT_MEMTABLE_BYTES,
            limit => limit / 2,
        }
    }
}

impl std::fmt::Debug for RocksMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksMemory")
            .field("block_cache_bytes", &self.block_cache_bytes)
            .field("write_buffer_bytes", &self.write_buffer_bytes)
            .field("write_cache_bytes", &self.write_cache_bytes)
            .finish()
    }
}

impl PartialEq for RocksMemory {
    fn eq(&self, other: &Self) -> bool {
        self.block_cache_bytes == other.block_cache_bytes
            && self.write_buffer_bytes == other.write_buffer_bytes
            && self.write_cache_bytes == other.write_cache_bytes
    }
}

impl Eq for RocksMemory {}

/// Options of every instance; with a memory budget, blocks go to the process's shared
/// cache (index and filter blocks included, so they count too) and memtables are capped.
///
/// Bloom filters (SST files and memtables): most reads that miss the write cache are for
/// keys RocksDB does not hold (a new window, a new join key), and without a filter each such
/// read searches every level-0 file's blocks.
///
/// In the shared cache, index and filters are partitioned (Flink's
/// `state.backend.rocksdb.memory.partitioned-index-filters`): a whole-file filter is about
/// 1.2 MiB per million keys, and a cache shard smaller than that (RocksDB cuts a 32 MiB cache
/// into 64 shards of 512 KiB) cannot keep it, so every read that missed the write cache read
/// and checksummed the file's entire filter again (bench/README.md, "Large state": 45 % of a
/// 4 M-key job's time). Partitions are 4 KiB blocks cached like data blocks; only the small
/// top-level index of each file stays pinned.
fn db_options(memory: &RocksMemory) -> Options {
    let mut o = Options::default();
    o.create_if_missing(true);
    let mut table = BlockBasedOptions::default();
    table.set_bloom_filter(10.0, false);
    if let Some(cache) = &memory.block_cache {
        table.set_block_cache(cache);
        table.set_cache_index_and_filter_blocks(true);
        table.set_index_type(BlockBasedIndexType::TwoLevelIndexSearch);
        table.set_partition_filters(true);
        table.set_metadata_block_size(4096);
        table.set_pin_top_level_index_and_filter(true);
    }
    o.set_block_based_table_factory(&table);
    o.set_memtable_prefix_bloom_ratio(0.1);
    o.set_memtable_whole_key_filtering(true);
    if memory.write_buffer_bytes > 0 {
        let limit = memory.write_buffer_bytes as usize;
        o.set_db_write_buffer_size(limit);
        o.set_write_buffer_size(limit / 2);
        o.set_max_write_buffer_number(2);
    }
    o
}

/// One keyed operator subtask's RocksDB instance and its working directory.
pub(crate) struct RocksStore {
    /// `<state.backend.rocksdb.localdir>`.
    local_dir: PathBuf,
    /// `rocksdb-<uid>-<subtask>-<instance>`: the working directory's name.
    name: String,
    /// Once opened: `<local_dir>/weir-<pid>-…/<name>`, inside the process's own directory
    /// ([`super::local_dir`]).
    dir: PathBuf,
    /// The process's directory, kept while this instance lives.
    process_dir: Option<std::sync::Arc<super::local_dir::ProcessDir>>,
    /// Random per instance: names this instance's SST files in `shared/`.
    instance: String,
    range: KeyGroupRange,
    db: Option<DB>,
    write: WriteOptions,
    /// Per registered state: `len ++ name`, the key part after the key group.
    prefixes: Vec<Vec<u8>>,
    /// SST files downloaded from an incremental checkpoint: local name → shared object, so
    /// they are referenced again instead of uploaded under a new name.
    restored_shared: HashMap<String, String>,
    /// State names found in restored data (for unclaimed-state reporting).
    restored_names: Vec<String>,
    memory: RocksMemory,
    /// Write-back files ingested so far (names the next one).
    ingested: u64,
}

impl std::fmt::Debug for RocksStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksStore")
            .field("dir", &self.dir)
            .finish()
    }
}

pub(super) fn name_prefix(name: &str) -> Vec<u8> {
    let mut p = Vec::with_capacity(2 + name.len());
    p.extend_from_slice(&(name.len() as u16).to_be_bytes());
    p.extend_from_slice(name.as_bytes());
    p
}

/// Splits a stored key into (key group, state name, key ++ namespace).
fn split_key(k: &[u8]) -> Option<(usize, &str, &[u8])> {
    let kg = u16::from_be_bytes(k.get(..2)?.try_into().ok()?) as usize;
    let len = u16::from_be_bytes(k.get(2..4)?.try_into().ok()?) as usize;
    let name = std::str::from_utf8(k.get(4..4 + len)?).ok()?;
    Some((kg, name, &k[4 + len..]))
}

pub(super) fn split_value(v: &[u8]) -> (Timestamp, &[u8]) {
    if v.len() < 8 {
        return (0, v);
    }
    let stamp = i64::from_le_bytes(v[..8].try_into().expect("8 bytes"));
    (stamp, &v[8..])
}

fn join_value(stamp: Timestamp, value: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + value.len());
    v.extend_from_slice(&stamp.to_le_bytes());
    v.extend_from_slice(value);
    v
}

/// A stored value of state `name`: its TTL stamp and the value decoded as `V`.
pub(crate) fn decode_entry<V: StateValue>(name: &str, stored: &[u8]) -> (Timestamp, V) {
    let (stamp, bytes) = split_value(stored);
    let v = postcard::from_bytes(bytes).unwrap_or_else(|e| {
        panic!(
            "state '{name}' in RocksDB cannot be decoded as the registered type ({e}); \
             did the state's type change since the checkpoint was taken?"
        )
    });
    (stamp, v)
}

impl RocksStore {
    /// A store for the key groups in `range`; nothing touches the disk before [`open`].
    pub(crate) fn new(
        local_dir: &Path,
        uid: &str,
        subtask: usize,
        range: KeyGroupRange,
        memory: RocksMemory,
    ) -> Self {
        let instance = format!("{:016x}", crate::keygroup::random_u64());
        let slug: String = uid
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .take(40)
            .collect();
        let mut write = WriteOptions::default();
        write.disable_wal(true);
        RocksStore {
            local_dir: local_dir.to_path_buf(),
            name: format!("rocksdb-{slug}-{subtask}-{instance}"),
            dir: PathBuf::new(),
            process_dir: None,
            instance,
            range,
            db: None,
            write,
            prefixes: Vec::new(),
            restored_shared: HashMap::new(),
            restored_names: Vec::new(),
            memory,
            ingested: 0,
        }
    }

    fn db_path(&self) -> PathBuf {
        self.dir.join("db")
    }

    /// Opens the database: from the files of an incremental checkpoint when one handle covers
    /// exactly this range, else empty plus the overlapping key groups copied from each
    /// restored database (rescaling).
    pub(crate) fn open(&mut self, restore: Option<&IncrementalRestore>) -> Result<()> {
        if self.db.is_some() {
            return Ok(());
        }
        let process_dir = super::local_dir::claim(&self.local_dir)?;
        self.dir = process_dir.path().join(&self.name);
        self.process_dir = Some(process_dir);
        let path = self.db_path();
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| Error::io("cannot create the RocksDB working directory", &self.dir, e))?;
        let handles: Vec<&IncrementalHandle> = restore
            .map(|r| {
                r.handles
                    .iter()
                    .filter(|h| {
                        h.key_groups.start < self.range.end && self.range.start < h.key_groups.end
                    })
                    .collect()
            })
            .unwrap_or_default();
        if let (Some(r), [h]) = (restore, handles.as_slice())
            && h.key_groups == self.range
        {
            download(r, h, &path)?;
            for f in &h.shared {
                self.restored_shared
                    .insert(f.name.clone(), f.object.clone());
            }
            self.restored_names.extend(h.states.iter().cloned());
            self.db = Some(
                DB::open(&db_options(&self.memory), &path)
                    .map_err(|e| db_error("cannot open", &path, e))?,
            );
            return Ok(());
        }
        let db = DB::open(&db_options(&self.memory), &path)
            .map_err(|e| db_error("cannot open", &path, e))?;
        if let Some(r) = restore {
            for (i, h) in handles.iter().enumerate() {
                let tmp = self.dir.join(format!("restore-{i}"));
                download(r, h, &tmp)?;
                let src = DB::open_for_read_only(&db_options(&self.memory), &tmp, false)
                    .map_err(|e| db_error("cannot open restored", &tmp, e))?;
                let start = (self.range.start.max(h.key_groups.start) as u16).to_be_bytes();
                let end = self.range.end.min(h.key_groups.end);
                let mut batch = WriteBatch::default();
                for item in src.iterator(IteratorMode::From(&start, Direction::Forward)) {
                    let (k, v) = item.map_err(|e| db_error("cannot read restored", &tmp, e))?;
                    let Some((kg, name, _)) = split_key(&k) else {
                        continue;
                    };
                    if kg >= end {
                        break;
                    }
                    if !self.restored_names.iter().any(|n| n == name) {
                        self.restored_names.push(name.to_string());
                    }
                    batch.put(&k, &v);
                    if batch.len() >= 10_000 {
                        db.write_opt(std::mem::take(&mut batch), &self.write)
                            .map_err(|e| db_error("cannot write to", &path, e))?;
                    }
                }
                db.write_opt(batch, &self.write)
                    .map_err(|e| db_error("cannot write to", &path, e))?;
                drop(src);
                let _ = std::fs::remove_dir_all(&tmp);
            }
        }
        self.db = Some(db);
        Ok(())
    }

    /// A RocksDB integer property of the open instance after a flush, and the database's
    /// directory (tests).
    #[cfg(test)]
    pub(crate) fn property(&mut self, name: &str) -> (Option<u64>, PathBuf) {
        self.db().flush().expect("flush");
        let v = self.db().property_int_value(name).ok().flatten();
        (v, self.db_path())
    }

    fn db(&mut self) -> &DB {
        if self.db.is_none() {
            // Every keyed operator opens its store in open(); this is a safety net.
            self.open(None)
                .unwrap_or_else(|e| panic!("{}", crate::error::report(&e)));
        }
        self.db.as_ref().expect("opened above")
    }

    /// Registers a state; returns its index.
    pub(crate) fn register(&mut self, name: &str) -> usize {
        self.prefixes.push(name_prefix(name));
        self.prefixes.len() - 1
    }

    /// Writes the RocksDB key of state `id`'s entry for `key` in `ns` (key group `kg`) to `out`.
    pub(crate) fn encode_key(
        &self,
        id: usize,
        kg: usize,
        key: &[u8],
        ns: &[u8],
        out: &mut Vec<u8>,
    ) {
        out.clear();
        out.extend_from_slice(&(kg as u16).to_be_bytes());
        out.extend_from_slice(&self.prefixes[id]);
        out.extend_from_slice(key);
        out.extend_from_slice(ns);
    }

    /// Opens the database if no keyed operator did (a safety net: every one opens its store
    /// in `open()`).
    pub(crate) fn ensure_open(&mut self) {
        self.db();
    }

    /// Hands the stored value under `key` (stamp and value bytes) to `f`, without copying it.
    pub(crate) fn read<R>(&self, key: &[u8], f: impl FnOnce(Option<&[u8]>) -> R) -> R {
        let db = self.db.as_ref().expect("opened by ensure_open");
        let v = db
            .get_pinned(key)
            .unwrap_or_else(|e| panic!("RocksDB read of {} failed: {e}", self.dir.display()));
        f(v.as_deref())
    }

    /// Hands every entry with a key in `[from, to)` to `f`, in key order.
    pub(crate) fn scan(
        &self,
        from: &[u8],
        to: &[u8],
        mut f: impl FnMut(&[u8], &[u8]) -> Result<()>,
    ) -> Result<()> {
        let db = self.db.as_ref().expect("opened by ensure_open");
        let mut opts = rocksdb::ReadOptions::default();
        opts.set_iterate_upper_bound(to.to_vec());
        let mut it = db.raw_iterator_opt(opts);
        it.seek(from);
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            f(k, v)?;
            it.next();
        }
        it.status()
            .map_err(|e| db_error("cannot read", &self.db_path(), e))
    }

    /// Applies a batch of writes (without WAL: checkpoints provide durability).
    pub(crate) fn write(&mut self, batch: WriteBatch) -> Result<()> {
        let path = self.db_path();
        let write = std::mem::take(&mut self.write);
        let r = self.db().write_opt(batch, &write);
        self.write = write;
        r.map_err(|e| db_error("cannot write to", &path, e))
    }

    /// One memtable's size in bytes: a write-back larger than this goes in as one sorted
    /// file ([`Self::ingest_sorted`]) rather than through the memtables.
    pub(crate) fn memtable_bytes(&self) -> u64 {
        self.memory.memtable_bytes()
    }

    /// Writes entries that `fill` hands over in strictly increasing key order (`None`: a
    /// delete) into one SST file and ingests it, so that they become one level-0 file (or
    /// land lower, where they overlap nothing) instead of passing through the memtables.
    ///
    /// Why: an incremental checkpoint uploads the SST files created since the last one. A
    /// write-back larger than a memtable, written through the memtables, becomes several
    /// level-0 files that each span the whole key range; four of them trigger a level-0
    /// compaction, which rewrites every overlapping file below: the whole state, uploaded
    /// again by the next checkpoint (bench/README.md, *Large state*). As one file, a
    /// checkpoint interval adds one level-0 file, and the state is rewritten once every few
    /// checkpoints (as Flink's is), not at every one.
    pub(crate) fn ingest_sorted(
        &mut self,
        fill: impl FnOnce(&mut dyn FnMut(&[u8], Option<&[u8]>) -> Result<()>) -> Result<()>,
    ) -> Result<()> {
        self.ensure_open();
        self.ingested += 1;
        let file = self.dir.join(format!("write-back-{}.sst", self.ingested));
        let options = db_options(&self.memory);
        let mut writer = SstFileWriter::create(&options);
        writer
            .open(&file)
            .map_err(|e| db_error("cannot create a write-back file", &file, e))?;
        let mut entries = 0usize;
        let mut add = |k: &[u8], v: Option<&[u8]>| -> Result<()> {
            match v {
                Some(v) => writer.put(k, v),
                None => writer.delete(k),
            }
            .map_err(|e| db_error("cannot write the write-back file", &file, e))?;
            entries += 1;
            Ok(())
        };
        let filled = fill(&mut add);
        let finished = match filled {
            Ok(()) if entries > 0 => writer
                .finish()
                .map_err(|e| db_error("cannot finish the write-back file", &file, e)),
            other => other,
        };
        drop(writer);
        let ingested = finished.and_then(|()| {
            if entries == 0 {
                return Ok(());
            }
            let mut opts = IngestExternalFileOptions::default();
            // A hard link into the database directory, not a copy.
            opts.set_move_files(true);
            let path = self.db_path();
            self.db()
                .ingest_external_file_opts(&opts, vec![&file])
                .map_err(|e| db_error("cannot ingest a write-back file into", &path, e))
        });
        let _ = std::fs::remove_file(&file);
        ingested
    }

    /// A RocksDB integer property (`rocksdb.block-cache-usage`, ...) of the open instance.
    pub(crate) fn int_property(&self, name: &str) -> Option<u64> {
        self.db.as_ref()?.property_int_value(name).ok().flatten()
    }

    /// Estimated number of entries (RocksDB's `estimate-num-keys`).
    pub(crate) fn entries(&self) -> usize {
        self.db
            .as_ref()
            .and_then(|db| {
                db.property_int_value("rocksdb.estimate-num-keys")
                    .ok()
                    .flatten()
            })
            .unwrap_or(0) as usize
    }

    /// Every entry of this range in the canonical format (savepoints, full checkpoints).
    pub(crate) fn snapshot_canonical(&mut self) -> Result<Vec<KeyGroupSnapshot>> {
        let start = (self.range.start as u16).to_be_bytes();
        let (range, path) = (self.range, self.db_path());
        let mut out: Vec<KeyGroupSnapshot> = (range.start..range.end)
            .map(|kg| KeyGroupSnapshot {
                key_group: kg as u32,
                ..Default::default()
            })
            .collect();
        for item in self
            .db()
            .iterator(IteratorMode::From(&start, Direction::Forward))
        {
            let (k, v) = item.map_err(|e| db_error("cannot read", &path, e))?;
            let Some((kg, name, key)) = split_key(&k) else {
                continue;
            };
            if kg >= range.end {
                break;
            }
            let (stamp, value) = split_value(&v);
            let g = &mut out[kg - range.start];
            if g.states.last().is_none_or(|s| s.name != name) {
                g.states.push(StateSnapshot {
                    name: name.to_string(),
                    entries: Vec::new(),
                });
            }
            g.states
                .last_mut()
                .expect("pushed")
                .entries
                .push(SnapshotEntry {
                    key: key.to_vec(),
                    value: value.to_vec(),
                    stamp,
                });
        }
        Ok(out)
    }

    /// Writes canonical entries of key groups in this range.
    pub(crate) fn restore_canonical(&mut self, groups: &[KeyGroupSnapshot]) -> Result<()> {
        let path = self.db_path();
        let mut batch = WriteBatch::default();
        for g in groups
            .iter()
            .filter(|g| self.range.contains(g.key_group as usize))
        {
            for st in &g.states {
                if !self.restored_names.contains(&st.name) {
                    self.restored_names.push(st.name.clone());
                }
                let mut k = Vec::new();
                k.extend_from_slice(&(g.key_group as u16).to_be_bytes());
                k.extend_from_slice(&name_prefix(&st.name));
                let base = k.len();
                for e in &st.entries {
                    k.truncate(base);
                    k.extend_from_slice(&e.key);
                    batch.put(&k, join_value(e.stamp, &e.value));
                }
            }
        }
        let write = std::mem::take(&mut self.write);
        let r = self.db().write_opt(batch, &write);
        self.write = write;
        r.map_err(|e| db_error("cannot write to", &path, e))
    }

    /// Names of states present in restored data.
    pub(crate) fn restored_names(&self) -> &[String] {
        &self.restored_names
    }

    /// The synchronous part of an incremental checkpoint: flush, then a RocksDB checkpoint
    /// (hard links) under the working directory. Uploading is the coordinator's job.
    pub(crate) fn checkpoint(
        &mut self,
        id: u64,
        states: Vec<String>,
    ) -> Result<LocalIncrementalSnapshot> {
        let target = self.dir.join(format!("chk-{id}"));
        let path = self.db_path();
        let db = self.db();
        db.flush().map_err(|e| db_error("cannot flush", &path, e))?;
        if target.exists() {
            let _ = std::fs::remove_dir_all(&target);
        }
        rocksdb::checkpoint::Checkpoint::new(db)
            .and_then(|c| c.create_checkpoint(&target))
            .map_err(|e| db_error("cannot create a checkpoint of", &path, e))?;
        let mut shared = Vec::new();
        let mut private = Vec::new();
        let entries = std::fs::read_dir(&target)
            .map_err(|e| Error::io("cannot list the RocksDB checkpoint", &target, e))?;
        for entry in entries {
            let entry =
                entry.map_err(|e| Error::io("cannot list the RocksDB checkpoint", &target, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let size = entry
                .metadata()
                .map_err(|e| Error::io("cannot stat", entry.path(), e))?
                .len();
            if name.ends_with(".sst") {
                let object = self
                    .restored_shared
                    .get(&name)
                    .cloned()
                    .unwrap_or_else(|| format!("shared/{}-{name}", self.instance));
                shared.push(StateFile { name, object, size });
            } else {
                private.push(StateFile {
                    name,
                    object: String::new(),
                    size,
                });
            }
        }
        shared.sort_by(|a, b| a.name.cmp(&b.name));
        private.sort_by(|a, b| a.name.cmp(&b.name));
        let mut states = states;
        for n in &self.restored_names {
            if !states.contains(n) {
                states.push(n.clone());
            }
        }
        Ok(LocalIncrementalSnapshot {
            dir: target,
            handle: IncrementalHandle {
                key_groups: self.range,
                states,
                shared,
                private,
            },
        })
    }
}

impl Drop for RocksStore {
    fn drop(&mut self) {
        self.db.take();
        // The whole working directory goes, including local checkpoints not uploaded yet: a
        // checkpoint still uploading when its task ends fails (it could not complete anyway).
        if self.process_dir.is_some() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Downloads the files of `h` into `dir` (which must not hold a database yet).
fn download(r: &IncrementalRestore, h: &IncrementalHandle, dir: &Path) -> Result<()> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).map_err(|e| Error::io("cannot create", dir, e))?;
    for f in h.shared.iter().chain(&h.private) {
        let bytes = r.store.get(&f.object).map_err(|e| {
            Error::Restore(format!(
                "cannot read RocksDB file {}: {}",
                r.store.uri(&f.object),
                crate::error::report(&e)
            ))
        })?;
        let p = dir.join(&f.name);
        std::fs::write(&p, &bytes).map_err(|e| Error::io("cannot write", p, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes this thread read through read(2)/pread(2) so far (Linux per-thread counters).
    fn thread_read_bytes() -> u64 {
        let io = std::fs::read_to_string("/proc/thread-self/io").expect("/proc/thread-self/io");
        io.lines()
            .find_map(|l| l.strip_prefix("rchar: "))
            .and_then(|v| v.trim().parse().ok())
            .expect("rchar in /proc/thread-self/io")
    }

    #[test]
    fn reads_of_absent_keys_under_a_small_shared_cache_do_not_read_whole_filters_again() {
        // The large-state benchmark's case: a 32 MiB shared cache (64 shards of 512 KiB)
        // and an SST of a million keys, whose whole-file filter (~1.2 MiB) fits no shard.
        let dir = tempfile::tempdir().unwrap();
        let memory = RocksMemory {
            block_cache: Some(rocksdb::Cache::new_lru_cache(32 << 20)),
            block_cache_bytes: 32 << 20,
            write_buffer_bytes: 128 << 20,
            write_cache_bytes: 0,
        };
        let range = KeyGroupRange { start: 0, end: 128 };
        let mut store = RocksStore::new(dir.path(), "op", 0, range, memory);
        store.open(None).unwrap();
        let id = store.register("count");
        let mut key = Vec::new();
        let mut batch = WriteBatch::default();
        for i in 0..1_000_000u64 {
            store.encode_key(
                id,
                (i % 128) as usize,
                &(2 * i).to_be_bytes(),
                &[],
                &mut key,
            );
            batch.put(&key, join_value(0, &[1]));
        }
        store.write(batch).unwrap();
        store.db().flush().unwrap();

        let before = thread_read_bytes();
        let mut found = 0;
        for i in 0..500u64 {
            // Odd numbers: keys RocksDB does not hold, as a new key's first read.
            let k = (2 * i * 1999 + 1).to_be_bytes();
            store.encode_key(id, (i % 128) as usize, &k, &[], &mut key);
            found += store.read(&key, |v| usize::from(v.is_some()));
        }
        let read = thread_read_bytes() - before;
        assert_eq!(found, 0, "no absent key was found");
        assert!(
            read < 32 << 20,
            "500 reads of absent keys read {read} bytes from disk: each read the file's whole \
             filter again instead of a cached partition"
        );
    }
}
