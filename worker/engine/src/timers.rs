//! Timer queues of keyed operators: event-time timers fire as the watermark passes them,
//! processing-time timers as the wall clock does. A timer is identified by (time, key,
//! namespace); registering the same one twice keeps one.

use crate::time::Timestamp;
use hashbrown::HashSet;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// A timer as stored in snapshots: (time, key, namespace).
pub(crate) type TimerTriple = (Timestamp, Vec<u8>, Vec<u8>);

/// A registered timer.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Timer {
    pub(crate) ts: Timestamp,
    pub(crate) key: Box<[u8]>,
    pub(crate) ns: Box<[u8]>,
}

/// A priority queue of timers with de-duplication and lazy deletion.
#[derive(Debug, Default)]
pub(crate) struct TimerQueue {
    heap: BinaryHeap<Reverse<Timer>>,
    live: HashSet<Timer>,
}

impl TimerQueue {
    pub(crate) fn register(&mut self, ts: Timestamp, key: &[u8], ns: &[u8]) {
        let t = Timer {
            ts,
            key: key.into(),
            ns: ns.into(),
        };
        if self.live.insert(t.clone()) {
            self.heap.push(Reverse(t));
        }
    }

    pub(crate) fn delete(&mut self, ts: Timestamp, key: &[u8], ns: &[u8]) {
        self.live.remove(&Timer {
            ts,
            key: key.into(),
            ns: ns.into(),
        });
    }

    /// The earliest live timer's time.
    pub(crate) fn peek(&mut self) -> Option<Timestamp> {
        while let Some(Reverse(t)) = self.heap.peek() {
            if self.live.contains(t) {
                return Some(t.ts);
            }
            self.heap.pop();
        }
        None
    }

    /// Removes and returns the earliest timer due at or before `time`.
    pub(crate) fn pop_due(&mut self, time: Timestamp) -> Option<Timer> {
        match self.peek() {
            Some(ts) if ts <= time => {
                let Reverse(t) = self.heap.pop().expect("peeked");
                self.live.remove(&t);
                Some(t)
            }
            _ => None,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.live.len()
    }

    /// Every live timer, grouped by the key group of its key.
    pub(crate) fn for_key_group(
        &self,
        max_parallelism: usize,
    ) -> std::collections::BTreeMap<usize, Vec<TimerTriple>> {
        let mut out: std::collections::BTreeMap<usize, Vec<_>> = std::collections::BTreeMap::new();
        for t in &self.live {
            let kg = crate::keygroup::key_group_for_bytes(&t.key, max_parallelism);
            out.entry(kg)
                .or_default()
                .push((t.ts, t.key.to_vec(), t.ns.to_vec()));
        }
        for v in out.values_mut() {
            v.sort();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_fire_in_time_order_once_and_respect_deletion() {
        let mut q = TimerQueue::default();
        q.register(30, b"a", b"");
        q.register(10, b"b", b"");
        q.register(10, b"b", b""); // duplicate
        q.register(20, b"c", b"");
        q.delete(20, b"c", b"");
        assert_eq!(q.len(), 2);
        assert_eq!(q.pop_due(25).map(|t| t.ts), Some(10));
        assert_eq!(q.pop_due(25), None, "20 was deleted, 30 is not due");
        assert_eq!(
            q.pop_due(30).map(|t| (t.ts, t.key.to_vec())),
            Some((30, b"a".to_vec()))
        );
        assert_eq!(q.peek(), None);
    }
}
