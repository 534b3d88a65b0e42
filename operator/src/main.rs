//! The `weir-operator` binary: starts the metrics/health server, takes part in leader election
//! when running in a cluster, and runs the StreamJob controller while it leads.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use tracing_subscriber::EnvFilter;
use weir_operator::{controller, leader, metrics, names, validate};

/// Where `/metrics` and `/healthz` are served; `WEIR_OPERATOR_METRICS_ADDR` overrides it.
const DEFAULT_METRICS_ADDR: &str = "0.0.0.0:8080";
/// Lease the operator replicas compete for, in their own namespace.
const LEASE_NAME: &str = "weir-operator-leader";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .json()
        .init();

    let addr: SocketAddr = std::env::var("WEIR_OPERATOR_METRICS_ADDR")
        .unwrap_or_else(|_| DEFAULT_METRICS_ADDR.to_string())
        .parse()
        .context("WEIR_OPERATOR_METRICS_ADDR is not a socket address like 0.0.0.0:8080")?;
    let client = kube::Client::try_default()
        .await
        .context("no Kubernetes configuration found (in-cluster or kubeconfig)")?;

    let policy = validate::Policy {
        require_security: match std::env::var(names::ENV_REQUIRE_SECURITY).as_deref() {
            Ok("true") => true,
            Ok("false") | Ok("") | Err(_) => false,
            Ok(other) => anyhow::bail!(
                "{} must be true or false, got '{other}'",
                names::ENV_REQUIRE_SECURITY
            ),
        },
    };
    let namespaces =
        controller::watch_namespaces(std::env::var(names::ENV_WATCH_NAMESPACES).ok().as_deref())?;
    if namespaces.is_empty() {
        tracing::info!("watching every namespace");
    } else {
        tracing::info!(?namespaces, "watching only these namespaces");
    }
    let metrics = Arc::new(metrics::Metrics::default());
    let server = tokio::spawn(metrics::serve(addr, metrics.clone()));
    tracing::info!(%addr, "serving /metrics and /healthz");

    // In a cluster the Deployment passes POD_NAMESPACE and POD_NAME (downward API) and the
    // replicas elect a leader; a local run without them reconciles right away.
    let election = match std::env::var("POD_NAMESPACE") {
        Ok(namespace) => {
            let identity = std::env::var("POD_NAME")
                .or_else(|_| std::env::var("HOSTNAME"))
                .unwrap_or_else(|_| format!("weir-operator-{}", std::process::id()));
            let elector = leader::Elector::new(client.clone(), &namespace, LEASE_NAME, &identity);
            elector.acquire().await.context("leader election failed")?;
            tracing::info!(%identity, "leading");
            Some(elector)
        }
        Err(_) => None,
    };

    let result = match &election {
        Some(elector) => tokio::select! {
            () = controller::run(client, metrics, policy, namespaces.clone()) => Ok(()),
            lost = elector.keep() => Err(anyhow::Error::new(lost)
                .context("stopped reconciling: another replica may lead now")),
        },
        None => {
            controller::run(client, metrics, policy, namespaces.clone()).await;
            Ok(())
        }
    };
    server.abort();
    result
}
