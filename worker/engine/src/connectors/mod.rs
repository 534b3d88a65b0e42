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
    /// Input ended: flush and close.
    fn finish(&mut self) -> Result<()> {
        Ok(())
    }
}

/// A bounded source over a vector, split across subtasks by position (record `i` goes to
/// subtask `i % parallelism`).
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
    next: usize,
    step: usize,
}

impl<T: Clone + Send + Sync + 'static> Source<T> for CollectionSource<T> {
    fn create_reader(&self, info: &SubtaskInfo) -> Result<Box<dyn SourceReader<T>>> {
        Ok(Box::new(CollectionReader {
            items: self.items.clone(),
            next: info.index,
            step: info.parallelism,
        }))
    }
}

impl<T: Clone + Send + Sync + 'static> SourceReader<T> for CollectionReader<T> {
    fn poll(&mut self, max: usize) -> Result<ReaderPoll<T>> {
        if self.next >= self.items.len() {
            return Ok(ReaderPoll::End);
        }
        let mut out = Vec::with_capacity(max);
        while self.next < self.items.len() && out.len() < max {
            out.push(Rec {
                ts: crate::time::NO_TIMESTAMP,
                value: self.items[self.next].clone(),
            });
            self.next += self.step;
        }
        Ok(ReaderPoll::Records(out))
    }
}
