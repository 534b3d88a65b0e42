//! Test support (feature `test-support`): a real Kafka-protocol broker with transactions,
//! `noida-db`, started on a loopback port over a directory and killed on drop, and small
//! clients to create topics, produce input and read output back (`read_committed` or not);
//! [`SaslFront`] checks SASL/PLAIN passwords in front of it.
//!
//! The binary comes from `WEIR_NOIDA_DB`, else
//! `${WEIR_CACHE:-$HOME/.cache/weir}/noida-db-0.2.3/noida_db/noida-db` (installed by
//! `worker/kafka/install-noida-db.sh`). A missing binary fails the test. Known limits of the
//! broker: it never aborts a timed-out transaction itself, a restart aborts open ones (and
//! records sent into them afterwards block `read_committed` readers for good), it is a
//! single broker, it answers fetches at the end of a partition at once, it accepts any
//! SASL/PLAIN password, and `kill -9` loses records it acknowledged but had not saved yet
//! ([`Broker::stop`] stops it as Ctrl-C does, which saves most of them; docs/kafka.md).

use crate::protocol::{Connection, Login};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The pinned broker version (`install-noida-db.sh` installs the same).
pub const NOIDA_DB_VERSION: &str = "0.2.3";

/// Where the `noida-db` binary is; panics with the install command when it is missing.
pub fn noida_db_binary() -> PathBuf {
    let path = match std::env::var_os("WEIR_NOIDA_DB") {
        Some(path) => PathBuf::from(path),
        None => {
            let cache = std::env::var_os("WEIR_CACHE")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/weir")))
                .expect("neither WEIR_CACHE nor HOME is set");
            cache.join(format!("noida-db-{NOIDA_DB_VERSION}/noida_db/noida-db"))
        }
    };
    assert!(
        path.is_file(),
        "noida-db not found at {}: run `bash worker/kafka/install-noida-db.sh` (or set \
         WEIR_NOIDA_DB to the binary); the Kafka integration tests need a real broker and do \
         not skip",
        path.display()
    );
    path
}

/// A record to produce: `(partition, key, value, timestamp)`.
pub type TestRecord = (i32, Option<Vec<u8>>, Vec<u8>, i64);

/// A record read back: `(partition, key, value)`.
pub type ReadRecord = (i32, Option<Vec<u8>>, Option<Vec<u8>>);

/// A running noida-db Kafka broker; killed on drop.
#[derive(Debug)]
pub struct Broker {
    child: Option<Child>,
    port: u16,
    data: PathBuf,
    log: PathBuf,
}

impl Broker {
    /// Starts a broker keeping its data under `dir/data`, on a port it picks.
    pub fn start(dir: &Path) -> Broker {
        let mut b = Broker {
            child: None,
            port: 0,
            data: dir.join("data"),
            log: dir.join("noida-db.log"),
        };
        b.restart();
        b
    }

    /// Starts the process (again) on the same port and data directory.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "broker already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let before = self.log_text().len();
        let child = Command::new(noida_db_binary())
            .args(["start", "--only", "kafka", "--host", "127.0.0.1"])
            .args(["--kafka-port", &self.port.to_string()])
            .arg("--data-dir")
            .arg(&self.data)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("cannot start noida-db");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = self.log_text();
            let port = text[before.min(text.len())..].lines().find_map(|l| {
                let l = l.trim();
                l.strip_prefix("kafka")
                    .and_then(|rest| rest.trim().rsplit(':').next())
                    .and_then(|p| p.parse::<u16>().ok())
            });
            if let Some(port) = port
                && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            {
                self.port = port;
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("noida-db exited with {status} during startup:\n{text}");
            }
            assert!(
                Instant::now() < deadline,
                "noida-db did not report its Kafka port within 20 s:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the process as Ctrl-C would (it saves its data), killing it after 10 s; the
    /// data directory stays.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the process at once (`kill -9`): what was not yet on disk is lost.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `127.0.0.1:<port>`.
    pub fn bootstrap_servers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The broker's output so far.
    pub fn log_text(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut text);
        }
        text
    }

    fn connection(&self) -> Connection {
        Connection::bootstrap(
            &self.bootstrap_servers(),
            &Login::None,
            Duration::from_secs(10),
        )
        .expect("cannot connect to the test broker")
    }

    /// Creates `topic` with `partitions` partitions (an existing topic is left as it is).
    pub fn create_topic(&self, topic: &str, partitions: i32) {
        self.connection()
            .create_topic(topic, partitions)
            .expect("cannot create the topic");
    }

    /// Grows `topic` to `count` partitions.
    pub fn create_partitions(&self, topic: &str, count: i32) {
        self.connection()
            .create_partitions(topic, count)
            .expect("cannot add partitions");
    }

    /// Writes records `(partition, key, value, timestamp)` to `topic` and waits for them.
    pub fn produce(&self, topic: &str, records: &[TestRecord]) {
        let p: BaseProducer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap_servers())
            .set("linger.ms", "5")
            .create()
            .expect("producer");
        for (partition, key, value, ts) in records {
            let mut r: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic)
                .partition(*partition)
                .payload(value.as_slice())
                .timestamp(*ts);
            if let Some(k) = key {
                r = r.key(k.as_slice());
            }
            let mut r = r;
            loop {
                match p.send(r) {
                    Ok(()) => break,
                    Err((_, back)) => {
                        p.poll(Duration::from_millis(10));
                        r = back;
                    }
                }
            }
        }
        p.flush(Duration::from_secs(30)).expect("flush");
    }

    /// Writes a tombstone (a record with `key` and no value) to `topic`'s `partition`.
    pub fn produce_tombstone(&self, topic: &str, partition: i32, key: &[u8]) {
        let p: BaseProducer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap_servers())
            .create()
            .expect("producer");
        p.send(
            BaseRecord::<'_, [u8], [u8]>::to(topic)
                .partition(partition)
                .key(key),
        )
        .map_err(|(e, _)| e)
        .expect("send a tombstone");
        p.flush(Duration::from_secs(30)).expect("flush");
    }

    /// Every record of `topic` as `(partition, key, value)`, in partition and offset order,
    /// as a consumer with `isolation.level` (`read_committed` or `read_uncommitted`) sees it.
    pub fn read_all(&self, topic: &str, isolation: &str) -> Vec<ReadRecord> {
        let c: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap_servers())
            .set("group.id", "weir-test-reader")
            .set("enable.partition.eof", "true")
            .set("enable.auto.commit", "false")
            .set("isolation.level", isolation)
            .create()
            .expect("consumer");
        let md = c
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .expect("metadata");
        let parts: Vec<i32> = md.topics()[0].partitions().iter().map(|p| p.id()).collect();
        let mut tpl = TopicPartitionList::new();
        for p in &parts {
            tpl.add_partition_offset(topic, *p, Offset::Beginning)
                .expect("offset");
        }
        c.assign(&tpl).expect("assign");
        let mut at_end = BTreeSet::new();
        let mut by_part: BTreeMap<i32, Vec<ReadRecord>> = BTreeMap::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while at_end.len() < parts.len() {
            assert!(Instant::now() < deadline, "reading {topic} took over 60 s");
            match c.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => by_part.entry(m.partition()).or_default().push((
                    m.partition(),
                    m.key().map(<[u8]>::to_vec),
                    m.payload().map(<[u8]>::to_vec),
                )),
                Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                    at_end.insert(p);
                }
                Some(Err(e)) => panic!("reading {topic}: {e}"),
                None => {}
            }
        }
        by_part.into_values().flatten().collect()
    }

    /// The offsets group `group` committed for `topic`, by partition.
    pub fn committed_offsets(
        &self,
        group: &str,
        topic: &str,
        partitions: i32,
    ) -> BTreeMap<i32, i64> {
        let c: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap_servers())
            .set("group.id", group)
            .create()
            .expect("consumer");
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition(topic, p);
        }
        let got = c
            .committed_offsets(tpl, Duration::from_secs(10))
            .expect("committed offsets");
        got.elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(o) => Some((e.partition(), o)),
                _ => None,
            })
            .collect()
    }

    /// Commits offsets for `group` as a consumer of that group would.
    pub fn commit_offsets(&self, group: &str, topic: &str, offsets: &BTreeMap<i32, i64>) {
        let c: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap_servers())
            .set("group.id", group)
            .create()
            .expect("consumer");
        let mut tpl = TopicPartitionList::new();
        for (p, o) in offsets {
            tpl.add_partition_offset(topic, *p, Offset::Offset(*o))
                .expect("offset");
        }
        c.commit(&tpl, rdkafka::consumer::CommitMode::Sync)
            .expect("commit offsets");
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A SASL/PLAIN password check in front of the test broker, which accepts any password:
/// a loopback port that forwards Kafka connections to the broker, except that a
/// `SaslAuthenticate` whose PLAIN user or password is not one of `users` is answered as
/// Apache Kafka answers it (error 58, `SASL_AUTHENTICATION_FAILED`, "Authentication failed:
/// Invalid username or password") and the connection closed. Clients bootstrap through it;
/// the broker's metadata then sends them to the broker itself, where the same (accepted)
/// credentials log in. Stops on drop.
#[derive(Debug)]
pub struct SaslFront {
    port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl SaslFront {
    /// Listens on a free loopback port, forwarding to `broker` (`host:port`).
    pub fn start(broker: &str, users: &[(&str, &str)]) -> SaslFront {
        use std::sync::Arc;
        use std::sync::atomic::AtomicBool;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let port = listener.local_addr().expect("local address").port();
        let stop = Arc::new(AtomicBool::new(false));
        let users: Arc<Vec<(String, String)>> = Arc::new(
            users
                .iter()
                .map(|(u, p)| (u.to_string(), p.to_string()))
                .collect(),
        );
        let broker = broker.to_string();
        let stopped = stop.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stopped.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let Ok(upstream) = std::net::TcpStream::connect(&broker) else {
                    continue;
                };
                let users = users.clone();
                std::thread::spawn(move || front_connection(client, upstream, &users));
            }
        });
        SaslFront { port, stop }
    }

    /// `127.0.0.1:<port>`: bootstrap servers that check the password.
    pub fn bootstrap_servers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for SaslFront {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        // Wakes the accepting thread up so that it sees the flag.
        let _ = std::net::TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Copies the broker's answers back as they come, and the client's requests forward one
/// frame at a time, checking each `SaslAuthenticate`.
fn front_connection(
    mut client: std::net::TcpStream,
    upstream: std::net::TcpStream,
    users: &[(String, String)],
) {
    use std::io::Write;
    let (Ok(mut down), Ok(mut back_to)) = (upstream.try_clone(), client.try_clone()) else {
        return;
    };
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut down, &mut back_to);
        let _ = back_to.shutdown(std::net::Shutdown::Both);
    });
    let mut upstream = upstream;
    loop {
        let mut len = [0u8; 4];
        if client.read_exact(&mut len).is_err() {
            break;
        }
        let mut frame = vec![0u8; i32::from_be_bytes(len).max(0) as usize];
        if client.read_exact(&mut frame).is_err() {
            break;
        }
        if let Some(refusal) = refuse_login(&frame, users) {
            let _ = client.write_all(&refusal);
            let _ = client.flush();
            break;
        }
        if upstream.write_all(&len).is_err() || upstream.write_all(&frame).is_err() {
            break;
        }
    }
    let _ = client.shutdown(std::net::Shutdown::Both);
    let _ = upstream.shutdown(std::net::Shutdown::Both);
}

/// The response refusing a `SaslAuthenticate` request (`frame`, without its size) whose
/// PLAIN credentials are not in `users`; `None` for any other request, or good credentials.
fn refuse_login(frame: &[u8], users: &[(String, String)]) -> Option<Vec<u8>> {
    const SASL_AUTHENTICATE: i16 = 36;
    const SASL_AUTHENTICATION_FAILED: i16 = 58;
    let key = i16::from_be_bytes(frame.get(0..2)?.try_into().ok()?);
    if key != SASL_AUTHENTICATE {
        return None;
    }
    let version = i16::from_be_bytes(frame.get(2..4)?.try_into().ok()?);
    let correlation = frame.get(4..8)?;
    // Request header: client id (a classic nullable string in every header version), then
    // tagged fields from version 2 (flexible) on.
    let client_id = i16::from_be_bytes(frame.get(8..10)?.try_into().ok()?).max(0) as usize;
    let mut at = 10 + client_id;
    let token = if version >= 2 {
        at += 1; // no tagged fields
        let (len, n) = uvarint(frame.get(at..)?)?;
        frame.get(at + n..at + n + (len as usize).checked_sub(1)?)?
    } else {
        let len = i32::from_be_bytes(frame.get(at..at + 4)?.try_into().ok()?) as usize;
        frame.get(at + 4..at + 4 + len)?
    };
    // PLAIN (RFC 4616): authorization id, user, password, NUL-separated.
    let parts: Vec<&[u8]> = token.split(|b| *b == 0).collect();
    let accepted = parts.len() == 3
        && users
            .iter()
            .any(|(u, p)| parts[1] == u.as_bytes() && parts[2] == p.as_bytes());
    if accepted {
        return None;
    }
    let message = b"Authentication failed: Invalid username or password";
    let mut body = correlation.to_vec();
    if version >= 2 {
        body.push(0); // response header tagged fields
    }
    body.extend_from_slice(&SASL_AUTHENTICATION_FAILED.to_be_bytes());
    if version >= 2 {
        body.push(message.len() as u8 + 1);
        body.extend_from_slice(message);
        body.push(1); // empty auth bytes
    } else {
        body.extend_from_slice(&(message.len() as i16).to_be_bytes());
        body.extend_from_slice(message);
        body.extend_from_slice(&0i32.to_be_bytes());
    }
    if version >= 1 {
        body.extend_from_slice(&0i64.to_be_bytes()); // session lifetime
    }
    if version >= 2 {
        body.push(0); // tagged fields
    }
    let mut out = (body.len() as i32).to_be_bytes().to_vec();
    out.extend_from_slice(&body);
    Some(out)
}

/// An unsigned varint: `(value, bytes read)`.
fn uvarint(b: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, byte) in b.iter().enumerate().take(10) {
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}
