//! Helpers shared by the integration tests: loading StreamJob fixtures.

#![allow(dead_code)]

use weir_operator::crd::StreamJob;

/// Parses `tests/fixtures/<name>`.
pub fn fixture(name: &str) -> StreamJob {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Parses a StreamJob from inline YAML.
pub fn job(yaml: &str) -> StreamJob {
    serde_yaml::from_str(yaml).unwrap_or_else(|e| panic!("inline fixture: {e}"))
}
