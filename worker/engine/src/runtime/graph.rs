//! The job graph (what the API built) and its translation into tasks: operators joined by
//! forward edges at equal parallelism are chained into one task so records pass between them
//! by function call, and every other edge becomes a set of bounded channels.

use super::memory::Footprint;
use super::metrics::OperatorMetrics;
use super::{Batch, BatchCodec, Event, Operator, SourceOperator, SubtaskInfo};
use crate::error::{Error, Result};
use crossbeam_channel::{Receiver, Sender, bounded};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

pub(crate) type OperatorFactory =
    Arc<dyn Fn(&SubtaskInfo) -> Result<Box<dyn Operator>> + Send + Sync>;
pub(crate) type SourceFactory =
    Arc<dyn Fn(&SubtaskInfo) -> Result<Box<dyn SourceOperator>> + Send + Sync>;
/// Splits a batch into per-target batches: `(batch, targets, max_parallelism, out)`.
/// Per task, per subtask: its input channels.
type TaskInputs = Vec<Vec<Vec<InputChannel>>>;
pub(crate) type PartitionFn =
    Arc<dyn Fn(Batch, usize, usize, &mut Vec<(usize, Batch)>) + Send + Sync>;

#[derive(Clone)]
pub(crate) enum Partitioning {
    /// Subtask i feeds subtask i; becomes `Rebalance` when the parallelism differs (the
    /// default edge, as in Flink).
    Forward,
    /// Round-robin, batch by batch.
    Rebalance,
    /// By key group of each record.
    Hash(PartitionFn),
}

impl Partitioning {
    fn label(&self) -> &'static str {
        match self {
            Partitioning::Forward => "FORWARD",
            Partitioning::Rebalance => "REBALANCE",
            Partitioning::Hash(_) => "HASH",
        }
    }
}

#[derive(Clone)]
pub(crate) struct EdgeSpec {
    pub(crate) from: usize,
    pub(crate) port: usize,
    pub(crate) partitioning: Partitioning,
    /// Encodes the edge's batches (in-flight data of unaligned checkpoints).
    pub(crate) codec: super::BatchCodec,
    /// The consumer's input it feeds (0, or 1 for a second input): its position among the
    /// consumer's edges, unless a bypassed union put several edges in one input's place.
    pub(crate) input: usize,
}

#[derive(Clone)]
pub(crate) enum NodeKind {
    Source(SourceFactory),
    Operator(OperatorFactory),
}

#[derive(Clone)]
pub(crate) struct NodeSpec {
    pub(crate) name: String,
    pub(crate) uid: Option<String>,
    /// What the operator's keyed state holds, when its code alone does not say (see
    /// [`crate::api::DataStream::state_schema`]).
    pub(crate) state_schema: Option<String>,
    pub(crate) parallelism: usize,
    pub(crate) kind: NodeKind,
    pub(crate) inputs: Vec<EdgeSpec>,
    /// Side-output tags consumed downstream; port `i + 1` carries `side_ports[i]`.
    pub(crate) side_ports: Vec<String>,
    pub(crate) is_sink: bool,
    /// Whether this node may be chained to its input (false e.g. for `start_new_chain`).
    pub(crate) chainable: bool,
    /// An identity over several inputs (`DataStream::union`), which the runtime may bypass
    /// (see [`JobGraph::physical`]).
    pub(crate) union: bool,
}

impl NodeSpec {
    /// A union the physical plan bypasses: it keeps its place (and uid) in the graph but has
    /// no inputs and runs no task.
    fn bypassed(&self) -> bool {
        self.union && self.inputs.is_empty()
    }
}

/// A job's tasks (operator chains) and the edges between them: what the REST API's plan and
/// the dashboard's graph show.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobTopology {
    /// The tasks, sources first (a task's inputs come before it).
    pub tasks: Vec<TopologyTask>,
}

/// One task of a [`JobTopology`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopologyTask {
    /// Its chained operators' names joined by ` -> `, as its metrics name it.
    pub name: String,
    /// Its subtasks.
    pub parallelism: usize,
    /// The chained operators, in chain order.
    pub operators: Vec<String>,
    /// Their uids (what checkpoints key their state by), in the same order.
    pub uids: Vec<String>,
    /// The edges feeding it.
    pub inputs: Vec<TopologyEdge>,
}

/// An edge into a [`TopologyTask`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopologyEdge {
    /// The producing task's index in [`JobTopology::tasks`].
    pub from: usize,
    /// How records are distributed: `FORWARD`, `REBALANCE` or `HASH` (Flink's ship strategy).
    pub partitioning: String,
}

/// An operator of a task: name, is a source, is a sink.
pub(crate) type OperatorEntry = (String, bool, bool);
/// A task instance: task name, subtask index, its operators.
pub(crate) type TaskEntry = (String, usize, Vec<OperatorEntry>);

/// The logical job as the API built it.
#[derive(Clone, Default)]
pub(crate) struct JobGraph {
    pub(crate) nodes: Vec<NodeSpec>,
}

/// Where an operator's output on one port goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// Chained member (index within the task) and its input index.
    Local(usize, usize),
    /// Remote output (index into the task's outputs).
    Remote(usize),
}

/// One end of a set of channels leaving a task.
pub(crate) struct TaskOutput {
    pub(crate) partitioning: Partitioning,
    pub(crate) senders: Vec<Sender<Event>>,
    /// Per sender: the receiver's [`InputChannel::announced`].
    pub(crate) announce: Vec<Arc<AtomicU64>>,
    pub(crate) next: usize,
}

/// The receiving end of one channel into a task.
pub(crate) struct InputChannel {
    /// The operator input it feeds (0, or 1 for a second input).
    pub(crate) input: usize,
    pub(crate) rx: Receiver<Event>,
    /// Highest checkpoint whose barrier the sender has queued in this channel. Written before
    /// the barrier is sent, so an unaligned checkpoint starts without waiting for the queued
    /// records ahead of the barrier: that is how its barrier overtakes them.
    pub(crate) announced: Arc<AtomicU64>,
    /// Encodes the channel's batches when an unaligned checkpoint persists them.
    pub(crate) codec: BatchCodec,
}

impl InputChannel {
    /// A batch read from this channel, as in-flight data of an unaligned checkpoint taken by
    /// subtask `owner`.
    pub(crate) fn in_flight(
        &self,
        owner: u32,
        batch: &dyn super::BatchData,
    ) -> Result<crate::checkpoint::InFlightBatch> {
        Ok(crate::checkpoint::InFlightBatch {
            input: self.input as u32,
            owner,
            data: (self.codec.encode)(batch)?,
        })
    }
}

/// One channel of the job: consumer node and its input, producer and consumer subtask.
/// The same on every process that instantiates the graph, so two TaskManagers agree on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub(crate) struct ChannelId {
    pub(crate) node: u32,
    pub(crate) input: u32,
    pub(crate) from: u32,
    pub(crate) to: u32,
}

/// The producing end of a channel whose consumer runs in another process: the network
/// exchange drains `rx` and forwards what the task sent.
pub(crate) struct RemoteOutput {
    pub(crate) id: ChannelId,
    pub(crate) rx: Receiver<Event>,
    pub(crate) announce: Arc<AtomicU64>,
    pub(crate) codec: BatchCodec,
}

/// The consuming end of a channel whose producer runs in another process: the network
/// exchange feeds `tx` with what arrives.
pub(crate) struct RemoteInput {
    pub(crate) id: ChannelId,
    pub(crate) tx: Sender<Event>,
    pub(crate) announced: Arc<AtomicU64>,
    pub(crate) codec: BatchCodec,
}

/// What one process instantiated: its tasks, their metrics and the channels that cross to
/// other processes.
pub(crate) struct Instantiated {
    pub(crate) tasks: Vec<TaskInstance>,
    pub(crate) metrics: Vec<Arc<OperatorMetrics>>,
    pub(crate) remote_outputs: Vec<RemoteOutput>,
    pub(crate) remote_inputs: Vec<RemoteInput>,
}

pub(crate) enum MemberOp {
    Source(Box<dyn SourceOperator>),
    Op(Box<dyn Operator>),
}

pub(crate) struct Member {
    pub(crate) uid: String,
    pub(crate) op: MemberOp,
    pub(crate) targets: Vec<Vec<Target>>,
    pub(crate) metrics: Arc<OperatorMetrics>,
}

/// A task instance ready to run: its chained operators, input receivers and outputs.
pub(crate) struct TaskInstance {
    pub(crate) name: String,
    pub(crate) subtask: usize,
    pub(crate) members: Vec<Member>,
    pub(crate) inputs: Vec<InputChannel>,
    pub(crate) outputs: Vec<TaskOutput>,
    /// In-flight records of the unaligned checkpoint restored from, by operator input:
    /// processed before anything read from the channels.
    pub(crate) in_flight: Vec<(usize, Batch)>,
}

/// Options that shape the physical plan.
#[derive(Debug, Clone)]
pub(crate) struct PlanOptions {
    pub(crate) max_parallelism: usize,
    pub(crate) decode_errors: crate::config::DecodeErrorPolicy,
    pub(crate) channel_capacity: usize,
    pub(crate) chaining: bool,
    /// State to start from (a checkpoint or savepoint).
    pub(crate) restore: Option<Arc<crate::checkpoint::RestorePlan>>,
    /// The keyed state backend.
    pub(crate) state_backend: crate::config::StateBackendConfig,
    /// `execution.savepoint.ignore-unclaimed-state`: restored state that no operator (or no
    /// state of an operator) claims is dropped instead of failing the restore.
    pub(crate) allow_unclaimed_state: bool,
    /// This process's memory budget: channel capacities and RocksDB memory are fitted to
    /// it when tasks are instantiated (`None`: `pipeline.channel-capacity`, RocksDB defaults).
    pub(crate) memory: Option<super::memory::MemoryBudget>,
    /// The job's storage settings (`s3.*`), handed to connectors.
    pub(crate) storage: Arc<weir_storage::StorageOptions>,
    /// `execution.checkpointing.interval` and the restart strategy, for connectors that
    /// check their own timeouts against them (see [`SubtaskInfo::checkpoint_interval`]).
    pub(crate) checkpoint_interval: Option<std::time::Duration>,
    pub(crate) restart: crate::config::RestartStrategy,
}

impl JobGraph {
    /// The uid naming node `i`'s state: the explicit uid, else derived from its position and
    /// name (stable while the job's structure does not change; set uids to evolve jobs).
    pub(crate) fn uid(&self, i: usize) -> String {
        let n = &self.nodes[i];
        n.uid.clone().unwrap_or_else(|| {
            let slug: String = n
                .name
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() {
                        c.to_ascii_lowercase()
                    } else {
                        '-'
                    }
                })
                .collect();
            format!("{i}-{slug}")
        })
    }

    /// The graph the runtime runs. A union whose every consumer reads it through a keyed
    /// exchange is bypassed: each consumer's exchange takes the union's inputs directly, so
    /// their records are hashed and sent on the threads that produce them instead of
    /// crossing a channel into a union task first (a thread hop and a channel per record;
    /// an interval join's inputs meet in such a union). The union keeps its place, so every
    /// uid stays as it was; it is stateless, so checkpoints lose nothing. Watermarks,
    /// idleness and barriers are combined over the consumer's channels as the union did over
    /// its inputs. Only unions whose inputs are forward edges at the union's parallelism
    /// are bypassed (nothing is redistributed before the exchange).
    pub(crate) fn physical(&self) -> std::borrow::Cow<'_, JobGraph> {
        let bypass: Vec<bool> = self
            .nodes
            .iter()
            .enumerate()
            .map(|(u, n)| {
                let mut consumers = self
                    .nodes
                    .iter()
                    .flat_map(|c| &c.inputs)
                    .filter(|e| e.from == u)
                    .peekable();
                n.union
                    && !n.is_sink
                    && n.side_ports.is_empty()
                    && n.inputs.iter().all(|e| {
                        matches!(e.partitioning, Partitioning::Forward)
                            && self.nodes[e.from].parallelism == n.parallelism
                    })
                    && consumers.peek().is_some()
                    && consumers.all(|e| matches!(e.partitioning, Partitioning::Hash(_)))
            })
            .collect();
        if !bypass.contains(&true) {
            return std::borrow::Cow::Borrowed(self);
        }
        let mut g = self.clone();
        for c in &mut g.nodes {
            let mut inputs = Vec::with_capacity(c.inputs.len());
            for e in c.inputs.drain(..) {
                if !bypass[e.from] {
                    inputs.push(e);
                    continue;
                }
                // A bypassed union's inputs are never bypassed unions themselves: their
                // consumer (this union) reads them through forward edges.
                inputs.extend(self.nodes[e.from].inputs.iter().map(|ue| EdgeSpec {
                    from: ue.from,
                    port: ue.port,
                    partitioning: e.partitioning.clone(),
                    codec: e.codec,
                    input: e.input,
                }));
            }
            c.inputs = inputs;
        }
        for (u, b) in bypass.iter().enumerate() {
            if *b {
                g.nodes[u].inputs.clear();
            }
        }
        std::borrow::Cow::Owned(g)
    }

    /// Every node's uid, in node order.
    pub(crate) fn uids(&self) -> Vec<String> {
        (0..self.nodes.len()).map(|i| self.uid(i)).collect()
    }

    /// Checks the graph before anything is instantiated.
    pub(crate) fn validate(&self, max_parallelism: usize) -> Result<()> {
        if self.nodes.is_empty() {
            return Err(Error::InvalidJob("the job has no operators".into()));
        }
        if !self.nodes.iter().any(|n| n.is_sink) {
            return Err(Error::InvalidJob(
                "the job has no sink: add one with sink_to(..), print() or similar".into(),
            ));
        }
        let mut uids = std::collections::HashSet::new();
        for n in &self.nodes {
            if n.parallelism == 0 || n.parallelism > max_parallelism {
                return Err(Error::InvalidJob(format!(
                    "operator '{}' has parallelism {}; it must be between 1 and pipeline.max-parallelism ({max_parallelism})",
                    n.name, n.parallelism
                )));
            }
            if let Some(uid) = &n.uid
                && !uids.insert(uid.clone())
            {
                return Err(Error::InvalidJob(format!(
                    "operator uid '{uid}' is used twice; uids must be unique"
                )));
            }
        }
        Ok(())
    }

    /// The node each node is chained to, if any.
    fn chain_parents(&self, chaining: bool) -> Vec<Option<usize>> {
        self.nodes
            .iter()
            .map(|n| {
                if !chaining
                    || !n.chainable
                    || n.inputs.len() != 1
                    || matches!(n.kind, NodeKind::Source(_))
                {
                    return None;
                }
                let e = &n.inputs[0];
                let up = &self.nodes[e.from];
                let one_to_one = up.parallelism == n.parallelism
                    && (matches!(e.partitioning, Partitioning::Forward) || n.parallelism == 1);
                one_to_one.then_some(e.from)
            })
            .collect()
    }

    /// The tasks with their chained operators and the edges between them, as a dashboard
    /// draws the job: task names match the tasks' metrics ([`super::TaskMetricsSnapshot`]).
    pub(crate) fn topology(&self, chaining: bool) -> JobTopology {
        let physical = self.physical();
        let this = physical.as_ref();
        let (members_of, task_of, _) = this.layout(chaining);
        let tasks = members_of
            .iter()
            .map(|members| {
                let head = &this.nodes[members[0]];
                let operators: Vec<String> = members
                    .iter()
                    .map(|&m| this.nodes[m].name.clone())
                    .collect();
                TopologyTask {
                    name: operators.join(" -> "),
                    parallelism: head.parallelism,
                    operators,
                    uids: members.iter().map(|&m| this.uid(m)).collect(),
                    inputs: head
                        .inputs
                        .iter()
                        .map(|e| {
                            // A forward edge between different parallelisms rebalances.
                            let rebalanced = matches!(e.partitioning, Partitioning::Forward)
                                && this.nodes[e.from].parallelism != head.parallelism;
                            TopologyEdge {
                                from: task_of[e.from],
                                partitioning: if rebalanced {
                                    Partitioning::Rebalance.label()
                                } else {
                                    e.partitioning.label()
                                }
                                .to_string(),
                            }
                        })
                        .collect(),
                }
            })
            .collect();
        JobTopology { tasks }
    }

    /// A human-readable plan: tasks, their chained operators and the edges between them.
    pub(crate) fn explain(&self, opts: &PlanOptions) -> String {
        let physical = self.physical();
        let this = physical.as_ref();
        let parents = this.chain_parents(opts.chaining);
        let mut s = String::new();
        for (i, n) in this.nodes.iter().enumerate() {
            let how = match parents[i] {
                Some(p) => format!("chained to #{p}"),
                None if n.bypassed() => "bypassed: its inputs feed its consumers' exchanges".into(),
                None => n
                    .inputs
                    .iter()
                    .map(|e| format!("#{} {}", e.from, e.partitioning.label()))
                    .collect::<Vec<_>>()
                    .join(", "),
            };
            s.push_str(&format!(
                "#{i} {} [parallelism {}] <- {how}\n",
                n.name, n.parallelism
            ));
        }
        s
    }

    /// The tasks of the job: each task's chained nodes in chain order, and for each node
    /// its task and its index within the task.
    fn layout(&self, chaining: bool) -> (Vec<Vec<usize>>, Vec<usize>, Vec<usize>) {
        let parents = self.chain_parents(chaining);
        let mut head = vec![0usize; self.nodes.len()];
        let mut local = vec![0usize; self.nodes.len()];
        let mut task_of = vec![0usize; self.nodes.len()];
        let mut members_of: Vec<Vec<usize>> = Vec::new();
        let mut task_of_head = std::collections::HashMap::new();
        for i in 0..self.nodes.len() {
            if self.nodes[i].bypassed() {
                continue;
            }
            head[i] = match parents[i] {
                Some(p) => head[p],
                None => i,
            };
            let t = *task_of_head.entry(head[i]).or_insert_with(|| {
                members_of.push(Vec::new());
                members_of.len() - 1
            });
            task_of[i] = t;
            local[i] = members_of[t].len();
            members_of[t].push(i);
        }
        (members_of, task_of, local)
    }

    /// Every task instance as `(task name, subtask, operator names)`, in the order
    /// [`JobGraph::instantiate`] creates them: what a JobManager tracks without running any.
    pub(crate) fn task_list(&self, chaining: bool) -> Vec<TaskEntry> {
        let physical = self.physical();
        let this = physical.as_ref();
        let (members_of, _, _) = this.layout(chaining);
        let mut out = Vec::new();
        for members in &members_of {
            let name = members
                .iter()
                .map(|&m| this.nodes[m].name.as_str())
                .collect::<Vec<_>>()
                .join(" -> ");
            let ops: Vec<OperatorEntry> = members
                .iter()
                .map(|&m| {
                    let n = &this.nodes[m];
                    (
                        n.name.clone(),
                        matches!(n.kind, NodeKind::Source(_)),
                        n.is_sink,
                    )
                })
                .collect();
            for s in 0..this.nodes[members[0]].parallelism {
                out.push((name.clone(), s, ops.clone()));
            }
        }
        out
    }

    /// Slots the job needs: one per subtask index of its widest task (a slot runs one
    /// subtask of every task, as Flink's slot sharing does).
    pub(crate) fn slots_needed(&self) -> usize {
        self.nodes.iter().map(|n| n.parallelism).max().unwrap_or(1)
    }

    /// Instantiates every task of the job in this process, wiring chains and channels.
    pub(crate) fn instantiate(
        &self,
        opts: &PlanOptions,
    ) -> Result<(Vec<TaskInstance>, Vec<Arc<OperatorMetrics>>)> {
        let i = self.instantiate_slots(opts, &|_| true)?;
        debug_assert!(i.remote_outputs.is_empty() && i.remote_inputs.is_empty());
        Ok((i.tasks, i.metrics))
    }

    /// What the subtasks `is_local` accepts need memory for: the channels with an end among
    /// them (the loop in [`JobGraph::instantiate_slots`] creates exactly these) and the
    /// RocksDB instances of their keyed operators.
    fn footprint(&self, opts: &PlanOptions, is_local: &dyn Fn(usize) -> bool) -> Footprint {
        let parents = self.chain_parents(opts.chaining);
        let rocksdb = opts.state_backend.kind == crate::config::StateBackendKind::RocksDb;
        let mut f = Footprint::default();
        for (n, node) in self.nodes.iter().enumerate() {
            let keyed = node
                .inputs
                .iter()
                .any(|e| matches!(e.partitioning, Partitioning::Hash(_)));
            if keyed && rocksdb {
                f.rocksdb_instances += (0..node.parallelism).filter(|&s| is_local(s)).count();
            }
            for e in node.inputs.iter().filter(|e| parents[n] != Some(e.from)) {
                let up_par = self.nodes[e.from].parallelism;
                let forward =
                    matches!(e.partitioning, Partitioning::Forward) && up_par == node.parallelism;
                for j in 0..up_par {
                    f.channels += if forward {
                        usize::from(is_local(j))
                    } else if is_local(j) {
                        node.parallelism
                    } else {
                        (0..node.parallelism).filter(|&i| is_local(i)).count()
                    };
                }
            }
        }
        f
    }

    /// Instantiates the subtasks whose index `local` accepts (the slots of one TaskManager).
    /// Channels between two local subtasks are in-process; channels to or from another
    /// process are returned for the network exchange to bridge.
    pub(crate) fn instantiate_slots(
        &self,
        opts: &PlanOptions,
        is_local: &dyn Fn(usize) -> bool,
    ) -> Result<Instantiated> {
        match self.physical() {
            std::borrow::Cow::Borrowed(g) => g.instantiate_physical(opts, is_local),
            std::borrow::Cow::Owned(g) => {
                g.refuse_bypassed_in_flight(opts, is_local)?;
                g.instantiate_physical(opts, is_local)
            }
        }
    }

    /// An unaligned checkpoint taken before unions were bypassed may hold records in flight
    /// into a union's task, which no longer runs: refuse it rather than lose them.
    fn refuse_bypassed_in_flight(
        &self,
        opts: &PlanOptions,
        is_local: &dyn Fn(usize) -> bool,
    ) -> Result<()> {
        let Some(plan) = &opts.restore else {
            return Ok(());
        };
        for (u, n) in self.nodes.iter().enumerate() {
            if !n.bypassed() {
                continue;
            }
            let uid = self.uid(u);
            for s in (0..n.parallelism).filter(|&s| is_local(s)) {
                if plan
                    .for_subtask(&uid, s, n.parallelism, opts.max_parallelism)
                    .is_some_and(|st| !st.in_flight.is_empty())
                {
                    return Err(Error::Restore(format!(
                        "the checkpoint holds records in flight into union '{uid}' (an unaligned checkpoint of an older version, which ran the union as a task); this version feeds the union's inputs to its keyed consumers directly. Restore from a savepoint or an aligned checkpoint"
                    )));
                }
            }
        }
        Ok(())
    }

    /// [`JobGraph::instantiate_slots`] of a graph already made [`physical`](JobGraph::physical).
    fn instantiate_physical(
        &self,
        opts: &PlanOptions,
        is_local: &dyn Fn(usize) -> bool,
    ) -> Result<Instantiated> {
        let parents = self.chain_parents(opts.chaining);
        let (members_of, task_of, local) = self.layout(opts.chaining);
        let mut rocksdb_memory = crate::state::RocksMemory::default();
        let channel_capacity = match &opts.memory {
            None => opts.channel_capacity,
            Some(budget) => {
                let f = self.footprint(opts, is_local);
                let fitted = budget.fit(f, opts.channel_capacity)?;
                tracing::info!(
                    channels = f.channels,
                    batches_per_channel = fitted.channel_capacity,
                    rocksdb_instances = f.rocksdb_instances,
                    rocksdb_block_cache_bytes = fitted.rocks.block_cache_bytes(),
                    rocksdb_write_buffer_bytes = fitted.rocks.write_buffer_bytes(),
                    rocksdb_write_cache_bytes = fitted.rocks.write_cache_bytes(),
                    "memory fitted to the deployed tasks"
                );
                rocksdb_memory = fitted.rocks;
                fitted.channel_capacity
            }
        };
        let task_index = |node: usize| task_of[node];
        let mut remote_outputs = Vec::new();
        let mut remote_inputs = Vec::new();

        // Targets per member per port (identical for every subtask of a task).
        let mut targets: Vec<Vec<Vec<Target>>> = self
            .nodes
            .iter()
            .map(|n| vec![Vec::new(); 1 + n.side_ports.len()])
            .collect();
        // Per task, per subtask: outputs and inputs.
        let par_of_task = |t: usize| self.nodes[members_of[t][0]].parallelism;
        let mut outputs: Vec<Vec<Vec<TaskOutput>>> = (0..members_of.len())
            .map(|t| (0..par_of_task(t)).map(|_| Vec::new()).collect())
            .collect();
        let mut inputs: TaskInputs = (0..members_of.len())
            .map(|t| (0..par_of_task(t)).map(|_| Vec::new()).collect())
            .collect();

        for (n, node) in self.nodes.iter().enumerate() {
            for (k, e) in node.inputs.iter().enumerate() {
                if parents[n] == Some(e.from) {
                    targets[e.from][e.port].push(Target::Local(local[n], k));
                    continue;
                }
                let (ut, dt) = (task_index(e.from), task_index(n));
                let up_par = self.nodes[e.from].parallelism;
                let out_idx = outputs[ut][0].len();
                targets[e.from][e.port].push(Target::Remote(out_idx));
                let forward =
                    matches!(e.partitioning, Partitioning::Forward) && up_par == node.parallelism;
                let partitioning = match &e.partitioning {
                    Partitioning::Forward if !forward => Partitioning::Rebalance,
                    p => p.clone(),
                };
                for (j, up_outputs) in outputs[ut].iter_mut().enumerate().take(up_par) {
                    let mut senders = Vec::new();
                    let mut announce = Vec::new();
                    let downs: Vec<usize> = if forward {
                        vec![j]
                    } else {
                        (0..node.parallelism).collect()
                    };
                    for i in downs {
                        let (up_local, down_local) = (is_local(j), is_local(i));
                        if !up_local && !down_local {
                            continue;
                        }
                        let (tx, rx) = bounded(channel_capacity);
                        let announced = Arc::new(AtomicU64::new(0));
                        let id = ChannelId {
                            node: n as u32,
                            input: k as u32,
                            from: j as u32,
                            to: i as u32,
                        };
                        if up_local {
                            senders.push(tx.clone());
                            announce.push(announced.clone());
                        } else {
                            remote_inputs.push(RemoteInput {
                                id,
                                tx: tx.clone(),
                                announced: announced.clone(),
                                codec: e.codec,
                            });
                        }
                        drop(tx);
                        if down_local {
                            inputs[dt][i].push(InputChannel {
                                input: e.input,
                                rx,
                                announced,
                                codec: e.codec,
                            });
                        } else {
                            remote_outputs.push(RemoteOutput {
                                id,
                                rx,
                                announce: announced,
                                codec: e.codec,
                            });
                        }
                    }
                    up_outputs.push(TaskOutput {
                        partitioning: partitioning.clone(),
                        senders,
                        announce,
                        next: j,
                    });
                }
            }
        }

        let mut all_metrics = Vec::new();
        let mut tasks = Vec::new();
        for (t, members) in members_of.iter().enumerate() {
            let name = members
                .iter()
                .map(|&m| self.nodes[m].name.as_str())
                .collect::<Vec<_>>()
                .join(" -> ");
            let par = par_of_task(t);
            for (s, (outs, ins)) in std::mem::take(&mut outputs[t])
                .into_iter()
                .zip(std::mem::take(&mut inputs[t]))
                .enumerate()
            {
                if !is_local(s) {
                    continue;
                }
                let mut ms = Vec::new();
                for &m in members {
                    let node = &self.nodes[m];
                    let info = SubtaskInfo {
                        name: node.name.clone(),
                        index: s,
                        parallelism: par,
                        max_parallelism: opts.max_parallelism,
                        side_ports: Arc::new(node.side_ports.clone()),
                        decode_errors: opts.decode_errors,
                        uid: self.uid(m),
                        state_schema: node.state_schema.clone(),
                        restored: opts.restore.as_ref().and_then(|p| {
                            p.for_subtask(&self.uid(m), s, par, opts.max_parallelism)
                        }),
                        state_backend: opts.state_backend.clone(),
                        rocksdb_memory: rocksdb_memory.clone(),
                        allow_unclaimed_state: opts.allow_unclaimed_state,
                        storage: opts.storage.clone(),
                        checkpoint_interval: opts.checkpoint_interval,
                        restart: opts.restart.clone(),
                    };
                    let is_source = matches!(node.kind, NodeKind::Source(_));
                    let op = match &node.kind {
                        NodeKind::Source(f) => MemberOp::Source(f(&info)?),
                        NodeKind::Operator(f) => MemberOp::Op(f(&info)?),
                    };
                    let metrics =
                        Arc::new(OperatorMetrics::new(&node.name, s, is_source, node.is_sink));
                    all_metrics.push(metrics.clone());
                    ms.push(Member {
                        uid: self.uid(m),
                        op,
                        targets: targets[m].clone(),
                        metrics,
                    });
                }
                tasks.push(TaskInstance {
                    name: name.clone(),
                    subtask: s,
                    members: ms,
                    inputs: ins,
                    outputs: outs,
                    in_flight: self.restored_in_flight(members[0], s, par, opts)?,
                });
            }
        }
        Ok(Instantiated {
            tasks,
            metrics: all_metrics,
            remote_outputs,
            remote_inputs,
        })
    }

    /// Subtask `index`'s share of the in-flight records restored for node `node` (a task
    /// head): at the same parallelism, what it read itself; after rescaling, hash-partitioned
    /// records go where their key group now lives and other records to `owner % parallelism`.
    fn restored_in_flight(
        &self,
        node: usize,
        index: usize,
        parallelism: usize,
        opts: &PlanOptions,
    ) -> Result<Vec<(usize, Batch)>> {
        let Some(state) = opts
            .restore
            .as_ref()
            .and_then(|p| p.for_subtask(&self.uid(node), index, parallelism, opts.max_parallelism))
        else {
            return Ok(Vec::new());
        };
        let inputs = &self.nodes[node].inputs;
        let mut out = Vec::new();
        let mut parts = Vec::new();
        for f in &state.in_flight {
            let edge = inputs.iter().find(|e| e.input == f.input as usize);
            let edge = edge.ok_or_else(|| {
                Error::Restore(format!(
                    "in-flight records of operator '{}' are for input {}, which it no longer has",
                    self.uid(node),
                    f.input
                ))
            })?;
            let batch = (edge.codec.decode)(&f.data)?;
            match &edge.partitioning {
                Partitioning::Hash(split) => {
                    split(batch, parallelism, opts.max_parallelism, &mut parts);
                    out.extend(
                        parts
                            .drain(..)
                            .filter(|(to, _)| *to == index)
                            .map(|(_, b)| (f.input as usize, b)),
                    );
                }
                Partitioning::Forward | Partitioning::Rebalance => {
                    if f.owner as usize % parallelism == index {
                        out.push((f.input as usize, batch));
                    }
                }
            }
        }
        Ok(out)
    }
}
