//! `weir run job.sql`: plans a Flink SQL script with weir-sql onto an environment; `main`
//! then runs it like a registered job (progress, REST API, summary).

use anyhow::{Context, Result, bail};
use std::path::Path;
use weir_engine::api::StreamExecutionEnvironment;

/// A script planned onto an environment, ready to run.
pub struct Planned {
    /// The job name: the script's file name without `.sql`.
    pub name: String,
    /// The script text (what a cluster's TaskManagers plan again).
    pub text: String,
    /// The streaming plan, as EXPLAIN prints it (the dashboard shows it).
    pub explain: String,
}

/// Plans the SQL script at `path` onto `env`; `echo` prints its EXPLAIN statements' output.
/// Returns `None` when there is nothing to run: with `explain` (the plans are printed
/// instead) or when the script only explains.
pub fn plan(
    env: &StreamExecutionEnvironment,
    path: &str,
    args: &[String],
    explain: bool,
    echo: bool,
) -> Result<Option<Planned>> {
    if !args.is_empty() {
        bail!(
            "--arg is for registered jobs; a SQL script takes its parameters from its WITH options"
        );
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read SQL script {path}"))?;
    let planned = weir_sql::plan_with(
        env,
        &text,
        &crate::udfs::registry()?,
        &crate::connectors::registry()?,
    )
    .map_err(|e| anyhow::anyhow!("{path}:{e}"))?;
    if echo {
        for e in &planned.explained {
            println!("{e}\n");
        }
    }
    if explain {
        println!("== streaming plan ==\n{}", planned.explain());
        println!("== physical plan ==\n{}", env.explain()?);
        return Ok(None);
    }
    if planned.pipelines == 0 {
        if planned.explained.is_empty() {
            bail!("{path} has no INSERT INTO or SELECT statement: nothing to run");
        }
        return Ok(None);
    }
    let name = Path::new(path)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("sql")
        .to_string();
    Ok(Some(Planned {
        name,
        text,
        explain: planned.explain(),
    }))
}
