//! Connectors: the source and sink traits, and the built-in connectors — data generator,
//! in-memory collections, JSON-lines and CSV files in; print, exactly-once JSON-lines files
//! (local or S3), blackhole and an in-memory collector out.

mod datagen;
mod file;
mod filesink;
mod sinks;

/// The fields of a CSV record, as [`CsvDecoder`]s see them.
pub use csv::StringRecord;
pub use datagen::{DataGen, GenContext};
pub use file::{CsvDecoder, FileFormat, FileSource, LineDecoder, MakeCsvDecoder, MakeLineDecoder};
pub use filesink::{
    DEFAULT_ROLLING_FILE_SIZE, DEFAULT_ROLLOVER_INTERVAL, FileSink, JsonText, PartitionedJsonText,
};
pub use sinks::{BlackholeSink, CollectSink, CollectedRecords, PrintSink};

use crate::error::Result;
use crate::runtime::{Rec, SubtaskInfo};

/// Names a split within one reader (a Kafka partition, a file): chosen by the reader, and
/// stable while it reads that split.
pub type SplitId = u64;

/// What a reader produced on one poll.
#[derive(Debug)]
pub enum ReaderPoll<T> {
    /// Some records (may be empty).
    Records(Vec<Rec<T>>),
    /// Records of several splits, for per-split watermarks (see
    /// [`SourceReader::open_splits`]): the first `runs[0].1` records come from split
    /// `runs[0].0`, the next `runs[1].1` from `runs[1].0`, and so on.
    SplitRecords {
        /// The records, in runs of one split each.
        records: Vec<Rec<T>>,
        /// `(split, number of records)` of each run, in order.
        runs: Vec<(SplitId, usize)>,
    },
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
    /// The splits this reader reads now, finished ones left out, for per-split watermarks
    /// (Flink's): with a watermark strategy, the source generates one watermark per split
    /// and emits the minimum over the splits that are not idle, so a split that is behind
    /// (or empty) holds back the subtask's watermark until the strategy's idleness timeout
    /// passes, and a reader with no split is idle. Such a reader tags its records with
    /// [`ReaderPoll::SplitRecords`]. `None` (the default): the reader's output is one
    /// stream with one watermark.
    fn open_splits(&self) -> Option<Vec<SplitId>> {
        None
    }
    /// The reader's position, one element per split (restored via `SubtaskInfo::restored`).
    fn snapshot_state(&mut self) -> Result<Vec<Vec<u8>>> {
        Ok(Vec::new())
    }
    /// The reader's own metrics, named as Flink's connectors name them (see
    /// [`Gauge`](crate::runtime::Gauge)): read a few times a second and exported with the
    /// operator's metrics.
    fn gauges(&self) -> Vec<crate::runtime::Gauge> {
        Vec::new()
    }
    /// Checkpoint `checkpoint_id` completed (every checkpoint up to it covers what this
    /// reader's snapshots before it recorded): e.g. report positions to an external system
    /// for monitoring. Restores never read them back from there.
    fn notify_checkpoint_complete(&mut self, _checkpoint_id: u64) -> Result<()> {
        Ok(())
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
/// `count`. Indices come out in increasing order, whatever positions the splits start from:
/// a fresh reader's splits are one round apart, but restored ones may come from subtasks
/// that progressed unevenly, and reading them round-robin would emit records further out
/// of order than the watermark allows (they would be dropped as late).
#[derive(Debug)]
pub(crate) struct IndexSplits {
    /// `(next index, split)` of every split not exhausted yet, smallest next index first.
    pending: std::collections::BinaryHeap<std::cmp::Reverse<(u64, u64)>>,
    /// `(split, next index)` of exhausted splits, kept for snapshots.
    done: Vec<(u64, u64)>,
    count: Option<u64>,
}

impl IndexSplits {
    pub(crate) fn new(info: &SubtaskInfo, count: Option<u64>) -> Result<Self> {
        let splits = match &info.restored {
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
        let (done, pending): (Vec<_>, Vec<_>) = splits
            .into_iter()
            .partition(|&(_, next)| count.is_some_and(|n| next >= n));
        Ok(IndexSplits {
            pending: pending
                .into_iter()
                .map(|(split, next)| std::cmp::Reverse((next, split)))
                .collect(),
            done,
            count,
        })
    }

    /// The next index, or `None` when every split is exhausted.
    pub(crate) fn next(&mut self) -> Option<u64> {
        let mut top = self.pending.peek_mut()?;
        let (i, split) = top.0;
        top.0.0 = i + SPLITS;
        if self.count.is_some_and(|n| i + SPLITS >= n) {
            std::collections::binary_heap::PeekMut::pop(top);
            self.done.push((split, i + SPLITS));
        }
        Some(i)
    }

    pub(crate) fn snapshot(&self) -> Vec<Vec<u8>> {
        let mut splits: Vec<(u64, u64)> = self
            .pending
            .iter()
            .map(|r| (r.0.1, r.0.0))
            .chain(self.done.iter().copied())
            .collect();
        splits.sort_unstable();
        splits
            .iter()
            .map(|s| postcard::to_allocvec(s).expect("two integers encode"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::OperatorSubtaskState;

    fn info(restored: Option<Vec<(u64, u64)>>) -> SubtaskInfo {
        SubtaskInfo::for_test(
            "gen",
            restored.map(|splits| OperatorSubtaskState {
                list: splits
                    .iter()
                    .map(|s| postcard::to_allocvec(s).unwrap())
                    .collect(),
                ..Default::default()
            }),
        )
    }

    #[test]
    fn restored_splits_at_uneven_positions_resume_in_index_order() {
        // Split 1 is five rounds behind split 0 (they came from different subtasks).
        let mut s = IndexSplits::new(&info(Some(vec![(0, 5 * SPLITS), (1, 1)])), None).unwrap();
        let got: Vec<u64> = (0..8).map(|_| s.next().unwrap()).collect();
        let r = SPLITS;
        assert_eq!(
            got,
            vec![
                1,
                1 + r,
                1 + 2 * r,
                1 + 3 * r,
                1 + 4 * r,
                5 * r,
                1 + 5 * r,
                6 * r
            ]
        );
    }

    #[test]
    fn bounded_splits_end_and_snapshot_every_split_including_exhausted_ones() {
        let mut s = IndexSplits::new(&info(None), Some(130)).unwrap();
        let got: Vec<u64> = std::iter::from_fn(|| s.next()).collect();
        assert_eq!(got, (0..130).collect::<Vec<_>>());
        let snap = s.snapshot();
        assert_eq!(snap.len(), SPLITS as usize);
        let restored: Vec<(u64, u64)> = snap
            .iter()
            .map(|b| postcard::from_bytes(b).unwrap())
            .collect();
        assert_eq!(restored[0], (0, 2 * SPLITS));
        assert_eq!(restored[2], (2, 2 + SPLITS));
        let mut again = IndexSplits::new(&info(Some(restored)), Some(130)).unwrap();
        assert_eq!(again.next(), None, "nothing is read twice after a restore");
    }
}
