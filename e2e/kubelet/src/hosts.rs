//! Service names in the hosts file: a managed block between `# BEGIN weir-kubelet node=<node>`
//! and `# END weir-kubelet node=<node>` maps `<svc>`, `<svc>.<ns>`, `<svc>.<ns>.svc` and
//! `<svc>.<ns>.svc.cluster.local` to the address of the first ready pod the Service selects. Rewritten
//! atomically (temporary file + rename) when it changes, removed on shutdown. ClusterIPs are
//! not routed: clients must connect by name.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use tokio::sync::watch;

use crate::error::{Error, Result, io};

#[derive(Debug, Clone)]
pub struct HostsFile {
    path: PathBuf,
    begin: String,
    end: String,
}

impl HostsFile {
    pub fn new(path: PathBuf, node: &str) -> Self {
        Self {
            path,
            begin: format!("# BEGIN weir-kubelet node={node}"),
            end: format!("# END weir-kubelet node={node}"),
        }
    }

    /// Fails with a clear message when the hosts file cannot be rewritten.
    pub fn check_writable(&self) -> Result<()> {
        std::fs::OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map(drop)
            .map_err(|source| Error::HostsNotWritable {
                path: self.path.clone(),
                source,
            })?;
        let dir = self.path.parent().unwrap_or(std::path::Path::new("/"));
        let probe = dir.join(format!(".weir-kubelet-probe-{}", std::process::id()));
        std::fs::write(&probe, b"")
            .and_then(|()| std::fs::remove_file(&probe))
            .map_err(|source| Error::HostsNotWritable {
                path: self.path.clone(),
                source,
            })
    }

    /// The file without our block.
    fn others(&self, text: &str) -> String {
        let mut out = String::new();
        let mut inside = false;
        for line in text.lines() {
            if line == self.begin {
                inside = true;
            } else if line == self.end {
                inside = false;
            } else if !inside {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }

    /// Writes `entries` (name → address) as our block; an empty map removes it.
    pub fn write(&self, entries: &BTreeMap<String, String>) -> Result<()> {
        let text = std::fs::read_to_string(&self.path).map_err(io("reading", &self.path))?;
        let mut out = self.others(&text);
        if !entries.is_empty() {
            out.push_str(&self.begin);
            out.push('\n');
            for (name, ip) in entries {
                out.push_str(&format!("{ip} {name}\n"));
            }
            out.push_str(&self.end);
            out.push('\n');
        }
        if out == text {
            return Ok(());
        }
        let tmp = self
            .path
            .with_extension(format!("weir-kubelet-{}", std::process::id()));
        let mut f = std::fs::File::create(&tmp).map_err(io("creating", &tmp))?;
        f.write_all(out.as_bytes()).map_err(io("writing", &tmp))?;
        f.sync_all().map_err(io("syncing", &tmp))?;
        let mode = std::fs::metadata(&self.path).map(|m| m.permissions());
        if let Ok(mode) = mode {
            let _ = std::fs::set_permissions(&tmp, mode);
        }
        std::fs::rename(&tmp, &self.path).map_err(io("replacing", &self.path))
    }

    pub fn remove_block(&self) -> Result<()> {
        self.write(&BTreeMap::new())
    }
}

fn pod_ready(p: &Pod) -> Option<&str> {
    if p.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let st = p.status.as_ref()?;
    let ready = st
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    ready.then_some(st.pod_ip.as_deref()?)
}

/// name → address of the first ready pod (by name) selected by each Service. Computed from
/// Services and Pods rather than Endpoints: the 1.20 apiserver rejects loopback addresses in
/// Endpoints ("may not be in the loopback range"), so those stay empty here.
fn entries(services: &[Service], pods: &[Pod]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for svc in services {
        let (Some(ns), name) = (svc.namespace(), svc.name_any()) else {
            continue;
        };
        let Some(selector) = svc
            .spec
            .as_ref()
            .and_then(|s| s.selector.as_ref())
            .filter(|s| !s.is_empty())
        else {
            continue;
        };
        let mut ready: Vec<(String, &str)> = pods
            .iter()
            .filter(|p| p.namespace().as_deref() == Some(ns.as_str()))
            .filter(|p| {
                let labels = p.labels();
                selector.iter().all(|(k, v)| labels.get(k) == Some(v))
            })
            .filter_map(|p| Some((p.name_any(), pod_ready(p)?)))
            .collect();
        ready.sort();
        if let Some((_, ip)) = ready.first() {
            for n in [
                name.clone(),
                format!("{name}.{ns}"),
                format!("{name}.{ns}.svc"),
                format!("{name}.{ns}.svc.cluster.local"),
            ] {
                out.insert(n, (*ip).to_owned());
            }
        }
    }
    out
}

/// Re-reads Services and Pods every second and keeps the block current until shutdown.
pub async fn run(client: Client, hosts: HostsFile, mut shutdown: watch::Receiver<bool>) {
    let services: Api<Service> = Api::all(client.clone());
    let pods: Api<Pod> = Api::all(client);
    let mut last: Option<BTreeMap<String, String>> = None;
    loop {
        if *shutdown.borrow() {
            return;
        }
        let lp = ListParams::default();
        match tokio::try_join!(services.list(&lp), pods.list(&lp)) {
            Ok((svcs, ps)) => {
                let e = entries(&svcs.items, &ps.items);
                if last.as_ref() != Some(&e) {
                    match hosts.write(&e) {
                        Ok(()) => {
                            tracing::info!(names = e.len(), path = %hosts.path.display(), "hosts file updated");
                            last = Some(e);
                        }
                        Err(err) => tracing::error!(error = %err, "updating the hosts file failed"),
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "listing services and pods failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.changed() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, app: &str, ip: &str, ready: bool) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": { "name": name, "namespace": "ns", "labels": { "app": app } },
            "status": { "podIP": ip, "conditions": [
                { "type": "Ready", "status": if ready { "True" } else { "False" } }] },
        }))
        .unwrap()
    }

    #[test]
    fn service_names_map_to_the_first_ready_selected_pod() {
        let svc: Service = serde_json::from_value(serde_json::json!({
            "metadata": { "name": "web", "namespace": "ns" },
            "spec": { "selector": { "app": "web" } },
        }))
        .unwrap();
        let pods = [
            pod("web-a", "web", "127.0.0.2", false),
            pod("web-b", "web", "127.0.0.3", true),
            pod("web-c", "web", "127.0.0.4", true),
            pod("other", "db", "127.0.0.5", true),
        ];
        let e = entries(std::slice::from_ref(&svc), &pods);
        assert_eq!(e.len(), 4);
        assert_eq!(e["web.ns.svc.cluster.local"], "127.0.0.3");
        assert_eq!(e["web"], "127.0.0.3");
        assert!(
            entries(&[svc], &pods[..1]).is_empty(),
            "no ready pod: no names"
        );
    }

    #[test]
    fn the_managed_block_is_replaced_and_removed_without_touching_other_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hosts");
        std::fs::write(&path, "127.0.0.1 localhost\n").unwrap();
        let h = HostsFile::new(path.clone(), "n1");
        let other = HostsFile::new(path.clone(), "n2");
        h.write(&BTreeMap::from([("a".into(), "127.0.0.2".into())]))
            .unwrap();
        other
            .write(&BTreeMap::from([("b".into(), "127.0.1.2".into())]))
            .unwrap();
        h.write(&BTreeMap::from([("a".into(), "127.0.0.3".into())]))
            .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("127.0.0.1 localhost\n"));
        assert!(text.contains("127.0.0.3 a\n") && !text.contains("127.0.0.2 a"));
        assert!(text.contains("127.0.1.2 b\n"));
        h.remove_block().unwrap();
        other.remove_block().unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "127.0.0.1 localhost\n"
        );
    }
}
