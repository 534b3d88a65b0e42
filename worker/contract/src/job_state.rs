//! The states of a job, with Flink's names (`JobStatus`): what the REST API reports, the CLI
//! lists and the operator observes. The engine reaches a subset of them; the operator knows all,
//! since a Flink-compatible JobManager may report any.

use std::fmt;
use std::str::FromStr;

/// A job's state, spelled on the wire as Flink spells it (`RUNNING`, `CANCELED`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum JobState {
    /// Being submitted (Flink; Weir never reports it).
    Initializing,
    /// Waiting for resources (a JobManager waiting for TaskManager slots).
    Created,
    /// Tasks are running.
    Running,
    /// A task failed and the job is being torn down before a restart or failure.
    Failing,
    /// Failed and the restart strategy gave up.
    Failed,
    /// Cancel was requested; tasks are stopping.
    Cancelling,
    /// Cancelled.
    Canceled,
    /// Every source ended (or a stop-with-savepoint completed) and every task finished.
    Finished,
    /// A task failed; waiting for the restart delay before the next attempt.
    Restarting,
    /// Stopped without ending, to be resumed elsewhere (Flink's HA; Weir never reports it).
    Suspended,
    /// Being recovered by a new JobManager (Flink; Weir never reports it).
    Reconciling,
}

impl JobState {
    /// Every state, in Flink's order.
    pub const ALL: [JobState; 11] = [
        JobState::Initializing,
        JobState::Created,
        JobState::Running,
        JobState::Failing,
        JobState::Failed,
        JobState::Cancelling,
        JobState::Canceled,
        JobState::Finished,
        JobState::Restarting,
        JobState::Suspended,
        JobState::Reconciling,
    ];

    /// Flink's name of the state.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Initializing => "INITIALIZING",
            JobState::Created => "CREATED",
            JobState::Running => "RUNNING",
            JobState::Failing => "FAILING",
            JobState::Failed => "FAILED",
            JobState::Cancelling => "CANCELLING",
            JobState::Canceled => "CANCELED",
            JobState::Finished => "FINISHED",
            JobState::Restarting => "RESTARTING",
            JobState::Suspended => "SUSPENDED",
            JobState::Reconciling => "RECONCILING",
        }
    }

    /// Parses Flink's name; `None` for anything else.
    pub fn parse(name: &str) -> Option<JobState> {
        JobState::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// True for the states a job never leaves (Flink's "globally terminal" states).
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::Failed | JobState::Canceled | JobState::Finished
        )
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not one of Flink's job states.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown job state {0:?}; expected one of Flink's (RUNNING, FINISHED, ...)")]
pub struct UnknownJobState(pub String);

impl FromStr for JobState {
    type Err = UnknownJobState;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobState::parse(s).ok_or_else(|| UnknownJobState(s.to_string()))
    }
}

impl serde::Serialize for JobState {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for JobState {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        JobState::parse(&name).ok_or_else(|| serde::de::Error::custom(UnknownJobState(name)))
    }
}
