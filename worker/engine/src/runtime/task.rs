//! The task loop: one thread drives a chain of operators at one subtask index. It selects
//! over its input channels, tracks per-channel watermarks and idleness, fires
//! processing-time callbacks, routes what operators emit (by call to chained operators, by
//! channel to other tasks) and measures time blocked on full channels (backpressure) and
//! waiting for input (idle).

use super::coordinator::{Ack, CheckpointControl, TaskTiming};
use super::graph::{
    InputChannel, Member, MemberOp, Partitioning, Target, TaskInstance, TaskOutput,
};
use super::metrics::TaskMetrics;
use super::persist::SubtaskAck;
use super::{Batch, Event, OutItem, Output, SourcePoll};
use crate::checkpoint::{Barrier, InFlightBatch, OperatorSubtaskState};
use crate::error::{Error, Result};
use crate::time::{MAX_WATERMARK, MIN_WATERMARK, Timestamp, now_ms};
use crossbeam_channel::{Select, SendTimeoutError, Sender, TrySendError};
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed, Ordering::SeqCst};
use std::time::{Duration, Instant};

/// How often a blocked task re-checks for cancellation.
const CANCEL_POLL: Duration = Duration::from_millis(50);
/// How often housekeeping (state-size metrics) runs.
const HOUSEKEEPING_MS: i64 = 250;

/// Whether a task goes on after a checkpoint.
#[derive(PartialEq, Eq)]
enum Flow {
    Continue,
    /// Stopped at a stop-with-savepoint barrier: end without flushing.
    Stop,
}

enum Call {
    Process(usize, Batch),
    Watermark(Timestamp),
    Idle(bool),
}

struct InputState {
    input: usize,
    watermark: Timestamp,
    idle: bool,
    ended: bool,
}

/// The snapshot of each chained operator: `(uid, subtask, state)`.
type Snapshot = Vec<(String, usize, OperatorSubtaskState)>;

/// When a checkpoint's first barrier reached this task: where its alignment time and start
/// delay are measured from.
#[derive(Clone, Copy)]
struct Arrival {
    at: Instant,
    epoch_ms: Timestamp,
}

impl Arrival {
    fn now() -> Self {
        Arrival {
            at: Instant::now(),
            epoch_ms: now_ms(),
        }
    }
}

/// An unaligned checkpoint this task has taken and passed on, still collecting the records
/// its barrier overtook: everything queued in a channel before that channel's own barrier.
/// They are taken out of the channels at once (into the task's stash, processed next) rather
/// than processed first, so the checkpoint does not wait for a backpressured task to work
/// through its queues.
struct Overtaking {
    id: u64,
    /// This subtask's index, recorded with the in-flight data.
    owner: u32,
    states: Snapshot,
    /// Its first barrier (or announcement) and how long the snapshot took.
    arrival: Arrival,
    sync_us: u64,
    /// Per input channel: its barrier has not arrived yet.
    before_barrier: Vec<bool>,
    in_flight: Vec<InFlightBatch>,
}

pub(crate) struct Task {
    ckpt: Option<Arc<CheckpointControl>>,
    /// Highest checkpoint whose barrier this task has passed on.
    last_barrier: u64,
    /// Highest completed checkpoint the operators were told about.
    notified: u64,
    name: String,
    subtask: usize,
    members: Vec<Member>,
    outputs: Vec<TaskOutput>,
    cancel: Arc<AtomicBool>,
    metrics: Arc<TaskMetrics>,
    batch_size: usize,
    max_parallelism: usize,
    work: VecDeque<(usize, Call)>,
    scratch: Vec<(usize, Batch)>,
    last_housekeeping: Timestamp,
    /// In-flight records restored from an unaligned checkpoint, processed first.
    restored_in_flight: Vec<(usize, Batch)>,
}

impl Task {
    pub(crate) fn new(
        inst: TaskInstance,
        cancel: Arc<AtomicBool>,
        metrics: Arc<TaskMetrics>,
        batch_size: usize,
        max_parallelism: usize,
        ckpt: Option<Arc<CheckpointControl>>,
    ) -> (Self, Vec<InputChannel>) {
        let task = Task {
            ckpt,
            last_barrier: 0,
            notified: 0,
            name: inst.name,
            subtask: inst.subtask,
            members: inst.members,
            outputs: inst.outputs,
            cancel,
            metrics,
            batch_size,
            max_parallelism,
            work: VecDeque::new(),
            scratch: Vec::new(),
            last_housekeeping: 0,
            restored_in_flight: inst.in_flight,
        };
        (task, inst.inputs)
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn subtask(&self) -> usize {
        self.subtask
    }

    /// Runs the task to completion (end of all inputs) or failure.
    pub(crate) fn run(mut self, inputs: Vec<InputChannel>) -> Result<()> {
        for m in &mut self.members {
            if let MemberOp::Op(op) = &mut m.op {
                op.open()?;
            }
        }
        let result = if matches!(self.members[0].op, MemberOp::Source(_)) {
            self.run_source()
        } else {
            self.run_inputs(inputs)
        };
        self.housekeeping();
        self.metrics.finished.store(true, Relaxed);
        result
    }

    fn cancelled(&mut self) -> Result<()> {
        if self.cancel.load(Relaxed) {
            // A stop-with-savepoint that completed just before the stop still commits its side
            // effects.
            let _ = self.notify_completed();
            return Err(Error::Cancelled);
        }
        Ok(())
    }

    /// Records a source subtask reads per poll: `pipeline.batch-size` times the fewest
    /// subtasks any keyed exchange of this task splits a batch between, so each receiver
    /// gets batches of about `pipeline.batch-size` records, as a chained operator would (at
    /// parallelism 2, one poll of 1024 made two channel messages of ~512: twice the sends,
    /// wake-ups and per-batch work in the receiving operators per record).
    fn source_poll_size(&self) -> usize {
        let split = self
            .outputs
            .iter()
            .map(|o| match o.partitioning {
                Partitioning::Hash(_) => o.senders.len().max(1),
                _ => 1,
            })
            .min()
            .unwrap_or(1);
        self.batch_size * split
    }

    fn run_source(&mut self) -> Result<()> {
        let poll_size = self.source_poll_size();
        loop {
            self.cancelled()?;
            self.fire_processing_time()?;
            self.notify_completed()?;
            let barrier = self
                .ckpt
                .as_ref()
                .filter(|c| c.trigger.load(Relaxed) > self.last_barrier)
                .map(|c| c.latest_barrier());
            if let Some(barrier) = barrier {
                // Draining stop: event time ends before the barrier, so every window and
                // timer fires into the savepoint's output.
                if barrier.kind.drains() {
                    let mut out = Output::default();
                    out.watermark(MAX_WATERMARK);
                    self.emit(0, out)?;
                }
                if self.checkpoint(barrier, Arrival::now())? == Flow::Stop {
                    return Ok(());
                }
            }
            // Read only when there is room downstream (Flink's output availability): a
            // source blocked in a send could not react to a checkpoint trigger.
            if self.any_output_full() {
                let start = Instant::now();
                std::thread::sleep(Duration::from_micros(200));
                self.metrics
                    .backpressured_ns
                    .fetch_add(start.elapsed().as_nanos() as u64, Relaxed);
                continue;
            }
            let MemberOp::Source(src) = &mut self.members[0].op else {
                unreachable!("checked by caller")
            };
            let mut out = Output::default();
            let poll = src.poll(poll_size, &mut out)?;
            if !out.items.is_empty() {
                self.emit(0, out)?;
            }
            match poll {
                SourcePoll::Ready => {}
                SourcePoll::Pending(ms) => {
                    let wake = self
                        .next_processing_time()
                        .map_or(ms as i64, |t| (t - now_ms()).clamp(0, ms as i64));
                    let waiting = Instant::now();
                    std::thread::sleep(Duration::from_millis(wake as u64).min(CANCEL_POLL));
                    self.metrics
                        .idle_ns
                        .fetch_add(waiting.elapsed().as_nanos() as u64, Relaxed);
                }
                SourcePoll::End => break,
            }
        }
        let mut out = Output::default();
        out.watermark(MAX_WATERMARK);
        self.emit(0, out)?;
        self.finish(1)
    }

    fn run_inputs(&mut self, receivers: Vec<InputChannel>) -> Result<()> {
        let mut states: Vec<InputState> = receivers
            .iter()
            .map(|c| InputState {
                input: c.input,
                watermark: MIN_WATERMARK,
                idle: false,
                ended: false,
            })
            .collect();
        let exactly_once = self.ckpt.as_ref().is_some_and(|c| c.exactly_once);
        // Channels whose barrier arrived while aligning (exactly-once: not read until the
        // checkpoint is taken, so their later records stay out of this checkpoint).
        let mut arrived = vec![false; receivers.len()];
        let mut aligning: Option<(Barrier, Arrival)> = None;
        let mut overtaking: Option<Overtaking> = None;
        // Per channel: events taken out of it by an unaligned checkpoint, not processed yet.
        let mut stash: Vec<VecDeque<Event>> = receivers.iter().map(|_| VecDeque::new()).collect();
        let mut open = receivers.len();
        let mut combined = MIN_WATERMARK;
        let mut all_idle = false;
        // The select over readable channels; rebuilt only when one ends or gets blocked.
        let mut readable: Option<(Select<'_>, Vec<usize>)> = None;
        // Records an unaligned checkpoint overtook before the failure come first.
        for (input, b) in std::mem::take(&mut self.restored_in_flight) {
            self.work.push_back((0, Call::Process(input, b)));
            self.drain()?;
        }
        while open > 0 {
            self.cancelled()?;
            self.fire_processing_time()?;
            self.notify_completed()?;
            self.poll_overtaking(&receivers, &states, &mut stash, &mut overtaking)?;
            if overtaking
                .as_ref()
                .is_some_and(|o| !o.before_barrier.contains(&true))
            {
                let o = overtaking.take().expect("present");
                self.acknowledge_overtaking(o);
            }
            // Stashed events come first: they precede everything still in their channel.
            let (i, ev, stashed) = if let Some(i) = (0..stash.len()).find(|&c| !stash[c].is_empty())
            {
                (i, stash[i].pop_front().expect("non-empty"), true)
            } else {
                let (sel, map) = readable.get_or_insert_with(|| {
                    let mut sel = Select::new();
                    let mut map = Vec::with_capacity(receivers.len());
                    for (i, c) in receivers.iter().enumerate() {
                        if !(states[i].ended || exactly_once && arrived[i]) {
                            map.push(i);
                            sel.recv(&c.rx);
                        }
                    }
                    (sel, map)
                });
                let timeout = self.next_processing_time().map_or(CANCEL_POLL, |t| {
                    Duration::from_millis((t - now_ms()).max(0) as u64).min(CANCEL_POLL)
                });
                let waiting = Instant::now();
                let selected = sel.select_timeout(timeout);
                self.metrics
                    .idle_ns
                    .fetch_add(waiting.elapsed().as_nanos() as u64, Relaxed);
                let Ok(oper) = selected else {
                    continue;
                };
                let i = map[oper.index()];
                match oper.recv(&receivers[i].rx) {
                    Ok(ev) => (i, ev, false),
                    // The sender vanished without End: its task failed; the executor cancels us.
                    Err(_) => {
                        self.cancelled()?;
                        return Err(Error::Cancelled);
                    }
                }
            };
            if let Event::Barrier(b) = ev
                && self.unaligned_for(b)
            {
                if b.id > self.last_barrier {
                    // Its barrier came before we saw it announced.
                    overtaking = Some(self.overtake(b, &receivers, &states, &stash)?);
                }
                if let Some(o) = overtaking.as_mut().filter(|o| o.id == b.id) {
                    o.before_barrier[i] = false;
                }
            } else if let Event::Barrier(b) = ev
                && b.id > self.last_barrier
                && aligning.is_none_or(|(a, _)| b.id >= a.id)
            {
                if aligning.map(|(a, _)| a.id) != Some(b.id) {
                    // A newer checkpoint supersedes one that never completed here.
                    arrived.iter_mut().for_each(|a| *a = false);
                    aligning = Some((b, Arrival::now()));
                }
                arrived[i] = true;
                if exactly_once {
                    readable = None;
                }
            }
            if let Event::End = ev {
                states[i].ended = true;
                open -= 1;
                readable = None;
                if let Some(o) = overtaking.as_mut() {
                    o.before_barrier[i] = false;
                }
            }
            if let Some((barrier, arrival)) = aligning
                && (0..arrived.len()).all(|c| arrived[c] || states[c].ended)
            {
                if self.checkpoint(barrier, arrival)? == Flow::Stop {
                    return Ok(());
                }
                aligning = None;
                arrived.iter_mut().for_each(|a| *a = false);
                readable = None;
            }
            match ev {
                Event::Data(b) => {
                    if let Some(o) = overtaking
                        .as_mut()
                        .filter(|o| o.before_barrier[i] && !stashed)
                    {
                        o.in_flight.push(receivers[i].in_flight(o.owner, &*b)?);
                    }
                    self.work.push_back((0, Call::Process(states[i].input, b)));
                    self.drain()?;
                }
                Event::Watermark(w) => states[i].watermark = states[i].watermark.max(w),
                Event::Idle(idle) => states[i].idle = idle,
                Event::Barrier(_) | Event::End => {}
            }
            if overtaking
                .as_ref()
                .is_some_and(|o| !o.before_barrier.contains(&true))
            {
                let o = overtaking.take().expect("present");
                self.acknowledge_overtaking(o);
            }
            // Combined watermark: min over non-idle channels, a finished channel counting as
            // +inf (it sent the final watermark). When every unfinished channel is idle the
            // task is idle and holds its watermark, unless finished channels move it.
            let idle_now =
                states.iter().any(|s| !s.ended) && states.iter().all(|s| s.ended || s.idle);
            if idle_now != all_idle {
                all_idle = idle_now;
                self.work.push_back((0, Call::Idle(idle_now)));
            }
            let wm = states
                .iter()
                .filter(|s| s.ended || !s.idle)
                .map(|s| if s.ended { MAX_WATERMARK } else { s.watermark })
                .min()
                .unwrap_or(combined);
            if wm > combined {
                combined = wm;
                self.work.push_back((0, Call::Watermark(wm)));
            }
            self.drain()?;
        }
        self.finish(0)
    }

    /// Whether `barrier` is unaligned: the job asks for it and it is no savepoint
    /// (savepoints always align, so they hold no in-flight records and stay canonical).
    fn unaligned_for(&self, barrier: Barrier) -> bool {
        !barrier.kind.is_savepoint()
            && self
                .ckpt
                .as_ref()
                .is_some_and(|c| c.exactly_once && c.unaligned)
    }

    /// Starts an unaligned checkpoint as soon as any input announces its barrier, without
    /// waiting for the records queued ahead of it; drops one the coordinator gave up on.
    fn poll_overtaking(
        &mut self,
        receivers: &[InputChannel],
        states: &[InputState],
        stash: &mut [VecDeque<Event>],
        overtaking: &mut Option<Overtaking>,
    ) -> Result<()> {
        let Some(ctl) = self.ckpt.clone().filter(|c| c.unaligned) else {
            return Ok(());
        };
        if overtaking
            .as_ref()
            .is_some_and(|o| ctl.aborted.load(SeqCst) >= o.id)
        {
            *overtaking = None;
        }
        let announced = receivers
            .iter()
            .map(|c| c.announced.load(SeqCst))
            .max()
            .unwrap_or(0);
        // Only unaligned barriers are announced, and savepoints never are: an announced
        // id is a periodic checkpoint's.
        let announced = Barrier::checkpoint(announced);
        if announced.id > self.last_barrier && self.unaligned_for(announced) {
            *overtaking = Some(self.overtake(announced, receivers, states, stash)?);
        }
        if let Some(o) = overtaking.as_mut() {
            Self::stash_overtaken(receivers, stash, o)?;
        }
        Ok(())
    }

    /// Moves what is queued ahead of each channel's barrier into the stash, storing its
    /// records as in-flight data, up to the barrier (or as far as the channel has events now:
    /// a sender blocked on a full channel sends its barrier once this made room).
    fn stash_overtaken(
        receivers: &[InputChannel],
        stash: &mut [VecDeque<Event>],
        o: &mut Overtaking,
    ) -> Result<()> {
        for (i, c) in receivers.iter().enumerate() {
            while o.before_barrier[i] {
                let Ok(ev) = c.rx.try_recv() else { break };
                match ev {
                    Event::Barrier(b) if b.id == o.id => o.before_barrier[i] = false,
                    // An older barrier that never completed: nothing to do.
                    Event::Barrier(b) if b.id < o.id => {}
                    // The sender skipped ours (it was aborted): it decides when processed.
                    Event::Barrier(_) | Event::End => {
                        stash[i].push_back(ev);
                        o.before_barrier[i] = false;
                    }
                    Event::Data(b) => {
                        o.in_flight.push(c.in_flight(o.owner, &*b)?);
                        stash[i].push_back(Event::Data(b));
                    }
                    ev => stash[i].push_back(ev),
                }
            }
        }
        Ok(())
    }

    /// Takes the unaligned checkpoint of `barrier` now: snapshot, pass the barrier on ahead
    /// of everything queued downstream, then collect what it overtook on every open input.
    fn overtake(
        &mut self,
        barrier: Barrier,
        receivers: &[InputChannel],
        states: &[InputState],
        stash: &[VecDeque<Event>],
    ) -> Result<Overtaking> {
        let arrival = Arrival::now();
        let snapshot = self.snapshot(barrier)?;
        let sync_us = arrival.at.elapsed().as_micros() as u64;
        self.last_barrier = barrier.id;
        self.forward_barrier(barrier, true)?;
        let owner = self.subtask as u32;
        // Records stashed by an earlier checkpoint and not processed yet precede this
        // barrier too.
        let mut in_flight = Vec::new();
        for (i, events) in stash.iter().enumerate() {
            for ev in events {
                if let Event::Data(b) = ev {
                    in_flight.push(receivers[i].in_flight(owner, &**b)?);
                }
            }
        }
        Ok(Overtaking {
            id: barrier.id,
            owner,
            states: snapshot,
            arrival,
            sync_us,
            before_barrier: states
                .iter()
                .zip(stash)
                .map(|(s, st)| !s.ended && !st.iter().any(|e| matches!(e, Event::End)))
                .collect(),
            in_flight,
        })
    }

    /// Every overtaken record is collected: acknowledge, with them in the head's state.
    fn acknowledge_overtaking(&self, mut o: Overtaking) {
        let timing = TaskTiming {
            alignment_us: o.arrival.at.elapsed().as_micros() as u64,
            sync_us: o.sync_us,
            unaligned: true,
            persisted_bytes: o.in_flight.iter().map(|b| b.data.len() as u64).sum(),
            ..self.timing(o.arrival)
        };
        if let Some((_, _, head)) = o.states.first_mut() {
            head.in_flight = o.in_flight;
        }
        self.acknowledge(o.id, o.states, timing);
    }

    /// What every acknowledgement says about this task and its first barrier.
    fn timing(&self, arrival: Arrival) -> TaskTiming {
        TaskTiming {
            task: self.name.clone(),
            subtask: self.subtask,
            first_barrier_ms: arrival.epoch_ms,
            ..TaskTiming::default()
        }
    }

    /// Snapshots every chained operator for the snapshot `barrier` stands for.
    fn snapshot(&mut self, barrier: Barrier) -> Result<Snapshot> {
        let mut states = Vec::new();
        for m in &mut self.members {
            let state = match &mut m.op {
                MemberOp::Source(s) => OperatorSubtaskState {
                    list: s.snapshot_state()?,
                    ..Default::default()
                },
                MemberOp::Op(op) => op.snapshot_state(barrier)?,
            };
            states.push((m.uid.clone(), m.metrics.subtask, state));
        }
        Ok(states)
    }

    fn acknowledge(&self, id: u64, states: Snapshot, timing: TaskTiming) {
        if let Some(ctl) = &self.ckpt {
            // The coordinator may be gone when the job is shutting down; nothing to do then.
            let states = states
                .into_iter()
                .map(|(uid, subtask, s)| (uid, subtask, SubtaskAck::Raw(s)))
                .collect();
            let _ = ctl.acks.send(Ack { id, states, timing });
        }
    }

    /// Sends `barrier` on every output channel. `announce`: first tell every receiver it
    /// is coming (unaligned checkpoints), since sending may block behind queued records.
    fn forward_barrier(&self, barrier: Barrier, announce: bool) -> Result<()> {
        if announce {
            for out in &self.outputs {
                out.announce.iter().for_each(|a| {
                    a.fetch_max(barrier.id, SeqCst);
                });
            }
        }
        (0..self.outputs.len()).try_for_each(|o| self.send_all(o, || Event::Barrier(barrier)))
    }

    /// Takes this task's part of the snapshot `barrier` stands for: snapshot every chained
    /// operator (all input before the barrier has been processed), acknowledge, pass the
    /// barrier on. `arrival`: when its first barrier came (its last comes now).
    fn checkpoint(&mut self, barrier: Barrier, arrival: Arrival) -> Result<Flow> {
        let Some(ctl) = self.ckpt.clone() else {
            return Ok(Flow::Continue);
        };
        let id = barrier.id;
        let aligned = Instant::now();
        let states = self.snapshot(barrier)?;
        let timing = TaskTiming {
            alignment_us: aligned.duration_since(arrival.at).as_micros() as u64,
            sync_us: aligned.elapsed().as_micros() as u64,
            ..self.timing(arrival)
        };
        self.acknowledge(id, states, timing);
        self.last_barrier = id;
        self.forward_barrier(barrier, self.unaligned_for(barrier))?;
        if !barrier.kind.stops() {
            return Ok(Flow::Continue);
        }
        // Stop-with-savepoint: process nothing more; wait for the savepoint's fate.
        loop {
            self.cancelled()?;
            if ctl.completed.load(Relaxed) >= id {
                self.notify_completed()?;
                return Ok(Flow::Stop);
            }
            if ctl.aborted.load(Relaxed) >= id {
                return Ok(Flow::Continue);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Tells operators about newly completed checkpoints (sinks commit here).
    fn notify_completed(&mut self) -> Result<()> {
        let Some(done) = self
            .ckpt
            .as_ref()
            .map(|c| c.completed.load(Relaxed))
            .filter(|d| *d > self.notified)
        else {
            return Ok(());
        };
        self.notified = done;
        for m in &mut self.members {
            match &mut m.op {
                MemberOp::Op(op) => op.notify_checkpoint_complete(done)?,
                MemberOp::Source(src) => src.notify_checkpoint_complete(done)?,
            }
        }
        Ok(())
    }

    /// End of input: flush every operator in chain order, then tell consumers.
    fn finish(&mut self, first: usize) -> Result<()> {
        for m in first..self.members.len() {
            let mut out = Output::default();
            if let MemberOp::Op(op) = &mut self.members[m].op {
                op.end_of_input(&mut out)?;
            }
            self.emit(m, out)?;
        }
        (0..self.outputs.len()).try_for_each(|o| self.send_all(o, || Event::End))
    }

    fn next_processing_time(&mut self) -> Option<Timestamp> {
        self.members
            .iter_mut()
            .filter_map(|m| match &mut m.op {
                MemberOp::Op(op) => op.next_processing_time(),
                MemberOp::Source(src) => src.next_processing_time(),
            })
            .min()
    }

    fn fire_processing_time(&mut self) -> Result<()> {
        let now = now_ms();
        if now - self.last_housekeeping >= HOUSEKEEPING_MS {
            self.last_housekeeping = now;
            self.housekeeping();
        }
        for m in 0..self.members.len() {
            let MemberOp::Op(op) = &mut self.members[m].op else {
                continue;
            };
            if op.next_processing_time().is_some_and(|t| t <= now) {
                let mut out = Output::default();
                op.processing_time(now, &mut out)?;
                self.emit(m, out)?;
            }
        }
        Ok(())
    }

    fn housekeeping(&self) {
        for m in &self.members {
            let (entries, skipped) = match &m.op {
                MemberOp::Op(op) => (op.state_entries() as u64, op.skipped()),
                MemberOp::Source(s) => (0, s.skipped()),
            };
            m.metrics.state_entries.store(entries, Relaxed);
            m.metrics.skipped.store(skipped, Relaxed);
            let gauges = match &m.op {
                MemberOp::Source(s) => s.gauges(),
                MemberOp::Op(op) => op.gauges(),
            };
            *m.metrics.gauges.lock().expect("never poisoned") = gauges;
        }
    }

    /// Runs queued calls until none are left.
    fn drain(&mut self) -> Result<()> {
        while let Some((m, call)) = self.work.pop_front() {
            let mut out = Output::default();
            let member = &mut self.members[m];
            let MemberOp::Op(op) = &mut member.op else {
                unreachable!("sources receive no calls")
            };
            match call {
                Call::Process(input, b) => {
                    member.metrics.records_in.fetch_add(b.len() as u64, Relaxed);
                    op.process(input, b, &mut out)?;
                }
                Call::Watermark(w) => {
                    member.metrics.watermark.store(w, Relaxed);
                    op.watermark(w, &mut out)?;
                }
                Call::Idle(i) => op.idle(i, &mut out)?,
            }
            self.dispatch(m, out)?;
        }
        Ok(())
    }

    /// Routes what member `from` emitted; chained targets are queued, remote ones sent.
    fn dispatch(&mut self, from: usize, out: Output) -> Result<()> {
        for item in out.items {
            match item {
                OutItem::Data(port, batch) => {
                    let n = batch.len() as u64;
                    self.members[from].metrics.records_out.fetch_add(n, Relaxed);
                    let n = self.members[from].targets.get(port).map_or(0, Vec::len);
                    let mut batch = Some(batch);
                    for i in 0..n {
                        let b = if i + 1 == n {
                            batch.take().expect("moved once")
                        } else {
                            batch.as_ref().expect("present").clone_batch()
                        };
                        match self.members[from].targets[port][i] {
                            Target::Local(m, input) => {
                                self.work.push_back((m, Call::Process(input, b)))
                            }
                            Target::Remote(o) => self.send_data(o, b)?,
                        }
                    }
                }
                OutItem::Watermark(w) => {
                    self.broadcast(from, || Call::Watermark(w), || Event::Watermark(w))?
                }
                OutItem::Idle(i) => self.broadcast(from, || Call::Idle(i), || Event::Idle(i))?,
            }
        }
        Ok(())
    }

    /// Routes what member `from` emitted outside [`Task::drain`] and runs everything it
    /// queued for chained operators.
    fn emit(&mut self, from: usize, out: Output) -> Result<()> {
        self.dispatch(from, out)?;
        self.drain()
    }

    fn any_output_full(&self) -> bool {
        self.outputs
            .iter()
            .any(|o| o.senders.iter().any(Sender::is_full))
    }

    /// Sends an event (made fresh per channel) on every channel of output `o`.
    fn send_all(&self, o: usize, ev: impl Fn() -> Event) -> Result<()> {
        self.outputs[o]
            .senders
            .iter()
            .try_for_each(|tx| self.send(tx, ev()))
    }

    fn broadcast(
        &mut self,
        from: usize,
        call: impl Fn() -> Call,
        ev: impl Fn() -> Event,
    ) -> Result<()> {
        let mut seen_local = Vec::new();
        let mut seen_remote = Vec::new();
        let targets: Vec<Target> = self.members[from]
            .targets
            .iter()
            .flatten()
            .copied()
            .collect();
        for t in targets {
            match t {
                Target::Local(m, _) if !seen_local.contains(&m) => {
                    seen_local.push(m);
                    self.work.push_back((m, call()));
                }
                Target::Remote(o) if !seen_remote.contains(&o) => {
                    seen_remote.push(o);
                    self.send_all(o, &ev)?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn send_data(&mut self, o: usize, batch: Batch) -> Result<()> {
        // The senders are borrowed, not cloned: a clone per batch is an allocation and a
        // reference count bumped on every channel of the output.
        let out = &mut self.outputs[o];
        let n = out.senders.len();
        let to = match &out.partitioning {
            _ if n == 1 => 0,
            Partitioning::Forward => unreachable!("forward outputs have one sender"),
            Partitioning::Rebalance => {
                out.next = (out.next + 1) % n;
                out.next
            }
            Partitioning::Hash(f) => {
                let mut parts = std::mem::take(&mut self.scratch);
                f(batch, n, self.max_parallelism, &mut parts);
                let sent = parts
                    .drain(..)
                    .try_for_each(|(i, b)| self.send(&self.outputs[o].senders[i], Event::Data(b)));
                self.scratch = parts;
                return sent;
            }
        };
        self.send(&self.outputs[o].senders[to], Event::Data(batch))
    }

    /// Sends one event, blocking while the channel is full (that time is backpressure).
    fn send(&self, tx: &Sender<Event>, ev: Event) -> Result<()> {
        let mut ev = match tx.try_send(ev) {
            Ok(()) => return Ok(()),
            Err(TrySendError::Full(ev)) => ev,
            Err(TrySendError::Disconnected(_)) => return Err(Error::Cancelled),
        };
        let start = Instant::now();
        let mut waits = 0u32;
        let r = loop {
            match tx.send_timeout(ev, CANCEL_POLL) {
                Ok(()) => break Ok(()),
                Err(SendTimeoutError::Timeout(e)) => {
                    if self.cancel.load(Relaxed) {
                        break Err(Error::Cancelled);
                    }
                    // A task blocked here (a barrier behind a full channel) still reports
                    // its metrics: a source's lag matters most while it is backpressured.
                    waits += 1;
                    if u128::from(waits) * CANCEL_POLL.as_millis() >= HOUSEKEEPING_MS as u128 {
                        waits = 0;
                        self.housekeeping();
                    }
                    ev = e;
                }
                Err(SendTimeoutError::Disconnected(_)) => break Err(Error::Cancelled),
            }
        };
        self.metrics
            .backpressured_ns
            .fetch_add(start.elapsed().as_nanos() as u64, Relaxed);
        r
    }
}
