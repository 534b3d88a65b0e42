//! Kafka throughput per CPU-second, for `bench/kafka.sh`: Weir's Kafka → tumbling window →
//! Kafka job next to its ceiling, plain librdkafka consuming and producing the same records,
//! against the same broker (noida-db, started here on a temporary directory).
//!
//! ```text
//! cargo run --release -p weir-kafka --features test-support --example kafka_bench -- [records]
//! ```
//!
//! Prints one line per phase, `mode=… records=… wall_s=… cpu_s=… per_cpu_s=… checkpoints=…`, where
//! `cpu_s` is this process's user + system time during the phase (the broker runs in its
//! own process and is not counted) and `per_cpu_s` is records read per CPU-second.

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::time::{Duration, Instant};
use weir_engine::api::StreamExecutionEnvironment;
use weir_engine::config::Config;
use weir_engine::time::WatermarkStrategy;
use weir_engine::window::{WindowSpec, Windowed, agg};
use weir_kafka::testing::Broker;
use weir_kafka::{DeliveryGuarantee, KafkaSink, KafkaSource, StoppingOffsets};

const PARTITIONS: i32 = 4;
const KEYS: u64 = 100;

fn main() {
    let records: u64 = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("records: a number"))
        .unwrap_or(1_000_000);
    let dir = std::env::temp_dir().join(format!("kafka-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let broker = Broker::start(&dir);
    let brokers = broker.bootstrap_servers();
    broker.create_topic("bench-in", PARTITIONS);
    for out in ["ceiling-out", "eo-out", "alo-out"] {
        broker.create_topic(out, PARTITIONS);
    }
    phase("produce", || {
        produce(&brokers, "bench-in", records);
        (records, 0)
    });
    phase("consume-only", || (ceiling(&brokers, "bench-in", None), 0));
    phase("ceiling", || {
        (ceiling(&brokers, "bench-in", Some("ceiling-out")), 0)
    });
    phase("exactly-once", || {
        pipeline(
            &brokers,
            "bench-in",
            "eo-out",
            DeliveryGuarantee::ExactlyOnce,
        )
    });
    phase("at-least-once", || {
        pipeline(
            &brokers,
            "bench-in",
            "alo-out",
            DeliveryGuarantee::AtLeastOnce,
        )
    });
    drop(broker);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs one phase and prints its line; `run` returns the records read and the checkpoints
/// completed.
fn phase(mode: &str, run: impl FnOnce() -> (u64, u64)) {
    let start = Instant::now();
    let cpu0 = cpu_seconds();
    let (records, checkpoints) = run();
    let wall = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    println!(
        "mode={mode} records={records} wall_s={wall:.2} cpu_s={cpu:.2} per_cpu_s={:.0} checkpoints={checkpoints}",
        records as f64 / cpu.max(0.01)
    );
}

/// User + system CPU seconds of this process so far (`/proc/self/stat`, in the kernel's
/// 100 Hz clock ticks).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // Fields after the command name (which may contain spaces) start at field 3.
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0
}

/// `records` records over 100 keys, stamped 0.1 ms apart an hour ago (100 one-second
/// windows per million records).
fn produce(brokers: &str, topic: &str, records: u64) {
    let p: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "20")
        .create()
        .expect("producer");
    let base = now_ms() - 3_600_000;
    let base = base - base.rem_euclid(1_000);
    for i in 0..records {
        let key = format!("k{}", i % KEYS);
        let value = i.to_string();
        let mut rec = BaseRecord::to(topic)
            .key(key.as_bytes())
            .payload(value.as_bytes())
            .partition((i % PARTITIONS as u64) as i32)
            .timestamp(base + (i / 10) as i64);
        loop {
            match p.send(rec) {
                Ok(()) => break,
                Err((_, back)) => {
                    p.poll(Duration::from_millis(5));
                    rec = back;
                }
            }
        }
    }
    p.flush(Duration::from_secs(120)).expect("flush");
}

/// Reads every record of `input` with a plain consumer and writes each to `output` (if
/// given).
fn ceiling(brokers: &str, input: &str, output: Option<&str>) -> u64 {
    let c: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "kafka-bench-ceiling")
        .set("enable.partition.eof", "true")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let p: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("producer");
    let mut tpl = TopicPartitionList::new();
    for part in 0..PARTITIONS {
        tpl.add_partition_offset(input, part, Offset::Beginning)
            .expect("offset");
    }
    c.assign(&tpl).expect("assign");
    let mut ended = std::collections::BTreeSet::new();
    let mut n = 0u64;
    while ended.len() < PARTITIONS as usize {
        match c.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                n += 1;
                let Some(output) = output else { continue };
                let mut rec = BaseRecord::to(output)
                    .payload(m.payload().unwrap_or_default())
                    .key(m.key().unwrap_or_default());
                loop {
                    match p.send(rec) {
                        Ok(()) => break,
                        Err((_, back)) => {
                            p.poll(Duration::from_millis(1));
                            rec = back;
                        }
                    }
                }
                p.poll(Duration::ZERO);
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(part))) => {
                ended.insert(part);
            }
            Some(Err(e)) => panic!("reading {input}: {e}"),
            None => {}
        }
    }
    p.flush(Duration::from_secs(120)).expect("flush");
    n
}

/// Weir: `input` → one-second tumbling windows counting per key → `output`, at
/// parallelism 1 with a checkpoint every second; the source is bounded at the topic's end.
fn pipeline(brokers: &str, input: &str, output: &str, guarantee: DeliveryGuarantee) -> (u64, u64) {
    let chk = std::env::temp_dir().join(format!("kafka-bench-chk-{}", std::process::id()));
    let mut c = Config::default();
    c.set("parallelism.default", "1").unwrap();
    c.set("execution.checkpointing.interval", "1s").unwrap();
    c.set(
        "state.checkpoints.dir",
        &format!("file://{}", chk.display()),
    )
    .unwrap();
    let env = StreamExecutionEnvironment::with_config(c);
    let source = KafkaSource::<String>::builder()
        .bootstrap_servers(brokers)
        .topics([input])
        .bounded(StoppingOffsets::Latest)
        .deserializer(|r| {
            r.key
                .map(|k| String::from_utf8_lossy(k).into_owned())
                .ok_or_else(|| "no key".to_string())
        })
        .build()
        .expect("source");
    let sink = KafkaSink::<String>::builder()
        .bootstrap_servers(brokers)
        .topic(output)
        .value_serializer(|s: &String| s.clone().into_bytes())
        .delivery_guarantee(guarantee)
        .transactional_id_prefix(format!("kafka-bench-{}", std::process::id()))
        .build()
        .expect("sink");
    env.from_source(
        source,
        Some(WatermarkStrategy::for_bounded_out_of_orderness(
            Duration::from_millis(200),
        )),
        "in",
    )
    .uid("in")
    .key_by(|k: &String| k.clone())
    .window(WindowSpec::tumbling(Duration::from_secs(1)))
    .aggregate(agg::count())
    .uid("windows")
    .map(|w: Windowed<String, u64>| format!("{}@{}:{}", w.key, w.window.start, w.value))
    .sink_to(sink)
    .uid("out");
    let result = env.execute("kafka-bench").expect("job");
    let _ = std::fs::remove_dir_all(&chk);
    (result.metrics.records_in, result.checkpoints.completed)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}
