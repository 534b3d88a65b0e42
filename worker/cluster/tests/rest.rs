//! The REST API against real jobs running in this process: job and checkpoint views,
//! savepoint and stop-with-savepoint triggers (files in storage, idempotent trigger ids,
//! draining), cancel, error statuses, the Prometheus exposition, and the bearer token and
//! TLS (with a CA made by `openssl` for the test).

use hyper::{Method, StatusCode};
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};
use weir_cluster::{JobDescription, RestClient, RestServer};
use weir_contract::client::ClientSecurity;
use weir_contract::security::testing::TestCertificates;
use weir_contract::security::{RestSecurity, TlsFiles, Token, tls};
use weir_engine::api::{DataStream, StreamExecutionEnvironment};
use weir_engine::config::Config;
use weir_engine::connectors::{DataGen, FileSink};
use weir_engine::runtime::JobHandle;
use weir_engine::window::{WindowSpec, agg};

const EVENTS: u64 = 12_000;

fn uri(p: &Path) -> String {
    format!("file://{}", p.display())
}

/// Keyed one-second windows over generated events (10 ms of event time apart), written by
/// the exactly-once file sink to `out`.
fn start(pairs: &[(&str, String)], out: &Path, rate: f64) -> JobHandle {
    let mut c = Config::default();
    c.set("pipeline.batch-size", "50").unwrap();
    for (k, v) in pairs {
        c.set(k, v).unwrap();
    }
    let env = StreamExecutionEnvironment::with_config(c);
    windows_to(events(&env, EVENTS, rate), out);
    env.execute_async("windows").unwrap()
}

/// `count` generated events `(k<index % 7>, index)`, 10 ms of event time apart, at `rate`
/// per second.
fn events(env: &StreamExecutionEnvironment, count: u64, rate: f64) -> DataStream<(String, u64)> {
    weir_engine::testing::keyed_events(env, count, rate)
}

/// Keyed one-second windows (count and sum) of `events`, written by the exactly-once file
/// sink to `out` (a directory or an `s3://` location).
fn windows_to(events: DataStream<(String, u64)>, out: impl AsRef<Path>) {
    events
        .key_by(|e: &(String, u64)| e.0.clone())
        .window(WindowSpec::tumbling(Duration::from_secs(1)))
        .aggregate((agg::count(), agg::sum(|e: &(String, u64)| e.1)))
        .uid("windows")
        .sink_to(FileSink::json_lines(out))
        .uid("sink");
}

fn serve(job: &JobHandle) -> (RestServer, RestClient) {
    let server = RestServer::start("127.0.0.1", 0).unwrap();
    server.add_job(job.client());
    let client = RestClient::new(&server.url()).unwrap();
    (server, client)
}

fn get(c: &RestClient, path: &str) -> Value {
    let (status, v) = c.call(Method::GET, path, None).unwrap();
    assert_eq!(status, StatusCode::OK, "GET {path}: {v}");
    v
}

/// Every committed line in `dir` (in-progress files are hidden and not read).
fn committed(dir: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            lines.extend(
                std::fs::read_to_string(&p)
                    .unwrap()
                    .lines()
                    .map(str::to_string),
            );
        }
    }
    lines
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out: {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Polls a trigger until it is no longer IN_PROGRESS.
fn outcome(c: &RestClient, job: &str, trigger: &str) -> Value {
    let mut last = Value::Null;
    wait_until("savepoint completes", || {
        last = get(c, &format!("/jobs/{job}/savepoints/{trigger}"));
        last["status"]["id"] != "IN_PROGRESS"
    });
    assert_eq!(last["status"]["id"], "COMPLETED", "{last}");
    last
}

#[test]
fn savepoints_triggered_over_rest_land_in_storage_and_a_draining_stop_finishes_the_job() {
    let out = tempfile::tempdir().unwrap();
    let chk = tempfile::tempdir().unwrap();
    let sp = tempfile::tempdir().unwrap();
    let job = start(
        &[
            ("parallelism.default", "2".into()),
            ("execution.checkpointing.interval", "50ms".into()),
            ("state.checkpoints.dir", uri(chk.path())),
            ("state.checkpoints.num-retained", "1000".into()),
        ],
        out.path(),
        // 12 s of input: the job must still run when it is stopped, after a savepoint and
        // two checkpoints, also on a loaded machine (at 5,000/s it once ended first in CI).
        1_000.0,
    );
    let id = job.job_id().to_string();
    let (_server, c) = serve(&job);

    assert_eq!(
        get(&c, "/jobs"),
        json!({"jobs": [{"id": id, "status": "RUNNING"}]})
    );
    let details = get(&c, &format!("/jobs/{id}"));
    assert_eq!(details["jid"], id.as_str());
    assert_eq!(details["name"], "windows");
    assert_eq!(details["state"], "RUNNING");
    assert!(details["start-time"].as_i64().unwrap() > 0);
    let vertices = details["vertices"].as_array().unwrap();
    assert!(vertices.len() >= 2, "{details}");
    assert!(vertices.iter().all(|v| v["parallelism"] == 2), "{details}");
    let overview = get(&c, "/jobs/overview");
    assert_eq!(overview["jobs"][0]["state"], "RUNNING");
    assert_eq!(get(&c, "/overview")["jobs-running"], 1);
    assert_eq!(get(&c, "/healthz")["status"], "ok");
    assert_eq!(get(&c, "/readyz")["status"], "ready");
    let cfg = get(&c, &format!("/jobs/{id}/checkpoints/config"));
    assert_eq!(cfg["interval"], 50);
    assert_eq!(cfg["externalization"]["delete_on_cancellation"], false);

    // A savepoint under a client-chosen trigger id; repeating the request starts nothing new.
    let body = json!({"target-directory": uri(sp.path()), "cancel-job": false, "triggerId": "t-1"});
    for _ in 0..2 {
        let (status, v) = c
            .call(Method::POST, &format!("/jobs/{id}/savepoints"), Some(&body))
            .unwrap();
        assert_eq!(status, StatusCode::ACCEPTED, "{v}");
        assert_eq!(v, json!({"request-id": "t-1"}));
    }
    let done = outcome(&c, &id, "t-1");
    let location = done["operation"]["location"].as_str().unwrap().to_string();
    assert!(
        Path::new(location.strip_prefix("file://").unwrap())
            .join("_metadata")
            .exists(),
        "{location}"
    );
    assert_eq!(
        std::fs::read_dir(sp.path()).unwrap().count(),
        1,
        "one savepoint for one trigger id"
    );

    wait_until("a checkpoint completes", || job.checkpoints().completed > 0);
    let cps = get(&c, &format!("/jobs/{id}/checkpoints"));
    assert!(cps["counts"]["completed"].as_u64().unwrap() >= 2, "{cps}");
    assert_eq!(
        cps["latest"]["savepoint"]["external_path"],
        location.as_str()
    );
    let latest = cps["latest"]["completed"]["external_path"]
        .as_str()
        .unwrap();
    assert!(
        latest.starts_with(&format!("{}/{id}/chk-", uri(chk.path()))),
        "{latest}"
    );
    assert!(
        Path::new(latest.strip_prefix("file://").unwrap())
            .join("_metadata")
            .exists()
    );
    assert!(!cps["history"].as_array().unwrap().is_empty());

    // Draining stop: every window fires before the savepoint, the job ends FINISHED.
    let (status, v) = c
        .call(
            Method::POST,
            &format!("/jobs/{id}/stop"),
            Some(&json!({"targetDirectory": uri(sp.path()), "drain": true, "triggerId": "s-1"})),
        )
        .unwrap();
    assert_eq!(
        (status, v),
        (StatusCode::ACCEPTED, json!({"request-id": "s-1"}))
    );
    let stopped = outcome(&c, &id, "s-1");
    assert!(stopped["operation"]["location"].is_string(), "{stopped}");
    wait_until("the job ends", || job.is_finished());
    assert_eq!(get(&c, &format!("/jobs/{id}"))["state"], "FINISHED");
    let generated = job.metrics().records_in;
    assert!(generated < EVENTS, "stopped mid-run");
    let counted: u64 = committed(out.path())
        .iter()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["value"][0]
                .as_u64()
                .unwrap()
        })
        .sum();
    assert_eq!(
        counted, generated,
        "every generated event is in a fired window"
    );
    job.wait().unwrap();
}

#[test]
fn bad_requests_unknown_ids_and_wrong_methods_get_400_404_and_405() {
    let out = tempfile::tempdir().unwrap();
    let job = start(&[], out.path(), 2_000.0);
    let id = job.job_id().to_string();
    let (_server, c) = serve(&job);
    let status = |m: Method, path: &str, body: Option<&Value>| {
        let (s, v) = c.call(m, path, body).unwrap();
        if !s.is_success() {
            assert!(v["errors"][0].is_string(), "{path}: {v}");
        }
        s
    };
    let sp = format!("/jobs/{id}/savepoints");
    // Malformed: not JSON, wrong field types, no target directory anywhere.
    let (s, v) = c.call(Method::POST, &sp, None).unwrap();
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        v["errors"][0]
            .as_str()
            .unwrap()
            .contains("state.savepoints.dir"),
        "{v}"
    );
    assert_eq!(
        status(Method::POST, &sp, Some(&json!({"target-directory": 5}))),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        status(
            Method::POST,
            &format!("/jobs/{id}/stop"),
            Some(&json!({"drain": "yes"}))
        ),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        status(Method::PATCH, &format!("/jobs/{id}?mode=savepoint"), None),
        StatusCode::BAD_REQUEST
    );
    // Unknown job, trigger and path.
    assert_eq!(
        status(Method::GET, "/jobs/0123", None),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        status(Method::GET, &format!("/jobs/{id}/savepoints/nope"), None),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        status(Method::GET, "/nothing/here", None),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        status(Method::GET, &format!("/jobs/{id}/checkpoints/config"), None),
        StatusCode::NOT_FOUND,
        "checkpointing is off"
    );
    // Wrong methods.
    assert_eq!(
        status(Method::DELETE, &format!("/jobs/{id}"), None),
        StatusCode::METHOD_NOT_ALLOWED
    );
    assert_eq!(
        status(Method::GET, &format!("/jobs/{id}/stop"), None),
        StatusCode::METHOD_NOT_ALLOWED
    );
    assert_eq!(
        status(Method::POST, "/jobs", None),
        StatusCode::METHOD_NOT_ALLOWED
    );

    // A body that is not JSON.
    assert!(
        raw_post(&_server, &sp, "{not json").starts_with("HTTP/1.1 400"),
        "malformed JSON is a bad request"
    );

    // Cancel: 202, the job ends CANCELED, a second cancel conflicts.
    assert_eq!(
        status(Method::PATCH, &format!("/jobs/{id}?mode=cancel"), None),
        StatusCode::ACCEPTED
    );
    wait_until("the job ends", || job.is_finished());
    assert_eq!(get(&c, &format!("/jobs/{id}"))["state"], "CANCELED");
    assert_eq!(
        status(Method::PATCH, &format!("/jobs/{id}"), None),
        StatusCode::CONFLICT
    );
    let ex = get(&c, &format!("/jobs/{id}/exceptions"));
    assert!(ex["root-exception"].is_null(), "{ex}");
    assert!(job.wait().is_err());
}

/// Sends `body` as is (not necessarily JSON); returns the response head and body.
fn raw_post(server: &RestServer, path: &str, body: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(server.local_addr()).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    answer
}

/// One parsed sample: metric name, labels, value.
type Sample = (String, Vec<(String, String)>, f64);

/// Parses the text exposition: every sample line is `name{labels} value`; returns
/// (name, labels, value) triples.
fn parse_exposition(text: &str) -> Vec<Sample> {
    let mut samples = Vec::new();
    for line in text.lines() {
        if line.starts_with("# HELP ") || line.starts_with("# TYPE ") {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("sample has a value");
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line}"));
        let (name, labels) = series.split_once('{').expect("labels");
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "metric name {name}"
        );
        let labels = labels.strip_suffix('}').expect("closing brace");
        let mut parsed = Vec::new();
        let mut rest = labels;
        while !rest.is_empty() {
            let (k, v) = rest.split_once("=\"").expect("label=\"value\"");
            let mut end = 0;
            let bytes = v.as_bytes();
            while bytes[end] != b'"' {
                end += if bytes[end] == b'\\' { 2 } else { 1 };
            }
            parsed.push((k.to_string(), v[..end].to_string()));
            rest = v[end + 1..].trim_start_matches(',');
        }
        samples.push((name.to_string(), parsed, value));
    }
    samples
}

#[test]
fn metrics_expose_the_record_counts_the_job_really_produced() {
    let out = tempfile::tempdir().unwrap();
    let chk = tempfile::tempdir().unwrap();
    let job = start(
        &[
            ("execution.checkpointing.interval", "30ms".into()),
            ("state.checkpoints.dir", uri(chk.path())),
            ("taskmanager.memory.process.size", "256m".into()),
        ],
        out.path(),
        30_000.0,
    );
    let id = job.job_id().to_string();
    let (server, c) = serve(&job);
    wait_until("the job ends", || job.is_finished());
    let (status, body) = c.call(Method::GET, "/metrics", None).unwrap();
    assert_eq!(status, StatusCode::OK);
    let text = body.as_str().expect("text exposition").to_string();
    let samples = parse_exposition(&text);
    let value = |name: &str, operator: Option<&str>| -> f64 {
        samples
            .iter()
            .filter(|(n, l, _)| {
                n == name
                    && l.iter().any(|(k, v)| k == "job_id" && *v == id)
                    && operator
                        .is_none_or(|o| l.iter().any(|(k, v)| k == "operator_name" && v == o))
            })
            .map(|(_, _, v)| v)
            .sum()
    };
    let results = committed(out.path()).len() as f64;
    assert_eq!(results, 7.0 * 120.0);
    assert_eq!(
        value(
            "weir_taskmanager_job_task_operator_numRecordsIn",
            Some("Sink")
        ),
        results,
        "{text}"
    );
    // Every operator subtask's counters, as the job counted them.
    for o in job.metrics().operators {
        let sub = o.subtask.to_string();
        let find = |name: &str| {
            samples
                .iter()
                .find(|(n, l, _)| {
                    n == name
                        && l.contains(&("operator_name".into(), o.name.clone()))
                        && l.contains(&("subtask_index".into(), sub.clone()))
                        && l.contains(&("task_name".into(), o.task.clone()))
                })
                .map(|(_, _, v)| *v)
        };
        assert_eq!(
            find("weir_taskmanager_job_task_operator_numRecordsIn"),
            Some(o.records_in as f64)
        );
        assert_eq!(
            find("weir_taskmanager_job_task_operator_numRecordsOut"),
            Some(o.records_out as f64)
        );
    }
    assert_eq!(
        value(
            "weir_taskmanager_job_task_operator_numRecordsOut",
            Some("gen")
        ),
        EVENTS as f64
    );
    // A source whose records carry event time reports how long after it they are emitted,
    // a connector-style gauge carried to /metrics as it was last read.
    let lag = job
        .metrics()
        .operators
        .iter()
        .filter(|o| o.name == "gen")
        .flat_map(|o| o.gauges.clone())
        .find(|g| g.name == "currentEmitEventTimeLag")
        .expect("the source reports currentEmitEventTimeLag")
        .value;
    assert_eq!(
        value(
            "weir_taskmanager_job_task_operator_currentEmitEventTimeLag",
            Some("gen")
        ),
        lag,
        "{text}"
    );
    // Its records are stamped 10 ms apart from the epoch: the lag is about the wall clock.
    let now = weir_engine::time::now_ms() as f64;
    assert!(
        lag <= now && lag > now - (EVENTS * 10) as f64 - 600_000.0,
        "lag {lag} at {now}"
    );
    let checkpoints = job.checkpoints();
    assert!(checkpoints.completed > 0);
    assert_eq!(
        value("weir_jobmanager_job_numberOfCompletedCheckpoints", None),
        checkpoints.completed as f64
    );
    assert_eq!(
        value("weir_jobmanager_job_lastCheckpointSize", None),
        checkpoints.last_size_bytes as f64
    );
    assert_eq!(
        value("weir_jobmanager_job_lastCheckpointFullSize", None),
        checkpoints.last_full_size_bytes as f64
    );
    assert_eq!(
        value("weir_jobmanager_job_lastCompletedCheckpointId", None),
        checkpoints.last_completed_id.unwrap() as f64
    );
    // Per operator: what the latest checkpoint holds of each stateful operator.
    assert!(!checkpoints.last_operator_sizes.is_empty());
    for (uid, bytes) in &checkpoints.last_operator_sizes {
        let sample = samples
            .iter()
            .find(|(n, l, _)| {
                n == "weir_jobmanager_job_operator_lastCheckpointFullSize"
                    && l.contains(&("operator_uid".into(), uid.clone()))
            })
            .map(|(_, _, v)| *v);
        assert_eq!(sample, Some(*bytes as f64), "{uid}: {text}");
    }
    // A local job is one TaskManager: its slots are the job's parallelism, its memory the
    // budget it was given.
    let tm = |name: &str, component: Option<&str>| {
        samples
            .iter()
            .find(|(n, l, _)| {
                n == name
                    && l.contains(&("tm_id".into(), "local".into()))
                    && component.is_none_or(|c| l.contains(&("component".into(), c.into())))
            })
            .map(|(_, _, v)| *v)
    };
    assert_eq!(tm("weir_taskmanager_Status_Slots_Total", None), Some(1.0));
    assert!(tm("weir_taskmanager_Status_Memory_Resident", None).unwrap() > 1e6);
    let budget = |c| tm("weir_taskmanager_Status_Memory_Budget", Some(c));
    assert_eq!(budget("process"), Some((256u64 << 20) as f64), "{text}");
    assert_eq!(budget("framework"), Some((32u64 << 20) as f64));
    assert_eq!(
        budget("network").unwrap() + budget("managed").unwrap() + budget("task").unwrap(),
        (224u64 << 20) as f64
    );
    assert_eq!(value("weir_jobmanager_job_numRestarts", None), 0.0);
    assert!(value("weir_jobmanager_job_uptime", None) > 0.0);
    assert!(text.contains("# TYPE weir_taskmanager_job_task_operator_numRecordsIn counter"));
    assert!(
        samples.iter().any(|(n, l, _)| n
            == "weir_taskmanager_job_task_backPressuredTimeMsPerSecond"
            && l.iter().any(|(k, _)| k == "task_name")
            && l.iter().any(|(k, v)| k == "subtask_index" && v == "0")),
        "{text}"
    );
    drop(server);
    job.wait().unwrap();
}

#[test]
fn rocksdb_metrics_switched_on_show_the_window_state_in_rocksdb_on_metrics() {
    let out = tempfile::tempdir().unwrap();
    let chk = tempfile::tempdir().unwrap();
    let local = tempfile::tempdir().unwrap();
    let on = |m: &'static str| (m, "true".to_string());
    let job = start(
        &[
            ("state.backend.type", "rocksdb".into()),
            (
                "state.backend.rocksdb.localdir",
                local.path().display().to_string(),
            ),
            // A write cache smaller than the 7 keys' windows: entries reach RocksDB between
            // checkpoints too.
            ("state.backend.rocksdb.write-cache.entries", "4".into()),
            ("execution.checkpointing.interval", "50ms".into()),
            ("state.checkpoints.dir", uri(chk.path())),
            ("taskmanager.memory.process.size", "256m".into()),
            on("state.backend.rocksdb.metrics.block-cache-capacity"),
            on("state.backend.rocksdb.metrics.block-cache-usage"),
            on("state.backend.rocksdb.metrics.cur-size-all-mem-tables"),
            on("state.backend.rocksdb.metrics.estimate-live-data-size"),
            on("state.backend.rocksdb.metrics.total-sst-files-size"),
            on("state.backend.rocksdb.metrics.estimate-pending-compaction-bytes"),
        ],
        out.path(),
        6_000.0,
    );
    let id = job.job_id().to_string();
    let (server, c) = serve(&job);
    let scrape = || -> Vec<Sample> {
        let (status, body) = c.call(Method::GET, "/metrics", None).unwrap();
        assert_eq!(status, StatusCode::OK);
        parse_exposition(body.as_str().expect("text exposition"))
    };
    let window = |samples: &[Sample], metric: &str| -> Option<f64> {
        let name = format!("weir_taskmanager_job_task_operator_rocksdb_{metric}");
        samples
            .iter()
            .find(|(n, l, _)| {
                *n == name
                    && l.iter().any(|(k, v)| k == "job_id" && *v == id)
                    && l.iter()
                        .any(|(k, v)| k == "operator_name" && v.contains("Window"))
            })
            .map(|(_, _, v)| *v)
    };
    // While the job runs and checkpoints (each flushes the memtable into an SST file).
    let mut samples = Vec::new();
    wait_until("RocksDB holds SST files of the window state", || {
        samples = scrape();
        window(&samples, "total_sst_files_size").is_some_and(|v| v > 0.0)
    });
    let get = |m: &str| window(&samples, m).unwrap_or_else(|| panic!("no gauge {m}"));
    // The budget's shared cache: 256m minus framework and network, 40 % managed, half of
    // that for the cache; the index and filter blocks of the SST files sit in it.
    let capacity = get("block_cache_capacity");
    assert!(capacity > 10e6 && capacity < 100e6, "capacity {capacity}");
    let usage = get("block_cache_usage");
    assert!(
        usage > 0.0 && usage <= capacity,
        "usage {usage} of {capacity}"
    );
    assert!(get("cur_size_all_mem_tables") > 0.0);
    let live = get("estimate_live_data_size");
    assert!(live > 0.0 && live < 10e6, "live data {live}");
    assert!(get("estimate_pending_compaction_bytes") >= 0.0);
    // Only the metrics switched on are reported.
    assert_eq!(window(&samples, "estimate_num_keys"), None);
    wait_until("the job ends", || job.is_finished());
    assert_eq!(
        committed(out.path()).len(),
        7 * 120,
        "every window's result"
    );
    drop(server);
}

#[test]
fn idle_connections_beyond_the_limit_neither_block_the_api_nor_fail_the_job() {
    use std::io::Read;
    let out = tempfile::tempdir().unwrap();
    let job = start(&[], out.path(), 4_000.0);
    let limits = weir_cluster::ServerLimits {
        max_connections: 4,
        idle_timeout: Duration::from_millis(300),
    };
    let server = RestServer::start_with("127.0.0.1", 0, limits).unwrap();
    server.add_job(job.client());
    let client = RestClient::new(&server.url()).unwrap();
    // A flood of clients that connect and never send a request: more than the limit.
    let idle: Vec<std::net::TcpStream> = (0..40)
        .map(|_| std::net::TcpStream::connect(server.local_addr()).unwrap())
        .collect();
    let started = Instant::now();
    let jobs = get(&client, "/jobs");
    assert_eq!(jobs["jobs"][0]["id"], job.job_id(), "{jobs}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the API answered once idle connections timed out: {:?}",
        started.elapsed()
    );
    // The idle connections the server accepted were closed after the idle timeout.
    let mut first = idle.into_iter().next().unwrap();
    first
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 256];
    let n = first.read(&mut buf).unwrap_or(usize::MAX);
    assert!(
        n != usize::MAX,
        "an idle connection is closed by the server, not left open"
    );
    let result = job.wait().unwrap();
    assert_eq!(result.restarts, 0);
    assert_eq!(
        committed(out.path()).len(),
        7 * 120,
        "the job's output is complete"
    );
}

#[test]
fn savepoint_targets_over_rest_stay_below_the_configured_roots() {
    let out = tempfile::tempdir().unwrap();
    let roots = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let job = start(
        &[
            ("state.savepoints.dir", uri(roots[0].path())),
            ("state.savepoints.allowed-roots", uri(roots[1].path())),
        ],
        out.path(),
        2_000.0,
    );
    let (_server, c) = serve(&job);
    let post = |target: &str| {
        c.call(
            Method::POST,
            &format!("/jobs/{}/savepoints", job.job_id()),
            Some(&json!({"target-directory": target})),
        )
        .unwrap()
    };
    let refused = |target: String, why: &str| {
        let (s, v) = post(&target);
        assert_eq!(s, StatusCode::BAD_REQUEST, "{target}: {v}");
        let msg = v["errors"][0].as_str().unwrap().to_string();
        assert!(msg.contains(why) && msg.contains(&target), "{msg}");
    };
    refused(
        "file:///etc/weir".into(),
        "outside the directories savepoints may be written to",
    );
    refused(
        format!("{}/../escape", uri(roots[0].path())),
        "has a '.' or '..' segment",
    );
    // A sibling whose name merely starts like a root is not below it.
    refused(
        format!("{}-other", uri(roots[1].path())),
        "state.savepoints.allowed-roots",
    );
    // Below either root: taken, and the savepoint lands there.
    for (i, root) in roots.iter().enumerate() {
        let target = format!("{}/sub{i}", uri(root.path()));
        let (s, v) = post(&target);
        assert_eq!(s, StatusCode::ACCEPTED, "{v}");
        let trigger = v["request-id"].as_str().unwrap();
        let done = outcome(&c, job.job_id(), trigger);
        let location = done["operation"]["location"].as_str().unwrap();
        assert!(location.starts_with(&target), "{location}");
        assert!(
            Path::new(location.strip_prefix("file://").unwrap())
                .join("_metadata")
                .exists()
        );
    }
    job.cancel();
}

/// The server's JSON read into the contract's type `T` serializes back to exactly the same
/// JSON: no field lost, renamed or mistyped between the server and the clients.
fn round_trips<T: serde::de::DeserializeOwned + serde::Serialize>(raw: &Value) -> T {
    let typed: T = serde_json::from_value(raw.clone())
        .unwrap_or_else(|e| panic!("{e}: the contract's type does not read {raw}"));
    assert_eq!(&serde_json::to_value(&typed).unwrap(), raw);
    typed
}

#[test]
fn every_rest_type_round_trips_between_the_server_and_both_clients() {
    use weir_contract::JobState;
    use weir_contract::client::RestClient as AsyncClient;
    use weir_contract::rest::{
        CheckpointingStatistics, ErrorBody, JobDetails, JobsList, JobsOverview, Readiness,
        SavepointOutcome, SavepointStatus, SavepointTriggerRequest, TaskCheckpointDetails,
    };

    let out = tempfile::tempdir().unwrap();
    let chk = tempfile::tempdir().unwrap();
    let sp = tempfile::tempdir().unwrap();
    let job = start(
        &[
            ("execution.checkpointing.interval", "30ms".into()),
            ("state.checkpoints.dir", uri(chk.path())),
        ],
        out.path(),
        2_000.0,
    );
    let id = job.job_id().to_string();
    // The CLI's blocking client, and the async one the operator uses.
    let (server, cli) = serve(&job);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let operator = {
        let _guard = runtime.enter();
        AsyncClient::new(&server.url())
    };
    wait_until("a checkpoint completes", || job.checkpoints().completed > 0);

    // Requests: a savepoint from the operator's client, a stop from the CLI's.
    let request = SavepointTriggerRequest {
        target_directory: Some(uri(sp.path())),
        cancel_job: false,
        trigger_id: Some("rt-1".into()),
    };
    let trigger = runtime
        .block_on(operator.trigger_savepoint(&id, &request))
        .unwrap();
    assert_eq!(trigger, "rt-1");
    let savepoint = cli
        .wait_for_savepoint(&id, &trigger, Duration::from_secs(30))
        .unwrap();
    let stop = cli.stop(&id, Some(&uri(sp.path())), false).unwrap();
    let stopped = cli
        .wait_for_savepoint(&id, &stop, Duration::from_secs(30))
        .unwrap();
    job.wait().unwrap();

    // Every response the clients read, as the server sent it and as each client reads it.
    let jobs: JobsList = round_trips(&get(&cli, "/jobs"));
    assert_eq!(runtime.block_on(operator.jobs()).unwrap(), jobs);
    assert_eq!(jobs.jobs[0].status, JobState::Finished);

    let overview: JobsOverview = round_trips(&get(&cli, "/jobs/overview"));
    assert_eq!(
        runtime.block_on(operator.jobs_overview()).unwrap(),
        overview
    );
    assert_eq!(cli.jobs_overview().unwrap(), overview.jobs);
    assert_eq!(overview.jobs[0].jid, id);
    assert!(overview.jobs[0].end_time > 0);

    let mut details: JobDetails = round_trips(&get(&cli, &format!("/jobs/{id}")));
    let mut again = runtime.block_on(operator.job(&id)).unwrap();
    (details.now, again.now) = (0, 0);
    assert_eq!(again, details);
    assert_eq!(details.state, JobState::Finished);
    assert!(details.timestamps.contains_key(&JobState::Finished));
    assert!(!details.vertices.is_empty(), "{details:?}");

    let checkpoints: CheckpointingStatistics =
        round_trips(&get(&cli, &format!("/jobs/{id}/checkpoints")));
    assert_eq!(
        runtime.block_on(operator.checkpoints(&id)).unwrap(),
        checkpoints
    );
    assert_eq!(
        checkpoints.latest.savepoint.unwrap().external_path,
        Some(stopped.clone())
    );
    assert!(checkpoints.latest.completed.is_some());
    assert!(!checkpoints.history.is_empty());
    // A vertex's part of a savepoint.
    let taken = checkpoints.history.iter().find(|c| c.is_savepoint).unwrap();
    let vertex = taken.tasks.keys().next().unwrap();
    let breakdown: TaskCheckpointDetails = round_trips(&get(
        &cli,
        &format!(
            "/jobs/{id}/checkpoints/details/{}/subtasks/{vertex}",
            taken.id
        ),
    ));
    assert_eq!(breakdown.task, taken.tasks[vertex]);
    assert!(breakdown.subtasks.iter().all(|s| s.acknowledged.is_some()));

    for (trigger, location) in [(&trigger, &savepoint), (&stop, &stopped)] {
        let status: SavepointStatus =
            round_trips(&get(&cli, &format!("/jobs/{id}/savepoints/{trigger}")));
        assert_eq!(
            runtime
                .block_on(operator.savepoint_status(&id, trigger))
                .unwrap(),
            status
        );
        assert_eq!(
            status.outcome(),
            SavepointOutcome::Completed(location.clone())
        );
        assert_eq!(
            cli.savepoint_status(&id, trigger).unwrap(),
            SavepointOutcome::Completed(location.clone())
        );
    }

    let health: Readiness = round_trips(&get(&cli, "/healthz"));
    assert_eq!(health.status, "ok");

    // Errors: the body is the contract's, and both clients report its message.
    let (status, raw) = cli.call(Method::GET, "/jobs/0123", None).unwrap();
    assert_eq!(status, StatusCode::NOT_FOUND);
    let error: ErrorBody = round_trips(&raw);
    let from_operator = runtime.block_on(operator.job("0123")).unwrap_err();
    assert!(from_operator.is_not_found(), "{from_operator}");
    assert!(
        from_operator.to_string().contains(&error.errors[0]),
        "{from_operator}"
    );
    let from_cli = cli.cancel("0123").unwrap_err().to_string();
    assert!(from_cli.contains(&error.errors[0]), "{from_cli}");
}

/// The soak (`bench/soak.sh` runs it for 10 minutes; CI for `WEIR_SOAK_SECS`, default 20 s):
/// keyed one-second windows over generated events with checkpoints every 200 ms in a real S3
/// server (s3s-fs), written exactly once to the same bucket, while savepoints are triggered
/// over REST every 2 s, tasks fail at random moments, the S3 server goes away and comes back
/// at random moments, and REST clients flood the API (a bounded number of busy clients and of
/// connections that never send a request). The job must finish with the output of a
/// failure-free run, every savepoint that reported success must be in the bucket, and the API
/// must keep answering.
#[test]
fn a_soak_of_checkpoints_savepoints_task_failures_s3_outages_and_a_rest_flood_keeps_the_output_exact()
 {
    const NAME: &str = "a_soak_of_checkpoints_savepoints_task_failures_s3_outages_and_a_rest_flood_keeps_the_output_exact";
    if weir_storage::testing::in_child_with_credentials(NAME) {
        soak::run();
    }
}

mod soak {
    use super::*;
    use rand::{Rng, SeedableRng};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use weir_storage::testing::S3sFs;

    /// Generated events per second of wall time (each 10 ms of event time apart).
    const RATE: f64 = 2_000.0;

    /// What the chaos threads did, for the report and the assertions.
    #[derive(Default)]
    struct Counts {
        failures_requested: AtomicU64,
        failures_fired: AtomicU64,
        outages: AtomicU64,
        savepoints_completed: AtomicU64,
        savepoints_failed: AtomicU64,
        rest_ok: AtomicU64,
        rest_failed: AtomicU64,
        idle_connections: AtomicU64,
    }

    fn build(
        env: &StreamExecutionEnvironment,
        events: u64,
        rate: f64,
        fail: Arc<AtomicBool>,
        fired: Arc<Counts>,
        out: &str,
    ) {
        let chaos = super::events(env, events, rate)
            .map(move |e: (String, u64)| {
                if fail.swap(false, Ordering::SeqCst) {
                    fired.failures_fired.fetch_add(1, Ordering::SeqCst);
                    panic!("soak: injected task failure at event {}", e.1);
                }
                e
            })
            .uid("chaos");
        windows_to(chaos, out);
    }

    /// Every line of every object below `prefix` in the bucket, sorted.
    fn lines_in(store: &dyn weir_storage::ObjectStore, prefix: &str) -> Vec<String> {
        let mut lines: Vec<String> = Vec::new();
        for o in store.list(prefix).unwrap() {
            let bytes = store.get(&o.path).unwrap();
            lines.extend(
                std::str::from_utf8(&bytes)
                    .unwrap()
                    .lines()
                    .map(str::to_string),
            );
        }
        lines.sort();
        lines
    }

    /// A TCP proxy in front of the S3 server. During an outage new connections are refused
    /// (closed at once) and open ones stall — nothing crosses in either direction — until it
    /// ends: S3 unreachable, as a short network partition looks to a client. Requests over
    /// new connections fail; requests in flight are delayed, never cut. (Cutting them, or
    /// killing the server, broke s3s-fs itself: its CompleteMultipartUpload forgets the
    /// upload before writing the object, so an interruption in between loses a completed
    /// upload, which S3 never does.)
    struct Outages {
        addr: std::net::SocketAddr,
        down: Arc<AtomicBool>,
    }

    impl Outages {
        fn start(upstream: &str) -> Outages {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let down = Arc::new(AtomicBool::new(false));
            let (upstream, d) = (upstream.to_string(), down.clone());
            std::thread::spawn(move || {
                for client in listener.incoming() {
                    let Ok(client) = client else { return };
                    if d.load(Ordering::SeqCst) {
                        continue; // dropped: the client sees the connection closed
                    }
                    let Ok(server) = std::net::TcpStream::connect(&upstream) else {
                        continue;
                    };
                    for (mut from, mut to) in [
                        (client.try_clone().unwrap(), server.try_clone().unwrap()),
                        (server, client),
                    ] {
                        let d = d.clone();
                        std::thread::spawn(move || {
                            use std::io::{Read, Write};
                            let mut buf = vec![0u8; 64 << 10];
                            while let Ok(n) = from.read(&mut buf) {
                                if n == 0 {
                                    break;
                                }
                                while d.load(Ordering::SeqCst) {
                                    std::thread::sleep(Duration::from_millis(5));
                                }
                                if to.write_all(&buf[..n]).is_err() {
                                    break;
                                }
                            }
                            let _ = to.shutdown(std::net::Shutdown::Both);
                        });
                    }
                }
            });
            Outages { addr, down }
        }

        fn cut(&self) {
            self.down.store(true, Ordering::SeqCst);
        }

        fn restore(&self) {
            self.down.store(false, Ordering::SeqCst);
        }
    }

    /// Sleeps up to `d`, returning early (false) once `done` is set.
    fn pause(done: &AtomicBool, d: Duration) -> bool {
        let until = Instant::now() + d;
        while Instant::now() < until {
            if done.load(Ordering::SeqCst) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10).min(until - Instant::now()));
        }
        !done.load(Ordering::SeqCst)
    }

    pub fn run() {
        let secs: u64 = std::env::var("WEIR_SOAK_SECS")
            .map(|v| v.parse().expect("WEIR_SOAK_SECS is a number of seconds"))
            .unwrap_or(20);
        let seed = weir_engine::testing::test_seed();
        let what = format!("WEIR_TEST_SEED={seed} WEIR_SOAK_SECS={secs}");
        let events = (RATE * secs as f64) as u64;

        // The failure-free run, at full speed into a local directory.
        let reference = {
            let dir = tempfile::tempdir().unwrap();
            let env = StreamExecutionEnvironment::with_config(Config::default());
            let never = Arc::new(AtomicBool::new(false));
            build(
                &env,
                events,
                1e9,
                never,
                Arc::default(),
                &dir.path().display().to_string(),
            );
            env.execute("reference").unwrap();
            let mut lines = committed(dir.path());
            lines.sort();
            lines
        };
        assert_eq!(
            reference.len() as u64,
            7 * (events / 100),
            "{what}: 7 keys, 1 s windows"
        );

        let data = tempfile::tempdir().unwrap();
        let s3 = S3sFs::start(data.path(), &["weir"]);
        // The job reaches S3 through a proxy that the outages cut.
        let proxy = Outages::start(s3.endpoint().trim_start_matches("http://"));
        let endpoint = format!("http://{}", proxy.addr);
        let options = s3.options();
        let mut c = Config::default();
        for (k, v) in [
            ("parallelism.default", "2".to_string()),
            ("pipeline.batch-size", "50".into()),
            ("execution.checkpointing.interval", "200ms".into()),
            ("state.checkpoints.dir", "s3://weir/checkpoints".into()),
            ("state.checkpoints.num-retained", "2".into()),
            ("state.savepoints.dir", "s3://weir/savepoints".into()),
            ("s3.endpoint", endpoint),
            ("s3.path-style-access", "true".into()),
            ("s3.region", "us-east-1".into()),
            ("restart-strategy.type", "fixed-delay".into()),
            ("restart-strategy.fixed-delay.delay", "100ms".into()),
        ] {
            c.set(k, &v).unwrap();
        }
        let env = StreamExecutionEnvironment::with_config(c);
        let fail = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(Counts::default());
        build(
            &env,
            events,
            RATE,
            fail.clone(),
            counts.clone(),
            "s3://weir/out",
        );
        let started = Instant::now();
        let job = env.execute_async("soak").unwrap();
        let id = job.job_id().to_string();
        let server = RestServer::start("127.0.0.1", 0).unwrap();
        server.add_job(job.client());
        let url = server.url();
        let addr = server.local_addr();
        let done = Arc::new(AtomicBool::new(false));
        let proxy = Arc::new(proxy);
        let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
        // Task failures: one every 5–25 s.
        let failure_thread = {
            let (done, fail, counts) = (done.clone(), fail.clone(), counts.clone());
            let mut rng = rand::rngs::SmallRng::seed_from_u64(rng.r#gen());
            std::thread::spawn(move || {
                while pause(&done, Duration::from_millis(rng.gen_range(5_000..25_000))) {
                    counts.failures_requested.fetch_add(1, Ordering::SeqCst);
                    fail.store(true, Ordering::SeqCst);
                }
            })
        };
        // S3 outages: S3 is unreachable for 0.2–3 s every 3–15 s (and reachable at the end).
        let outage_thread = {
            let (done, proxy, counts) = (done.clone(), proxy.clone(), counts.clone());
            let mut rng = rand::rngs::SmallRng::seed_from_u64(rng.r#gen());
            std::thread::spawn(move || {
                while pause(&done, Duration::from_millis(rng.gen_range(3_000..15_000))) {
                    proxy.cut();
                    counts.outages.fetch_add(1, Ordering::SeqCst);
                    pause(&done, Duration::from_millis(rng.gen_range(200..3_000)));
                    proxy.restore();
                }
            })
        };
        // Savepoints every 2 s, each awaited; returns the locations reported complete.
        let savepoint_thread = {
            let (done, counts, id, url) = (done.clone(), counts.clone(), id.clone(), url.clone());
            std::thread::spawn(move || {
                let client = RestClient::new(&url).unwrap();
                let mut locations = Vec::new();
                while pause(&done, Duration::from_secs(2)) {
                    let outcome = client
                        .trigger_savepoint(&id, None, false)
                        .and_then(|t| client.wait_for_savepoint(&id, &t, Duration::from_secs(120)));
                    match outcome {
                        Ok(location) => {
                            counts.savepoints_completed.fetch_add(1, Ordering::SeqCst);
                            locations.push(location);
                        }
                        Err(_) => {
                            counts.savepoints_failed.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                }
                locations
            })
        };
        let mut threads = Vec::new();
        // Busy REST clients: two, each at most ~200 requests per second.
        for n in 0..2 {
            let (done, counts, id, url) = (done.clone(), counts.clone(), id.clone(), url.clone());
            threads.push(std::thread::spawn(move || {
                let client = RestClient::new(&url).unwrap();
                let paths = [
                    format!("/jobs/{id}"),
                    format!("/jobs/{id}/checkpoints"),
                    "/jobs/overview".to_string(),
                    "/metrics".to_string(),
                ];
                let mut i = n;
                while pause(&done, Duration::from_millis(5)) {
                    match client.call(Method::GET, &paths[i % paths.len()], None) {
                        Ok((status, _)) if status.is_success() => {
                            counts.rest_ok.fetch_add(1, Ordering::SeqCst)
                        }
                        _ => counts.rest_failed.fetch_add(1, Ordering::SeqCst),
                    };
                    i += 1;
                }
            }));
        }
        // Connections that never send a request: 100 at a time (above the server's limit),
        // renewed every 10 s.
        {
            let (done, counts) = (done.clone(), counts.clone());
            threads.push(std::thread::spawn(move || {
                loop {
                    let idle: Vec<std::net::TcpStream> = (0..100)
                        .filter_map(|_| std::net::TcpStream::connect(addr).ok())
                        .collect();
                    counts
                        .idle_connections
                        .fetch_add(idle.len() as u64, Ordering::SeqCst);
                    if !pause(&done, Duration::from_secs(10)) {
                        return;
                    }
                }
            }));
        }

        let result = job.wait();
        done.store(true, Ordering::SeqCst);
        failure_thread.join().unwrap();
        outage_thread.join().unwrap();
        let savepoints = savepoint_thread.join().unwrap();
        for t in threads {
            t.join().unwrap();
        }
        let elapsed = started.elapsed();
        let result = result.unwrap_or_else(|e| panic!("{what}: {}", weir_engine::report(&e)));

        let get = |c: &AtomicU64| c.load(Ordering::SeqCst);
        let report = format!(
            "soak {what}: {:.0} s wall, {events} events, {} windows; task failures injected {} \
             (fired {}), restarts {}; S3 outages {}; checkpoints completed {} failed {}; \
             savepoints completed {} failed {}; REST requests ok {} failed {}; idle connections \
             opened {}",
            elapsed.as_secs_f64(),
            reference.len(),
            get(&counts.failures_requested),
            get(&counts.failures_fired),
            result.restarts,
            get(&counts.outages),
            result.checkpoints.completed,
            result.checkpoints.failed,
            get(&counts.savepoints_completed),
            get(&counts.savepoints_failed),
            get(&counts.rest_ok),
            get(&counts.rest_failed),
            get(&counts.idle_connections),
        );
        println!("{report}");
        if let Ok(path) = std::env::var("WEIR_SOAK_REPORT") {
            std::fs::write(path, format!("{report}\n")).unwrap();
        }

        let store = weir_storage::open("s3://weir", &options).unwrap();
        assert_eq!(
            lines_in(&*store, "out/"),
            reference,
            "{what}: the output equals a failure-free run's"
        );
        assert!(
            result.restarts >= get(&counts.failures_fired).min(1),
            "{what}: fired failures restart the job"
        );
        for location in &savepoints {
            let prefix = location
                .strip_prefix("s3://weir/")
                .unwrap_or_else(|| panic!("{what}: savepoint {location} in the bucket"));
            assert!(
                store.get(&format!("{prefix}/_metadata")).is_ok(),
                "{what}: savepoint {location} reported complete has its _metadata"
            );
        }
        assert!(get(&counts.savepoints_completed) > 0, "{what}: {report}");
        assert!(
            get(&counts.rest_ok) > 0,
            "{what}: the API answered: {report}"
        );
        drop(server);
        drop(s3);
    }
}

/// A server requiring `token` (and serving TLS with `certs`, if given) for `job`.
fn serve_secured(job: &JobHandle, token: &str, certs: Option<&TestCertificates>) -> RestServer {
    let security = RestSecurity {
        token: Token::new(token),
        tls: certs.map(|c| TlsFiles {
            cert: Some(c.cert.clone()),
            key: Some(c.key.clone()),
            ca: None,
        }),
    };
    let server = RestServer::start_secured("127.0.0.1", 0, Default::default(), &security).unwrap();
    server.add_job(job.client());
    server
}

fn client_with(url: &str, token: Option<&str>, ca: Option<&Path>) -> RestClient {
    RestClient::new(url)
        .unwrap()
        .with_security(&ClientSecurity {
            token: token.and_then(Token::new),
            tls: ca.map(|ca| tls::client_config((ca, "ca")).unwrap()),
            server_name: None,
        })
        .unwrap()
}

#[test]
fn with_a_token_every_endpoint_but_the_probes_answers_401_without_it() {
    let out = tempfile::tempdir().unwrap();
    let job = start(&[], out.path(), 500.0);
    let id = job.job_id().to_string();
    let server = serve_secured(&job, "s3cret-token", None);
    let anonymous = client_with(&server.url(), None, None);
    let wrong = client_with(&server.url(), Some("s3cret-tokeN"), None);
    let cancel = format!("/jobs/{id}?mode=cancel");
    for (client, who) in [(&anonymous, "no token"), (&wrong, "a wrong token")] {
        for (method, path) in [
            (Method::GET, "/jobs"),
            (Method::GET, "/metrics"),
            (Method::GET, "/overview"),
            (Method::PATCH, cancel.as_str()),
        ] {
            let (status, body) = client.call(method.clone(), path, None).unwrap();
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{method} {path} with {who}"
            );
            let message = body["errors"][0].as_str().unwrap();
            assert!(
                message.contains("bearer token") && message.contains("security.rest.token-file"),
                "{message}"
            );
            assert!(
                !message.contains("s3cret"),
                "the token is never echoed: {message}"
            );
        }
        // The dashboard's data needs the token like every other endpoint.
        for path in [
            format!("/jobs/{id}/plan"),
            "/jobmanager/config".to_string(),
            "/taskmanagers/local".to_string(),
        ] {
            let (status, _) = client.call(Method::GET, &path, None).unwrap();
            assert_eq!(status, StatusCode::UNAUTHORIZED, "GET {path} with {who}");
        }
        // The probes' paths stay open: a kubelet holds no token. So do the dashboard's page
        // and scripts, which hold no data: the page asks the user for the token.
        for path in ["/healthz", "/readyz", "/", "/web/app.js"] {
            let (status, body) = client.call(Method::GET, path, None).unwrap();
            assert_eq!(status, StatusCode::OK, "{path} with {who}: {body}");
        }
    }
    // The refused cancel did nothing: the job still runs.
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !job.is_finished(),
        "a cancel without the token must not stop the job"
    );
    let holder = client_with(&server.url(), Some("s3cret-token"), None);
    let jobs = get(&holder, "/jobs");
    assert_eq!(jobs["jobs"][0]["id"], id.as_str(), "{jobs}");
    assert!(get_text(&holder, "/metrics").contains("weir_"));
    holder.cancel(&id).unwrap();
    wait_until("the cancel with the token ends the job", || {
        get(&holder, &format!("/jobs/{id}"))["state"] == "CANCELED"
    });
}

/// A non-JSON body (the Prometheus exposition) as text.
fn get_text(c: &RestClient, path: &str) -> String {
    let (status, v) = c.call(Method::GET, path, None).unwrap();
    assert_eq!(status, StatusCode::OK, "GET {path}: {v}");
    v.as_str().unwrap().to_string()
}

#[test]
fn over_tls_clients_trusting_the_ca_get_answers_and_others_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let certs = TestCertificates::generate(dir.path(), &["127.0.0.1", "localhost"]);
    let other_dir = tempfile::tempdir().unwrap();
    let other = TestCertificates::generate(other_dir.path(), &["127.0.0.1"]);
    let out = tempfile::tempdir().unwrap();
    let job = start(&[], out.path(), 500.0);
    let id = job.job_id().to_string();
    let server = serve_secured(&job, "tls-token", Some(&certs));
    let url = server.url();
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");

    let trusted = client_with(&url, Some("tls-token"), Some(&certs.ca));
    assert_eq!(get(&trusted, "/jobs")["jobs"][0]["id"], id.as_str());
    // The name on the certificate, not the address, is what is verified.
    let by_name = client_with(
        &url.replace("127.0.0.1", "localhost"),
        Some("tls-token"),
        Some(&certs.ca),
    );
    assert_eq!(get(&by_name, "/jobs")["jobs"][0]["id"], id.as_str());
    // Over TLS the token is still required.
    let (status, _) = client_with(&url, None, Some(&certs.ca))
        .call(Method::GET, "/jobs", None)
        .unwrap();
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // A client trusting another CA does not talk to this server.
    let e = client_with(&url, Some("tls-token"), Some(&other.ca))
        .call(Method::GET, "/jobs", None)
        .unwrap_err();
    assert!(e.to_string().contains("cannot reach"), "{e}");
    // A client without any CA is told what to configure.
    let e = client_with(&url, Some("tls-token"), None)
        .call(Method::GET, "/jobs", None)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("no CA is configured") && e.contains("security.ssl.rest.ca-file"),
        "{e}"
    );
    // Plain HTTP to the TLS port gets no answer from the API.
    let plain = client_with(&url.replace("https://", "http://"), Some("tls-token"), None);
    assert!(plain.call(Method::GET, "/jobs", None).is_err());

    trusted.cancel(&id).unwrap();
    wait_until("the job is cancelled over TLS", || {
        get(&trusted, &format!("/jobs/{id}"))["state"] == "CANCELED"
    });
}

/// A running windowed job served with its topology, as `weir run` serves it.
fn serve_described(env: &StreamExecutionEnvironment, job: &JobHandle) -> (RestServer, RestClient) {
    let server = RestServer::start("127.0.0.1", 0).unwrap();
    server.set_configuration(vec![
        ("pipeline.batch-size".into(), "50".into()),
        ("s3.secret-key".into(), "do-not-show".into()),
        ("security.rest.token-file".into(), "/etc/weir/token".into()),
    ]);
    server.add_described_job(
        job.client(),
        JobDescription {
            topology: Some(env.topology().unwrap()),
            sql_explain: None,
        },
    );
    let client = RestClient::new(&server.url()).unwrap();
    (server, client)
}

/// The vertex whose name contains `part`, from `GET /jobs/:id`.
fn vertex_id(c: &RestClient, job: &str, part: &str) -> String {
    let details = get(c, &format!("/jobs/{job}"));
    details["vertices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"].as_str().unwrap().contains(part))
        .unwrap_or_else(|| panic!("no vertex named like {part}: {details}"))["id"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn the_dashboard_endpoints_show_the_plan_flowing_records_watermarks_and_checkpoint_sizes() {
    let out = tempfile::tempdir().unwrap();
    let chk = tempfile::tempdir().unwrap();
    let mut c = Config::default();
    c.set("pipeline.batch-size", "50").unwrap();
    c.set("execution.checkpointing.interval", "200ms").unwrap();
    c.set("state.checkpoints.dir", &uri(chk.path())).unwrap();
    // The checkpoint examined below stays on disk while it is compared with its files.
    c.set("state.checkpoints.num-retained", "1000").unwrap();
    c.set("taskmanager.memory.process.size", "256m").unwrap();
    let env = StreamExecutionEnvironment::with_config(c);
    env.set_parallelism(3);
    windows_to(events(&env, EVENTS, 3_000.0), out.path());
    let job = env.execute_async("windows").unwrap();
    let id = job.job_id().to_string();
    let (_server, c) = serve_described(&env, &job);

    // 1. The plan: the source vertex feeds the window vertex by key (HASH).
    let plan = get(&c, &format!("/jobs/{id}/plan"));
    let generator = vertex_id(&c, &id, "gen");
    let windows = vertex_id(&c, &id, "Window");
    let nodes = plan["plan"]["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 2, "{plan}");
    let window_node = nodes.iter().find(|n| n["id"] == windows.as_str()).unwrap();
    assert_eq!(window_node["parallelism"], 3, "{plan}");
    assert_eq!(window_node["inputs"][0]["id"], generator.as_str(), "{plan}");
    assert_eq!(window_node["inputs"][0]["ship_strategy"], "HASH", "{plan}");
    assert!(
        nodes
            .iter()
            .any(|n| n["id"] == generator.as_str() && n.get("inputs").is_none())
    );
    assert_eq!(
        plan["sql-explain"],
        Value::Null,
        "a DataStream job has no SQL plan"
    );
    assert_eq!(get(&c, &format!("/jobs/{id}"))["plan"], plan["plan"]);

    // 2. Records flow: the source's subtasks emit at about the generator's rate (3,000/s
    // over 3 subtasks), and the window vertex reads them.
    std::thread::sleep(Duration::from_millis(1500));
    let mut source = Value::Null;
    wait_until("the rates are measured over a second", || {
        source = get(&c, &format!("/jobs/{id}/vertices/{generator}"));
        source["subtasks"].as_array().unwrap().len() == 3
            && source["subtasks"][0]["weir"]["recordsOutPerSecond"]
                .as_f64()
                .unwrap()
                > 0.0
    });
    let rate = over_subtasks(&source, "weir", "recordsOutPerSecond");
    assert!(
        (1_500.0..6_000.0).contains(&rate),
        "source rate {rate}/s: {source}"
    );
    let emitted = over_subtasks(&source, "metrics", "write-records");
    assert!(emitted > 0.0 && emitted < EVENTS as f64, "{source}");
    assert_eq!(source["subtasks"][0]["taskmanager-id"], "local");
    assert_eq!(source["subtasks"][0]["status"], "RUNNING");
    let sink = get(&c, &format!("/jobs/{id}/vertices/{windows}"));
    assert!(
        over_subtasks(&sink, "metrics", "read-records") > 0.0,
        "{sink}"
    );
    assert!(
        over_subtasks(&sink, "weir", "stateEntries") > 0.0,
        "open windows hold state: {sink}"
    );
    // A generator at its rate limit waits much of the time: it is idle, not backpressured.
    // (Most of the time on a quiet machine; a loaded CI machine stretches its busy time.)
    let bp = get(&c, &format!("/jobs/{id}/vertices/{generator}/backpressure"));
    assert_ne!(bp["backpressure-level"], "high", "{bp}");
    for s in bp["subtasks"].as_array().unwrap() {
        let (r, i, b) = (
            s["ratio"].as_f64().unwrap(),
            s["idleRatio"].as_f64().unwrap(),
            s["busyRatio"].as_f64().unwrap(),
        );
        assert!(i > 0.25 && i > r, "{bp}");
        assert!((r + i + b - 1.0).abs() < 1e-6, "the shares add up: {bp}");
    }

    // 3. Watermarks: the window vertex's input watermark follows event time (10 ms per
    // event), behind the generated events by the 2 s bound.
    let mut wms = Value::Null;
    wait_until("a watermark reaches the windows", || {
        wms = get(&c, &format!("/jobs/{id}/vertices/{windows}/watermarks"));
        wms.as_array()
            .unwrap()
            .iter()
            .all(|w| w["value"].as_str().unwrap().parse::<i64>().unwrap() > 0)
    });
    let wms = wms.as_array().unwrap();
    assert_eq!(wms.len(), 3);
    assert_eq!(wms[0]["id"], "0.currentInputWatermark");
    for w in wms {
        let v: i64 = w["value"].as_str().unwrap().parse().unwrap();
        assert!(v < EVENTS as i64 * 10, "{w:?}");
    }

    // 4. A completed checkpoint's details: its size is what it wrote to storage.
    let mut stats = Value::Null;
    wait_until("a checkpoint completes", || {
        stats = get(&c, &format!("/jobs/{id}/checkpoints"));
        stats["latest"]["completed"].is_object()
    });
    let latest = stats["latest"]["completed"].clone();
    let ckpt = latest["id"].as_u64().unwrap();
    let details = get(&c, &format!("/jobs/{id}/checkpoints/details/{ckpt}"));
    assert_eq!(details["status"], "COMPLETED", "{details}");
    assert_eq!(details["id"], ckpt);
    let path = details["external_path"].as_str().unwrap();
    let dir = Path::new(path.strip_prefix("file://").unwrap_or(path));
    let on_disk: u64 = walk_sizes(dir);
    let size = details["state_size"].as_u64().unwrap();
    assert!(size > 0, "{details}");
    assert!(
        size <= on_disk,
        "a checkpoint's size ({size}) counts what it wrote ({on_disk} bytes in {path})"
    );
    assert_eq!(
        details["checkpointed_size"], details["state_size"],
        "full checkpoints"
    );
    // The window vertex's state in the latest checkpoint: part of what the checkpoint wrote.
    let window_state =
        get(&c, &format!("/jobs/{id}/vertices/{windows}"))["weir"]["checkpointedStateSize"]
            .as_u64()
            .unwrap();
    let latest_size =
        get(&c, &format!("/jobs/{id}/checkpoints"))["latest"]["completed"]["state_size"]
            .as_u64()
            .unwrap();
    assert!(
        window_state > 0 && window_state < latest_size,
        "window state {window_state} of a {latest_size}-byte checkpoint"
    );
    // Its breakdown: every subtask of both vertices acknowledged, and what they wrote plus
    // the `_metadata` file is what the checkpoint wrote.
    assert_eq!(details["num_subtasks"], 6, "{details}");
    assert_eq!(details["num_acknowledged_subtasks"], 6, "{details}");
    let trigger = details["trigger_timestamp"].as_i64().unwrap();
    let mut written = 0;
    for vertex in [&generator, &windows] {
        let task = &details["tasks"][vertex.as_str()];
        assert_eq!(task["status"], "COMPLETED", "{details}");
        assert_eq!(task["num_acknowledged_subtasks"], 3, "{details}");
        let breakdown = get(
            &c,
            &format!("/jobs/{id}/checkpoints/details/{ckpt}/subtasks/{vertex}"),
        );
        assert_eq!(breakdown["id"], ckpt, "{breakdown}");
        let subtasks = breakdown["subtasks"].as_array().unwrap();
        assert_eq!(subtasks.len(), 3, "{breakdown}");
        let mut sizes = Vec::new();
        for (i, s) in subtasks.iter().enumerate() {
            assert_eq!(s["index"], i, "{breakdown}");
            assert_eq!(s["status"], "completed", "{breakdown}");
            let ack = s["ack_timestamp"].as_i64().unwrap();
            assert!(
                ack >= trigger && ack <= details["latest_ack_timestamp"].as_i64().unwrap(),
                "acknowledged between trigger and the last ack: {s} of {details}"
            );
            assert_eq!(s["end_to_end_duration"], ack - trigger, "{s}");
            assert!(
                s["start_delay"].as_i64().unwrap() <= ack - trigger,
                "its barrier came before its ack: {s}"
            );
            assert_eq!(s["state_size"], s["checkpointed_size"], "full: {s}");
            sizes.push(s["checkpointed_size"].as_u64().unwrap());
        }
        assert!(
            sizes.iter().all(|&b| b > 0),
            "sources keep offsets, windows their contents: {breakdown}"
        );
        let sum: u64 = sizes.iter().sum();
        assert_eq!(task["checkpointed_size"], sum, "{details}");
        assert_eq!(breakdown["checkpointed_size"], sum, "{breakdown}");
        assert_eq!(
            breakdown["summary"]["checkpointed_size"]["max"],
            *sizes.iter().max().unwrap(),
            "{breakdown}"
        );
        written += sum;
    }
    let metadata = std::fs::metadata(dir.join("_metadata")).unwrap().len();
    assert_eq!(written + metadata, size, "{details}");
    let (status, body) = c
        .call(
            Method::GET,
            &format!("/jobs/{id}/checkpoints/details/{ckpt}/subtasks/feed"),
            None,
        )
        .unwrap();
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(
        body["errors"][0]
            .as_str()
            .unwrap()
            .contains("no vertex feed"),
        "{body}"
    );
    let (status, body) = c
        .call(
            Method::GET,
            &format!("/jobs/{id}/checkpoints/details/999999"),
            None,
        )
        .unwrap();
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(
        body["errors"][0].as_str().unwrap().contains("999999"),
        "{body}"
    );

    // 5. The TaskManager and the configuration, secrets redacted.
    let tm = get(&c, "/taskmanagers/local");
    assert_eq!(tm["id"], "local");
    assert!(
        tm["memoryConfiguration"]["totalProcessMemory"]
            .as_u64()
            .unwrap()
            == 256 << 20,
        "{tm}"
    );
    assert!(
        tm["weir"]["residentMemory"].as_u64().unwrap() > 1 << 20,
        "{tm}"
    );
    let (status, _) = c.call(Method::GET, "/taskmanagers/nope", None).unwrap();
    assert_eq!(status, StatusCode::NOT_FOUND);
    let config = get(&c, "/jobmanager/config");
    let value = |k: &str| {
        config
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["key"] == k)
            .map(|e| e["value"].clone())
    };
    assert_eq!(value("pipeline.batch-size"), Some(json!("50")));
    assert_eq!(value("s3.secret-key"), Some(json!("******")));
    assert_eq!(
        value("security.rest.token-file"),
        Some(json!("/etc/weir/token"))
    );

    // 6. The page and its scripts, from the binary.
    let (status, page) = c.call(Method::GET, "/", None).unwrap();
    assert_eq!(status, StatusCode::OK);
    let page = page.as_str().unwrap();
    assert!(
        page.contains("<script type=\"module\" src=\"web/app.js\">"),
        "{page}"
    );
    let (status, script) = c.call(Method::GET, "/web/graph.js", None).unwrap();
    assert_eq!(status, StatusCode::OK);
    assert!(
        script
            .as_str()
            .unwrap()
            .contains("export function drawGraph")
    );
    let (status, body) = c.call(Method::GET, "/web/secrets.txt", None).unwrap();
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    job.cancel();
}

/// The sum of `subtasks[*][group][field]` of a `GET /jobs/:jobid/vertices/:vertexid` answer.
fn over_subtasks(vertex: &Value, group: &str, field: &str) -> f64 {
    vertex["subtasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s[group][field].as_f64().unwrap())
        .sum()
}

/// Bytes of the files below `dir`.
fn walk_sizes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk_sizes(&p)
            } else {
                p.metadata().unwrap().len()
            }
        })
        .sum()
}

/// A union of a fast source and a slow one (behind a map taking 2 ms per record) into a file
/// sink, checkpointing every 100 ms with `extra` settings; served over REST. Returns the job,
/// its client and the id and latest completed checkpoint of `/jobs/:id/checkpoints`.
fn union_with_a_slow_input(
    extra: &[(&str, &str)],
    dirs: &(tempfile::TempDir, tempfile::TempDir),
) -> (JobHandle, RestServer, RestClient, Value) {
    let mut c = Config::default();
    c.set("pipeline.batch-size", "10").unwrap();
    c.set("execution.checkpointing.interval", "100ms").unwrap();
    c.set("state.checkpoints.dir", &uri(dirs.1.path())).unwrap();
    for (k, v) in extra {
        c.set(k, v).unwrap();
    }
    let env = StreamExecutionEnvironment::with_config(c);
    env.set_parallelism(1);
    let generate = |name: &str| {
        env.from_source(
            DataGen::new(1, |g| (format!("k{}", g.index % 7), g.index)).bounded(1_000_000),
            None,
            name,
        )
    };
    let fast = generate("fast source");
    let slow = generate("slow source")
        .map(|e: (String, u64)| {
            // 2 ms per record: a barrier waits behind every queued batch (20 ms each).
            std::thread::sleep(Duration::from_millis(2));
            e
        })
        .start_new_chain();
    fast.union(&[slow])
        .sink_to(FileSink::json_lines(dirs.0.path()));
    let job = env.execute_async("union").unwrap();
    let id = job.job_id().to_string();
    let (server, c) = serve_described(&env, &job);
    let mut stats = Value::Null;
    wait_until("a checkpoint completes", || {
        stats = get(&c, &format!("/jobs/{id}/checkpoints"));
        stats["latest"]["completed"].is_object()
    });
    (job, server, c, stats)
}

#[test]
fn a_union_whose_second_input_is_slow_reports_how_long_its_checkpoints_waited_for_alignment() {
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (job, _server, c, stats) = union_with_a_slow_input(&[], &dirs);
    let id = job.job_id().to_string();
    let union = vertex_id(&c, &id, "Union");
    let map = vertex_id(&c, &id, "Map");
    let fast = vertex_id(&c, &id, "fast source");

    // The union's fast input delivers its barrier at once; the slow one only after the map
    // worked through its queue: the union's subtask aligned for that long.
    let latest = &stats["latest"]["completed"];
    let ckpt = latest["id"].as_u64().unwrap();
    let breakdown = |vertex: &str| {
        get(
            &c,
            &format!("/jobs/{id}/checkpoints/details/{ckpt}/subtasks/{vertex}"),
        )
    };
    let aligned = breakdown(&union);
    let alignment = aligned["subtasks"][0]["alignment"]["duration"]
        .as_u64()
        .unwrap();
    assert!(
        alignment >= 10,
        "the union waited for its slow input's barrier: {aligned}"
    );
    assert_eq!(
        aligned["summary"]["alignment"]["duration"]["max"], alignment,
        "{aligned}"
    );
    assert_eq!(aligned["subtasks"][0]["unaligned_checkpoint"], false);
    assert_eq!(
        latest["tasks"][union.as_str()]["weir"]["alignmentDuration"],
        alignment,
        "{latest}"
    );
    assert_eq!(latest["weir"]["alignmentDuration"], alignment, "{latest}");
    let history = stats["history"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["id"] == ckpt)
        .unwrap();
    assert_eq!(history["weir"]["alignmentDuration"], alignment);
    // A task with one input has nothing to align; a source has no input at all.
    for single in [&map, &fast] {
        let b = breakdown(single);
        assert_eq!(b["subtasks"][0]["status"], "completed", "{b}");
        assert!(
            b["subtasks"][0]["alignment"]["duration"].as_u64().unwrap() < alignment,
            "{b}"
        );
    }
    assert_eq!(
        breakdown(&fast)["subtasks"][0]["alignment"]["duration"],
        0,
        "a source takes its snapshot when it sees the trigger"
    );
    // The slow path's barrier also starts late at the union: its start delay counts the
    // wait for the first barrier only, which the fast input brought.
    let union_start = aligned["subtasks"][0]["start_delay"].as_u64().unwrap();
    let union_e2e = aligned["subtasks"][0]["end_to_end_duration"]
        .as_u64()
        .unwrap();
    assert!(
        union_start + alignment <= union_e2e,
        "first barrier, then alignment, then the ack: {aligned}"
    );
    job.cancel();
}

#[test]
fn an_unaligned_checkpoint_reports_the_in_flight_records_its_barrier_overtook() {
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (job, _server, c, stats) =
        union_with_a_slow_input(&[("execution.checkpointing.unaligned", "true")], &dirs);
    let id = job.job_id().to_string();
    let map = vertex_id(&c, &id, "Map");
    let latest = &stats["latest"]["completed"];
    let ckpt = latest["id"].as_u64().unwrap();
    // The map's input is full of the slow source's batches: its barrier overtakes them, and
    // they are stored with the checkpoint.
    let b = get(
        &c,
        &format!("/jobs/{id}/checkpoints/details/{ckpt}/subtasks/{map}"),
    );
    let subtask = &b["subtasks"][0];
    assert_eq!(subtask["unaligned_checkpoint"], true, "{b}");
    let persisted = subtask["alignment"]["persisted"].as_u64().unwrap();
    assert!(persisted > 0, "records were in flight: {b}");
    assert_eq!(latest["tasks"][map.as_str()]["persisted_data"], persisted);
    assert!(
        latest["persisted_data"].as_u64().unwrap() >= persisted,
        "{latest}"
    );
    // Its in-flight data is part of what the map's subtask wrote.
    assert!(subtask["checkpointed_size"].as_u64().unwrap() > 0, "{b}");
    job.cancel();
}

#[test]
fn a_slow_operator_shows_as_busy_and_its_upstream_vertex_as_backpressured() {
    let out = tempfile::tempdir().unwrap();
    let mut c = Config::default();
    c.set("pipeline.batch-size", "10").unwrap();
    let env = StreamExecutionEnvironment::with_config(c);
    env.set_parallelism(1);
    env.from_source(
        DataGen::new(1, |g| (format!("k{}", g.index % 7), g.index)).bounded(1_000_000),
        None,
        "fast source",
    )
    .map(|e: (String, u64)| {
        // 2 ms per record: a sink-side bottleneck like a slow external system.
        std::thread::sleep(Duration::from_millis(2));
        e
    })
    .start_new_chain()
    .sink_to(FileSink::json_lines(out.path()));
    let job = env.execute_async("slow").unwrap();
    let id = job.job_id().to_string();
    let (_server, c) = serve_described(&env, &job);
    let source = vertex_id(&c, &id, "fast source");
    let slow = vertex_id(&c, &id, "Map");
    // Once its channel is full, the source spends its time waiting for room.
    let mut bp = Value::Null;
    wait_until("the source is backpressured", || {
        std::thread::sleep(Duration::from_millis(300));
        bp = get(&c, &format!("/jobs/{id}/vertices/{source}/backpressure"));
        bp["backpressure-level"] == "high"
    });
    assert!(bp["subtasks"][0]["ratio"].as_f64().unwrap() > 0.5, "{bp}");
    let slow_bp = get(&c, &format!("/jobs/{id}/vertices/{slow}/backpressure"));
    assert_eq!(slow_bp["backpressure-level"], "ok", "{slow_bp}");
    assert!(
        slow_bp["subtasks"][0]["busyRatio"].as_f64().unwrap() > 0.5,
        "the slow operator is busy: {slow_bp}"
    );
    // The slow vertex processes about 500 records a second, whatever the source could do.
    let details = get(&c, &format!("/jobs/{id}/vertices/{slow}"));
    let rate = details["subtasks"][0]["weir"]["recordsInPerSecond"]
        .as_f64()
        .unwrap();
    assert!((100.0..600.0).contains(&rate), "{details}");
    let job_details = get(&c, &format!("/jobs/{id}"));
    let source_vertex = job_details["vertices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["id"] == source.as_str())
        .unwrap();
    assert!(
        source_vertex["metrics"]["accumulated-backpressured-time"]
            .as_u64()
            .unwrap()
            > 0,
        "{job_details}"
    );
    job.cancel();
}
