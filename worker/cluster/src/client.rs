//! The blocking REST client behind `weir list|savepoint|stop|cancel`: the contract's client
//! ([`weir_contract::client`], which the operator uses too) on a current-thread runtime, one
//! request at a time, plus waiting for a savepoint.

use hyper::{Method, StatusCode};
use serde_json::Value;
use std::future::Future;
use std::time::{Duration, Instant};
use weir_contract::client::DEFAULT_TIMEOUT;
use weir_contract::rest::{
    JobOverview, SavepointOutcome, SavepointTriggerRequest, StopWithSavepointRequest,
};

/// Why a REST call or a wait for a savepoint failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The call failed (unreachable, timeout, error status, unexpected answer).
    #[error(transparent)]
    Rest(#[from] weir_contract::client::ClientError),
    /// The savepoint failed; the job keeps running.
    #[error("savepoint {trigger} of job {job} failed: {cause}")]
    SavepointFailed {
        job: String,
        trigger: String,
        cause: String,
    },
    /// The savepoint did not complete in time.
    #[error("savepoint {trigger} of job {job} did not complete within {timeout:?}")]
    SavepointTimeout {
        job: String,
        trigger: String,
        timeout: Duration,
    },
    /// The runtime could not be created.
    #[error("cannot start the HTTP client's runtime")]
    Runtime(#[source] std::io::Error),
}

/// A savepoint's progress as `GET /jobs/:jobid/savepoints/:triggerid` reports it.
pub type SavepointStatus = SavepointOutcome;

/// A blocking REST client for one server.
pub struct RestClient {
    runtime: tokio::runtime::Runtime,
    rest: weir_contract::client::RestClient,
}

impl std::fmt::Debug for RestClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestClient")
            .field("base", &self.rest.base())
            .finish()
    }
}

impl RestClient {
    /// A client for the server at `base` (`http://host:port`).
    pub fn new(base: &str) -> Result<RestClient, ClientError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(ClientError::Runtime)?;
        let rest = {
            let _guard = runtime.enter();
            weir_contract::client::RestClient::new(base).with_timeout(DEFAULT_TIMEOUT)
        };
        Ok(RestClient { runtime, rest })
    }

    /// The same client sending `security`'s token and trusting its CA.
    pub fn with_security(
        mut self,
        security: &weir_contract::client::ClientSecurity,
    ) -> Result<RestClient, ClientError> {
        let rest = {
            let _guard = self.runtime.enter();
            self.rest.clone().with_security(security)?
        };
        self.rest = rest;
        Ok(self)
    }

    fn block<T>(
        &self,
        call: impl Future<Output = Result<T, weir_contract::client::ClientError>>,
    ) -> Result<T, ClientError> {
        Ok(self.runtime.block_on(call)?)
    }

    /// Sends one request; returns the status and the JSON body (`Null` when empty).
    pub fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Value), ClientError> {
        self.block(self.rest.call(method, path, body))
    }

    /// `GET /jobs/overview`: the jobs with id, name, state and start time.
    pub fn jobs_overview(&self) -> Result<Vec<JobOverview>, ClientError> {
        Ok(self.block(self.rest.jobs_overview())?.jobs)
    }

    /// `POST /jobs/:jobid/savepoints`; returns the trigger id.
    pub fn trigger_savepoint(
        &self,
        job: &str,
        target: Option<&str>,
        cancel_job: bool,
    ) -> Result<String, ClientError> {
        let request = SavepointTriggerRequest {
            target_directory: target.map(str::to_string),
            cancel_job,
            trigger_id: None,
        };
        self.block(self.rest.trigger_savepoint(job, &request))
    }

    /// `POST /jobs/:jobid/stop` (stop-with-savepoint); returns the trigger id.
    pub fn stop(
        &self,
        job: &str,
        target: Option<&str>,
        drain: bool,
    ) -> Result<String, ClientError> {
        let request = StopWithSavepointRequest {
            target_directory: target.map(str::to_string),
            drain,
            trigger_id: None,
        };
        self.block(self.rest.stop(job, &request))
    }

    /// `GET /jobs/:jobid/savepoints/:triggerid`.
    pub fn savepoint_status(
        &self,
        job: &str,
        trigger: &str,
    ) -> Result<SavepointStatus, ClientError> {
        Ok(self
            .block(self.rest.savepoint_status(job, trigger))?
            .outcome())
    }

    /// Polls a savepoint until it completes; returns its location.
    pub fn wait_for_savepoint(
        &self,
        job: &str,
        trigger: &str,
        timeout: Duration,
    ) -> Result<String, ClientError> {
        let start = Instant::now();
        loop {
            match self.savepoint_status(job, trigger)? {
                SavepointOutcome::Completed(location) => return Ok(location),
                SavepointOutcome::Failed(cause) => {
                    return Err(ClientError::SavepointFailed {
                        job: job.into(),
                        trigger: trigger.into(),
                        cause,
                    });
                }
                SavepointOutcome::InProgress if start.elapsed() > timeout => {
                    return Err(ClientError::SavepointTimeout {
                        job: job.into(),
                        trigger: trigger.into(),
                        timeout,
                    });
                }
                SavepointOutcome::InProgress => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// `PATCH /jobs/:jobid?mode=cancel`.
    pub fn cancel(&self, job: &str) -> Result<(), ClientError> {
        self.block(self.rest.cancel(job))
    }
}
