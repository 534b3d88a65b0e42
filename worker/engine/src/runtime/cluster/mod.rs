//! The cluster runtime: one JobManager and N TaskManagers as separate processes running one
//! job (Flink's application mode).
//!
//! The JobManager runs the same supervisor and checkpoint coordinator as `weir run`; only
//! where tasks run differs. TaskManagers register over the control connection (typed
//! messages, postcard-encoded, length-framed over TCP) offering slots; the JobManager waits
//! until the job's slots are available, gives each TaskManager its slots (slot `i` runs
//! subtask `i` of every task, as Flink's slot sharing does) and mirrors checkpoint triggers,
//! completions and aborts to them. Each TaskManager builds the same job graph from the job
//! spec, runs its subtasks, exchanges records with the others over the network exchange
//! ([`super::net`]), writes its tasks' checkpoint state to storage itself and acknowledges
//! with a small summary. A TaskManager that is lost (connection closed, heartbeat timeout)
//! fails the attempt; the supervisor restarts the job from its latest completed checkpoint
//! once enough slots are registered again.
//!
//! Every control connection first passes the connection layer ([`super::secure`]: TLS with
//! certificates on both sides when `security.ssl.internal.enabled`), then opens with a
//! handshake ([`Handshake`]) before any message: with
//! `security.internal.token-file` set, the TaskManager and the JobManager each prove they
//! hold the shared secret (HMAC-SHA256 over both sides' random challenges; the secret never
//! crosses the wire), so a process without it can neither register as a TaskManager nor pose
//! as the JobManager and send commands.
//!
//! Files: `protocol` (the messages, the handshake, a connection's sending end), `jobmanager`
//! (registration, deploying attempts, mirroring checkpoints) and `taskmanager` (running the
//! slots' subtasks and reporting); this file holds what both sides are configured with.

mod jobmanager;
mod protocol;
mod taskmanager;

pub use jobmanager::TaskManagerInfo;
pub(crate) use jobmanager::{AttemptRequest, Deployer, spawn_jobmanager};
pub use taskmanager::run_taskmanager;

use super::graph::{JobGraph, PlanOptions};
use super::memory::MemoryConfig;
use super::secure::RpcTls;
use crate::config::{CheckpointConfig, Config};
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use weir_contract::options::{self as opt, ConfigOption};
use weir_contract::security::Token;

/// The job a cluster runs, as the JobManager was told (`weir jobmanager <job> [args]`):
/// TaskManagers build the same graph from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSpec {
    /// Registered job name (or SQL file, once SQL jobs run on clusters).
    pub name: String,
    /// Job arguments, `key=value`.
    pub args: Vec<String>,
    /// The JobManager's configuration (every key set explicitly).
    pub config: Vec<(String, String)>,
}

/// A job graph with everything needed to run it, detached from the (single-threaded)
/// environment that built it.
pub struct PreparedJob {
    pub(crate) graph: JobGraph,
    pub(crate) opts: PlanOptions,
    pub(crate) batch_size: usize,
    pub(crate) checkpointing: CheckpointConfig,
}

impl std::fmt::Debug for PreparedJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedJob")
            .field("operators", &self.graph.nodes.len())
            .finish()
    }
}

/// Addresses and timeouts of the cluster (`jobmanager.*`, `taskmanager.*`, `heartbeat.*`).
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// `jobmanager.rpc.address`: where TaskManagers reach the JobManager.
    pub rpc_address: String,
    /// `jobmanager.rpc.port`.
    pub rpc_port: u16,
    /// `jobmanager.bind-host`: the address the JobManager's RPC port binds to.
    pub rpc_bind_host: String,
    /// `taskmanager.numberOfTaskSlots`.
    pub slots: usize,
    /// `taskmanager.host`: the address a TaskManager's data port binds to and advertises.
    pub taskmanager_host: String,
    /// `taskmanager.data.port` (0: any free port).
    pub data_port: u16,
    /// `heartbeat.interval`.
    pub heartbeat_interval: Duration,
    /// `heartbeat.timeout`.
    pub heartbeat_timeout: Duration,
    /// The memory keys: a TaskManager's budget.
    pub memory: MemoryConfig,
    /// `security.internal.token-file`'s secret, which both ends of the RPC must hold.
    pub rpc_token: Option<Token>,
    /// `security.ssl.internal.*`: TLS with certificates on both ends of the RPC.
    pub rpc_tls: Option<RpcTls>,
}

impl ClusterConfig {
    /// Reads the cluster keys; `pod_ip` (the `POD_IP` environment variable) is the default
    /// bind address of both ports.
    pub fn from_config(c: &Config, pod_ip: Option<&str>) -> Result<Self> {
        let port = |o: ConfigOption| -> Result<u16> {
            let (key, v) = (o.key, c.get(o));
            v.parse().map_err(|_| {
                Error::Config(format!(
                    "'{key}' must be a port number (0-65535), got '{v}'"
                ))
            })
        };
        let or = |o: ConfigOption, fallback: &str| -> String {
            match c.get(o) {
                "" => pod_ip.unwrap_or(fallback).to_string(),
                v => v.to_string(),
            }
        };
        let heartbeat_interval = c.duration(opt::HEARTBEAT_INTERVAL)?;
        let heartbeat_timeout = c.duration(opt::HEARTBEAT_TIMEOUT)?;
        if heartbeat_timeout <= heartbeat_interval {
            return Err(Error::Config(format!(
                "'{}' ({heartbeat_timeout:?}) must be longer than '{}' ({heartbeat_interval:?})",
                opt::HEARTBEAT_TIMEOUT.key,
                opt::HEARTBEAT_INTERVAL.key
            )));
        }
        Ok(ClusterConfig {
            rpc_address: c.get(opt::RPC_ADDRESS).to_string(),
            rpc_port: port(opt::RPC_PORT)?,
            // Off Kubernetes only this host reaches the RPC port unless told otherwise.
            rpc_bind_host: or(opt::RPC_BIND_HOST, "127.0.0.1"),
            slots: c.positive(opt::TASK_SLOTS)?,
            taskmanager_host: or(opt::TASKMANAGER_HOST, "127.0.0.1"),
            data_port: port(opt::DATA_PORT)?,
            heartbeat_interval,
            heartbeat_timeout,
            memory: c.memory()?,
            rpc_token: weir_contract::security::internal_token(|o| c.get(o).to_string())
                .map_err(|e| Error::Config(e.to_string()))?,
            rpc_tls: weir_contract::security::internal_tls(|o| c.get(o).to_string())
                .map_err(|e| Error::Config(e.to_string()))?
                .map(|(server, client)| RpcTls { server, client }),
        })
    }
}
