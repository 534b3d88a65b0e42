//! Jobs compiled into the `weir` binary, runnable by name with `weir run <name>`.

mod bench_tumbling;
mod count_per_user;
mod slow_sink;
mod user_metrics;

use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;
use weir_engine::api::StreamExecutionEnvironment;

/// Arguments given with `--arg key=value`.
#[derive(Debug, Default)]
pub struct JobArgs {
    values: BTreeMap<String, String>,
}

impl JobArgs {
    pub fn parse(job: &JobDef, pairs: &[String]) -> Result<Self> {
        let mut values = BTreeMap::new();
        for p in pairs {
            let (k, v) = p
                .split_once('=')
                .with_context(|| format!("--arg '{p}' must look like key=value"))?;
            if !job.args.iter().any(|(name, _, _)| *name == k) {
                let known: Vec<&str> = job.args.iter().map(|(n, _, _)| *n).collect();
                bail!(
                    "job '{}' has no argument '{k}'; its arguments are: {}",
                    job.name,
                    known.join(", ")
                );
            }
            values.insert(k.to_string(), v.to_string());
        }
        for (name, default, _) in job.args {
            if !values.contains_key(*name) {
                if default.is_empty() {
                    bail!("job '{}' needs --arg {name}=...", job.name);
                }
                values.insert(name.to_string(), default.to_string());
            }
        }
        Ok(JobArgs { values })
    }

    pub fn get(&self, key: &str) -> &str {
        self.values.get(key).map(String::as_str).unwrap_or("")
    }

    pub fn number<T: std::str::FromStr>(&self, key: &str) -> Result<T> {
        let v = self.get(key);
        v.parse()
            .map_err(|_| anyhow::anyhow!("--arg {key}={v} is not a valid number"))
    }
}

/// A runnable job: name, description, arguments `(name, default, help)` (an empty default
/// means required) and the function that builds its graph.
pub struct JobDef {
    pub name: &'static str,
    pub about: &'static str,
    pub args: &'static [(&'static str, &'static str, &'static str)],
    pub build: fn(&StreamExecutionEnvironment, &JobArgs) -> Result<()>,
}

pub const JOBS: &[JobDef] = &[
    user_metrics::JOB,
    count_per_user::JOB,
    bench_tumbling::JOB,
    slow_sink::JOB,
];

pub fn find(name: &str) -> Result<&'static JobDef> {
    JOBS.iter().find(|j| j.name == name).with_context(|| {
        let names: Vec<&str> = JOBS.iter().map(|j| j.name).collect();
        format!(
            "no job named '{name}'; registered jobs: {} (see `weir jobs`)",
            names.join(", ")
        )
    })
}
