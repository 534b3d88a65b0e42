//! The lifecycle state machine, step by step, against a fake JobManager and a fake cluster.
//! The fakes follow the REST contract: savepoint trigger ids are idempotent, a completed
//! stop-with-savepoint finishes the job, and deleting the Deployments removes the job.

mod common;

use std::collections::HashMap;

use common::fixture;
use jiff::Timestamp;
use weir_operator::crd::{
    LifecycleState, PreflightMode, ReconcilePhase, SavepointInfo, SavepointTrigger, StreamJobSpec,
    StreamJobStatus,
};
use weir_operator::lifecycle::conditions;
use weir_operator::lifecycle::{
    self, Action, EventNote, EventType, InitialSnapshot, Inputs, JobState, Observation,
    ObservedJob, PreflightOutcome, SavepointProgress, Step,
};

/// A savepoint operation inside the fake JobManager.
struct Operation {
    polls_left: u32,
    outcome: Result<String, String>,
    stop: bool,
}

#[derive(Default)]
struct FakeJobManager {
    job: Option<ObservedJob>,
    operations: HashMap<String, Operation>,
    /// Savepoints the JobManager actually started (distinct trigger ids).
    started: Vec<String>,
    /// Outcomes for the next savepoints, in order; success when empty.
    script: Vec<Result<(), String>>,
    runs: u32,
    checkpoints: u32,
}

#[derive(Default)]
struct FakeCluster {
    exists: bool,
    deployed: Option<(StreamJobSpec, Option<String>)>,
    /// Every restore path a deployment was applied with, in order.
    restores: Vec<Option<String>>,
}

struct World {
    spec: StreamJobSpec,
    status: StreamJobStatus,
    jm: FakeJobManager,
    cluster: FakeCluster,
    now: Timestamp,
    triggers: u32,
    events: Vec<EventNote>,
    disposed: Vec<String>,
    deleted_checkpoint_runs: Vec<String>,
    storage_checkpoint: Option<String>,
    /// Whether the controller has S3 access for this job.
    s3_configured: bool,
    /// What the controller found for `job.initialSnapshotName`.
    initial_snapshot: Option<InitialSnapshot>,
    /// Pre-flight check pods started: the spec checked and the state it was checked against.
    preflight_pods: Vec<(StreamJobSpec, String)>,
    /// What the check pod of the spec last started says (`None`: no such pod).
    preflight: Option<PreflightOutcome>,
    /// What a check pod reports once time passes after it started (`weir check` finishes);
    /// `None` leaves it running until a test says otherwise.
    preflight_verdict: Option<PreflightOutcome>,
}

impl World {
    fn new(fixture_name: &str) -> World {
        World {
            spec: fixture(fixture_name).spec,
            status: StreamJobStatus::default(),
            jm: FakeJobManager::default(),
            cluster: FakeCluster::default(),
            now: "2026-01-01T00:00:00Z".parse().unwrap(),
            triggers: 0,
            events: Vec::new(),
            disposed: Vec::new(),
            deleted_checkpoint_runs: Vec::new(),
            storage_checkpoint: None,
            s3_configured: false,
            initial_snapshot: None,
            preflight_pods: Vec::new(),
            preflight: None,
            preflight_verdict: Some(PreflightOutcome::Compatible),
        }
    }

    fn observe(&self) -> Observation {
        let savepoint = self.status.savepoints.pending.as_ref().and_then(|pending| {
            self.jm.job.as_ref()?;
            Some(match self.jm.operations.get(&pending.trigger_id) {
                None => SavepointProgress::Unknown,
                Some(op) if op.polls_left > 0 => SavepointProgress::InProgress,
                Some(Operation {
                    outcome: Ok(location),
                    ..
                }) => SavepointProgress::Completed {
                    location: location.clone(),
                },
                Some(Operation {
                    outcome: Err(cause),
                    ..
                }) => SavepointProgress::Failed {
                    cause: cause.clone(),
                },
            })
        });
        Observation {
            job: self.jm.job.clone(),
            savepoint,
            cluster_exists: self.cluster.exists,
            storage_latest_checkpoint: self.storage_checkpoint.clone(),
            can_delete_s3: self.s3_configured,
            initial_snapshot: self.initial_snapshot.clone(),
            preflight: self
                .status
                .reconciliation
                .preflight
                .as_ref()
                .and(self.preflight.clone()),
        }
    }

    /// Decides and writes the status, as the controller does before acting.
    fn decide(&mut self) -> Step {
        self.triggers += 1;
        let observation = self.observe();
        let step = lifecycle::decide(&Inputs {
            spec: &self.spec,
            generation: Some(1),
            status: &self.status,
            observation: &observation,
            now: self.now,
            fresh_trigger_id: format!("trigger-{}", self.triggers),
        });
        self.status = step.status.clone();
        self.events.extend(step.events.clone());
        step
    }

    /// One reconcile: decide, write the status, act.
    fn reconcile(&mut self) -> Action {
        let checking = self.status.reconciliation.preflight.is_some();
        let step = self.decide();
        self.act(&step.action);
        // The controller removes the check pods once no check is in flight.
        if checking && self.status.reconciliation.preflight.is_none() {
            self.preflight = None;
        }
        step.action
    }

    /// A reconcile where the operator dies after writing the status and before acting.
    fn reconcile_and_crash(&mut self) -> Action {
        self.decide().action
    }

    fn act(&mut self, action: &Action) {
        match action {
            Action::None => {}
            Action::Deploy { spec, restore_path } => {
                // Specs that differ only in fields that need no restart render the same
                // objects, so applying them changes nothing.
                let changed = match &self.cluster.deployed {
                    Some((old, old_restore)) => {
                        lifecycle::needs_restart(old, spec) || old_restore != restore_path
                    }
                    None => true,
                };
                let wanted = Some(((**spec).clone(), restore_path.clone()));
                if !self.cluster.exists || changed {
                    self.cluster.exists = true;
                    self.cluster.restores.push(restore_path.clone());
                    self.jm.runs += 1;
                    self.jm.job = Some(ObservedJob {
                        job_id: format!("job{}", self.jm.runs),
                        state: JobState::Running,
                        start_time: Some(self.now.to_string()),
                        latest_checkpoint: None,
                        restores: u64::from(restore_path.is_some()),
                    });
                }
                self.cluster.deployed = wanted;
            }
            Action::TearDown => {
                self.cluster.exists = false;
                self.cluster.deployed = None;
                self.jm.job = None;
            }
            Action::TriggerSavepoint {
                job_id,
                trigger_id,
                target_directory,
                stop,
            } => {
                let job = self.jm.job.as_ref().expect("savepoint of a running job");
                assert_eq!(&job.job_id, job_id);
                if self.jm.operations.contains_key(trigger_id) {
                    return; // idempotent: a known trigger id starts nothing
                }
                let outcome = if self.jm.script.is_empty() {
                    Ok(())
                } else {
                    self.jm.script.remove(0)
                };
                self.jm.started.push(trigger_id.clone());
                let location = format!("{target_directory}/savepoint-{trigger_id}");
                self.jm.operations.insert(
                    trigger_id.clone(),
                    Operation {
                        polls_left: 1,
                        outcome: outcome.map(|()| location),
                        stop: *stop,
                    },
                );
            }
            Action::DisposeSavepoints { locations } => {
                self.disposed.extend(locations.iter().cloned());
                lifecycle::disposed(&mut self.status, locations);
            }
            Action::DeleteCheckpoints { job_ids, .. } => {
                self.deleted_checkpoint_runs.extend(job_ids.iter().cloned());
                lifecycle::checkpoints_deleted(&mut self.status, job_ids);
            }
            Action::RunPreflight { spec, state } => {
                // One pod per spec and state: an existing one is left as it is.
                let same_pod = self.preflight.is_some()
                    && self.preflight_pods.last().is_some_and(|(s, at)| {
                        lifecycle::spec_json(s) == lifecycle::spec_json(spec) && at == state
                    });
                if !same_pod {
                    self.preflight_pods.push(((**spec).clone(), state.clone()));
                    self.preflight = Some(PreflightOutcome::Running);
                }
            }
        }
    }

    /// Time passes: savepoints progress, and a completed stop-with-savepoint finishes the job.
    fn tick(&mut self, seconds: i64) {
        self.now += jiff::SignedDuration::from_secs(seconds);
        if self.preflight == Some(PreflightOutcome::Running) {
            self.preflight = self.preflight_verdict.clone().or(self.preflight.take());
        }
        for op in self.jm.operations.values_mut() {
            if op.polls_left > 0 {
                op.polls_left -= 1;
                if op.polls_left == 0
                    && op.stop
                    && op.outcome.is_ok()
                    && let Some(job) = self.jm.job.as_mut()
                {
                    job.state = JobState::Finished;
                }
            }
        }
    }

    fn complete_checkpoint(&mut self) {
        self.jm.checkpoints += 1;
        let dir = self
            .spec
            .checkpoints
            .as_ref()
            .map_or("file:///none".to_string(), |c| c.dir.clone());
        if let Some(job) = self.jm.job.as_mut() {
            job.latest_checkpoint =
                Some(format!("{dir}/{}/chk-{}", job.job_id, self.jm.checkpoints));
        }
    }

    /// Reconciles (with time passing) until the phase is Idle, at most `max` times.
    fn settle(&mut self, max: usize) {
        for _ in 0..max {
            self.reconcile();
            self.tick(5);
            if self.status.lifecycle_state == LifecycleState::Running {
                self.complete_checkpoint();
            }
            if self.status.reconciliation.phase == ReconcilePhase::Idle
                && self.status.savepoints.pending.is_none()
            {
                return;
            }
        }
        panic!("did not settle: {:#?}", self.status.reconciliation);
    }

    /// Points checkpoints and savepoints at file:// storage, which the operator can delete.
    fn with_file_storage(mut self) -> World {
        if let Some(c) = self.spec.checkpoints.as_mut() {
            c.dir = "file:///state/orders/checkpoints".into();
        }
        if let Some(s) = self.spec.savepoints.as_mut() {
            s.dir = Some("file:///state/orders/savepoints".into());
        }
        self
    }

    /// First deployment through to STABLE.
    fn deploy_stable(&mut self) {
        self.reconcile();
        self.tick(5);
        self.complete_checkpoint();
        self.reconcile();
        assert_eq!(self.status.lifecycle_state, LifecycleState::Stable);
    }

    /// The pre-flight check a `savepoint` or `last-state` upgrade starts with (`bestEffort` by
    /// default): the check pod is started in phase Checking with nothing stopped yet, and it
    /// finds the new spec compatible. The next reconcile goes on with the upgrade.
    fn pass_preflight(&mut self) {
        let action = self.reconcile();
        assert!(
            matches!(action, Action::RunPreflight { .. }),
            "expected the pre-flight check, got {action:?}"
        );
        assert_eq!(self.status.reconciliation.phase, ReconcilePhase::Checking);
        assert!(
            self.status.savepoints.pending.is_none() && self.cluster.exists,
            "nothing is stopped while checking"
        );
        self.preflight = Some(PreflightOutcome::Compatible);
    }

    fn reasons(&self) -> Vec<&'static str> {
        self.events.iter().map(|e| e.reason).collect()
    }
}

#[test]
fn a_new_job_is_deployed_and_becomes_stable_after_its_first_checkpoint() {
    let mut world = World::new("savepoint.yaml");
    let action = world.reconcile();
    assert!(matches!(
        action,
        Action::Deploy {
            restore_path: None,
            ..
        }
    ));
    assert_eq!(world.status.lifecycle_state, LifecycleState::Deploying);
    assert_eq!(
        world.status.reconciliation.phase,
        ReconcilePhase::AwaitingReady
    );
    assert!(world.status.reconciliation.last_reconciled_spec.is_some());

    world.tick(5);
    world.reconcile();
    assert_eq!(world.status.lifecycle_state, LifecycleState::Running);
    assert_eq!(world.status.job_status.state.as_deref(), Some("RUNNING"));
    assert_eq!(world.status.reconciliation.last_stable_spec, None);

    world.complete_checkpoint();
    world.reconcile();
    assert_eq!(world.status.lifecycle_state, LifecycleState::Stable);
    assert_eq!(world.status.reconciliation.phase, ReconcilePhase::Idle);
    assert_eq!(
        world.status.reconciliation.last_stable_spec,
        world.status.reconciliation.last_reconciled_spec
    );
    assert!(world.reasons().contains(&"Submit"));
}

#[test]
fn the_first_deployment_restores_from_the_initial_savepoint_path() {
    let mut world = World::new("savepoint.yaml");
    world.spec.job.initial_savepoint_path = Some("s3://state/orders/savepoints/seed".into());
    world.reconcile();
    assert_eq!(
        world.cluster.restores,
        [Some("s3://state/orders/savepoints/seed".to_string())]
    );
}

#[test]
fn a_savepoint_upgrade_stops_with_a_savepoint_and_restores_from_it() {
    let mut world = World::new("savepoint.yaml");
    world.deploy_stable();

    world.spec.image = "weir:1.3".into();
    world.pass_preflight();
    // Step 1: the trigger is recorded, then sent as a stop-with-savepoint.
    let action = world.reconcile();
    let Action::TriggerSavepoint {
        trigger_id, stop, ..
    } = action
    else {
        panic!("expected a savepoint trigger, got {action:?}");
    };
    assert!(stop);
    assert_eq!(world.status.lifecycle_state, LifecycleState::Upgrading);
    assert_eq!(world.status.reconciliation.phase, ReconcilePhase::Stopping);
    assert_eq!(
        world.status.savepoints.pending.as_ref().unwrap().trigger_id,
        trigger_id
    );

    // Step 2: in progress: wait.
    assert_eq!(world.reconcile(), Action::None);

    // Step 3: completed: the path is recorded and the old cluster torn down.
    world.tick(5);
    assert_eq!(world.reconcile(), Action::TearDown);
    let location = format!("s3://state/orders/savepoints/savepoint-{trigger_id}");
    assert_eq!(
        world.status.reconciliation.restore_path.as_deref(),
        Some(location.as_str())
    );
    let last = world.status.savepoints.last.clone().unwrap();
    assert_eq!(last.location, location);
    assert_eq!(last.trigger, SavepointTrigger::Upgrade);
    assert_eq!(
        world.status.reconciliation.phase,
        ReconcilePhase::TearingDown
    );

    // Step 4: the new spec is deployed from the savepoint — not from a checkpoint found in
    // storage, whatever its number.
    world.storage_checkpoint = Some("s3://state/orders/checkpoints/job1/chk-99".into());
    let action = world.reconcile();
    let Action::Deploy { spec, restore_path } = action else {
        panic!("expected a deployment, got {action:?}");
    };
    assert_eq!(spec.image, "weir:1.3");
    assert_eq!(restore_path.as_deref(), Some(location.as_str()));

    // Step 5: running with a checkpoint: stable on the new spec.
    world.tick(5);
    world.complete_checkpoint();
    world.reconcile();
    assert_eq!(world.status.lifecycle_state, LifecycleState::Stable);
    let stable: StreamJobSpec = serde_json::from_str(
        world
            .status
            .reconciliation
            .last_stable_spec
            .as_ref()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(stable.image, "weir:1.3");
    assert_eq!(world.jm.started.len(), 1);
}

/// A stable job with `job.preflight` set, whose spec then changes to a new SQL query.
fn checked_upgrade(mode: PreflightMode) -> World {
    let mut world = World::new("savepoint.yaml");
    world.spec.job.entry = None;
    world.spec.job.args.clear();
    world.spec.job.sql =
        Some("INSERT INTO totals SELECT k, COUNT(*) FROM clicks GROUP BY k".into());
    world.spec.job.preflight = mode;
    // The tests below say what the check pod reports, and when.
    world.preflight_verdict = None;
    world.deploy_stable();
    world.spec.job.sql =
        Some("INSERT INTO totals SELECT k, COUNT(*), MAX(v) FROM clicks GROUP BY k".into());
    world
}

#[test]
fn a_checked_upgrade_checks_the_new_spec_against_the_newest_checkpoint_before_stopping() {
    let mut world = checked_upgrade(PreflightMode::Required);
    let checkpoint = world
        .jm
        .job
        .as_ref()
        .unwrap()
        .latest_checkpoint
        .clone()
        .unwrap();
    let action = world.reconcile();
    let Action::RunPreflight { spec, state } = action else {
        panic!("expected the check, got {action:?}");
    };
    assert_eq!(spec.job.sql, world.spec.job.sql);
    assert_eq!(state, checkpoint);
    assert_eq!(world.status.reconciliation.phase, ReconcilePhase::Checking);
    assert!(
        world.jm.started.is_empty(),
        "nothing is stopped while checking"
    );
    // Running: wait; an operator restart finds the pod and waits too, starting nothing new.
    assert_eq!(world.reconcile(), Action::None);
    world.reconcile_and_crash();
    assert_eq!(world.reconcile(), Action::None);
    assert_eq!(world.preflight_pods.len(), 1);

    world.preflight = Some(PreflightOutcome::Compatible);
    let action = world.reconcile();
    assert!(
        matches!(action, Action::TriggerSavepoint { stop: true, .. }),
        "{action:?}"
    );
    assert!(world.reasons().contains(&"PreflightPassed"));
    world.settle(20);
    assert_eq!(world.status.lifecycle_state, LifecycleState::Stable);
    assert_eq!(
        world.cluster.deployed.as_ref().unwrap().0.job.sql,
        world.spec.job.sql
    );
}

#[test]
fn a_preflight_refusal_keeps_the_old_job_running_and_waits_for_a_spec_change() {
    let mut world = checked_upgrade(PreflightMode::BestEffort);
    let old_sql = world.cluster.deployed.as_ref().unwrap().0.job.sql.clone();
    let job_id = world.jm.job.as_ref().unwrap().job_id.clone();
    world.reconcile();
    let why = "operator 'GroupAggregate' (uid sql-3-3-group-aggregate) changed its state schema";
    world.preflight = Some(PreflightOutcome::Incompatible(why.into()));
    assert_eq!(world.reconcile(), Action::None);

    // Nothing stopped, nothing deployed: the old job runs the old query.
    assert!(world.jm.started.is_empty());
    assert_eq!(world.jm.job.as_ref().unwrap().job_id, job_id);
    assert_eq!(world.jm.job.as_ref().unwrap().state, JobState::Running);
    assert_eq!(world.cluster.deployed.as_ref().unwrap().0.job.sql, old_sql);
    assert_eq!(world.status.reconciliation.phase, ReconcilePhase::Idle);
    assert_eq!(world.status.lifecycle_state, LifecycleState::Stable);
    let error = world.status.error.clone().unwrap();
    assert!(
        error.contains(why) && error.contains("keeps running"),
        "{error}"
    );
    let event = world
        .events
        .iter()
        .find(|e| e.reason == "IncompatibleState")
        .unwrap();
    assert_eq!(event.type_, EventType::Warning);
    assert!(
        event.message.contains("sql-3-3-group-aggregate"),
        "{}",
        event.message
    );
    let degraded = conditions::get(&world.status, conditions::DEGRADED).unwrap();
    assert_eq!(
        (degraded.status.as_str(), degraded.reason.as_str()),
        ("True", "IncompatibleState")
    );

    // The refused spec is not checked or rolled out again, while the job keeps being looked
    // after on its old spec.
    for _ in 0..3 {
        world.tick(60);
        let action = world.reconcile();
        assert!(
            matches!(action, Action::Deploy { ref spec, .. } if spec.job.sql == old_sql),
            "{action:?}"
        );
    }
    assert_eq!(world.preflight_pods.len(), 1);

    // The user fixes the query: checked again, passes, upgraded; the refusal is gone.
    world.spec.job.sql =
        Some("INSERT INTO totals SELECT k, COUNT(*) FROM clicks GROUP BY k -- v2".into());
    world.preflight = None;
    assert!(matches!(world.reconcile(), Action::RunPreflight { .. }));
    assert_eq!(world.preflight_pods.len(), 2);
    world.preflight = Some(PreflightOutcome::Compatible);
    world.settle(20);
    assert_eq!(world.status.lifecycle_state, LifecycleState::Stable);
    assert_eq!(world.status.reconciliation.refused, None);
    assert_eq!(world.status.error, None);
    let degraded = conditions::get(&world.status, conditions::DEGRADED).unwrap();
    assert_eq!(degraded.status, "False");
}

#[test]
fn a_check_that_cannot_decide_blocks_when_required_and_upgrades_with_a_warning_otherwise() {
    let mut required = checked_upgrade(PreflightMode::Required);
    required.reconcile();
    required.preflight = Some(PreflightOutcome::Failed(
        "weir check exited with code 1: no such job".into(),
    ));
    assert_eq!(required.reconcile(), Action::None);
    assert!(required.jm.started.is_empty());
    assert!(required.reasons().contains(&"PreflightFailed"));
    assert!(
        required
            .status
            .error
            .as_deref()
            .unwrap()
            .contains("no such job")
    );
    assert!(required.status.reconciliation.refused.is_some());

    // A check that never finishes counts as undecided after savepoints.timeout.
    let mut best_effort = checked_upgrade(PreflightMode::BestEffort);
    best_effort.reconcile();
    best_effort.tick(30);
    assert_eq!(best_effort.reconcile(), Action::None);
    best_effort.tick(600);
    let action = best_effort.reconcile();
    assert!(
        matches!(action, Action::TriggerSavepoint { stop: true, .. }),
        "{action:?}"
    );
    let warning = best_effort
        .events
        .iter()
        .find(|e| e.reason == "PreflightFailed")
        .unwrap();
    assert!(
        warning.message.contains("did not finish"),
        "{}",
        warning.message
    );
}

#[test]
fn a_check_whose_checkpoint_the_running_job_deleted_meanwhile_is_retried_against_the_newer_one() {
    let mut world = checked_upgrade(PreflightMode::Required);
    world.reconcile();
    let first = world.preflight_pods[0].1.clone();
    // Retention removed the checkpoint while the check read it; the job has checkpointed on.
    world.complete_checkpoint();
    let newer = world
        .jm
        .job
        .as_ref()
        .unwrap()
        .latest_checkpoint
        .clone()
        .unwrap();
    world.preflight = Some(PreflightOutcome::Failed(format!(
        "weir check exited with code 1: error: cannot restore: object '{first}/op-0' does not exist"
    )));
    let action = world.reconcile();
    assert!(
        matches!(action, Action::RunPreflight { ref state, .. } if *state == newer),
        "{action:?}"
    );
    assert_eq!(world.preflight_pods.len(), 2);
    assert!(world.reasons().contains(&"PreflightRetry"));
    assert_eq!(world.status.reconciliation.refused, None);
    world.preflight = Some(PreflightOutcome::Compatible);
    world.settle(20);
    assert_eq!(world.status.lifecycle_state, LifecycleState::Stable);
    assert_eq!(
        world.cluster.deployed.as_ref().unwrap().0.job.sql,
        world.spec.job.sql
    );

    // A check that cannot decide against the same state is not retried: required refuses.
    let mut world = checked_upgrade(PreflightMode::Required);
    world.reconcile();
    world.preflight = Some(PreflightOutcome::Failed(
        "weir check exited with code 1".into(),
    ));
    assert_eq!(world.reconcile(), Action::None);
    assert!(world.status.reconciliation.refused.is_some());
    assert_eq!(world.preflight_pods.len(), 1);
}

#[test]
fn a_suspension_or_another_change_during_the_check_is_not_held_up_by_it() {
    let mut world = checked_upgrade(PreflightMode::Required);
    world.reconcile();
    world.spec.job.state = weir_operator::crd::DesiredJobState::Suspended;
    let action = world.reconcile();
    assert!(
        matches!(action, Action::TriggerSavepoint { stop: true, .. }),
        "{action:?}"
    );
    assert_eq!(world.status.reconciliation.preflight, None);

    // Another spec while checking: that one is checked instead.
    let mut world = checked_upgrade(PreflightMode::Required);
    world.reconcile();
    world.spec.job.parallelism = 3;
    let action = world.reconcile();
    let Action::RunPreflight { spec, .. } = action else {
        panic!("expected a check of the newer spec, got {action:?}");
    };
    assert_eq!(spec.job.parallelism, 3);
}

/// A stable job that takes no checkpoints and has no savepoint yet: nothing to check against.
fn stable_without_state(mode: PreflightMode) -> World {
    let mut world = World::new("savepoint.yaml");
    world.spec.checkpoints = None;
    world.spec.job.preflight = mode;
    world.reconcile();
    world.tick(5);
    world.reconcile();
    assert_eq!(world.status.lifecycle_state, LifecycleState::Stable);
    world
}

#[test]
fn the_check_is_on_by_default_and_skipped_with_an_event_when_there_is_no_state_to_check() {
    assert_eq!(
        World::new("savepoint.yaml").spec.job.preflight,
        PreflightMode::BestEffort
    );
    let mut world = stable_without_state(PreflightMode::BestEffort);
    world.spec.image = "weir:1.3".into();
    let action = world.reconcile();
    assert!(
        matches!(action, Action::TriggerSavepoint { stop: true, .. }),
        "{action:?}"
    );
    assert!(world.preflight_pods.is_empty());
    let skipped = world
        .events
        .iter()
        .find(|e| e.reason == "PreflightSkipped")
        .expect("a PreflightSkipped Event");
    assert!(
        skipped
            .message
            .contains("no completed checkpoint or savepoint"),
        "{}",
        skipped.message
    );
    world.settle(20);
    assert_eq!(world.cluster.deployed.as_ref().unwrap().0.image, "weir:1.3");
}

#[test]
fn required_keeps_the_job_on_its_spec_until_there_is_state_to_check_then_checks_it() {
    let mut world = stable_without_state(PreflightMode::Required);
    let old_image = world.spec.image.clone();
    world.spec.image = "weir:1.3".into();
    for _ in 0..3 {
        let action = world.reconcile();
        assert!(
            matches!(action, Action::Deploy { ref spec, .. } if spec.image == old_image),
            "{action:?}"
        );
        world.tick(5);
    }
    assert!(world.jm.started.is_empty() && world.preflight_pods.is_empty());
    assert_eq!(world.status.lifecycle_state, LifecycleState::Stable);
    let error = world.status.error.clone().unwrap();
    assert!(error.contains("job.preflight is required"), "{error}");
    // Said once, not on every look.
    let reasons = world.reasons();
    assert_eq!(
        reasons.iter().filter(|r| **r == "PreflightWaiting").count(),
        1
    );
    assert_eq!(reasons.iter().filter(|r| **r == "SpecChanged").count(), 1);
    let degraded = conditions::get(&world.status, conditions::DEGRADED).unwrap();
    assert_eq!(degraded.status, "True");

    // A manual savepoint is state to check against: the check runs, passes, upgrades.
    world.spec.job.savepoint_trigger_nonce = Some(1);
    assert!(matches!(
        world.reconcile(),
        Action::TriggerSavepoint { stop: false, .. }
    ));
    world.tick(5);
    world.reconcile();
    let savepoint = world.status.savepoints.last.clone().unwrap().location;
    let action = world.reconcile();
    assert!(
        matches!(action, Action::RunPreflight { ref state, .. } if *state == savepoint),
        "{action:?}"
    );
    assert_eq!(world.status.error, None);
    world.tick(5);
    world.settle(20);
    assert_eq!(world.cluster.deployed.as_ref().unwrap().0.image, "weir:1.3");

    // Reverting the change while waiting ends the wait and its error.
    let mut world = stable_without_state(PreflightMode::Required);
    world.spec.image = "weir:1.3".into();
    world.reconcile();
    assert!(world.status.error.is_some());
    world.spec.image = old_image;
    world.reconcile();
    assert_eq!(world.status.error, None);
}

#[test]
fn a_new_restart_nonce_alone_redeploys_the_same_job_unchecked() {
    let mut world = World::new("savepoint.yaml");
    world.deploy_stable();
    world.spec.job.restart_nonce = Some(7);
    assert!(matches!(
        world.reconcile(),
        Action::TriggerSavepoint { stop: true, .. }
    ));
    assert!(world.preflight_pods.is_empty());
    // With another change it is checked.
    let mut world = World::new("savepoint.yaml");
    world.deploy_stable();
    world.spec.job.restart_nonce = Some(7);
    world.spec.job.parallelism = 3;
    world.pass_preflight();
}

#[test]
fn without_preflight_or_in_stateless_mode_an_upgrade_is_not_checked() {
    let mut world = checked_upgrade(PreflightMode::Disabled);
    assert!(matches!(world.reconcile(), Action::TriggerSavepoint { .. }));
    let mut world = checked_upgrade(PreflightMode::Required);
    world.spec.job.upgrade_mode = weir_operator::crd::UpgradeMode::Stateless;
    assert!(matches!(world.reconcile(), Action::TearDown));
    assert!(world.preflight_pods.is_empty());
}

#[test]
fn an_operator_restart_between_every_pair_of_steps_resumes_without_a_second_savepoint() {
    // For each step k of the upgrade, the operator dies after writing the status of step k and
    // before acting on it; the next operator starts from the written status alone.
    for crash_at in 0..8 {
        let mut world = World::new("savepoint.yaml");
        world.deploy_stable();
        world.spec.image = "weir:1.3".into();

        let mut steps = 0;
        while !(world.status.lifecycle_state == LifecycleState::Stable
            && world.status.reconciliation.phase == ReconcilePhase::Idle
            && world
                .cluster
                .deployed
                .as_ref()
                .is_some_and(|(s, _)| s.image == "weir:1.3"))
        {
            if steps == crash_at {
                world.reconcile_and_crash();
            } else {
                world.reconcile();
            }
            world.tick(5);
            if world.status.lifecycle_state == LifecycleState::Running {
                world.complete_checkpoint();
            }
            steps += 1;
            assert!(
                steps < 30,
                "crash at {crash_at}: no progress: {:#?}",
                world.status
            );
        }

        assert_eq!(
            world.jm.started.len(),
            1,
            "crash at {crash_at}: savepoints started {:?}",
            world.jm.started
        );
        let location = world.status.savepoints.last.clone().unwrap().location;
        assert_eq!(
            world.cluster.deployed.as_ref().unwrap().1.as_deref(),
            Some(location.as_str()),
            "crash at {crash_at}: the new job restores from the one savepoint"
        );
        assert!(
            world
                .cluster
                .restores
                .iter()
                .skip(1)
                .all(|r| r.as_deref() == Some(&location)),
            "crash at {crash_at}: never deployed without the savepoint: {:?}",
            world.cluster.restores
        );
        assert_eq!(world.status.error, None);
    }
}

#[test]
fn savepoint_failure_keeps_the_old_job_running_sets_error_and_retries_with_backoff() {
    let mut world = World::new("savepoint.yaml");
    world.deploy_stable();
    let old_deployment = world.cluster.deployed.clone();
    world.jm.script = vec![Err("disk full".into()), Err("disk full".into())];

    world.spec.image = "weir:1.3".into();
    world.pass_preflight();
    world.reconcile(); // trigger 1
    world.tick(5);
    assert_eq!(world.reconcile(), Action::None); // fails
    let error = world.status.error.clone().unwrap();
    assert!(error.contains("disk full"), "{error}");
    assert!(error.contains("keeps running"), "{error}");
    assert!(error.contains("retrying in 10s"), "{error}");
    assert_eq!(world.status.reconciliation.retries, 1);
    assert!(
        world
            .events
            .iter()
            .any(|e| e.type_ == EventType::Warning && e.reason == "SavepointError")
    );
    // The old job is untouched.
    assert_eq!(world.cluster.deployed, old_deployment);
    assert_eq!(world.jm.job.as_ref().unwrap().state, JobState::Running);
    assert_eq!(world.status.reconciliation.phase, ReconcilePhase::Stopping);

    // During the backoff nothing is sent.
    world.tick(5);
    assert_eq!(world.reconcile(), Action::None);
    assert_eq!(world.jm.started.len(), 1);

    // After it, a new trigger; it fails again and the backoff doubles.
    world.tick(5);
    assert!(matches!(world.reconcile(), Action::TriggerSavepoint { .. }));
    world.tick(5);
    world.reconcile();
    assert!(
        world
            .status
            .error
            .as_ref()
            .unwrap()
            .contains("retrying in 20s")
    );
    assert_eq!(world.status.reconciliation.retries, 2);

    // The third attempt succeeds and the upgrade completes from that savepoint.
    world.tick(20);
    world.settle(10);
    assert_eq!(world.jm.started.len(), 3);
    assert!(
        world
            .cluster
            .restores
            .iter()
            .all(|r| r.is_none() || r.as_ref().unwrap().contains("savepoint-")),
        "never fell back to stateless: {:?}",
        world.cluster.restores
    );
    assert_eq!(world.cluster.restores.len(), 2);
    assert!(world.cluster.restores[1].is_some());
    assert_eq!(world.status.error, None);
}

#[test]
fn a_savepoint_that_times_out_counts_as_failed_and_the_job_keeps_running() {
    let mut world = World::new("savepoint.yaml");
    world.spec.savepoints.as_mut().unwrap().timeout = Some("1m".into());
    world.deploy_stable();
    world.spec.image = "weir:1.3".into();
    world.pass_preflight();
    world.reconcile();
    // The JobManager never finishes it.
    world
        .jm
        .operations
        .values_mut()
        .for_each(|op| op.polls_left = u32::MAX);
    world.tick(30);
    assert_eq!(world.reconcile(), Action::None);
    assert_eq!(world.status.error, None);
    world.tick(31);
    assert_eq!(world.reconcile(), Action::None);
    assert!(
        world
            .status
            .error
            .as_ref()
            .unwrap()
            .contains("not completed within 60s")
    );
    assert!(world.cluster.exists);
    assert_eq!(world.status.savepoints.pending, None);
}

#[test]
fn a_last_state_upgrade_restores_from_the_latest_checkpoint() {
    let mut world = World::new("last-state.yaml");
    world.deploy_stable();
    world.complete_checkpoint();
    let latest = world.jm.job.as_ref().unwrap().latest_checkpoint.clone();

    world.spec.job.parallelism = 1;
    world.spec.image = "weir:next".into();
    world.pass_preflight();
    assert_eq!(world.reconcile(), Action::TearDown);
    assert_eq!(world.status.reconciliation.restore_path, latest);
    let action = world.reconcile();
    assert!(matches!(action, Action::Deploy { ref restore_path, .. } if *restore_path == latest));
    assert!(world.jm.started.is_empty(), "last-state takes no savepoint");
}

#[test]
fn a_last_state_upgrade_restores_from_the_newest_checkpoint_the_old_run_completed_before_it_stopped()
 {
    let mut world = World::new("last-state.yaml");
    world.deploy_stable();
    world.complete_checkpoint();
    let chosen = world.jm.job.as_ref().unwrap().latest_checkpoint.clone();
    world.spec.image = "weir:next".into();
    world.pass_preflight();
    assert_eq!(world.reconcile(), Action::TearDown);
    assert_eq!(world.status.reconciliation.restore_path, chosen);
    // Until its pods were gone the old run completed another checkpoint, and its sinks
    // committed that output: restoring from the one chosen before would write it again.
    world.complete_checkpoint();
    let chosen = chosen.unwrap();
    let (run, n) = chosen.rsplit_once("/chk-").unwrap();
    let newer = format!("{run}/chk-{}", n.parse::<u64>().unwrap() + 1);
    world.storage_checkpoint = Some(newer.clone());
    let action = world.reconcile();
    assert!(
        matches!(action, Action::Deploy { ref restore_path, .. } if restore_path.as_deref() == Some(newer.as_str())),
        "{action:?}"
    );
    assert!(world.events.iter().any(|e| e.reason == "LastState"));
    // A checkpoint of another run never replaces it.
    let mut world = World::new("last-state.yaml");
    world.deploy_stable();
    world.complete_checkpoint();
    world.spec.image = "weir:next".into();
    world.pass_preflight();
    world.reconcile();
    world.storage_checkpoint = Some(format!("{run}-other/chk-50"));
    let action = world.reconcile();
    assert!(
        matches!(action, Action::Deploy { ref restore_path, .. } if restore_path.as_deref() == Some(chosen.as_str())),
        "{action:?}"
    );
}

#[test]
fn a_last_state_upgrade_without_a_jobmanager_uses_the_checkpoint_found_in_storage() {
    let mut world = World::new("last-state.yaml");
    world.reconcile();
    // The JobManager is gone before it reported any checkpoint.
    world.jm.job = None;
    world.storage_checkpoint = Some("file:///data/checkpoints/job1/chk-3".into());
    world.spec.image = "weir:next".into();
    world.settle(5);
    assert_eq!(
        world.cluster.restores.last().unwrap().as_deref(),
        Some("file:///data/checkpoints/job1/chk-3")
    );
}

#[test]
fn a_stateless_upgrade_redeploys_from_empty_state() {
    let mut world = World::new("stateless.yaml");
    world.reconcile();
    world.tick(5);
    world.reconcile();
    assert_eq!(world.status.lifecycle_state, LifecycleState::Stable);
    world.spec.image = "weir:next".into();
    assert_eq!(world.reconcile(), Action::TearDown);
    let action = world.reconcile();
    assert!(
        matches!(action, Action::Deploy { restore_path: None, ref spec } if spec.image == "weir:next")
    );
}

#[test]
fn a_savepoint_upgrade_of_a_job_that_is_not_running_restores_its_last_checkpoint_not_empty_state() {
    let mut world = World::new("savepoint.yaml");
    world.deploy_stable();
    let checkpoint = world.status.job_status.last_checkpoint.clone();
    assert!(checkpoint.is_some());
    world.jm.job.as_mut().unwrap().state = JobState::Restarting;

    world.spec.image = "weir:1.3".into();
    world.pass_preflight();
    assert_eq!(world.reconcile(), Action::TearDown);
    assert!(world.reasons().contains(&"JobNotRunning"));
    assert_eq!(world.status.reconciliation.restore_path, checkpoint);
    assert!(world.jm.started.is_empty());
}

#[test]
fn suspending_takes_a_savepoint_and_removes_the_pods_and_resuming_restores_from_it() {
    let mut world = World::new("savepoint.yaml");
    world.deploy_stable();

    world.spec.job.state = weir_operator::crd::DesiredJobState::Suspended;
    world.settle(6);
    assert_eq!(world.status.lifecycle_state, LifecycleState::Suspended);
    assert!(!world.cluster.exists);
    let saved = world.status.savepoints.last.clone().unwrap();
    assert_eq!(saved.trigger, SavepointTrigger::Suspend);
    assert!(world.reasons().contains(&"Suspended"));

    // Suspended stays suspended.
    world.tick(600);
    assert_eq!(world.reconcile(), Action::None);
    assert!(!world.cluster.exists);

    world.spec.job.state = weir_operator::crd::DesiredJobState::Running;
    let action = world.reconcile();
    assert!(
        matches!(action, Action::Deploy { ref restore_path, .. } if restore_path.as_deref() == Some(saved.location.as_str()))
    );
    assert_eq!(world.jm.started.len(), 1);
}

#[test]
fn an_upgrade_that_is_not_ready_in_time_rolls_back_to_the_last_stable_spec() {
    let mut world = World::new("savepoint.yaml").with_file_storage();
    world.deploy_stable();
    let stable_image = world.spec.image.clone();

    world.spec.image = "weir:broken".into();
    world.pass_preflight();
    world.reconcile(); // trigger
    world.tick(5);
    world.reconcile(); // savepoint done, tear down
    world.reconcile(); // deploy broken
    let upgrade_savepoint = world.status.reconciliation.restore_path.clone().unwrap();
    world.jm.job.as_mut().unwrap().state = JobState::Restarting;

    world.tick(240);
    assert_eq!(world.reconcile(), Action::None);
    assert_eq!(world.status.lifecycle_state, LifecycleState::Deploying);

    // upgradeReadinessTimeout is 5m.
    world.tick(61);
    assert_eq!(world.reconcile(), Action::TearDown);
    assert_eq!(world.status.lifecycle_state, LifecycleState::RollingBack);
    assert!(world.reasons().contains(&"Rollback"));
    let action = world.reconcile();
    let Action::Deploy { spec, restore_path } = action else {
        panic!("expected the rollback deployment, got {action:?}");
    };
    assert_eq!(spec.image, stable_image);
    assert_eq!(restore_path.as_deref(), Some(upgrade_savepoint.as_str()));

    world.tick(5);
    world.complete_checkpoint();
    world.reconcile();
    assert_eq!(world.status.lifecycle_state, LifecycleState::RolledBack);

    // The broken run's checkpoints go; the first run's too, as the savepoint is the restore path.
    world.tick(60);
    assert_eq!(
        world.reconcile(),
        Action::DeleteCheckpoints {
            dir: "file:///state/orders/checkpoints".into(),
            job_ids: vec!["job1".into(), "job2".into()]
        }
    );
    // The rejected spec is not retried while it is unchanged, and the stable one stays applied.
    let action = world.reconcile();
    assert!(matches!(action, Action::Deploy { ref spec, .. } if spec.image == stable_image));
    assert_eq!(world.status.lifecycle_state, LifecycleState::RolledBack);

    // A new spec is a new upgrade, checked first like any other.
    world.spec.image = "weir:fixed".into();
    world.pass_preflight();
    assert!(matches!(
        world.reconcile(),
        Action::TriggerSavepoint { stop: true, .. }
    ));
}

#[test]
fn an_upgraded_bounded_job_that_finishes_before_its_first_checkpoint_is_not_rolled_back() {
    let mut world = World::new("savepoint.yaml").with_file_storage();
    world.deploy_stable();
    world.spec.image = "weir:faster".into();
    world.pass_preflight();
    world.reconcile(); // trigger
    world.tick(5);
    world.reconcile(); // savepoint done, tear down
    world.reconcile(); // deploy
    world.jm.job.as_mut().unwrap().state = JobState::Finished;

    // Well past upgradeReadinessTimeout (5m): finished is done, not "not ready".
    world.tick(600);
    world.reconcile();
    assert_eq!(world.status.lifecycle_state, LifecycleState::Stable);
    assert!(!world.reasons().contains(&"Rollback"));
    world.tick(600);
    assert!(!matches!(world.reconcile(), Action::TearDown));
    assert_eq!(
        world.cluster.restores.len(),
        2,
        "no redeployment after the upgrade"
    );
}

#[test]
fn a_new_savepoint_trigger_nonce_takes_one_savepoint_while_the_job_keeps_running() {
    let mut world = World::new("savepoint.yaml");
    world.deploy_stable();
    world.spec.job.savepoint_trigger_nonce = Some(7);

    let action = world.reconcile();
    assert!(matches!(
        action,
        Action::TriggerSavepoint { stop: false, .. }
    ));
    assert_eq!(
        world.status.savepoints.pending.as_ref().unwrap().trigger,
        SavepointTrigger::Manual
    );
    world.tick(5);
    world.reconcile();
    assert_eq!(world.status.savepoints.pending, None);
    assert_eq!(world.status.savepoints.last_trigger_nonce, Some(7));
    assert_eq!(
        world.status.savepoints.last.as_ref().unwrap().trigger,
        SavepointTrigger::Manual
    );
    assert_eq!(world.jm.job.as_ref().unwrap().state, JobState::Running);
    assert_eq!(world.cluster.restores.len(), 1, "no redeploy");

    // The same nonce takes no second savepoint.
    world.tick(5);
    world.reconcile();
    assert_eq!(world.jm.started.len(), 1);
}

#[test]
fn a_periodic_savepoint_is_taken_when_the_interval_has_elapsed() {
    let mut world = World::new("savepoint.yaml"); // periodicInterval: 6h
    world.deploy_stable();
    world.tick(5 * 3600);
    assert!(!matches!(
        world.reconcile(),
        Action::TriggerSavepoint { .. }
    ));
    world.tick(3600);
    assert!(matches!(
        world.reconcile(),
        Action::TriggerSavepoint { stop: false, .. }
    ));
    world.tick(5);
    world.reconcile();
    assert_eq!(
        world.status.savepoints.last.as_ref().unwrap().trigger,
        SavepointTrigger::Periodic
    );
    // The next one counts from this savepoint.
    world.tick(3600);
    world.reconcile();
    assert_eq!(world.jm.started.len(), 1);
}

#[test]
fn a_short_periodic_interval_requeues_the_job_when_its_next_savepoint_is_due() {
    let mut world = World::new("savepoint.yaml");
    world.spec.savepoints.as_mut().unwrap().periodic_interval = Some("20s".into());
    world.deploy_stable();
    world.tick(20);
    world.reconcile(); // triggers the first periodic savepoint
    world.tick(5);
    world.reconcile(); // records it as completed
    assert_eq!(world.jm.started.len(), 1);
    world.tick(5);
    let step = world.decide();
    assert!(!matches!(step.action, Action::TriggerSavepoint { .. }));
    // Due 20 s after the savepoint, which completed 5-10 s ago: not after the settled minute.
    assert!(
        step.requeue_after <= std::time::Duration::from_secs(15),
        "requeued after {:?}",
        step.requeue_after
    );
}

#[test]
fn a_stable_job_that_resumes_as_a_new_run_is_polled_until_it_has_a_checkpoint_again() {
    let mut world = World::new("savepoint.yaml");
    world.spec.savepoints.as_mut().unwrap().periodic_interval = None;
    world.deploy_stable();
    assert_eq!(world.decide().requeue_after, lifecycle::SETTLED);
    // The JobManager container restarted: the same deployment runs a new job without a
    // checkpoint yet.
    let job = world.jm.job.as_mut().unwrap();
    job.job_id = "job-after-restart".into();
    job.latest_checkpoint = None;
    let step = world.decide();
    assert!(matches!(step.action, Action::None | Action::Deploy { .. }));
    assert_eq!(step.requeue_after, lifecycle::POLL);
    assert_eq!(
        world.status.job_status.job_id.as_deref(),
        Some("job-after-restart")
    );
}

#[test]
fn history_cleanup_deletes_old_savepoints_but_never_the_newest_or_the_restore_path() {
    // historyMaxCount: 3, historyMaxAge: 7d
    let mut world = World::new("savepoint.yaml").with_file_storage();
    world.deploy_stable();
    let info = |name: &str, day: u32| SavepointInfo {
        location: format!("file:///state/orders/savepoints/{name}"),
        timestamp: format!("2025-12-{day:02}T00:00:00Z"),
        trigger: SavepointTrigger::Periodic,
        job_id: None,
        snapshot: None,
    };
    world.status.savepoints.history = vec![
        info("a", 1),
        info("b", 2),
        info("restored-from", 3),
        info("d", 28),
        info("e", 29),
        info("f", 30),
    ];
    world.status.savepoints.last = Some(info("f", 30));
    world.status.reconciliation.restore_path = Some(info("restored-from", 3).location);
    // Make even the newest one too old: it must survive anyway.
    world.tick(40 * 86_400);
    world.spec.savepoints.as_mut().unwrap().periodic_interval = None;

    let action = world.reconcile();
    let Action::DisposeSavepoints { locations } = action.clone() else {
        panic!("expected a cleanup, got {action:?}");
    };
    let names: Vec<&str> = locations
        .iter()
        .map(|l| l.rsplit('/').next().unwrap())
        .collect();
    assert_eq!(names, ["a", "b", "d", "e"]);
    let kept: Vec<&str> = world
        .status
        .savepoints
        .history
        .iter()
        .map(|s| s.location.rsplit('/').next().unwrap())
        .collect();
    assert_eq!(kept, ["restored-from", "f"]);
    assert!(
        world.status.savepoints.disposing.is_empty(),
        "confirmed after deletion"
    );
    assert_eq!(world.disposed.len(), 4);
}

#[test]
fn a_disposal_interrupted_by_a_restart_is_repeated() {
    let mut world = World::new("savepoint.yaml");
    world.deploy_stable();
    world.status.savepoints.disposing = vec!["s3://state/orders/savepoints/old".into()];
    let action = world.reconcile_and_crash();
    assert!(matches!(action, Action::DisposeSavepoints { .. }));
    assert_eq!(world.status.savepoints.disposing.len(), 1, "still recorded");
    world.reconcile();
    assert!(world.status.savepoints.disposing.is_empty());
}

#[test]
fn checkpoints_of_earlier_runs_are_deleted_once_the_new_run_has_checkpointed() {
    let mut world = World::new("savepoint.yaml").with_file_storage();
    world.deploy_stable();
    world.spec.image = "weir:next".into();
    world.pass_preflight();
    world.reconcile(); // stop with savepoint
    world.tick(5);
    world.reconcile(); // tear down
    world.reconcile(); // deploy job2 from the savepoint
    world.tick(5);
    world.reconcile();
    assert_eq!(world.status.job_status.job_id.as_deref(), Some("job2"));
    assert_eq!(world.status.job_status.previous_job_ids, ["job1"]);
    assert!(
        world.deleted_checkpoint_runs.is_empty(),
        "not before job2 checkpointed"
    );

    world.complete_checkpoint();
    world.reconcile(); // stable
    let action = world.reconcile();
    assert_eq!(
        action,
        Action::DeleteCheckpoints {
            dir: "file:///state/orders/checkpoints".into(),
            job_ids: vec!["job1".into()]
        }
    );
    assert_eq!(world.deleted_checkpoint_runs, ["job1"]);
    assert!(world.status.job_status.previous_job_ids.is_empty());
}

#[test]
fn the_run_holding_the_restore_checkpoint_keeps_its_checkpoints() {
    // A JobManager pod that restarts restores from the configured path again, so the run that
    // path lives in keeps its directory until a later rollout moves the restore path.
    let mut world = World::new("last-state.yaml");
    world.deploy_stable();
    world.spec.image = "weir:next".into();
    world.settle(6);
    assert_eq!(world.status.lifecycle_state, LifecycleState::Stable);
    let restore = world.status.reconciliation.restore_path.clone().unwrap();
    assert!(restore.contains("/job1/"), "{restore}");
    world.reconcile();
    world.reconcile();
    assert!(world.deleted_checkpoint_runs.is_empty());
    assert_eq!(world.status.job_status.previous_job_ids, ["job1"]);
}

#[test]
fn a_failed_job_is_restarted_from_its_latest_checkpoint_when_restart_failed_is_set() {
    let mut world = World::new("last-state.yaml");
    world.deploy_stable();
    let checkpoint = world.status.job_status.last_checkpoint.clone();
    world.jm.job.as_mut().unwrap().state = JobState::Failed;
    // The first restart waits 10 s after the deployment.
    assert_eq!(world.reconcile(), Action::None);
    assert_eq!(world.status.lifecycle_state, LifecycleState::Failed);
    world.tick(10);
    assert_eq!(world.reconcile(), Action::TearDown);
    assert!(world.reasons().contains(&"Restart"));
    let action = world.reconcile();
    assert!(
        matches!(action, Action::Deploy { ref restore_path, .. } if *restore_path == checkpoint)
    );
}

#[test]
fn a_failed_job_stays_failed_without_restart_failed() {
    let mut world = World::new("savepoint.yaml");
    world.deploy_stable();
    world.jm.job.as_mut().unwrap().state = JobState::Failed;
    world.reconcile();
    assert_eq!(world.status.lifecycle_state, LifecycleState::Failed);
    assert_eq!(world.cluster.restores.len(), 1);
}

#[test]
fn a_new_restart_nonce_redeploys_the_job_with_its_state() {
    let mut world = World::new("savepoint.yaml");
    world.deploy_stable();
    world.spec.job.restart_nonce = Some(1);
    assert!(matches!(
        world.reconcile(),
        Action::TriggerSavepoint { stop: true, .. }
    ));
    world.tick(5);
    world.settle(5);
    assert_eq!(world.cluster.restores.len(), 2);
    assert!(world.cluster.restores[1].is_some());
}

#[test]
fn changing_only_savepoint_settings_does_not_restart_the_job() {
    let mut world = World::new("savepoint.yaml");
    world.deploy_stable();
    world.spec.savepoints.as_mut().unwrap().history_max_count = Some(10);
    world.spec.job.upgrade_readiness_timeout = Some("10m".into());
    let action = world.reconcile();
    assert!(matches!(action, Action::Deploy { .. }), "{action:?}");
    assert_eq!(world.cluster.restores.len(), 1, "same objects, no redeploy");
    assert_eq!(world.status.lifecycle_state, LifecycleState::Stable);
    let recorded: StreamJobSpec = serde_json::from_str(
        world
            .status
            .reconciliation
            .last_reconciled_spec
            .as_ref()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(recorded.savepoints.unwrap().history_max_count, Some(10));
}

#[test]
fn backoff_doubles_from_ten_seconds_up_to_five_minutes() {
    let secs: Vec<u64> = (0..7).map(|r| lifecycle::backoff(r).as_secs()).collect();
    assert_eq!(secs, [10, 20, 40, 80, 160, 300, 300]);
    assert_eq!(lifecycle::backoff(u32::MAX).as_secs(), 300);
}

impl World {
    /// One cleanup reconcile of a resource being deleted; returns whether it is done.
    fn reconcile_deletion(&mut self) -> bool {
        self.triggers += 1;
        let observation = self.observe();
        let deletion = lifecycle::decide_deletion(&Inputs {
            spec: &self.spec,
            generation: Some(1),
            status: &self.status,
            observation: &observation,
            now: self.now,
            fresh_trigger_id: format!("trigger-{}", self.triggers),
        });
        self.status = deletion.status.clone();
        self.events.extend(deletion.events.clone());
        self.act(&deletion.action);
        deletion.done
    }

    /// Reconciles, `seconds` apart, until the job is suspended or twelve rounds have passed
    /// (the caller asserts which).
    fn reconcile_until_suspended(&mut self, seconds: i64) {
        for _ in 0..12 {
            self.tick(seconds);
            self.reconcile();
            if self.status.lifecycle_state == LifecycleState::Suspended {
                return;
            }
        }
    }

    /// Reconciles the deletion, `seconds` apart, until it is done; fails the test when twelve
    /// rounds do not finish it.
    fn finish_deletion(&mut self, seconds: i64) {
        for _ in 0..12 {
            self.tick(seconds);
            if self.reconcile_deletion() {
                return;
            }
        }
        panic!(
            "the deletion did not finish: {:#?}",
            self.status.reconciliation
        );
    }
}

#[test]
fn deletion_stops_the_job_with_a_savepoint_by_default_before_removing_the_pods() {
    let mut world = World::new("savepoint.yaml");
    assert_eq!(world.spec.savepoint_on_deletion, None);
    world.deploy_stable();

    assert!(!world.reconcile_deletion());
    assert_eq!(world.status.lifecycle_state, LifecycleState::Deleting);
    assert_eq!(world.jm.started.len(), 1);
    assert!(
        world.cluster.exists,
        "pods stay until the savepoint completes"
    );
    world.tick(5);
    assert!(!world.reconcile_deletion()); // savepoint recorded, tear down
    let last = world.status.savepoints.last.clone().unwrap();
    assert_eq!(last.trigger, SavepointTrigger::Deletion);
    assert!(!world.cluster.exists);
    assert!(world.reconcile_deletion());
    assert_eq!(world.jm.started.len(), 1);
    assert!(world.disposed.is_empty(), "savepoints are the user's data");
}

#[test]
fn a_failed_deletion_savepoint_blocks_the_deletion_and_is_retried() {
    let mut world = World::new("savepoint.yaml");
    world.spec.savepoint_on_deletion = Some(true);
    world.deploy_stable();
    world.jm.script = vec![Err("bucket gone".into())];

    world.reconcile_deletion();
    world.tick(5);
    assert!(!world.reconcile_deletion());
    assert!(world.status.error.as_ref().unwrap().contains("bucket gone"));
    assert!(world.cluster.exists);
    world.tick(10);
    assert!(!world.reconcile_deletion());
    assert_eq!(world.jm.started.len(), 2);
    world.tick(5);
    world.reconcile_deletion();
    assert!(world.reconcile_deletion());
    assert!(!world.cluster.exists);
}

#[test]
fn deletion_with_savepoint_on_deletion_false_just_removes_the_pods() {
    let mut world = World::new("savepoint.yaml");
    world.spec.savepoint_on_deletion = Some(false);
    world.deploy_stable();
    assert!(!world.reconcile_deletion());
    assert!(!world.cluster.exists);
    assert!(world.jm.started.is_empty());
    assert!(world.reconcile_deletion());
}

#[test]
fn without_a_jobmanager_a_newer_checkpoint_in_storage_beats_the_recorded_one() {
    let mut world = World::new("last-state.yaml");
    world.deploy_stable();
    let recorded = world.status.job_status.last_checkpoint.clone().unwrap();
    world.jm.job = None;
    world.storage_checkpoint = Some("file:///data/checkpoints/job1/chk-99".into());
    world.spec.image = "weir:next".into();
    world.pass_preflight();
    world.reconcile();
    assert_ne!(
        world.status.reconciliation.restore_path.as_deref(),
        Some(recorded.as_str())
    );
    assert_eq!(
        world.status.reconciliation.restore_path.as_deref(),
        Some("file:///data/checkpoints/job1/chk-99")
    );
}

#[test]
fn an_operator_restart_at_any_step_of_suspend_and_resume_takes_one_savepoint_and_resumes_from_it() {
    for crash_at in 0..6 {
        let mut world = World::new("savepoint.yaml");
        world.deploy_stable();
        world.spec.job.state = weir_operator::crd::DesiredJobState::Suspended;

        let mut steps = 0;
        while world.status.lifecycle_state != LifecycleState::Suspended {
            if steps == crash_at {
                world.reconcile_and_crash();
            } else {
                world.reconcile();
            }
            world.tick(5);
            steps += 1;
            assert!(steps < 20, "crash at {crash_at}: {:#?}", world.status);
        }
        assert!(!world.cluster.exists, "crash at {crash_at}");
        assert_eq!(world.jm.started.len(), 1, "crash at {crash_at}");
        let saved = world.status.savepoints.last.clone().unwrap().location;

        world.spec.job.state = weir_operator::crd::DesiredJobState::Running;
        // The resume itself is interrupted once after writing its status.
        world.reconcile_and_crash();
        world.settle(6);
        assert_eq!(
            world.cluster.restores.last().unwrap().as_deref(),
            Some(saved.as_str()),
            "crash at {crash_at}"
        );
        assert_eq!(world.cluster.restores.len(), 2, "crash at {crash_at}");
        assert_eq!(world.status.lifecycle_state, LifecycleState::Stable);
    }
}

#[test]
fn an_operator_restart_at_any_step_of_a_rollback_still_restores_the_upgrade_savepoint() {
    for crash_at in 0..4 {
        let mut world = World::new("savepoint.yaml");
        world.deploy_stable();
        let stable_image = world.spec.image.clone();
        world.spec.image = "weir:broken".into();
        world.pass_preflight();
        world.reconcile();
        world.tick(5);
        world.reconcile();
        world.reconcile();
        let upgrade_savepoint = world.status.reconciliation.restore_path.clone();
        world.jm.job.as_mut().unwrap().state = JobState::Restarting;
        world.tick(301);

        let mut steps = 0;
        while world.status.lifecycle_state != LifecycleState::RolledBack {
            if steps == crash_at {
                world.reconcile_and_crash();
            } else {
                world.reconcile();
            }
            world.tick(5);
            if world.status.lifecycle_state == LifecycleState::RollingBack && world.jm.job.is_some()
            {
                world.complete_checkpoint();
            }
            steps += 1;
            assert!(steps < 20, "crash at {crash_at}: {:#?}", world.status);
        }
        let (spec, restore) = world.cluster.deployed.clone().unwrap();
        assert_eq!(spec.image, stable_image, "crash at {crash_at}");
        assert_eq!(restore, upgrade_savepoint, "crash at {crash_at}");
        assert_eq!(world.jm.started.len(), 1, "crash at {crash_at}");
    }
}

#[test]
fn a_job_that_keeps_failing_is_restarted_with_growing_pauses() {
    let mut world = World::new("last-state.yaml");
    world.deploy_stable();
    let mut restart_times = Vec::new();
    let start = world.now;
    for _ in 0..120 {
        if let Some(job) = world.jm.job.as_mut() {
            job.state = JobState::Failed;
        }
        let action = world.reconcile();
        if action == Action::TearDown && world.status.reconciliation.intent.is_some() {
            restart_times.push((world.now - start).get_seconds());
        }
        world.tick(5);
    }
    // Pauses of 10 s, 20 s, 40 s, 80 s … after each redeployment, never a tight loop.
    let gaps: Vec<i64> = restart_times.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(restart_times.len() >= 3, "{restart_times:?}");
    assert!(gaps.windows(2).all(|g| g[1] > g[0]), "{gaps:?}");
    assert_eq!(world.status.lifecycle_state, LifecycleState::Failed);
    assert!(world.status.error.as_ref().unwrap().contains("FAILED"));
}

#[test]
fn a_restarted_job_that_becomes_stable_starts_its_restart_backoff_over() {
    let mut world = World::new("last-state.yaml");
    world.deploy_stable();
    world.jm.job.as_mut().unwrap().state = JobState::Failed;
    world.tick(10);
    world.settle(8);
    assert_eq!(world.status.lifecycle_state, LifecycleState::Stable);
    assert_eq!(world.status.reconciliation.failed_restarts, 0);
}

#[test]
fn a_job_that_is_not_ready_yet_can_still_be_suspended() {
    let mut world = World::new("savepoint.yaml");
    world.reconcile(); // deployed, awaiting its first checkpoint
    world.jm.job.as_mut().unwrap().state = JobState::Restarting;
    world.storage_checkpoint = None;

    world.spec.job.state = weir_operator::crd::DesiredJobState::Suspended;
    world.settle(6);
    assert_eq!(world.status.lifecycle_state, LifecycleState::Suspended);
    assert!(!world.cluster.exists);
    assert!(
        world.jm.started.is_empty(),
        "a job that is not RUNNING takes no savepoint"
    );
    assert!(world.reasons().contains(&"JobNotRunning"));
}

#[test]
fn savepoints_and_checkpoints_the_operator_cannot_delete_are_kept_and_block_nothing() {
    // savepoint.yaml uses s3://, which the operator cannot delete yet.
    let mut world = World::new("savepoint.yaml");
    world.deploy_stable();
    world.spec.image = "weir:next".into();
    world.settle(8);
    assert_eq!(world.status.job_status.previous_job_ids, ["job1"]);
    let old = |day: u32| SavepointInfo {
        location: format!("s3://state/orders/savepoints/old-{day}"),
        timestamp: format!("2025-12-{day:02}T00:00:00Z"),
        trigger: SavepointTrigger::Periodic,
        job_id: None,
        snapshot: None,
    };
    world
        .status
        .savepoints
        .history
        .splice(0..0, (1..=5).map(old));

    world.tick(60);
    let action = world.reconcile();
    assert!(matches!(action, Action::Deploy { .. }), "{action:?}");
    assert_eq!(
        world.status.savepoints.history.len(),
        6,
        "nothing dropped from the status"
    );
    assert!(world.status.savepoints.disposing.is_empty());
    assert_eq!(world.status.job_status.previous_job_ids, ["job1"]);
}

#[test]
fn with_s3_access_expired_s3_savepoints_and_old_runs_are_deleted() {
    let mut world = World::new("savepoint.yaml");
    world.s3_configured = true;
    world.deploy_stable();
    world.spec.image = "weir:next".into();
    world.settle(8);
    world.reconcile();
    assert_eq!(world.deleted_checkpoint_runs, ["job1"]);

    world.status.savepoints.history.insert(
        0,
        SavepointInfo {
            location: "s3://state/orders/savepoints/ancient".into(),
            timestamp: "2025-01-01T00:00:00Z".into(),
            trigger: SavepointTrigger::Periodic,
            job_id: None,
            snapshot: None,
        },
    );
    let action = world.reconcile();
    assert_eq!(
        action,
        Action::DisposeSavepoints {
            locations: vec!["s3://state/orders/savepoints/ancient".into()]
        }
    );
}

/// `(status, reason)` of each condition, in the order Ready, Running, Reconciling, Degraded.
fn conditions(world: &World) -> Vec<(String, String, String)> {
    world
        .status
        .conditions
        .iter()
        .map(|c| (c.type_.clone(), c.status.clone(), c.reason.clone()))
        .collect()
}

fn condition(world: &World, type_: &str) -> weir_operator::crd::Condition {
    lifecycle::conditions::get(&world.status, type_)
        .unwrap_or_else(|| panic!("no {type_} condition in {:#?}", world.status.conditions))
        .clone()
}

fn expect(items: [(&str, &str, &str); 4]) -> Vec<(String, String, String)> {
    items
        .iter()
        .map(|(t, s, r)| (t.to_string(), s.to_string(), r.to_string()))
        .collect()
}

#[test]
fn conditions_follow_a_job_from_its_first_deployment_to_stable() {
    let mut world = World::new("savepoint.yaml");
    world.reconcile();
    assert_eq!(
        conditions(&world),
        expect([
            ("Ready", "False", "Reconciling"),
            ("Running", "False", "NoJob"),
            ("Reconciling", "True", "Deploying"),
            ("Degraded", "False", "Healthy"),
        ])
    );
    assert!(
        world
            .status
            .conditions
            .iter()
            .all(|c| c.observed_generation == Some(1))
    );
    world.tick(5);
    world.reconcile();
    assert_eq!(condition(&world, "Running").status, "True");
    assert_eq!(condition(&world, "Ready").status, "False");

    world.tick(5);
    world.complete_checkpoint();
    world.reconcile();
    assert_eq!(
        conditions(&world),
        expect([
            ("Ready", "True", "Stable"),
            ("Running", "True", "JobRunning"),
            ("Reconciling", "False", "Idle"),
            ("Degraded", "False", "Healthy"),
        ])
    );
    assert_eq!(
        condition(&world, "Ready").last_transition_time,
        world.now.to_string()
    );
}

#[test]
fn a_condition_keeps_its_transition_time_until_its_status_flips() {
    let mut world = World::new("savepoint.yaml");
    world.deploy_stable();
    let ready_since = condition(&world, "Ready").last_transition_time;
    let degraded_since = condition(&world, "Degraded").last_transition_time;

    // Many reconciles later, nothing flipped: the times stay.
    for _ in 0..3 {
        world.tick(60);
        world.reconcile();
    }
    assert_eq!(condition(&world, "Ready").last_transition_time, ready_since);

    // A failing manual savepoint: Degraded flips (new time), Ready holds (same time).
    world.jm.script = vec![Err("disk full".into())];
    world.spec.job.savepoint_trigger_nonce = Some(1);
    world.reconcile();
    assert_eq!(
        condition(&world, "Reconciling").reason,
        "SavepointInProgress"
    );
    world.tick(5);
    world.reconcile();
    let degraded = condition(&world, "Degraded");
    assert_eq!(
        (degraded.status.as_str(), degraded.reason.as_str()),
        ("True", "Error")
    );
    assert!(
        degraded.message.contains("disk full"),
        "{}",
        degraded.message
    );
    assert_ne!(degraded.last_transition_time, degraded_since);
    assert_eq!(condition(&world, "Ready").last_transition_time, ready_since);

    // The next manual savepoint succeeds: Degraded flips back.
    world.tick(60);
    world.spec.job.savepoint_trigger_nonce = Some(2);
    world.reconcile();
    world.tick(5);
    world.reconcile();
    assert_eq!(condition(&world, "Degraded").status, "False");
    assert_eq!(
        condition(&world, "Degraded").last_transition_time,
        world.now.to_string()
    );

    // An upgrade flips Ready to False while it runs, and back to True once stable.
    world.spec.image = "weir:1.3".into();
    world.reconcile();
    let ready = condition(&world, "Ready");
    assert_eq!(ready.status, "False");
    assert_eq!(condition(&world, "Reconciling").reason, "Upgrading");
    world.settle(10);
    world.complete_checkpoint();
    world.reconcile();
    assert_eq!(condition(&world, "Ready").status, "True");
    assert_ne!(condition(&world, "Ready").last_transition_time, ready_since);
}

#[test]
fn a_suspended_job_is_neither_ready_nor_running_nor_reconciling() {
    let mut world = World::new("savepoint.yaml");
    world.deploy_stable();
    world.spec.job.state = weir_operator::crd::DesiredJobState::Suspended;
    world.reconcile();
    assert_eq!(condition(&world, "Reconciling").reason, "Suspending");
    world.settle(6);
    assert_eq!(
        conditions(&world),
        expect([
            ("Ready", "False", "Suspended"),
            ("Running", "False", "Suspended"),
            ("Reconciling", "False", "Idle"),
            ("Degraded", "False", "Healthy"),
        ])
    );
}

#[test]
fn a_rolled_back_job_is_ready_but_degraded_and_a_failed_one_is_neither() {
    let mut world = World::new("savepoint.yaml").with_file_storage();
    world.deploy_stable();
    world.spec.image = "weir:broken".into();
    world.pass_preflight();
    world.reconcile();
    world.tick(5);
    world.reconcile();
    world.reconcile();
    world.jm.job.as_mut().unwrap().state = JobState::Restarting;
    world.tick(301);
    world.reconcile();
    assert_eq!(condition(&world, "Reconciling").reason, "RollingBack");
    world.reconcile();
    world.tick(5);
    world.complete_checkpoint();
    world.reconcile();
    assert_eq!(world.status.lifecycle_state, LifecycleState::RolledBack);
    assert_eq!(
        conditions(&world),
        expect([
            ("Ready", "True", "RolledBack"),
            ("Running", "True", "JobRunning"),
            ("Reconciling", "False", "Idle"),
            ("Degraded", "True", "RolledBack"),
        ])
    );

    let mut world = World::new("savepoint.yaml");
    world.deploy_stable();
    world.jm.job.as_mut().unwrap().state = JobState::Failed;
    world.reconcile();
    assert_eq!(
        conditions(&world),
        expect([
            ("Ready", "False", "Failed"),
            ("Running", "False", "JobNotRunning"),
            ("Reconciling", "False", "Idle"),
            ("Degraded", "True", "Failed"),
        ])
    );
}

#[test]
fn a_job_being_deleted_is_reconciling_and_not_ready() {
    let mut world = World::new("savepoint.yaml");
    world.deploy_stable();
    world.reconcile_deletion();
    assert_eq!(condition(&world, "Ready").reason, "Deleting");
    assert_eq!(condition(&world, "Ready").status, "False");
    assert_eq!(condition(&world, "Reconciling").status, "True");
}

#[test]
fn an_invalid_spec_makes_the_job_degraded_with_the_validation_message() {
    let mut world = World::new("savepoint.yaml");
    world.deploy_stable();
    let mut status = world.status.clone();
    lifecycle::conditions::update(&mut status, Some(2), world.now, Some("job.parallelism: 0"));
    let ready = lifecycle::conditions::get(&status, "Ready").unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "ValidationError")
    );
    let degraded = lifecycle::conditions::get(&status, "Degraded").unwrap();
    assert_eq!(degraded.message, "job.parallelism: 0");
    assert_eq!(degraded.observed_generation, Some(2));
    // The job itself still runs on its last valid spec.
    assert_eq!(
        lifecycle::conditions::get(&status, "Running")
            .unwrap()
            .status,
        "True"
    );
}

// ---- StreamJobSnapshot ------------------------------------------------------------------------

use weir_operator::crd::{
    SnapshotKind, SnapshotState, StreamJobSnapshotSpec, StreamJobSnapshotStatus,
};
use weir_operator::snapshot::{
    self, Disposal, MAX_ATTEMPTS, SnapshotAction, SnapshotInputs, SnapshotObservation,
};

/// A hand-created snapshot of the World's job: decides and acts against the same fake
/// JobManager as the StreamJob.
struct SnapshotWorld {
    spec: StreamJobSnapshotSpec,
    status: StreamJobSnapshotStatus,
    triggers: u32,
    reasons: Vec<&'static str>,
}

impl SnapshotWorld {
    fn new(job_name: &str) -> SnapshotWorld {
        SnapshotWorld {
            spec: StreamJobSnapshotSpec {
                job_name: job_name.into(),
                kind: SnapshotKind::Savepoint,
                path: None,
                dispose_on_delete: true,
            },
            status: StreamJobSnapshotStatus::default(),
            triggers: 0,
            reasons: Vec::new(),
        }
    }

    fn observe(&self, world: &World, job_exists: bool) -> SnapshotObservation {
        let savepoint = self.status.trigger_id.as_ref().and_then(|id| {
            world.jm.job.as_ref()?;
            Some(match world.jm.operations.get(id) {
                None => SavepointProgress::Unknown,
                Some(op) if op.polls_left > 0 => SavepointProgress::InProgress,
                Some(Operation {
                    outcome: Ok(location),
                    ..
                }) => SavepointProgress::Completed {
                    location: location.clone(),
                },
                Some(Operation {
                    outcome: Err(cause),
                    ..
                }) => SavepointProgress::Failed {
                    cause: cause.clone(),
                },
            })
        });
        SnapshotObservation {
            job_exists,
            savepoint_dir: world.spec.savepoint_dir().map(str::to_string),
            timeout: lifecycle::DEFAULT_SAVEPOINT_TIMEOUT,
            storage: world.spec.storage.clone(),
            job: world.jm.job.clone(),
            savepoint,
        }
    }

    /// Decides, writes the status, and (unless `crash`) acts on the World's JobManager.
    fn reconcile_with(&mut self, world: &mut World, crash: bool) -> SnapshotAction {
        self.triggers += 1;
        let observation = self.observe(world, true);
        let step = snapshot::decide(&SnapshotInputs {
            spec: &self.spec,
            status: &self.status,
            observation: &observation,
            now: world.now,
            fresh_trigger_id: format!("snap-trigger-{}", self.triggers),
        });
        self.status = step.status;
        self.reasons.extend(step.events.iter().map(|e| e.reason));
        if let SnapshotAction::TriggerSavepoint {
            job_id,
            trigger_id,
            target_directory,
        } = &step.action
            && !crash
        {
            world.act(&Action::TriggerSavepoint {
                job_id: job_id.clone(),
                trigger_id: trigger_id.clone(),
                target_directory: target_directory.clone(),
                stop: false,
            });
        }
        step.action
    }

    fn reconcile(&mut self, world: &mut World) -> SnapshotAction {
        self.reconcile_with(world, false)
    }
}

#[test]
fn a_hand_created_snapshot_takes_one_savepoint_and_completes_with_its_path() {
    let mut world = World::new("savepoint.yaml");
    world.deploy_stable();
    let mut snap = SnapshotWorld::new("orders");

    let action = snap.reconcile(&mut world);
    assert!(matches!(action, SnapshotAction::TriggerSavepoint { .. }));
    assert_eq!(snap.status.state, SnapshotState::InProgress);
    assert_eq!(snap.status.job_id.as_deref(), Some("job1"));
    assert_eq!(snap.reconcile(&mut world), SnapshotAction::None);
    world.tick(5);
    snap.reconcile(&mut world);
    assert_eq!(snap.status.state, SnapshotState::Completed);
    assert_eq!(
        snap.status.path.as_deref(),
        Some("s3://state/orders/savepoints/savepoint-snap-trigger-1")
    );
    assert_eq!(snap.status.trigger, Some(SavepointTrigger::Manual));
    assert!(snap.status.time.is_some());
    assert_eq!(world.jm.started, ["snap-trigger-1"]);
    // The job keeps running, and a settled snapshot does nothing more.
    assert_eq!(world.jm.job.as_ref().unwrap().state, JobState::Running);
    assert_eq!(snap.reconcile(&mut world), SnapshotAction::None);
    assert_eq!(world.jm.started.len(), 1);
}

#[test]
fn an_operator_restart_after_recording_the_snapshot_trigger_resends_the_same_id() {
    let mut world = World::new("savepoint.yaml");
    world.deploy_stable();
    let mut snap = SnapshotWorld::new("orders");
    snap.reconcile_with(&mut world, true); // recorded, never sent
    let recorded = snap.status.trigger_id.clone().unwrap();
    let action = snap.reconcile(&mut world);
    assert!(
        matches!(action, SnapshotAction::TriggerSavepoint { ref trigger_id, .. } if *trigger_id == recorded)
    );
    world.tick(5);
    snap.reconcile(&mut world);
    assert_eq!(snap.status.state, SnapshotState::Completed);
    assert_eq!(world.jm.started, [recorded]);
}

#[test]
fn a_snapshot_of_a_job_that_is_not_running_is_retried_with_backoff_then_fails_with_the_reason() {
    let mut world = World::new("savepoint.yaml");
    world.deploy_stable();
    world.jm.job.as_mut().unwrap().state = JobState::Restarting;
    let mut snap = SnapshotWorld::new("orders");
    for attempt in 1..MAX_ATTEMPTS {
        assert_eq!(snap.reconcile(&mut world), SnapshotAction::None);
        assert_eq!(snap.status.state, SnapshotState::Pending);
        assert_eq!(snap.status.attempts, attempt);
        assert!(
            snap.status.reason.as_ref().unwrap().contains("RESTARTING"),
            "{:?}",
            snap.status.reason
        );
        // Backing off: nothing happens before the retry time.
        assert_eq!(snap.reconcile(&mut world), SnapshotAction::None);
        assert_eq!(snap.status.attempts, attempt);
        world.tick(300);
    }
    snap.reconcile(&mut world);
    assert_eq!(snap.status.state, SnapshotState::Failed);
    assert!(
        snap.status
            .reason
            .as_ref()
            .unwrap()
            .contains(&format!("attempt {MAX_ATTEMPTS} of {MAX_ATTEMPTS}"))
    );
    assert!(snap.reasons.contains(&"SnapshotFailed"));
    assert!(world.jm.started.is_empty());
}

#[test]
fn a_failed_snapshot_savepoint_is_retried_and_the_retry_can_succeed() {
    let mut world = World::new("savepoint.yaml");
    world.deploy_stable();
    world.jm.script = vec![Err("bucket unreachable".into())];
    let mut snap = SnapshotWorld::new("orders");
    snap.reconcile(&mut world);
    world.tick(5);
    snap.reconcile(&mut world);
    assert_eq!(snap.status.state, SnapshotState::Pending);
    assert!(
        snap.status
            .reason
            .as_ref()
            .unwrap()
            .contains("bucket unreachable")
    );
    world.tick(10);
    snap.reconcile(&mut world);
    world.tick(5);
    snap.reconcile(&mut world);
    assert_eq!(snap.status.state, SnapshotState::Completed);
    assert_eq!(world.jm.started.len(), 2);
    assert_eq!(snap.status.reason, None);
}

#[test]
fn a_snapshot_of_a_missing_job_or_a_checkpoint_on_request_fails_with_the_reason() {
    let world = World::new("savepoint.yaml");
    let mut snap = SnapshotWorld::new("nope");
    let mut observation = snap.observe(&world, false);
    let decide = |snap: &SnapshotWorld, observation: &SnapshotObservation| {
        snapshot::decide(&SnapshotInputs {
            spec: &snap.spec,
            status: &snap.status,
            observation,
            now: world.now,
            fresh_trigger_id: "t".into(),
        })
    };
    let step = decide(&snap, &observation);
    assert!(
        step.status
            .reason
            .as_ref()
            .unwrap()
            .contains("StreamJob nope not found")
    );

    observation.job_exists = true;
    snap.spec.kind = SnapshotKind::Checkpoint;
    let step = decide(&snap, &observation);
    assert_eq!(step.status.state, SnapshotState::Failed);
    assert!(step.status.reason.unwrap().contains("spec.path"));

    snap.spec.kind = SnapshotKind::Savepoint;
    observation.savepoint_dir = None;
    let step = decide(&snap, &observation);
    assert_eq!(step.status.state, SnapshotState::Failed);
    assert!(step.status.reason.unwrap().contains("no savepoints.dir"));
}

#[test]
fn a_snapshot_with_a_path_is_registered_without_taking_a_savepoint() {
    let mut world = World::new("savepoint.yaml");
    world.deploy_stable();
    let mut snap = SnapshotWorld::new("orders");
    snap.spec.kind = SnapshotKind::Checkpoint;
    snap.spec.path = Some("s3://state/orders/checkpoints/job1/chk-7".into());
    assert_eq!(snap.reconcile(&mut world), SnapshotAction::None);
    assert_eq!(snap.status.state, SnapshotState::Completed);
    assert_eq!(snap.status.path, snap.spec.path);
    assert_eq!(snap.status.trigger, None);
    assert!(world.jm.started.is_empty());
}

#[test]
fn a_snapshot_deleted_while_its_job_is_suspended_deletes_its_objects_unless_a_job_restores_from_it()
{
    let mut world = World::new("savepoint.yaml");
    world.deploy_stable();
    let mut snap = SnapshotWorld::new("orders");
    snap.reconcile(&mut world);
    world.tick(5);
    snap.reconcile(&mut world);
    let path = snap.status.path.clone().unwrap();

    world.spec.job.state = weir_operator::crd::DesiredJobState::Suspended;
    world.settle(6);
    assert!(!world.cluster.exists);
    // Disposal needs no JobManager: only the snapshot's own spec and status.
    assert_eq!(
        snapshot::disposal(&snap.spec, &snap.status, None),
        Disposal::Delete(path.clone())
    );
    // A StreamJob whose deployment restores from it holds the deletion.
    assert_eq!(
        snapshot::disposal(&snap.spec, &snap.status, Some("orders-v2")),
        Disposal::InUse {
            location: path,
            by: "orders-v2".into()
        }
    );
    snap.spec.dispose_on_delete = false;
    assert_eq!(
        snapshot::disposal(&snap.spec, &snap.status, None),
        Disposal::Keep
    );
    // One that never completed has nothing to delete.
    let pending = SnapshotWorld::new("orders");
    let mut spec = pending.spec.clone();
    spec.dispose_on_delete = true;
    assert_eq!(
        snapshot::disposal(&spec, &pending.status, None),
        Disposal::Keep
    );
}

#[test]
fn the_jobs_own_savepoints_become_snapshots_that_never_dispose_their_data() {
    let mut world = World::new("savepoint.yaml");
    world.deploy_stable();
    world.spec.image = "weir:1.3".into();
    world.settle(8);
    let upgrade = world.status.savepoints.last.clone().unwrap();
    assert_eq!(upgrade.job_id.as_deref(), Some("job1"));
    let name = snapshot::name_for("orders", &upgrade);
    assert!(name.starts_with("orders-upgrade-"), "{name}");
    assert_eq!(name, snapshot::name_for("orders", &upgrade), "stable names");
    let (spec, status) = snapshot::for_savepoint("orders", &upgrade, None);
    assert_eq!(spec.path.as_deref(), Some(upgrade.location.as_str()));
    assert!(!spec.dispose_on_delete);
    assert_eq!(status.state, SnapshotState::Completed);
    assert_eq!(status.trigger, Some(SavepointTrigger::Upgrade));
    assert_eq!(status.job_id.as_deref(), Some("job1"));
}

#[test]
fn a_job_starting_from_a_snapshot_waits_for_it_and_then_restores_from_its_path() {
    let mut world = World::new("savepoint.yaml");
    world.spec.job.initial_snapshot_name = Some("orders-deletion-1a2b3c4d".into());
    world.initial_snapshot = Some(InitialSnapshot::NotReady("it is InProgress".into()));
    assert_eq!(world.reconcile(), Action::None);
    assert!(!world.cluster.exists);
    assert!(world.status.reconciliation.last_reconciled_spec.is_none());
    assert!(
        world
            .status
            .error
            .as_ref()
            .unwrap()
            .contains("orders-deletion-1a2b3c4d")
    );
    assert!(world.reasons().contains(&"InitialSnapshotNotReady"));

    world.initial_snapshot = Some(InitialSnapshot::Ready(
        "s3://state/orders/savepoints/savepoint-final".into(),
    ));
    world.reconcile();
    assert_eq!(
        world.cluster.restores,
        [Some(
            "s3://state/orders/savepoints/savepoint-final".to_string()
        )]
    );
    assert_eq!(world.status.error, None);
}

#[test]
fn history_cleanup_runs_while_the_job_is_suspended_and_keeps_the_resume_savepoint() {
    let mut world = World::new("savepoint.yaml").with_file_storage();
    world.deploy_stable();
    world.spec.job.state = weir_operator::crd::DesiredJobState::Suspended;
    world.settle(6);
    let resume_from = world.status.reconciliation.restore_path.clone().unwrap();
    let old = |name: &str| SavepointInfo {
        location: format!("file:///state/orders/savepoints/{name}"),
        timestamp: "2025-12-01T00:00:00Z".into(),
        trigger: SavepointTrigger::Periodic,
        job_id: None,
        snapshot: None,
    };
    // historyMaxCount is 3: four older ones beside the suspend savepoint.
    for name in ["a", "b", "c", "d"] {
        world.status.savepoints.history.insert(0, old(name));
    }
    world.tick(60);
    let action = world.reconcile();
    let Action::DisposeSavepoints { locations } = action else {
        panic!("expected a disposal, got {action:?}");
    };
    assert!(!locations.contains(&resume_from));
    assert!(!world.cluster.exists, "cleanup does not start the job");
    assert!(
        world
            .status
            .savepoints
            .history
            .iter()
            .any(|s| s.location == resume_from)
    );
}

// ---- Health ----------------------------------------------------------------------------------

fn with_health(world: &mut World, restarts: Option<i32>, progress: Option<&str>) {
    world.spec.health = Some(weir_operator::crd::HealthSpec {
        restarts_threshold: restarts,
        restarts_window: "10m".into(),
        checkpoint_progress_timeout: progress.map(str::to_string),
    });
}

/// One reconcile that leaves the job running as it is (at most re-applying its objects).
fn keeps_running(world: &mut World) -> bool {
    let action = world.reconcile();
    matches!(action, Action::None | Action::Deploy { .. })
        && world.jm.runs == 1
        && !world.reasons().contains(&"HealthRestart")
}

/// The fake job fails over `n` times, restoring from its checkpoint each time.
fn restart(world: &mut World, n: u64) {
    world.jm.job.as_mut().unwrap().restores += n;
}

#[test]
fn a_job_restarting_more_than_the_threshold_within_the_window_is_redeployed_from_its_newest_checkpoint()
 {
    let mut world = World::new("last-state.yaml");
    with_health(&mut world, Some(3), None);
    world.deploy_stable();
    world.complete_checkpoint();
    world.tick(60);
    world.reconcile();
    let newest = world.jm.job.as_ref().unwrap().latest_checkpoint.clone();

    restart(&mut world, 3);
    world.tick(60);
    assert!(keeps_running(&mut world), "3 restarts are not more than 3");
    restart(&mut world, 1);
    world.tick(60);
    let action = world.reconcile();
    assert_eq!(action, Action::TearDown);
    assert!(world.reasons().contains(&"HealthRestart"));
    assert_eq!(world.status.health.restarts, 1);
    assert_eq!(world.status.reconciliation.restore_path, newest);
    let degraded = condition(&world, "Degraded");
    assert_eq!(
        (degraded.status.as_str(), degraded.reason.as_str()),
        ("True", "HealthRestart")
    );
    assert!(
        degraded.message.contains("restarted 4 times"),
        "{}",
        degraded.message
    );

    // Redeployed from that checkpoint; stable again clears Degraded.
    world.reconcile();
    assert_eq!(world.cluster.restores.last().unwrap(), &newest);
    world.tick(5);
    world.complete_checkpoint();
    world.reconcile();
    assert_eq!(world.status.lifecycle_state, LifecycleState::Stable);
    assert_eq!(condition(&world, "Degraded").status, "False");
    assert_eq!(world.jm.runs, 2);
}

#[test]
fn restarts_spread_over_several_windows_do_not_trigger_a_redeployment() {
    let mut world = World::new("last-state.yaml");
    with_health(&mut world, Some(3), None);
    world.deploy_stable();
    // 12 restarts in an hour, but never more than 3 within one 10-minute window.
    for _ in 0..6 {
        restart(&mut world, 2);
        world.tick(11 * 60);
        assert!(keeps_running(&mut world));
    }
    assert!(!world.reasons().contains(&"HealthRestart"));
    assert_eq!(world.jm.runs, 1);
}

#[test]
fn a_running_job_that_completes_no_checkpoint_for_too_long_is_redeployed_from_the_last_one() {
    let mut world = World::new("last-state.yaml");
    with_health(&mut world, None, Some("5m"));
    world.deploy_stable();
    let last = world.jm.job.as_ref().unwrap().latest_checkpoint.clone();
    for _ in 0..4 {
        world.tick(60);
        world.complete_checkpoint();
        assert!(keeps_running(&mut world), "checkpoints progress");
    }
    let last_completed = world.jm.job.as_ref().unwrap().latest_checkpoint.clone();
    assert_ne!(last, last_completed);
    // Storage becomes unreachable: no checkpoint completes any more.
    world.tick(4 * 60);
    assert!(keeps_running(&mut world));
    world.tick(61);
    assert_eq!(world.reconcile(), Action::TearDown);
    assert_eq!(world.status.reconciliation.restore_path, last_completed);
    let event = world
        .events
        .iter()
        .find(|e| e.reason == "HealthRestart")
        .unwrap();
    assert_eq!(event.type_, EventType::Warning);
    assert!(
        event.message.contains("no checkpoint completed for 300s"),
        "{}",
        event.message
    );
}

#[test]
fn finished_suspending_and_deleting_jobs_are_never_health_restarted() {
    // FINISHED.
    let mut world = World::new("last-state.yaml");
    with_health(&mut world, Some(1), Some("1m"));
    world.deploy_stable();
    world.jm.job.as_mut().unwrap().state = JobState::Finished;
    world.tick(600);
    world.reconcile();
    assert!(!world.reasons().contains(&"HealthRestart"));

    // Being suspended: the suspension wins, however unhealthy the job looks.
    let mut world = World::new("last-state.yaml");
    with_health(&mut world, Some(1), Some("1m"));
    world.deploy_stable();
    restart(&mut world, 5);
    world.tick(600);
    world.spec.job.state = weir_operator::crd::DesiredJobState::Suspended;
    world.settle(6);
    assert_eq!(world.status.lifecycle_state, LifecycleState::Suspended);
    assert!(!world.reasons().contains(&"HealthRestart"));

    // Being deleted.
    let mut world = World::new("last-state.yaml");
    with_health(&mut world, Some(1), Some("1m"));
    world.deploy_stable();
    restart(&mut world, 5);
    world.tick(600);
    while !world.reconcile_deletion() {}
    assert!(!world.reasons().contains(&"HealthRestart"));
    assert_eq!(world.jm.runs, 1);
}

// ---- Never stuck -------------------------------------------------------------------------------

/// A savepoint-mode job, STABLE, whose upgrade savepoints all fail.
fn failing_upgrade() -> World {
    let mut world = World::new("savepoint.yaml");
    world.deploy_stable();
    world.complete_checkpoint();
    world.tick(5);
    world.reconcile();
    world.jm.script = vec![Err("bucket unreachable".into()); 20];
    world.spec.image = "weir:1.3".into();
    world.pass_preflight();
    world.reconcile(); // trigger
    world.tick(5);
    world.reconcile(); // failed: the old job keeps running, retry after 10 s
    assert_eq!(world.status.reconciliation.phase, ReconcilePhase::Stopping);
    assert!(world.status.error.is_some());
    world
}

#[test]
fn stopping_a_new_spec_during_a_failing_upgrade_becomes_the_rollouts_target() {
    let mut world = failing_upgrade();
    world.spec.image = "weir:1.4".into();
    world.jm.script.clear();
    world.tick(15);
    world.settle(10);
    world.complete_checkpoint();
    world.reconcile();
    assert_eq!(world.status.lifecycle_state, LifecycleState::Stable);
    assert_eq!(world.cluster.deployed.as_ref().unwrap().0.image, "weir:1.4");
    assert!(
        world
            .events
            .iter()
            .any(|e| e.reason == "SpecChanged" && e.message.contains("now deploys the new spec"))
    );
}

#[test]
fn stopping_going_back_to_the_running_spec_cancels_a_failing_upgrade() {
    let running_image = World::new("savepoint.yaml").spec.image;
    let mut world = failing_upgrade();
    world.spec.image = running_image;
    world.tick(15);
    world.reconcile();
    assert_eq!(world.status.reconciliation.phase, ReconcilePhase::Idle);
    assert_eq!(world.status.lifecycle_state, LifecycleState::Stable);
    assert_eq!(world.status.error, None);
    assert!(world.reasons().contains(&"RolloutCancelled"));
    assert_eq!(world.jm.runs, 1, "the running job was never touched");
    assert_eq!(condition(&world, "Ready").status, "True");
}

#[test]
fn stopping_a_suspend_during_a_failing_upgrade_suspends_with_the_newest_checkpoint_after_three_failures()
 {
    let mut world = failing_upgrade();
    world.spec.job.state = weir_operator::crd::DesiredJobState::Suspended;
    let newest = world.jm.job.as_ref().unwrap().latest_checkpoint.clone();
    world.reconcile_until_suspended(60);
    assert_eq!(world.status.lifecycle_state, LifecycleState::Suspended);
    assert!(!world.cluster.exists);
    assert_eq!(
        world.jm.started.len(),
        3,
        "three savepoint attempts, then the fallback"
    );
    assert!(world.reasons().contains(&"SavepointFallback"));
    assert_eq!(world.status.reconciliation.restore_path, newest);
}

#[test]
fn stopping_a_delete_during_a_failing_upgrade_keeps_the_newest_checkpoint_and_finishes() {
    let mut world = failing_upgrade();
    world.finish_deletion(60);
    assert!(!world.cluster.exists);
    let last = world.status.savepoints.last.clone().unwrap();
    assert_eq!(last.trigger, SavepointTrigger::Deletion);
    assert!(last.location.contains("/chk-"), "{}", last.location);
    assert!(world.reasons().contains(&"SavepointFallback"));
    let (spec, _) = snapshot::for_savepoint("orders", &last, None);
    assert_eq!(spec.kind, SnapshotKind::Checkpoint);
}

#[test]
fn stopping_a_delete_while_an_upgrade_savepoint_is_in_flight_keeps_that_savepoint() {
    let mut world = World::new("savepoint.yaml");
    world.deploy_stable();
    world.spec.image = "weir:1.3".into();
    world.pass_preflight();
    world.reconcile(); // upgrade stop-with-savepoint sent
    world.tick(5);
    while !world.reconcile_deletion() {}
    let last = world.status.savepoints.last.clone().unwrap();
    assert_eq!(last.trigger, SavepointTrigger::Deletion);
    assert!(
        last.location.contains("savepoint-trigger-"),
        "{}",
        last.location
    );
    assert_eq!(world.jm.started.len(), 1, "no second savepoint");
}

#[test]
fn awaiting_ready_a_delete_of_a_job_that_never_became_ready_keeps_its_newest_checkpoint() {
    let mut world = World::new("savepoint.yaml");
    world.deploy_stable();
    world.spec.image = "weir:broken".into();
    world.settle(6);
    // The new run restarts and completes nothing; its predecessor's checkpoint is in storage.
    world.jm.job.as_mut().unwrap().state = JobState::Restarting;
    world.storage_checkpoint = Some("s3://state/orders/checkpoints/job2/chk-4".into());
    let started = world.jm.started.len();
    while !world.reconcile_deletion() {}
    let last = world.status.savepoints.last.clone().unwrap();
    assert_eq!(
        (last.location.as_str(), last.trigger),
        (
            "s3://state/orders/checkpoints/job2/chk-4",
            SavepointTrigger::Deletion
        )
    );
    assert_eq!(
        world.jm.started.len(),
        started,
        "no savepoint of a job that is not RUNNING"
    );
    assert!(!world.cluster.exists);
}

#[test]
fn deleting_a_suspended_job_keeps_its_suspend_savepoint_as_the_deletion_snapshot() {
    let mut world = World::new("savepoint.yaml");
    world.deploy_stable();
    world.spec.job.state = weir_operator::crd::DesiredJobState::Suspended;
    world.settle(6);
    let suspend = world.status.reconciliation.restore_path.clone().unwrap();
    world.storage_checkpoint = Some("s3://state/orders/checkpoints/job1/chk-1".into());
    assert!(world.reconcile_deletion());
    let last = world.status.savepoints.last.clone().unwrap();
    assert_eq!(
        (last.location.as_str(), last.trigger),
        (suspend.as_str(), SavepointTrigger::Deletion)
    );
}

#[test]
fn idle_a_spec_change_waits_at_most_a_minute_for_a_periodic_savepoint_that_hangs() {
    let mut world = World::new("savepoint.yaml");
    world.deploy_stable();
    world.spec.job.savepoint_trigger_nonce = Some(1);
    world.reconcile(); // manual savepoint sent; it never finishes
    world
        .jm
        .operations
        .values_mut()
        .for_each(|op| op.polls_left = u32::MAX);
    world.spec.image = "weir:1.3".into();
    world.tick(30);
    world.reconcile();
    assert_eq!(world.status.reconciliation.phase, ReconcilePhase::Idle);
    world.tick(31);
    world.pass_preflight();
    let action = world.reconcile();
    assert!(
        matches!(action, Action::TriggerSavepoint { stop: true, .. }),
        "{action:?}"
    );
    assert!(world.reasons().contains(&"SavepointAbandoned"));
    assert_eq!(world.status.savepoints.last_trigger_nonce, Some(1));
}

/// A job whose upgrade to a new image is being pre-flight checked: the check pod runs and has
/// not decided yet.
fn checking_upgrade() -> World {
    let mut world = World::new("savepoint.yaml");
    world.deploy_stable();
    world.preflight_verdict = None; // `weir check` keeps running
    world.spec.image = "weir:1.3".into();
    let action = world.reconcile();
    assert!(matches!(action, Action::RunPreflight { .. }), "{action:?}");
    assert_eq!(world.status.reconciliation.phase, ReconcilePhase::Checking);
    world.tick(5);
    world.reconcile();
    assert_eq!(world.status.reconciliation.phase, ReconcilePhase::Checking);
    world
}

#[test]
fn checking_a_delete_during_the_preflight_check_stops_the_old_job_with_a_savepoint_and_finishes() {
    let mut world = checking_upgrade();
    let runs = world.jm.runs;
    world.finish_deletion(5);
    assert!(!world.cluster.exists);
    let last = world.status.savepoints.last.clone().unwrap();
    assert_eq!(last.trigger, SavepointTrigger::Deletion);
    assert!(
        last.location.contains("savepoint-trigger-"),
        "a savepoint of the running job: {}",
        last.location
    );
    assert_eq!(world.jm.runs, runs, "the checked spec was never deployed");
}

#[test]
fn checking_a_suspend_during_the_preflight_check_suspends_the_old_job_with_a_savepoint() {
    let mut world = checking_upgrade();
    world.spec.job.state = weir_operator::crd::DesiredJobState::Suspended;
    world.reconcile_until_suspended(5);
    assert_eq!(world.status.lifecycle_state, LifecycleState::Suspended);
    assert!(!world.cluster.exists);
    let restore = world.status.reconciliation.restore_path.clone().unwrap();
    assert!(restore.contains("savepoint-trigger-"), "{restore}");
    assert_eq!(
        world.status.reconciliation.preflight, None,
        "no check is left pending"
    );
}
