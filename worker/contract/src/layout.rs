//! Where a job's checkpoints and savepoints live in storage, as the worker writes them and the
//! operator finds them: `<state.checkpoints.dir>/<job-id>/chk-<n>/_metadata`, shared files of
//! incremental checkpoints under `<job-id>/shared/`, and savepoints in
//! `<state.savepoints.dir>/savepoint-<job-id prefix>-<suffix>/_metadata`. The `_metadata`
//! object is written last, so a directory without it is an unfinished checkpoint.
//!
//! ```
//! use weir_contract::layout;
//! let run = layout::checkpoint_run_dir("s3://b/cp/", "a1b2");
//! assert_eq!(run, "s3://b/cp/a1b2");
//! assert_eq!(layout::checkpoint_dir_name(7), "chk-7");
//! assert_eq!(layout::checkpoint_number("chk-7"), Some(7));
//! assert_eq!(layout::checkpoint_of_metadata_key("/chk-7/_metadata"), Some(7));
//! ```

/// The object that completes a checkpoint or savepoint directory.
pub const METADATA: &str = "_metadata";
/// Prefix of a checkpoint directory's name, followed by its number.
pub const CHECKPOINT_PREFIX: &str = "chk-";
/// Directory of a run's files that several incremental checkpoints reference.
pub const SHARED_DIR: &str = "shared";
/// Prefix of a savepoint directory's name.
pub const SAVEPOINT_PREFIX: &str = "savepoint-";

/// The checkpoint directory of one run of a job: `<checkpoints dir>/<job-id>`.
pub fn checkpoint_run_dir(dir: &str, job_id: &str) -> String {
    format!("{}/{job_id}", dir.trim_end_matches('/'))
}

/// The name of checkpoint `n`'s directory: `chk-<n>`.
pub fn checkpoint_dir_name(n: u64) -> String {
    format!("{CHECKPOINT_PREFIX}{n}")
}

/// The number of a checkpoint directory's name (`chk-<n>`); `None` for other names.
pub fn checkpoint_number(name: &str) -> Option<u64> {
    name.strip_prefix(CHECKPOINT_PREFIX)?.parse().ok()
}

/// The checkpoint a key relative to a run directory completes (`[/]chk-<n>/_metadata`);
/// `None` for any other key.
pub fn checkpoint_of_metadata_key(key: &str) -> Option<u64> {
    let dir = key
        .trim_start_matches('/')
        .strip_suffix(METADATA)?
        .strip_suffix('/')?;
    checkpoint_number(dir)
}

/// The name of a savepoint directory: `savepoint-<first 6 characters of the job id>-<suffix>`.
pub fn savepoint_dir_name(job_id: &str, suffix: &str) -> String {
    let short: String = job_id.chars().take(6).collect();
    format!("{SAVEPOINT_PREFIX}{short}-{suffix}")
}
