//! Storage access: finding a run's latest checkpoint when its JobManager is gone, and deleting
//! savepoints and old checkpoint directories. `file://` locations are handled directly (the
//! operator pod must mount the same volume); `s3://` goes through `weir-storage` — the same
//! client the worker writes checkpoints with — using the job's endpoint, region and the
//! credentials from its Secret.

use std::io;
use std::path::PathBuf;
use weir_contract::layout;
use weir_storage::{ObjectStore, StorageOptions};

/// Why a deletion failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error(
        "cannot delete {location}: the operator deletes file:// locations, and s3:// ones when \
         the StreamJob has storage settings"
    )]
    Unsupported { location: String },

    #[error("S3 storage access failed")]
    S3(#[source] weir_storage::StorageError),

    #[error("deleting {path} failed")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Storage of one job: the local file system, plus S3 when the job has storage settings.
#[derive(Clone, Debug, Default)]
pub struct Storage {
    /// How to reach the job's `s3://` locations.
    pub s3: Option<StorageOptions>,
}

/// Splits `s3://bucket/key/prefix` into the bucket's URI and the key prefix.
fn split(uri: &str) -> Result<(String, String), StorageError> {
    let rest = uri
        .strip_prefix("s3://")
        .ok_or_else(|| StorageError::Unsupported {
            location: uri.to_string(),
        })?;
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    Ok((
        format!("s3://{bucket}"),
        key.trim_end_matches('/').to_string(),
    ))
}

/// Runs a blocking storage call off the async worker threads, on a store at `root`.
async fn blocking<T: Send + 'static>(
    options: StorageOptions,
    root: String,
    f: impl FnOnce(&dyn ObjectStore) -> weir_storage::Result<T> + Send + 'static,
) -> Result<T, StorageError> {
    tokio::task::spawn_blocking(move || {
        let store = weir_storage::open(&root, &options)?;
        f(&*store)
    })
    .await
    .map_err(|join| StorageError::Io {
        path: PathBuf::from("s3"),
        source: io::Error::other(join),
    })?
    .map_err(StorageError::S3)
}

impl Storage {
    /// Deletes a savepoint or checkpoint directory, whichever storage it is in.
    pub async fn delete(&self, location: &str) -> Result<(), StorageError> {
        match &self.s3 {
            Some(options) if location.starts_with("s3://") => {
                let (bucket, key) = split(location)?;
                // The trailing slash keeps `job1` from matching `job10`.
                let prefix = format!("{key}/");
                blocking(options.clone(), bucket, move |store| {
                    store.delete_prefix(&prefix).map(|_| ())
                })
                .await
            }
            _ => delete_location(location).await,
        }
    }

    /// Bytes stored under a savepoint or checkpoint location; `None` when it cannot be listed.
    pub async fn size(&self, location: &str) -> Option<u64> {
        match &self.s3 {
            Some(options) if location.starts_with("s3://") => {
                let (bucket, key) = split(location).ok()?;
                let prefix = format!("{key}/");
                let objects = blocking(options.clone(), bucket, move |store| store.list(&prefix))
                    .await
                    .ok()?;
                Some(objects.iter().map(|o| o.size).sum())
            }
            _ => {
                let path = PathBuf::from(location.strip_prefix("file://")?);
                tokio::task::spawn_blocking(move || directory_size(&path))
                    .await
                    .ok()
                    .flatten()
            }
        }
    }

    /// The newest completed checkpoint of one run; see [`latest_checkpoint`].
    pub async fn latest_checkpoint(&self, dir: &str, job_id: &str) -> Option<String> {
        match &self.s3 {
            Some(options) if dir.starts_with("s3://") => {
                let run = checkpoint_run_dir(dir, job_id);
                let (bucket, key) = split(&run).ok()?;
                let prefix = format!("{key}/");
                let objects = blocking(options.clone(), bucket, move |store| store.list(&prefix))
                    .await
                    .ok()?;
                let relative: Vec<&str> = objects
                    .iter()
                    .filter_map(|o| o.path.strip_prefix(&key))
                    .collect();
                newest_checkpoint(&run, relative.into_iter())
            }
            _ => latest_checkpoint(dir, job_id).await,
        }
    }
}

/// Picks `<run>/chk-<n>` with the highest `n` among relative keys that end in `_metadata`.
fn newest_checkpoint<'a>(run: &str, keys: impl Iterator<Item = &'a str>) -> Option<String> {
    keys.filter_map(layout::checkpoint_of_metadata_key)
        .max()
        .map(|n| format!("{run}/{}", layout::checkpoint_dir_name(n)))
}

/// Whether the operator can delete `location`. The lifecycle leaves other locations alone
/// (still listed in the status) instead of retrying a deletion that cannot succeed.
pub fn supports(location: &str) -> bool {
    location.starts_with("file://")
}

/// Total size of the files under `path`.
fn directory_size(path: &std::path::Path) -> Option<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(path).ok()? {
        let entry = entry.ok()?;
        let meta = entry.metadata().ok()?;
        total += if meta.is_dir() {
            directory_size(&entry.path())?
        } else {
            meta.len()
        };
    }
    Some(total)
}

/// Deletes a savepoint directory. Deleting what is already gone succeeds, so a deletion
/// repeated after an operator restart is harmless.
pub async fn delete_location(location: &str) -> Result<(), StorageError> {
    let Some(path) = location.strip_prefix("file://") else {
        return Err(StorageError::Unsupported {
            location: location.to_string(),
        });
    };
    let path = PathBuf::from(path);
    // Recursive deletion is blocking file I/O: keep it off the async worker threads.
    tokio::task::spawn_blocking(move || match std::fs::remove_dir_all(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(StorageError::Io { path, source }),
    })
    .await
    .unwrap_or_else(|join| {
        Err(StorageError::Io {
            path: PathBuf::from(location),
            source: io::Error::other(join),
        })
    })
}

/// The newest completed checkpoint of one run found in storage: the `chk-<n>` directory under
/// `<checkpoints.dir>/<job-id>/` with the highest `n` that has its `_metadata` (written last,
/// so an unfinished checkpoint is skipped). Only `file://` can be listed so far; other schemes
/// and unreadable directories give `None`, and the lifecycle falls back to what the status
/// recorded.
pub async fn latest_checkpoint(dir: &str, job_id: &str) -> Option<String> {
    let run = checkpoint_run_dir(dir, job_id);
    let path = PathBuf::from(run.strip_prefix("file://")?);
    tokio::task::spawn_blocking(move || {
        let newest = std::fs::read_dir(&path)
            .ok()?
            .filter_map(Result::ok)
            .filter_map(|entry| {
                let name = entry.file_name().into_string().ok()?;
                let number = layout::checkpoint_number(&name)?;
                entry
                    .path()
                    .join(layout::METADATA)
                    .is_file()
                    .then_some((number, name))
            })
            .max()?;
        Some(format!("{run}/{}", newest.1))
    })
    .await
    .ok()
    .flatten()
}

/// The checkpoint directory of one run: `<checkpoints.dir>/<job-id>` (the contract's layout).
pub use weir_contract::layout::checkpoint_run_dir;

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_file_savepoint_is_deleted_and_deleting_it_again_succeeds() {
        let root = std::env::temp_dir().join(format!("weir-storage-{}", std::process::id()));
        let savepoint = root.join("savepoint-ab12-x");
        std::fs::create_dir_all(&savepoint).unwrap();
        std::fs::write(savepoint.join("_metadata"), b"x").unwrap();
        let location = format!("file://{}", savepoint.display());

        delete_location(&location).await.unwrap();
        assert!(!savepoint.exists());
        delete_location(&location).await.unwrap();
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[tokio::test]
    async fn an_s3_location_is_reported_as_unsupported() {
        let error = delete_location("s3://b/sp/savepoint-1").await.unwrap_err();
        assert!(matches!(error, StorageError::Unsupported { .. }));
    }

    #[tokio::test]
    async fn the_newest_checkpoint_with_metadata_is_found_in_a_file_directory() {
        let root = std::env::temp_dir().join(format!("weir-ckpt-{}", std::process::id()));
        for (n, complete) in [(2, true), (9, true), (10, true), (11, false)] {
            let chk = root.join("a1b2").join(format!("chk-{n}"));
            std::fs::create_dir_all(&chk).unwrap();
            if complete {
                std::fs::write(chk.join("_metadata"), b"x").unwrap();
            }
        }
        std::fs::create_dir_all(root.join("a1b2").join("shared")).unwrap();
        let dir = format!("file://{}", root.display());

        let latest = latest_checkpoint(&dir, "a1b2").await;
        assert_eq!(latest, Some(format!("{dir}/a1b2/chk-10")));
        assert_eq!(latest_checkpoint(&dir, "other").await, None);
        assert_eq!(latest_checkpoint("s3://b/cp", "a1b2").await, None);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn the_newest_checkpoint_is_chosen_among_listed_keys() {
        let keys = [
            "/chk-2/_metadata",
            "/chk-10/_metadata",
            "/chk-11/state-1",
            "/shared/sst-1",
        ];
        assert_eq!(
            newest_checkpoint("s3://b/cp/a1", keys.into_iter()),
            Some("s3://b/cp/a1/chk-10".to_string())
        );
    }

    #[test]
    fn a_run_directory_is_the_job_id_under_the_checkpoint_dir() {
        assert_eq!(checkpoint_run_dir("s3://b/cp/", "a1b2"), "s3://b/cp/a1b2");
        assert_eq!(checkpoint_run_dir("file:///d", "a1b2"), "file:///d/a1b2");
    }
}
