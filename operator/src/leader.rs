//! Leader election over a `coordination.k8s.io/v1` Lease, so several operator replicas can run
//! and exactly one reconciles. The decision (acquire, renew, wait) is a pure function of the
//! Lease, the candidate's identity and the time; the loop around it writes the Lease with
//! optimistic concurrency (`replace` carries the resourceVersion that was read), so two
//! candidates can never both win the same round.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt};

/// How long a lease stays valid without renewal.
pub const LEASE_DURATION: Duration = Duration::from_secs(15);
/// How often the holder renews; well under the duration, so one slow renewal does not lose it.
pub const RENEW_EVERY: Duration = Duration::from_secs(5);

/// What a candidate should do with the Lease it read.
#[derive(Clone, Debug, PartialEq)]
pub enum LeaseDecision {
    /// Nobody holds a valid lease: take it (a new holder counts a transition).
    Acquire(LeaseSpec),
    /// The candidate holds it: extend it.
    Renew(LeaseSpec),
    /// Someone else holds a valid lease until the given time.
    Wait { holder: String, until: Timestamp },
}

/// Decides from the current Lease spec (`None` when the Lease does not exist yet).
pub fn decide(current: Option<&LeaseSpec>, me: &str, now: Timestamp) -> LeaseDecision {
    let seconds = i32::try_from(LEASE_DURATION.as_secs()).unwrap_or(i32::MAX);
    let fresh = |acquire: Option<MicroTime>, transitions: i32| LeaseSpec {
        holder_identity: Some(me.to_string()),
        lease_duration_seconds: Some(seconds),
        acquire_time: acquire.or(Some(MicroTime(now))),
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(transitions),
        ..LeaseSpec::default()
    };
    let Some(current) = current else {
        return LeaseDecision::Acquire(fresh(None, 0));
    };
    let transitions = current.lease_transitions.unwrap_or(0);
    let holder = current.holder_identity.clone().unwrap_or_default();
    if holder == me {
        return LeaseDecision::Renew(fresh(current.acquire_time.clone(), transitions));
    }
    let expires = current.renew_time.as_ref().and_then(|renewed| {
        let valid_for = i64::from(current.lease_duration_seconds.unwrap_or(0));
        renewed
            .0
            .checked_add(jiff::SignedDuration::from_secs(valid_for))
            .ok()
    });
    match expires {
        Some(until) if !holder.is_empty() && until > now => LeaseDecision::Wait { holder, until },
        _ => LeaseDecision::Acquire(fresh(None, transitions.saturating_add(1))),
    }
}

/// Why taking part in the election failed.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("reading or writing Lease {namespace}/{name} failed")]
    Kube {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("lost Lease {namespace}/{name} to {holder}")]
    Lost {
        namespace: String,
        name: String,
        holder: String,
    },
}

/// One candidate in the election.
pub struct Elector {
    api: Api<Lease>,
    namespace: String,
    name: String,
    identity: String,
}

impl Elector {
    pub fn new(client: Client, namespace: &str, name: &str, identity: &str) -> Self {
        Elector {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_string(),
            name: name.to_string(),
            identity: identity.to_string(),
        }
    }

    /// Waits until this candidate holds the Lease.
    pub async fn acquire(&self) -> Result<(), LeaderError> {
        loop {
            match self.round().await? {
                None => return Ok(()),
                Some(holder) => {
                    tracing::info!(%holder, "another operator replica leads; waiting");
                    tokio::time::sleep(RENEW_EVERY).await;
                }
            }
        }
    }

    /// Renews the Lease forever; returns only when it was lost or cannot be written, after
    /// which the process must stop reconciling.
    pub async fn keep(&self) -> LeaderError {
        loop {
            tokio::time::sleep(RENEW_EVERY).await;
            match self.round().await {
                Ok(None) => {}
                Ok(Some(holder)) => {
                    return LeaderError::Lost {
                        namespace: self.namespace.clone(),
                        name: self.name.clone(),
                        holder,
                    };
                }
                Err(error) => return error,
            }
        }
    }

    /// One read-decide-write round; `Some(holder)` when someone else leads.
    async fn round(&self) -> Result<Option<String>, LeaderError> {
        let kube_error = |source| LeaderError::Kube {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            source,
        };
        let existing = self.api.get_opt(&self.name).await.map_err(kube_error)?;
        let decision = decide(
            existing.as_ref().and_then(|l| l.spec.as_ref()),
            &self.identity,
            Timestamp::now(),
        );
        let spec = match decision {
            LeaseDecision::Wait { holder, .. } => return Ok(Some(holder)),
            LeaseDecision::Acquire(spec) | LeaseDecision::Renew(spec) => spec,
        };
        let result = match existing {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        namespace: Some(self.namespace.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(spec),
                };
                self.api.create(&PostParams::default(), &lease).await
            }
            Some(mut lease) => {
                // The resourceVersion read above makes this write fail if anyone wrote since.
                lease.spec = Some(spec);
                self.api
                    .replace(&lease.name_any(), &PostParams::default(), &lease)
                    .await
            }
        };
        match result {
            Ok(_) => Ok(None),
            // Lost the race this round: someone else wrote first.
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(Some("a concurrent writer".into())),
            Err(source) => Err(kube_error(source)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn held_by(holder: &str, renewed: &str) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(15),
            acquire_time: Some(MicroTime(at("2026-01-01T00:00:00Z"))),
            renew_time: Some(MicroTime(at(renewed))),
            lease_transitions: Some(3),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn a_missing_lease_is_acquired_with_no_transition() {
        let now = at("2026-01-01T00:00:10Z");
        let LeaseDecision::Acquire(spec) = decide(None, "op-a", now) else {
            panic!("expected acquire");
        };
        assert_eq!(spec.holder_identity.as_deref(), Some("op-a"));
        assert_eq!(spec.lease_transitions, Some(0));
        assert_eq!(spec.renew_time, Some(MicroTime(now)));
    }

    #[test]
    fn the_holder_renews_and_keeps_its_acquire_time() {
        let lease = held_by("op-a", "2026-01-01T00:00:05Z");
        let now = at("2026-01-01T00:00:10Z");
        let LeaseDecision::Renew(spec) = decide(Some(&lease), "op-a", now) else {
            panic!("expected renew");
        };
        assert_eq!(spec.acquire_time, lease.acquire_time);
        assert_eq!(spec.renew_time, Some(MicroTime(now)));
        assert_eq!(spec.lease_transitions, Some(3));
    }

    #[test]
    fn a_valid_lease_of_another_replica_makes_the_candidate_wait() {
        let lease = held_by("op-a", "2026-01-01T00:00:05Z");
        let decision = decide(Some(&lease), "op-b", at("2026-01-01T00:00:19Z"));
        assert_eq!(
            decision,
            LeaseDecision::Wait {
                holder: "op-a".into(),
                until: at("2026-01-01T00:00:20Z")
            }
        );
    }

    #[test]
    fn an_expired_lease_is_taken_over_and_counts_a_transition() {
        let lease = held_by("op-a", "2026-01-01T00:00:05Z");
        let LeaseDecision::Acquire(spec) = decide(Some(&lease), "op-b", at("2026-01-01T00:00:21Z"))
        else {
            panic!("expected acquire");
        };
        assert_eq!(spec.holder_identity.as_deref(), Some("op-b"));
        assert_eq!(spec.lease_transitions, Some(4));
    }
}
