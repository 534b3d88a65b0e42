//! The local-filesystem store behind `file://` URIs: one file per object under a root
//! directory. Writes go to a temporary file in the target directory, are fsynced, renamed into
//! place and the directory is fsynced, so a reader sees the old object, the new one, or none,
//! never a partial one, and a completed `put` survives a crash.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use crate::error::{Result, StorageError};
use crate::path::{TEMP_PREFIX, validate_key, validate_prefix};
use crate::{ObjectMeta, ObjectStore};

/// Distinguishes temporary files of concurrent writers within one process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// An [`ObjectStore`] over a local directory.
///
/// ```
/// use weir_storage::{FileStore, ObjectStore};
///
/// let dir = tempfile::tempdir()?;
/// let store = FileStore::new(dir.path());
/// store.put("job-1/chk-1/_metadata", b"meta".to_vec().into())?;
/// assert_eq!(&store.get("job-1/chk-1/_metadata")?[..], b"meta");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct FileStore {
    root: PathBuf,
}

impl FileStore {
    /// A store rooted at `root`. The directory is created on the first `put`; until then the
    /// store is simply empty.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        FileStore { root: root.into() }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn file_path(&self, key: &str) -> PathBuf {
        let mut path = self.root.clone();
        path.extend(key.split('/'));
        path
    }

    fn write_atomically(&self, target: &Path, bytes: &[u8]) -> Result<()> {
        let dir = target.parent().unwrap_or(&self.root);
        let name = target
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("object");
        let temp = dir.join(format!(
            "{TEMP_PREFIX}{name}-{}-{}",
            std::process::id(),
            TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let result = (|| {
            // A concurrent delete_prefix may prune the directory between create_dir_all and
            // the create; one retry covers that race.
            let mut file = match fs::File::create(&temp) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    fs::create_dir_all(dir).map_err(|e| StorageError::io("create", dir, e))?;
                    fs::File::create(&temp)
                }
                other => other,
            }
            .map_err(|e| StorageError::io("create", &temp, e))?;
            file.write_all(bytes)
                .map_err(|e| StorageError::io("write", &temp, e))?;
            file.sync_all()
                .map_err(|e| StorageError::io("fsync", &temp, e))?;
            fs::rename(&temp, target).map_err(|e| StorageError::io("rename into", target, e))?;
            sync_dir(dir)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&temp);
        }
        result
    }

    /// Removes now-empty directories from `dir` up to (not including) the root, so deleted
    /// checkpoints leave no empty directory trees behind. Stops at the first non-empty one.
    fn prune_empty_dirs(&self, mut dir: &Path) {
        while dir != self.root && dir.starts_with(&self.root) {
            if fs::remove_dir(dir).is_err() {
                break;
            }
            match dir.parent() {
                Some(parent) => dir = parent,
                None => break,
            }
        }
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    // Makes the rename durable. Opening a directory for fsync works on Unix; elsewhere it is
    // best effort.
    match fs::File::open(dir).and_then(|d| d.sync_all()) {
        Ok(()) => Ok(()),
        Err(e) if cfg!(unix) => Err(StorageError::io("fsync directory", dir, e)),
        Err(_) => Ok(()),
    }
}

impl ObjectStore for FileStore {
    fn put(&self, path: &str, bytes: Bytes) -> Result<()> {
        validate_key(path)?;
        let target = self.file_path(path);
        let dir = target.parent().unwrap_or(&self.root);
        fs::create_dir_all(dir).map_err(|e| StorageError::io("create directory", dir, e))?;
        self.write_atomically(&target, &bytes)
    }

    fn get(&self, path: &str) -> Result<Bytes> {
        validate_key(path)?;
        let file = self.file_path(path);
        match fs::read(&file) {
            Ok(bytes) => Ok(Bytes::from(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(StorageError::NotFound {
                location: file.display().to_string(),
            }),
            Err(e) => Err(StorageError::io("read", file, e)),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        validate_prefix(prefix)?;
        // Walk only the deepest directory the prefix names completely; the partial last
        // segment (if any) is matched as a string prefix below.
        let dir_part = prefix.rfind('/').map_or("", |i| &prefix[..i]);
        let start = if dir_part.is_empty() {
            self.root.clone()
        } else {
            self.file_path(dir_part)
        };
        let mut objects = Vec::new();
        let mut pending = vec![(start, dir_part.to_owned())];
        while let Some((dir, key_prefix)) = pending.pop() {
            let entries = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                    ) =>
                {
                    continue;
                }
                Err(e) => return Err(StorageError::io("list", dir, e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| StorageError::io("list", &dir, e))?;
                let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                    continue; // not a key this store could have written
                };
                if name.starts_with(TEMP_PREFIX) {
                    continue;
                }
                let key = if key_prefix.is_empty() {
                    name
                } else {
                    format!("{key_prefix}/{name}")
                };
                let meta = match fs::metadata(entry.path()) {
                    Ok(meta) => meta,
                    // Deleted while we were listing.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(StorageError::io("stat", entry.path(), e)),
                };
                if meta.is_dir() {
                    // Descend only where keys below can still match the prefix.
                    if key.starts_with(prefix) || prefix.starts_with(&format!("{key}/")) {
                        pending.push((entry.path(), key));
                    }
                } else if key.starts_with(prefix) {
                    objects.push(ObjectMeta {
                        path: key,
                        size: meta.len(),
                    });
                }
            }
        }
        objects.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(objects)
    }

    fn delete(&self, path: &str) -> Result<()> {
        validate_key(path)?;
        let file = self.file_path(path);
        match fs::remove_file(&file) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(StorageError::io("delete", file, e)),
        }
        if let Some(dir) = file.parent() {
            self.prune_empty_dirs(dir);
        }
        Ok(())
    }

    fn delete_prefix(&self, prefix: &str) -> Result<usize> {
        let objects = self.list(prefix)?;
        let mut deleted = 0;
        for object in &objects {
            let file = self.file_path(&object.path);
            match fs::remove_file(&file) {
                Ok(()) => deleted += 1,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(StorageError::io("delete", file, e)),
            }
            if let Some(dir) = file.parent() {
                self.prune_empty_dirs(dir);
            }
        }
        Ok(deleted)
    }

    fn exists(&self, path: &str) -> Result<bool> {
        validate_key(path)?;
        let file = self.file_path(path);
        match fs::metadata(&file) {
            Ok(meta) => Ok(meta.is_file()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(StorageError::io("stat", file, e)),
        }
    }

    fn uri(&self, path: &str) -> String {
        let root = self.root.display().to_string();
        let root = root.trim_end_matches('/');
        if path.is_empty() {
            format!("file://{root}")
        } else {
            format!("file://{root}/{path}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, FileStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path().join("root"));
        (dir, store)
    }

    fn keys(objects: &[ObjectMeta]) -> Vec<&str> {
        objects.iter().map(|o| o.path.as_str()).collect()
    }

    #[test]
    fn put_then_get_returns_the_same_bytes_and_overwrites_replace_them() {
        let (_dir, store) = store();
        store
            .put("job-1/chk-1/_metadata", Bytes::from_static(b"first"))
            .unwrap();
        assert_eq!(&store.get("job-1/chk-1/_metadata").unwrap()[..], b"first");
        store
            .put("job-1/chk-1/_metadata", Bytes::from_static(b"second!"))
            .unwrap();
        assert_eq!(&store.get("job-1/chk-1/_metadata").unwrap()[..], b"second!");
        assert!(store.exists("job-1/chk-1/_metadata").unwrap());
        assert!(
            !store.exists("job-1/chk-1").unwrap(),
            "a directory is not an object"
        );
    }

    #[test]
    fn put_leaves_no_temporary_files_behind() {
        let (_dir, store) = store();
        store.put("a/b", Bytes::from_static(b"x")).unwrap();
        let names: Vec<_> = fs::read_dir(store.root().join("a"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["b"]);
    }

    #[test]
    fn concurrent_readers_never_see_a_partial_object() {
        let (_dir, store) = store();
        let big_a = Bytes::from(vec![b'a'; 4 << 20]);
        let big_b = Bytes::from(vec![b'b'; 4 << 20]);
        store.put("state", big_a.clone()).unwrap();
        std::thread::scope(|scope| {
            let writer = scope.spawn(|| {
                for i in 0..20 {
                    let bytes = if i % 2 == 0 { &big_b } else { &big_a };
                    store.put("state", bytes.clone()).unwrap();
                }
            });
            while !writer.is_finished() {
                let read = store.get("state").unwrap();
                assert!(
                    read == big_a || read == big_b,
                    "saw a partial object of {} bytes",
                    read.len()
                );
            }
        });
    }

    #[test]
    fn a_leftover_temporary_file_is_invisible_to_listings() {
        let (_dir, store) = store();
        store
            .put("job/chk-1/_metadata", Bytes::from_static(b"m"))
            .unwrap();
        // What a crash between create and rename leaves behind.
        fs::write(
            store.root().join("job/chk-1/.weir-tmp-_metadata-1-1"),
            b"par",
        )
        .unwrap();
        assert_eq!(keys(&store.list("").unwrap()), ["job/chk-1/_metadata"]);
    }

    #[test]
    fn list_is_recursive_sorted_sized_and_filtered_by_string_prefix() {
        let (_dir, store) = store();
        for (key, len) in [
            ("job-1/chk-1/_metadata", 3),
            ("job-1/chk-1/op-a/kg-0", 10),
            ("job-1/chk-10/_metadata", 4),
            ("job-1/chk-2/_metadata", 5),
            ("job-1/shared/sst-1", 7),
            ("job-2/chk-1/_metadata", 1),
        ] {
            store.put(key, Bytes::from(vec![0u8; len])).unwrap();
        }
        let all = store.list("").unwrap();
        assert_eq!(all.len(), 6);
        assert_eq!(
            all[1],
            ObjectMeta {
                path: "job-1/chk-1/op-a/kg-0".into(),
                size: 10
            }
        );

        assert_eq!(
            keys(&store.list("job-1/chk-1/").unwrap()),
            ["job-1/chk-1/_metadata", "job-1/chk-1/op-a/kg-0"]
        );
        assert_eq!(
            keys(&store.list("job-1/chk-1").unwrap()),
            [
                "job-1/chk-1/_metadata",
                "job-1/chk-1/op-a/kg-0",
                "job-1/chk-10/_metadata"
            ]
        );
        assert_eq!(
            keys(&store.list("job-1/chk-").unwrap()),
            [
                "job-1/chk-1/_metadata",
                "job-1/chk-1/op-a/kg-0",
                "job-1/chk-10/_metadata",
                "job-1/chk-2/_metadata"
            ]
        );
        assert!(store.list("job-3/").unwrap().is_empty());
        assert!(store.list("job-1/chk-1/_metadata/").unwrap().is_empty());
    }

    #[test]
    fn list_of_a_store_whose_root_does_not_exist_yet_is_empty() {
        let (_dir, store) = store();
        assert!(store.list("").unwrap().is_empty());
        assert_eq!(store.delete_prefix("").unwrap(), 0);
    }

    #[test]
    fn delete_prefix_removes_exactly_the_matching_objects_and_their_empty_directories() {
        let (_dir, store) = store();
        for key in [
            "job/chk-1/_metadata",
            "job/chk-1/op/kg-1",
            "job/chk-2/_metadata",
            "job/shared/sst",
        ] {
            store.put(key, Bytes::from_static(b"x")).unwrap();
        }
        assert_eq!(store.delete_prefix("job/chk-1/").unwrap(), 2);
        assert_eq!(
            keys(&store.list("").unwrap()),
            ["job/chk-2/_metadata", "job/shared/sst"]
        );
        assert!(
            !store.root().join("job/chk-1").exists(),
            "empty directories are pruned"
        );
        assert!(store.root().exists(), "the root itself stays");
        assert_eq!(store.delete_prefix("job/chk-1/").unwrap(), 0, "idempotent");
    }

    #[test]
    fn delete_is_idempotent_and_the_object_is_gone_afterwards() {
        let (_dir, store) = store();
        store.put("a/b/c", Bytes::from_static(b"x")).unwrap();
        store.delete("a/b/c").unwrap();
        assert!(!store.exists("a/b/c").unwrap());
        let err = store.get("a/b/c").unwrap_err();
        assert!(err.is_not_found(), "{err}");
        assert!(err.to_string().contains("a/b/c"), "{err}");
        store.delete("a/b/c").unwrap();
    }

    #[test]
    fn uri_names_the_object_under_the_root() {
        let store = FileStore::new("/data/checkpoints/");
        assert_eq!(store.uri("job/chk-1"), "file:///data/checkpoints/job/chk-1");
    }
}
