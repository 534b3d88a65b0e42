//! `weir run job.sql`: plans a Flink SQL script with weir-sql and runs it like a registered job.

use anyhow::{Context, Result, bail};
use std::path::Path;
use weir_engine::api::StreamExecutionEnvironment;

/// Runs (or with `explain`, only plans) the SQL script at `path` on `env`.
pub fn run(
    env: &StreamExecutionEnvironment,
    path: &str,
    args: &[String],
    explain: bool,
    show_progress: bool,
    summary_json: Option<&Path>,
) -> Result<()> {
    if !args.is_empty() {
        bail!(
            "--arg is for registered jobs; a SQL script takes its parameters from its WITH options"
        );
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read SQL script {path}"))?;
    let planned = weir_sql::plan(env, &text).map_err(|e| anyhow::anyhow!("{path}:{e}"))?;
    for e in &planned.explained {
        println!("{e}\n");
    }
    if explain {
        println!("== streaming plan ==\n{}", planned.explain());
        println!("== physical plan ==\n{}", env.explain()?);
        return Ok(());
    }
    if planned.pipelines == 0 {
        if planned.explained.is_empty() {
            bail!("{path} has no INSERT INTO or SELECT statement: nothing to run");
        }
        return Ok(());
    }
    let name = Path::new(path)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("sql")
        .to_string();
    let handle = env.execute_async(&name)?;
    crate::progress::run(handle, &name, show_progress, summary_json)
}
