//! Weir's cluster layer: the JobManager REST API, Flink-compatible in paths and JSON field
//! names (jobs, checkpoints, savepoint and stop-with-savepoint triggers, cancel; the paths and
//! bodies are the contract's, `weir_contract::rest`), the
//! Prometheus exposition of job metrics at `/metrics`, the web dashboard at `/` (its assets
//! built into the binary, `dashboard/`), and a small blocking client for the
//! `weir list|savepoint|stop|cancel` commands. It sits above the engine: it observes and
//! controls jobs only through [`weir_engine::runtime::JobClient`].
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use weir_engine::api::StreamExecutionEnvironment;
//! let env = StreamExecutionEnvironment::new();
//! // ... build the job ...
//! let handle = env.execute_async("my-job")?;
//! let server = weir_cluster::RestServer::start("127.0.0.1", 8081)?;
//! server.add_job(handle.client());
//! println!("REST API at {}", server.url());
//! handle.wait()?;
//! # Ok(()) }
//! ```

mod checkpoints;
pub mod client;
mod dashboard;
pub mod prometheus;
mod server;
mod vertices;

pub use client::{ClientError, RestClient};
pub use server::{JobDescription, RestServer, ServerError, ServerLimits, job_state};
