//! The Kafka source: which partitions a subtask reads (a stable hash of topic and partition,
//! as Flink's assigner), where it starts and stops, and its position in checkpoints.
//!
//! Each subtask discovers the topics' partitions itself and reads the ones it owns, each from
//! its own librdkafka partition queue, and hands each partition's records to the engine as
//! a split of their own, so watermarks are generated per partition (an empty or lagging
//! partition holds the subtask's watermark back until it goes idle). Its checkpoint state is one
//! element per partition (topic, partition, next offset, stop offset), restored as union
//! list state: every subtask sees every partition's position and takes those it owns at the
//! new parallelism, so a restore resumes each partition exactly after the last record the
//! checkpoint covered. Offsets are committed to the consumer group when a checkpoint
//! completes, for monitoring only; restores never read them.

use crate::commit::Committer;
use crate::metrics::{self, ReaderContext};
use crate::{ClientOptions, KafkaError, client_error};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::util::Timeout;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use weir_engine::config::DecodeErrorPolicy;
use weir_engine::connectors::{ReaderPoll, Source, SourceReader, SplitId};
use weir_engine::runtime::{Gauge, Rec, SubtaskInfo};
use weir_engine::time::{NO_TIMESTAMP, now_ms};

/// A record as read from Kafka, handed to the deserializer.
#[derive(Debug, Clone, Copy)]
pub struct KafkaRecord<'a> {
    /// Its topic.
    pub topic: &'a str,
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// Its timestamp (epoch ms), if it has one.
    pub timestamp: Option<i64>,
    /// Its key.
    pub key: Option<&'a [u8]>,
    /// Its value (`None`: a tombstone).
    pub value: Option<&'a [u8]>,
    /// Its headers.
    pub headers: Headers<'a>,
}

/// A record's headers, in order (a name may repeat).
#[derive(Clone, Copy, Default)]
pub struct Headers<'a>(Option<&'a rdkafka::message::BorrowedHeaders>);

impl std::fmt::Debug for Headers<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(
                self.iter()
                    .map(|(k, v)| (k, v.map(String::from_utf8_lossy))),
            )
            .finish()
    }
}

impl<'a> Headers<'a> {
    /// Each header's name and value (`None`: a null value).
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, Option<&'a [u8]>)> + 'a {
        use rdkafka::message::Headers as _;
        self.0
            .into_iter()
            .flat_map(|h| h.iter().map(|h| (h.key, h.value)))
    }
}

/// Where a partition's reading starts when no checkpoint says otherwise.
#[derive(Debug, Clone, PartialEq)]
pub enum StartingOffsets {
    /// The earliest offset still in the partition.
    Earliest,
    /// The end of the partition when the reader starts.
    Latest,
    /// The group's committed offset; partitions without one start at the `reset` position
    /// (`Earliest` or `Latest`). Needs a group id.
    Committed {
        /// Where partitions without a committed offset start.
        reset: Box<StartingOffsets>,
    },
    /// The first record at or after this timestamp (epoch ms); the end when there is none.
    Timestamp(i64),
    /// Given offsets per (topic, partition); others start at the earliest offset.
    Specific(BTreeMap<(String, i32), i64>),
}

/// Where a bounded source stops (exclusive): it ends when every partition reached it.
#[derive(Debug, Clone, PartialEq)]
pub enum StoppingOffsets {
    /// The end of each partition when its reading started.
    Latest,
    /// The first offset at or after this timestamp (epoch ms).
    Timestamp(i64),
    /// Given offsets per (topic, partition); others stop at the latest offset.
    Specific(BTreeMap<(String, i32), i64>),
}

/// Which topics are read.
#[derive(Debug, Clone)]
enum Subscription {
    Topics(Vec<String>),
    Pattern(regex::Regex),
}

impl Subscription {
    fn matches(&self, topic: &str) -> bool {
        match self {
            Subscription::Topics(t) => t.iter().any(|x| x == topic),
            // Anchored, as Java's `Pattern.matcher(topic).matches()` in Flink.
            Subscription::Pattern(r) => r
                .find(topic)
                .is_some_and(|m| m.start() == 0 && m.end() == topic.len()),
        }
    }
}

type DeserializeFn<T> = Arc<dyn Fn(&KafkaRecord<'_>) -> Result<T, String> + Send + Sync>;

struct SourceConfig<T> {
    client: ClientOptions,
    group_id: Option<String>,
    subscription: Subscription,
    starting: StartingOffsets,
    stopping: Option<StoppingOffsets>,
    deserializer: DeserializeFn<T>,
    discovery_interval: Option<Duration>,
    commit_on_checkpoint: bool,
}

/// Reads Kafka topics; build it with [`KafkaSource::builder`].
pub struct KafkaSource<T> {
    cfg: Arc<SourceConfig<T>>,
}

impl<T> Clone for KafkaSource<T> {
    fn clone(&self) -> Self {
        KafkaSource {
            cfg: self.cfg.clone(),
        }
    }
}

/// Builds a [`KafkaSource`] (options named as in Flink's `KafkaSourceBuilder`).
pub struct KafkaSourceBuilder<T> {
    client: ClientOptions,
    group_id: Option<String>,
    topics: Vec<String>,
    pattern: Option<String>,
    starting: StartingOffsets,
    stopping: Option<StoppingOffsets>,
    deserializer: Option<DeserializeFn<T>>,
    discovery_interval: Option<Duration>,
    commit_on_checkpoint: bool,
}

impl<T> KafkaSource<T> {
    /// A builder with Flink's defaults: earliest offsets, unbounded, partition discovery
    /// every 30 s, offsets committed on checkpoints when a group id is set.
    pub fn builder() -> KafkaSourceBuilder<T> {
        KafkaSourceBuilder {
            client: ClientOptions::default(),
            group_id: None,
            topics: Vec::new(),
            pattern: None,
            starting: StartingOffsets::Earliest,
            stopping: None,
            deserializer: None,
            discovery_interval: Some(Duration::from_secs(30)),
            commit_on_checkpoint: true,
        }
    }
}

impl<T> KafkaSourceBuilder<T> {
    /// `bootstrap.servers`: `host:port[,host:port…]`.
    pub fn bootstrap_servers(mut self, servers: impl Into<String>) -> Self {
        self.client.servers = servers.into();
        self
    }

    /// The topics to read.
    pub fn topics<S: Into<String>>(mut self, topics: impl IntoIterator<Item = S>) -> Self {
        self.topics = topics.into_iter().map(Into::into).collect();
        self
    }

    /// Reads every topic whose whole name matches this regular expression, including topics
    /// created while the job runs (found by partition discovery).
    pub fn topic_pattern(mut self, pattern: impl Into<String>) -> Self {
        self.pattern = Some(pattern.into());
        self
    }

    /// `group.id`: offsets are committed to this group when checkpoints complete (for
    /// monitoring), and [`StartingOffsets::Committed`] reads them.
    pub fn group_id(mut self, group: impl Into<String>) -> Self {
        self.group_id = Some(group.into());
        self
    }

    /// Where partitions start when no checkpoint is restored (default: earliest).
    pub fn starting_offsets(mut self, starting: StartingOffsets) -> Self {
        self.starting = starting;
        self
    }

    /// Makes the source bounded: it ends when every partition reached `stopping`.
    /// Partition discovery is off for a bounded source.
    pub fn bounded(mut self, stopping: StoppingOffsets) -> Self {
        self.stopping = Some(stopping);
        self
    }

    /// How often new partitions (and topics matching the pattern) are looked for; `None`
    /// turns discovery off. Default 30 s.
    pub fn partition_discovery_interval(mut self, interval: Option<Duration>) -> Self {
        self.discovery_interval = interval;
        self
    }

    /// Whether offsets are committed to the group when checkpoints complete (default true;
    /// needs a group id).
    pub fn commit_offsets_on_checkpoint(mut self, commit: bool) -> Self {
        self.commit_on_checkpoint = commit;
        self
    }

    /// A librdkafka consumer property, passed through (e.g. `isolation.level`,
    /// `security.protocol`, `fetch.max.bytes`).
    pub fn property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.client.properties.push((key.into(), value.into()));
        self
    }

    /// Turns a whole record (key, value, metadata) into `T`; an `Err` is a record that does
    /// not decode, handled by `pipeline.decode-error-policy`.
    pub fn deserializer(
        mut self,
        f: impl Fn(&KafkaRecord<'_>) -> Result<T, String> + Send + Sync + 'static,
    ) -> Self {
        self.deserializer = Some(Arc::new(f));
        self
    }

    /// Turns a record's value into `T` (a record without value does not decode).
    pub fn value_deserializer(
        self,
        f: impl Fn(&[u8]) -> Result<T, String> + Send + Sync + 'static,
    ) -> Self {
        self.deserializer(move |r| match r.value {
            Some(v) => f(v),
            None => Err("the record has no value (a tombstone)".into()),
        })
    }

    /// Reads each record's value as JSON.
    pub fn json_values(self) -> Self
    where
        T: serde::de::DeserializeOwned,
    {
        self.value_deserializer(|v| {
            serde_json::from_slice(v).map_err(|e| {
                format!(
                    "invalid JSON ({e}): {}",
                    String::from_utf8_lossy(&v[..v.len().min(200)])
                )
            })
        })
    }

    /// Checks the options.
    pub fn build(self) -> Result<KafkaSource<T>, KafkaError> {
        self.client.check()?;
        let subscription = match (self.topics.is_empty(), self.pattern) {
            (false, None) => Subscription::Topics(self.topics),
            (true, Some(p)) => {
                Subscription::Pattern(regex::Regex::new(&p).map_err(|e| KafkaError::Option {
                    key: "topic-pattern".into(),
                    value: p.clone(),
                    reason: e.to_string(),
                })?)
            }
            (true, None) => {
                return Err(KafkaError::Missing {
                    what: "the topics to read",
                    call: ".topics([…]) or .topic_pattern(…)",
                });
            }
            (false, Some(p)) => {
                return Err(KafkaError::Option {
                    key: "topic-pattern".into(),
                    value: p,
                    reason: format!(
                        "set either topics ({}) or a topic pattern, not both",
                        self.topics.join(", ")
                    ),
                });
            }
        };
        let deserializer = self.deserializer.ok_or(KafkaError::Missing {
            what: "the deserializer",
            call: ".deserializer(…), .value_deserializer(…) or .json_values()",
        })?;
        if matches!(self.starting, StartingOffsets::Committed { .. }) && self.group_id.is_none() {
            return Err(KafkaError::Missing {
                what: "the group id (starting from committed offsets needs one)",
                call: ".group_id(…)",
            });
        }
        if let StartingOffsets::Committed { reset } = &self.starting
            && !matches!(**reset, StartingOffsets::Earliest | StartingOffsets::Latest)
        {
            return Err(KafkaError::Option {
                key: "starting offsets".into(),
                value: format!("{:?}", self.starting),
                reason: "the reset position of committed offsets is Earliest or Latest".into(),
            });
        }
        Ok(KafkaSource {
            cfg: Arc::new(SourceConfig {
                client: self.client,
                group_id: self.group_id,
                subscription,
                starting: self.starting,
                discovery_interval: if self.stopping.is_some() {
                    None
                } else {
                    self.discovery_interval
                },
                stopping: self.stopping,
                deserializer,
                commit_on_checkpoint: self.commit_on_checkpoint,
            }),
        })
    }
}

/// Java's `String.hashCode`, so partitions land on the same subtasks as in Flink.
fn java_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)))
}

/// The subtask (of `parallelism`) that reads `topic`'s partition `partition`: Flink's
/// `KafkaSourceEnumerator.getSplitOwner` — consecutive partitions of a topic go to
/// consecutive subtasks, starting at one derived from the topic's name.
pub fn split_owner(topic: &str, partition: i32, parallelism: usize) -> usize {
    let n = parallelism as i64;
    let start = (i64::from(java_hash(topic).wrapping_mul(31) & 0x7fff_ffff)) % n;
    ((start + i64::from(partition)) % n) as usize
}

/// One partition's position in a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct PartitionState {
    topic: String,
    partition: i32,
    /// The offset of the next record to read.
    next: i64,
    /// Where a bounded source stops reading it (exclusive).
    stop: Option<i64>,
}

/// A partition this reader owns.
struct Part<T> {
    /// `next` is the offset after the last record emitted (what a checkpoint stores).
    state: PartitionState,
    queue: rdkafka::consumer::base_consumer::PartitionQueue<ReaderContext>,
    /// Fetched and decoded, not emitted yet: `(offset, record)`, `None` for a record
    /// skipped as undecodable.
    buffered: VecDeque<(i64, Option<Rec<T>>)>,
    /// The end of the partition was reached at this position (until a record arrives).
    at_end: Option<i64>,
    /// Paused at its end until then: the broker answers fetches at the end at once instead
    /// of waiting, so an unpaused idle partition spins.
    paused_until: Option<Instant>,
    /// Bounded: the stop offset was fetched, nothing more is.
    fetched_all: bool,
    done: bool,
}

/// How long a partition at its end rests before fetching again.
const END_BACKOFF: Duration = Duration::from_millis(50);

/// Records decoded ahead per partition.
const READ_AHEAD: usize = 256;

struct KafkaReader<T> {
    cfg: Arc<SourceConfig<T>>,
    name: String,
    index: usize,
    parallelism: usize,
    decode_errors: DecodeErrorPolicy,
    consumer: Arc<BaseConsumer<ReaderContext>>,
    /// Milliseconds between the last fetched record's timestamp and its fetch.
    fetch_lag: Option<i64>,
    parts: Vec<Part<T>>,
    /// Every (topic, partition) seen so far, owned or not: discovery adds the others.
    known: BTreeSet<(String, i32)>,
    next_discovery: Option<Instant>,
    /// The partition served first on the next poll.
    rotation: usize,
    skipped: u64,
    /// Positions of the last snapshot, committed to the group when a checkpoint completes.
    last_snapshot: Vec<PartitionState>,
    /// Started with the first commit.
    committer: Option<Committer>,
}

impl<T: Send + 'static> Source<T> for KafkaSource<T> {
    fn create_reader(&self, info: &SubtaskInfo) -> weir_engine::Result<Box<dyn SourceReader<T>>> {
        Ok(Box::new(KafkaReader::open(self.cfg.clone(), info)?))
    }
}

/// Operations on partitions wait at most this long for the broker.
fn op_timeout(cfg: &ClientOptions) -> Duration {
    cfg.connect_timeout()
}

impl<T> KafkaReader<T> {
    fn open(cfg: Arc<SourceConfig<T>>, info: &SubtaskInfo) -> Result<Self, KafkaError> {
        let mut defaults = vec![
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("enable.partition.eof", "true"),
            ("allow.auto.create.topics", "false"),
            // A checkpointed offset the broker no longer has (retention deleted it) resumes
            // at the oldest record left rather than skipping everything to the end.
            ("auto.offset.reset", "earliest"),
        ];
        // librdkafka refuses to assign partitions without a group id, even though the reader
        // never joins the group (it assigns partitions itself); nothing is committed to this
        // one.
        let group = match &cfg.group_id {
            Some(g) => g.clone(),
            None => format!("weir-source-{}", info.uid),
        };
        defaults.push(("group.id", group.as_str()));
        // librdkafka's statistics carry each partition's end offset, for the lag metrics.
        defaults.push(("statistics.interval.ms", "1000"));
        let read_committed = cfg.client.get("isolation.level") != Some("read_uncommitted");
        let consumer: BaseConsumer<ReaderContext> = cfg
            .client
            .config(&defaults)
            .create_with_context(ReaderContext::new(read_committed))
            .map_err(|e| client_error("consumer", e))?;
        let mut reader = KafkaReader {
            name: info.name.clone(),
            index: info.index,
            parallelism: info.parallelism,
            decode_errors: info.decode_errors,
            consumer: Arc::new(consumer),
            fetch_lag: None,
            parts: Vec::new(),
            known: BTreeSet::new(),
            next_discovery: None,
            rotation: 0,
            skipped: 0,
            last_snapshot: Vec::new(),
            committer: None,
            cfg,
        };
        // Reached or not, fail fast with the addresses rather than wait forever.
        let topics = reader.discover_topics(true)?;
        let restored: Option<Vec<PartitionState>> = match &info.restored {
            Some(state) => Some(
                state
                    .list_union
                    .iter()
                    .map(|b| {
                        postcard::from_bytes(b).map_err(|e| KafkaError::State {
                            what: "source",
                            reason: format!("{e}"),
                        })
                    })
                    .collect::<Result<_, _>>()?,
            ),
            None => None,
        };
        let mut start = Vec::new();
        match restored {
            Some(restored) => {
                for p in restored {
                    if !reader.cfg.subscription.matches(&p.topic) {
                        continue;
                    }
                    reader.known.insert((p.topic.clone(), p.partition));
                    if reader.owns(&p.topic, p.partition) {
                        start.push(p);
                    }
                }
                // Partitions the checkpoint does not know appeared after it: read them whole.
                let fresh = reader.unknown_owned(&topics);
                start.extend(reader.resolve(&fresh, &StartingOffsets::Earliest)?);
            }
            None => {
                let fresh = reader.unknown_owned(&topics);
                let starting = reader.cfg.starting.clone();
                start.extend(reader.resolve(&fresh, &starting)?);
            }
        }
        reader.assign(start)?;
        reader.next_discovery = reader.cfg.discovery_interval.map(|d| Instant::now() + d);
        Ok(reader)
    }

    fn owns(&self, topic: &str, partition: i32) -> bool {
        split_owner(topic, partition, self.parallelism) == self.index
    }

    fn servers(&self) -> String {
        self.cfg.client.servers.clone()
    }

    /// Every partition of the subscribed topics, from the brokers' metadata. At start an
    /// unreachable broker or a missing topic is an error; later they are logged and
    /// discovery tries again.
    fn discover_topics(&self, at_start: bool) -> Result<Vec<(String, i32)>, KafkaError> {
        let timeout = op_timeout(&self.cfg.client);
        let mut out = Vec::new();
        // Asked in short slices: a login the brokers refuse fails at once, not after the
        // whole timeout (librdkafka keeps retrying it and only reports the log line).
        let fetch = |topic: Option<&str>| {
            let deadline = Instant::now() + timeout;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                let slice = left.min(Duration::from_millis(500));
                match self.consumer.fetch_metadata(topic, Timeout::After(slice)) {
                    Ok(md) => return Ok(md),
                    Err(e) => {
                        if at_start {
                            // Delivers queued log lines (see `AuthWatch`); no partition is
                            // assigned yet, so no record can be taken by it.
                            for _ in 0..100 {
                                if self.consumer.poll(Duration::ZERO).is_none() {
                                    break;
                                }
                            }
                        }
                        if let Some(reason) = self.consumer.context().auth.failure() {
                            return Err(self.cfg.client.authentication_error(reason));
                        }
                        if Instant::now() >= deadline {
                            return Err(KafkaError::Unreachable {
                                servers: self.servers(),
                                timeout_ms: timeout.as_millis() as u64,
                                source: e,
                            });
                        }
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
            }
        };
        match &self.cfg.subscription {
            Subscription::Topics(topics) => {
                for t in topics {
                    let md = fetch(Some(t))?;
                    for mt in md.topics() {
                        if mt.error().is_some() || mt.partitions().is_empty() {
                            if at_start {
                                return Err(KafkaError::UnknownTopic {
                                    topic: t.clone(),
                                    servers: self.servers(),
                                });
                            }
                            continue;
                        }
                        out.extend(mt.partitions().iter().map(|p| (t.clone(), p.id())));
                    }
                }
            }
            Subscription::Pattern(_) => {
                let md = fetch(None)?;
                for mt in md.topics() {
                    if mt.error().is_none() && self.cfg.subscription.matches(mt.name()) {
                        out.extend(
                            mt.partitions()
                                .iter()
                                .map(|p| (mt.name().to_string(), p.id())),
                        );
                    }
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// The partitions among `all` not seen before that this subtask owns; marks all seen.
    fn unknown_owned(&mut self, all: &[(String, i32)]) -> Vec<(String, i32)> {
        let mut mine = Vec::new();
        for (t, p) in all {
            if self.known.insert((t.clone(), *p)) && self.owns(t, *p) {
                mine.push((t.clone(), *p));
            }
        }
        mine
    }

    /// Concrete start (and, bounded, stop) offsets of `parts`, so that a checkpoint taken
    /// before anything was read still pins the position.
    fn resolve(
        &self,
        parts: &[(String, i32)],
        starting: &StartingOffsets,
    ) -> Result<Vec<PartitionState>, KafkaError> {
        let mut out = Vec::with_capacity(parts.len());
        for (t, p) in parts {
            let next = self.start_offset(t, *p, starting)?;
            let stop = match &self.cfg.stopping {
                None => None,
                Some(s) => Some(self.stop_offset(t, *p, s)?),
            };
            out.push(PartitionState {
                topic: t.clone(),
                partition: *p,
                next,
                stop,
            });
        }
        Ok(out)
    }

    fn watermarks(&self, topic: &str, partition: i32) -> Result<(i64, i64), KafkaError> {
        self.consumer
            .fetch_watermarks(topic, partition, op_timeout(&self.cfg.client))
            .map_err(|e| KafkaError::Client {
                action: format!("cannot read the offsets of topic '{topic}' partition {partition}"),
                source: e,
            })
    }

    fn offset_for_time(&self, topic: &str, partition: i32, ts: i64) -> Result<i64, KafkaError> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, partition, Offset::Offset(ts))
            .map_err(|e| KafkaError::Client {
                action: format!("timestamp {ts}"),
                source: e,
            })?;
        let got = self
            .consumer
            .offsets_for_times(tpl, op_timeout(&self.cfg.client))
            .map_err(|e| KafkaError::Client {
                action: format!(
                    "cannot look up offsets for timestamp {ts} in topic '{topic}' partition {partition}"
                ),
                source: e,
            })?;
        match got.find_partition(topic, partition).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => Ok(o),
            // No record at or after the timestamp: the end.
            _ => Ok(self.watermarks(topic, partition)?.1),
        }
    }

    fn start_offset(
        &self,
        topic: &str,
        partition: i32,
        starting: &StartingOffsets,
    ) -> Result<i64, KafkaError> {
        match starting {
            StartingOffsets::Earliest => Ok(self.watermarks(topic, partition)?.0),
            StartingOffsets::Latest => Ok(self.watermarks(topic, partition)?.1),
            StartingOffsets::Timestamp(ts) => self.offset_for_time(topic, partition, *ts),
            StartingOffsets::Specific(map) => match map.get(&(topic.to_string(), partition)) {
                Some(o) => Ok(*o),
                None => Ok(self.watermarks(topic, partition)?.0),
            },
            StartingOffsets::Committed { reset } => {
                let mut tpl = TopicPartitionList::new();
                tpl.add_partition(topic, partition);
                let got = self
                    .consumer
                    .committed_offsets(tpl, op_timeout(&self.cfg.client))
                    .map_err(|e| KafkaError::Client {
                        action: format!(
                            "cannot read the committed offset of group '{}' for topic '{topic}' \
                             partition {partition}",
                            self.cfg.group_id.as_deref().unwrap_or_default()
                        ),
                        source: e,
                    })?;
                match got.find_partition(topic, partition).map(|e| e.offset()) {
                    Some(Offset::Offset(o)) => Ok(o),
                    _ => self.start_offset(topic, partition, reset),
                }
            }
        }
    }

    fn stop_offset(
        &self,
        topic: &str,
        partition: i32,
        stopping: &StoppingOffsets,
    ) -> Result<i64, KafkaError> {
        match stopping {
            StoppingOffsets::Latest => Ok(self.watermarks(topic, partition)?.1),
            StoppingOffsets::Timestamp(ts) => self.offset_for_time(topic, partition, *ts),
            StoppingOffsets::Specific(map) => match map.get(&(topic.to_string(), partition)) {
                Some(o) => Ok(*o),
                None => Ok(self.watermarks(topic, partition)?.1),
            },
        }
    }

    /// Starts reading `states` (added to what is read already).
    fn assign(&mut self, states: Vec<PartitionState>) -> Result<(), KafkaError> {
        let mut tpl = TopicPartitionList::new();
        for s in states {
            let done = s.stop.is_some_and(|stop| s.next >= stop);
            if !done {
                tpl.add_partition_offset(&s.topic, s.partition, Offset::Offset(s.next))
                    .map_err(|e| KafkaError::Client {
                        action: format!("offset {} of topic '{}'", s.next, s.topic),
                        source: e,
                    })?;
            }
            // Split before assigning, so none of its records reach the main queue.
            let queue = self
                .consumer
                .split_partition_queue(&s.topic, s.partition)
                .ok_or_else(|| KafkaError::Option {
                    key: "topic".into(),
                    value: s.topic.clone(),
                    reason: "not a valid topic name".into(),
                })?;
            self.parts.push(Part {
                state: s,
                queue,
                buffered: VecDeque::new(),
                at_end: None,
                paused_until: None,
                fetched_all: done,
                done,
            });
        }
        if tpl.count() > 0 {
            self.consumer
                .incremental_assign(&tpl)
                .map_err(|e| KafkaError::Client {
                    action: format!("cannot assign partitions {:?}", tpl_names(&tpl)),
                    source: e,
                })?;
        }
        Ok(())
    }

    /// Looks for new partitions (and topics) and starts reading the ones this subtask owns
    /// from their earliest offset.
    fn discover(&mut self) -> Result<(), KafkaError> {
        let all = match self.discover_topics(false) {
            Ok(all) => all,
            Err(e) => {
                tracing::warn!(source = %self.name, "Kafka partition discovery failed: {}", weir_engine::report(&e));
                return Ok(());
            }
        };
        let fresh = self.unknown_owned(&all);
        if !fresh.is_empty() {
            tracing::info!(source = %self.name, subtask = self.index, "discovered partitions {fresh:?}");
            let states = self.resolve(&fresh, &StartingOffsets::Earliest)?;
            self.assign(states)?;
        }
        Ok(())
    }

    fn set_paused(&self, part: &PartitionState, pause: bool) -> Result<(), KafkaError> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&part.topic, part.partition);
        let r = if pause {
            self.consumer.pause(&tpl)
        } else {
            self.consumer.resume(&tpl)
        };
        r.map_err(|e| KafkaError::Client {
            action: format!(
                "cannot {} topic '{}' partition {}",
                if pause { "pause" } else { "resume" },
                part.topic,
                part.partition
            ),
            source: e,
        })
    }

    /// The consumer's fetch position of a partition (past control records a read skipped).
    fn position(&self, part: &PartitionState) -> Option<i64> {
        let tpl = self.consumer.position().ok()?;
        match tpl.find_partition(&part.topic, part.partition)?.offset() {
            Offset::Offset(o) => Some(o),
            _ => None,
        }
    }
}

fn tpl_names(tpl: &TopicPartitionList) -> Vec<String> {
    tpl.elements()
        .iter()
        .map(|e| format!("{}/{}", e.topic(), e.partition()))
        .collect()
}

impl<T: Send + 'static> SourceReader<T> for KafkaReader<T> {
    /// Emits the buffered records partition by partition, each partition's records tagged
    /// as its own split: the source generates a watermark per partition, so one partition
    /// running ahead never moves the subtask's watermark past another that is behind.
    fn poll(&mut self, max: usize) -> weir_engine::Result<ReaderPoll<T>> {
        if self.next_discovery.is_some_and(|t| Instant::now() >= t) {
            self.discover()?;
            self.next_discovery = self.cfg.discovery_interval.map(|d| Instant::now() + d);
        }
        // Serves librdkafka's callbacks; records all arrive on the partition queues.
        if let Some(Err(e)) = self.consumer.poll(Duration::ZERO) {
            tracing::warn!(source = %self.name, "Kafka consumer: {e}");
        }
        let now = Instant::now();
        for i in 0..self.parts.len() {
            if self.parts[i].paused_until.is_some_and(|t| now >= t) {
                self.parts[i].paused_until = None;
                self.set_paused(&self.parts[i].state, false)?;
            }
            self.fill(i)?;
        }
        let mut records: Vec<Rec<T>> = Vec::with_capacity(max.min(4096));
        let mut runs: Vec<(SplitId, usize)> = Vec::new();
        let n = self.parts.len();
        // Each partition's records form one run (its split's watermark follows them); the
        // partition served first rotates so a busy one does not starve the others.
        for k in 0..n {
            if records.len() >= max {
                break;
            }
            let i = (self.rotation + k) % n;
            let before = records.len();
            while records.len() < max {
                let Some((offset, rec)) = self.parts[i].buffered.pop_front() else {
                    self.fill(i)?;
                    if self.parts[i].buffered.is_empty() {
                        break;
                    }
                    continue;
                };
                self.parts[i].state.next = offset + 1;
                if let Some(r) = rec {
                    records.push(r);
                }
            }
            if records.len() > before {
                runs.push((i as SplitId, records.len() - before));
            }
        }
        self.rotation = self.rotation.wrapping_add(1);
        for i in 0..self.parts.len() {
            self.settle(i)?;
        }
        if !records.is_empty() {
            return Ok(ReaderPoll::SplitRecords { records, runs });
        }
        if self.cfg.stopping.is_some() && self.parts.iter().all(|p| p.done) {
            return Ok(ReaderPoll::End);
        }
        Ok(ReaderPoll::Pending(5))
    }

    fn skipped(&self) -> u64 {
        self.skipped
    }

    fn gauges(&self) -> Vec<Gauge> {
        // Serves librdkafka's statistics and commit callbacks also while the subtask is
        // backpressured and does not poll for records.
        if let Some(Err(e)) = self.consumer.poll(Duration::ZERO) {
            tracing::warn!(source = %self.name, "Kafka consumer: {e}");
        }
        let ctx = self.consumer.context();
        let mut out = Vec::with_capacity(3 * self.parts.len() + 4);
        let mut pending = Some(0i64);
        for p in &self.parts {
            let s = &p.state;
            let gauge = |name: &str, v: i64| {
                Gauge::new(name, v as f64)
                    .label("topic", s.topic.as_str())
                    .label("partition", s.partition.to_string())
            };
            out.push(gauge(metrics::CURRENT_OFFSET, s.next - 1));
            out.push(gauge(
                metrics::COMMITTED_OFFSET,
                ctx.committed(&s.topic, s.partition).unwrap_or(-1),
            ));
            // A bounded read ends at its stop offset; otherwise the partition's end is
            // known once librdkafka's statistics reported it.
            let end = match s.stop {
                Some(stop) => Some(stop),
                None => ctx.end(&s.topic, s.partition),
            };
            match end {
                Some(end) => {
                    let lag = (end - s.next).max(0);
                    out.push(gauge(metrics::RECORDS_LAG, lag));
                    pending = pending.map(|n| n + lag);
                }
                None => pending = None,
            }
        }
        if let Some(n) = pending {
            out.push(Gauge::new(metrics::PENDING_RECORDS, n as f64));
        }
        if let Some(lag) = self.fetch_lag {
            out.push(Gauge::new(metrics::FETCH_EVENT_TIME_LAG, lag as f64));
        }
        let (ok, failed) = ctx.commits();
        out.push(Gauge::new(metrics::COMMITS_SUCCEEDED, ok as f64));
        out.push(Gauge::new(metrics::COMMITS_FAILED, failed as f64));
        out
    }

    /// Every partition not finished (bounded reads finish theirs), named by its index in
    /// `parts`, which only grows.
    fn open_splits(&self) -> Option<Vec<SplitId>> {
        Some(
            (0..self.parts.len())
                .filter(|&i| !self.parts[i].done)
                .map(|i| i as SplitId)
                .collect(),
        )
    }

    fn snapshot_state(&mut self) -> weir_engine::Result<Vec<Vec<u8>>> {
        self.last_snapshot = self.parts.iter().map(|p| p.state.clone()).collect();
        Ok(self
            .last_snapshot
            .iter()
            .map(|s| postcard::to_allocvec(s).expect("plain data encodes"))
            .collect())
    }

    fn notify_checkpoint_complete(&mut self, _checkpoint_id: u64) -> weir_engine::Result<()> {
        if !self.cfg.commit_on_checkpoint || self.cfg.group_id.is_none() {
            return Ok(());
        }
        if !self.last_snapshot.is_empty() {
            let committer = self
                .committer
                .get_or_insert_with(|| Committer::start(self.consumer.clone(), &self.name));
            committer.commit(
                self.last_snapshot
                    .iter()
                    .map(|s| (s.topic.clone(), s.partition, s.next))
                    .collect(),
            );
        }
        Ok(())
    }
}

impl<T> KafkaReader<T> {
    /// Fetches and decodes records of partition `i` up to [`READ_AHEAD`] buffered.
    fn fill(&mut self, i: usize) -> Result<(), KafkaError> {
        let now = now_ms();
        loop {
            let part = &mut self.parts[i];
            if part.done
                || part.fetched_all
                || part.paused_until.is_some()
                || part.buffered.len() >= READ_AHEAD
            {
                return Ok(());
            }
            let Some(msg) = part.queue.poll(Duration::ZERO) else {
                return Ok(());
            };
            match msg {
                Ok(m) => {
                    let offset = m.offset();
                    let stop = part.state.stop;
                    if stop.is_some_and(|s| offset >= s) {
                        // Fetched in the same batch as the last record before the stop.
                        part.fetched_all = true;
                        return Ok(());
                    }
                    part.at_end = None;
                    if stop.is_some_and(|s| offset + 1 >= s) {
                        part.fetched_all = true;
                    }
                    let record = KafkaRecord {
                        topic: m.topic(),
                        partition: m.partition(),
                        offset,
                        timestamp: m.timestamp().to_millis(),
                        key: m.key(),
                        value: m.payload(),
                        headers: Headers(m.headers()),
                    };
                    if let Some(ts) = record.timestamp {
                        self.fetch_lag = Some(now - ts);
                    }
                    let rec = match (self.cfg.deserializer)(&record) {
                        Ok(v) => Some(Rec {
                            ts: record.timestamp.unwrap_or(NO_TIMESTAMP),
                            value: v,
                        }),
                        Err(reason) => match self.decode_errors {
                            DecodeErrorPolicy::Fail => {
                                return Err(KafkaError::Decode {
                                    topic: record.topic.to_string(),
                                    partition: record.partition,
                                    offset,
                                    reason,
                                });
                            }
                            DecodeErrorPolicy::Skip => {
                                self.skipped += 1;
                                tracing::warn!(
                                    source = %self.name,
                                    "skipped the record at topic '{}' partition {} offset {offset}: {reason}",
                                    record.topic,
                                    record.partition
                                );
                                None
                            }
                        },
                    };
                    part.buffered.push_back((offset, rec));
                }
                Err(rdkafka::error::KafkaError::PartitionEOF(_)) => {
                    let state = part.state.clone();
                    let pos = self.position(&state).unwrap_or(state.next);
                    let part = &mut self.parts[i];
                    part.at_end = Some(pos);
                    part.paused_until = Some(Instant::now() + END_BACKOFF);
                    self.set_paused(&state, true)?;
                    return Ok(());
                }
                Err(e) => {
                    let p = &part.state;
                    return Err(KafkaError::Client {
                        action: format!(
                            "cannot read topic '{}' partition {} at offset {}",
                            p.topic, p.partition, p.next
                        ),
                        source: e,
                    });
                }
            }
        }
    }

    /// With nothing buffered, moves the position of partition `i` past what its end showed
    /// (control records of transactions) and ends it when a bounded read reached its stop.
    fn settle(&mut self, i: usize) -> Result<(), KafkaError> {
        let part = &mut self.parts[i];
        if part.done || !part.buffered.is_empty() {
            return Ok(());
        }
        if let Some(pos) = part.at_end {
            part.state.next = part.state.next.max(pos);
        }
        if let Some(stop) = part.state.stop
            && (part.fetched_all || part.state.next >= stop)
        {
            part.state.next = stop;
            part.done = true;
            if part.paused_until.is_none() {
                let state = part.state.clone();
                self.set_paused(&state, true)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_hash_matches_java_string_hash_code() {
        // Values of "…".hashCode() in Java.
        assert_eq!(java_hash(""), 0);
        assert_eq!(java_hash("a"), 97);
        assert_eq!(java_hash("events"), -1291329255);
        assert_eq!(java_hash("topic-with-a-long-name"), -49133785);
    }

    #[test]
    fn consecutive_partitions_go_to_consecutive_subtasks_at_any_parallelism() {
        for par in 1..6 {
            let first = split_owner("events", 0, par);
            for p in 0..12 {
                assert_eq!(split_owner("events", p, par), (first + p as usize) % par);
            }
        }
    }

    #[test]
    fn a_pattern_must_match_the_whole_topic_name() {
        let s = Subscription::Pattern(regex::Regex::new("events-[0-9]+").unwrap());
        assert!(s.matches("events-12"));
        assert!(!s.matches("old-events-12"));
        assert!(!s.matches("events-12-dlq"));
    }
}
