//! Compiles SQL expressions to DataFusion physical expressions and evaluates them over Arrow
//! batches built from rows.

use crate::error::{Result, SqlError};
use crate::value::{Column, Row, SqlType, Value, ValueReader, arrow_schema, rows_to_batch_columns};
use arrow::array::{Array, BooleanArray};
use arrow::datatypes::{DataType, SchemaRef};
use datafusion_common::config::ConfigOptions;
use datafusion_common::tree_node::TreeNode;
use datafusion_common::{DFSchema, TableReference};
use datafusion_expr::execution_props::ExecutionProps;
use datafusion_expr::planner::{ContextProvider, ExprPlanner};
use datafusion_expr::{AggregateUDF, ExprSchemable, ScalarUDF, TableSource, WindowUDF};
use datafusion_optimizer::analyzer::type_coercion::TypeCoercionRewriter;
use datafusion_physical_expr::PhysicalExpr;
use datafusion_sql::planner::{PlannerContext, SqlToRel};
use sqlparser::ast::helpers::attached_token::AttachedToken;
use sqlparser::ast::{self, Spanned, VisitMut, VisitorMut};
use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::Arc;
use weir_engine::runtime::Rec;

mod row;

/// What DataFusion's SQL planner may look up: the scalar function library (DataFusion's and
/// `PROCTIME`), then the script's user functions, which come first.
pub struct Functions {
    udfs: HashMap<String, Arc<ScalarUDF>>,
    /// User functions by SQL name: registered UDFs and `CREATE TEMPORARY FUNCTION` names.
    user: HashMap<String, Arc<ScalarUDF>>,
    planners: Vec<Arc<dyn ExprPlanner>>,
    options: ConfigOptions,
}

impl std::fmt::Debug for Functions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Functions({})", self.udfs.len())
    }
}

impl Default for Functions {
    fn default() -> Self {
        let mut udfs = HashMap::new();
        for f in datafusion_functions::all_default_functions() {
            for a in f.aliases() {
                udfs.insert(a.clone(), f.clone());
            }
            udfs.insert(f.name().to_string(), f);
        }
        udfs.insert("proctime".into(), Arc::new(crate::udf::ProcTime::udf()));
        // Flink's semantics where DataFusion's function of the same name differs.
        for f in crate::builtins::all() {
            udfs.insert(f.name().to_string(), f);
        }
        let planners: Vec<Arc<dyn ExprPlanner>> = vec![
            Arc::new(datafusion_functions::core::planner::CoreFunctionPlanner::default()),
            Arc::new(datafusion_functions::unicode::planner::UnicodeFunctionPlanner),
            Arc::new(datafusion_functions::datetime::planner::DatetimeFunctionPlanner),
        ];
        Functions {
            udfs,
            user: HashMap::new(),
            planners,
            options: {
                // `1.50` is a DECIMAL(3, 2) literal, as in Flink.
                let mut o = ConfigOptions::default();
                o.sql_parser.parse_float_as_decimal = true;
                o
            },
        }
    }
}

impl ContextProvider for Functions {
    fn get_table_source(
        &self,
        name: TableReference,
    ) -> datafusion_common::Result<Arc<dyn TableSource>> {
        datafusion_common::plan_err!("table '{name}' cannot be used inside an expression")
    }
    fn get_expr_planners(&self) -> &[Arc<dyn ExprPlanner>] {
        &self.planners
    }
    fn get_function_meta(&self, name: &str) -> Option<Arc<ScalarUDF>> {
        let name = name.to_ascii_lowercase();
        self.user
            .get(&name)
            .or_else(|| self.udfs.get(&name))
            .cloned()
    }
    fn get_higher_order_meta(&self, _name: &str) -> Option<Arc<datafusion_expr::HigherOrderUDF>> {
        None
    }
    fn get_aggregate_meta(&self, _name: &str) -> Option<Arc<AggregateUDF>> {
        None
    }
    fn get_window_meta(&self, _name: &str) -> Option<Arc<WindowUDF>> {
        None
    }
    fn get_variable_type(&self, _variable_names: &[String]) -> Option<DataType> {
        None
    }
    fn options(&self) -> &ConfigOptions {
        &self.options
    }
    fn udf_names(&self) -> Vec<String> {
        self.user.keys().chain(self.udfs.keys()).cloned().collect()
    }
    fn higher_order_function_names(&self) -> Vec<String> {
        Vec::new()
    }
    fn udaf_names(&self) -> Vec<String> {
        Vec::new()
    }
    fn udwf_names(&self) -> Vec<String> {
        Vec::new()
    }
}

impl Functions {
    /// Whether `name` (lower case) is in the built-in library.
    pub fn is_builtin(&self, name: &str) -> bool {
        self.udfs.contains_key(name)
    }

    /// The user function `name` (lower case) resolves to, if any.
    pub fn user_function(&self, name: &str) -> Option<&Arc<ScalarUDF>> {
        self.user.get(name)
    }

    /// Makes `name` (lower case) call `udf`, ahead of a built-in of that name.
    pub fn set_user_function(&mut self, name: String, udf: Arc<ScalarUDF>) {
        self.user.insert(name, udf);
    }

    /// Forgets the user function `name` (a built-in of that name is visible again).
    pub fn remove_user_function(&mut self, name: &str) {
        self.user.remove(name);
    }
}

/// A call of the function `name` with positional `args`.
fn call(name: &str, args: Vec<ast::Expr>) -> ast::Expr {
    ast::Expr::Function(ast::Function {
        name: ast::ObjectName::from(vec![ast::Ident::new(name)]),
        uses_odbc_syntax: false,
        parameters: ast::FunctionArguments::None,
        args: ast::FunctionArguments::List(ast::FunctionArgumentList {
            duplicate_treatment: None,
            args: args
                .into_iter()
                .map(|a| ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(a)))
                .collect(),
            clauses: Vec::new(),
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: Vec::new(),
    })
}

fn string_lit(s: String) -> ast::Expr {
    ast::Expr::Value(ast::Value::SingleQuotedString(s).into())
}

/// `CASE WHEN c1 THEN r1 … ELSE e END`
fn case(whens: Vec<(ast::Expr, ast::Expr)>, else_result: Option<ast::Expr>) -> ast::Expr {
    ast::Expr::Case {
        case_token: AttachedToken::empty(),
        end_token: AttachedToken::empty(),
        operand: None,
        conditions: whens
            .into_iter()
            .map(|(condition, result)| ast::CaseWhen { condition, result })
            .collect(),
        else_result: else_result.map(Box::new),
    }
}

/// `a IS [NOT] DISTINCT FROM` binds tighter than AND and OR in Flink, but sqlparser parses
/// its right side as a whole expression: `a IS DISTINCT FROM b AND c` arrives as
/// `a IS DISTINCT FROM (b AND c)` (parentheses written in the query stay `Nested`).
fn distinct_from(a: ast::Expr, b: ast::Expr, not: bool) -> ast::Expr {
    match b {
        ast::Expr::BinaryOp { left, op, right }
            if matches!(op, ast::BinaryOperator::And | ast::BinaryOperator::Or) =>
        {
            ast::Expr::BinaryOp {
                left: Box::new(distinct_from(a, *left, not)),
                op,
                right,
            }
        }
        b if not => ast::Expr::IsNotDistinctFrom(Box::new(a), Box::new(b)),
        b => ast::Expr::IsDistinctFrom(Box::new(a), Box::new(b)),
    }
}

/// Flink's syntax for the functions of [`crate::builtins`] as calls of them, and the Flink
/// functions that are shorthands for a CASE; None for everything else.
fn flink_syntax(e: &ast::Expr) -> Option<ast::Expr> {
    let is_and_or = |b: &ast::Expr| {
        matches!(
            b,
            ast::Expr::BinaryOp {
                op: ast::BinaryOperator::And | ast::BinaryOperator::Or,
                ..
            }
        )
    };
    Some(match e {
        // A number with an exponent is a DOUBLE in Flink; the planner reads every number
        // with a fraction or an exponent as a DECIMAL (see `decimal_ops`).
        ast::Expr::Value(v) if matches!(&v.value, ast::Value::Number(n, _) if n.contains(['e', 'E'])) => {
            ast::Expr::Cast {
                kind: ast::CastKind::Cast,
                expr: Box::new(e.clone()),
                data_type: ast::DataType::Double(ast::ExactNumberInfo::None),
                array: false,
                format: None,
            }
        }
        // Flink's `a IS [NOT] JSON kind`, as `crate::parse` writes it.
        ast::Expr::IsNormalized {
            expr,
            form,
            negated,
        } => {
            let kind = match form {
                None => "VALUE",
                Some(ast::NormalizationForm::NFC) => "SCALAR",
                Some(ast::NormalizationForm::NFD) => "ARRAY",
                Some(_) => "OBJECT",
            };
            let test = call("is_json", vec![(**expr).clone(), string_lit(kind.into())]);
            if *negated {
                ast::Expr::UnaryOp {
                    op: ast::UnaryOperator::Not,
                    expr: Box::new(ast::Expr::Nested(Box::new(test))),
                }
            } else {
                test
            }
        }
        ast::Expr::IsDistinctFrom(a, b) if is_and_or(b) => {
            distinct_from((**a).clone(), (**b).clone(), false)
        }
        ast::Expr::IsNotDistinctFrom(a, b) if is_and_or(b) => {
            distinct_from((**a).clone(), (**b).clone(), true)
        }
        ast::Expr::Substring {
            expr,
            substring_from,
            substring_for,
            ..
        } => {
            let mut args = vec![(**expr).clone()];
            args.push(
                substring_from
                    .as_deref()
                    .cloned()
                    .unwrap_or(ast::Expr::Value(
                        ast::Value::Number("1".into(), false).into(),
                    )),
            );
            args.extend(substring_for.as_deref().cloned());
            call("substring", args)
        }
        // ARRAY, MAP and ROW constructors and element access as calls of the functions of
        // `crate::builtins::nested` (`MAP[…]` arrives as `map_value(…)`, see `crate::parse`).
        ast::Expr::Array(ast::Array { elem, .. }) => call("array_value", elem.clone()),
        ast::Expr::Tuple(fields) => call("row_value", fields.clone()),
        ast::Expr::CompoundFieldAccess { root, access_chain } => {
            let mut e = (**root).clone();
            for a in access_chain {
                let index = match a {
                    ast::AccessExpr::Subscript(ast::Subscript::Index { index }) => index.clone(),
                    ast::AccessExpr::Dot(ast::Expr::Identifier(f)) => string_lit(f.value.clone()),
                    _ => return None,
                };
                e = call("subscript", vec![e, index]);
            }
            e
        }
        ast::Expr::Extract { field, expr, .. } => call(
            "extract",
            vec![
                string_lit(field.to_string().to_uppercase()),
                (**expr).clone(),
            ],
        ),
        ast::Expr::Floor {
            expr,
            field: ast::CeilFloorKind::DateTimeField(field),
        } if *field != ast::DateTimeField::NoDateTime => call(
            "timestamp_floor",
            vec![
                string_lit(field.to_string().to_uppercase()),
                (**expr).clone(),
            ],
        ),
        ast::Expr::Ceil {
            expr,
            field: ast::CeilFloorKind::DateTimeField(field),
        } if *field != ast::DateTimeField::NoDateTime => call(
            "timestamp_ceil",
            vec![
                string_lit(field.to_string().to_uppercase()),
                (**expr).clone(),
            ],
        ),
        ast::Expr::Function(f) => {
            let name = f.name.to_string().to_ascii_lowercase();
            let args: Vec<ast::Expr> = crate::plan::function_args(f).into_iter().cloned().collect();
            match (name.as_str(), args.as_slice()) {
                // IF(c, a, b): a when c is TRUE, else b (NULL counts as not TRUE).
                ("if", [c, a, b]) => case(vec![(c.clone(), a.clone())], Some(b.clone())),
                ("row", _) => call("row_value", args),
                // The first argument that is not NULL (DataFusion's coalesce expects to be
                // simplified away before it runs).
                ("coalesce" | "ifnull" | "nvl", [_, .., last]) => case(
                    args[..args.len() - 1]
                        .iter()
                        .map(|a| (ast::Expr::IsNotNull(Box::new(a.clone())), a.clone()))
                        .collect(),
                    Some(last.clone()),
                ),
                ("timestampadd" | "timestampdiff", [ast::Expr::Identifier(unit), rest @ ..]) => {
                    let mut all = vec![string_lit(unit.value.to_uppercase())];
                    all.extend(rest.iter().cloned());
                    call(&name, all)
                }
                _ => return None,
            }
        }
        _ => return None,
    })
}

/// `CAST(x AS TIME(p))`, `TRY_CAST(x AS TIME(p))` and `TIME '12:34:56'` as calls of the
/// `to_time0` / `to_time3` functions of [`crate::builtins`] (DataFusion has no TIME(p), and
/// its CAST to TIME is nanoseconds); a TIME literal is checked here, as Flink's planner does,
/// and has as many fractional digits as its text (at most 9).
fn time_syntax(e: &ast::Expr) -> std::result::Result<Option<ast::Expr>, String> {
    let to_time = |x: ast::Expr, p: u8, safe: bool| {
        let n = |v: String| ast::Expr::Value(ast::Value::Number(v, false).into());
        call(
            if p == 0 { "to_time0" } else { "to_time3" },
            vec![
                x,
                n(p.to_string()),
                ast::Expr::Value(ast::Value::Boolean(safe).into()),
            ],
        )
    };
    Ok(Some(match e {
        ast::Expr::Cast {
            kind,
            expr,
            data_type: ast::DataType::Time(p, tz),
            ..
        } => {
            if !matches!(
                tz,
                ast::TimezoneInfo::None | ast::TimezoneInfo::WithoutTimeZone
            ) {
                return Err("TIME WITH TIME ZONE is not a type of Flink".into());
            }
            let Ok(crate::value::SqlType::Time(p)) = crate::plan::time_type(*p, e.span()) else {
                return Err(format!(
                    "TIME({}): the precision of TIME must be between 0 and 9",
                    p.unwrap_or(0)
                ));
            };
            let safe = matches!(kind, ast::CastKind::TryCast | ast::CastKind::SafeCast);
            to_time((**expr).clone(), p, safe)
        }
        // BYTES, VARBINARY and BINARY are DataFusion's BYTEA (a CAST to BINARY(n) or
        // VARBINARY(n) is rewritten before, see `FlinkFunctions`).
        ast::Expr::Cast {
            kind,
            expr,
            data_type:
                ast::DataType::Bytes(_) | ast::DataType::Varbinary(_) | ast::DataType::Binary(_),
            array,
            format,
        } => ast::Expr::Cast {
            kind: kind.clone(),
            expr: expr.clone(),
            data_type: ast::DataType::Bytea,
            array: *array,
            format: format.clone(),
        },
        ast::Expr::TypedString(ast::TypedString {
            data_type: ast::DataType::Time(..),
            value,
            ..
        }) => {
            let text = value.clone().into_string().unwrap_or_default();
            // Flink's literal is TIME(p) for p fractional digits, at most 3.
            let digits = text.split_once('.').map_or(0, |(_, f)| f.len());
            let well_formed = text.matches(':').count() == 2
                && digits <= 9
                && crate::builtins::parse_time(&text, 3).is_some();
            if !well_formed {
                return Err(format!(
                    "Illegal TIME literal '{text}': not in format 'HH:mm:ss'"
                ));
            }
            to_time(string_lit(text), digits.min(3) as u8, false)
        }
        _ => return Ok(None),
    }))
}

/// `JSON_VALUE(json, path RETURNING type)` as a call of the function of
/// [`crate::builtins`] returning that type (Flink's JSON_VALUE converts by the JSON value's
/// own type, which no CAST of the STRING result does).
fn json_value_returning(f: &mut ast::Function) -> std::result::Result<(), String> {
    let ast::FunctionArguments::List(list) = &mut f.args else {
        return Ok(());
    };
    let Some(at) = list
        .clauses
        .iter()
        .position(|c| matches!(c, ast::FunctionArgumentClause::JsonReturningClause(_)))
    else {
        return Ok(());
    };
    let ast::FunctionArgumentClause::JsonReturningClause(r) = list.clauses.remove(at) else {
        unreachable!("the position of a RETURNING clause");
    };
    use ast::DataType as T;
    let target = match r.data_type {
        T::Int(_) | T::Integer(_) => "json_value_int",
        T::Double(_) | T::DoublePrecision => "json_value_double",
        T::Boolean | T::Bool => "json_value_boolean",
        T::String(_) | T::Varchar(_) | T::Char(_) => "json_value",
        other => {
            return Err(format!(
                "JSON_VALUE(… RETURNING {other}) is not supported: Weir returns INT, DOUBLE, \
                 BOOLEAN and STRING (Flink 2.3's job fails on BIGINT, SMALLINT and TIMESTAMP)"
            ));
        }
    };
    f.name = ast::ObjectName::from(vec![ast::Ident::new(target)]);
    Ok(())
}

/// Checks that the DEFAULT values of JSON_VALUE's ON EMPTY / ON ERROR clauses (arguments 4
/// and 6, as [`crate::parse`] writes them) are literals: Flink 2.3's job fails on any other
/// expression there.
fn json_value_defaults(f: &ast::Function) -> std::result::Result<(), String> {
    let args = crate::plan::function_args(f);
    let literal = |e: &ast::Expr| match e {
        ast::Expr::Value(_) => true,
        ast::Expr::UnaryOp { op, expr } => {
            matches!(op, ast::UnaryOperator::Minus | ast::UnaryOperator::Plus)
                && matches!(**expr, ast::Expr::Value(_))
        }
        _ => false,
    };
    match args.as_slice() {
        [_, _, _, d1, _, d2] => match [d1, d2].into_iter().find(|d| !literal(d)) {
            Some(d) => Err(format!(
                "JSON_VALUE's DEFAULT must be a literal, not {d} (Flink 2.3's job fails on \
                 other expressions)"
            )),
            None => Ok(()),
        },
        _ => Ok(()),
    }
}

/// Rewrites Flink functions DataFusion names differently.
struct FlinkFunctions;

impl VisitorMut for FlinkFunctions {
    type Break = SqlError;
    fn post_visit_expr(&mut self, e: &mut ast::Expr) -> ControlFlow<SqlError> {
        if let ast::Expr::Cast {
            data_type: ast::DataType::Real,
            ..
        } = e
        {
            return ControlFlow::Break(SqlError::at(e.span(), crate::plan::NO_REAL));
        }
        // `CAST(x AS ARRAY<…>)` (MAP, ROW) as `cast_nested(x, type)`, the type by its
        // interned index: DataFusion's SQL types have no MAP.
        if let ast::Expr::Cast {
            expr, data_type, ..
        } = e
            && matches!(
                data_type,
                ast::DataType::Array(_) | ast::DataType::Map(..) | ast::DataType::Struct(..)
            )
        {
            let id = match crate::plan::sql_type(data_type, expr.span()) {
                Ok(SqlType::Nested(id)) => id.index(),
                Ok(_) => unreachable!("an ARRAY, MAP or ROW type"),
                Err(err) => return ControlFlow::Break(err),
            };
            let number = ast::Expr::Value(ast::Value::Number(id.to_string(), false).into());
            *e = call("cast_nested", vec![(**expr).clone(), number]);
            return ControlFlow::Continue(());
        }
        // `CAST(x AS BINARY(n))` pads with zero bytes to `n` and cuts to it,
        // `CAST(x AS VARBINARY(n))` cuts to `n`, as Flink's CAST does: the BYTES CAST, then
        // `binary_length(bytes, n, pad)`.
        if let ast::Expr::Cast {
            kind,
            expr,
            data_type,
            array,
            format,
        } = e
        {
            let sized = match data_type {
                ast::DataType::Binary(Some(n)) => Some((*n, true)),
                ast::DataType::Varbinary(Some(ast::BinaryLength::IntegerLength { length })) => {
                    Some((*length, false))
                }
                _ => None,
            };
            if let Some((n, pad)) = sized {
                let bytes = ast::Expr::Cast {
                    kind: kind.clone(),
                    expr: expr.clone(),
                    data_type: ast::DataType::Bytea,
                    array: *array,
                    format: format.clone(),
                };
                let number = |v: String| ast::Expr::Value(ast::Value::Number(v, false).into());
                let pad = ast::Expr::Value(ast::Value::Boolean(pad).into());
                *e = call("binary_length", vec![bytes, number(n.to_string()), pad]);
                return ControlFlow::Continue(());
            }
        }
        match time_syntax(e) {
            Ok(Some(rewritten)) => {
                *e = rewritten;
                return ControlFlow::Continue(());
            }
            Ok(None) => {}
            Err(why) => return ControlFlow::Break(SqlError::at(e.span(), why)),
        }
        if let Some(rewritten) = flink_syntax(e) {
            *e = rewritten;
            return ControlFlow::Continue(());
        }
        if let ast::Expr::Function(f) = e {
            if f.over.is_some() {
                return ControlFlow::Break(SqlError::at(
                    e.span(),
                    "OVER windows are not supported yet",
                ));
            }
            let name = f.name.to_string().to_ascii_lowercase();
            if name == "json_value" {
                if let Err(err) = json_value_defaults(f).and_then(|()| json_value_returning(f)) {
                    return ControlFlow::Break(SqlError::at(e.span(), err));
                }
                return ControlFlow::Continue(());
            }
            if name == "to_timestamp_ltz" {
                // TO_TIMESTAMP_LTZ(epoch, 3) is epoch milliseconds, (epoch, 0) seconds.
                let args = match &f.args {
                    ast::FunctionArguments::List(l) => l.args.clone(),
                    _ => Vec::new(),
                };
                let precision = args.get(1).map(|a| a.to_string());
                let target = match precision.as_deref() {
                    Some("3") => "to_timestamp_millis",
                    Some("0") => "to_timestamp_seconds",
                    _ => {
                        return ControlFlow::Break(SqlError::at(
                            e.span(),
                            "TO_TIMESTAMP_LTZ(epoch, precision) needs precision 0 (seconds) or 3 (milliseconds)",
                        ));
                    }
                };
                f.name = ast::ObjectName::from(vec![ast::Ident::new(target)]);
                if let ast::FunctionArguments::List(l) = &mut f.args {
                    l.args.truncate(1);
                }
            } else if name == "mod" {
                // MOD(a, b) is Flink's remainder, a % b (the sign follows a); DataFusion has
                // the operator but no function of that name.
                let args = match &f.args {
                    ast::FunctionArguments::List(l) => l.args.clone(),
                    _ => Vec::new(),
                };
                let operand = |a: &ast::FunctionArg| match a {
                    ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(x)) => Some(x.clone()),
                    _ => None,
                };
                let [a, b] = args.as_slice() else {
                    return ControlFlow::Break(SqlError::at(
                        e.span(),
                        format!("MOD takes 2 arguments (MOD(a, b)), found {}", args.len()),
                    ));
                };
                let (Some(a), Some(b)) = (operand(a), operand(b)) else {
                    return ControlFlow::Break(SqlError::at(
                        e.span(),
                        "MOD takes two expressions: MOD(a, b)",
                    ));
                };
                *e = ast::Expr::Nested(Box::new(ast::Expr::BinaryOp {
                    left: Box::new(a),
                    op: ast::BinaryOperator::Modulo,
                    right: Box::new(b),
                }));
                return ControlFlow::Continue(());
            } else if name == "concat" || name == "greatest" || name == "least" {
                // Flink's CONCAT, GREATEST and LEAST are NULL when any argument is;
                // DataFusion's skip NULLs.
                let any_null = crate::plan::function_args(f)
                    .into_iter()
                    .map(|a| ast::Expr::IsNull(Box::new(a.clone())))
                    .reduce(|l, r| ast::Expr::BinaryOp {
                        left: Box::new(l),
                        op: ast::BinaryOperator::Or,
                        right: Box::new(r),
                    });
                if let Some(any_null) = any_null {
                    *e = ast::Expr::Case {
                        case_token: AttachedToken::empty(),
                        end_token: AttachedToken::empty(),
                        operand: None,
                        conditions: vec![ast::CaseWhen {
                            condition: any_null,
                            result: ast::Expr::Value(ast::Value::Null.into()),
                        }],
                        else_result: Some(Box::new(e.clone())),
                    };
                }
                return ControlFlow::Continue(());
            } else if ["count", "sum", "avg", "min", "max"].contains(&name.as_str()) {
                return ControlFlow::Break(SqlError::at(
                    e.span(),
                    format!(
                        "aggregate function {} is not allowed here; aggregates belong in the SELECT list of a GROUP BY query",
                        name.to_uppercase()
                    ),
                ));
            } else if matches!(
                name.as_str(),
                "tumble"
                    | "hop"
                    | "session"
                    | "cumulate"
                    | "tumble_start"
                    | "tumble_end"
                    | "hop_start"
                    | "hop_end"
                    | "session_start"
                    | "session_end"
            ) {
                return ControlFlow::Break(SqlError::at(
                    e.span(),
                    format!(
                        "{} is only allowed with GROUP BY TUMBLE/HOP/SESSION",
                        name.to_uppercase()
                    ),
                ));
            }
        }
        if let ast::Expr::Subquery(_) | ast::Expr::InSubquery { .. } | ast::Expr::Exists { .. } = e
        {
            return ControlFlow::Break(SqlError::at(
                e.span(),
                "subqueries in expressions are not supported yet",
            ));
        }
        ControlFlow::Continue(())
    }
}

/// A compiled expression and its result type.
pub struct Compiled {
    /// DataFusion's physical expression.
    pub expr: Arc<dyn PhysicalExpr>,
    /// The SQL type of its result.
    pub ty: SqlType,
}

fn clean_df_message(msg: &str) -> String {
    let msg = msg
        .trim_start_matches("Error during planning: ")
        .trim_start_matches("Schema error: ")
        .trim_start_matches("SQL error: ")
        .trim_start_matches("This feature is not implemented: ");
    if let Some(rest) = msg.strip_prefix("No field named ") {
        let (name, tail) = rest.split_once('.').unwrap_or((rest, ""));
        let name = name.trim().trim_matches('"');
        let valid = tail
            .trim()
            .strip_prefix("Valid fields are ")
            .map(|v| {
                format!(
                    "; available columns: {}",
                    v.trim_end_matches('.').replace('"', "")
                )
            })
            .unwrap_or_default();
        return format!("column '{name}' not found{valid}");
    }
    msg.split('\n').next().unwrap_or(msg).to_string()
}

/// Replaces the CASTs (explicit, or inserted by the type coercion) whose result Flink writes
/// or reads differently from Arrow's cast kernel with the functions of
/// [`crate::builtins::cast_function`].
fn flink_casts(
    e: datafusion_expr::Expr,
    schema: &DFSchema,
) -> datafusion_common::Result<datafusion_expr::Expr> {
    use datafusion_common::tree_node::Transformed;
    use datafusion_expr::Expr;
    use datafusion_expr::expr::{Cast, ScalarFunction, TryCast};
    e.transform_up(|e| {
        let (arg, to, safe) = match &e {
            Expr::Cast(Cast { expr, field }) => (expr, field.data_type(), false),
            Expr::TryCast(TryCast { expr, field }) => (expr, field.data_type(), true),
            _ => return Ok(Transformed::no(e)),
        };
        // A DECIMAL literal next to a DOUBLE (`d * 1.5`) is the DOUBLE its text is: a
        // constant the row evaluator reads.
        if let (
            Expr::Literal(datafusion_common::ScalarValue::Decimal128(Some(v), _, s), meta),
            DataType::Float64,
        ) = (&**arg, to)
        {
            let d = format!("{v}e{}", -i32::from(*s))
                .parse()
                .unwrap_or(f64::NAN);
            return Ok(Transformed::yes(Expr::Literal(
                datafusion_common::ScalarValue::Float64(Some(d)),
                meta.clone(),
            )));
        }
        let from = arg.get_type(schema)?;
        // The CASTs Flink's planner refuses: a DATE to numbers and BOOLEAN, a TIME to
        // anything but STRING, TIMESTAMP and TIME, BYTES to anything but STRING and BYTES,
        // and numbers to BYTES.
        let (from_ty, to_ty) = (SqlType::from_arrow(&from), SqlType::from_arrow(to));
        let refused = match (from_ty, to_ty) {
            (Some(SqlType::Date), Some(t)) => t.is_numeric() || t == SqlType::Boolean,
            (Some(SqlType::Time(_)), Some(t)) => {
                !matches!(t, SqlType::String | SqlType::Timestamp | SqlType::Time(_))
            }
            (Some(SqlType::Bytes), Some(t)) => !matches!(t, SqlType::String | SqlType::Bytes),
            (Some(f), Some(SqlType::Bytes)) => !matches!(f, SqlType::String | SqlType::Bytes),
            _ => false,
        };
        if refused {
            return datafusion_common::plan_err!(
                "a {} cannot be cast to {} (as in Flink)",
                from_ty.map_or("?", |t| t.sql_name()),
                to_ty.map_or("?", |t| t.sql_name())
            );
        }
        let Some(f) = crate::builtins::cast_function(&from, to, safe) else {
            return Ok(Transformed::no(e));
        };
        let call = Expr::ScalarFunction(ScalarFunction::new_udf(f, vec![(**arg).clone()]));
        // The function gives Utf8; the plan around the cast expects the cast's own type
        // (DataFusion's STRING is Utf8View).
        let ret = call.get_type(schema)?;
        Ok(Transformed::yes(if &ret == to {
            call
        } else if safe {
            Expr::TryCast(TryCast::new(Box::new(call), to.clone()))
        } else {
            Expr::Cast(Cast::new(Box::new(call), to.clone()))
        }))
    })
    .map(|t| t.data)
}

/// The CASE `c` with `f` applied to each of its results (THEN and ELSE expressions).
fn map_case_results(
    c: datafusion_expr::expr::Case,
    f: impl Fn(Box<datafusion_expr::Expr>) -> datafusion_common::Result<Box<datafusion_expr::Expr>>,
) -> datafusion_common::Result<datafusion_expr::Expr> {
    let when_then_expr = c
        .when_then_expr
        .into_iter()
        .map(|(w, t)| Ok((w, f(t)?)))
        .collect::<datafusion_common::Result<_>>()?;
    let else_expr = c.else_expr.map(f).transpose()?;
    Ok(datafusion_expr::Expr::Case(datafusion_expr::expr::Case {
        expr: c.expr,
        when_then_expr,
        else_expr,
    }))
}

/// Comparisons of ARRAY, MAP and ROW values as Flink makes them: `=` and `<>` by value (a
/// MAP's entries in any order, which Arrow's kernels compare in order), the orderings
/// refused (Flink's job fails on them).
fn nested_ops(
    e: datafusion_expr::Expr,
    schema: &DFSchema,
) -> datafusion_common::Result<datafusion_expr::Expr> {
    use datafusion_common::tree_node::Transformed;
    use datafusion_expr::expr::{BinaryExpr, ScalarFunction};
    use datafusion_expr::{Expr, Operator};
    e.transform_up(|e| match e {
        Expr::BinaryExpr(BinaryExpr { left, op, right })
            if matches!(
                SqlType::from_arrow(&left.get_type(schema)?),
                Some(SqlType::Nested(_))
            ) =>
        {
            let equals = || {
                Expr::ScalarFunction(ScalarFunction::new_udf(
                    crate::builtins::nested_equals(),
                    vec![(*left).clone(), (*right).clone()],
                ))
            };
            match op {
                Operator::Eq => Ok(Transformed::yes(equals())),
                Operator::NotEq => Ok(Transformed::yes(Expr::Not(Box::new(equals())))),
                Operator::Lt | Operator::LtEq | Operator::Gt | Operator::GtEq => {
                    datafusion_common::plan_err!(
                        "cannot apply '{op}' to {} values: an ARRAY, MAP or ROW has no order \
                         (compare their elements)",
                        SqlType::from_arrow(&left.get_type(schema)?).map_or("?", |t| t.sql_name())
                    )
                }
                op => Ok(Transformed::no(Expr::BinaryExpr(BinaryExpr {
                    left,
                    op,
                    right,
                }))),
            }
        }
        e => Ok(Transformed::no(e)),
    })
    .map(|t| t.data)
}

/// Flink's result types where FLOAT meets DOUBLE or DECIMAL, which DataFusion's type coercion
/// widens otherwise: with a DOUBLE, the first operand's type wins (Calcite's least restrictive
/// type: `f + d` and `f = d` are FLOAT, the DOUBLE narrowed; `d - f` is DOUBLE), also among a
/// CASE's results; with a DECIMAL, FLOAT is DOUBLE (`f * 1.5` is a DOUBLE).
fn float_ops(
    e: datafusion_expr::Expr,
    schema: &DFSchema,
) -> datafusion_common::Result<datafusion_expr::Expr> {
    use datafusion_common::tree_node::Transformed;
    use datafusion_expr::expr::BinaryExpr;
    use datafusion_expr::{Expr, Operator, cast};
    let to = |e: Expr, t: DataType| Box::new(cast(e, t));
    e.transform_up(|e| match e {
        // Flink's planner refuses DATE - DATE and a DATE next to a TIMESTAMP (DataFusion
        // would subtract the days or widen the DATE).
        Expr::BinaryExpr(BinaryExpr { left, op, right })
            if matches!(
                (left.get_type(schema)?, right.get_type(schema)?),
                (DataType::Date32, DataType::Date32) if op == Operator::Minus
            ) || matches!(
                (left.get_type(schema)?, right.get_type(schema)?),
                (DataType::Date32, DataType::Timestamp(..))
                    | (DataType::Timestamp(..), DataType::Date32)
            ) =>
        {
            datafusion_common::plan_err!(
                "cannot apply '{op}' to a DATE and a {}: cast one side (CAST(d AS TIMESTAMP(3)), \
                 TIMESTAMPDIFF(DAY, d1, d2))",
                SqlType::from_arrow(&right.get_type(schema)?).map_or("?", |t| t.sql_name())
            )
        }
        Expr::BinaryExpr(BinaryExpr { left, op, right })
            if op.is_numerical_operators()
                || matches!(
                    op,
                    Operator::Eq
                        | Operator::NotEq
                        | Operator::Lt
                        | Operator::LtEq
                        | Operator::Gt
                        | Operator::GtEq
                        | Operator::IsDistinctFrom
                        | Operator::IsNotDistinctFrom
                ) =>
        {
            let (lt, rt) = (left.get_type(schema)?, right.get_type(schema)?);
            let is_dec = |t: &DataType| matches!(t, DataType::Decimal128(..));
            let (left, right, changed) = match (&lt, &rt) {
                (DataType::Float32, DataType::Float64) => {
                    (left, to(*right, DataType::Float32), true)
                }
                (DataType::Float32, r) if is_dec(r) => (to(*left, DataType::Float64), right, true),
                (l, DataType::Float32) if is_dec(l) => (left, to(*right, DataType::Float64), true),
                _ => (left, right, false),
            };
            let e = Expr::BinaryExpr(BinaryExpr { left, op, right });
            Ok(if changed {
                Transformed::yes(e)
            } else {
                Transformed::no(e)
            })
        }
        Expr::Case(c)
            if matches!(
                c.when_then_expr
                    .first()
                    .map(|(_, t)| t.get_type(schema))
                    .transpose()?,
                Some(DataType::Float32)
            ) =>
        {
            let narrow = |e: Box<Expr>| -> datafusion_common::Result<Box<Expr>> {
                Ok(if e.get_type(schema)? == DataType::Float64 {
                    to(*e, DataType::Float32)
                } else {
                    e
                })
            };
            Ok(Transformed::yes(map_case_results(c, narrow)?))
        }
        e => Ok(Transformed::no(e)),
    })
    .map(|t| t.data)
}

/// TIME(0) (Arrow's `Time32(Second)`) next to a TIME of another precision (`Time32(Millisecond)`)
/// in a comparison, or among a CASE's results, is widened to it, as Flink compares and
/// unifies TIMEs of any precision (DataFusion's coercion has no rule for two time units).
/// What Flink's planner refuses and DataFusion would coerce is refused: a TIME next to a
/// DATE or a TIMESTAMP (DataFusion widens both to a TIMESTAMP), TIME - TIME, BYTES next to
/// a STRING, and TIMEs and BYTES as arguments of DataFusion's string functions and `||`.
fn time_units(
    e: datafusion_expr::Expr,
    schema: &DFSchema,
) -> datafusion_common::Result<datafusion_expr::Expr> {
    use arrow::datatypes::TimeUnit;
    use datafusion_common::tree_node::Transformed;
    use datafusion_expr::expr::BinaryExpr;
    use datafusion_expr::{Expr, cast};
    const SECONDS: DataType = DataType::Time32(TimeUnit::Second);
    const MILLIS: DataType = DataType::Time32(TimeUnit::Millisecond);
    let widen = |e: Box<Expr>| -> datafusion_common::Result<Box<Expr>> {
        Ok(if e.get_type(schema)? == SECONDS {
            Box::new(cast(*e, MILLIS))
        } else {
            e
        })
    };
    e.transform_up(|e| match e {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let (lt, rt) = (left.get_type(schema)?, right.get_type(schema)?);
            let is_time = |t: &DataType| matches!(t, DataType::Time32(_));
            let is_day = |t: &DataType| matches!(t, DataType::Date32 | DataType::Timestamp(..));
            if (is_time(&lt) && is_day(&rt)) || (is_day(&lt) && is_time(&rt)) {
                return datafusion_common::plan_err!(
                    "cannot apply '{op}' to a {} and a {} (as in Flink): cast one side",
                    SqlType::from_arrow(&lt).map_or("?", |t| t.sql_name()),
                    SqlType::from_arrow(&rt).map_or("?", |t| t.sql_name())
                );
            }
            if is_time(&lt) && is_time(&rt) && op == datafusion_expr::Operator::Minus {
                return datafusion_common::plan_err!(
                    "cannot subtract a TIME from a TIME (as in Flink): use TIMESTAMPDIFF(SECOND, t1, t2)"
                );
            }
            let is_bytes = |t: &DataType| matches!(t, DataType::Binary);
            let is_text = |t: &DataType| {
                matches!(t, DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8)
            };
            if op == datafusion_expr::Operator::StringConcat
                && [&lt, &rt].iter().any(|t| is_time(t) || is_bytes(t))
            {
                return datafusion_common::plan_err!(
                    "'||' takes STRINGs, not {} (as in Flink): cast it to STRING first",
                    SqlType::from_arrow(if is_text(&lt) { &rt } else { &lt })
                        .map_or("?", |t| t.sql_name())
                );
            }
            if (is_bytes(&lt) && is_text(&rt)) || (is_text(&lt) && is_bytes(&rt)) {
                return datafusion_common::plan_err!(
                    "cannot apply '{op}' to BYTES and a STRING (as in Flink): cast one side"
                );
            }
            if is_time(&lt) && is_time(&rt) && lt != rt {
                let e = Expr::BinaryExpr(BinaryExpr {
                    left: widen(left)?,
                    op,
                    right: widen(right)?,
                });
                return Ok(Transformed::yes(e));
            }
            Ok(Transformed::no(Expr::BinaryExpr(BinaryExpr { left, op, right })))
        }
        // DataFusion's string functions take BYTES and TIMEs (as text); Flink's take neither.
        Expr::ScalarFunction(f)
            if !crate::builtins::is_weirs(&f.func)
                && !matches!(f.name(), "greatest" | "least" | "nullif") =>
        {
            for a in &f.args {
                let t = a.get_type(schema)?;
                if matches!(t, DataType::Time32(_) | DataType::Binary) {
                    return datafusion_common::plan_err!(
                        "{}: takes no {} (as in Flink)",
                        f.name().to_uppercase(),
                        SqlType::from_arrow(&t).map_or("?", |t| t.sql_name())
                    );
                }
            }
            Ok(Transformed::no(Expr::ScalarFunction(f)))
        }
        Expr::Case(c) => {
            let mut types = c
                .when_then_expr
                .iter()
                .map(|(_, t)| t.get_type(schema))
                .chain(c.else_expr.iter().map(|e| e.get_type(schema)))
                .collect::<datafusion_common::Result<Vec<_>>>()?;
            types.dedup();
            if !(types.contains(&SECONDS) && types.contains(&MILLIS)) {
                return Ok(Transformed::no(Expr::Case(c)));
            }
            Ok(Transformed::yes(map_case_results(c, widen)?))
        }
        e => Ok(Transformed::no(e)),
    })
    .map(|t| t.data)
}

/// Types integer literals as Flink does: INT when the value fits 32 bits, else BIGINT
/// (DataFusion's planner makes every one BIGINT). `100000 * 100000` is then INT arithmetic
/// and wraps around as in Flink; next to a BIGINT the type coercion widens the literal back,
/// a cast the row evaluator leaves out.
fn int_literals(e: datafusion_expr::Expr) -> datafusion_common::Result<datafusion_expr::Expr> {
    use datafusion_common::ScalarValue;
    use datafusion_common::tree_node::Transformed;
    use datafusion_expr::Expr;
    e.transform_up(|e| match e {
        Expr::Literal(ScalarValue::Int64(Some(i)), meta) if i32::try_from(i).is_ok() => Ok(
            Transformed::yes(Expr::Literal(ScalarValue::Int32(Some(i as i32)), meta)),
        ),
        e => Ok(Transformed::no(e)),
    })
    .map(|t| t.data)
}

/// Flink's DECIMAL semantics where DataFusion's differ: `+ - * / %` with a DECIMAL operand
/// (and an integer or DECIMAL other one), and ROUND/TRUNCATE of a DECIMAL to literal digits,
/// become the functions of [`crate::builtins::decimal`] with Flink's result types; a number
/// literal written with an exponent (`2.5E0`), which DataFusion's planner reads as a DECIMAL
/// like the others, is a DOUBLE as in Flink ([`FlinkFunctions`] marks it with a CAST).
fn decimal_ops(
    e: datafusion_expr::Expr,
    schema: &DFSchema,
) -> datafusion_common::Result<datafusion_expr::Expr> {
    use crate::builtins::decimal::{Kind, function, operand};
    use crate::decimal::Op;
    use datafusion_common::ScalarValue;
    use datafusion_common::tree_node::Transformed;
    use datafusion_expr::expr::{BinaryExpr, Cast, ScalarFunction};
    use datafusion_expr::{Expr, Operator};
    e.transform_up(|e| match e {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let kind = match op {
                Operator::Plus => Some(Op::Add),
                Operator::Minus => Some(Op::Sub),
                Operator::Multiply => Some(Op::Mul),
                Operator::Divide => Some(Op::Div),
                Operator::Modulo => Some(Op::Rem),
                _ => None,
            };
            let (lt, rt) = (left.get_type(schema)?, right.get_type(schema)?);
            let is_decimal = |t: &DataType| matches!(t, DataType::Decimal128(..));
            match kind {
                Some(k)
                    if (is_decimal(&lt) || is_decimal(&rt))
                        && operand(&lt).is_some()
                        && operand(&rt).is_some() =>
                {
                    Ok(Transformed::yes(Expr::ScalarFunction(
                        ScalarFunction::new_udf(function(Kind::Arith(k)), vec![*left, *right]),
                    )))
                }
                _ => Ok(Transformed::no(Expr::BinaryExpr(BinaryExpr {
                    left,
                    op,
                    right,
                }))),
            }
        }
        Expr::ScalarFunction(f)
            if matches!(f.name(), "round" | "truncate")
                && matches!(
                    f.args.first().map(|a| a.get_type(schema)).transpose()?,
                    Some(DataType::Decimal128(..))
                ) =>
        {
            let digits = match f.args.get(1) {
                None => Some(0),
                Some(Expr::Literal(v, _)) => match v {
                    ScalarValue::Int64(Some(i)) => Some(*i),
                    ScalarValue::Int32(Some(i)) => Some(i64::from(*i)),
                    _ => None,
                },
                Some(_) => None,
            };
            match digits {
                Some(digits) => {
                    let kind = Kind::Round {
                        digits,
                        truncate: f.name() == "truncate",
                    };
                    let arg = f.args.into_iter().next().expect("checked above");
                    Ok(Transformed::yes(Expr::ScalarFunction(
                        ScalarFunction::new_udf(function(kind), vec![arg]),
                    )))
                }
                None => Ok(Transformed::no(Expr::ScalarFunction(f))),
            }
        }
        // A literal has as many digits as its text: 0.908 is DECIMAL(4, 3) in Flink (the
        // planner counts 3).
        Expr::Literal(ScalarValue::Decimal128(Some(v), p, s), meta) if s >= 0 => {
            let p = p.max(s as u8 + 1).min(crate::decimal::MAX_PRECISION);
            Ok(Transformed::yes(Expr::Literal(
                ScalarValue::Decimal128(Some(v), p, s),
                meta,
            )))
        }
        // `2.5E0`: the DOUBLE the literal's text is.
        Expr::Cast(Cast { expr, field })
            if field.data_type() == &DataType::Float64
                && matches!(
                    *expr,
                    Expr::Literal(ScalarValue::Decimal128(Some(_), _, _), _)
                ) =>
        {
            let Expr::Literal(ScalarValue::Decimal128(Some(v), _, s), meta) = *expr else {
                unreachable!("matched above");
            };
            let d = format!("{v}e{}", -i32::from(s)).parse().unwrap_or(f64::NAN);
            Ok(Transformed::yes(Expr::Literal(
                ScalarValue::Float64(Some(d)),
                meta,
            )))
        }
        e => Ok(Transformed::no(e)),
    })
    .map(|t| t.data)
}

/// Compiles `e` over `cols`.
pub fn compile(funcs: &Functions, e: &ast::Expr, cols: &[Column]) -> Result<Compiled> {
    let span = e.span();
    let mut e = e.clone();
    if let ControlFlow::Break(err) = e.visit(&mut FlinkFunctions) {
        return Err(err);
    }
    crate::udf::check_calls(funcs, &e, cols)?;
    let schema = arrow_schema(cols);
    let df = DFSchema::try_from(schema.as_ref().clone())
        .map_err(|x| SqlError::at(span, clean_df_message(&x.to_string())))?;
    let planner = SqlToRel::new(funcs);
    let fail = |x: datafusion_common::DataFusionError| {
        SqlError::at(span, clean_df_message(&x.strip_backtrace()))
    };
    let logical = planner
        .sql_to_expr(e, &df, &mut PlannerContext::new())
        .map_err(fail)?;
    let logical = int_literals(logical).map_err(fail)?;
    let logical = decimal_ops(logical, &df).map_err(fail)?;
    let logical = float_ops(logical, &df).map_err(fail)?;
    let logical = time_units(logical, &df).map_err(fail)?;
    let logical = logical
        .rewrite(&mut TypeCoercionRewriter::new(&df))
        .map_err(fail)?
        .data;
    let logical = nested_ops(logical, &df).map_err(fail)?;
    let logical = flink_casts(logical, &df).map_err(fail)?;
    let field = logical.to_field(&df).map_err(fail)?.1;
    let ty = SqlType::from_arrow(field.data_type()).ok_or_else(|| {
        SqlError::at(
            span,
            format!(
                "expressions of type {} are not supported yet",
                field.data_type()
            ),
        )
    })?;
    let expr = datafusion_physical_expr::create_physical_expr(
        &logical,
        &df,
        &ExecutionProps::new(),
        &Default::default(),
    )
    .map_err(fail)?;
    Ok(Compiled { expr, ty })
}

/// Where an output column of a [`Calc`] comes from.
#[derive(Debug, Clone, Copy)]
enum Output {
    /// Input column `col`, unchanged: moved (or, when it is not the last use of that column
    /// in the row, cloned) from the input row without going through Arrow.
    Input { col: usize, take: bool },
    /// The `n`-th evaluated expression.
    Eval(usize),
}

/// The filter and computed expressions of a [`Calc`], compiled for [`row`] evaluation.
struct RowProgram {
    filter: Option<row::RowExpr>,
    evals: Vec<row::RowExpr>,
}

/// Filter-and-project over a batch of rows.
///
/// When the filter and every computed expression are in the row evaluator's subset (see
/// [`row`]: columns, literals, casts, arithmetic, comparisons, boolean logic, IS NULL,
/// `TO_TIMESTAMP_LTZ`), they are evaluated on each row's values. Otherwise they are evaluated
/// as one Arrow batch, built only from the input columns that the filter and the computed
/// expressions read. Either way, output columns that are plain input columns are moved from
/// the input rows, and each output row reuses its input row's allocation, so a projection of
/// columns (`SELECT a, b FROM t`) copies nothing.
#[derive(Clone)]
pub struct Calc {
    in_cols: Arc<Vec<Column>>,
    in_schema: SchemaRef,
    filter: Option<Arc<dyn PhysicalExpr>>,
    /// The expressions evaluated over Arrow (outputs that are not plain input columns).
    evals: Arc<Vec<(Arc<dyn PhysicalExpr>, SqlType)>>,
    outputs: Arc<Vec<Output>>,
    /// `Some` when the output row can be made from the input row in place.
    in_place: Option<Arc<InPlace>>,
    /// Input columns read by the filter or an evaluated expression.
    used: Arc<Vec<bool>>,
    /// The row-wise program, when every expression compiled to one.
    rows: Option<Arc<RowProgram>>,
}

impl Calc {
    /// A calc over rows of `in_cols`.
    pub fn new(
        in_cols: Vec<Column>,
        filter: Option<Arc<dyn PhysicalExpr>>,
        exprs: Vec<(Arc<dyn PhysicalExpr>, SqlType)>,
    ) -> Self {
        use datafusion_physical_expr::expressions::Column as ColumnExpr;
        let mut used = vec![false; in_cols.len()];
        let mut mark = |e: &Arc<dyn PhysicalExpr>| {
            for c in datafusion_physical_expr::utils::collect_columns(e) {
                if let Some(u) = used.get_mut(c.index()) {
                    *u = true;
                }
            }
        };
        if let Some(f) = &filter {
            mark(f);
        }
        let mut evals = Vec::new();
        let mut outputs = Vec::with_capacity(exprs.len());
        for (e, ty) in exprs {
            match e.downcast_ref::<ColumnExpr>() {
                Some(c) if in_cols.get(c.index()).is_some_and(|col| col.ty == ty) => {
                    outputs.push(Output::Input {
                        col: c.index(),
                        take: false,
                    });
                }
                _ => {
                    mark(&e);
                    outputs.push(Output::Eval(evals.len()));
                    evals.push((e, ty));
                }
            }
        }
        // The last use of each input column may take the value instead of cloning it.
        let mut seen = vec![false; in_cols.len()];
        for o in outputs.iter_mut().rev() {
            if let Output::Input { col, take } = o {
                *take = !std::mem::replace(&mut seen[*col], true);
            }
        }
        let in_place = 'plan: {
            let plan: Vec<usize> = outputs
                .iter()
                .map(|o| match *o {
                    Output::Input { col, .. } => col,
                    Output::Eval(_) => EVALUATED,
                })
                .collect();
            let cols: Vec<(usize, usize)> = plan
                .iter()
                .enumerate()
                .filter(|(_, c)| **c != EVALUATED)
                .map(|(k, c)| (k, *c))
                .collect();
            let evals_in_order = outputs
                .iter()
                .filter_map(|o| match *o {
                    Output::Eval(e) => Some(e),
                    Output::Input { .. } => None,
                })
                .enumerate()
                .all(|(i, e)| i == e);
            let fits = cols.windows(2).all(|w| w[0].1 < w[1].1)
                && cols.iter().all(|&(k, c)| k <= c && c < in_cols.len())
                && evals_in_order;
            if !fits {
                break 'plan None;
            }
            let run_from = match plan.first() {
                Some(&start)
                    if start != EVALUATED
                        && plan.iter().enumerate().all(|(k, &c)| c == start + k) =>
                {
                    Some(start)
                }
                _ => None,
            };
            Some(Arc::new(InPlace {
                width: plan.len(),
                run_from,
                steps: plan
                    .iter()
                    .enumerate()
                    .filter(|&(k, &c)| c != k)
                    .map(|(k, &c)| (k, c))
                    .collect(),
            }))
        };
        let in_schema = arrow_schema(&in_cols);
        let rows = (|| {
            let filter = match &filter {
                Some(f) => Some(row::RowExpr::compile(
                    f,
                    &in_cols,
                    &in_schema,
                    SqlType::Boolean,
                )?),
                None => None,
            };
            let evals = evals
                .iter()
                .map(|(e, ty)| row::RowExpr::compile(e, &in_cols, &in_schema, *ty))
                .collect::<Option<Vec<_>>>()?;
            Some(Arc::new(RowProgram { filter, evals }))
        })();
        Calc {
            in_schema,
            in_cols: Arc::new(in_cols),
            filter,
            evals: Arc::new(evals),
            outputs: Arc::new(outputs),
            in_place,
            used: Arc::new(used),
            rows,
        }
    }

    /// The input columns this calc's output consists of, when it only picks columns (no
    /// filter, nothing computed): a consumer can read them in place instead of running it.
    pub fn picked_columns(&self) -> Option<Vec<usize>> {
        if self.filter.is_some() {
            return None;
        }
        self.outputs
            .iter()
            .map(|o| match o {
                Output::Input { col, .. } => Some(*col),
                Output::Eval(_) => None,
            })
            .collect()
    }

    /// Whether `row` passes the filter (a calc without one passes every row), evaluated on
    /// the row in place when the row evaluator covers the filter, else over a one-row batch
    /// of a copy.
    pub fn test(&self, row: &[Value]) -> weir_engine::Result<bool> {
        if self.filter.is_none() {
            return Ok(true);
        }
        if let Some(f) = self.rows.as_ref().and_then(|p| p.filter.as_ref()) {
            return f.is_true(row).map_err(|e| eval_error(&e));
        }
        let rec = Rec {
            ts: weir_engine::time::NO_TIMESTAMP,
            value: Row(row.to_vec()),
        };
        Ok(!self.apply(vec![rec])?.is_empty())
    }

    /// Whether the output rows are the input rows as they are: no filter, every input column
    /// in order and nothing else (a projection of a source that already dropped the columns
    /// nobody reads), and every row as wide as the input schema.
    fn is_identity(&self, recs: &[Rec<Row>]) -> bool {
        let n = self.in_cols.len();
        self.filter.is_none()
            && self
                .in_place
                .as_ref()
                .is_some_and(|p| p.run_from == Some(0))
            && self.outputs.len() == n
            && recs.iter().all(|r| r.value.0.len() == n)
    }

    /// Whether the filter and the computed expressions are evaluated row by row (else over
    /// Arrow batches).
    pub fn evaluates_rows(&self) -> bool {
        self.rows.is_some()
    }

    /// The same calc, always evaluating over Arrow batches (to compare the two paths).
    pub fn over_arrow(mut self) -> Self {
        self.rows = None;
        self
    }

    /// Evaluates the calc; records keep their timestamps.
    pub fn apply(&self, recs: Vec<Rec<Row>>) -> weir_engine::Result<Vec<Rec<Row>>> {
        if recs.is_empty() || self.is_identity(&recs) {
            return Ok(recs);
        }
        match &self.rows {
            Some(p) => self.apply_rows(p, recs),
            None => self.apply_arrow(recs),
        }
    }

    fn apply_rows(
        &self,
        p: &RowProgram,
        mut recs: Vec<Rec<Row>>,
    ) -> weir_engine::Result<Vec<Rec<Row>>> {
        let mut failed = None;
        let mut values = Vec::with_capacity(p.evals.len());
        let mut spare = Vec::new();
        recs.retain_mut(|rec| {
            if failed.is_some() {
                return false;
            }
            let row = &rec.value.0;
            let kept = match &p.filter {
                Some(f) => f.is_true(row),
                None => Ok(true),
            };
            let evaluated = kept.and_then(|kept| {
                values.clear();
                if kept {
                    for e in &p.evals {
                        values.push(e.eval(row)?);
                    }
                }
                Ok(kept)
            });
            match evaluated {
                Ok(true) => {
                    self.output(&mut rec.value.0, &mut values, &mut spare);
                    true
                }
                Ok(false) => false,
                Err(e) => {
                    failed = Some(e);
                    false
                }
            }
        });
        match failed {
            Some(e) => Err(eval_error(&e)),
            None => Ok(recs),
        }
    }

    fn apply_arrow(&self, mut recs: Vec<Rec<Row>>) -> weir_engine::Result<Vec<Rec<Row>>> {
        let err = |e: &dyn std::fmt::Display| eval_error(e);
        let need_batch = self.filter.is_some() || !self.evals.is_empty();
        let batch = if need_batch {
            Some(
                rows_to_batch_columns(
                    &self.in_cols,
                    &self.in_schema,
                    recs.iter().map(|r| &r.value),
                    &self.used,
                )
                .map_err(|e| err(&e))?,
            )
        } else {
            None
        };
        // Which input rows pass the filter, and the batch of those rows.
        let (batch, mask): (_, Option<BooleanArray>) = match (&self.filter, batch) {
            (Some(f), Some(batch)) => {
                let mask = f
                    .evaluate(&batch)
                    .and_then(|v| v.into_array(batch.num_rows()))
                    .map_err(|e| err(&e))?;
                let mask = mask
                    .as_any()
                    .downcast_ref::<BooleanArray>()
                    .ok_or_else(|| {
                        weir_engine::Error::User("WHERE condition is not BOOLEAN".into())
                    })?
                    .clone();
                let all = mask.true_count() == batch.num_rows();
                let batch = if self.evals.is_empty() || all {
                    batch
                } else {
                    arrow::compute::filter_record_batch(&batch, &mask).map_err(|e| err(&e))?
                };
                (Some(batch), Some(mask))
            }
            (_, batch) => (batch, None),
        };
        let mut columns = Vec::with_capacity(self.evals.len());
        if let Some(batch) = &batch {
            for (e, ty) in self.evals.iter() {
                let a = e
                    .evaluate(batch)
                    .and_then(|v| v.into_array(batch.num_rows()))
                    .map_err(|e| err(&e))?;
                columns.push(ValueReader::new(&a, *ty).map_err(|e| err(&e))?);
            }
        }
        let mut values = Vec::with_capacity(columns.len());
        let mut spare = Vec::new();
        // `i` counts input rows, `j` the rows that passed (the filtered batch's rows).
        let (mut i, mut j) = (0, 0);
        recs.retain_mut(|rec| {
            // NULL counts as false, as in SQL (and in Arrow's filter kernel).
            let kept = mask.as_ref().is_none_or(|m| m.is_valid(i) && m.value(i));
            i += 1;
            if !kept {
                return false;
            }
            values.clear();
            values.extend(columns.iter().map(|c| c.get(j)));
            j += 1;
            self.output(&mut rec.value.0, &mut values, &mut spare);
            true
        });
        Ok(recs)
    }

    /// Turns `input` into the output row, `values` holding the evaluated expressions. The
    /// row keeps its allocation where it is large enough; `spare` is scratch space that is
    /// passed from row to row.
    fn output(&self, input: &mut Vec<Value>, values: &mut Vec<Value>, spare: &mut Vec<Value>) {
        if let Some(plan) = self.in_place.as_deref() {
            if input.len() < self.in_cols.len() {
                input.resize_with(self.in_cols.len(), || Value::Null);
            }
            // Only columns, a run of them: cut to it.
            if let Some(start) = plan.run_from {
                input.truncate(start + plan.width);
                input.drain(..start);
                return;
            }
            // Output k comes from column c >= k, or is an evaluated value: what a swap or a
            // write replaces at k is read by no later output (they read columns after c, at
            // positions after k, untouched so far). Outputs already in place are skipped; an
            // evaluated value past the row's end is the next to append (the row is as wide as
            // the input, and positions past it are all evaluated).
            let mut e = 0;
            for &(k, c) in &plan.steps {
                if c == EVALUATED {
                    let v = values.get_mut(e).map(std::mem::take).unwrap_or_default();
                    e += 1;
                    match input.get_mut(k) {
                        Some(slot) => *slot = v,
                        None => input.push(v),
                    }
                } else {
                    input.swap(k, c);
                }
            }
            input.truncate(plan.width);
            values.clear();
            return;
        }
        spare.clear();
        for o in self.outputs.iter() {
            spare.push(match *o {
                Output::Input { col, take: true } => input
                    .get_mut(col)
                    .map(std::mem::take)
                    .unwrap_or(Value::Null),
                Output::Input { col, take: false } => {
                    input.get(col).cloned().unwrap_or(Value::Null)
                }
                Output::Eval(n) => std::mem::take(&mut values[n]),
            });
        }
        // The output row takes the scratch vector; the input's becomes the next scratch.
        std::mem::swap(input, spare);
    }
}

/// How a calc makes its output row from the input row in place. Per output the plan is an
/// input column, or [`EVALUATED`] for the next evaluated value (in order), with the input
/// columns in increasing order and none before its own position (columns kept, dropped and
/// computed ones inserted or appended, nothing repeated or moved up). Each output position
/// then takes its value by a swap or a write, and the row is cut to `width`.
struct InPlace {
    /// How many outputs there are.
    width: usize,
    /// `Some(start)` when the outputs are the input columns `start..` in order and nothing
    /// else (the row is cut to them).
    run_from: Option<usize>,
    /// The plan's entries `(k, c)` that change the row (`c != k`), in order; an output that
    /// is its own input column needs no step.
    steps: Vec<(usize, usize)>,
}

/// In a calc's in-place plan: the output is the next evaluated value.
const EVALUATED: usize = usize::MAX;

fn eval_error(e: &dyn std::fmt::Display) -> weir_engine::Error {
    weir_engine::Error::User(format!("SQL evaluation failed: {e}"))
}

/// `true` if the array is boolean (used to check WHERE and FILTER conditions).
pub fn is_boolean(ty: SqlType) -> bool {
    ty == SqlType::Boolean
}
