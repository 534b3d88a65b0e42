//! Checks on a StreamJob spec that its OpenAPI schema cannot express: fields that depend on
//! each other, durations that parse but make no sense, config keys the operator owns, and the
//! free-form `podTemplate`. Pure: the reconciler calls it before building anything, and an
//! invalid spec leaves the running job on its last valid spec.

use std::fmt;

use k8s_openapi::api::core::v1::PodTemplateSpec;

use crate::crd::{StreamJobSpec, UpgradeMode};
use crate::duration;
use crate::names::config::OPERATOR_OWNED;

/// One thing wrong with a spec, naming the field and the offending value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    #[error("job.sql and job.entry are both set; set exactly one of them")]
    SqlAndEntry,

    #[error("neither job.sql nor job.entry is set; set exactly one of them")]
    NoSqlNorEntry,

    #[error("job.args is set but job.entry is not; args are only passed to an entry job")]
    ArgsWithoutEntry,

    #[error(
        "job.upgradeMode is savepoint but savepoints.dir is not set; set savepoints.dir or choose \
         upgradeMode stateless or last-state"
    )]
    SavepointModeWithoutDir,

    #[error(
        "job.upgradeMode is last-state but checkpoints.dir is not set; configure checkpoints or \
         choose another upgradeMode"
    )]
    LastStateWithoutCheckpoints,

    #[error(
        "job.initialSavepointPath and job.initialSnapshotName are both set; set at most one of \
         them"
    )]
    TwoInitialStates,

    #[error(
        "health.checkpointProgressTimeout is set but checkpoints is not; configure checkpoints \
         or remove the timeout"
    )]
    ProgressWithoutCheckpoints,

    #[error("{field} is set but savepoints.dir is not; set savepoints.dir")]
    NeedsSavepointDir { field: &'static str },

    #[error("{field} is {value:?}: {reason}")]
    BadDuration {
        field: &'static str,
        value: String,
        reason: String,
    },

    #[error("{field} is {value:?}, which is zero; use a positive duration")]
    ZeroDuration { field: &'static str, value: String },

    #[error(
        "job.parallelism is {parallelism} but taskManager.replicas × taskManager.slots is only \
         {slots}; add replicas or slots, or lower the parallelism"
    )]
    NotEnoughSlots { parallelism: i32, slots: i64 },

    #[error(
        "config key {key:?} is set by the operator from the StreamJob spec; remove it from \
         config and use the spec field instead"
    )]
    OperatorOwnedConfigKey { key: String },

    #[error("podTemplate is not a valid PodTemplateSpec: {reason}")]
    BadPodTemplate { reason: String },

    #[error(
        "{field} is not set, and this operator requires it of every StreamJob (installed with \
         the chart value jobSecurity.required): set spec.{field}"
    )]
    SecurityRequired { field: &'static str },
}

/// Every problem found in a spec, in field order.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ValidationErrors(pub Vec<ValidationError>);

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl ValidationErrors {
    /// Whether any error equals `error`.
    pub fn contains(&self, error: &ValidationError) -> bool {
        self.0.contains(error)
    }
}

/// What this installation of the operator demands of every StreamJob beyond the schema.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// Every job must set `security.tokenSecretName` and `security.tls` (chart value
    /// `jobSecurity.required`, environment variable [`crate::names::ENV_REQUIRE_SECURITY`]).
    pub require_security: bool,
}

/// [`validate`], plus what `policy` demands.
pub fn validate_with(spec: &StreamJobSpec, policy: Policy) -> Result<(), ValidationErrors> {
    let mut errors = validate(spec).err().map(|e| e.0).unwrap_or_default();
    if policy.require_security {
        let security = spec.security.clone().unwrap_or_default();
        if security.token_secret_name.is_none() {
            errors.push(ValidationError::SecurityRequired {
                field: "security.tokenSecretName",
            });
        }
        if security.tls.is_none() {
            errors.push(ValidationError::SecurityRequired {
                field: "security.tls.secretName",
            });
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ValidationErrors(errors))
    }
}

/// Checks everything the schema cannot. Collects all problems so a user fixes them in one go.
pub fn validate(spec: &StreamJobSpec) -> Result<(), ValidationErrors> {
    let mut errors = Vec::new();
    let job = &spec.job;

    match (&job.sql, &job.entry) {
        (Some(_), Some(_)) => errors.push(ValidationError::SqlAndEntry),
        (None, None) => errors.push(ValidationError::NoSqlNorEntry),
        _ => {}
    }
    if !job.args.is_empty() && job.entry.is_none() {
        errors.push(ValidationError::ArgsWithoutEntry);
    }
    if job.initial_savepoint_path.is_some() && job.initial_snapshot_name.is_some() {
        errors.push(ValidationError::TwoInitialStates);
    }

    let has_savepoint_dir = spec.savepoint_dir().is_some();
    match job.upgrade_mode {
        UpgradeMode::Savepoint if !has_savepoint_dir => {
            errors.push(ValidationError::SavepointModeWithoutDir);
        }
        UpgradeMode::LastState if spec.checkpoints.is_none() => {
            errors.push(ValidationError::LastStateWithoutCheckpoints);
        }
        _ => {}
    }
    if !has_savepoint_dir {
        if spec.savepoint_on_deletion == Some(true) {
            errors.push(ValidationError::NeedsSavepointDir {
                field: "savepointOnDeletion",
            });
        }
        if job.savepoint_trigger_nonce.is_some() {
            errors.push(ValidationError::NeedsSavepointDir {
                field: "job.savepointTriggerNonce",
            });
        }
        if spec
            .savepoints
            .as_ref()
            .is_some_and(|s| s.periodic_interval.is_some())
        {
            errors.push(ValidationError::NeedsSavepointDir {
                field: "savepoints.periodicInterval",
            });
        }
    }

    check_duration(
        &mut errors,
        "job.upgradeReadinessTimeout",
        job.upgrade_readiness_timeout.as_deref(),
    );
    if let Some(checkpoints) = &spec.checkpoints {
        check_duration(
            &mut errors,
            "checkpoints.interval",
            Some(&checkpoints.interval),
        );
    }
    if let Some(savepoints) = &spec.savepoints {
        check_duration(
            &mut errors,
            "savepoints.periodicInterval",
            savepoints.periodic_interval.as_deref(),
        );
        check_duration(
            &mut errors,
            "savepoints.historyMaxAge",
            savepoints.history_max_age.as_deref(),
        );
        check_duration(
            &mut errors,
            "savepoints.timeout",
            savepoints.timeout.as_deref(),
        );
    }
    if let Some(health) = &spec.health {
        check_duration(
            &mut errors,
            "health.restartsWindow",
            Some(&health.restarts_window),
        );
        check_duration(
            &mut errors,
            "health.checkpointProgressTimeout",
            health.checkpoint_progress_timeout.as_deref(),
        );
        if health.checkpoint_progress_timeout.is_some() && spec.checkpoints.is_none() {
            errors.push(ValidationError::ProgressWithoutCheckpoints);
        }
    }

    let slots = i64::from(spec.task_manager.replicas) * i64::from(spec.task_manager.slots);
    if i64::from(job.parallelism) > slots {
        errors.push(ValidationError::NotEnoughSlots {
            parallelism: job.parallelism,
            slots,
        });
    }

    for key in spec.config.keys() {
        if OPERATOR_OWNED.contains(&key.as_str()) {
            errors.push(ValidationError::OperatorOwnedConfigKey { key: key.clone() });
        }
    }

    if let Some(template) = &spec.pod_template
        && let Err(error) = serde_json::from_value::<PodTemplateSpec>(template.clone())
    {
        errors.push(ValidationError::BadPodTemplate {
            reason: error.to_string(),
        });
    }

    if errors.is_empty() {
        Ok(())
    } else {
        Err(ValidationErrors(errors))
    }
}

fn check_duration(errors: &mut Vec<ValidationError>, field: &'static str, value: Option<&str>) {
    let Some(value) = value else { return };
    match duration::parse(value) {
        Ok(parsed) if parsed.is_zero() => errors.push(ValidationError::ZeroDuration {
            field,
            value: value.to_string(),
        }),
        Ok(_) => {}
        Err(reason) => errors.push(ValidationError::BadDuration {
            field,
            value: value.to_string(),
            reason,
        }),
    }
}
