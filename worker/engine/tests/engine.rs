//! End-to-end behaviour of the local engine: windows, lateness, sessions, keyed state and
//! timers, side outputs, connectors, backpressure, failures, and parallelism-independence.
//! Expected results are computed by hand in the comments next to each input.

use proptest::prelude::*;
use std::time::Duration;
use weir_engine::api::{
    Collector, DataStream, KeyedContext, KeyedProcessFunction, KeyedStream, OutputTag,
    ProcessContext, ProcessFunction, RuntimeContext, StreamExecutionEnvironment,
};
use weir_engine::config::{Config, DecodeErrorPolicy};
use weir_engine::connectors::{CollectSink, DataGen, FileSource, Sink, SinkWriter};
use weir_engine::keygroup::{key_group_for_bytes, serialize_key, subtask_for_key_group};
use weir_engine::runtime::{Rec, SubtaskInfo};
use weir_engine::state::{StateDescriptor, ValueState};
use weir_engine::time::WatermarkStrategy;
use weir_engine::window::{TimeWindow, WindowSpec, Windowed, agg};

/// (key, event time ms, value)
type Ev = (String, i64, i64);

fn ev(k: &str, ts: i64, v: i64) -> Ev {
    (k.to_string(), ts, v)
}

/// An environment that emits a watermark after every record, so lateness is exact.
fn env_with(parallelism: usize, batch: usize) -> StreamExecutionEnvironment {
    let mut c = Config::default();
    c.set("parallelism.default", &parallelism.to_string())
        .unwrap();
    c.set("pipeline.batch-size", &batch.to_string()).unwrap();
    StreamExecutionEnvironment::with_config(c)
}

fn bounded(ms: u64) -> WatermarkStrategy<Ev> {
    WatermarkStrategy::for_bounded_out_of_orderness(Duration::from_millis(ms))
        .with_timestamp_assigner(|e: &Ev| e.1)
}

fn w(start: i64, end: i64) -> TimeWindow {
    TimeWindow { start, end }
}

type CountSum = Windowed<String, (u64, i64)>;

fn count_sum(key: &str, win: TimeWindow, c: u64, s: i64) -> CountSum {
    Windowed {
        key: key.into(),
        window: win,
        value: (c, s),
    }
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

fn sort_windowed(mut v: Vec<CountSum>) -> Vec<CountSum> {
    v.sort_by(|a, b| (&a.key, a.window, a.value).cmp(&(&b.key, b.window, b.value)));
    v
}

fn windowed_job(
    env: &StreamExecutionEnvironment,
    input: Vec<Ev>,
    spec: WindowSpec,
    bound_ms: u64,
) -> weir_engine::connectors::CollectedRecords<CountSum> {
    let (sink, out) = CollectSink::new();
    env.from_collection(input)
        .assign_timestamps_and_watermarks(bounded(bound_ms))
        .key_by(|e: &Ev| e.0.clone())
        .window(spec)
        .aggregate((agg::count(), agg::sum(|e: &Ev| e.2)))
        .sink_to(sink);
    out
}

#[test]
fn tumbling_event_time_windows_count_and_sum_out_of_order_input() {
    let env = env_with(1, 1);
    let input = vec![
        ev("a", 1_000, 1),
        ev("a", 3_000, 2),
        ev("b", 2_500, 5),
        ev("a", 9_000, 3),
        ev("a", 10_500, 4),
        ev("a", 8_000, 6), // 2.5 s late, within the 5 s bound: watermark is 10_500-5_000-1
        ev("b", 21_000, 7),
    ];
    let out = windowed_job(
        &env,
        input,
        WindowSpec::tumbling(Duration::from_secs(10)),
        5_000,
    );
    env.execute("tumbling").unwrap();
    assert_eq!(
        sort_windowed(out.values()),
        vec![
            count_sum("a", w(0, 10_000), 4, 12),
            count_sum("a", w(10_000, 20_000), 1, 4),
            count_sum("b", w(0, 10_000), 1, 5),
            count_sum("b", w(20_000, 30_000), 1, 7),
        ]
    );
    // Results carry the window's last millisecond as their timestamp.
    assert!(out.records().iter().all(|r| r.ts == r.value.window.end - 1));
}

#[test]
fn sliding_windows_put_each_record_in_every_overlapping_window() {
    let env = env_with(1, 1);
    let input = vec![ev("a", 1_000, 1), ev("a", 6_000, 2), ev("a", 12_000, 3)];
    let out = windowed_job(
        &env,
        input,
        WindowSpec::sliding(Duration::from_secs(10), Duration::from_secs(5)),
        60_000,
    );
    env.execute("sliding").unwrap();
    assert_eq!(
        sort_windowed(out.values()),
        vec![
            count_sum("a", w(-5_000, 5_000), 1, 1),
            count_sum("a", w(0, 10_000), 2, 3),
            count_sum("a", w(5_000, 15_000), 2, 5),
            count_sum("a", w(10_000, 20_000), 1, 3),
        ]
    );
}

/// Runs a (count, sum) window aggregate with a late side output over `input`, one record
/// per batch and a watermark (bound 0) after each: returns results and late records.
fn sliced_job(input: Vec<Ev>, spec: WindowSpec, batch: usize) -> (Vec<CountSum>, Vec<Ev>) {
    let env = env_with(1, batch);
    let late: OutputTag<Ev> = OutputTag::new("late");
    let (sink, out) = CollectSink::new();
    let (late_sink, late_out) = CollectSink::new();
    let windows = env
        .from_collection(input)
        .assign_timestamps_and_watermarks(bounded(0))
        .key_by(|e: &Ev| e.0.clone())
        .window(spec)
        .side_output_late_data(&late)
        .aggregate((agg::count(), agg::sum(|e: &Ev| e.2)));
    windows.sink_to(sink);
    windows.get_side_output(&late).sink_to(late_sink);
    env.execute("sliced").unwrap();
    assert!(out.records().iter().all(|r| r.ts == r.value.window.end - 1));
    (out.values(), late_out.values())
}

#[test]
fn hop_windows_merge_their_slices_and_take_a_row_late_for_some_of_its_windows() {
    // Size 6 s, slide 4 s: windows start every 4 s, slices are gcd = 2 s long.
    let spec = WindowSpec::sliding(Duration::from_secs(6), Duration::from_secs(4));
    let input = vec![
        ev("a", 1_000, 1),   // [-4,2) [0,6)
        ev("a", 4_500, 2),   // [0,6) [4,10); watermark 4_499 fires a [-4,2): (1, 1)
        ev("a", 7_000, 4),   // [4,10); watermark 6_999 fires a [0,6): (2, 3)
        ev("a", 5_000, 8),   // [0,6) has fired, [4,10) has not: taken by [4,10) only
        ev("a", 1_500, 16),  // [-4,2) and [0,6) have both fired: late
        ev("b", 9_000, 32),  // [4,10) [8,14)
        ev("a", 12_500, 64), // [8,14) [12,18); watermark 12_499 fires [4,10): a (3, 14), b
    ];
    let (out, late) = sliced_job(input, spec, 1);
    assert_eq!(
        out,
        vec![
            count_sum("a", w(-4_000, 2_000), 1, 1),
            count_sum("a", w(0, 6_000), 2, 3),
            count_sum("a", w(4_000, 10_000), 3, 14),
            count_sum("b", w(4_000, 10_000), 1, 32),
            // End of input, in the order the windows were opened.
            count_sum("b", w(8_000, 14_000), 1, 32),
            count_sum("a", w(8_000, 14_000), 1, 64),
            count_sum("a", w(12_000, 18_000), 1, 64),
        ]
    );
    assert_eq!(late, vec![ev("a", 1_500, 16)]);
}

#[test]
fn times_in_the_gaps_of_sampling_windows_are_passed_over_and_late_only_behind_the_watermark() {
    // Windows of 2 s every 5 s: [0,2) [5,7) [10,12); times in between are in no window.
    let spec = || WindowSpec::sliding(Duration::from_secs(2), Duration::from_secs(5));
    let input = vec![
        ev("a", 500, 1),    // [0,2)
        ev("a", 3_000, 2),  // a gap, ahead of the watermark (499): passed over
        ev("a", 1_500, 4),  // [0,2) fired at watermark 2_999: late
        ev("a", 5_500, 8),  // [5,7)
        ev("a", 4_000, 16), // a gap behind the watermark (5_499): late
        ev("a", 9_000, 32), // a gap, ahead of the watermark: passed over
        ev("a", 10_500, 64),
    ];
    // Sliced (an aggregate without allowed lateness), one record a batch.
    let (out, late) = sliced_job(input.clone(), spec(), 1);
    assert_eq!(
        out,
        vec![
            count_sum("a", w(0, 2_000), 1, 1),
            count_sum("a", w(5_000, 7_000), 1, 8),
            count_sum("a", w(10_000, 12_000), 1, 64),
        ]
    );
    assert_eq!(late, vec![ev("a", 1_500, 4), ev("a", 4_000, 16)]);
    // One batch: every record is on time, the gaps' are passed over.
    let (out, late) = sliced_job(input.clone(), spec(), 100);
    assert_eq!(out[0], count_sum("a", w(0, 2_000), 2, 5));
    assert_eq!(out.len(), 3);
    assert!(late.is_empty(), "{late:?}");
    // Per window (a reduce is not sliced), one record a batch: the same records are late.
    let env = env_with(1, 1);
    let tag: OutputTag<Ev> = OutputTag::new("late");
    let (sink, out) = CollectSink::new();
    let (late_sink, late_out) = CollectSink::new();
    let sums = env
        .from_collection(input)
        .assign_timestamps_and_watermarks(bounded(0))
        .key_by(|e: &Ev| e.0.clone())
        .window(spec())
        .side_output_late_data(&tag)
        .reduce(|x, y| (x.0.clone(), x.1, x.2 + y.2));
    sums.sink_to(sink);
    sums.get_side_output(&tag).sink_to(late_sink);
    env.execute("sampling").unwrap();
    let sums: Vec<(i64, i64)> = out
        .values()
        .iter()
        .map(|r| (r.window.start, r.value.2))
        .collect();
    assert_eq!(sums, vec![(0, 1), (5_000, 8), (10_000, 64)]);
    assert_eq!(
        late_out.values(),
        vec![ev("a", 1_500, 4), ev("a", 4_000, 16)]
    );
}

#[test]
fn cumulate_windows_merge_their_steps_and_take_a_row_late_for_some_of_its_windows() {
    // Periods of 6 s growing by 2 s steps: [0,2) [0,4) [0,6), then [6,8) [6,10) [6,12).
    let spec = WindowSpec::cumulating(Duration::from_secs(6), Duration::from_secs(2));
    let input = vec![
        ev("a", 500, 1),      // [0,2) [0,4) [0,6)
        ev("a", 3_000, 2),    // [0,4) [0,6); watermark 2_999 fires a [0,2): (1, 1)
        ev("a", 2_500, 4),    // out of order but on time for [0,4) and [0,6)
        ev("a", 4_500, 8),    // [0,6); watermark 4_499 fires a [0,4): (3, 7)
        ev("a", 1_000, 16),   // [0,2) and [0,4) have fired, [0,6) has not: taken by it
        ev("a", 3_500, 32),   // [0,4) has fired, [0,6) has not
        ev("b", 5_000, 64),   // [0,6)
        ev("a", 6_500, 128),  // watermark 6_499 fires [0,6): a (6, 63), then b (1, 64)
        ev("a", 200, 256),    // every window of [0,6) has fired: late
        ev("b", 11_000, 512), // [6,12)
    ];
    let (out, late) = sliced_job(input, spec, 1);
    assert_eq!(
        out,
        vec![
            count_sum("a", w(0, 2_000), 1, 1),
            count_sum("a", w(0, 4_000), 3, 7),
            count_sum("a", w(0, 6_000), 6, 63),
            count_sum("b", w(0, 6_000), 1, 64),
            // Watermark 10_999 after b@11000, then end of input.
            count_sum("a", w(6_000, 8_000), 1, 128),
            count_sum("a", w(6_000, 10_000), 1, 128),
            count_sum("a", w(6_000, 12_000), 1, 128),
            count_sum("b", w(6_000, 12_000), 1, 512),
        ]
    );
    assert_eq!(late, vec![ev("a", 200, 256)]);
}

#[test]
fn sliced_window_aggregates_emit_what_per_window_processing_emits_in_the_same_order() {
    // Disorder up to 3 s against a bound of 0: many rows are late for some of their windows,
    // some for all. `process` keeps per-window state, `aggregate` per-slice state.
    let input: Vec<Ev> = (0..3_000)
        .map(|i| {
            let ts = i * 37 + (i * 7919) % 3_000 + if i % 97 == 0 { -20_000 } else { 0 };
            ev(&format!("k{}", i % 5), ts, i)
        })
        .collect();
    for spec in [
        WindowSpec::sliding(Duration::from_secs(10), Duration::from_secs(4)),
        WindowSpec::sliding(Duration::from_secs(2), Duration::from_millis(500)),
        WindowSpec::cumulating(Duration::from_secs(8), Duration::from_secs(2))
            .with_offset(Duration::from_millis(300)),
    ] {
        for batch in [1, 64] {
            let (sliced, sliced_late) = sliced_job(input.clone(), spec, batch);
            let env = env_with(1, batch);
            let late: OutputTag<Ev> = OutputTag::new("late");
            let (sink, out) = CollectSink::new();
            let (late_sink, late_out) = CollectSink::new();
            let windows = env
                .from_collection(input.clone())
                .assign_timestamps_and_watermarks(bounded(0))
                .key_by(|e: &Ev| e.0.clone())
                .window(spec)
                .side_output_late_data(&late)
                .process(|k: &String, win: &TimeWindow, items: &[Ev], out| {
                    let sum = items.iter().map(|e| e.2).sum();
                    out.collect(count_sum(k, *win, items.len() as u64, sum));
                    Ok(())
                });
            windows.sink_to(sink);
            windows.get_side_output(&late).sink_to(late_sink);
            env.execute("per-window").unwrap();
            let per_window = out.values();
            assert!(per_window.len() > 100, "{spec:?}: {}", per_window.len());
            assert!(!sliced_late.is_empty(), "{spec:?}: some rows are late");
            assert_eq!(sliced, per_window, "{spec:?} in batches of {batch}");
            assert_eq!(sliced_late, late_out.values(), "{spec:?} late rows");
        }
    }
}

#[test]
fn session_windows_merge_when_a_record_bridges_the_gap() {
    let env = env_with(1, 1);
    let input = vec![
        ev("a", 1_000, 1),
        ev("a", 3_000, 2),  // joins [1000, 6000) -> [1000, 8000)
        ev("a", 20_000, 3), // new session [20000, 25000)
        ev("a", 12_000, 4), // new session [12000, 17000)
        ev("a", 16_000, 5), // [16000, 21000) touches both: merged [12000, 25000)
        ev("b", 2_000, 6),
    ];
    let out = windowed_job(
        &env,
        input,
        WindowSpec::session(Duration::from_secs(5)),
        30_000,
    );
    env.execute("sessions").unwrap();
    assert_eq!(
        sort_windowed(out.values()),
        vec![
            count_sum("a", w(1_000, 8_000), 2, 3),
            count_sum("a", w(12_000, 25_000), 3, 12),
            count_sum("b", w(2_000, 7_000), 1, 6),
        ]
    );
}

#[test]
fn allowed_lateness_refires_windows_and_later_records_go_to_the_late_side_output() {
    let env = env_with(1, 1);
    let late: OutputTag<Ev> = OutputTag::new("late");
    let (sink, out) = CollectSink::new();
    let (late_sink, late_out) = CollectSink::new();
    let input = vec![
        ev("a", 1_000, 1),
        ev("a", 12_000, 2), // watermark 11_999: [0,10000) fires with (1, 1)
        ev("a", 2_000, 3),  // late, but before cleanup at 9_999 + 5_000: fires again with (2, 4)
        ev("a", 16_000, 4), // watermark 15_999 passes cleanup 14_999: [0,10000) is purged
        ev("a", 3_000, 5),  // too late for any window: side output
    ];
    let windows = env
        .from_collection(input)
        .assign_timestamps_and_watermarks(bounded(0))
        .key_by(|e: &Ev| e.0.clone())
        .window(WindowSpec::tumbling(Duration::from_secs(10)))
        .allowed_lateness(Duration::from_secs(5))
        .side_output_late_data(&late)
        .aggregate((agg::count(), agg::sum(|e: &Ev| e.2)));
    windows.sink_to(sink);
    windows.get_side_output(&late).sink_to(late_sink);
    env.execute("lateness").unwrap();
    assert_eq!(
        out.values(),
        vec![
            count_sum("a", w(0, 10_000), 1, 1),
            count_sum("a", w(0, 10_000), 2, 4),
            count_sum("a", w(10_000, 20_000), 2, 6),
        ]
    );
    assert_eq!(
        late_out.records(),
        vec![Rec {
            ts: 3_000,
            value: ev("a", 3_000, 5)
        }]
    );
}

/// `stream` keyed by each event's name, with a key writer for the name's bytes if `writer`.
fn by_name(stream: DataStream<Ev>, writer: bool) -> KeyedStream<String, Ev> {
    let keyed = stream.key_by(|e: &Ev| e.0.clone());
    if writer {
        keyed.with_key_bytes(|e: &Ev, buf| serialize_key(&e.0.as_str(), buf))
    } else {
        keyed
    }
}

#[test]
fn a_key_writer_gives_the_windows_the_key_function_gives() {
    // Keys in runs and interleaved, a late record that re-fires a window (its key is built
    // from the record then), on a per-window (tumbling) and a sliced (hop) operator.
    let input = vec![
        ev("a", 1_000, 1),
        ev("a", 2_000, 2),
        ev("bb", 2_500, 3),
        ev("a", 3_000, 4),
        ev("bb", 12_000, 5),
        ev("a", 4_000, 6), // late for [0, 10000), which fires again
        ev("", 13_000, 7),
        ev("a", 14_000, 8),
    ];
    let run = |spec: WindowSpec, lateness: u64, batch: usize, writer: bool| {
        let env = env_with(1, batch);
        let (sink, out) = CollectSink::new();
        by_name(
            env.from_collection(input.clone())
                .assign_timestamps_and_watermarks(bounded(0)),
            writer,
        )
        .window(spec)
        .allowed_lateness(Duration::from_secs(lateness))
        .aggregate((agg::count(), agg::sum(|e: &Ev| e.2)))
        .sink_to(sink);
        env.execute("key writer").unwrap();
        sort_windowed(out.values())
    };
    let tumbling = || WindowSpec::tumbling(Duration::from_secs(10));
    // One record a batch: the watermark advances after each, so the late record is late.
    assert_eq!(
        run(tumbling(), 5, 1, true),
        sort_windowed(vec![
            count_sum("", w(10_000, 20_000), 1, 7),
            count_sum("a", w(0, 10_000), 3, 7),
            count_sum("a", w(0, 10_000), 4, 13),
            count_sum("a", w(10_000, 20_000), 1, 8),
            count_sum("bb", w(0, 10_000), 1, 3),
            count_sum("bb", w(10_000, 20_000), 1, 5),
        ])
    );
    // Without allowed lateness, the hop windows keep per-slice state.
    let hop = || WindowSpec::sliding(Duration::from_secs(10), Duration::from_secs(5));
    assert_eq!(run(hop(), 0, 1, true).len(), 10);
    for batch in [1, 3, 100] {
        assert_eq!(
            run(tumbling(), 5, batch, true),
            run(tumbling(), 5, batch, false),
            "batch {batch}"
        );
        assert_eq!(
            run(hop(), 0, batch, true),
            run(hop(), 0, batch, false),
            "batch {batch}"
        );
    }
}

#[test]
fn a_key_writer_gives_keyed_process_functions_the_key_function_s_keys_and_state() {
    // Keys in runs and interleaved: each record's running sum must be its own key's.
    let input = vec![
        ev("a", 1, 1),
        ev("a", 2, 2),
        ev("bb", 3, 10),
        ev("a", 4, 3),
        ev("", 5, 100),
        ev("bb", 6, 20),
        ev("bb", 7, 30),
        ev("a", 8, 4),
    ];
    let run = |batch: usize, writer: bool| {
        let env = env_with(1, batch);
        let (sink, out) = CollectSink::new();
        by_name(env.from_collection(input.clone()), writer)
            .reduce(|x, y| (x.0.clone(), y.1, x.2 + y.2))
            .sink_to(sink);
        env.execute("key writer").unwrap();
        out.values()
    };
    let expected = vec![
        ev("a", 1, 1),
        ev("a", 2, 3),
        ev("bb", 3, 10),
        ev("a", 4, 6),
        ev("", 5, 100),
        ev("bb", 6, 30),
        ev("bb", 7, 60),
        ev("a", 8, 10),
    ];
    for batch in [1, 3, 100] {
        assert_eq!(run(batch, true), expected, "batch {batch}");
        assert_eq!(run(batch, false), expected, "batch {batch}");
    }
}

#[test]
fn late_records_without_a_side_output_are_counted_as_dropped() {
    let env = env_with(1, 1);
    let input = vec![ev("a", 1_000, 1), ev("a", 20_000, 2), ev("a", 2_000, 3)];
    let out = windowed_job(
        &env,
        input,
        WindowSpec::tumbling(Duration::from_secs(10)),
        0,
    );
    let result = env.execute("dropped").unwrap();
    assert_eq!(out.values().len(), 2);
    assert_eq!(
        result.metrics.skipped, 1,
        "the late record is accounted for, not silently lost"
    );
}

#[test]
fn late_records_inside_a_batch_refire_their_window_one_by_one_while_on_time_records_fold_together()
{
    // Batches of 4 records; the watermark (bound 0) follows each batch.
    let env = env_with(1, 4);
    let late: OutputTag<Ev> = OutputTag::new("late");
    let (sink, out) = CollectSink::new();
    let (late_sink, late_out) = CollectSink::new();
    let input = vec![
        // Batch 1, all on time. Watermark 11_999 after it: [0,10000) fires for a, then b.
        ev("a", 1_000, 1),
        ev("a", 2_000, 2),
        ev("b", 1_500, 10),
        ev("a", 12_000, 3),
        // Batch 2: three records late for [0,10000) (cleanup at 14_999) each fire it again,
        // in batch order; a@13000 is on time for [10000,20000). Watermark 12_999.
        ev("a", 3_000, 4),
        ev("a", 13_000, 5),
        ev("a", 4_000, 6),
        ev("b", 5_000, 20),
        // Batch 3: b@9000 is still within lateness: b's window fires a third time.
        // Watermark 29_999: [10000,20000) fires for a with 4 records, [0,10000) is purged.
        ev("a", 16_000, 7),
        ev("c", 30_000, 1),
        ev("a", 17_000, 8),
        ev("b", 9_000, 9),
        // Batch 4: a@2500 is too late for any window (side output); a@25000 opens
        // [20000,30000) behind the watermark but within lateness: it fires at once.
        ev("a", 2_500, 100),
        ev("c", 31_000, 2),
        ev("a", 25_000, 3),
    ];
    let windows = env
        .from_collection(input)
        .assign_timestamps_and_watermarks(bounded(0))
        .key_by(|e: &Ev| e.0.clone())
        .window(WindowSpec::tumbling(Duration::from_secs(10)))
        .allowed_lateness(Duration::from_secs(5))
        .side_output_late_data(&late)
        .aggregate((agg::count(), agg::sum(|e: &Ev| e.2)));
    windows.sink_to(sink);
    windows.get_side_output(&late).sink_to(late_sink);
    env.execute("batched-lateness").unwrap();
    assert_eq!(
        out.values(),
        vec![
            count_sum("a", w(0, 10_000), 2, 3),
            count_sum("b", w(0, 10_000), 1, 10),
            count_sum("a", w(0, 10_000), 3, 7),
            count_sum("a", w(0, 10_000), 4, 13),
            count_sum("b", w(0, 10_000), 2, 30),
            count_sum("b", w(0, 10_000), 3, 39),
            count_sum("a", w(10_000, 20_000), 4, 23),
            count_sum("a", w(20_000, 30_000), 1, 3),
            // End of input.
            count_sum("c", w(30_000, 40_000), 2, 3),
        ]
    );
    assert_eq!(
        late_out.values(),
        vec![ev("a", 2_500, 100)],
        "only the record too late for every window"
    );
}

#[test]
fn a_window_sees_its_records_in_arrival_order_however_many_share_a_batch() {
    // Out-of-order input within the bound, few keys, sliding windows: with 256-record
    // batches most records of a window arrive in the same batch as others of their key.
    let input: Vec<Ev> = (0..2_000)
        .map(|i| ev(&format!("k{}", i % 3), i * 10 + (i * 7919) % 400, i))
        .collect();
    let run = |batch: usize| {
        let env = env_with(1, batch);
        let (sink, out) = CollectSink::new();
        env.from_collection(input.clone())
            .assign_timestamps_and_watermarks(bounded(500))
            .key_by(|e: &Ev| e.0.clone())
            .window(WindowSpec::sliding(
                Duration::from_secs(2),
                Duration::from_millis(500),
            ))
            .process(|k: &String, w: &TimeWindow, items: &[Ev], out| {
                out.collect((k.clone(), *w, items.iter().map(|e| e.2).collect::<Vec<_>>()));
                Ok(())
            })
            .sink_to(sink);
        env.execute("order").unwrap();
        sorted(out.values())
    };
    let one = run(1);
    let batched = run(256);
    // Windows start every 500 ms from -1_500 to 20_000: 44 per key.
    assert_eq!(one.len(), 3 * 44);
    // Values are arrival numbers: a window's records in arrival order are increasing.
    for (k, w, v) in &batched {
        assert!(
            v.windows(2).all(|p| p[0] < p[1]),
            "{k} {w:?} got its records out of arrival order: {v:?}"
        );
    }
    assert_eq!(batched, one);
}

#[test]
fn processing_time_windows_are_flushed_at_end_of_input() {
    let env = env_with(2, 64);
    let (sink, out) = CollectSink::new();
    env.from_collection(
        (0..1_000)
            .map(|i| ev(&format!("k{}", i % 3), 0, 1))
            .collect::<Vec<_>>(),
    )
    .key_by(|e: &Ev| e.0.clone())
    .window(WindowSpec::tumbling(Duration::from_secs(3600)).processing_time())
    .aggregate(agg::count())
    .sink_to(sink);
    env.execute("proctime").unwrap();
    let results = out.values();
    let total: u64 = results.iter().map(|r| r.value).sum();
    assert_eq!(total, 1_000, "every record counted exactly once");
    assert!(
        results
            .iter()
            .all(|r| r.window.end - r.window.start == 3_600_000 && r.window.start % 3_600_000 == 0)
    );
    let keys = sorted(results.iter().map(|r| r.key.clone()).collect::<Vec<_>>());
    assert!(
        keys.len() >= 3 && keys.contains(&"k0".to_string()) && keys.contains(&"k2".to_string())
    );
}

#[test]
fn sliced_processing_time_hop_windows_count_each_record_in_both_of_its_windows_at_end_of_input() {
    let env = env_with(2, 64);
    let (sink, out) = CollectSink::new();
    env.from_collection(
        (0..1_000)
            .map(|i| ev(&format!("k{}", i % 3), 0, 1))
            .collect::<Vec<_>>(),
    )
    .key_by(|e: &Ev| e.0.clone())
    .window(
        WindowSpec::sliding(Duration::from_secs(3_600), Duration::from_secs(1_800))
            .processing_time(),
    )
    .aggregate(agg::count())
    .sink_to(sink);
    env.execute("proctime-hop").unwrap();
    let results = out.values();
    let total: u64 = results.iter().map(|r| r.value).sum();
    assert_eq!(total, 2_000, "every record counted in its two windows");
    assert!(
        results
            .iter()
            .all(|r| r.window.end - r.window.start == 3_600_000 && r.window.start % 1_800_000 == 0)
    );
}

/// The seed's example: counts per key in ValueState, emitted and cleared by a timer.
#[derive(Clone, Default)]
struct CountWithTimeout {
    count: ValueState<u64>,
}

impl KeyedProcessFunction for CountWithTimeout {
    type Key = String;
    type In = Ev;
    type Out = (String, u64);
    fn open(&mut self, ctx: &mut RuntimeContext<'_>) -> weir_engine::Result<()> {
        self.count = ctx.value_state(StateDescriptor::new("count"));
        Ok(())
    }
    fn process_element(
        &mut self,
        e: Ev,
        ctx: &mut KeyedContext<'_, String>,
        _: &mut Collector<(String, u64)>,
    ) -> weir_engine::Result<()> {
        let c = self.count.value(ctx).unwrap_or(0);
        if c == 0 {
            ctx.timer_service().register_event_time_timer(e.1 + 60_000);
        }
        self.count.update(ctx, c + 1);
        Ok(())
    }
    fn on_timer(
        &mut self,
        _ts: i64,
        ctx: &mut KeyedContext<'_, String>,
        out: &mut Collector<(String, u64)>,
    ) -> weir_engine::Result<()> {
        out.collect((
            ctx.current_key().clone(),
            self.count.value(ctx).unwrap_or(0),
        ));
        self.count.clear(ctx);
        Ok(())
    }
}

#[test]
fn keyed_process_function_counts_in_value_state_and_clears_from_timers() {
    let env = env_with(1, 1);
    let (sink, out) = CollectSink::new();
    let input = vec![
        ev("a", 0, 0),     // a's timer at 60_000
        ev("b", 5_000, 0), // b's timer at 65_000
        ev("a", 10_000, 0),
        ev("c", 61_000, 0), // watermark 60_999 fires a's timer: (a, 2); c's timer at 121_000
        ev("a", 70_000, 0), // watermark 69_999 fires b: (b, 1); a starts over, timer at 130_000
    ]; // end of input fires the rest: (c, 1) at 121_000, (a, 1) at 130_000
    env.from_collection(input)
        .assign_timestamps_and_watermarks(bounded(0))
        .key_by(|e: &Ev| e.0.clone())
        .process(CountWithTimeout::default())
        .sink_to(sink);
    env.execute("timers").unwrap();
    let got: Vec<(i64, String, u64)> = out
        .records()
        .into_iter()
        .map(|r| (r.ts, r.value.0, r.value.1))
        .collect();
    assert_eq!(
        got,
        vec![
            (60_000, "a".into(), 2),
            (65_000, "b".into(), 1),
            (121_000, "c".into(), 1),
            (130_000, "a".into(), 1),
        ]
    );
}

#[derive(Clone)]
struct SplitOdd(OutputTag<i64>);

impl ProcessFunction for SplitOdd {
    type In = i64;
    type Out = i64;
    fn process_element(
        &mut self,
        v: i64,
        ctx: &mut ProcessContext<'_>,
        out: &mut Collector<i64>,
    ) -> weir_engine::Result<()> {
        if v % 2 == 0 {
            out.collect(v);
        } else {
            ctx.output(&self.0, v * 100);
        }
        Ok(())
    }
}

#[test]
fn process_function_routes_records_to_a_side_output() {
    let env = env_with(2, 3);
    let odd = OutputTag::<i64>::new("odd");
    let (evens, evens_out) = CollectSink::new();
    let (odds, odds_out) = CollectSink::new();
    let split = env
        .from_collection((1..=10).collect::<Vec<i64>>())
        .process(SplitOdd(odd.clone()));
    split.sink_to(evens);
    split.get_side_output(&odd).sink_to(odds);
    env.execute("split").unwrap();
    assert_eq!(sorted(evens_out.values()), vec![2, 4, 6, 8, 10]);
    assert_eq!(sorted(odds_out.values()), vec![100, 300, 500, 700, 900]);
}

#[test]
fn map_filter_flat_map_union_and_rebalance_compose() {
    let env = env_with(3, 2);
    let (sink, out) = CollectSink::new();
    let a = env.from_collection(vec![1i64, 2, 3]).map(|x| x * 10); // 10 20 30
    let b = env
        .from_collection(vec![4i64, 5])
        .set_parallelism(1)
        .flat_map(|x| vec![x, -x]); // 4 -4 5 -5
    a.union(&[b]).rebalance().filter(|x| *x != 20).sink_to(sink);
    env.execute("compose").unwrap();
    assert_eq!(sorted(out.values()), vec![-5, -4, 4, 5, 10, 30]);
}

#[test]
fn a_union_read_through_a_keyed_exchange_runs_no_task_and_its_windows_see_every_input() {
    // Two timed sources at parallelism 2, unioned and windowed by key: the union runs no task
    // (each source hashes its records straight to the window), and every window still fires
    // once, after the watermark of both inputs (of both subtasks each) passed it.
    let env = env_with(2, 3);
    let timed = |input: Vec<Ev>| {
        env.from_collection(input)
            .assign_timestamps_and_watermarks(bounded(0))
    };
    let a = timed(
        (0..40)
            .map(|i| ev(["x", "y", "z"][i % 3], i as i64 * 500, 1))
            .collect(),
    );
    let b = timed(
        (0..40)
            .map(|i| ev(["x", "y"][i % 2], i as i64 * 500, 10))
            .collect(),
    );
    let (sink, out) = CollectSink::new();
    a.union(&[b])
        .key_by(|e: &Ev| e.0.clone())
        .window(WindowSpec::tumbling(Duration::from_secs(10)))
        .aggregate((agg::count(), agg::sum(|e: &Ev| e.2)))
        .sink_to(sink);
    let topology = env.topology().unwrap();
    assert!(
        topology
            .tasks
            .iter()
            .all(|t| !t.operators.iter().any(|o| o == "Union")),
        "{topology:?}"
    );
    let window = topology
        .tasks
        .iter()
        .find(|t| t.operators[0].starts_with("Window"))
        .expect("a window task");
    let kinds: Vec<&str> = window
        .inputs
        .iter()
        .map(|e| e.partitioning.as_str())
        .collect();
    assert_eq!(kinds, ["HASH", "HASH"], "{topology:?}");
    env.execute("union by key").unwrap();
    let got: Vec<(String, i64, u64, i64)> = sorted(
        out.values()
            .into_iter()
            .map(|w| (w.key, w.window.start, w.value.0, w.value.1))
            .collect(),
    );
    // Per 10 s window (20 records of each source): a gives x/y/z 7/7/6 or 7/6/7 ...,
    // b gives x and y 10 each.
    let mut expected = Vec::new();
    for start in [0i64, 10_000] {
        let first = (start / 500) as usize;
        for k in ["x", "y", "z"] {
            let from_a = (first..first + 20)
                .filter(|i| ["x", "y", "z"][i % 3] == k)
                .count();
            let from_b = (first..first + 20)
                .filter(|i| ["x", "y"][i % 2] == k)
                .count();
            let n = (from_a + from_b) as u64;
            expected.push((k.to_string(), start, n, (from_a + 10 * from_b) as i64));
        }
    }
    assert_eq!(got, sorted(expected));
}

#[test]
fn keyed_rolling_reduce_emits_running_totals_per_key() {
    let env = env_with(2, 1);
    let (sink, out) = CollectSink::new();
    env.from_collection(vec![
        ev("a", 0, 1),
        ev("b", 0, 10),
        ev("a", 0, 2),
        ev("a", 0, 3),
    ])
    .set_parallelism(1)
    .key_by(|e: &Ev| e.0.clone())
    .reduce(|x, y| (x.0.clone(), 0, x.2 + y.2))
    .sink_to(sink);
    env.execute("reduce").unwrap();
    let mut a: Vec<i64> = out
        .values()
        .into_iter()
        .filter(|e| e.0 == "a")
        .map(|e| e.2)
        .collect();
    a.sort();
    assert_eq!(a, vec![1, 3, 6]);
}

#[derive(Clone, Default)]
struct WhereAmI {
    subtask: usize,
}

impl KeyedProcessFunction for WhereAmI {
    type Key = String;
    type In = String;
    type Out = (String, usize);
    fn open(&mut self, ctx: &mut RuntimeContext<'_>) -> weir_engine::Result<()> {
        self.subtask = ctx.subtask_index();
        Ok(())
    }
    fn process_element(
        &mut self,
        k: String,
        _: &mut KeyedContext<'_, String>,
        out: &mut Collector<(String, usize)>,
    ) -> weir_engine::Result<()> {
        out.collect((k, self.subtask));
        Ok(())
    }
}

#[test]
fn key_by_routes_every_key_to_the_subtask_owning_its_key_group() {
    let env = env_with(4, 7);
    let (sink, out) = CollectSink::new();
    let keys: Vec<String> = (0..200).map(|i| format!("user_{}", i % 50)).collect();
    env.from_collection(keys)
        .key_by(|k: &String| k.clone())
        .process(WhereAmI::default())
        .sink_to(sink);
    env.execute("routing").unwrap();
    let got = out.values();
    assert_eq!(got.len(), 200);
    let mut buf = Vec::new();
    let mut used = std::collections::BTreeSet::new();
    for (k, subtask) in got {
        serialize_key(&k, &mut buf);
        assert_eq!(
            subtask,
            subtask_for_key_group(key_group_for_bytes(&buf, 128), 4, 128),
            "key {k}"
        );
        used.insert(subtask);
    }
    assert_eq!(used.len(), 4, "50 keys spread over all 4 subtasks");
}

#[derive(Debug, Clone, serde::Deserialize, serde::Serialize, PartialEq, PartialOrd)]
struct Row {
    user_id: String,
    amount: f64,
    ts: i64,
}

fn write(dir: &std::path::Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

#[test]
fn file_sources_read_json_lines_and_csv_split_across_subtasks() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "a.jsonl",
        "{\"user_id\":\"u1\",\"amount\":1.5,\"ts\":1}\n\n{\"user_id\":\"u2\",\"amount\":2.0,\"ts\":2}\n",
    );
    write(
        dir.path(),
        "b.jsonl",
        "{\"user_id\":\"u3\",\"amount\":3.0,\"ts\":3}\n",
    );
    write(dir.path(), ".hidden", "not read");
    let csv = tempfile::tempdir().unwrap();
    write(
        csv.path(),
        "rows.csv",
        "user_id,amount,ts\nu4,4.25,4\n\"u,5\",5,5\n",
    );
    let env = env_with(2, 100);
    let (sink, out) = CollectSink::new();
    let json = env.from_source(FileSource::<Row>::json_lines(dir.path()), None, "json");
    let csv = env.from_source(FileSource::<Row>::csv(csv.path()), None, "csv");
    json.union(&[csv]).sink_to(sink);
    env.execute("files").unwrap();
    let mut got = out.values();
    got.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let ids: Vec<&str> = got.iter().map(|r| r.user_id.as_str()).collect();
    assert_eq!(ids, vec!["u,5", "u1", "u2", "u3", "u4"]);
    assert_eq!(got[4].amount, 4.25);
}

#[test]
fn lines_across_the_read_buffer_s_end_and_a_last_line_without_newline_are_read_whole() {
    // 3 MiB of lines of varying length: many of them cross the reader's 256 KiB buffer.
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::new();
    let n = 20_000;
    for i in 0..n {
        let pad = "x".repeat(i % 300);
        text.push_str(&format!(
            "{{\"user_id\":\"u{i}{pad}\",\"amount\":{i}.5,\"ts\":{i}}}\n"
        ));
        if i % 1000 == 0 {
            text.push_str("  \n");
        }
    }
    text.push_str("{\"user_id\":\"last\",\"amount\":0,\"ts\":-1}");
    write(dir.path(), "big.jsonl", &text);
    let env = env_with(1, 100);
    let (sink, out) = CollectSink::<Row>::new();
    env.from_source(FileSource::<Row>::json_lines(dir.path()), None, "json")
        .sink_to(sink);
    env.execute("big").unwrap();
    let got = out.values();
    assert_eq!(got.len(), n + 1);
    for (i, r) in got.iter().take(n).enumerate() {
        assert_eq!(r.ts, i as i64);
        assert_eq!(r.user_id, format!("u{i}{}", "x".repeat(i % 300)));
        assert_eq!(r.amount, i as f64 + 0.5);
    }
    assert_eq!(got[n].user_id, "last");
}

/// `n` JSON lines of varying length (some blank), record `i` with `ts` = `i`.
fn varied_lines(n: usize) -> String {
    let mut text = String::new();
    for i in 0..n {
        let pad = "x".repeat(i * 7 % 200);
        text.push_str(&format!(
            "{{\"user_id\":\"u{i}{pad}\",\"amount\":{i}.5,\"ts\":{i}}}\n"
        ));
        if i % 500 == 0 {
            text.push('\n');
        }
    }
    text
}

#[test]
fn parallel_subtasks_share_one_file_by_byte_ranges_and_read_each_line_once() {
    // ~1.3 MB: cut into ranges of 64 KiB that mostly start inside a line.
    let dir = tempfile::tempdir().unwrap();
    let n = 10_000;
    write(dir.path(), "one.jsonl", &varied_lines(n));
    let env = env_with(3, 100);
    let (sink, out) = CollectSink::<Row>::new();
    env.from_source(FileSource::<Row>::json_lines(dir.path()), None, "json")
        .sink_to(sink);
    let result = env.execute("ranges").unwrap();
    let mut got = out.values();
    got.sort_by_key(|r| r.ts);
    assert_eq!(got.len(), n, "every line once");
    for (i, r) in got.iter().enumerate() {
        assert_eq!(r.ts, i as i64);
        assert_eq!(r.user_id, format!("u{i}{}", "x".repeat(i * 7 % 200)));
    }
    let per_subtask: Vec<u64> = result
        .metrics
        .operators
        .iter()
        .filter(|o| o.name == "json")
        .map(|o| o.records_out)
        .collect();
    assert_eq!(per_subtask.len(), 3);
    for (s, records) in per_subtask.iter().enumerate() {
        assert!(
            *records > n as u64 / 5,
            "subtask {s} read {records} of {n} records: {per_subtask:?}"
        );
    }
}

#[test]
fn a_corrupt_record_in_a_later_byte_range_is_reported_at_its_line_in_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let n = 10_000;
    let mut text = varied_lines(n);
    // Near the end, so a subtask other than the first reads it, from a range starting
    // inside the file: the line number counts the lines of the ranges before it.
    let bad_line = text.lines().count() - 3;
    let mut lines: Vec<&str> = text.lines().collect();
    lines[bad_line - 1] = "{\"user_id\":\"bad\",\"amount\":\"lots\",\"ts\":0}";
    text = lines.join("\n") + "\n";
    write(dir.path(), "in.jsonl", &text);
    let env = env_with(2, 100);
    let (sink, _out) = CollectSink::<Row>::new();
    env.from_source(FileSource::<Row>::json_lines(dir.path()), None, "json")
        .sink_to(sink);
    let msg = weir_engine::report(&env.execute("corrupt").unwrap_err());
    assert!(msg.contains(&format!("in.jsonl:{bad_line}")), "{msg}");
    assert!(
        msg.contains("invalid type: string \"lots\", expected f64"),
        "{msg}"
    );
}

#[test]
fn a_corrupt_record_fails_the_job_naming_file_line_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "in.jsonl",
        "{\"user_id\":\"u1\",\"amount\":1,\"ts\":1}\n{\"user_id\":\"u2\",\"amount\":\"lots\",\"ts\":2}\n",
    );
    let env = env_with(1, 10);
    let (sink, _out) = CollectSink::<Row>::new();
    env.from_source(FileSource::<Row>::json_lines(dir.path()), None, "json")
        .sink_to(sink);
    let err = env.execute("corrupt").unwrap_err();
    let msg = weir_engine::report(&err);
    assert!(msg.contains("in.jsonl:2"), "{msg}");
    assert!(
        msg.contains("invalid type: string \"lots\", expected f64"),
        "{msg}"
    );
    assert!(msg.contains("task 'json -> Sink'"), "{msg}");
}

#[test]
fn skip_policy_drops_corrupt_records_but_counts_them() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "in.jsonl",
        "{\"user_id\":\"u1\",\"amount\":1,\"ts\":1}\nnot json\n{\"user_id\":\"u3\",\"amount\":3,\"ts\":3}\n",
    );
    let mut c = Config::default();
    c.set("pipeline.decode-error-policy", "skip").unwrap();
    let env = StreamExecutionEnvironment::with_config(c);
    let (sink, out) = CollectSink::<Row>::new();
    env.from_source(FileSource::<Row>::json_lines(dir.path()), None, "json")
        .sink_to(sink);
    let result = env.execute("skip").unwrap();
    assert_eq!(out.values().len(), 2);
    assert_eq!(result.metrics.skipped, 1);
    assert_eq!(result.metrics.records_in, 2);

    // The source-level policy overrides the job's.
    let env = env_with(1, 10);
    let (sink, _) = CollectSink::<Row>::new();
    env.from_source(
        FileSource::<Row>::json_lines(dir.path()).on_decode_error(DecodeErrorPolicy::Skip),
        None,
        "json",
    )
    .sink_to(sink);
    assert_eq!(env.execute("skip2").unwrap().metrics.skipped, 1);
}

struct SlowSink;
struct SlowWriter;

impl Sink<u64> for SlowSink {
    fn create_writer(&self, _: &SubtaskInfo) -> weir_engine::Result<Box<dyn SinkWriter<u64>>> {
        Ok(Box::new(SlowWriter))
    }
}

impl SinkWriter<u64> for SlowWriter {
    fn write(&mut self, _records: Vec<Rec<u64>>) -> weir_engine::Result<()> {
        std::thread::sleep(Duration::from_millis(2));
        Ok(())
    }
}

#[test]
fn a_slow_sink_backpressures_the_source_and_bounds_records_in_flight() {
    let mut c = Config::default();
    c.set("pipeline.batch-size", "100").unwrap();
    c.set("pipeline.channel-capacity", "2").unwrap();
    let env = StreamExecutionEnvironment::with_config(c);
    env.from_source(DataGen::new(1, |g| g.index).bounded(40_000), None, "gen")
        .map(|x| x + 1)
        .sink_to(SlowSink)
        .start_new_chain();
    let handle = env.execute_async("backpressure").unwrap();
    let mut max_in_flight = 0;
    while !handle.is_finished() {
        let m = handle.metrics();
        max_in_flight = max_in_flight.max(m.records_in - m.records_out);
        std::thread::sleep(Duration::from_millis(5));
    }
    let result = handle.wait().unwrap();
    assert_eq!(result.metrics.records_out, 40_000);
    // One channel of 2 batches, one batch being written, one being sent: <= 4 batches of 100.
    assert!(
        max_in_flight <= 400,
        "records in flight grew to {max_in_flight}"
    );
    let source = result
        .metrics
        .tasks
        .iter()
        .find(|t| t.name.starts_with("gen"))
        .unwrap();
    let ratio = source.backpressured_ms as f64 / result.elapsed_ms as f64;
    assert!(
        ratio > 0.5,
        "source should spend most of its time backpressured, was {ratio:.2}"
    );
}

#[test]
fn user_errors_and_panics_fail_the_job_with_the_task_name() {
    let env = env_with(2, 10);
    let (sink, _) = CollectSink::<i64>::new();
    env.from_collection((0..100).collect::<Vec<i64>>())
        .map(|x| if x == 42 { panic!("bad record {x}") } else { x })
        .name("Explode")
        .sink_to(sink);
    let msg = weir_engine::report(&env.execute("panic").unwrap_err());
    assert!(
        msg.contains("Explode") && msg.contains("bad record 42"),
        "{msg}"
    );
}

#[test]
fn event_time_windows_without_timestamps_fail_with_advice() {
    let env = env_with(1, 10);
    let (sink, _) = CollectSink::new();
    env.from_collection(vec![ev("a", 1, 1)])
        .key_by(|e: &Ev| e.0.clone())
        .window(WindowSpec::tumbling(Duration::from_secs(1)))
        .aggregate(agg::count())
        .sink_to(sink);
    let msg = weir_engine::report(&env.execute("nots").unwrap_err());
    assert!(
        msg.contains("without an event timestamp")
            && msg.contains("assign_timestamps_and_watermarks"),
        "{msg}"
    );
}

#[test]
fn a_job_without_a_sink_is_rejected_before_it_starts() {
    let env = env_with(1, 10);
    env.from_collection(vec![1]).map(|x| x + 1);
    let msg = env.execute("nosink").unwrap_err().to_string();
    assert!(msg.contains("no sink"), "{msg}");
}

/// Runs tumbling, sliding and session windows over the same input at a given parallelism.
fn all_windows(input: &[Ev], parallelism: usize) -> Vec<(u8, CountSum)> {
    let env = env_with(parallelism, 7);
    let mut outs = Vec::new();
    for (i, spec) in [
        WindowSpec::tumbling(Duration::from_secs(1)),
        WindowSpec::sliding(Duration::from_secs(2), Duration::from_millis(500)),
        WindowSpec::session(Duration::from_millis(700)),
    ]
    .into_iter()
    .enumerate()
    {
        outs.push((i as u8, windowed_job(&env, input.to_vec(), spec, 1_000)));
    }
    env.execute("prop").unwrap();
    let mut all: Vec<(u8, CountSum)> = outs
        .into_iter()
        .flat_map(|(i, o)| o.values().into_iter().map(move |v| (i, v)))
        .collect();
    all.sort_by(|a, b| {
        (a.0, &a.1.key, a.1.window, a.1.value).cmp(&(b.0, &b.1.key, b.1.window, b.1.value))
    });
    all
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// Disorder stays under the 1 s bound, so no record is late at any parallelism and the
    /// results must be identical.
    #[test]
    fn results_are_identical_at_parallelism_1_and_4(
        rows in prop::collection::vec((0u8..6, 0i64..900, -50i64..50), 1..300)
    ) {
        let input: Vec<Ev> = rows.iter().enumerate()
            .map(|(i, (k, jitter, v))| (format!("k{k}"), i as i64 * 100 + jitter, *v))
            .collect();
        let one = all_windows(&input, 1);
        let four = all_windows(&input, 4);
        prop_assert!(!one.is_empty());
        prop_assert_eq!(one, four);
    }
}

/// Emits its records once, then stays open forever without data (an unbounded source that
/// went quiet).
struct HoldOpen<T>(Vec<T>);
struct HoldOpenReader<T>(Vec<T>);

impl<T: Clone + Send + Sync + 'static> weir_engine::connectors::Source<T> for HoldOpen<T> {
    fn create_reader(
        &self,
        _: &SubtaskInfo,
    ) -> weir_engine::Result<Box<dyn weir_engine::connectors::SourceReader<T>>> {
        Ok(Box::new(HoldOpenReader(self.0.clone())))
    }
}

impl<T: Send> weir_engine::connectors::SourceReader<T> for HoldOpenReader<T> {
    fn poll(&mut self, _max: usize) -> weir_engine::Result<weir_engine::connectors::ReaderPoll<T>> {
        if self.0.is_empty() {
            return Ok(weir_engine::connectors::ReaderPoll::Pending(10));
        }
        let recs = self
            .0
            .drain(..)
            .map(|value| Rec {
                ts: weir_engine::time::NO_TIMESTAMP,
                value,
            })
            .collect();
        Ok(weir_engine::connectors::ReaderPoll::Records(recs))
    }
}

fn wait_for<T: Clone>(
    out: &weir_engine::connectors::CollectedRecords<T>,
    n: usize,
    within: Duration,
) -> Vec<T> {
    let start = std::time::Instant::now();
    while out.values().len() < n && start.elapsed() < within {
        std::thread::sleep(Duration::from_millis(10));
    }
    out.values()
}

fn idle_job(
    idleness: Option<Duration>,
) -> (
    weir_engine::runtime::JobHandle,
    weir_engine::connectors::CollectedRecords<CountSum>,
) {
    let env = env_with(1, 1);
    let (sink, out) = CollectSink::new();
    let active = env.from_source(
        HoldOpen(vec![
            ev("a", 1_000, 1),
            ev("a", 2_000, 2),
            ev("a", 15_000, 3),
        ]),
        Some(bounded(0)),
        "active",
    );
    let mut quiet_strategy = bounded(0);
    if let Some(d) = idleness {
        quiet_strategy = quiet_strategy.with_idleness(d);
    }
    let quiet = env.from_source(HoldOpen(Vec::<Ev>::new()), Some(quiet_strategy), "quiet");
    active
        .union(&[quiet])
        .key_by(|e: &Ev| e.0.clone())
        .window(WindowSpec::tumbling(Duration::from_secs(10)))
        .aggregate((agg::count(), agg::sum(|e: &Ev| e.2)))
        .sink_to(sink);
    (env.execute_async("idle").unwrap(), out)
}

#[test]
fn an_idle_input_stops_holding_back_the_watermark() {
    // Without idleness the quiet input's watermark (none) holds every window back.
    let (job, out) = idle_job(None);
    assert!(
        wait_for(&out, 1, Duration::from_millis(600)).is_empty(),
        "nothing may fire while an input is silent"
    );
    job.cancel();
    assert!(matches!(job.wait(), Err(weir_engine::Error::Task { .. })));

    // With idleness, the active input's watermark (14_999) alone fires [0, 10000).
    let (job, out) = idle_job(Some(Duration::from_millis(100)));
    let got = wait_for(&out, 1, Duration::from_secs(10));
    assert_eq!(got, vec![count_sum("a", w(0, 10_000), 2, 3)]);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        out.values().len(),
        1,
        "[10000, 20000) waits for watermark 19_999"
    );
    job.cancel();
    let _ = job.wait();
}

#[derive(Clone, Default)]
struct PingLater;

impl KeyedProcessFunction for PingLater {
    type Key = String;
    type In = Ev;
    type Out = (String, bool, Option<i64>);
    fn process_element(
        &mut self,
        _: Ev,
        ctx: &mut KeyedContext<'_, String>,
        _: &mut Collector<Self::Out>,
    ) -> weir_engine::Result<()> {
        let mut timers = ctx.timer_service();
        let now = timers.current_processing_time();
        timers.register_processing_time_timer(now + 50);
        Ok(())
    }
    fn on_timer(
        &mut self,
        _: i64,
        ctx: &mut KeyedContext<'_, String>,
        out: &mut Collector<Self::Out>,
    ) -> weir_engine::Result<()> {
        let processing = ctx.time_domain() == Some(weir_engine::api::TimeDomain::ProcessingTime);
        out.collect((ctx.current_key().clone(), processing, ctx.timestamp()));
        Ok(())
    }
}

#[test]
fn processing_time_timers_fire_on_the_wall_clock_while_the_job_runs() {
    let env = env_with(2, 10);
    let (sink, out) = CollectSink::new();
    env.from_source(
        HoldOpen(vec![ev("a", 0, 0), ev("b", 0, 0), ev("a", 0, 0)]),
        None,
        "src",
    )
    .key_by(|e: &Ev| e.0.clone())
    .process(PingLater)
    .sink_to(sink);
    let job = env.execute_async("proc-timers").unwrap();
    // a and b may live in different subtasks, so a's two timers can fire before b's.
    let start = std::time::Instant::now();
    while !["a", "b"].iter().all(|k| {
        out.values()
            .iter()
            .any(|g: &(String, bool, Option<i64>)| g.0 == *k)
    }) && start.elapsed() < Duration::from_secs(10)
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(100));
    let got = sorted(out.values());
    job.cancel();
    let _ = job.wait();
    // Each of the 2 source subtasks emits every event: a's timer is registered 4 times and
    // b's twice; registrations in the same millisecond coalesce, so each key fires at least
    // once and at most that often.
    let fired = |k: &str| got.iter().filter(|g| g.0 == k).count();
    assert!(
        (1..=4).contains(&fired("a")) && (1..=2).contains(&fired("b")),
        "{got:?}"
    );
    assert_eq!(fired("a") + fired("b"), got.len(), "{got:?}");
    assert!(
        got.iter()
            .all(|(_, processing, ts)| *processing && ts.is_none()),
        "{got:?}"
    );
    assert!(got.iter().any(|g| g.0 == "a") && got.iter().any(|g| g.0 == "b"));
}

// ---- interval joins --------------------------------------------------------------------

/// A record of the interval join tests' one source: (side: 0 left / 1 right, key, event
/// time, id). Both inputs come from one source, so their order is the source's.
type JoinEv = (u8, String, i64, i64);

/// Joins the left and right records of `input` on their key with `right - left` in
/// `[lower, upper]`, full outer, on `state.backend.type: backend`; returns (left id, right
/// id) pairs, `None` for the padded side of an unmatched row, sorted.
fn interval_join(
    input: Vec<JoinEv>,
    bounds: (i64, i64),
    bound_ms: u64,
    parallelism: usize,
    backend: &str,
) -> Vec<(Option<i64>, Option<i64>)> {
    interval_join_cached(input, bounds, bound_ms, parallelism, backend, None)
}

/// [`interval_join`] with `state.backend.rocksdb.write-cache.entries: write_cache` (rows the
/// rocksdb backend keeps in memory before it moves the oldest to RocksDB).
fn interval_join_cached(
    input: Vec<JoinEv>,
    (lower, upper): (i64, i64),
    bound_ms: u64,
    parallelism: usize,
    backend: &str,
    write_cache: Option<usize>,
) -> Vec<(Option<i64>, Option<i64>)> {
    use weir_engine::join::IntervalJoinFunction;
    #[derive(Clone)]
    struct Ids;
    impl IntervalJoinFunction for Ids {
        type Left = JoinEv;
        type Right = JoinEv;
        type Out = (Option<i64>, Option<i64>);
        fn join(
            &self,
            l: &JoinEv,
            r: &JoinEv,
            out: &mut Collector<Self::Out>,
        ) -> weir_engine::Result<bool> {
            out.collect((Some(l.3), Some(r.3)));
            Ok(true)
        }
        fn left_unmatched(
            &self,
            l: JoinEv,
            out: &mut Collector<Self::Out>,
        ) -> weir_engine::Result<()> {
            out.collect((Some(l.3), None));
            Ok(())
        }
        fn right_unmatched(
            &self,
            r: JoinEv,
            out: &mut Collector<Self::Out>,
        ) -> weir_engine::Result<()> {
            out.collect((None, Some(r.3)));
            Ok(())
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let env = env_with(parallelism, 1);
    let mut c = env.config();
    c.set("state.backend.type", backend).unwrap();
    c.set(
        "state.backend.rocksdb.localdir",
        &dir.path().display().to_string(),
    )
    .unwrap();
    if let Some(n) = write_cache {
        c.set("state.backend.rocksdb.write-cache.entries", &n.to_string())
            .unwrap();
    }
    let env = StreamExecutionEnvironment::with_config(c);
    let events = env.from_collection(input).assign_timestamps_and_watermarks(
        WatermarkStrategy::for_bounded_out_of_orderness(Duration::from_millis(bound_ms))
            .with_timestamp_assigner(|e: &JoinEv| e.2),
    );
    let left = events.filter(|e| e.0 == 0).key_by(|e: &JoinEv| e.1.clone());
    let right = events.filter(|e| e.0 == 1).key_by(|e: &JoinEv| e.1.clone());
    let (sink, out) = CollectSink::new();
    left.interval_join(&right)
        .between(lower, upper)
        .left_outer()
        .right_outer()
        .process(Ids)
        .sink_to(sink);
    env.execute("interval join").unwrap();
    sorted(out.values())
}

fn jev(side: u8, k: &str, ts: i64, id: i64) -> JoinEv {
    (side, k.to_string(), ts, id)
}

#[test]
fn an_interval_join_pairs_rows_within_bounds_and_pads_unmatched_rows_on_either_backend() {
    // Payments (right) 0..=10 ms after their order (left); watermark = max time - 20 - 1.
    let input = vec![
        jev(0, "a", 100, 1),
        jev(0, "a", 105, 2),
        jev(1, "a", 104, 10), // joins a@100 (4 ms later), not a@105 (1 ms before it)
        jev(0, "b", 110, 3),
        jev(1, "a", 115, 11), // joins a@105 (10 ms: the upper bound is inclusive), not a@100
        jev(1, "b", 140, 12), // 30 ms after b@110: joins nothing
        jev(0, "c", 200, 4),  // watermark 179: b@110 and b@140 expire unmatched
        jev(1, "d", 300, 13), // watermark 279: c@200 expires unmatched
        jev(0, "d", 295, 7),  // out of order but in time: joins d@300, which still waits
        jev(0, "a", 120, 5),  // late (it could only join rows up to 130 < watermark 279)
    ];
    let expected = vec![
        (None, Some(12)),
        (Some(1), Some(10)),
        (Some(2), Some(11)),
        (Some(3), None),
        (Some(4), None),
        (Some(5), None),
        (Some(7), Some(13)),
    ];
    for backend in ["hashmap", "rocksdb"] {
        for p in [1, 2] {
            assert_eq!(
                interval_join(input.clone(), (0, 10), 20, p, backend),
                expected,
                "{backend} at parallelism {p}"
            );
        }
    }
}

#[test]
fn an_interval_join_with_negative_bounds_joins_rows_that_came_before() {
    // right - left in [-5, -2]: a payment 2..=5 ms before its order.
    let input = vec![
        jev(1, "a", 10, 10),
        jev(1, "a", 14, 11),
        jev(0, "a", 16, 1), // 16-14 = 2 ✓, 16-10 = 6 ✗
        jev(0, "a", 15, 2), // 15-10 = 5 ✓, 15-14 = 1 ✗
    ];
    for backend in ["hashmap", "rocksdb"] {
        assert_eq!(
            interval_join(input.clone(), (-5, -2), 50, 1, backend),
            vec![(Some(1), Some(11)), (Some(2), Some(10))],
            "{backend}"
        );
    }
}

/// Every (left, right) pair with equal keys and `right - left` in the bounds, and every row
/// in no pair padded: what a join without late rows must give.
fn brute_force_join(
    input: &[JoinEv],
    (lower, upper): (i64, i64),
) -> Vec<(Option<i64>, Option<i64>)> {
    let (left, right): (Vec<&JoinEv>, Vec<&JoinEv>) = input.iter().partition(|e| e.0 == 0);
    let mut out = Vec::new();
    for l in &left {
        for r in &right {
            if l.1 == r.1 && (lower..=upper).contains(&(r.2 - l.2)) {
                out.push((Some(l.3), Some(r.3)));
            }
        }
    }
    for l in &left {
        if !out.iter().any(|p| p.0 == Some(l.3)) {
            out.push((Some(l.3), None));
        }
    }
    for r in &right {
        if !out.iter().any(|p| p.1 == Some(r.3)) {
            out.push((None, Some(r.3)));
        }
    }
    sorted(out)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]

    /// Disorder stays within the watermark's bound, so no row is late: both layouts, at any
    /// parallelism, must give exactly the brute-force join. Enough rows to fill buckets past
    /// the size where they index their keys.
    #[test]
    fn an_interval_join_without_late_rows_gives_the_brute_force_join(
        rows in prop::collection::vec((0u8..2, 0u8..4, 0i64..3, 0i64..40), 50..600),
        lower in -2500i64..500,
        span in 0i64..3000,
    ) {
        let mut base = 0;
        let input: Vec<JoinEv> = rows.iter().enumerate().map(|(i, (side, k, step, jitter))| {
            base += step * 7;
            (*side, format!("k{k}"), base + jitter, i as i64)
        }).collect();
        let bounds = (lower, lower + span);
        let expected = brute_force_join(&input, bounds);
        for (backend, p) in [("hashmap", 1), ("hashmap", 3), ("rocksdb", 2)] {
            let got = interval_join(input.clone(), bounds, 40, p, backend);
            prop_assert_eq!(&got, &expected, "{} at parallelism {}", backend, p);
        }
        // Rows beyond a write cache of 8 per subtask wait in RocksDB only: probed, marked
        // matched and expired there.
        let got = interval_join_cached(input.clone(), bounds, 40, 2, "rocksdb", Some(8));
        prop_assert_eq!(&got, &expected, "rocksdb with a write cache of 8 rows");
    }
}
