//! Pod volumes and environment. Volumes are materialised under `<pods>/<uid>/volumes/<name>`;
//! every volumeMount becomes a symlink `<pod root>/<mountPath>` → that directory, so a path
//! `/etc/weir/x` inside the "container" is `$WEIR_PATH_PREFIX/etc/weir/x` on the host.
//! Supported: configMap, secret (items, optional), emptyDir, hostPath, projected
//! (configMap/secret sources); the service-account token falls back to the ServiceAccount's
//! legacy token Secret when the admission plugin did not add a volume.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{ConfigMap, Container, KeyToPath, Pod, Secret, ServiceAccount};
use kube::Client;
use kube::api::Api;

use crate::error::{Error, Result, io};
use crate::spec::expand;

pub const SA_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// What the containers of one pod see.
#[derive(Debug, Default)]
pub struct Materialised {
    /// Every mountPath of every container.
    pub mounts: BTreeSet<String>,
    /// A kubeconfig holding the pod's service-account token, when it has one.
    pub kubeconfig: Option<PathBuf>,
}

async fn get_cm(
    client: &Client,
    ns: &str,
    name: &str,
    optional: bool,
) -> Result<Option<BTreeMap<String, Vec<u8>>>> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    match api.get_opt(name).await? {
        Some(cm) => {
            let mut out: BTreeMap<String, Vec<u8>> = cm
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.into_bytes()))
                .collect();
            out.extend(
                cm.binary_data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.0)),
            );
            Ok(Some(out))
        }
        None if optional => Ok(None),
        None => Err(Error::Config(format!(
            "configmap \"{name}\" not found in namespace {ns}"
        ))),
    }
}

async fn get_secret(
    client: &Client,
    ns: &str,
    name: &str,
    optional: bool,
) -> Result<Option<BTreeMap<String, Vec<u8>>>> {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    match api.get_opt(name).await? {
        Some(s) => {
            let mut out: BTreeMap<String, Vec<u8>> = s
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect();
            out.extend(
                s.string_data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.into_bytes())),
            );
            Ok(Some(out))
        }
        None if optional => Ok(None),
        None => Err(Error::Config(format!(
            "secret \"{name}\" not found in namespace {ns}"
        ))),
    }
}

fn write_keys(
    dir: &Path,
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&Vec<KeyToPath>>,
    source: &str,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(io("creating", dir))?;
    let files: Vec<(&String, &str)> = match items {
        Some(items) => items.iter().map(|i| (&i.key, i.path.as_str())).collect(),
        None => data.keys().map(|k| (k, k.as_str())).collect(),
    };
    for (key, rel) in files {
        let bytes = data
            .get(key)
            .ok_or_else(|| Error::Config(format!("{source} has no key \"{key}\"")))?;
        let path = dir.join(rel.trim_start_matches('/'));
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io("creating", parent))?;
        }
        std::fs::write(&path, bytes).map_err(io("writing", &path))?;
    }
    Ok(())
}

fn link(target: &Path, at: &Path) -> Result<()> {
    if let Some(parent) = at.parent() {
        std::fs::create_dir_all(parent).map_err(io("creating", parent))?;
    }
    match std::fs::symlink_metadata(at) {
        Ok(m) if m.is_symlink() || m.is_file() => {
            std::fs::remove_file(at).map_err(io("replacing", at))?
        }
        Ok(_) => std::fs::remove_dir_all(at).map_err(io("replacing", at))?,
        Err(_) => {}
    }
    std::os::unix::fs::symlink(target, at).map_err(io("linking", at))
}

/// Materialises the pod's volumes and mounts under `pod_dir` (`volumes/`, `root/`).
pub async fn materialise(
    client: &Client,
    pod: &Pod,
    pod_dir: &Path,
    api_url: &str,
) -> Result<Materialised> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let spec = pod
        .spec
        .as_ref()
        .ok_or_else(|| Error::Config("pod has no spec".into()))?;
    let vols_dir = pod_dir.join("volumes");
    let root = pod_dir.join("root");
    std::fs::create_dir_all(&root).map_err(io("creating", &root))?;
    let mut sources: BTreeMap<String, PathBuf> = BTreeMap::new();
    for v in spec.volumes.iter().flatten() {
        let dir = vols_dir.join(&v.name);
        if let Some(cm) = &v.config_map {
            let optional = cm.optional.unwrap_or(false);
            if let Some(data) = get_cm(client, ns, &cm.name, optional).await? {
                write_keys(
                    &dir,
                    &data,
                    cm.items.as_ref(),
                    &format!("configmap {ns}/{}", cm.name),
                )?;
            }
            std::fs::create_dir_all(&dir).map_err(io("creating", &dir))?;
        } else if let Some(s) = &v.secret {
            let name = s.secret_name.clone().unwrap_or_default();
            let optional = s.optional.unwrap_or(false);
            if let Some(data) = get_secret(client, ns, &name, optional).await? {
                write_keys(
                    &dir,
                    &data,
                    s.items.as_ref(),
                    &format!("secret {ns}/{name}"),
                )?;
            }
            std::fs::create_dir_all(&dir).map_err(io("creating", &dir))?;
        } else if let Some(hp) = &v.host_path {
            sources.insert(v.name.clone(), PathBuf::from(&hp.path));
            continue;
        } else if let Some(p) = &v.projected {
            for src in p.sources.iter().flatten() {
                if let Some(cm) = &src.config_map
                    && let Some(data) =
                        get_cm(client, ns, &cm.name, cm.optional.unwrap_or(false)).await?
                {
                    write_keys(
                        &dir,
                        &data,
                        cm.items.as_ref(),
                        &format!("configmap {ns}/{}", cm.name),
                    )?;
                }
                if let Some(s) = &src.secret
                    && let Some(data) =
                        get_secret(client, ns, &s.name, s.optional.unwrap_or(false)).await?
                {
                    write_keys(
                        &dir,
                        &data,
                        s.items.as_ref(),
                        &format!("secret {ns}/{}", s.name),
                    )?;
                }
                if src.service_account_token.is_some() || src.downward_api.is_some() {
                    tracing::warn!(volume = %v.name, "projected serviceAccountToken/downwardAPI sources are not supported; left empty");
                }
            }
            std::fs::create_dir_all(&dir).map_err(io("creating", &dir))?;
        } else {
            if v.empty_dir.is_none() {
                tracing::warn!(volume = %v.name, "unsupported volume type; using an empty directory");
            }
            std::fs::create_dir_all(&dir).map_err(io("creating", &dir))?;
        }
        sources.insert(v.name.clone(), dir);
    }

    let mut out = Materialised::default();
    for c in spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
    {
        for m in c.volume_mounts.iter().flatten() {
            let src = sources.get(&m.name).ok_or_else(|| {
                Error::Config(format!(
                    "container {} mounts unknown volume \"{}\"",
                    c.name, m.name
                ))
            })?;
            let target = match m.sub_path.as_deref().filter(|s| !s.is_empty()) {
                Some(sub) => src.join(sub),
                None => src.clone(),
            };
            link(&target, &root.join(m.mount_path.trim_start_matches('/')))?;
            out.mounts.insert(m.mount_path.clone());
        }
    }

    let automount = spec.automount_service_account_token != Some(false);
    if automount && !out.mounts.contains(SA_DIR) {
        let sa = spec.service_account_name.as_deref().unwrap_or("default");
        let api: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
        let secret = api
            .get_opt(sa)
            .await?
            .and_then(|s| s.secrets)
            .and_then(|s| s.into_iter().find_map(|r| r.name));
        if let Some(secret) = secret
            && let Some(data) = get_secret(client, ns, &secret, true).await?
        {
            let dir = vols_dir.join("_serviceaccount");
            write_keys(&dir, &data, None, &format!("secret {ns}/{secret}"))?;
            link(&dir, &root.join(SA_DIR.trim_start_matches('/')))?;
            out.mounts.insert(SA_DIR.into());
        }
    }
    if out.mounts.contains(SA_DIR) {
        let sa_dir = root.join(SA_DIR.trim_start_matches('/'));
        let token_path = sa_dir.join("token");
        if let Ok(token) = std::fs::read_to_string(&token_path) {
            let kc = pod_dir.join("kubeconfig");
            let text = format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: in-cluster\n  cluster:\n    server: {api_url}\n    certificate-authority: {ca}\nusers:\n- name: sa\n  user:\n    token: {token}\ncontexts:\n- name: in-cluster\n  context:\n    cluster: in-cluster\n    user: sa\n    namespace: {ns}\ncurrent-context: in-cluster\n",
                ca = sa_dir.join("ca.crt").display(),
                token = token.trim(),
            );
            std::fs::write(&kc, text).map_err(io("writing", &kc))?;
            out.kubeconfig = Some(kc);
        }
    }
    Ok(out)
}

fn field_ref(pod: &Pod, path: &str, ip: &str) -> Result<String> {
    let md = &pod.metadata;
    let spec = pod.spec.as_ref();
    let label = |map: &Option<BTreeMap<String, String>>, key: &str| {
        map.as_ref()
            .and_then(|m| m.get(key))
            .cloned()
            .unwrap_or_default()
    };
    let bracket = |prefix: &str| {
        path.strip_prefix(prefix)
            .and_then(|r| r.strip_suffix("']"))
            .map(str::to_owned)
    };
    Ok(match path {
        "metadata.name" => md.name.clone().unwrap_or_default(),
        "metadata.namespace" => md.namespace.clone().unwrap_or_default(),
        "metadata.uid" => md.uid.clone().unwrap_or_default(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_else(|| "default".into()),
        "status.podIP" | "status.podIPs" => ip.to_owned(),
        "status.hostIP" | "status.hostIPs" => "127.0.0.1".into(),
        _ => {
            if let Some(k) = bracket("metadata.labels['") {
                label(&md.labels, &k)
            } else if let Some(k) = bracket("metadata.annotations['") {
                label(&md.annotations, &k)
            } else {
                return Err(Error::Config(format!(
                    "unsupported fieldRef fieldPath \"{path}\""
                )));
            }
        }
    })
}

/// The container's environment from `envFrom` then `env` (later wins), with `$(VAR)`
/// references to earlier variables expanded.
pub async fn environment(
    client: &Client,
    pod: &Pod,
    c: &Container,
    ip: &str,
) -> Result<BTreeMap<String, String>> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut env = BTreeMap::new();
    let text = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
    for from in c.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        let data = if let Some(cm) = &from.config_map_ref {
            get_cm(client, ns, &cm.name, cm.optional.unwrap_or(false)).await?
        } else if let Some(s) = &from.secret_ref {
            get_secret(client, ns, &s.name, s.optional.unwrap_or(false)).await?
        } else {
            None
        };
        for (k, v) in data.unwrap_or_default() {
            env.insert(format!("{prefix}{k}"), text(v));
        }
    }
    for e in c.env.iter().flatten() {
        let value = if let Some(vf) = &e.value_from {
            if let Some(f) = &vf.field_ref {
                Some(field_ref(pod, &f.field_path, ip)?)
            } else if let Some(s) = &vf.secret_key_ref {
                let data = get_secret(client, ns, &s.name, s.optional.unwrap_or(false)).await?;
                match data.map(|mut d| d.remove(&s.key)) {
                    Some(Some(v)) => Some(text(v)),
                    _ if s.optional.unwrap_or(false) => None,
                    _ => {
                        return Err(Error::Config(format!(
                            "secret {ns}/{} has no key \"{}\"",
                            s.name, s.key
                        )));
                    }
                }
            } else if let Some(cm) = &vf.config_map_key_ref {
                let data = get_cm(client, ns, &cm.name, cm.optional.unwrap_or(false)).await?;
                match data.map(|mut d| d.remove(&cm.key)) {
                    Some(Some(v)) => Some(text(v)),
                    _ if cm.optional.unwrap_or(false) => None,
                    _ => {
                        return Err(Error::Config(format!(
                            "configmap {ns}/{} has no key \"{}\"",
                            cm.name, cm.key
                        )));
                    }
                }
            } else {
                tracing::warn!(var = %e.name, "resourceFieldRef is not supported; variable left unset");
                None
            }
        } else {
            Some(expand(e.value.as_deref().unwrap_or(""), &env))
        };
        if let Some(v) = value {
            env.insert(e.name.clone(), v);
        }
    }
    Ok(env)
}
