//! The `hashmap` backend: values kept as typed Rust values in one map per state and key
//! group, shared copy-on-write with a checkpoint that serializes them off the task thread.

use super::{
    CurrentKey, DeferredKeyed, KeyGroupSnapshot, SnapshotEntry, StateDescriptor, StateSnapshot,
    StateTtlConfig, StateValue, TtlUpdateType,
};
use crate::error::{Error, Result};
use crate::keygroup::KeyGroupRange;
use crate::time::Timestamp;
use hashbrown::HashMap;
use std::any::Any;
use std::sync::Arc;

#[derive(Clone)]
struct Entry<V> {
    value: V,
    stamp: Timestamp,
}

trait AnyTable: Send {
    fn as_any_mut(&mut self) -> &mut dyn Any;
    fn entries(&self) -> usize;
    /// Encodes the entries of key group index `idx` (canonical, backend-independent).
    fn snapshot_group(&self, idx: usize, name: &str) -> Result<Vec<SnapshotEntry>>;
    /// Decodes entries into key group index `idx`.
    fn restore_group(&mut self, idx: usize, name: &str, entries: &[SnapshotEntry]) -> Result<()>;
    /// A read-only view of the table as it is now, for serializing on another thread: it
    /// shares each key group's map, and the next write to a shared map copies it first.
    fn freeze(&self) -> Box<dyn FrozenTable>;
}

/// The canonical snapshot of frozen tables: one entry per key group in `range`, holding the
/// named states with entries there.
fn serialize_frozen(
    range: KeyGroupRange,
    names: &[String],
    frozen: &[Box<dyn FrozenTable>],
) -> Result<Vec<KeyGroupSnapshot>> {
    let mut out = Vec::new();
    for idx in 0..range.len() {
        let mut g = KeyGroupSnapshot {
            key_group: (range.start + idx) as u32,
            ..Default::default()
        };
        for (name, table) in names.iter().zip(frozen) {
            let entries = table.snapshot_group(idx, name)?;
            if !entries.is_empty() {
                g.states.push(StateSnapshot {
                    name: name.clone(),
                    entries,
                });
            }
        }
        out.push(g);
    }
    Ok(out)
}

/// A frozen table: what a checkpoint serializes off the task thread.
trait FrozenTable: Send {
    fn snapshot_group(&self, idx: usize, name: &str) -> Result<Vec<SnapshotEntry>>;
}

impl<V: StateValue> FrozenTable for Table<V> {
    fn snapshot_group(&self, idx: usize, name: &str) -> Result<Vec<SnapshotEntry>> {
        AnyTable::snapshot_group(self, idx, name)
    }
}

struct Table<V> {
    ttl: Option<StateTtlConfig>,
    /// One map per key group of the owning subtask, indexed by `kg - range.start`. Shared
    /// with a checkpoint being serialized; copied on the first write after that (per key
    /// group), so snapshots never stall processing for longer than cloning the pointers.
    groups: Vec<Arc<GroupMap<V>>>,
}

/// The entries of one state in one key group: serialized key ++ namespace → value.
type GroupMap<V> = HashMap<Box<[u8]>, Entry<V>>;

impl<V: StateValue> AnyTable for Table<V> {
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
    fn entries(&self) -> usize {
        self.groups.iter().map(|g| g.len()).sum()
    }
    fn snapshot_group(&self, idx: usize, name: &str) -> Result<Vec<SnapshotEntry>> {
        let mut out: Vec<SnapshotEntry> = self.groups[idx]
            .iter()
            .map(|(k, e)| {
                let value = postcard::to_allocvec(&e.value).map_err(|err| Error::State {
                    state: name.to_string(),
                    reason: err.to_string(),
                })?;
                Ok(SnapshotEntry {
                    key: k.to_vec(),
                    value,
                    stamp: e.stamp,
                })
            })
            .collect::<Result<_>>()?;
        // Canonical order: identical state gives identical bytes.
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }
    fn restore_group(&mut self, idx: usize, name: &str, entries: &[SnapshotEntry]) -> Result<()> {
        for e in entries {
            let value: V = postcard::from_bytes(&e.value).map_err(|err| Error::State {
                state: name.to_string(),
                reason: format!("cannot decode a value written by a snapshot ({err}); did the state's type change?"),
            })?;
            Arc::make_mut(&mut self.groups[idx]).insert(
                e.key.clone().into_boxed_slice(),
                Entry {
                    value,
                    stamp: e.stamp,
                },
            );
        }
        Ok(())
    }
    fn freeze(&self) -> Box<dyn FrozenTable> {
        Box::new(Table {
            ttl: self.ttl,
            groups: self.groups.clone(),
        })
    }
}

/// The hashmap backend's tables, one per registered state (in registration order).
#[derive(Default)]
pub(super) struct HeapStore {
    tables: Vec<Box<dyn AnyTable>>,
    /// Reused buffer for the composite key (serialized key ++ namespace).
    scratch: Vec<u8>,
    /// Restored entries of states not registered yet, by name; applied on registration.
    pending: std::collections::HashMap<String, Vec<(usize, Vec<SnapshotEntry>)>>,
    restore_error: Option<Error>,
}

impl HeapStore {
    /// Checks that state `id` holds values of type `V`.
    pub(super) fn holds<V: StateValue>(&mut self, id: usize) -> bool {
        self.tables[id].as_any_mut().is::<Table<V>>()
    }

    /// Adds the table of a newly registered state, applying restored entries waiting for it.
    pub(super) fn register<V: StateValue>(&mut self, desc: &StateDescriptor, groups: usize) {
        let groups = (0..groups).map(|_| Arc::new(HashMap::new())).collect();
        let mut table = Table::<V> {
            ttl: desc.ttl,
            groups,
        };
        if let Some(restored) = self.pending.remove(&desc.name) {
            for (idx, entries) in restored {
                // Surfaced by the operator after open(): the job fails instead of running
                // with silently lost state.
                if let Err(e) = table.restore_group(idx, &desc.name, &entries) {
                    self.restore_error.get_or_insert(e);
                }
            }
        }
        self.tables.push(Box::new(table));
    }

    /// Every table frozen copy-on-write (one pointer per key group and state).
    fn frozen_tables(&self) -> Vec<Box<dyn FrozenTable>> {
        self.tables.iter().map(|t| t.freeze()).collect()
    }

    /// Snapshots every registered state, one entry per key group in `range`.
    pub(super) fn snapshot(
        &self,
        range: KeyGroupRange,
        names: &[String],
    ) -> Result<Vec<KeyGroupSnapshot>> {
        serialize_frozen(range, names, &self.frozen_tables())
    }

    /// The state frozen copy-on-write, serialized later by whoever runs the producer.
    pub(super) fn snapshot_deferred(
        &self,
        range: KeyGroupRange,
        names: &[String],
    ) -> DeferredKeyed {
        let names = names.to_vec();
        let frozen = self.frozen_tables();
        DeferredKeyed::new(move || serialize_frozen(range, &names, &frozen))
    }

    /// Loads restored key groups in `range`; states not registered yet wait in `pending`.
    pub(super) fn restore(
        &mut self,
        range: KeyGroupRange,
        names: &[String],
        buffers: &[&str],
        groups: &[KeyGroupSnapshot],
    ) -> Result<()> {
        for g in groups {
            let kg = g.key_group as usize;
            if !range.contains(kg) {
                continue;
            }
            let idx = kg - range.start;
            for st in g
                .states
                .iter()
                .filter(|st| !buffers.contains(&st.name.as_str()))
            {
                match names.iter().position(|n| *n == st.name) {
                    Some(id) => self.tables[id].restore_group(idx, &st.name, &st.entries)?,
                    None => self
                        .pending
                        .entry(st.name.clone())
                        .or_default()
                        .push((idx, st.entries.clone())),
                }
            }
        }
        Ok(())
    }

    /// The first error met while applying restored state to a state registered late.
    pub(super) fn take_restore_error(&mut self) -> Option<Error> {
        self.restore_error.take()
    }

    /// Names of restored states no registered state claimed.
    pub(super) fn unclaimed(&self) -> Vec<String> {
        self.pending.keys().cloned().collect()
    }

    /// Total number of entries across all states.
    pub(super) fn entries(&self) -> usize {
        self.tables.iter().map(|t| t.entries()).sum()
    }

    #[inline]
    fn with_entry<V: StateValue, R>(
        &mut self,
        id: usize,
        idx: usize,
        key: &CurrentKey,
        ns: &[u8],
        now: Timestamp,
        f: impl FnOnce(&mut HashMap<Box<[u8]>, Entry<V>>, &[u8], Option<StateTtlConfig>, Timestamp) -> R,
    ) -> R {
        let mut composite = std::mem::take(&mut self.scratch);
        composite.clear();
        composite.extend_from_slice(&key.bytes);
        composite.extend_from_slice(ns);
        let table = self.tables[id]
            .as_any_mut()
            .downcast_mut::<Table<V>>()
            .expect("state accessed with the type it was registered with");
        let ttl = table.ttl;
        let r = f(Arc::make_mut(&mut table.groups[idx]), &composite, ttl, now);
        self.scratch = composite;
        r
    }

    /// The value for `key` in `ns` (key group index `idx`), honouring TTL.
    #[inline]
    pub(super) fn get<V: StateValue>(
        &mut self,
        id: usize,
        idx: usize,
        key: &CurrentKey,
        ns: &[u8],
        now: Timestamp,
    ) -> Option<V> {
        self.with_entry::<V, _>(id, idx, key, ns, now, |map, k, ttl, now| {
            let expired = match (map.get_mut(k), ttl) {
                (None, _) => return None,
                (Some(e), None) => return Some(e.value.clone()),
                (Some(e), Some(t)) => {
                    if now - e.stamp >= t.ttl_ms {
                        true
                    } else {
                        if t.update == TtlUpdateType::OnReadAndWrite {
                            e.stamp = now;
                        }
                        return Some(e.value.clone());
                    }
                }
            };
            debug_assert!(expired);
            map.remove(k);
            None
        })
    }

    /// Applies `f` in place, creating the value with `init` when absent (or expired).
    #[inline]
    #[allow(clippy::too_many_arguments)]
    pub(super) fn update_with<V: StateValue, R>(
        &mut self,
        id: usize,
        idx: usize,
        key: &CurrentKey,
        ns: &[u8],
        now: Timestamp,
        init: impl FnOnce() -> V,
        f: impl FnOnce(&mut V) -> R,
    ) -> (R, bool) {
        self.with_entry::<V, _>(id, idx, key, ns, now, |map, k, ttl, now| {
            if let Some(t) = ttl
                && map.get(k).is_some_and(|e| now - e.stamp >= t.ttl_ms)
            {
                map.remove(k);
            }
            let mut created = false;
            let entry = map.entry_ref(k).or_insert_with(|| {
                created = true;
                Entry {
                    value: init(),
                    stamp: now,
                }
            });
            entry.stamp = now;
            (f(&mut entry.value), created)
        })
    }

    /// Applies `f` in place when there is a live value, removing it when `f` says so.
    #[inline]
    pub(super) fn mutate<V: StateValue, R>(
        &mut self,
        id: usize,
        idx: usize,
        key: &CurrentKey,
        ns: &[u8],
        now: Timestamp,
        f: impl FnOnce(&mut V) -> (R, bool),
    ) -> Option<R> {
        self.with_entry::<V, _>(id, idx, key, ns, now, |map, k, ttl, now| {
            let hashbrown::hash_map::EntryRef::Occupied(mut e) = map.entry_ref(k) else {
                return None;
            };
            if ttl.is_some_and(|t| now - e.get().stamp >= t.ttl_ms) {
                e.remove();
                return None;
            }
            let entry = e.get_mut();
            entry.stamp = now;
            let (r, keep) = f(&mut entry.value);
            if !keep {
                e.remove();
            }
            Some(r)
        })
    }

    /// Replaces the value.
    #[inline]
    pub(super) fn put<V: StateValue>(
        &mut self,
        id: usize,
        idx: usize,
        key: &CurrentKey,
        ns: &[u8],
        now: Timestamp,
        value: V,
    ) {
        self.with_entry::<V, _>(id, idx, key, ns, now, |map, k, _, now| {
            map.insert(k.into(), Entry { value, stamp: now });
        })
    }

    /// Removes and returns the live value.
    #[inline]
    pub(super) fn remove<V: StateValue>(
        &mut self,
        id: usize,
        idx: usize,
        key: &CurrentKey,
        ns: &[u8],
        now: Timestamp,
    ) -> Option<V> {
        self.with_entry::<V, _>(id, idx, key, ns, now, |map, k, ttl, now| {
            let e = map.remove(k)?;
            match ttl {
                Some(t) if now - e.stamp >= t.ttl_ms => None,
                _ => Some(e.value),
            }
        })
    }
}
