//! The Kafka sink and its delivery guarantees.
//!
//! - `none`: records are handed to librdkafka and never waited for.
//! - `at-least-once`: every checkpoint barrier waits until all records written before it
//!   are acknowledged, so a restore replays at most what the checkpoint does not cover.
//! - `exactly-once`: Flink's two-phase commit over Kafka transactions. Each subtask writes
//!   one transaction per checkpoint; at the barrier it is flushed and left open
//!   (pre-committed), its transactional id, producer id and epoch go into the checkpoint, and
//!   writing continues in a new transaction; when the checkpoint completes every
//!   pre-committed transaction up to it is committed (a savepoint that is not notified
//!   leaves its transaction pending until the next completed checkpoint). Transactional ids
//!   are `<prefix>-<operator uid>-<subtask>-<slot>`, from a bounded pool of slots reused
//!   once their transaction committed. Each transaction gets a fresh librdkafka producer
//!   (whose initialization bumps the id's epoch), so no two transactions share a producer
//!   id and epoch and a restore can never commit a later transaction by mistake.
//!
//! Recovery (exactly-once): the restored checkpoint lists, as union state, the pre-committed
//! transactions of every subtask that wrote it. The subtask that now owns an old subtask's
//! ids (`old % parallelism`) commits its transactions with `EndTxn` ([`crate::protocol`]),
//! then fences each of its pool ids (`InitProducerId`), which aborts whatever a failed run
//! left open — in this order, so a fence never aborts a transaction a completed checkpoint
//! covers.

use crate::protocol::{Connection, Login, code};
use crate::{ClientOptions, KafkaError, client_error};
use rdkafka::ClientContext;
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext, PurgeConfig};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use weir_engine::connectors::{Sink, SinkWriter};
use weir_engine::runtime::{Rec, SubtaskInfo};
use weir_engine::time::NO_TIMESTAMP;

/// What the sink promises about each record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeliveryGuarantee {
    /// Fire and forget: records in librdkafka's buffers when a task fails are lost.
    None,
    /// No loss; records between the last checkpoint and a failure are written again.
    #[default]
    AtLeastOnce,
    /// Kafka transactions committed with checkpoints: a `read_committed` consumer sees each
    /// record once. Needs a transactional id prefix.
    ExactlyOnce,
}

/// A record to write, made from a stream element by the record serializer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProducedRecord {
    /// The topic; `None`: the sink's fixed topic.
    pub topic: Option<String>,
    /// The key.
    pub key: Option<Vec<u8>>,
    /// The value (`None`: a tombstone).
    pub value: Option<Vec<u8>>,
    /// The timestamp (epoch ms); `None`: the element's event timestamp, if it has one.
    pub timestamp: Option<i64>,
}

type PartitionFn = Arc<dyn Fn(&ProducedRecord, i32) -> i32 + Send + Sync>;

/// Which partition a record goes to.
#[derive(Clone, Default)]
pub enum Partitioner {
    /// Kafka's default: the murmur2 hash of the key as Java clients do, keyless records
    /// spread randomly.
    #[default]
    Default,
    /// Every sink subtask writes to one partition, `subtask % partitions` (Flink's `fixed`).
    Fixed,
    /// `f(record, partition count)` picks the partition.
    Custom(PartitionFn),
}

impl std::fmt::Debug for Partitioner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Partitioner::Default => "Default",
            Partitioner::Fixed => "Fixed",
            Partitioner::Custom(_) => "Custom",
        })
    }
}

type KeyFn<T> = Arc<dyn Fn(&T) -> Option<Vec<u8>> + Send + Sync>;
type ValueFn<T> = Arc<dyn Fn(&T) -> Vec<u8> + Send + Sync>;
type SerializeFn<T> = Arc<dyn Fn(&T) -> ProducedRecord + Send + Sync>;

struct SinkConfig<T> {
    client: ClientOptions,
    topic: Option<String>,
    serializer: SerializeFn<T>,
    partitioner: Partitioner,
    guarantee: DeliveryGuarantee,
    prefix: Option<String>,
    pool_size: u32,
}

/// Writes records to Kafka; build it with [`KafkaSink::builder`].
pub struct KafkaSink<T> {
    cfg: Arc<SinkConfig<T>>,
}

/// Builds a [`KafkaSink`] (options named as in Flink's `KafkaSinkBuilder`).
pub struct KafkaSinkBuilder<T> {
    client: ClientOptions,
    topic: Option<String>,
    key: Option<KeyFn<T>>,
    value: Option<ValueFn<T>>,
    record: Option<SerializeFn<T>>,
    partitioner: Partitioner,
    guarantee: DeliveryGuarantee,
    prefix: Option<String>,
    pool_size: u32,
}

impl<T> KafkaSink<T> {
    /// A builder: at-least-once, Kafka's default partitioner, a pool of 5 transactional ids.
    pub fn builder() -> KafkaSinkBuilder<T> {
        KafkaSinkBuilder {
            client: ClientOptions::default(),
            topic: None,
            key: None,
            value: None,
            record: None,
            partitioner: Partitioner::Default,
            guarantee: DeliveryGuarantee::AtLeastOnce,
            prefix: None,
            pool_size: 5,
        }
    }
}

impl<T: 'static> KafkaSinkBuilder<T> {
    /// `bootstrap.servers`: `host:port[,host:port…]`.
    pub fn bootstrap_servers(mut self, servers: impl Into<String>) -> Self {
        self.client.servers = servers.into();
        self
    }

    /// The topic every record goes to (unless the record serializer names one).
    pub fn topic(mut self, topic: impl Into<String>) -> Self {
        self.topic = Some(topic.into());
        self
    }

    /// Serializes each element's key (`None`: no key).
    pub fn key_serializer(
        mut self,
        f: impl Fn(&T) -> Option<Vec<u8>> + Send + Sync + 'static,
    ) -> Self {
        self.key = Some(Arc::new(f));
        self
    }

    /// Serializes each element's value.
    pub fn value_serializer(mut self, f: impl Fn(&T) -> Vec<u8> + Send + Sync + 'static) -> Self {
        self.value = Some(Arc::new(f));
        self
    }

    /// Writes each element's value as JSON.
    pub fn json_values(self) -> Self
    where
        T: Serialize,
    {
        self.value_serializer(|v| serde_json::to_vec(v).expect("serializable values encode"))
    }

    /// Makes the whole record — topic, key, value, timestamp — from an element; replaces
    /// the key and value serializers.
    pub fn record_serializer(
        mut self,
        f: impl Fn(&T) -> ProducedRecord + Send + Sync + 'static,
    ) -> Self {
        self.record = Some(Arc::new(f));
        self
    }

    /// Which partition records go to (default: Kafka's, by key).
    pub fn partitioner(mut self, p: Partitioner) -> Self {
        self.partitioner = p;
        self
    }

    /// `none`, `at-least-once` (default) or `exactly-once`.
    pub fn delivery_guarantee(mut self, g: DeliveryGuarantee) -> Self {
        self.guarantee = g;
        self
    }

    /// The prefix of the transactional ids (exactly-once). It must be unique among the
    /// applications writing to the same cluster: a run fences and aborts whatever
    /// transactions a previous run with this prefix left open.
    pub fn transactional_id_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Some(prefix.into());
        self
    }

    /// How many transactional ids each subtask cycles through (default 5): one per
    /// transaction pre-committed and not yet committed, plus the one being written.
    pub fn transaction_pool_size(mut self, n: u32) -> Self {
        self.pool_size = n;
        self
    }

    /// A librdkafka producer property, passed through (e.g. `transaction.timeout.ms`,
    /// `compression.type`, `linger.ms`).
    pub fn property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.client.properties.push((key.into(), value.into()));
        self
    }

    /// Checks the options.
    pub fn build(self) -> Result<KafkaSink<T>, KafkaError> {
        self.client.check()?;
        let serializer: SerializeFn<T> = match (self.record, self.value) {
            (Some(r), _) => r,
            (None, Some(value)) => {
                let key = self.key;
                Arc::new(move |t| ProducedRecord {
                    topic: None,
                    key: key.as_ref().and_then(|k| k(t)),
                    value: Some(value(t)),
                    timestamp: None,
                })
            }
            (None, None) => {
                return Err(KafkaError::Missing {
                    what: "the serializer",
                    call: ".value_serializer(…), .json_values() or .record_serializer(…)",
                });
            }
        };
        if self.guarantee == DeliveryGuarantee::ExactlyOnce {
            match &self.prefix {
                None => {
                    return Err(KafkaError::Missing {
                        what: "the transactional id prefix (exactly-once needs one)",
                        call: ".transactional_id_prefix(…)",
                    });
                }
                Some(p) if p.is_empty() => {
                    return Err(KafkaError::Option {
                        key: "transactional id prefix".into(),
                        value: p.clone(),
                        reason: "must not be empty".into(),
                    });
                }
                _ => {}
            }
            if self.pool_size < 2 {
                return Err(KafkaError::Option {
                    key: "transaction pool size".into(),
                    value: self.pool_size.to_string(),
                    reason: "needs at least 2: one transaction waits for its checkpoint while \
                             the next is written"
                        .into(),
                });
            }
        }
        if self.client.get("transactional.id").is_some() {
            return Err(KafkaError::Option {
                key: "transactional.id".into(),
                value: self
                    .client
                    .get("transactional.id")
                    .unwrap_or_default()
                    .into(),
                reason: "the sink derives transactional ids; set .transactional_id_prefix(…) \
                         and .delivery_guarantee(DeliveryGuarantee::ExactlyOnce)"
                    .into(),
            });
        }
        Ok(KafkaSink {
            cfg: Arc::new(SinkConfig {
                client: self.client,
                topic: self.topic,
                serializer,
                partitioner: self.partitioner,
                guarantee: self.guarantee,
                prefix: self.prefix,
                pool_size: self.pool_size,
            }),
        })
    }
}

/// What a sink subtask stores in a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum SinkState {
    /// One per subtask and checkpoint: who wrote it, so a restore at a lower parallelism
    /// knows which ids of vanished subtasks to fence.
    Writer {
        subtask: u32,
        parallelism: u32,
        pool_size: u32,
    },
    /// A pre-committed transaction.
    Txn(PendingTxn),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct PendingTxn {
    checkpoint: u64,
    subtask: u32,
    transactional_id: String,
    producer_id: i64,
    epoch: i16,
}

/// Callbacks of one producer: the first delivery failure, the producer id and epoch
/// (from librdkafka's statistics, its only public report of them), and whether a broker
/// connection broke.
#[derive(Default)]
struct SinkContext {
    failure: Mutex<Option<(String, String)>>,
    eos: Mutex<Option<(i64, i16)>>,
    /// A connection to a broker failed since the producer was created (each transaction
    /// has its own producer, so: since its transaction began).
    connection_lost: std::sync::atomic::AtomicBool,
    /// The brokers refused the producer's credentials.
    auth: crate::AuthWatch,
}

#[derive(Deserialize)]
struct Stats {
    eos: Option<EosStats>,
}

#[derive(Deserialize)]
struct EosStats {
    idemp_state: String,
    producer_id: i64,
    producer_epoch: i64,
}

impl ClientContext for SinkContext {
    /// Served by the producer's polls (each check polls first): a broker connection that
    /// closes (facility `FAIL`, at the info level) is noticed here even while the producer
    /// is idle, which librdkafka reports as an error only when it has requests in flight.
    /// Idle producers reconnect only to send, so the sink learns of the loss before it
    /// sends into a transaction a restarted broker no longer knows.
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        if fac == "FAIL" && disconnected(log_message) {
            self.connection_lost
                .store(true, std::sync::atomic::Ordering::SeqCst);
        }
        self.auth.observe(fac, log_message);
        crate::log_librdkafka(level, fac, log_message);
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        use rdkafka::types::RDKafkaErrorCode::{AllBrokersDown, BrokerTransportFailure};
        if matches!(
            error.rdkafka_error_code(),
            Some(BrokerTransportFailure | AllBrokersDown)
        ) && disconnected(reason)
        {
            self.connection_lost
                .store(true, std::sync::atomic::Ordering::SeqCst);
        }
        tracing::warn!("librdkafka: {error}: {reason}");
    }

    fn stats_raw(&self, statistics: &[u8]) {
        if let Ok(Stats { eos: Some(e) }) = serde_json::from_slice::<Stats>(statistics)
            && e.idemp_state == "Assigned"
            && e.producer_id >= 0
        {
            *self.eos.lock().expect("not poisoned") =
                Some((e.producer_id, e.producer_epoch as i16));
        }
    }
}

impl ProducerContext for SinkContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, m)) = result {
            let mut f = self.failure.lock().expect("not poisoned");
            if f.is_none() {
                use rdkafka::message::Message;
                *f = Some((m.topic().to_string(), e.to_string()));
            }
        }
    }
}

/// Whether librdkafka's message reports a connection that was up and broke ("…:
/// Disconnected (after 1234ms in state UP)"), not a broker that could not be reached (one of
/// several bootstrap servers being down must not fail every transaction).
fn disconnected(message: &str) -> bool {
    message.contains("Disconnected")
}

type KProducer = BaseProducer<SinkContext>;

/// An open or pre-committed transaction and the producer that writes it.
struct Txn {
    slot: u32,
    transactional_id: String,
    producer: KProducer,
    checkpoint: u64,
    ids: (i64, i16),
}

struct KafkaWriter<T> {
    cfg: Arc<SinkConfig<T>>,
    name: String,
    subtask: usize,
    parallelism: usize,
    uid: String,
    /// `none` and `at-least-once`: the one producer.
    producer: Option<KProducer>,
    /// `exactly-once`: the transaction being written.
    open: Option<Txn>,
    /// `exactly-once`: pre-committed transactions, oldest first.
    pending: Vec<Txn>,
    partitions: BTreeMap<String, i32>,
    timeout: Duration,
}

/// How long one step of flushing a transaction waits before the connections are checked.
const FLUSH_SLICE: Duration = Duration::from_millis(20);

/// librdkafka's default `transaction.timeout.ms`.
const DEFAULT_TRANSACTION_TIMEOUT_MS: u64 = 60_000;

fn transactional_id(prefix: &str, uid: &str, subtask: u32, slot: u32) -> String {
    format!("{prefix}-{uid}-{subtask}-{slot}")
}

impl<T: Send + 'static> Sink<T> for KafkaSink<T> {
    fn create_writer(&self, info: &SubtaskInfo) -> weir_engine::Result<Box<dyn SinkWriter<T>>> {
        let cfg = self.cfg.clone();
        let timeout = cfg.client.connect_timeout();
        let mut w = KafkaWriter {
            name: info.name.clone(),
            subtask: info.index,
            parallelism: info.parallelism,
            uid: info.uid.clone(),
            producer: None,
            open: None,
            pending: Vec::new(),
            partitions: BTreeMap::new(),
            timeout,
            cfg,
        };
        if w.cfg.guarantee == DeliveryGuarantee::ExactlyOnce {
            w.check_transaction_timeout(info)?;
            w.recover(info)?;
        } else {
            w.producer = Some(w.create_producer(None)?);
        }
        Ok(Box::new(w))
    }
}

impl<T> KafkaWriter<T> {
    fn transaction_timeout_ms(&self) -> Result<u64, KafkaError> {
        match self.cfg.client.get("transaction.timeout.ms") {
            None => Ok(DEFAULT_TRANSACTION_TIMEOUT_MS),
            Some(v) => v.parse().map_err(|_| KafkaError::Option {
                key: "transaction.timeout.ms".into(),
                value: v.into(),
                reason: "not a number of milliseconds".into(),
            }),
        }
    }

    /// A transaction must outlive a checkpoint interval plus a restart, or the broker may
    /// abort one that a completed checkpoint covers before the restored job commits it.
    fn check_transaction_timeout(&self, info: &SubtaskInfo) -> Result<(), KafkaError> {
        let Some(interval) = info.checkpoint_interval else {
            return Ok(());
        };
        let timeout_ms = self.transaction_timeout_ms()?;
        let interval_ms = interval.as_millis() as u64;
        let restart_ms = info
            .restart
            .longest_delay()
            .map_or(0, |d| d.as_millis() as u64);
        if timeout_ms <= interval_ms + restart_ms {
            return Err(KafkaError::TransactionTimeout {
                timeout_ms,
                interval_ms,
                restart_ms,
            });
        }
        Ok(())
    }

    fn create_producer(&self, transactional_id: Option<&str>) -> Result<KProducer, KafkaError> {
        let mut defaults = vec![
            // Keys land on the partitions Java clients (and Flink) pick.
            ("partitioner", "murmur2_random"),
        ];
        let timeout;
        if let Some(id) = transactional_id {
            defaults.push(("transactional.id", id));
            defaults.push(("statistics.interval.ms", "100"));
            timeout = self.transaction_timeout_ms()?.to_string();
            defaults.push(("transaction.timeout.ms", timeout.as_str()));
        } else if self.cfg.guarantee == DeliveryGuarantee::AtLeastOnce {
            defaults.push(("acks", "all"));
        }
        let mut config = self.cfg.client.config(&defaults);
        if transactional_id.is_some() {
            // Connection losses are logged at the info level (see `SinkContext::log`).
            config.set_log_level(rdkafka::config::RDKafkaLogLevel::Info);
        }
        config
            .create_with_context(SinkContext::default())
            .map_err(|e| client_error("producer", e))
    }

    fn pool_id(&self, slot: u32) -> String {
        transactional_id(
            self.cfg.prefix.as_deref().unwrap_or_default(),
            &self.uid,
            self.subtask as u32,
            slot,
        )
    }

    /// Commits the restored checkpoint's pre-committed transactions of the old subtasks whose
    /// ids this subtask owns now, then fences every id of theirs and its own.
    fn recover(&mut self, info: &SubtaskInfo) -> Result<(), KafkaError> {
        let prefix = self.cfg.prefix.clone().unwrap_or_default();
        let mut txns = Vec::new();
        // (old subtask -> its pool size); this subtask's own ids always.
        let mut owned: BTreeMap<u32, u32> = BTreeMap::new();
        owned.insert(self.subtask as u32, self.cfg.pool_size);
        if let Some(state) = &info.restored {
            for b in &state.list_union {
                let s: SinkState = postcard::from_bytes(b).map_err(|e| KafkaError::State {
                    what: "sink",
                    reason: e.to_string(),
                })?;
                match s {
                    SinkState::Writer {
                        subtask, pool_size, ..
                    } => {
                        if subtask as usize % self.parallelism == self.subtask {
                            let e = owned.entry(subtask).or_insert(pool_size);
                            *e = (*e).max(pool_size);
                        }
                    }
                    SinkState::Txn(t) => {
                        if t.subtask as usize % self.parallelism == self.subtask {
                            txns.push(t);
                        }
                    }
                }
            }
        }
        let timeout_ms = self.transaction_timeout_ms()?;
        let login = Login::of(&self.cfg.client)?;
        let mut bootstrap = Connection::bootstrap(&self.cfg.client.servers, &login, self.timeout)?;
        txns.sort_by_key(|t| t.checkpoint);
        for t in &txns {
            let mut coord = bootstrap.transaction_coordinator(&t.transactional_id, self.timeout)?;
            let err = coord.end_txn(&t.transactional_id, t.producer_id, t.epoch, true)?;
            let recover_err = |reason: String| KafkaError::Recover {
                transactional_id: t.transactional_id.clone(),
                producer_id: t.producer_id,
                epoch: t.epoch,
                checkpoint: t.checkpoint,
                reason,
            };
            match err {
                code::NONE => {
                    tracing::info!(sink = %self.name, "committed transaction {} of checkpoint {} after the restore", t.transactional_id, t.checkpoint);
                }
                // A newer producer took the id: only a producer created after this
                // transaction committed does that (a later transaction of the pool, or a
                // recovery that committed it and fenced the id).
                code::PRODUCER_FENCED | code::INVALID_PRODUCER_EPOCH => {
                    tracing::info!(sink = %self.name, "transaction {} of checkpoint {} was committed before", t.transactional_id, t.checkpoint);
                }
                code::INVALID_TXN_STATE => {
                    return Err(recover_err(
                        "the broker says it is no longer open and not committed (it was aborted, \
                         e.g. by a broker restart or transaction.timeout.ms expiring)"
                            .into(),
                    ));
                }
                code::INVALID_PRODUCER_ID_MAPPING => {
                    return Err(recover_err(
                        "the broker does not know the transactional id any more \
                         (transactional.id.expiration.ms passed?)"
                            .into(),
                    ));
                }
                other => return Err(recover_err(format!("EndTxn answered error code {other}"))),
            }
        }
        for (&subtask, &pool) in &owned {
            for slot in 0..pool {
                let id = transactional_id(&prefix, &self.uid, subtask, slot);
                let mut coord = bootstrap.transaction_coordinator(&id, self.timeout)?;
                coord.init_producer_id(&id, timeout_ms.min(i32::MAX as u64) as i32)?;
            }
        }
        Ok(())
    }

    /// The partition a record goes to (`None`: librdkafka's partitioner decides).
    fn partition(&mut self, topic: &str, rec: &ProducedRecord) -> Result<Option<i32>, KafkaError> {
        if matches!(self.cfg.partitioner, Partitioner::Default) {
            return Ok(None);
        }
        let n = match self.partitions.get(topic) {
            Some(n) => *n,
            None => {
                let producer = self
                    .producer
                    .as_ref()
                    .or(self.open.as_ref().map(|t| &t.producer))
                    .expect("a producer exists while writing");
                let md = producer
                    .client()
                    .fetch_metadata(Some(topic), self.timeout)
                    .map_err(|e| match producer.context().auth.failure() {
                        Some(reason) => self.cfg.client.authentication_error(reason),
                        None => KafkaError::Client {
                            action: format!("cannot read the partitions of topic '{topic}'"),
                            source: e,
                        },
                    })?;
                let n = md
                    .topics()
                    .first()
                    .map_or(0, |t| t.partitions().len() as i32);
                if n == 0 {
                    return Err(KafkaError::Delivery {
                        topic: topic.into(),
                        reason: "the topic has no partitions (does it exist?)".into(),
                    });
                }
                self.partitions.insert(topic.to_string(), n);
                n
            }
        };
        Ok(Some(match &self.cfg.partitioner {
            Partitioner::Default => unreachable!("handled above"),
            Partitioner::Fixed => (self.subtask as i32) % n,
            Partitioner::Custom(f) => f(rec, n),
        }))
    }

    /// The producer records go to now (exactly-once: opening a transaction if none is).
    fn begin_if_needed(&mut self) -> Result<(), KafkaError> {
        if self.cfg.guarantee != DeliveryGuarantee::ExactlyOnce || self.open.is_some() {
            return Ok(());
        }
        let slot = (0..self.cfg.pool_size)
            .find(|s| self.pending.iter().all(|t| t.slot != *s))
            .ok_or(KafkaError::PoolExhausted {
                size: self.cfg.pool_size,
                subtask: self.subtask,
            })?;
        let id = self.pool_id(slot);
        let producer = self.create_producer(Some(&id))?;
        producer.init_transactions(self.timeout).map_err(|e| {
            producer.poll(Duration::ZERO);
            match producer.context().auth.failure() {
                Some(reason) => self.cfg.client.authentication_error(reason),
                None => KafkaError::Client {
                    action: format!("cannot initialize transactional id '{id}'"),
                    source: e,
                },
            }
        })?;
        producer
            .begin_transaction()
            .map_err(|e| KafkaError::Client {
                action: format!("cannot begin a transaction with transactional id '{id}'"),
                source: e,
            })?;
        self.open = Some(Txn {
            slot,
            transactional_id: id,
            producer,
            checkpoint: 0,
            ids: (-1, -1),
        });
        Ok(())
    }

    fn current(&self) -> &KProducer {
        self.producer
            .as_ref()
            .or(self.open.as_ref().map(|t| &t.producer))
            .expect("a producer exists while writing")
    }

    /// Exactly-once: fails if a broker connection of the open transaction, or of one
    /// waiting for its checkpoint, broke. Failing before the checkpoint completes makes the
    /// job restart from the previous one and write those records again, instead of
    /// committing a transaction a restarted broker may have aborted (the test broker
    /// answers such a commit with success).
    fn check_connections(&self) -> Result<(), KafkaError> {
        for txn in self.pending.iter().chain(self.open.as_ref()) {
            // Serves the producer's error callbacks.
            txn.producer.poll(Duration::ZERO);
            if txn
                .producer
                .context()
                .connection_lost
                .load(std::sync::atomic::Ordering::SeqCst)
            {
                // Nothing of it may reach a restarted broker: records sent into a
                // transaction the broker forgot would hold back read_committed readers.
                txn.producer
                    .purge(PurgeConfig::default().queue().inflight());
                return Err(KafkaError::TransactionInterrupted {
                    servers: self.cfg.client.servers.clone(),
                    transactional_id: txn.transactional_id.clone(),
                });
            }
        }
        Ok(())
    }

    /// A delivery that failed or credentials the brokers refused, as an error.
    fn check_failures(client: &ClientOptions, producer: &KProducer) -> Result<(), KafkaError> {
        if let Some(reason) = producer.context().auth.failure() {
            return Err(client.authentication_error(reason));
        }
        if let Some((topic, reason)) = producer
            .context()
            .failure
            .lock()
            .expect("not poisoned")
            .take()
        {
            return Err(KafkaError::Delivery { topic, reason });
        }
        Ok(())
    }

    /// Waits until every record is acknowledged, in slices: refused credentials fail at
    /// once rather than after `timeout` (librdkafka keeps retrying the login).
    fn flush(
        client: &ClientOptions,
        producer: &KProducer,
        timeout: Duration,
        what: &str,
    ) -> Result<(), KafkaError> {
        let deadline = Instant::now() + timeout;
        loop {
            Self::check_failures(client, producer)?;
            match producer.flush(FLUSH_SLICE) {
                Ok(()) => break,
                Err(_) if Instant::now() < deadline => {}
                Err(e) => {
                    return Err(KafkaError::Client {
                        action: format!("cannot flush {what}"),
                        source: e,
                    });
                }
            }
        }
        Self::check_failures(client, producer)
    }

    /// Exactly-once at a barrier: flushes the open transaction and keeps it for `checkpoint`.
    fn pre_commit(&mut self, checkpoint: u64) -> Result<(), KafkaError> {
        let Some(txn) = &self.open else {
            return Ok(());
        };
        // Flushes in slices, watching the connections: records held back while the broker
        // is away must not go out to it once it is back, in a transaction it aborted.
        let deadline = Instant::now() + self.timeout;
        loop {
            self.check_connections()?;
            Self::check_failures(&self.cfg.client, &txn.producer)?;
            match txn.producer.flush(FLUSH_SLICE) {
                Ok(()) => break,
                Err(_) if Instant::now() < deadline => {}
                Err(e) => {
                    return Err(KafkaError::Client {
                        action: format!("cannot flush {}", txn.transactional_id),
                        source: e,
                    });
                }
            }
        }
        Self::check_failures(&self.cfg.client, &txn.producer)?;
        self.check_connections()?;
        let mut txn = self.open.take().expect("checked above");
        // librdkafka reports the producer id and epoch only in its statistics.
        let deadline = Instant::now() + self.timeout;
        loop {
            if let Some(ids) = *txn.producer.context().eos.lock().expect("not poisoned") {
                txn.ids = ids;
                break;
            }
            if Instant::now() > deadline {
                return Err(KafkaError::Protocol {
                    broker: self.cfg.client.servers.clone(),
                    reason: format!(
                        "librdkafka reported no producer id for transactional id '{}' within {} ms",
                        txn.transactional_id,
                        self.timeout.as_millis()
                    ),
                });
            }
            txn.producer.poll(Duration::from_millis(10));
        }
        txn.checkpoint = checkpoint;
        self.pending.push(txn);
        Ok(())
    }

    fn commit_up_to(&mut self, checkpoint: u64) -> Result<(), KafkaError> {
        while self
            .pending
            .first()
            .is_some_and(|t| t.checkpoint <= checkpoint)
        {
            let txn = self.pending.remove(0);
            txn.producer.poll(Duration::ZERO);
            if txn
                .producer
                .context()
                .connection_lost
                .load(std::sync::atomic::Ordering::SeqCst)
            {
                // Its checkpoint completed, so it must be committed; Apache Kafka keeps a
                // pre-committed transaction across broker restarts, but a broker that
                // aborts it on restart would lose its records here.
                tracing::warn!(
                    sink = %self.name,
                    "committing transaction '{}' of checkpoint {} after its broker connection broke: \
                     if the broker restarted and aborted it, its records are lost",
                    txn.transactional_id,
                    txn.checkpoint
                );
            }
            txn.producer
                .commit_transaction(self.timeout)
                .map_err(|e| KafkaError::Client {
                    action: format!(
                        "cannot commit transaction '{}' of checkpoint {}",
                        txn.transactional_id, txn.checkpoint
                    ),
                    source: e,
                })?;
        }
        Ok(())
    }

    fn write_records(&mut self, records: Vec<Rec<T>>) -> Result<(), KafkaError> {
        self.begin_if_needed()?;
        self.check_connections()?;
        for r in records {
            let rec = (self.cfg.serializer)(&r.value);
            let topic = match rec.topic.as_deref().or(self.cfg.topic.as_deref()) {
                Some(t) => t.to_string(),
                None => {
                    return Err(KafkaError::Missing {
                        what: "the topic (the record names none)",
                        call: ".topic(…) or set ProducedRecord::topic",
                    });
                }
            };
            let partition = self.partition(&topic, &rec)?;
            let ts = rec.timestamp.or((r.ts != NO_TIMESTAMP).then_some(r.ts));
            let producer = self.current();
            let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(&topic);
            if let Some(k) = &rec.key {
                record = record.key(k.as_slice());
            }
            if let Some(v) = &rec.value {
                record = record.payload(v.as_slice());
            }
            if let Some(p) = partition {
                record = record.partition(p);
            }
            if let Some(ts) = ts {
                record = record.timestamp(ts);
            }
            let mut record = record;
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((
                        rdkafka::error::KafkaError::MessageProduction(
                            rdkafka::types::RDKafkaErrorCode::QueueFull,
                        ),
                        back,
                    )) => {
                        // librdkafka's buffer is full: let it drain.
                        producer.poll(Duration::from_millis(10));
                        record = back;
                    }
                    Err((e, _)) => {
                        return Err(KafkaError::Delivery {
                            topic,
                            reason: e.to_string(),
                        });
                    }
                }
            }
        }
        let producer = self.current();
        producer.poll(Duration::ZERO);
        Self::check_failures(&self.cfg.client, producer)
    }

    fn snapshot(&mut self, checkpoint: u64) -> Result<Vec<Vec<u8>>, KafkaError> {
        match self.cfg.guarantee {
            DeliveryGuarantee::None => Ok(Vec::new()),
            DeliveryGuarantee::AtLeastOnce => {
                if let Some(p) = &self.producer {
                    Self::flush(
                        &self.cfg.client,
                        p,
                        self.timeout,
                        "the records before the checkpoint",
                    )?;
                }
                Ok(Vec::new())
            }
            DeliveryGuarantee::ExactlyOnce => {
                self.pre_commit(checkpoint)?;
                let mut out = vec![SinkState::Writer {
                    subtask: self.subtask as u32,
                    parallelism: self.parallelism as u32,
                    pool_size: self.cfg.pool_size,
                }];
                out.extend(self.pending.iter().map(|t| {
                    SinkState::Txn(PendingTxn {
                        checkpoint: t.checkpoint,
                        subtask: self.subtask as u32,
                        transactional_id: t.transactional_id.clone(),
                        producer_id: t.ids.0,
                        epoch: t.ids.1,
                    })
                }));
                Ok(out
                    .iter()
                    .map(|s| postcard::to_allocvec(s).expect("plain data encodes"))
                    .collect())
            }
        }
    }
}

impl<T: Send + 'static> SinkWriter<T> for KafkaWriter<T> {
    fn write(&mut self, records: Vec<Rec<T>>) -> weir_engine::Result<()> {
        Ok(self.write_records(records)?)
    }

    fn snapshot_state(&mut self, checkpoint_id: u64) -> weir_engine::Result<Vec<Vec<u8>>> {
        Ok(self.snapshot(checkpoint_id)?)
    }

    fn notify_checkpoint_complete(&mut self, checkpoint_id: u64) -> weir_engine::Result<()> {
        Ok(self.commit_up_to(checkpoint_id)?)
    }

    fn finish(&mut self) -> weir_engine::Result<()> {
        match self.cfg.guarantee {
            DeliveryGuarantee::ExactlyOnce => {
                self.pre_commit(u64::MAX)?;
                self.commit_up_to(u64::MAX)?;
            }
            _ => {
                if let Some(p) = &self.producer {
                    Self::flush(&self.cfg.client, p, self.timeout, "the last records")?;
                }
            }
        }
        Ok(())
    }
}

impl<T> Drop for KafkaWriter<T> {
    fn drop(&mut self) {
        // The open transaction is covered by no checkpoint: abort it rather than leave it
        // to the next run's fencing (read_committed readers wait behind open transactions).
        // Pre-committed ones stay open: a completed checkpoint may cover them.
        if let Some(txn) = self.open.take() {
            // Its records are discarded anyway: none still queued or awaiting an answer may
            // be sent (again) once a restarted broker is back, into a transaction it no
            // longer knows.
            txn.producer
                .purge(PurgeConfig::default().queue().inflight());
            if let Err(e) = txn.producer.abort_transaction(Duration::from_secs(5)) {
                tracing::warn!(sink = %self.name, "cannot abort transaction '{}': {e}", txn.transactional_id);
            }
        }
    }
}
