//! The Kafka connector against a real broker (noida-db, started by each test): exactly-once
//! results after failures and rescaling, at-least-once without loss, the source's positions
//! in checkpoints, partition discovery, and the errors a user meets first.

use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tempfile::TempDir;
use weir_engine::api::StreamExecutionEnvironment;
use weir_engine::config::Config;
use weir_engine::connectors::{CollectSink, Sink, SinkWriter};
use weir_engine::runtime::{Rec, SubtaskInfo};
use weir_engine::time::WatermarkStrategy;
use weir_engine::window::{WindowSpec, Windowed, agg};
use weir_kafka::testing::{Broker, SaslFront};
use weir_kafka::{DeliveryGuarantee, KafkaSink, KafkaSource, StartingOffsets, StoppingOffsets};

const PARTITIONS: i32 = 4;
const EVENTS: u64 = 6_000;
/// Event time of the first event: ten minutes ago. Recent, because the broker deletes
/// records older than its retention (7 days) while a test runs.
fn base_ts() -> i64 {
    static BASE: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *BASE.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
            - 600_000
    })
}

fn broker() -> (TempDir, Broker) {
    let dir = tempfile::tempdir().unwrap();
    let b = Broker::start(dir.path());
    (dir, b)
}

fn uri(p: &std::path::Path) -> String {
    format!("file://{}", p.display())
}

fn env(pairs: &[(&str, String)]) -> StreamExecutionEnvironment {
    let mut c = Config::default();
    c.set("pipeline.batch-size", "50").unwrap();
    for (k, v) in pairs {
        c.set(k, v).unwrap();
    }
    StreamExecutionEnvironment::with_config(c)
}

/// Event `i`: key `k{i % 7}`, 10 ms of event time after event `i - 1`, in partition
/// `i % PARTITIONS`.
fn produce_events(broker: &Broker, topic: &str) {
    broker.create_topic(topic, PARTITIONS);
    let records: Vec<_> = (0..EVENTS)
        .map(|i| {
            (
                (i % PARTITIONS as u64) as i32,
                None,
                i.to_string().into_bytes(),
                base_ts() + i as i64 * 10,
            )
        })
        .collect();
    broker.produce(topic, &records);
}

fn result_line(key: &str, start: i64, count: u64, sum: u64) -> String {
    format!("{key}@{start}:{count}:{sum}")
}

/// Count and sum per key and one-second window, computed directly.
fn expected() -> Vec<String> {
    let mut m: BTreeMap<(String, i64), (u64, u64)> = BTreeMap::new();
    for i in 0..EVENTS {
        let ts = base_ts() + i as i64 * 10;
        let e = m
            .entry((format!("k{}", i % 7), ts - ts.rem_euclid(1000)))
            .or_default();
        e.0 += 1;
        e.1 += i;
    }
    let mut v: Vec<String> = m
        .into_iter()
        .map(|((k, s), (c, sum))| result_line(&k, s, c, sum))
        .collect();
    v.sort();
    v
}

/// Events at which a task fails, each the first time it passes.
#[derive(Clone)]
struct Failures(Arc<Vec<(u64, AtomicBool)>>);

impl Failures {
    fn at(events: &[u64]) -> Failures {
        Failures(Arc::new(
            events
                .iter()
                .map(|&e| (e, AtomicBool::new(false)))
                .collect(),
        ))
    }

    fn check(&self, event: u64) {
        for (at, fired) in self.0.iter() {
            if *at == event && !fired.swap(true, Ordering::SeqCst) {
                panic!("injected failure at event {at}");
            }
        }
    }

    fn all_fired(&self) -> bool {
        self.0.iter().all(|(_, f)| f.load(Ordering::SeqCst))
    }
}

/// What a [`NotifyHook`] does with a checkpoint-complete notification: `Some(result)` answers
/// it without telling the wrapped sink, `None` passes it on.
type Hook = Arc<dyn Fn(u64) -> Option<weir_engine::Result<()>> + Send + Sync>;

/// Wraps a sink, letting a test intercept its checkpoint-complete notifications (to fail
/// between a checkpoint's completion and its commit, or to skip one as a savepoint would).
struct NotifyHook<S> {
    inner: S,
    hook: Hook,
}

struct NotifyHookWriter<T> {
    inner: Box<dyn SinkWriter<T>>,
    hook: Hook,
}

impl<T: Send + 'static, S: Sink<T>> Sink<T> for NotifyHook<S> {
    fn create_writer(&self, info: &SubtaskInfo) -> weir_engine::Result<Box<dyn SinkWriter<T>>> {
        Ok(Box::new(NotifyHookWriter {
            inner: self.inner.create_writer(info)?,
            hook: self.hook.clone(),
        }))
    }
}

impl<T: Send> SinkWriter<T> for NotifyHookWriter<T> {
    fn write(&mut self, records: Vec<Rec<T>>) -> weir_engine::Result<()> {
        self.inner.write(records)
    }
    fn finish(&mut self) -> weir_engine::Result<()> {
        self.inner.finish()
    }
    fn snapshot_state(&mut self, id: u64) -> weir_engine::Result<Vec<Vec<u8>>> {
        self.inner.snapshot_state(id)
    }
    fn notify_checkpoint_complete(&mut self, id: u64) -> weir_engine::Result<()> {
        (self.hook)(id).unwrap_or_else(|| self.inner.notify_checkpoint_complete(id))
    }
}

/// Wraps a sink; the first notification of a completed checkpoint at or after `at` fails
/// before the wrapped sink commits: the failure between completion and commit.
fn fail_before_commit<S>(inner: S, at: u64, fired: Arc<AtomicBool>) -> NotifyHook<S> {
    NotifyHook {
        inner,
        hook: Arc::new(move |id| {
            (id >= at && !fired.swap(true, Ordering::SeqCst)).then(|| {
                Err(weir_engine::Error::user(format!(
                    "injected failure after checkpoint {id} completed, before its commit"
                )))
            })
        }),
    }
}

fn source(broker: &Broker, topic: &str) -> KafkaSource<(String, u64)> {
    KafkaSource::builder()
        .bootstrap_servers(broker.bootstrap_servers())
        .topics([topic])
        .bounded(StoppingOffsets::Latest)
        .value_deserializer(|v| {
            let i: u64 = std::str::from_utf8(v)
                .map_err(|e| e.to_string())?
                .parse()
                .map_err(|e| format!("not a number: {e}"))?;
            Ok((format!("k{}", i % 7), i))
        })
        .build()
        .unwrap()
}

fn sink(broker: &Broker, topic: &str, guarantee: DeliveryGuarantee) -> KafkaSink<String> {
    KafkaSink::builder()
        .bootstrap_servers(broker.bootstrap_servers())
        .topic(topic)
        .value_serializer(|s: &String| s.clone().into_bytes())
        .key_serializer(|s: &String| {
            Some(s.split('@').next().unwrap_or_default().as_bytes().to_vec())
        })
        .delivery_guarantee(guarantee)
        .transactional_id_prefix(format!("test-{topic}"))
        .build()
        .unwrap()
}

/// Kafka -> (slowed, failing) -> keyed one-second windows -> Kafka.
fn pipeline<S: Sink<String>>(
    env: &StreamExecutionEnvironment,
    source: KafkaSource<(String, u64)>,
    sink: S,
    failures: Option<Failures>,
    slow: Duration,
) {
    env.from_source(
        source,
        Some(WatermarkStrategy::for_bounded_out_of_orderness(
            Duration::from_millis(500),
        )),
        "events",
    )
    .uid("events")
    .map(move |e: (String, u64)| {
        if let Some(f) = &failures {
            f.check(e.1);
        }
        if !slow.is_zero() {
            std::thread::sleep(slow);
        }
        e
    })
    .key_by(|e: &(String, u64)| e.0.clone())
    .window(WindowSpec::tumbling(Duration::from_secs(1)))
    .aggregate((agg::count(), agg::sum(|e: &(String, u64)| e.1)))
    .uid("windows")
    .map(|w: Windowed<String, (u64, u64)>| {
        result_line(&w.key, w.window.start, w.value.0, w.value.1)
    })
    .sink_to(sink)
    .uid("results");
}

fn values(records: Vec<weir_kafka::testing::ReadRecord>) -> Vec<String> {
    let mut v: Vec<String> = records
        .into_iter()
        .map(|(_, _, v)| String::from_utf8(v.unwrap_or_default()).unwrap())
        .collect();
    v.sort();
    v
}

#[track_caller]
fn assert_same(actual: &[String], expected: &[String], what: &str) {
    if actual != expected {
        let missing: Vec<&String> = expected.iter().filter(|l| !actual.contains(l)).collect();
        let mut dup = actual.to_vec();
        dup.dedup();
        panic!(
            "{what}: {} results, expected {}; {} duplicates; missing {:?}",
            actual.len(),
            expected.len(),
            actual.len() - dup.len(),
            &missing[..missing.len().min(5)],
        );
    }
}

#[test]
fn kafka_to_windows_to_kafka_exactly_once_survives_failures_at_seeded_points_and_before_a_commit() {
    let (_dir, broker) = broker();
    produce_events(&broker, "eo-in");
    broker.create_topic("eo-out", 3);
    let seed = test_seed();
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    let points: Vec<u64> = (0..3).map(|_| rng.gen_range(300..EVENTS - 300)).collect();
    eprintln!("failures at events {points:?}");
    let failures = Failures::at(&points);
    let before_commit = Arc::new(AtomicBool::new(false));
    let chk = tempfile::tempdir().unwrap();
    let env = env(&[
        ("parallelism.default", "2".into()),
        ("execution.checkpointing.interval", "100ms".into()),
        ("state.checkpoints.dir", uri(chk.path())),
        ("restart-strategy.fixed-delay.delay", "10ms".into()),
    ]);
    pipeline(
        &env,
        source(&broker, "eo-in"),
        fail_before_commit(
            sink(&broker, "eo-out", DeliveryGuarantee::ExactlyOnce),
            3,
            before_commit.clone(),
        ),
        Some(failures.clone()),
        Duration::from_micros(300),
    );
    let result = env.execute("exactly-once").unwrap();
    assert!(failures.all_fired(), "every failure point was passed");
    assert!(
        before_commit.load(Ordering::SeqCst),
        "the failure before a commit fired"
    );
    // Two failures of different subtasks may fall into one attempt (one restart).
    assert!(
        result.restarts >= 2,
        "task failures and one before a commit, restarts: {}",
        result.restarts
    );
    assert_same(
        &values(broker.read_all("eo-out", "read_committed")),
        &expected(),
        &format!("read_committed output (seed {seed})"),
    );
}

#[test]
fn a_savepoint_taken_at_parallelism_2_restores_at_3_and_the_output_holds_each_result_once() {
    let (_dir, broker) = broker();
    produce_events(&broker, "rescale-in");
    broker.create_topic("rescale-out", 2);
    let sp = tempfile::tempdir().unwrap();
    let first = env(&[("parallelism.default", "2".into())]);
    pipeline(
        &first,
        source(&broker, "rescale-in"),
        sink(&broker, "rescale-out", DeliveryGuarantee::ExactlyOnce),
        None,
        Duration::from_micros(500),
    );
    let job = first.execute_async("before").unwrap();
    std::thread::sleep(Duration::from_millis(800));
    let savepoint = job.stop_with_savepoint(Some(&uri(sp.path()))).unwrap();
    let before = values(broker.read_all("rescale-out", "read_committed"));
    assert!(
        !before.is_empty() && before.len() < expected().len(),
        "stopped mid-run with {} results committed",
        before.len()
    );

    let second = env(&[
        ("parallelism.default", "3".into()),
        ("execution.savepoint.path", savepoint),
    ]);
    pipeline(
        &second,
        source(&broker, "rescale-in"),
        sink(&broker, "rescale-out", DeliveryGuarantee::ExactlyOnce),
        None,
        Duration::ZERO,
    );
    second.execute("after").unwrap();
    assert_same(
        &values(broker.read_all("rescale-out", "read_committed")),
        &expected(),
        "read_committed output after the restore at parallelism 3",
    );
}

#[test]
fn at_least_once_loses_nothing_across_failures() {
    let (_dir, broker) = broker();
    produce_events(&broker, "alo-in");
    broker.create_topic("alo-out", 2);
    let failures = Failures::at(&[1_500, 4_200]);
    let chk = tempfile::tempdir().unwrap();
    let env = env(&[
        ("parallelism.default", "2".into()),
        ("execution.checkpointing.interval", "100ms".into()),
        ("state.checkpoints.dir", uri(chk.path())),
        ("restart-strategy.fixed-delay.delay", "10ms".into()),
    ]);
    pipeline(
        &env,
        source(&broker, "alo-in"),
        sink(&broker, "alo-out", DeliveryGuarantee::AtLeastOnce),
        Some(failures.clone()),
        Duration::from_micros(300),
    );
    let result = env.execute("at-least-once").unwrap();
    assert!(failures.all_fired() && result.restarts >= 2);
    let mut got = values(broker.read_all("alo-out", "read_uncommitted"));
    let written = got.len();
    got.dedup();
    assert_same(&got, &expected(), "distinct at-least-once results");
    assert!(written >= got.len());
}

/// Reads `topic` (2 partitions, values 0..n) into a collection, slowly.
fn collect_job(
    env: &StreamExecutionEnvironment,
    source: KafkaSource<u64>,
) -> weir_engine::connectors::CollectedRecords<u64> {
    let (collect, got) = CollectSink::new();
    env.from_source(source, None, "numbers")
        .uid("numbers")
        .map(|v: u64| {
            std::thread::sleep(Duration::from_micros(500));
            v
        })
        .sink_to(collect)
        .uid("collect");
    got
}

fn numbers(broker: &Broker, topic: &str, group: &str) -> KafkaSource<u64> {
    KafkaSource::builder()
        .bootstrap_servers(broker.bootstrap_servers())
        .topics([topic])
        .group_id(group)
        .starting_offsets(StartingOffsets::Committed {
            reset: Box::new(StartingOffsets::Earliest),
        })
        .bounded(StoppingOffsets::Latest)
        .value_deserializer(|v| {
            std::str::from_utf8(v)
                .map_err(|e| e.to_string())?
                .parse()
                .map_err(|e| format!("not a number: {e}"))
        })
        .build()
        .unwrap()
}

#[test]
fn a_restore_resumes_from_the_checkpointed_offsets_not_the_groups_committed_offsets() {
    let (_dir, broker) = broker();
    broker.create_topic("resume", 2);
    let records: Vec<_> = (0..2_000u64)
        .map(|i| ((i % 2) as i32, None, i.to_string().into_bytes(), base_ts()))
        .collect();
    broker.produce("resume", &records);
    let sp = tempfile::tempdir().unwrap();
    let first = env(&[]);
    let got_first = collect_job(&first, numbers(&broker, "resume", "resumers"));
    let job = first.execute_async("first").unwrap();
    std::thread::sleep(Duration::from_millis(400));
    let savepoint = job.stop_with_savepoint(Some(&uri(sp.path()))).unwrap();
    let first_values = got_first.values();
    assert!(
        !first_values.is_empty() && first_values.len() < 2_000,
        "stopped mid-run after {} records",
        first_values.len()
    );
    // The completed savepoint committed its positions to the group, for monitoring.
    let committed = broker.committed_offsets("resumers", "resume", 2);
    assert_eq!(
        committed.values().sum::<i64>(),
        first_values.len() as i64,
        "committed offsets {committed:?} match what was read"
    );
    // Someone rewinds the group: a restore must not care.
    broker.commit_offsets("resumers", "resume", &BTreeMap::from([(0, 0), (1, 0)]));

    let second = env(&[("execution.savepoint.path", savepoint)]);
    let got_second = collect_job(&second, numbers(&broker, "resume", "resumers"));
    second.execute("second").unwrap();
    let mut all = first_values;
    all.extend(got_second.values());
    all.sort_unstable();
    assert_eq!(
        all,
        (0..2_000).collect::<Vec<u64>>(),
        "each record read exactly once"
    );
}

#[test]
fn partitions_added_while_the_job_runs_are_discovered_and_read() {
    let (_dir, broker) = broker();
    broker.create_topic("growing", 1);
    let rec = |p: i32, i: u64| (p, None, i.to_string().into_bytes(), base_ts());
    broker.produce("growing", &(0..10).map(|i| rec(0, i)).collect::<Vec<_>>());
    let env = env(&[("parallelism.default", "2".into())]);
    let source = KafkaSource::<u64>::builder()
        .bootstrap_servers(broker.bootstrap_servers())
        .topics(["growing"])
        .partition_discovery_interval(Some(Duration::from_millis(200)))
        .value_deserializer(|v| {
            std::str::from_utf8(v)
                .map_err(|e| e.to_string())?
                .parse()
                .map_err(|e| format!("{e}"))
        })
        .build()
        .unwrap();
    let got = collect_job(&env, source);
    let job = env.execute_async("discovery").unwrap();
    let wait_for = |n: usize| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while got.values().len() < n {
            assert!(
                Instant::now() < deadline,
                "only {:?} read within 30 s",
                got.values()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait_for(10);
    broker.create_partitions("growing", 3);
    broker.produce(
        "growing",
        &(10..30)
            .map(|i| rec(1 + (i % 2) as i32, i))
            .collect::<Vec<_>>(),
    );
    wait_for(30);
    job.cancel();
    let mut v = got.values();
    v.sort_unstable();
    assert_eq!(v, (0..30).collect::<Vec<u64>>());
}

fn run_error(env: StreamExecutionEnvironment, source: KafkaSource<u64>) -> String {
    let (collect, _) = CollectSink::new();
    env.from_source(source, None, "numbers").sink_to(collect);
    weir_engine::report(&env.execute("failing").unwrap_err())
}

fn number_source(servers: String, topic: &str) -> weir_kafka::KafkaSourceBuilder<u64> {
    KafkaSource::<u64>::builder()
        .bootstrap_servers(servers)
        .topics([topic])
        .bounded(StoppingOffsets::Latest)
        .property("socket.connection.setup.timeout.ms", "1500")
        .value_deserializer(|v| {
            std::str::from_utf8(v)
                .map_err(|e| e.to_string())?
                .parse()
                .map_err(|e| format!("'{}' is not a number: {e}", String::from_utf8_lossy(v)))
        })
}

#[test]
fn an_unreachable_broker_and_an_unknown_topic_fail_with_errors_naming_them() {
    // Nothing listens on port 1.
    let msg = run_error(
        env(&[]),
        number_source("127.0.0.1:1".into(), "t").build().unwrap(),
    );
    assert!(
        msg.contains("cannot reach the Kafka brokers at 127.0.0.1:1 within 1500 ms"),
        "{msg}"
    );
    let (_dir, broker) = broker();
    let msg = run_error(
        env(&[]),
        number_source(broker.bootstrap_servers(), "no-such-topic")
            .build()
            .unwrap(),
    );
    assert!(
        msg.contains(&format!(
            "topic 'no-such-topic' does not exist on {}",
            broker.bootstrap_servers()
        )),
        "{msg}"
    );
}

/// SASL/PLAIN as user `weir` with `password`: the test broker accepts any password, so
/// the tests log in through a [`SaslFront`] that accepts only `secret`.
fn plain_login(password: &'static str) -> [(&'static str, &'static str); 4] {
    [
        ("security.protocol", "SASL_PLAINTEXT"),
        ("sasl.mechanism", "PLAIN"),
        ("sasl.username", "weir"),
        ("sasl.password", password),
    ]
}

fn sasl_front(broker: &Broker) -> SaslFront {
    SaslFront::start(&broker.bootstrap_servers(), &[("weir", "secret")])
}

/// Runs a job that must fail; returns its restarts, its final error and how long it took.
fn run_failing(env: &StreamExecutionEnvironment) -> (u64, String, Duration) {
    let started = Instant::now();
    let job = env.execute_async("failing").unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !job.is_finished() {
        assert!(Instant::now() < deadline, "still running after 60 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    let restarts = job.restarts();
    let msg = weir_engine::report(&job.wait().unwrap_err());
    (restarts, msg, started.elapsed())
}

#[test]
fn a_wrong_password_fails_the_source_and_the_sink_naming_authentication() {
    let (_dir, broker) = broker();
    let front = sasl_front(&broker);
    let bs = front.bootstrap_servers();
    broker.create_topic("login-in", 2);
    let records: Vec<_> = (0..100u64)
        .map(|i| ((i % 2) as i32, None, i.to_string().into_bytes(), base_ts()))
        .collect();
    broker.produce("login-in", &records);
    broker.create_topic("login-out", 2);
    let chk = tempfile::tempdir().unwrap();
    let retrying = || {
        env(&[
            ("execution.checkpointing.interval", "100ms".into()),
            ("state.checkpoints.dir", uri(chk.path())),
            ("restart-strategy.fixed-delay.delay", "10ms".into()),
            ("restart-strategy.fixed-delay.attempts", "2".into()),
        ])
    };
    let refused = format!(
        "authentication to the Kafka brokers at {bs} failed (security.protocol SASL_PLAINTEXT, \
         sasl.mechanism PLAIN): "
    );
    let sink_with = |login: &[(&str, &str)], guarantee, prefix: &str| {
        let mut b = KafkaSink::<u64>::builder()
            .bootstrap_servers(bs.clone())
            .topic("login-out")
            .value_serializer(|v: &u64| v.to_string().into_bytes())
            .delivery_guarantee(guarantee)
            .transactional_id_prefix(prefix);
        for (k, v) in login {
            b = b.property(*k, *v);
        }
        b.build().unwrap()
    };

    // The source: fails at once (not after socket.connection.setup.timeout.ms, 30 s), with
    // librdkafka's reason, and the job restarts twice (its strategy) before it fails.
    let mut source = number_source(bs.clone(), "login-in")
        .property("socket.connection.setup.timeout.ms", "30000");
    for (k, v) in plain_login("wrong") {
        source = source.property(k, v);
    }
    let env = retrying();
    let (collect, got) = CollectSink::new();
    env.from_source(source.build().unwrap(), None, "numbers")
        .sink_to(collect);
    let (restarts, msg, took) = run_failing(&env);
    assert!(
        msg.contains(&refused) && msg.contains("Invalid username or password"),
        "{msg}"
    );
    assert_eq!(restarts, 2, "{msg}");
    assert!(took < Duration::from_secs(20), "took {took:?}");
    assert!(got.values().is_empty());

    // Sinks with the wrong password fail the same way, and nothing reaches the topic. An
    // exactly-once sink logs in with Weir's own protocol client first (it commits and fences
    // transactions after a restore), whose refusal names the user.
    for (guarantee, reason) in [
        (
            DeliveryGuarantee::AtLeastOnce,
            "SASL authentication error: Authentication failed: Invalid username or password",
        ),
        (
            DeliveryGuarantee::ExactlyOnce,
            "the broker refused user 'weir' (error code 58: Authentication failed: Invalid username or password)",
        ),
    ] {
        let env = retrying();
        env.from_source(
            number_source(bs.clone(), "login-in").build().unwrap(),
            None,
            "numbers",
        )
        .sink_to(sink_with(&plain_login("wrong"), guarantee, "login"));
        let (restarts, msg, took) = run_failing(&env);
        assert!(msg.contains(&refused) && msg.contains(reason), "{msg}");
        assert_eq!(restarts, 2, "{msg}");
        assert!(took < Duration::from_secs(20), "took {took:?}");
        assert!(broker.read_all("login-out", "read_uncommitted").is_empty());
    }

    // With the right password the same job writes each record once, across a failure that
    // makes it recover (the recovery client logs in too).
    let failures = Failures::at(&[60]);
    let env = retrying();
    let mut source = number_source(bs.clone(), "login-in");
    for (k, v) in plain_login("secret") {
        source = source.property(k, v);
    }
    let f = failures.clone();
    env.from_source(source.build().unwrap(), None, "numbers")
        .uid("numbers")
        .map(move |v: u64| {
            f.check(v);
            std::thread::sleep(Duration::from_millis(2));
            v
        })
        .sink_to(sink_with(
            &plain_login("secret"),
            DeliveryGuarantee::ExactlyOnce,
            "login",
        ))
        .uid("out");
    let result = env.execute("login").unwrap();
    assert!(failures.all_fired() && result.restarts == 1);
    let mut got: Vec<u64> = values(broker.read_all("login-out", "read_committed"))
        .iter()
        .map(|v| v.parse().unwrap())
        .collect();
    got.sort_unstable();
    assert_eq!(got, (0..100).collect::<Vec<u64>>(), "each record once");
}

#[test]
fn an_undecodable_record_fails_naming_its_position_or_is_skipped_by_policy() {
    let (_dir, broker) = broker();
    broker.create_topic("mixed", 1);
    let values = ["1", "2", "oops", "4"];
    broker.produce(
        "mixed",
        &values
            .iter()
            .map(|v| (0, None, v.as_bytes().to_vec(), base_ts()))
            .collect::<Vec<_>>(),
    );
    let msg = run_error(
        env(&[]),
        number_source(broker.bootstrap_servers(), "mixed")
            .build()
            .unwrap(),
    );
    assert!(
        msg.contains(
            "cannot decode the record at topic 'mixed' partition 0 offset 2: 'oops' is not a number"
        ),
        "{msg}"
    );

    let env = env(&[("pipeline.decode-error-policy", "skip".into())]);
    let (collect, got) = CollectSink::new();
    env.from_source(
        number_source(broker.bootstrap_servers(), "mixed")
            .build()
            .unwrap(),
        None,
        "numbers",
    )
    .sink_to(collect);
    let result = env.execute("skipping").unwrap();
    assert_eq!(got.values(), vec![1, 2, 4]);
    assert_eq!(result.metrics.skipped, 1);
}

#[test]
fn an_exactly_once_sink_refuses_a_transaction_timeout_shorter_than_checkpoint_plus_restart() {
    let (_dir, broker) = broker();
    broker.create_topic("short", 1);
    broker.produce("short", &[(0, None, b"1".to_vec(), base_ts())]);
    let chk = tempfile::tempdir().unwrap();
    let env = env(&[
        ("execution.checkpointing.interval", "2s".into()),
        ("state.checkpoints.dir", uri(chk.path())),
        ("restart-strategy.fixed-delay.delay", "500ms".into()),
        ("restart-strategy.fixed-delay.attempts", "1".into()),
    ]);
    let sink = KafkaSink::<u64>::builder()
        .bootstrap_servers(broker.bootstrap_servers())
        .topic("short-out")
        .value_serializer(|v: &u64| v.to_string().into_bytes())
        .delivery_guarantee(DeliveryGuarantee::ExactlyOnce)
        .transactional_id_prefix("short")
        .property("transaction.timeout.ms", "2400")
        .build()
        .unwrap();
    env.from_source(
        number_source(broker.bootstrap_servers(), "short")
            .build()
            .unwrap(),
        None,
        "numbers",
    )
    .sink_to(sink);
    let msg = weir_engine::report(&env.execute("short").unwrap_err());
    assert!(
        msg.contains(
            "transaction.timeout.ms is 2400 ms, but an exactly-once Kafka sink needs more than \
             the checkpoint interval (2000 ms) plus the longest restart delay (500 ms)"
        ),
        "{msg}"
    );
}

#[test]
fn the_test_broker_restarts_on_its_port_with_its_data() {
    let (_dir, mut broker) = broker();
    broker.create_topic("kept", 1);
    broker.produce("kept", &[(0, None, b"before".to_vec(), base_ts())]);
    let servers = broker.bootstrap_servers();
    broker.stop();
    broker.restart();
    assert_eq!(broker.bootstrap_servers(), servers);
    broker.produce("kept", &[(0, None, b"after".to_vec(), base_ts())]);
    assert_eq!(
        values(broker.read_all("kept", "read_committed")),
        vec!["after".to_string(), "before".to_string()]
    );
}

/// `WEIR_TEST_SEED`, else a fresh seed (printed).
fn test_seed() -> u64 {
    let seed = std::env::var("WEIR_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("seed {seed} (WEIR_TEST_SEED)");
    seed
}

#[test]
fn the_source_reads_on_across_broker_restarts_each_record_once() {
    // Only the reading side: the test broker loses what producers send across its restart
    // (docs/kafka.md), so a sink's output would show its faults, not Weir's.
    let (_dir, mut broker) = broker();
    broker.create_topic("restarts", 2);
    const N: u64 = 3_000;
    let records: Vec<_> = (0..N)
        .map(|i| ((i % 2) as i32, None, i.to_string().into_bytes(), base_ts()))
        .collect();
    broker.produce("restarts", &records);
    let mut rng = rand::rngs::SmallRng::seed_from_u64(test_seed());
    // Two restarts, each once the job has read a seeded share of the records.
    let mut points: Vec<usize> = (0..2)
        .map(|_| rng.gen_range(300..(N as usize) - 600))
        .collect();
    points.sort_unstable();
    points[1] = points[1].max(points[0] + 300);
    eprintln!("broker restarts after {points:?} records");
    let chk = tempfile::tempdir().unwrap();
    let env = env(&[
        ("parallelism.default", "2".into()),
        ("execution.checkpointing.interval", "100ms".into()),
        ("state.checkpoints.dir", uri(chk.path())),
        ("restart-strategy.fixed-delay.delay", "10ms".into()),
    ]);
    // Small fetches and a small prefetch queue: the source keeps fetching while the broker
    // restarts rather than holding the whole topic in librdkafka's buffer.
    let source = number_source(broker.bootstrap_servers(), "restarts")
        .group_id("restart-readers")
        .property("fetch.message.max.bytes", "1024")
        .property("queued.max.messages.kbytes", "1")
        .build()
        .unwrap();
    let got = collect_job(&env, source);
    let job = env.execute_async("restarts").unwrap();
    for at in points {
        let deadline = Instant::now() + Duration::from_secs(60);
        while got.values().len() < at {
            assert!(
                Instant::now() < deadline,
                "{} read within 60 s",
                got.values().len()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        broker.stop();
        std::thread::sleep(Duration::from_millis(300));
        broker.restart();
    }
    let restarts = job.restarts();
    job.wait().unwrap();
    assert_eq!(restarts, 0, "the source rides through broker restarts");
    let mut v = got.values();
    v.sort_unstable();
    assert_eq!(v, (0..N).collect::<Vec<u64>>(), "each record read once");
}

/// Wraps a sink: the first completed checkpoint at or after `at` is not notified (as a
/// savepoint that does not stop the job), and the next notification fails before the wrapped
/// sink commits. `state` records (the skipped checkpoint, whether the failure fired).
fn savepoint_then_fail<S>(
    inner: S,
    at: u64,
    state: Arc<std::sync::Mutex<(Option<u64>, bool)>>,
) -> NotifyHook<S> {
    NotifyHook {
        inner,
        hook: Arc::new(move |id| {
            let mut s = state.lock().unwrap();
            match *s {
                (None, _) if id >= at => {
                    s.0 = Some(id);
                    Some(Ok(()))
                }
                (Some(skipped), false) if id > skipped => {
                    s.1 = true;
                    Some(Err(weir_engine::Error::user(format!(
                        "injected failure after checkpoint {id} completed (checkpoint {skipped} \
                         was not notified), before the commit"
                    ))))
                }
                _ => None,
            }
        }),
    }
}

#[test]
fn a_transaction_left_pending_by_an_unnotified_checkpoint_is_carried_into_the_next_and_recovered() {
    let (_dir, broker) = broker();
    produce_events(&broker, "sp-in");
    broker.create_topic("sp-out", 1);
    let state = Arc::new(std::sync::Mutex::new((None, false)));
    let chk = tempfile::tempdir().unwrap();
    let env = env(&[
        ("execution.checkpointing.interval", "100ms".into()),
        ("state.checkpoints.dir", uri(chk.path())),
        ("restart-strategy.fixed-delay.delay", "10ms".into()),
    ]);
    pipeline(
        &env,
        source(&broker, "sp-in"),
        savepoint_then_fail(
            sink(&broker, "sp-out", DeliveryGuarantee::ExactlyOnce),
            3,
            state.clone(),
        ),
        None,
        Duration::from_micros(300),
    );
    let result = env.execute("savepoint-semantics").unwrap();
    assert_eq!(
        *state.lock().unwrap(),
        (Some(3), true),
        "skipped checkpoint 3, then failed"
    );
    assert_eq!(result.restarts, 1);
    assert_same(
        &values(broker.read_all("sp-out", "read_committed")),
        &expected(),
        "read_committed output",
    );
}

// ---- SQL: the `kafka` and `upsert-kafka` connectors ----

/// The connectors the `weir` binary plans with: the built-in ones and weir-kafka's.
fn sql_connectors() -> weir_sql::connectors::Connectors {
    let mut c = weir_sql::connectors::Connectors::builtin();
    weir_kafka::sql::register(&mut c).unwrap();
    c
}

fn plan_sql(env: &StreamExecutionEnvironment, sql: &str) -> Result<(), String> {
    weir_sql::plan_with(env, sql, &weir_sql::udf::Registry::new(), &sql_connectors())
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Every value of `topic` (read_committed) as a JSON object.
fn json_values(broker: &Broker, topic: &str) -> Vec<serde_json::Map<String, serde_json::Value>> {
    broker
        .read_all(topic, "read_committed")
        .into_iter()
        .map(
            |(_, _, v)| match serde_json::from_slice(&v.expect("a value")) {
                Ok(serde_json::Value::Object(o)) => o,
                other => panic!("not a JSON object: {other:?}"),
            },
        )
        .collect()
}

#[test]
fn sql_kafka_to_tumbling_windows_to_kafka_exactly_once_writes_each_expected_row_once() {
    let (_dir, broker) = broker();
    broker.create_topic("sql-events", PARTITIONS);
    broker.create_topic("sql-clicks", 2);
    const N: i64 = 3_000;
    // Event i: user i % 5, a click unless i % 4 == 3, 7 ms of event time after event i - 1.
    let records: Vec<_> = (0..N)
        .map(|i| {
            let ts = base_ts() + i * 7;
            let kind = if i % 4 == 3 { "view" } else { "click" };
            let v = format!(
                r#"{{"user_id": {}, "event_type": "{kind}", "event_time": "{}"}}"#,
                i % 5,
                weir_sql::value::format_timestamp(ts)
            );
            ((i % PARTITIONS as i64) as i32, None, v.into_bytes(), ts)
        })
        .collect();
    broker.produce("sql-events", &records);
    let mut want: BTreeMap<(i64, i64), u64> = BTreeMap::new();
    for i in 0..N {
        if i % 4 != 3 {
            let ts = base_ts() + i * 7;
            *want.entry((ts - ts.rem_euclid(1000), i % 5)).or_default() += 1;
        }
    }
    let want: Vec<String> = want
        .into_iter()
        .map(|((start, user), n)| {
            format!("{} {user} {n}", weir_sql::value::format_timestamp(start))
        })
        .collect();

    let bs = broker.bootstrap_servers();
    let chk = tempfile::tempdir().unwrap();
    let env = env(&[
        ("parallelism.default", "2".into()),
        ("execution.checkpointing.interval", "100ms".into()),
        ("state.checkpoints.dir", uri(chk.path())),
    ]);
    // The seed's table as written, bounded so that the test ends.
    plan_sql(
        &env,
        &format!(
            "CREATE TABLE events (user_id BIGINT, event_type STRING, event_time TIMESTAMP(3),
               WATERMARK FOR event_time AS event_time - INTERVAL '5' SECOND)
             WITH ('connector' = 'kafka', 'topic' = 'sql-events',
               'properties.bootstrap.servers' = '{bs}', 'format' = 'json',
               'scan.bounded.mode' = 'latest-offset');
             CREATE TABLE clicks (window_start TIMESTAMP(3), user_id BIGINT, clicks BIGINT)
             WITH ('connector' = 'kafka', 'topic' = 'sql-clicks',
               'properties.bootstrap.servers' = '{bs}', 'format' = 'json',
               'sink.delivery-guarantee' = 'exactly-once',
               'sink.transactional-id-prefix' = 'sql-clicks');
             INSERT INTO clicks
             SELECT TUMBLE_START(event_time, INTERVAL '1' SECOND), user_id, COUNT(*)
             FROM events WHERE event_type = 'click'
             GROUP BY TUMBLE(event_time, INTERVAL '1' SECOND), user_id;"
        ),
    )
    .unwrap();
    env.execute("sql-clicks").unwrap();
    let mut got: Vec<String> = json_values(&broker, "sql-clicks")
        .into_iter()
        .map(|o| {
            format!(
                "{} {} {}",
                o["window_start"].as_str().unwrap(),
                o["user_id"],
                o["clicks"]
            )
        })
        .collect();
    got.sort();
    assert_same(&got, &want, "read_committed SQL window output");
}

#[test]
fn sql_kafka_tables_pass_sasl_properties_to_their_clients() {
    let (_dir, broker) = broker();
    let front = sasl_front(&broker);
    let bs = front.bootstrap_servers();
    broker.create_topic("sql-login-in", 2);
    broker.create_topic("sql-login-out", 2);
    let records: Vec<_> = (0..200i64)
        .map(|i| {
            (
                (i % 2) as i32,
                None,
                format!(r#"{{"n": {i}}}"#).into_bytes(),
                base_ts(),
            )
        })
        .collect();
    broker.produce("sql-login-in", &records);
    let script = |login: [(&str, &str); 4]| {
        let props: String = login
            .iter()
            .map(|(k, v)| format!(", 'properties.{k}' = '{v}'"))
            .collect();
        format!(
            "CREATE TABLE numbers (n BIGINT) WITH ('connector' = 'kafka',
               'topic' = 'sql-login-in', 'properties.bootstrap.servers' = '{bs}',
               'format' = 'json', 'scan.bounded.mode' = 'latest-offset'{props});
             CREATE TABLE copies (n BIGINT) WITH ('connector' = 'kafka',
               'topic' = 'sql-login-out', 'properties.bootstrap.servers' = '{bs}',
               'format' = 'json', 'sink.delivery-guarantee' = 'exactly-once',
               'sink.transactional-id-prefix' = 'sql-login'{props});
             INSERT INTO copies SELECT n FROM numbers;"
        )
    };
    let chk = tempfile::tempdir().unwrap();
    let env_for = || {
        env(&[
            ("execution.checkpointing.interval", "100ms".into()),
            ("state.checkpoints.dir", uri(chk.path())),
            ("restart-strategy.type", "none".into()),
        ])
    };
    // The properties reach the clients: a wrong password fails the job, naming it.
    let env = env_for();
    plan_sql(&env, &script(plain_login("wrong"))).unwrap();
    let msg = weir_engine::report(&env.execute("refused").unwrap_err());
    assert!(
        msg.contains(&format!(
            "authentication to the Kafka brokers at {bs} failed"
        )) && msg.contains("Invalid username or password"),
        "{msg}"
    );
    assert!(
        broker
            .read_all("sql-login-out", "read_uncommitted")
            .is_empty()
    );
    // With the right one the script copies every row once.
    let env = env_for();
    plan_sql(&env, &script(plain_login("secret"))).unwrap();
    env.execute("plain").unwrap();
    let mut got: Vec<i64> = json_values(&broker, "sql-login-out")
        .iter()
        .map(|o| o["n"].as_i64().unwrap())
        .collect();
    got.sort_unstable();
    assert_eq!(got, (0..200).collect::<Vec<i64>>());
}

/// The compacted view of an upsert topic: each key's last value; a tombstone removes it.
fn compacted(broker: &Broker, topic: &str) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for (_, k, v) in broker.read_all(topic, "read_committed") {
        let k = String::from_utf8(k.expect("an upsert record has a key")).unwrap();
        match v {
            Some(v) => m.insert(k, String::from_utf8(v).unwrap()),
            None => m.remove(&k),
        };
    }
    m
}

#[test]
fn upsert_kafka_holds_the_group_by_result_and_a_tombstone_read_back_deletes_its_key() {
    let (_dir, broker) = broker();
    broker.create_topic("orders", 2);
    broker.create_topic("totals", 2);
    broker.create_topic("totals-copy", 2);
    // Order i: user u{i % 4}, amount i.
    let records: Vec<_> = (0..400)
        .map(|i| {
            let v = format!(r#"{{"user": "u{}", "amount": {i}}}"#, i % 4);
            (i % 2, None, v.into_bytes(), base_ts() + i64::from(i))
        })
        .collect();
    broker.produce("orders", &records);
    let mut want: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for i in 0..400u64 {
        let e = want.entry(format!("u{}", i % 4)).or_default();
        e.0 += 1;
        e.1 += i;
    }
    let bs = broker.bootstrap_servers();
    let env = env(&[("parallelism.default", "2".into())]);
    plan_sql(
        &env,
        &format!(
            "CREATE TABLE orders (`user` STRING, amount BIGINT)
             WITH ('connector' = 'kafka', 'topic' = 'orders', 'properties.bootstrap.servers' = '{bs}',
               'format' = 'json', 'scan.bounded.mode' = 'latest-offset');
             CREATE TABLE totals (`user` STRING, orders BIGINT, total BIGINT,
               PRIMARY KEY (`user`) NOT ENFORCED)
             WITH ('connector' = 'upsert-kafka', 'topic' = 'totals',
               'properties.bootstrap.servers' = '{bs}', 'key.format' = 'raw', 'value.format' = 'json');
             INSERT INTO totals SELECT `user`, COUNT(*), SUM(amount) FROM orders GROUP BY `user`;"
        ),
    )
    .unwrap();
    env.execute("totals").unwrap();
    let view = compacted(&broker, "totals");
    let expect_json = |u: &str, (n, sum): (u64, u64)| {
        serde_json::json!({"user": u, "orders": n, "total": sum}).to_string()
    };
    let want_view: BTreeMap<String, String> = want
        .iter()
        .map(|(u, v)| (u.clone(), expect_json(u, *v)))
        .collect();
    assert_eq!(
        view, want_view,
        "the compacted upsert topic holds the aggregate"
    );
    let written = broker.read_all("totals", "read_committed").len();
    assert!(
        written > want.len(),
        "updates were written as upserts ({written} records for {} keys)",
        want.len()
    );

    // Read back as a changelog: u0 is deleted by a tombstone; the copy (values without the
    // key, EXCEPT_KEY) drops u0 with a tombstone of its own.
    let part = broker
        .read_all("totals", "read_committed")
        .into_iter()
        .find(|(_, k, _)| k.as_deref() == Some(b"u0"))
        .unwrap()
        .0;
    broker.produce_tombstone("totals", part, b"u0");
    let env2 = self::env(&[("parallelism.default", "2".into())]);
    plan_sql(
        &env2,
        &format!(
            "CREATE TABLE totals (`user` STRING, orders BIGINT, total BIGINT,
               PRIMARY KEY (`user`) NOT ENFORCED)
             WITH ('connector' = 'upsert-kafka', 'topic' = 'totals',
               'properties.bootstrap.servers' = '{bs}', 'key.format' = 'raw',
               'value.format' = 'json', 'scan.bounded.mode' = 'latest-offset');
             CREATE TABLE copy (`user` STRING, orders BIGINT, total BIGINT,
               PRIMARY KEY (`user`) NOT ENFORCED)
             WITH ('connector' = 'upsert-kafka', 'topic' = 'totals-copy',
               'properties.bootstrap.servers' = '{bs}', 'key.format' = 'raw',
               'value.format' = 'json', 'value.fields-include' = 'EXCEPT_KEY');
             INSERT INTO copy SELECT * FROM totals;"
        ),
    )
    .unwrap();
    env2.execute("copy").unwrap();
    let copy = compacted(&broker, "totals-copy");
    let want_copy: BTreeMap<String, String> = want
        .iter()
        .filter(|(u, _)| u.as_str() != "u0")
        .map(|(u, (n, sum))| {
            (
                u.clone(),
                serde_json::json!({"orders": n, "total": sum}).to_string(),
            )
        })
        .collect();
    assert_eq!(copy, want_copy, "the tombstone deleted u0 from the copy");
    let copied = broker.read_all("totals-copy", "read_committed");
    assert!(
        copied
            .iter()
            .any(|(_, k, v)| k.as_deref() == Some(b"u0") && v.is_none()),
        "the deletion was written as a tombstone"
    );
}

#[test]
fn metadata_columns_carry_each_records_topic_partition_offset_timestamp_and_key() {
    let (_dir, broker) = broker();
    broker.create_topic("meta-in", 2);
    broker.create_topic("meta-out", 1);
    // Record i: partition i % 2, key k{i}, CSV value `i,name{i}`, timestamp base + i.
    let records: Vec<_> = (0..20)
        .map(|i: i64| {
            (
                (i % 2) as i32,
                Some(format!("k{i}").into_bytes()),
                format!("{i},name{i}").into_bytes(),
                base_ts() + i,
            )
        })
        .collect();
    broker.produce("meta-in", &records);
    let bs = broker.bootstrap_servers();
    // Written as the output records' timestamps: an hour after the input's.
    let later = base_ts() + 3_600_000;
    let env = env(&[]);
    plan_sql(
        &env,
        &format!(
            "CREATE TABLE src (v BIGINT, name STRING,
               tp STRING METADATA FROM 'topic' VIRTUAL,
               part INT METADATA FROM 'partition' VIRTUAL,
               off BIGINT METADATA FROM 'offset' VIRTUAL,
               ts TIMESTAMP(3) METADATA FROM 'timestamp',
               k STRING METADATA FROM 'key' VIRTUAL,
               headers STRING METADATA VIRTUAL)
             WITH ('connector' = 'kafka', 'topic' = 'meta-in', 'properties.bootstrap.servers' = '{bs}',
               'format' = 'csv', 'scan.bounded.mode' = 'latest-offset');
             CREATE TABLE dst (v BIGINT, name STRING, tp STRING, part BIGINT, off BIGINT,
               ts TIMESTAMP(3), k STRING, headers STRING,
               written TIMESTAMP(3) METADATA FROM 'timestamp')
             WITH ('connector' = 'kafka', 'topic' = 'meta-out', 'properties.bootstrap.servers' = '{bs}',
               'format' = 'json');
             INSERT INTO dst SELECT v, name, tp, part, off, ts, k, headers,
               TO_TIMESTAMP_LTZ({later} + v, 3) FROM src;"
        ),
    )
    .unwrap();
    env.execute("metadata").unwrap();
    let mut got = json_values(&broker, "meta-out");
    got.sort_by_key(|o| o["v"].as_i64());
    assert_eq!(got.len(), 20);
    for (i, o) in got.iter().enumerate() {
        let i = i as i64;
        let want = serde_json::json!({
            "v": i, "name": format!("name{i}"), "tp": "meta-in", "part": i % 2,
            // Partition p holds records p, p + 2, p + 4, … in that order.
            "off": i / 2, "ts": weir_sql::value::format_timestamp(base_ts() + i),
            "k": format!("k{i}"), "headers": "{}",
        });
        assert_eq!(serde_json::Value::Object(o.clone()), want, "record {i}");
    }

    // The sink wrote the `timestamp` metadata column as each record's timestamp.
    let mut back = record_timestamps(&broker, "meta-out", "v");
    back.sort_by_key(|l| l.split(',').next().unwrap().parse::<i64>().unwrap());
    let want: Vec<String> = (0..20)
        .map(|i| format!("{i},{}", weir_sql::value::format_timestamp(later + i)))
        .collect();
    assert_eq!(back, want);
}

/// `<column>,<record timestamp>` of every record of the JSON topic `topic` (its BIGINT
/// `column`), read through a second SQL job's `timestamp` metadata column and written as CSV
/// to the topic `<topic>-back`; sorted as text.
fn record_timestamps(broker: &Broker, topic: &str, column: &str) -> Vec<String> {
    let back = format!("{topic}-back");
    broker.create_topic(&back, 1);
    let bs = broker.bootstrap_servers();
    let env = env(&[]);
    plan_sql(
        &env,
        &format!(
            "CREATE TABLE written ({column} BIGINT, at TIMESTAMP_LTZ(3) METADATA FROM 'timestamp')
             WITH ('connector' = 'kafka', 'topic' = '{topic}', 'properties.bootstrap.servers' = '{bs}',
               'format' = 'json', 'scan.bounded.mode' = 'latest-offset');
             CREATE TABLE back ({column} BIGINT, at TIMESTAMP(3))
             WITH ('connector' = 'kafka', 'topic' = '{back}', 'properties.bootstrap.servers' = '{bs}',
               'format' = 'csv');
             INSERT INTO back SELECT {column}, at FROM written;"
        ),
    )
    .unwrap();
    env.execute("timestamps").unwrap();
    values(broker.read_all(&back, "read_committed"))
}

/// Without a `timestamp` metadata column a SQL sink stamps its records with the time they are
/// written, as Flink SQL's does, not with the row's event time: the windows of a day long past
/// would otherwise carry that day's time and be deleted at once by time-based retention (found
/// by the e2e suite, whose broker did exactly that).
#[test]
fn a_sql_sink_without_a_timestamp_column_stamps_its_records_with_the_time_of_writing() {
    let (_dir, broker) = broker();
    broker.create_topic("stamp-in", 1);
    broker.create_topic("stamp-out", 1);
    // Ten records a second apart, thirty days ago, from the start of a five-second window.
    let old = (base_ts() - 30 * 86_400_000) / 5_000 * 5_000;
    let records: Vec<_> = (0..10)
        .map(|i: i64| (0, None, format!("{i},{}", old + i * 1000).into_bytes(), old))
        .collect();
    broker.produce("stamp-in", &records);
    let bs = broker.bootstrap_servers();
    let started = weir_engine::time::now_ms();
    let env = env(&[]);
    plan_sql(
        &env,
        &format!(
            "CREATE TABLE src (v BIGINT, ms BIGINT, ts AS TO_TIMESTAMP_LTZ(ms, 3),
               WATERMARK FOR ts AS ts)
             WITH ('connector' = 'kafka', 'topic' = 'stamp-in', 'properties.bootstrap.servers' = '{bs}',
               'format' = 'csv', 'scan.bounded.mode' = 'latest-offset');
             CREATE TABLE dst (w TIMESTAMP(3), n BIGINT)
             WITH ('connector' = 'kafka', 'topic' = 'stamp-out', 'properties.bootstrap.servers' = '{bs}',
               'format' = 'json');
             INSERT INTO dst SELECT TUMBLE_START(ts, INTERVAL '5' SECOND), COUNT(*) FROM src
             GROUP BY TUMBLE(ts, INTERVAL '5' SECOND);"
        ),
    )
    .unwrap();
    env.execute("windows").unwrap();
    let back = record_timestamps(&broker, "stamp-out", "n");
    assert_eq!(back.len(), 2, "two windows of five records: {back:?}");
    for line in &back {
        let (n, at) = line.split_once(',').unwrap();
        assert_eq!(n, "5", "{line}");
        let at = weir_sql::connectors::parse_timestamp(at).unwrap();
        assert!(
            at >= started - 1000,
            "record '{line}' is stamped {at}, before the job ran ({started}): the window's event time"
        );
    }
}

/// More source subtasks than partitions: the subtask without one is idle, so the windows
/// that SQL's WATERMARK (assigned after the source) closes fire while the job runs. They
/// used to wait for the empty subtask for good (found by the e2e suite).
#[test]
fn sql_windows_fire_when_a_source_subtask_has_no_partition() {
    let (_dir, broker) = broker();
    broker.create_topic("few-in", 1);
    broker.create_topic("few-out", 1);
    let base = base_ts() / 10_000 * 10_000;
    // 30 seconds of event time, a record every 100 ms: three closed windows and an open one.
    let records: Vec<_> = (0..300)
        .map(|i: i64| {
            (
                0,
                None,
                format!("{i},{}", base + i * 100).into_bytes(),
                base,
            )
        })
        .collect();
    broker.produce("few-in", &records);
    let bs = broker.bootstrap_servers();
    let chk = tempfile::tempdir().unwrap();
    let env = env(&[
        ("parallelism.default", "2".into()),
        ("execution.checkpointing.interval", "200ms".into()),
        ("state.checkpoints.dir", uri(chk.path())),
    ]);
    plan_sql(
        &env,
        &format!(
            "CREATE TABLE src (v BIGINT, ms BIGINT, ts AS TO_TIMESTAMP_LTZ(ms, 3),
               WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
             WITH ('connector' = 'kafka', 'topic' = 'few-in', 'properties.bootstrap.servers' = '{bs}',
               'format' = 'csv', 'scan.startup.mode' = 'earliest-offset');
             CREATE TABLE dst (w BIGINT, n BIGINT)
             WITH ('connector' = 'kafka', 'topic' = 'few-out', 'properties.bootstrap.servers' = '{bs}',
               'format' = 'csv', 'sink.delivery-guarantee' = 'exactly-once',
               'sink.transactional-id-prefix' = 'few');
             INSERT INTO dst SELECT MIN(v) / 100, COUNT(*) FROM src
             GROUP BY TUMBLE(ts, INTERVAL '10' SECOND);"
        ),
    )
    .unwrap();
    let job = env.execute_async("few partitions").unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let want = ["0,100".to_string(), "1,100".into()];
    let mut got = Vec::new();
    while Instant::now() < deadline {
        got = values(broker.read_all("few-out", "read_committed"));
        if got.len() >= 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    job.cancel();
    assert_eq!(
        &got[..got.len().min(2)],
        &want[..],
        "the closed windows fire while the job runs: {got:?}"
    );
}

#[test]
fn kafka_tables_with_bad_options_formats_or_records_fail_with_errors_naming_them() {
    let table = |with: &str| {
        format!(
            "CREATE TABLE t (a BIGINT) WITH ('connector' = 'kafka', 'topic' = 't',
               'properties.bootstrap.servers' = '127.0.0.1:1'{with});"
        )
    };
    let cases = [
        (
            table(", 'format' = 'json', 'scan.startup.mod' = 'earliest-offset'"),
            "2:83: unknown option 'scan.startup.mod' for connector 'kafka'; did you mean 'scan.startup.mode'?",
        ),
        (
            table(", 'format' = 'avro'"),
            "format 'avro' is not supported; use one of 'json', 'csv', 'raw'",
        ),
        (
            table(", 'format' = 'json', 'scan.startup.mode' = 'earliest'"),
            "'scan.startup.mode' = 'earliest'; use 'earliest-offset'",
        ),
        (
            table(", 'format' = 'json', 'sink.delivery-guarantee' = 'exactly-once'"),
            "'sink.delivery-guarantee' = 'exactly-once' needs 'sink.transactional-id-prefix'",
        ),
        (table(""), "table 't' needs the option 'format' (one of 'json', 'csv', 'raw')"),
        (
            "CREATE TABLE t (a BIGINT, o BIGINT METADATA FROM 'offsets') WITH ('connector' = 'kafka',
               'topic' = 't', 'properties.bootstrap.servers' = 'h:1', 'format' = 'json');"
                .into(),
            "1:27: column 'o': connector 'kafka' has no metadata 'offsets'; did you mean 'offset'?",
        ),
        (
            "CREATE TABLE t (a BIGINT) WITH ('connector' = 'upsert-kafka', 'topic' = 't',
               'properties.bootstrap.servers' = 'h:1', 'key.format' = 'json', 'value.format' = 'json');"
                .into(),
            "'upsert-kafka' needs a PRIMARY KEY (…) NOT ENFORCED",
        ),
        (
            table(", 'format' = 'json'").replace("(a BIGINT)", "(a BIGINT PRIMARY KEY NOT ENFORCED)"),
            "1:17: table 't': the 'kafka' connector does not support a PRIMARY KEY",
        ),
        (
            "CREATE TABLE t (a BIGINT, PRIMARY KEY (a)) WITH ('connector' = 'upsert-kafka');"
                .into(),
            "a PRIMARY KEY must be declared NOT ENFORCED",
        ),
    ];
    for (sql, want) in cases {
        let got = plan_sql(&env(&[]), &sql).unwrap_err();
        assert!(got.contains(want), "for\n{sql}\nwant: {want}\ngot:  {got}");
    }

    let (_dir, broker) = broker();
    broker.create_topic("bad-json", 1);
    let values = [r#"{"a": 1}"#, r#"{"a": "x"}"#, r#"{"a": 3}"#];
    broker.produce(
        "bad-json",
        &values
            .iter()
            .map(|v| (0, None, v.as_bytes().to_vec(), base_ts()))
            .collect::<Vec<_>>(),
    );
    let sql = format!(
        "CREATE TABLE t (a BIGINT) WITH ('connector' = 'kafka', 'topic' = 'bad-json',
           'properties.bootstrap.servers' = '{}', 'format' = 'json',
           'scan.bounded.mode' = 'latest-offset');
         CREATE TABLE out (a BIGINT) WITH ('connector' = 'blackhole');
         INSERT INTO out SELECT a FROM t;",
        broker.bootstrap_servers()
    );
    let env1 = env(&[]);
    plan_sql(&env1, &sql).unwrap();
    let msg = weir_engine::report(&env1.execute("bad").unwrap_err());
    assert!(
        msg.contains(
            "cannot decode the record at topic 'bad-json' partition 0 offset 1: table 't'"
        ),
        "{msg}"
    );
    let env2 = env(&[("pipeline.decode-error-policy", "skip".into())]);
    plan_sql(&env2, &sql).unwrap();
    assert_eq!(env2.execute("skip").unwrap().metrics.skipped, 1);
}

/// Event times (ms after an aligned base) read from a two-partition topic by one subtask,
/// counted per ten-second window: `"<window start>:<count>"` lines, as they fire.
fn window_counts(
    broker: &Broker,
    topic: &str,
    idleness: Option<Duration>,
) -> (
    weir_engine::runtime::JobHandle,
    weir_engine::connectors::CollectedRecords<String>,
) {
    let base = aligned_base();
    let source = KafkaSource::<i64>::builder()
        .bootstrap_servers(broker.bootstrap_servers())
        .topics([topic])
        .value_deserializer(|v| {
            std::str::from_utf8(v)
                .map_err(|e| e.to_string())?
                .parse()
                .map_err(|e| format!("{e}"))
        })
        .build()
        .unwrap();
    let mut strategy =
        WatermarkStrategy::for_monotonous_timestamps().with_timestamp_assigner(move |t| base + t);
    if let Some(d) = idleness {
        strategy = strategy.with_idleness(d);
    }
    let env = env(&[]);
    let (collect, got) = CollectSink::new();
    env.from_source(source, Some(strategy), "times")
        .key_by(|_: &i64| "all".to_string())
        .window(WindowSpec::tumbling(Duration::from_secs(10)))
        .aggregate(agg::count())
        .map(move |w: Windowed<String, u64>| format!("{}:{}", w.window.start - base, w.value))
        .sink_to(collect);
    (env.execute_async("event-time").unwrap(), got)
}

/// `base_ts()` rounded down to a ten-second window boundary.
fn aligned_base() -> i64 {
    base_ts() - base_ts().rem_euclid(10_000)
}

fn produce_times(broker: &Broker, topic: &str, partition: i32, times: &[i64]) {
    let records: Vec<_> = times
        .iter()
        .map(|t| {
            (
                partition,
                None,
                t.to_string().into_bytes(),
                aligned_base() + t,
            )
        })
        .collect();
    broker.produce(topic, &records);
}

/// Waits until `got` holds something, then a little longer for anything that follows.
fn first_results(got: &weir_engine::connectors::CollectedRecords<String>) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while got.values().is_empty() {
        assert!(Instant::now() < deadline, "no window fired within 30 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    got.values()
}

#[test]
fn an_empty_partition_holds_back_windows_until_it_has_data_or_goes_idle() {
    let (_dir, broker) = broker();
    for topic in ["held", "released"] {
        broker.create_topic(topic, 2);
        produce_times(&broker, topic, 0, &[1_000, 2_000, 15_000]);
    }

    // Without idleness, partition 1 (empty) holds the watermark at its start.
    let (job, got) = window_counts(&broker, "held", None);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        got.values(),
        Vec::<String>::new(),
        "no window fires while partition 1 is empty"
    );
    produce_times(&broker, "held", 1, &[16_000]);
    assert_eq!(first_results(&got), vec!["0:2".to_string()]);
    job.cancel();

    // With idleness, the empty partition stops holding it back.
    let (job, got) = window_counts(&broker, "released", Some(Duration::from_millis(500)));
    assert_eq!(first_results(&got), vec!["0:2".to_string()]);
    job.cancel();
}

#[test]
fn a_partition_behind_another_keeps_its_records_on_time() {
    let (_dir, broker) = broker();
    broker.create_topic("behind", 2);
    produce_times(&broker, "behind", 0, &[1_000, 2_000, 15_000]);
    let (job, got) = window_counts(&broker, "behind", None);
    // Partition 0 is read to its end and partition 1 is still empty: a watermark of the
    // subtask as a whole would now pass 10 s and close the first window.
    std::thread::sleep(Duration::from_millis(1_500));
    produce_times(&broker, "behind", 1, &[3_000, 16_000]);
    assert_eq!(
        first_results(&got),
        vec!["0:3".to_string()],
        "partition 1's record at 3 s counts in the first window"
    );
    job.cancel();
}

/// The source subtask's gauges named `name`, as `(labels, value)`.
fn gauges(
    snap: &weir_engine::runtime::metrics::JobSnapshot,
    name: &str,
) -> Vec<(Vec<(String, String)>, f64)> {
    snap.operators
        .iter()
        .filter(|o| o.name == "metered")
        .flat_map(|o| o.gauges.iter())
        .filter(|g| g.name == name)
        .map(|g| (g.labels.clone(), g.value))
        .collect()
}

/// One gauge per partition (`partition` label → value).
fn per_partition(
    snap: &weir_engine::runtime::metrics::JobSnapshot,
    name: &str,
) -> BTreeMap<String, i64> {
    gauges(snap, name)
        .into_iter()
        .map(|(labels, v)| {
            let p = labels.iter().find(|(k, _)| k == "partition").unwrap();
            (p.1.clone(), v as i64)
        })
        .collect()
}

fn single(snap: &weir_engine::runtime::metrics::JobSnapshot, name: &str) -> Option<f64> {
    gauges(snap, name).first().map(|g| g.1)
}

#[test]
fn source_metrics_report_pending_records_lag_offsets_and_event_time_lags() {
    use weir_kafka::metrics::*;
    let (_dir, broker) = broker();
    broker.create_topic("metered", 2);
    // 1000 records per partition, stamped a minute ago.
    let stamp = base_ts() + 540_000;
    let records: Vec<_> = (0..2_000u64)
        .map(|i| ((i % 2) as i32, None, i.to_string().into_bytes(), stamp))
        .collect();
    broker.produce("metered", &records);
    let chk = tempfile::tempdir().unwrap();
    let env = env(&[
        ("execution.checkpointing.interval", "100ms".into()),
        ("state.checkpoints.dir", uri(chk.path())),
    ]);
    let source = KafkaSource::<u64>::builder()
        .bootstrap_servers(broker.bootstrap_servers())
        .topics(["metered"])
        .group_id("meters")
        .value_deserializer(|v| {
            std::str::from_utf8(v)
                .map_err(|e| e.to_string())?
                .parse()
                .map_err(|e| format!("{e}"))
        })
        .build()
        .unwrap();
    // A closed gate after 300 records backpressures the source (in another task, which
    // keeps reporting) part-way through the topic.
    let open = Arc::new(AtomicBool::new(false));
    let gate = open.clone();
    let passed = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (collect, got) = CollectSink::new();
    env.from_source(source, None, "metered")
        .map(move |v: u64| {
            if passed.fetch_add(1, Ordering::SeqCst) >= 300 {
                while !gate.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            v
        })
        .start_new_chain()
        .sink_to(collect);
    let job = env.execute_async("metered").unwrap();

    // 1. Paused part-way: the lag is what was produced minus what the source emitted.
    let deadline = Instant::now() + Duration::from_secs(30);
    let paused = loop {
        let a = job.metrics();
        std::thread::sleep(Duration::from_millis(700));
        let b = job.metrics();
        let emitted = |s: &weir_engine::runtime::metrics::JobSnapshot| s.records_in;
        if single(&b, PENDING_RECORDS).is_some()
            && emitted(&a) == emitted(&b)
            && per_partition(&a, CURRENT_OFFSET) == per_partition(&b, CURRENT_OFFSET)
        {
            break b;
        }
        assert!(
            Instant::now() < deadline,
            "the source never settled paused: {} emitted, gauges {:?}",
            b.records_in,
            b.operators.iter().map(|o| &o.gauges).collect::<Vec<_>>()
        );
    };
    let emitted = paused.records_in as i64;
    assert!(
        (300..2_000).contains(&emitted),
        "paused part-way, {emitted} emitted"
    );
    let current = per_partition(&paused, CURRENT_OFFSET);
    let lag = per_partition(&paused, RECORDS_LAG);
    assert_eq!(
        current.values().map(|o| o + 1).sum::<i64>(),
        emitted,
        "current offsets {current:?} match the records emitted"
    );
    for (p, off) in &current {
        assert_eq!(lag[p], 1_000 - (off + 1), "records-lag of partition {p}");
    }
    assert_eq!(
        single(&paused, PENDING_RECORDS),
        Some((2_000 - emitted) as f64),
        "pendingRecords"
    );
    // The records were stamped a minute before they were fetched and emitted.
    for name in [
        FETCH_EVENT_TIME_LAG,
        weir_engine::runtime::metrics::CURRENT_EMIT_EVENT_TIME_LAG,
    ] {
        let lag = single(&paused, name).unwrap_or_else(|| panic!("{name} reported"));
        assert!((60_000.0..120_000.0).contains(&lag), "{name} = {lag}");
    }

    // 2. Released and read to the end: a completed checkpoint covers every record and its
    // offsets are committed; nothing is pending.
    open.store(true, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(30);
    let done = loop {
        let s = job.metrics();
        let committed = per_partition(&s, COMMITTED_OFFSET);
        if got.values().len() == 2_000 && committed.values().all(|&o| o == 1_000) {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "{} read, committed offsets {committed:?} (group: {:?}), commits {:?}/{:?}, {} checkpoints completed",
            got.values().len(),
            broker.committed_offsets("meters", "metered", 2),
            single(&s, COMMITS_SUCCEEDED),
            single(&s, COMMITS_FAILED),
            job.checkpoints().completed,
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    job.cancel();
    assert_eq!(
        per_partition(&done, COMMITTED_OFFSET),
        BTreeMap::from([("0".to_string(), 1_000), ("1".to_string(), 1_000)])
    );
    assert_eq!(
        broker.committed_offsets("meters", "metered", 2),
        BTreeMap::from([(0, 1_000), (1, 1_000)]),
        "the group holds the checkpointed offsets"
    );
    assert_eq!(single(&done, PENDING_RECORDS), Some(0.0));
    assert!(single(&done, COMMITS_SUCCEEDED).unwrap() >= 1.0);
    assert_eq!(single(&done, COMMITS_FAILED), Some(0.0));
}
