//! The storage crate's error type. Every variant names the object or setting concerned, so a
//! failed checkpoint can be logged with one line that says where and why.

use std::path::PathBuf;
use std::time::Duration;

/// A boxed cause, kept as the `#[source]` of an error.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Result alias used throughout the crate.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// Errors raised by [`crate::open`] and by every [`crate::ObjectStore`] operation.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The storage URI is not one this crate understands.
    #[error(
        "unsupported storage URI '{uri}': {reason}; \
         expected file:///absolute/dir, /absolute/dir or s3://bucket[/prefix]"
    )]
    InvalidUri {
        /// The URI as given.
        uri: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An object path (key) is malformed.
    #[error("invalid object path '{path}': {reason}")]
    InvalidPath {
        /// The path as given.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A storage setting has a value that cannot be used.
    #[error("invalid value '{value}' for '{key}': {reason}")]
    InvalidOption {
        /// The configuration key, e.g. `s3.path-style-access`.
        key: String,
        /// The offending value.
        value: String,
        /// What values are accepted.
        reason: &'static str,
    },
    /// The object does not exist.
    #[error("object '{location}' does not exist")]
    NotFound {
        /// Full location of the missing object (a path or an `s3://` URI).
        location: String,
    },
    /// A local file operation failed.
    #[error("cannot {action} '{}': {source}", path.display())]
    Io {
        /// What was being attempted, e.g. "write".
        action: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// An S3 request failed permanently, or transiently on every attempt the retry policy
    /// allowed. Boxed: it is the largest variant and errors travel through every `Result`.
    #[error(transparent)]
    S3(Box<S3Error>),
    /// The private runtime that drives the S3 client could not be started.
    #[error("cannot start the S3 client's runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

/// The details of a failed S3 operation: where, what, how often it was tried and why it failed.
#[derive(Debug, thiserror::Error)]
#[error(
    "S3 {operation} of s3://{bucket}/{key} at {endpoint} failed after {attempts} attempt(s) \
     in {elapsed:.1?}: {cause}"
)]
pub struct S3Error {
    /// The S3 API call, e.g. `PutObject`.
    pub operation: &'static str,
    /// The endpoint override, or `AWS S3 (<region>)` when talking to AWS's own endpoint.
    pub endpoint: String,
    /// The bucket.
    pub bucket: String,
    /// The full object key (or key prefix for listings).
    pub key: String,
    /// How many attempts were made.
    pub attempts: u32,
    /// Time from the first attempt until giving up.
    pub elapsed: Duration,
    /// One-line summary of the last failure, e.g. `connection failed: Connection refused`.
    pub cause: String,
    /// The last failure as reported by the SDK.
    #[source]
    pub source: BoxError,
}

impl From<S3Error> for StorageError {
    fn from(error: S3Error) -> Self {
        StorageError::S3(Box::new(error))
    }
}

impl StorageError {
    /// Whether the error means the object does not exist (as opposed to a failure to reach it).
    pub fn is_not_found(&self) -> bool {
        matches!(self, StorageError::NotFound { .. })
    }

    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        StorageError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
