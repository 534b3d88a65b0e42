//! Local execution: every task instance runs on its own thread in this process. The first
//! task to fail cancels the others, and the job's result carries that first real error.

use super::graph::{JobGraph, PlanOptions};
use super::metrics::{JobMetrics, JobSnapshot, TaskMetrics};
use super::task::Task;
use crate::error::{Error, Result};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

/// How a job ended successfully.
#[derive(Debug, Clone)]
pub struct JobResult {
    /// The job's name.
    pub name: String,
    /// Wall time from start to the last task finishing.
    pub elapsed_ms: u64,
    /// Final counters.
    pub metrics: JobSnapshot,
}

/// A running job. Dropping it does not stop the job; call [`JobHandle::cancel`] for that.
pub struct JobHandle {
    name: String,
    threads: Vec<JoinHandle<()>>,
    cancel: Arc<AtomicBool>,
    errors: Arc<Mutex<Vec<Error>>>,
    metrics: Arc<JobMetrics>,
    started: Instant,
    running: Arc<AtomicU64>,
}

impl std::fmt::Debug for JobHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobHandle")
            .field("name", &self.name)
            .finish()
    }
}

impl JobHandle {
    /// Live counters.
    pub fn metrics(&self) -> JobSnapshot {
        self.metrics.snapshot()
    }

    /// True once every task has ended (successfully or not).
    pub fn is_finished(&self) -> bool {
        self.running.load(Relaxed) == 0
    }

    /// Asks every task to stop; [`JobHandle::wait`] then returns [`Error::Cancelled`].
    pub fn cancel(&self) {
        self.cancel.store(true, Relaxed);
    }

    /// Waits for the job to end and returns its result or its first failure.
    pub fn wait(self) -> Result<JobResult> {
        for t in self.threads {
            let _ = t.join();
        }
        let mut errors = std::mem::take(&mut *self.errors.lock().expect("not poisoned"));
        // A failing task makes its neighbours see closed channels; report the cause.
        if let Some(pos) = errors.iter().position(|e| !is_cancellation(e)) {
            return Err(errors.swap_remove(pos));
        }
        if let Some(e) = errors.pop() {
            return Err(e);
        }
        Ok(JobResult {
            name: self.name,
            elapsed_ms: self.started.elapsed().as_millis() as u64,
            metrics: self.metrics.snapshot(),
        })
    }
}

fn is_cancellation(e: &Error) -> bool {
    match e {
        Error::Cancelled => true,
        Error::Task { source, .. } => is_cancellation(source),
        _ => false,
    }
}

fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// Starts every task of `graph` on its own thread.
pub(crate) fn spawn(
    name: &str,
    graph: &JobGraph,
    opts: &PlanOptions,
    batch_size: usize,
) -> Result<JobHandle> {
    graph.validate(opts.max_parallelism)?;
    let (instances, operators) = graph.instantiate(opts)?;
    let cancel = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(Mutex::new(Vec::new()));
    let running = Arc::new(AtomicU64::new(instances.len() as u64));
    let mut tasks = Vec::new();
    let mut task_metrics = Vec::new();
    for inst in instances {
        let m = Arc::new(TaskMetrics {
            name: inst.name.clone(),
            subtask: inst.subtask,
            backpressured_ns: AtomicU64::new(0),
            finished: AtomicBool::new(false),
        });
        task_metrics.push(m.clone());
        tasks.push(Task::new(
            inst,
            cancel.clone(),
            m,
            batch_size,
            opts.max_parallelism,
        ));
    }
    let metrics = Arc::new(JobMetrics {
        operators,
        tasks: task_metrics,
        started: Instant::now(),
    });
    let mut threads = Vec::new();
    for (task, inputs) in tasks {
        let (cancel, errors, running) = (cancel.clone(), errors.clone(), running.clone());
        let thread_name = format!("{} ({})", task.name(), task.subtask());
        let t = std::thread::Builder::new()
            .name(thread_name.chars().take(60).collect())
            .spawn(move || {
                let (tname, sub) = (task.name().to_string(), task.subtask());
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| task.run(inputs)))
                    .unwrap_or_else(|p| Err(Error::Panic(panic_message(p))));
                if let Err(e) = r {
                    if !matches!(e, Error::Cancelled) {
                        tracing::error!(task = %tname, subtask = sub, error = %e, "task failed; cancelling the job");
                    }
                    errors
                        .lock()
                        .expect("not poisoned")
                        .push(Error::Task { task: tname, subtask: sub, source: Box::new(e) });
                    cancel.store(true, Relaxed);
                }
                running.fetch_sub(1, Relaxed);
            })
            .map_err(|e| Error::io("cannot spawn task thread for", thread_name, e))?;
        threads.push(t);
    }
    Ok(JobHandle {
        name: name.to_string(),
        threads,
        cancel,
        errors,
        metrics,
        started: Instant::now(),
        running,
    })
}
