//! Probes: httpGet (plain HTTP/1.0 over TCP to the pod address), tcpSocket and exec, each
//! bounded by `timeoutSeconds`, plus the per-probe counters that turn results into
//! ready/alive according to `successThreshold`/`failureThreshold`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Schedule and counters of one probe of one container.
#[derive(Debug)]
pub struct ProbeState {
    pub probe: Probe,
    pub next: Instant,
    successes: i32,
    failures: i32,
    /// Last verdict after applying the thresholds.
    pub ok: bool,
}

impl ProbeState {
    pub fn new(probe: Probe, started: Instant, initially_ok: bool) -> Self {
        let delay = probe.initial_delay_seconds.unwrap_or(0).max(0) as u64;
        Self {
            probe,
            next: started + Duration::from_secs(delay),
            successes: 0,
            failures: 0,
            ok: initially_ok,
        }
    }

    pub fn period(&self) -> Duration {
        Duration::from_secs(self.probe.period_seconds.unwrap_or(10).max(1) as u64)
    }

    /// Records one result; returns the verdict.
    pub fn record(&mut self, success: bool) -> bool {
        self.next = Instant::now() + self.period();
        if success {
            self.failures = 0;
            self.successes += 1;
            if self.successes >= self.probe.success_threshold.unwrap_or(1).max(1) {
                self.ok = true;
            }
        } else {
            self.successes = 0;
            self.failures += 1;
            if self.failures >= self.probe.failure_threshold.unwrap_or(3).max(1) {
                self.ok = false;
            }
        }
        self.ok
    }
}

fn port(c: &Container, p: &IntOrString) -> Option<u16> {
    match p {
        IntOrString::Int(n) => u16::try_from(*n).ok(),
        IntOrString::String(name) => c
            .ports
            .iter()
            .flatten()
            .find(|cp| cp.name.as_deref() == Some(name))
            .and_then(|cp| u16::try_from(cp.container_port).ok())
            .or_else(|| name.parse().ok()),
    }
}

/// Runs `probe` once against the container; `Err` carries why it failed.
pub async fn run(
    probe: &Probe,
    c: &Container,
    pod_ip: &str,
    env: &BTreeMap<String, String>,
    cwd: &Path,
    rewrite: impl Fn(&str) -> String,
) -> Result<(), String> {
    let timeout = Duration::from_secs(probe.timeout_seconds.unwrap_or(1).max(1) as u64);
    let attempt = async {
        if let Some(h) = &probe.http_get {
            let port = port(c, &h.port).ok_or_else(|| format!("unknown port {:?}", h.port))?;
            let host = h.host.clone().unwrap_or_else(|| pod_ip.to_owned());
            if h.scheme
                .as_deref()
                .is_some_and(|s| s.eq_ignore_ascii_case("https"))
            {
                return Err("HTTPS probes are not supported by weir-kubelet".into());
            }
            let mut s = TcpStream::connect((host.as_str(), port))
                .await
                .map_err(|e| e.to_string())?;
            let path = h.path.as_deref().unwrap_or("/");
            let mut req = format!(
                "GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\nUser-Agent: kube-probe/1.20\r\n"
            );
            for hh in h.http_headers.iter().flatten() {
                req.push_str(&format!("{}: {}\r\n", hh.name, hh.value));
            }
            req.push_str("\r\n");
            s.write_all(req.as_bytes())
                .await
                .map_err(|e| e.to_string())?;
            let mut buf = [0u8; 64];
            let mut n = 0;
            while n < 13 {
                let r = s.read(&mut buf[n..]).await.map_err(|e| e.to_string())?;
                if r == 0 {
                    break;
                }
                n += r;
            }
            let line = String::from_utf8_lossy(&buf[..n]);
            let code: u16 = line
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.parse().ok())
                .ok_or_else(|| format!("no HTTP status line in {line:?}"))?;
            if (200..400).contains(&code) {
                Ok(())
            } else {
                Err(format!("HTTP probe failed with statuscode: {code}"))
            }
        } else if let Some(t) = &probe.tcp_socket {
            let port = port(c, &t.port).ok_or_else(|| format!("unknown port {:?}", t.port))?;
            let host = t.host.clone().unwrap_or_else(|| pod_ip.to_owned());
            TcpStream::connect((host.as_str(), port))
                .await
                .map(drop)
                .map_err(|e| e.to_string())
        } else if let Some(e) = &probe.exec {
            let cmd: Vec<String> = e.command.iter().flatten().map(|a| rewrite(a)).collect();
            let (first, rest) = cmd.split_first().ok_or("exec probe without command")?;
            let status = tokio::process::Command::new(first)
                .args(rest)
                .env_clear()
                .envs(env)
                .current_dir(cwd)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .kill_on_drop(true)
                .status()
                .await
                .map_err(|e| format!("exec {first}: {e}"))?;
            if status.success() {
                Ok(())
            } else {
                Err(format!("exec probe exited with {status}"))
            }
        } else {
            Ok(())
        }
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(r) => r,
        Err(_) => Err(format!("probe timed out after {}s", timeout.as_secs())),
    }
}
