//! What the REST API says about a job's vertices (its tasks, i.e. operator chains) beyond the
//! job overview: the plan with its edges, each vertex's subtasks with their counters and
//! rates, their backpressured / idle / busy shares, and their watermarks. Rates and shares
//! are measured between two snapshots of the job's counters at least a second apart
//! ([`Samples`]); before a second has passed, since the job (attempt) started.

use std::collections::{HashMap, VecDeque};
use weir_contract::JobState;
use weir_contract::rest::{
    Plan, PlanInput, PlanNode, SubtaskBackPressure, SubtaskDetails, SubtaskGauges,
    VertexBackPressure, VertexDetails, VertexGauges, VertexMetrics, WatermarkMetric,
};
use weir_engine::runtime::metrics::JobSnapshot;
use weir_engine::runtime::{JobClient, JobTopology};

/// Flink's job type of every Weir job.
pub(crate) const STREAMING: &str = "STREAMING";

/// How far apart the two snapshots of a rate are, at least.
const RATE_WINDOW_MS: u64 = 1000;
/// Snapshots are kept no closer than this, so a busy poller keeps a short queue.
const SAMPLE_SPACING_MS: u64 = 200;

/// Snapshots of each job's counters, taken as requests come, oldest first.
#[derive(Default)]
pub(crate) struct Samples {
    by_job: HashMap<String, VecDeque<JobSnapshot>>,
}

impl Samples {
    /// The job's counters now and the newest snapshot at least [`RATE_WINDOW_MS`] older
    /// (`None` until one is).
    pub(crate) fn measure(&mut self, job: &JobClient) -> (JobSnapshot, Option<JobSnapshot>) {
        let now = job.metrics();
        let earlier = self.add(job.job_id(), &now);
        (now, earlier)
    }

    /// Keeps `now` (unless one was kept less than [`SAMPLE_SPACING_MS`] ago) and returns the
    /// newest kept snapshot at least [`RATE_WINDOW_MS`] older.
    fn add(&mut self, job: &str, now: &JobSnapshot) -> Option<JobSnapshot> {
        let q = self.by_job.entry(job.to_string()).or_default();
        // A restart starts the counters (and the clock) of a new attempt.
        q.retain(|s| s.elapsed_ms <= now.elapsed_ms);
        if q.back()
            .is_none_or(|b| now.elapsed_ms - b.elapsed_ms >= SAMPLE_SPACING_MS)
        {
            q.push_back(now.clone());
        }
        let old_enough = |s: &JobSnapshot| now.elapsed_ms - s.elapsed_ms >= RATE_WINDOW_MS;
        while q.len() > 1 && old_enough(&q[1]) {
            q.pop_front();
        }
        q.front().filter(|s| old_enough(s)).cloned()
    }
}

/// The vertices of a job in the order their tasks appear in its metrics.
pub(crate) fn vertex_names(snapshot: &JobSnapshot) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for t in &snapshot.tasks {
        if !names.contains(&t.name) {
            names.push(t.name.clone());
        }
    }
    names
}

/// A stable 32-hex-digit id for a vertex, as Flink's are (FNV-1a of job id and name).
pub(crate) fn vertex_id(job: &JobClient, name: &str) -> String {
    let hash = |seed: u64| {
        let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed;
        for b in job.job_id().bytes().chain(name.bytes()) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h
    };
    format!("{:016x}{:016x}", hash(0), hash(1))
}

/// The name of the vertex `id` names, if the job has it.
pub(crate) fn vertex_named(job: &JobClient, snapshot: &JobSnapshot, id: &str) -> Option<String> {
    vertex_names(snapshot)
        .into_iter()
        .find(|n| vertex_id(job, n) == id)
}

/// Flink's plan: one node per vertex, with its inputs when the job's topology is known.
pub(crate) fn plan(job: &JobClient, topology: Option<&JobTopology>) -> Plan {
    let nodes = match topology {
        Some(t) => t
            .tasks
            .iter()
            .map(|task| PlanNode {
                id: vertex_id(job, &task.name),
                parallelism: task.parallelism as u64,
                operator: String::new(),
                description: task.name.clone(),
                inputs: task
                    .inputs
                    .iter()
                    .enumerate()
                    .map(|(num, e)| PlanInput {
                        num: num as u64,
                        id: vertex_id(job, &t.tasks[e.from].name),
                        ship_strategy: e.partitioning.clone(),
                        exchange: "pipelined_bounded".into(),
                    })
                    .collect(),
            })
            .collect(),
        None => {
            let snapshot = job.metrics();
            vertex_names(&snapshot)
                .into_iter()
                .map(|name| PlanNode {
                    id: vertex_id(job, &name),
                    parallelism: snapshot.tasks.iter().filter(|t| t.name == name).count() as u64,
                    operator: String::new(),
                    description: name,
                    inputs: Vec::new(),
                })
                .collect()
        }
    };
    Plan {
        jid: job.job_id().to_string(),
        name: job.name().to_string(),
        job_type: STREAMING.into(),
        nodes,
    }
}

/// Time shares of one subtask between two snapshots: (backpressured, idle, busy).
fn shares(
    now: &JobSnapshot,
    earlier: Option<&JobSnapshot>,
    name: &str,
    subtask: usize,
) -> (f64, f64, f64) {
    let find = |s: &JobSnapshot| {
        s.tasks
            .iter()
            .find(|t| t.name == name && t.subtask == subtask)
            .map(|t| (t.backpressured_ms, t.idle_ms))
    };
    let Some((bp, idle)) = find(now) else {
        return (0.0, 0.0, 0.0);
    };
    // A finished subtask does nothing any more: it counts as idle.
    if now
        .tasks
        .iter()
        .any(|t| t.name == name && t.subtask == subtask && t.finished)
    {
        return (0.0, 1.0, 0.0);
    }
    let (bp0, idle0, t0) = earlier
        .and_then(|e| find(e).map(|(b, i)| (b, i, e.elapsed_ms)))
        .unwrap_or((0, 0, 0));
    let dt = now.elapsed_ms.saturating_sub(t0).max(1) as f64;
    let bp = (bp.saturating_sub(bp0) as f64 / dt).min(1.0);
    let idle = (idle.saturating_sub(idle0) as f64 / dt).min(1.0 - bp);
    (bp, idle, (1.0 - bp - idle).max(0.0))
}

/// Time neither backpressured nor idle out of `not_busy` ms, up to now or, once the job has
/// ended, its end (the snapshot's clock runs on after it).
pub(crate) fn busy_ms(job: &JobClient, now: &JobSnapshot, not_busy: u64) -> u64 {
    let elapsed = match job.end_time() {
        Some(end) => now
            .elapsed_ms
            .min(end.saturating_sub(job.start_time()) as u64),
        None => now.elapsed_ms,
    };
    elapsed.saturating_sub(not_busy)
}

/// Flink's backpressure level of a ratio.
fn level(ratio: f64) -> &'static str {
    if ratio <= 0.10 {
        "ok"
    } else if ratio <= 0.5 {
        "low"
    } else {
        "high"
    }
}

/// `/jobs/:jobid/vertices/:vertexid/backpressure`.
pub(crate) fn backpressure(
    now: &JobSnapshot,
    earlier: Option<&JobSnapshot>,
    name: &str,
) -> VertexBackPressure {
    let subtasks: Vec<SubtaskBackPressure> = now
        .tasks
        .iter()
        .filter(|t| t.name == name)
        .map(|t| {
            let (bp, idle, busy) = shares(now, earlier, name, t.subtask);
            SubtaskBackPressure {
                subtask: t.subtask as u64,
                backpressure_level: level(bp).into(),
                ratio: bp,
                idle_ratio: idle,
                busy_ratio: busy,
            }
        })
        .collect();
    let worst = subtasks.iter().map(|s| s.ratio).fold(0.0, f64::max);
    VertexBackPressure {
        status: "ok".into(),
        backpressure_level: level(worst).into(),
        end_timestamp: weir_engine::time::now_ms(),
        subtasks,
    }
}

/// The input watermark of each subtask of a vertex: its first operator's.
fn subtask_watermarks(now: &JobSnapshot, name: &str) -> Vec<(usize, i64)> {
    now.tasks
        .iter()
        .filter(|t| t.name == name)
        .map(|t| {
            let wm = now
                .operators
                .iter()
                .find(|o| o.task == name && o.subtask == t.subtask)
                .map_or(i64::MIN, |o| o.watermark);
            (t.subtask, wm)
        })
        .collect()
}

/// `/jobs/:jobid/vertices/:vertexid/watermarks`.
pub(crate) fn watermarks(now: &JobSnapshot, name: &str) -> Vec<WatermarkMetric> {
    subtask_watermarks(now, name)
        .into_iter()
        .map(|(subtask, wm)| WatermarkMetric {
            id: format!("{subtask}.currentInputWatermark"),
            value: wm.to_string(),
        })
        .collect()
}

/// Bytes the operators of vertex `name` hold in the latest completed checkpoint or
/// savepoint, when the topology names them and one has completed.
fn checkpointed_state_size(
    job: &JobClient,
    topology: Option<&JobTopology>,
    name: &str,
) -> Option<u64> {
    let task = topology?.tasks.iter().find(|t| t.name == name)?;
    let stats = job.checkpoints();
    if stats.last_completed_id.is_none() && stats.last_savepoint.is_none() {
        return None;
    }
    Some(
        task.uids
            .iter()
            .filter_map(|uid| stats.last_operator_sizes.get(uid))
            .sum(),
    )
}

/// `/jobs/:jobid/vertices/:vertexid`; `placement`: the TaskManager id and host per subtask index.
pub(crate) fn details(
    job: &JobClient,
    topology: Option<&JobTopology>,
    now: &JobSnapshot,
    earlier: Option<&JobSnapshot>,
    name: &str,
    placement: &[(String, String)],
) -> VertexDetails {
    let state = crate::server::job_state(job.status());
    let dt_s = |t0: u64| now.elapsed_ms.saturating_sub(t0).max(1) as f64 / 1000.0;
    let wms = subtask_watermarks(now, name);
    let subtasks: Vec<SubtaskDetails> = now
        .tasks
        .iter()
        .filter(|t| t.name == name)
        .map(|t| {
            let then = earlier.and_then(|e| {
                e.tasks
                    .iter()
                    .find(|x| x.name == name && x.subtask == t.subtask)
                    .map(|x| (x.records_in, x.records_out, e.elapsed_ms))
            });
            let (in0, out0, t0) = then.unwrap_or((0, 0, 0));
            let busy = busy_ms(job, now, t.backpressured_ms + t.idle_ms);
            let entries: u64 = now
                .operators
                .iter()
                .filter(|o| o.task == name && o.subtask == t.subtask)
                .map(|o| o.state_entries)
                .sum();
            SubtaskDetails {
                subtask: t.subtask as u64,
                // A cancel stops the tasks: they are not finished but being cancelled.
                status: if t.finished && !state.is_terminal() && state != JobState::Cancelling {
                    JobState::Finished
                } else {
                    state
                },
                attempt: job.restarts(),
                taskmanager_id: placement
                    .get(t.subtask)
                    .map_or(String::new(), |(id, _)| id.clone()),
                host: placement
                    .get(t.subtask)
                    .map_or(String::new(), |(_, host)| host.clone()),
                start_time: job.start_time(),
                end_time: job.end_time().unwrap_or(-1),
                duration: crate::server::duration(job),
                metrics: VertexMetrics {
                    read_records: t.records_in,
                    read_records_complete: true,
                    write_records: t.records_out,
                    write_records_complete: true,
                    accumulated_backpressured_time: t.backpressured_ms,
                    accumulated_idle_time: t.idle_ms,
                    accumulated_busy_time: busy,
                    ..VertexMetrics::default()
                },
                weir: SubtaskGauges {
                    current_input_watermark: wms
                        .iter()
                        .find(|(s, _)| *s == t.subtask)
                        .map_or(i64::MIN, |(_, w)| *w),
                    state_entries: entries,
                    records_in_per_second: t.records_in.saturating_sub(in0) as f64 / dt_s(t0),
                    records_out_per_second: t.records_out.saturating_sub(out0) as f64 / dt_s(t0),
                },
            }
        })
        .collect();
    VertexDetails {
        id: vertex_id(job, name),
        name: name.to_string(),
        parallelism: subtasks.len() as u64,
        now: weir_engine::time::now_ms(),
        subtasks,
        weir: VertexGauges {
            checkpointed_state_size: checkpointed_state_size(job, topology, name),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_engine::runtime::TaskMetricsSnapshot;

    /// A job of one task with two subtasks at `elapsed_ms`, each with (backpressured, idle)
    /// milliseconds so far.
    fn snapshot(elapsed_ms: u64, subtasks: [(u64, u64); 2], finished: bool) -> JobSnapshot {
        JobSnapshot {
            elapsed_ms,
            records_in: 0,
            records_out: 0,
            skipped: 0,
            watermark: i64::MIN,
            operators: Vec::new(),
            tasks: subtasks
                .iter()
                .enumerate()
                .map(|(i, (bp, idle))| TaskMetricsSnapshot {
                    name: "gen".into(),
                    subtask: i,
                    records_in: 0,
                    records_out: 0,
                    backpressured_ms: *bp,
                    idle_ms: *idle,
                    finished: finished && i == 1,
                })
                .collect(),
        }
    }

    #[test]
    fn rates_are_measured_against_a_snapshot_at_least_a_second_old() {
        let mut samples = Samples::default();
        let s = |t| snapshot(t, [(0, 0), (0, 0)], false);
        assert!(samples.add("j", &s(100)).is_none(), "nothing older yet");
        assert!(samples.add("j", &s(900)).is_none());
        assert_eq!(samples.add("j", &s(1150)).unwrap().elapsed_ms, 100);
        // The newest snapshot a second old is used, and older ones are dropped.
        assert_eq!(samples.add("j", &s(2000)).unwrap().elapsed_ms, 900);
        assert_eq!(samples.by_job["j"].front().unwrap().elapsed_ms, 900);
        // A restarted job's counters start again: its old snapshots are forgotten.
        assert!(samples.add("j", &s(300)).is_none());
        assert_eq!(samples.by_job["j"].len(), 1);
    }

    #[test]
    fn shares_of_a_window_add_up_and_set_flinks_levels() {
        let earlier = snapshot(1000, [(100, 800), (0, 0)], false);
        let now = snapshot(3000, [(1900, 900), (200, 0)], false);
        let (bp, idle, busy) = shares(&now, Some(&earlier), "gen", 0);
        assert!(
            (bp - 0.9).abs() < 1e-9 && (idle - 0.05).abs() < 1e-9,
            "{bp} {idle}"
        );
        assert!((bp + idle + busy - 1.0).abs() < 1e-9);
        let v = backpressure(&now, Some(&earlier), "gen");
        assert_eq!(v.backpressure_level, "high", "the worst subtask's level");
        assert_eq!(v.subtasks[1].backpressure_level, "ok", "10% is ok");
        assert_eq!(level(0.11), "low");
        // Without an older snapshot: since the attempt started.
        let (bp, _, _) = shares(&now, None, "gen", 1);
        assert!((bp - 200.0 / 3000.0).abs() < 1e-9);
    }

    #[test]
    fn a_finished_subtask_counts_as_idle() {
        let now = snapshot(3000, [(0, 0), (0, 0)], true);
        assert_eq!(shares(&now, None, "gen", 1), (0.0, 1.0, 0.0));
        assert_eq!(shares(&now, None, "gen", 0), (0.0, 0.0, 1.0));
    }
}
