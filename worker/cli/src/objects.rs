//! `weir objects ls|cat|rm` (hidden): the objects of a checkpoint or savepoint store as the
//! engine sees them, through the same storage layer (`weir-storage`): a bucket on an
//! S3-compatible server or a directory. For scripts and tests, e.g. the e2e suite reading the
//! bucket of a cluster it cannot see as files (e2e/README.md); not a general S3 client.

use anyhow::{Result, bail};
use std::io::Write;
use weir_storage::{StorageOptions, open};

#[derive(clap::Subcommand)]
pub enum ObjectsCommand {
    /// Print the URI of every object below URI (recursively, sorted), one per line.
    Ls {
        /// A store or prefix: `s3://bucket/some/prefix`, `file:///dir` or `/dir`.
        uri: String,
        /// An `s3.*` configuration key, `key=value` (repeatable): s3.endpoint,
        /// s3.path-style-access, s3.region. Credentials come from the AWS environment.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
    /// Delete every object below URI and print how many were deleted.
    Rm {
        /// A store or prefix, as for `ls`.
        uri: String,
        /// An `s3.*` configuration key, `key=value` (repeatable), as for `ls`.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
    /// Write the bytes of the object at URI to stdout.
    Cat {
        /// An object: `s3://bucket/key` or a file path.
        uri: String,
        /// An `s3.*` configuration key, `key=value` (repeatable), as for `ls`.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
}

fn options(set: &[String]) -> Result<StorageOptions> {
    Ok(StorageOptions::from_config(crate::set_options(set)?)?)
}

/// The reader of stdout went away (`weir objects ls | head`): not an error of the command.
#[derive(Debug)]
struct PipeClosed;

impl std::fmt::Display for PipeClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stdout closed")
    }
}

impl std::error::Error for PipeClosed {}

/// A failed write to stdout, with a closed pipe told apart from other failures.
fn out_error(e: std::io::Error) -> anyhow::Error {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        PipeClosed.into()
    } else {
        anyhow::Error::new(e).context("cannot write stdout")
    }
}

/// Runs the command. When stdout's reader closes the pipe the output ends quietly with
/// success, as Unix tools do; failures of the store are errors as usual.
pub fn run(command: &ObjectsCommand) -> Result<()> {
    match write_output(command) {
        Err(e) if e.is::<PipeClosed>() => Ok(()),
        other => other,
    }
}

fn write_output(command: &ObjectsCommand) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    match command {
        ObjectsCommand::Ls { uri, set } => {
            let store = open(uri.trim_end_matches('/'), &options(set)?)?;
            for object in store.list("")? {
                writeln!(stdout, "{}", store.uri(&object.path)).map_err(out_error)?;
            }
        }
        ObjectsCommand::Rm { uri, set } => {
            let store = open(uri.trim_end_matches('/'), &options(set)?)?;
            let deleted = store.delete_prefix("")?;
            writeln!(stdout, "{deleted}").map_err(out_error)?;
        }
        ObjectsCommand::Cat { uri, set } => {
            // The store is the object's parent "directory", the path its last segment.
            let Some((parent, name)) = uri.trim_end_matches('/').rsplit_once('/') else {
                bail!("'{uri}' names no object: expected s3://bucket/key or a file path");
            };
            if name.is_empty() || parent.is_empty() || parent.ends_with(":/") {
                bail!("'{uri}' names no object: expected s3://bucket/key or a file path");
            }
            let store = open(parent, &options(set)?)?;
            let bytes = store.get(name)?;
            stdout.write_all(&bytes).map_err(out_error)?;
        }
    }
    stdout.flush().map_err(out_error)
}
