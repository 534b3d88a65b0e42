//! Settings for opening a store: the S3 connection (endpoint, region, path-style), retry and
//! timeout bounds, and multipart sizes. Independent of the engine's configuration type: the
//! engine hands over its key/value pairs and [`StorageOptions::from_config`] picks out the
//! `s3.*` keys it knows (their names, defaults and descriptions are the contract's,
//! `weir_contract::options`).

use std::time::Duration;

use crate::error::{Result, StorageError};

use weir_contract::options::{S3_ENDPOINT, S3_PATH_STYLE_ACCESS, S3_REGION};

/// Default multipart part size, and the size above which uploads go multipart: 8 MiB.
pub const DEFAULT_PART_SIZE: usize = 8 * 1024 * 1024;
/// The smallest part size S3 accepts for all parts but the last: 5 MiB.
pub const MIN_PART_SIZE: usize = 5 * 1024 * 1024;

/// How to open a store. `Default` is right for `file://` and for AWS S3 with the standard
/// credential chain.
///
/// ```
/// use std::collections::BTreeMap;
/// use weir_storage::StorageOptions;
///
/// let config = BTreeMap::from([
///     ("s3.endpoint".to_string(), "http://127.0.0.1:9000".to_string()),
///     ("s3.path-style-access".to_string(), "true".to_string()),
///     ("parallelism.default".to_string(), "4".to_string()), // not ours: ignored
/// ]);
/// let options = StorageOptions::from_config(&config)?;
/// assert_eq!(options.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
/// assert!(options.path_style);
/// # Ok::<(), weir_storage::StorageError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageOptions {
    /// S3 endpoint override (`s3.endpoint`); `None` uses AWS's endpoint for the region.
    pub endpoint: Option<String>,
    /// S3 region (`s3.region`); `None` uses the AWS region chain, or `us-east-1` when an
    /// endpoint is set.
    pub region: Option<String>,
    /// Path-style bucket addressing (`s3.path-style-access`).
    pub path_style: bool,
    /// Retry bounds for S3 requests.
    pub retry: RetryPolicy,
    /// Time allowed to open a TCP/TLS connection to S3.
    pub connect_timeout: Duration,
    /// Time allowed for one S3 request attempt, upload or download of its body included.
    pub attempt_timeout: Duration,
    /// Objects larger than this are uploaded in parts.
    pub multipart_threshold: usize,
    /// Size of each multipart part except the last; at least [`MIN_PART_SIZE`] (5 MiB), as S3
    /// requires.
    pub multipart_part_size: usize,
    /// Explicit credentials, for a process that acts for several principals (the operator
    /// uses each job's Secret); `None` uses the standard AWS credential chain.
    pub credentials: Option<StaticCredentials>,
}

/// An access key pair. `Debug` never prints the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct StaticCredentials {
    /// `AWS_ACCESS_KEY_ID`.
    pub access_key_id: String,
    /// `AWS_SECRET_ACCESS_KEY`.
    pub secret_access_key: String,
}

impl std::fmt::Debug for StaticCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticCredentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

impl Default for StorageOptions {
    fn default() -> Self {
        StorageOptions {
            endpoint: None,
            region: None,
            path_style: false,
            retry: RetryPolicy::default(),
            connect_timeout: Duration::from_secs(2),
            attempt_timeout: Duration::from_secs(30),
            multipart_threshold: DEFAULT_PART_SIZE,
            multipart_part_size: DEFAULT_PART_SIZE,
            credentials: None,
        }
    }
}

impl StorageOptions {
    /// Reads the `s3.*` keys (`weir_contract::options::S3_*`) from configuration key/value pairs, e.g. a
    /// `&BTreeMap<String, String>`. Other keys are ignored (the engine validates unknown keys);
    /// empty values mean "not set". Fails on a malformed value, naming key and value.
    pub fn from_config<I, K, V>(config: I) -> Result<Self>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut options = StorageOptions::default();
        for (key, value) in config {
            let (key, value) = (key.as_ref(), value.as_ref().trim());
            match key {
                k if k == S3_ENDPOINT.key && !value.is_empty() => {
                    if !(value.starts_with("http://") || value.starts_with("https://")) {
                        return Err(invalid(key, value, "expected an http:// or https:// URL"));
                    }
                    options.endpoint = Some(value.trim_end_matches('/').to_owned());
                }
                k if k == S3_REGION.key && !value.is_empty() => {
                    options.region = Some(value.to_owned())
                }
                k if k == S3_PATH_STYLE_ACCESS.key => {
                    options.path_style = match value.to_ascii_lowercase().as_str() {
                        "true" => true,
                        "false" | "" => false,
                        _ => return Err(invalid(key, value, "expected true or false")),
                    }
                }
                _ => {}
            }
        }
        Ok(options)
    }
}

fn invalid(key: &str, value: &str, reason: &'static str) -> StorageError {
    StorageError::InvalidOption {
        key: key.to_owned(),
        value: value.to_owned(),
        reason,
    }
}

/// Bounds on retrying transient S3 failures (5xx, throttling, timeouts, connection errors).
/// Delays grow exponentially from `initial_backoff` up to `max_backoff`, each randomised
/// between half and all of its nominal value so that many tasks retrying together spread out.
///
/// An operation gives up after `max_attempts`, or when the next attempt would start later than
/// `budget` after the first one, whichever comes first. Against a dead endpoint (connection
/// refused, or no answer within the connect timeout) an operation therefore fails within
/// roughly `max_attempts × connect_timeout + budget`-capped backoff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per request, the first included (at least 1).
    pub max_attempts: u32,
    /// Nominal delay before the first retry.
    pub initial_backoff: Duration,
    /// Cap on the nominal delay between attempts.
    pub max_backoff: Duration,
    /// No new attempt starts later than this after the first one.
    pub budget: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(2),
            budget: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// The delay to wait after failed attempt number `attempt` (1-based), jittered with
    /// `random` (any `u64`; uniform randomness gives uniform jitter).
    pub(crate) fn backoff(&self, attempt: u32, random: u64) -> Duration {
        let exponent = attempt.saturating_sub(1).min(20);
        let nominal = self
            .initial_backoff
            .saturating_mul(1u32 << exponent)
            .min(self.max_backoff);
        let half = nominal / 2;
        let nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
        let jitter = if nanos == 0 { 0 } else { random % (nanos + 1) };
        half + Duration::from_nanos(jitter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn config_keys_map_onto_options_and_other_keys_are_ignored() {
        let config = BTreeMap::from([
            ("s3.endpoint", "http://localhost:9000/"),
            ("s3.region", "eu-west-1"),
            ("s3.path-style-access", "TRUE"),
            ("state.checkpoints.dir", "s3://b/c"),
        ]);
        let options = StorageOptions::from_config(&config).unwrap();
        assert_eq!(options.endpoint.as_deref(), Some("http://localhost:9000"));
        assert_eq!(options.region.as_deref(), Some("eu-west-1"));
        assert!(options.path_style);
    }

    #[test]
    fn malformed_values_are_rejected_naming_key_and_value() {
        let err = StorageOptions::from_config([("s3.path-style-access", "yes")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid value 'yes' for 's3.path-style-access': expected true or false"
        );
        let err = StorageOptions::from_config([("s3.endpoint", "localhost:9000")]).unwrap_err();
        assert!(
            err.to_string()
                .contains("'localhost:9000' for 's3.endpoint'"),
            "{err}"
        );
    }

    #[test]
    fn backoff_grows_exponentially_is_capped_and_stays_within_jitter_bounds() {
        let policy = RetryPolicy {
            max_attempts: 10,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(1000),
            budget: Duration::from_secs(10),
        };
        for (attempt, nominal_ms) in [
            (1, 100),
            (2, 200),
            (3, 400),
            (4, 800),
            (5, 1000),
            (30, 1000),
        ] {
            let nominal = Duration::from_millis(nominal_ms);
            for random in [0, 1, 12_345_678, u64::MAX] {
                let delay = policy.backoff(attempt, random);
                assert!(
                    delay >= nominal / 2 && delay <= nominal,
                    "{attempt}: {delay:?}"
                );
            }
        }
    }
}
