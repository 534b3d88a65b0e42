//! StreamJobSnapshots: their own controller (observe the referenced StreamJob and its
//! JobManager → [`snapshot::decide`] → write status → trigger), their finalizer (delete the
//! objects from storage with `disposeOnDelete`, using the storage settings the snapshot
//! recorded, so it works with the StreamJob suspended or gone), and the StreamJob side: one
//! snapshot per savepoint the StreamJob takes, removed again when retention deletes the
//! savepoint, and the lookup behind `job.initialSnapshotName`.

use std::sync::Arc;
use std::time::Duration;

use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action as Requeue;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::{Resource, ResourceExt};
use tracing::Instrument;

use super::act::{publish, publish_on};
use super::observe::{jobmanager, storage_from};
use super::{Context, Error, chain, new_trigger_id};
use crate::crd::{
    SavepointTrigger, SnapshotState, StreamJob, StreamJobSnapshot, StreamJobSnapshotStatus,
    StreamJobStatus,
};
use crate::lifecycle::{
    DEFAULT_SAVEPOINT_TIMEOUT, EventNote, EventType, InitialSnapshot, trigger_name,
};
use crate::snapshot::{self, Disposal, SnapshotAction, SnapshotInputs, SnapshotObservation};
use crate::{duration, names};

/// How long a StreamJob's own snapshot is left to its controller to fill in.
const RECORD_GRACE: Duration = Duration::from_secs(30);

/// Runs the finalizer, which dispatches to `apply` or `cleanup`.
pub async fn reconcile(snap: Arc<StreamJobSnapshot>, ctx: Arc<Context>) -> Result<Requeue, Error> {
    let namespace = snap.namespace().ok_or(Error::NoNamespace)?;
    let span = tracing::info_span!(
        "reconcile",
        kind = "StreamJobSnapshot",
        namespace = %namespace,
        name = %snap.name_any(),
    );
    let api: Api<StreamJobSnapshot> = Api::namespaced(ctx.client.clone(), &namespace);
    finalizer(&api, names::SNAPSHOT_FINALIZER, snap, |event| async {
        match event {
            Finalizer::Apply(snap) => apply(&snap, &ctx, &namespace).await,
            Finalizer::Cleanup(snap) => cleanup(&snap, &ctx, &namespace).await,
        }
    })
    .instrument(span)
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

/// Snapshots retry on their own schedule (their status carries it); a failed API call or
/// storage deletion is looked at again after a short pause.
pub fn error_policy(snap: Arc<StreamJobSnapshot>, error: &Error, _ctx: Arc<Context>) -> Requeue {
    if let Error::Finalizer(inner) = error
        && let kube::runtime::finalizer::Error::CleanupFailed(Error::CleanupPending(wait)) =
            inner.as_ref()
    {
        return Requeue::requeue(*wait);
    }
    tracing::warn!(snapshot = %snap.name_any(), error = %chain(error), "snapshot reconcile error");
    Requeue::requeue(Duration::from_secs(15))
}

async fn apply(snap: &StreamJobSnapshot, ctx: &Context, namespace: &str) -> Result<Requeue, Error> {
    let status = snap.status.clone().unwrap_or_default();
    if matches!(
        status.state,
        SnapshotState::Completed | SnapshotState::Failed
    ) {
        return Ok(Requeue::await_change());
    }
    // A StreamJob's own savepoint: its controller writes the status (trigger, job id) right
    // after creating the object. Registering it here as well would race that write and lose
    // them; only a snapshot whose status never came (the operator stopped in between) is
    // registered here, after a grace period.
    if snap.labels().contains_key(names::LABEL_SNAPSHOT_TRIGGER)
        && let Some(created) = &snap.metadata.creation_timestamp
        && let Ok(age) = Duration::try_from(created.0.duration_until(jiff::Timestamp::now()))
        && age < RECORD_GRACE
    {
        return Ok(Requeue::requeue(RECORD_GRACE.saturating_sub(age)));
    }
    let jobs: Api<StreamJob> = Api::namespaced(ctx.client.clone(), namespace);
    let job = jobs
        .get_opt(&snap.spec.job_name)
        .await
        .map_err(Error::Kube)?;
    let mut observation = SnapshotObservation {
        job_exists: job.is_some(),
        timeout: DEFAULT_SAVEPOINT_TIMEOUT,
        ..SnapshotObservation::default()
    };
    if let Some(job) = &job {
        observation.savepoint_dir = job.spec.savepoint_dir().map(str::to_string);
        observation.storage = job.spec.storage.clone();
        observation.timeout = job
            .spec
            .savepoints
            .as_ref()
            .and_then(|s| s.timeout.as_deref())
            .and_then(|t| duration::parse(t).ok())
            .unwrap_or(DEFAULT_SAVEPOINT_TIMEOUT);
        if snap.spec.path.is_none() {
            let (jm, base) = jobmanager(job, ctx, namespace).await?;
            match jm.observe_job(&base).await {
                Ok(observed) => observation.job = observed,
                Err(error) => tracing::info!(error = %error, "JobManager not answering"),
            }
            if let (Some(job_id), Some(trigger_id), Some(_)) =
                (&status.job_id, &status.trigger_id, &observation.job)
            {
                match jm.savepoint_status(&base, job_id, trigger_id).await {
                    Ok(progress) => observation.savepoint = Some(progress),
                    Err(error) => tracing::info!(error = %error, "savepoint status unknown"),
                }
            }
        }
    }
    let step = snapshot::decide(&SnapshotInputs {
        spec: &snap.spec,
        status: &status,
        observation: &observation,
        now: jiff::Timestamp::now(),
        fresh_trigger_id: new_trigger_id(snap),
    });
    let mut next = step.status;
    if next.state == SnapshotState::Completed
        && next.size_bytes.is_none()
        && let Some(path) = &next.path
    {
        let storage = storage_from(next.storage.as_ref(), ctx, namespace).await?;
        next.size_bytes = storage
            .size(path)
            .await
            .and_then(|bytes| i64::try_from(bytes).ok());
    }
    write_snapshot_status(ctx, namespace, &snap.name_any(), &next).await?;
    if status.state == SnapshotState::InProgress
        && next.state == SnapshotState::Completed
        && let Some(triggered) = next
            .triggered_at
            .as_deref()
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        && let Ok(took) = Duration::try_from(triggered.duration_until(jiff::Timestamp::now()))
    {
        ctx.metrics.snapshot_completed(took);
    }
    for note in &step.events {
        publish_on(ctx, &snap.object_ref(&()), note).await;
    }
    if let (
        SnapshotAction::TriggerSavepoint {
            job_id,
            trigger_id,
            target_directory,
        },
        Some(job),
    ) = (&step.action, &job)
    {
        let (jm, base) = jobmanager(job, ctx, namespace).await?;
        jm.trigger_savepoint(&base, job_id, trigger_id, target_directory, false)
            .await
            .map_err(Error::Rest)?;
    }
    Ok(step
        .requeue_after
        .map_or_else(Requeue::await_change, Requeue::requeue))
}

async fn cleanup(
    snap: &StreamJobSnapshot,
    ctx: &Context,
    namespace: &str,
) -> Result<Requeue, Error> {
    let status = snap.status.clone().unwrap_or_default();
    let in_use_by = match &status.path {
        Some(path) if snap.spec.dispose_on_delete => restoring_from(ctx, namespace, path).await?,
        _ => None,
    };
    match snapshot::disposal(&snap.spec, &status, in_use_by.as_deref()) {
        Disposal::Keep => Ok(Requeue::await_change()),
        Disposal::Delete(location) => {
            let storage = storage_from(status.storage.as_ref(), ctx, namespace).await?;
            storage.delete(&location).await.map_err(Error::Storage)?;
            publish_on(
                ctx,
                &snap.object_ref(&()),
                &EventNote {
                    type_: EventType::Normal,
                    reason: "SnapshotDisposed",
                    message: format!("deleted {location} from storage"),
                },
            )
            .await;
            Ok(Requeue::await_change())
        }
        Disposal::InUse { location, by } => {
            publish_on(
                ctx,
                &snap.object_ref(&()),
                &EventNote {
                    type_: EventType::Warning,
                    reason: "SnapshotInUse",
                    message: format!(
                        "not deleting {location}: StreamJob {by} restores from it; the deletion \
                         waits (set disposeOnDelete: false to keep the data and let it go)"
                    ),
                },
            )
            .await;
            Err(Error::CleanupPending(Duration::from_secs(60)))
        }
    }
}

/// The StreamJob in `namespace` whose current or next deployment restores from `location`.
async fn restoring_from(
    ctx: &Context,
    namespace: &str,
    location: &str,
) -> Result<Option<String>, Error> {
    let jobs: Api<StreamJob> = Api::namespaced(ctx.client.clone(), namespace);
    let list = jobs
        .list(&ListParams::default())
        .await
        .map_err(Error::Kube)?;
    Ok(list.items.iter().find_map(|job| {
        let status = job.status.as_ref()?;
        (status.reconciliation.restore_path.as_deref() == Some(location)).then(|| job.name_any())
    }))
}

async fn write_snapshot_status(
    ctx: &Context,
    namespace: &str,
    name: &str,
    status: &StreamJobSnapshotStatus,
) -> Result<(), Error> {
    let api: Api<StreamJobSnapshot> = Api::namespaced(ctx.client.clone(), namespace);
    super::act::apply_status(&api, name, status).await
}

/// Creates a StreamJobSnapshot for each savepoint of `status` that has none yet, and records
/// its name; returns whether anything was recorded. The deletion savepoint's snapshot has no
/// owner reference, so it outlives the StreamJob; the others are listed with (and garbage
/// collected with) it, their data kept.
pub(super) async fn record_savepoints(
    job: &StreamJob,
    ctx: &Context,
    namespace: &str,
    status: &mut StreamJobStatus,
) -> Result<bool, Error> {
    let name = job.name_any();
    let api: Api<StreamJobSnapshot> = Api::namespaced(ctx.client.clone(), namespace);
    let params = PatchParams::apply(names::FIELD_MANAGER).force();
    let mut recorded = false;
    let savepoints = &mut status.savepoints;
    let last = savepoints.last.as_ref().map(|l| l.location.clone());
    for savepoint in savepoints.history.iter_mut() {
        if savepoint.snapshot.is_some() {
            continue;
        }
        let snapshot_name = snapshot::name_for(&name, savepoint);
        let (spec, snapshot_status) =
            snapshot::for_savepoint(&name, savepoint, job.spec.storage.as_ref());
        let mut object = StreamJobSnapshot::new(&snapshot_name, spec);
        object.metadata.namespace = Some(namespace.to_string());
        object.metadata.labels = Some(
            [
                (names::LABEL_JOB.to_string(), name.clone()),
                (
                    names::LABEL_MANAGED_BY.to_string(),
                    names::FIELD_MANAGER.to_string(),
                ),
                (
                    names::LABEL_SNAPSHOT_TRIGGER.to_string(),
                    trigger_name(savepoint.trigger).to_string(),
                ),
            ]
            .into(),
        );
        if savepoint.trigger != SavepointTrigger::Deletion {
            object.metadata.owner_references = job.owner_ref(&()).map(|o| vec![o]);
        }
        api.patch(&snapshot_name, &params, &Patch::Apply(&object))
            .await
            .map_err(Error::Kube)?;
        write_snapshot_status(ctx, namespace, &snapshot_name, &snapshot_status).await?;
        if savepoint.trigger == SavepointTrigger::Deletion {
            publish(
                ctx,
                job,
                &EventNote {
                    type_: EventType::Normal,
                    reason: "SnapshotRecorded",
                    message: format!(
                        "the deletion savepoint is StreamJobSnapshot {snapshot_name}; a new \
                         StreamJob starts from it with job.initialSnapshotName: {snapshot_name}"
                    ),
                },
            )
            .await;
        }
        savepoint.snapshot = Some(snapshot_name);
        recorded = true;
    }
    if let Some(location) = last
        && let Some(in_history) = savepoints.history.iter().find(|s| s.location == location)
        && let Some(last) = savepoints.last.as_mut()
    {
        last.snapshot = in_history.snapshot.clone();
    }
    Ok(recorded)
}

/// Deletes the StreamJobSnapshots recording savepoints that retention deleted from storage.
pub(super) async fn forget_savepoints(
    job: &StreamJob,
    ctx: &Context,
    namespace: &str,
    locations: &[String],
) -> Result<(), Error> {
    let api: Api<StreamJobSnapshot> = Api::namespaced(ctx.client.clone(), namespace);
    let selector = format!("{}={}", names::LABEL_JOB, job.name_any());
    let list = api
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(Error::Kube)?;
    for snap in list.items {
        let recorded = snap.labels().contains_key(names::LABEL_SNAPSHOT_TRIGGER);
        if recorded
            && snap
                .spec
                .path
                .as_ref()
                .is_some_and(|p| locations.contains(p))
        {
            match api.delete(&snap.name_any(), &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(Error::Kube(e)),
            }
        }
    }
    Ok(())
}

/// What `job.initialSnapshotName` names, as far as the first deployment is concerned.
pub(super) async fn initial_snapshot(
    ctx: &Context,
    namespace: &str,
    name: &str,
) -> Result<InitialSnapshot, Error> {
    let api: Api<StreamJobSnapshot> = Api::namespaced(ctx.client.clone(), namespace);
    let found = api.get_opt(name).await.map_err(Error::Kube)?;
    Ok(match found {
        None => InitialSnapshot::NotReady("it does not exist".into()),
        Some(snap) => {
            let status = snap.status.unwrap_or_default();
            match (status.state, status.path) {
                (SnapshotState::Completed, Some(path)) => InitialSnapshot::Ready(path),
                (SnapshotState::Failed, _) => InitialSnapshot::NotReady(format!(
                    "it failed: {}",
                    status.reason.unwrap_or_default()
                )),
                (state, _) => InitialSnapshot::NotReady(format!("it is {state:?}")),
            }
        }
    })
}
