//! The process's own working directory under `state.backend.rocksdb.localdir`.
//!
//! A process keeps its RocksDB instances in `<localdir>/weir-<pid>-<nonce>-<n>/`, which holds a
//! `.lock` file locked for as long as the directory is in use; it is removed when its last
//! RocksDB instance closes. A process that is killed (`kill -9`, the OOM killer) cannot remove
//! it, so whenever a process claims a new directory in the same `localdir` it removes every
//! sibling whose lock it can take: their owner is gone. The directory of a live process, on
//! this host or sharing the volume, stays locked and is left alone.

use crate::error::{Error, Result};
use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock, Weak};

const PREFIX: &str = "weir-";
const LOCK: &str = ".lock";

/// A claimed directory: locked while alive, removed on drop.
#[derive(Debug)]
pub(crate) struct ProcessDir {
    path: PathBuf,
    _lock: File,
}

impl ProcessDir {
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ProcessDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// The directory this process uses under `local_dir`, shared by its RocksDB instances:
/// created and locked on first use (then directories left by dead processes are removed),
/// removed when the last instance holding it is gone.
pub(crate) fn claim(local_dir: &Path) -> Result<Arc<ProcessDir>> {
    static CLAIMED: OnceLock<Mutex<HashMap<PathBuf, Weak<ProcessDir>>>> = OnceLock::new();
    static NONCE: OnceLock<u32> = OnceLock::new();
    static GENERATION: AtomicU64 = AtomicU64::new(0);
    let mut claimed = CLAIMED
        .get_or_init(Default::default)
        .lock()
        .expect("not poisoned");
    if let Some(dir) = claimed.get(local_dir).and_then(Weak::upgrade) {
        return Ok(dir);
    }
    // A new name each time: a directory being removed by its last owner is never reused.
    let path = local_dir.join(format!(
        "{PREFIX}{}-{:08x}-{}",
        std::process::id(),
        NONCE.get_or_init(|| crate::keygroup::random_u64() as u32),
        GENERATION.fetch_add(1, Relaxed)
    ));
    std::fs::create_dir_all(&path)
        .map_err(|e| Error::io("cannot create the RocksDB working directory", &path, e))?;
    let lock_path = path.join(LOCK);
    let lock = File::create(&lock_path)
        .map_err(|e| Error::io("cannot create the lock file", &lock_path, e))?;
    lock.try_lock().map_err(|e| {
        Error::User(format!(
            "cannot lock {}: {e}; another process claims this directory",
            lock_path.display()
        ))
    })?;
    let dir = Arc::new(ProcessDir { path, _lock: lock });
    let removed = sweep(local_dir, &dir.path);
    if removed > 0 {
        tracing::info!(dir = %local_dir.display(), removed, "removed RocksDB working directories of processes that are gone");
    }
    claimed.insert(local_dir.to_path_buf(), Arc::downgrade(&dir));
    Ok(dir)
}

/// Removes every `weir-*` directory under `local_dir` but `own` whose lock file nobody holds.
/// Best effort: a directory that cannot be read or removed stays.
fn sweep(local_dir: &Path, own: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(local_dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        let named = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(PREFIX));
        if !named || path == own || !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        // Only directories of this layout have a lock file; anything else is not ours.
        let Ok(lock) = File::open(path.join(LOCK)) else {
            continue;
        };
        if lock.try_lock().is_ok() && std::fs::remove_dir_all(&path).is_ok() {
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_of_dead_processes_are_removed_and_live_ones_kept() {
        let local = tempfile::tempdir().unwrap();
        // Left by a process that was killed: its lock file is not held.
        let dead = local.path().join("weir-999999-0badc0de-0");
        std::fs::create_dir_all(dead.join("rocksdb-windows-0-1/db")).unwrap();
        std::fs::write(dead.join(LOCK), b"").unwrap();
        std::fs::write(
            dead.join("rocksdb-windows-0-1/db/000012.sst"),
            vec![0u8; 4096],
        )
        .unwrap();
        // A live process's directory: its lock is held (here, by this test).
        let live = local.path().join("weir-1-00000001-0");
        std::fs::create_dir_all(&live).unwrap();
        let held = File::create(live.join(LOCK)).unwrap();
        held.try_lock().unwrap();
        // Not of this layout (no lock file): never touched.
        let other = local.path().join("weir-notes");
        std::fs::create_dir_all(&other).unwrap();

        let own = claim(local.path()).unwrap();
        assert!(own.path().join(LOCK).is_file());
        assert!(!dead.exists(), "a dead process's directory is removed");
        assert!(live.exists(), "a live process's directory stays");
        assert!(other.exists(), "a directory without a lock file stays");
        // Every instance of the process shares one directory while any holds it ...
        let again = claim(local.path()).unwrap();
        assert_eq!(again.path(), own.path());
        let path = own.path().to_path_buf();
        drop(own);
        assert!(path.exists());
        // ... and the last one removes it.
        drop(again);
        assert!(!path.exists(), "the directory goes with its last user");
        drop(held);
    }
}
