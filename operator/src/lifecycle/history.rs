//! Savepoint history retention: which savepoints `historyMaxCount` and `historyMaxAge` expire.
//! The newest completed savepoint and the one the next or current deployment restores from are
//! never expired, whatever the limits say.

use std::time::Duration;

use jiff::Timestamp;

use crate::crd::{StreamJobSpec, StreamJobStatus};
use crate::duration;

use super::elapsed;

/// Locations of savepoints to delete, oldest first.
pub fn expired(spec: &StreamJobSpec, status: &StreamJobStatus, now: Timestamp) -> Vec<String> {
    let Some(settings) = spec.savepoints.as_ref() else {
        return Vec::new();
    };
    let max_count = settings
        .history_max_count
        .and_then(|c| usize::try_from(c).ok());
    let max_age: Option<Duration> = settings
        .history_max_age
        .as_deref()
        .and_then(|a| duration::parse(a).ok());
    if max_count.is_none() && max_age.is_none() {
        return Vec::new();
    }

    let history = &status.savepoints.history;
    let protected = |location: &str| {
        status
            .savepoints
            .last
            .as_ref()
            .is_some_and(|l| l.location == location)
            || status.reconciliation.restore_path.as_deref() == Some(location)
            || spec.job.initial_savepoint_path.as_deref() == Some(location)
    };
    let excess = max_count.map_or(0, |max| history.len().saturating_sub(max));
    history
        .iter()
        .enumerate()
        .filter(|(index, savepoint)| {
            let too_many = *index < excess;
            let too_old = max_age.is_some_and(|age| elapsed(Some(&savepoint.timestamp), age, now));
            (too_many || too_old) && !protected(&savepoint.location)
        })
        .map(|(_, savepoint)| savepoint.location.clone())
        .collect()
}
