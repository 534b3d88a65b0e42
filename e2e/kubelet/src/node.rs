//! The Node object: registration with capacity, the Ready heartbeat (status patch and a renewed
//! Lease `kube-node-lease/<node>` every 10 s; the status also clears the node-lifecycle
//! controller's not-ready/unreachable taints), and NotReady on shutdown.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::error::Result;

pub const HEARTBEAT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct Capacity {
    pub cpu: String,
    pub memory: String,
    pub pods: String,
}

pub fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn status(node: &str, cap: &Capacity, ready: bool) -> Value {
    let t = now();
    let resources = json!({ "cpu": cap.cpu, "memory": cap.memory, "pods": cap.pods });
    let pressure = |ty: &str, reason: &str| {
        json!({ "type": ty, "status": "False", "reason": reason,
                "message": "weir-kubelet does not track this", "lastHeartbeatTime": t, "lastTransitionTime": t })
    };
    let (st, reason, msg) = if ready {
        (
            "True",
            "KubeletReady",
            "weir-kubelet is posting ready status",
        )
    } else {
        ("False", "KubeletStopped", "weir-kubelet was stopped")
    };
    json!({
        "capacity": resources,
        "allocatable": resources,
        "addresses": [
            { "type": "InternalIP", "address": "127.0.0.1" },
            { "type": "Hostname", "address": node },
        ],
        "conditions": [
            pressure("MemoryPressure", "KubeletHasSufficientMemory"),
            pressure("DiskPressure", "KubeletHasNoDiskPressure"),
            pressure("PIDPressure", "KubeletHasSufficientPID"),
            { "type": "Ready", "status": st, "reason": reason, "message": msg,
              "lastHeartbeatTime": t, "lastTransitionTime": t },
        ],
        "nodeInfo": {
            "machineID": "weir", "systemUUID": "weir", "bootID": "weir",
            "kernelVersion": "", "osImage": "weir process-kubelet",
            "containerRuntimeVersion": "process://0", "kubeletVersion": "v1.20.2",
            "kubeProxyVersion": "v1.20.2", "operatingSystem": "linux",
            "architecture": std::env::consts::ARCH,
        },
    })
}

/// Creates the Node (or adopts an existing one), removes its taints and posts Ready.
pub async fn register(client: &Client, name: &str, cap: &Capacity) -> Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": { "name": name, "labels": {
            "kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
            "kubernetes.io/arch": std::env::consts::ARCH, "weir.dev/process-kubelet": "true",
        }},
        "spec": {},
    }))
    .expect("static node object");
    match nodes.create(&PostParams::default(), &node).await {
        Ok(_) => tracing::info!(node = name, "registered node"),
        Err(kube::Error::Api(s)) if s.code == 409 => {
            tracing::info!(node = name, "node exists; taking it over");
            nodes
                .patch(
                    name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({ "spec": { "taints": null, "unschedulable": null } })),
                )
                .await?;
        }
        Err(e) => return Err(e.into()),
    }
    post_status(client, name, cap, true).await?;
    renew_lease(client, name).await
}

/// Creates or renews the node's Lease (the kubelet heartbeat of Kubernetes ≥ 1.17).
async fn renew_lease(client: &Client, name: &str) -> Result<()> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let renew = format!("{}.000000Z", now().trim_end_matches('Z'));
    let spec = json!({ "holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": renew });
    let patch = Patch::Merge(json!({ "spec": spec }));
    match leases.patch(name, &PatchParams::default(), &patch).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => {
            let lease: Lease = serde_json::from_value(json!({
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": { "name": name, "namespace": "kube-node-lease" },
                "spec": spec,
            }))
            .expect("static lease object");
            leases.create(&PostParams::default(), &lease).await?;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

async fn post_status(client: &Client, name: &str, cap: &Capacity, ready: bool) -> Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": status(name, cap, ready) })),
        )
        .await?;
    Ok(())
}

/// Posts Ready every [`HEARTBEAT`] until shutdown.
pub async fn heartbeat(
    client: Client,
    name: String,
    cap: Capacity,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(HEARTBEAT) => {}
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
        if let Err(e) = post_status(&client, &name, &cap, true).await {
            tracing::warn!(error = %e, "node heartbeat failed");
        }
        if let Err(e) = renew_lease(&client, &name).await {
            tracing::warn!(error = %e, "node lease renewal failed");
        }
    }
}

pub async fn mark_not_ready(client: &Client, name: &str, cap: &Capacity) {
    match post_status(client, name, cap, false).await {
        Ok(()) => tracing::info!(node = name, "node marked NotReady"),
        Err(e) => tracing::error!(error = %e, "could not mark the node NotReady"),
    }
}
