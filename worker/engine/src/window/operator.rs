//! The window operator: keeps windows' contents in keyed state, per (key, window), per key
//! (sessions) or per (key, slice), and fires them with timers.

use super::assigner::Kind;
use super::function::WindowFunction;
use super::{TimeWindow, WindowSpec};
use crate::api::{Collector, Data, note_written_key};
use crate::error::{Error, Result};
use crate::keygroup::{Key, serialize_key};
use crate::runtime::{Batch, Operator, Output, Rec, SubtaskInfo, downcast};
use crate::state::{KeyedStore, StateDescriptor};
use crate::time::{MIN_WATERMARK, NO_TIMESTAMP, Timestamp, now_ms};
use crate::timers::Timer;
use std::marker::PhantomData;
use std::sync::Arc;

pub(super) const NONE: u32 = u32::MAX;

/// One batch's records grouped by key and window set. Keys are numbered ("slots") by first
/// appearance; each slot has a chain of groups, each group a chain of records that fall into
/// the same windows. A record joins its key's last group when its windows are the same
/// (the common case: a batch spans little event time), else starts a new group, so walking
/// a key's groups in order visits its records in batch order.
#[derive(Default)]
pub(super) struct BatchGroups {
    /// Serialized keys back to back; `spans[slot]` delimits one.
    arena: Vec<u8>,
    spans: Vec<(u32, u32)>,
    /// Slot by key bytes.
    table: hashbrown::HashTable<u32>,
    hasher: hashbrown::DefaultHashBuilder,
    /// Per slot: its first and last group.
    slot_groups: Vec<(u32, u32)>,
    groups: Vec<Group>,
    /// Per record of the batch: the next record of its group.
    next_rec: Vec<u32>,
}

/// Records of one key that fall into the same windows (on sliced operators: into the same
/// slice, which is `first`, with `windows` 1).
pub(super) struct Group {
    /// A record's time (what the windows are assigned from) and the windows it gives: the
    /// first window and how many there are identify the set for every window kind.
    ts: Timestamp,
    first: TimeWindow,
    windows: usize,
    head: u32,
    tail: u32,
    next: u32,
}

impl BatchGroups {
    fn clear(&mut self, records: usize) {
        self.arena.clear();
        self.spans.clear();
        self.table.clear();
        self.slot_groups.clear();
        self.groups.clear();
        self.next_rec.clear();
        self.next_rec.resize(records, NONE);
    }

    fn key(&self, slot: usize) -> &[u8] {
        let (a, b) = self.spans[slot];
        &self.arena[a as usize..b as usize]
    }

    /// The number of the key `bytes`, assigning the next one when it is new to the batch.
    fn slot_of(&mut self, bytes: &[u8]) -> u32 {
        use std::hash::BuildHasher;
        let hash = self.hasher.hash_one(bytes);
        let (arena, spans) = (&self.arena, &self.spans);
        let eq = |s: &u32| {
            let (a, b) = spans[*s as usize];
            crate::bytes::eq(&arena[a as usize..b as usize], bytes)
        };
        if let Some(s) = self.table.find(hash, eq) {
            return *s;
        }
        let slot = self.spans.len() as u32;
        let start = self.arena.len() as u32;
        self.arena.extend_from_slice(bytes);
        self.spans.push((start, self.arena.len() as u32));
        self.slot_groups.push((NONE, NONE));
        let (arena, spans, hasher) = (&self.arena, &self.spans, &self.hasher);
        self.table.insert_unique(hash, slot, |s| {
            let (a, b) = spans[*s as usize];
            hasher.hash_one(&arena[a as usize..b as usize])
        });
        slot
    }

    /// Adds record `rec` at `ts` with windows `windows` (non-empty) to the key in `slot`.
    fn add(&mut self, slot: u32, rec: u32, ts: Timestamp, windows: &[TimeWindow]) {
        let slot = slot as usize;
        let last = self.slot_groups[slot].1;
        if last != NONE {
            let g = &mut self.groups[last as usize];
            if g.first == windows[0] && g.windows == windows.len() {
                self.next_rec[g.tail as usize] = rec;
                g.tail = rec;
                return;
            }
        }
        let id = self.groups.len() as u32;
        self.groups.push(Group {
            ts,
            first: windows[0],
            windows: windows.len(),
            head: rec,
            tail: rec,
            next: NONE,
        });
        if last == NONE {
            self.slot_groups[slot].0 = id;
        } else {
            self.groups[last as usize].next = id;
        }
        self.slot_groups[slot].1 = id;
    }
}

/// State names of the window operator's layouts: per (key, window), per key (sessions),
/// per (key, slice).
pub(super) const WINDOWS_STATE: &str = "window-contents";
pub(super) const SESSIONS_STATE: &str = "window-sessions";
pub(super) const SLICES_STATE: &str = "window-slices";

pub(super) struct WindowOperator<K, T, W: WindowFunction<K, T>> {
    spec: WindowSpec,
    lateness: i64,
    late_port: Option<usize>,
    f: Arc<W>,
    key_fn: crate::api::KeyExtractor<K, T>,
    key_writer: Option<crate::api::KeyWriter<T>>,
    keyed: KeyedStore,
    /// Per (key, window) accumulators; for sessions, per key a list of (window, acc); for
    /// sliced windows, per key a list of (slice start, acc), oldest first.
    state: usize,
    /// The slice length when the operator keeps per-slice state (sliding or cumulating
    /// windows, a function that merges, no allowed lateness): one accumulator per (key,
    /// slice), one timer per (key, window), a window's slices merged when it fires. A key's
    /// slices are one state entry, so adding to a slice and firing a window are one state
    /// access each, whichever of the window's slices the key has records in.
    slice_len: Option<i64>,
    watermark: Timestamp,
    /// The latest record's key, serialized in `key_buf` (`None` when the key writer wrote
    /// it without building the key).
    last_key: Option<K>,
    key_buf: Vec<u8>,
    /// Whether `key_buf` holds the latest record's key; the writer's scratch buffer.
    key_noted: bool,
    key_scratch: Vec<u8>,
    windows: Vec<TimeWindow>,
    /// The current batch's keys and (key, window, record) triples, reused across batches.
    batch: BatchGroups,
    /// Per record of the current batch: whether a window took it.
    accepted: Vec<bool>,
    late_dropped: u64,
    restored: Option<std::sync::Arc<crate::checkpoint::OperatorSubtaskState>>,
    _p: PhantomData<fn() -> T>,
}

impl<K: Key, T: Data, W: WindowFunction<K, T>> WindowOperator<K, T, W> {
    pub(super) fn new(
        spec: WindowSpec,
        lateness: i64,
        late_tag: Option<String>,
        f: Arc<W>,
        (key_fn, key_writer): (
            crate::api::KeyExtractor<K, T>,
            Option<crate::api::KeyWriter<T>>,
        ),
        info: SubtaskInfo,
    ) -> Self {
        let mut keyed = info.keyed_store();
        let lateness = if spec.event_time { lateness } else { 0 };
        let slice_len = spec.slice_len().filter(|_| W::SLICEABLE && lateness == 0);
        let state = if matches!(spec.kind, Kind::Session { .. }) {
            keyed
                .backend
                .register::<Vec<(TimeWindow, W::Acc)>>(&StateDescriptor::new(SESSIONS_STATE))
        } else if slice_len.is_some() {
            keyed
                .backend
                .register::<Vec<(Timestamp, W::Acc)>>(&StateDescriptor::new(SLICES_STATE))
        } else {
            keyed
                .backend
                .register::<W::Acc>(&StateDescriptor::new(WINDOWS_STATE))
        };
        WindowOperator {
            spec,
            lateness,
            slice_len,
            late_port: late_tag.and_then(|t| info.side_port(&t)),
            f,
            key_fn,
            key_writer,
            keyed,
            state,
            watermark: MIN_WATERMARK,
            last_key: None,
            key_buf: Vec::new(),
            key_noted: false,
            key_scratch: Vec::new(),
            windows: Vec::new(),
            batch: BatchGroups::default(),
            accepted: Vec::new(),
            late_dropped: 0,
            restored: info.restored.clone(),
            _p: PhantomData,
        }
    }

    /// The time that places a record in windows: its event time, or `now` for
    /// processing-time windows.
    fn record_time(&self, rec: &Rec<T>, now: Timestamp) -> Result<Timestamp> {
        if !self.spec.event_time {
            return Ok(now);
        }
        if rec.ts == NO_TIMESTAMP {
            return Err(Error::MissingTimestamp("window".into()));
        }
        Ok(rec.ts)
    }

    /// Makes `key` the current record's key in `key_buf`, serializing it only when it differs
    /// from the previous record's (records of a key often come in runs: a hot key, or a
    /// cascaded window's rows). Returns whether it changed.
    fn note_key(&mut self, key: K) -> bool {
        if self.last_key.as_ref() == Some(&key) {
            return false;
        }
        serialize_key(&key, &mut self.key_buf);
        self.last_key = Some(key);
        self.key_noted = true;
        true
    }

    /// [`note_key`](Self::note_key) for the key of `value`: with a key writer, its bytes are
    /// written and compared without building the key. Returns whether it changed.
    fn note_record_key(&mut self, value: &T) -> bool {
        let Some(write) = &self.key_writer else {
            return self.note_key((self.key_fn)(value));
        };
        let (scratch, last) = (&mut self.key_scratch, &mut self.key_buf);
        if !note_written_key(write, &self.key_fn, value, scratch, last, self.key_noted) {
            return false;
        }
        self.last_key = None;
        self.key_noted = true;
        true
    }

    /// The key of `value`, the record [`note_record_key`](Self::note_record_key) noted last.
    fn record_key(&self, value: &T) -> K {
        self.last_key
            .clone()
            .unwrap_or_else(|| (self.key_fn)(value))
    }

    fn cleanup_time(&self, w: &TimeWindow) -> Timestamp {
        w.max_timestamp().saturating_add(self.lateness)
    }

    /// Registers the firing and cleanup timers of a window of the current key.
    fn register_timers(&mut self, w: &TimeWindow) {
        let ns = w.to_bytes();
        let key = &self.keyed.backend.current.bytes;
        if self.spec.event_time {
            if w.max_timestamp() > self.watermark {
                self.keyed
                    .event_timers
                    .register(w.max_timestamp(), key, &ns);
            }
            let cleanup = self.cleanup_time(w);
            if cleanup != w.max_timestamp() || w.max_timestamp() <= self.watermark {
                self.keyed.event_timers.register(cleanup, key, &ns);
            }
        } else {
            self.keyed
                .processing_timers
                .register(w.max_timestamp(), key, &ns);
        }
    }

    fn delete_timers(&mut self, w: &TimeWindow) {
        let ns = w.to_bytes();
        let key = &self.keyed.backend.current.bytes;
        if self.spec.event_time {
            self.keyed.event_timers.delete(w.max_timestamp(), key, &ns);
            self.keyed
                .event_timers
                .delete(self.cleanup_time(w), key, &ns);
        } else {
            self.keyed
                .processing_timers
                .delete(w.max_timestamp(), key, &ns);
        }
    }

    /// Adds the records of one batch to their (non-session) windows. Records that share a
    /// key and a window are folded into that window's accumulator under one state access and
    /// one timer registration, in their order in the batch, so results are those of adding
    /// them one by one. Windows already behind the watermark (late but within allowed
    /// lateness) take each record on its own, since each one fires the window again.
    /// Returns, per record, whether any window took it.
    fn add_batch_to_windows(
        &mut self,
        recs: &[Rec<T>],
        now: Timestamp,
        coll: &mut Collector<W::Out>,
        accepted: &mut Vec<bool>,
    ) -> Result<()> {
        let mut windows = std::mem::take(&mut self.windows);
        let mut batch = std::mem::take(&mut self.batch);
        batch.clear(recs.len());
        accepted.clear();
        // The slot of the noted key in this batch, once known.
        let mut slot = None;
        for (i, rec) in recs.iter().enumerate() {
            let ts = self.record_time(rec, now)?;
            if self.note_record_key(&rec.value) {
                slot = None;
            }
            self.spec.assign(ts, &mut windows);
            let mut took = false;
            let mut on_time = false;
            for w in &windows {
                if self.spec.event_time && self.cleanup_time(w) <= self.watermark {
                    continue; // window already purged
                }
                took = true;
                if self.spec.event_time && w.max_timestamp() <= self.watermark {
                    self.keyed.backend.set_current_key_bytes(&self.key_buf);
                    let key = self.record_key(&rec.value);
                    self.add_late(key, &rec.value, w, coll)?;
                } else {
                    on_time = true;
                }
            }
            if on_time {
                let s = *slot.get_or_insert_with(|| batch.slot_of(&self.key_buf));
                batch.add(s, i as u32, ts, &windows);
            }
            // A time no window covers (in the gaps of windows shorter than their slide) is
            // passed over, and counted as late only if it is behind the watermark (as Flink
            // does).
            if windows.is_empty() {
                took = !self.spec.event_time || ts.saturating_add(self.lateness) > self.watermark;
            }
            accepted.push(took);
        }
        for slot in 0..batch.spans.len() {
            self.keyed.backend.set_current_key_bytes(batch.key(slot));
            let mut g = batch.slot_groups[slot].0;
            while g != NONE {
                let group = &batch.groups[g as usize];
                self.spec.assign(group.ts, &mut windows);
                for w in &windows {
                    if self.spec.event_time && w.max_timestamp() <= self.watermark {
                        continue; // purged, or late: taken record by record above
                    }
                    let f = &self.f;
                    let next = &batch.next_rec;
                    let (_, created) = self.keyed.backend.update_with(
                        self.state,
                        &w.to_bytes(),
                        || f.create(),
                        |acc| {
                            let mut r = group.head;
                            while r != NONE {
                                f.add(acc, &recs[r as usize].value);
                                r = next[r as usize];
                            }
                        },
                    );
                    if created {
                        self.register_timers(w);
                    }
                }
                g = group.next;
            }
        }
        self.windows = windows;
        self.batch = batch;
        Ok(())
    }

    /// Adds the records of one batch to their slices (sliced operators). Records that share a
    /// key and a slice are folded into the slice's accumulator under one access to the key's
    /// slices, in their order in the batch. A slice new to its key registers a timer for each
    /// window covering it that has not fired and covers no other slice of the key. A record is
    /// taken when one of its windows has not fired (with no allowed lateness, the windows
    /// that have fired never read the slice again); its slice is still in state then, since
    /// a slice is dropped only once every window covering it has fired.
    /// Returns, per record, whether a window took it.
    fn add_batch_to_slices(
        &mut self,
        recs: &[Rec<T>],
        now: Timestamp,
        len: i64,
        accepted: &mut Vec<bool>,
    ) -> Result<()> {
        let mut windows = std::mem::take(&mut self.windows);
        let mut batch = std::mem::take(&mut self.batch);
        batch.clear(recs.len());
        accepted.clear();
        let event_time = self.spec.event_time;
        let mut slot = None;
        // The latest record's slice and the end of the last window covering it, the same for
        // every time in the slice (slices align with window starts and ends): records mostly
        // come in time order, so both are mostly reused rather than divided out again.
        let mut last: Option<(TimeWindow, Option<Timestamp>)> = None;
        for (i, rec) in recs.iter().enumerate() {
            let ts = self.record_time(rec, now)?;
            let (slice, last_end) = match last {
                Some((s, end)) if s.start <= ts && ts < s.end => (s, end),
                _ => *last.insert((self.spec.slice_of(ts, len), self.spec.last_window_end(ts))),
            };
            // Taken when the window ending last has not fired. A time no window covers (in
            // the gaps of windows shorter than their slide) is passed over, and counted as
            // late only if it is behind the watermark (as Flink does).
            let (add, accept) = match last_end {
                Some(end) => {
                    let on_time = !event_time || end - 1 > self.watermark;
                    (on_time, on_time)
                }
                None => (false, !event_time || ts > self.watermark),
            };
            if add {
                if self.note_record_key(&rec.value) {
                    slot = None;
                }
                let s = *slot.get_or_insert_with(|| batch.slot_of(&self.key_buf));
                batch.add(s, i as u32, ts, std::slice::from_ref(&slice));
            }
            accepted.push(accept);
        }
        for slot in 0..batch.spans.len() {
            self.keyed.backend.set_current_key_bytes(batch.key(slot));
            let mut g = batch.slot_groups[slot].0;
            while g != NONE {
                let group = &batch.groups[g as usize];
                let f = &self.f;
                let next = &batch.next_rec;
                let spec = self.spec;
                let start = group.first.start;
                let (created, _) = self.keyed.backend.update_with(
                    self.state,
                    &[],
                    Vec::new,
                    |slices: &mut Vec<(Timestamp, W::Acc)>| {
                        // Records mostly go to the newest slice: search from the back.
                        let at = slices
                            .iter()
                            .rposition(|(s, _)| *s <= start)
                            .map_or(0, |p| p + 1);
                        let created = at == 0 || slices[at - 1].0 != start;
                        if created {
                            slices.insert(at, (start, f.create()));
                            // The new slice's windows that cover another slice of the key
                            // have their timer: it was registered with that slice, and they
                            // have not fired since (a window that fired before that slice
                            // was created has not become unfired).
                            spec.assign(group.ts, &mut windows);
                            windows.retain(|w| {
                                !slices
                                    .iter()
                                    .any(|(s, _)| *s != start && *s >= w.start && *s < w.end)
                            });
                        }
                        let acc = &mut slices[if created { at } else { at - 1 }].1;
                        let mut r = group.head;
                        while r != NONE {
                            f.add(acc, &recs[r as usize].value);
                            r = next[r as usize];
                        }
                        created
                    },
                );
                if created {
                    let key = &self.keyed.backend.current.bytes;
                    for w in &windows {
                        if !event_time {
                            self.keyed.processing_timers.register(
                                w.max_timestamp(),
                                key,
                                &w.to_bytes(),
                            );
                        } else if w.max_timestamp() > self.watermark {
                            // Registered once per (key, window): see the retain above.
                            self.keyed.event_timer_batches.register(
                                w.max_timestamp(),
                                key,
                                &w.to_bytes(),
                            );
                        }
                    }
                }
                g = group.next;
            }
        }
        self.windows = windows;
        self.batch = batch;
        Ok(())
    }

    /// Fires window `w` of the current key on a sliced operator: merges the accumulators of
    /// its slices, oldest first, emits the result, and drops the slices no later window
    /// covers (and the key's entry with its last slice).
    fn fire_slices(&mut self, key: K, w: &TimeWindow, coll: &mut Collector<W::Out>) -> Result<()> {
        let (free_from, free_to) = self.spec.slices_freed_by(w);
        let f = &self.f;
        let fired =
            self.keyed
                .backend
                .mutate(self.state, &[], |slices: &mut Vec<(Timestamp, W::Acc)>| {
                    let mut acc: Option<W::Acc> = None;
                    let mut i = 0;
                    while i < slices.len() && slices[i].0 < w.end {
                        let start = slices[i].0;
                        if start < w.start {
                            i += 1;
                            continue;
                        }
                        // A slice no later window needs is merged by value; the others
                        // are merged from where they are (the first one copied).
                        if start >= free_from && start < free_to {
                            let part = slices.remove(i).1;
                            match &mut acc {
                                None => acc = Some(part),
                                Some(a) => f.merge(part, a),
                            }
                        } else {
                            i += 1;
                            let part = &slices[i - 1].1;
                            match &mut acc {
                                None => acc = Some(part.clone()),
                                Some(a) => f.merge_ref(part, a),
                            }
                        }
                    }
                    // The key's entry goes with its last slice, in the same lookup.
                    (acc, !slices.is_empty())
                });
        match fired.flatten() {
            Some(acc) => {
                coll.ts = w.max_timestamp();
                self.f.emit(key, w, &acc, coll)
            }
            None => Ok(()),
        }
    }

    /// Adds one record to a window of the current key that has fired already and is kept
    /// for allowed lateness: the window fires again with the updated contents.
    fn add_late(
        &mut self,
        key: K,
        value: &T,
        w: &TimeWindow,
        coll: &mut Collector<W::Out>,
    ) -> Result<()> {
        let f = &self.f;
        let ns = w.to_bytes();
        let (_, created) =
            self.keyed
                .backend
                .update_with(self.state, &ns, || f.create(), |acc| f.add(acc, value));
        if created {
            self.register_timers(w);
        }
        let acc = self
            .keyed
            .backend
            .get::<W::Acc>(self.state, &ns)
            .expect("just updated");
        coll.ts = w.max_timestamp();
        self.f.emit(key, w, &acc, coll)
    }

    fn add_to_session(
        &mut self,
        key: &K,
        rec: &Rec<T>,
        ts: Timestamp,
        coll: &mut Collector<W::Out>,
    ) -> Result<bool> {
        let Kind::Session { gap } = self.spec.kind else {
            unreachable!("session operator")
        };
        let mut merged = TimeWindow {
            start: ts,
            end: ts + gap,
        };
        let sessions: Vec<(TimeWindow, W::Acc)> = self
            .keyed
            .backend
            .remove(self.state, &[])
            .unwrap_or_default();
        let (overlapping, mut keep): (Vec<_>, Vec<_>) = sessions
            .into_iter()
            .partition(|(w, _)| w.intersects(&merged));
        for (w, _) in &overlapping {
            merged = merged.cover(w);
        }
        if self.spec.event_time && self.cleanup_time(&merged) <= self.watermark {
            // Only possible when nothing was merged: existing sessions are never past cleanup.
            keep.extend(overlapping);
            if !keep.is_empty() {
                self.keyed.backend.put(self.state, &[], keep);
            }
            return Ok(false);
        }
        let mut acc = self.f.create();
        for (w, a) in overlapping {
            self.delete_timers(&w);
            self.f.merge(a, &mut acc);
        }
        self.f.add(&mut acc, &rec.value);
        self.register_timers(&merged);
        if self.spec.event_time && merged.max_timestamp() <= self.watermark {
            coll.ts = merged.max_timestamp();
            self.f.emit(key.clone(), &merged, &acc, coll)?;
        }
        keep.push((merged, acc));
        keep.sort_by_key(|(w, _)| w.start);
        self.keyed.backend.put(self.state, &[], keep);
        Ok(true)
    }

    /// A record no window took: to the late side output when there is one, else dropped
    /// and counted.
    fn reject(&mut self, rec: Rec<T>, late: &mut Vec<Rec<T>>) {
        match self.late_port {
            Some(_) => late.push(rec),
            None => self.late_dropped += 1,
        }
    }

    /// Handles a due timer: fire the window at its end, drop it at its cleanup time.
    fn on_timer(&mut self, t: Timer, coll: &mut Collector<W::Out>) -> Result<()> {
        self.fire_timer(t.ts, t.key(), t.ns(), coll)
    }

    /// A timer at `ts` of key `key_bytes` and window `ns` fired.
    fn fire_timer(
        &mut self,
        ts: Timestamp,
        key_bytes: &[u8],
        ns: &[u8],
        coll: &mut Collector<W::Out>,
    ) -> Result<()> {
        self.keyed.backend.set_current_key_bytes(key_bytes);
        let key: K = postcard::from_bytes(key_bytes).map_err(|e| Error::State {
            state: "window timer key".into(),
            reason: e.to_string(),
        })?;
        let w = TimeWindow::from_bytes(ns);
        if self.slice_len.is_some() {
            return self.fire_slices(key, &w, coll);
        }
        let fire = ts == w.max_timestamp();
        let cleanup = !self.spec.event_time || ts == self.cleanup_time(&w);
        coll.ts = w.max_timestamp();
        if matches!(self.spec.kind, Kind::Session { .. }) {
            let mut sessions: Vec<(TimeWindow, W::Acc)> = self
                .keyed
                .backend
                .remove(self.state, &[])
                .unwrap_or_default();
            if let Some(pos) = sessions.iter().position(|(s, _)| *s == w) {
                if fire {
                    self.f.emit(key, &w, &sessions[pos].1, coll)?;
                }
                if cleanup {
                    sessions.remove(pos);
                }
            }
            if !sessions.is_empty() {
                self.keyed.backend.put(self.state, &[], sessions);
            }
        } else {
            let ns = w.to_bytes();
            if cleanup {
                // Fired and dropped at once (no allowed lateness): one removal, no copy.
                let acc = self.keyed.backend.remove::<W::Acc>(self.state, &ns);
                if fire && let Some(acc) = acc {
                    self.f.emit(key, &w, &acc, coll)?;
                }
            } else if fire && let Some(acc) = self.keyed.backend.get::<W::Acc>(self.state, &ns) {
                self.f.emit(key, &w, &acc, coll)?;
            }
        }
        Ok(())
    }
}

impl<K: Key, T: Data, W: WindowFunction<K, T>> Operator for WindowOperator<K, T, W> {
    fn open(&mut self) -> Result<()> {
        let restored = self.restored.take();
        // A checkpoint of the other layout (per window vs per slice) cannot be converted:
        // its state is unclaimed here, and the restore fails naming it.
        self.keyed.restore(
            restored
                .as_deref()
                .map(crate::checkpoint::OperatorSubtaskState::keyed_restore),
        )
    }

    fn snapshot_state(
        &mut self,
        barrier: crate::checkpoint::Barrier,
    ) -> Result<crate::checkpoint::OperatorSubtaskState> {
        self.keyed
            .snapshot(barrier.id, barrier.kind.is_savepoint())
            .map(Into::into)
    }

    fn process(&mut self, _input: usize, batch: Batch, out: &mut Output) -> Result<()> {
        let recs = downcast::<T>(batch);
        let mut coll = Collector::new();
        let mut late = Vec::new();
        let now = now_ms();
        self.keyed.backend.now = now;
        if !matches!(self.spec.kind, Kind::Session { .. }) {
            let mut accepted = std::mem::take(&mut self.accepted);
            match self.slice_len {
                Some(len) => self.add_batch_to_slices(&recs, now, len, &mut accepted)?,
                None => self.add_batch_to_windows(&recs, now, &mut coll, &mut accepted)?,
            }
            if accepted.iter().any(|a| !a) {
                for (rec, took) in recs.into_iter().zip(&accepted) {
                    if !took {
                        self.reject(rec, &mut late);
                    }
                }
            }
            self.accepted = accepted;
        } else {
            for rec in recs {
                let ts = self.record_time(&rec, now)?;
                self.note_key((self.key_fn)(&rec.value));
                self.keyed.backend.set_current_key_bytes(&self.key_buf);
                let key = self.last_key.clone().expect("noted above");
                if !self.add_to_session(&key, &rec, ts, &mut coll)? {
                    self.reject(rec, &mut late);
                }
            }
        }
        out.emit(0, Box::new(coll.buf));
        if let Some(port) = self.late_port {
            out.emit(port, Box::new(late));
        }
        Ok(())
    }

    fn watermark(&mut self, wm: Timestamp, out: &mut Output) -> Result<()> {
        self.watermark = wm;
        let mut coll = Collector::new();
        // Both event-time queues, in time order (restored timers of a sliced operator sit in
        // the per-timer queue, its new ones in batches).
        loop {
            let batch = self.keyed.event_timer_batches.peek();
            match self.keyed.event_timers.peek() {
                Some(t) if t <= wm && batch.is_none_or(|b| t <= b) => {
                    let t = self.keyed.event_timers.pop_due(wm).expect("peeked");
                    self.on_timer(t, &mut coll)?;
                }
                _ => match self.keyed.event_timer_batches.pop_due(wm) {
                    Some((ts, timers)) => {
                        for (key, ns) in timers.iter() {
                            self.fire_timer(ts, key, ns, &mut coll)?;
                        }
                    }
                    None => break,
                },
            }
        }
        out.emit(0, Box::new(coll.buf));
        out.watermark(wm);
        Ok(())
    }

    fn next_processing_time(&mut self) -> Option<Timestamp> {
        self.keyed.processing_timers.peek()
    }

    fn processing_time(&mut self, now: Timestamp, out: &mut Output) -> Result<()> {
        let mut coll = Collector::new();
        while let Some(t) = self.keyed.processing_timers.pop_due(now) {
            self.on_timer(t, &mut coll)?;
        }
        out.emit(0, Box::new(coll.buf));
        Ok(())
    }

    fn end_of_input(&mut self, out: &mut Output) -> Result<()> {
        self.processing_time(Timestamp::MAX, out)
    }

    fn state_entries(&self) -> usize {
        self.keyed.entries()
    }

    fn skipped(&self) -> u64 {
        self.late_dropped
    }

    fn gauges(&self) -> Vec<crate::runtime::Gauge> {
        crate::runtime::Gauge::all(self.keyed.rocksdb_properties())
    }
}
