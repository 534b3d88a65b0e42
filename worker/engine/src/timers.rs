//! Timer queues of keyed operators: event-time timers fire as the watermark passes them,
//! processing-time timers as the wall clock does. A timer is identified by (time, key,
//! namespace); registering the same one twice keeps one.
//!
//! Registering a timer that already exists is one hash lookup by the borrowed (time, key,
//! namespace) and allocates nothing. A new timer allocates its key and namespace once, shared
//! by the queue and the set. Timers due at the same time fire in the order they were
//! registered (the queue orders by time and a registration number, so it never compares
//! keys); restored timers are registered in (time, key, namespace) order.

use crate::time::Timestamp;
use hashbrown::{Equivalent, HashSet};
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// A timer as stored in snapshots: (time, key, namespace).
pub(crate) type TimerTriple = (Timestamp, Vec<u8>, Vec<u8>);

/// A registered timer. Compared and hashed as (time, key, namespace).
#[derive(Debug, Clone)]
pub(crate) struct Timer {
    pub(crate) ts: Timestamp,
    /// The key's bytes followed by the namespace's.
    bytes: Arc<[u8]>,
    key_len: usize,
}

impl Timer {
    /// The serialized key.
    pub(crate) fn key(&self) -> &[u8] {
        &self.bytes[..self.key_len]
    }

    /// The namespace (the window, for window operators; empty otherwise).
    pub(crate) fn ns(&self) -> &[u8] {
        &self.bytes[self.key_len..]
    }

    fn as_ref(&self) -> TimerRef<'_> {
        TimerRef {
            ts: self.ts,
            key: self.key(),
            ns: self.ns(),
        }
    }
}

/// A timer by reference: what lookups hash and compare, without allocating.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct TimerRef<'a> {
    ts: Timestamp,
    key: &'a [u8],
    ns: &'a [u8],
}

impl PartialEq for Timer {
    fn eq(&self, o: &Self) -> bool {
        self.as_ref() == o.as_ref()
    }
}
impl Eq for Timer {}
impl Hash for Timer {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.as_ref().hash(h)
    }
}
impl Equivalent<Timer> for TimerRef<'_> {
    fn equivalent(&self, t: &Timer) -> bool {
        *self == t.as_ref()
    }
}

/// A priority queue of timers with de-duplication and lazy deletion. The queue is a B-tree
/// ordered by (time, registration number): timers registered together sit together in its
/// nodes, and taking the earliest reads the leftmost leaf, which stays in cache.
#[derive(Debug, Default)]
pub(crate) struct TimerQueue {
    queue: BTreeMap<(Timestamp, u64), Timer>,
    live: HashSet<Timer>,
    seq: u64,
    scratch: Vec<u8>,
}

impl TimerQueue {
    pub(crate) fn register(&mut self, ts: Timestamp, key: &[u8], ns: &[u8]) {
        let scratch = &mut self.scratch;
        let mut created = None;
        // One hash either way; allocates only for a new timer.
        self.live
            .get_or_insert_with(&TimerRef { ts, key, ns }, |r| {
                scratch.clear();
                scratch.extend_from_slice(r.key);
                scratch.extend_from_slice(r.ns);
                let t = Timer {
                    ts,
                    bytes: Arc::from(&scratch[..]),
                    key_len: r.key.len(),
                };
                created = Some(t.clone());
                t
            });
        if let Some(t) = created {
            self.seq += 1;
            self.queue.insert((ts, self.seq), t);
        }
    }

    pub(crate) fn delete(&mut self, ts: Timestamp, key: &[u8], ns: &[u8]) {
        self.live.remove(&TimerRef { ts, key, ns });
    }

    /// The earliest live timer's time.
    pub(crate) fn peek(&mut self) -> Option<Timestamp> {
        loop {
            let all_live = self.queue.len() == self.live.len();
            let entry = self.queue.first_entry()?;
            // With as many queued entries as live timers, every entry is live: no lookup.
            if all_live || self.live.contains(&entry.get().as_ref()) {
                return Some(entry.key().0);
            }
            entry.remove();
        }
    }

    /// Removes and returns the earliest timer due at or before `time`.
    pub(crate) fn pop_due(&mut self, time: Timestamp) -> Option<Timer> {
        match self.peek() {
            Some(ts) if ts <= time => {
                let (_, t) = self.queue.pop_first().expect("peeked");
                self.live.remove(&t.as_ref());
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
            let kg = crate::keygroup::key_group_for_bytes(t.key(), max_parallelism);
            out.entry(kg)
                .or_default()
                .push((t.ts, t.key().to_vec(), t.ns().to_vec()));
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
            q.pop_due(30).map(|t| (t.ts, t.key().to_vec())),
            Some((30, b"a".to_vec()))
        );
        assert_eq!(q.peek(), None);
    }
}
