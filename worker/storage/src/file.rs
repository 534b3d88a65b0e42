//! The local-filesystem store behind `file://` URIs: one file per object under a root
//! directory. Writes go to a temporary file in the target directory, are fsynced, renamed into
//! place and the directory is fsynced, so a reader sees the old object, the new one, or none,
//! never a partial one, and a completed `put` survives a crash.
//!
//! A multipart upload is a directory `<root>/.weir-tmp-uploads/<id>/` holding the object's
//! path (file `path`) and one file per part (`part-<n>`); completing it concatenates the parts
//! into a temporary file beside the target (a single part is renamed, not copied) and renames
//! that into place, so the object appears atomically.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use crate::error::{Result, StorageError};
use crate::path::{TEMP_PREFIX, UPLOADS_DIR, validate_key, validate_prefix};
use crate::{ObjectMeta, ObjectStore, Upload, UploadedPart};

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

impl FileStore {
    fn uploads_dir(&self) -> PathBuf {
        self.root.join(UPLOADS_DIR)
    }

    /// The directory of upload `id`; ids are this store's own hex names, anything else is
    /// refused so an id can never point outside the uploads directory.
    fn upload_dir(&self, id: &str) -> Result<PathBuf> {
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(StorageError::InvalidPath {
                path: id.to_owned(),
                reason: "not an upload id of a file store (hex digits)",
            });
        }
        Ok(self.uploads_dir().join(id))
    }

    /// The upload's directory, or `NotFound` naming path and upload when it does not exist.
    fn existing_upload(&self, path: &str, id: &str) -> Result<PathBuf> {
        let dir = self.upload_dir(id)?;
        if dir.is_dir() {
            Ok(dir)
        } else {
            Err(StorageError::NotFound {
                location: format!("{} (multipart upload {id})", self.uri(path)),
            })
        }
    }
}

fn part_file(dir: &Path, number: u32) -> PathBuf {
    dir.join(format!("part-{number}"))
}

fn random_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(TEMP_COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.write_u32(std::process::id());
    format!("{:016x}", hasher.finish())
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

    fn create_upload(&self, path: &str) -> Result<String> {
        validate_key(path)?;
        let id = random_id();
        let dir = self.upload_dir(&id)?;
        // Written under a temporary name and renamed, so a listed upload always has its path.
        let staging = self.uploads_dir().join(format!("{id}.new"));
        fs::create_dir_all(&staging)
            .map_err(|e| StorageError::io("create directory", &staging, e))?;
        fs::write(staging.join("path"), path)
            .map_err(|e| StorageError::io("write", staging.join("path"), e))?;
        fs::rename(&staging, &dir).map_err(|e| StorageError::io("rename into", &dir, e))?;
        sync_dir(&self.uploads_dir())?;
        Ok(id)
    }

    fn upload_part(&self, path: &str, id: &str, number: u32, bytes: Bytes) -> Result<UploadedPart> {
        validate_key(path)?;
        let dir = self.existing_upload(path, id)?;
        let target = part_file(&dir, number);
        self.write_atomically(&target, &bytes)?;
        Ok(UploadedPart {
            number,
            etag: format!("{number}-{}", bytes.len()),
            size: bytes.len() as u64,
        })
    }

    fn complete_upload(&self, path: &str, id: &str, parts: &[UploadedPart]) -> Result<()> {
        validate_key(path)?;
        let total: u64 = parts.iter().map(|p| p.size).sum();
        let target = self.file_path(path);
        let dir = match self.existing_upload(path, id) {
            Ok(dir) => dir,
            // Completed before (by a writer that crashed before recording it): done.
            Err(e) if e.is_not_found() => {
                return match fs::metadata(&target) {
                    Ok(meta) if meta.is_file() && meta.len() == total => Ok(()),
                    _ => Err(e),
                };
            }
            Err(e) => return Err(e),
        };
        for part in parts {
            let file = part_file(&dir, part.number);
            let size = match fs::metadata(&file) {
                Ok(meta) => meta.len(),
                // A single part renamed into place by a completion that crashed before
                // removing the upload's directory: done.
                Err(e)
                    if e.kind() == io::ErrorKind::NotFound
                        && fs::metadata(&target).is_ok_and(|m| m.len() == total) =>
                {
                    return fs::remove_dir_all(&dir)
                        .map_err(|e| StorageError::io("delete", &dir, e));
                }
                Err(e) => return Err(StorageError::io("stat", &file, e)),
            };
            if size != part.size {
                return Err(StorageError::io(
                    "complete the upload from",
                    file,
                    io::Error::other(format!(
                        "part {} has {size} bytes, expected {}",
                        part.number, part.size
                    )),
                ));
            }
        }
        let target_dir = target.parent().unwrap_or(&self.root).to_path_buf();
        fs::create_dir_all(&target_dir)
            .map_err(|e| StorageError::io("create directory", &target_dir, e))?;
        if let [only] = parts {
            // Already fsynced by upload_part: a rename is enough.
            let file = part_file(&dir, only.number);
            fs::rename(&file, &target).map_err(|e| StorageError::io("rename into", &target, e))?;
        } else {
            let temp = target_dir.join(format!(
                "{TEMP_PREFIX}upload-{id}-{}",
                TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
            ));
            let result = (|| {
                let mut out =
                    fs::File::create(&temp).map_err(|e| StorageError::io("create", &temp, e))?;
                for part in parts {
                    let file = part_file(&dir, part.number);
                    let mut input =
                        fs::File::open(&file).map_err(|e| StorageError::io("read", &file, e))?;
                    io::copy(&mut input, &mut out)
                        .map_err(|e| StorageError::io("write", &temp, e))?;
                }
                out.sync_all()
                    .map_err(|e| StorageError::io("fsync", &temp, e))?;
                fs::rename(&temp, &target).map_err(|e| StorageError::io("rename into", &target, e))
            })();
            if result.is_err() {
                let _ = fs::remove_file(&temp);
            }
            result?;
        }
        sync_dir(&target_dir)?;
        // The uploads directory itself stays: pruning it would race with concurrent creates.
        fs::remove_dir_all(&dir).map_err(|e| StorageError::io("delete", &dir, e))
    }

    fn abort_upload(&self, path: &str, id: &str) -> Result<()> {
        validate_key(path)?;
        let dir = self.upload_dir(id)?;
        match fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(StorageError::io("delete", dir, e)),
        }
        Ok(())
    }

    fn list_uploads(&self, prefix: &str) -> Result<Vec<Upload>> {
        validate_prefix(prefix)?;
        let uploads_dir = self.uploads_dir();
        let entries = match fs::read_dir(&uploads_dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(StorageError::io("list", uploads_dir, e)),
        };
        let mut uploads = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| StorageError::io("list", &uploads_dir, e))?;
            let Some(id) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if id.ends_with(".new") {
                // Being created (or a create that crashed before its rename): no upload id
                // was handed out yet. Never removed here: its creator may be running.
                continue;
            }
            let path = match fs::read_to_string(entry.path().join("path")) {
                Ok(path) => path,
                // Completed or aborted while we were listing.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(StorageError::io("read", entry.path().join("path"), e)),
            };
            if path.starts_with(prefix) {
                uploads.push(Upload { path, id });
            }
        }
        uploads.sort();
        Ok(uploads)
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

    #[test]
    fn a_multipart_upload_is_invisible_until_completed_and_completing_again_is_harmless() {
        let (_dir, store) = store();
        let id = store.create_upload("out/part-a").unwrap();
        let parts = vec![
            store
                .upload_part("out/part-a", &id, 1, Bytes::from_static(b"first "))
                .unwrap(),
            store
                .upload_part("out/part-a", &id, 2, Bytes::from_static(b"second"))
                .unwrap(),
        ];
        assert!(store.list("").unwrap().is_empty(), "nothing visible yet");
        assert_eq!(
            store.list_uploads("out/").unwrap(),
            [Upload {
                path: "out/part-a".into(),
                id: id.clone()
            }]
        );
        assert!(store.list_uploads("other/").unwrap().is_empty());
        store.complete_upload("out/part-a", &id, &parts).unwrap();
        assert_eq!(&store.get("out/part-a").unwrap()[..], b"first second");
        assert!(store.list_uploads("").unwrap().is_empty());
        store.complete_upload("out/part-a", &id, &parts).unwrap();
        assert_eq!(keys(&store.list("").unwrap()), ["out/part-a"]);

        let lost = store
            .complete_upload("out/part-b", &id, &parts)
            .unwrap_err();
        assert!(lost.to_string().contains(&id), "{lost}");
    }

    #[test]
    fn an_aborted_upload_leaves_nothing_and_aborting_again_succeeds() {
        let (_dir, store) = store();
        let id = store.create_upload("part-1").unwrap();
        store
            .upload_part("part-1", &id, 1, Bytes::from_static(b"x"))
            .unwrap();
        store.abort_upload("part-1", &id).unwrap();
        store.abort_upload("part-1", &id).unwrap();
        assert!(store.list_uploads("").unwrap().is_empty());
        assert!(store.list("").unwrap().is_empty());
        assert!(!store.exists("part-1").unwrap());
        let err = store.abort_upload("part-1", "../../etc").unwrap_err();
        assert!(err.to_string().contains("'../../etc'"), "{err}");
    }
}
