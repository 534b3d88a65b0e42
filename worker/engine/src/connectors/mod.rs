//! Connectors: the source and sink traits, and the local connectors — data generator,
//! in-memory collections, JSON-lines and CSV files in; print, JSON-lines files, blackhole and
//! an in-memory collector out.

mod datagen;
mod file;
mod sinks;

pub use datagen::{DataGen, GenContext};
pub use file::{FileFormat, FileSource};
pub use sinks::{BlackholeSink, CollectSink, CollectedRecords, FileSink, PrintSink};

use crate::error::Result;
use crate::runtime::{Rec, SubtaskInfo};

/// What a reader produced on one poll.
#[derive(Debug)]
pub enum ReaderPoll<T> {
    /// Some records (may be empty).
    Records(Vec<Rec<T>>),
    /// Nothing available; poll again after this many milliseconds.
    Pending(u64),
    /// Exhausted.
    End,
}

/// A source of `T` records: creates one reader per subtask.
pub trait Source<T>: Send + Sync + 'static {
    /// The reader of subtask `info.index` out of `info.parallelism`.
    fn create_reader(&self, info: &SubtaskInfo) -> Result<Box<dyn SourceReader<T>>>;
}

/// Reads one subtask's share of a source.
pub trait SourceReader<T>: Send {
    /// Returns at most `max` records.
    fn poll(&mut self, max: usize) -> Result<ReaderPoll<T>>;
    /// Records skipped as undecodable.
    fn skipped(&self) -> u64 {
        0
    }
    /// The reader's position, one element per split (restored via `SubtaskInfo::restored`).
    fn snapshot_state(&mut self) -> Result<Vec<Vec<u8>>> {
        Ok(Vec::new())
    }
}

/// A destination for `T` records: creates one writer per subtask.
pub trait Sink<T>: Send + Sync + 'static {
    /// The writer of subtask `info.index`.
    fn create_writer(&self, info: &SubtaskInfo) -> Result<Box<dyn SinkWriter<T>>>;
}

/// Writes one subtask's records.
pub trait SinkWriter<T>: Send {
    /// Writes a batch.
    fn write(&mut self, records: Vec<Rec<T>>) -> Result<()>;
    /// Input ended: flush, close and make everything visible.
    fn finish(&mut self) -> Result<()> {
        Ok(())
    }
    /// Checkpoint `checkpoint_id` passes: prepare (pre-commit) what was written since the
    /// last one and return what a restore needs to finish committing it.
    fn snapshot_state(&mut self, _checkpoint_id: u64) -> Result<Vec<Vec<u8>>> {
        Ok(Vec::new())
    }
    /// Checkpoint `checkpoint_id` completed: commit what it covers.
    fn notify_checkpoint_complete(&mut self, _checkpoint_id: u64) -> Result<()> {
        Ok(())
    }
}

/// A bounded source over a vector. Record `i` belongs to split `i % SPLITS`; splits are
/// dealt to subtasks, so the records read are the same at any parallelism and a restored
/// reader resumes each split where it stopped.
pub struct CollectionSource<T> {
    items: std::sync::Arc<Vec<T>>,
}

impl<T> CollectionSource<T> {
    /// A source over `items`.
    pub fn new(items: Vec<T>) -> Self {
        CollectionSource {
            items: std::sync::Arc::new(items),
        }
    }
}

struct CollectionReader<T> {
    items: std::sync::Arc<Vec<T>>,
    splits: IndexSplits,
}

impl<T: Clone + Send + Sync + 'static> Source<T> for CollectionSource<T> {
    fn create_reader(&self, info: &SubtaskInfo) -> Result<Box<dyn SourceReader<T>>> {
        Ok(Box::new(CollectionReader {
            items: self.items.clone(),
            splits: IndexSplits::new(info, Some(self.items.len() as u64))?,
        }))
    }
}

impl<T: Clone + Send + Sync + 'static> SourceReader<T> for CollectionReader<T> {
    fn poll(&mut self, max: usize) -> Result<ReaderPoll<T>> {
        let mut out = Vec::with_capacity(max);
        while out.len() < max {
            let Some(i) = self.splits.next() else { break };
            out.push(Rec {
                ts: crate::time::NO_TIMESTAMP,
                value: self.items[i as usize].clone(),
            });
        }
        if out.is_empty() {
            return Ok(ReaderPoll::End);
        }
        Ok(ReaderPoll::Records(out))
    }

    fn snapshot_state(&mut self) -> Result<Vec<Vec<u8>>> {
        Ok(self.splits.snapshot())
    }
}

/// Number of virtual splits an index-addressed source is cut into (the most subtasks that
/// can share it).
pub const SPLITS: u64 = 128;

/// The index splits one reader owns: split `j` yields indices `j, j + SPLITS, ...` below
/// `count`. Indices come out round-robin over the splits, i.e. in increasing order for a
/// fresh reader.
#[derive(Debug)]
pub(crate) struct IndexSplits {
    /// `(split, next index)`.
    splits: Vec<(u64, u64)>,
    count: Option<u64>,
    cursor: usize,
}

impl IndexSplits {
    pub(crate) fn new(info: &SubtaskInfo, count: Option<u64>) -> Result<Self> {
        let mut splits = match &info.restored {
            Some(state) => state
                .list
                .iter()
                .map(|b| {
                    postcard::from_bytes::<(u64, u64)>(b).map_err(|e| {
                        crate::Error::Restore(format!(
                            "source '{}' split state is corrupt: {e}",
                            info.name
                        ))
                    })
                })
                .collect::<Result<Vec<_>>>()?,
            None => (0..SPLITS)
                .filter(|j| *j as usize % info.parallelism == info.index)
                .map(|j| (j, j))
                .collect(),
        };
        // Resume in index order: splits are at most one round apart, so round-robin over
        // them sorted by their next index continues the increasing sequence exactly.
        splits.sort_by_key(|&(split, next)| (next, split));
        Ok(IndexSplits {
            splits,
            count,
            cursor: 0,
        })
    }

    /// The next index, or `None` when every split is exhausted.
    pub(crate) fn next(&mut self) -> Option<u64> {
        for _ in 0..self.splits.len() {
            let c = self.cursor;
            self.cursor = (self.cursor + 1) % self.splits.len();
            let (_, next) = &mut self.splits[c];
            if self.count.is_none_or(|n| *next < n) {
                let i = *next;
                *next += SPLITS;
                return Some(i);
            }
        }
        None
    }

    pub(crate) fn snapshot(&self) -> Vec<Vec<u8>> {
        self.splits
            .iter()
            .map(|s| postcard::to_allocvec(s).expect("two integers encode"))
            .collect()
    }
}
