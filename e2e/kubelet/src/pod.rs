//! One task per pod: allocates its address, materialises volumes, starts each container as a
//! process group, runs probes, restarts by `restartPolicy` with back-off, reports status, and on
//! deletion stops the processes (SIGTERM, SIGKILL after the grace period), deletes the pod
//! object with grace 0 and frees its address and files.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::os::unix::process::ExitStatusExt as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::Context;
use crate::node::now;
use crate::probe::{self, ProbeState};
use crate::spec::{expand, program_for_image, rewrite_path};
use crate::volumes::{self, Materialised};

const TICK: Duration = Duration::from_millis(250);
const BACKOFF_START: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// A container that ran this long without failing has its back-off reset.
const BACKOFF_RESET: Duration = Duration::from_secs(60);

/// Runtime state of one container.
#[derive(Debug)]
struct Ctr {
    spec: Container,
    child: Option<tokio::process::Child>,
    pid: Option<u32>,
    started_at: Option<String>,
    started_instant: Option<Instant>,
    ever_started: bool,
    restart_count: i32,
    state: Value,
    last_state: Value,
    next_start: Instant,
    backoff: Duration,
    readiness: Option<ProbeState>,
    liveness: Option<ProbeState>,
    env: BTreeMap<String, String>,
    /// Set when SIGTERM was sent: SIGKILL follows at this instant.
    kill_at: Option<Instant>,
    /// Exited and will not be restarted.
    done: bool,
    exit_code: Option<i32>,
}

impl Ctr {
    fn new(spec: Container) -> Self {
        Self {
            spec,
            child: None,
            pid: None,
            started_at: None,
            started_instant: None,
            ever_started: false,
            restart_count: 0,
            state: json!({ "waiting": { "reason": "ContainerCreating" } }),
            last_state: json!({}),
            next_start: Instant::now(),
            backoff: BACKOFF_START,
            readiness: None,
            liveness: None,
            env: BTreeMap::new(),
            kill_at: None,
            done: false,
            exit_code: None,
        }
    }

    fn running(&self) -> bool {
        self.child.is_some()
    }

    fn ready(&self) -> bool {
        self.running() && self.kill_at.is_none() && self.readiness.as_ref().is_none_or(|p| p.ok)
    }
}

fn signal_group(pid: u32, signal: &str) {
    // A negative pid addresses the process group the container leads.
    let _ = std::process::Command::new("kill")
        .args([format!("-{signal}"), "--".into(), format!("-{pid}")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
}

struct PodRt {
    ctx: Arc<Context>,
    ns: String,
    name: String,
    uid: String,
    pod: Pod,
    ip: Option<Ipv4Addr>,
    pod_dir: PathBuf,
    prepared: Option<Materialised>,
    containers: Vec<Ctr>,
    start_time: String,
    /// Pod-level waiting reason (address or volume problems).
    problem: Option<(String, String)>,
    conditions: BTreeMap<&'static str, (bool, String)>,
    last_status: Option<Value>,
}

pub async fn run(
    ctx: Arc<Context>,
    pod: Pod,
    mut updates: watch::Receiver<Option<Pod>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let ns = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let name = pod.metadata.name.clone().unwrap_or_default();
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let containers = pod
        .spec
        .as_ref()
        .map(|s| s.containers.iter().cloned().map(Ctr::new).collect())
        .unwrap_or_default();
    if pod
        .spec
        .as_ref()
        .is_some_and(|s| s.init_containers.as_ref().is_some_and(|i| !i.is_empty()))
    {
        tracing::warn!(pod = %format!("{ns}/{name}"), "initContainers are not run by weir-kubelet");
    }
    let mut rt = PodRt {
        pod_dir: ctx.pods_dir.join(&uid),
        ctx,
        ns,
        name,
        uid,
        pod,
        ip: None,
        prepared: None,
        containers,
        start_time: now(),
        problem: None,
        conditions: BTreeMap::new(),
        last_status: None,
    };
    tracing::info!(pod = %rt.key(), "pod assigned to this node");
    loop {
        let latest = updates.borrow_and_update().clone();
        let stopping = *shutdown.borrow();
        match latest {
            None => {
                rt.terminate(rt.grace(None)).await;
                break;
            }
            Some(p) if p.metadata.deletion_timestamp.is_some() => {
                rt.pod = p;
                let grace = rt.pod.metadata.deletion_grace_period_seconds;
                rt.terminate(rt.grace(grace)).await;
                rt.delete_object().await;
                break;
            }
            Some(_) if stopping => {
                rt.terminate(rt.grace(None)).await;
                break;
            }
            Some(p) => {
                rt.pod = p;
                rt.step().await;
                rt.report().await;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            Ok(()) = updates.changed() => {}
            Ok(()) = shutdown.changed() => {}
        }
    }
    rt.cleanup();
}

impl PodRt {
    fn key(&self) -> String {
        format!("{}/{}", self.ns, self.name)
    }

    fn restart_policy(&self) -> &str {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.as_deref())
            .unwrap_or("Always")
    }

    fn grace(&self, from_deletion: Option<i64>) -> Duration {
        let spec = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds);
        Duration::from_secs(from_deletion.or(spec).unwrap_or(30).max(0) as u64)
    }

    fn set_problem(&mut self, reason: &str, message: String) {
        if self.problem.as_ref().map(|p| &p.1) != Some(&message) {
            tracing::warn!(pod = %self.key(), reason, "{message}");
        }
        self.problem = Some((reason.into(), message));
    }

    /// One reconciliation pass: prepare once, then start, watch and probe each container.
    async fn step(&mut self) {
        if self.ip.is_none() {
            let allocated = self.ctx.ips.lock().expect("ip pool lock").allocate();
            match allocated {
                Ok(ip) => self.ip = Some(ip),
                Err(e) => return self.set_problem("NetworkNotReady", e.to_string()),
            }
        }
        if self.prepared.is_none() {
            match volumes::materialise(
                &self.ctx.client,
                &self.pod,
                &self.pod_dir,
                &self.ctx.api_url,
            )
            .await
            {
                Ok(m) => {
                    self.prepared = Some(m);
                    self.problem = None;
                }
                Err(e) => return self.set_problem("CreateContainerConfigError", e.to_string()),
            }
        }
        for i in 0..self.containers.len() {
            self.step_container(i).await;
        }
    }

    async fn step_container(&mut self, i: usize) {
        let policy = self.restart_policy().to_owned();
        let ip = self.ip.map(|ip| ip.to_string()).unwrap_or_default();
        let root = self.pod_dir.join("root");
        let mounts = self
            .prepared
            .as_ref()
            .map(|m| m.mounts.clone())
            .unwrap_or_default();
        let key = self.key();
        let log_file = self.ctx.logs_dir.join(format!(
            "{}_{}_{}.log",
            self.ns, self.name, self.containers[i].spec.name
        ));
        let c = &mut self.containers[i];

        // Exited?
        if let Some(child) = c.child.as_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            let code = status
                .code()
                .unwrap_or_else(|| 128 + status.signal().unwrap_or(9));
            if let Some(pid) = c.pid {
                signal_group(pid, "KILL"); // the rest of the "container" goes with it
            }
            let finished = now();
            let reason = if code == 0 { "Completed" } else { "Error" };
            let mut terminated = json!({ "terminated": {
                "exitCode": code, "reason": reason, "startedAt": c.started_at,
                "finishedAt": finished, "containerID": format!("process://{}", c.pid.unwrap_or(0)),
            }});
            // As the kubelet does for `FallbackToLogsOnError` (no termination-log file here):
            // a failed container's message is the tail of its log, at most 80 lines and 2 KiB.
            if code != 0
                && c.spec.termination_message_policy.as_deref() == Some("FallbackToLogsOnError")
                && let Some(tail) = log_tail(&log_file)
            {
                terminated["terminated"]["message"] = json!(tail);
            }
            tracing::info!(pod = %key, container = %c.spec.name, code, "container exited");
            c.child = None;
            c.kill_at = None;
            c.exit_code = Some(code);
            let restart = match policy.as_str() {
                "Never" => false,
                "OnFailure" => code != 0,
                _ => true,
            };
            if c.started_instant
                .is_some_and(|t| t.elapsed() >= BACKOFF_RESET)
            {
                c.backoff = BACKOFF_START;
            }
            if restart {
                c.last_state = terminated;
                c.state = json!({ "waiting": { "reason": "CrashLoopBackOff", "message":
                        format!("back-off {}s restarting failed container={} pod={}", c.backoff.as_secs(), c.spec.name, key) }});
                c.next_start = Instant::now() + c.backoff;
                c.backoff = (c.backoff * 2).min(BACKOFF_MAX);
            } else {
                c.state = terminated;
                c.done = true;
            }
        }

        // Escalate a pending stop.
        if let (Some(at), Some(pid)) = (c.kill_at, c.pid)
            && c.running()
            && Instant::now() >= at
        {
            signal_group(pid, "KILL");
        }

        // Start (or restart) when due.
        if !c.running() && !c.done && Instant::now() >= c.next_start {
            let client = self.ctx.client.clone();
            let env = volumes::environment(&client, &self.pod, &self.containers[i].spec, &ip).await;
            let c = &mut self.containers[i];
            match env {
                Err(e) => {
                    c.state = json!({ "waiting": { "reason": "CreateContainerConfigError", "message": e.to_string() }});
                    c.next_start = Instant::now() + Duration::from_secs(1);
                    return;
                }
                Ok(env) => c.env = env,
            }
            let image = c.spec.image.clone().unwrap_or_default();
            let Some(binary) = self.ctx.images.binary(&image).map(|p| p.to_owned()) else {
                let msg = format!(
                    "image \"{image}\" has no local binary; known mappings: {} (start weir-kubelet with --image NAME=PATH)",
                    self.ctx.images.describe()
                );
                if c.state["waiting"]["reason"] != "ErrImagePull" {
                    tracing::warn!(pod = %key, container = %c.spec.name, "{msg}");
                }
                c.state = json!({ "waiting": { "reason": "ErrImagePull", "message": msg }});
                c.next_start = Instant::now() + Duration::from_secs(2);
                return;
            };
            let mut env = c.env.clone();
            for (k, v) in [
                ("KUBERNETES_SERVICE_HOST", self.ctx.api_host.clone()),
                ("KUBERNETES_SERVICE_PORT", self.ctx.api_port.to_string()),
                (
                    "KUBERNETES_SERVICE_PORT_HTTPS",
                    self.ctx.api_port.to_string(),
                ),
                ("WEIR_PATH_PREFIX", root.display().to_string()),
                ("HOSTNAME", self.name.clone()),
            ] {
                env.entry(k.into()).or_insert(v);
            }
            if let Some(kc) = self.prepared.as_ref().and_then(|m| m.kubeconfig.as_ref()) {
                env.entry("KUBECONFIG".into())
                    .or_insert_with(|| kc.display().to_string());
            }
            for k in ["PATH", "HOME", "LANG", "TMPDIR"] {
                if let Ok(v) = std::env::var(k) {
                    env.entry(k.into()).or_insert(v);
                }
            }
            let fix = |s: &String| rewrite_path(&expand(s, &env), &mounts, &root);
            let command: Vec<String> = c.spec.command.iter().flatten().map(fix).collect();
            let args: Vec<String> = c.spec.args.iter().flatten().map(fix).collect();
            let (exe, argv) = program_for_image(&image, &binary, &command, &args);
            let cwd = c
                .spec
                .working_dir
                .as_ref()
                .map(|w| PathBuf::from(rewrite_path(w, &mounts, &root)))
                .filter(|p| p.is_dir())
                .unwrap_or_else(|| root.clone());
            let log_path = log_file.clone();
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log_path);
            let spawned = log.and_then(|log| {
                let err = log.try_clone()?;
                tokio::process::Command::new(&exe)
                    .args(&argv)
                    .env_clear()
                    .envs(&env)
                    .current_dir(&cwd)
                    .stdin(std::process::Stdio::null())
                    .stdout(log)
                    .stderr(err)
                    .process_group(0)
                    .spawn()
            });
            match spawned {
                Ok(child) => {
                    let pid = child.id();
                    if c.ever_started {
                        c.restart_count += 1;
                    }
                    c.ever_started = true;
                    c.pid = pid;
                    c.child = Some(child);
                    let t = now();
                    c.started_at = Some(t.clone());
                    let started = Instant::now();
                    c.started_instant = Some(started);
                    c.state = json!({ "running": { "startedAt": t }});
                    c.readiness = c
                        .spec
                        .readiness_probe
                        .clone()
                        .map(|p| ProbeState::new(p, started, false));
                    c.liveness = c
                        .spec
                        .liveness_probe
                        .clone()
                        .map(|p| ProbeState::new(p, started, true));
                    c.env = env;
                    tracing::info!(pod = %key, container = %c.spec.name, pid, exe = %exe.display(), ?argv,
                        log = %log_path.display(), "container started");
                }
                Err(e) => {
                    let msg = format!("starting {} failed: {e}", exe.display());
                    tracing::warn!(pod = %key, container = %c.spec.name, "{msg}");
                    c.state =
                        json!({ "waiting": { "reason": "RunContainerError", "message": msg }});
                    c.next_start = Instant::now() + c.backoff;
                    c.backoff = (c.backoff * 2).min(BACKOFF_MAX);
                }
            }
            return;
        }

        // Probes.
        let c = &mut self.containers[i];
        if !c.running() || c.kill_at.is_some() {
            return;
        }
        let rewrite = |s: &str| rewrite_path(s, &mounts, &root);
        let nowi = Instant::now();
        if let Some(p) = c.readiness.as_mut().filter(|p| nowi >= p.next) {
            let r = probe::run(&p.probe, &c.spec, &ip, &c.env, &root, rewrite).await;
            let was = p.ok;
            let ok = p.record(r.is_ok());
            if was != ok {
                tracing::info!(pod = %key, container = %c.spec.name, ready = ok, result = ?r, "readiness changed");
            }
        }
        if let Some(p) = c.liveness.as_mut().filter(|p| nowi >= p.next) {
            let r = probe::run(&p.probe, &c.spec, &ip, &c.env, &root, rewrite).await;
            if !p.record(r.is_ok()) {
                let grace = self
                    .pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.termination_grace_period_seconds)
                    .unwrap_or(30)
                    .max(0) as u64;
                tracing::info!(pod = %key, container = %c.spec.name, error = ?r.err(),
                    "liveness probe failed; killing the container");
                if let Some(pid) = c.pid {
                    signal_group(pid, "TERM");
                }
                c.kill_at = Some(Instant::now() + Duration::from_secs(grace));
            }
        }
    }

    /// Stops every running container: SIGTERM to its process group, SIGKILL after `grace`.
    async fn terminate(&mut self, grace: Duration) {
        let deadline = Instant::now() + grace;
        let key = self.key();
        for c in &mut self.containers {
            if let (Some(_), Some(pid)) = (&c.child, c.pid) {
                tracing::info!(pod = %key, container = %c.spec.name, pid, grace_s = grace.as_secs(), "stopping container (SIGTERM)");
                signal_group(pid, "TERM");
            }
        }
        let mut killed = false;
        loop {
            let mut alive = false;
            for c in &mut self.containers {
                if let Some(child) = c.child.as_mut() {
                    match child.try_wait() {
                        Ok(Some(_)) | Err(_) => {
                            if let Some(pid) = c.pid {
                                signal_group(pid, "KILL");
                            }
                            c.child = None;
                        }
                        Ok(None) => alive = true,
                    }
                }
            }
            if !alive {
                break;
            }
            if !killed && Instant::now() >= deadline {
                for c in &self.containers {
                    if let (Some(_), Some(pid)) = (&c.child, c.pid) {
                        tracing::info!(pod = %key, container = %c.spec.name, pid, "grace period over; SIGKILL");
                        signal_group(pid, "KILL");
                    }
                }
                killed = true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Removes the pod object once its processes are gone.
    async fn delete_object(&self) {
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &self.ns);
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(self.uid.clone()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match api.delete(&self.name, &dp).await {
            Ok(_) => tracing::info!(pod = %self.key(), "pod deleted"),
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(e) => tracing::warn!(pod = %self.key(), error = %e, "deleting the pod failed"),
        }
    }

    fn cleanup(&mut self) {
        if let Some(ip) = self.ip.take() {
            self.ctx.ips.lock().expect("ip pool lock").release(ip);
        }
        if self.pod_dir.exists()
            && let Err(e) = std::fs::remove_dir_all(&self.pod_dir)
        {
            tracing::warn!(pod = %self.key(), error = %e, "removing the pod directory failed");
        }
        tracing::info!(pod = %self.key(), "pod stopped and cleaned up");
    }

    fn condition(&mut self, ty: &'static str, status: bool) -> Value {
        let entry = self.conditions.entry(ty).or_insert_with(|| (status, now()));
        if entry.0 != status {
            *entry = (status, now());
        }
        json!({ "type": ty, "status": if status { "True" } else { "False" },
                "lastProbeTime": null, "lastTransitionTime": entry.1 })
    }

    fn status(&mut self) -> Value {
        let all_ready = !self.containers.is_empty() && self.containers.iter().all(Ctr::ready);
        let phase = if self.containers.iter().all(|c| c.done) && !self.containers.is_empty() {
            if self.containers.iter().all(|c| c.exit_code == Some(0)) {
                "Succeeded"
            } else {
                "Failed"
            }
        } else if self.containers.iter().any(|c| c.ever_started) {
            "Running"
        } else {
            "Pending"
        };
        let mut statuses = Vec::new();
        for c in &self.containers {
            let image = c.spec.image.clone().unwrap_or_default();
            let mut s = json!({
                "name": c.spec.name, "image": image,
                "imageID": self.ctx.images.binary(&image).map(|p| format!("process://{}", p.display())).unwrap_or_default(),
                "ready": c.ready(), "started": c.running(), "restartCount": c.restart_count,
                "state": c.state, "lastState": c.last_state,
            });
            if let Some(pid) = c.pid {
                s["containerID"] = json!(format!("process://{pid}"));
            }
            statuses.push(s);
        }
        let conditions = vec![
            self.condition("Initialized", true),
            self.condition("Ready", all_ready),
            self.condition("ContainersReady", all_ready),
            self.condition("PodScheduled", true),
        ];
        let mut status = json!({
            "phase": phase,
            "conditions": conditions,
            "hostIP": "127.0.0.1",
            "startTime": self.start_time,
            "containerStatuses": statuses,
            "qosClass": "BestEffort",
        });
        if let Some(ip) = self.ip {
            status["podIP"] = json!(ip.to_string());
            status["podIPs"] = json!([{ "ip": ip.to_string() }]);
        }
        match &self.problem {
            Some((reason, message)) => {
                status["reason"] = json!(reason);
                status["message"] = json!(message);
            }
            None => {
                status["reason"] = Value::Null;
                status["message"] = Value::Null;
            }
        }
        status
    }

    /// Patches the status subresource when it changed.
    async fn report(&mut self) {
        let status = self.status();
        if self.last_status.as_ref() == Some(&status) {
            return;
        }
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &self.ns);
        match api
            .patch_status(
                &self.name,
                &PatchParams::default(),
                &Patch::Merge(json!({ "status": status })),
            )
            .await
        {
            Ok(_) => self.last_status = Some(status),
            Err(e) => tracing::warn!(pod = %self.key(), error = %e, "status update failed"),
        }
    }
}

/// The last 80 lines, at most 2048 bytes, of a container's log: what Kubernetes keeps as the
/// termination message of a failed container with `FallbackToLogsOnError`.
fn log_tail(path: &std::path::Path) -> Option<String> {
    let text = std::fs::read(path).ok()?;
    let start = text.len().saturating_sub(2048);
    let text = String::from_utf8_lossy(&text[start..]);
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(80)..].join("\n");
    (!tail.is_empty()).then_some(tail)
}
