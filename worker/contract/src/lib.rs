//! What Weir's processes agree on, spelled once: the worker (engine, `weir` CLI, REST server)
//! and the Kubernetes operator both depend on this crate, and neither spells a config key, REST
//! path or job state itself (a test scans the sources).
//!
//! - [`options`]: every configuration option with its type, default and description;
//! - [`config_file`]: reading a config file (flat or nested YAML) into keyed entries;
//! - [`duration`]: the one duration grammar, and the CRD's pattern for it;
//! - [`JobState`]: the job states, with Flink's names;
//! - [`rest`]: the REST API's paths and bodies; [`client`] (feature `client`): its client;
//! - [`layout`]: where checkpoints and savepoints live in storage;
//! - [`security`]: the REST and RPC tokens, and TLS files (rustls, feature `tls`);
//! - [`check`]: `weir check` (the pre-flight check) as the operator runs it.
//!
//! It stays a leaf: serde, serde_json, serde_yaml and thiserror, plus hyper for the client
//! and rustls (with `ring`) for TLS and the handshake's HMAC.

pub mod check;
pub mod config_file;
pub mod duration;
mod job_state;
pub mod layout;
pub mod options;
pub mod rest;
pub mod security;

#[cfg(feature = "client")]
pub mod client;

pub use job_state::{JobState, UnknownJobState};
