//! Local sinks: stdout, JSON-lines files (one part file per subtask), a blackhole that only
//! counts, and an in-memory collector for tests and embedding.

use super::{Sink, SinkWriter};
use crate::error::{Error, Result};
use crate::runtime::{Rec, SubtaskInfo};
use serde::Serialize;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

type FormatFn<T> = Arc<dyn Fn(&T) -> String + Send + Sync>;

/// Prints records to stdout, prefixed with `<subtask>> ` when the sink runs in parallel.
pub struct PrintSink<T> {
    format: FormatFn<T>,
}

impl<T: std::fmt::Debug> PrintSink<T> {
    /// Prints with `{:?}`.
    pub fn debug() -> Self {
        PrintSink {
            format: Arc::new(|v| format!("{v:?}")),
        }
    }
}

impl<T: std::fmt::Display> PrintSink<T> {
    /// Prints with `{}`.
    pub fn display() -> Self {
        PrintSink {
            format: Arc::new(|v| v.to_string()),
        }
    }
}

struct PrintWriter<T> {
    format: FormatFn<T>,
    prefix: String,
}

impl<T: Send + 'static> Sink<T> for PrintSink<T> {
    fn create_writer(&self, info: &SubtaskInfo) -> Result<Box<dyn SinkWriter<T>>> {
        let prefix = if info.parallelism > 1 {
            format!("{}> ", info.index + 1)
        } else {
            String::new()
        };
        Ok(Box::new(PrintWriter {
            format: self.format.clone(),
            prefix,
        }))
    }
}

impl<T: Send> SinkWriter<T> for PrintWriter<T> {
    fn write(&mut self, records: Vec<Rec<T>>) -> Result<()> {
        let mut s = String::new();
        for r in &records {
            s.push_str(&self.prefix);
            s.push_str(&(self.format)(&r.value));
            s.push('\n');
        }
        let mut out = std::io::stdout().lock();
        out.write_all(s.as_bytes())
            .map_err(|e| Error::io("cannot write", "stdout", e))
    }
}

/// Writes JSON lines into `dir`, exactly once.
///
/// Records go to a hidden in-progress file under `dir/.inprogress/`. At each checkpoint
/// barrier the file is flushed, fsynced and closed (pre-commit) and recorded in the
/// checkpoint; when that checkpoint completes it is renamed to `dir/part-<id>.jsonl`, and only
/// then visible. End of input commits everything. After a failure, the restored checkpoint's
/// pre-committed files are committed and anything written after it stays invisible, so the
/// visible output holds every record exactly once.
#[derive(Debug, Clone)]
pub struct FileSink {
    dir: PathBuf,
}

impl FileSink {
    /// A sink writing into `dir` (created if missing).
    pub fn json_lines(dir: impl Into<PathBuf>) -> Self {
        FileSink { dir: dir.into() }
    }
}

/// A pre-committed file: where it is and what it becomes.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct PendingFile {
    checkpoint: u64,
    tmp: PathBuf,
    target: PathBuf,
}

struct FileWriter {
    dir: PathBuf,
    /// Unique per writer instance, so restarted attempts never reuse a name.
    token: String,
    seq: u64,
    current: Option<(PathBuf, std::io::BufWriter<std::fs::File>)>,
    pending: Vec<PendingFile>,
    line: Vec<u8>,
}

fn commit(p: &PendingFile) -> Result<()> {
    match std::fs::rename(&p.tmp, &p.target) {
        Ok(()) => Ok(()),
        // Committed before (by an earlier attempt that crashed after renaming): idempotent.
        Err(_) if p.target.exists() && !p.tmp.exists() => Ok(()),
        Err(e) => Err(Error::io("cannot commit", &p.target, e)),
    }
}

impl FileWriter {
    fn open(&mut self) -> Result<&mut std::io::BufWriter<std::fs::File>> {
        if self.current.is_none() {
            let dir = self.dir.join(".inprogress");
            std::fs::create_dir_all(&dir)
                .map_err(|e| Error::io("cannot create output directory", &dir, e))?;
            let path = dir.join(format!("part-{}-{}.jsonl", self.token, self.seq));
            let file =
                std::fs::File::create(&path).map_err(|e| Error::io("cannot create", &path, e))?;
            self.current = Some((path, std::io::BufWriter::with_capacity(1 << 16, file)));
        }
        Ok(&mut self.current.as_mut().expect("opened").1)
    }

    /// Flushes, syncs and closes the current file as pending for `checkpoint`.
    fn pre_commit(&mut self, checkpoint: u64) -> Result<()> {
        if let Some((path, mut out)) = self.current.take() {
            out.flush()
                .map_err(|e| Error::io("cannot write", &path, e))?;
            out.get_ref()
                .sync_all()
                .map_err(|e| Error::io("cannot sync", &path, e))?;
            let target = self
                .dir
                .join(format!("part-{}-{}.jsonl", self.token, self.seq));
            self.seq += 1;
            self.pending.push(PendingFile {
                checkpoint,
                tmp: path,
                target,
            });
        }
        Ok(())
    }

    fn commit_up_to(&mut self, checkpoint: u64) -> Result<()> {
        let (ready, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|p| p.checkpoint <= checkpoint);
        self.pending = later;
        ready.iter().try_for_each(commit)
    }
}

impl<T: Serialize + Send + 'static> Sink<T> for FileSink {
    fn create_writer(&self, info: &SubtaskInfo) -> Result<Box<dyn SinkWriter<T>>> {
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| Error::io("cannot create output directory", &self.dir, e))?;
        // Files pre-committed in the checkpoint we restore from belong to the output.
        if let Some(state) = &info.restored {
            for b in &state.list {
                let p: PendingFile = postcard::from_bytes(b).map_err(|e| {
                    Error::Restore(format!("file sink '{}' state is corrupt: {e}", info.name))
                })?;
                commit(&p)?;
            }
        }
        let token = format!(
            "{}-{:08x}",
            info.index,
            crate::runtime::exec::random_u64() as u32
        );
        Ok(Box::new(FileWriter {
            dir: self.dir.clone(),
            token,
            seq: 0,
            current: None,
            pending: Vec::new(),
            line: Vec::new(),
        }))
    }
}

impl<T: Serialize + Send> SinkWriter<T> for FileWriter {
    fn write(&mut self, records: Vec<Rec<T>>) -> Result<()> {
        let mut line = std::mem::take(&mut self.line);
        let out = self.open()?;
        for r in &records {
            line.clear();
            serde_json::to_writer(&mut line, &r.value)
                .map_err(|e| Error::User(format!("cannot encode record as JSON: {e}")))?;
            line.push(b'\n');
            out.write_all(&line)
                .map_err(|e| Error::io("cannot write", "in-progress file", e))?;
        }
        self.line = line;
        Ok(())
    }

    fn snapshot_state(&mut self, checkpoint_id: u64) -> Result<Vec<Vec<u8>>> {
        self.pre_commit(checkpoint_id)?;
        Ok(self
            .pending
            .iter()
            .map(|p| postcard::to_allocvec(p).expect("plain data encodes"))
            .collect())
    }

    fn notify_checkpoint_complete(&mut self, checkpoint_id: u64) -> Result<()> {
        self.commit_up_to(checkpoint_id)
    }

    fn finish(&mut self) -> Result<()> {
        self.pre_commit(u64::MAX)?;
        self.commit_up_to(u64::MAX)
    }
}

/// Discards records (counted in the sink's `records_in` metric).
#[derive(Debug, Clone, Copy, Default)]
pub struct BlackholeSink;

struct Blackhole;

impl<T: Send + 'static> Sink<T> for BlackholeSink {
    fn create_writer(&self, _info: &SubtaskInfo) -> Result<Box<dyn SinkWriter<T>>> {
        Ok(Box::new(Blackhole))
    }
}

impl<T: Send> SinkWriter<T> for Blackhole {
    fn write(&mut self, _records: Vec<Rec<T>>) -> Result<()> {
        Ok(())
    }
}

/// Collects every record in memory; read them through the [`CollectedRecords`] handle.
pub struct CollectSink<T> {
    shared: Arc<Mutex<Vec<Rec<T>>>>,
}

/// The records a [`CollectSink`] received.
#[derive(Clone)]
pub struct CollectedRecords<T> {
    shared: Arc<Mutex<Vec<Rec<T>>>>,
}

impl<T> std::fmt::Debug for CollectedRecords<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "CollectedRecords({})",
            self.shared.lock().map(|v| v.len()).unwrap_or(0)
        )
    }
}

impl<T: Clone> CollectSink<T> {
    /// The sink and a handle to what it collects.
    pub fn new() -> (Self, CollectedRecords<T>) {
        let shared = Arc::new(Mutex::new(Vec::new()));
        (
            CollectSink {
                shared: shared.clone(),
            },
            CollectedRecords { shared },
        )
    }
}

impl<T: Clone> CollectedRecords<T> {
    /// Records with their timestamps, in arrival order.
    pub fn records(&self) -> Vec<Rec<T>> {
        self.shared.lock().expect("not poisoned").clone()
    }

    /// Just the values, in arrival order.
    pub fn values(&self) -> Vec<T> {
        self.records().into_iter().map(|r| r.value).collect()
    }
}

struct CollectWriter<T> {
    shared: Arc<Mutex<Vec<Rec<T>>>>,
}

impl<T: Clone + Send + 'static> Sink<T> for CollectSink<T> {
    fn create_writer(&self, _info: &SubtaskInfo) -> Result<Box<dyn SinkWriter<T>>> {
        Ok(Box::new(CollectWriter {
            shared: self.shared.clone(),
        }))
    }
}

impl<T: Send> SinkWriter<T> for CollectWriter<T> {
    fn write(&mut self, mut records: Vec<Rec<T>>) -> Result<()> {
        self.shared
            .lock()
            .expect("not poisoned")
            .append(&mut records);
        Ok(())
    }
}
