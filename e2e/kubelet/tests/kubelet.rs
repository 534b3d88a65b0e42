//! End-to-end: weir-kubelet on the real local control plane (e2e/controlplane), with its own
//! state dir and ports. Skipped (with the reason printed) when the control plane binaries are
//! not installed. Numbered steps, each asserted; a guard stops the kubelet and runs down.sh
//! whatever happens.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, Pod, Secret, Service};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::{Client, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const NS: &str = "kubelet-e2e";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn controlplane() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../controlplane")
}

/// Stops the kubelet and the control plane when dropped, also on panic.
struct Cluster {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    env: Vec<(String, String)>,
    kubeconfig: PathBuf,
    kubelet: Option<Child>,
    kubelet_log: PathBuf,
}

impl Cluster {
    fn up() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_owned();
        let env: Vec<(String, String)> = [
            ("WEIR_K8S_STATE", dir.join("k8s").display().to_string()),
            ("WEIR_K8S_APISERVER_PORT", free_port().to_string()),
            ("WEIR_K8S_ETCD_PORT", free_port().to_string()),
            ("WEIR_K8S_ETCD_PEER_PORT", free_port().to_string()),
            ("WEIR_K8S_KCM_PORT", free_port().to_string()),
            ("WEIR_K8S_SCHED_PORT", free_port().to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let mut cluster = Self {
            _tmp: tmp,
            kubeconfig: PathBuf::new(),
            kubelet_log: dir.join("kubelet.log"),
            dir,
            env,
            kubelet: None,
        };
        let out = Command::new(controlplane().join("up.sh"))
            .envs(cluster.env.iter().cloned())
            .stderr(Stdio::inherit())
            .output()
            .expect("running up.sh");
        assert!(out.status.success(), "up.sh failed: {}", out.status);
        let stdout = String::from_utf8(out.stdout).unwrap();
        cluster.kubeconfig = PathBuf::from(stdout.lines().last().expect("kubeconfig path"));
        cluster
    }

    fn start_kubelet(&mut self, node: &str, ip_prefix: &str) {
        let log = std::fs::File::create(&self.kubelet_log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_weir-kubelet"))
            .args(["--node-name", node, "--pod-ip-prefix", ip_prefix])
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--state-dir")
            .arg(self.dir.join("kubelet"))
            .args([
                "--image",
                &format!("python-http={}", binary("python3").display()),
            ])
            .args(["--image", &format!("shell={}", binary("sh").display())])
            .args([
                "--image",
                &format!("kubectl={}", binary("kubectl").display()),
            ])
            .env("RUST_LOG", "info,kube=warn")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting weir-kubelet");
        self.kubelet = Some(child);
    }

    /// SIGTERM the kubelet and wait for it; returns its exit status.
    fn stop_kubelet(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.kubelet.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(s)) = child.try_wait() {
                return Some(s);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return child.wait().ok();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn kubelet_log(&self) -> String {
        std::fs::read_to_string(&self.kubelet_log).unwrap_or_default()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- weir-kubelet log ----\n{}", self.kubelet_log());
        }
        self.stop_kubelet();
        let _ = Command::new(controlplane().join("down.sh"))
            .envs(self.env.iter().cloned())
            .status();
    }
}

async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn obj<T: DeserializeOwned>(v: serde_json::Value) -> T {
    serde_json::from_value(v).unwrap()
}

async fn http_get(host: &str, port: u16, path: &str) -> Option<String> {
    let mut s = tokio::net::TcpStream::connect((host, port)).await.ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).await.ok()?;
    Some(out)
}

fn step(n: u32, what: &str, t0: Instant) {
    eprintln!("[{:>6.1}s] step {n}: {what}", t0.elapsed().as_secs_f64());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubelet_runs_deployments_as_local_processes_with_probes_volumes_env_and_service_names() {
    let cache = std::env::var("WEIR_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| dirs_home().join(".cache/weir"));
    let stamp = cache.join("k8s/bin/STAMP");
    if !stamp.exists() {
        eprintln!(
            "SKIPPED: control plane binaries not installed ({} missing); run e2e/controlplane/install.sh",
            stamp.display()
        );
        return;
    }
    let t0 = Instant::now();
    let pid = std::process::id();
    let node = format!("kubelet-e2e-{pid}");
    let ip_prefix = format!("127.{}.{}", 20 + pid % 200, (pid / 200) % 250);

    step(1, "control plane up, kubelet started, Node Ready", t0);
    let mut cluster = Cluster::up();
    cluster.start_kubelet(&node, &ip_prefix);
    let kc = kube::config::Kubeconfig::read_from(&cluster.kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    let client = Client::try_from(config).unwrap();
    let nodes: Api<Node> = Api::all(client.clone());
    wait_for("the Node to be Ready", Duration::from_secs(60), || async {
        let n = nodes.get_opt(&node).await.ok()??;
        let ready = n
            .status?
            .conditions?
            .into_iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        ready.then_some(())
    })
    .await;
    let taints = nodes
        .get(&node)
        .await
        .unwrap()
        .spec
        .and_then(|s| s.taints)
        .unwrap_or_default();
    assert!(taints.is_empty(), "a Ready node has no taints: {taints:?}");
    let lease = Api::<Lease>::namespaced(client.clone(), "kube-node-lease")
        .get(&node)
        .await
        .expect("the node's heartbeat Lease");
    assert_eq!(
        lease.spec.and_then(|s| s.holder_identity).as_deref(),
        Some(node.as_str())
    );

    step(
        2,
        "a 2-replica Deployment with a readiness probe and a ConfigMap volume becomes Available",
        t0,
    );
    let pp = PostParams::default();
    Api::<Namespace>::all(client.clone())
        .create(&pp, &obj(json!({ "metadata": { "name": NS } })))
        .await
        .unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
    cms.create(
        &pp,
        &obj(json!({ "metadata": { "name": "www" },
        "data": { "index.html": "served from a configmap volume\n" } })),
    )
    .await
    .unwrap();
    cms.create(
        &pp,
        &obj(json!({ "metadata": { "name": "settings" }, "data": { "GREETING": "hello" } })),
    )
    .await
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), NS)
        .create(
            &pp,
            &obj(
                json!({ "metadata": { "name": "creds" }, "stringData": { "password": "s3cret" } }),
            ),
        )
        .await
        .unwrap();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NS);
    deployments
        .create(&pp, &obj(json!({
            "metadata": { "name": "web" },
            "spec": {
                "replicas": 2,
                "selector": { "matchLabels": { "app": "web" } },
                "template": {
                    "metadata": { "labels": { "app": "web" } },
                    "spec": {
                        "terminationGracePeriodSeconds": 5,
                        "containers": [{
                            "name": "http",
                            "image": "registry.example/library/python-http:3.11",
                            "command": ["/usr/local/bin/python3", "-m", "http.server", "8000",
                                        "--bind", "$(POD_IP)", "--directory", "/srv/www"],
                            "env": [{ "name": "POD_IP", "valueFrom": { "fieldRef": { "fieldPath": "status.podIP" } } }],
                            "ports": [{ "name": "http", "containerPort": 8000 }],
                            "readinessProbe": { "httpGet": { "path": "/index.html", "port": "http" },
                                                "periodSeconds": 1 },
                            "volumeMounts": [{ "name": "www", "mountPath": "/srv/www" }],
                        }],
                        "volumes": [{ "name": "www", "configMap": { "name": "www" } }],
                    },
                },
            },
        })))
        .await
        .unwrap();
    wait_for(
        "Deployment web to have 2 available replicas",
        Duration::from_secs(90),
        || async {
            let d = deployments.get("web").await.ok()?;
            (d.status?.available_replicas? == 2).then_some(())
        },
    )
    .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let web = pods
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap()
        .items;
    let mut ips: Vec<String> = web
        .iter()
        .filter_map(|p| p.status.as_ref()?.pod_ip.clone())
        .collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 2, "two pods on distinct addresses: {ips:?}");
    for ip in &ips {
        assert!(
            ip.starts_with(&format!("{ip_prefix}.")),
            "pod IP {ip} is in {ip_prefix}.0/24"
        );
        let body = http_get(ip, 8000, "/index.html")
            .await
            .expect("pod serves HTTP on its own IP");
        assert!(
            body.contains("served from a configmap volume"),
            "body from {ip}: {body}"
        );
    }
    for p in &web {
        let st = p.status.as_ref().unwrap();
        assert_eq!(st.host_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(
            p.spec.as_ref().unwrap().node_name.as_deref(),
            Some(node.as_str())
        );
    }

    step(
        3,
        "the Service name resolves through /etc/hosts to a ready pod",
        t0,
    );
    Api::<Service>::namespaced(client.clone(), NS)
        .create(
            &pp,
            &obj(json!({ "metadata": { "name": "web" },
            "spec": { "selector": { "app": "web" }, "ports": [{ "port": 8000 }] } })),
        )
        .await
        .unwrap();
    let fqdn = format!("web.{NS}.svc.cluster.local");
    let resolved = wait_for(
        "the Service name in /etc/hosts",
        Duration::from_secs(30),
        || async {
            let mut addrs = tokio::net::lookup_host((fqdn.as_str(), 8000)).await.ok()?;
            addrs.next().map(|a| a.ip().to_string())
        },
    )
    .await;
    assert!(
        ips.contains(&resolved),
        "{fqdn} -> {resolved}, one of {ips:?}"
    );
    let body = http_get(&fqdn, 8000, "/index.html")
        .await
        .expect("connect by Service name");
    assert!(body.contains("served from a configmap volume"));

    step(
        4,
        "env from fieldRef, secretKeyRef and envFrom reaches the process",
        t0,
    );
    let out = cluster.dir.join("env.txt");
    let term = cluster.dir.join("term.txt");
    let script = r#"echo "$POD_IP|$MY_NAME|$MY_NS|$MY_NODE|$PASSWORD|$CFG_GREETING" > "$OUT.tmp" && mv "$OUT.tmp" "$OUT"
trap 'echo sigterm > "$TERM_OUT"; exit 0' TERM
while true; do sleep 0.2; done"#;
    let field = |n: &str, path: &str| json!({ "name": n, "valueFrom": { "fieldRef": { "fieldPath": path } } });
    deployments
        .create(&pp, &obj(json!({
            "metadata": { "name": "envcheck" },
            "spec": {
                "replicas": 1,
                "selector": { "matchLabels": { "app": "envcheck" } },
                "template": {
                    "metadata": { "labels": { "app": "envcheck" } },
                    "spec": { "containers": [{
                        "name": "sh", "image": "shell", "command": ["sh", "-c", script],
                        "env": [
                            field("POD_IP", "status.podIP"), field("MY_NAME", "metadata.name"),
                            field("MY_NS", "metadata.namespace"), field("MY_NODE", "spec.nodeName"),
                            { "name": "PASSWORD", "valueFrom": { "secretKeyRef": { "name": "creds", "key": "password" } } },
                            { "name": "OUT", "value": out.display().to_string() },
                            { "name": "TERM_OUT", "value": term.display().to_string() },
                        ],
                        "envFrom": [{ "prefix": "CFG_", "configMapRef": { "name": "settings" } }],
                    }]},
                },
            },
        })))
        .await
        .unwrap();
    let line = wait_for(
        "the env file written by the pod",
        Duration::from_secs(60),
        || async { std::fs::read_to_string(&out).ok() },
    )
    .await;
    let envpod = wait_for(
        "the envcheck pod with an IP",
        Duration::from_secs(10),
        || async {
            let p = pods
                .list(&ListParams::default().labels("app=envcheck"))
                .await
                .ok()?
                .items
                .pop()?;
            p.status.as_ref()?.pod_ip.is_some().then_some(p)
        },
    )
    .await;
    let expected = format!(
        "{}|{}|{NS}|{node}|s3cret|hello\n",
        envpod.status.as_ref().unwrap().pod_ip.as_ref().unwrap(),
        envpod.name_any()
    );
    assert_eq!(line, expected);

    step(5, "a failing liveness probe restarts the container", t0);
    pods.create(&pp, &obj(json!({
        "metadata": { "name": "flaky" },
        "spec": {
            "terminationGracePeriodSeconds": 2,
            "containers": [{
                "name": "main", "image": "shell", "command": ["sh", "-c", "while true; do sleep 0.2; done"],
                "livenessProbe": { "exec": { "command": ["sh", "-c", "exit 1"] },
                                   "periodSeconds": 1, "failureThreshold": 2 },
            }],
        },
    })))
    .await
    .unwrap();
    let restarted = wait_for(
        "restartCount > 0 on pod flaky",
        Duration::from_secs(60),
        || async {
            let p = pods.get("flaky").await.ok()?;
            let cs = p.status?.container_statuses?.pop()?;
            (cs.restart_count > 0).then_some(cs)
        },
    )
    .await;
    let last = restarted
        .last_state
        .and_then(|s| s.terminated)
        .expect("lastState.terminated");
    assert_ne!(last.exit_code, 0, "killed by the liveness probe: {last:?}");

    step(
        6,
        "an in-cluster client authenticates with the pod's service-account token; output in the log file",
        t0,
    );
    pods.create(
        &pp,
        &obj(json!({
            "metadata": { "name": "incluster" },
            "spec": {
                "restartPolicy": "Never",
                "containers": [{ "name": "main", "image": "bitnami/kubectl:1.20",
                                 "command": ["kubectl", "get", "pods", "--namespace", NS],
                                 "terminationMessagePolicy": "FallbackToLogsOnError" }],
            },
        })),
    )
    .await
    .unwrap();
    let finished = wait_for(
        "pod incluster to finish",
        Duration::from_secs(60),
        || async {
            let st = pods.get("incluster").await.ok()?.status?;
            matches!(st.phase.as_deref(), Some("Succeeded" | "Failed")).then_some(st)
        },
    )
    .await;
    let log_path = cluster
        .dir
        .join(format!("kubelet/logs/{NS}_incluster_main.log"));
    let log = std::fs::read_to_string(&log_path).expect("container log file");
    assert!(
        log.contains(&format!("system:serviceaccount:{NS}:default")),
        "kubectl in the pod authenticated as its ServiceAccount (and was refused by RBAC): {log}"
    );
    assert_eq!(
        finished.phase.as_deref(),
        Some("Failed"),
        "restartPolicy Never: no restart"
    );
    let cs = finished.container_statuses.unwrap().pop().unwrap();
    assert_eq!(cs.restart_count, 0);
    let terminated = cs.state.unwrap().terminated.unwrap();
    assert_eq!(terminated.exit_code, 1);
    // FallbackToLogsOnError: the failed container's message is the tail of its log.
    let message = terminated.message.unwrap_or_default();
    assert!(
        message.contains(&format!("system:serviceaccount:{NS}:default")),
        "termination message: {message}"
    );

    step(
        7,
        "an unmapped image waits with ErrImagePull naming the image and the mappings",
        t0,
    );
    pods.create(
        &pp,
        &obj(json!({
            "metadata": { "name": "noimage" },
            "spec": { "containers": [{ "name": "main", "image": "ghcr.io/x/missing:1.0" }] },
        })),
    )
    .await
    .unwrap();
    let waiting = wait_for(
        "ErrImagePull on pod noimage",
        Duration::from_secs(30),
        || async {
            let cs = pods
                .get("noimage")
                .await
                .ok()?
                .status?
                .container_statuses?
                .pop()?;
            let w = cs.state?.waiting?;
            (w.reason.as_deref() == Some("ErrImagePull")).then_some(w)
        },
    )
    .await;
    let msg = waiting.message.unwrap_or_default();
    assert!(
        msg.contains("ghcr.io/x/missing:1.0") && msg.contains("python-http="),
        "{msg}"
    );

    step(
        8,
        "deleting the Deployments stops the processes (SIGTERM) and the pods disappear",
        t0,
    );
    for d in ["web", "envcheck"] {
        deployments
            .delete(d, &DeleteParams::foreground())
            .await
            .unwrap();
    }
    for p in ["flaky", "incluster", "noimage"] {
        pods.delete(p, &DeleteParams::default()).await.unwrap();
    }
    wait_for("all pods gone", Duration::from_secs(120), || async {
        pods.list(&ListParams::default())
            .await
            .ok()?
            .items
            .is_empty()
            .then_some(())
    })
    .await;
    assert_eq!(
        std::fs::read_to_string(&term).unwrap_or_default(),
        "sigterm\n",
        "the shell trapped SIGTERM"
    );
    for ip in &ips {
        assert!(
            tokio::net::TcpStream::connect((ip.as_str(), 8000))
                .await
                .is_err(),
            "{ip}:8000 closed"
        );
    }
    wait_for(
        "the Service name to leave /etc/hosts",
        Duration::from_secs(30),
        || async {
            let hosts = std::fs::read_to_string("/etc/hosts").ok()?;
            (!hosts.contains(&fqdn)).then_some(())
        },
    )
    .await;

    step(
        9,
        "stopping the kubelet marks the Node NotReady and cleans /etc/hosts",
        t0,
    );
    let status = cluster.stop_kubelet().expect("kubelet was running");
    assert!(status.success(), "kubelet exit status {status}");
    let n = nodes.get(&node).await.unwrap();
    let ready = n
        .status
        .unwrap()
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.status, "False");
    let hosts = std::fs::read_to_string("/etc/hosts").unwrap();
    assert!(
        !hosts.contains(&format!("weir-kubelet node={node}")),
        "{hosts}"
    );
    eprintln!("kubelet e2e passed in {:.1}s", t0.elapsed().as_secs_f64());
}

/// `/usr/bin/NAME` when it exists (not a pyenv shim), else the first NAME on PATH.
fn binary(name: &str) -> PathBuf {
    let usr = Path::new("/usr/bin").join(name);
    if usr.exists() {
        return usr;
    }
    std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("{name} not found on PATH; the e2e test needs it"))
}

fn dirs_home() -> PathBuf {
    PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into()))
}
