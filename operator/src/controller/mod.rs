//! The controller: wires the pure steps to the API server and the JobManagers. `reconcile` runs
//! the finalizer, which dispatches to `apply` (observe → validate → decide → write status →
//! act) or `cleanup`. All writes are server-side apply under one field manager; the status is
//! written before the action it announces.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use kube::api::Api;
use kube::runtime::controller::{Action as Requeue, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use tracing::Instrument;

use crate::crd::{StreamJob, StreamJobSnapshot};
use crate::desired::BuildError;
use crate::jobmanager::{JobManagerClient, RestError};
use crate::lifecycle::{self, EventNote, EventType, Inputs, conditions};
use crate::metrics::Metrics;
use crate::names;
use crate::storage::StorageError;
use crate::validate::{Policy, ValidationErrors, validate_with};

mod act;
mod observe;
mod snapshots;

pub use observe::preflight_outcome;

use act::{act, publish, write_status};
use observe::{observe, storage_for};

/// Everything a reconcile needs, shared by all of them.
pub struct Context {
    /// Kubernetes client.
    pub client: Client,
    /// Publishes Events on StreamJobs.
    pub recorder: Recorder,
    /// Talks to the JobManagers' REST APIs.
    pub jobmanager: JobManagerClient,
    /// Reconcile counters and lifecycle states, served on `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Consecutive failures per StreamJob, for the error policy's backoff.
    pub failures: Mutex<HashMap<String, u32>>,
    /// What this installation demands of every StreamJob (`jobSecurity.required`).
    pub policy: Policy,
}

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API call failed")]
    Kube(#[source] kube::Error),

    #[error("finalizer step failed")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),

    #[error("the StreamJob has no namespace")]
    NoNamespace,

    #[error("invalid StreamJob spec: {0}")]
    Invalid(#[source] ValidationErrors),

    #[error("could not render the desired objects")]
    Build(#[source] BuildError),

    #[error("JobManager REST call failed")]
    Rest(#[source] RestError),

    #[error("spec.security: {0}")]
    Security(String),

    #[error("storage cleanup failed")]
    Storage(#[source] StorageError),

    /// Not a failure: the deletion savepoint or teardown is still running. Returned as an error
    /// because that is how the finalizer helper keeps the finalizer for another round.
    #[error("cleanup still in progress; retrying in {}s", .0.as_secs())]
    CleanupPending(Duration),
}

impl Error {
    /// Permanent errors need a spec change; retrying them only adds load.
    pub fn is_permanent(&self) -> bool {
        match self {
            Error::Invalid(_) | Error::NoNamespace | Error::Build(BuildError::PodTemplate(_)) => {
                true
            }
            Error::Finalizer(inner) => matches!(
                inner.as_ref(),
                kube::runtime::finalizer::Error::ApplyFailed(e)
                    | kube::runtime::finalizer::Error::CleanupFailed(e) if e.is_permanent()
            ),
            _ => false,
        }
    }
}

/// A namespace in `WEIR_OPERATOR_WATCH_NAMESPACES` that Kubernetes would not accept.
#[derive(Debug, thiserror::Error)]
#[error(
    "{} lists {value:?}, which is not a namespace name (lowercase letters, digits and '-', at \
     most 63, starting and ending with a letter or digit)",
    names::ENV_WATCH_NAMESPACES
)]
pub struct BadNamespace {
    pub value: String,
}

/// The namespaces to watch from `WEIR_OPERATOR_WATCH_NAMESPACES`: comma-separated, blanks
/// ignored; empty means every namespace.
pub fn watch_namespaces(value: Option<&str>) -> Result<Vec<String>, BadNamespace> {
    let mut namespaces: Vec<String> = Vec::new();
    for name in value.unwrap_or("").split(',').map(str::trim) {
        if name.is_empty() {
            continue;
        }
        let valid = name.len() <= 63
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !name.starts_with('-')
            && !name.ends_with('-');
        if !valid {
            return Err(BadNamespace {
                value: name.to_string(),
            });
        }
        if !namespaces.iter().any(|n| n == name) {
            namespaces.push(name.to_string());
        }
    }
    Ok(namespaces)
}

/// The API for `K` in one namespace, or in all of them.
fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    }
}

/// Runs the controllers until a shutdown signal: in every namespace, or with `namespaces` one
/// pair of controllers (StreamJobs, StreamJobSnapshots) per namespace, so the operator needs
/// permissions only there.
pub async fn run(client: Client, metrics: Arc<Metrics>, policy: Policy, namespaces: Vec<String>) {
    let context = Arc::new(Context {
        policy,
        recorder: Recorder::new(client.clone(), Reporter::from(names::FIELD_MANAGER)),
        jobmanager: JobManagerClient::new(),
        metrics,
        failures: Mutex::default(),
        client: client.clone(),
    });
    let scopes: Vec<Option<&str>> = if namespaces.is_empty() {
        vec![None]
    } else {
        namespaces.iter().map(|n| Some(n.as_str())).collect()
    };
    futures::future::join_all(
        scopes
            .into_iter()
            .map(|scope| run_in(client.clone(), context.clone(), scope)),
    )
    .await;
}

async fn run_in(client: Client, context: Arc<Context>, scope: Option<&str>) {
    let jobs = scoped::<StreamJob>(&client, scope);
    let snapshots = Controller::new(
        scoped::<StreamJobSnapshot>(&client, scope),
        watcher::Config::default(),
    )
    .shutdown_on_signal()
    .run(
        snapshots::reconcile,
        snapshots::error_policy,
        context.clone(),
    )
    .for_each(|result| async move {
        if let Err(error) = result {
            tracing::debug!(error = %chain(&error), "snapshot reconcile not run");
        }
    });
    // Only the operator's children are watched, so unrelated Deployments cost nothing.
    let children = watcher::Config::default().labels(&format!(
        "{}={}",
        names::LABEL_MANAGED_BY,
        names::FIELD_MANAGER
    ));
    // Of the pods only the pre-flight checks' are the StreamJob's own: watching them means a
    // finished check is acted on at once, not at the next poll, which keeps the time a check
    // adds to an upgrade short.
    let preflight_pods = watcher::Config::default().labels(&format!(
        "{}={},{}={}",
        names::LABEL_MANAGED_BY,
        names::FIELD_MANAGER,
        names::LABEL_COMPONENT,
        names::COMPONENT_PREFLIGHT
    ));
    let streamjobs = Controller::new(jobs, watcher::Config::default())
        .owns(scoped::<Deployment>(&client, scope), children.clone())
        .owns(scoped::<Service>(&client, scope), children.clone())
        .owns(scoped::<ConfigMap>(&client, scope), children)
        .owns(scoped::<Pod>(&client, scope), preflight_pods)
        .shutdown_on_signal()
        .run(reconcile, error_policy, context)
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => tracing::debug!(%object, "reconciled"),
                // error_policy already logged reconcile errors; these are the rest (e.g. an
                // object gone from the cache).
                Err(error) => tracing::debug!(error = %chain(&error), "reconcile not run"),
            }
        });
    futures::join!(streamjobs, snapshots);
}

/// Runs the finalizer, which dispatches to `apply` or `cleanup`, in one tracing span per
/// reconcile that names the resource.
pub async fn reconcile(job: Arc<StreamJob>, ctx: Arc<Context>) -> Result<Requeue, Error> {
    let started = Instant::now();
    let namespace = job.namespace().ok_or(Error::NoNamespace)?;
    let span = tracing::info_span!(
        "reconcile",
        kind = "StreamJob",
        namespace = %namespace,
        name = %job.name_any(),
        generation = job.metadata.generation.unwrap_or_default(),
    );
    let api: Api<StreamJob> = Api::namespaced(ctx.client.clone(), &namespace);
    let result = finalizer(&api, names::FINALIZER, job, |event| async {
        match event {
            Finalizer::Apply(job) => apply(&job, &ctx).await,
            Finalizer::Cleanup(job) => cleanup(&job, &ctx).await,
        }
    })
    .instrument(span)
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    ctx.metrics.reconciled(started.elapsed());
    result
}

/// Transient errors requeue with a per-object exponential backoff; permanent ones wait for
/// the next change of the object.
pub fn error_policy(job: Arc<StreamJob>, error: &Error, ctx: Arc<Context>) -> Requeue {
    if let Error::Finalizer(inner) = error
        && let kube::runtime::finalizer::Error::CleanupFailed(Error::CleanupPending(wait)) =
            inner.as_ref()
    {
        tracing::debug!(job = %job.name_any(), "cleanup in progress");
        return Requeue::requeue(*wait);
    }
    ctx.metrics.failed();
    tracing::warn!(job = %job.name_any(), error = %chain(error), "reconcile error");
    if error.is_permanent() {
        return Requeue::await_change();
    }
    let key = key(&job);
    let failures = ctx
        .failures
        .lock()
        .map(|mut f| {
            let n = f.entry(key).or_default();
            *n = n.saturating_add(1);
            *n
        })
        .unwrap_or(1);
    Requeue::requeue(lifecycle::backoff(failures.saturating_sub(1)))
}

async fn apply(job: &StreamJob, ctx: &Context) -> Result<Requeue, Error> {
    let namespace = job.namespace().ok_or(Error::NoNamespace)?;
    let name = job.name_any();
    let api: Api<StreamJob> = Api::namespaced(ctx.client.clone(), &namespace);
    let status = job.status.clone().unwrap_or_default();

    // An invalid spec leaves the running job alone on its last valid spec.
    if let Err(errors) = validate_with(&job.spec, ctx.policy) {
        let mut invalid = status.clone();
        invalid.error = Some(errors.to_string());
        invalid.observed_generation = job.metadata.generation;
        conditions::update(
            &mut invalid,
            job.metadata.generation,
            jiff::Timestamp::now(),
            Some(&errors.to_string()),
        );
        write_status(&api, &name, &invalid).await?;
        publish(
            ctx,
            job,
            &EventNote {
                type_: EventType::Warning,
                reason: conditions::VALIDATION_ERROR,
                message: errors.to_string(),
            },
        )
        .await;
        return Err(Error::Invalid(errors));
    }

    let mut status = status;
    if conditions::get(&status, conditions::READY)
        .is_some_and(|c| c.reason == conditions::VALIDATION_ERROR)
    {
        // The spec is valid again: the validation message no longer applies.
        status.error = None;
    }
    let storage = storage_for(job, ctx, &namespace).await?;
    let observation = observe(job, &status, ctx, &namespace, &storage).await?;
    let step = lifecycle::decide(&inputs_now(job, &status, &observation));
    let mut next = step.status;
    // Write-ahead: the status names the action before the action happens.
    write_status(&api, &name, &next).await?;
    // Recording savepoints as snapshots is bookkeeping: it must never hold up the job.
    match snapshots::record_savepoints(job, ctx, &namespace, &mut next).await {
        Ok(true) => write_status(&api, &name, &next).await?,
        Ok(false) => {}
        Err(error) => {
            tracing::warn!(job = %name, error = %chain(&error), "savepoints not recorded as snapshots");
        }
    }
    ctx.metrics
        .set_state(key(job), next.lifecycle_state, Instant::now());
    ctx.metrics
        .rollout(&key(job), next.reconciliation.intent, Instant::now());
    for note in &step.events {
        publish(ctx, job, note).await;
    }
    let checked =
        status.reconciliation.preflight.is_some() && next.reconciliation.preflight.is_none();
    act(job, ctx, &api, &namespace, &storage, &step.action, next).await?;
    if checked && let Err(error) = act::remove_preflight_pods(job, ctx, &namespace).await {
        tracing::warn!(job = %name, error = %chain(&error), "pre-flight check pods not removed");
    }
    act::sync_ingress(job, ctx, &namespace).await?;
    if let Ok(mut failures) = ctx.failures.lock() {
        failures.remove(&key(job));
    }
    Ok(Requeue::requeue(step.requeue_after))
}

async fn cleanup(job: &StreamJob, ctx: &Context) -> Result<Requeue, Error> {
    let namespace = job.namespace().ok_or(Error::NoNamespace)?;
    let name = job.name_any();
    let api: Api<StreamJob> = Api::namespaced(ctx.client.clone(), &namespace);
    let status = job.status.clone().unwrap_or_default();
    let storage = storage_for(job, ctx, &namespace).await?;
    let observation = observe(job, &status, ctx, &namespace, &storage).await?;
    let deletion = lifecycle::decide_deletion(&inputs_now(job, &status, &observation));
    let mut next = deletion.status.clone();
    write_status(&api, &name, &next).await?;
    ctx.metrics
        .set_state(key(job), next.lifecycle_state, Instant::now());
    for note in &deletion.events {
        publish(ctx, job, note).await;
    }
    // The deletion savepoint's snapshot is how it is found once the StreamJob is gone: it is
    // recorded before the finalizer goes.
    if snapshots::record_savepoints(job, ctx, &namespace, &mut next).await? {
        write_status(&api, &name, &next).await?;
    }
    act(job, ctx, &api, &namespace, &storage, &deletion.action, next).await?;
    if deletion.done {
        ctx.metrics.forget(&key(job));
        // Returning Ok lets the finalizer helper remove the finalizer.
        return Ok(Requeue::await_change());
    }
    Err(Error::CleanupPending(deletion.requeue_after))
}

/// The Event's `action`. kube-rs' recorder folds an Event into an earlier one with the same
/// type, reason and action (counting a series and keeping the *first* note), so the action
/// carries a digest of the message: a repeated message still counts up one Event, while a new
/// message (another savepoint, another error) becomes its own Event instead of being shown
/// with an old note.
pub(super) fn event_action(note: &EventNote) -> String {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in note.message.bytes() {
        hash = (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193);
    }
    format!("{}-{hash:08x}", note.reason)
}

/// An error with all its causes, since the outer ones alone ("finalizer step failed") do not
/// say what went wrong.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        // Some errors already print their cause; do not repeat it.
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

fn key(job: &StreamJob) -> String {
    format!("{}/{}", job.namespace().unwrap_or_default(), job.name_any())
}

/// What the lifecycle decides from, for `job` as `status` records it and as observed now
/// (shared by reconciling and by deletion).
fn inputs_now<'a>(
    job: &'a StreamJob,
    status: &'a crate::crd::StreamJobStatus,
    observation: &'a lifecycle::Observation,
) -> Inputs<'a> {
    Inputs {
        spec: &job.spec,
        generation: job.metadata.generation,
        status,
        observation,
        now: jiff::Timestamp::now(),
        fresh_trigger_id: new_trigger_id(job),
    }
}

/// A 32-hex-digit trigger id (the shape of Flink's trigger ids), unique per operator process
/// and StreamJob: time, uid and a process-wide counter go into it.
fn new_trigger_id<K: Resource>(job: &K) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = jiff::Timestamp::now().as_nanosecond();
    let seed = format!("{}/{nanos}/{count}", job.uid().unwrap_or_default());
    let mut high: u64 = 0xcbf2_9ce4_8422_2325;
    let mut low: u64 = 0x8422_2325_cbf2_9ce4;
    for byte in seed.bytes() {
        high = (high ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3);
        low = (low ^ u64::from(byte))
            .wrapping_mul(0x0000_0100_0000_01b3)
            .rotate_left(7);
    }
    format!("{high:016x}{low:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_with_the_same_reason_but_another_message_get_another_action() {
        let note = |message: &str| EventNote {
            type_: EventType::Normal,
            reason: "SavepointCompleted",
            message: message.to_string(),
        };
        let first = event_action(&note("savepoint completed at s3://b/sp/savepoint-1"));
        assert_eq!(
            first,
            event_action(&note("savepoint completed at s3://b/sp/savepoint-1"))
        );
        assert_ne!(
            first,
            event_action(&note("savepoint completed at s3://b/sp/savepoint-2"))
        );
        assert!(first.starts_with("SavepointCompleted-") && first.len() <= 128);
    }

    fn job() -> StreamJob {
        let mut job: StreamJob = serde_yaml::from_str(
            "
apiVersion: weir.dev/v1alpha1
kind: StreamJob
metadata: {name: orders, namespace: shop, uid: u-1, generation: 3}
spec: {image: 'weir:1', job: {sql: 'SELECT 1'}}
",
        )
        .unwrap();
        job.status = None;
        job
    }

    #[test]
    fn watched_namespaces_are_a_comma_separated_list_and_a_bad_one_is_named() {
        assert!(watch_namespaces(None).unwrap().is_empty());
        assert!(watch_namespaces(Some(" , ")).unwrap().is_empty());
        assert_eq!(
            watch_namespaces(Some("team-a, team-b,team-a")).unwrap(),
            ["team-a", "team-b"]
        );
        let error = watch_namespaces(Some("team-a,Team_B")).unwrap_err();
        assert_eq!(error.value, "Team_B");
        assert!(error.to_string().contains("\"Team_B\""), "{error}");
    }

    #[test]
    fn trigger_ids_are_32_hex_digits_and_never_repeat() {
        let job = job();
        let ids: std::collections::HashSet<String> =
            (0..1000).map(|_| new_trigger_id(&job)).collect();
        assert_eq!(ids.len(), 1000);
        assert!(
            ids.iter()
                .all(|id| id.len() == 32 && id.chars().all(|c| c.is_ascii_hexdigit()))
        );
    }

    #[test]
    fn an_invalid_spec_is_permanent_and_an_unreachable_api_is_not() {
        let invalid = Error::Invalid(ValidationErrors(vec![
            crate::validate::ValidationError::SqlAndEntry,
        ]));
        assert!(invalid.is_permanent());
        let wrapped = Error::Finalizer(Box::new(kube::runtime::finalizer::Error::ApplyFailed(
            invalid,
        )));
        assert!(wrapped.is_permanent());
        assert!(!Error::CleanupPending(Duration::from_secs(5)).is_permanent());
        assert!(
            !Error::Storage(StorageError::Unsupported {
                location: "s3://b".into()
            })
            .is_permanent()
        );
    }

    #[test]
    fn a_logged_error_names_its_causes() {
        let error = Error::Finalizer(Box::new(kube::runtime::finalizer::Error::ApplyFailed(
            Error::Invalid(ValidationErrors(vec![
                crate::validate::ValidationError::SqlAndEntry,
            ])),
        )));
        let text = chain(&error);
        assert!(text.starts_with("finalizer step failed: "), "{text}");
        assert!(text.ends_with("set exactly one of them"), "{text}");
    }
}
