//! Checkpoints, failures, savepoints and restores: the output of the exactly-once file sink
//! must equal a failure-free run's, whatever fails and wherever the job is restored.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tempfile::TempDir;
use weir_engine::api::{DataStream, StreamExecutionEnvironment};
use weir_engine::config::Config;
use weir_engine::connectors::{BlackholeSink, DataGen, FileSink, Sink, SinkWriter};
use weir_engine::testing::{keyed_events, test_seed};
use weir_engine::time::WatermarkStrategy;
use weir_engine::window::{WindowSpec, Windowed, agg};
use weir_storage::ObjectStore;
use weir_storage::testing::{Moto, S3sFs, in_child_with_credentials};

const EVENTS: u64 = 12_000;

fn config(pairs: &[(&str, String)]) -> Config {
    let mut c = Config::default();
    c.set("pipeline.batch-size", "50").unwrap();
    for (k, v) in pairs {
        c.set(k, v).unwrap();
    }
    c
}

fn uri(p: &Path) -> String {
    format!("file://{}", p.display())
}

/// Where keyed state lives (`state.backend.type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Backend {
    HashMap,
    RocksDb,
}

/// One job's temporary directories: committed output, `file://` checkpoints, and the parent
/// of the RocksDB working directories.
struct JobDirs {
    out: TempDir,
    chk: TempDir,
    local: TempDir,
}

impl JobDirs {
    fn new() -> JobDirs {
        JobDirs {
            out: tempfile::tempdir().unwrap(),
            chk: tempfile::tempdir().unwrap(),
            local: tempfile::tempdir().unwrap(),
        }
    }

    /// An environment with keyed state on `backend` and checkpoints (once `pairs` set an
    /// interval) in `chk`; `pairs` come last and may override either.
    fn env(&self, backend: Backend, pairs: &[(&str, String)]) -> StreamExecutionEnvironment {
        let mut all = vec![("state.checkpoints.dir", uri(self.chk.path()))];
        if backend == Backend::RocksDb {
            all.push(("state.backend.type", "rocksdb".into()));
            all.push((
                "state.backend.rocksdb.localdir",
                self.local.path().display().to_string(),
            ));
        }
        all.extend(pairs.iter().cloned());
        StreamExecutionEnvironment::with_config(config(&all))
    }
}

/// Events at which a task panics, each the first time it passes (a restored job replays
/// the event and goes on).
#[derive(Clone, Debug)]
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

    /// Panics if `event` is a failure point passing for the first time.
    fn check(&self, event: u64) {
        for (at, failed) in self.0.iter() {
            if *at == event && !failed.swap(true, Ordering::SeqCst) {
                panic!("injected failure at event {at}");
            }
        }
    }

    /// The failure points that have fired.
    fn fired(&self) -> Vec<u64> {
        self.0
            .iter()
            .filter(|(_, f)| f.load(Ordering::SeqCst))
            .map(|(at, _)| *at)
            .collect()
    }
}

/// Keyed one-second windows over generated events (10 ms of event time apart), optionally
/// failing at the given events, written by the exactly-once file sink.
fn build(env: &StreamExecutionEnvironment, out: &Path, rate: f64, failures: Option<Failures>) {
    windows_to_sink(events(env, rate, failures), out);
}

/// Runs the job `env` holds until it has completed three checkpoints, cancels it, and returns
/// the URI of its last one, an incremental RocksDB checkpoint sharing SST files.
fn cancel_after_three_checkpoints(env: &StreamExecutionEnvironment, dirs: &JobDirs) -> String {
    let job = env.execute_async("before").unwrap();
    let job_id = job.job_id().to_string();
    while job.checkpoints().completed < 3 {
        assert!(!job.is_finished(), "{:?}", job.checkpoints());
        std::thread::sleep(Duration::from_millis(10));
    }
    job.cancel();
    assert!(job.wait().is_err(), "cancelled");
    let (last, meta) = checkpoint_metadata(&dirs.chk.path().join(&job_id))
        .pop()
        .expect("a completed checkpoint");
    assert!(!referenced_shared(&meta).is_empty(), "{meta}");
    format!("{}/{job_id}/chk-{last}", uri(dirs.chk.path()))
}

/// [`build`] with a slow identity map behind a rebalance: the channels into it stay full,
/// so barriers queue behind records (what unaligned checkpoints overtake).
fn build_backpressured(env: &StreamExecutionEnvironment, out: &Path, failures: Option<Failures>) {
    let slow = events(env, 1e9, failures)
        .rebalance()
        .map(|e: (String, u64)| {
            std::thread::sleep(Duration::from_micros(100));
            e
        })
        .uid("slow");
    windows_to_sink(slow, out);
}

fn events(
    env: &StreamExecutionEnvironment,
    rate: f64,
    failures: Option<Failures>,
) -> DataStream<(String, u64)> {
    keyed_events(env, EVENTS, rate).map(move |e: (String, u64)| {
        if let Some(f) = &failures {
            f.check(e.1);
        }
        e
    })
}

fn windows_to_sink(events: DataStream<(String, u64)>, out: &Path) {
    windows_into(events, FileSink::json_lines(out));
}

/// What [`windows_into`] writes: a window's count and sum of a key.
type WindowResult = Windowed<String, (u64, u64)>;

fn windows_into<S: Sink<WindowResult>>(events: DataStream<(String, u64)>, sink: S) {
    events
        .key_by(|e: &(String, u64)| e.0.clone())
        .window(WindowSpec::tumbling(Duration::from_secs(1)))
        .aggregate((agg::count(), agg::sum(|e: &(String, u64)| e.1)))
        .uid("windows")
        .sink_to(sink)
        .uid("sink");
}

/// Every committed line in `dir`, sorted (in-progress files are hidden and not read).
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
    lines.sort();
    lines
}

/// Asserts equal result lines, printing only the lines that differ.
#[track_caller]
fn assert_same(actual: &[String], expected: &[String], what: &str) {
    if actual != expected {
        let missing: Vec<&String> = expected.iter().filter(|l| !actual.contains(l)).collect();
        let extra: Vec<&String> = actual.iter().filter(|l| !expected.contains(l)).collect();
        panic!(
            "{what}: {} lines, expected {}; missing {:?}; unexpected {:?}",
            actual.len(),
            expected.len(),
            &missing[..missing.len().min(5)],
            &extra[..extra.len().min(5)]
        );
    }
}

fn reference(parallelism: usize) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let env = StreamExecutionEnvironment::with_config(config(&[(
        "parallelism.default",
        parallelism.to_string(),
    )]));
    build(&env, dir.path(), 1e9, None);
    env.execute("reference").unwrap();
    committed(dir.path())
}

#[test]
fn exactly_once_output_survives_task_failures_at_any_point() {
    let expected = reference(1);
    assert_eq!(expected.len(), 7 * 120, "7 keys x 120 one-second windows");
    for fail_at in [3_100, 7_777, 11_000] {
        let out = tempfile::tempdir().unwrap();
        let chk = tempfile::tempdir().unwrap();
        let env = StreamExecutionEnvironment::with_config(config(&[
            ("parallelism.default", "2".into()),
            ("execution.checkpointing.interval", "50ms".into()),
            ("state.checkpoints.dir", uri(chk.path())),
            ("restart-strategy.fixed-delay.delay", "10ms".into()),
        ]));
        build(&env, out.path(), 20_000.0, Some(Failures::at(&[fail_at])));
        let result = env.execute("failing").unwrap();
        assert_eq!(
            result.restarts, 1,
            "failed once at {fail_at}, restarted once"
        );
        assert!(
            result.checkpoints.completed >= 2,
            "{:?}",
            result.checkpoints
        );
        assert_eq!(
            committed(out.path()),
            expected,
            "output after a failure at event {fail_at}"
        );
    }
}

#[test]
fn without_checkpoints_a_failure_fails_the_job() {
    let out = tempfile::tempdir().unwrap();
    let env =
        StreamExecutionEnvironment::with_config(config(&[("parallelism.default", "2".into())]));
    build(&env, out.path(), 1e9, Some(Failures::at(&[500])));
    let msg = weir_engine::report(&env.execute("no-restarts").unwrap_err());
    assert!(msg.contains("injected failure at event 500"), "{msg}");
    assert!(
        committed(out.path()).is_empty(),
        "nothing was committed by a failed job"
    );
}

#[test]
fn retention_keeps_only_the_newest_checkpoints() {
    let out = tempfile::tempdir().unwrap();
    let chk = tempfile::tempdir().unwrap();
    let env = StreamExecutionEnvironment::with_config(config(&[
        ("execution.checkpointing.interval", "30ms".into()),
        ("state.checkpoints.dir", uri(chk.path())),
        ("state.checkpoints.num-retained", "2".into()),
    ]));
    // 1.2 s of input: dozens of 30 ms intervals, enough even on a loaded machine.
    build(&env, out.path(), 10_000.0, None);
    let result = env.execute("retention").unwrap();
    let last = result
        .checkpoints
        .last_completed_id
        .expect("checkpoints completed");
    assert!(last >= 3, "{:?}", result.checkpoints);
    let mut dirs: Vec<String> = std::fs::read_dir(chk.path().join(&result.job_id))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    dirs.sort();
    let mut want = vec![format!("chk-{}", last - 1), format!("chk-{last}")];
    want.sort();
    assert_eq!(dirs, want);
    let meta = chk
        .path()
        .join(&result.job_id)
        .join(format!("chk-{last}"))
        .join("_metadata");
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(meta).unwrap()).unwrap();
    let uids: Vec<&str> = m["operators"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["uid"].as_str().unwrap())
        .collect();
    // Source positions, window contents and timers, and the sink's pre-committed files.
    assert_eq!(uids, vec!["gen", "sink", "windows"]);
    assert_eq!(
        result.checkpoints.last_completed_path.unwrap(),
        format!(
            "file://{}/{}/chk-{last}",
            chk.path().display(),
            result.job_id
        )
    );
}

#[test]
fn a_savepoint_at_parallelism_2_restores_at_1_and_4_with_identical_results() {
    let expected = reference(2);
    let first = tempfile::tempdir().unwrap();
    let sp = tempfile::tempdir().unwrap();
    let env =
        StreamExecutionEnvironment::with_config(config(&[("parallelism.default", "2".into())]));
    build(&env, first.path(), 5_000.0, None);
    let job = env.execute_async("before").unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let savepoint = job.stop_with_savepoint(Some(&uri(sp.path()))).unwrap();
    assert!(
        savepoint.starts_with(&format!("file://{}/savepoint-", sp.path().display())),
        "{savepoint}"
    );
    let before = committed(first.path());
    assert!(
        !before.is_empty() && before.len() < expected.len(),
        "stopped mid-run: {} results",
        before.len()
    );

    for p in [1usize, 4] {
        let out = tempfile::tempdir().unwrap();
        for e in std::fs::read_dir(first.path()).unwrap() {
            let e = e.unwrap();
            if e.path().is_file() {
                std::fs::copy(e.path(), out.path().join(e.file_name())).unwrap();
            }
        }
        let env = StreamExecutionEnvironment::with_config(config(&[
            ("parallelism.default", p.to_string()),
            ("execution.savepoint.path", savepoint.clone()),
        ]));
        build(&env, out.path(), 1e9, None);
        env.execute("after").unwrap();
        assert_eq!(
            committed(out.path()),
            expected,
            "restored at parallelism {p}"
        );
    }
}

/// A file source at parallelism 2 (byte ranges of one file) into the exactly-once file sink,
/// slowed so a savepoint lands mid-file.
fn file_job(env: &StreamExecutionEnvironment, input: &Path, out: &Path) {
    env.from_source(
        weir_engine::connectors::FileSource::<(u64, String)>::json_lines(input),
        None,
        "lines",
    )
    .uid("lines")
    .map(|r: (u64, String)| {
        std::thread::sleep(Duration::from_micros(500));
        r
    })
    .uid("slow")
    .sink_to(FileSink::json_lines(out))
    .uid("sink");
}

#[test]
fn a_file_read_in_byte_ranges_at_parallelism_2_resumes_at_1_and_3_reading_each_line_once() {
    let input = tempfile::tempdir().unwrap();
    let n = 6_000u64;
    let text: String = (0..n)
        .map(|i| format!("[{i},\"{}\"]\n", "y".repeat((i * 13 % 150) as usize)))
        .collect();
    std::fs::write(input.path().join("in.jsonl"), text).unwrap();
    let first = tempfile::tempdir().unwrap();
    let sp = tempfile::tempdir().unwrap();
    let env =
        StreamExecutionEnvironment::with_config(config(&[("parallelism.default", "2".into())]));
    file_job(&env, input.path(), first.path());
    let job = env.execute_async("before").unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let savepoint = job.stop_with_savepoint(Some(&uri(sp.path()))).unwrap();
    let before = committed(first.path()).len() as u64;
    assert!(before > 0 && before < n, "stopped mid-file: {before} lines");
    for p in [1usize, 3] {
        let out = tempfile::tempdir().unwrap();
        copy_committed(first.path(), out.path());
        let env = StreamExecutionEnvironment::with_config(config(&[
            ("parallelism.default", p.to_string()),
            ("execution.savepoint.path", savepoint.clone()),
        ]));
        file_job(&env, input.path(), out.path());
        env.execute("after").unwrap();
        let mut ids: Vec<u64> = committed(out.path())
            .iter()
            .map(|l| serde_json::from_str::<(u64, String)>(l).unwrap().0)
            .collect();
        ids.sort_unstable();
        assert_eq!(
            ids,
            (0..n).collect::<Vec<_>>(),
            "restored at parallelism {p}"
        );
    }
}

/// A switch the job's map trips once: the first event after it is armed fails its task.
#[derive(Clone, Default)]
struct Tripwire(Arc<AtomicBool>);

impl Tripwire {
    fn arm(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    fn check(&self) {
        if self.0.swap(false, Ordering::SeqCst) {
            panic!("injected failure (tripwire)");
        }
    }
}

/// Starts [`build`]'s job at parallelism 2 with `checkpoint_interval` and a 10 ms restart
/// delay, its map failing once each time the returned tripwire is armed.
fn tripwired_job(
    dirs: &JobDirs,
    checkpoint_interval: &str,
    restart_delay: &str,
    rate: f64,
) -> (weir_engine::runtime::JobHandle, Tripwire) {
    let env = dirs.env(
        Backend::HashMap,
        &[
            ("parallelism.default", "2".into()),
            (
                "execution.checkpointing.interval",
                checkpoint_interval.into(),
            ),
            ("restart-strategy.fixed-delay.delay", restart_delay.into()),
        ],
    );
    let trip = Tripwire::default();
    let t = trip.clone();
    let events = events(&env, rate, None).map(move |e: (String, u64)| {
        t.check();
        e
    });
    windows_to_sink(events, dirs.out.path());
    (env.execute_async("tripwired").unwrap(), trip)
}

/// Runs [`build`]'s job with checkpoints every second, takes a savepoint mid-run, then fails
/// a task: right after the savepoint (`after_next_checkpoint` false), or once the first
/// checkpoint after it completed. Returns the committed output.
fn savepoint_then_failure(after_next_checkpoint: bool) -> Vec<String> {
    let dirs = JobDirs::new();
    let sp = tempfile::tempdir().unwrap();
    let (job, trip) = tripwired_job(&dirs, "1s", "10ms", 4_000.0);
    while job.checkpoints().completed < 1 {
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(300));
    job.trigger_savepoint(Some(&uri(sp.path()))).unwrap();
    let completed = job.checkpoints().completed;
    if after_next_checkpoint {
        // Bounded: a job that ended meanwhile completes no more checkpoints.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while job.checkpoints().completed == completed {
            assert!(
                std::time::Instant::now() < deadline,
                "no checkpoint completed within 30 s after the savepoint"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    } else {
        // Long enough for sinks to have committed had the savepoint told them to, well
        // before the next checkpoint (1 s after the previous one).
        std::thread::sleep(Duration::from_millis(100));
    }
    trip.arm();
    let result = job.wait().unwrap();
    assert_eq!(result.restarts, 1, "failed once after the savepoint");
    assert_eq!(result.checkpoints.savepoints_completed, 1);
    committed(dirs.out.path())
}

#[test]
fn a_failure_after_a_savepoint_writes_no_output_twice() {
    let expected = reference(2);
    assert_same(
        &savepoint_then_failure(false),
        &expected,
        "failure right after a savepoint (restored from the checkpoint before it)",
    );
    assert_same(
        &savepoint_then_failure(true),
        &expected,
        "failure after the checkpoint that followed a savepoint (which commits the savepoint's files)",
    );
}

#[test]
fn a_restore_that_cannot_read_its_checkpoint_is_retried_per_the_restart_strategy() {
    let expected = reference(2);
    let dirs = JobDirs::new();
    let (job, trip) = tripwired_job(&dirs, "100ms", "150ms", 5_000.0);
    let client = job.client();
    while job.checkpoints().completed < 2 {
        std::thread::sleep(Duration::from_millis(5));
    }
    trip.arm();
    while client.status().as_str() != "RESTARTING" {
        std::thread::sleep(Duration::from_millis(1));
    }
    // The checkpoints vanish while the job restarts (storage unreachable) and come back
    // 600 ms later: the restores in between fail and are retried.
    let checkpoints = dirs.chk.path().join(job.job_id());
    let aside = dirs.chk.path().join("aside");
    std::fs::rename(&checkpoints, &aside).unwrap();
    std::thread::sleep(Duration::from_millis(600));
    std::fs::rename(&aside, &checkpoints).unwrap();
    let result = job.wait().unwrap();
    assert!(
        result.restarts >= 3,
        "the failure and at least two unreadable restores each count as a restart: {}",
        result.restarts
    );
    let failures = client.failures();
    assert!(
        failures
            .iter()
            .any(|f| f.message.contains("cannot read") && f.message.contains("_metadata")),
        "an unreadable restore is recorded naming the file: {failures:?}"
    );
    assert_same(
        &committed(dirs.out.path()),
        &expected,
        "output after the retried restore",
    );
}

#[test]
fn a_corrupt_or_truncated_metadata_file_is_rejected_on_restore() {
    let first = tempfile::tempdir().unwrap();
    let sp = tempfile::tempdir().unwrap();
    let env = StreamExecutionEnvironment::with_config(config(&[]));
    build(&env, first.path(), 20_000.0, None);
    let job = env.execute_async("sp").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let savepoint = job.stop_with_savepoint(Some(&uri(sp.path()))).unwrap();
    let meta = Path::new(savepoint.strip_prefix("file://").unwrap()).join("_metadata");
    let bytes = std::fs::read(&meta).unwrap();
    std::fs::write(&meta, &bytes[..bytes.len() / 2]).unwrap();
    let env = StreamExecutionEnvironment::with_config(config(&[(
        "execution.savepoint.path",
        savepoint.clone(),
    )]));
    build(&env, first.path(), 1e9, None);
    let msg = env.execute("restore").unwrap_err().to_string();
    assert!(
        msg.contains("_metadata is not a valid checkpoint metadata file"),
        "{msg}"
    );

    // A job whose operators don't match the savepoint is refused unless allowed.
    std::fs::write(&meta, &bytes).unwrap();
    let env = StreamExecutionEnvironment::with_config(config(&[(
        "execution.savepoint.path",
        savepoint.clone(),
    )]));
    env.from_collection(vec![1]).uid("other").print();
    let msg = env.execute("mismatch").unwrap_err().to_string();
    assert!(
        msg.contains("operators the job does not have: gen, sink, windows"),
        "{msg}"
    );
}

#[test]
fn checkpoints_that_cannot_be_written_are_counted_and_the_job_keeps_its_data() {
    let out = tempfile::tempdir().unwrap();
    let blocker = tempfile::NamedTempFile::new().unwrap(); // a file where a directory must go
    let unwritable = format!("file://{}/chk", blocker.path().display());
    let env = StreamExecutionEnvironment::with_config(config(&[
        ("execution.checkpointing.interval", "30ms".into()),
        ("state.checkpoints.dir", unwritable.clone()),
    ]));
    build(&env, out.path(), 30_000.0, None);
    let result = env.execute("unwritable").unwrap();
    assert!(
        result.checkpoints.failed >= 2 && result.checkpoints.completed == 0,
        "{:?}",
        result.checkpoints
    );
    // The last one may instead have been in flight when the job ended; look at the history.
    assert!(
        result.checkpoints.history.iter().any(|c| c
            .failure
            .as_deref()
            .is_some_and(|f| f.contains("could not be written"))),
        "{:?}",
        result.checkpoints
    );
    assert_eq!(
        committed(out.path()),
        reference(1),
        "failed checkpoints lose no output"
    );

    // With no tolerance the job fails, and says why.
    let env = StreamExecutionEnvironment::with_config(config(&[
        ("execution.checkpointing.interval", "30ms".into()),
        ("state.checkpoints.dir", unwritable),
        (
            "execution.checkpointing.tolerable-failed-checkpoints",
            "0".into(),
        ),
        ("restart-strategy.type", "none".into()),
    ]));
    build(&env, out.path(), 30_000.0, None);
    let msg = weir_engine::report(&env.execute("intolerant").unwrap_err());
    assert!(
        msg.contains("exceed execution.checkpointing.tolerable-failed-checkpoints (0)"),
        "{msg}"
    );
}

/// In-flight record batches stored in the checkpoint at `path`, over all operators.
fn in_flight_batches(path: &str) -> usize {
    let dir = Path::new(path.strip_prefix("file://").unwrap());
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("_metadata")).unwrap()).unwrap();
    let mut n = 0;
    for op in meta["operators"].as_array().unwrap() {
        for f in op["files"].as_array().unwrap() {
            if let Some(f) = f.as_str() {
                let bytes = std::fs::read(dir.join(f)).unwrap();
                n += weir_engine::checkpoint::decode_state_file(f, &bytes)
                    .unwrap()
                    .1
                    .in_flight
                    .len();
            }
        }
    }
    n
}

/// A backpressured job on `backend` fails once, with aligned and with unaligned checkpoints,
/// and its output equals a failure-free run's.
///
/// Also proves restored source splits resume in order: the backpressured sources of the
/// two subtasks progress unevenly, and restored splits are dealt out anew.
fn checkpoints_under_backpressure_survive_a_failure_exactly_once(backend: Backend) {
    let expected = reference(1);
    for unaligned in ["false", "true"] {
        let dirs = JobDirs::new();
        let env = dirs.env(
            backend,
            &[
                ("parallelism.default", "2".into()),
                ("execution.checkpointing.interval", "30ms".into()),
                ("execution.checkpointing.unaligned", unaligned.into()),
                ("state.checkpoints.num-retained", "1000".into()),
                ("restart-strategy.fixed-delay.delay", "10ms".into()),
            ],
        );
        build_backpressured(&env, dirs.out.path(), Some(Failures::at(&[7_777])));
        let result = env.execute("failing").unwrap();
        let what = format!("{backend:?}, unaligned: {unaligned}");
        assert_eq!(result.restarts, 1, "{what}: {:?}", result.checkpoints);
        assert!(
            result.checkpoints.completed >= 2,
            "{what}: {:?}",
            result.checkpoints
        );
        assert_same(&committed(dirs.out.path()), &expected, &what);
        let in_flight: usize = checkpoint_metadata(&dirs.chk.path().join(&result.job_id))
            .iter()
            .map(|(id, _)| {
                in_flight_batches(&format!(
                    "{}/{}/chk-{id}",
                    uri(dirs.chk.path()),
                    result.job_id
                ))
            })
            .sum();
        assert_eq!(
            in_flight > 0,
            unaligned == "true",
            "{what}: {in_flight} overtaken batches stored"
        );
    }
}

#[test]
fn aligned_and_unaligned_checkpoints_under_backpressure_survive_a_failure_exactly_once() {
    checkpoints_under_backpressure_survive_a_failure_exactly_once(Backend::HashMap);
}

#[test]
fn aligned_and_unaligned_rocksdb_checkpoints_under_backpressure_survive_a_failure_exactly_once() {
    checkpoints_under_backpressure_survive_a_failure_exactly_once(Backend::RocksDb);
}

#[test]
fn an_unaligned_checkpoint_stores_the_records_its_barrier_overtook_and_restores_them_at_another_parallelism()
 {
    let expected = reference(1);
    let out = tempfile::tempdir().unwrap();
    let chk = tempfile::tempdir().unwrap();
    let env = StreamExecutionEnvironment::with_config(config(&[
        ("parallelism.default", "2".into()),
        ("execution.checkpointing.interval", "30ms".into()),
        ("execution.checkpointing.unaligned", "true".into()),
        ("state.checkpoints.dir", uri(chk.path())),
        ("state.checkpoints.num-retained", "1000".into()),
    ]));
    build_backpressured(&env, out.path(), None);
    let job = env.execute_async("unaligned").unwrap();
    // Wait for a completed checkpoint whose barriers overtook queued records.
    let mut seen = None;
    let mut with_data = None;
    while with_data.is_none() && !job.is_finished() {
        let path = job.checkpoints().last_completed_path;
        if path.is_some() && path != seen {
            let p = path.clone().unwrap();
            if in_flight_batches(&p) > 0 {
                with_data = Some(p);
            }
            seen = path;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    job.cancel();
    let _ = job.wait();
    let checkpoint = with_data.expect("a checkpoint with in-flight records before the job ended");
    let before = committed(out.path());
    assert!(before.len() < expected.len(), "cancelled mid-run");

    // Restore at parallelism 3: the overtaken records are replayed by the subtasks that now
    // own them, and the output is exactly the uninterrupted run's.
    let env = StreamExecutionEnvironment::with_config(config(&[
        ("parallelism.default", "3".into()),
        ("execution.savepoint.path", checkpoint.clone()),
    ]));
    build_backpressured(&env, out.path(), None);
    env.execute("restored").unwrap();
    assert_same(
        &committed(out.path()),
        &expected,
        &format!("restored from {checkpoint}"),
    );
}

#[test]
fn unaligned_checkpoints_need_exactly_once_mode() {
    let mut c = Config::default();
    c.set("execution.checkpointing.mode", "AT_LEAST_ONCE")
        .unwrap();
    let err = c
        .set("execution.checkpointing.unaligned", "true")
        .map(|_| ())
        .and_then(|_| c.checkpointing().map(|_| ()))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(
            "'execution.checkpointing.unaligned' needs execution.checkpointing.mode EXACTLY_ONCE"
        ),
        "{err}"
    );
}

/// Events counted by the committed window results in `dir`.
fn counted_events(dir: &Path) -> u64 {
    committed(dir)
        .iter()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["value"][0].as_u64().unwrap()
        })
        .sum()
}

#[test]
fn a_draining_stop_fires_every_window_into_the_savepoint_and_finishes_the_job() {
    for drain in [false, true] {
        let out = tempfile::tempdir().unwrap();
        let sp = tempfile::tempdir().unwrap();
        let env =
            StreamExecutionEnvironment::with_config(config(&[("parallelism.default", "2".into())]));
        build(&env, out.path(), 5_000.0, None);
        let job = env.execute_async("drain").unwrap();
        let client = job.client();
        std::thread::sleep(Duration::from_millis(400));
        let savepoint = if drain {
            job.drain_with_savepoint(Some(&uri(sp.path()))).unwrap()
        } else {
            job.stop_with_savepoint(Some(&uri(sp.path()))).unwrap()
        };
        assert!(
            Path::new(savepoint.strip_prefix("file://").unwrap())
                .join("_metadata")
                .exists()
        );
        assert_eq!(client.status().as_str(), "FINISHED");
        let generated = client.metrics().records_in;
        assert!(generated > 0 && generated < EVENTS, "stopped mid-run");
        let counted = counted_events(out.path());
        if drain {
            assert_eq!(
                counted, generated,
                "draining fires every window: each generated event is in a committed result"
            );
        } else {
            assert!(
                counted < generated,
                "without draining, open windows stay in the savepoint ({counted} of {generated})"
            );
        }
    }
}

/// [`build`] with windows of `spec` (and allowed lateness `lateness` when not zero) instead
/// of tumbling ones.
fn build_windows(
    env: &StreamExecutionEnvironment,
    out: &Path,
    rate: f64,
    failures: Option<Failures>,
    spec: WindowSpec,
    lateness: Duration,
) {
    let mut windows = events(env, rate, failures)
        .key_by(|e: &(String, u64)| e.0.clone())
        .window(spec);
    if !lateness.is_zero() {
        windows = windows.allowed_lateness(lateness);
    }
    windows
        .aggregate((agg::count(), agg::sum(|e: &(String, u64)| e.1)))
        .uid("windows")
        .sink_to(FileSink::json_lines(out))
        .uid("sink");
}

#[test]
fn hop_and_cumulate_windows_restored_from_a_mid_stream_checkpoint_give_the_uninterrupted_output() {
    let specs = [
        WindowSpec::sliding(Duration::from_secs(2), Duration::from_millis(500)),
        WindowSpec::cumulating(Duration::from_secs(3), Duration::from_secs(1)),
    ];
    for spec in specs {
        let dir = tempfile::tempdir().unwrap();
        let env = StreamExecutionEnvironment::with_config(config(&[]));
        build_windows(&env, dir.path(), 1e9, None, spec, Duration::ZERO);
        env.execute("reference").unwrap();
        let expected = committed(dir.path());
        assert!(expected.len() > 7 * 100, "{spec:?}: {}", expected.len());
        for backend in [Backend::HashMap, Backend::RocksDb] {
            let dirs = JobDirs::new();
            let env = dirs.env(
                backend,
                &[
                    ("parallelism.default", "2".into()),
                    ("execution.checkpointing.interval", "50ms".into()),
                    ("restart-strategy.fixed-delay.delay", "10ms".into()),
                ],
            );
            let failures = Failures::at(&[6_500]);
            build_windows(
                &env,
                dirs.out.path(),
                20_000.0,
                Some(failures.clone()),
                spec,
                Duration::ZERO,
            );
            let result = env.execute("failing").unwrap();
            assert_eq!(failures.fired(), vec![6_500]);
            assert_eq!(result.restarts, 1, "{spec:?} on {backend:?}");
            assert!(
                result.checkpoints.completed >= 2,
                "{:?}",
                result.checkpoints
            );
            assert_same(
                &committed(dirs.out.path()),
                &expected,
                &format!("{spec:?} on {backend:?} after a failure at event 6500"),
            );
        }
    }
}

/// A savepoint of sliding windows with allowed lateness `lateness`, taken mid-run; `drain`
/// fires every window first. Keep the returned directories (the savepoint, and the output
/// whose pending files it commits) while restoring it.
fn hop_savepoint(lateness: Duration, drain: bool) -> ([tempfile::TempDir; 2], String) {
    let spec = WindowSpec::sliding(Duration::from_secs(2), Duration::from_millis(500));
    let out = tempfile::tempdir().unwrap();
    let sp = tempfile::tempdir().unwrap();
    let env = StreamExecutionEnvironment::with_config(config(&[]));
    build_windows(&env, out.path(), 5_000.0, None, spec, lateness);
    let job = env.execute_async("before").unwrap();
    std::thread::sleep(Duration::from_millis(400));
    let savepoint = if drain {
        job.drain_with_savepoint(Some(&uri(sp.path()))).unwrap()
    } else {
        job.stop_with_savepoint(Some(&uri(sp.path()))).unwrap()
    };
    ([sp, out], savepoint)
}

/// Runs the sliding windows restored from `savepoint`; the output or the job's error.
fn restore_hop(savepoint: &str, lateness: Duration) -> Result<Vec<String>, String> {
    let spec = WindowSpec::sliding(Duration::from_secs(2), Duration::from_millis(500));
    let out = tempfile::tempdir().unwrap();
    let env = StreamExecutionEnvironment::with_config(config(&[(
        "execution.savepoint.path",
        savepoint.to_string(),
    )]));
    build_windows(&env, out.path(), 1e9, None, spec, lateness);
    match env.execute("after") {
        Ok(_) => Ok(committed(out.path())),
        Err(e) => Err(weir_engine::report(&e)),
    }
}

#[test]
fn a_savepoint_of_one_window_state_layout_is_refused_by_the_other_naming_the_operator() {
    // With allowed lateness sliding windows keep per-window state; without, per-slice state.
    let (per_window, sliced) = (Duration::from_secs(1), Duration::ZERO);
    for (from, to, holds) in [
        (per_window, sliced, "'window-contents'"),
        (sliced, per_window, "'window-slices'"),
    ] {
        let (_dirs, savepoint) = hop_savepoint(from, false);
        let err = restore_hop(&savepoint, to).unwrap_err();
        assert!(
            err.contains("uid windows") && err.contains(holds) && err.contains("--drain"),
            "{err}"
        );
        // The layout it was written with restores it.
        let out = restore_hop(&savepoint, from).unwrap();
        assert!(!out.is_empty());
    }
    // A draining stop leaves no window contents: its savepoint restores into either layout.
    let (_dirs, drained) = hop_savepoint(per_window, true);
    restore_hop(&drained, sliced).unwrap();
}

#[test]
fn cancelling_with_delete_on_cancellation_removes_the_jobs_checkpoints() {
    for (retention, kept) in [
        ("RETAIN_ON_CANCELLATION", true),
        ("DELETE_ON_CANCELLATION", false),
    ] {
        let out = tempfile::tempdir().unwrap();
        let chk = tempfile::tempdir().unwrap();
        let env = StreamExecutionEnvironment::with_config(config(&[
            ("execution.checkpointing.interval", "30ms".into()),
            ("state.checkpoints.dir", uri(chk.path())),
            (
                "execution.checkpointing.externalized-checkpoint-retention",
                retention.into(),
            ),
        ]));
        build(&env, out.path(), 5_000.0, None);
        let job = env.execute_async("cancel").unwrap();
        let client = job.client();
        let dir = chk.path().join(job.job_id());
        let start = std::time::Instant::now();
        while job.checkpoints().completed == 0 {
            assert!(start.elapsed() < Duration::from_secs(20), "no checkpoint");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(dir.exists());
        job.cancel();
        assert!(
            job.wait().is_err(),
            "a cancelled job reports its cancellation"
        );
        assert_eq!(client.status().as_str(), "CANCELED");
        assert_eq!(dir.exists(), kept, "{retention}");
    }
}

// ---- The rocksdb state backend and incremental checkpoints ----

/// The `_metadata` of every complete checkpoint under `<chk>/<job>`, by id.
fn checkpoint_metadata(job_dir: &Path) -> Vec<(u64, serde_json::Value)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(job_dir).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        let Some(id) = name
            .strip_prefix("chk-")
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        let meta = job_dir.join(&name).join("_metadata");
        if let Ok(bytes) = std::fs::read(meta) {
            out.push((id, serde_json::from_slice(&bytes).unwrap()));
        }
    }
    out.sort_by_key(|(id, _)| *id);
    out
}

/// The `shared/` objects a checkpoint's `_metadata` references.
fn referenced_shared(meta: &serde_json::Value) -> Vec<String> {
    let mut v: Vec<String> = meta["operators"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|o| o["incremental"].as_array().cloned().unwrap_or_default())
        .filter(|h| !h.is_null())
        .flat_map(|h| h["shared"].as_array().unwrap().clone())
        .map(|f| f["object"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v.dedup();
    v
}

/// Every object under `<job_dir>/shared/`, as `shared/<name>`.
fn shared_objects(job_dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(job_dir.join("shared"))
        .map(|rd| {
            rd.map(|e| format!("shared/{}", e.unwrap().file_name().to_string_lossy()))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn a_keyed_windowed_job_on_rocksdb_gives_the_same_output_as_on_hashmap() {
    let expected = reference(2);
    let dirs = JobDirs::new();
    let env = dirs.env(Backend::RocksDb, &[("parallelism.default", "2".into())]);
    build(&env, dirs.out.path(), 1e9, None);
    env.execute("rocksdb").unwrap();
    assert_eq!(committed(dirs.out.path()), expected);
    assert_eq!(
        std::fs::read_dir(dirs.local.path()).unwrap().count(),
        0,
        "the RocksDB working directories are removed when the job ends"
    );
}

#[test]
fn a_failure_restores_from_incremental_rocksdb_checkpoints_exactly_once() {
    let expected = reference(1);
    for fail_at in [4_321, 9_999] {
        let dirs = JobDirs::new();
        let env = dirs.env(
            Backend::RocksDb,
            &[
                ("parallelism.default", "2".into()),
                ("execution.checkpointing.interval", "50ms".into()),
                ("state.checkpoints.num-retained", "2".into()),
                ("restart-strategy.fixed-delay.delay", "10ms".into()),
            ],
        );
        build(
            &env,
            dirs.out.path(),
            20_000.0,
            Some(Failures::at(&[fail_at])),
        );
        let result = env.execute("failing").unwrap();
        assert_eq!(result.restarts, 1, "failed once at {fail_at}");
        assert!(
            result.checkpoints.completed >= 1,
            "{:?}",
            result.checkpoints
        );
        assert_eq!(
            committed(dirs.out.path()),
            expected,
            "output after a failure at event {fail_at}"
        );
        let job_dir = dirs.chk.path().join(&result.job_id);
        let metas = checkpoint_metadata(&job_dir);
        let (_, last) = metas.last().expect("a retained checkpoint");
        assert!(
            !referenced_shared(last).is_empty(),
            "the window operator's state is in shared SST files: {last}"
        );
        assert!(
            result.checkpoints.last_full_size_bytes >= result.checkpoints.last_size_bytes,
            "{:?}",
            result.checkpoints
        );
    }
}

#[test]
fn the_next_incremental_checkpoint_uploads_only_sst_files_not_uploaded_before() {
    let dirs = JobDirs::new();
    let env = dirs.env(
        Backend::RocksDb,
        &[
            ("parallelism.default", "2".into()),
            ("execution.checkpointing.interval", "40ms".into()),
            ("state.checkpoints.num-retained", "6".into()),
        ],
    );
    build(&env, dirs.out.path(), 5_000.0, None);
    let result = env.execute("incremental").unwrap();
    let job_dir = dirs.chk.path().join(&result.job_id);
    let metas = checkpoint_metadata(&job_dir);
    assert!(metas.len() >= 3, "{:?}", result.checkpoints);
    let mut reused = 0;
    for pair in metas.windows(2) {
        let ((a, ma), (b, mb)) = (&pair[0], &pair[1]);
        let written_a = std::fs::metadata(job_dir.join(format!("chk-{a}/_metadata")))
            .unwrap()
            .modified()
            .unwrap();
        for o in referenced_shared(mb)
            .into_iter()
            .filter(|o| referenced_shared(ma).contains(o))
        {
            // Uploaded for checkpoint a (or earlier) and not written again for b.
            let uploaded = std::fs::metadata(job_dir.join(&o))
                .unwrap()
                .modified()
                .unwrap();
            assert!(uploaded <= written_a, "{o} was uploaded again for chk-{b}");
            reused += 1;
        }
    }
    assert!(reused > 0, "consecutive checkpoints share SST files");
    // Every SST is stored once: the objects are exactly those the checkpoints reference.
    let mut referenced: Vec<String> = metas
        .iter()
        .flat_map(|(_, m)| referenced_shared(m))
        .collect();
    referenced.sort();
    referenced.dedup();
    assert_eq!(shared_objects(&job_dir), referenced);
    // (The last checkpoint may follow a compaction that rewrote every file: uploaded <= full.)
    assert!(
        result.checkpoints.last_size_bytes <= result.checkpoints.last_full_size_bytes,
        "{:?}",
        result.checkpoints
    );
}

#[test]
fn with_one_retained_checkpoint_only_its_shared_files_are_kept() {
    let dirs = JobDirs::new();
    let env = dirs.env(
        Backend::RocksDb,
        &[
            ("execution.checkpointing.interval", "30ms".into()),
            ("state.checkpoints.num-retained", "1".into()),
        ],
    );
    // 2.4 s of events: four checkpoints even when a loaded machine makes each take 200 ms.
    build(&env, dirs.out.path(), 5_000.0, None);
    let result = env.execute("retain-one").unwrap();
    assert!(
        result.checkpoints.completed >= 4,
        "{:?}",
        result.checkpoints
    );
    let job_dir = dirs.chk.path().join(&result.job_id);
    let metas = checkpoint_metadata(&job_dir);
    assert_eq!(metas.len(), 1, "one checkpoint retained");
    let referenced = referenced_shared(&metas[0].1);
    assert!(!referenced.is_empty());
    assert_eq!(
        shared_objects(&job_dir),
        referenced,
        "every file the retained checkpoint references exists, and nothing else"
    );
    // Private files (MANIFEST, CURRENT, OPTIONS) live in the checkpoint's own directory.
    let private: Vec<String> = metas[0].1["operators"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|o| o["incremental"].as_array().cloned().unwrap_or_default())
        .filter(|h| !h.is_null())
        .flat_map(|h| h["private"].as_array().unwrap().clone())
        .map(|f| f["object"].as_str().unwrap().to_string())
        .collect();
    assert!(
        private.iter().any(|p| p.contains("/CURRENT")),
        "{private:?}"
    );
    for p in private {
        assert!(job_dir.join(&p).is_file(), "{p} exists");
    }
}

/// Keys of the large state.
const LARGE_STATE_KEYS: u32 = 200_000;

/// About 100 bytes, different for every (key, version), not much compressible.
fn state_value(key: u32, version: u64) -> String {
    (0..6)
        .map(|i| {
            let mut x =
                (u64::from(key) << 32 | version) ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            format!("{:016x}", x ^ (x >> 31))
        })
        .collect()
}

/// Large keyed state written once, then changing slowly: the first generated record expands
/// into one value for each of [`LARGE_STATE_KEYS`] keys (all before the next barrier), every
/// later one — `rate` per second — updates one key. A rolling reduce keeps each key's latest.
fn build_large_state(env: &StreamExecutionEnvironment, rate: f64) {
    env.from_source(
        DataGen::new(11, |g| g.index).rows_per_second(rate),
        None,
        "gen",
    )
    .uid("gen")
    .flat_map(|i: u64| {
        if i == 0 {
            (0..LARGE_STATE_KEYS)
                .map(|k| (k, state_value(k, 0)))
                .collect::<Vec<_>>()
        } else {
            let k = (i * 7_919 % u64::from(LARGE_STATE_KEYS)) as u32;
            vec![(k, state_value(k, i))]
        }
    })
    .uid("expand")
    .key_by(|e: &(u32, String)| e.0)
    .reduce(|_, latest| latest.clone())
    .uid("latest")
    .sink_to(BlackholeSink)
    .uid("sink");
}

#[test]
fn incremental_checkpoints_of_large_slowly_changing_state_upload_only_the_changes() {
    let dirs = JobDirs::new();
    let env = dirs.env(
        Backend::RocksDb,
        &[
            ("execution.checkpointing.interval", "100ms".into()),
            ("state.checkpoints.num-retained", "10".into()),
        ],
    );
    // 2000 updates per second: about 200 changed keys per checkpoint.
    build_large_state(&env, 2_000.0);
    let job = env.execute_async("large-state").unwrap();
    // (id, uploaded bytes, full bytes) of each completed checkpoint, as the statistics say.
    let mut seen: Vec<(u64, u64, u64)> = Vec::new();
    let start = std::time::Instant::now();
    let load = loop {
        let s = job.checkpoints();
        if let Some(id) = s.last_completed_id
            && seen.last().is_none_or(|l| l.0 != id)
        {
            seen.push((id, s.last_size_bytes, s.last_full_size_bytes));
        }
        // The first checkpoint holding the large state, and the three after it.
        if let Some(i) = seen.iter().position(|c| c.2 > 10_000_000)
            && seen.len() >= i + 4
        {
            break i;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30) && !job.is_finished(),
            "{seen:?}"
        );
        std::thread::sleep(Duration::from_millis(1));
    };
    job.cancel();
    let _ = job.wait();
    let (first, later) = (seen[load], &seen[load + 1..load + 4]);
    let ids: Vec<u64> = later.iter().map(|c| c.0).collect();
    assert_eq!(
        ids,
        vec![first.0 + 1, first.0 + 2, first.0 + 3],
        "consecutive checkpoints: {seen:?}"
    );
    assert!(
        first.1 >= first.2 * 9 / 10,
        "the first checkpoint uploads the state: {seen:?}"
    );
    // Each later checkpoint flushes a few hundred changed keys into one new SST file. (The
    // fourth new file makes RocksDB compact level 0, rewriting the large file: the checkpoint
    // after that uploads the compacted files again. These three come before.)
    for c in later {
        assert!(
            c.1 * 5 < first.1,
            "chk-{} uploaded {} bytes, not < 20 % of the first's {}: {seen:?}",
            c.0,
            c.1,
            first.1
        );
        assert!(
            c.2.abs_diff(first.2) * 10 < first.2,
            "chk-{} references {} bytes, about the first's {}: {seen:?}",
            c.0,
            c.2,
            first.2
        );
    }
}

/// Copies the committed files of `from` into `to`.
fn copy_committed(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.path().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

#[test]
fn savepoints_move_state_hashmap_to_rocksdb_to_hashmap_at_parallelism_2_3_1() {
    let expected = reference(2);
    let dirs = JobDirs::new();
    let sp = tempfile::tempdir().unwrap();

    let env = dirs.env(Backend::HashMap, &[("parallelism.default", "2".into())]);
    build(&env, dirs.out.path(), 4_000.0, None);
    let job = env.execute_async("hashmap").unwrap();
    std::thread::sleep(Duration::from_millis(600));
    let first = job.stop_with_savepoint(Some(&uri(sp.path()))).unwrap();
    let after_first = committed(dirs.out.path()).len();

    let env = dirs.env(
        Backend::RocksDb,
        &[
            ("parallelism.default", "3".into()),
            ("execution.savepoint.path", first),
        ],
    );
    build(&env, dirs.out.path(), 4_000.0, None);
    let job = env.execute_async("rocksdb").unwrap();
    std::thread::sleep(Duration::from_millis(600));
    let second = job.stop_with_savepoint(Some(&uri(sp.path()))).unwrap();
    let after_second = committed(dirs.out.path()).len();
    assert!(
        after_first < after_second && after_second < expected.len(),
        "each run stopped mid-stream: {after_first}, {after_second} of {}",
        expected.len()
    );
    let meta: serde_json::Value = serde_json::from_slice(
        &std::fs::read(Path::new(second.strip_prefix("file://").unwrap()).join("_metadata"))
            .unwrap(),
    )
    .unwrap();
    assert!(
        referenced_shared(&meta).is_empty(),
        "a savepoint of the rocksdb backend is canonical: {meta}"
    );

    let env = dirs.env(
        Backend::HashMap,
        &[
            ("parallelism.default", "1".into()),
            ("execution.savepoint.path", second),
        ],
    );
    build(&env, dirs.out.path(), 1e9, None);
    env.execute("hashmap again").unwrap();
    assert_eq!(committed(dirs.out.path()), expected);
}

#[test]
fn an_incremental_rocksdb_checkpoint_restores_at_another_parallelism() {
    let expected = reference(2);
    let dirs = JobDirs::new();
    let env = dirs.env(
        Backend::RocksDb,
        &[
            ("parallelism.default", "2".into()),
            ("execution.checkpointing.interval", "50ms".into()),
        ],
    );
    build(&env, dirs.out.path(), 5_000.0, None);
    let checkpoint = cancel_after_three_checkpoints(&env, &dirs);

    for p in [3usize, 1] {
        let out = tempfile::tempdir().unwrap();
        copy_committed(dirs.out.path(), out.path());
        assert!(committed(out.path()).len() < expected.len());
        let env = dirs.env(
            Backend::RocksDb,
            &[
                ("parallelism.default", p.to_string()),
                ("execution.savepoint.path", checkpoint.clone()),
            ],
        );
        build(&env, out.path(), 1e9, None);
        env.execute("after").unwrap();
        assert_eq!(
            committed(out.path()),
            expected,
            "restored at parallelism {p}"
        );
    }

    // The hashmap backend cannot read RocksDB files, and says what to do.
    let env = StreamExecutionEnvironment::with_config(config(&[(
        "execution.savepoint.path",
        checkpoint,
    )]));
    build(&env, dirs.out.path(), 1e9, None);
    let msg = weir_engine::report(&env.execute("hashmap").unwrap_err());
    assert!(msg.contains("state.backend.type: rocksdb"), "{msg}");
}

// ---- Checkpoints on S3 ----

/// Per key: window results, events counted, and an order-independent checksum of the lines.
fn per_key(lines: &[String]) -> BTreeMap<String, (usize, u64, u64)> {
    let mut m = BTreeMap::new();
    for l in lines {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        let key = v["key"].as_str().unwrap().to_string();
        let mut h = std::hash::DefaultHasher::new();
        l.hash(&mut h);
        let e: &mut (usize, u64, u64) = m.entry(key).or_default();
        e.0 += 1;
        e.1 += v["value"][0].as_u64().unwrap();
        e.2 = e.2.wrapping_add(h.finish());
    }
    m
}

/// A job with checkpoints every 50 ms in a bucket of a real S3 server (s3s-fs) whose task
/// fails at 1 to 3 random events, restarting with a fixed delay from the latest checkpoint
/// in the bucket: its output equals a failure-free run's, and its checkpoints are objects in
/// the bucket.
fn task_failures_with_checkpoints_on_s3(backend: Backend) {
    use rand::{Rng, SeedableRng};
    let seed = test_seed();
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    let mut points: Vec<u64> = (0..rng.gen_range(1..=3))
        // From 0.3 s into the run: after the first checkpoints, so restarts restore from S3.
        .map(|_| rng.gen_range(3_000..EVENTS - 500))
        .collect();
    points.sort_unstable();
    points.dedup();
    let what = format!("WEIR_TEST_SEED={seed}: {backend:?}, failures at events {points:?}");
    let expected = per_key(&reference(1));
    assert_eq!(expected.len(), 7, "7 keys");

    let data = tempfile::tempdir().unwrap();
    let s3 = S3sFs::start(data.path(), &["weir"]);
    let dirs = JobDirs::new();
    let env = dirs.env(
        backend,
        &[
            ("parallelism.default", "2".into()),
            ("execution.checkpointing.interval", "50ms".into()),
            ("state.checkpoints.dir", "s3://weir/checkpoints".into()),
            ("state.checkpoints.num-retained", "2".into()),
            ("s3.endpoint", s3.endpoint()),
            ("s3.path-style-access", "true".into()),
            ("s3.region", "us-east-1".into()),
            ("restart-strategy.type", "fixed-delay".into()),
            ("restart-strategy.fixed-delay.delay", "10ms".into()),
        ],
    );
    let failures = Failures::at(&points);
    build(&env, dirs.out.path(), 10_000.0, Some(failures.clone()));
    let result = env
        .execute("s3")
        .unwrap_or_else(|e| panic!("{what}: {}", weir_engine::report(&e)));
    assert_eq!(failures.fired(), points, "{what}: every failure happened");
    // Failures in both subtasks at once cost one restart.
    assert!(
        (1..=points.len() as u64).contains(&result.restarts),
        "{what}: {} restarts",
        result.restarts
    );
    let restored_from = result.checkpoints.last_restore.as_ref().map(|r| &r.0);
    assert!(
        restored_from.is_some_and(|p| p.starts_with("s3://weir/checkpoints/")),
        "{what}: restored from {restored_from:?}"
    );
    assert_eq!(
        per_key(&committed(dirs.out.path())),
        expected,
        "{what}: (windows, events, checksum) per key"
    );

    let job = &result.job_id;
    let last = result
        .checkpoints
        .last_completed_id
        .unwrap_or_else(|| panic!("{what}: no checkpoint completed: {:?}", result.checkpoints));
    assert_eq!(
        result.checkpoints.last_completed_path.as_deref(),
        Some(format!("s3://weir/checkpoints/{job}/chk-{last}").as_str()),
        "{what}"
    );
    // Read the bucket through the S3 API, not the server's directory.
    let store = weir_storage::open("s3://weir/checkpoints", &s3.options()).unwrap();
    let objects: Vec<String> = store
        .list(&format!("{job}/"))
        .unwrap()
        .into_iter()
        .map(|o| o.path)
        .collect();
    let chk = format!("{job}/chk-{last}/");
    let meta: serde_json::Value =
        serde_json::from_slice(&store.get(&format!("{chk}_metadata")).unwrap()).unwrap();
    let files: Vec<String> = meta["operators"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|o| o["files"].as_array().cloned().unwrap_or_default())
        .filter_map(|f| f.as_str().map(|f| format!("{chk}{f}")))
        .collect();
    assert!(!files.is_empty(), "{what}: state files in {meta}");
    for f in &files {
        assert!(objects.contains(f), "{what}: {f} in {objects:?}");
    }
    let shared = referenced_shared(&meta);
    if backend == Backend::RocksDb {
        assert!(!shared.is_empty(), "{what}: incremental handles in {meta}");
        for o in &shared {
            let o = format!("{job}/{o}");
            assert!(
                o.starts_with(&format!("{job}/shared/")) && objects.contains(&o),
                "{what}: {o} in {objects:?}"
            );
        }
    } else {
        assert!(shared.is_empty(), "{what}: canonical hashmap state: {meta}");
    }
}

#[test]
fn task_failures_with_hashmap_checkpoints_on_s3_keep_the_output_exactly_once() {
    const NAME: &str = "task_failures_with_hashmap_checkpoints_on_s3_keep_the_output_exactly_once";
    if in_child_with_credentials(NAME) {
        task_failures_with_checkpoints_on_s3(Backend::HashMap);
    }
}

#[test]
fn task_failures_with_incremental_rocksdb_checkpoints_on_s3_keep_the_output_exactly_once() {
    const NAME: &str =
        "task_failures_with_incremental_rocksdb_checkpoints_on_s3_keep_the_output_exactly_once";
    if in_child_with_credentials(NAME) {
        task_failures_with_checkpoints_on_s3(Backend::RocksDb);
    }
}

/// Every line of every committed object in `store`, sorted.
fn committed_objects(store: &dyn ObjectStore) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for o in store.list("").unwrap() {
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

/// What a crashed attempt of sink subtask `subtask` leaves behind: an upload of a part file
/// with one part, never completed. Returns its path.
fn leftover_upload(store: &dyn ObjectStore, subtask: usize) -> String {
    let path = format!("part-00000000-0000-4000-8000-00000000dead-{subtask}-0.jsonl");
    let id = store.create_upload(&path).unwrap();
    store
        .upload_part(&path, &id, 1, b"{\"stale\":true}\n".to_vec().into())
        .unwrap();
    path
}

fn s3_job_config(endpoint: String) -> Vec<(&'static str, String)> {
    vec![
        ("parallelism.default", "2".into()),
        ("execution.checkpointing.interval", "50ms".into()),
        ("state.checkpoints.dir", "s3://weir/checkpoints".into()),
        ("state.checkpoints.num-retained", "2".into()),
        ("s3.endpoint", endpoint),
        ("s3.path-style-access", "true".into()),
        ("s3.region", "us-east-1".into()),
        ("restart-strategy.type", "fixed-delay".into()),
        ("restart-strategy.fixed-delay.delay", "10ms".into()),
    ]
}

/// The exactly-once file sink writing to `s3://`, its task failing at 1 to 3 random events:
/// the bucket ends up with every window result exactly once, a dead attempt's leftover
/// upload is aborted, and no multipart upload of the sink stays open on the server.
#[test]
fn an_s3_file_sink_keeps_each_row_once_across_random_task_failures_and_leaves_no_upload_open() {
    const NAME: &str =
        "an_s3_file_sink_keeps_each_row_once_across_random_task_failures_and_leaves_no_upload_open";
    if !in_child_with_credentials(NAME) {
        return;
    }
    use rand::{Rng, SeedableRng};
    let seed = test_seed();
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    let mut points: Vec<u64> = (0..rng.gen_range(1..=3))
        .map(|_| rng.gen_range(1_000..EVENTS - 500))
        .collect();
    points.sort_unstable();
    points.dedup();
    let what = format!("WEIR_TEST_SEED={seed}: failures at events {points:?}");
    let expected = per_key(&reference(1));

    let data = tempfile::tempdir().unwrap();
    let s3 = S3sFs::start(data.path(), &["weir"]);
    let out = weir_storage::open("s3://weir/out", &s3.options()).unwrap();
    let stale = leftover_upload(&*out, 1);
    // Not a part file of this sink: someone else's upload, left alone.
    let foreign = out.create_upload("notes/upload").unwrap();

    let dirs = JobDirs::new();
    let env = dirs.env(Backend::HashMap, &s3_job_config(s3.endpoint()));
    let failures = Failures::at(&points);
    windows_into(
        events(&env, 10_000.0, Some(failures.clone())),
        // Small files, so failures also strand files rolled since the last checkpoint.
        FileSink::json_lines("s3://weir/out").with_rolling_file_size(1024),
    );
    let result = env
        .execute("s3-sink")
        .unwrap_or_else(|e| panic!("{what}: {}", weir_engine::report(&e)));
    assert_eq!(failures.fired(), points, "{what}: every failure happened");
    assert!(result.restarts >= 1, "{what}: {} restarts", result.restarts);

    let lines = committed_objects(&*out);
    assert!(!lines.iter().any(|l| l.contains("stale")), "{what}");
    assert_eq!(
        per_key(&lines),
        expected,
        "{what}: (windows, events, checksum) per key"
    );
    let objects = out.list("").unwrap();
    assert!(
        objects.len() > 10 && objects.iter().all(|o| o.path != stale),
        "{what}: rolled part files: {objects:?}"
    );
    let open: Vec<String> = out
        .list_uploads("")
        .unwrap()
        .into_iter()
        .map(|u| u.path)
        .collect();
    assert_eq!(open, ["notes/upload"], "{what}: uploads left open");
    assert_eq!(
        s3.open_uploads().len(),
        1,
        "{what}: {:?}",
        s3.open_uploads()
    );
    out.abort_upload("notes/upload", &foreign).unwrap();
    assert!(s3.open_uploads().is_empty(), "{what}");
}

/// A writer killed between starting a part file's upload (`CreateMultipartUpload`) and
/// recording it leaves an upload only the server knows of. On a server that lists uploads, as
/// S3 does (moto here; s3s-fs cannot list them), the sink's recovery finds and aborts it, and
/// leaves uploads that are not its part files alone.
#[test]
fn an_s3_file_sink_aborts_the_upload_a_killed_writer_never_recorded() {
    const NAME: &str = "an_s3_file_sink_aborts_the_upload_a_killed_writer_never_recorded";
    if !in_child_with_credentials(NAME) {
        return;
    }
    let expected = per_key(&reference(1));
    let data = tempfile::tempdir().unwrap();
    let s3 = Moto::start(data.path(), &["weir"]);
    let stale = "out/part-00000000-0000-4000-8000-00000000dead-1-0.jsonl";
    s3.create_unrecorded_upload("weir", stale);
    s3.create_unrecorded_upload("weir", "out/notes/upload");
    assert_eq!(s3.open_uploads("weir").len(), 2);

    let dirs = JobDirs::new();
    let env = dirs.env(Backend::HashMap, &s3_job_config(s3.endpoint()));
    windows_into(
        events(&env, 1e9, None),
        FileSink::json_lines("s3://weir/out"),
    );
    env.execute("s3-sink")
        .unwrap_or_else(|e| panic!("{}", weir_engine::report(&e)));

    let out = weir_storage::open("s3://weir/out", &s3.options()).unwrap();
    assert_eq!(per_key(&committed_objects(&*out)), expected);
    assert_eq!(
        s3.open_uploads("weir"),
        ["out/notes/upload"],
        "the unrecorded part file's upload is aborted, the foreign one kept"
    );
}

/// A part file larger than the multipart part size (8 MiB) goes up in several parts, while
/// records arrive, and is assembled byte-exact.
#[test]
fn a_large_part_file_is_uploaded_to_s3_in_parts_as_it_grows_and_read_back_whole() {
    const NAME: &str =
        "a_large_part_file_is_uploaded_to_s3_in_parts_as_it_grows_and_read_back_whole";
    if !in_child_with_credentials(NAME) {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let s3 = S3sFs::start(data.path(), &["weir"]);
    let env = StreamExecutionEnvironment::with_config(config(&[
        ("s3.endpoint", s3.endpoint()),
        ("s3.path-style-access", "true".into()),
    ]));
    // 2,500 records of ~8 KiB: about 19.5 MiB in one part file.
    let records: Vec<(u32, String)> = (0..2_500u32)
        .map(|i| (i, format!("{i:08}").repeat(1_024)))
        .collect();
    env.from_collection(records.clone())
        .sink_to(FileSink::json_lines("s3://weir/big"))
        .uid("sink");
    env.execute("big").unwrap();

    let out = weir_storage::open("s3://weir/big", &s3.options()).unwrap();
    let objects = out.list("").unwrap();
    assert_eq!(objects.len(), 1, "{objects:?}");
    assert!(
        objects[0].size > 16 << 20,
        "more than two parts: {objects:?}"
    );
    assert_eq!(s3.requests("UploadPart"), 3, "8 + 8 + the rest MiB");
    let mut got: Vec<(u32, String)> = std::str::from_utf8(&out.get(&objects[0].path).unwrap())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    got.sort();
    assert!(got == records, "the object holds every record once");
    assert!(s3.open_uploads().is_empty());
}

/// A sink that fails once when told that a checkpoint from `after` on completed, before
/// committing it: the job dies between checkpoint completion and commit.
struct FailBeforeCommit {
    sink: FileSink,
    after: u64,
    failed: Arc<AtomicBool>,
}

struct FailBeforeCommitWriter {
    inner: Box<dyn SinkWriter<WindowResult>>,
    after: u64,
    failed: Arc<AtomicBool>,
}

impl Sink<WindowResult> for FailBeforeCommit {
    fn create_writer(
        &self,
        info: &weir_engine::runtime::SubtaskInfo,
    ) -> weir_engine::error::Result<Box<dyn SinkWriter<WindowResult>>> {
        Ok(Box::new(FailBeforeCommitWriter {
            inner: Sink::<WindowResult>::create_writer(&self.sink, info)?,
            after: self.after,
            failed: self.failed.clone(),
        }))
    }
}

impl SinkWriter<WindowResult> for FailBeforeCommitWriter {
    fn write(
        &mut self,
        records: Vec<weir_engine::runtime::Rec<WindowResult>>,
    ) -> weir_engine::error::Result<()> {
        self.inner.write(records)
    }
    fn snapshot_state(&mut self, id: u64) -> weir_engine::error::Result<Vec<Vec<u8>>> {
        self.inner.snapshot_state(id)
    }
    fn notify_checkpoint_complete(&mut self, id: u64) -> weir_engine::error::Result<()> {
        if id >= self.after && !self.failed.swap(true, Ordering::SeqCst) {
            return Err(weir_engine::error::Error::user(format!(
                "injected failure after checkpoint {id} completed, before its commit"
            )));
        }
        self.inner.notify_checkpoint_complete(id)
    }
    fn finish(&mut self) -> weir_engine::error::Result<()> {
        self.inner.finish()
    }
}

#[test]
fn a_failure_between_checkpoint_completion_and_commit_still_leaves_each_row_once_in_s3() {
    const NAME: &str =
        "a_failure_between_checkpoint_completion_and_commit_still_leaves_each_row_once_in_s3";
    if !in_child_with_credentials(NAME) {
        return;
    }
    let expected = per_key(&reference(1));
    let data = tempfile::tempdir().unwrap();
    let s3 = S3sFs::start(data.path(), &["weir"]);
    let dirs = JobDirs::new();
    let env = dirs.env(Backend::HashMap, &s3_job_config(s3.endpoint()));
    let failed = Arc::new(AtomicBool::new(false));
    windows_into(
        events(&env, 10_000.0, None),
        FailBeforeCommit {
            sink: FileSink::json_lines("s3://weir/out"),
            after: 4,
            failed: failed.clone(),
        },
    );
    let result = env
        .execute("commit-failure")
        .unwrap_or_else(|e| panic!("{}", weir_engine::report(&e)));
    assert!(failed.load(Ordering::SeqCst), "the failure was injected");
    assert_eq!(result.restarts, 1);
    assert!(
        result.checkpoints.last_restore.is_some(),
        "restored from the completed checkpoint: {:?}",
        result.checkpoints
    );
    let out = weir_storage::open("s3://weir/out", &s3.options()).unwrap();
    assert_eq!(per_key(&committed_objects(&*out)), expected);
    assert!(out.list_uploads("").unwrap().is_empty());
    assert!(s3.open_uploads().is_empty(), "{:?}", s3.open_uploads());
}

#[test]
fn an_unreachable_s3_endpoint_fails_the_sink_naming_it_and_the_job_restarts_per_its_strategy() {
    const NAME: &str =
        "an_unreachable_s3_endpoint_fails_the_sink_naming_it_and_the_job_restarts_per_its_strategy";
    if !in_child_with_credentials(NAME) {
        return;
    }
    // A loopback port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let env = StreamExecutionEnvironment::with_config(config(&[
        ("s3.endpoint", endpoint.clone()),
        ("s3.path-style-access", "true".into()),
        ("restart-strategy.type", "fixed-delay".into()),
        ("restart-strategy.fixed-delay.attempts", "2".into()),
        ("restart-strategy.fixed-delay.delay", "10ms".into()),
    ]));
    windows_into(
        events(&env, 1e9, None),
        FileSink::json_lines("s3://weir/out"),
    );
    let handle = env.execute_async("unreachable").unwrap();
    let client = handle.client();
    let msg = weir_engine::report(&handle.wait().unwrap_err());
    assert!(
        msg.contains(&endpoint) && msg.contains("s3://weir/out"),
        "the error names endpoint and location: {msg}"
    );
    assert_eq!(client.restarts(), 2, "restarted per the strategy: {msg}");
}

/// The local file sink rolls part files by size, names them as Flink does, and removes an
/// in-progress file a dead attempt left behind (issue: orphaned `.inprogress` files).
#[test]
fn a_local_file_sink_rolls_by_size_and_removes_what_a_dead_attempt_left_in_progress() {
    let expected = reference(1);
    let out = tempfile::tempdir().unwrap();
    let store = weir_storage::FileStore::new(out.path());
    leftover_upload(&store, 0);
    let env =
        StreamExecutionEnvironment::with_config(config(&[("parallelism.default", "2".into())]));
    windows_into(
        events(&env, 1e9, None),
        FileSink::json_lines(out.path()).with_rolling_file_size(2000),
    );
    env.execute("rolling").unwrap();
    assert_same(&committed(out.path()), &expected, "rolled output");

    let longest = expected.iter().map(|l| l.len() + 1).max().unwrap() as u64;
    let total: u64 = expected.iter().map(|l| l.len() as u64 + 1).sum();
    let files = store.list("").unwrap();
    assert!(
        files.len() as u64 >= total / (2000 + longest),
        "{} files for {total} bytes",
        files.len()
    );
    for f in &files {
        assert!(f.size < 2000 + longest, "{} has {} bytes", f.path, f.size);
        let rest = f
            .path
            .strip_prefix("part-")
            .unwrap()
            .strip_suffix(".jsonl")
            .unwrap();
        let mut fields = rest.rsplitn(3, '-');
        let (count, subtask, uuid) = (fields.next(), fields.next(), fields.next());
        assert!(
            count.unwrap().parse::<u64>().is_ok()
                && matches!(subtask, Some("0" | "1"))
                && uuid.unwrap().len() == 36,
            "part-<uuid>-<subtask>-<count>.jsonl: {}",
            f.path
        );
    }
    assert!(store.list_uploads("").unwrap().is_empty());
    let staging: Vec<_> = std::fs::read_dir(out.path().join(".weir-tmp-uploads"))
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(staging.is_empty(), "in-progress staging left: {staging:?}");
}

/// A keyed operator whose state layout changed (here: a rolling reduce replaced by a window
/// under the same uid) must not start with the old state silently gone.
#[test]
fn a_savepoint_with_state_the_operator_no_longer_has_is_refused_naming_it_unless_told_to_drop_it() {
    let sp = tempfile::tempdir().unwrap();
    let gen_ = || DataGen::new(5, |g| g.index);
    let env = StreamExecutionEnvironment::with_config(config(&[]));
    env.from_source(gen_().rows_per_second(2_000.0), None, "gen")
        .uid("gen")
        .key_by(|i: &u64| i % 10)
        .reduce(|a, b| a + b)
        .uid("state")
        .sink_to(BlackholeSink)
        .uid("sink");
    let job = env.execute_async("before").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let savepoint = job.stop_with_savepoint(Some(&uri(sp.path()))).unwrap();

    let run = |ignore: &str| {
        let out = tempfile::tempdir().unwrap();
        let env = StreamExecutionEnvironment::with_config(config(&[
            ("execution.savepoint.path", savepoint.clone()),
            ("execution.savepoint.ignore-unclaimed-state", ignore.into()),
        ]));
        env.from_source(gen_().bounded(100_000), None, "gen")
            .uid("gen")
            .key_by(|i: &u64| i % 10)
            .window(WindowSpec::tumbling(Duration::from_secs(3600)).processing_time())
            .aggregate(agg::count())
            .uid("state")
            .map(|w| w.value.to_string())
            .sink_to(FileSink::json_lines(out.path()))
            .uid("sink");
        env.execute("after").map(|_| committed(out.path()))
    };
    let err = weir_engine::error::report(&run("false").unwrap_err());
    assert!(
        err.contains("uid state")
            && err.contains("'reduce'")
            && err.contains("ignore-unclaimed-state"),
        "{err}"
    );
    // Told to drop it, the job runs from the source's restored position without that state.
    let counts = run("true").unwrap();
    assert_eq!(counts.len(), 10, "one window per key: {counts:?}");
}

/// Generated rows joined by an interval join, written by the exactly-once file sink: left
/// rows are the even events, right rows the odd events `i` with `i % 7 == 1`, keyed by
/// `i % 5`, joined when 60 ms or less apart (6 events): a left row `i` joins `i ± 5` when
/// that is a right row, so about 2 in 7 left rows join and the rest are padded (left outer).
fn build_join(env: &StreamExecutionEnvironment, out: &Path, rate: f64) {
    use weir_engine::api::Collector;
    use weir_engine::join::IntervalJoinFunction;
    #[derive(Clone)]
    struct Pairs;
    impl IntervalJoinFunction for Pairs {
        type Left = u64;
        type Right = u64;
        type Out = (u64, Option<u64>);
        fn join(
            &self,
            l: &u64,
            r: &u64,
            out: &mut Collector<Self::Out>,
        ) -> weir_engine::Result<bool> {
            out.collect((*l, Some(*r)));
            Ok(true)
        }
        fn left_unmatched(
            &self,
            l: u64,
            out: &mut Collector<Self::Out>,
        ) -> weir_engine::Result<()> {
            out.collect((l, None));
            Ok(())
        }
    }
    let events = env
        .from_source(
            DataGen::new(3, |g| g.index)
                .bounded(EVENTS)
                .rows_per_second(rate),
            // Restored splits may be up to one round (128 events) apart: allow 2 s of disorder.
            Some(
                WatermarkStrategy::for_bounded_out_of_orderness(Duration::from_secs(2))
                    .with_timestamp_assigner(|i: &u64| *i as i64 * 10),
            ),
            "gen",
        )
        .uid("gen");
    let left = events.filter(|i| i % 2 == 0).key_by(|i: &u64| i % 5);
    let right = events
        .filter(|i| i % 2 == 1 && i % 7 == 1)
        .key_by(|i: &u64| i % 5);
    left.interval_join(&right)
        .between(-60, 60)
        .left_outer()
        .process(Pairs)
        .uid("join")
        .sink_to(FileSink::json_lines(out))
        .uid("sink");
}

#[test]
fn interval_join_savepoints_move_between_state_backends_at_parallelism_2_3_1() {
    let dir = tempfile::tempdir().unwrap();
    let env =
        StreamExecutionEnvironment::with_config(config(&[("parallelism.default", "2".into())]));
    build_join(&env, dir.path(), 1e9);
    env.execute("reference").unwrap();
    let expected = committed(dir.path());
    // Every left row once: 6,000, of which the rows `i` with `i ± 5` a right row join.
    let joined = (0..EVENTS)
        .filter(|i| i % 2 == 0 && (i % 7 == 3 || i % 7 == 6) && *i >= 5)
        .count();
    assert!(expected.len() >= 6_000 && expected.len() < 6_000 + joined);
    assert_eq!(
        expected.iter().filter(|l| !l.ends_with("null]")).count(),
        (0..EVENTS)
            .filter(|i| i % 2 == 0)
            .map(|i| [i.wrapping_sub(5), i + 5]
                .iter()
                .filter(|&&j| j < EVENTS && j % 2 == 1 && j % 7 == 1)
                .count())
            .sum::<usize>(),
        "joined pairs"
    );

    let dirs = JobDirs::new();
    let sp = tempfile::tempdir().unwrap();
    let mut savepoint = None;
    for (i, (backend, p)) in [
        (Backend::HashMap, 2),
        (Backend::RocksDb, 3),
        (Backend::HashMap, 1),
    ]
    .into_iter()
    .enumerate()
    {
        let mut pairs = vec![("parallelism.default", p.to_string())];
        if let Some(s) = savepoint.take() {
            pairs.push(("execution.savepoint.path", s));
        }
        let env = dirs.env(backend, &pairs);
        let last = i == 2;
        build_join(&env, dirs.out.path(), if last { 1e9 } else { 4_000.0 });
        if last {
            env.execute("to the end").unwrap();
        } else {
            let job = env.execute_async("stopped").unwrap();
            std::thread::sleep(Duration::from_millis(600));
            savepoint = Some(job.stop_with_savepoint(Some(&uri(sp.path()))).unwrap());
            let n = committed(dirs.out.path()).len();
            assert!(
                n > 0 && n < expected.len(),
                "run {i} stopped mid-stream: {n} lines"
            );
        }
    }
    assert_same(
        &committed(dirs.out.path()),
        &expected,
        "restored twice across backends",
    );
}

#[test]
fn an_interval_join_restores_from_an_incremental_rocksdb_checkpoint_at_parallelism_3_and_1() {
    let dir = tempfile::tempdir().unwrap();
    let env =
        StreamExecutionEnvironment::with_config(config(&[("parallelism.default", "2".into())]));
    build_join(&env, dir.path(), 1e9);
    env.execute("reference").unwrap();
    let expected = committed(dir.path());

    // A write cache of 64 rows: most waiting rows are in RocksDB only when a checkpoint is
    // taken, and the restored subtasks read the key groups they own back from its files.
    let dirs = JobDirs::new();
    let cache = (
        "state.backend.rocksdb.write-cache.entries",
        "64".to_string(),
    );
    let env = dirs.env(
        Backend::RocksDb,
        &[
            ("parallelism.default", "2".into()),
            ("execution.checkpointing.interval", "50ms".into()),
            cache.clone(),
        ],
    );
    build_join(&env, dirs.out.path(), 4_000.0);
    let checkpoint = cancel_after_three_checkpoints(&env, &dirs);

    for p in [3usize, 1] {
        let out = tempfile::tempdir().unwrap();
        copy_committed(dirs.out.path(), out.path());
        let n = committed(out.path()).len();
        assert!(n > 0 && n < expected.len(), "stopped mid-stream: {n} lines");
        let env = dirs.env(
            Backend::RocksDb,
            &[
                ("parallelism.default", p.to_string()),
                ("execution.savepoint.path", checkpoint.clone()),
                cache.clone(),
            ],
        );
        build_join(&env, out.path(), 1e9);
        env.execute("after").unwrap();
        assert_same(
            &committed(out.path()),
            &expected,
            &format!("restored at parallelism {p}"),
        );
    }
}
