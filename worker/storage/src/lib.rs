//! Durable object storage for checkpoints and savepoints. One blocking, object-safe trait,
//! [`ObjectStore`], with two implementations: [`FileStore`] for `file://` directories and
//! [`S3Store`] for `s3://` buckets (AWS or S3-compatible servers). [`open`] picks one from a URI.
//!
//! Paths are relative `/`-separated keys such as `job-1/chk-3/_metadata`; a store maps them
//! below its root directory or key prefix. A `put` is atomic (readers see the old object, the
//! new one, or none, never a partial one). Multipart uploads ([`ObjectStore::create_upload`]
//! and its companions) let a writer stage an object part by part across checkpoints and make it
//! visible, atomically, only when it completes the upload (the exactly-once file sink's
//! two-phase commit). S3 requests retry transient failures within bounded
//! attempts and time, so an unreachable store fails the operation (a checkpoint) promptly with
//! an error naming endpoint, bucket and key.
//!
//! ```
//! use weir_storage::{open, StorageOptions};
//!
//! let dir = tempfile::tempdir()?;
//! let store = open(&format!("file://{}", dir.path().display()), &StorageOptions::default())?;
//! store.put("job-1/chk-1/_metadata", b"v1".to_vec().into())?;
//! store.put("job-1/chk-1/op-a", b"state".to_vec().into())?;
//! assert_eq!(store.list("job-1/")?.len(), 2);
//! assert_eq!(store.delete_prefix("job-1/chk-1/")?, 2);
//! assert!(!store.exists("job-1/chk-1/_metadata")?);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod error;
mod file;
mod options;
mod path;
mod s3;

use std::path::Path;
use std::sync::Arc;

pub use bytes::Bytes;

pub use crate::error::{BoxError, Result, S3Error, StorageError};
pub use crate::file::FileStore;
pub use crate::options::{
    DEFAULT_PART_SIZE, MIN_PART_SIZE, RetryPolicy, StaticCredentials, StorageOptions,
};
pub use crate::s3::S3Store;

#[cfg(feature = "test-support")]
pub mod testing;

/// An object listed by [`ObjectStore::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// The object's path relative to the store's root, e.g. `job-1/chk-3/_metadata`.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
}

/// One uploaded part of a multipart upload, as [`ObjectStore::upload_part`] returns it; a
/// writer keeps them (in its checkpoint) to complete the upload later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadedPart {
    /// 1-based part number.
    pub number: u32,
    /// The store's tag for the part's content (S3's ETag), needed to complete the upload.
    pub etag: String,
    /// Size in bytes.
    pub size: u64,
}

/// An in-progress multipart upload listed by [`ObjectStore::list_uploads`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Upload {
    /// The path of the object the upload will create.
    pub path: String,
    /// The upload's id.
    pub id: String,
}

/// A blocking store of immutable-once-written objects addressed by relative paths.
///
/// Methods block the calling thread (the engine runs one OS thread per task); implementations
/// are shared across threads behind an `Arc<dyn ObjectStore>`. Paths must be non-empty,
/// relative, `/`-separated, without empty, `.` or `..` segments; prefixes follow the same rules
/// but may be empty (everything) or end in `/` or a partial segment.
pub trait ObjectStore: Send + Sync + std::fmt::Debug {
    /// Writes `bytes` at `path`, replacing any existing object. Atomic: concurrent readers see
    /// the previous object or the complete new one, never a partial write.
    fn put(&self, path: &str, bytes: Bytes) -> Result<()>;

    /// Reads the whole object. [`StorageError::NotFound`] when it does not exist.
    fn get(&self, path: &str) -> Result<Bytes>;

    /// Every object whose path starts with `prefix` (a plain string prefix, recursive through
    /// "directories"), sorted by path.
    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>>;

    /// Deletes the object. Deleting a missing object succeeds.
    fn delete(&self, path: &str) -> Result<()>;

    /// Deletes every object [`list`](ObjectStore::list) would return for `prefix` and returns
    /// how many were deleted. Not atomic: on error some objects may already be gone.
    fn delete_prefix(&self, prefix: &str) -> Result<usize>;

    /// Whether an object exists at `path`.
    fn exists(&self, path: &str) -> Result<bool>;

    /// The full URI of `path` in this store, e.g. `s3://bucket/prefix/job-1/chk-3` (for logs and
    /// the REST API's `external_path`).
    fn uri(&self, path: &str) -> String;

    /// Starts a multipart upload of the object at `path` and returns its id. Nothing is
    /// visible at `path` until [`complete_upload`](ObjectStore::complete_upload). The store
    /// records the upload (bookkeeping objects under `.weir-tmp-uploads/`, which listings
    /// never show) so that [`list_uploads`](ObjectStore::list_uploads) finds it after a crash,
    /// also on S3-compatible servers without ListMultipartUploads.
    fn create_upload(&self, path: &str) -> Result<String>;

    /// Uploads part `number` (1-based, consecutive) of upload `id`. Every part but the last
    /// must hold at least [`MIN_PART_SIZE`] bytes on S3 (the file store accepts any size).
    /// Uploading a part number again replaces it.
    fn upload_part(&self, path: &str, id: &str, number: u32, bytes: Bytes) -> Result<UploadedPart>;

    /// Completes upload `id`: the object at `path` becomes, atomically, the concatenation of
    /// `parts` (in order). Idempotent: an upload that was already completed (the object
    /// exists with the parts' total size) succeeds again, so a restored writer can complete
    /// what a crashed one may or may not have completed.
    fn complete_upload(&self, path: &str, id: &str, parts: &[UploadedPart]) -> Result<()>;

    /// Aborts upload `id` and discards its parts. Aborting an unknown or finished upload
    /// succeeds.
    fn abort_upload(&self, path: &str, id: &str) -> Result<()>;

    /// Every upload created through this store (by any process) that was neither completed
    /// nor aborted, whose path starts with `prefix`, sorted by path and id.
    fn list_uploads(&self, prefix: &str) -> Result<Vec<Upload>>;
}

/// Opens the store a URI names:
///
/// - `file:///abs/dir` or `/abs/dir`: a [`FileStore`] rooted at that directory (created on
///   first write);
/// - `s3://bucket` or `s3://bucket/some/prefix`: an [`S3Store`] using `options` for endpoint,
///   region, path-style addressing, retries and multipart; credentials come from the standard
///   AWS chain.
///
/// Opening does no I/O (except for asking the AWS region chain when an `s3://` store has
/// neither region nor endpoint); the first operation finds out whether the store is reachable.
pub fn open(uri: &str, options: &StorageOptions) -> Result<Arc<dyn ObjectStore>> {
    let invalid = |reason| StorageError::InvalidUri {
        uri: uri.to_owned(),
        reason,
    };
    if let Some(rest) = uri.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(invalid("the bucket name is empty"));
        }
        return Ok(Arc::new(S3Store::new(bucket, prefix, options)?));
    }
    let dir = if let Some(rest) = uri.strip_prefix("file://") {
        if !rest.starts_with('/') {
            return Err(invalid(
                "file URIs need an absolute path and no host (file:///dir)",
            ));
        }
        rest
    } else if uri.contains("://") {
        return Err(invalid("unknown scheme"));
    } else {
        uri
    };
    if !Path::new(dir).is_absolute() {
        return Err(invalid("the path is not absolute"));
    }
    Ok(Arc::new(FileStore::new(dir)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_uris_and_absolute_paths_open_a_file_store_at_that_directory() {
        let options = StorageOptions::default();
        let store = open("file:///var/weir/checkpoints", &options).unwrap();
        assert_eq!(
            store.uri("job/chk-1"),
            "file:///var/weir/checkpoints/job/chk-1"
        );
        let store = open("/var/weir/checkpoints/", &options).unwrap();
        assert_eq!(store.uri("x"), "file:///var/weir/checkpoints/x");
    }

    #[test]
    fn s3_uris_open_an_s3_store_with_the_prefix_applied_to_keys() {
        let options = StorageOptions {
            endpoint: Some("http://127.0.0.1:1".into()),
            ..StorageOptions::default()
        };
        let store = open("s3://bucket/checkpoints/", &options).unwrap();
        assert_eq!(store.uri("job/chk-1"), "s3://bucket/checkpoints/job/chk-1");
        let store = open("s3://bucket", &options).unwrap();
        assert_eq!(store.uri("job/chk-1"), "s3://bucket/job/chk-1");
    }

    #[test]
    fn multipart_parts_below_the_s3_minimum_are_rejected() {
        let options = StorageOptions {
            multipart_part_size: 1 << 20,
            ..StorageOptions::default()
        };
        let err = open("s3://bucket", &options).unwrap_err().to_string();
        assert!(err.contains("'1048576' for 'multipart_part_size'"), "{err}");
    }

    #[test]
    fn unsupported_uris_are_rejected_naming_the_uri() {
        let options = StorageOptions::default();
        for (uri, reason) in [
            ("relative/dir", "not absolute"),
            ("file://host/dir", "no host"),
            ("hdfs://nn/dir", "unknown scheme"),
            ("s3:///prefix", "bucket name is empty"),
            ("s3://bucket/a/../b", "'.' and '..'"),
        ] {
            let err = open(uri, &options).unwrap_err().to_string();
            assert!(err.contains(reason), "{uri}: {err}");
            if !reason.starts_with('\'') {
                assert!(err.contains(uri), "{uri}: {err}");
            }
        }
    }
}
