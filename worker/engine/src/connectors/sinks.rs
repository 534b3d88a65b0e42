//! Simple sinks: stdout, a blackhole that only counts, and an in-memory collector for tests
//! and embedding. The exactly-once file sink lives in `filesink.rs`.

use super::{Sink, SinkWriter};
use crate::error::{Error, Result};
use crate::runtime::{Rec, SubtaskInfo};
use std::io::Write;
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
