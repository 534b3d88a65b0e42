//! Validation of what the CRD schema cannot express, from small YAML fixtures.

mod common;

use common::{fixture, job};
use weir_operator::validate::{Policy, ValidationError, validate, validate_with};

fn errors_of(yaml: &str) -> Vec<ValidationError> {
    match validate(&job(yaml).spec) {
        Ok(()) => Vec::new(),
        Err(errors) => errors.0,
    }
}

#[test]
fn every_fixture_is_valid() {
    for name in [
        "stateless.yaml",
        "savepoint.yaml",
        "last-state.yaml",
        "pod-template.yaml",
        "secured.yaml",
    ] {
        assert_eq!(validate(&fixture(name).spec), Ok(()), "{name}");
    }
}

#[test]
fn savepoint_mode_without_a_savepoint_dir_is_rejected() {
    let errors = errors_of(
        "
metadata: {name: a}
spec:
  image: weir:dev
  job: {sql: 'SELECT 1', upgradeMode: savepoint}
",
    );
    assert_eq!(errors, vec![ValidationError::SavepointModeWithoutDir]);
    assert!(errors[0].to_string().contains("savepoints.dir"));
}

#[test]
fn last_state_mode_without_checkpoints_is_rejected() {
    let errors = errors_of(
        "
metadata: {name: a}
spec:
  image: weir:dev
  job: {sql: 'SELECT 1', upgradeMode: last-state}
",
    );
    assert_eq!(errors, vec![ValidationError::LastStateWithoutCheckpoints]);
}

#[test]
fn sql_and_entry_together_are_rejected() {
    let errors = errors_of(
        "
metadata: {name: a}
spec:
  image: weir:dev
  job: {sql: 'SELECT 1', entry: wordcount}
",
    );
    assert_eq!(errors, vec![ValidationError::SqlAndEntry]);
}

#[test]
fn a_job_with_neither_sql_nor_entry_is_rejected() {
    let errors = errors_of(
        "
metadata: {name: a}
spec:
  image: weir:dev
  job: {args: [x]}
",
    );
    assert_eq!(
        errors,
        vec![
            ValidationError::NoSqlNorEntry,
            ValidationError::ArgsWithoutEntry
        ]
    );
}

#[test]
fn bad_and_zero_durations_name_the_field_and_value() {
    let errors = errors_of(
        "
metadata: {name: a}
spec:
  image: weir:dev
  job: {sql: 'SELECT 1', upgradeReadinessTimeout: 5 weeks}
  checkpoints: {dir: 's3://b/c', interval: 0s}
",
    );
    assert_eq!(errors.len(), 2);
    assert!(matches!(
        &errors[0],
        ValidationError::BadDuration { field: "job.upgradeReadinessTimeout", value, .. }
            if value == "5 weeks"
    ));
    assert_eq!(
        errors[1],
        ValidationError::ZeroDuration {
            field: "checkpoints.interval",
            value: "0s".to_string()
        }
    );
    assert!(
        errors[0]
            .to_string()
            .starts_with("job.upgradeReadinessTimeout is \"5 weeks\"")
    );
}

#[test]
fn savepoint_features_without_a_savepoint_dir_are_rejected() {
    let errors = errors_of(
        "
metadata: {name: a}
spec:
  image: weir:dev
  savepointOnDeletion: true
  job: {sql: 'SELECT 1', savepointTriggerNonce: 3}
  savepoints: {periodicInterval: 1h}
",
    );
    assert_eq!(
        errors,
        vec![
            ValidationError::NeedsSavepointDir {
                field: "savepointOnDeletion"
            },
            ValidationError::NeedsSavepointDir {
                field: "job.savepointTriggerNonce"
            },
            ValidationError::NeedsSavepointDir {
                field: "savepoints.periodicInterval"
            },
        ]
    );
}

#[test]
fn a_deletion_savepoint_is_on_by_default_only_with_a_savepoint_dir_and_can_be_opted_out() {
    let without_dir = job("
metadata: {name: a}
spec: {image: weir:dev, job: {sql: 'SELECT 1'}}
");
    assert!(validate(&without_dir.spec).is_ok());
    assert!(!without_dir.spec.deletion_savepoint());
    let mut with_dir = without_dir.clone();
    with_dir.spec.savepoints = Some(weir_operator::crd::SavepointSpec {
        dir: Some("s3://b/sp".into()),
        ..Default::default()
    });
    assert!(with_dir.spec.deletion_savepoint());
    with_dir.spec.savepoint_on_deletion = Some(false);
    assert!(!with_dir.spec.deletion_savepoint());
}

#[test]
fn an_initial_savepoint_path_and_an_initial_snapshot_name_together_are_rejected() {
    let errors = errors_of(
        "
metadata: {name: a}
spec:
  image: weir:dev
  job: {sql: 'SELECT 1', initialSavepointPath: 's3://b/sp/1', initialSnapshotName: orders-final}
",
    );
    assert_eq!(errors, vec![ValidationError::TwoInitialStates]);
}

#[test]
fn health_checks_need_valid_durations_and_checkpoint_progress_needs_checkpoints() {
    let errors = errors_of(
        "
metadata: {name: a}
spec:
  image: weir:dev
  job: {sql: 'SELECT 1'}
  health: {restartsThreshold: 3, restartsWindow: 0s, checkpointProgressTimeout: 10m}
",
    );
    assert_eq!(
        errors,
        vec![
            ValidationError::ZeroDuration {
                field: "health.restartsWindow",
                value: "0s".into()
            },
            ValidationError::ProgressWithoutCheckpoints,
        ]
    );
}

#[test]
fn parallelism_beyond_the_available_slots_is_rejected() {
    let errors = errors_of(
        "
metadata: {name: a}
spec:
  image: weir:dev
  job: {sql: 'SELECT 1', parallelism: 5}
  taskManager: {replicas: 2, slots: 2}
",
    );
    assert_eq!(
        errors,
        vec![ValidationError::NotEnoughSlots {
            parallelism: 5,
            slots: 4
        }]
    );
}

#[test]
fn config_keys_the_operator_derives_are_rejected() {
    let errors = errors_of(
        "
metadata: {name: a}
spec:
  image: weir:dev
  job: {sql: 'SELECT 1'}
  config:
    state.checkpoints.dir: s3://elsewhere
    execution.checkpointing.mode: EXACTLY_ONCE
",
    );
    assert_eq!(
        errors,
        vec![ValidationError::OperatorOwnedConfigKey {
            key: "state.checkpoints.dir".to_string()
        }]
    );
}

#[test]
fn a_pod_template_that_is_not_a_pod_template_spec_is_rejected() {
    let errors = errors_of(
        "
metadata: {name: a}
spec:
  image: weir:dev
  job: {sql: 'SELECT 1'}
  podTemplate:
    spec:
      containers: not-a-list
",
    );
    assert_eq!(errors.len(), 1);
    assert!(matches!(&errors[0], ValidationError::BadPodTemplate { .. }));
}

#[test]
fn all_errors_are_reported_together() {
    let error = validate(
        &job("
metadata: {name: a}
spec:
  image: weir:dev
  job: {upgradeMode: savepoint}
")
        .spec,
    )
    .unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("neither job.sql nor job.entry"),
        "{message}"
    );
    assert!(message.contains("savepoints.dir"), "{message}");
}

/// Duration spellings around the grammar: every number shape, separator and unit spelling,
/// each unit also upper-cased and cut short, and words that are no unit at all.
fn duration_spellings() -> Vec<String> {
    let numbers = [
        "",
        "0",
        "1",
        "10",
        "250",
        "999999999999",
        "99999999999999999999",
    ];
    let separators = ["", " ", "  ", "\t"];
    let mut units: Vec<String> = vec!["".into(), "w".into(), "x".into(), ".5".into(), "-".into()];
    for (unit, _) in weir_contract::duration::UNITS {
        units.push(unit.to_string());
        units.push(unit.to_uppercase());
        units.push(unit[..unit.len() - 1].to_string());
        units.push(format!("{unit}s"));
    }
    let mut out = Vec::new();
    for n in numbers {
        for sep in separators {
            for unit in &units {
                out.push(format!("{n}{sep}{unit}"));
            }
        }
    }
    out
}

#[test]
fn every_duration_the_crd_admits_is_read_alike_by_the_operator_and_the_worker() {
    use weir_contract::options::{CHECKPOINTING_INTERVAL, CHECKPOINTS_DIR};
    use weir_engine::config::Config;

    // The pattern of the checked-in CRD, as the API server applies it.
    let crd: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../crds/streamjob.yaml"
        ))
        .unwrap(),
    )
    .unwrap();
    let pattern =
        crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
            ["checkpoints"]["properties"]["interval"]["pattern"]
            .as_str()
            .expect("checkpoints.interval has a pattern");
    let pattern = regex::Regex::new(pattern).unwrap();

    let (mut admitted, mut refused) = (0, 0);
    for text in duration_spellings() {
        let spec = job(&format!(
            "
metadata: {{name: a}}
spec:
  image: weir:dev
  job: {{sql: 'SELECT 1'}}
  checkpoints: {{dir: 'file:///c', interval: \"{}\"}}
",
            text.replace('\t', "\\t")
        ));
        // What the operator makes of it: a duration (zero included), or a refusal.
        let operator = match validate(&spec.spec) {
            Ok(()) => Ok(Some(weir_contract::duration::parse(&text).unwrap())),
            Err(errors) => match &errors.0[..] {
                [ValidationError::ZeroDuration { .. }] => Ok(None),
                [ValidationError::BadDuration { field, .. }]
                    if *field == "checkpoints.interval" =>
                {
                    Err(())
                }
                other => panic!("{text:?}: unexpected {other:?}"),
            },
        };
        if !pattern.is_match(&text) {
            // The API server refuses it; the operator's validation would too.
            assert!(
                operator.is_err(),
                "{text:?}: outside the CRD's pattern yet valid"
            );
            refused += 1;
            continue;
        }
        admitted += 1;
        // What the worker makes of the config file the operator writes.
        let mut config = Config::default();
        config.set(CHECKPOINTS_DIR.key, "file:///c").unwrap();
        let worker = config
            .set(CHECKPOINTING_INTERVAL.key, &text)
            .map(|()| config.checkpointing().unwrap().interval)
            .map_err(|_| ());
        assert_eq!(
            worker,
            operator.map(|d| d.filter(|d| !d.is_zero())),
            "{text:?}: the worker and the operator read it differently"
        );
    }
    assert!(admitted > 300 && refused > 300, "{admitted} / {refused}");
}

#[test]
fn an_operator_requiring_security_refuses_jobs_without_a_token_or_tls_naming_the_fields() {
    let policy = Policy {
        require_security: true,
    };
    let errors = validate_with(&fixture("stateless.yaml").spec, policy)
        .unwrap_err()
        .0;
    assert_eq!(
        errors,
        vec![
            ValidationError::SecurityRequired {
                field: "security.tokenSecretName"
            },
            ValidationError::SecurityRequired {
                field: "security.tls.secretName"
            },
        ]
    );
    assert!(
        errors[0].to_string().contains("jobSecurity.required"),
        "{}",
        errors[0]
    );
    assert_eq!(validate_with(&fixture("secured.yaml").spec, policy), Ok(()));
    assert_eq!(
        validate_with(&fixture("stateless.yaml").spec, Policy::default()),
        Ok(())
    );
}

#[test]
fn security_config_keys_belong_to_the_operator() {
    let errors = errors_of(
        "
metadata: {name: a}
spec:
  image: weir:dev
  job: {sql: 'SELECT 1'}
  config:
    security.rest.token-file: /tmp/token
",
    );
    assert_eq!(
        errors,
        vec![ValidationError::OperatorOwnedConfigKey {
            key: "security.rest.token-file".into()
        }]
    );
}
