//! Act: carries out the one action the lifecycle decided, after its status is written —
//! applying the desired objects, tearing down, triggering savepoints, deleting from storage,
//! starting a pre-flight check —
//! and writes status and Events. Every write is server-side apply under one field manager.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType as KubeEventType};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde_json::json;

use super::observe::jobmanager;
use super::{Context, Error, event_action};
use crate::crd::{StreamJob, StreamJobStatus};
use crate::desired;
use crate::lifecycle::{self, Action, EventNote, EventType};
use crate::names;
use crate::storage::{self, Storage};

pub(super) async fn act(
    job: &StreamJob,
    ctx: &Context,
    api: &Api<StreamJob>,
    namespace: &str,
    storage: &Storage,
    action: &Action,
    mut status: StreamJobStatus,
) -> Result<(), Error> {
    let name = job.name_any();
    match action {
        Action::None => Ok(()),
        Action::Deploy { spec, restore_path } => {
            let objects =
                desired::build(job, spec, restore_path.as_deref()).map_err(Error::Build)?;
            let params = PatchParams::apply(names::FIELD_MANAGER).force();
            apply_object(ctx, namespace, &params, &objects.config_map).await?;
            apply_object(ctx, namespace, &params, &objects.jobmanager_service).await?;
            apply_object(ctx, namespace, &params, &objects.jobmanager).await?;
            apply_object(ctx, namespace, &params, &objects.taskmanager).await
        }
        Action::TearDown => {
            let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), namespace);
            // Foreground deletion keeps the Deployment visible until its pods are gone, so the
            // next deployment never overlaps a still-running old JobManager.
            let params = DeleteParams::foreground();
            for child in [
                names::jobmanager_name(&name),
                names::taskmanager_name(&name),
            ] {
                match deployments.delete(&child, &params).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(e)) if e.code == 404 => {}
                    Err(e) => return Err(Error::Kube(e)),
                }
            }
            Ok(())
        }
        Action::TriggerSavepoint {
            job_id,
            trigger_id,
            target_directory,
            stop,
        } => {
            let (jm, base) = jobmanager(job, ctx, namespace).await?;
            jm.trigger_savepoint(&base, job_id, trigger_id, target_directory, *stop)
                .await
                .map_err(Error::Rest)
        }
        Action::DisposeSavepoints { locations } => {
            let mut deleted = Vec::new();
            let mut failure = None;
            for location in locations {
                match storage.delete(location).await {
                    Ok(()) => deleted.push(location.clone()),
                    Err(e) => failure = Some(e),
                }
            }
            lifecycle::disposed(&mut status, &deleted);
            write_status(api, &name, &status).await?;
            if let Err(error) =
                super::snapshots::forget_savepoints(job, ctx, namespace, &deleted).await
            {
                tracing::warn!(job = %name, error = %super::chain(&error), "snapshots of deleted savepoints not removed");
            }
            failure.map_or(Ok(()), |e| Err(Error::Storage(e)))
        }
        Action::RunPreflight { spec, state } => {
            let pod_name = names::preflight_pod_name(&name, &lifecycle::spec_json(spec), state);
            let (config_map, pod) =
                desired::preflight(job, spec, state, &pod_name).map_err(Error::Build)?;
            let params = PatchParams::apply(names::FIELD_MANAGER).force();
            apply_object(ctx, namespace, &params, &config_map).await?;
            let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
            // A pod is created once: one of that name already checks this very spec.
            match pods.create(&PostParams::default(), &pod).await {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
                Err(e) => Err(Error::Kube(e)),
            }
        }
        Action::DeleteCheckpoints { dir, job_ids } => {
            let mut deleted = Vec::new();
            let mut failure = None;
            for job_id in job_ids {
                match storage
                    .delete(&storage::checkpoint_run_dir(dir, job_id))
                    .await
                {
                    Ok(()) => deleted.push(job_id.clone()),
                    Err(e) => failure = Some(e),
                }
            }
            lifecycle::checkpoints_deleted(&mut status, &deleted);
            write_status(api, &name, &status).await?;
            failure.map_or(Ok(()), |e| Err(Error::Storage(e)))
        }
    }
}

/// Deletes the pre-flight check pods of `job` once no check is in flight (they are kept
/// until then: a restarted operator reads the outcome from the pod). Best effort: the pods
/// are owned by the StreamJob, so they go with it at the latest.
pub(super) async fn remove_preflight_pods(
    job: &StreamJob,
    ctx: &Context,
    namespace: &str,
) -> Result<(), Error> {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
    let selector = format!(
        "{}={},{}={}",
        names::LABEL_JOB,
        job.name_any(),
        names::LABEL_COMPONENT,
        names::COMPONENT_PREFLIGHT
    );
    let params = ListParams::default().labels(&selector);
    pods.delete_collection(&DeleteParams::background(), &params)
        .await
        .map(|_| ())
        .map_err(Error::Kube)
}

/// Keeps the Ingress `spec.ingress` asks for: applied on every reconcile (server-side apply of
/// an unchanged object changes nothing), deleted when the field is gone. It routes to the
/// JobManager Service whether or not the job runs, so it does not follow the lifecycle.
pub(super) async fn sync_ingress(
    job: &StreamJob,
    ctx: &Context,
    namespace: &str,
) -> Result<(), Error> {
    let wanted = desired::ingress(job, &job.spec).map_err(Error::Build)?;
    match wanted {
        Some(ingress) => {
            let params = PatchParams::apply(names::FIELD_MANAGER).force();
            apply_object(ctx, namespace, &params, &ingress).await
        }
        None => {
            let ingresses: Api<Ingress> = Api::namespaced(ctx.client.clone(), namespace);
            let name = names::jobmanager_name(&job.name_any());
            // Only ours: a user's own Ingress of that name (without the owner reference)
            // stays.
            let existing = match ingresses.get_opt(&name).await {
                Ok(existing) => existing,
                // Without the right to read Ingresses the operator cannot have made one.
                Err(kube::Error::Api(e)) if e.code == 403 => None,
                Err(e) => return Err(Error::Kube(e)),
            };
            match existing {
                Some(existing)
                    if existing
                        .owner_references()
                        .iter()
                        .any(|o| Some(&o.uid) == job.metadata.uid.as_ref()) =>
                {
                    match ingresses.delete(&name, &DeleteParams::default()).await {
                        Ok(_) => Ok(()),
                        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
                        Err(e) => Err(Error::Kube(e)),
                    }
                }
                _ => Ok(()),
            }
        }
    }
}

async fn apply_object<K>(
    ctx: &Context,
    namespace: &str,
    params: &PatchParams,
    object: &K,
) -> Result<(), Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(ctx.client.clone(), namespace);
    let name = object.meta().name.clone().unwrap_or_default();
    api.patch(&name, params, &Patch::Apply(object))
        .await
        .map(|_| ())
        .map_err(Error::Kube)
}

pub(super) async fn write_status(
    api: &Api<StreamJob>,
    name: &str,
    status: &StreamJobStatus,
) -> Result<(), Error> {
    apply_status(api, name, status).await
}

/// Writes `status` as the status of resource `name` of kind `K` (server-side apply under the
/// operator's field manager): the StreamJob's and the StreamJobSnapshot's status writes.
pub(super) async fn apply_status<K>(
    api: &Api<K>,
    name: &str,
    status: &impl Serialize,
) -> Result<(), Error>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let patch = json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(
        name,
        &PatchParams::apply(names::FIELD_MANAGER).force(),
        &Patch::Apply(patch),
    )
    .await
    .map(|_| ())
    .map_err(Error::Kube)
}

pub(super) async fn publish(ctx: &Context, job: &StreamJob, note: &EventNote) {
    publish_on(ctx, &job.object_ref(&()), note).await;
}

/// Publishes an Event about any object (a StreamJob or a StreamJobSnapshot).
pub(super) async fn publish_on(
    ctx: &Context,
    object: &k8s_openapi::api::core::v1::ObjectReference,
    note: &EventNote,
) {
    let event = Event {
        type_: match note.type_ {
            EventType::Normal => KubeEventType::Normal,
            EventType::Warning => KubeEventType::Warning,
        },
        reason: note.reason.to_string(),
        note: Some(note.message.clone()),
        action: event_action(note),
        secondary: None,
    };
    // Events are best effort: losing one must not fail the reconcile.
    if let Err(error) = ctx.recorder.publish(&event, object).await {
        tracing::info!(error = %error, "could not publish event");
    }
}
