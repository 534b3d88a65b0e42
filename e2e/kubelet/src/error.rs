//! Errors of the kubelet, one enum: each names the offending value and what to do.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("--image {0:?} is not NAME=PATH (e.g. --image weir-worker=/usr/local/bin/weir)")]
    ImageFlag(String),
    #[error("--pod-ip-prefix {0:?} is not three octets starting with 127 (e.g. 127.0.0)")]
    IpPrefix(String),
    #[error("all pod addresses {0}.2-254 are in use; delete pods or use another --pod-ip-prefix")]
    IpsExhausted(String),
    #[error(
        "hosts file {path} is not writable ({source}); run the kubelet as root or pass --hosts-file"
    )]
    HostsNotWritable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Kube(#[from] kube::Error),
    /// A pod references something that is missing (ConfigMap, Secret, key); the pod waits.
    #[error("{0}")]
    Config(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub fn io(what: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { what, path, source }
}
