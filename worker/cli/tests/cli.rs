//! The `weir` binary as a user runs it: the main job's output, the seed example, the summary
//! file, and the errors for mistakes on the command line.

use std::process::{Command, Output};
use weir_storage::testing::{ACCESS_KEY, S3sFs, SECRET_KEY};

fn weir(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(args)
        .output()
        .expect("weir runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
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
    assert_eq!(events, 100_000, "every generated event lands in exactly one window");
    // 100 000 events x 20 ms = 2 000 s: minutes 00:00 to 00:33, 8 users each.
    assert_eq!(rows.len(), 34 * 8, "{out}");
    assert!(
        rows.iter().any(|r| r[0] == "2026-01-01 00:33:00.000"
            && r[1] == "2026-01-01 00:34:00.000"
            && r[2] == "user_7"),
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
    let o = weir(&["run", "no-such-job"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("no job named 'no-such-job'; registered jobs: user-metrics"),
        "{}",
        stderr(&o)
    );

    let o = weir(&["run", "user-metrics", "--arg", "event=5"]);
    assert!(
        stderr(&o).contains("has no argument 'event'; its arguments are: events, users, rate"),
        "{}",
        stderr(&o)
    );

    let o = weir(&["run", "user-metrics", "--set", "pipeline.max-paralelism=4"]);
    assert!(
        stderr(&o).contains("did you mean 'pipeline.max-parallelism'"),
        "{}",
        stderr(&o)
    );

    let o = weir(&["run", "bench-tumbling"]);
    assert!(stderr(&o).contains("needs --arg input="), "{}", stderr(&o));

    let o = weir(&[
        "run",
        "bench-tumbling",
        "--arg",
        "input=/nonexistent/events.jsonl",
        "--no-progress",
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("cannot read input /nonexistent/events.jsonl"),
        "{}",
        stderr(&o)
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

#[test]
fn a_killed_weir_process_resumes_from_its_latest_checkpoint_with_exactly_once_output() {
    let base = [
        "run",
        "user-metrics",
        "--arg",
        "events=60000",
        "--no-progress",
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
    // Kill -9 once a checkpoint exists and the job is well under way (about 1 s of 2 s).
    let start = std::time::Instant::now();
    while latest_checkpoint(chk.path()).is_none()
        || start.elapsed() < std::time::Duration::from_millis(1000)
    {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(20),
            "no checkpoint appeared"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let partial = committed(out.path());
    assert!(
        partial.len() < expected.len(),
        "killed mid-run: {} of {} results",
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
        "resumed from {}",
        restore.display()
    );
}

/// `weir` arguments that put checkpoints into `s3://weir/checkpoints` on `s3`.
fn s3_checkpoint_args(s3: &S3sFs, interval: &str) -> Vec<String> {
    [
        format!("execution.checkpointing.interval={interval}"),
        "state.checkpoints.dir=s3://weir/checkpoints".to_string(),
        format!("s3.endpoint={}", s3.endpoint()),
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
    let s3 = S3sFs::start(data.path(), &["weir"]);
    let out = tempfile::tempdir().unwrap();
    let mut args: Vec<String> = [
        "run",
        "user-metrics",
        "--arg",
        "events=60000",
        "--no-progress",
        "--arg",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.push(format!("output={}", out.path().display()));
    args.extend(s3_checkpoint_args(&s3, "100ms"));
    let mut first = args.clone();
    first.extend(["--arg".to_string(), "rate=30000".to_string()]);
    let mut child = weir_with_s3_credentials(&first)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Objects live as files under the server's root: find the newest complete checkpoint.
    let bucket_dir = s3.root().join("weir/checkpoints");
    let start = std::time::Instant::now();
    while latest_checkpoint(&bucket_dir).is_none()
        || start.elapsed() < std::time::Duration::from_millis(1000)
    {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(20),
            "no checkpoint appeared in S3"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let chk = latest_checkpoint(&bucket_dir).unwrap();
    let rel = chk.strip_prefix(s3.root().join("weir")).unwrap();
    let mut resume = args.clone();
    resume.extend([
        "--from-savepoint".to_string(),
        format!("s3://weir/{}", rel.display()),
    ]);
    let o = weir_with_s3_credentials(&resume).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        committed(out.path()),
        expected,
        "resumed from s3://weir/{}",
        rel.display()
    );
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
        "events=90000",
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
    args.extend(s3_checkpoint_args(&s3, "100ms"));
    let child = weir_with_s3_credentials(&args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(700));
    s3.stop(); // S3 goes away mid-run ...
    std::thread::sleep(std::time::Duration::from_millis(900));
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
    assert_eq!(s["records_in"], 90_000, "no data lost: {s}");
    assert_eq!(s["restarts"], 0, "the job never restarted: {s}");
}
