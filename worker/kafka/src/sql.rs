//! Kafka in SQL: the `kafka` and `upsert-kafka` connectors of weir-sql, with Flink's option
//! names, built on [`KafkaSource`] and [`KafkaSink`]. [`register`] adds them to a
//! [`Connectors`] registry (the `weir` binary does), so weir-sql itself never links
//! librdkafka.
//!
//! A table's columns map onto a record as in Flink: the key holds `key.fields` (for
//! `upsert-kafka`, the primary key) in the `key.format`; the value holds every payload
//! column (`value.fields-include` = `ALL`) or those not in the key (`EXCEPT_KEY`) in the
//! `value.format`; `METADATA` columns come from the record itself. `upsert-kafka` reads a
//! topic as a changelog (per key: the first record inserts, later ones update, a tombstone
//! deletes) and writes updating results as upserts and tombstones.
//!
//! ```
//! use weir_engine::api::StreamExecutionEnvironment;
//! use weir_sql::connectors::Connectors;
//!
//! let mut connectors = Connectors::builtin();
//! weir_kafka::sql::register(&mut connectors).unwrap();
//! let env = StreamExecutionEnvironment::new();
//! // Planning checks the options; nothing connects until the job runs.
//! let planned = weir_sql::plan_with(&env, "
//!   CREATE TABLE clicks (user_id BIGINT, url STRING) WITH ('connector' = 'kafka',
//!     'topic' = 'clicks', 'properties.bootstrap.servers' = 'kafka:9092', 'format' = 'json');
//!   CREATE TABLE per_user (user_id BIGINT, clicks BIGINT, PRIMARY KEY (user_id) NOT ENFORCED)
//!   WITH ('connector' = 'upsert-kafka', 'topic' = 'clicks-per-user',
//!     'properties.bootstrap.servers' = 'kafka:9092', 'key.format' = 'json',
//!     'value.format' = 'json');
//!   INSERT INTO per_user SELECT user_id, COUNT(*) FROM clicks GROUP BY user_id;
//! ", &weir_sql::udf::Registry::new(), &connectors).unwrap();
//! assert!(planned.explain().contains("connector=upsert-kafka"));
//! ```

use crate::{
    DeliveryGuarantee, KafkaRecord, KafkaSink, KafkaSource, Partitioner, ProducedRecord,
    StartingOffsets, StoppingOffsets,
};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use weir_engine::api::{
    Collector, DataStream, KeyedContext, KeyedProcessFunction, RuntimeContext,
    StreamExecutionEnvironment,
};
use weir_engine::state::{StateDescriptor, ValueState};
use weir_sql::changelog::RowKind;
use weir_sql::connectors::{
    ConnectorFactory, Connectors, DuplicateConnector, Options, PhysicalColumn,
};
use weir_sql::format::{FORMATS, Format, RecordDecoder};
use weir_sql::{Result, Row, SqlError, SqlType, Value};

/// Adds `kafka` and `upsert-kafka` to `connectors`.
pub fn register(connectors: &mut Connectors) -> std::result::Result<(), DuplicateConnector> {
    connectors.register(Arc::new(KafkaConnector { upsert: false }))?;
    connectors.register(Arc::new(KafkaConnector { upsert: true }))
}

/// Metadata a Kafka table can read; only `timestamp` is also written.
const METADATA: &[&str] = &[
    "topic",
    "partition",
    "offset",
    "timestamp",
    "headers",
    "key",
];

/// `kafka` (append-only) or `upsert-kafka` (a changelog keyed by the primary key).
struct KafkaConnector {
    upsert: bool,
}

/// Options both connectors take.
const COMMON_OPTIONS: &[&str] = &[
    "topic",
    "key.format",
    "value.format",
    "value.fields-include",
    "sink.delivery-guarantee",
    "sink.transactional-id-prefix",
];

/// Options both connectors take for a bounded read.
const BOUNDED_OPTIONS: &[&str] = &[
    "scan.bounded.mode",
    "scan.bounded.timestamp-millis",
    "scan.bounded.specific-offsets",
];

/// Options of `kafka` only (`upsert-kafka` reads a whole topic from its start and keys by
/// the primary key).
const KAFKA_OPTIONS: &[&str] = &[
    "topic-pattern",
    "format",
    "key.fields",
    "scan.startup.mode",
    "scan.startup.timestamp-millis",
    "scan.startup.specific-offsets",
    "scan.topic-partition-discovery.interval",
    "sink.partitioner",
];

/// Where one column of a row comes from.
#[derive(Debug, Clone, Copy)]
enum Slot {
    /// The n-th decoded key value.
    Key(usize),
    /// The n-th decoded value value.
    Value(usize),
    /// Record metadata.
    Meta(Meta),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Meta {
    Topic,
    Partition,
    Offset,
    Timestamp,
    Headers,
    Key,
}

impl Meta {
    fn named(key: &str) -> Meta {
        match key {
            "topic" => Meta::Topic,
            "partition" => Meta::Partition,
            "offset" => Meta::Offset,
            "timestamp" => Meta::Timestamp,
            "headers" => Meta::Headers,
            _ => Meta::Key,
        }
    }

    /// The type a column of this metadata must have.
    fn ty(self) -> SqlType {
        match self {
            Meta::Topic | Meta::Headers | Meta::Key => SqlType::String,
            // Flink's partition is INT; BIGINT columns, which scripts declared before INT
            // was a type of its own, read it too (see `fits`).
            Meta::Partition => SqlType::Int,
            Meta::Offset => SqlType::BigInt,
            Meta::Timestamp => SqlType::Timestamp,
        }
    }

    /// Whether a column of type `ty` can hold this metadata.
    fn fits(self, ty: SqlType) -> bool {
        ty == self.ty() || (self == Meta::Partition && ty == SqlType::BigInt)
    }

    fn value(self, r: &KafkaRecord<'_>) -> Value {
        match self {
            Meta::Topic => Value::Str(r.topic.to_string()),
            Meta::Partition => Value::Int(i64::from(r.partition)),
            Meta::Offset => Value::Int(r.offset),
            Meta::Timestamp => r.timestamp.map_or(Value::Null, Value::Ts),
            Meta::Key => r.key.map_or(Value::Null, |k| {
                Value::Str(String::from_utf8_lossy(k).into_owned())
            }),
            Meta::Headers => {
                let obj: serde_json::Map<String, serde_json::Value> = r
                    .headers
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.to_string(),
                            v.map_or(serde_json::Value::Null, |v| {
                                String::from_utf8_lossy(v).into_owned().into()
                            }),
                        )
                    })
                    .collect();
                Value::Str(serde_json::Value::Object(obj).to_string())
            }
        }
    }
}

/// How a table's columns lie in its records (checked when the table is declared).
#[derive(Clone)]
struct Layout {
    key_format: Option<Format>,
    value_format: Format,
    /// Indexes (into the table's columns) of the key's fields, in the key's order.
    key: Vec<usize>,
    /// Indexes of the value's fields, in table order.
    value: Vec<usize>,
}

impl Layout {
    fn of(c: &KafkaConnector, opts: &Options<'_>, cols: &[PhysicalColumn]) -> Result<Layout> {
        let format = |key: &str| -> Result<Option<Format>> {
            opts.get(key)
                .map(|f| {
                    Format::named(f).ok_or_else(|| {
                        opts.err(
                            key,
                            format!("format '{f}' is not supported; use one of {FORMATS}"),
                        )
                    })
                })
                .transpose()
        };
        let value_format = match (format("format")?, format("value.format")?) {
            (Some(_), Some(_)) => {
                return Err(opts.err(
                    "value.format",
                    "set either 'format' or 'value.format', not both",
                ));
            }
            (Some(f), None) | (None, Some(f)) => f,
            (None, None) => {
                return Err(SqlError::at(
                    opts.table_span,
                    format!(
                        "table '{}' needs the option '{}' (one of {FORMATS})",
                        opts.table,
                        if c.upsert { "value.format" } else { "format" }
                    ),
                ));
            }
        };
        let key_format = format("key.format")?;
        let position = |name: &str, what: &str, at: &str| -> Result<usize> {
            cols.iter()
                .position(|p| p.metadata.is_none() && (p.col.name == name || p.field == name))
                .ok_or_else(|| {
                    opts.err(
                        at,
                        format!(
                            "{what} '{name}' is not a physical column of table '{}'; its columns: {}",
                            opts.table,
                            cols.iter()
                                .filter(|p| p.metadata.is_none())
                                .map(|p| p.field.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    )
                })
        };
        let key: Vec<usize> = if c.upsert {
            if opts.primary_key.is_empty() {
                return Err(SqlError::at(
                    opts.table_span,
                    format!(
                        "table '{}': 'upsert-kafka' needs a PRIMARY KEY (…) NOT ENFORCED, which is the record key",
                        opts.table
                    ),
                ));
            }
            if key_format.is_none() {
                return Err(SqlError::at(
                    opts.table_span,
                    format!(
                        "table '{}' needs the option 'key.format' (one of {FORMATS}) for its primary key",
                        opts.table
                    ),
                ));
            }
            opts.primary_key
                .iter()
                .map(|k| position(&k.value, "PRIMARY KEY column", "connector"))
                .collect::<Result<_>>()?
        } else {
            match (opts.get("key.fields"), key_format) {
                (Some(f), Some(_)) => f
                    .split(';')
                    .map(|n| position(n.trim(), "key field", "key.fields"))
                    .collect::<Result<_>>()?,
                (Some(_), None) => {
                    return Err(opts.err(
                        "key.fields",
                        "'key.fields' needs 'key.format' to say how the key is encoded",
                    ));
                }
                (None, Some(_)) => {
                    return Err(opts.err(
                        "key.format",
                        "'key.format' needs 'key.fields': the columns the key holds, ';'-separated",
                    ));
                }
                (None, None) => Vec::new(),
            }
        };
        let except_key = match opts.get("value.fields-include").unwrap_or("ALL") {
            v if v.eq_ignore_ascii_case("ALL") => false,
            v if v.eq_ignore_ascii_case("EXCEPT_KEY") => true,
            other => {
                return Err(opts.err(
                    "value.fields-include",
                    format!("'value.fields-include' = '{other}'; use 'ALL' or 'EXCEPT_KEY'"),
                ));
            }
        };
        let value: Vec<usize> = (0..cols.len())
            .filter(|i| cols[*i].metadata.is_none() && !(except_key && key.contains(i)))
            .collect();
        let l = Layout {
            key_format,
            value_format,
            key,
            value,
        };
        if let Some(f) = l.key_format {
            f.check_columns(&l.columns(cols, &l.key))
                .map_err(|e| opts.err("key.format", format!("table '{}': {e}", opts.table)))?;
        }
        let at = if opts.get("format").is_some() {
            "format"
        } else {
            "value.format"
        };
        l.value_format
            .check_columns(&l.columns(cols, &l.value))
            .map_err(|e| opts.err(at, format!("table '{}': {e}", opts.table)))?;
        for p in cols {
            if let Some(m) = &p.metadata
                && !Meta::named(m).fits(p.col.ty)
            {
                return Err(SqlError::at(
                    p.span,
                    format!(
                        "column '{}': metadata '{m}' is {}, not {}",
                        p.field,
                        Meta::named(m).ty().sql_name(),
                        p.col.ty.sql_name()
                    ),
                ));
            }
        }
        Ok(l)
    }

    fn columns(&self, cols: &[PhysicalColumn], idx: &[usize]) -> Vec<PhysicalColumn> {
        idx.iter().map(|i| cols[*i].clone()).collect()
    }
}

/// The client options every `properties.*` option passes through, without the prefix.
fn properties<'a>(opts: &'a Options<'_>) -> impl Iterator<Item = (&'a str, &'a str)> {
    opts.map
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("properties.")?, v.as_str())))
}

/// `partition:0,offset:42;partition:1,offset:300` for `topic`.
fn specific_offsets(
    opts: &Options<'_>,
    key: &str,
    topic: Option<&str>,
) -> Result<BTreeMap<(String, i32), i64>> {
    let text = opts.required(key)?;
    let Some(topic) = topic else {
        return Err(opts.err(key, format!("'{key}' needs a table reading one 'topic'")));
    };
    let bad = || {
        opts.err(
            key,
            format!(
                "'{key}' = '{text}' is not a list like 'partition:0,offset:42;partition:1,offset:300'"
            ),
        )
    };
    let mut out = BTreeMap::new();
    for spec in text.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        let (p, o) = spec.split_once(',').ok_or_else(bad)?;
        let p = p.trim().strip_prefix("partition:").ok_or_else(bad)?;
        let o = o.trim().strip_prefix("offset:").ok_or_else(bad)?;
        out.insert(
            (topic.to_string(), p.trim().parse().map_err(|_| bad())?),
            o.trim().parse().map_err(|_| bad())?,
        );
    }
    Ok(out)
}

impl KafkaConnector {
    fn topics(&self, opts: &Options<'_>) -> Result<(Vec<String>, Option<String>)> {
        let topics: Vec<String> = opts
            .get("topic")
            .map(|t| {
                t.split(';')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default();
        let pattern = opts.get("topic-pattern").map(String::from);
        match (topics.is_empty(), &pattern) {
            (true, None) => Err(SqlError::at(
                opts.table_span,
                format!(
                    "table '{}' needs the option 'topic'{}",
                    opts.table,
                    if self.upsert {
                        ""
                    } else {
                        " or 'topic-pattern'"
                    }
                ),
            )),
            (false, Some(_)) => Err(opts.err(
                "topic-pattern",
                "set either 'topic' or 'topic-pattern', not both",
            )),
            _ => Ok((topics, pattern)),
        }
    }

    fn guarantee(&self, opts: &Options<'_>) -> Result<DeliveryGuarantee> {
        Ok(
            match opts
                .get("sink.delivery-guarantee")
                .unwrap_or("at-least-once")
            {
                "none" => DeliveryGuarantee::None,
                "at-least-once" => DeliveryGuarantee::AtLeastOnce,
                "exactly-once" => {
                    if opts.get("sink.transactional-id-prefix").is_none() {
                        return Err(opts.err(
                            "sink.delivery-guarantee",
                            "'sink.delivery-guarantee' = 'exactly-once' needs \
                         'sink.transactional-id-prefix' (unique per application on the cluster)",
                        ));
                    }
                    DeliveryGuarantee::ExactlyOnce
                }
                other => {
                    return Err(opts.err(
                    "sink.delivery-guarantee",
                    format!(
                        "'sink.delivery-guarantee' = '{other}'; use 'none', 'at-least-once' or 'exactly-once'"
                    ),
                ));
                }
            },
        )
    }

    fn starting(&self, opts: &Options<'_>, topics: &[String]) -> Result<StartingOffsets> {
        let group = opts.get("properties.group.id").is_some();
        let reset = match opts.get("properties.auto.offset.reset") {
            Some("latest") => StartingOffsets::Latest,
            _ => StartingOffsets::Earliest,
        };
        let single = (topics.len() == 1).then(|| topics[0].as_str());
        Ok(match opts.get("scan.startup.mode") {
            // Flink's default; without a group there is nothing committed to start from.
            None if !group => StartingOffsets::Earliest,
            None | Some("group-offsets") if group => StartingOffsets::Committed {
                reset: Box::new(reset),
            },
            Some("group-offsets") => {
                return Err(opts.err(
                    "scan.startup.mode",
                    "'scan.startup.mode' = 'group-offsets' needs 'properties.group.id'",
                ));
            }
            Some("earliest-offset") => StartingOffsets::Earliest,
            Some("latest-offset") => StartingOffsets::Latest,
            Some("timestamp") => StartingOffsets::Timestamp(
                opts.number("scan.startup.timestamp-millis")?
                    .ok_or_else(|| {
                        opts.err(
                        "scan.startup.mode",
                        "'scan.startup.mode' = 'timestamp' needs 'scan.startup.timestamp-millis'",
                    )
                    })?,
            ),
            Some("specific-offsets") => StartingOffsets::Specific(specific_offsets(
                opts,
                "scan.startup.specific-offsets",
                single,
            )?),
            Some(other) => {
                return Err(opts.err(
                    "scan.startup.mode",
                    format!(
                        "'scan.startup.mode' = '{other}'; use 'earliest-offset', 'latest-offset', \
                         'group-offsets', 'timestamp' or 'specific-offsets'"
                    ),
                ));
            }
            None => unreachable!("covered by the guards above"),
        })
    }

    fn stopping(&self, opts: &Options<'_>, topics: &[String]) -> Result<Option<StoppingOffsets>> {
        let single = (topics.len() == 1).then(|| topics[0].as_str());
        Ok(match opts.get("scan.bounded.mode").unwrap_or("unbounded") {
            "unbounded" => None,
            "latest-offset" => Some(StoppingOffsets::Latest),
            "timestamp" => Some(StoppingOffsets::Timestamp(
                opts.number("scan.bounded.timestamp-millis")?
                    .ok_or_else(|| {
                        opts.err(
                        "scan.bounded.mode",
                        "'scan.bounded.mode' = 'timestamp' needs 'scan.bounded.timestamp-millis'",
                    )
                    })?,
            )),
            "specific-offsets" => Some(StoppingOffsets::Specific(specific_offsets(
                opts,
                "scan.bounded.specific-offsets",
                single,
            )?)),
            other => {
                return Err(opts.err(
                    "scan.bounded.mode",
                    format!(
                        "'scan.bounded.mode' = '{other}'; use 'unbounded', 'latest-offset', \
                         'timestamp' or 'specific-offsets' ('group-offsets' is not supported yet)"
                    ),
                ));
            }
        })
    }

    fn partitioner(&self, opts: &Options<'_>) -> Result<Partitioner> {
        Ok(match opts.get("sink.partitioner").unwrap_or("default") {
            "default" => Partitioner::Default,
            "fixed" => Partitioner::Fixed,
            "round-robin" => {
                let next = Arc::new(AtomicU64::new(0));
                Partitioner::Custom(Arc::new(move |_, n| {
                    (next.fetch_add(1, Ordering::Relaxed) % n.max(1) as u64) as i32
                }))
            }
            other => {
                return Err(opts.err(
                    "sink.partitioner",
                    format!(
                        "'sink.partitioner' = '{other}'; use 'default', 'fixed' or 'round-robin'"
                    ),
                ));
            }
        })
    }

    /// The source builder with the options that do not depend on the row type.
    fn source_builder<T>(&self, opts: &Options<'_>) -> Result<crate::KafkaSourceBuilder<T>> {
        let (topics, pattern) = self.topics(opts)?;
        let mut b = KafkaSource::<T>::builder();
        for (k, v) in properties(opts) {
            b = match k {
                "bootstrap.servers" => b.bootstrap_servers(v),
                "group.id" => b.group_id(v),
                _ => b.property(k, v),
            };
        }
        b = match pattern {
            Some(p) => b.topic_pattern(p),
            None => b.topics(topics.iter().cloned()),
        };
        b = b.starting_offsets(if self.upsert {
            // A changelog is only whole from the topic's start.
            StartingOffsets::Earliest
        } else {
            self.starting(opts, &topics)?
        });
        if let Some(stop) = self.stopping(opts, &topics)? {
            b = b.bounded(stop);
        }
        if let Some(d) = opts.duration("scan.topic-partition-discovery.interval")? {
            b = b.partition_discovery_interval((!d.is_zero()).then_some(d));
        }
        Ok(b)
    }

    fn sink_builder<T: 'static>(&self, opts: &Options<'_>) -> Result<crate::KafkaSinkBuilder<T>> {
        let (topics, pattern) = self.topics(opts)?;
        if pattern.is_some() || topics.len() != 1 {
            return Err(opts.err(
                if pattern.is_some() {
                    "topic-pattern"
                } else {
                    "topic"
                },
                format!(
                    "table '{}' is written to, which needs exactly one 'topic'",
                    opts.table
                ),
            ));
        }
        let mut b = KafkaSink::<T>::builder()
            .topic(&topics[0])
            .delivery_guarantee(self.guarantee(opts)?);
        if let Some(p) = opts.get("sink.transactional-id-prefix") {
            b = b.transactional_id_prefix(p);
        }
        if !self.upsert {
            b = b.partitioner(self.partitioner(opts)?);
        }
        for (k, v) in properties(opts) {
            b = match k {
                "bootstrap.servers" => b.bootstrap_servers(v),
                // Consumer settings that librdkafka's producer would warn about.
                "group.id" | "auto.offset.reset" | "isolation.level" => b,
                _ => b.property(k, v),
            };
        }
        Ok(b)
    }
}

fn kafka_error(opts: &Options<'_>, e: crate::KafkaError) -> SqlError {
    SqlError::at(opts.table_span, format!("table '{}': {e}", opts.table))
}

/// Decodes records into rows (one per source: the JSON decoder keeps state, so readers
/// share it behind a lock, uncontended at one reader per core).
struct RowDecoder {
    table: String,
    key: Option<Mutex<RecordDecoder>>,
    value: Mutex<RecordDecoder>,
    slots: Vec<Slot>,
}

impl RowDecoder {
    fn new(
        table: &str,
        layout: &Layout,
        cols: &[PhysicalColumn],
        read: &[bool],
        whole_key: bool,
    ) -> RowDecoder {
        let in_value = |i: usize| layout.value.contains(&i);
        let key_read: Vec<bool> = layout
            .key
            .iter()
            .map(|&i| whole_key || (read[i] && !in_value(i)))
            .collect();
        let value_read: Vec<bool> = layout.value.iter().map(|&i| read[i]).collect();
        let mut slots = Vec::new();
        for (i, c) in cols.iter().enumerate() {
            if !read[i] {
                continue;
            }
            slots.push(if let Some(m) = &c.metadata {
                Slot::Meta(Meta::named(m))
            } else if let Some(j) = layout.value.iter().position(|&v| v == i) {
                Slot::Value(value_read[..j].iter().filter(|r| **r).count())
            } else {
                let j = layout
                    .key
                    .iter()
                    .position(|&k| k == i)
                    .expect("a key field");
                Slot::Key(key_read[..j].iter().filter(|r| **r).count())
            });
        }
        RowDecoder {
            table: table.to_string(),
            key: layout
                .key_format
                .filter(|_| key_read.contains(&true))
                .map(|f| {
                    Mutex::new(f.decoder(table, &layout.columns(cols, &layout.key), &key_read))
                }),
            value: Mutex::new(layout.value_format.decoder(
                table,
                &layout.columns(cols, &layout.value),
                &value_read,
            )),
            slots,
        }
    }

    /// The key's values (empty when the key is not decoded).
    fn key(&self, r: &KafkaRecord<'_>) -> std::result::Result<Vec<Value>, String> {
        let Some(d) = &self.key else {
            return Ok(Vec::new());
        };
        let Some(bytes) = r.key else {
            return Err(format!("table '{}': the record has no key", self.table));
        };
        d.lock()
            .expect("a decoder panicked")
            .decode(bytes)
            .map_err(|e| self.message("the key: ", &e))
    }

    /// A decoder's message with the table's name in front, once (the JSON decoder's field
    /// errors name it already).
    fn message(&self, part: &str, e: &str) -> String {
        let prefix = format!("table '{}': ", self.table);
        format!("{prefix}{part}{}", e.strip_prefix(&prefix).unwrap_or(e))
    }

    /// The row of a record with a value, given its key's values.
    fn row(
        &self,
        r: &KafkaRecord<'_>,
        value: &[u8],
        key: &[Value],
    ) -> std::result::Result<Row, String> {
        let vals = self
            .value
            .lock()
            .expect("a decoder panicked")
            .decode(value)
            .map_err(|e| self.message("", &e))?;
        Ok(Row(self
            .slots
            .iter()
            .map(|s| match *s {
                Slot::Key(j) => key[j].clone(),
                Slot::Value(j) => vals[j].clone(),
                Slot::Meta(m) => m.value(r),
            })
            .collect()))
    }
}

/// Turns an upsert stream (per key: a new value, or a tombstone) into a changelog, as
/// Flink's ChangelogNormalize does: the first value of a key inserts, a different later one
/// retracts the previous (`-U`) and adds itself (`+U`), a tombstone deletes the last value.
#[derive(Clone)]
struct Normalize {
    last: ValueState<Row>,
}

impl Normalize {
    fn emit(row: &Row, kind: RowKind, out: &mut Collector<Row>) {
        let mut v = row.0.clone();
        v.push(Value::Int(kind as i64));
        out.collect(Row(v));
    }
}

impl KeyedProcessFunction for Normalize {
    type Key = Vec<Value>;
    type In = (Vec<Value>, Option<Row>);
    type Out = Row;

    fn open(&mut self, ctx: &mut RuntimeContext<'_>) -> weir_engine::Result<()> {
        self.last = ctx.value_state(StateDescriptor::new("upsert-last-row"));
        Ok(())
    }

    fn process_element(
        &mut self,
        (_, row): Self::In,
        ctx: &mut KeyedContext<'_, Vec<Value>>,
        out: &mut Collector<Row>,
    ) -> weir_engine::Result<()> {
        let last = self.last.value(ctx);
        match (last, row) {
            (None, Some(new)) => {
                Self::emit(&new, RowKind::Insert, out);
                self.last.update(ctx, new);
            }
            (Some(old), Some(new)) => {
                if old != new {
                    Self::emit(&old, RowKind::UpdateBefore, out);
                    Self::emit(&new, RowKind::UpdateAfter, out);
                    self.last.update(ctx, new);
                }
            }
            (Some(old), None) => {
                Self::emit(&old, RowKind::Delete, out);
                self.last.clear(ctx);
            }
            (None, None) => {}
        }
        Ok(())
    }
}

impl ConnectorFactory for KafkaConnector {
    fn name(&self) -> &str {
        if self.upsert { "upsert-kafka" } else { "kafka" }
    }
    fn reads(&self) -> bool {
        true
    }
    fn writes(&self) -> bool {
        true
    }
    fn option_keys(&self, _: &[PhysicalColumn]) -> Vec<String> {
        let extra: &[&str] = if self.upsert { &[] } else { KAFKA_OPTIONS };
        COMMON_OPTIONS
            .iter()
            .chain(BOUNDED_OPTIONS)
            .chain(extra)
            .map(|k| k.to_string())
            .collect()
    }
    fn option_prefixes(&self) -> &[&str] {
        &["properties."]
    }
    fn metadata_keys(&self) -> &[&str] {
        METADATA
    }
    fn consumes_updates(&self) -> bool {
        self.upsert
    }
    fn produces_updates(&self) -> bool {
        self.upsert
    }

    fn validate(&self, opts: &Options<'_>, cols: &[PhysicalColumn]) -> Result<()> {
        if let (false, Some(k)) = (self.upsert, opts.primary_key.first()) {
            // Flink refuses it too: an append-only topic cannot honour a key.
            return Err(SqlError::at(
                k.span,
                format!(
                    "table '{}': the 'kafka' connector does not support a PRIMARY KEY, as it cannot \
                     guarantee one per key; use 'upsert-kafka' for a table keyed by it",
                    opts.table
                ),
            ));
        }
        Layout::of(self, opts, cols)?;
        if opts.get("properties.bootstrap.servers").is_none() {
            return Err(SqlError::at(
                opts.table_span,
                format!(
                    "table '{}' needs the option 'properties.bootstrap.servers'",
                    opts.table
                ),
            ));
        }
        let (topics, _) = self.topics(opts)?;
        self.stopping(opts, &topics)?;
        if !self.upsert {
            self.starting(opts, &topics)?;
            self.partitioner(opts)?;
            opts.duration("scan.topic-partition-discovery.interval")?;
        }
        self.guarantee(opts)?;
        Ok(())
    }

    fn source(
        &self,
        env: &StreamExecutionEnvironment,
        opts: &Options<'_>,
        cols: &[PhysicalColumn],
        read: &[bool],
        _row_width: usize,
        uid: &str,
    ) -> Result<DataStream<Row>> {
        let layout = Layout::of(self, opts, cols)?;
        let name = format!("Source: {} ({})", opts.table, self.name());
        let d = Arc::new(RowDecoder::new(
            opts.table,
            &layout,
            cols,
            read,
            self.upsert,
        ));
        if self.upsert {
            let source = self
                .source_builder::<(Vec<Value>, Option<Row>)>(opts)?
                .deserializer(move |r| {
                    let key = d.key(r)?;
                    let row = r.value.map(|v| d.row(r, v, &key)).transpose()?;
                    Ok((key, row))
                })
                .build()
                .map_err(|e| kafka_error(opts, e))?;
            return Ok(env
                .from_source(source, None, &name)
                .uid(uid)
                .key_by(|r: &(Vec<Value>, Option<Row>)| r.0.clone())
                .process(Normalize {
                    last: ValueState::default(),
                })
                .name(&format!("ChangelogNormalize: {}", opts.table))
                .uid(&format!("{uid}-normalize")));
        }
        let source = self
            .source_builder::<Option<Row>>(opts)?
            .deserializer(move |r| {
                // A tombstone has no row (Flink's formats skip it too).
                let Some(v) = r.value else { return Ok(None) };
                let key = d.key(r)?;
                d.row(r, v, &key).map(Some)
            })
            .build()
            .map_err(|e| kafka_error(opts, e))?;
        Ok(env
            .from_source(source, None, &name)
            .uid(uid)
            .flat_map(|r: Option<Row>| r)
            .uid(&format!("{uid}-tombstones")))
    }

    fn sink(
        &self,
        stream: DataStream<Row>,
        opts: &Options<'_>,
        cols: &[PhysicalColumn],
        uid: &str,
        updating: bool,
    ) -> Result<()> {
        let layout = Layout::of(self, opts, cols)?;
        let mut timestamp = None;
        for (i, c) in cols.iter().enumerate() {
            match c.metadata.as_deref() {
                None => {}
                Some("timestamp") => timestamp = Some(i),
                Some(m) => {
                    return Err(SqlError::at(
                        c.span,
                        format!(
                            "column '{}': metadata '{m}' is read only; declare it VIRTUAL, or \
                             write to a table without it",
                            c.field
                        ),
                    ));
                }
            }
        }
        let name = format!("Sink: {} ({})", opts.table, self.name());
        let (key_cols, value_cols) = (
            layout.columns(cols, &layout.key),
            layout.columns(cols, &layout.value),
        );
        let (key_idx, value_idx) = (layout.key.clone(), layout.value.clone());
        let (key_format, value_format) = (layout.key_format, layout.value_format);
        let width = cols.len();
        let sink = self
            .sink_builder::<Row>(opts)?
            .record_serializer(move |r: &Row| {
                let kind = if updating {
                    match r.0.get(width) {
                        Some(Value::Int(3)) => RowKind::Delete,
                        _ => RowKind::Insert,
                    }
                } else {
                    RowKind::Insert
                };
                let pick = |idx: &[usize]| idx.iter().map(|&i| &r.0[i]).collect::<Vec<_>>();
                ProducedRecord {
                    topic: None,
                    key: key_format.map(|f| f.encode(&key_cols, &pick(&key_idx))),
                    // A deletion is a tombstone: the key with no value.
                    value: (kind != RowKind::Delete)
                        .then(|| value_format.encode(&value_cols, &pick(&value_idx))),
                    // As Flink SQL: the `timestamp` column if the table has one, else the
                    // time of writing (a NULL too), never the row's event time.
                    timestamp: Some(match timestamp.map(|i| &r.0[i]) {
                        Some(Value::Ts(t)) => *t,
                        _ => weir_engine::time::now_ms(),
                    }),
                }
            })
            .build()
            .map_err(|e| kafka_error(opts, e))?;
        let stream = if updating {
            // An upsert replaces the key's value: the retraction before it says nothing new.
            stream
                .filter(move |r: &Row| {
                    !matches!(r.0.get(width), Some(Value::Int(k)) if *k == RowKind::UpdateBefore as i64)
                })
                .uid(&format!("{uid}-upserts"))
        } else {
            stream
        };
        stream.sink_to(sink).name(&name).uid(uid);
        Ok(())
    }
}
