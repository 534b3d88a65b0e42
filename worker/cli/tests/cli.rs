//! The `weir` binary as a user runs it: the main job's output, the seed example, the summary
//! file, and the errors for mistakes on the command line.

use std::process::{Command, Output};
use weir_contract::security::testing::TestCertificates;
use weir_storage::testing::{ACCESS_KEY, Moto, S3sFs, SECRET_KEY};

fn weir(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(args)
        .output()
        .expect("weir runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Runs `weir args` and checks that it fails saying `message`.
fn fails_with(args: &[&str], message: &str) {
    let o = weir(args);
    assert!(!o.status.success(), "weir {args:?} succeeded");
    assert!(stderr(&o).contains(message), "{}", stderr(&o));
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Sums `events=N` over the printed window results.
fn total_events(text: &str) -> u64 {
    text.lines()
        .filter_map(|l| l.split_whitespace().find_map(|f| f.strip_prefix("events=")))
        .map(|n| n.parse::<u64>().unwrap())
        .sum()
}

#[test]
fn user_metrics_prints_windows_that_account_for_every_event() {
    let o = weir(&[
        "run",
        "user-metrics",
        "--arg",
        "events=20000",
        "--no-progress",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert_eq!(
        total_events(&out),
        20_000,
        "every generated event lands in exactly one window"
    );
    // 20 000 events x 20 ms = 400 s of event time: windows 23:59..00:00 through 00:06..00:07.
    assert!(
        out.contains("2026-01-01T00:06:00.000Z .. 00:07:00.000Z"),
        "{out}"
    );
    assert!(
        stderr(&o).contains("FINISHED") && stderr(&o).contains("20000 records in"),
        "{}",
        stderr(&o)
    );
}

fn example(name: &str) -> String {
    format!("{}/../../examples/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn user_metrics_gives_the_same_results_at_parallelism_4() {
    let sorted_lines = |o: &Output| {
        let mut l: Vec<String> = stdout(o)
            .lines()
            .map(|l| {
                l.trim_start_matches(|c: char| c.is_ascii_digit() || c == '>' || c == ' ')
                    .to_string()
            })
            .collect();
        l.sort();
        l
    };
    let one = weir(&[
        "run",
        "user-metrics",
        "--arg",
        "events=5000",
        "--no-progress",
    ]);
    let four = weir(&[
        "run",
        "user-metrics",
        "--arg",
        "events=5000",
        "--no-progress",
        "-p",
        "4",
    ]);
    assert!(four.status.success(), "{}", stderr(&four));
    assert_eq!(sorted_lines(&one), sorted_lines(&four));
}

#[test]
fn count_per_user_emits_per_user_counts_from_timers() {
    let o = weir(&[
        "run",
        "count-per-user",
        "--arg",
        "events=2400",
        "--arg",
        "users=1",
        "--set",
        "pipeline.batch-size=1",
        "--no-progress",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    // One user, event i at t0 + 50*i, a watermark after every record (batch size 1). The
    // first event sets a timer at t0 + 60 000; watermark t0 + 50*i - 1 passes it at i = 1201,
    // after that record was counted: 1202. The next round starts at i = 1202 and its timer
    // (t0 + 120 100) is never reached by the data, so end of input fires it: 2400 - 1202.
    assert_eq!(
        stdout(&o).lines().collect::<Vec<_>>(),
        vec!["(\"user_0\", 1202)", "(\"user_0\", 1198)"]
    );
}

#[test]
fn bench_job_reads_a_file_and_writes_a_summary() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(
        &input,
        "{\"user_id\":\"a\",\"amount\":1.5,\"ts\":0}\n{\"user_id\":\"a\",\"amount\":2.5,\"ts\":59999}\n{\"user_id\":\"b\",\"amount\":1,\"ts\":60000}\n",
    )
    .unwrap();
    let out_dir = dir.path().join("out");
    let summary = dir.path().join("summary.json");
    let o = weir(&[
        "run",
        "bench-tumbling",
        "--arg",
        &format!("input={}", input.display()),
        "--arg",
        &format!("output={}", out_dir.display()),
        "--no-progress",
        "--summary-json",
        summary.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let parts: Vec<_> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    assert_eq!(parts.len(), 1, "one committed part file: {parts:?}");
    let results = std::fs::read_to_string(&parts[0]).unwrap();
    assert_eq!(
        results.lines().collect::<Vec<_>>(),
        vec![
            r#"{"key":"a","window":{"start":0,"end":60000},"value":[2,4.0]}"#,
            r#"{"key":"b","window":{"start":60000,"end":120000},"value":[1,1.0]}"#,
        ]
    );
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(summary).unwrap()).unwrap();
    assert_eq!(
        (s["records_in"].as_u64(), s["records_out"].as_u64()),
        (Some(3), Some(2))
    );
}

#[test]
fn mistakes_on_the_command_line_get_errors_that_say_what_to_do() {
    fails_with(
        &["run", "no-such-job"],
        "no job named 'no-such-job'; registered jobs: user-metrics",
    );
    fails_with(
        &["run", "user-metrics", "--arg", "event=5"],
        "has no argument 'event'; its arguments are: events, users, rate",
    );
    fails_with(
        &["run", "user-metrics", "--set", "pipeline.max-paralelism=4"],
        "did you mean 'pipeline.max-parallelism'",
    );
    fails_with(&["run", "bench-tumbling"], "needs --arg input=");
    fails_with(
        &[
            "run",
            "bench-tumbling",
            "--arg",
            "input=/nonexistent/events.jsonl",
            "--no-progress",
        ],
        "cannot read input /nonexistent/events.jsonl",
    );
}

/// Committed result lines in `dir` (sorted); in-progress files are hidden and not read.
fn committed(dir: &std::path::Path) -> Vec<String> {
    let mut lines: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().path())
                .filter(|p| p.is_file())
                .collect::<Vec<_>>()
        })
        .unwrap_or_default()
        .iter()
        .flat_map(|p| {
            std::fs::read_to_string(p)
                .unwrap()
                .lines()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    lines.sort();
    lines
}

/// The newest checkpoint directory with a `_metadata` under `dir/<job-id>/`.
fn latest_checkpoint(dir: &std::path::Path) -> Option<std::path::PathBuf> {
    let job = std::fs::read_dir(dir).ok()?.next()?.ok()?.path();
    std::fs::read_dir(&job)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("_metadata").exists())
        .max_by_key(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .trim_start_matches("chk-")
                .parse::<u64>()
                .unwrap_or(0)
        })
}

/// Kills `child` (SIGKILL) at a random point 0.7–1.5 s into its 2 s run (by then every
/// operator holds state, so checkpoints have SST files on rocksdb), once a checkpoint is
/// complete under `dir`; returns when it was killed (for assertion messages).
fn kill_after_a_checkpoint(
    child: &mut std::process::Child,
    dir: &std::path::Path,
) -> std::time::Duration {
    kill_once(child, &dir.display().to_string(), || {
        latest_checkpoint(dir).is_some()
    })
}

/// Kills `child` (SIGKILL) at a random point 0.7–1.5 s into its run, once `checkpointed`
/// says a checkpoint is complete in `place`; returns when it was killed.
fn kill_once(
    child: &mut std::process::Child,
    place: &str,
    checkpointed: impl Fn() -> bool,
) -> std::time::Duration {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    let at = std::time::Duration::from_millis(700 + seed % 800);
    let start = std::time::Instant::now();
    while !checkpointed() || start.elapsed() < at {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(20),
            "no checkpoint appeared in {place}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    start.elapsed()
}

/// The newest complete checkpoint (`<job-id>/chk-<n>`, with its `_metadata`) under
/// `s3://weir/checkpoints` on the server `options` reach.
fn latest_s3_checkpoint(options: &weir_storage::StorageOptions) -> Option<String> {
    let store = weir_storage::open("s3://weir/checkpoints", options).ok()?;
    store
        .list("")
        .ok()?
        .into_iter()
        .filter_map(|o| {
            let dir = o.path.strip_suffix("/_metadata")?;
            let n = dir.rsplit_once("/chk-")?.1.parse::<u64>().ok()?;
            Some((n, dir.to_string()))
        })
        .max()
        .map(|(_, dir)| dir)
}

#[test]
fn a_killed_weir_process_resumes_from_its_latest_checkpoint_with_exactly_once_output() {
    killed_process_resumes_exactly_once("hashmap");
}

#[test]
fn a_killed_rocksdb_weir_process_resumes_from_its_latest_checkpoint_with_exactly_once_output() {
    killed_process_resumes_exactly_once("rocksdb");
}

#[test]
fn a_killed_weir_run_resumes_from_its_recovery_dir_and_its_rocksdb_leftovers_are_removed() {
    let reference = tempfile::tempdir().unwrap();
    let base = |out: &std::path::Path| {
        vec![
            "run".to_string(),
            "user-metrics".into(),
            "--arg".into(),
            "events=60000".into(),
            "--no-progress".into(),
            "--arg".into(),
            format!("output={}", out.display()),
            "--set".into(),
            "state.backend.type=rocksdb".into(),
        ]
    };
    let o = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(base(reference.path()))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let expected = committed(reference.path());

    let (out, chk, local, recovery) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let mut args = base(out.path());
    args.extend([
        "--set".to_string(),
        "execution.checkpointing.interval=100ms".into(),
        "--set".into(),
        format!("state.checkpoints.dir=file://{}", chk.path().display()),
        "--set".into(),
        format!("state.backend.rocksdb.localdir={}", local.path().display()),
        "--recovery-dir".into(),
        recovery.path().display().to_string(),
    ]);
    let log = recovery.path().join("first.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(&args)
        .args(["--arg", "rate=30000"])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let at = kill_after_a_checkpoint(&mut child, chk.path());
    let first = std::fs::read_to_string(&log).unwrap();
    let job_dir = std::fs::read_dir(chk.path())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let job_id = job_dir.file_name().unwrap().to_str().unwrap().to_string();
    assert!(
        first.contains(&format!(
            "job {job_id} started; checkpoints go to file://{}/{job_id}/",
            chk.path().display()
        )),
        "weir run names its job id and checkpoint directory at start: {first}"
    );
    let leftovers = || std::fs::read_dir(local.path()).unwrap().count();
    assert_eq!(
        leftovers(),
        1,
        "the killed process left its RocksDB directory"
    );
    assert!(
        committed(out.path()).len() < expected.len(),
        "killed mid-run after {at:?}"
    );

    // The same command again: it finds the latest checkpoint through the recovery dir.
    let o = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(&args)
        .output()
        .unwrap();
    let second = stderr(&o);
    assert!(o.status.success(), "{second}");
    assert!(
        second.contains(&format!(
            "weir run restarted: resuming from file://{}/chk-",
            job_dir.display()
        )),
        "{second}"
    );
    assert_eq!(
        committed(out.path()),
        expected,
        "killed after {at:?}, resumed via --recovery-dir"
    );
    assert_eq!(
        leftovers(),
        0,
        "the resumed run removed the killed process's RocksDB directory and its own"
    );
}

/// Kills `weir run` (checkpoints on file:// every 100 ms, `backend`) at a random point of its
/// run, resumes from the latest checkpoint, and compares with a failure-free run.
fn killed_process_resumes_exactly_once(backend: &str) {
    let backend_key = format!("state.backend.type={backend}");
    let base = [
        "run",
        "user-metrics",
        "--arg",
        "events=60000",
        "--no-progress",
        "--set",
        backend_key.as_str(),
    ];
    let reference = tempfile::tempdir().unwrap();
    let o = weir(
        &[
            &base[..],
            &["--arg", &format!("output={}", reference.path().display())],
        ]
        .concat(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let expected = committed(reference.path());
    assert!(expected.len() > 100);

    let out = tempfile::tempdir().unwrap();
    let chk = tempfile::tempdir().unwrap();
    let checkpointing = [
        "--set".to_string(),
        "execution.checkpointing.interval=100ms".to_string(),
        "--set".to_string(),
        format!("state.checkpoints.dir=file://{}", chk.path().display()),
        "--set".to_string(),
        "state.checkpoints.num-retained=3".to_string(),
        "--arg".to_string(),
        format!("output={}", out.path().display()),
    ];
    let mut args: Vec<String> = base.iter().map(|s| s.to_string()).collect();
    args.extend(checkpointing.iter().cloned());
    args.extend(["--arg".to_string(), "rate=30000".to_string()]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(&args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let at = kill_after_a_checkpoint(&mut child, chk.path());
    let partial = committed(out.path());
    assert!(
        partial.len() < expected.len(),
        "{backend}: killed mid-run after {at:?}: {} of {} results",
        partial.len(),
        expected.len()
    );

    let restore = latest_checkpoint(chk.path()).unwrap();
    let mut args: Vec<String> = base.iter().map(|s| s.to_string()).collect();
    args.extend(checkpointing.iter().cloned());
    args.extend([
        "--from-savepoint".to_string(),
        format!("file://{}", restore.display()),
    ]);
    let o = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(&args)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        committed(out.path()),
        expected,
        "{backend}: killed after {at:?}, resumed from {}",
        restore.display()
    );
}

/// Every committed line of a file sink's output at `uri` on `s3`, sorted, read through the
/// S3 API (completed objects only); asserts that no multipart upload under `uri` is left
/// open, neither in the sink's bookkeeping nor on the server. The kill tests run on moto:
/// it lists the uploads a writer killed before recording them left (which the sink's
/// recovery then aborts), and completes an upload atomically, where s3s-fs's
/// non-atomic completion, interrupted by the kill, can leave an upload that no retry finishes
/// (docs/storage.md, *Multipart uploads for writers*).
fn committed_in_bucket(s3: &Moto, uri: &str) -> Vec<String> {
    let out = weir_storage::open(uri, &s3.options()).unwrap();
    let mut lines: Vec<String> = Vec::new();
    for o in out.list("").unwrap() {
        let bytes = out.get(&o.path).unwrap();
        lines.extend(String::from_utf8_lossy(&bytes).lines().map(str::to_string));
    }
    lines.sort();
    assert!(
        out.list_uploads("").unwrap().is_empty(),
        "{uri}: uploads left open"
    );
    let prefix = uri.strip_prefix("s3://weir/").unwrap();
    let open: Vec<String> = (s3.open_uploads("weir").into_iter())
        .filter(|k| k.starts_with(prefix))
        .collect();
    assert!(open.is_empty(), "uploads left open on the server: {open:?}");
    lines
}

/// `weir` arguments that put checkpoints into `s3://weir/checkpoints` on the server at
/// `endpoint`.
fn s3_checkpoint_args(endpoint: &str, interval: &str) -> Vec<String> {
    [
        format!("execution.checkpointing.interval={interval}"),
        "state.checkpoints.dir=s3://weir/checkpoints".to_string(),
        format!("s3.endpoint={endpoint}"),
        "s3.path-style-access=true".to_string(),
        "s3.region=us-east-1".to_string(),
    ]
    .into_iter()
    .flat_map(|kv| ["--set".to_string(), kv])
    .collect()
}

/// `weir` with the test server's credentials in the standard AWS environment variables.
fn weir_with_s3_credentials(args: &[String]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_weir"));
    c.args(args)
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY);
    c
}

/// Kills `weir run` with checkpoints and its file sink's output on S3, at a random point
/// after a checkpoint (so also between a checkpoint's completion and the sink's commit),
/// resumes it from the latest checkpoint: the bucket holds exactly the failure-free output,
/// and the server holds no open multipart upload.
#[test]
fn checkpoints_on_s3_let_a_killed_process_resume_with_exactly_once_output() {
    let reference = tempfile::tempdir().unwrap();
    let o = weir(&[
        "run",
        "user-metrics",
        "--arg",
        "events=60000",
        "--no-progress",
        "--arg",
        &format!("output={}", reference.path().display()),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let expected = committed(reference.path());

    let data = tempfile::tempdir().unwrap();
    let s3 = Moto::start(data.path(), &["weir"]);
    let mut args: Vec<String> = [
        "run",
        "user-metrics",
        "--arg",
        "events=60000",
        "--no-progress",
        "--arg",
        "output=s3://weir/out",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(s3_checkpoint_args(&s3.endpoint(), "100ms"));
    let mut first = args.clone();
    first.extend(["--arg".to_string(), "rate=30000".to_string()]);
    let mut child = weir_with_s3_credentials(&first)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let options = s3.options();
    let at = kill_once(&mut child, "s3://weir/checkpoints", || {
        latest_s3_checkpoint(&options).is_some()
    });
    let chk = latest_s3_checkpoint(&options).unwrap();
    let mut resume = args.clone();
    resume.extend([
        "--from-savepoint".to_string(),
        format!("s3://weir/checkpoints/{chk}"),
    ]);
    let o = weir_with_s3_credentials(&resume).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        committed_in_bucket(&s3, "s3://weir/out"),
        expected,
        "killed after {at:?}, resumed from s3://weir/checkpoints/{chk}"
    );
}

#[test]
fn weir_objects_lists_reads_and_deletes_the_objects_of_a_bucket_through_the_s3_api() {
    let data = tempfile::tempdir().unwrap();
    let s3 = S3sFs::start(data.path(), &["weir"]);
    let store = weir_storage::open("s3://weir", &s3.options()).unwrap();
    store
        .put(
            "savepoints/savepoint-1/_metadata",
            b"meta-1".to_vec().into(),
        )
        .unwrap();
    store
        .put("savepoints/savepoint-1/op-a", b"state".to_vec().into())
        .unwrap();
    store
        .put("checkpoints/job-1/chk-1/_metadata", b"chk".to_vec().into())
        .unwrap();
    let s3_args = |args: &[&str]| -> Vec<String> {
        let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        all.extend(s3_checkpoint_args(&s3.endpoint(), "1s").into_iter().skip(4));
        all
    };

    let ls = weir_with_s3_credentials(&s3_args(&["objects", "ls", "s3://weir/savepoints/"]))
        .output()
        .unwrap();
    assert!(ls.status.success(), "{}", stderr(&ls));
    assert_eq!(
        stdout(&ls).lines().collect::<Vec<_>>(),
        [
            "s3://weir/savepoints/savepoint-1/_metadata",
            "s3://weir/savepoints/savepoint-1/op-a"
        ]
    );
    let all = weir_with_s3_credentials(&s3_args(&["objects", "ls", "s3://weir"]))
        .output()
        .unwrap();
    assert_eq!(stdout(&all).lines().count(), 3, "{}", stdout(&all));

    let cat = weir_with_s3_credentials(&s3_args(&[
        "objects",
        "cat",
        "s3://weir/savepoints/savepoint-1/_metadata",
    ]))
    .output()
    .unwrap();
    assert!(cat.status.success(), "{}", stderr(&cat));
    assert_eq!(cat.stdout, b"meta-1");

    let missing = weir_with_s3_credentials(&s3_args(&[
        "objects",
        "cat",
        "s3://weir/savepoints/savepoint-2/_metadata",
    ]))
    .output()
    .unwrap();
    assert!(!missing.status.success());
    assert!(
        stderr(&missing).contains("savepoint-2/_metadata"),
        "{}",
        stderr(&missing)
    );
    let rm = weir_with_s3_credentials(&s3_args(&["objects", "rm", "s3://weir/savepoints"]))
        .output()
        .unwrap();
    assert!(rm.status.success(), "{}", stderr(&rm));
    assert_eq!(stdout(&rm).trim(), "2");
    assert_eq!(
        store
            .list("")
            .unwrap()
            .iter()
            .map(|o| o.path.as_str())
            .collect::<Vec<_>>(),
        ["checkpoints/job-1/chk-1/_metadata"],
        "rm deletes below its prefix only"
    );
    let no_object = weir(&["objects", "cat", "s3://weir"]);
    assert!(!no_object.status.success());
    assert!(
        stderr(&no_object).contains("names no object"),
        "{}",
        stderr(&no_object)
    );
}

#[test]
fn weir_objects_ls_into_a_reader_that_stops_early_ends_quietly_with_success() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    // More listing than a pipe buffers (64 KiB), so writes go on after the reader has gone.
    for i in 0..2000 {
        std::fs::write(
            dir.path().join(format!("object-{i:05}-{}", "x".repeat(40))),
            b"",
        )
        .unwrap();
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["objects", "ls", &dir.path().display().to_string()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(
        first
            .trim_end()
            .ends_with("object-00000-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"),
        "{first}"
    );
    // The reader (like `| head -1`) is dropped here; weir must not call that an error.
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{:?}: {}", o.status, stderr(&o));
    assert_eq!(stderr(&o), "");
}

#[test]
fn an_s3_outage_fails_checkpoints_but_not_the_job_and_checkpoints_resume_after() {
    let data = tempfile::tempdir().unwrap();
    let mut s3 = S3sFs::start(data.path(), &["weir"]);
    let out = tempfile::tempdir().unwrap();
    let summary = out.path().join("summary.json");
    let results = out.path().join("results");
    let mut args: Vec<String> = [
        "run",
        "user-metrics",
        "--arg",
        "events=150000",
        "--arg",
        "rate=30000",
        "--no-progress",
        "--arg",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.push(format!("output={}", results.display()));
    args.extend(["--summary-json".to_string(), summary.display().to_string()]);
    args.extend(s3_checkpoint_args(&s3.endpoint(), "100ms"));
    let child = weir_with_s3_credentials(&args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(700));
    s3.stop(); // S3 goes away mid-run, longer than a write's retries last (~1 s) ...
    std::thread::sleep(std::time::Duration::from_millis(2000));
    s3.restart(); // ... and comes back on the same port with the same data
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    let (completed, failed) = (
        s["checkpoints"]["completed"].as_u64().unwrap(),
        s["checkpoints"]["failed"].as_u64().unwrap(),
    );
    assert!(failed >= 1, "checkpoints failed while S3 was down: {s}");
    assert!(
        completed >= 2,
        "checkpoints completed before and after the outage: {s}"
    );
    let latest = s["checkpoints"]["latest_path"].as_str().unwrap();
    let latest_id: u64 = latest.rsplit("chk-").next().unwrap().parse().unwrap();
    assert!(
        latest_id > failed,
        "a checkpoint after the outage completed: {s}"
    );
    assert_eq!(s["records_in"], 150_000, "no data lost: {s}");
    assert_eq!(s["restarts"], 0, "the job never restarted: {s}");
}

/// Starts `weir run` with the REST API on a free port; returns the child, the API's URL and
/// the job id (both printed on stderr).
fn run_with_rest(args: &[String]) -> (std::process::Child, String, String) {
    run_with_rest_to(args, std::process::Stdio::null())
}

/// [`run_with_rest`] with the job's standard output (a print sink's) going to `stdout`.
fn run_with_rest_to(
    args: &[String],
    stdout: std::process::Stdio,
) -> (std::process::Child, String, String) {
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(args)
        .args(["--set", "rest.port=0", "--no-progress"])
        .stdout(stdout)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if let Some(rest) = line.strip_prefix("REST API: ") {
                let _ = tx.send(rest.to_string());
            }
        }
    });
    let line = rx
        .recv_timeout(std::time::Duration::from_secs(30))
        .expect("weir run prints the REST API's URL");
    // "http://127.0.0.1:PORT  (job <id>)"
    let (url, job) = line.split_once("  (job ").unwrap();
    (
        child,
        url.to_string(),
        job.trim_end_matches(')').to_string(),
    )
}

#[test]
fn weir_savepoint_prints_a_path_that_weir_run_restores_exactly_once_after_weir_cancel() {
    let base: Vec<String> = ["run", "user-metrics", "--arg", "events=60000"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let reference = tempfile::tempdir().unwrap();
    let mut args = base.clone();
    args.extend([
        "--arg".into(),
        format!("output={}", reference.path().display()),
    ]);
    args.push("--no-progress".into());
    let o = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(&args)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let expected = committed(reference.path());

    let out = tempfile::tempdir().unwrap();
    let sp = tempfile::tempdir().unwrap();
    let mut args = base.clone();
    args.extend([
        "--arg".into(),
        format!("output={}", out.path().display()),
        "--arg".into(),
        "rate=10000".into(),
    ]);
    let (mut child, url, job) = run_with_rest(&args);

    let o = weir(&["list", "--address", &url]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains(&format!(": {job} : user-metrics (RUNNING)")),
        "{}",
        stdout(&o)
    );
    std::thread::sleep(std::time::Duration::from_millis(800));
    let target = format!("file://{}", sp.path().display());
    let o = weir(&["savepoint", &job, &target, "--address", &url]);
    assert!(o.status.success(), "{}", stderr(&o));
    let location = stdout(&o)
        .lines()
        .find_map(|l| l.strip_prefix("Savepoint completed. Path: "))
        .expect("the location is printed")
        .to_string();
    assert!(
        location.starts_with(&format!("{target}/savepoint-")),
        "{location}"
    );
    let dir = std::path::PathBuf::from(location.strip_prefix("file://").unwrap());
    assert!(dir.join("_metadata").exists());

    // An unknown job id.
    let o = weir(&["savepoint", "0123abcd", &target, "--address", &url]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("job 0123abcd not found"),
        "{}",
        stderr(&o)
    );

    let o = weir(&["cancel", &job, "--address", &url]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains(&format!("Cancelled job {job}.")));
    child.wait().unwrap();
    // Without checkpoints nothing is committed before the cancel: a savepoint does not commit
    // side effects (docs/fault-tolerance.md); restoring from it commits what it pre-committed.
    let partial = committed(out.path());
    assert!(
        partial.is_empty(),
        "a savepoint commits nothing by itself: {} of {} results",
        partial.len(),
        expected.len()
    );

    let mut args = base.clone();
    args.extend([
        "--arg".into(),
        format!("output={}", out.path().display()),
        "--no-progress".into(),
        "-s".into(),
        location.clone(),
    ]);
    let o = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(&args)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        committed(out.path()),
        expected,
        "restored from {location}: every result exactly once"
    );

    // Nothing listening.
    let o = weir(&["list", "--address", "http://127.0.0.1:1"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("cannot reach the REST API at http://127.0.0.1:1"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn incremental_rocksdb_checkpoints_on_s3_let_a_killed_process_resume_exactly_once() {
    let base = [
        "run",
        "user-metrics",
        "--arg",
        "events=60000",
        "--no-progress",
    ];
    let reference = tempfile::tempdir().unwrap();
    let mut args: Vec<String> = base.iter().map(|s| s.to_string()).collect();
    args.extend([
        "--arg".into(),
        format!("output={}", reference.path().display()),
    ]);
    let o = weir_with_s3_credentials(&args).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let expected = committed(reference.path());

    let data = tempfile::tempdir().unwrap();
    let local = tempfile::tempdir().unwrap();
    let s3 = Moto::start(data.path(), &["weir"]);
    let mut args: Vec<String> = base.iter().map(|s| s.to_string()).collect();
    args.extend(["--arg".into(), "output=s3://weir/out".into()]);
    args.extend(s3_checkpoint_args(&s3.endpoint(), "100ms"));
    for kv in [
        "state.backend.type=rocksdb".to_string(),
        format!("state.backend.rocksdb.localdir={}", local.path().display()),
        "state.checkpoints.num-retained=2".to_string(),
    ] {
        args.extend(["--set".to_string(), kv]);
    }
    let mut first = args.clone();
    first.extend(["--arg".to_string(), "rate=30000".to_string()]);
    let mut child = weir_with_s3_credentials(&first)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The keyed state goes up as SST files under <job-id>/shared/, referenced by _metadata:
    // kill once the latest checkpoint references some (under load the first checkpoints may
    // come before the job holds any state).
    let options = s3.options();
    let store = weir_storage::open("s3://weir/checkpoints", &options).unwrap();
    let with_sst_files = || {
        let chk = latest_s3_checkpoint(&options)?;
        let meta =
            String::from_utf8_lossy(&store.get(&format!("{chk}/_metadata")).ok()?).into_owned();
        let job = chk.split_once('/')?.0;
        let shared = store.list(&format!("{job}/shared/")).ok()?;
        shared
            .iter()
            .filter_map(|o| o.path.rsplit('/').next())
            .any(|f| f.ends_with(".sst") && meta.contains(f))
            .then_some(chk)
    };
    let at = kill_once(
        &mut child,
        "s3://weir/checkpoints (one referencing SST files in shared/)",
        || with_sst_files().is_some(),
    );
    let chk = with_sst_files().expect("the latest checkpoint references SST files");
    let mut resume = args.clone();
    resume.extend([
        "--from-savepoint".to_string(),
        format!("s3://weir/checkpoints/{chk}"),
    ]);
    let o = weir_with_s3_credentials(&resume).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        committed_in_bucket(&s3, "s3://weir/out"),
        expected,
        "killed after {at:?}, resumed from s3://weir/checkpoints/{chk}"
    );
}

/// A free TCP port on loopback (released again: a process started next binds it).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Child processes killed when the test ends, however it ends; their stderr goes to files
/// that are printed when the test fails.
struct Processes {
    children: Vec<(String, std::process::Child, std::path::PathBuf)>,
    logs: tempfile::TempDir,
}

impl Processes {
    fn new() -> Self {
        Processes {
            children: Vec::new(),
            logs: tempfile::tempdir().unwrap(),
        }
    }

    fn start(&mut self, name: &str, args: &[String]) {
        let log = self.logs.path().join(format!("{name}.log"));
        let child = weir_with_s3_credentials(args)
            .env("WEIR_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        self.children.push((name.to_string(), child, log));
    }

    fn kill(&mut self, name: &str) {
        let (_, child, _) = self
            .children
            .iter_mut()
            .find(|(n, _, _)| n == name)
            .unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }

    fn logs(&self) -> String {
        self.children
            .iter()
            .map(|(n, _, log)| {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(40).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                format!("--- {n} ---\n{}\n", tail.join("\n"))
            })
            .collect()
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        for (_, c, _) in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A plain HTTP GET returning the body (the tests need no HTTP client for this).
fn http_get(url: &str, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let host = url.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(host).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    let (head, body) = body.split_once("\r\n\r\n")?;
    let status = head.lines().next()?;
    status.contains(" 200 ").then(|| body.to_string())
}

/// The value of a Prometheus sample whose line starts with `name`.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn a_jobmanager_binds_rpc_to_loopback_off_kubernetes_and_prints_the_port_it_got() {
    let mut procs = Processes::new();
    procs.start(
        "jobmanager",
        &[
            "jobmanager".to_string(),
            "--set".into(),
            "rest.port=0".into(),
            "--set".into(),
            "jobmanager.rpc.port=0".into(),
            "user-metrics".into(),
        ],
    );
    let log = procs.logs.path().join("jobmanager.log");
    let start = std::time::Instant::now();
    let rpc = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(rest) = text.split("  RPC ").nth(1) {
            break rest.split_whitespace().next().unwrap().to_string();
        }
        assert!(start.elapsed().as_secs() < 30, "{}", procs.logs());
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let addr: std::net::SocketAddr = rpc.parse().unwrap();
    assert!(
        addr.ip().is_loopback(),
        "binds loopback without POD_IP: {rpc}"
    );
    assert_ne!(addr.port(), 0, "prints the port it was given, not 0");
    assert!(
        std::net::TcpStream::connect(addr).is_ok(),
        "the printed RPC address accepts connections: {rpc}"
    );
}

/// A JobManager and TaskManagers of `weir` on loopback, with checkpoints on `s3`.
struct Cluster {
    procs: Processes,
    url: String,
    job: String,
    common: Vec<String>,
    taskmanagers: usize,
    jm_args: Vec<String>,
    jm_starts: usize,
    /// `WEIR_PROPERTIES` of the `weir` client commands (their token and CA), if any.
    client_properties: Option<String>,
}

impl Cluster {
    /// Starts the JobManager for `user-metrics` with `job_args` and `tms` TaskManagers of
    /// `slots` slots each; `set` adds configuration for every process.
    fn start(s3: &S3sFs, tms: usize, slots: usize, set: &[String], job_args: &[String]) -> Self {
        Self::start_job(s3, tms, slots, set, "user-metrics", job_args)
    }

    /// Like [`Cluster::start_job`], with `weir jobmanager --recovery-dir <dir>`.
    fn start_recoverable(
        s3: &S3sFs,
        set: &[String],
        job_args: &[String],
        recovery_dir: &std::path::Path,
    ) -> Self {
        let flags = [
            "--recovery-dir".to_string(),
            recovery_dir.display().to_string(),
        ];
        Self::start_with(s3, 2, 2, set, "user-metrics", job_args, &flags)
    }

    /// Like [`Cluster::start`] for the registered job `job`.
    fn start_job(
        s3: &S3sFs,
        tms: usize,
        slots: usize,
        set: &[String],
        job: &str,
        job_args: &[String],
    ) -> Self {
        Self::start_with(s3, tms, slots, set, job, job_args, &[])
    }

    fn start_with(
        s3: &S3sFs,
        tms: usize,
        slots: usize,
        set: &[String],
        job: &str,
        job_args: &[String],
        jm_flags: &[String],
    ) -> Self {
        let (rpc, rest) = (free_port(), free_port());
        let mut common: Vec<String> = s3_checkpoint_args(&s3.endpoint(), "100ms");
        for kv in [
            format!("jobmanager.rpc.port={rpc}"),
            "heartbeat.interval=200ms".to_string(),
            "heartbeat.timeout=3s".to_string(),
            "restart-strategy.fixed-delay.delay=200ms".to_string(),
            format!("taskmanager.numberOfTaskSlots={slots}"),
        ]
        .iter()
        .chain(set)
        {
            common.extend(["--set".to_string(), kv.clone()]);
        }
        let mut jm = vec!["jobmanager".to_string()];
        jm.extend(common.iter().cloned());
        jm.extend(["--set".to_string(), format!("rest.port={rest}")]);
        jm.extend(jm_flags.iter().cloned());
        jm.push(job.to_string());
        jm.extend(job_args.iter().cloned());
        let mut c = Cluster {
            procs: Processes::new(),
            url: format!("http://127.0.0.1:{rest}"),
            job: String::new(),
            common,
            taskmanagers: 0,
            jm_args: jm,
            jm_starts: 0,
            client_properties: None,
        };
        c.start_jobmanager();
        for _ in 0..tms {
            c.add_taskmanager();
        }
        c.await_job_id();
        c
    }

    /// Starts a JobManager process (again, after [`Processes::kill`]) with the same arguments.
    fn start_jobmanager(&mut self) -> String {
        self.jm_starts += 1;
        let name = match self.jm_starts {
            1 => "jobmanager".to_string(),
            n => format!("jobmanager-{n}"),
        };
        let args = self.jm_args.clone();
        self.procs.start(&name, &args);
        self.job.clear();
        name
    }

    /// Reads the job id from the newest JobManager's log.
    fn await_job_id(&mut self) {
        let log_file = self
            .procs
            .children
            .iter()
            .rev()
            .find(|(n, _, _)| n.starts_with("jobmanager"))
            .map(|(_, _, log)| log.clone())
            .unwrap();
        // "JobManager: REST API <url>  RPC <addr>  (job <id>)"
        let c = self;
        let start = std::time::Instant::now();
        while c.job.is_empty() {
            let log = std::fs::read_to_string(&log_file).unwrap_or_default();
            // Only a whole line: stderr is unbuffered, so the log may end in a partial one.
            if let Some(line) = log
                .lines()
                .find(|l| l.starts_with("JobManager: REST API") && l.ends_with(')'))
            {
                c.job = line
                    .rsplit("(job ")
                    .next()
                    .unwrap()
                    .trim_end_matches(')')
                    .to_string();
            }
            assert!(
                start.elapsed().as_secs() < 30,
                "no JobManager\n{}",
                c.procs.logs()
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    fn add_taskmanager(&mut self) -> String {
        self.taskmanagers += 1;
        let name = format!("taskmanager-{}", self.taskmanagers);
        let mut a = vec!["taskmanager".to_string()];
        a.extend(self.common.iter().cloned());
        self.procs.start(&name, &a);
        name
    }

    /// `weir <command> ... -m <url>`.
    fn weir(&self, args: &[&str]) -> Output {
        let mut c = Command::new(env!("CARGO_BIN_EXE_weir"));
        c.args(args).args(["-m", &self.url]);
        if let Some(p) = &self.client_properties {
            c.env("WEIR_PROPERTIES", p);
        }
        c.output().unwrap()
    }

    /// Waits until a checkpoint is complete under `dir` and the job has run for 1.5 s: the
    /// moment the failover tests kill a process.
    fn await_checkpoint_under_way(&self, dir: &std::path::Path) {
        let start = std::time::Instant::now();
        while latest_checkpoint(dir).is_none()
            || start.elapsed() < std::time::Duration::from_millis(1500)
        {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(30),
                "no checkpoint appeared in S3\n{}",
                self.procs.logs()
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Kills -9 the first TaskManager once a checkpoint is complete under `checkpoints` and
    /// the job is under way, starts a replacement (the job cannot run on the slots left) and
    /// waits for the job to finish. Checks that the kill came mid-run (fewer than `results`
    /// committed under `out`) and that the job restarted.
    fn lose_a_taskmanager_and_finish(
        &mut self,
        checkpoints: &std::path::Path,
        out: &std::path::Path,
        results: usize,
    ) {
        self.await_checkpoint_under_way(checkpoints);
        self.procs.kill("taskmanager-1");
        let partial = committed(out).len();
        self.add_taskmanager();
        self.wait_for("FINISHED", 60);
        let metrics = http_get(&self.url, "/metrics").expect("GET /metrics");
        let restarts = metric(&metrics, "weir_jobmanager_job_numRestarts").unwrap();
        assert!(restarts >= 1.0, "restarts {restarts}\n{metrics}");
        assert!(
            partial < results,
            "the TaskManager was killed mid-run ({partial} of {results} results)"
        );
    }

    /// Waits for the job to reach `state` (as `weir list` shows it).
    fn wait_for(&self, state: &str, secs: u64) {
        let start = std::time::Instant::now();
        loop {
            let list = stdout(&self.weir(&["list"]));
            if list.contains(&format!("({state})")) {
                return;
            }
            assert!(
                !list.contains("(FAILED)") && start.elapsed().as_secs() < secs,
                "the job did not reach {state}: {list}\n{}",
                self.procs.logs()
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

/// `user-metrics` at parallelism 4 without failures, in one process: the expected output.
fn user_metrics_reference(events: u64) -> Vec<String> {
    let reference = tempfile::tempdir().unwrap();
    let o = weir(&[
        "run",
        "user-metrics",
        "-p",
        "4",
        "--arg",
        &format!("events={events}"),
        "--no-progress",
        "--arg",
        &format!("output={}", reference.path().display()),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let expected = committed(reference.path());
    assert!(expected.len() > 100);
    expected
}

fn cluster_survives_losing_a_taskmanager(backend: &str) {
    let expected = user_metrics_reference(60000);
    let data = tempfile::tempdir().unwrap();
    let s3 = S3sFs::start(data.path(), &["weir"]);
    let out = tempfile::tempdir().unwrap();
    let set = [
        "parallelism.default=4".to_string(),
        format!("state.backend.type={backend}"),
    ];
    let job_args = [
        "events=60000".to_string(),
        "rate=15000".to_string(),
        format!("output={}", out.path().display()),
    ];
    let mut cluster = Cluster::start(&s3, 2, 2, &set, &job_args);

    let bucket_dir = s3.root().join("weir/checkpoints");
    cluster.lose_a_taskmanager_and_finish(&bucket_dir, out.path(), expected.len());
    if backend == "rocksdb" {
        let job_dir = bucket_dir.join(&cluster.job);
        let shared = std::fs::read_dir(job_dir.join("shared")).map_or(0, |d| d.count());
        assert!(
            shared > 0,
            "incremental checkpoints upload SST files to shared/"
        );
    }
    assert_eq!(
        committed(out.path()),
        expected,
        "exactly-once output after losing a TaskManager\n{}",
        cluster.procs.logs()
    );
}

#[test]
fn a_cluster_survives_losing_a_taskmanager_with_exactly_once_output() {
    cluster_survives_losing_a_taskmanager("hashmap");
}

#[test]
fn a_rocksdb_cluster_survives_losing_a_taskmanager_with_exactly_once_output() {
    cluster_survives_losing_a_taskmanager("rocksdb");
}

#[test]
fn a_jobmanager_restarted_with_its_recovery_dir_resumes_from_the_latest_checkpoint_exactly_once() {
    let expected = user_metrics_reference(60000);
    let data = tempfile::tempdir().unwrap();
    let s3 = S3sFs::start(data.path(), &["weir"]);
    let out = tempfile::tempdir().unwrap();
    let recovery = tempfile::tempdir().unwrap();
    let set = ["parallelism.default=4".to_string()];
    let job_args = [
        "events=60000".to_string(),
        "rate=15000".to_string(),
        format!("output={}", out.path().display()),
    ];
    let mut cluster = Cluster::start_recoverable(&s3, &set, &job_args, recovery.path());
    let first = cluster.job.clone();

    // Kill -9 the JobManager once its run has a checkpoint and is under way, then start the
    // same command again (what Kubernetes does with a crashed container).
    let checkpoints_dir = s3.root().join("weir/checkpoints");
    cluster.await_checkpoint_under_way(&checkpoints_dir);
    cluster.procs.kill("jobmanager");
    let partial = committed(out.path()).len();
    cluster.start_jobmanager();
    cluster.await_job_id();
    assert_ne!(cluster.job, first);
    cluster.wait_for("FINISHED", 60);

    let checkpoints = http_get(&cluster.url, &format!("/jobs/{}/checkpoints", cluster.job))
        .expect("GET /jobs/:id/checkpoints");
    assert!(
        checkpoints.contains(&format!("/{first}/chk-")),
        "the restarted JobManager restores from a checkpoint of run {first}: {checkpoints}"
    );
    assert!(
        partial < expected.len(),
        "the JobManager was killed mid-run ({partial} of {} results)",
        expected.len()
    );
    assert_eq!(
        committed(out.path()),
        expected,
        "exactly-once output across a JobManager restart\n{}",
        cluster.procs.logs()
    );
}

#[test]
fn a_savepoint_over_rest_restores_in_a_new_cluster_exactly_once() {
    let expected = user_metrics_reference(60000);
    let data = tempfile::tempdir().unwrap();
    let s3 = S3sFs::start(data.path(), &["weir"]);
    let out = tempfile::tempdir().unwrap();
    let savepoints = tempfile::tempdir().unwrap();
    let set = [
        "parallelism.default=4".to_string(),
        format!(
            "state.savepoints.dir=file://{}",
            savepoints.path().display()
        ),
    ];
    let job_args = [
        "events=60000".to_string(),
        "rate=10000".to_string(),
        format!("output={}", out.path().display()),
    ];
    let cluster = Cluster::start(&s3, 2, 2, &set, &job_args);
    cluster.wait_for("RUNNING", 30);
    std::thread::sleep(std::time::Duration::from_millis(800));

    // A savepoint while the job runs on.
    let o = cluster.weir(&["savepoint", &cluster.job]);
    assert!(
        o.status.success(),
        "{}\n{}",
        stderr(&o),
        cluster.procs.logs()
    );
    let first = stdout(&o)
        .trim()
        .rsplit("Path: ")
        .next()
        .unwrap()
        .to_string();
    let first_dir = first.trim_start_matches("file://");
    assert!(
        std::path::Path::new(first_dir).join("_metadata").exists(),
        "{first}"
    );
    // Stop with a savepoint: the job ends, the JobManager keeps answering.
    let o = cluster.weir(&["stop", &cluster.job]);
    assert!(
        o.status.success(),
        "{}\n{}",
        stderr(&o),
        cluster.procs.logs()
    );
    let stopped = stdout(&o)
        .trim()
        .rsplit("Path: ")
        .next()
        .unwrap()
        .to_string();
    assert_ne!(stopped, first);
    cluster.wait_for("FINISHED", 30);
    let partial = committed(out.path()).len();
    assert!(
        partial < expected.len(),
        "stopped mid-run ({partial} of {} results)",
        expected.len()
    );
    drop(cluster);

    // A new cluster restores from the stop's savepoint and finishes the input.
    let mut set = set.to_vec();
    set.push(format!("execution.savepoint.path={stopped}"));
    let resumed = Cluster::start(&s3, 1, 4, &set, &job_args);
    resumed.wait_for("FINISHED", 60);
    assert_eq!(
        committed(out.path()),
        expected,
        "exactly-once output across stop-with-savepoint and restore from {stopped}\n{}",
        resumed.procs.logs()
    );
}

/// Sum of a Prometheus metric's samples whose labels contain every `filter`.
fn metric_sum(text: &str, name: &str, filters: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter(|l| filters.iter().all(|f| l.contains(f)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Peak resident memory of a process (`VmHWM`), in MiB.
fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap();
    kb / 1024.0
}

#[test]
fn a_slow_sink_backpressures_sources_across_taskmanagers_with_bounded_memory() {
    let (cluster, _s3) = slow_sink_backpressure(&[], 8);
    let o = cluster.weir(&["cancel", &cluster.job]);
    assert!(o.status.success(), "{}", stderr(&o));
    cluster.wait_for("CANCELED", 30);
}

#[test]
fn a_taskmanager_memory_budget_sizes_its_buffers_and_is_reported() {
    // Too small for its slots: the TaskManager refuses to start, naming the numbers.
    fails_with(
        &[
            "taskmanager",
            "--set",
            "taskmanager.memory.process.size=64m",
            "--set",
            "taskmanager.numberOfTaskSlots=4",
        ],
        "taskmanager.memory.process.size (64.0 MiB) is too small for 4 slot(s): framework \
         32.0 MiB + network 6.4 MiB + managed 25.6 MiB + 64.0 MiB for tasks",
    );
    // 80 MiB with 10 % network in 1 MiB segments: 8 buffers for the 3 channels each
    // TaskManager holds (two from its local source, one from the remote one) — 2 per channel.
    let budget = [
        "taskmanager.memory.process.size=80m",
        "taskmanager.memory.managed.fraction=0.1",
        "taskmanager.memory.segment-size=1mb",
    ];
    let (cluster, _s3) = slow_sink_backpressure(&budget, 2);
    let tms: serde_json::Value =
        serde_json::from_str(&http_get(&cluster.url, "/taskmanagers").expect("GET /taskmanagers"))
            .unwrap();
    let tms = tms["taskmanagers"].as_array().unwrap();
    assert_eq!(tms.len(), 2, "{tms:?}");
    for tm in tms {
        let m = &tm["memoryConfiguration"];
        assert_eq!(m["totalProcessMemory"], 80 << 20, "{tm}");
        assert_eq!(m["networkMemory"], 8 << 20, "{tm}");
        assert_eq!(m["managedMemory"], 8 << 20, "{tm}");
        assert_eq!(m["frameworkOffHeap"], 32 << 20, "{tm}");
        assert_eq!(m["taskHeap"], 32 << 20, "{tm}");
        assert_eq!(tm["weir"]["networkBuffers"], 8, "{tm}");
        let rss = tm["weir"]["residentMemory"].as_u64().unwrap();
        assert!(rss > 1 << 20 && rss < 80 << 20, "within its budget: {rss}");
        assert_eq!(
            (tm["slotsNumber"].as_u64(), tm["freeSlots"].as_u64()),
            (Some(1), Some(0))
        );
    }
    let tm_ids: Vec<&str> = tms.iter().map(|t| t["id"].as_str().unwrap()).collect();
    subtasks_name_their_taskmanagers_and_acknowledge_checkpoints(&cluster, &tm_ids);
    let metrics = http_get(&cluster.url, "/metrics").expect("GET /metrics");
    let network = metric_sum(
        &metrics,
        "weir_taskmanager_Status_Memory_Budget",
        &["component=\"network\""],
    );
    assert_eq!(network, 2.0 * (8 << 20) as f64, "{metrics}");
    let logs = cluster.procs.logs();
    assert!(
        logs.contains("memory budget") && logs.contains("batches_per_channel=2"),
        "{logs}"
    );
}

/// Checks, on a cluster of one-slot TaskManagers `tm_ids` running a job at parallelism 2,
/// that each vertex's two subtasks name the TaskManager and host they run on (a different
/// one each), and that every subtask's acknowledgement of a checkpoint reached the
/// JobManager with its figures.
fn subtasks_name_their_taskmanagers_and_acknowledge_checkpoints(
    cluster: &Cluster,
    tm_ids: &[&str],
) {
    let get = |path: &str| -> serde_json::Value {
        let body = http_get(&cluster.url, path).unwrap_or_else(|| panic!("GET {path}"));
        serde_json::from_str(&body).unwrap()
    };
    let job = get(&format!("/jobs/{}", cluster.job));
    let vertices: Vec<String> = job["vertices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap().to_string())
        .collect();
    assert!(vertices.len() >= 2, "{job}");
    for v in &vertices {
        let details = get(&format!("/jobs/{}/vertices/{v}", cluster.job));
        let placed: Vec<&str> = details["subtasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                assert_eq!(s["host"], "127.0.0.1", "{details}");
                s["taskmanager-id"].as_str().unwrap()
            })
            .collect();
        assert_eq!(placed.len(), 2, "{details}");
        assert!(
            placed.iter().all(|id| tm_ids.contains(id)),
            "{placed:?} of {tm_ids:?}"
        );
        assert_ne!(
            placed[0], placed[1],
            "one subtask per one-slot TaskManager: {details}"
        );
    }
    let mut latest = serde_json::Value::Null;
    let start = std::time::Instant::now();
    while !latest.is_object() {
        assert!(start.elapsed().as_secs() < 30, "no checkpoint completes");
        std::thread::sleep(std::time::Duration::from_millis(100));
        latest = get(&format!("/jobs/{}/checkpoints", cluster.job))["latest"]["completed"].clone();
    }
    let ckpt = &latest["id"];
    assert_eq!(
        latest["num_acknowledged_subtasks"], latest["num_subtasks"],
        "{latest}"
    );
    for v in &vertices {
        assert_eq!(
            latest["tasks"][v.as_str()]["num_acknowledged_subtasks"],
            2,
            "{latest}"
        );
        let breakdown = get(&format!(
            "/jobs/{}/checkpoints/details/{ckpt}/subtasks/{v}",
            cluster.job
        ));
        for s in breakdown["subtasks"].as_array().unwrap() {
            assert_eq!(s["status"], "completed", "{breakdown}");
            assert!(
                s["ack_timestamp"].as_i64().unwrap()
                    >= latest["trigger_timestamp"].as_i64().unwrap(),
                "{breakdown}"
            );
        }
    }
}

/// Runs `slow-sink` on two one-slot TaskManagers with `set` added, whose channels hold
/// `capacity` batches, and checks that the sink backpressures the sources with a bounded
/// amount of data in flight. The job is left running (checkpointing to the S3 server
/// returned with it).
fn slow_sink_backpressure(set: &[&str], capacity: usize) -> (Cluster, (S3sFs, tempfile::TempDir)) {
    let data = tempfile::tempdir().unwrap();
    let s3 = S3sFs::start(data.path(), &["weir"]);
    let mut set: Vec<String> = set.iter().map(|s| s.to_string()).collect();
    set.push("parallelism.default=2".to_string());
    let job_args = ["sink-rate=20000".to_string()];
    // Two TaskManagers of one slot: half of the keyed exchange crosses processes.
    let cluster = Cluster::start_job(&s3, 2, 1, &set, "slow-sink", &job_args);
    cluster.wait_for("RUNNING", 30);
    std::thread::sleep(std::time::Duration::from_secs(2));
    let first = http_get(&cluster.url, "/metrics").expect("GET /metrics");
    std::thread::sleep(std::time::Duration::from_secs(2));
    let second = http_get(&cluster.url, "/metrics").expect("GET /metrics");

    let source_bp = metric_sum(
        &second,
        "weir_taskmanager_job_task_backPressuredTimeMsPerSecond",
        &["task_name=\"Clicks\""],
    ) / 2.0;
    assert!(
        source_bp > 600.0,
        "the sources spend most of each second blocked: {source_bp} ms/s\n{second}"
    );
    let sink_bp = metric_sum(
        &second,
        "weir_taskmanager_job_task_backPressuredTimeMsPerSecond",
        &["SlowSink\""],
    );
    assert!(
        sink_bp < 100.0,
        "the sink itself is not backpressured: {sink_bp}"
    );

    let produced = metric_sum(
        &second,
        "weir_taskmanager_job_task_operator_numRecordsOut",
        &["operator_name=\"Clicks\""],
    );
    let consumed = metric_sum(
        &second,
        "weir_taskmanager_job_task_operator_numRecordsIn",
        &["operator_name=\"SlowSink\""],
    );
    let consumed_before = metric_sum(
        &first,
        "weir_taskmanager_job_task_operator_numRecordsIn",
        &["operator_name=\"SlowSink\""],
    );
    // The sinks hold their pace (2 × 20000/s) ...
    let sink_rate = (consumed - consumed_before) / 2.0;
    assert!(
        (30_000.0..50_000.0).contains(&sink_rate),
        "sink rate {sink_rate}/s"
    );
    // ... and the sources are held to it: what is in flight is bounded by the channels —
    // 2 in-process channels of `capacity` batches of 1024 records, and for the 2 crossing
    // processes a channel on each side plus as many in the connection (credits) — plus the
    // metrics' reporting delay.
    let in_flight = produced - consumed;
    let c = capacity as f64;
    let bound = (2.0 * c + 2.0 * 3.0 * c) * 1024.0 + 0.5 * sink_rate;
    eprintln!(
        "sources blocked {source_bp:.0} ms/s, sink {sink_bp:.0} ms/s; sink rate {sink_rate:.0}/s; \
         {in_flight} records in flight (bound {bound})"
    );
    assert!(
        in_flight < bound,
        "produced {produced}, consumed {consumed}: {in_flight} records in flight (bound {bound})"
    );
    for (name, child, _) in &cluster.procs.children {
        if name.starts_with("taskmanager") {
            let peak = peak_rss_mib(child.id());
            assert!(peak < 200.0, "{name} peaked at {peak:.0} MiB");
        }
    }
    (cluster, (s3, data))
}

#[test]
fn weir_run_lives_within_a_memory_budget_or_names_the_part_that_is_too_small() {
    // 16 channels of the keyed exchange at parallelism 4 need 32 buffers; 10 % of 200 MiB
    // in 1 MiB segments is 20.
    fails_with(
        &[
            "run",
            "user-metrics",
            "-p",
            "4",
            "--set",
            "taskmanager.memory.process.size=200m",
            "--set",
            "taskmanager.memory.segment-size=1mb",
            "--no-progress",
        ],
        "network memory 20.0 MiB gives 20 buffers of 1024 KiB for 16 channels; every \
         channel needs at least 2 (32 in all)",
    );
    // A budget that fits (RocksDB sharing one block cache): the same results as without.
    let expected = user_metrics_reference(60000);
    let out = tempfile::tempdir().unwrap();
    let o = weir(&[
        "run",
        "user-metrics",
        "-p",
        "4",
        "--set",
        "taskmanager.memory.process.size=400m",
        "--set",
        "state.backend.type=rocksdb",
        "--arg",
        "events=60000",
        "--arg",
        &format!("output={}", out.path().display()),
        "--no-progress",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(committed(out.path()), expected);
}

#[test]
fn the_user_metrics_sql_example_prints_windows_that_account_for_every_event() {
    let o = weir(&["run", &example("user_metrics.sql"), "--no-progress"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    // +I[window_start, window_end, user_id, events, amount]
    let rows: Vec<Vec<&str>> = out
        .lines()
        .filter_map(|l| l.strip_prefix("+I[")?.strip_suffix(']'))
        .map(|l| l.split(", ").collect())
        .collect();
    let events: u64 = rows.iter().map(|r| r[3].parse::<u64>().unwrap()).sum();
    assert_eq!(
        events, 100_000,
        "every generated event lands in exactly one window"
    );
    // 100 000 events x 20 ms = 2 000 s: minutes 00:00 to 00:33, 8 users each.
    assert_eq!(rows.len(), 34 * 8, "{out}");
    assert!(
        rows.iter()
            .any(|r| r[0] == "2026-01-01T00:33" && r[1] == "2026-01-01T00:34" && r[2] == "user_7"),
        "{out}"
    );
    assert!(stderr(&o).contains("FINISHED"), "{}", stderr(&o));

    let o = weir(&["run", &example("user_metrics.sql"), "--explain"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("GroupWindowAggregate: window=TUMBLE(size=60000 ms) keys=[user_id]"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn a_sql_script_with_a_mistake_fails_naming_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.sql");
    std::fs::write(
        &path,
        "CREATE TABLE t (a INT) WITH ('connector' = 'datagen');\nSELECT b FROM t;\n",
    )
    .unwrap();
    let o = weir(&["run", path.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains(&format!("{}:2:8: column 'b' not found", path.display())),
        "{}",
        stderr(&o)
    );
}

/// A people table read from `input` and written to `out` by a SQL script.
fn people_script(dir: &std::path::Path, input: &str) -> (String, std::path::PathBuf) {
    let (data, out, script) = (
        dir.join("people.jsonl"),
        dir.join("adults"),
        dir.join("adults.sql"),
    );
    std::fs::write(&data, input).unwrap();
    std::fs::write(
        &script,
        format!(
            "CREATE TABLE people (name STRING, age INT)
               WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
             CREATE TABLE adults (name STRING, age BIGINT)
               WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
             INSERT INTO adults SELECT UPPER(name), age FROM people WHERE age >= 18;",
            data.display(),
            out.display()
        ),
    )
    .unwrap();
    (script.display().to_string(), out)
}

#[test]
fn a_sql_script_writes_its_rows_to_a_filesystem_sink() {
    let dir = tempfile::tempdir().unwrap();
    let (script, out) = people_script(
        dir.path(),
        "{\"name\": \"ann\", \"age\": 34}\n{\"name\": \"bob\", \"age\": 17}\n{\"name\": \"cy\", \"age\": 18}\n",
    );
    let o = weir(&["run", &script, "--no-progress"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut rows = committed(&out);
    rows.sort();
    assert_eq!(
        rows,
        [r#"{"age":18,"name":"CY"}"#, r#"{"age":34,"name":"ANN"}"#]
    );
}

#[test]
fn a_corrupt_record_fails_a_sql_job_naming_it_or_is_skipped_and_counted_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    let (script, out) = people_script(
        dir.path(),
        "{\"name\": \"ann\", \"age\": 34}\n{\"name\": \"bob\", \"age\n{\"name\": \"cy\", \"age\": 18}\n",
    );
    let data = dir.path().join("people.jsonl");

    // Default policy: the job fails, naming the file and line; nothing is committed.
    let o = weir(&["run", &script, "--no-progress"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains(&format!("{}:2:", data.display())),
        "{}",
        stderr(&o)
    );
    assert!(committed(&out).is_empty());

    // skip: every other record is written and the skipped one is counted.
    let summary = dir.path().join("summary.json");
    let run_skipping = || {
        let o = weir(&[
            "run",
            &script,
            "--no-progress",
            "--set",
            "pipeline.decode-error-policy=skip",
            "--summary-json",
            summary.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
    };
    run_skipping();
    let mut rows = committed(&out);
    rows.sort();
    assert_eq!(
        rows,
        [r#"{"age":18,"name":"CY"}"#, r#"{"age":34,"name":"ANN"}"#]
    );
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    assert_eq!(s["skipped"], 1, "{s}");

    // A well-formed record whose field does not fit its column fails naming the file, the
    // line, the table and the field...
    std::fs::write(
        &data,
        "{\"name\": \"ann\", \"age\": 34}\n{\"name\": \"bob\", \"age\": \"old\"}\n",
    )
    .unwrap();
    let o = weir(&["run", &script, "--no-progress"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains(&format!(
            "{}:2: table 'people': field 'age' = \"old\" is not a valid INT",
            data.display()
        )),
        "{}",
        stderr(&o)
    );
    // ...and under `skip` it is skipped and counted like an undecodable one.
    std::fs::remove_dir_all(&out).unwrap();
    run_skipping();
    assert_eq!(committed(&out), [r#"{"age":34,"name":"ANN"}"#]);
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    assert_eq!(s["skipped"], 1, "{s}");
}

/// A windowed SQL job over 20 000 generated rows (`rate` rows per second) writing to `out`.
fn windowed_sql_script(dir: &std::path::Path, out: &std::path::Path, rate: u32) -> String {
    let path = dir.join(format!("windows-{rate}.sql"));
    std::fs::write(
        &path,
        format!(
            "CREATE TABLE gen (seq BIGINT, k AS seq % 7, ts AS TO_TIMESTAMP_LTZ(seq * 10, 3),
               WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
             WITH ('connector' = 'datagen', 'fields.seq.kind' = 'sequence',
                   'fields.seq.start' = '0', 'fields.seq.end' = '19999',
                   'rows-per-second' = '{rate}');
             CREATE TABLE out (k BIGINT, ws TIMESTAMP(3), n BIGINT, total BIGINT)
               WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
             INSERT INTO out
             SELECT k, TUMBLE_START(ts, INTERVAL '1' SECOND), COUNT(*), SUM(seq)
             FROM gen GROUP BY TUMBLE(ts, INTERVAL '1' SECOND), k;",
            out.display()
        ),
    )
    .unwrap();
    path.display().to_string()
}

#[test]
fn a_sql_job_on_a_cluster_that_loses_a_taskmanager_writes_what_weir_run_writes() {
    let dir = tempfile::tempdir().unwrap();
    let reference = dir.path().join("reference");
    let script = windowed_sql_script(dir.path(), &reference, 1_000_000_000);
    let o = weir(&["run", &script, "-p", "4", "--no-progress"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let expected = committed(&reference);
    // 20 000 rows 10 ms apart: 200 one-second windows, 7 keys each.
    assert_eq!(expected.len(), 200 * 7);

    let data = tempfile::tempdir().unwrap();
    let s3 = S3sFs::start(data.path(), &["weir"]);
    let out = dir.path().join("cluster");
    let script = windowed_sql_script(dir.path(), &out, 5000);
    let set = ["parallelism.default=4".to_string()];
    let mut cluster = Cluster::start_job(&s3, 2, 2, &set, &script, &[]);
    // The JobManager has planned the script; TaskManagers (also the replacement) never read it.
    std::fs::remove_file(&script).unwrap();

    let bucket_dir = s3.root().join("weir/checkpoints");
    cluster.lose_a_taskmanager_and_finish(&bucket_dir, &out, expected.len());
    assert_eq!(
        committed(&out),
        expected,
        "exactly-once output after losing a TaskManager\n{}",
        cluster.procs.logs()
    );
}

#[test]
fn an_updating_sql_result_prints_flinks_changelog_of_inserts_and_updates() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("prices.jsonl");
    std::fs::write(
        &data,
        [("a", 10), ("b", 5), ("a", 7), ("a", 0), ("a", 12), ("b", 5)]
            .map(|(name, cents)| format!("{{\"name\": \"{name}\", \"cents\": {cents}}}\n"))
            .concat(),
    )
    .unwrap();
    let table = format!(
        "CREATE TABLE prices (name STRING, cents BIGINT)
           WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');",
        data.display()
    );
    let script = dir.path().join("updating.sql");
    std::fs::write(
        &script,
        format!(
            "{table}
             CREATE TABLE top (name STRING, top BIGINT, prices BIGINT) WITH ('connector' = 'print');
             INSERT INTO top
             SELECT name, MAX(cents), COUNT(DISTINCT cents) FROM prices WHERE cents > 0 GROUP BY name;"
        ),
    )
    .unwrap();
    let o = weir(&["run", script.to_str().unwrap(), "--no-progress"]);
    assert!(o.status.success(), "{}", stderr(&o));
    // a 7 keeps the maximum but adds a price; a 0 is filtered out; the second b 5 changes
    // nothing, so nothing is printed for it.
    assert_eq!(
        stdout(&o).lines().collect::<Vec<_>>(),
        [
            "+I[a, 10, 1]",
            "+I[b, 5, 1]",
            "-U[a, 10, 1]",
            "+U[a, 10, 2]",
            "-U[a, 10, 2]",
            "+U[a, 12, 3]",
        ]
    );

    let distinct = dir.path().join("distinct.sql");
    std::fs::write(
        &distinct,
        format!("{table} SELECT DISTINCT name FROM prices;"),
    )
    .unwrap();
    let o = weir(&["run", distinct.to_str().unwrap(), "--no-progress"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).lines().collect::<Vec<_>>(), ["+I[a]", "+I[b]"]);

    // A filter over a changelog applies to each change on its own, keeping its kind.
    let filtered = dir.path().join("filtered.sql");
    std::fs::write(
        &filtered,
        format!(
            "{table} SELECT name, n FROM (SELECT name, COUNT(*) AS n FROM prices GROUP BY name) WHERE n > 1;"
        ),
    )
    .unwrap();
    let o = weir(&["run", filtered.to_str().unwrap(), "--no-progress"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o).lines().collect::<Vec<_>>(),
        [
            "+U[a, 2]", "-U[a, 2]", "+U[a, 3]", "-U[a, 3]", "+U[a, 4]", "+U[b, 2]",
        ]
    );
}

#[test]
fn top_n_and_deduplication_print_flinks_changelog_as_rows_enter_and_leave_the_top() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("bids.jsonl");
    std::fs::write(
        &data,
        [
            (1, 10, 1000),
            (1, 30, 2000),
            (2, 7, 2000),
            (1, 20, 2000),
            (1, 30, 4000),
            (1, 5, 5000),
            (1, 40, 1500),
        ]
        .map(|(a, p, t)| format!("{{\"auction\": {a}, \"price\": {p}, \"ts\": {t}}}\n"))
        .concat(),
    )
    .unwrap();
    let table = format!(
        "CREATE TABLE bids (auction BIGINT, price BIGINT, ts BIGINT, rt AS TO_TIMESTAMP_LTZ(ts, 3),
           WATERMARK FOR rt AS rt - INTERVAL '10' SECOND)
           WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');",
        data.display()
    );
    let run = |name: &str, query: &str| -> Vec<String> {
        let script = dir.path().join(name);
        std::fs::write(&script, format!("{table} {query}")).unwrap();
        let o = weir(&["run", script.to_str().unwrap(), "--no-progress"]);
        assert!(o.status.success(), "{}", stderr(&o));
        stdout(&o).lines().map(String::from).collect()
    };
    // The two highest prices per auction, with their rank: each row entering the top two
    // retracts the rows it moves down and re-emits them at their new rank; the 30 of 4 s
    // ranks after the 30 before it (equal rows keep their arrival order), pushing the 20
    // out; the 5 never enters; the 40 moves both 30s down, the second one out.
    assert_eq!(
        run(
            "top2.sql",
            "SELECT auction, price, rn FROM (
               SELECT *, ROW_NUMBER() OVER (PARTITION BY auction ORDER BY price DESC) AS rn FROM bids)
             WHERE rn <= 2;"
        ),
        [
            "+I[1, 10, 1]",
            "-U[1, 10, 1]",
            "+U[1, 30, 1]",
            "+I[1, 10, 2]",
            "+I[2, 7, 1]",
            "-U[1, 10, 2]",
            "+U[1, 20, 2]",
            "-U[1, 20, 2]",
            "+U[1, 30, 2]",
            "-U[1, 30, 1]",
            "+U[1, 40, 1]",
            "-U[1, 30, 2]",
            "+U[1, 30, 2]",
        ]
    );
    // The last row per auction by event time (Flink's deduplication keeping the last row):
    // the 20 of 2 s replaces the 30 of the same time, the 40 of 1.5 s is older and ignored.
    assert_eq!(
        run(
            "last.sql",
            "SELECT auction, price FROM (
               SELECT *, ROW_NUMBER() OVER (PARTITION BY auction ORDER BY rt DESC) AS rn FROM bids)
             WHERE rn = 1;"
        ),
        [
            "+I[1, 10]",
            "-U[1, 10]",
            "+U[1, 30]",
            "+I[2, 7]",
            "-U[1, 30]",
            "+U[1, 20]",
            "-U[1, 20]",
            "+U[1, 30]",
            "-U[1, 30]",
            "+U[1, 5]",
        ]
    );
}

#[test]
fn aggregates_over_an_updating_result_take_its_retractions_and_delete_emptied_groups() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("prices.jsonl");
    std::fs::write(
        &data,
        [("a", 10), ("b", 5), ("a", 12), ("b", 10)]
            .map(|(name, cents)| format!("{{\"name\": \"{name}\", \"cents\": {cents}}}\n"))
            .concat(),
    )
    .unwrap();
    let run = |name: &str, query: &str| -> Vec<String> {
        let script = dir.path().join(name);
        std::fs::write(
            &script,
            format!(
                "CREATE TABLE prices (name STRING, cents BIGINT)
                   WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
                 CREATE VIEW tops AS SELECT name, MAX(cents) AS hi FROM prices GROUP BY name;
                 {query}",
                data.display()
            ),
        )
        .unwrap();
        let o = weir(&["run", script.to_str().unwrap(), "--no-progress"]);
        assert!(o.status.success(), "{}", stderr(&o));
        stdout(&o).lines().map(String::from).collect()
    };
    // tops: +I[a, 10], +I[b, 5], -U[a, 10], +U[a, 12], -U[b, 5], +U[b, 10]. Counting names
    // per maximum: a retraction empties its group, which is deleted; 10's group starts afresh.
    assert_eq!(
        run("count.sql", "SELECT hi, COUNT(*) FROM tops GROUP BY hi;"),
        [
            "+I[10, 1]",
            "+I[5, 1]",
            "-D[10, 1]",
            "+I[12, 1]",
            "-D[5, 1]",
            "+I[10, 1]"
        ]
    );
    // Nexmark q4's shape: the average of the per-name maxima, as they change (integer AVG).
    assert_eq!(
        run("avg.sql", "SELECT AVG(hi) FROM tops;"),
        [
            "+I[10]", "-U[10]", "+U[7]", "-U[7]", "+U[5]", "-U[5]", "+U[8]", "-U[8]", "+U[12]",
            "-U[12]", "+U[11]",
        ]
    );
}

#[test]
fn table_exec_state_ttl_starts_an_idle_group_afresh() {
    // Key 0's rows arrive at 0 and 50 ms, then at 3.5 s; key 1's at 100 ms and 3.55 s. With a
    // TTL of 1.5 s both groups expired in between: their late rows are inserts again.
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("ttl.sql");
    std::fs::write(
        &script,
        "CREATE TABLE gen (seq BIGINT) WITH ('connector' = 'datagen', 'fields.seq.kind' = 'sequence',
           'fields.seq.start' = '0', 'fields.seq.end' = '71', 'rows-per-second' = '20');
         SELECT k, COUNT(*) FROM (SELECT CASE WHEN seq IN (0, 1, 70) THEN 0 ELSE 1 END AS k, seq FROM gen)
         WHERE seq IN (0, 1, 2, 70, 71) GROUP BY k;",
    )
    .unwrap();
    let o = weir(&[
        "run",
        script.to_str().unwrap(),
        "--no-progress",
        "--set",
        "table.exec.state.ttl=1500ms",
        "--set",
        "pipeline.batch-size=1",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o).lines().collect::<Vec<_>>(),
        [
            "+I[0, 1]", "-U[0, 1]", "+U[0, 2]", "+I[1, 1]", "+I[0, 1]", "+I[1, 1]"
        ]
    );
}

#[test]
fn a_top_n_restored_from_a_savepoint_continues_its_changelog() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("top.sql");
    std::fs::write(
        &script,
        "CREATE TABLE gen (seq BIGINT) WITH ('connector' = 'datagen', 'fields.seq.kind' = 'sequence',
           'fields.seq.start' = '0', 'fields.seq.end' = '19999', 'rows-per-second' = '5000');
         CREATE TABLE out (k BIGINT, seq BIGINT) WITH ('connector' = 'print');
         INSERT INTO out SELECT k, seq FROM (
           SELECT seq % 10 AS k, seq, ROW_NUMBER() OVER (PARTITION BY seq % 10 ORDER BY seq DESC) AS rn
           FROM gen)
         WHERE rn <= 1;",
    )
    .unwrap();
    let script = script.to_str().unwrap().to_string();
    let sp = tempfile::tempdir().unwrap();
    let (location, _) = savepoint_after(&script, 800, sp.path());

    let o = weir(&["run", &script, "-s", &location, "--no-progress"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    // Every key kept its highest seq in the savepoint: the restored job only replaces rows
    // (no insert), each retracting the row it replaces, and ends with seq 19990..19999.
    let mut last = std::collections::BTreeMap::new();
    for pair in out.lines().collect::<Vec<_>>().chunks(2) {
        let (before, after) = (pair[0], pair.get(1).copied().unwrap_or_default());
        let (b, a) = (
            before
                .strip_prefix("-U[")
                .unwrap_or_else(|| panic!("{before}\n{out}")),
            after
                .strip_prefix("+U[")
                .unwrap_or_else(|| panic!("{after}\n{out}")),
        );
        let (bk, bs) = b.trim_end_matches(']').split_once(", ").unwrap();
        let (ak, as_) = a.trim_end_matches(']').split_once(", ").unwrap();
        assert_eq!(bk, ak, "{out}");
        let (bs, as_): (i64, i64) = (bs.parse().unwrap(), as_.parse().unwrap());
        assert_eq!(
            as_,
            bs + 10,
            "a key's next seq replaces its last one: {out}"
        );
        if let Some(prev) = last.insert(ak.to_string(), as_) {
            assert_eq!(prev, bs, "{out}");
        }
    }
    let expected: std::collections::BTreeMap<String, i64> =
        (0..10).map(|k| (k.to_string(), 19990 + k)).collect();
    assert_eq!(last, expected);
    assert!(out.lines().count() < 2 * 20000, "resumed mid-stream: {out}");
}

/// Runs `script` with `weir run` for `millis`, then stops it with a savepoint into `dir`:
/// the savepoint's location and the job id.
fn savepoint_after(script: &str, millis: u64, dir: &std::path::Path) -> (String, String) {
    let (mut child, url, job) = run_with_rest(&["run".to_string(), script.to_string()]);
    std::thread::sleep(std::time::Duration::from_millis(millis));
    let target = format!("file://{}", dir.display());
    // `weir stop` ends the job with a savepoint and still learns its location from the
    // `weir run` process, which keeps its REST API up until the location was read.
    let o = weir(&["stop", &job, "-p", &target, "--address", &url]);
    assert!(o.status.success(), "{}", stderr(&o));
    let location = stdout(&o)
        .lines()
        .find_map(|l| l.strip_prefix("Savepoint completed. Path: "))
        .expect("the location is printed")
        .to_string();
    assert!(child.wait().unwrap().success());
    (location, job)
}

#[test]
fn a_global_sql_aggregate_restored_from_a_savepoint_continues_its_changelog() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("count.sql");
    std::fs::write(
        &script,
        "CREATE TABLE gen (seq BIGINT) WITH ('connector' = 'datagen', 'fields.seq.kind' = 'sequence',
           'fields.seq.start' = '0', 'fields.seq.end' = '19999', 'rows-per-second' = '5000');
         CREATE TABLE out (n BIGINT, total BIGINT) WITH ('connector' = 'print');
         INSERT INTO out SELECT COUNT(*), SUM(seq) FROM gen;",
    )
    .unwrap();
    let script = script.to_str().unwrap().to_string();
    let sp = tempfile::tempdir().unwrap();
    let (location, _) = savepoint_after(&script, 800, sp.path());

    let o = weir(&["run", &script, "-s", &location, "--no-progress"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    // The count carries on from the savepoint: the first change retracts the restored
    // result instead of inserting a first one.
    assert!(lines[0].starts_with("-U["), "{out}");
    assert_eq!(lines.last(), Some(&"+U[20000, 199990000]"));
    // Rows arrive in sequence order, so after n rows the sum is 0 + 1 + … + (n - 1).
    for l in &lines {
        let body = l[3..l.len() - 1].to_string();
        let (n, total) = body.split_once(", ").unwrap();
        let (n, total): (i64, i64) = (n.parse().unwrap(), total.parse().unwrap());
        assert_eq!(total, n * (n - 1) / 2, "{l}");
    }
    assert!(lines.len() < 2 * 20000 - 1, "resumed mid-stream: {out}");
}

/// `weir check --json` of `job` against `state`: its exit code and its JSON outcome.
fn check_json(state: &str, job: &str, more: &[&str]) -> (i32, serde_json::Value) {
    let o = weir(&[&["check", "--json", "--state", state, job], more].concat());
    let json = serde_json::from_str(stdout(&o).trim())
        .unwrap_or_else(|e| panic!("weir check --json printed no JSON ({e}): {o:?}"));
    (o.status.code().expect("weir check exits"), json)
}

#[test]
fn weir_check_tells_which_changed_queries_can_restore_a_savepoint_of_the_running_job() {
    let dir = tempfile::tempdir().unwrap();
    let source = "CREATE TABLE gen (seq BIGINT) WITH ('connector' = 'datagen', 'fields.seq.kind' = 'sequence',
           'fields.seq.start' = '0', 'fields.seq.end' = '99999', 'rows-per-second' = '5000');";
    let script = |name: &str, out: &str, query: &str| {
        let path = dir.path().join(name);
        std::fs::write(
            &path,
            format!("{source} CREATE TABLE out ({out}) WITH ('connector' = 'blackhole'); INSERT INTO out {query};"),
        )
        .unwrap();
        path.to_str().unwrap().to_string()
    };
    let v1 = script(
        "v1.sql",
        "k BIGINT, n BIGINT, total BIGINT",
        "SELECT seq % 10, COUNT(*), SUM(seq) FROM gen GROUP BY seq % 10",
    );
    let sp = tempfile::tempdir().unwrap();
    let (location, job) = savepoint_after(&v1, 800, sp.path());

    // The same query: compatible, and the report lists the aggregate's state.
    let o = weir(&["check", "--state", &location, &v1]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let report = stdout(&o);
    assert!(
        report.contains(&format!("compatible: {v1} can restore from {location}")),
        "{report}"
    );
    let (code, json) = check_json(&location, &v1, &[]);
    assert_eq!(
        (code, &json["compatible"]),
        (0, &serde_json::json!(true)),
        "{json}"
    );
    assert_eq!(json["jobId"], serde_json::json!(job), "{json}");
    let agg = json["operators"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["states"].as_array().is_some_and(|s| !s.is_empty()))
        .unwrap_or_else(|| panic!("the aggregate's state is in the savepoint: {json}"))
        .clone();
    let agg_uid = agg["uid"].as_str().unwrap().to_string();
    assert!(agg_uid.contains("aggregate"), "{agg}");
    assert_eq!(agg["jobParallelism"], agg["parallelism"], "{agg}");

    // Another aggregate (MAX added): the accumulators do not fit; refused, naming the operator.
    let v2 = script(
        "v2.sql",
        "k BIGINT, n BIGINT, total BIGINT, top BIGINT",
        "SELECT seq % 10, COUNT(*), SUM(seq), MAX(seq) FROM gen GROUP BY seq % 10",
    );
    let o = weir(&["check", "--state", &location, &v2]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    let report = stdout(&o);
    assert!(
        report.contains(&format!("INCOMPATIBLE: {v2} cannot restore")),
        "{report}"
    );
    assert!(
        report.contains(&format!("(uid {agg_uid}) changed its state schema"))
            && report.contains("MAX BIGINT"),
        "{report}"
    );
    let (code, json) = check_json(&location, &v2, &[]);
    assert_eq!(code, 2, "{json}");
    assert_eq!(json["findings"][0]["kind"], "stateSchemaChanged", "{json}");
    assert_eq!(
        json["findings"][0]["uid"],
        serde_json::json!(agg_uid),
        "{json}"
    );
    // What the check predicted is what the restore does.
    let o = weir(&["run", &v2, "-s", &location, "--no-progress"]);
    assert!(!o.status.success(), "v2 restored the v1 savepoint");
    assert!(stderr(&o).contains(&agg_uid), "{}", stderr(&o));

    // No aggregate any more: its state has no operator; refused unless it may be dropped.
    let v3 = script(
        "v3.sql",
        "k BIGINT, n BIGINT, total BIGINT",
        "SELECT seq, seq * 2, seq * 3 FROM gen",
    );
    let (code, json) = check_json(&location, &v3, &[]);
    assert_eq!(code, 2, "{json}");
    let removed = json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == "operatorRemoved" && f["uid"] == serde_json::json!(agg_uid))
        .unwrap_or_else(|| panic!("the aggregate is reported removed: {json}"));
    assert_eq!(removed["dropped"], false, "{json}");
    let o = weir(&[
        "check",
        "--state",
        &location,
        &v3,
        "--allow-non-restored-state",
    ]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert!(stdout(&o).contains("dropped: operator"), "{}", stdout(&o));
    // A registered DataStream job planned with its arguments, positional as the operator
    // passes them: none of its operators has the query's state.
    let (code, json) = check_json(&location, "user-metrics", &["events=10"]);
    assert_eq!(code, 2, "{json}");

    // Errors are exit code 1 and say what is wrong: a corrupt _metadata, a query that does
    // not plan.
    let corrupt = tempfile::tempdir().unwrap();
    std::fs::write(corrupt.path().join("_metadata"), "{\"format\": \"weir-chec").unwrap();
    let corrupt = format!("file://{}", corrupt.path().display());
    let o = weir(&["check", "--state", &corrupt, &v1]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(
        stderr(&o).contains("_metadata is not a valid checkpoint metadata file"),
        "{}",
        stderr(&o)
    );
    let (code, json) = check_json(&corrupt, &v1, &[]);
    assert_eq!(code, 1);
    assert!(
        json["error"].as_str().unwrap().contains("_metadata"),
        "{json}"
    );
    let bad = script("bad.sql", "k BIGINT", "SELECT nope FROM gen");
    let o = weir(&["check", "--state", &location, &bad]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(stderr(&o).contains("nope"), "{}", stderr(&o));
}

#[test]
fn a_sql_script_calls_the_rust_udfs_built_into_weir() {
    let dir = tempfile::tempdir().unwrap();
    let (data, out, script) = (
        dir.path().join("users.jsonl"),
        dir.path().join("enriched"),
        dir.path().join("enrich.sql"),
    );
    std::fs::write(
        &data,
        "{\"user_id\": \"user_0\"}\n{\"user_id\": \"user_1\"}\n{\"user_id\": \"user_2\"}\n",
    )
    .unwrap();
    std::fs::write(
        &script,
        format!(
            "CREATE TABLE users (user_id STRING)
               WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
             CREATE TEMPORARY FUNCTION tier_of AS 'enrich_user' LANGUAGE RUST;
             CREATE TABLE enriched WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json')
             AS SELECT enrich_user(user_id) AS who, tier_of(UPPER(user_id)) AS shout FROM users;",
            data.display(),
            out.display()
        ),
    )
    .unwrap();
    let o = weir(&["run", script.to_str().unwrap(), "--no-progress"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut rows = committed(&out);
    rows.sort();
    // "user_" sums to 542 and "USER_" to 414; each digit adds 48 + n; tiers by sum % 3:
    // 0 bronze, 1 silver, 2 gold.
    assert_eq!(
        rows,
        [
            r#"{"shout":"USER_0 (bronze)","who":"user_0 (gold)"}"#,
            r#"{"shout":"USER_1 (silver)","who":"user_1 (bronze)"}"#,
            r#"{"shout":"USER_2 (gold)","who":"user_2 (silver)"}"#,
        ]
    );

    // A call that does not fit the signature fails at plan time, naming file, line and column.
    std::fs::write(
        &script,
        "CREATE TABLE n (x BIGINT) WITH ('connector' = 'datagen');\nSELECT enrich_user(x) FROM n;",
    )
    .unwrap();
    let o = weir(&["run", script.to_str().unwrap(), "--no-progress"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains(&format!(
            "{}:2:8: enrich_user(BIGINT) does not match the function's signature enrich_user(STRING) -> STRING",
            script.display()
        )),
        "{}",
        stderr(&o)
    );
}

/// `yyyy-MM-dd HH:mm:ss.SSS` in UTC, as Flink shows a `TIMESTAMP(3)` (computed here rather
/// than with weir's formatter).
/// A TIMESTAMP as `print` writes it (Java's `LocalDateTime.toString`, as Flink's print
/// connector): `2026-01-01T00:01`, `2026-01-01T00:01:05`, `2026-01-01T00:01:05.250`.
fn print_text(ms: i64) -> String {
    let text = utc_text(ms).replacen(' ', "T", 1);
    let text = text.strip_suffix(".000").unwrap_or(&text);
    text.strip_suffix(":00")
        .filter(|_| text.len() == "2026-01-01T00:01:00".len())
        .unwrap_or(text)
        .to_string()
}

fn utc_text(ms: i64) -> String {
    let (days, rem) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{:03}",
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000
    )
}

/// The issue's seed table, exactly as written, runs in `weir run` (unbounded: the test stops
/// it once the first window's results are printed).
#[test]
fn the_seed_kafka_table_runs_as_written_in_weir_run() {
    let dir = tempfile::tempdir().unwrap();
    let broker = weir_kafka::testing::Broker::start(dir.path());
    broker.create_topic("events", 1);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let t0 = now - now.rem_euclid(1000) - 60_000;
    // Two clicks of user 1 and one of user 2 in the window at t0; an event 7 s later moves
    // the watermark (5 s behind) past the window's end.
    let events = [(1, t0), (2, t0 + 300), (1, t0 + 900), (3, t0 + 7_000)];
    let records: Vec<weir_kafka::testing::TestRecord> = events
        .iter()
        .map(|(user, ts)| {
            let v = format!(
                r#"{{"user_id": {user}, "event_type": "click", "event_time": "{}"}}"#,
                utc_text(*ts)
            );
            (0, None, v.into_bytes(), *ts)
        })
        .collect();
    broker.produce("events", &records);
    let script = dir.path().join("seed.sql");
    std::fs::write(
        &script,
        format!(
            "CREATE TABLE events (user_id BIGINT, event_type STRING, event_time TIMESTAMP(3), WATERMARK
FOR event_time AS event_time - INTERVAL '5' SECOND) WITH ('connector' = 'kafka', 'topic' =
'events', 'properties.bootstrap.servers' = '{}', 'format' = 'json');
CREATE TABLE per_user (window_start TIMESTAMP(3), user_id BIGINT, events BIGINT)
WITH ('connector' = 'print');
INSERT INTO per_user
SELECT TUMBLE_START(event_time, INTERVAL '1' SECOND), user_id, COUNT(*)
FROM events GROUP BY TUMBLE(event_time, INTERVAL '1' SECOND), user_id;",
            broker.bootstrap_servers()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["run", script.to_str().unwrap(), "--no-progress"])
        .args(["--set", "parallelism.default=1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(dir.path().join("run.log")).unwrap())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let want = [
        format!("+I[{}, 1, 2]", print_text(t0)),
        format!("+I[{}, 2, 1]", print_text(t0)),
    ];
    let mut got = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !want.iter().all(|w| got.contains(w)) && std::time::Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(std::time::Duration::from_millis(100)) {
            got.push(line);
        }
    }
    let still_running = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    let _ = child.wait();
    got.sort();
    assert_eq!(
        got,
        want,
        "{}",
        std::fs::read_to_string(dir.path().join("run.log")).unwrap()
    );
    assert!(
        still_running,
        "an unbounded Kafka source keeps the job running"
    );
}

/// Kafka → one-second tumbling windows → Kafka exactly once, in SQL, as `weir run` runs it.
fn kafka_window_script(servers: &str) -> String {
    format!(
        "CREATE TABLE events (user_id BIGINT, event_type STRING, event_time TIMESTAMP(3),
           WATERMARK FOR event_time AS event_time - INTERVAL '5' SECOND)
         WITH ('connector' = 'kafka', 'topic' = 'events', 'properties.bootstrap.servers' = '{servers}',
           'format' = 'json', 'scan.bounded.mode' = 'latest-offset');
         CREATE TABLE per_user (window_start TIMESTAMP(3), user_id BIGINT, events BIGINT)
         WITH ('connector' = 'kafka', 'topic' = 'per-user', 'properties.bootstrap.servers' = '{servers}',
           'format' = 'csv', 'sink.delivery-guarantee' = 'exactly-once',
           'sink.transactional-id-prefix' = 'per-user');
         INSERT INTO per_user
         SELECT TUMBLE_START(event_time, INTERVAL '1' SECOND), user_id, COUNT(*)
         FROM events GROUP BY TUMBLE(event_time, INTERVAL '1' SECOND), user_id;"
    )
}

/// `weir run` of a Kafka SQL job, killed with SIGKILL at seeded random points (one of them
/// right after a checkpoint completed, before the commit it triggers can have happened) and
/// restarted with the same `--recovery-dir` each time: the output topic, read with
/// `read_committed`, holds every expected row exactly once.
#[test]
fn a_kafka_sql_job_killed_at_random_points_resumes_with_each_result_once_in_the_topic() {
    use rand::{Rng, SeedableRng};
    let dir = tempfile::tempdir().unwrap();
    let broker = weir_kafka::testing::Broker::start(dir.path());
    // One partition per source subtask: a subtask reading several emits them merged, and a
    // partition lagging by more than the watermark delay would have late rows dropped.
    broker.create_topic("events", 2);
    broker.create_topic("per-user", 2);
    const N: i64 = 150_000;
    let base = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        - 3_600_000;
    let base = base - base.rem_euclid(1000);
    let ts_text = utc_text;
    // Event i: user i % 7, one millisecond after event i - 1.
    let records: Vec<weir_kafka::testing::TestRecord> = (0..N)
        .map(|i| {
            let ts = base + i;
            let v = format!(
                r#"{{"user_id":{},"event_type":"click","event_time":"{}"}}"#,
                i % 7,
                ts_text(ts)
            );
            ((i % 2) as i32, None, v.into_bytes(), ts)
        })
        .collect();
    broker.produce("events", &records);
    let mut want: std::collections::BTreeMap<(i64, i64), u64> = Default::default();
    for i in 0..N {
        let ts = base + i;
        *want.entry((ts - ts.rem_euclid(1000), i % 7)).or_default() += 1;
    }
    let mut want: Vec<String> = want
        .into_iter()
        .map(|((start, user), n)| format!("{},{user},{n}", ts_text(start)))
        .collect();
    want.sort();

    let script = dir.path().join("per_user.sql");
    std::fs::write(&script, kafka_window_script(&broker.bootstrap_servers())).unwrap();
    let (chk, recovery) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let args: Vec<String> = [
        "run",
        script.to_str().unwrap(),
        "--no-progress",
        "--set",
        "parallelism.default=2",
        "--set",
        "execution.checkpointing.interval=100ms",
        "--set",
        &format!("state.checkpoints.dir=file://{}", chk.path().display()),
        "--recovery-dir",
        recovery.path().to_str().unwrap(),
    ]
    .map(String::from)
    .into();
    let seed = weir_engine::testing::test_seed();
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    eprintln!("seed {seed} (WEIR_TEST_SEED)");
    // Every completed checkpoint of every run (each run has its own job id directory).
    let completed = || {
        std::fs::read_dir(chk.path())
            .unwrap()
            .flat_map(|job| std::fs::read_dir(job.unwrap().path()).unwrap())
            .map(|c| c.unwrap().path())
            .filter(|c| c.join("_metadata").exists())
            .count()
    };
    for kill in 0..3 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(&args)
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.path().join(format!("run-{kill}.log"))).unwrap())
            .spawn()
            .unwrap();
        let start = std::time::Instant::now();
        let before = completed();
        // Wait for a checkpoint of this run to complete; then kill at once (the first kill:
        // between the checkpoint's completion and its commit) or after a random delay.
        while completed() == before {
            assert!(
                child.try_wait().unwrap().is_none(),
                "run {kill} ended before its first checkpoint (seed {seed}): {}",
                std::fs::read_to_string(dir.path().join(format!("run-{kill}.log"))).unwrap()
            );
            assert!(
                start.elapsed() < std::time::Duration::from_secs(60),
                "no checkpoint"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let delay = if kill == 0 { 0 } else { rng.gen_range(0..800) };
        std::thread::sleep(std::time::Duration::from_millis(delay));
        assert!(
            child.try_wait().unwrap().is_none(),
            "run {kill} ended before the kill {delay} ms after a checkpoint (seed {seed})"
        );
        child.kill().unwrap();
        child.wait().unwrap();
        eprintln!("killed run {kill} {delay} ms after its first checkpoint");
    }
    let o = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(&args)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("weir run restarted: resuming from"),
        "{}",
        stderr(&o)
    );
    let mut got: Vec<String> = broker
        .read_all("per-user", "read_committed")
        .into_iter()
        .map(|(_, _, v)| String::from_utf8(v.unwrap()).unwrap())
        .collect();
    got.sort();
    let mut distinct = got.clone();
    distinct.dedup();
    assert_eq!(
        got.len() - distinct.len(),
        0,
        "no result twice (seed {seed})"
    );
    assert_eq!(got, want, "every result exactly once (seed {seed})");
}

#[test]
fn a_cluster_with_tls_and_tokens_answers_only_holders_of_the_secrets_and_refuses_taskmanagers_without_them()
 {
    let expected = user_metrics_reference(40000);
    let secrets = tempfile::tempdir().unwrap();
    let certs = TestCertificates::generate(secrets.path(), &["127.0.0.1"]);
    let file = |name: &str, text: &str| {
        let p = secrets.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let (rest_token, rpc_token) = (
        file("rest.token", "rest-secret\n"),
        file("rpc.token", "rpc-secret"),
    );
    let wrong_token = file("wrong.token", "not-the-rpc-secret");
    let data = tempfile::tempdir().unwrap();
    let s3 = S3sFs::start(data.path(), &["weir"]);
    let out = tempfile::tempdir().unwrap();
    let set = [
        "parallelism.default=4".to_string(),
        format!("security.rest.token-file={rest_token}"),
        "security.ssl.rest.enabled=true".to_string(),
        format!("security.ssl.rest.cert-file={}", certs.cert.display()),
        format!("security.ssl.rest.key-file={}", certs.key.display()),
        format!("security.internal.token-file={rpc_token}"),
        "security.ssl.internal.enabled=true".to_string(),
        format!("security.ssl.internal.cert-file={}", certs.cert.display()),
        format!("security.ssl.internal.key-file={}", certs.key.display()),
        format!("security.ssl.internal.ca-file={}", certs.ca.display()),
    ];
    let job_args = [
        "events=40000".to_string(),
        "rate=8000".to_string(),
        format!("output={}", out.path().display()),
    ];
    let mut cluster = Cluster::start(&s3, 2, 2, &set, &job_args);
    cluster.url = cluster.url.replace("http://", "https://");
    cluster.client_properties = Some(format!(
        "security.rest.token-file: {rest_token}\nsecurity.ssl.rest.enabled: true\nsecurity.ssl.rest.ca-file: {}\n",
        certs.ca.display()
    ));
    cluster.wait_for("RUNNING", 30);

    // Clients without the CA, or with the CA but without the token, are turned away.
    let o = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["list", "-m", &cluster.url])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("no CA is configured"), "{}", stderr(&o));
    let o = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["cancel", &cluster.job, "-m", &cluster.url])
        .env(
            "WEIR_PROPERTIES",
            format!(
                "security.ssl.rest.enabled: true\nsecurity.ssl.rest.ca-file: {}\n",
                certs.ca.display()
            ),
        )
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("401") && stderr(&o).contains("bearer token"),
        "{}",
        stderr(&o)
    );

    // Processes posing as TaskManagers: with the certificate but a wrong RPC secret or
    // none, and with the secret but without TLS.
    let no_tls = [
        "security.ssl.internal.enabled=false",
        "security.ssl.internal.cert-file=",
        "security.ssl.internal.key-file=",
        "security.ssl.internal.ca-file=",
    ];
    for (name, token, plain) in [
        ("intruder-wrong", wrong_token.as_str(), false),
        ("intruder-none", "", false),
        ("intruder-plain", rpc_token.as_str(), true),
    ] {
        let mut a = vec!["taskmanager".to_string()];
        a.extend(cluster.common.iter().cloned());
        a.extend([
            "--set".to_string(),
            format!("security.internal.token-file={token}"),
        ]);
        if plain {
            for kv in no_tls {
                a.extend(["--set".to_string(), kv.to_string()]);
            }
        }
        cluster.procs.start(name, &a);
    }
    let jm_log = cluster.procs.logs.path().join("jobmanager.log");
    let start = std::time::Instant::now();
    loop {
        let log = std::fs::read_to_string(&jm_log).unwrap_or_default();
        let refused: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("refused a TaskManager connection"))
            .collect();
        if refused
            .iter()
            .any(|l| l.contains("differs from this JobManager's"))
            && refused
                .iter()
                .any(|l| l.contains("presented no RPC secret"))
            && refused.iter().any(|l| l.contains("TLS handshake failed"))
        {
            assert!(
                !log.contains("rpc-secret") && !log.contains("not-the-rpc-secret"),
                "no secret in the log"
            );
            break;
        }
        assert!(
            start.elapsed().as_secs() < 30,
            "no refusal logged\n{}",
            cluster.procs.logs()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let intruder =
        std::fs::read_to_string(cluster.procs.logs.path().join("intruder-wrong.log")).unwrap();
    assert!(intruder.contains("refused this TaskManager"), "{intruder}");

    // The job runs on with the TaskManagers holding the secret, and `weir` with the token
    // and CA follows it to the end.
    cluster.wait_for("FINISHED", 60);
    let o = cluster.weir(&["list"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        committed(out.path()),
        expected,
        "the refused TaskManagers did not disturb the job\n{}",
        cluster.procs.logs()
    );
    let jm = std::fs::read_to_string(&jm_log).unwrap();
    assert_eq!(
        jm.matches("TaskManager registered").count(),
        2,
        "only the two TaskManagers with the secret registered\n{jm}"
    );
}

#[test]
fn inconsistent_security_settings_stop_every_process_at_start_naming_the_key_and_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-token");
    let missing = missing.display().to_string();
    let not_pem = dir.path().join("not.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    let not_pem = not_pem.display().to_string();
    let run = |set: &[String]| {
        let mut a = vec![
            "run",
            "user-metrics",
            "--no-progress",
            "--set",
            "rest.port=0",
        ];
        for kv in set {
            a.extend(["--set", kv.as_str()]);
        }
        a.extend(["--arg", "events=10"]);
        a.into_iter().map(str::to_string).collect::<Vec<_>>()
    };
    let cases: Vec<(Vec<String>, String)> = vec![
        (
            run(&["security.ssl.rest.enabled=true".into()]),
            "'security.ssl.rest.enabled' is true but 'security.ssl.rest.cert-file' is not set"
                .into(),
        ),
        (
            run(&[format!("security.rest.token-file={missing}")]),
            format!("cannot read the token file '{missing}' (security.rest.token-file)"),
        ),
        (
            run(&[
                "security.ssl.rest.enabled=true".into(),
                format!("security.ssl.rest.cert-file={not_pem}"),
                format!("security.ssl.rest.key-file={not_pem}"),
            ]),
            format!("'{not_pem}' (security.ssl.rest.cert-file) holds no PEM certificate"),
        ),
        (
            vec![
                "taskmanager".into(),
                "--set".into(),
                format!("security.internal.token-file={missing}"),
            ],
            format!("cannot read the token file '{missing}' (security.internal.token-file)"),
        ),
        (
            vec!["list".into(), "-m".into(), "https://127.0.0.1:1".into()],
            "no CA is configured".into(),
        ),
    ];
    for (args, message) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        fails_with(&args, &message);
    }
}

/// Clicks per user in 1-second event-time windows over generated events (`millis_per_row`
/// of event time apart, `users` distinct users), printed.
fn windowed_clicks_sql(rate: Option<u32>, users: u32, millis_per_row: u32) -> String {
    let rate = rate.map_or(String::new(), |r| format!(", 'rows-per-second' = '{r}'"));
    format!(
        "CREATE TABLE clicks (
           user_no INT, cents INT, seq BIGINT,
           ts AS TO_TIMESTAMP_LTZ(1767225600000 + seq * {millis_per_row}, 3),
           WATERMARK FOR ts AS ts - INTERVAL '1' SECOND
         ) WITH ('connector' = 'datagen', 'fields.user_no.min' = '0',
           'fields.user_no.max' = '{}', 'fields.cents.min' = '100', 'fields.cents.max' = '999',
           'fields.seq.kind' = 'sequence', 'fields.seq.start' = '0'{rate});
         CREATE TABLE per_user (window_start TIMESTAMP(3), user_no INT, clicks BIGINT,
           cents INT) WITH ('connector' = 'print');
         INSERT INTO per_user
         SELECT TUMBLE_START(ts, INTERVAL '1' SECOND), user_no, COUNT(*), SUM(cents)
         FROM clicks GROUP BY TUMBLE(ts, INTERVAL '1' SECOND), user_no;",
        users - 1
    )
}

/// Whether `child` exits on its own within `secs` seconds; it is killed otherwise.
fn exits_within(child: &mut std::process::Child, secs: u64) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    false
}

/// The dashboard in headless Chromium (worker/cluster/browser/dashboard.mjs): this test
/// starts the `weir run` processes it is pointed at, so it runs with the other CLI tests on
/// the binary they build (a separate `make` step would build `weir` a second time, with
/// other features). Chromium, Node.js and playwright-core come from
/// worker/cluster/browser/install.sh (`make deps`); the screenshots of every page land in
/// `<target>/dashboard-screenshots/`.
#[test]
fn the_dashboard_in_chromium_shows_the_graph_checkpoints_savepoints_backpressure_and_cancels() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let browser = root.join("worker/cluster/browser");
    let cache = std::env::var("WEIR_CACHE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| {
            std::path::PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/weir")
        });
    let modules = cache.join("playwright-core-1.65.1/node_modules");
    let have = |bin: &str| {
        Command::new("sh")
            .args(["-c", &format!("command -v {bin}")])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    assert!(
        modules.join("playwright-core").is_dir() && have("node") && have("chromium"),
        "the browser test needs Chromium, Node.js and playwright-core: run `bash {}` (part of `make deps`)",
        browser.join("install.sh").display()
    );
    // The build directory: <target>/debug/weir.
    let target = std::path::Path::new(env!("CARGO_BIN_EXE_weir"))
        .parent()
        .and_then(std::path::Path::parent)
        .unwrap()
        .to_path_buf();
    let shots = target.join("dashboard-screenshots");
    let _ = std::fs::remove_dir_all(&shots);
    std::fs::create_dir_all(&shots).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let interval_ms = 2000;
    let job_sql = dir.path().join("clicks.sql");
    std::fs::write(&job_sql, windowed_clicks_sql(Some(400), 8, 20)).unwrap();
    let savepoints = dir.path().join("savepoints");
    let (mut job, job_url, job_id) = run_with_rest(&[
        "run".into(),
        job_sql.display().to_string(),
        "--parallelism".into(),
        "2".into(),
        "--set".into(),
        format!("execution.checkpointing.interval={interval_ms}ms"),
        "--set".into(),
        format!(
            "state.checkpoints.dir=file://{}",
            dir.path().join("chk").display()
        ),
        "--set".into(),
        format!("state.savepoints.dir=file://{}", savepoints.display()),
        "--set".into(),
        "taskmanager.memory.process.size=512m".into(),
    ]);
    // The same query as fast as it goes over many users, printing to a pipe nobody reads:
    // once the pipe is full, the sink blocks like a slow external system.
    let slow_sql = dir.path().join("slow.sql");
    std::fs::write(&slow_sql, windowed_clicks_sql(None, 100_000, 1)).unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "dashboard-test-token\n").unwrap();
    let (mut slow, slow_url, _) = run_with_rest_to(
        &[
            "run".into(),
            slow_sql.display().to_string(),
            "--parallelism".into(),
            "2".into(),
            "--set".into(),
            format!("security.rest.token-file={}", token_file.display()),
        ],
        std::process::Stdio::piped(),
    );
    let unread = slow.stdout.take();
    // A third run of the first job, for the Stop with savepoint button.
    let (mut stopped, stop_url, stop_id) = run_with_rest(&[
        "run".into(),
        job_sql.display().to_string(),
        "--parallelism".into(),
        "2".into(),
        "--set".into(),
        format!("state.savepoints.dir=file://{}", savepoints.display()),
    ]);

    let o = Command::new("node")
        .arg(browser.join("dashboard.mjs"))
        .env("PLAYWRIGHT_MODULES", &modules)
        .env("JOB_URL", &job_url)
        .env("JOB_ID", &job_id)
        .env("SLOW_URL", &slow_url)
        .env("SLOW_TOKEN", "dashboard-test-token")
        .env("CHECKPOINT_INTERVAL_MS", interval_ms.to_string())
        .env("SAVEPOINTS_DIR", savepoints.display().to_string())
        .env("SCREENSHOTS", &shots)
        .env("STOP_URL", &stop_url)
        .env("STOP_ID", &stop_id)
        .output()
        .expect("node runs");
    let _ = slow.kill();
    drop(unread);
    let _ = slow.wait();
    // The Stop and Cancel buttons ended their jobs, and with them `weir run`.
    let stop_ended = exits_within(&mut stopped, 20);
    let cancel_ended = exits_within(&mut job, 20);
    println!("{}", stdout(&o));
    eprintln!("screenshots: {}", shots.display());
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    assert!(
        stop_ended,
        "the job stopped from the dashboard ended weir run"
    );
    assert!(
        cancel_ended,
        "the job cancelled from the dashboard ended weir run"
    );
    for page in [
        "1-overview",
        "2-job-graph",
        "4-checkpoints",
        "4b-checkpoint-breakdown",
        "11-backpressure",
        "12-stopped-with-savepoint",
        "13-cancelled",
    ] {
        let png = shots.join(format!("{page}.png"));
        let bytes = std::fs::read(&png).unwrap_or_else(|e| panic!("{}: {e}", png.display()));
        assert!(bytes.starts_with(b"\x89PNG"), "{} is a PNG", png.display());
    }
}
