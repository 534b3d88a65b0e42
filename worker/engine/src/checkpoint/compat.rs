//! Whether a job can restore a checkpoint, decided from the checkpoint and the job's plan
//! without running anything: the rules of a restore as a list of [`Finding`]s. The restore
//! itself ([`RestorePlan::validate`]) refuses on the job-level findings, and `weir check`
//! (the operator's pre-flight check before an upgrade) reports all of them, so both apply
//! the same rules.
//!
//! The rules: the job's `pipeline.max-parallelism` equals the checkpoint's (key groups do not
//! move); every operator with state in the checkpoint is an operator of the job (same uid),
//! unless `execution.savepoint.ignore-unclaimed-state` drops that state; and the state
//! schema an operator declares ([`crate::api::DataStream::state_schema`], which SQL sets from
//! an aggregate's accumulators or a join's input rows) has the tag its checkpointed states'
//! names end with. A state whose tag differs is one no state of the new operator claims, so
//! the task refuses it at restore (`state::store`); the check predicts that refusal before
//! anything is stopped. States of an operator whose code registers different names are
//! still only found at restore: the plan does not know them.

use super::RestorePlan;
use crate::state::{schema_tag, schema_tag_of};
use serde::Serialize;
use std::collections::BTreeSet;

/// An operator of the job being checked, as its plan describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JobOperator {
    /// Its uid (explicit, or derived from its position and name).
    pub uid: String,
    /// Its name.
    pub name: String,
    /// Its parallelism in the job.
    pub parallelism: usize,
    /// Its declared state schema.
    pub state_schema: Option<String>,
}

/// One thing the check found. [`Finding::refuses`] says whether a restore would fail on it;
/// the others lose state that `ignore-unclaimed-state` allows to drop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Finding {
    /// The job's max parallelism differs from the checkpoint's.
    #[serde(rename_all = "camelCase")]
    MaxParallelism {
        /// The checkpoint's.
        checkpoint: usize,
        /// The job's.
        job: usize,
    },
    /// State of an operator the job does not have.
    #[serde(rename_all = "camelCase")]
    OperatorRemoved {
        /// The operator's uid.
        uid: String,
        /// Its name in the checkpoint.
        name: String,
        /// True when `ignore-unclaimed-state` drops the state instead of refusing.
        dropped: bool,
    },
    /// States whose schema tag is not the one the job's operator declares.
    #[serde(rename_all = "camelCase")]
    StateSchemaChanged {
        /// The operator's uid.
        uid: String,
        /// Its name in the job.
        name: String,
        /// The checkpointed states that no state of the new operator claims.
        states: Vec<String>,
        /// The schema the new operator declares (`None`: none).
        job_schema: Option<String>,
        /// Its tag, which the names of the new operator's states end with.
        job_tag: Option<String>,
        /// True when `ignore-unclaimed-state` drops the state instead of refusing.
        dropped: bool,
    },
}

impl Finding {
    /// Whether a restore fails on it.
    pub fn refuses(&self) -> bool {
        match self {
            Finding::MaxParallelism { .. } => true,
            Finding::OperatorRemoved { dropped, .. }
            | Finding::StateSchemaChanged { dropped, .. } => !dropped,
        }
    }

    /// The operator it is about, if any.
    pub fn uid(&self) -> Option<&str> {
        match self {
            Finding::MaxParallelism { .. } => None,
            Finding::OperatorRemoved { uid, .. } | Finding::StateSchemaChanged { uid, .. } => {
                Some(uid)
            }
        }
    }
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ignore = weir_contract::options::SAVEPOINT_IGNORE_UNCLAIMED_STATE.key;
        match self {
            Finding::MaxParallelism { checkpoint, job } => write!(
                f,
                "the checkpoint was taken with {} {checkpoint} but the job has {job}; they must match",
                weir_contract::options::MAX_PARALLELISM.key
            ),
            Finding::OperatorRemoved { uid, name, dropped } => {
                write!(
                    f,
                    "operator '{name}' (uid {uid}) has state in the checkpoint but is not in the job"
                )?;
                if *dropped {
                    write!(f, "; its state is dropped ({ignore}: true)")
                } else {
                    write!(
                        f,
                        "; give the operator that should take its state the uid {uid}, or set \
                         {ignore}: true to drop that state"
                    )
                }
            }
            Finding::StateSchemaChanged {
                uid,
                name,
                states,
                job_schema,
                dropped,
                ..
            } => {
                let states = states
                    .iter()
                    .map(|s| format!("'{s}'"))
                    .collect::<Vec<_>>()
                    .join(", ");
                write!(
                    f,
                    "operator '{name}' (uid {uid}) changed its state schema: the checkpoint holds {states}, "
                )?;
                match job_schema {
                    Some(s) => write!(f, "the job's operator now keeps {s}")?,
                    None => write!(f, "the job's operator declares no state schema")?,
                }
                if *dropped {
                    write!(f, "; that state is dropped ({ignore}: true)")
                } else {
                    write!(
                        f,
                        " (for SQL: a changed aggregate, GROUP BY key or join input); keep the \
                         old query, give the operator a new uid, or set {ignore}: true to drop \
                         that state"
                    )
                }
            }
        }
    }
}

impl RestorePlan {
    /// The findings of the job-level rules, which [`RestorePlan::validate`] enforces: max
    /// parallelism, and operators of the checkpoint the job (`uids`) does not have.
    pub(crate) fn job_findings(
        &self,
        uids: &[String],
        max_parallelism: usize,
        allow_non_restored: bool,
    ) -> Vec<Finding> {
        let mut out = Vec::new();
        if self.metadata.max_parallelism != max_parallelism {
            out.push(Finding::MaxParallelism {
                checkpoint: self.metadata.max_parallelism,
                job: max_parallelism,
            });
        }
        for op in &self.metadata.operators {
            if !uids.contains(&op.uid) {
                out.push(Finding::OperatorRemoved {
                    uid: op.uid.clone(),
                    name: op.name.clone(),
                    dropped: allow_non_restored,
                });
            }
        }
        out
    }

    /// Every finding of restoring this checkpoint into a job of `operators`: the job-level
    /// rules, then the state schema of each operator the job keeps.
    pub fn check(
        &self,
        operators: &[JobOperator],
        max_parallelism: usize,
        allow_non_restored: bool,
    ) -> Vec<Finding> {
        let uids: Vec<String> = operators.iter().map(|o| o.uid.clone()).collect();
        let mut out = self.job_findings(&uids, max_parallelism, allow_non_restored);
        for op in operators {
            let job_tag = op.state_schema.as_deref().map(schema_tag);
            let states: Vec<String> = self
                .state_names(&op.uid)
                .into_iter()
                .filter(|n| schema_tag_of(n) != job_tag.as_deref())
                .collect();
            if !states.is_empty() {
                out.push(Finding::StateSchemaChanged {
                    uid: op.uid.clone(),
                    name: op.name.clone(),
                    states,
                    job_schema: op.state_schema.clone(),
                    job_tag,
                    dropped: allow_non_restored,
                });
            }
        }
        out
    }

    /// The names of operator `uid`'s keyed states in the checkpoint, sorted: from its key
    /// groups, or from its incremental RocksDB handles.
    pub fn state_names(&self, uid: &str) -> Vec<String> {
        let mut names = BTreeSet::new();
        if let Some(s) = self.operators.get(uid) {
            for g in &s.keyed {
                names.extend(g.states.iter().map(|s| s.name.clone()));
            }
        }
        for h in self.handles.get(uid).into_iter().flatten() {
            names.extend(h.states.iter().cloned());
        }
        names.into_iter().collect()
    }
}

/// An operator with state in the checkpoint, and where its state goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckedOperator {
    /// Its uid.
    pub uid: String,
    /// Its name in the checkpoint.
    pub name: String,
    /// Its parallelism in the checkpoint.
    pub parallelism: usize,
    /// Its parallelism in the job (`None`: the job does not have it).
    pub job_parallelism: Option<usize>,
    /// Its keyed states' names in the checkpoint.
    pub states: Vec<String>,
}

/// The outcome of checking a job against a checkpoint
/// ([`crate::api::StreamExecutionEnvironment::check_restore`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RestoreCheck {
    /// Whether the job can restore it: no finding refuses.
    pub compatible: bool,
    /// The checkpoint's location.
    pub path: String,
    /// The job that took it.
    pub job_id: String,
    /// Its checkpoint number.
    pub checkpoint_id: u64,
    /// Whether it is a savepoint.
    pub savepoint: bool,
    /// Its `pipeline.max-parallelism`.
    pub max_parallelism: usize,
    /// Every operator it holds state for.
    pub operators: Vec<CheckedOperator>,
    /// What the check found, refusals and dropped state alike.
    pub findings: Vec<Finding>,
}

impl RestoreCheck {
    /// Summarises `plan` for a job of `operators` with `findings` ([`RestorePlan::check`]).
    pub fn new(plan: &RestorePlan, operators: Vec<JobOperator>, findings: Vec<Finding>) -> Self {
        let m = &plan.metadata;
        RestoreCheck {
            compatible: !findings.iter().any(Finding::refuses),
            path: plan.path.clone(),
            job_id: m.job_id.clone(),
            checkpoint_id: m.checkpoint_id,
            savepoint: m.savepoint,
            max_parallelism: m.max_parallelism,
            operators: m
                .operators
                .iter()
                .map(|o| CheckedOperator {
                    uid: o.uid.clone(),
                    name: o.name.clone(),
                    parallelism: o.parallelism,
                    job_parallelism: operators
                        .iter()
                        .find(|j| j.uid == o.uid)
                        .map(|j| j.parallelism),
                    states: plan.state_names(&o.uid),
                })
                .collect(),
            findings,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::{CheckpointMetadata, METADATA_FORMAT, OperatorMetadata};
    use crate::checkpoint::{OperatorSubtaskState, RestorePlan};
    use crate::state::{KeyGroupSnapshot, StateSnapshot, state_name};
    use std::collections::BTreeMap;

    /// A plan whose operator `agg` keeps state `acc` under schema `schema`, and whose
    /// operator `src` keeps only list state.
    fn plan(schema: &str) -> RestorePlan {
        let op = |uid: &str| OperatorMetadata {
            uid: uid.into(),
            name: uid.to_uppercase(),
            parallelism: 1,
            files: vec![Some(format!("{uid}-0"))],
            incremental: vec![],
        };
        let keyed = OperatorSubtaskState {
            keyed: vec![KeyGroupSnapshot {
                key_group: 3,
                states: vec![StateSnapshot {
                    name: state_name("acc", Some(schema)),
                    entries: vec![],
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        let list = OperatorSubtaskState {
            list: vec![b"split".to_vec()],
            ..Default::default()
        };
        RestorePlan {
            path: "file:///sp".into(),
            metadata: CheckpointMetadata {
                format: METADATA_FORMAT.into(),
                job_id: "j".into(),
                checkpoint_id: 4,
                savepoint: true,
                max_parallelism: 128,
                timestamp: 0,
                operators: vec![op("src"), op("agg")],
            },
            operators: BTreeMap::from([("src".into(), list), ("agg".into(), keyed)]),
            handles: BTreeMap::new(),
            job_store: None,
        }
    }

    fn job(schema: Option<&str>) -> Vec<JobOperator> {
        let op = |uid: &str, schema: Option<&str>| JobOperator {
            uid: uid.into(),
            name: uid.into(),
            parallelism: 2,
            state_schema: schema.map(Into::into),
        };
        vec![op("src", None), op("agg", schema), op("sink", None)]
    }

    #[test]
    fn the_same_schema_restores_and_a_changed_one_is_refused_naming_its_states() {
        let p = plan("aggs(COUNT BIGINT)");
        assert_eq!(
            p.check(&job(Some("aggs(COUNT BIGINT)")), 128, false),
            vec![]
        );
        let changed = p.check(&job(Some("aggs(COUNT BIGINT, MAX BIGINT)")), 128, false);
        let [f @ Finding::StateSchemaChanged { uid, states, .. }] = changed.as_slice() else {
            panic!("{changed:?}")
        };
        assert_eq!(
            (uid.as_str(), states.clone()),
            ("agg", vec![state_name("acc", Some("aggs(COUNT BIGINT)"))])
        );
        assert!(f.refuses());
        assert!(
            f.to_string()
                .contains("now keeps aggs(COUNT BIGINT, MAX BIGINT)"),
            "{f}"
        );
        // A schema the new operator no longer declares is a change too.
        assert_eq!(p.check(&job(None), 128, false).len(), 1);
        // Allowed to drop state: reported, not refused.
        assert!(p.check(&job(None), 128, true).iter().all(|f| !f.refuses()));
    }

    #[test]
    fn removed_operators_and_another_max_parallelism_are_what_the_restore_refuses() {
        let p = plan("s");
        let without_agg: Vec<JobOperator> = job(Some("s"))
            .into_iter()
            .filter(|o| o.uid != "agg")
            .collect();
        let found = p.check(&without_agg, 128, false);
        assert_eq!(
            found,
            vec![Finding::OperatorRemoved {
                uid: "agg".into(),
                name: "AGG".into(),
                dropped: false
            }]
        );
        let uids: Vec<String> = without_agg.iter().map(|o| o.uid.clone()).collect();
        let err = p.validate(&uids, 128, false).unwrap_err().to_string();
        assert!(
            err.contains("operators the job does not have: agg"),
            "{err}"
        );
        assert!(p.validate(&uids, 128, true).is_ok());
        let found = p.check(&job(Some("s")), 256, false);
        assert_eq!(
            found,
            vec![Finding::MaxParallelism {
                checkpoint: 128,
                job: 256
            }]
        );
        let err = p.validate(&uids, 256, true).unwrap_err().to_string();
        assert!(
            err.contains("pipeline.max-parallelism 128 but the job has 256"),
            "{err}"
        );
    }

    #[test]
    fn only_a_well_formed_tag_ends_a_state_name() {
        assert_eq!(
            schema_tag_of(&state_name("acc", Some("x"))),
            Some(schema_tag("x").as_str())
        );
        assert_eq!(schema_tag_of("acc"), None);
        assert_eq!(schema_tag_of("window contents"), None);
        assert_eq!(schema_tag_of("acc @12"), None);
    }
}
