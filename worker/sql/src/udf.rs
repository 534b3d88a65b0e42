//! Scalar user-defined functions (UDFs) written in Rust: the [`Registry`] a worker build fills
//! with its functions, callable by name from SQL and mappable to other names with
//! `CREATE TEMPORARY FUNCTION`; and `PROCTIME()`, Weir's own processing-time function.
//!
//! Functions are evaluated over Arrow batches through DataFusion's `ScalarUDF` machinery:
//! a closure over [`Value`]s (with declared argument and return types) is wrapped in a
//! `ScalarUDF` that converts a batch's columns to rows and back; a full DataFusion
//! [`ScalarUDF`] is used as it is (vectorised).
//!
//! Every process that plans a job must use the same registry: the `weir` binary registers its
//! functions in one place and plans with them in `weir run`, in the JobManager and in every
//! TaskManager, so a script calling a UDF runs the same anywhere.
//!
//! ```
//! use weir_engine::api::StreamExecutionEnvironment;
//! use weir_sql::udf::Registry;
//! use weir_sql::{SqlType, Value};
//!
//! let mut udfs = Registry::new();
//! udfs.register_string_fn("shout", |s| format!("{}!", s.to_uppercase())).unwrap();
//! udfs.register_scalar("add_tax", &[SqlType::Double], SqlType::Double, |args| {
//!     match &args[0] {
//!         Value::Double(d) => Value::Double(d * 1.2),
//!         _ => Value::Null,
//!     }
//! }).unwrap();
//! let env = StreamExecutionEnvironment::new();
//! weir_sql::plan_with_udfs(&env, "
//!   CREATE TABLE t (n BIGINT) WITH ('connector' = 'datagen', 'number-of-rows' = '3');
//!   CREATE TABLE out (s STRING, p DOUBLE) WITH ('connector' = 'blackhole');
//!   INSERT INTO out SELECT shout(CAST(n AS STRING)), add_tax(n) FROM t;
//! ", &udfs).unwrap();
//! env.execute("udfs").unwrap();
//! ```

use crate::error::SqlError;
use crate::expr::Functions;
use crate::parse::{Statement, err_here, single_ident};
use crate::value::{Column, Row, SqlType, Value, append_column, arrow_schema, rows_to_batch};
use arrow::array::{ArrayRef, TimestampMillisecondArray};
use arrow::datatypes::{DataType, TimeUnit};
use datafusion_common::{Result as DfResult, exec_err, plan_err};
use datafusion_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use sqlparser::ast::{self, Ident, Spanned, Visit, Visitor};
use sqlparser::keywords::Keyword;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Span, Token};
use std::collections::BTreeMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::ControlFlow;
use std::sync::Arc;

/// Why a function could not be registered.
#[derive(Debug, thiserror::Error)]
pub enum UdfError {
    /// Two functions under one name.
    #[error("a function named '{name}' is already registered; give one of them another name")]
    Duplicate {
        /// The name.
        name: String,
    },
    /// The name is taken by a built-in function.
    #[error(
        "'{name}' is a built-in function of Weir SQL; register the UDF under another name (a script can still map '{name}' to it with CREATE TEMPORARY SYSTEM FUNCTION)"
    )]
    Builtin {
        /// The name.
        name: String,
    },
    /// The name could not be written in SQL without quotes.
    #[error(
        "'{name}' is not a valid function name: use ASCII letters, digits and '_', starting with a letter or '_'"
    )]
    InvalidName {
        /// The name.
        name: String,
    },
}

/// The scalar functions a worker build adds to SQL, by name (lower case).
#[derive(Clone, Default)]
pub struct Registry {
    functions: BTreeMap<String, Arc<ScalarUDF>>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.functions.keys()).finish()
    }
}

/// Functions Weir SQL resolves itself (aggregates, group windows, Flink names), which a UDF
/// cannot take.
const RESERVED: &[&str] = &[
    "count",
    "sum",
    "avg",
    "min",
    "max",
    "tumble",
    "hop",
    "session",
    "cumulate",
    "tumble_start",
    "tumble_end",
    "tumble_rowtime",
    "hop_start",
    "hop_end",
    "hop_rowtime",
    "session_start",
    "session_end",
    "session_rowtime",
    "to_timestamp_ltz",
    "proctime",
];

/// Whether `name` (lower case) is a function of Weir SQL itself: DataFusion's library,
/// aggregates, group windows, `PROCTIME`.
pub fn is_builtin(name: &str) -> bool {
    RESERVED.contains(&name) || Functions::default().is_builtin(name)
}

impl Registry {
    /// An empty registry (SQL's built-in functions are always there).
    pub fn new() -> Self {
        Self::default()
    }

    /// The registered names, sorted.
    pub fn names(&self) -> Vec<String> {
        self.functions.keys().cloned().collect()
    }

    /// The function registered as `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&Arc<ScalarUDF>> {
        self.functions.get(&name.to_ascii_lowercase())
    }

    /// Registers a row-at-a-time function `name(args…) -> ret`. Arguments arrive converted to
    /// the declared types (a BIGINT argument widens to a declared DOUBLE), NULL as
    /// [`Value::Null`]; the function must return a value of type `ret` or `Value::Null`.
    /// Calls with other argument counts or types fail when the script is planned.
    ///
    /// Functions must be deterministic: a job restored from a checkpoint replays records
    /// through them and relies on getting the same results.
    pub fn register_scalar<F>(
        &mut self,
        name: &str,
        args: &[SqlType],
        ret: SqlType,
        f: F,
    ) -> Result<&mut Self, UdfError>
    where
        F: Fn(&[Value]) -> Value + Send + Sync + 'static,
    {
        let name = Self::check_name(name)?;
        let udf = RowUdf {
            name: name.clone(),
            signature: Signature::user_defined(Volatility::Immutable),
            args: args.to_vec(),
            ret,
            f: Arc::new(f),
        };
        self.insert(name, ScalarUDF::new_from_impl(udf))
    }

    /// Registers `name(STRING) -> STRING` from a closure over the string; NULL gives NULL.
    pub fn register_string_fn<F>(&mut self, name: &str, f: F) -> Result<&mut Self, UdfError>
    where
        F: Fn(&str) -> String + Send + Sync + 'static,
    {
        self.register_scalar(
            name,
            &[SqlType::String],
            SqlType::String,
            move |args| match args {
                [Value::Str(s)] => Value::Str(f(s)),
                _ => Value::Null,
            },
        )
    }

    /// Registers a DataFusion [`ScalarUDF`] under its name: a vectorised function over whole
    /// Arrow arrays, which declares and checks its own signature. Its return type must be one
    /// Weir SQL carries (BOOLEAN, integers, floating point, strings, timestamps).
    pub fn register_udf(&mut self, udf: ScalarUDF) -> Result<&mut Self, UdfError> {
        let name = Self::check_name(udf.name())?;
        self.insert(name, udf)
    }

    fn check_name(name: &str) -> Result<String, UdfError> {
        let valid = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(UdfError::InvalidName { name: name.into() });
        }
        let lower = name.to_ascii_lowercase();
        if is_builtin(&lower) {
            return Err(UdfError::Builtin { name: lower });
        }
        Ok(lower)
    }

    fn insert(&mut self, name: String, udf: ScalarUDF) -> Result<&mut Self, UdfError> {
        if self.functions.contains_key(&name) {
            return Err(UdfError::Duplicate { name });
        }
        self.functions.insert(name, Arc::new(udf));
        Ok(self)
    }
}

type RowFn = Arc<dyn Fn(&[Value]) -> Value + Send + Sync>;

/// A row-at-a-time Rust closure with declared argument and return types, as a DataFusion
/// scalar function.
pub(crate) struct RowUdf {
    name: String,
    signature: Signature,
    args: Vec<SqlType>,
    ret: SqlType,
    f: RowFn,
}

impl fmt::Debug for RowUdf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.describe())
    }
}

impl PartialEq for RowUdf {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && Arc::ptr_eq(&self.f, &other.f)
    }
}
impl Eq for RowUdf {}

impl Hash for RowUdf {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

impl RowUdf {
    /// `name(STRING, BIGINT) -> STRING`
    fn describe(&self) -> String {
        format!(
            "{}({}) -> {}",
            self.name,
            self.args
                .iter()
                .map(|t| t.sql_name())
                .collect::<Vec<_>>()
                .join(", "),
            self.ret.sql_name()
        )
    }
}

impl ScalarUDFImpl for RowUdf {
    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(self.ret.arrow())
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> DfResult<Vec<DataType>> {
        // The planner checked each call against the declared types (check_calls) with the
        // position of the call; this only tells DataFusion what to cast to.
        if arg_types.len() != self.args.len() {
            return plan_err!(
                "{} takes {} arguments, not {}",
                self.describe(),
                self.args.len(),
                arg_types.len()
            );
        }
        Ok(self.args.iter().map(|t| t.arrow()).collect())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let n = args.number_rows;
        let mut rows: Vec<Row> = (0..n)
            .map(|_| Row(Vec::with_capacity(self.args.len())))
            .collect();
        for (a, ty) in args.args.into_iter().zip(&self.args) {
            append_column(&a.into_array(n)?, *ty, &mut rows)?;
        }
        let mut out = Vec::with_capacity(n);
        for r in &rows {
            let v = (self.f)(&r.0);
            let v = match (v, self.ret) {
                (Value::Int(i), SqlType::Double) => Value::Double(i as f64),
                // A FLOAT for a DOUBLE widens; a DOUBLE for a FLOAT rounds, as Java's casts.
                (Value::Float(f), SqlType::Double) => Value::Double(f64::from(f)),
                (Value::Double(d), SqlType::Float) => Value::Float(d as f32),
                (d @ Value::Decimal(..), SqlType::Double) => {
                    d.as_f64().map_or(Value::Null, Value::Double)
                }
                // A DECIMAL of another scale, or an integer, as the declared DECIMAL(p, s):
                // rounded HALF_UP, NULL where it does not fit (as a CAST does).
                (d @ (Value::Int(_) | Value::Decimal(..)), SqlType::Decimal(p, s)) => d
                    .as_decimal()
                    .and_then(|(x, from)| crate::decimal::to_type(x, from, p, s))
                    .map_or(Value::Null, |x| Value::Decimal(x, s)),
                // As Java narrows a `long` returned for an `int`.
                (Value::Int(i), t) if t.is_integer() => Value::Int(t.wrap(i)),
                (v @ Value::Null, _)
                | (v @ Value::Bool(_), SqlType::Boolean)
                | (v @ Value::Int(_), SqlType::BigInt)
                | (v @ Value::Double(_), SqlType::Double)
                | (v @ Value::Str(_), SqlType::String)
                | (v @ Value::Ts(_), SqlType::Timestamp)
                | (v @ Value::Float(_), SqlType::Float)
                | (v @ Value::Date(_), SqlType::Date)
                | (v @ Value::Time(..), SqlType::Time(_))
                | (v @ Value::Bytes(_), SqlType::Bytes) => v,
                (v, _) => {
                    return exec_err!(
                        "UDF {} returned {v:?}, which is not a {}",
                        self.describe(),
                        self.ret.sql_name()
                    );
                }
            };
            out.push(Row(vec![v]));
        }
        let col = [Column {
            name: "out".into(),
            ty: self.ret,
        }];
        let batch = rows_to_batch(&col, &arrow_schema(&col), out.iter())?;
        Ok(ColumnarValue::Array(batch.column(0).clone()))
    }
}

/// `PROCTIME()`: the wall clock (UTC epoch milliseconds) when a batch is evaluated.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct ProcTime {
    signature: Signature,
}

impl ProcTime {
    pub(crate) fn udf() -> ScalarUDF {
        ScalarUDF::new_from_impl(ProcTime {
            signature: Signature::nullary(Volatility::Volatile),
        })
    }
}

impl ScalarUDFImpl for ProcTime {
    fn name(&self) -> &str {
        "proctime"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Timestamp(TimeUnit::Millisecond, None))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let now = weir_engine::time::now_ms();
        let a: ArrayRef = Arc::new(TimestampMillisecondArray::from(vec![now; args.number_rows]));
        Ok(ColumnarValue::Array(a))
    }
}

/// Whether `e` is a call of `PROCTIME()`.
pub fn is_proctime_call(e: &ast::Expr) -> bool {
    matches!(e, ast::Expr::Function(f) if f.name.to_string().eq_ignore_ascii_case("proctime"))
}

/// Checks every call of a row-at-a-time UDF in `e` against its declared argument types, so a
/// wrong call fails at its own `line:column` with the function's signature.
pub(crate) fn check_calls(funcs: &Functions, e: &ast::Expr, cols: &[Column]) -> crate::Result<()> {
    struct Check<'a> {
        funcs: &'a Functions,
        cols: &'a [Column],
    }
    impl Visitor for Check<'_> {
        type Break = SqlError;
        fn pre_visit_expr(&mut self, e: &ast::Expr) -> ControlFlow<SqlError> {
            let ast::Expr::Function(f) = e else {
                return ControlFlow::Continue(());
            };
            let called = f.name.to_string();
            let Some(udf) = self.funcs.user_function(&called.to_ascii_lowercase()) else {
                return ControlFlow::Continue(());
            };
            let inner: &dyn std::any::Any = udf.inner().as_ref();
            let Some(row) = inner.downcast_ref::<RowUdf>() else {
                return ControlFlow::Continue(()); // vectorised: DataFusion checks its signature
            };
            let mut types = Vec::new();
            let args = match &f.args {
                ast::FunctionArguments::None => Vec::new(),
                ast::FunctionArguments::List(l) => l.args.iter().collect(),
                ast::FunctionArguments::Subquery(_) => {
                    return ControlFlow::Break(SqlError::at(
                        e.span(),
                        "subqueries in expressions are not supported yet",
                    ));
                }
            };
            for a in args {
                let ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(a)) = a else {
                    return ControlFlow::Break(SqlError::at(
                        a.span(),
                        format!(
                            "{called}: only positional arguments are supported ({})",
                            row.describe()
                        ),
                    ));
                };
                match crate::expr::compile(self.funcs, a, self.cols) {
                    Ok(c) => types.push((c.ty, is_null_literal(a))),
                    Err(err) => return ControlFlow::Break(err),
                }
            }
            let fits = types.len() == row.args.len()
                && types.iter().zip(&row.args).all(|((got, null), want)| {
                    *null || got == want || crate::plan::widens(*got, *want)
                });
            if !fits {
                return ControlFlow::Break(SqlError::at(
                    e.span(),
                    format!(
                        "{called}({}) does not match the function's signature {}{}",
                        types
                            .iter()
                            .map(|(t, _)| t.sql_name())
                            .collect::<Vec<_>>()
                            .join(", "),
                        row.describe(),
                        if types.len() == row.args.len() {
                            "; add a CAST"
                        } else {
                            ""
                        }
                    ),
                ));
            }
            ControlFlow::Continue(())
        }
    }
    match e.visit(&mut Check { funcs, cols }) {
        ControlFlow::Break(err) => Err(err),
        ControlFlow::Continue(()) => Ok(()),
    }
}

fn is_null_literal(e: &ast::Expr) -> bool {
    matches!(e, ast::Expr::Value(v) if v.value == ast::Value::Null)
}

/// `CREATE TEMPORARY [SYSTEM] FUNCTION [IF NOT EXISTS] name AS 'implementation'
/// [LANGUAGE RUST]`.
#[derive(Debug, Clone)]
pub struct FunctionDef {
    /// The SQL name.
    pub name: Ident,
    /// The registered function it calls.
    pub implementation: String,
    /// Where the implementation is written (for errors).
    pub implementation_span: Span,
    /// `SYSTEM`: shadows a built-in function of the same name.
    pub system: bool,
    /// `IF NOT EXISTS`
    pub if_not_exists: bool,
}

/// What Flink users write to load UDFs from elsewhere, which Weir cannot do.
const FOREIGN_UDFS: &str = "Weir runs Rust UDFs registered in the worker build (see docs/sql.md, \"User-defined functions\"); map a SQL name to one with CREATE TEMPORARY FUNCTION name AS 'registered_name'";

/// Parses the rest of `CREATE [TEMPORARY [SYSTEM]] FUNCTION …` (after `FUNCTION`).
pub(crate) fn parse_create_function(
    p: &mut Parser<'_>,
    start: Span,
    temporary: bool,
    system: bool,
) -> crate::Result<Statement> {
    if !temporary {
        return Err(SqlError::at(
            start,
            "CREATE FUNCTION (a catalog function) is not supported: Weir SQL has no persistent catalog; use CREATE TEMPORARY FUNCTION",
        ));
    }
    let if_not_exists = p.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    let name = single_ident(p, "function")?;
    p.expect_keyword(Keyword::AS)
        .map_err(SqlError::from_parser)?;
    let implementation_span = p.peek_token_ref().span;
    let implementation = match p.next_token().token {
        Token::SingleQuotedString(s) | Token::DoubleQuotedString(s) => s,
        Token::Word(w) => w.value,
        other => {
            return Err(SqlError::at(
                implementation_span,
                format!(
                    "expected the registered function to call, as in AS 'enrich_user', found '{other}'"
                ),
            ));
        }
    };
    if p.parse_keyword(Keyword::LANGUAGE) {
        let at = p.peek_token_ref().span;
        let language = p.next_token().to_string();
        if !language.eq_ignore_ascii_case("rust") {
            return Err(SqlError::at(
                at,
                format!("LANGUAGE {language} is not supported: {FOREIGN_UDFS}"),
            ));
        }
    }
    if p.peek_keyword(Keyword::USING) {
        return Err(err_here(
            p,
            format!("USING JAR is not supported: {FOREIGN_UDFS}"),
        ));
    }
    Ok(Statement::CreateFunction(Box::new(FunctionDef {
        name,
        implementation,
        implementation_span,
        system,
        if_not_exists,
    })))
}

/// Parses the rest of `DROP …` (after `DROP`): only temporary functions can be dropped.
pub(crate) fn parse_drop_function(p: &mut Parser<'_>, start: Span) -> crate::Result<Statement> {
    let temporary = p.parse_keyword(Keyword::TEMPORARY);
    let system = temporary && p.parse_keyword(Keyword::SYSTEM);
    if !p.parse_keyword(Keyword::FUNCTION) {
        return Err(SqlError::at(
            start,
            "only DROP TEMPORARY [SYSTEM] FUNCTION is supported; tables and views live as long as their script",
        ));
    }
    if !temporary {
        return Err(SqlError::at(
            start,
            "DROP FUNCTION (a catalog function) is not supported: use DROP TEMPORARY FUNCTION",
        ));
    }
    let if_exists = p.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
    let name = single_ident(p, "function")?;
    Ok(Statement::DropFunction {
        name,
        system,
        if_exists,
    })
}
