//! Streaming SQL for Weir: Flink's SQL dialect, parsed with sqlparser, expressions planned and
//! evaluated by DataFusion over Arrow batches, executed by Weir's engine (its windows, keyed
//! state, watermarks and checkpoints).
//!
//! ```
//! use weir_engine::api::StreamExecutionEnvironment;
//! let env = StreamExecutionEnvironment::new();
//! let job = weir_sql::plan(&env, "
//!   CREATE TABLE nums (n BIGINT) WITH ('connector' = 'datagen', 'number-of-rows' = '3',
//!     'fields.n.kind' = 'sequence', 'fields.n.start' = '1', 'fields.n.end' = '3');
//!   CREATE TABLE out (n BIGINT) WITH ('connector' = 'blackhole');
//!   INSERT INTO out SELECT n * 10 FROM nums WHERE n > 1;
//! ").unwrap();
//! assert!(job.explain().contains("Calc"));
//! env.execute("doc").unwrap();
//! ```

pub mod agg;
mod builtins;
pub mod changelog;
pub mod connectors;
pub mod decimal;
pub mod error;
mod exec;
pub mod expr;
pub mod format;
mod join;
mod json;
pub mod limits;
pub mod nested;
pub mod parse;
pub mod plan;
mod tvf;
pub mod udf;
pub mod value;
mod window_join;

pub use error::{Result, SqlError};
pub use value::{Row, SqlType, Value};

use weir_engine::api::StreamExecutionEnvironment;

/// A script planned onto an environment.
#[derive(Debug, Clone)]
pub struct PlannedScript {
    /// The streaming plan of each INSERT/SELECT that will run.
    pub plans: Vec<String>,
    /// The output of the script's EXPLAIN statements.
    pub explained: Vec<String>,
    /// Number of INSERT/SELECT pipelines added to the environment.
    pub pipelines: usize,
}

impl PlannedScript {
    /// The streaming plan of the whole job.
    pub fn explain(&self) -> String {
        let mut s = self.plans.join("\n");
        s.push('\n');
        s
    }
}

/// Parses `sql` (several `;`-separated statements) and adds its INSERT/SELECT pipelines to
/// `env` as one job (a statement set). Only SQL's built-in functions are callable; see
/// [`plan_with_udfs`].
pub fn plan(env: &StreamExecutionEnvironment, sql: &str) -> Result<PlannedScript> {
    plan_with_udfs(env, sql, &udf::Registry::new())
}

/// Like [`plan`], with the user-defined functions of `udfs` callable by name (and mappable
/// with `CREATE TEMPORARY FUNCTION`). Every process planning the job (a cluster's
/// JobManager and TaskManagers) must pass the same registry.
pub fn plan_with_udfs(
    env: &StreamExecutionEnvironment,
    sql: &str,
    udfs: &udf::Registry,
) -> Result<PlannedScript> {
    plan_with(env, sql, udfs, &connectors::Connectors::builtin())
}

/// Like [`plan_with_udfs`], with the connectors of `connectors` (the built-in ones and those
/// registered outside weir-sql, such as weir-kafka's) usable in `CREATE TABLE … WITH
/// ('connector' = '…')`. Every process planning the job must pass the same connectors.
pub fn plan_with(
    env: &StreamExecutionEnvironment,
    sql: &str,
    udfs: &udf::Registry,
    connectors: &connectors::Connectors,
) -> Result<PlannedScript> {
    // Parsing, planning and DataFusion's rewrites recurse on an expression's depth (bounded
    // by `limits`): on a stack of its own, the caller's thread (a test's 2 MiB, a runtime
    // worker's) does not decide whether a script plans.
    stacker::maybe_grow(PLANNING_STACK / 4, PLANNING_STACK, || {
        let stmts = parse::parse_script(sql)?;
        let mut p = plan::Planner::with_udfs(env, udfs)
            .with_connectors(std::sync::Arc::new(connectors.clone()));
        p.plan_script(stmts)?;
        Ok(PlannedScript {
            plans: p.plans,
            explained: p.explained,
            pipelines: p.pipelines,
        })
    })
}

/// The stack planning runs on (reserved, and committed only as far as it is used).
const PLANNING_STACK: usize = 256 << 20;
