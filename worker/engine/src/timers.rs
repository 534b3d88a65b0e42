//! Timer queues of keyed operators: event-time timers fire as the watermark passes them,
//! processing-time timers as the wall clock does. A timer is identified by (time, key,
//! namespace); registering the same one twice keeps one.
//!
//! Registering a timer that already exists is one hash lookup by the borrowed (time, key,
//! namespace) and allocates nothing. A new timer allocates its key and namespace once, shared
//! by the queue and the table of live timers, and keeps its hash: firing or skipping it never
//! hashes again. Timers due at the same time fire in the order they were registered (the
//! queue orders by time and a registration number, so it never compares keys); restored
//! timers are registered in (time, key, namespace) order.
//!
//! [`TimerBatches`] holds timers that are unique by construction and never deleted (a sliced
//! window operator registers each (key, window) once): registering one appends its key and
//! namespace to its time's batch, and a due time fires its whole batch in registration order,
//! without a hash table entry or a tree node per timer.

use crate::time::Timestamp;
use hashbrown::{DefaultHashBuilder, HashTable};
use std::collections::BTreeMap;
use std::hash::BuildHasher;
use std::sync::Arc;

/// A timer as stored in snapshots: (time, key, namespace).
pub(crate) type TimerTriple = (Timestamp, Vec<u8>, Vec<u8>);

/// A registered timer. Equal to another with the same (time, key, namespace).
#[derive(Debug, Clone)]
pub(crate) struct Timer {
    pub(crate) ts: Timestamp,
    /// The key's bytes followed by the namespace's.
    bytes: Arc<[u8]>,
    key_len: usize,
    /// The hash of (time, key, namespace), computed once at registration.
    hash: u64,
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

    fn is(&self, ts: Timestamp, key: &[u8], ns: &[u8]) -> bool {
        self.ts == ts && self.key() == key && self.ns() == ns
    }

    /// The same registration (not merely an equal timer): queue entries and live timers
    /// share their bytes.
    fn same(&self, o: &Timer) -> bool {
        Arc::ptr_eq(&self.bytes, &o.bytes)
    }
}

/// A priority queue of timers with de-duplication and lazy deletion. The queue is a B-tree
/// ordered by (time, registration number): timers registered together sit together in its
/// nodes, and taking the earliest reads the leftmost leaf, which stays in cache. The live
/// timers are a hash table whose entries keep their hash, so firing a timer removes it
/// without hashing its key again.
#[derive(Debug, Default)]
pub(crate) struct TimerQueue {
    queue: BTreeMap<(Timestamp, u64), Timer>,
    live: HashTable<Timer>,
    hasher: DefaultHashBuilder,
    seq: u64,
    scratch: Vec<u8>,
}

impl TimerQueue {
    fn hash(&self, ts: Timestamp, key: &[u8], ns: &[u8]) -> u64 {
        self.hasher.hash_one((ts, key, ns))
    }

    pub(crate) fn register(&mut self, ts: Timestamp, key: &[u8], ns: &[u8]) {
        let hash = self.hash(ts, key, ns);
        // One probe either way; allocates only for a new timer.
        let hashbrown::hash_table::Entry::Vacant(slot) =
            self.live
                .entry(hash, |t| t.hash == hash && t.is(ts, key, ns), |t| t.hash)
        else {
            return;
        };
        self.scratch.clear();
        self.scratch.extend_from_slice(key);
        self.scratch.extend_from_slice(ns);
        let t = Timer {
            ts,
            bytes: Arc::from(&self.scratch[..]),
            key_len: key.len(),
            hash,
        };
        slot.insert(t.clone());
        self.seq += 1;
        self.queue.insert((ts, self.seq), t);
    }

    pub(crate) fn delete(&mut self, ts: Timestamp, key: &[u8], ns: &[u8]) {
        let hash = self.hash(ts, key, ns);
        if let Ok(e) = self
            .live
            .find_entry(hash, |t| t.hash == hash && t.is(ts, key, ns))
        {
            e.remove();
        }
    }

    /// The earliest live timer's time.
    pub(crate) fn peek(&mut self) -> Option<Timestamp> {
        loop {
            let all_live = self.queue.len() == self.live.len();
            let entry = self.queue.first_entry()?;
            // With as many queued entries as live timers, every entry is live: no lookup.
            let t = entry.get();
            if all_live || self.live.find(t.hash, |x| x.same(t)).is_some() {
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
                if let Ok(e) = self.live.find_entry(t.hash, |x| x.same(&t)) {
                    e.remove();
                }
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
    ) -> BTreeMap<usize, Vec<TimerTriple>> {
        by_key_group(
            self.live.iter().map(|t| (t.ts, t.key(), t.ns())),
            max_parallelism,
        )
    }
}

/// Timers registered at most once each and never deleted, fired a whole time at a time: per
/// time, the keys and namespaces back to back in registration order (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct TimerBatches {
    by_time: BTreeMap<Timestamp, TimerBatch>,
    len: usize,
}

/// The timers due at one time: their keys and namespaces back to back.
#[derive(Debug, Default)]
pub(crate) struct TimerBatch {
    bytes: Vec<u8>,
    /// Per timer, where its key and its namespace end in `bytes`.
    ends: Vec<(u32, u32)>,
}

impl TimerBatch {
    /// (key, namespace) of each timer, in registration order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        let mut start = 0;
        self.ends.iter().map(move |&(k, n)| {
            let (k, n) = (k as usize, n as usize);
            let t = (&self.bytes[start..k], &self.bytes[k..n]);
            start = n;
            t
        })
    }
}

impl TimerBatches {
    /// Adds a timer; the caller guarantees it is not registered already.
    pub(crate) fn register(&mut self, ts: Timestamp, key: &[u8], ns: &[u8]) {
        let b = self.by_time.entry(ts).or_default();
        b.bytes.extend_from_slice(key);
        let k = b.bytes.len() as u32;
        b.bytes.extend_from_slice(ns);
        b.ends.push((k, b.bytes.len() as u32));
        self.len += 1;
    }

    /// The earliest time with timers.
    pub(crate) fn peek(&self) -> Option<Timestamp> {
        self.by_time.first_key_value().map(|(t, _)| *t)
    }

    /// Removes and returns the timers of the earliest time, if it is at or before `time`.
    pub(crate) fn pop_due(&mut self, time: Timestamp) -> Option<(Timestamp, TimerBatch)> {
        let entry = self.by_time.first_entry().filter(|e| *e.key() <= time)?;
        let (ts, b) = entry.remove_entry();
        self.len -= b.ends.len();
        Some((ts, b))
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Every timer, grouped by the key group of its key (each group sorted).
    pub(crate) fn for_key_group(
        &self,
        max_parallelism: usize,
    ) -> BTreeMap<usize, Vec<TimerTriple>> {
        by_key_group(
            self.by_time
                .iter()
                .flat_map(|(&ts, b)| b.iter().map(move |(key, ns)| (ts, key, ns))),
            max_parallelism,
        )
    }
}

/// Timers as snapshots store them: per key group of their key, sorted.
fn by_key_group<'a>(
    timers: impl Iterator<Item = (Timestamp, &'a [u8], &'a [u8])>,
    max_parallelism: usize,
) -> BTreeMap<usize, Vec<TimerTriple>> {
    let mut out: BTreeMap<usize, Vec<TimerTriple>> = BTreeMap::new();
    for (ts, key, ns) in timers {
        let kg = crate::keygroup::key_group_for_bytes(key, max_parallelism);
        out.entry(kg)
            .or_default()
            .push((ts, key.to_vec(), ns.to_vec()));
    }
    for v in out.values_mut() {
        v.sort();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timer_batches_fire_each_time_whole_in_registration_order_and_group_by_key_group() {
        let mut q = TimerBatches::default();
        q.register(20, b"b", b"w2");
        q.register(10, b"a", b"w1");
        q.register(20, b"a", b"w2");
        assert_eq!((q.len(), q.peek()), (3, Some(10)));
        let (ts, b) = q.pop_due(15).expect("10 is due");
        assert_eq!(ts, 10);
        assert_eq!(b.iter().collect::<Vec<_>>(), vec![(&b"a"[..], &b"w1"[..])]);
        assert!(q.pop_due(15).is_none(), "20 is not due");
        let groups = q.for_key_group(128);
        let all: Vec<_> = groups.values().flatten().cloned().collect();
        assert_eq!(all.len(), 2);
        assert!(all.contains(&(20, b"a".to_vec(), b"w2".to_vec())));
        let (_, b) = q.pop_due(20).expect("20 is due");
        assert_eq!(
            b.iter().collect::<Vec<_>>(),
            vec![(&b"b"[..], &b"w2"[..]), (&b"a"[..], &b"w2"[..])],
            "registration order"
        );
        assert_eq!(q.len(), 0);
    }

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
        assert_eq!(
            q.pop_due(25).map(|t| t.ts),
            None,
            "20 was deleted, 30 is not due"
        );
        assert_eq!(
            q.pop_due(30).map(|t| (t.ts, t.key().to_vec())),
            Some((30, b"a".to_vec()))
        );
        assert_eq!(q.peek(), None);
    }

    #[test]
    fn a_timer_deleted_and_registered_again_fires_once_in_its_new_registration_order() {
        let mut q = TimerQueue::default();
        q.register(10, b"a", b"");
        q.register(10, b"b", b"");
        q.delete(10, b"a", b"");
        q.register(10, b"a", b"");
        q.register(10, b"a", b""); // duplicate of the live one
        let fired: Vec<Vec<u8>> = std::iter::from_fn(|| q.pop_due(10))
            .map(|t| t.key().to_vec())
            .collect();
        assert_eq!(fired, vec![b"b".to_vec(), b"a".to_vec()]);
        assert_eq!(q.len(), 0);
        assert_eq!(q.peek(), None);
    }
}
