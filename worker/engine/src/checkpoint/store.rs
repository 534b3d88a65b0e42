//! Where checkpoint files go. `FileStore` writes under a local directory with atomic
//! visibility (temp file, fsync, rename); the S3 store plugs in behind the same trait.

use crate::error::{Error, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Blocking object storage for checkpoint files; paths are relative keys
/// (`<job-id>/chk-3/_metadata`).
pub trait CheckpointStore: Send + Sync {
    /// Writes an object; readers never see a partial object.
    fn put(&self, path: &str, bytes: &[u8]) -> Result<()>;
    /// Reads an object.
    fn get(&self, path: &str) -> Result<Vec<u8>>;
    /// Every object under `prefix`, recursively, sorted.
    fn list(&self, prefix: &str) -> Result<Vec<String>>;
    /// Deletes everything under `prefix`; returns how many objects were removed.
    fn delete_prefix(&self, prefix: &str) -> Result<usize>;
    /// A URI for messages and metrics (`file:///...`).
    fn uri(&self, path: &str) -> String;
}

/// A [`CheckpointStore`] in a local (or mounted) directory.
#[derive(Debug, Clone)]
pub struct FileStore {
    root: PathBuf,
}

impl FileStore {
    /// A store rooted at `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        FileStore { root: root.into() }
    }

    /// Opens `file:///abs/dir` or a plain path.
    pub fn from_uri(uri: &str) -> Result<Self> {
        let path = uri.strip_prefix("file://").unwrap_or(uri);
        if path.is_empty() || !Path::new(path).is_absolute() {
            return Err(Error::Config(format!(
                "checkpoint directory '{uri}' must be an absolute path or file:///absolute/path"
            )));
        }
        Ok(FileStore::new(path))
    }

    fn full(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }
}

fn walk(dir: &Path, base: &Path, out: &mut Vec<String>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let p = entry.path();
        if entry.file_type()?.is_dir() {
            walk(&p, base, out)?;
        } else if !entry.file_name().to_string_lossy().starts_with(".tmp-") {
            out.push(
                p.strip_prefix(base)
                    .expect("under base")
                    .to_string_lossy()
                    .into_owned(),
            );
        }
    }
    Ok(())
}

impl CheckpointStore for FileStore {
    fn put(&self, path: &str, bytes: &[u8]) -> Result<()> {
        let full = self.full(path);
        let dir = full.parent().expect("has a parent").to_path_buf();
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("cannot create directory", &dir, e))?;
        let tmp = dir.join(format!(
            ".tmp-{}-{}",
            std::process::id(),
            full.file_name().unwrap().to_string_lossy()
        ));
        let mut f = std::fs::File::create(&tmp).map_err(|e| Error::io("cannot create", &tmp, e))?;
        f.write_all(bytes)
            .and_then(|_| f.sync_all())
            .map_err(|e| Error::io("cannot write", &tmp, e))?;
        std::fs::rename(&tmp, &full).map_err(|e| Error::io("cannot rename into place", &full, e))
    }

    fn get(&self, path: &str) -> Result<Vec<u8>> {
        let full = self.full(path);
        std::fs::read(&full).map_err(|e| Error::io("cannot read", full, e))
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let dir = self.full(prefix);
        let mut out = Vec::new();
        if dir.is_dir() {
            walk(&dir, &self.root, &mut out).map_err(|e| Error::io("cannot list", &dir, e))?;
        }
        out.sort();
        Ok(out)
    }

    fn delete_prefix(&self, prefix: &str) -> Result<usize> {
        let n = self.list(prefix)?.len();
        let dir = self.full(prefix);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| Error::io("cannot delete", &dir, e))?;
        }
        Ok(n)
    }

    fn uri(&self, path: &str) -> String {
        format!("file://{}", self.full(path).display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_store_puts_lists_and_deletes_by_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let s = FileStore::new(dir.path());
        s.put("job/chk-1/_metadata", b"m").unwrap();
        s.put("job/chk-1/op-0", b"a").unwrap();
        s.put("job/chk-2/_metadata", b"n").unwrap();
        assert_eq!(s.get("job/chk-1/op-0").unwrap(), b"a");
        assert_eq!(
            s.list("job/chk-1").unwrap(),
            vec!["job/chk-1/_metadata", "job/chk-1/op-0"]
        );
        assert_eq!(s.delete_prefix("job/chk-1").unwrap(), 2);
        assert_eq!(s.list("job").unwrap(), vec!["job/chk-2/_metadata"]);
        assert!(FileStore::from_uri("relative/dir").is_err());
    }
}
