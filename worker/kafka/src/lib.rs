//! Weir's Kafka connector for the DataStream API: [`KafkaSource`] reads topics (or a topic
//! pattern) with its offsets in Weir's checkpoints, and [`KafkaSink`] writes with delivery
//! guarantee `none`, `at-least-once` or `exactly-once` (Kafka transactions committed when a
//! checkpoint completes, as Flink's two-phase commit does). `docs/kafka.md` is the user guide.
//!
//! Both sit on librdkafka (the `rdkafka` crate, built from its bundled source) through its
//! synchronous clients, since the engine calls readers and writers on task threads. What
//! librdkafka cannot do — finish a transaction another producer instance left open — a
//! small client of the Kafka protocol does ([`protocol`]).
//!
//! ```no_run
//! use std::time::Duration;
//! use weir_engine::api::StreamExecutionEnvironment;
//! use weir_engine::time::WatermarkStrategy;
//! use weir_kafka::{DeliveryGuarantee, KafkaSink, KafkaSource, StartingOffsets};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let source = KafkaSource::<String>::builder()
//!     .bootstrap_servers("127.0.0.1:9092")
//!     .topics(["clicks"])
//!     .group_id("click-counter")
//!     .starting_offsets(StartingOffsets::Earliest)
//!     .value_deserializer(|v| Ok(String::from_utf8_lossy(v).into_owned()))
//!     .build()?;
//! let sink = KafkaSink::<String>::builder()
//!     .bootstrap_servers("127.0.0.1:9092")
//!     .topic("clicks-upper")
//!     .value_serializer(|s: &String| s.to_uppercase().into_bytes())
//!     .delivery_guarantee(DeliveryGuarantee::ExactlyOnce)
//!     .transactional_id_prefix("click-counter")
//!     .build()?;
//! let env = StreamExecutionEnvironment::new();
//! env.from_source(source, Some(WatermarkStrategy::for_bounded_out_of_orderness(Duration::from_secs(5))), "clicks")
//!     .uid("clicks")
//!     .sink_to(sink)
//!     .uid("clicks-upper");
//! env.execute("upper")?;
//! # Ok(())
//! # }
//! ```

mod commit;
pub mod metrics;
mod protocol;
mod sink;
mod source;
#[cfg(feature = "sql")]
pub mod sql;
#[cfg(feature = "test-support")]
pub mod testing;

pub use sink::{DeliveryGuarantee, KafkaSink, KafkaSinkBuilder, Partitioner, ProducedRecord};
pub use source::{
    Headers, KafkaRecord, KafkaSource, KafkaSourceBuilder, StartingOffsets, StoppingOffsets,
    split_owner,
};

/// What went wrong in the Kafka connector. Every message names the offending value (broker
/// addresses, topic, partition, offset, option) and, where there is one, the fix.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    /// A builder option is missing.
    #[error("{what} is not set: call {call}")]
    Missing {
        /// What is missing.
        what: &'static str,
        /// The builder method that sets it.
        call: &'static str,
    },
    /// An option has a value Weir or librdkafka refuses.
    #[error("Kafka option {key} = '{value}': {reason}")]
    Option {
        /// The option.
        key: String,
        /// Its value.
        value: String,
        /// Why it is refused.
        reason: String,
    },
    /// No broker answered within the timeout.
    #[error(
        "cannot reach the Kafka brokers at {servers} within {timeout_ms} ms; check \
         bootstrap.servers and that the brokers are up"
    )]
    Unreachable {
        /// `bootstrap.servers`.
        servers: String,
        /// How long it tried.
        timeout_ms: u64,
        /// librdkafka's error.
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// The brokers refused the client's credentials (SASL).
    #[error(
        "authentication to the Kafka brokers at {servers} failed (security.protocol \
         {protocol}, sasl.mechanism {mechanism}): {reason}; check sasl.username and \
         sasl.password"
    )]
    Authentication {
        /// `bootstrap.servers` (or the broker that refused).
        servers: String,
        /// `security.protocol`.
        protocol: String,
        /// `sasl.mechanism`.
        mechanism: String,
        /// What the broker or librdkafka said.
        reason: String,
    },
    /// A topic the source reads does not exist.
    #[error("topic '{topic}' does not exist on {servers}")]
    UnknownTopic {
        /// The topic.
        topic: String,
        /// `bootstrap.servers`.
        servers: String,
    },
    /// A record could not be decoded and `pipeline.decode-error-policy` is `fail`.
    #[error(
        "cannot decode the record at topic '{topic}' partition {partition} offset {offset}: \
         {reason} (set pipeline.decode-error-policy: skip to skip such records)"
    )]
    Decode {
        /// Its topic.
        topic: String,
        /// Its partition.
        partition: i32,
        /// Its offset.
        offset: i64,
        /// What the deserializer said.
        reason: String,
    },
    /// A librdkafka call failed.
    #[error("{action}")]
    Client {
        /// What was being attempted, with its subject.
        action: String,
        /// librdkafka's error.
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// A record could not be written.
    #[error("cannot write a record to topic '{topic}': {reason}")]
    Delivery {
        /// Its topic.
        topic: String,
        /// librdkafka's report.
        reason: String,
    },
    /// The connection to the broker broke while a transaction was open or waiting for its
    /// checkpoint: a broker that restarts may abort it, and committing it would then report
    /// success for records that are gone.
    #[error(
        "the connection to the Kafka broker {servers} was lost while transaction \
         '{transactional_id}' was open (a broker restart may have aborted it): it is not \
         committed, and the job restarts from its last completed checkpoint"
    )]
    TransactionInterrupted {
        /// The brokers.
        servers: String,
        /// The transaction's id.
        transactional_id: String,
    },
    /// The raw protocol client got an unexpected answer.
    #[error("Kafka broker {broker}: {reason}")]
    Protocol {
        /// The broker's address.
        broker: String,
        /// What happened.
        reason: String,
    },
    /// A transaction could not be finished after a restore.
    #[error(
        "cannot commit the pre-committed transaction of transactional id '{transactional_id}' \
         (producer id {producer_id}, epoch {epoch}, checkpoint {checkpoint}): {reason}"
    )]
    Recover {
        /// The transactional id.
        transactional_id: String,
        /// Its producer id.
        producer_id: i64,
        /// Its epoch.
        epoch: i16,
        /// The checkpoint that pre-committed it.
        checkpoint: u64,
        /// What the broker answered.
        reason: String,
    },
    /// `transaction.timeout.ms` is too short for the job's checkpointing and restarts.
    #[error(
        "transaction.timeout.ms is {timeout_ms} ms, but an exactly-once Kafka sink needs more \
         than the checkpoint interval ({interval_ms} ms) plus the longest restart delay \
         ({restart_ms} ms), or a broker may abort a transaction a completed checkpoint \
         covers; raise it with .property(\"transaction.timeout.ms\", …) (at most the \
         broker's transaction.max.timeout.ms)"
    )]
    TransactionTimeout {
        /// `transaction.timeout.ms`.
        timeout_ms: u64,
        /// `execution.checkpointing.interval`.
        interval_ms: u64,
        /// The restart strategy's longest delay.
        restart_ms: u64,
    },
    /// Every transactional id of the pool holds a transaction waiting for its checkpoint.
    #[error(
        "all {size} transactional ids of sink subtask {subtask} hold transactions waiting for \
         their checkpoint to complete (are checkpoints failing?); raise \
         .transaction_pool_size(…) if checkpoints overlap"
    )]
    PoolExhausted {
        /// The pool size.
        size: u32,
        /// The subtask.
        subtask: usize,
    },
    /// Checkpointed connector state cannot be read.
    #[error("the Kafka {what} state in the checkpoint is corrupt: {reason}")]
    State {
        /// `source` or `sink`.
        what: &'static str,
        /// The decoder's message.
        reason: String,
    },
}

impl From<KafkaError> for weir_engine::Error {
    fn from(e: KafkaError) -> Self {
        weir_engine::Error::Connector {
            connector: "kafka",
            source: Box::new(e),
        }
    }
}

/// `bootstrap.servers` plus the client properties passed through to librdkafka, shared by
/// the source and sink builders.
#[derive(Debug, Clone, Default)]
struct ClientOptions {
    servers: String,
    properties: Vec<(String, String)>,
}

impl ClientOptions {
    /// The value of property `key` set by the user, if any.
    fn get(&self, key: &str) -> Option<&str> {
        self.properties
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// A librdkafka configuration: `defaults`, then the user's properties (which win).
    fn config(&self, defaults: &[(&str, &str)]) -> rdkafka::ClientConfig {
        let mut c = rdkafka::ClientConfig::new();
        c.set("bootstrap.servers", &self.servers);
        for (k, v) in defaults {
            c.set(*k, *v);
        }
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        c
    }

    /// `security.protocol` (librdkafka's default `plaintext`), upper-cased as Kafka writes it.
    fn security_protocol(&self) -> String {
        self.get("security.protocol")
            .unwrap_or("plaintext")
            .to_ascii_uppercase()
    }

    /// `sasl.mechanism` (`sasl.mechanisms` is librdkafka's older name; default `GSSAPI`).
    fn sasl_mechanism(&self) -> String {
        self.get("sasl.mechanism")
            .or(self.get("sasl.mechanisms"))
            .unwrap_or("GSSAPI")
            .to_ascii_uppercase()
    }

    /// An [`KafkaError::Authentication`] for a refusal `reason`.
    fn authentication_error(&self, reason: String) -> KafkaError {
        KafkaError::Authentication {
            servers: self.servers.clone(),
            protocol: self.security_protocol(),
            mechanism: self.sasl_mechanism(),
            reason,
        }
    }

    /// How long connecting may take before the broker counts as unreachable
    /// (`socket.connection.setup.timeout.ms`, librdkafka's default 30 s).
    fn connect_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(
            self.get("socket.connection.setup.timeout.ms")
                .and_then(|v| v.parse().ok())
                .unwrap_or(30_000),
        )
    }

    fn check(&self) -> Result<(), KafkaError> {
        if self.servers.trim().is_empty() {
            return Err(KafkaError::Missing {
                what: "bootstrap servers",
                call: ".bootstrap_servers(\"host:port,…\")",
            });
        }
        Ok(())
    }
}

/// The first authentication failure librdkafka reported for one client. librdkafka retries
/// a refused login forever and shows the application only timeouts (a metadata request
/// that gets no answer, a record never delivered); its log line is the one place that says
/// why, so the log callback records it and the source and sink fail with it at once. (The
/// `rdkafka` crate queues log lines: a client's polls deliver them.)
#[derive(Default)]
struct AuthWatch(std::sync::Mutex<Option<String>>);

impl AuthWatch {
    /// Looks at one of librdkafka's log lines (facility `FAIL`: a connection failed).
    fn observe(&self, fac: &str, message: &str) {
        // "[thrd:…]: sasl_plaintext://h:p/bootstrap: SASL authentication error:
        // Authentication failed: Invalid username or password (after 3ms in state
        // AUTH_REQ)", "… SASL handshake failed …", "… SASL mechanism PLAIN not supported by
        // broker": the thread's name (left out) and the broker come first.
        let refused = ["SASL authentication", "SASL handshake", "SASL mechanism"];
        if fac == "FAIL" && refused.iter().any(|r| message.contains(r)) {
            let message = match message.strip_prefix("[thrd:") {
                Some(rest) => rest.split_once("]: ").map_or(message, |(_, m)| m),
                None => message,
            };
            let mut first = self.0.lock().expect("never poisoned");
            if first.is_none() {
                *first = Some(message.to_string());
            }
        }
    }

    /// The refusal librdkafka reported, if any.
    fn failure(&self) -> Option<String> {
        self.0.lock().expect("never poisoned").clone()
    }
}

/// librdkafka's log line to tracing, at its level.
fn log_librdkafka(level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
    use rdkafka::config::RDKafkaLogLevel as L;
    match level {
        L::Emerg | L::Alert | L::Critical | L::Error => {
            tracing::error!("librdkafka: {fac} {message}")
        }
        L::Warning => tracing::warn!("librdkafka: {fac} {message}"),
        L::Notice | L::Info => tracing::info!("librdkafka: {fac} {message}"),
        L::Debug => tracing::debug!("librdkafka: {fac} {message}"),
    }
}

/// A client creation error: names the property librdkafka refused.
fn client_error(what: &str, e: rdkafka::error::KafkaError) -> KafkaError {
    KafkaError::Client {
        action: format!("cannot create the Kafka {what} (check the client properties)"),
        source: e,
    }
}
