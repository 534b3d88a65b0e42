//! The exactly-once file sink: JSON lines written to a directory on `file://` or `s3://`
//! through `weir-storage`'s multipart uploads, committed with Flink's two-phase protocol.
//!
//! Each subtask writes part files `<prefix>-<uuid>-<subtask>-<count><suffix>` (a fresh uuid per
//! writer, so restarted attempts never reuse a name), optionally below partition directories
//! `field=value/`. A part file is a multipart upload: records are buffered and uploaded in
//! parts of the store's part size as they come; the file rolls (its last part is uploaded) when
//! it reaches the rolling size or age, and at every checkpoint barrier. The barrier records the
//! closed files' upload ids and parts in the checkpoint (pre-commit); the checkpoint's
//! completion completes the uploads, and only then do the files appear.
//!
//! Recovery (on the task thread, before the first record): the restored checkpoint's pending
//! uploads are completed (idempotently), and every other upload of this sink's subtasks that
//! the restored state does not cover (failed checkpoints, work after the last checkpoint) is
//! aborted, so no orphaned upload or `.inprogress` staging outlives a restart.
//!
//! Ownership of that cleanup: the sink's list state holds exactly one element per subtask,
//! which carries the subtask's index; list state is handed out round-robin, so after a restore
//! at parallelism `p` subtask `i` restores the elements of old subtasks `s` with `s % p == i`
//! and aborts exactly the leftover uploads created by such subtasks. No two subtasks touch the
//! same upload, and none aborts an upload that another is completing or writing.

use super::{Sink, SinkWriter};
use crate::error::{Error, Result};
use crate::runtime::{Rec, SubtaskInfo};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use weir_storage::{Bytes, ObjectStore, UploadedPart};

/// Flink's default `sink.rolling-policy.file-size`: 128 MiB.
pub const DEFAULT_ROLLING_FILE_SIZE: u64 = 128 << 20;
/// Flink's default `sink.rolling-policy.rollover-interval`: 30 minutes.
pub const DEFAULT_ROLLOVER_INTERVAL: Duration = Duration::from_secs(30 * 60);

/// Writes JSON lines into a directory, exactly once: a local path, `file:///dir` or
/// `s3://bucket/prefix` (with the job's `s3.*` settings, as checkpoints use them).
///
/// Records go to in-progress part files that become visible only when the checkpoint after
/// them completes (or at the end of input); after a failure, the restored checkpoint's files
/// are committed and anything written after it is discarded, so the directory holds every
/// record exactly once. Files roll at every checkpoint, and when they reach
/// [`with_rolling_file_size`](FileSink::with_rolling_file_size) bytes or
/// [`with_rollover_interval`](FileSink::with_rollover_interval) age.
///
/// ```no_run
/// use weir_engine::connectors::FileSink;
///
/// let sink = FileSink::json_lines("s3://bucket/clicks")
///     .with_rolling_file_size(64 << 20)
///     .with_part_suffix(".json")
///     .partitioned_by(["dt"]);
/// ```
#[derive(Debug, Clone)]
pub struct FileSink {
    location: PathBuf,
    rolling_file_size: u64,
    rollover_interval: Duration,
    prefix: String,
    suffix: String,
    partition_fields: Vec<String>,
}

/// A record that is already the text of one JSON object, written by a [`FileSink`] as it is
/// (not as a JSON string): for values whose text `serde_json::Value` cannot hold (a SQL
/// DECIMAL's `1.50`). A sink that partitions reads its fields through `serde_json::Value`
/// (which keeps no such text): give it [`PartitionedJsonText`] records instead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JsonText(pub String);

/// A record for a [`FileSink`] that partitions, already split by its writer: the values of
/// the partition fields as text (in [`FileSink::partitioned_by`]'s order; None for NULL) and
/// the JSON object of the other fields, written as it is. The sink reads nothing back, so
/// the line keeps every value's text (a DECIMAL's `1.50`), as [`JsonText`] does unpartitioned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionedJsonText {
    /// The partition fields' values as text.
    pub values: Vec<Option<String>>,
    /// One JSON object: the other fields.
    pub text: String,
}

impl FileSink {
    /// A sink writing JSON lines into `location`: a directory path (relative paths are
    /// resolved against the working directory), `file:///dir` or `s3://bucket/prefix`.
    pub fn json_lines(location: impl AsRef<Path>) -> Self {
        FileSink {
            location: location.as_ref().to_path_buf(),
            rolling_file_size: DEFAULT_ROLLING_FILE_SIZE,
            rollover_interval: DEFAULT_ROLLOVER_INTERVAL,
            prefix: "part".into(),
            suffix: ".jsonl".into(),
            partition_fields: Vec::new(),
        }
    }

    /// Rolls a part file once it holds at least `bytes` (Flink's
    /// `sink.rolling-policy.file-size`; default 128 MiB).
    pub fn with_rolling_file_size(mut self, bytes: u64) -> Self {
        self.rolling_file_size = bytes.max(1);
        self
    }

    /// Rolls a part file once it has been open this long, checked when records arrive
    /// (Flink's `sink.rolling-policy.rollover-interval`; default 30 minutes).
    pub fn with_rollover_interval(mut self, interval: Duration) -> Self {
        self.rollover_interval = interval;
        self
    }

    /// The part files' name prefix (default `part`).
    pub fn with_part_prefix(mut self, prefix: &str) -> Self {
        self.prefix = prefix.to_string();
        self
    }

    /// The part files' name suffix (default `.jsonl`).
    pub fn with_part_suffix(mut self, suffix: &str) -> Self {
        self.suffix = suffix.to_string();
        self
    }

    /// Writes each record below `field=value/` directories, one level per field in order, as
    /// Flink's filesystem connector lays out partitions; the fields are left out of the lines.
    /// Records must serialize as JSON objects holding the fields.
    pub fn partitioned_by<S: AsRef<str>>(mut self, fields: impl IntoIterator<Item = S>) -> Self {
        self.partition_fields = fields.into_iter().map(|f| f.as_ref().to_string()).collect();
        self
    }

    /// The location as a storage URI (`s3://…`, `file://…` or an absolute path).
    fn uri(&self) -> Result<String> {
        let text = self.location.to_str().ok_or_else(|| {
            Error::Config(format!(
                "file sink location {} is not valid UTF-8",
                self.location.display()
            ))
        })?;
        if text.contains("://") || self.location.is_absolute() {
            return Ok(text.to_string());
        }
        let cwd = std::env::current_dir()
            .map_err(|e| Error::io("cannot resolve the file sink's relative path", text, e))?;
        Ok(cwd.join(&self.location).display().to_string())
    }

    /// The subtask that created part file `path`, when the name is one this sink writes.
    fn creator(&self, path: &str) -> Option<usize> {
        let name = path.rsplit('/').next()?;
        let core = name
            .strip_prefix(&self.prefix)?
            .strip_prefix('-')?
            .strip_suffix(self.suffix.as_str())?;
        let mut fields = core.rsplitn(3, '-');
        let _count: u64 = fields.next()?.parse().ok()?;
        let subtask = fields.next()?.parse().ok()?;
        let uuid = fields.next()?;
        (uuid.len() == 36 && uuid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-'))
            .then_some(subtask)
    }
}

/// A closed part file waiting for its checkpoint to complete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct PendingFile {
    /// The checkpoint whose barrier closed it (`u64::MAX` until a barrier passes).
    checkpoint: u64,
    /// Path below the sink's directory.
    path: String,
    upload: String,
    /// (number, etag, size) of every part, in order.
    parts: Vec<(u32, String, u64)>,
}

impl PendingFile {
    fn parts(&self) -> Vec<UploadedPart> {
        self.parts
            .iter()
            .map(|(number, etag, size)| UploadedPart {
                number: *number,
                etag: etag.clone(),
                size: *size,
            })
            .collect()
    }
}

/// One subtask's checkpointed state: always exactly one list element (see the module docs).
#[derive(Debug, Serialize, Deserialize)]
enum SinkState {
    V1 {
        subtask: u32,
        /// The sink's location when the files were written (a restored job may write
        /// elsewhere; its pending files are completed where they were staged).
        location: String,
        pending: Vec<PendingFile>,
    },
}

/// What the local sink before multipart uploads checkpointed: a closed file and its name.
#[derive(Debug, Deserialize)]
struct LegacyPendingFile {
    _checkpoint: u64,
    tmp: PathBuf,
    target: PathBuf,
}

/// A part file being written.
struct InProgress {
    path: String,
    upload: Option<String>,
    parts: Vec<UploadedPart>,
    buffer: Vec<u8>,
    size: u64,
    opened: Instant,
}

struct FileWriter {
    sink: FileSink,
    /// The store's URI, as recorded in checkpoints.
    location: String,
    storage: Arc<weir_storage::StorageOptions>,
    store: Arc<dyn ObjectStore>,
    subtask: usize,
    parallelism: usize,
    uuid: String,
    count: u64,
    part_size: usize,
    /// Restored state, committed and cleaned up before anything else happens.
    restored: Option<Vec<Vec<u8>>>,
    open: BTreeMap<String, InProgress>,
    /// Closed files, pending their checkpoint (`checkpoint` is `u64::MAX` until a barrier).
    pending: Vec<PendingFile>,
    line: Vec<u8>,
}

impl<T: Serialize + Send + 'static> Sink<T> for FileSink {
    fn create_writer(&self, info: &SubtaskInfo) -> Result<Box<dyn SinkWriter<T>>> {
        // Opening does no I/O: recovery runs on the task thread, where a failure restarts
        // the job per its restart strategy.
        let location = self.uri()?;
        let store = weir_storage::open(&location, &info.storage)?;
        Ok(Box::new(FileWriter {
            sink: self.clone(),
            location,
            storage: info.storage.clone(),
            store,
            subtask: info.index,
            parallelism: info.parallelism,
            uuid: uuid(),
            count: 0,
            part_size: info.storage.multipart_part_size,
            restored: Some(
                info.restored
                    .as_ref()
                    .map(|s| s.list.clone())
                    .unwrap_or_default(),
            ),
            open: BTreeMap::new(),
            pending: Vec::new(),
            line: Vec::new(),
        }))
    }
}

/// A random (version 4) UUID.
fn uuid() -> String {
    let (a, b) = (crate::keygroup::random_u64(), crate::keygroup::random_u64());
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        ((b >> 48) & 0x3fff) | 0x8000,
        b & 0xffff_ffff_ffff
    )
}

impl FileWriter {
    /// Completes the restored checkpoint's pending files and aborts this subtask's share of
    /// leftover uploads. Runs once, before the first record or checkpoint.
    fn recover(&mut self) -> Result<()> {
        let Some(restored) = self.restored.take() else {
            return Ok(());
        };
        let mut owns_cleanup = true;
        for bytes in &restored {
            match postcard::from_bytes::<SinkState>(bytes) {
                Ok(SinkState::V1 {
                    subtask,
                    location,
                    pending,
                }) => {
                    if subtask as usize % self.parallelism != self.subtask {
                        owns_cleanup = false;
                    }
                    let store = if location == self.location {
                        self.store.clone()
                    } else {
                        weir_storage::open(&location, &self.storage)?
                    };
                    for p in &pending {
                        store.complete_upload(&p.path, &p.upload, &p.parts())?;
                    }
                }
                Err(e) => match postcard::from_bytes::<LegacyPendingFile>(bytes) {
                    Ok(legacy) => commit_legacy(&legacy)?,
                    Err(_) => {
                        return Err(Error::Restore(format!(
                            "file sink state for {} is corrupt: {e}",
                            self.store.uri("")
                        )));
                    }
                },
            }
        }
        if !owns_cleanup {
            // The restored elements did not arrive as subtask s -> s % parallelism: another
            // subtask may be completing uploads this one would abort. Leaking is safer.
            tracing::warn!(
                location = %self.store.uri(""),
                subtask = self.subtask,
                "file sink state was not distributed by subtask; leftover uploads are not cleaned up"
            );
            return Ok(());
        }
        for upload in self.store.list_uploads("")? {
            if self
                .sink
                .creator(&upload.path)
                .is_some_and(|s| s % self.parallelism == self.subtask)
            {
                tracing::info!(location = %self.store.uri(&upload.path), upload = %upload.id,
                    "aborting an upload no restored checkpoint covers");
                self.store.abort_upload(&upload.path, &upload.id)?;
            }
        }
        Ok(())
    }

    fn new_file(&mut self, dir: &str) -> InProgress {
        let s = &self.sink;
        let path = format!(
            "{dir}{}-{}-{}-{}{}",
            s.prefix, self.uuid, self.subtask, self.count, s.suffix
        );
        self.count += 1;
        InProgress {
            path,
            upload: None,
            parts: Vec::new(),
            buffer: Vec::new(),
            size: 0,
            opened: Instant::now(),
        }
    }

    /// Uploads the file's buffer as its next part, starting the upload if needed.
    fn upload_buffer(store: &dyn ObjectStore, file: &mut InProgress) -> Result<()> {
        let id = match &file.upload {
            Some(id) => id.clone(),
            None => {
                let id = store.create_upload(&file.path)?;
                file.upload = Some(id.clone());
                id
            }
        };
        let number = file.parts.len() as u32 + 1;
        let bytes = Bytes::from(std::mem::take(&mut file.buffer));
        file.parts
            .push(store.upload_part(&file.path, &id, number, bytes)?);
        Ok(())
    }

    /// Uploads the file's last part and queues it for the next checkpoint.
    fn close(&mut self, mut file: InProgress) -> Result<()> {
        if file.size == 0 {
            return Ok(());
        }
        if !file.buffer.is_empty() || file.parts.is_empty() {
            Self::upload_buffer(&*self.store, &mut file)?;
        }
        self.pending.push(PendingFile {
            checkpoint: u64::MAX,
            path: file.path,
            upload: file.upload.expect("an upload was started"),
            parts: file
                .parts
                .into_iter()
                .map(|p| (p.number, p.etag, p.size))
                .collect(),
        });
        Ok(())
    }

    fn close_all(&mut self) -> Result<()> {
        for file in std::mem::take(&mut self.open).into_values() {
            self.close(file)?;
        }
        Ok(())
    }

    fn commit_up_to(&mut self, checkpoint: u64) -> Result<()> {
        let (ready, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|p| p.checkpoint <= checkpoint);
        self.pending = later;
        for (i, p) in ready.iter().enumerate() {
            if let Err(e) = self.store.complete_upload(&p.path, &p.upload, &p.parts()) {
                // Keep what is not committed yet: a later completion or a restore retries it.
                self.pending.extend(ready[i..].iter().cloned());
                return Err(e.into());
            }
        }
        Ok(())
    }

    /// The record's JSON line (into `self.line`) and its partition directory (`""`, or
    /// `f=v/…/` ending in `/`).
    fn encode<T: Serialize + 'static>(&mut self, value: &T) -> Result<String> {
        self.line.clear();
        let any = value as &dyn std::any::Any;
        if let Some(p) = any.downcast_ref::<PartitionedJsonText>() {
            if p.values.len() != self.sink.partition_fields.len() {
                return Err(Error::User(format!(
                    "the file sink partitions by {:?} but a record has {} partition values",
                    self.sink.partition_fields,
                    p.values.len()
                )));
            }
            let mut dir = String::new();
            for (field, value) in self.sink.partition_fields.iter().zip(&p.values) {
                push_partition(&mut dir, field, value.as_deref());
            }
            self.line.extend_from_slice(p.text.as_bytes());
            self.line.push(b'\n');
            return Ok(dir);
        }
        let text = any.downcast_ref::<JsonText>();
        if self.sink.partition_fields.is_empty() {
            match text {
                Some(JsonText(text)) => self.line.extend_from_slice(text.as_bytes()),
                None => serde_json::to_writer(&mut self.line, value)
                    .map_err(|e| Error::User(format!("cannot encode record as JSON: {e}")))?,
            }
            self.line.push(b'\n');
            return Ok(String::new());
        }
        let json = match text {
            Some(JsonText(text)) => serde_json::from_str(text),
            None => serde_json::to_value(value),
        }
        .map_err(|e| Error::User(format!("cannot encode record as JSON: {e}")))?;
        let mut map = match json {
            serde_json::Value::Object(map) => map,
            other => {
                return Err(Error::User(format!(
                    "the file sink partitions by {:?} but a record is not a JSON object: {other}",
                    self.sink.partition_fields
                )));
            }
        };
        let mut dir = String::new();
        for field in &self.sink.partition_fields {
            let value = map.remove(field).ok_or_else(|| {
                Error::User(format!(
                    "the file sink partitions by '{field}' but a record has no such field: {}",
                    serde_json::Value::Object(map.clone())
                ))
            })?;
            let text = match value {
                serde_json::Value::Null => None,
                serde_json::Value::String(s) => Some(s),
                other => Some(other.to_string()),
            };
            push_partition(&mut dir, field, text.as_deref());
        }
        serde_json::to_writer(&mut self.line, &map)
            .map_err(|e| Error::User(format!("cannot encode record as JSON: {e}")))?;
        self.line.push(b'\n');
        Ok(dir)
    }
}

/// Flink's name for the partition of NULL values.
const DEFAULT_PARTITION: &str = "__DEFAULT_PARTITION__";

/// Appends `field=value/` (escaped) to a partition directory.
fn push_partition(dir: &mut String, field: &str, value: Option<&str>) {
    dir.push_str(&escape_partition(field));
    dir.push('=');
    dir.push_str(&partition_value(value));
    dir.push('/');
}

/// A partition value's path segment (`None`: NULL).
fn partition_value(value: Option<&str>) -> String {
    match value {
        None | Some("") => DEFAULT_PARTITION.to_string(),
        Some(s) => escape_partition(s),
    }
}

/// Escapes what cannot stand in a path segment as `%XX`, as Flink's partition paths do.
fn escape_partition(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control()
            || matches!(
                c,
                '"' | '#' | '%' | '\'' | '*' | '/' | ':' | '=' | '?' | '\\' | '{' | '[' | ']' | '^'
            )
        {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    if out == "." || out == ".." {
        out = out.replace('.', "%2E");
    }
    out
}

fn commit_legacy(p: &LegacyPendingFile) -> Result<()> {
    match std::fs::rename(&p.tmp, &p.target) {
        Ok(()) => Ok(()),
        Err(_) if p.target.exists() && !p.tmp.exists() => Ok(()),
        Err(e) => Err(Error::io("cannot commit", &p.target, e)),
    }
}

impl<T: Serialize + Send + 'static> SinkWriter<T> for FileWriter {
    fn write(&mut self, records: Vec<Rec<T>>) -> Result<()> {
        self.recover()?;
        for r in &records {
            let dir = self.encode(&r.value)?;
            let mut file = match self.open.remove(&dir) {
                Some(file) => file,
                None => self.new_file(&dir),
            };
            file.buffer.extend_from_slice(&self.line);
            file.size += self.line.len() as u64;
            if file.buffer.len() >= self.part_size {
                Self::upload_buffer(&*self.store, &mut file)?;
            }
            if file.size >= self.sink.rolling_file_size {
                self.close(file)?;
            } else {
                self.open.insert(dir, file);
            }
        }
        let interval = self.sink.rollover_interval;
        let old: Vec<String> = self
            .open
            .iter()
            .filter(|(_, f)| f.opened.elapsed() >= interval)
            .map(|(dir, _)| dir.clone())
            .collect();
        for dir in old {
            let file = self.open.remove(&dir).expect("listed above");
            self.close(file)?;
        }
        Ok(())
    }

    fn snapshot_state(&mut self, checkpoint_id: u64) -> Result<Vec<Vec<u8>>> {
        self.recover()?;
        self.close_all()?;
        for p in &mut self.pending {
            p.checkpoint = p.checkpoint.min(checkpoint_id);
        }
        let state = SinkState::V1 {
            subtask: self.subtask as u32,
            location: self.location.clone(),
            pending: self.pending.clone(),
        };
        Ok(vec![
            postcard::to_allocvec(&state).expect("plain data encodes"),
        ])
    }

    fn notify_checkpoint_complete(&mut self, checkpoint_id: u64) -> Result<()> {
        self.recover()?;
        self.commit_up_to(checkpoint_id)
    }

    fn finish(&mut self) -> Result<()> {
        self.recover()?;
        self.close_all()?;
        self.commit_up_to(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_file_names_carry_the_creating_subtask_and_others_are_not_claimed() {
        let sink = FileSink::json_lines("/out");
        let name = format!("dt=1/part-{}-3-17.jsonl", uuid());
        assert_eq!(sink.creator(&name), Some(3));
        assert_eq!(sink.creator("part-x-3-17.jsonl"), None);
        assert_eq!(sink.creator("data.csv"), None);
        let custom = FileSink::json_lines("/out")
            .with_part_prefix("clicks")
            .with_part_suffix("");
        assert_eq!(custom.creator(&format!("clicks-{}-0-0", uuid())), Some(0));
    }

    #[test]
    fn a_checkpoint_of_the_local_sink_before_multipart_uploads_commits_its_pending_files() {
        let dir = tempfile::tempdir().unwrap();
        let (tmp, target) = (dir.path().join(".inprogress-a"), dir.path().join("part-a"));
        std::fs::write(&tmp, "{\"x\":1}\n").unwrap();
        // What that sink checkpointed: (checkpoint, in-progress file, final name).
        let legacy = postcard::to_allocvec(&(3u64, tmp.clone(), target.clone())).unwrap();
        let info = SubtaskInfo::for_test(
            "sink",
            Some(crate::checkpoint::OperatorSubtaskState {
                list: vec![legacy],
                ..Default::default()
            }),
        );
        let sink = FileSink::json_lines(dir.path().join("out"));
        let mut writer = Sink::<u32>::create_writer(&sink, &info).unwrap();
        writer.finish().unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "{\"x\":1}\n");
        assert!(!tmp.exists());
    }

    #[test]
    fn partition_values_are_escaped_as_flink_does() {
        assert_eq!(
            partition_value(Some("2026-01-01 10:00")),
            "2026-01-01 10%3A00"
        );
        assert_eq!(partition_value(Some("a/b")), "a%2Fb");
        assert_eq!(partition_value(None), DEFAULT_PARTITION);
        assert_eq!(partition_value(Some("")), DEFAULT_PARTITION);
        assert_eq!(partition_value(Some("7")), "7");
        assert_eq!(partition_value(Some("..")), "%2E%2E");
    }
}
