//! The typed DataStream API: build a job graph from sources, transformations and sinks,
//! then `execute` it.
//!
//! ```
//! use weir_engine::api::StreamExecutionEnvironment;
//! use weir_engine::connectors::CollectSink;
//!
//! let env = StreamExecutionEnvironment::new();
//! let (sink, out) = CollectSink::new();
//! env.from_collection(vec![1, 2, 3, 4])
//!     .map(|x| x * 10)
//!     .filter(|x| *x > 10)
//!     .sink_to(sink);
//! env.execute("doc").unwrap();
//! let mut got = out.values();
//! got.sort();
//! assert_eq!(got, vec![20, 30, 40]);
//! ```

mod functions;
mod ops;
mod watermarks;

pub use functions::{
    Collector, Data, KeyedContext, KeyedProcessFunction, OutputTag, ProcessContext,
    ProcessFunction, RuntimeContext, TimeDomain, TimerService,
};

use crate::config::Config;
use crate::connectors::{CollectionSource, PrintSink, Sink, Source};
use crate::error::Result;
use crate::keygroup::Key;
use crate::runtime::exec::{JobHandle, JobResult, spawn};
use crate::runtime::graph::{EdgeSpec, JobGraph, NodeKind, NodeSpec, Partitioning, PlanOptions};
use crate::runtime::{Operator, Rec};
use crate::time::WatermarkStrategy;
use crate::window::{WindowSpec, WindowedStream};
use ops::{BatchFnOp, IdentityOp, KeyFn, ProcessOp, SinkOp, SourceOp, WatermarkOp};
use std::cell::RefCell;
use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::Arc;

pub(crate) use ops::{
    KeyFn as KeyExtractor, KeyWriter, KeyedProcessOp, key_partitioner_with, note_written_key,
};

struct EnvInner {
    graph: JobGraph,
    config: Config,
    default_parallelism: usize,
}

/// Builds and runs jobs — Flink's `StreamExecutionEnvironment`.
#[derive(Clone)]
pub struct StreamExecutionEnvironment {
    inner: Rc<RefCell<EnvInner>>,
}

impl Default for StreamExecutionEnvironment {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for StreamExecutionEnvironment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamExecutionEnvironment")
            .finish_non_exhaustive()
    }
}

impl StreamExecutionEnvironment {
    /// An environment with default configuration (parallelism 1).
    pub fn new() -> Self {
        Self::with_config(Config::default())
    }

    /// An environment with the given configuration.
    pub fn with_config(config: Config) -> Self {
        let p = config.parallelism().unwrap_or(1);
        StreamExecutionEnvironment {
            inner: Rc::new(RefCell::new(EnvInner {
                graph: JobGraph::default(),
                config,
                default_parallelism: p,
            })),
        }
    }

    /// Parallelism of operators created after this call that don't set their own.
    pub fn set_parallelism(&self, p: usize) -> &Self {
        self.inner.borrow_mut().default_parallelism = p;
        self
    }

    /// Current default parallelism.
    pub fn parallelism(&self) -> usize {
        self.inner.borrow().default_parallelism
    }

    /// The configuration.
    pub fn config(&self) -> Config {
        self.inner.borrow().config.clone()
    }

    fn add_node(
        &self,
        name: &str,
        kind: NodeKind,
        inputs: Vec<EdgeSpec>,
        parallelism: Option<usize>,
    ) -> usize {
        let mut inner = self.inner.borrow_mut();
        let parallelism = parallelism.unwrap_or(inner.default_parallelism);
        let mut inputs = inputs;
        for (k, e) in inputs.iter_mut().enumerate() {
            e.input = k;
        }
        inner.graph.nodes.push(NodeSpec {
            name: name.to_string(),
            uid: None,
            state_schema: None,
            parallelism,
            kind,
            inputs,
            side_ports: Vec::new(),
            is_sink: false,
            chainable: true,
            union: false,
        });
        inner.graph.nodes.len() - 1
    }

    /// Adds a source. Pass `WatermarkStrategy::no_watermarks()`-like strategies via
    /// [`DataStream::assign_timestamps_and_watermarks`], or give one here.
    pub fn from_source<T: Data, S: Source<T>>(
        &self,
        source: S,
        strategy: Option<WatermarkStrategy<T>>,
        name: &str,
    ) -> DataStream<T> {
        let source = Arc::new(source);
        let generate = strategy.clone();
        let factory: crate::runtime::graph::SourceFactory = Arc::new(move |info| {
            Ok(
                Box::new(SourceOp::new(source.create_reader(info)?, generate.clone()))
                    as Box<dyn crate::runtime::SourceOperator>,
            )
        });
        let node = self.add_node(name, NodeKind::Source(factory), Vec::new(), None);
        let s = DataStream::new(self.clone(), node, 0);
        match strategy {
            // The source generates the watermarks (per split). The chained node where they
            // used to be generated stays, passing them on: it keeps the plan's shape, so the
            // derived uids of the operators after it, and the savepoints of jobs that set no
            // uids, stay valid.
            Some(_) => {
                let mut with_wm: DataStream<T> =
                    s.add_operator("Timestamps/Watermarks", Partitioning::Forward, |_| {
                        Ok(Box::new(IdentityOp) as Box<dyn Operator>)
                    });
                with_wm.source = Some(node);
                with_wm
            }
            None => s,
        }
    }

    /// A bounded source over in-memory records, split across subtasks by position.
    pub fn from_collection<T: Data + Sync>(&self, items: Vec<T>) -> DataStream<T> {
        self.from_source(CollectionSource::new(items), None, "Collection Source")
    }

    fn plan_options(&self) -> Result<PlanOptions> {
        let c = &self.inner.borrow().config;
        let checkpointing = c.checkpointing()?;
        Ok(PlanOptions {
            max_parallelism: c.max_parallelism()?,
            decode_errors: c.decode_error_policy()?,
            channel_capacity: c.channel_capacity()?,
            chaining: c.chaining()?,
            restore: None,
            state_backend: c.state_backend()?,
            allow_unclaimed_state: c.allow_unclaimed_state(),
            memory: None,
            checkpoint_interval: checkpointing.interval,
            restart: checkpointing.restart,
            storage: Arc::new(checkpointing.storage),
        })
    }

    /// The job's tasks (chained operators) and the edges between them, as the REST API and
    /// the dashboard show them.
    pub fn topology(&self) -> Result<crate::runtime::JobTopology> {
        Ok(self
            .inner
            .borrow()
            .graph
            .topology(self.plan_options()?.chaining))
    }

    /// The physical plan: one line per operator with its parallelism and how it is fed.
    pub fn explain(&self) -> Result<String> {
        Ok(self.inner.borrow().graph.explain(&self.plan_options()?))
    }

    /// Whether this job can restore the checkpoint or savepoint at `path` (read with the
    /// configured `s3.*` storage settings), decided without running it: the restore's own
    /// rules ([`crate::checkpoint::Finding`]) applied to this job's plan, with its
    /// `pipeline.max-parallelism` and `execution.savepoint.ignore-unclaimed-state`. An
    /// invalid job or an unreadable checkpoint is an error. What `weir check` runs.
    pub fn check_restore(&self, path: &str) -> Result<crate::checkpoint::RestoreCheck> {
        let inner = self.inner.borrow();
        let max_parallelism = inner.config.max_parallelism()?;
        inner.graph.validate(max_parallelism)?;
        let storage = inner.config.checkpointing()?.storage;
        let plan = crate::checkpoint::RestorePlan::open(path, &storage)?;
        let operators: Vec<crate::checkpoint::JobOperator> = (0..inner.graph.nodes.len())
            .map(|i| {
                let n = &inner.graph.nodes[i];
                crate::checkpoint::JobOperator {
                    uid: inner.graph.uid(i),
                    name: n.name.clone(),
                    parallelism: n.parallelism,
                    state_schema: n.state_schema.clone(),
                }
            })
            .collect();
        let findings = plan.check(
            &operators,
            max_parallelism,
            inner.config.allow_unclaimed_state(),
        );
        Ok(crate::checkpoint::RestoreCheck::new(
            &plan, operators, findings,
        ))
    }

    /// Starts the job on local threads and returns at once.
    pub fn execute_async(&self, name: &str) -> Result<JobHandle> {
        let mut opts = self.plan_options()?;
        let batch = self.inner.borrow().config.batch_size()?;
        let checkpointing = self.inner.borrow().config.checkpointing()?;
        let graph = self.inner.borrow().graph.clone();
        // This process is the one TaskManager: its slots are the job's widest parallelism.
        opts.memory = self
            .inner
            .borrow()
            .config
            .memory()?
            .plan(graph.slots_needed())?;
        if let Some(b) = &opts.memory {
            b.log();
        }
        spawn(name, &graph, &opts, batch, checkpointing, None)
    }

    /// The job as built so far, detached from this environment: what a TaskManager runs
    /// and a JobManager schedules.
    pub fn prepare(&self) -> Result<crate::runtime::cluster::PreparedJob> {
        let inner = self.inner.borrow();
        inner.graph.validate(inner.config.max_parallelism()?)?;
        Ok(crate::runtime::cluster::PreparedJob {
            opts: self.plan_options()?,
            batch_size: inner.config.batch_size()?,
            checkpointing: inner.config.checkpointing()?,
            graph: inner.graph.clone(),
        })
    }

    /// Starts the job as the JobManager of a cluster and returns at once: TaskManagers
    /// register at `cluster.rpc_*`, and the job runs once they offer enough slots.
    pub fn execute_on_cluster(
        &self,
        name: &str,
        spec: crate::runtime::cluster::JobSpec,
        cluster: crate::runtime::cluster::ClusterConfig,
    ) -> Result<JobHandle> {
        let job = self.prepare()?;
        crate::runtime::cluster::spawn_jobmanager(name, job, spec, cluster)
    }

    /// Runs the job until every source is exhausted and every window and timer has fired.
    pub fn execute(&self, name: &str) -> Result<JobResult> {
        self.execute_async(name)?.wait()
    }
}

/// A stream of `T` records.
pub struct DataStream<T> {
    env: StreamExecutionEnvironment,
    node: usize,
    port: usize,
    /// For a source with a watermark strategy: the source node, which `uid`, `name` and
    /// `set_parallelism` address (the strategy is part of the source, as in Flink).
    source: Option<usize>,
    _p: PhantomData<fn() -> T>,
}

impl<T> Clone for DataStream<T> {
    fn clone(&self) -> Self {
        DataStream {
            env: self.env.clone(),
            node: self.node,
            port: self.port,
            source: self.source,
            _p: PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for DataStream<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DataStream(node {}, port {})", self.node, self.port)
    }
}

impl<T: Data> DataStream<T> {
    fn new(env: StreamExecutionEnvironment, node: usize, port: usize) -> Self {
        DataStream {
            env,
            node,
            port,
            source: None,
            _p: PhantomData,
        }
    }

    fn edge(&self, partitioning: Partitioning) -> EdgeSpec {
        EdgeSpec {
            from: self.node,
            port: self.port,
            partitioning,
            codec: crate::runtime::BatchCodec::of::<T>(),
            input: 0,
        }
    }

    /// Adds an operator node fed by this stream.
    pub(crate) fn add_operator<U: Data>(
        &self,
        name: &str,
        partitioning: Partitioning,
        factory: impl Fn(&crate::runtime::SubtaskInfo) -> Result<Box<dyn Operator>>
        + Send
        + Sync
        + 'static,
    ) -> DataStream<U> {
        let node = self.env.add_node(
            name,
            NodeKind::Operator(Arc::new(factory)),
            vec![self.edge(partitioning)],
            None,
        );
        DataStream::new(self.env.clone(), node, 0)
    }

    fn batch_fn<U: Data>(&self, name: &str, f: ops::BatchFn<T, U>) -> DataStream<U> {
        self.add_operator(name, Partitioning::Forward, move |_| {
            Ok(Box::new(BatchFnOp::new(f.clone())) as Box<dyn Operator>)
        })
    }

    fn with_node(&self, f: impl FnOnce(&mut NodeSpec)) {
        f(&mut self.env.inner.borrow_mut().graph.nodes[self.node]);
    }

    fn with_source_node(&self, f: impl FnOnce(&mut NodeSpec)) {
        let node = self.source.unwrap_or(self.node);
        f(&mut self.env.inner.borrow_mut().graph.nodes[node]);
    }

    /// Sets the parallelism of the operator that produces this stream.
    pub fn set_parallelism(self, p: usize) -> Self {
        self.with_node(|n| n.parallelism = p);
        self.with_source_node(|n| n.parallelism = p);
        self
    }

    /// Names the operator (shown in progress, metrics and errors).
    pub fn name(self, name: &str) -> Self {
        self.with_source_node(|n| n.name = name.to_string());
        self
    }

    /// Sets the operator's stable id, which identifies its state in savepoints.
    pub fn uid(self, uid: &str) -> Self {
        self.with_source_node(|n| n.uid = Some(uid.to_string()));
        self
    }

    /// Declares what the operator's keyed state holds when that depends on more than the
    /// operator's code (for SQL: the aggregate calls, the column types of buffered rows).
    /// Every state the operator registers is named with it, so a savepoint written under
    /// another schema is not read as this one: the restore fails naming the operator and
    /// the state, as for any state the operator no longer has.
    pub fn state_schema(self, schema: &str) -> Self {
        self.with_source_node(|n| n.state_schema = Some(schema.to_string()));
        self
    }

    /// Starts a new chain at this operator: it runs in its own task.
    pub fn start_new_chain(self) -> Self {
        self.with_node(|n| n.chainable = false);
        self
    }

    /// Transforms each record.
    pub fn map<U: Data>(&self, f: impl Fn(T) -> U + Send + Sync + 'static) -> DataStream<U> {
        self.batch_fn(
            "Map",
            Arc::new(move |recs| {
                recs.into_iter()
                    .map(|r| Rec {
                        ts: r.ts,
                        value: f(r.value),
                    })
                    .collect()
            }),
        )
    }

    /// Keeps the records for which `f` is true.
    pub fn filter(&self, f: impl Fn(&T) -> bool + Send + Sync + 'static) -> DataStream<T> {
        self.batch_fn(
            "Filter",
            Arc::new(move |mut recs| {
                recs.retain(|r| f(&r.value));
                recs
            }),
        )
    }

    /// Turns each record into zero or more records.
    pub fn flat_map<U: Data, I: IntoIterator<Item = U>>(
        &self,
        f: impl Fn(T) -> I + Send + Sync + 'static,
    ) -> DataStream<U> {
        self.batch_fn(
            "FlatMap",
            Arc::new(move |recs| {
                let mut out = Vec::with_capacity(recs.len());
                for r in recs {
                    out.extend(f(r.value).into_iter().map(|value| Rec { ts: r.ts, value }));
                }
                out
            }),
        )
    }

    /// Transforms whole batches with a function that may fail (an error fails the task).
    /// For layers that evaluate many records at once, such as SQL over Arrow batches; the
    /// function sees each record's timestamp and decides the output records' timestamps.
    pub fn transform_batches<U: Data>(
        &self,
        name: &str,
        f: impl Fn(Vec<Rec<T>>) -> Result<Vec<Rec<U>>> + Send + Sync + 'static,
    ) -> DataStream<U> {
        let f: ops::TryBatchFn<T, U> = Arc::new(f);
        self.add_operator(name, Partitioning::Forward, move |_| {
            Ok(Box::new(ops::TryBatchFnOp { f: f.clone() }) as Box<dyn Operator>)
        })
    }

    /// Assigns event timestamps and generates watermarks; replaces upstream watermarks.
    pub fn assign_timestamps_and_watermarks(
        &self,
        strategy: WatermarkStrategy<T>,
    ) -> DataStream<T> {
        self.add_operator("Timestamps/Watermarks", Partitioning::Forward, move |_| {
            Ok(Box::new(WatermarkOp::new(strategy.clone())) as Box<dyn Operator>)
        })
    }

    /// Redistributes batches round-robin across the next operator's subtasks.
    pub fn rebalance(&self) -> DataStream<T> {
        self.add_operator("Rebalance", Partitioning::Rebalance, |_| {
            Ok(Box::new(IdentityOp) as Box<dyn Operator>)
        })
    }

    /// Merges streams of the same type. A union read only through keyed exchanges (`key_by`,
    /// joins) runs no task of its own: its inputs feed the exchange directly.
    pub fn union(&self, others: &[DataStream<T>]) -> DataStream<T> {
        let mut inputs = vec![self.edge(Partitioning::Forward)];
        inputs.extend(others.iter().map(|o| o.edge(Partitioning::Forward)));
        let f: crate::runtime::graph::OperatorFactory =
            Arc::new(|_| Ok(Box::new(IdentityOp) as Box<dyn Operator>));
        let node = self
            .env
            .add_node("Union", NodeKind::Operator(f), inputs, None);
        let union = DataStream::new(self.env.clone(), node, 0);
        union.with_node(|n| n.union = true);
        union
    }

    /// Partitions the stream by key: records with equal keys go to the same subtask and
    /// share keyed state.
    pub fn key_by<K: Key>(&self, f: impl Fn(&T) -> K + Send + Sync + 'static) -> KeyedStream<K, T> {
        KeyedStream {
            stream: self.clone(),
            key_fn: Arc::new(f),
            key_writer: None,
        }
    }

    /// Runs a [`ProcessFunction`] on every record.
    pub fn process<F: ProcessFunction<In = T>>(&self, f: F) -> DataStream<F::Out> {
        self.add_operator("Process", Partitioning::Forward, move |info| {
            Ok(Box::new(ProcessOp::new(f.clone(), info.clone())) as Box<dyn Operator>)
        })
    }

    /// The records this stream's operator emitted to side output `tag`.
    pub fn get_side_output<U: Data>(&self, tag: &OutputTag<U>) -> DataStream<U> {
        let mut port = 0;
        self.with_node(|n| {
            port = match n.side_ports.iter().position(|t| *t == tag.id) {
                Some(i) => i + 1,
                None => {
                    n.side_ports.push(tag.id.clone());
                    n.side_ports.len()
                }
            };
        });
        DataStream::new(self.env.clone(), self.node, port)
    }

    /// Writes the stream to `sink`.
    pub fn sink_to<S: Sink<T>>(&self, sink: S) -> DataStream<T> {
        let sink = Arc::new(sink);
        let s: DataStream<T> = self.add_operator("Sink", Partitioning::Forward, move |info| {
            Ok(Box::new(SinkOp::new(sink.create_writer(info)?)) as Box<dyn Operator>)
        });
        s.with_node(|n| n.is_sink = true);
        s
    }

    /// Prints every record (`Debug` format) to stdout, prefixed by the subtask when parallel.
    pub fn print(&self) -> DataStream<T>
    where
        T: std::fmt::Debug,
    {
        self.sink_to(PrintSink::debug()).name("Print")
    }
}

/// A stream partitioned by key (see [`DataStream::key_by`]).
pub struct KeyedStream<K, T> {
    pub(crate) stream: DataStream<T>,
    pub(crate) key_fn: KeyFn<K, T>,
    pub(crate) key_writer: Option<KeyWriter<T>>,
}

impl<K, T> std::fmt::Debug for KeyedStream<K, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyedStream({:?})", self.stream)
    }
}

impl<K: Key, T: Data> KeyedStream<K, T> {
    /// The exchange into a keyed operator: by key group, through the key writer when the
    /// stream has one.
    pub(crate) fn partitioning(&self) -> Partitioning {
        Partitioning::Hash(key_partitioner_with(
            self.key_fn.clone(),
            self.key_writer.clone(),
        ))
    }

    pub(crate) fn add_keyed_operator<U: Data>(
        &self,
        name: &str,
        factory: impl Fn(&crate::runtime::SubtaskInfo, KeyFn<K, T>) -> Result<Box<dyn Operator>>
        + Send
        + Sync
        + 'static,
    ) -> DataStream<U> {
        let key_fn = self.key_fn.clone();
        self.stream
            .add_operator(name, self.partitioning(), move |info| {
                factory(info, key_fn.clone())
            })
    }

    /// Runs a [`KeyedProcessFunction`] with keyed state and timers.
    pub fn process<F: KeyedProcessFunction<Key = K, In = T>>(&self, f: F) -> DataStream<F::Out> {
        let key_writer = self.key_writer.clone();
        self.add_keyed_operator("KeyedProcess", move |info, key_fn| {
            Ok(Box::new(
                KeyedProcessOp::new(f.clone(), key_fn, info.clone())
                    .with_key_writer(key_writer.clone()),
            ) as Box<dyn Operator>)
        })
    }

    /// A rolling reduce: emits the running reduction of each key after every record.
    pub fn reduce(&self, f: impl Fn(&T, &T) -> T + Send + Sync + 'static) -> DataStream<T>
    where
        T: crate::state::StateValue,
    {
        self.process(RollingReduce {
            f: Arc::new(f),
            state: Default::default(),
            _k: PhantomData,
        })
        .name("Reduce")
    }

    /// Gives window operators and [`process`](Self::process) a shorter way to a record's
    /// serialized key: `f` replaces the buffer's contents with exactly the bytes
    /// [`serialize_key`](crate::keygroup::serialize_key) gives for the key `key_by`'s function
    /// returns (debug builds check every record), without building the key. A window
    /// operator then builds a key only to emit a window's result; `process` once per run of
    /// records with the same key.
    pub fn with_key_bytes(mut self, f: impl Fn(&T, &mut Vec<u8>) + Send + Sync + 'static) -> Self {
        self.key_writer = Some(Arc::new(f));
        self
    }

    /// Groups each key's records into windows.
    pub fn window(&self, spec: WindowSpec) -> WindowedStream<K, T> {
        WindowedStream::new(self.clone(), spec)
    }
}

impl<K, T> Clone for KeyedStream<K, T> {
    fn clone(&self) -> Self {
        KeyedStream {
            stream: self.stream.clone(),
            key_fn: self.key_fn.clone(),
            key_writer: self.key_writer.clone(),
        }
    }
}

type ReduceFn<T> = Arc<dyn Fn(&T, &T) -> T + Send + Sync>;

struct RollingReduce<K, T> {
    f: ReduceFn<T>,
    state: crate::state::ValueState<T>,
    _k: PhantomData<fn() -> K>,
}

impl<K, T> Clone for RollingReduce<K, T> {
    fn clone(&self) -> Self {
        RollingReduce {
            f: self.f.clone(),
            state: self.state.clone(),
            _k: PhantomData,
        }
    }
}

impl<K: Key, T: crate::state::StateValue> KeyedProcessFunction for RollingReduce<K, T> {
    type Key = K;
    type In = T;
    type Out = T;
    fn open(&mut self, ctx: &mut RuntimeContext<'_>) -> Result<()> {
        self.state = ctx.value_state(crate::state::StateDescriptor::new("reduce"));
        Ok(())
    }
    fn process_element(
        &mut self,
        v: T,
        ctx: &mut KeyedContext<'_, K>,
        out: &mut Collector<T>,
    ) -> Result<()> {
        let next = match self.state.value(ctx) {
            Some(cur) => (self.f)(&cur, &v),
            None => v,
        };
        self.state.update(ctx, next.clone());
        out.collect(next);
        Ok(())
    }
}
