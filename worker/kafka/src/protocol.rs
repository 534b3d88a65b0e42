//! A tiny client of the Kafka wire protocol for what librdkafka cannot do: finish a
//! transaction that another producer instance (a previous run) pre-committed (`EndTxn` with
//! the producer id and epoch stored in the checkpoint), fence a transactional id
//! (`InitProducerId`), and, for tests, create topics and add partitions. It logs in with
//! SASL/PLAIN when the client properties say `security.protocol=SASL_PLAINTEXT` (other
//! protocols and mechanisms are refused with an error saying so).
//!
//! Only non-flexible request versions are used (classic encoding: big-endian integers,
//! `i16`-prefixed strings, `i32`-prefixed arrays): of the versions of a request that share
//! one encoding, the newest the broker lists in `ApiVersions` is sent.

use crate::{ClientOptions, KafkaError};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const API_VERSIONS: i16 = 18;
const FIND_COORDINATOR: i16 = 10;
const INIT_PRODUCER_ID: i16 = 22;
const END_TXN: i16 = 26;
// Topic administration serves only the test broker's setup (`testing::Broker`).
#[cfg(feature = "test-support")]
const CREATE_TOPICS: i16 = 19;
#[cfg(feature = "test-support")]
const CREATE_PARTITIONS: i16 = 37;
const SASL_HANDSHAKE: i16 = 17;
const SASL_AUTHENTICATE: i16 = 36;

/// Error codes this client acts on (Kafka's `Errors` enum).
pub(crate) mod code {
    pub const NONE: i16 = 0;
    pub const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
    pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
    pub const NOT_COORDINATOR: i16 = 16;
    #[cfg(feature = "test-support")]
    pub const TOPIC_ALREADY_EXISTS: i16 = 36;
    pub const INVALID_PRODUCER_EPOCH: i16 = 47;
    pub const INVALID_TXN_STATE: i16 = 48;
    pub const INVALID_PRODUCER_ID_MAPPING: i16 = 49;
    pub const UNSUPPORTED_SASL_MECHANISM: i16 = 33;
    pub const CONCURRENT_TRANSACTIONS: i16 = 51;
    pub const PRODUCER_FENCED: i16 = 90;
}

/// Errors worth retrying: the coordinator is moving or still busy with the previous
/// transaction's markers.
fn retriable(code: i16) -> bool {
    matches!(
        code,
        code::COORDINATOR_LOAD_IN_PROGRESS
            | code::COORDINATOR_NOT_AVAILABLE
            | code::NOT_COORDINATOR
            | code::CONCURRENT_TRANSACTIONS
    )
}

/// How long retriable errors are retried.
const RETRY_FOR: Duration = Duration::from_secs(30);

/// How a connection logs in: as the librdkafka clients of the same source or sink do.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Login {
    /// `security.protocol=PLAINTEXT`: no login.
    None,
    /// `SASL_PLAINTEXT` with `sasl.mechanism=PLAIN`.
    Plain { username: String, password: String },
}

impl Login {
    /// The login the client properties ask for; protocols and mechanisms this client does
    /// not speak (TLS, SCRAM, GSSAPI, OAUTHBEARER) are refused naming the property.
    pub(crate) fn of(client: &ClientOptions) -> Result<Login, KafkaError> {
        let unsupported = |key: &str, value: String| KafkaError::Option {
            key: key.into(),
            value,
            reason: "the exactly-once Kafka sink commits and fences transactions after a \
                     restore with its own Kafka protocol client, which speaks PLAINTEXT and \
                     SASL_PLAINTEXT with sasl.mechanism PLAIN only"
                .into(),
        };
        match client.security_protocol().as_str() {
            "PLAINTEXT" => Ok(Login::None),
            "SASL_PLAINTEXT" => {
                let mechanism = client.sasl_mechanism();
                if mechanism != "PLAIN" {
                    return Err(unsupported("sasl.mechanism", mechanism));
                }
                let get = |key: &'static str| {
                    client
                        .get(key)
                        .map(str::to_string)
                        .ok_or(KafkaError::Missing {
                            what: key,
                            call: ".property(…) with SASL/PLAIN",
                        })
                };
                Ok(Login::Plain {
                    username: get("sasl.username")?,
                    password: get("sasl.password")?,
                })
            }
            other => Err(unsupported("security.protocol", other.to_string())),
        }
    }
}

/// One connection to one broker.
pub(crate) struct Connection {
    stream: TcpStream,
    addr: String,
    login: Login,
    correlation: i32,
    /// `(api key, min version, max version)` the broker supports.
    versions: Vec<(i16, i16, i16)>,
}

impl Connection {
    /// Connects to the first reachable broker of a `host:port,host:port` list.
    pub(crate) fn bootstrap(
        servers: &str,
        login: &Login,
        timeout: Duration,
    ) -> Result<Connection, KafkaError> {
        let mut last = None;
        for addr in servers.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match Connection::open(addr, login, timeout) {
                // Refused credentials are not a broker that is down: another would refuse
                // them too.
                Err(e @ KafkaError::Authentication { .. }) => return Err(e),
                Ok(c) => return Ok(c),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| KafkaError::Option {
            key: "bootstrap.servers".into(),
            value: servers.into(),
            reason: "no broker address given".into(),
        }))
    }

    fn open(addr: &str, login: &Login, timeout: Duration) -> Result<Connection, KafkaError> {
        let unreachable = |e: std::io::Error| KafkaError::Protocol {
            broker: addr.to_string(),
            reason: format!("cannot connect: {e}"),
        };
        let sock = std::net::ToSocketAddrs::to_socket_addrs(addr)
            .map_err(unreachable)?
            .next()
            .ok_or_else(|| KafkaError::Protocol {
                broker: addr.to_string(),
                reason: "the address resolves to nothing".into(),
            })?;
        let stream = TcpStream::connect_timeout(&sock, timeout).map_err(unreachable)?;
        stream
            .set_read_timeout(Some(timeout))
            .map_err(unreachable)?;
        stream
            .set_write_timeout(Some(timeout))
            .map_err(unreachable)?;
        let _ = stream.set_nodelay(true);
        let mut c = Connection {
            stream,
            addr: addr.to_string(),
            login: login.clone(),
            correlation: 0,
            versions: Vec::new(),
        };
        let mut r = c.call(API_VERSIONS, 0, &[])?;
        let err = r.i16()?;
        if err != code::NONE {
            return Err(c.error(format!("ApiVersions answered error code {err}")));
        }
        for _ in 0..r.i32()? {
            c.versions.push((r.i16()?, r.i16()?, r.i16()?));
        }
        if let Login::Plain { username, password } = login {
            c.authenticate_plain(username, password)?;
        }
        Ok(c)
    }

    /// SASL/PLAIN: SaslHandshake v1, then the credentials in one SaslAuthenticate v0.
    fn authenticate_plain(&mut self, username: &str, password: &str) -> Result<(), KafkaError> {
        let refused = |addr: &str, reason: String| KafkaError::Authentication {
            servers: addr.to_string(),
            protocol: "SASL_PLAINTEXT".into(),
            mechanism: "PLAIN".into(),
            reason,
        };
        let v = self.version(SASL_HANDSHAKE, 1..=1, "SaslHandshake")?;
        let mut body = Vec::new();
        put_str(&mut body, "PLAIN");
        let mut r = self.call(SASL_HANDSHAKE, v, &body)?;
        let err = r.i16()?;
        if err != code::NONE {
            let mut enabled = Vec::new();
            for _ in 0..r.i32()?.max(0) {
                enabled.push(r.str()?);
            }
            return Err(refused(
                &self.addr,
                if err == code::UNSUPPORTED_SASL_MECHANISM {
                    format!(
                        "the broker does not enable mechanism PLAIN (it enables: {})",
                        enabled.join(", ")
                    )
                } else {
                    format!("SaslHandshake answered error code {err}")
                },
            ));
        }
        // v1 adds the session lifetime after the fields read here.
        let v = self.version(SASL_AUTHENTICATE, 0..=1, "SaslAuthenticate")?;
        // RFC 4616: authorization id (empty), user name and password, NUL-separated.
        let token = format!("\0{username}\0{password}");
        let mut body = Vec::new();
        put_i32(&mut body, token.len() as i32);
        body.extend_from_slice(token.as_bytes());
        let mut r = self.call(SASL_AUTHENTICATE, v, &body)?;
        let err = r.i16()?;
        let message = r.nullable_str()?;
        if err != code::NONE {
            return Err(refused(
                &self.addr,
                format!(
                    "the broker refused user '{username}' (error code {err}{})",
                    message.map(|m| format!(": {m}")).unwrap_or_default()
                ),
            ));
        }
        Ok(())
    }

    fn error(&self, reason: String) -> KafkaError {
        KafkaError::Protocol {
            broker: self.addr.clone(),
            reason,
        }
    }

    /// The newest version in `speaks` (versions that share one wire format) the broker
    /// supports: brokers drop old versions (Apache Kafka 4 removed many, KIP-896), so the
    /// client does not insist on the oldest.
    fn version(
        &self,
        key: i16,
        speaks: std::ops::RangeInclusive<i16>,
        name: &str,
    ) -> Result<i16, KafkaError> {
        match self.versions.iter().find(|v| v.0 == key) {
            Some(&(_, min, max)) => speaks
                .clone()
                .rev()
                .find(|v| (min..=max).contains(v))
                .ok_or_else(|| {
                    self.error(format!(
                        "the broker supports {name} versions {min}..={max}, Weir speaks {}..={}",
                        speaks.start(),
                        speaks.end()
                    ))
                }),
            None => Err(self.error(format!("the broker does not support {name}"))),
        }
    }

    /// Sends one request and returns its response body (after the correlation id).
    fn call(&mut self, key: i16, version: i16, body: &[u8]) -> Result<Reader, KafkaError> {
        self.correlation += 1;
        let mut msg = Vec::with_capacity(body.len() + 32);
        put_i16(&mut msg, key);
        put_i16(&mut msg, version);
        put_i32(&mut msg, self.correlation);
        put_str(&mut msg, "weir");
        msg.extend_from_slice(body);
        let mut frame = Vec::with_capacity(msg.len() + 4);
        put_i32(&mut frame, msg.len() as i32);
        frame.extend_from_slice(&msg);
        let io = |e: std::io::Error| format!("request {key} v{version}: {e}");
        self.stream
            .write_all(&frame)
            .map_err(|e| self.error(io(e)))?;
        let mut len = [0u8; 4];
        self.stream
            .read_exact(&mut len)
            .map_err(|e| self.error(io(e)))?;
        let len = i32::from_be_bytes(len);
        if !(4..=64 << 20).contains(&len) {
            return Err(self.error(format!("response of {len} bytes to request {key}")));
        }
        let mut buf = vec![0u8; len as usize];
        self.stream
            .read_exact(&mut buf)
            .map_err(|e| self.error(io(e)))?;
        let mut r = Reader {
            buf,
            pos: 0,
            broker: self.addr.clone(),
        };
        let corr = r.i32()?;
        if corr != self.correlation {
            return Err(self.error(format!(
                "response correlation id {corr}, expected {}",
                self.correlation
            )));
        }
        Ok(r)
    }

    /// The transaction coordinator of `transactional_id` (FindCoordinator v1–v2, key type 1),
    /// as a new connection (the same broker's when it is the coordinator).
    pub(crate) fn transaction_coordinator(
        &mut self,
        transactional_id: &str,
        timeout: Duration,
    ) -> Result<Connection, KafkaError> {
        let v = self.version(FIND_COORDINATOR, 1..=2, "FindCoordinator")?;
        let deadline = Instant::now() + RETRY_FOR;
        loop {
            let mut body = Vec::new();
            put_str(&mut body, transactional_id);
            body.push(1);
            let mut r = self.call(FIND_COORDINATOR, v, &body)?;
            let _throttle = r.i32()?;
            let err = r.i16()?;
            let message = r.nullable_str()?;
            let _node = r.i32()?;
            let host = r.str()?;
            let port = r.i32()?;
            if err == code::NONE {
                let addr = format!("{host}:{port}");
                return Connection::open(&addr, &self.login, timeout);
            }
            if !retriable(err) || Instant::now() > deadline {
                return Err(self.error(format!(
                    "FindCoordinator for transactional id '{transactional_id}' answered error \
                     code {err}{}",
                    message.map(|m| format!(" ({m})")).unwrap_or_default()
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// InitProducerId (v0–v1) for `transactional_id`: bumps its epoch, which fences every producer
    /// using it and aborts its open transaction. Returns `(producer id, epoch)`.
    pub(crate) fn init_producer_id(
        &mut self,
        transactional_id: &str,
        transaction_timeout_ms: i32,
    ) -> Result<(i64, i16), KafkaError> {
        let v = self.version(INIT_PRODUCER_ID, 0..=1, "InitProducerId")?;
        let deadline = Instant::now() + RETRY_FOR;
        loop {
            let mut body = Vec::new();
            put_str(&mut body, transactional_id);
            put_i32(&mut body, transaction_timeout_ms);
            let mut r = self.call(INIT_PRODUCER_ID, v, &body)?;
            let _throttle = r.i32()?;
            let err = r.i16()?;
            let pid = r.i64()?;
            let epoch = r.i16()?;
            if err == code::NONE {
                return Ok((pid, epoch));
            }
            if !retriable(err) || Instant::now() > deadline {
                return Err(self.error(format!(
                    "InitProducerId for transactional id '{transactional_id}' answered error \
                     code {err}"
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// EndTxn (v0–v2): commits (or aborts) the transaction of `transactional_id` that producer
    /// `producer_id` at `epoch` left open. Returns the broker's final error code (retriable
    /// ones are retried); the caller decides what a non-zero code means.
    pub(crate) fn end_txn(
        &mut self,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        commit: bool,
    ) -> Result<i16, KafkaError> {
        // v2 only adds the PRODUCER_FENCED answer.
        let v = self.version(END_TXN, 0..=2, "EndTxn")?;
        let deadline = Instant::now() + RETRY_FOR;
        loop {
            let mut body = Vec::new();
            put_str(&mut body, transactional_id);
            body.extend_from_slice(&producer_id.to_be_bytes());
            put_i16(&mut body, epoch);
            body.push(u8::from(commit));
            let mut r = self.call(END_TXN, v, &body)?;
            let _throttle = r.i32()?;
            let err = r.i16()?;
            if !retriable(err) || Instant::now() > deadline {
                return Ok(err);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    #[cfg(feature = "test-support")]
    /// CreateTopics (v2–v4) for one topic; an existing topic is not an error. (v2, not v0: the
    /// test broker lists v0 in ApiVersions but closes the connection on it.)
    pub(crate) fn create_topic(&mut self, topic: &str, partitions: i32) -> Result<(), KafkaError> {
        let v = self.version(CREATE_TOPICS, 2..=4, "CreateTopics")?;
        let mut body = Vec::new();
        put_i32(&mut body, 1);
        put_str(&mut body, topic);
        put_i32(&mut body, partitions);
        put_i16(&mut body, 1);
        put_i32(&mut body, 0); // replica assignments
        put_i32(&mut body, 0); // configs
        put_i32(&mut body, 10_000);
        body.push(0); // validate_only
        let mut r = self.call(CREATE_TOPICS, v, &body)?;
        let _throttle = r.i32()?;
        for _ in 0..r.i32()? {
            let name = r.str()?;
            let err = r.i16()?;
            let message = r.nullable_str()?;
            if err != code::NONE && err != code::TOPIC_ALREADY_EXISTS {
                return Err(self.error(format!(
                    "CreateTopics '{name}' answered error code {err}{}",
                    message.map(|m| format!(" ({m})")).unwrap_or_default()
                )));
            }
        }
        Ok(())
    }

    #[cfg(feature = "test-support")]
    /// CreatePartitions v0: grows `topic` to `count` partitions.
    pub(crate) fn create_partitions(&mut self, topic: &str, count: i32) -> Result<(), KafkaError> {
        let v = self.version(CREATE_PARTITIONS, 0..=1, "CreatePartitions")?;
        let mut body = Vec::new();
        put_i32(&mut body, 1);
        put_str(&mut body, topic);
        put_i32(&mut body, count);
        put_i32(&mut body, -1); // no explicit assignment
        put_i32(&mut body, 10_000);
        body.push(0); // validate_only
        let mut r = self.call(CREATE_PARTITIONS, v, &body)?;
        let _throttle = r.i32()?;
        for _ in 0..r.i32()? {
            let name = r.str()?;
            let err = r.i16()?;
            let message = r.nullable_str()?;
            if err != code::NONE {
                return Err(self.error(format!(
                    "CreatePartitions '{name}' to {count} answered error code {err}{}",
                    message.map(|m| format!(" ({m})")).unwrap_or_default()
                )));
            }
        }
        Ok(())
    }
}

fn put_i16(b: &mut Vec<u8>, v: i16) {
    b.extend_from_slice(&v.to_be_bytes());
}

fn put_i32(b: &mut Vec<u8>, v: i32) {
    b.extend_from_slice(&v.to_be_bytes());
}

fn put_str(b: &mut Vec<u8>, s: &str) {
    put_i16(b, s.len() as i16);
    b.extend_from_slice(s.as_bytes());
}

/// Reads a response body.
struct Reader {
    buf: Vec<u8>,
    pos: usize,
    broker: String,
}

impl Reader {
    fn take(&mut self, n: usize) -> Result<&[u8], KafkaError> {
        if self.pos + n > self.buf.len() {
            return Err(KafkaError::Protocol {
                broker: self.broker.clone(),
                reason: format!("truncated response ({} bytes)", self.buf.len()),
            });
        }
        self.pos += n;
        Ok(&self.buf[self.pos - n..self.pos])
    }

    fn i16(&mut self) -> Result<i16, KafkaError> {
        Ok(i16::from_be_bytes(
            self.take(2)?.try_into().expect("2 bytes"),
        ))
    }

    fn i32(&mut self) -> Result<i32, KafkaError> {
        Ok(i32::from_be_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    fn i64(&mut self) -> Result<i64, KafkaError> {
        Ok(i64::from_be_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    fn nullable_str(&mut self) -> Result<Option<String>, KafkaError> {
        let len = self.i16()?;
        if len < 0 {
            return Ok(None);
        }
        Ok(Some(
            String::from_utf8_lossy(self.take(len as usize)?).into_owned(),
        ))
    }

    fn str(&mut self) -> Result<String, KafkaError> {
        Ok(self.nullable_str()?.unwrap_or_default())
    }
}
