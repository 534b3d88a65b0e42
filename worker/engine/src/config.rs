//! Job configuration, layered: built-in defaults, then a config file (`key: value` lines, as
//! in Flink's `config.yaml` flat form), then the `WEIR_PROPERTIES` environment variable (same
//! format), then explicit overrides. Key names follow Flink wherever the concept is the
//! same. An unknown key is an error that names the closest valid key.

use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::path::Path;

/// What a source does with a record it cannot decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DecodeErrorPolicy {
    /// Fail the job, naming file, line and reason (the default).
    #[default]
    Fail,
    /// Skip the record, count it in the `skipped` metric and log its location.
    Skip,
}

/// Every key Weir understands, with its default and a one-line description.
pub const KEYS: &[(&str, &str, &str)] = &[
    (
        "parallelism.default",
        "1",
        "parallelism of operators that do not set their own",
    ),
    (
        "pipeline.max-parallelism",
        "128",
        "number of key groups; the upper bound for rescaling keyed state",
    ),
    (
        "pipeline.operator-chaining.enabled",
        "true",
        "fuse forward-connected operators into one task",
    ),
    (
        "pipeline.batch-size",
        "1024",
        "records a source emits per batch",
    ),
    (
        "pipeline.channel-capacity",
        "8",
        "batches buffered per channel between tasks (bounds memory, drives backpressure)",
    ),
    (
        "pipeline.decode-error-policy",
        "fail",
        "what sources do with undecodable records: fail | skip",
    ),
];

/// Resolved configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    values: BTreeMap<String, String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            values: KEYS
                .iter()
                .map(|(k, v, _)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }
}

/// Edit distance, to suggest the intended key.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            cur.push(
                (prev[j] + usize::from(ca != *cb))
                    .min(prev[j + 1] + 1)
                    .min(cur[j] + 1),
            );
        }
        prev = cur;
    }
    prev[b.len()]
}

impl Config {
    /// Defaults, then the file (if any), then `WEIR_PROPERTIES`.
    pub fn load(file: Option<&Path>) -> Result<Self> {
        let mut c = Config::default();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| Error::io("cannot read config file", path, e))?;
            c.merge_text(&text, &path.display().to_string())?;
        }
        if let Ok(text) = std::env::var("WEIR_PROPERTIES") {
            c.merge_text(&text, "WEIR_PROPERTIES")?;
        }
        Ok(c)
    }

    /// Merges `key: value` lines; `#` starts a comment.
    pub fn merge_text(&mut self, text: &str, origin: &str) -> Result<()> {
        for (n, raw) in text.lines().enumerate() {
            let line = raw.split(" #").next().unwrap_or("").trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (k, v) = line.split_once(':').ok_or_else(|| {
                Error::Config(format!(
                    "{origin}:{}: expected `key: value`, found `{line}`",
                    n + 1
                ))
            })?;
            self.set(k.trim(), v.trim().trim_matches('"').trim_matches('\''))
                .map_err(|e| {
                    Error::Config(format!(
                        "{origin}:{}: {}",
                        n + 1,
                        e.to_string().trim_start_matches("configuration: ")
                    ))
                })?;
        }
        Ok(())
    }

    /// Sets one key, validating name and value.
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        if !KEYS.iter().any(|(k, _, _)| *k == key) {
            let nearest = KEYS
                .iter()
                .min_by_key(|(k, _, _)| distance(k, key))
                .map(|(k, _, _)| *k)
                .unwrap_or("");
            return Err(Error::Config(format!(
                "unknown key '{key}'; did you mean '{nearest}'?"
            )));
        }
        let old = self.values.insert(key.to_string(), value.to_string());
        if let Err(e) = self.validate() {
            match old {
                Some(o) => self.values.insert(key.to_string(), o),
                None => self.values.remove(key),
            };
            return Err(e);
        }
        Ok(())
    }

    fn get(&self, key: &str) -> &str {
        self.values
            .get(key)
            .map(String::as_str)
            .expect("every key has a default")
    }

    fn positive(&self, key: &str) -> Result<usize> {
        let v = self.get(key);
        match v.parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(Error::Config(format!(
                "'{key}' must be a positive integer, got '{v}'"
            ))),
        }
    }

    fn validate(&self) -> Result<()> {
        for k in [
            "parallelism.default",
            "pipeline.max-parallelism",
            "pipeline.batch-size",
            "pipeline.channel-capacity",
        ] {
            self.positive(k)?;
        }
        self.chaining()?;
        self.decode_error_policy()?;
        if self.parallelism()? > self.max_parallelism()? {
            return Err(Error::Config(format!(
                "parallelism.default ({}) exceeds pipeline.max-parallelism ({})",
                self.get("parallelism.default"),
                self.get("pipeline.max-parallelism")
            )));
        }
        Ok(())
    }

    /// `parallelism.default`.
    pub fn parallelism(&self) -> Result<usize> {
        self.positive("parallelism.default")
    }
    /// `pipeline.max-parallelism`.
    pub fn max_parallelism(&self) -> Result<usize> {
        self.positive("pipeline.max-parallelism")
    }
    /// `pipeline.batch-size`.
    pub fn batch_size(&self) -> Result<usize> {
        self.positive("pipeline.batch-size")
    }
    /// `pipeline.channel-capacity`.
    pub fn channel_capacity(&self) -> Result<usize> {
        self.positive("pipeline.channel-capacity")
    }
    /// `pipeline.operator-chaining.enabled`.
    pub fn chaining(&self) -> Result<bool> {
        match self.get("pipeline.operator-chaining.enabled") {
            "true" => Ok(true),
            "false" => Ok(false),
            v => Err(Error::Config(format!(
                "'pipeline.operator-chaining.enabled' must be true or false, got '{v}'"
            ))),
        }
    }
    /// `pipeline.decode-error-policy`.
    pub fn decode_error_policy(&self) -> Result<DecodeErrorPolicy> {
        match self.get("pipeline.decode-error-policy") {
            "fail" => Ok(DecodeErrorPolicy::Fail),
            "skip" => Ok(DecodeErrorPolicy::Skip),
            v => Err(Error::Config(format!(
                "'pipeline.decode-error-policy' must be fail or skip, got '{v}'"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_key_suggests_the_nearest_valid_key() {
        let err = Config::default()
            .set("paralelism.default", "2")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown key 'paralelism.default'"), "{err}");
        assert!(err.contains("did you mean 'parallelism.default'"), "{err}");
    }

    #[test]
    fn file_values_override_defaults_and_bad_values_name_the_line() {
        let mut c = Config::default();
        c.merge_text(
            "# comment\nparallelism.default: 4\npipeline.decode-error-policy: skip\n",
            "f.yaml",
        )
        .unwrap();
        assert_eq!(c.parallelism().unwrap(), 4);
        assert_eq!(c.decode_error_policy().unwrap(), DecodeErrorPolicy::Skip);
        let err = c
            .merge_text("\npipeline.batch-size: zero\n", "f.yaml")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("f.yaml:2")
                && err.contains("'pipeline.batch-size' must be a positive integer, got 'zero'"),
            "{err}"
        );
        assert_eq!(
            c.batch_size().unwrap(),
            1024,
            "a rejected value leaves the old one"
        );
    }
}
