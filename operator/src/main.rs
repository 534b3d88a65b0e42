//! The `weir-operator` binary: starts the metrics/health server and the StreamJob controller.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use tracing_subscriber::EnvFilter;
use weir_operator::{controller, metrics};

/// Where `/metrics` and `/healthz` are served; `WEIR_OPERATOR_METRICS_ADDR` overrides it.
const DEFAULT_METRICS_ADDR: &str = "0.0.0.0:8080";

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

    let metrics = Arc::new(metrics::Metrics::default());
    let server = tokio::spawn(metrics::serve(addr, metrics.clone()));
    tracing::info!(%addr, "serving /metrics and /healthz");

    controller::run(client, metrics).await;
    server.abort();
    Ok(())
}
