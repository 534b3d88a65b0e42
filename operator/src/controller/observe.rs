//! Observe: what the controller looks at before deciding — the Deployments, the JobManager's
//! view of the job and of the pending savepoint, the job's storage — and how it reaches them
//! (storage credentials, the JobManager's address, token and TLS). Nothing here changes
//! anything.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::ResourceExt;
use kube::api::{Api, ListParams};

use super::{Context, Error};
use crate::crd::{StorageSpec, StreamJob, StreamJobStatus};
use crate::jobmanager::JobManagerClient;
use crate::lifecycle::{Observation, PreflightOutcome};
use crate::names;
use crate::storage::Storage;
use weir_contract::client::ClientSecurity;
use weir_contract::security::Token;

/// Looks at the Deployments and asks the JobManager about the job and the pending savepoint.
/// An unreachable JobManager is an observation (no job), not an error.
pub(super) async fn observe(
    job: &StreamJob,
    status: &StreamJobStatus,
    ctx: &Context,
    namespace: &str,
    storage: &Storage,
) -> Result<Observation, Error> {
    let name = job.name_any();
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), namespace);
    let mut cluster_exists = false;
    for child in [
        names::jobmanager_name(&name),
        names::taskmanager_name(&name),
    ] {
        if deployments
            .get_opt(&child)
            .await
            .map_err(Error::Kube)?
            .is_some()
        {
            cluster_exists = true;
        }
    }
    let (jm, base) = jobmanager(job, ctx, namespace).await?;
    let mut observation = Observation {
        cluster_exists,
        can_delete_s3: storage.s3.is_some(),
        ..Observation::default()
    };
    if cluster_exists {
        match jm.observe_job(&base).await {
            Ok(observed) => observation.job = observed,
            Err(error) => tracing::info!(job = %name, error = %error, "JobManager not answering"),
        }
    }
    if observation.job.is_none()
        && let (Some(checkpoints), Some(job_id)) =
            (&job.spec.checkpoints, &status.job_status.job_id)
    {
        // Without a JobManager, storage is the only witness of checkpoints completed since the
        // status last recorded one.
        observation.storage_latest_checkpoint =
            storage.latest_checkpoint(&checkpoints.dir, job_id).await;
    }
    if let Some(pending) = &status.savepoints.pending
        && observation.job.is_some()
    {
        match jm
            .savepoint_status(&base, &pending.job_id, &pending.trigger_id)
            .await
        {
            Ok(progress) => observation.savepoint = Some(progress),
            Err(error) => tracing::info!(job = %name, error = %error, "savepoint status unknown"),
        }
    }
    if let Some(check) = &status.reconciliation.preflight {
        let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
        let pod = pods
            .get_opt(&names::preflight_pod_name(&name, &check.spec, &check.state))
            .await
            .map_err(Error::Kube)?;
        observation.preflight = pod.as_ref().map(preflight_outcome);
    }
    if status.reconciliation.last_reconciled_spec.is_none()
        && let Some(snapshot) = &job.spec.job.initial_snapshot_name
    {
        observation.initial_snapshot =
            Some(super::snapshots::initial_snapshot(ctx, namespace, snapshot).await?);
    }
    Ok(observation)
}

/// What a pre-flight check's pod says: `weir check`'s exit code, with its report (the tail of
/// its log, kept as the termination message) when it failed.
pub fn preflight_outcome(pod: &Pod) -> PreflightOutcome {
    use weir_contract::check::{EXIT_COMPATIBLE, EXIT_INCOMPATIBLE, REFUSED_PREFIX};
    let status = pod.status.as_ref();
    let terminated = status
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.first())
        .and_then(|c| c.state.as_ref())
        .and_then(|s| s.terminated.as_ref());
    let phase = status.and_then(|s| s.phase.as_deref());
    // A container that cannot start (its image cannot be pulled, a Secret it names is missing)
    // waits with a reason the kubelet keeps retrying; the check is over as far as the upgrade
    // goes: it cannot run.
    let stuck = status
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.first())
        .and_then(|c| c.state.as_ref())
        .and_then(|s| s.waiting.as_ref())
        .filter(|w| {
            w.reason
                .as_deref()
                .is_some_and(|r| CANNOT_START.contains(&r))
        });
    if let Some(waiting) = stuck {
        return PreflightOutcome::Failed(format!(
            "its container cannot start: {}{}",
            waiting.reason.as_deref().unwrap_or_default(),
            waiting
                .message
                .as_deref()
                .map(|m| format!(" ({m})"))
                .unwrap_or_default()
        ));
    }
    let Some(terminated) = terminated else {
        return match phase {
            // Failed without ever running its container (e.g. the image could not be pulled
            // and the pod was given up on).
            Some("Failed") => PreflightOutcome::Failed(
                status
                    .and_then(|s| s.message.clone())
                    .unwrap_or_else(|| "the pod failed before the check ran".to_string()),
            ),
            _ => PreflightOutcome::Running,
        };
    };
    let report = terminated.message.clone().unwrap_or_default();
    match terminated.exit_code {
        EXIT_COMPATIBLE => PreflightOutcome::Compatible,
        EXIT_INCOMPATIBLE => {
            // The report's refusal lines name the operators; without them (no message kept),
            // at least say what the exit code means.
            let refusals: Vec<&str> = report
                .lines()
                .filter_map(|l| l.trim().strip_prefix(REFUSED_PREFIX))
                .collect();
            PreflightOutcome::Incompatible(if refusals.is_empty() {
                "weir check found state it cannot restore (exit code 2)".to_string()
            } else {
                refusals.join("; ")
            })
        }
        code => PreflightOutcome::Failed(format!(
            "weir check exited with code {code}{}",
            match report.trim() {
                "" => String::new(),
                text => format!(": {}", last_lines(text, 5)),
            }
        )),
    }
}

/// Reasons a container waits with when it cannot start until something outside it changes.
const CANNOT_START: [&str; 6] = [
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
    "CreateContainerConfigError",
    "CreateContainerError",
];

/// The last `n` lines of `text`, joined with "; ".
fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("; ")
}

/// The job's storage: S3 access with its endpoint, region and path style, and credentials from
/// `storage.credentialsSecret` or, failing that, the operator's own credential chain.
pub(super) async fn storage_for(
    job: &StreamJob,
    ctx: &Context,
    namespace: &str,
) -> Result<Storage, Error> {
    storage_from(job.spec.storage.as_ref(), ctx, namespace).await
}

/// Storage access from a job's storage settings (a StreamJob's, or those a snapshot recorded).
pub(super) async fn storage_from(
    settings: Option<&StorageSpec>,
    ctx: &Context,
    namespace: &str,
) -> Result<Storage, Error> {
    let Some(settings) = settings else {
        return Ok(Storage::default());
    };
    let from_secret = match &settings.credentials_secret {
        Some(name) => {
            let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
            secrets
                .get_opt(name)
                .await
                .map_err(Error::Kube)?
                .and_then(|secret| {
                    let data = secret.data.unwrap_or_default();
                    let value = |key: &str| {
                        data.get(key)
                            .and_then(|v| String::from_utf8(v.0.clone()).ok())
                    };
                    Some((
                        value(names::ENV_AWS_ACCESS_KEY_ID)?,
                        value(names::ENV_AWS_SECRET_ACCESS_KEY)?,
                    ))
                })
        }
        None => None,
    };
    Ok(Storage {
        s3: Some(weir_storage::StorageOptions {
            endpoint: settings.endpoint.clone(),
            region: settings.region.clone(),
            path_style: settings.path_style,
            credentials: from_secret.map(|(access_key_id, secret_access_key)| {
                weir_storage::StaticCredentials {
                    access_key_id,
                    secret_access_key,
                }
            }),
            ..Default::default()
        }),
    })
}

/// The client for a job's JobManager and its REST base URL. With `spec.security` the client
/// sends the token from the token Secret and trusts the TLS Secret's `ca.crt`, checking the
/// Service's DNS name on the certificate (the URL is the pod's address).
pub(super) async fn jobmanager(
    job: &StreamJob,
    ctx: &Context,
    namespace: &str,
) -> Result<(JobManagerClient, String), Error> {
    let name = job.name_any();
    let base = jobmanager_base(ctx, &name, namespace).await?;
    let Some(security) = &job.spec.security else {
        return Ok((ctx.jobmanager.clone(), base));
    };
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let read = async |secret: &str, key: &str| -> Result<Vec<u8>, Error> {
        let found = secrets.get_opt(secret).await.map_err(Error::Kube)?;
        found
            .and_then(|s| s.data)
            .and_then(|mut d| d.remove(key))
            .map(|v| v.0)
            .ok_or_else(|| {
                Error::Security(format!(
                    "Secret {namespace}/{secret} has no key {key:?} (or does not exist)"
                ))
            })
    };
    let mut client = ClientSecurity::default();
    if let Some(secret) = &security.token_secret_name {
        let bytes = read(secret, names::TOKEN_KEY).await?;
        client.token = Token::new(&String::from_utf8_lossy(&bytes));
        if client.token.is_none() {
            return Err(Error::Security(format!(
                "the key {:?} of Secret {namespace}/{secret} is empty",
                names::TOKEN_KEY
            )));
        }
    }
    let base = match &security.tls {
        Some(tls) => {
            let ca = read(&tls.secret_name, names::TLS_CA_KEY).await?;
            let config =
                weir_contract::security::tls::client_config_from_pem(&ca).map_err(|e| {
                    Error::Security(format!(
                        "{:?} of Secret {namespace}/{}: {e}",
                        names::TLS_CA_KEY,
                        tls.secret_name
                    ))
                })?;
            client.tls = Some(config);
            client.server_name = Some(names::jobmanager_service_dns(&name, namespace));
            JobManagerClient::https(&base)
        }
        None => base,
    };
    let jm = ctx.jobmanager.secured(&client).map_err(Error::Rest)?;
    Ok((jm, base))
}

/// The JobManager's REST base URL: its pod's address, else the Service's DNS name.
async fn jobmanager_base(ctx: &Context, name: &str, namespace: &str) -> Result<String, Error> {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
    let selector = format!(
        "{}={name},{}={}",
        names::LABEL_JOB,
        names::LABEL_COMPONENT,
        names::COMPONENT_JOBMANAGER
    );
    let pods = pods
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(Error::Kube)?;
    Ok(JobManagerClient::base_url_from_pods(&pods.items)
        .unwrap_or_else(|| JobManagerClient::base_url(name, namespace)))
}
