//! Commits the source's checkpointed offsets to the consumer group off the task thread.
//!
//! librdkafka reports the result of an asynchronous manual commit only to a configured
//! commit callback, which the `rdkafka` crate does not install, and a synchronous commit on
//! the task thread would stall reading for a broker round trip (or a timeout, with the
//! broker away). So one thread per reader commits synchronously and records each result in
//! the consumer's [`ReaderContext`], for the `committedOffset` and `commits*` metrics. Only
//! the latest offsets wait: a commit still pending when a newer checkpoint completes is
//! replaced by the newer one (the group's offsets are for monitoring only).

use crate::metrics::ReaderContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

#[derive(Default)]
struct Slot {
    /// `(topic, partition, next offset)` to commit next.
    latest: Option<Vec<(String, i32, i64)>>,
    /// A commit is under way.
    busy: bool,
    closed: bool,
}

/// How long a closing reader waits for its last commit: a stopped job's final positions
/// should reach the group, but a broker that does not answer must not hold the stop up.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// Hands offsets to the committer thread; dropping it lets the thread end.
pub(crate) struct Committer {
    slot: Arc<(Mutex<Slot>, Condvar)>,
}

impl Committer {
    /// Starts the thread committing through `consumer`.
    pub(crate) fn start(consumer: Arc<BaseConsumer<ReaderContext>>, name: &str) -> Committer {
        let slot: Arc<(Mutex<Slot>, Condvar)> = Arc::default();
        let shared = slot.clone();
        let source = name.to_string();
        let spawned = std::thread::Builder::new()
            .name("kafka-commit".into())
            .spawn(move || {
                loop {
                    let offsets = {
                        let (lock, cv) = &*shared;
                        let mut s = lock.lock().expect("never poisoned");
                        while s.latest.is_none() && !s.closed {
                            s = cv.wait(s).expect("never poisoned");
                        }
                        match s.latest.take() {
                            Some(o) => {
                                s.busy = true;
                                o
                            }
                            None => return,
                        }
                    };
                    let mut tpl = TopicPartitionList::new();
                    for (t, p, o) in &offsets {
                        let _ = tpl.add_partition_offset(t, *p, Offset::Offset(*o));
                    }
                    let result = consumer.commit(&tpl, CommitMode::Sync);
                    if let Err(e) = &result {
                        // Monitoring only: a failed commit never fails the job.
                        tracing::warn!(%source, "cannot commit offsets to the consumer group: {e}");
                    }
                    consumer.context().record_commit(result.is_ok(), &offsets);
                    let (lock, cv) = &*shared;
                    lock.lock().expect("never poisoned").busy = false;
                    cv.notify_all();
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(source = %name, "no thread to commit offsets to the group: {e}");
        }
        Committer { slot }
    }

    /// Commits `offsets` soon, replacing any not committed yet.
    pub(crate) fn commit(&self, offsets: Vec<(String, i32, i64)>) {
        let (lock, cv) = &*self.slot;
        lock.lock().expect("never poisoned").latest = Some(offsets);
        cv.notify_all();
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        let (lock, cv) = &*self.slot;
        let mut s = lock.lock().expect("never poisoned");
        s.closed = true;
        cv.notify_all();
        let _ = cv
            .wait_timeout_while(s, CLOSE_WAIT, |s| s.busy || s.latest.is_some())
            .expect("never poisoned");
    }
}
