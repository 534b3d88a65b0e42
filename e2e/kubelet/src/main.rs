//! `weir-kubelet`: a process-kubelet for the local e2e control plane (e2e/controlplane).
//!
//! It registers one Node and keeps it Ready, runs every container of the pods scheduled to it as
//! a local process (image name → local binary, see `--image`), gives each pod its own loopback
//! address 127.0.0.N, materialises ConfigMap/Secret/emptyDir volumes under a per-pod directory,
//! runs probes, restarts containers, reports pod status, and maps Service names to ready pod IPs
//! in a managed block of /etc/hosts. See e2e/README.md for what it does and does not emulate.

mod error;
mod hosts;
mod node;
mod pod;
mod probe;
mod spec;
mod volumes;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::spec::{ImageMap, IpPool};

/// Command line of `weir-kubelet`.
#[derive(Debug, Parser)]
#[command(version, about = "Runs pods scheduled to one Node as local processes")]
struct Args {
    /// Name of the Node this kubelet registers and serves.
    #[arg(long, default_value = "weir-node")]
    node_name: String,
    /// Image → local binary mapping, `NAME=PATH` (repeatable). NAME is matched against the
    /// image name without registry, repository path, tag and digest.
    #[arg(long = "image", value_name = "NAME=PATH")]
    images: Vec<String>,
    /// Kubeconfig to talk to the apiserver; default: $KUBECONFIG, then ~/.kube/config.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Directory for pod roots and logs; default: $WEIR_K8S_STATE/kubelet or
    /// ~/.cache/weir/k8s/state/kubelet.
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// First three octets of the pod addresses; pods get PREFIX.2 … PREFIX.254.
    #[arg(long, default_value = "127.0.0")]
    pod_ip_prefix: String,
    /// Hosts file whose managed block maps Service names to ready pod IPs.
    #[arg(long, default_value = "/etc/hosts")]
    hosts_file: PathBuf,
    /// Capacity reported for the Node.
    #[arg(long, default_value = "16")]
    cpu: String,
    #[arg(long, default_value = "64Gi")]
    memory: String,
    #[arg(long, default_value = "110")]
    max_pods: String,
    /// How often the pod list is re-read (milliseconds).
    #[arg(long, default_value = "1000")]
    sync_interval_ms: u64,
}

/// Everything a pod task needs, shared by all of them.
pub struct Context {
    /// Client with the kubelet's credentials.
    pub client: Client,
    /// Name of the Node served.
    pub node_name: String,
    /// Image name → local binary.
    pub images: ImageMap,
    /// `<state>/pods/<uid>`: pod roots.
    pub pods_dir: PathBuf,
    /// `<state>/logs`: container logs.
    pub logs_dir: PathBuf,
    /// Loopback addresses handed to pods.
    pub ips: Mutex<IpPool>,
    /// Apiserver address given to pods as KUBERNETES_SERVICE_HOST/PORT.
    pub api_host: String,
    pub api_port: u16,
    /// Apiserver URL written into generated pod kubeconfigs.
    pub api_url: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,kube=warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = Args::parse();
    let images = ImageMap::parse(&args.images)?;
    let ips = IpPool::new(&args.pod_ip_prefix)?;

    let config = match &args.kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?
        }
        None => kube::Config::infer().await.context(
            "no kubeconfig: pass --kubeconfig or set KUBECONFIG (e2e/controlplane/up.sh prints it)",
        )?,
    };
    let api_url = config
        .cluster_url
        .to_string()
        .trim_end_matches('/')
        .to_owned();
    let api_host = std::env::var("WEIR_K8S_API_HOST")
        .ok()
        .or_else(|| config.cluster_url.host().map(str::to_owned))
        .unwrap_or_else(|| "127.0.0.1".into());
    let api_port = match std::env::var("WEIR_K8S_API_PORT") {
        Ok(p) => p
            .parse()
            .with_context(|| format!("WEIR_K8S_API_PORT={p:?} is not a port number"))?,
        Err(_) => config.cluster_url.port_u16().unwrap_or(443),
    };
    let client = Client::try_from(config)?;

    let state_dir = args.state_dir.clone().unwrap_or_else(default_state_dir);
    let pods_dir = state_dir.join("pods");
    let logs_dir = state_dir.join("logs");
    for d in [&pods_dir, &logs_dir] {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }

    let hosts = hosts::HostsFile::new(args.hosts_file.clone(), &args.node_name);
    hosts.check_writable()?;

    let ctx = Arc::new(Context {
        client: client.clone(),
        node_name: args.node_name.clone(),
        images,
        pods_dir,
        logs_dir: logs_dir.clone(),
        ips: Mutex::new(ips),
        api_host,
        api_port,
        api_url,
    });
    tracing::info!(node = %args.node_name, state = %state_dir.display(), logs = %logs_dir.display(), "starting");

    let capacity = node::Capacity {
        cpu: args.cpu.clone(),
        memory: args.memory.clone(),
        pods: args.max_pods.clone(),
    };
    node::register(&client, &args.node_name, &capacity).await?;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let heartbeat = tokio::spawn(node::heartbeat(
        client.clone(),
        args.node_name.clone(),
        capacity.clone(),
        shutdown_rx.clone(),
    ));
    let hosts_task = tokio::spawn(hosts::run(
        client.clone(),
        hosts.clone(),
        shutdown_rx.clone(),
    ));

    let sync = tokio::spawn(sync_pods(
        ctx.clone(),
        Duration::from_millis(args.sync_interval_ms),
        shutdown_rx.clone(),
    ));

    wait_for_signal().await?;
    tracing::info!("shutting down: stopping pods");
    let _ = shutdown_tx.send(true);
    match sync.await {
        Ok(()) => {}
        Err(e) => tracing::error!(error = %e, "pod sync task failed"),
    }
    heartbeat.abort();
    let _ = hosts_task.await;
    if let Err(e) = hosts.remove_block() {
        tracing::error!(error = %e, "could not clean the hosts file");
    }
    node::mark_not_ready(&client, &args.node_name, &capacity).await;
    tracing::info!("stopped");
    Ok(())
}

fn default_state_dir() -> PathBuf {
    if let Ok(s) = std::env::var("WEIR_K8S_STATE") {
        return PathBuf::from(s).join("kubelet");
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    PathBuf::from(home).join(".cache/weir/k8s/state/kubelet")
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}

/// One running pod task: the latest pod object is sent to it (`None`: the pod is gone).
struct PodHandle {
    updates: watch::Sender<Option<Pod>>,
    task: JoinHandle<()>,
}

/// Re-lists the pods bound to this node and hands each to its pod task (started on first
/// sight). On shutdown every pod task stops its processes and the function returns when all
/// of them have.
async fn sync_pods(ctx: Arc<Context>, interval: Duration, mut shutdown: watch::Receiver<bool>) {
    let pods: Api<Pod> = Api::all(ctx.client.clone());
    let lp = ListParams::default().fields(&format!("spec.nodeName={}", ctx.node_name));
    let mut running: HashMap<String, PodHandle> = HashMap::new();
    loop {
        if *shutdown.borrow() {
            break;
        }
        running.retain(|_, h| !h.task.is_finished());
        match pods.list(&lp).await {
            Ok(list) => {
                let mut seen: BTreeMap<String, Pod> = BTreeMap::new();
                for p in list.items {
                    if let Some(uid) = p.uid() {
                        seen.insert(uid, p);
                    }
                }
                for (uid, h) in &running {
                    if !seen.contains_key(uid) {
                        let _ = h.updates.send(None);
                    }
                }
                for (uid, p) in seen {
                    if let Some(h) = running.get(&uid) {
                        let _ = h.updates.send(Some(p));
                        continue;
                    }
                    let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
                    let terminal = matches!(phase, Some("Succeeded" | "Failed"));
                    if terminal && p.metadata.deletion_timestamp.is_none() {
                        continue; // finished before we saw it; never run it again
                    }
                    let (tx, rx) = watch::channel(Some(p.clone()));
                    let task = tokio::spawn(pod::run(ctx.clone(), p, rx, shutdown.clone()));
                    running.insert(uid, PodHandle { updates: tx, task });
                }
            }
            Err(e) => tracing::warn!(error = %e, "listing pods failed; retrying"),
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => {}
        }
    }
    for (_, h) in running {
        let _ = h.task.await;
    }
}
