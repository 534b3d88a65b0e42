//! What the REST API says about a job's checkpoints: the counts, summary and history of
//! `/jobs/:jobid/checkpoints`, one checkpoint with its per-vertex breakdown
//! (`/checkpoints/details/:checkpointid`) and one vertex's part of it per subtask
//! (`.../subtasks/:vertexid`), in Flink's shapes. The engine records each subtask's
//! acknowledgement ([`SubtaskCheckpointStats`]); the per-vertex figures are sums and maxima
//! of those.

use crate::vertices;
use weir_contract::rest::{
    CheckpointAlignment, CheckpointAlignmentSummary, CheckpointCounts, CheckpointDuration,
    CheckpointDurationSummary, CheckpointState, CheckpointStatistics, CheckpointSummary,
    CheckpointTimes, CheckpointingStatistics, LatestCheckpoints, MinMaxAvg, RestoredCheckpoint,
    SubtaskAcknowledgement, SubtaskCheckpointStatistics, TaskCheckpointDetails,
    TaskCheckpointStatistics, TaskCheckpointSummary,
};
use weir_engine::runtime::{CheckpointRecord, CheckpointStatus, JobClient, SubtaskCheckpointStats};

/// The job's vertices as a checkpoint's breakdown names them: `(name, id, parallelism)`.
pub(crate) struct Vertices(Vec<(String, String, u64)>);

impl Vertices {
    /// The vertices of the job's current (or last) attempt.
    pub(crate) fn of(job: &JobClient) -> Self {
        let snapshot = job.metrics();
        let list = vertices::vertex_names(&snapshot)
            .into_iter()
            .map(|name| {
                let n = snapshot.tasks.iter().filter(|t| t.name == name).count() as u64;
                let id = vertices::vertex_id(job, &name);
                (name, id, n)
            })
            .collect();
        Vertices(list)
    }

    /// The name and parallelism of the vertex `id`.
    pub(crate) fn named(&self, id: &str) -> Option<(&str, u64)> {
        self.0
            .iter()
            .find(|(_, i, _)| i == id)
            .map(|(name, _, n)| (name.as_str(), *n))
    }

    fn subtasks(&self) -> u64 {
        self.0.iter().map(|(_, _, n)| n).sum()
    }
}

/// The record of checkpoint `id` if the job still remembers it (its history, latest
/// savepoint or latest failure).
pub(crate) fn find(job: &JobClient, id: u64) -> Option<CheckpointRecord> {
    let stats = job.checkpoints();
    stats
        .history
        .iter()
        .find(|r| r.id == id)
        .or(stats.last_savepoint.as_ref().filter(|r| r.id == id))
        .or(stats.last_failed.as_ref().filter(|r| r.id == id))
        .cloned()
}

/// Flink's `CheckpointStatistics` of one checkpoint or savepoint, with its `tasks`.
pub(crate) fn record_json(vertices: &Vertices, r: &CheckpointRecord) -> CheckpointStatistics {
    let end = r.end_timestamp.unwrap_or(-1);
    let (status, class_name) = state(r);
    let failed = r.status == CheckpointStatus::Failed;
    let tasks = vertices
        .0
        .iter()
        .map(|(name, id, n)| (id.clone(), task_json(r, status, name, *n)))
        .collect();
    CheckpointStatistics {
        class_name: class_name.into(),
        id: r.id,
        status,
        is_savepoint: r.is_savepoint,
        savepoint_format: r.is_savepoint.then(|| "CANONICAL".to_string()),
        checkpoint_type: checkpoint_type(r.is_savepoint).into(),
        trigger_timestamp: r.trigger_timestamp,
        latest_ack_timestamp: r
            .subtasks
            .iter()
            .map(|s| s.ack_timestamp)
            .max()
            .unwrap_or(end),
        state_size: r.full_size_bytes.max(r.size_bytes),
        checkpointed_size: r.size_bytes,
        end_to_end_duration: r.end_timestamp.map_or(-1, |e| e - r.trigger_timestamp),
        alignment_buffered: 0,
        processed_data: 0,
        persisted_data: r.subtasks.iter().map(|s| s.persisted_data).sum(),
        num_subtasks: vertices.subtasks(),
        num_acknowledged_subtasks: r.subtasks.len() as u64,
        tasks,
        weir: times(&r.subtasks.iter().collect::<Vec<_>>()),
        external_path: r.external_path.clone(),
        discarded: false,
        failure_timestamp: failed.then_some(end),
        failure_message: if failed { r.failure.clone() } else { None },
    }
}

/// A checkpoint's state and Flink's statistics class for it.
fn state(r: &CheckpointRecord) -> (CheckpointState, &'static str) {
    match r.status {
        CheckpointStatus::InProgress => {
            (CheckpointState::InProgress, ".PendingCheckpointStatistics")
        }
        CheckpointStatus::Completed => {
            (CheckpointState::Completed, ".CompletedCheckpointStatistics")
        }
        CheckpointStatus::Failed => (CheckpointState::Failed, ".FailedCheckpointStatistics"),
    }
}

/// The subtasks of vertex `name` that acknowledged checkpoint `r`, by index.
fn acknowledged<'a>(r: &'a CheckpointRecord, name: &str) -> Vec<&'a SubtaskCheckpointStats> {
    let mut acks: Vec<_> = r.subtasks.iter().filter(|s| s.task == name).collect();
    acks.sort_by_key(|s| s.subtask);
    acks
}

fn times(acks: &[&SubtaskCheckpointStats]) -> CheckpointTimes {
    CheckpointTimes {
        alignment_duration: acks.iter().map(|s| s.alignment_ms).max().unwrap_or(0),
        start_delay: acks.iter().map(|s| s.start_delay_ms).max().unwrap_or(0),
    }
}

/// Vertex `name`'s part of checkpoint `r` (of status `status`), over its `n` subtasks.
fn task_json(
    r: &CheckpointRecord,
    status: CheckpointState,
    name: &str,
    n: u64,
) -> TaskCheckpointStatistics {
    let acks = acknowledged(r, name);
    let latest = acks.iter().map(|s| s.ack_timestamp).max();
    TaskCheckpointStatistics {
        id: r.id,
        status: if acks.len() as u64 >= n {
            CheckpointState::Completed
        } else {
            status
        },
        latest_ack_timestamp: latest.unwrap_or(-1),
        checkpointed_size: acks.iter().map(|s| s.checkpointed_size).sum(),
        state_size: acks.iter().map(|s| s.state_size).sum(),
        end_to_end_duration: latest.map_or(-1, |t| t - r.trigger_timestamp),
        alignment_buffered: 0,
        processed_data: 0,
        persisted_data: acks.iter().map(|s| s.persisted_data).sum(),
        num_subtasks: n,
        num_acknowledged_subtasks: acks.len() as u64,
        weir: times(&acks),
    }
}

/// `.../checkpoints/details/:checkpointid/subtasks/:vertexid`: vertex `name` (of `n`
/// subtasks) in checkpoint `r`.
pub(crate) fn task_details(r: &CheckpointRecord, name: &str, n: u64) -> TaskCheckpointDetails {
    let (status, _) = state(r);
    let acks = acknowledged(r, name);
    let aborted = r.status == CheckpointStatus::Failed;
    let subtasks = (0..n)
        .map(|index| {
            let ack = acks.iter().find(|s| s.subtask as u64 == index);
            SubtaskCheckpointStatistics {
                index,
                status: if ack.is_some() {
                    "completed"
                } else {
                    "pending_or_failed"
                }
                .into(),
                acknowledged: ack.map(|s| SubtaskAcknowledgement {
                    ack_timestamp: s.ack_timestamp,
                    end_to_end_duration: s.ack_timestamp - r.trigger_timestamp,
                    state_size: s.state_size,
                    checkpointed_size: s.checkpointed_size,
                    checkpoint: CheckpointDuration {
                        sync: s.sync_ms,
                        async_: s.async_ms,
                    },
                    alignment: CheckpointAlignment {
                        buffered: 0,
                        processed: 0,
                        persisted: s.persisted_data,
                        duration: s.alignment_ms,
                    },
                    start_delay: s.start_delay_ms,
                    unaligned_checkpoint: s.unaligned,
                    aborted,
                }),
            }
        })
        .collect();
    let stat = |f: &dyn Fn(&SubtaskCheckpointStats) -> i64| {
        min_max_avg(acks.iter().map(|s| f(s)).collect())
    };
    TaskCheckpointDetails {
        task: task_json(r, status, name, n),
        summary: TaskCheckpointSummary {
            checkpointed_size: stat(&|s| s.checkpointed_size as i64),
            state_size: stat(&|s| s.state_size as i64),
            end_to_end_duration: stat(&|s| s.ack_timestamp - r.trigger_timestamp),
            checkpoint_duration: CheckpointDurationSummary {
                sync: stat(&|s| s.sync_ms as i64),
                async_: stat(&|s| s.async_ms as i64),
            },
            alignment: CheckpointAlignmentSummary {
                buffered: stat(&|_| 0),
                processed: stat(&|_| 0),
                persisted: stat(&|s| s.persisted_data as i64),
                duration: stat(&|s| s.alignment_ms as i64),
            },
            start_delay: stat(&|s| s.start_delay_ms as i64),
        },
        subtasks,
    }
}

fn min_max_avg(values: Vec<i64>) -> MinMaxAvg {
    let n = values.len().max(1) as i64;
    MinMaxAvg {
        min: values.iter().min().copied().unwrap_or(0),
        max: values.iter().max().copied().unwrap_or(0),
        avg: values.iter().sum::<i64>() / n,
    }
}

fn checkpoint_type(is_savepoint: bool) -> &'static str {
    if is_savepoint {
        "SAVEPOINT"
    } else {
        "CHECKPOINT"
    }
}

/// `/jobs/:jobid/checkpoints`.
pub(crate) fn checkpoints(job: &JobClient) -> CheckpointingStatistics {
    let s = job.checkpoints();
    let vertices = Vertices::of(job);
    let completed: Vec<&CheckpointRecord> = s
        .history
        .iter()
        .filter(|r| r.status == CheckpointStatus::Completed)
        .collect();
    let stat = |f: &dyn Fn(&CheckpointRecord) -> i64| {
        min_max_avg(completed.iter().map(|r| f(r)).collect())
    };
    let latest_completed = s
        .history
        .iter()
        .rev()
        .find(|r| !r.is_savepoint && r.status == CheckpointStatus::Completed)
        .map(|r| record_json(&vertices, r))
        .or_else(|| {
            // Older than the history: what the counters remember.
            s.last_completed_id.map(|id| CheckpointStatistics {
                class_name: ".CompletedCheckpointStatistics".into(),
                id,
                status: CheckpointState::Completed,
                checkpoint_type: checkpoint_type(false).into(),
                trigger_timestamp: -1,
                latest_ack_timestamp: -1,
                external_path: s.last_completed_path.clone(),
                state_size: s.last_size_bytes,
                checkpointed_size: s.last_size_bytes,
                end_to_end_duration: s.last_duration_ms as i64,
                ..CheckpointStatistics::default()
            })
        });
    let restored = s.last_restore.as_ref().map(|(path, ts)| {
        let id = path
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .and_then(weir_contract::layout::checkpoint_number);
        RestoredCheckpoint {
            id: id.unwrap_or(0),
            restore_timestamp: *ts,
            is_savepoint: id.is_none(),
            external_path: path.clone(),
        }
    });
    CheckpointingStatistics {
        counts: CheckpointCounts {
            restored: s.restored,
            total: s.triggered,
            in_progress: s.in_progress(),
            completed: s.completed + s.savepoints_completed,
            failed: s.failed,
        },
        summary: CheckpointSummary {
            state_size: stat(&|r| r.full_size_bytes.max(r.size_bytes) as i64),
            checkpointed_size: stat(&|r| r.size_bytes as i64),
            end_to_end_duration: stat(&|r| {
                r.end_timestamp.unwrap_or(r.trigger_timestamp) - r.trigger_timestamp
            }),
        },
        latest: LatestCheckpoints {
            completed: latest_completed,
            savepoint: s.last_savepoint.as_ref().map(|r| record_json(&vertices, r)),
            failed: s.last_failed.as_ref().map(|r| record_json(&vertices, r)),
            restored,
        },
        history: s
            .history
            .iter()
            .rev()
            .map(|r| record_json(&vertices, r))
            .collect(),
    }
}
