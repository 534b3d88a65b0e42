//! Streaming SQL end to end: scripts planned by weir-sql and run by the engine, with
//! expected outputs computed by hand from the inputs written here.

use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;
use weir_engine::api::StreamExecutionEnvironment;
use weir_engine::config::Config;

fn config(pairs: &[(&str, &str)]) -> Config {
    let mut c = Config::default();
    for (k, v) in pairs {
        c.set(k, v).unwrap();
    }
    c
}

/// Writes `lines` as a JSON-lines file and returns its path.
fn input(dir: &Path, name: &str, lines: &[Value]) -> String {
    let p = dir.join(name);
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

/// Every committed output record of a filesystem sink directory, sorted.
fn output(dir: &Path) -> Vec<Value> {
    let mut rows: Vec<Value> = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return rows;
    };
    for e in entries {
        let p = e.unwrap().path();
        if p.is_file() {
            for l in std::fs::read_to_string(&p).unwrap().lines() {
                rows.push(serde_json::from_str(l).unwrap());
            }
        }
    }
    rows.sort_by_key(|v| v.to_string());
    rows
}

fn sorted(mut v: Vec<Value>) -> Vec<Value> {
    v.sort_by_key(|v| v.to_string());
    v
}

/// Runs a script to completion; `{in}`/`{out}`/`{out2}` stand for the given paths.
fn run(sql: &str, conf: Config) {
    let env = StreamExecutionEnvironment::with_config(conf);
    weir_sql::plan(&env, sql).unwrap_or_else(|e| panic!("planning failed: {e}"));
    env.execute("sql-test").unwrap();
}

fn plan_error(sql: &str) -> String {
    let env = StreamExecutionEnvironment::new();
    match weir_sql::plan(&env, sql) {
        Ok(_) => panic!("expected an error for:\n{sql}"),
        Err(e) => e.to_string(),
    }
}

const CLICKS_DDL: &str = "
CREATE TABLE clicks (
  `user` STRING,
  amount DOUBLE,
  item STRING,
  ts BIGINT,
  rt AS TO_TIMESTAMP_LTZ(ts, 3),
  WATERMARK FOR rt AS rt - INTERVAL '{delay}' SECOND
) WITH ('connector' = 'filesystem', 'path' = '{in}', 'format' = 'json');
";

fn clicks(delay: u32, input: &str) -> String {
    CLICKS_DDL
        .replace("{delay}", &delay.to_string())
        .replace("{in}", input)
}

#[test]
fn projection_filter_case_and_cast_compute_each_row_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let people = input(
        dir.path(),
        "people.jsonl",
        &[
            json!({"name": "ann", "age": 34, "score": "7.5"}),
            json!({"name": "bob", "age": 17, "score": "3"}),
            json!({"name": "dan", "age": 50, "score": "1"}),
            json!({"name": "eve", "age": 5, "score": "2"}),
        ],
    );
    let sql = format!(
        "CREATE TABLE people (name STRING, age INT, score STRING)
           WITH ('connector' = 'filesystem', 'path' = '{people}', 'format' = 'json');
         CREATE TABLE result (name STRING, next_age BIGINT, kind STRING, doubled DOUBLE, age_text STRING)
           WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
         INSERT INTO result
         SELECT UPPER(name), age + 1,
                CASE WHEN age >= 18 THEN 'adult' ELSE 'minor' END,
                CAST(score AS DOUBLE) * 2,
                CAST(age AS STRING)
         FROM people
         WHERE age > 10 AND name <> 'dan';",
        out.display()
    );
    run(&sql, Config::default());
    assert_eq!(
        output(&out),
        sorted(vec![
            json!({"name": "ANN", "next_age": 35, "kind": "adult", "doubled": 15.0, "age_text": "34"}),
            json!({"name": "BOB", "next_age": 18, "kind": "minor", "doubled": 6.0, "age_text": "17"}),
        ])
    );
}

#[test]
fn a_tumbling_window_computes_every_aggregate_per_user_and_minute() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let data = input(
        dir.path(),
        "clicks.jsonl",
        &[
            json!({"user": "a", "amount": 10.0, "item": "x", "ts": 1000}),
            json!({"user": "b", "amount": 5.0, "item": "x", "ts": 2000}),
            json!({"user": "a", "amount": 20.0, "item": "y", "ts": 30000}),
            json!({"user": "a", "amount": null, "item": "x", "ts": 59999}),
            json!({"user": "a", "amount": 7.0, "item": "z", "ts": 60000}),
            json!({"user": "b", "amount": 1.0, "item": "x", "ts": 61000}),
        ],
    );
    let sql = format!(
        "{}
         CREATE TABLE stats (`user` STRING, ws TIMESTAMP(3), we TIMESTAMP(3), n BIGINT, n_amount BIGINT,
            total DOUBLE, mean DOUBLE, lo DOUBLE, hi DOUBLE, items BIGINT, big BIGINT)
           WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
         INSERT INTO stats
         SELECT `user`, TUMBLE_START(rt, INTERVAL '1' MINUTE), TUMBLE_END(rt, INTERVAL '1' MINUTE),
                COUNT(*), COUNT(amount), SUM(amount), AVG(amount), MIN(amount), MAX(amount),
                COUNT(DISTINCT item), COUNT(*) FILTER (WHERE amount > 8)
         FROM clicks
         GROUP BY TUMBLE(rt, INTERVAL '1' MINUTE), `user`;",
        clicks(1, &data),
        out.display()
    );
    run(&sql, Config::default());
    let w0 = ("1970-01-01 00:00:00.000", "1970-01-01 00:01:00.000");
    let w1 = ("1970-01-01 00:01:00.000", "1970-01-01 00:02:00.000");
    assert_eq!(
        output(&out),
        sorted(vec![
            // a, first minute: 10, 20 and a NULL amount; items x, y, x; two above 8.
            json!({"user": "a", "ws": w0.0, "we": w0.1, "n": 3, "n_amount": 2, "total": 30.0,
                   "mean": 15.0, "lo": 10.0, "hi": 20.0, "items": 2, "big": 2}),
            json!({"user": "b", "ws": w0.0, "we": w0.1, "n": 1, "n_amount": 1, "total": 5.0,
                   "mean": 5.0, "lo": 5.0, "hi": 5.0, "items": 1, "big": 0}),
            // 60000 belongs to the second minute: windows are [start, end).
            json!({"user": "a", "ws": w1.0, "we": w1.1, "n": 1, "n_amount": 1, "total": 7.0,
                   "mean": 7.0, "lo": 7.0, "hi": 7.0, "items": 1, "big": 0}),
            json!({"user": "b", "ws": w1.0, "we": w1.1, "n": 1, "n_amount": 1, "total": 1.0,
                   "mean": 1.0, "lo": 1.0, "hi": 1.0, "items": 1, "big": 0}),
        ])
    );
}

#[test]
fn records_behind_the_watermark_are_dropped_from_closed_windows() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let data = input(
        dir.path(),
        "clicks.jsonl",
        &[
            json!({"user": "a", "amount": 1.0, "item": "x", "ts": 1000}),
            // Moves the watermark to 60999: the first minute closes with one record.
            json!({"user": "a", "amount": 1.0, "item": "x", "ts": 61000}),
            // Late for the closed first minute: dropped.
            json!({"user": "a", "amount": 1.0, "item": "x", "ts": 2000}),
            json!({"user": "a", "amount": 1.0, "item": "x", "ts": 62000}),
        ],
    );
    let sql = format!(
        "{}
         CREATE TABLE counts (`user` STRING, ws TIMESTAMP(3), n BIGINT)
           WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
         INSERT INTO counts
         SELECT `user`, TUMBLE_START(rt, INTERVAL '1' MINUTE), COUNT(*)
         FROM clicks GROUP BY TUMBLE(rt, INTERVAL '1' MINUTE), `user`;",
        clicks(0, &data),
        out.display()
    );
    // One record per batch, so each record's watermark passes before the next record.
    run(&sql, config(&[("pipeline.batch-size", "1")]));
    assert_eq!(
        output(&out),
        sorted(vec![
            json!({"user": "a", "ws": "1970-01-01 00:00:00.000", "n": 1}),
            json!({"user": "a", "ws": "1970-01-01 00:01:00.000", "n": 2}),
        ])
    );
}

#[test]
fn hop_windows_count_each_record_in_every_window_that_covers_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let hour = 3_600_000;
    let data = input(
        dir.path(),
        "clicks.jsonl",
        &[10_000, 40_000, 70_000]
            .map(|t| json!({"user": "a", "amount": 1.0, "item": "x", "ts": hour + t})),
    );
    let sql = format!(
        "{}
         CREATE TABLE counts (ws TIMESTAMP(3), we TIMESTAMP(3), n BIGINT)
           WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
         INSERT INTO counts
         SELECT HOP_START(rt, INTERVAL '30' SECOND, INTERVAL '1' MINUTE),
                HOP_END(rt, INTERVAL '30' SECOND, INTERVAL '1' MINUTE), COUNT(*)
         FROM clicks GROUP BY HOP(rt, INTERVAL '30' SECOND, INTERVAL '1' MINUTE);",
        clicks(0, &data),
        out.display()
    );
    run(&sql, Config::default());
    // 01:00:10 is in [00:59:30, 01:00:30) and [01:00, 01:01); 01:00:40 in [01:00, 01:01) and
    // [01:00:30, 01:01:30); 01:01:10 in [01:00:30, 01:01:30) and [01:01, 01:02).
    assert_eq!(
        output(&out),
        sorted(vec![
            json!({"ws": "1970-01-01 00:59:30.000", "we": "1970-01-01 01:00:30.000", "n": 1}),
            json!({"ws": "1970-01-01 01:00:00.000", "we": "1970-01-01 01:01:00.000", "n": 2}),
            json!({"ws": "1970-01-01 01:00:30.000", "we": "1970-01-01 01:01:30.000", "n": 2}),
            json!({"ws": "1970-01-01 01:01:00.000", "we": "1970-01-01 01:02:00.000", "n": 1}),
        ])
    );
}

#[test]
fn a_session_window_merges_two_sessions_when_a_record_bridges_the_gap() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let data = input(
        dir.path(),
        "clicks.jsonl",
        &[
            ("a", 1_000),
            ("a", 5_000),
            ("b", 1_000),
            ("a", 30_000),
            ("a", 22_000),
            // [14 s, 24 s) overlaps [1 s, 15 s) and [22 s, 40 s): one session [1 s, 40 s).
            ("a", 14_000),
            ("a", 100_000),
        ]
        .map(|(u, t)| json!({"user": u, "amount": 2.0, "item": "x", "ts": t})),
    );
    let sql = format!(
        "{}
         CREATE TABLE sessions (`user` STRING, ss TIMESTAMP(3), se TIMESTAMP(3), n BIGINT, total DOUBLE)
           WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
         INSERT INTO sessions
         SELECT `user`, SESSION_START(rt, INTERVAL '10' SECOND), SESSION_END(rt, INTERVAL '10' SECOND),
                COUNT(*), SUM(amount)
         FROM clicks GROUP BY SESSION(rt, INTERVAL '10' SECOND), `user`;",
        clicks(60, &data),
        out.display()
    );
    run(&sql, config(&[("pipeline.batch-size", "1")]));
    assert_eq!(
        output(&out),
        sorted(vec![
            json!({"user": "a", "ss": "1970-01-01 00:00:01.000", "se": "1970-01-01 00:00:40.000", "n": 5, "total": 10.0}),
            json!({"user": "a", "ss": "1970-01-01 00:01:40.000", "se": "1970-01-01 00:01:50.000", "n": 1, "total": 2.0}),
            json!({"user": "b", "ss": "1970-01-01 00:00:01.000", "se": "1970-01-01 00:00:11.000", "n": 1, "total": 2.0}),
        ])
    );
}

#[test]
fn several_statements_with_a_view_run_as_one_job_feeding_two_sinks() {
    let dir = tempfile::tempdir().unwrap();
    let (out1, out2) = (dir.path().join("adults"), dir.path().join("minors"));
    let people = input(
        dir.path(),
        "people.jsonl",
        &[
            json!({"name": "ann", "age": 34}),
            json!({"name": "bob", "age": 17}),
            json!({"name": "cy", "age": 18}),
        ],
    );
    let sql = format!(
        "CREATE TABLE people (name STRING, age INT)
           WITH ('connector' = 'filesystem', 'path' = '{people}', 'format' = 'json');
         CREATE VIEW adults AS SELECT name, age FROM people WHERE age >= 18;
         CREATE TABLE adult_names (name STRING)
           WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
         CREATE TABLE minors (name STRING, years_left BIGINT)
           WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
         INSERT INTO adult_names SELECT name FROM adults;
         INSERT INTO minors SELECT name, 18 - age FROM people WHERE age < 18;",
        out1.display(),
        out2.display()
    );
    let env = StreamExecutionEnvironment::new();
    let planned = weir_sql::plan(&env, &sql).unwrap();
    assert_eq!(planned.pipelines, 2);
    env.execute("two-sinks").unwrap();
    assert_eq!(
        output(&out1),
        sorted(vec![json!({"name": "ann"}), json!({"name": "cy"})])
    );
    assert_eq!(output(&out2), vec![json!({"name": "bob", "years_left": 1})]);
}

#[test]
fn explain_shows_the_streaming_plan_from_sink_to_source() {
    let sql = "CREATE TABLE gen (user_no INT, seq BIGINT,
                 ts AS TO_TIMESTAMP_LTZ(seq * 1000, 3),
                 WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
               WITH ('connector' = 'datagen', 'fields.seq.kind' = 'sequence',
                     'fields.seq.start' = '0', 'fields.seq.end' = '9');
               CREATE TABLE out (user_no BIGINT, n BIGINT) WITH ('connector' = 'print');
               EXPLAIN INSERT INTO out
               SELECT user_no, COUNT(*) FROM gen GROUP BY TUMBLE(ts, INTERVAL '1' MINUTE), user_no;";
    let env = StreamExecutionEnvironment::new();
    let planned = weir_sql::plan(&env, sql).unwrap();
    // EXPLAIN does not run the statement.
    assert_eq!(planned.pipelines, 0);
    let text = &planned.explained[0];
    let order: Vec<usize> = [
        "Sink: out connector=print",
        "Calc: select=[user_no, \"$agg0\" AS n]",
        "GroupWindowAggregate: window=TUMBLE(size=60000 ms) keys=[user_no] aggregates=[COUNT(*)]",
        "WatermarkAssigner: rowtime=ts delay=5000 ms",
        "ComputedColumns: ts := TO_TIMESTAMP_LTZ(seq * 1000, 3)",
        "Source: gen connector=datagen columns=[user_no BIGINT, seq BIGINT]",
    ]
    .iter()
    .map(|s| {
        text.find(s)
            .unwrap_or_else(|| panic!("{s} missing in\n{text}"))
    })
    .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{text}");
}

#[test]
fn errors_name_the_line_and_column_of_the_offending_text() {
    let t = "CREATE TABLE t (a INT, b STRING, ts BIGINT, rt AS TO_TIMESTAMP_LTZ(ts, 3),\n  WATERMARK FOR rt AS rt)\n  WITH ('connector' = 'datagen');\n";
    let s = "CREATE TABLE s (a BIGINT) WITH ('connector' = 'print');\n";
    let cases: Vec<(String, &str)> = vec![
        (
            format!("{t}{s}INSERT INTO s SELECT nope FROM t;"),
            "5:22: column 'nope' not found",
        ),
        (
            format!("{t}{s}INSERT INTO s SELEC a FROM t;"),
            "5:15: syntax error: Expected: SELECT, VALUES, or a subquery in the query body, found: SELEC",
        ),
        (
            format!("{t}{s}INSERT INTO s\nSELECT SUM(a) OVER (ORDER BY rt) FROM t;"),
            "6:8: OVER windows are not supported yet",
        ),
        (
            format!("{t}{s}INSERT INTO s SELECT COUNT(*) FROM t GROUP BY b;"),
            "5:47: non-windowed GROUP BY produces an updating result",
        ),
        (
            format!(
                "{t}{s}INSERT INTO s SELECT b FROM t GROUP BY TUMBLE(rt, INTERVAL '1' MINUTE);"
            ),
            "5:22: column 'b' must appear in GROUP BY or be used in an aggregate function",
        ),
        (
            format!(
                "{t}{s}INSERT INTO s SELECT COUNT(*) FROM t GROUP BY TUMBLE(ts, INTERVAL '1' MINUTE);"
            ),
            "5:54: TUMBLE's first argument must be the time attribute of its input",
        ),
        (
            format!("{t}{s}INSERT INTO s SELECT a FROM missing;"),
            "5:29: table or view 'missing' not found; declared: s, t",
        ),
        (
            format!("{t}{s}INSERT INTO s SELECT b FROM t;"),
            "5:15: column 'b' of the query is STRING but sink column 'a' is BIGINT",
        ),
        (
            "CREATE TABLE k (a INT) WITH (\n  'connector' = 'kafka');".to_string(),
            "2:3: unknown connector 'kafka'",
        ),
        (
            format!(
                "{t}{s}INSERT INTO s SELECT a FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(rt), INTERVAL '1' MINUTE));"
            ),
            "not supported yet",
        ),
        (
            "CREATE TABLE g (a INT) WITH ('connector' = 'datagen', 'fields.a.mn' = '1');"
                .to_string(),
            "1:55: unknown option 'fields.a.mn' for connector 'datagen'",
        ),
    ];
    for (sql, want) in cases {
        let got = plan_error(&sql);
        assert!(
            got.starts_with(want) || (want == "not supported yet" && got.contains(want)),
            "for\n{sql}\nwant: {want}\ngot:  {got}"
        );
    }
}

#[test]
fn a_job_stopped_with_a_savepoint_and_restored_produces_the_uninterrupted_result() {
    let script = |out: &Path, rate: &str| {
        format!(
            "CREATE TABLE gen (seq BIGINT, k AS seq % 7, ts AS TO_TIMESTAMP_LTZ(seq * 10, 3),
               WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
             WITH ('connector' = 'datagen', 'fields.seq.kind' = 'sequence', 'fields.seq.start' = '0',
                   'fields.seq.end' = '11999', 'rows-per-second' = '{rate}');
             CREATE TABLE out (k BIGINT, ws TIMESTAMP(3), n BIGINT, total BIGINT)
               WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
             INSERT INTO out SELECT k, TUMBLE_START(ts, INTERVAL '1' SECOND), COUNT(*), SUM(seq)
             FROM gen GROUP BY TUMBLE(ts, INTERVAL '1' SECOND), k;",
            out.display()
        )
    };
    let conf = |extra: &[(&str, &str)]| {
        let mut pairs = vec![("pipeline.batch-size", "50")];
        pairs.extend_from_slice(extra);
        config(&pairs)
    };
    let reference = tempfile::tempdir().unwrap();
    run(&script(reference.path(), "1000000000"), conf(&[]));
    let expected = output(reference.path());
    // 12 000 events, 10 ms apart: 120 one-second windows, 7 keys each.
    assert_eq!(expected.len(), 120 * 7);

    let first = tempfile::tempdir().unwrap();
    let sp = tempfile::tempdir().unwrap();
    let env = StreamExecutionEnvironment::with_config(conf(&[]));
    weir_sql::plan(&env, &script(first.path(), "5000")).unwrap();
    let job = env.execute_async("before").unwrap();
    std::thread::sleep(Duration::from_millis(600));
    let savepoint = job
        .stop_with_savepoint(Some(&format!("file://{}", sp.path().display())))
        .unwrap();
    let partial = output(first.path()).len();
    assert!(partial < expected.len(), "the job was stopped mid-stream");

    let env =
        StreamExecutionEnvironment::with_config(conf(&[("execution.savepoint.path", &savepoint)]));
    weir_sql::plan(&env, &script(first.path(), "1000000000")).unwrap();
    env.execute("after").unwrap();
    assert_eq!(output(first.path()), expected);
}

// ---- User-defined functions, CREATE TEMPORARY FUNCTION, CTAS, PROCTIME() ----

/// The UDFs of these tests: a string closure, a `&[Value]` closure with declared types, and a
/// vectorised DataFusion function.
fn test_udfs() -> weir_sql::udf::Registry {
    use datafusion_expr::{ColumnarValue, Volatility, create_udf};
    use std::sync::Arc;
    use weir_sql::{SqlType, Value as V};
    let mut r = weir_sql::udf::Registry::new();
    r.register_string_fn("greet", |s| format!("hi {s}"))
        .unwrap()
        .register_scalar(
            "weighted",
            &[SqlType::BigInt, SqlType::Double],
            SqlType::Double,
            |args| match args {
                [V::Int(n), V::Double(d)] => V::Double(*n as f64 * d),
                _ => V::Null,
            },
        )
        .unwrap();
    let twice = create_udf(
        "twice",
        vec![arrow::datatypes::DataType::Int64],
        arrow::datatypes::DataType::Int64,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let a = ColumnarValue::values_to_arrays(args)?;
            let a = a[0]
                .as_any()
                .downcast_ref::<arrow::array::Int64Array>()
                .expect("declared Int64");
            let out: arrow::array::Int64Array = a.iter().map(|v| v.map(|v| v * 2)).collect();
            Ok(ColumnarValue::Array(Arc::new(out)))
        }),
    );
    r.register_udf(twice).unwrap();
    r
}

fn run_with_udfs(sql: &str) {
    let env = StreamExecutionEnvironment::new();
    weir_sql::plan_with_udfs(&env, sql, &test_udfs())
        .unwrap_or_else(|e| panic!("planning failed: {e}"));
    env.execute("sql-udf-test").unwrap();
}

fn udf_plan_error(sql: &str) -> String {
    let env = StreamExecutionEnvironment::new();
    match weir_sql::plan_with_udfs(&env, sql, &test_udfs()) {
        Ok(_) => panic!("expected an error for:\n{sql}"),
        Err(e) => e.to_string(),
    }
}

fn visits(dir: &Path) -> String {
    input(
        dir,
        "visits.jsonl",
        &[
            json!({"name": "ann", "visits": 3, "spend": 10.0}),
            json!({"name": "bob", "visits": 2, "spend": null}),
            json!({"name": null, "visits": 1, "spend": 2.5}),
        ],
    )
}

const VISITS_DDL: &str = "CREATE TABLE visits (name STRING, visits BIGINT, spend DOUBLE)
  WITH ('connector' = 'filesystem', 'path' = '{in}', 'format' = 'json');\n";

#[test]
fn rust_udfs_registered_with_the_planner_are_called_by_name_on_every_row() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let sql = format!(
        "{}CREATE TABLE result (g STRING, w DOUBLE, t BIGINT, ww DOUBLE, nested STRING)
           WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
         INSERT INTO result
         SELECT greet(name), weighted(visits, spend), twice(visits),
                weighted(visits, visits), greet(greet(UPPER(name)))
         FROM visits WHERE twice(visits) > 2;",
        VISITS_DDL.replace("{in}", &visits(dir.path())),
        out.display()
    );
    run_with_udfs(&sql);
    // ann: 3 * 10.0, 3 * 2, 3 * 3 (BIGINT widened to the declared DOUBLE);
    // bob: a NULL spend gives NULL; the third row's twice(1) = 2 is filtered out.
    assert_eq!(
        output(&out),
        sorted(vec![
            json!({"g": "hi ann", "w": 30.0, "t": 6, "ww": 9.0, "nested": "hi hi ANN"}),
            json!({"g": "hi bob", "w": null, "t": 4, "ww": 4.0, "nested": "hi hi BOB"}),
        ])
    );
}

#[test]
fn a_udf_called_with_the_wrong_arguments_fails_at_plan_time_with_its_signature() {
    let t = VISITS_DDL.replace("{in}", "/nonexistent");
    let s = "CREATE TABLE s (a STRING) WITH ('connector' = 'print');\n";
    let cases: Vec<(String, &str)> = vec![
        (
            format!("{t}{s}INSERT INTO s SELECT greet(visits) FROM visits;"),
            "4:22: greet(BIGINT) does not match the function's signature greet(STRING) -> STRING; add a CAST",
        ),
        (
            format!("{t}{s}INSERT INTO s SELECT\n  greet(name, name) FROM visits;"),
            "5:3: greet(STRING, STRING) does not match the function's signature greet(STRING) -> STRING",
        ),
        (
            format!(
                "{t}{s}INSERT INTO s SELECT CAST(weighted(name, spend) AS STRING) FROM visits;"
            ),
            "4:27: weighted(STRING, DOUBLE) does not match the function's signature weighted(BIGINT, DOUBLE) -> DOUBLE; add a CAST",
        ),
        (
            format!("{t}{s}INSERT INTO s SELECT greet(greet(spend)) FROM visits;"),
            "4:28: greet(DOUBLE) does not match",
        ),
    ];
    for (sql, want) in cases {
        let got = udf_plan_error(&sql);
        assert!(
            got.starts_with(want),
            "for\n{sql}\nwant: {want}\ngot:  {got}"
        );
    }
    // Without the registry the function does not exist.
    let got = plan_error(&format!(
        "{t}{s}INSERT INTO s SELECT greet(name) FROM visits;"
    ));
    assert!(got.starts_with("4:22: ") && got.contains("greet"), "{got}");
}

#[test]
fn registering_a_udf_under_a_taken_or_invalid_name_is_refused() {
    let mut r = weir_sql::udf::Registry::new();
    r.register_string_fn("greet", |s| s.to_string()).unwrap();
    let err = |e: weir_sql::udf::UdfError| e.to_string();
    assert_eq!(
        err(r
            .register_string_fn("GREET", |s| s.to_string())
            .unwrap_err()),
        "a function named 'greet' is already registered; give one of them another name"
    );
    assert!(
        err(r
            .register_string_fn("upper", |s| s.to_string())
            .unwrap_err())
        .starts_with("'upper' is a built-in function of Weir SQL")
    );
    assert!(
        err(r
            .register_string_fn("tumble", |s| s.to_string())
            .unwrap_err())
        .starts_with("'tumble' is a built-in function")
    );
    assert!(
        err(r
            .register_string_fn("my-fn", |s| s.to_string())
            .unwrap_err())
        .starts_with("'my-fn' is not a valid function name")
    );
    assert_eq!(r.names(), ["greet"]);
}

#[test]
fn temporary_functions_map_sql_names_to_registered_udfs_until_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let sql = format!(
        "{}CREATE TABLE a (x STRING, y STRING, z STRING)
           WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
         CREATE TABLE b (x STRING, z STRING)
           WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
         CREATE TEMPORARY FUNCTION hello AS 'greet' LANGUAGE RUST;
         CREATE TEMPORARY FUNCTION IF NOT EXISTS hello AS 'weighted';
         CREATE TEMPORARY SYSTEM FUNCTION upper AS 'GREET';
         INSERT INTO a SELECT hello(name), upper(name), greet(name) FROM visits WHERE visits > 1;
         DROP TEMPORARY SYSTEM FUNCTION upper;
         DROP TEMPORARY FUNCTION IF EXISTS nothing_here;
         INSERT INTO b SELECT hello(name), upper(name) FROM visits WHERE visits > 1;",
        VISITS_DDL.replace("{in}", &visits(dir.path())),
        a.display(),
        b.display()
    );
    run_with_udfs(&sql);
    // IF NOT EXISTS kept the first mapping; the SYSTEM function shadowed UPPER until dropped.
    assert_eq!(
        output(&a),
        sorted(vec![
            json!({"x": "hi ann", "y": "hi ann", "z": "hi ann"}),
            json!({"x": "hi bob", "y": "hi bob", "z": "hi bob"}),
        ])
    );
    assert_eq!(
        output(&b),
        sorted(vec![
            json!({"x": "hi ann", "z": "ANN"}),
            json!({"x": "hi bob", "z": "BOB"}),
        ])
    );
}

#[test]
fn function_statements_that_cannot_work_are_rejected_naming_what_to_do() {
    let t = VISITS_DDL.replace("{in}", "/nonexistent");
    let s = "CREATE TABLE s (a STRING) WITH ('connector' = 'print');\n";
    let cases: Vec<(String, &str)> = vec![
        (
            "CREATE TEMPORARY FUNCTION f AS 'com.example.Enrich';".to_string(),
            "1:32: no function 'com.example.Enrich' is registered in this worker build; registered: greet, twice, weighted",
        ),
        (
            "CREATE TEMPORARY FUNCTION f AS 'com.example.Enrich' LANGUAGE JAVA;".to_string(),
            "1:62: LANGUAGE JAVA is not supported: Weir runs Rust UDFs registered in the worker build",
        ),
        (
            "CREATE TEMPORARY SYSTEM FUNCTION f AS 'enrich.py'\n  LANGUAGE PYTHON;".to_string(),
            "2:12: LANGUAGE PYTHON is not supported: Weir runs Rust UDFs registered in the worker build",
        ),
        (
            "CREATE TEMPORARY FUNCTION f AS 'greet' USING JAR 'udfs.jar';".to_string(),
            "1:40: USING JAR is not supported: Weir runs Rust UDFs registered in the worker build",
        ),
        (
            "CREATE FUNCTION f AS 'greet';".to_string(),
            "1:1: CREATE FUNCTION (a catalog function) is not supported",
        ),
        (
            "CREATE TEMPORARY FUNCTION upper AS 'greet';".to_string(),
            "1:27: 'upper' is a built-in or registered function, which a TEMPORARY FUNCTION cannot shadow; use CREATE TEMPORARY SYSTEM FUNCTION upper AS …",
        ),
        (
            "CREATE TEMPORARY FUNCTION f AS 'greet';\nCREATE TEMPORARY FUNCTION f AS 'twice';"
                .to_string(),
            "2:27: temporary function 'f' already exists",
        ),
        (
            "DROP TEMPORARY FUNCTION f;".to_string(),
            "1:25: no TEMPORARY FUNCTION named 'f' to drop; add IF EXISTS to ignore that",
        ),
        (
            "CREATE TEMPORARY SYSTEM FUNCTION f AS 'greet';\nDROP TEMPORARY FUNCTION f;"
                .to_string(),
            "2:25: 'f' is a TEMPORARY SYSTEM FUNCTION, not a TEMPORARY FUNCTION",
        ),
        (
            "DROP TABLE t;".to_string(),
            "1:1: only DROP TEMPORARY [SYSTEM] FUNCTION is supported",
        ),
        (
            format!(
                "{t}{s}CREATE TEMPORARY FUNCTION f AS 'greet';\nDROP TEMPORARY FUNCTION f;\nINSERT INTO s SELECT f(name) FROM visits;"
            ),
            "6:22: ",
        ),
    ];
    for (sql, want) in cases {
        let got = udf_plan_error(&sql);
        assert!(
            got.starts_with(want),
            "for\n{sql}\nwant: {want}\ngot:  {got}"
        );
    }
}

#[test]
fn create_table_as_select_takes_the_query_schema_and_runs_in_the_statement_set() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        dir.path().join("a"),
        dir.path().join("b"),
        dir.path().join("c"),
    );
    let sql = format!(
        "{}CREATE TABLE a WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json')
         AS SELECT UPPER(name) AS who, visits * 10 AS points, spend FROM visits WHERE visits > 1;
         CREATE TABLE b (spend DOUBLE, who STRING, points DOUBLE)
           WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json')
         AS SELECT greet(name) AS who, visits AS points, spend FROM visits WHERE name IS NOT NULL;
         CREATE TABLE c (who STRING, points BIGINT)
           WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
         INSERT INTO c SELECT who, points + 1 FROM a_view;",
        VISITS_DDL.replace("{in}", &visits(dir.path())),
        a.display(),
        b.display(),
        c.display()
    )
    // c reads the same rows through a view, in the same job.
    .replace(
        "INSERT INTO c",
        "CREATE VIEW a_view AS SELECT UPPER(name) AS who, visits * 10 AS points FROM visits WHERE visits > 1;\nINSERT INTO c",
    );
    let env = StreamExecutionEnvironment::new();
    let planned = weir_sql::plan_with_udfs(&env, &sql, &test_udfs()).unwrap();
    assert_eq!(planned.pipelines, 3);
    env.execute("ctas").unwrap();
    assert_eq!(
        output(&a),
        sorted(vec![
            json!({"who": "ANN", "points": 30, "spend": 10.0}),
            json!({"who": "BOB", "points": 20, "spend": null}),
        ])
    );
    // The column list is matched by name; BIGINT points widen to the declared DOUBLE.
    assert_eq!(
        output(&b),
        sorted(vec![
            json!({"who": "hi ann", "points": 3.0, "spend": 10.0}),
            json!({"who": "hi bob", "points": 2.0, "spend": null}),
        ])
    );
    assert_eq!(
        output(&c),
        sorted(vec![
            json!({"who": "ANN", "points": 31}),
            json!({"who": "BOB", "points": 21}),
        ])
    );
}

#[test]
fn create_table_as_select_with_a_mismatched_column_list_fails_naming_the_column() {
    let t = VISITS_DDL.replace("{in}", "/nonexistent");
    let w = "WITH ('connector' = 'print')";
    let cases: Vec<(String, &str)> = vec![
        (
            format!(
                "{t}CREATE TABLE o (who STRING, n BIGINT) {w}\nAS SELECT name AS who, visits FROM visits;"
            ),
            "3:29: column 'n' of CREATE TABLE o is not a column of its query, which produces [who, visits]; name the query's columns with AS",
        ),
        (
            format!(
                "{t}CREATE TABLE o (who BIGINT, visits BIGINT) {w}\nAS SELECT name AS who, visits FROM visits;"
            ),
            "3:17: column 'who' of CREATE TABLE o is declared BIGINT but the query produces STRING",
        ),
        (
            format!(
                "{t}CREATE TABLE o (who STRING) {w}\nAS SELECT name AS who, visits FROM visits;"
            ),
            "4:4: the query produces 2 columns [who, visits] but CREATE TABLE o lists 1 [who]",
        ),
        (
            format!(
                "{t}CREATE TABLE o (who STRING, x AS 1) {w}\nAS SELECT name AS who FROM visits;"
            ),
            "3:29: column 'x' of CREATE TABLE o … AS SELECT is computed",
        ),
        (
            format!("{t}CREATE TABLE visits {w} AS SELECT name FROM visits;"),
            "3:14: a table or view named 'visits' already exists",
        ),
        (
            format!("{t}CREATE TABLE o WITH ('connector' = 'datagen') AS SELECT name FROM visits;"),
            "3:22: connector 'datagen' of table 'o' cannot be written to",
        ),
        (
            format!("{t}CREATE TABLE o {w};"),
            "3:14: CREATE TABLE o needs a column list, or AS SELECT … to take the query's columns",
        ),
        (
            format!("{t}CREATE TABLE o {w} AS SELECT nope FROM visits;"),
            "3:55: column 'nope' not found",
        ),
    ];
    for (sql, want) in cases {
        let got = udf_plan_error(&sql);
        assert!(
            got.starts_with(want),
            "for\n{sql}\nwant: {want}\ngot:  {got}"
        );
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[test]
fn proctime_columns_carry_the_wall_clock_when_the_rows_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let sql = format!(
        "CREATE TABLE visits (name STRING, visits BIGINT, spend DOUBLE, pt AS PROCTIME())
           WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
         CREATE TABLE out (name STRING, pt TIMESTAMP(3), ms BIGINT)
           WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
         INSERT INTO out SELECT name, pt, CAST(pt AS BIGINT) FROM visits;",
        visits(dir.path()),
        out.display()
    );
    let before = now_ms();
    run(&sql, Config::default());
    let after = now_ms();
    let rows = output(&out);
    assert_eq!(rows.len(), 3);
    for r in &rows {
        let ms = r["ms"].as_i64().unwrap();
        assert!(
            (before..=after).contains(&ms),
            "{r} not in [{before}, {after}]"
        );
        assert!(
            r["pt"].as_str().unwrap().len() == "2026-01-01 00:00:00.000".len(),
            "{r}"
        );
    }
}

#[test]
fn a_tumbling_window_on_proctime_fires_aligned_windows_that_count_every_row() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    // 60 rows at 100 rows per second: about 0.6 s of processing time, 200 ms windows.
    let sql = format!(
        "CREATE TABLE gen (seq BIGINT, k AS seq % 2, pt AS PROCTIME())
           WITH ('connector' = 'datagen', 'fields.seq.kind' = 'sequence',
                 'fields.seq.start' = '0', 'fields.seq.end' = '59', 'rows-per-second' = '100');
         CREATE TABLE out (k BIGINT, ws BIGINT, we BIGINT, n BIGINT, total BIGINT)
           WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
         INSERT INTO out
         SELECT k, CAST(TUMBLE_START(pt, INTERVAL '200' MILLISECOND) AS BIGINT),
                CAST(TUMBLE_END(pt, INTERVAL '200' MILLISECOND) AS BIGINT), COUNT(*), SUM(seq)
         FROM gen GROUP BY TUMBLE(pt, INTERVAL '200' MILLISECOND), k;",
        out.display()
    );
    let env = StreamExecutionEnvironment::new();
    let planned = weir_sql::plan(&env, &sql).unwrap();
    assert!(
        planned.explain().contains(
            "GroupWindowAggregate: window=TUMBLE(size=200 ms) on processing time keys=[k]"
        ),
        "{}",
        planned.explain()
    );
    let before = now_ms();
    env.execute("proctime").unwrap();
    let after = now_ms();
    let rows = output(&out);
    let field = |r: &Value, f: &str| r[f].as_i64().unwrap();
    // Every row is counted once: 30 even and 30 odd sequence numbers.
    for k in [0, 1] {
        let of_k: Vec<&Value> = rows.iter().filter(|r| field(r, "k") == k).collect();
        assert_eq!(of_k.iter().map(|r| field(r, "n")).sum::<i64>(), 30);
        // 0 + 2 + … + 58 = 870, 1 + 3 + … + 59 = 900
        assert_eq!(
            of_k.iter().map(|r| field(r, "total")).sum::<i64>(),
            [870, 900][k as usize]
        );
    }
    let mut starts: Vec<i64> = rows.iter().map(|r| field(r, "ws")).collect();
    starts.sort();
    starts.dedup();
    assert!(
        starts.len() >= 2,
        "0.6 s of rows span several windows: {rows:?}"
    );
    for r in &rows {
        let (ws, we) = (field(r, "ws"), field(r, "we"));
        assert_eq!(ws % 200, 0, "aligned to the size: {r}");
        assert_eq!(we - ws, 200, "{r}");
        assert!(
            ws >= before - 200 && we <= after + 200,
            "{r} outside the run"
        );
    }
}

#[test]
fn proctime_is_rejected_where_it_cannot_be_a_time_attribute() {
    let s = "CREATE TABLE s (n BIGINT) WITH ('connector' = 'print');\n";
    let cases: Vec<(String, &str)> = vec![
        (
            format!(
                "CREATE TABLE t (a INT, pt AS PROCTIME(), WATERMARK FOR pt AS pt) WITH ('connector' = 'datagen');\n{s}INSERT INTO s SELECT a FROM t;"
            ),
            "1:56: WATERMARK FOR 'pt': 'pt' is a processing-time attribute (PROCTIME())",
        ),
        (
            // An expression over the attribute is a plain timestamp.
            format!(
                "CREATE TABLE t (a INT, pt AS PROCTIME()) WITH ('connector' = 'datagen');\n{s}INSERT INTO s SELECT COUNT(*) FROM (SELECT pt + INTERVAL '1' SECOND AS p2 FROM t)\nGROUP BY TUMBLE(p2, INTERVAL '1' SECOND);"
            ),
            "4:17: TUMBLE's first argument must be the time attribute of its input",
        ),
    ];
    for (sql, want) in cases {
        let got = plan_error(&sql);
        assert!(
            got.starts_with(want),
            "for\n{sql}\nwant: {want}\ngot:  {got}"
        );
    }
}
