//! Planning of the function statements: the registered UDFs a planner starts with, and
//! `CREATE/DROP TEMPORARY [SYSTEM] FUNCTION`, which map SQL names to them for the rest of
//! the script.

use super::{Planner, norm};
use crate::error::{Result, SqlError};
use crate::udf::{FunctionDef, Registry, is_builtin};
use sqlparser::ast::Ident;
use std::collections::BTreeMap;
use weir_engine::api::StreamExecutionEnvironment;

/// The functions a script can call beyond the built-ins.
#[derive(Debug, Default)]
pub(crate) struct Udfs {
    /// What the worker build registered.
    registry: Registry,
    /// The script's temporary functions: SQL name → (registered name, SYSTEM).
    temporary: BTreeMap<String, (String, bool)>,
}

impl<'e> Planner<'e> {
    /// A planner adding operators to `env`, with the functions of `udfs` callable by name.
    pub fn with_udfs(env: &'e StreamExecutionEnvironment, udfs: &Registry) -> Self {
        let mut p = Planner::new(env);
        for name in udfs.names() {
            if let Some(f) = udfs.get(&name) {
                p.funcs.set_user_function(name, f.clone());
            }
        }
        p.udfs.registry = udfs.clone();
        p
    }

    pub(super) fn create_function(&mut self, def: FunctionDef) -> Result<()> {
        let name = norm(&def.name).to_ascii_lowercase();
        let kind = if def.system {
            "TEMPORARY SYSTEM FUNCTION"
        } else {
            "TEMPORARY FUNCTION"
        };
        if self.udfs.temporary.contains_key(&name) {
            if def.if_not_exists {
                return Ok(());
            }
            return Err(SqlError::at(
                def.name.span,
                format!(
                    "temporary function '{name}' already exists; DROP TEMPORARY{} FUNCTION it first, or add IF NOT EXISTS",
                    if self.udfs.temporary[&name].1 {
                        " SYSTEM"
                    } else {
                        ""
                    }
                ),
            ));
        }
        // As in Flink, built-in (and registered, system-wide) functions resolve before
        // temporary catalog functions: only a SYSTEM function can take their name.
        if !def.system && (is_builtin(&name) || self.udfs.registry.get(&name).is_some()) {
            return Err(SqlError::at(
                def.name.span,
                format!(
                    "'{name}' is a built-in or registered function, which a TEMPORARY FUNCTION cannot shadow; use CREATE TEMPORARY SYSTEM FUNCTION {name} AS …"
                ),
            ));
        }
        let Some(udf) = self.udfs.registry.get(&def.implementation) else {
            let names = self.udfs.registry.names();
            return Err(SqlError::at(
                def.implementation_span,
                format!(
                    "no function '{}' is registered in this worker build; registered: {}",
                    def.implementation,
                    if names.is_empty() {
                        "none".to_string()
                    } else {
                        names.join(", ")
                    }
                ),
            ));
        };
        tracing::debug!(%name, implementation = %def.implementation, kind, "temporary function");
        self.funcs.set_user_function(name.clone(), udf.clone());
        self.udfs
            .temporary
            .insert(name, (def.implementation.to_ascii_lowercase(), def.system));
        Ok(())
    }

    pub(super) fn drop_function(
        &mut self,
        name: &Ident,
        system: bool,
        if_exists: bool,
    ) -> Result<()> {
        let n = norm(name).to_ascii_lowercase();
        let kind = if system {
            "TEMPORARY SYSTEM FUNCTION"
        } else {
            "TEMPORARY FUNCTION"
        };
        match self.udfs.temporary.get(&n) {
            Some((_, s)) if *s == system => {}
            Some(_) => {
                return Err(SqlError::at(
                    name.span,
                    format!(
                        "'{n}' is a {}, not a {kind}",
                        if system {
                            "TEMPORARY FUNCTION"
                        } else {
                            "TEMPORARY SYSTEM FUNCTION"
                        }
                    ),
                ));
            }
            None if if_exists => return Ok(()),
            None => {
                return Err(SqlError::at(
                    name.span,
                    format!("no {kind} named '{n}' to drop; add IF EXISTS to ignore that"),
                ));
            }
        }
        self.udfs.temporary.remove(&n);
        self.funcs.remove_user_function(&n);
        // A registered function of that name (shadowed by a SYSTEM function) is visible again.
        if let Some(f) = self.udfs.registry.get(&n) {
            self.funcs.set_user_function(n, f.clone());
        }
        Ok(())
    }
}
