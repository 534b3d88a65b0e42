//! Plans statements into engine operators: sources with computed columns and watermarks,
//! Calc (filter + projection) over Arrow batches, window aggregates (group windows, window
//! TVFs and cascades, see tvf.rs) on the engine's window operator (keyed state), window joins
//! (window_join.rs) and sinks. Builds an EXPLAIN tree as it goes.

use crate::agg::{AggCall, AggKind, MergePartials, Partial, SqlAggregate};
use crate::changelog::{ChangeRow, KIND};
use crate::connectors::{Connectors, Options, PhysicalColumn};
use crate::error::{Result, SqlError};
use crate::expr::{Calc, Functions, compile};
use crate::parse::{ColumnKind, Statement, TableDef};
use crate::tvf::WindowProps;
use crate::value::{Column, EventTime, Row, SqlType, Value, write_key};
use crate::window_join::Scope;
use datafusion_physical_expr::PhysicalExpr;
use sqlparser::ast::{
    self, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, GroupByExpr, Ident, Query,
    SelectItem, SetExpr, Spanned, TableFactor, VisitMut, Visitor, VisitorMut,
};
use sqlparser::tokenizer::Span;
use std::collections::{HashMap, HashSet};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;
use weir_engine::api::{Collector, DataStream, StreamExecutionEnvironment};
use weir_engine::runtime::Rec;
use weir_engine::time::{NO_TIMESTAMP, WatermarkStrategy};
use weir_engine::window::{TimeWindow, WindowSpec};

mod ctas;
mod functions;
mod rank;
mod regular_join;

/// The normalized name of an identifier: unquoted identifiers are case-insensitive.
pub fn norm(id: &Ident) -> String {
    if id.quote_style.is_some() {
        id.value.clone()
    } else {
        id.value.to_lowercase()
    }
}

/// A "column not found" error whose list of columns lies within the columns of tables read
/// only in part (`projected`): the list names every column of those tables, not only the
/// ones the script reads (which are all the rows carry).
fn with_table_columns(e: SqlError, projected: &[(String, Vec<String>)]) -> SqlError {
    let SqlError::At {
        line,
        column,
        message,
    } = e
    else {
        return e;
    };
    let rewritten = (|| {
        let (head, marker, list) = [
            "; available columns: ",
            "' has columns: ",
            "; its columns: ",
        ]
        .into_iter()
        .find_map(|m| message.split_once(m).map(|(h, l)| (h, m, l)))?;
        if !head.starts_with("column '") {
            return None;
        }
        let listed: Vec<&str> = list
            .split(", ")
            .map(|a| a.rsplit('.').next().unwrap_or(a))
            .collect();
        let has = |cols: &[String], a: &str| cols.iter().any(|c| c == a);
        let tables: Vec<&(String, Vec<String>)> = projected
            .iter()
            .filter(|(_, cols)| listed.iter().any(|a| has(cols, a)))
            .collect();
        if tables.is_empty() || !listed.iter().all(|a| tables.iter().any(|(_, c)| has(c, a))) {
            return None;
        }
        Some(match (marker, tables.as_slice()) {
            // One input's columns ("'b' has columns: …"): all of its table's.
            (m, [(_, cols)]) if m != "; available columns: " => {
                format!("{head}{m}{}", cols.join(", "))
            }
            _ => {
                let lists: Vec<String> = tables
                    .iter()
                    .map(|(t, cols)| format!("table '{t}' has columns: {}", cols.join(", ")))
                    .collect();
                format!("{head}; {}", lists.join("; "))
            }
        })
    })();
    SqlError::At {
        line,
        column,
        message: rewritten.unwrap_or(message),
    }
}

/// A planned stream: the engine stream, its columns, its time attribute and its plan text.
#[derive(Clone)]
pub(crate) struct Stream {
    pub(crate) ds: DataStream<Row>,
    pub(crate) cols: Vec<Column>,
    /// Index of the event-time attribute column (declared by WATERMARK FOR), if any.
    pub(crate) rowtime: Option<usize>,
    /// Index of the processing-time attribute column (`pt AS PROCTIME()`), if any.
    pub(crate) proctime: Option<usize>,
    /// EXPLAIN lines, root first, indented by depth.
    pub(crate) plan: Vec<String>,
    /// The window each row belongs to, when the rows come from a window TVF, a window
    /// aggregate or a window join: its `window_start`/`window_end` columns.
    pub(crate) window: Option<WindowProps>,
}

/// Every name the statements' queries, computed columns and watermarks mention (the last
/// part of a qualified name too), lower-cased; `None` when a query selects `*` or `t.*`.
/// A table column outside this set cannot be read by the script.
fn referenced_names(stmts: &[Statement]) -> Option<HashSet<String>> {
    struct Names(HashSet<String>);
    impl Visitor for Names {
        type Break = ();
        fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
            match e {
                Expr::Identifier(id) => {
                    self.0.insert(id.value.to_lowercase());
                }
                Expr::CompoundIdentifier(ids) => {
                    self.0.extend(ids.iter().map(|id| id.value.to_lowercase()));
                }
                _ => {}
            }
            ControlFlow::Continue(())
        }
        fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
            fn star(body: &SetExpr) -> bool {
                match body {
                    SetExpr::Select(s) => s.projection.iter().any(|it| {
                        matches!(
                            it,
                            SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..)
                        )
                    }),
                    SetExpr::SetOperation { left, right, .. } => star(left) || star(right),
                    _ => false,
                }
            }
            if star(&q.body) {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        }
    }
    fn visit(s: &Statement, v: &mut Names) -> ControlFlow<()> {
        match s {
            Statement::CreateTable(def) => table(def, v),
            Statement::CreateTableAs { def, query } => {
                table(def, v)?;
                ast::Visit::visit(query.as_ref(), v)
            }
            Statement::CreateView { query, .. }
            | Statement::Insert { query, .. }
            | Statement::Select(query) => ast::Visit::visit(query.as_ref(), v),
            Statement::Explain(inner) => visit(inner, v),
            Statement::CreateFunction(_) | Statement::DropFunction { .. } => {
                ControlFlow::Continue(())
            }
        }
    }
    fn table(def: &TableDef, v: &mut Names) -> ControlFlow<()> {
        for c in &def.columns {
            if let ColumnKind::Computed(e) = &c.kind {
                ast::Visit::visit(e.as_ref(), v)?;
            }
        }
        if let Some(w) = &def.watermark {
            v.0.insert(w.column.value.to_lowercase());
            ast::Visit::visit(&w.expr, v)?;
        }
        ControlFlow::Continue(())
    }
    let mut v = Names(HashSet::new());
    for s in stmts {
        if visit(s, &mut v).is_break() {
            return None;
        }
    }
    Some(v.0)
}

/// A window aggregate's compiled parts: the pre-projection (keys, then each call's argument
/// and filter), the calls, the key columns, and their EXPLAIN text.
struct WindowAggParts {
    pre: Vec<(Arc<dyn PhysicalExpr>, SqlType)>,
    agg_calls: Vec<AggCall>,
    key_names: Vec<String>,
    key_types: Vec<SqlType>,
    pre_shown: Vec<String>,
    shown_calls: Vec<String>,
}

/// Gives each row of a cascade's input the time of the window it carries (`end`: the column
/// of the window's end): the window's last millisecond.
fn time_from_window_end(recs: &mut [Rec<Row>], end: usize) {
    for r in recs {
        if let Some(Value::Ts(e)) = r.value.0.get(end) {
            r.ts = e - 1;
        }
    }
}

pub(crate) fn nest(title: String, child: &[String]) -> Vec<String> {
    let mut v = vec![title];
    v.extend(child.iter().map(|l| format!("  {l}")));
    v
}

struct TableEntry {
    def: TableDef,
    physical: Vec<PhysicalColumn>,
}

/// Plans a script's statements into one job on `env`.
pub struct Planner<'e> {
    pub(crate) env: &'e StreamExecutionEnvironment,
    pub(crate) funcs: Functions,
    /// Registered UDFs and the script's temporary functions.
    pub(crate) udfs: functions::Udfs,
    tables: HashMap<String, TableEntry>,
    views: HashMap<String, Query>,
    /// Index of the statement being planned and operators planned in it (for uids).
    stmt: usize,
    op: usize,
    /// EXPLAIN output of every sink, in statement order.
    pub plans: Vec<String>,
    /// EXPLAIN statements' output.
    pub explained: Vec<String>,
    /// Number of INSERT/SELECT statements that will run.
    pub pipelines: usize,
    /// The sink's column names, for the outermost query of an INSERT: its output columns
    /// take them (INSERT maps columns by position).
    sink_names: Option<Vec<String>>,
    /// Streams planned ahead (joins), read by the rewritten query that names them.
    pub(crate) planned: HashMap<String, Stream>,
    /// Tables already read: a table referenced again (a self-join, q5's two aggregates over
    /// `bid`, several INSERTs of a statement set) reads the same source, as Flink's sub-plan
    /// reuse does, instead of decoding its input a second time.
    scans: HashMap<String, (Stream, String)>,
    /// Window aggregates planned so far, by input stream and aggregate, with their uid.
    window_aggs: HashMap<String, (Stream, String)>,
    /// The (lower-cased) names the script's queries and table definitions mention; a
    /// source column not among them is never read. `None`: every column is (a query
    /// selects `*`, or the statements were not seen as a whole).
    referenced: Option<HashSet<String>>,
    /// The tables read so far of which the script reads only some columns, with all their
    /// column names: a "column not found" message lists those, not just the read ones.
    projected: Vec<(String, Vec<String>)>,
    /// The connectors `'connector' = '…'` can name.
    pub(crate) connectors: Arc<Connectors>,
}

/// Whether a query's column of type `from` may be written to a column of type `to` (an
/// integer into a wider integer or DOUBLE, as Flink's implicit widening for INSERT; an
/// integer or DECIMAL into a DECIMAL, rounded HALF_UP to its scale and NULL where it does not
/// fit its precision, a DECIMAL into a DOUBLE, and a TIME into a TIME of any precision, cut
/// to its digits, as Flink's INSERT casts them).
pub(crate) fn widens(from: SqlType, to: SqlType) -> bool {
    if matches!(to, SqlType::Decimal(..)) && from.decimal().is_some()
        || matches!(
            (from, to),
            (SqlType::Decimal(..), SqlType::Double) | (SqlType::Time(_), SqlType::Time(_))
        )
    {
        return true;
    }
    let rank = |t: SqlType| match t {
        SqlType::TinyInt => Some(1),
        SqlType::SmallInt => Some(2),
        SqlType::Int => Some(3),
        SqlType::BigInt => Some(4),
        SqlType::Float => Some(5),
        SqlType::Double => Some(6),
        _ => None,
    };
    (from.is_integer() || from == SqlType::Float)
        && matches!((rank(from), rank(to)), (Some(f), Some(t)) if f < t)
}

/// Flink has no REAL type (its planner refuses it): the message for it.
pub(crate) const NO_REAL: &str =
    "type REAL is not supported (as in Flink); use FLOAT (32 bits) or DOUBLE";

pub(crate) fn sql_type(t: &ast::DataType, span: Span) -> Result<SqlType> {
    use ast::DataType as D;
    Ok(match t {
        D::Boolean | D::Bool => SqlType::Boolean,
        D::TinyInt(_) => SqlType::TinyInt,
        D::SmallInt(_) => SqlType::SmallInt,
        D::Int(_) | D::Integer(_) => SqlType::Int,
        D::BigInt(_) => SqlType::BigInt,
        D::Float(_) => SqlType::Float,
        D::Real => return Err(SqlError::at(span, NO_REAL)),
        D::Double(..) | D::DoublePrecision => SqlType::Double,
        D::Decimal(info) | D::Numeric(info) | D::Dec(info) => decimal_type(info, span)?,
        D::String(_)
        | D::Varchar(_)
        | D::Char(_)
        | D::Text
        | D::CharVarying(_)
        | D::Character(_) => SqlType::String,
        D::Timestamp(..) | D::Datetime(_) => SqlType::Timestamp,
        D::Date => SqlType::Date,
        D::Time(p, ast::TimezoneInfo::None | ast::TimezoneInfo::WithoutTimeZone) => {
            time_type(*p, span)?
        }
        // Flink's lengths of BINARY(n) and VARBINARY(n) are not kept: every byte string
        // is BYTES.
        D::Bytes(_) | D::Varbinary(_) | D::Binary(_) => SqlType::Bytes,
        D::Array(
            ast::ArrayElemTypeDef::AngleBracket(e) | ast::ArrayElemTypeDef::SquareBracket(e, None),
        ) => crate::nested::array_of(sql_type(e, span)?),
        D::Map(k, v) => crate::nested::map_of(sql_type(k, span)?, sql_type(v, span)?),
        // `ROW<a INT, b STRING>`, which `crate::parse` hands over as a STRUCT.
        D::Struct(fields, _) => crate::nested::row_of(
            fields
                .iter()
                .enumerate()
                .map(|(i, f)| {
                    let name = f
                        .field_name
                        .as_ref()
                        .map_or_else(|| format!("EXPR${i}"), |n| n.value.clone());
                    Ok((name, sql_type(&f.field_type, span)?))
                })
                .collect::<Result<Vec<_>>>()?,
        ),
        D::Custom(name, _) if name.to_string().eq_ignore_ascii_case("timestamp_ltz") => {
            SqlType::Timestamp
        }
        other => {
            return Err(SqlError::at(
                span,
                format!(
                    "type {other} is not supported yet; use BOOLEAN, INT/BIGINT, DOUBLE, STRING or TIMESTAMP(3)"
                ),
            ));
        }
    })
}

/// TIME and TIME(p) as Flink reads them (TIME is TIME(0); p is 0 to 9, and as in Flink a
/// TIME keeps at most milliseconds: TIME(6) and TIME(9) are TIME(3)).
pub(crate) fn time_type(p: Option<u64>, span: Span) -> Result<SqlType> {
    match p.unwrap_or(0) {
        p @ 0..=9 => Ok(SqlType::Time(p.min(3) as u8)),
        p => Err(SqlError::at(
            span,
            format!("TIME({p}): the precision of TIME must be between 0 and 9"),
        )),
    }
}

/// DECIMAL, DECIMAL(p) and DECIMAL(p, s) as Flink reads them (DECIMAL is DECIMAL(10, 0)).
fn decimal_type(info: &ast::ExactNumberInfo, span: Span) -> Result<SqlType> {
    let (p, s) = match *info {
        ast::ExactNumberInfo::None => (10, 0),
        ast::ExactNumberInfo::Precision(p) => (p, 0),
        ast::ExactNumberInfo::PrecisionAndScale(p, s) => (p, s),
    };
    let max = crate::decimal::MAX_PRECISION;
    if !(1..=u64::from(max)).contains(&p) || !(0..=p as i64).contains(&s) {
        return Err(SqlError::at(
            span,
            format!(
                "DECIMAL({p}, {s}) is not a valid type: the precision must be between 1 and \
                 {max}, the scale between 0 and the precision"
            ),
        ));
    }
    Ok(SqlType::Decimal(p as u8, s as u8))
}

/// `INTERVAL 'n' UNIT` in milliseconds, positive (window sizes, gaps).
pub fn interval_ms(e: &Expr) -> Result<i64> {
    let ms = non_negative_interval_ms(e)?;
    if ms == 0 {
        return Err(SqlError::at(e.span(), "the interval must be positive"));
    }
    Ok(ms)
}

/// `INTERVAL 'n' UNIT` in milliseconds, zero allowed (watermark delays).
pub fn non_negative_interval_ms(e: &Expr) -> Result<i64> {
    let bad = || {
        SqlError::at(
            e.span(),
            format!("expected an interval such as INTERVAL '1' MINUTE, found {e}"),
        )
    };
    let Expr::Interval(iv) = e else {
        return Err(bad());
    };
    let n: f64 = match iv.value.as_ref() {
        Expr::Value(v) => match &v.value {
            ast::Value::SingleQuotedString(s) | ast::Value::Number(s, _) => {
                s.trim().parse().map_err(|_| bad())?
            }
            _ => return Err(bad()),
        },
        _ => return Err(bad()),
    };
    let unit = match &iv.leading_field {
        Some(ast::DateTimeField::Millisecond | ast::DateTimeField::Milliseconds) => 1.0,
        Some(ast::DateTimeField::Second | ast::DateTimeField::Seconds) => 1_000.0,
        Some(ast::DateTimeField::Minute | ast::DateTimeField::Minutes) => 60_000.0,
        Some(ast::DateTimeField::Hour | ast::DateTimeField::Hours) => 3_600_000.0,
        Some(ast::DateTimeField::Day | ast::DateTimeField::Days) => 86_400_000.0,
        _ => return Err(bad()),
    };
    let ms = (n * unit).round() as i64;
    if ms < 0 {
        return Err(SqlError::at(e.span(), "the interval must not be negative"));
    }
    Ok(ms)
}

pub(crate) fn function_args(f: &ast::Function) -> Vec<&Expr> {
    match &f.args {
        FunctionArguments::List(l) => l
            .args
            .iter()
            .filter_map(|a| match a {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

pub(crate) fn fn_name(f: &ast::Function) -> String {
    f.name.to_string().to_ascii_lowercase()
}

fn output_name(item: &SelectItem, i: usize) -> Option<String> {
    match item {
        SelectItem::ExprWithAlias { alias, .. } => Some(norm(alias)),
        SelectItem::UnnamedExpr(Expr::Identifier(id)) => Some(norm(id)),
        SelectItem::UnnamedExpr(Expr::CompoundIdentifier(ids)) => ids.last().map(norm),
        SelectItem::UnnamedExpr(_) => Some(format!("EXPR${i}")),
        _ => None,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Win {
    Tumble(i64),
    Hop {
        slide: i64,
        size: i64,
    },
    Cumulate {
        step: i64,
        size: i64,
    },
    Session(i64),
    /// The window the input's rows already carry in their `window_start`/`window_end`
    /// columns (a cascade: a window aggregate over a window aggregate or window join).
    Inherited,
}

/// The local phase of a two-phase window aggregate: what its partial aggregates are of.
#[derive(Clone, Copy)]
enum Local {
    /// Slices of this many milliseconds.
    Slices(i64),
    /// The windows the rows carry in these columns (start, end): a cascade's.
    Windows(usize, usize),
}

impl Win {
    pub(crate) fn prefix(self) -> &'static str {
        match self {
            Win::Tumble(_) => "tumble",
            Win::Hop { .. } => "hop",
            Win::Cumulate { .. } => "cumulate",
            Win::Session(_) => "session",
            Win::Inherited => "cascade",
        }
    }
    pub(crate) fn describe(self) -> String {
        match self {
            Win::Tumble(s) => format!("TUMBLE(size={s} ms)"),
            Win::Hop { slide, size } => format!("HOP(slide={slide} ms, size={size} ms)"),
            Win::Cumulate { step, size } => format!("CUMULATE(step={step} ms, size={size} ms)"),
            Win::Session(g) => format!("SESSION(gap={g} ms)"),
            Win::Inherited => "the input's (window_start, window_end)".into(),
        }
    }
    pub(crate) fn spec(self) -> WindowSpec {
        let d = |ms: i64| Duration::from_millis(ms as u64);
        match self {
            Win::Tumble(s) => WindowSpec::tumbling(d(s)),
            Win::Hop { slide, size } => WindowSpec::sliding(d(size), d(slide)),
            Win::Cumulate { step, size } => WindowSpec::cumulating(d(size), d(step)),
            Win::Session(g) => WindowSpec::session(d(g)),
            // Rows carry their window and the timestamp window_end - 1 (see
            // aggregate_windows): a 1 ms window per (window_start, window_end) key fires
            // when the watermark passes that window's end, like the window itself.
            Win::Inherited => WindowSpec::tumbling(Duration::from_millis(1)),
        }
    }
    /// The slices of time the windows are unions of (the engine's alignment: from the epoch,
    /// no offset): a record's windows are exactly those of its slice's last millisecond.
    /// None for windows that are not fixed in time (sessions, a cascade's).
    pub(crate) fn slice(self) -> Option<i64> {
        match self {
            Win::Tumble(size) => Some(size),
            Win::Hop { slide, .. } => Some(slide),
            Win::Cumulate { step, .. } => Some(step),
            Win::Session(_) | Win::Inherited => None,
        }
    }
}

/// An aggregate call found in the SELECT list or HAVING.
pub(crate) struct FoundCall {
    pub(crate) kind: AggKind,
    pub(crate) distinct: bool,
    /// `None` for `COUNT(*)`.
    pub(crate) arg: Option<Expr>,
    /// `FILTER (WHERE …)`.
    pub(crate) filter: Option<Expr>,
}

/// Replaces aggregate calls, window auxiliary functions and group keys in the SELECT list
/// and HAVING with references to the window aggregate's output columns.
pub(crate) struct AggRewriter<'a> {
    /// `None` for a non-windowed GROUP BY.
    pub(crate) win: Option<Win>,
    pub(crate) keys: &'a [(String, String)],
    pub(crate) calls: Vec<FoundCall>,
    pub(crate) error: Option<SqlError>,
}

/// An aggregate's SELECT list and HAVING rewritten over its output ([`AggRewriter`]), and the
/// aggregate calls they make.
pub(crate) struct RewrittenAggregate {
    pub(crate) items: Vec<(String, Expr)>,
    pub(crate) having: Option<Expr>,
    pub(crate) calls: Vec<FoundCall>,
}

impl AggRewriter<'_> {
    /// Rewrites the (expanded) SELECT list and HAVING of an aggregate keyed by `keys`
    /// (`win`: `None` for a non-windowed GROUP BY).
    pub(crate) fn rewrite_select(
        win: Option<Win>,
        keys: &[(String, String)],
        items: &[(String, Expr)],
        having: Option<&Expr>,
    ) -> Result<RewrittenAggregate> {
        let mut rw = AggRewriter {
            win,
            keys,
            calls: Vec::new(),
            error: None,
        };
        let items = items
            .iter()
            .map(|(n, e)| Ok((n.clone(), rw.rewrite(e)?)))
            .collect::<Result<Vec<_>>>()?;
        let having = having.map(|h| rw.rewrite(h)).transpose()?;
        Ok(RewrittenAggregate {
            items,
            having,
            calls: rw.calls,
        })
    }

    /// `e` with its aggregate calls collected into `calls` and replaced, like its group keys,
    /// by references to the aggregate's output; the first error found, if any.
    pub(crate) fn rewrite(&mut self, e: &Expr) -> Result<Expr> {
        let mut e = e.clone();
        let _ = e.visit(self);
        match self.error.take() {
            Some(err) => Err(err),
            None => Ok(e),
        }
    }
}

impl VisitorMut for AggRewriter<'_> {
    type Break = ();
    fn pre_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<()> {
        let text = e.to_string();
        if let Some((_, col)) = self.keys.iter().find(|(k, _)| *k == text) {
            *e = Expr::Identifier(Ident::with_quote('"', col.clone()));
            return ControlFlow::Continue(());
        }
        let Expr::Function(f) = e else {
            return ControlFlow::Continue(());
        };
        let name = fn_name(f);
        let span = f.span();
        if f.over.is_some() {
            self.error = Some(SqlError::at(span, "OVER windows are not supported yet"));
            return ControlFlow::Break(());
        }
        let kind = match name.as_str() {
            "count" => Some(AggKind::Count),
            "sum" => Some(AggKind::Sum),
            "avg" => Some(AggKind::Avg),
            "min" => Some(AggKind::Min),
            "max" => Some(AggKind::Max),
            _ => None,
        };
        if let Some(kind) = kind {
            let (distinct, args) = match &f.args {
                FunctionArguments::List(l) => (
                    matches!(
                        l.duplicate_treatment,
                        Some(ast::DuplicateTreatment::Distinct)
                    ),
                    l.args.clone(),
                ),
                _ => (false, Vec::new()),
            };
            let arg = match args.as_slice() {
                [FunctionArg::Unnamed(FunctionArgExpr::Wildcard)] if kind == AggKind::Count => None,
                [FunctionArg::Unnamed(FunctionArgExpr::Expr(a))] => Some(a.clone()),
                _ => {
                    self.error = Some(SqlError::at(
                        span,
                        format!("{} takes exactly one argument", name.to_uppercase()),
                    ));
                    return ControlFlow::Break(());
                }
            };
            let filter = f.filter.as_deref().cloned();
            let idx = self.calls.len();
            self.calls.push(FoundCall {
                kind,
                distinct,
                arg,
                filter,
            });
            *e = Expr::Identifier(Ident::with_quote('"', format!("$agg{idx}")));
            return ControlFlow::Continue(());
        }
        let Some(win) = self.win else {
            return ControlFlow::Continue(());
        };
        let p = win.prefix();
        if let Some(which) = name.strip_prefix(p).and_then(|s| s.strip_prefix('_')) {
            let col = match which {
                "start" => "window_start",
                "end" => "window_end",
                "rowtime" => "window_time",
                _ => {
                    self.error = Some(SqlError::at(
                        span,
                        format!("{} is not supported", name.to_uppercase()),
                    ));
                    return ControlFlow::Break(());
                }
            };
            *e = Expr::Identifier(Ident::with_quote('"', col));
            return ControlFlow::Continue(());
        }
        if matches!(
            name.as_str(),
            "tumble_start"
                | "tumble_end"
                | "hop_start"
                | "hop_end"
                | "session_start"
                | "session_end"
        ) {
            self.error = Some(SqlError::at(
                span,
                format!(
                    "{} does not match the window of the GROUP BY ({})",
                    name.to_uppercase(),
                    win.describe()
                ),
            ));
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }
}

pub(crate) fn has_aggregate(items: &[SelectItem]) -> Option<Span> {
    struct Find(Option<Span>);
    impl VisitorMut for Find {
        type Break = ();
        fn pre_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<()> {
            if let Expr::Function(f) = e
                && f.over.is_none()
                && matches!(fn_name(f).as_str(), "count" | "sum" | "avg" | "min" | "max")
            {
                self.0 = Some(f.span());
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        }
    }
    let mut f = Find(None);
    for it in items {
        let mut it = it.clone();
        let _ = it.visit(&mut f);
        if f.0.is_some() {
            break;
        }
    }
    f.0
}

impl<'e> Planner<'e> {
    /// A planner adding operators to `env`.
    pub fn new(env: &'e StreamExecutionEnvironment) -> Self {
        Planner {
            env,
            funcs: Functions::default(),
            udfs: Default::default(),
            tables: HashMap::new(),
            views: HashMap::new(),
            stmt: 0,
            op: 0,
            plans: Vec::new(),
            explained: Vec::new(),
            pipelines: 0,
            sink_names: None,
            planned: HashMap::new(),
            scans: HashMap::new(),
            window_aggs: HashMap::new(),
            referenced: None,
            projected: Vec::new(),
            connectors: Arc::new(Connectors::builtin()),
        }
    }

    /// The same planner with `connectors` (the built-in ones and any registered outside
    /// weir-sql) instead of the built-in connectors only.
    pub fn with_connectors(mut self, connectors: Arc<Connectors>) -> Self {
        self.connectors = connectors;
        self
    }

    /// A WHERE clause compiled over `cols`; it must be BOOLEAN.
    pub(crate) fn where_condition(
        &self,
        filter: Option<&Expr>,
        cols: &[Column],
    ) -> Result<Option<Arc<dyn PhysicalExpr>>> {
        let Some(f) = filter else {
            return Ok(None);
        };
        let c = compile(&self.funcs, f, cols)?;
        if c.ty != SqlType::Boolean {
            return Err(SqlError::at(
                f.span(),
                format!("WHERE needs a BOOLEAN condition, not {}", c.ty.sql_name()),
            ));
        }
        Ok(Some(c.expr))
    }

    pub(crate) fn uid(&mut self, kind: &str) -> String {
        self.op += 1;
        format!("sql-{}-{}-{kind}", self.stmt, self.op)
    }

    /// Plans every statement of a script, in order.
    pub fn plan_script(&mut self, stmts: Vec<Statement>) -> Result<()> {
        self.referenced = referenced_names(&stmts);
        for (i, s) in stmts.into_iter().enumerate() {
            self.stmt = i + 1;
            self.op = 0;
            self.plan_statement(s)
                .map_err(|e| with_table_columns(e, &self.projected))?;
        }
        Ok(())
    }

    fn plan_statement(&mut self, s: Statement) -> Result<()> {
        match s {
            Statement::CreateTable(def) => self.create_table(*def),
            Statement::CreateView { name, query } => {
                let n = norm(&name);
                if self.tables.contains_key(&n) || self.views.contains_key(&n) {
                    return Err(SqlError::at(
                        name.span,
                        format!("a table or view named '{n}' already exists"),
                    ));
                }
                self.views.insert(n, *query);
                Ok(())
            }
            Statement::Insert { table, query } => {
                let text = self.insert(&table, &query)?;
                self.plans.push(text);
                self.pipelines += 1;
                Ok(())
            }
            Statement::Select(query) => {
                let text = self.select_to_print(&query)?;
                self.plans.push(text);
                self.pipelines += 1;
                Ok(())
            }
            Statement::CreateTableAs { def, query } => self.create_table_as(*def, &query),
            Statement::CreateFunction(def) => self.create_function(*def),
            Statement::DropFunction {
                name,
                system,
                if_exists,
            } => self.drop_function(&name, system, if_exists),
            Statement::Explain(inner) => {
                // Plan on a scratch environment: EXPLAIN does not run the statement.
                let scratch = StreamExecutionEnvironment::with_config(self.env.config());
                let mut sub = Planner::new(&scratch).with_connectors(self.connectors.clone());
                sub.tables = std::mem::take(&mut self.tables);
                sub.views = std::mem::take(&mut self.views);
                std::mem::swap(&mut sub.funcs, &mut self.funcs);
                std::mem::swap(&mut sub.udfs, &mut self.udfs);
                sub.stmt = self.stmt;
                let res = match *inner {
                    Statement::Insert { table, query } => sub.insert(&table, &query),
                    Statement::Select(query) => sub.select_to_print(&query),
                    _ => Ok(String::new()),
                };
                self.tables = std::mem::take(&mut sub.tables);
                self.views = std::mem::take(&mut sub.views);
                std::mem::swap(&mut sub.funcs, &mut self.funcs);
                std::mem::swap(&mut sub.udfs, &mut self.udfs);
                self.explained.push(res?);
                Ok(())
            }
        }
    }

    fn create_table(&mut self, def: TableDef) -> Result<()> {
        let n = norm(&def.name);
        if self.tables.contains_key(&n) || self.views.contains_key(&n) {
            return Err(SqlError::at(
                def.name.span,
                format!("a table or view named '{n}' already exists"),
            ));
        }
        let mut physical = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for c in &def.columns {
            if !seen.insert(norm(&c.ident)) {
                return Err(SqlError::at(
                    c.ident.span,
                    format!("column '{}' is declared twice", c.ident.value),
                ));
            }
            let (t, metadata, is_virtual) = match &c.kind {
                ColumnKind::Physical(t) => (t, None, false),
                ColumnKind::Metadata {
                    ty,
                    key,
                    is_virtual,
                } => (
                    ty,
                    Some(key.clone().unwrap_or_else(|| c.ident.value.clone())),
                    *is_virtual,
                ),
                ColumnKind::Computed(_) => continue,
            };
            physical.push(PhysicalColumn {
                col: Column {
                    name: norm(&c.ident),
                    ty: sql_type(t, c.ident.span)?,
                },
                field: c.ident.value.clone(),
                metadata,
                is_virtual,
                span: c.ident.span,
            });
        }
        for k in &def.primary_key {
            if !physical.iter().any(|c| c.col.name == norm(k)) {
                return Err(SqlError::at(
                    k.span,
                    format!(
                        "PRIMARY KEY column '{}' is not a physical column of table '{n}'",
                        k.value
                    ),
                ));
            }
        }
        if let Some(w) = &def.watermark
            && !def
                .columns
                .iter()
                .any(|c| norm(&c.ident) == norm(&w.column))
        {
            return Err(SqlError::at(
                w.column.span,
                format!(
                    "WATERMARK FOR '{}': no such column in table '{n}'",
                    w.column.value
                ),
            ));
        }
        self.connectors.validate(&Self::opts(&n, &def), &physical)?;
        self.tables.insert(n, TableEntry { def, physical });
        Ok(())
    }

    fn opts<'a>(name: &'a str, def: &'a TableDef) -> Options<'a> {
        Options {
            table: name,
            map: &def.options,
            spans: &def.option_spans,
            table_span: def.span,
            partition_keys: &def.partition_keys,
            primary_key: &def.primary_key,
            event_time: def.watermark.as_ref().map(|w| norm(&w.column)),
        }
    }

    /// Reads table `name`: source, computed columns, watermark.
    pub(crate) fn scan(&mut self, name: &str, span: Span) -> Result<Stream> {
        if let Some(s) = self.planned.remove(name) {
            return Ok(s);
        }
        let Some(entry) = self.tables.get(name) else {
            if let Some(q) = self.views.get(name).cloned() {
                let s = self.query(&q)?;
                return Ok(Stream {
                    plan: nest(format!("View: {name}"), &s.plan),
                    ..s
                });
            }
            let mut known: Vec<&String> = self.tables.keys().chain(self.views.keys()).collect();
            known.sort();
            return Err(SqlError::at(
                span,
                format!(
                    "table or view '{name}' not found; declared: {}",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known
                            .iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                ),
            ));
        };
        if let Some((s, src_uid)) = self.scans.get(name) {
            return Ok(Stream {
                plan: vec![format!(
                    "Reuse: {name} (the source uid={src_uid} and its watermarks, planned above)"
                )],
                ..s.clone()
            });
        }
        let def = entry.def.clone();
        let physical = entry.physical.clone();
        let src_uid = self.uid(&format!("source-{name}"));
        let read: Vec<bool> = physical
            .iter()
            .map(|p| {
                self.referenced
                    .as_ref()
                    .is_none_or(|r| r.contains(&p.col.name.to_lowercase()))
            })
            .collect();
        // The rows carry the read columns only (projection push-down).
        let computed = def.columns.len() - physical.len();
        let connectors = self.connectors.clone();
        let updating_source = connectors.produces_updates(&Self::opts(name, &def))?;
        if updating_source
            && (def.watermark.is_some()
                || def
                    .columns
                    .iter()
                    .any(|c| matches!(c.kind, ColumnKind::Computed(_))))
        {
            return Err(SqlError::at(
                def.name.span,
                format!(
                    "table '{name}' is read as a changelog, which cannot have computed columns or a WATERMARK yet"
                ),
            ));
        }
        let ds = connectors.source(
            self.env,
            &Self::opts(name, &def),
            &physical,
            &read,
            read.iter().filter(|r| **r).count() + computed,
            &src_uid,
        )?;
        let with_read = || physical.iter().zip(&read);
        let phys_cols: Vec<Column> = with_read()
            .filter(|(_, r)| **r)
            .map(|(p, _)| p.col.clone())
            .collect();
        let unread: Vec<&str> = with_read()
            .filter(|(_, r)| !**r)
            .map(|(p, _)| p.col.name.as_str())
            .collect();
        if !unread.is_empty() {
            let all = def.columns.iter().map(|c| norm(&c.ident)).collect();
            self.projected.push((name.to_string(), all));
        }
        let mut plan = vec![format!(
            "Source: {name} connector={} columns=[{}]{} uid={src_uid}",
            def.options
                .get("connector")
                .map(String::as_str)
                .unwrap_or(""),
            phys_cols
                .iter()
                .map(|c| format!("{} {}", c.name, c.ty.sql_name()))
                .collect::<Vec<_>>()
                .join(", "),
            if unread.is_empty() {
                String::new()
            } else {
                format!(" unread=[{}]", unread.join(", "))
            }
        )];
        let mut stream_cols = phys_cols.clone();
        if updating_source {
            stream_cols.push(Column {
                name: KIND.into(),
                ty: SqlType::BigInt,
            });
        }
        let mut stream = Stream {
            ds,
            cols: stream_cols,
            rowtime: None,
            proctime: None,
            plan: Vec::new(),
            window: None,
        };
        if def
            .columns
            .iter()
            .any(|c| matches!(c.kind, ColumnKind::Computed(_)))
        {
            let mut exprs = Vec::new();
            let mut cols = Vec::new();
            let mut shown = Vec::new();
            for c in &def.columns {
                let e = match &c.kind {
                    // Unread physical columns are not in the rows.
                    ColumnKind::Physical(_) | ColumnKind::Metadata { .. }
                        if unread.contains(&norm(&c.ident).as_str()) =>
                    {
                        continue;
                    }
                    ColumnKind::Physical(_) | ColumnKind::Metadata { .. } => {
                        Expr::Identifier(Ident::with_quote('"', norm(&c.ident)))
                    }
                    ColumnKind::Computed(e) => {
                        shown.push(format!("{} := {e}", norm(&c.ident)));
                        if crate::udf::is_proctime_call(e) && stream.proctime.is_none() {
                            stream.proctime = Some(cols.len());
                        }
                        e.as_ref().clone()
                    }
                };
                let comp = compile(&self.funcs, &e, &phys_cols)?;
                cols.push(Column {
                    name: norm(&c.ident),
                    ty: comp.ty,
                });
                exprs.push((comp.expr, comp.ty));
            }
            let uid = self.uid("computed");
            let calc = Calc::new(phys_cols, None, exprs);
            stream.ds = stream
                .ds
                .transform_batches("Computed columns", move |r| calc.apply(r))
                .uid(&uid);
            stream.cols = cols;
            plan = nest(
                format!("ComputedColumns: {} uid={uid}", shown.join(", ")),
                &plan,
            );
        }
        if let Some(w) = &def.watermark {
            let col = norm(&w.column);
            let idx = stream
                .cols
                .iter()
                .position(|c| c.name == col)
                .expect("checked in CREATE TABLE");
            if stream.proctime == Some(idx) {
                return Err(SqlError::at(
                    w.column.span,
                    format!(
                        "WATERMARK FOR '{col}': '{col}' is a processing-time attribute (PROCTIME()); a watermark needs an event-time column"
                    ),
                ));
            }
            if stream.cols[idx].ty != SqlType::Timestamp {
                return Err(SqlError::at(
                    w.column.span,
                    format!(
                        "WATERMARK FOR '{col}': the rowtime column must be TIMESTAMP(3) or TIMESTAMP_LTZ(3), not {}",
                        stream.cols[idx].ty.sql_name()
                    ),
                ));
            }
            let delay = match &w.expr {
                Expr::Identifier(id) if norm(id) == col => 0,
                Expr::BinaryOp {
                    left,
                    op: ast::BinaryOperator::Minus,
                    right,
                } if matches!(left.as_ref(), Expr::Identifier(id) if norm(id) == col) => {
                    non_negative_interval_ms(right)?
                }
                other => {
                    return Err(SqlError::at(
                        other.span(),
                        format!(
                            "unsupported watermark expression '{other}'; use `{col}` or `{col} - INTERVAL 'n' SECOND`"
                        ),
                    ));
                }
            };
            let uid = self.uid("watermark");
            // A row without a valid event time follows the decode-error policy here too
            // (a computed column's, or a connector's that does not check it while decoding).
            let event_time = EventTime {
                table: name.to_string(),
                column: col.clone(),
                slot: idx,
            };
            let why = event_time.clone();
            let strategy = WatermarkStrategy::for_bounded_out_of_orderness(Duration::from_millis(
                delay as u64,
            ))
            .with_timestamp_assigner(move |r: &Row| event_time.of(&r.0).unwrap_or(NO_TIMESTAMP))
            .on_missing_timestamp(self.env.config().decode_error_policy()?, move |r: &Row| {
                why.of(&r.0).err().unwrap_or_default()
            });
            stream.ds = stream
                .ds
                .assign_timestamps_and_watermarks(strategy)
                .uid(&uid);
            stream.rowtime = Some(idx);
            plan = nest(
                format!("WatermarkAssigner: rowtime={col} delay={delay} ms uid={uid}"),
                &plan,
            );
        }
        stream.plan = plan;
        self.scans
            .insert(name.to_string(), (stream.clone(), src_uid));
        Ok(stream)
    }

    pub(crate) fn query(&mut self, q: &Query) -> Result<Stream> {
        let span = q.span();
        // Only this query's own output takes the sink's names, not the views or subqueries
        // it reads from.
        let names = self.sink_names.take();
        if let Some(w) = &q.with {
            return Err(SqlError::at(
                w.with_token.0.span,
                "WITH (common table expressions) is not supported yet; use CREATE VIEW",
            ));
        }
        if q.order_by.is_some() {
            return Err(SqlError::at(
                span,
                "ORDER BY is not supported on unbounded streams yet",
            ));
        }
        if q.limit_clause.is_some() {
            return Err(SqlError::at(
                span,
                "LIMIT is not supported on unbounded streams yet",
            ));
        }
        let select = match q.body.as_ref() {
            SetExpr::Select(s) => s,
            SetExpr::Query(inner) => {
                self.sink_names = names;
                return self.query(inner);
            }
            SetExpr::SetOperation { op, .. } => {
                return Err(SqlError::at(span, format!("{op} is not supported yet")));
            }
            _ => return Err(SqlError::at(span, "only SELECT queries are supported")),
        };
        // Joins, qualified columns (`t.col`) and SELECT DISTINCT become a plainer query.
        if let Some(rewritten) = self.rewrite_select(q, select)? {
            self.sink_names = names;
            return self.query(&rewritten);
        }
        // Top-N and deduplication (ROW_NUMBER() in a subquery, filtered here).
        if let Some(rewritten) = self.rewrite_top_n(q, select)? {
            self.sink_names = names;
            return self.query(&rewritten);
        }
        if select.distinct.is_some() {
            return Err(SqlError::at(
                span,
                "SELECT DISTINCT produces an updating result and is not supported yet",
            ));
        }
        if select.qualify.is_some() {
            return Err(SqlError::at(span, "QUALIFY is not supported yet"));
        }
        let twj = match select.from.as_slice() {
            [] => {
                return Err(SqlError::at(
                    span,
                    "a query needs FROM: Weir SQL reads from declared tables",
                ));
            }
            [twj] => twj,
            [_, second, ..] => {
                return Err(SqlError::at(
                    second.relation.span(),
                    "joins are not supported yet",
                ));
            }
        };
        if let TableFactor::TableFunction { expr, alias } = &twj.relation {
            return self.tvf_select(expr, alias.as_ref(), select, names.as_deref());
        }
        let (input, qualifier) = self.relation(&twj.relation)?;
        let select = Scope::single(qualifier, &input.cols).rewrite_select(select)?;
        self.select_over(input, &select, names.as_deref())
    }

    /// Plans one FROM relation (a table, a view, a subquery or a window TVF); returns it with
    /// the name that qualifies its columns (`alias.col`).
    pub(crate) fn relation(&mut self, rel: &TableFactor) -> Result<(Stream, Option<String>)> {
        let alias_of = |a: &Option<ast::TableAlias>| a.as_ref().map(|a| norm(&a.name));
        Ok(match rel {
            TableFactor::Table {
                name,
                args: None,
                alias,
                ..
            } => {
                if name.0.len() != 1 {
                    return Err(SqlError::at(
                        name.span(),
                        "catalogs and databases are not supported yet; use a plain table name",
                    ));
                }
                let id = name.0[0]
                    .as_ident()
                    .cloned()
                    .unwrap_or_else(|| Ident::new(name.to_string()));
                let n = norm(&id);
                (self.scan(&n, name.span())?, alias_of(alias).or(Some(n)))
            }
            TableFactor::Derived {
                subquery,
                lateral: false,
                alias,
                ..
            } => (self.query(subquery)?, alias_of(alias)),
            TableFactor::TableFunction { expr, alias } => {
                let tvf = self.window_tvf(expr)?;
                (self.assign_windows(tvf)?, alias_of(alias))
            }
            other => {
                return Err(SqlError::at(
                    other.span(),
                    format!("this FROM clause is not supported yet: {other}"),
                ));
            }
        })
    }

    /// Plans a SELECT's WHERE, GROUP BY, HAVING and projection over its planned input.
    pub(crate) fn select_over(
        &mut self,
        input: Stream,
        select: &ast::Select,
        names: Option<&[String]>,
    ) -> Result<Stream> {
        let span = select.span();
        let group = match &select.group_by {
            GroupByExpr::Expressions(e, mods) if mods.is_empty() => e.clone(),
            GroupByExpr::Expressions(..) | GroupByExpr::All(_) => {
                return Err(SqlError::at(
                    span,
                    "GROUP BY ALL / ROLLUP / CUBE / GROUPING SETS are not supported yet",
                ));
            }
        };
        if group.is_empty() {
            if has_aggregate(&select.projection).is_some() {
                return self.group_aggregate(
                    input,
                    select.selection.as_ref(),
                    &[],
                    &select.projection,
                    select.having.as_ref(),
                    names,
                );
            }
            if let Some(h) = &select.having {
                return Err(SqlError::at(h.span(), "HAVING needs GROUP BY"));
            }
            return self.calc(input, select.selection.as_ref(), &select.projection, names);
        }
        self.window_aggregate(
            input,
            select.selection.as_ref(),
            &group,
            &select.projection,
            select.having.as_ref(),
            names,
        )
    }

    pub(crate) fn expand(
        &self,
        input: &Stream,
        items: &[SelectItem],
    ) -> Result<Vec<(String, Expr)>> {
        let mut out = Vec::new();
        for (i, it) in items.iter().enumerate() {
            match it {
                SelectItem::Wildcard(_) => {
                    for c in &input.cols {
                        if !c.name.starts_with('$') {
                            out.push((
                                c.name.clone(),
                                Expr::Identifier(Ident::with_quote('"', c.name.clone())),
                            ));
                        }
                    }
                }
                SelectItem::ExprWithAliases { .. } => {
                    return Err(SqlError::at(
                        it.span(),
                        "several aliases for one expression are not supported",
                    ));
                }
                SelectItem::QualifiedWildcard(..) => {
                    return Err(SqlError::at(
                        it.span(),
                        "qualified wildcards (t.*) are not supported yet; use *",
                    ));
                }
                SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => {
                    out.push((output_name(it, i).unwrap_or_default(), e.clone()));
                }
            }
        }
        let mut seen = std::collections::HashSet::new();
        for (n, e) in &out {
            if !seen.insert(n.clone()) {
                return Err(SqlError::at(
                    e.span(),
                    format!("duplicate output column '{n}'; give it an alias with AS"),
                ));
            }
        }
        Ok(out)
    }

    pub(crate) fn calc(
        &mut self,
        input: Stream,
        filter: Option<&Expr>,
        items: &[SelectItem],
        names: Option<&[String]>,
    ) -> Result<Stream> {
        let items = self.expand(&input, items)?;
        // The plan shows the sink's names; the columns keep the query's, for messages.
        let shown: Vec<&String> = match names {
            Some(names) if names.len() == items.len() => names.iter().collect(),
            _ => items.iter().map(|(n, _)| n).collect(),
        };
        let filter_c = self.where_condition(filter, &input.cols)?;
        let mut exprs = Vec::new();
        let mut cols = Vec::new();
        let mut rowtime = None;
        let mut proctime = None;
        // A window aggregate's rows are emitted before the watermark passes their window's
        // end, so `window_end` can carry on as the time attribute when `window_time` is not
        // selected (Nexmark q7 bounds a join on it).
        let mut window_end = None;
        for (i, (name, e)) in items.iter().enumerate() {
            let c = compile(&self.funcs, e, &input.cols)?;
            if let (Expr::Identifier(id), Some(rt)) = (e, input.rowtime)
                && norm(id) == input.cols[rt].name
                && rowtime.is_none()
            {
                rowtime = Some(i);
            }
            if let (Expr::Identifier(id), Some(_), Some(w)) = (e, input.rowtime, input.window)
                && norm(id) == input.cols[w.end].name
                && window_end.is_none()
            {
                window_end = Some(i);
            }
            if let (Expr::Identifier(id), Some(pt)) = (e, input.proctime)
                && norm(id) == input.cols[pt].name
                && proctime.is_none()
            {
                proctime = Some(i);
            }
            cols.push(Column {
                name: name.clone(),
                ty: c.ty,
            });
            exprs.push((c.expr, c.ty));
        }
        let rowtime = rowtime.or(window_end);
        // A Calc over an updating result passes each row's kind through.
        if let Some(k) = input.cols.iter().position(|c| c.name == KIND) {
            let c = compile(
                &self.funcs,
                &Expr::Identifier(Ident::with_quote('"', KIND)),
                &input.cols,
            )?;
            exprs.push((c.expr, c.ty));
            cols.push(input.cols[k].clone());
        }
        let uid = self.uid("calc");
        let title = format!(
            "Calc: {}select=[{}] uid={uid}",
            filter.map(|f| format!("where=({f}) ")).unwrap_or_default(),
            items
                .iter()
                .zip(shown)
                .map(|((_, e), n)| match e {
                    Expr::Identifier(id) if id.value == *n => n.clone(),
                    _ => format!("{e} AS {n}"),
                })
                .collect::<Vec<_>>()
                .join(", ")
        );
        let calc = Calc::new(input.cols.clone(), filter_c, exprs);
        let ds = input
            .ds
            .transform_batches("Calc", move |r| calc.apply(r))
            .uid(&uid);
        Ok(Stream {
            ds,
            cols,
            rowtime,
            window: crate::tvf::carry_window(&input, &items),
            proctime,
            plan: nest(title, &input.plan),
        })
    }

    pub(crate) fn window_aggregate(
        &mut self,
        input: Stream,
        filter: Option<&Expr>,
        group: &[Expr],
        items: &[SelectItem],
        having: Option<&Expr>,
        names: Option<&[String]>,
    ) -> Result<Stream> {
        // Find the group window and the keys.
        let mut win = None;
        let mut on_proctime = false;
        let mut key_exprs = Vec::new();
        for g in group {
            if let Expr::Function(f) = g {
                let name = fn_name(f);
                if matches!(name.as_str(), "tumble" | "hop" | "session" | "cumulate") {
                    if win.is_some() {
                        return Err(SqlError::at(g.span(), "only one group window per GROUP BY"));
                    }
                    let args = function_args(f);
                    let time = args.first().ok_or_else(|| {
                        SqlError::at(
                            g.span(),
                            format!("{} needs a time attribute argument", name.to_uppercase()),
                        )
                    })?;
                    let is_rowtime = matches!(time, Expr::Identifier(id)
                        if input.rowtime.is_some_and(|rt| input.cols[rt].name == norm(id)));
                    on_proctime = matches!(time, Expr::Identifier(id)
                        if input.proctime.is_some_and(|pt| input.cols[pt].name == norm(id)));
                    if !is_rowtime && !on_proctime {
                        return Err(SqlError::at(
                            time.span(),
                            format!(
                                "{}'s first argument must be the time attribute of its input (the column of WATERMARK FOR{}, or a PROCTIME() column); '{time}' is not",
                                name.to_uppercase(),
                                input
                                    .rowtime
                                    .map(|rt| format!(", here '{}'", input.cols[rt].name))
                                    .unwrap_or_else(|| ", which the input does not declare".into())
                            ),
                        ));
                    }
                    let need = |n: usize| -> Result<()> {
                        if args.len() == n {
                            Ok(())
                        } else {
                            Err(SqlError::at(
                                g.span(),
                                format!("{} takes {n} arguments", name.to_uppercase()),
                            ))
                        }
                    };
                    win = Some(match name.as_str() {
                        "tumble" => {
                            need(2)?;
                            Win::Tumble(interval_ms(args[1])?)
                        }
                        "hop" => {
                            need(3)?;
                            let (slide, size) = (interval_ms(args[1])?, interval_ms(args[2])?);
                            if size % slide != 0 {
                                return Err(SqlError::at(
                                    args[2].span(),
                                    "HOP's size must be a multiple of its slide",
                                ));
                            }
                            Win::Hop { slide, size }
                        }
                        "session" => {
                            need(2)?;
                            Win::Session(interval_ms(args[1])?)
                        }
                        _ => {
                            return Err(SqlError::at(
                                g.span(),
                                "CUMULATE is a window table-valued function: FROM TABLE(CUMULATE(TABLE t, DESCRIPTOR(ts), step, size)) ... GROUP BY window_start, window_end",
                            ));
                        }
                    });
                    continue;
                }
            }
            key_exprs.push(g.clone());
        }
        let (win, key_exprs) = match win {
            Some(win) => (win, key_exprs),
            None => match crate::tvf::inherited_window_keys(&input, &key_exprs) {
                Some(keys) => (Win::Inherited, keys),
                None => {
                    return self.group_aggregate(input, filter, &key_exprs, items, having, names);
                }
            },
        };
        crate::changelog::refuse_updating(&input, "a group window", group[0].span())?;
        self.aggregate_windows(
            input,
            filter,
            win,
            on_proctime,
            &key_exprs,
            items,
            having,
            names,
            if win == Win::Inherited {
                "WindowAggregate"
            } else {
                "GroupWindowAggregate"
            },
        )
    }

    /// Compiles aggregate calls over `cols`: each argument and FILTER condition becomes an
    /// expression of `pre` (the pre-aggregation Calc), each call an [`AggCall`] reading them,
    /// and its text for EXPLAIN goes to `shown`. One place for window and group aggregates.
    pub(crate) fn compile_agg_calls(
        &self,
        calls: &[FoundCall],
        cols: &[Column],
        pre: &mut Vec<(Arc<dyn PhysicalExpr>, SqlType)>,
        agg_calls: &mut Vec<AggCall>,
        shown: &mut Vec<String>,
    ) -> Result<()> {
        for FoundCall {
            kind,
            distinct,
            arg,
            filter: flt,
        } in calls
        {
            let arg_idx = match arg {
                Some(a) => {
                    let c = compile(&self.funcs, a, cols)?;
                    if matches!(kind, AggKind::Sum | AggKind::Avg) && !c.ty.is_numeric() {
                        return Err(SqlError::at(
                            a.span(),
                            format!("{kind:?} needs a numeric argument, not {}", c.ty.sql_name())
                                .to_uppercase(),
                        ));
                    }
                    pre.push((c.expr, c.ty));
                    Some((pre.len() - 1, c.ty))
                }
                None => None,
            };
            let filter_idx = match flt {
                Some(f) => {
                    let c = compile(&self.funcs, f, cols)?;
                    if c.ty != SqlType::Boolean {
                        return Err(SqlError::at(
                            f.span(),
                            "FILTER (WHERE ...) needs a BOOLEAN condition",
                        ));
                    }
                    pre.push((c.expr, c.ty));
                    Some(pre.len() - 1)
                }
                None => None,
            };
            let ty = match (kind, arg_idx.map(|a| a.1)) {
                (AggKind::Count, _) => SqlType::BigInt,
                // Flink's SUM of a DECIMAL(p, s) is a DECIMAL(38, s), its AVG a
                // DECIMAL(38, max(6, s)).
                (AggKind::Sum, Some(SqlType::Decimal(_, s))) => {
                    let (p, s) = crate::decimal::sum_type(s);
                    SqlType::Decimal(p, s)
                }
                (AggKind::Avg, Some(SqlType::Decimal(_, s))) => {
                    let (p, s) = crate::decimal::avg_type(s);
                    SqlType::Decimal(p, s)
                }
                (_, t) => t.unwrap_or(SqlType::BigInt),
            };
            shown.push(format!(
                "{}({}{}){}",
                format!("{kind:?}").to_uppercase(),
                if *distinct { "DISTINCT " } else { "" },
                arg.as_ref().map(|a| a.to_string()).unwrap_or("*".into()),
                flt.as_ref()
                    .map(|f| format!(" FILTER (WHERE {f})"))
                    .unwrap_or_default()
            ));
            agg_calls.push(AggCall {
                kind: *kind,
                arg: arg_idx.map(|a| a.0),
                filter: filter_idx,
                distinct: *distinct,
                ty,
            });
        }
        Ok(())
    }

    /// Aggregates `input` per window of `win` and key; for `Win::Inherited` the first two
    /// keys are the input's window_start and window_end columns. The output has the keys,
    /// the aggregates and window_start, window_end, window_time (its time attribute, unless
    /// the windows are on processing time).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn aggregate_windows(
        &mut self,
        input: Stream,
        filter: Option<&Expr>,
        win: Win,
        on_proctime: bool,
        key_exprs: &[Expr],
        items: &[SelectItem],
        having: Option<&Expr>,
        names: Option<&[String]>,
        title: &str,
    ) -> Result<Stream> {
        let inherited = win == Win::Inherited;
        // A cascade's windows are still those of the window that made them.
        let out_win = match input.window {
            Some(w) if inherited => w.win,
            _ => win,
        };
        // Keys: named by their column when they are one. Inherited window bounds are
        // hidden keys; references to them read the output's window_start/window_end.
        let mut keys: Vec<(String, String)> = Vec::new();
        let mut key_names: Vec<String> = Vec::new();
        for (i, k) in key_exprs.iter().enumerate() {
            let (col, refer) = match k {
                _ if inherited && i < 2 => {
                    let bound = ["window_start", "window_end"][i];
                    (format!("${bound}"), bound.to_string())
                }
                Expr::Identifier(id) => (norm(id), norm(id)),
                _ => (format!("$key{i}"), format!("$key{i}")),
            };
            keys.push((k.to_string(), refer));
            key_names.push(col);
        }
        let items = self.expand(&input, items)?;
        let RewrittenAggregate {
            items: out_items,
            having,
            calls,
        } = AggRewriter::rewrite_select(Some(win), &keys, &items, having)?;
        // Pre-projection: keys, then each call's argument and filter.
        let mut parts = WindowAggParts {
            pre: Vec::new(),
            agg_calls: Vec::new(),
            key_names,
            key_types: Vec::new(),
            pre_shown: Vec::new(),
            shown_calls: Vec::new(),
        };
        for k in key_exprs {
            let c = compile(&self.funcs, k, &input.cols)?;
            parts.pre.push((c.expr, c.ty));
            parts.key_types.push(c.ty);
            parts.pre_shown.push(k.to_string());
        }
        self.compile_agg_calls(
            &calls,
            &input.cols,
            &mut parts.pre,
            &mut parts.agg_calls,
            &mut parts.shown_calls,
        )?;
        // Sub-plan reuse (as Flink's): the same aggregate over the same stream (q5 computes
        // its per-auction HOP counts twice) is computed once and read by both queries.
        let reuse_key = format!(
            "{:?}|{}|{:?}|{on_proctime}|{}|{}",
            input.ds,
            filter.map(|f| f.to_string()).unwrap_or_default(),
            win,
            parts.pre_shown.join(", "),
            parts.shown_calls.join(", ")
        );
        let agg_stream = match self.window_aggs.get(&reuse_key) {
            Some((s, uid)) => Stream {
                plan: vec![format!(
                    "Reuse: {title} uid={uid} (the same aggregate over the same input, planned above)"
                )],
                ..s.clone()
            },
            None => {
                let (s, uid) = self.build_window_aggregate(
                    input,
                    filter,
                    win,
                    on_proctime,
                    out_win,
                    parts,
                    title,
                )?;
                self.window_aggs.insert(reuse_key, (s.clone(), uid));
                s
            }
        };
        self.project_aggregate(agg_stream, out_items, having, names)
    }

    /// The SELECT list and HAVING of an aggregate, rewritten over its output columns
    /// ([`AggRewriter`]), applied to that output. A column neither grouped nor aggregated
    /// is named as such.
    pub(crate) fn project_aggregate(
        &mut self,
        agg_stream: Stream,
        out_items: Vec<(String, Expr)>,
        having: Option<Expr>,
        names: Option<&[String]>,
    ) -> Result<Stream> {
        let select: Vec<SelectItem> = out_items
            .into_iter()
            .map(|(n, e)| SelectItem::ExprWithAlias {
                expr: e,
                alias: Ident::with_quote('"', n),
            })
            .collect();
        self.calc(agg_stream, having.as_ref(), &select, names)
            .map_err(|e| match e {
                SqlError::At {
                    line,
                    column,
                    message,
                } if message.starts_with("column '") && message.contains("not found") => {
                    let col = message.split('\'').nth(1).unwrap_or("").to_string();
                    SqlError::At {
                        line,
                        column,
                        message: format!(
                            "column '{col}' must appear in GROUP BY or be used in an aggregate function"
                        ),
                    }
                }
                other => other,
            })
    }

    /// The window aggregate of [`Self::aggregate_windows`] without its final projection:
    /// rows of keys, aggregates and window bounds. Returns the stream and its operator uid.
    #[allow(clippy::too_many_arguments)]
    fn build_window_aggregate(
        &mut self,
        input: Stream,
        filter: Option<&Expr>,
        win: Win,
        on_proctime: bool,
        out_win: Win,
        parts: WindowAggParts,
        title: &str,
    ) -> Result<(Stream, String)> {
        let inherited = win == Win::Inherited;
        let WindowAggParts {
            pre,
            agg_calls,
            key_names,
            key_types,
            pre_shown,
            shown_calls,
        } = parts;
        let filter_c = self.where_condition(filter, &input.cols)?;
        let pre_uid = self.uid("window-input");
        let calc = Calc::new(input.cols.clone(), filter_c, pre);
        let nk = key_types.len();
        let win_uid = self.uid(&format!("window-{}", win.prefix()));
        let agg_types: Vec<SqlType> = agg_calls.iter().map(|c| c.ty).collect();
        // A window input that only picks columns is not run: the key and the aggregates' arguments
        // are read from the input rows in place. (A cascade's rows only get their times set:
        // each row's time is the last millisecond of the window it carries.)
        let picked = calc.picked_columns();
        let mut agg_calls = agg_calls;
        if let Some(cols) = &picked {
            for c in &mut agg_calls {
                c.arg = c.arg.map(|i| cols[i]);
                c.filter = c.filter.map(|i| cols[i]);
            }
        }
        let agg = SqlAggregate { calls: agg_calls };
        let schema = format!(
            "{}{} {}",
            match win {
                Win::Inherited => "CASCADE".to_string(),
                w => w.describe(),
            },
            if on_proctime { " proctime" } else { "" },
            agg.state_schema(&key_types)
        );
        // Each window's result becomes its output row as it fires: keys, aggregates, window
        // bounds, in one allocation. (The uid a separate "Window output" step had is still
        // taken, so the uids after it stay as they were.)
        let _ = self.uid("window-output");
        let spec = if on_proctime {
            win.spec().processing_time()
        } else {
            win.spec()
        };
        let emit =
            move |key: Vec<Value>, w: &TimeWindow, value: Vec<Value>, out: &mut Collector<Row>| {
                let mut w = *w;
                if inherited && let [Value::Ts(start), Value::Ts(end), ..] = key[..] {
                    w = TimeWindow { start, end };
                }
                let mut v = Vec::with_capacity(key.len() + value.len() + 3);
                v.extend(key);
                v.extend(value);
                v.push(Value::Ts(w.start));
                v.push(Value::Ts(w.end));
                v.push(Value::Ts(w.max_timestamp()));
                out.collect_with_timestamp(Row(v), w.max_timestamp());
                Ok(())
            };
        // Without keys besides the window, every row of a window would go to one subtask
        // (one key per window). Each subtask aggregates its rows per slice of time (a
        // cascade's: per window its rows carry) first and sends the accumulators instead
        // (Flink's local-global window aggregation); the global window merges them, with the
        // single-phase operator's uid, key and state schema.
        let local = if on_proctime {
            None
        } else if inherited && nk == 2 {
            let bounds = picked.as_ref().map_or((0, 1), |cols| (cols[0], cols[1]));
            Some(Local::Windows(bounds.0, bounds.1))
        } else if nk == 0 {
            win.slice().map(Local::Slices)
        } else {
            None
        };
        let ds = match local {
            Some(phase) => {
                let calc = picked.is_none().then_some(calc);
                let local = agg.clone();
                input
                    .ds
                    .transform_batches("LocalWindowAggregate", move |recs: Vec<Rec<Row>>| {
                        let rows = match &calc {
                            Some(calc) => calc.apply(recs)?,
                            None => recs,
                        };
                        Ok(match phase {
                            Local::Slices(slice) => local.pre_aggregate(rows, slice),
                            Local::Windows(start, end) => {
                                local.pre_aggregate_windows(rows, start, end)
                            }
                        })
                    })
                    .uid(&pre_uid)
                    .key_by(|p: &Partial| p.key.clone())
                    .with_key_bytes(|p: &Partial, buf| write_key(p.key.iter(), buf))
                    .window(spec)
                    .aggregate_with(MergePartials(agg), emit)
            }
            None => {
                // The window writes each row's key bytes from the row (the key is built only
                // to emit a window's result): the bytes of the key columns serialized as a `Vec`.
                let keyed = match &picked {
                    Some(cols) => {
                        let key_cols = cols[..nk].to_vec();
                        let cols_of_key = key_cols.clone();
                        let ds = if inherited {
                            let end = cols[1];
                            input
                                .ds
                                .transform_batches("Window time", move |mut recs: Vec<Rec<Row>>| {
                                    time_from_window_end(&mut recs, end);
                                    Ok(recs)
                                })
                                .uid(&pre_uid)
                        } else {
                            input.ds
                        };
                        ds.key_by(move |r: &Row| key_cols.iter().map(|&c| r.0[c].clone()).collect())
                            .with_key_bytes(move |r: &Row, buf| {
                                write_key(cols_of_key.iter().map(|&c| &r.0[c]), buf)
                            })
                    }
                    None => input
                        .ds
                        .transform_batches("Calc", move |r| {
                            let mut out = calc.apply(r)?;
                            if inherited {
                                time_from_window_end(&mut out, 1);
                            }
                            Ok(out)
                        })
                        .uid(&pre_uid)
                        .key_by(move |r: &Row| r.0[..nk].to_vec())
                        .with_key_bytes(move |r: &Row, buf| write_key(r.0[..nk].iter(), buf)),
                };
                keyed.window(spec).aggregate_with(agg, emit)
            }
        };
        let ds = ds
            .name(&format!("{title} {}", win.describe()))
            .uid(&win_uid)
            .state_schema(&schema);
        let mut cols: Vec<Column> = key_names
            .iter()
            .zip(&key_types)
            .map(|(n, t)| Column {
                name: n.clone(),
                ty: *t,
            })
            .collect();
        cols.extend(agg_types.iter().enumerate().map(|(i, t)| Column {
            name: format!("$agg{i}"),
            ty: *t,
        }));
        for n in ["window_start", "window_end", "window_time"] {
            cols.push(Column {
                name: n.into(),
                ty: SqlType::Timestamp,
            });
        }
        let plan = nest(
            format!(
                "{title}: window={}{} keys=[{}] aggregates=[{}] uid={win_uid}",
                win.describe(),
                if on_proctime {
                    " on processing time"
                } else {
                    ""
                },
                pre_shown.join(", "),
                shown_calls.join(", ")
            ),
            &nest(
                match local {
                    Some(phase) => format!(
                        "LocalWindowAggregate: {}{} aggregates=[{}] uid={pre_uid} (each subtask's rows of a batch, before the exchange)",
                        filter.map(|f| format!("where=({f}) ")).unwrap_or_default(),
                        match phase {
                            Local::Slices(slice) => format!("slices={slice} ms"),
                            Local::Windows(..) => "per window of the input".to_string(),
                        },
                        shown_calls.join(", ")
                    ),
                    None => format!(
                        "Calc: {}uid={pre_uid}{}",
                        filter.map(|f| format!("where=({f}) ")).unwrap_or_default(),
                        if picked.is_some() {
                            " (fused: the window reads its columns in place)"
                        } else {
                            ""
                        }
                    ),
                },
                &input.plan,
            ),
        );
        // Processing-time windows end on the wall clock: their output has no event time.
        let rowtime = (!on_proctime).then(|| cols.len() - 1);
        let agg_stream = Stream {
            ds,
            window: Some(WindowProps {
                win: out_win,
                start: cols.len() - 3,
                end: cols.len() - 2,
            }),
            cols,
            rowtime,
            proctime: None,
            plan,
        };
        Ok((agg_stream, win_uid))
    }

    fn select_to_print(&mut self, q: &Query) -> Result<String> {
        let s = self.query(q)?;
        let uid = self.uid("sink-print");
        if crate::changelog::is_updating(&s) {
            s.ds.map(ChangeRow)
                .sink_to(weir_engine::connectors::PrintSink::<ChangeRow>::display())
                .name("Sink: print (SELECT)")
                .uid(&uid);
        } else {
            s.ds.sink_to(weir_engine::connectors::PrintSink::<Row>::display())
                .name("Sink: print (SELECT)")
                .uid(&uid);
        }
        let mut lines = nest(format!("Sink: print (SELECT) uid={uid}"), &s.plan);
        lines.insert(0, format!("== statement {} ==", self.stmt));
        Ok(lines.join("\n"))
    }

    fn insert(&mut self, table: &Ident, q: &Query) -> Result<String> {
        let name = norm(table);
        let Some(entry) = self.tables.get(&name) else {
            return Err(SqlError::at(
                table.span,
                format!("sink table '{name}' not found; declare it with CREATE TABLE first"),
            ));
        };
        let (def, physical) = (entry.def.clone(), entry.physical.clone());
        if def
            .columns
            .iter()
            .any(|c| matches!(c.kind, ColumnKind::Computed(_)))
        {
            return Err(SqlError::at(
                table.span,
                format!("sink table '{name}' has computed columns, which sinks cannot have"),
            ));
        }
        let conn = def.options.get("connector").cloned().unwrap_or_default();
        let opts = Self::opts(&name, &def);
        self.connectors.check_writable(&opts)?;
        let consumes_updates = self.connectors.consumes_updates(&opts)?;
        // Virtual metadata columns are read only: INSERT writes the others.
        let physical: Vec<PhysicalColumn> =
            physical.into_iter().filter(|c| !c.is_virtual).collect();
        self.sink_names = Some(physical.iter().map(|c| c.col.name.clone()).collect());
        let s = self.query(q)?;
        crate::changelog::check_sink(consumes_updates, &name, &s, q.span())?;
        let updating = crate::changelog::is_updating(&s);
        let q_cols: Vec<&Column> = s.cols.iter().filter(|c| c.name != KIND).collect();
        if q_cols.len() != physical.len() {
            return Err(SqlError::at(
                q.span(),
                format!(
                    "the query produces {} columns [{}] but sink '{name}' has {} [{}]",
                    q_cols.len(),
                    q_cols
                        .iter()
                        .map(|c| c.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    physical.len(),
                    physical
                        .iter()
                        .map(|c| c.col.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        // The columns whose values change representation on the way into the sink (integers
        // of any width are all `Value::Int`: widening one to another changes nothing).
        let mut casts: Vec<(usize, SqlType)> = Vec::new();
        for (k, (q_col, s_col)) in q_cols.iter().zip(&physical).enumerate() {
            if q_col.ty != s_col.col.ty {
                if widens(q_col.ty, s_col.col.ty) {
                    if !s_col.col.ty.is_integer() {
                        casts.push((k, s_col.col.ty));
                    }
                    continue;
                }
                return Err(SqlError::at(
                    q.span(),
                    format!(
                        "column '{}' of the query is {} but sink column '{}' is {}; add a CAST",
                        q_col.name,
                        q_col.ty.sql_name(),
                        s_col.col.name,
                        s_col.col.ty.sql_name()
                    ),
                ));
            }
        }
        let mut ds = s.ds;
        if !casts.is_empty() {
            // In place, batch by batch: a per-row hot path (Nexmark q1's DECIMAL(24, 3)
            // product into a DECIMAL(23, 3) column).
            ds = ds.transform_batches("Map", move |mut recs: Vec<Rec<Row>>| {
                for &(k, t) in &casts {
                    for r in &mut recs {
                        let Some(v) = r.value.0.get_mut(k) else {
                            continue;
                        };
                        match (&*v, t) {
                            (Value::Int(i), SqlType::Double) => *v = Value::Double(*i as f64),
                            (Value::Int(i), SqlType::Float) => *v = Value::Float(*i as f32),
                            (Value::Float(f), SqlType::Double) => {
                                *v = Value::Double(f64::from(*f));
                            }
                            (Value::Decimal(..), SqlType::Double) => {
                                *v = v.as_f64().map_or(Value::Null, Value::Double);
                            }
                            (Value::Int(_) | Value::Decimal(..), SqlType::Decimal(p, s)) => {
                                *v = v
                                    .as_decimal()
                                    .and_then(|(x, from)| crate::decimal::to_type(x, from, p, s))
                                    .map_or(Value::Null, |x| Value::Decimal(x, s));
                            }
                            (Value::Time(ms, _), SqlType::Time(p)) => {
                                *v = Value::Time(
                                    crate::builtins::truncate_time(i64::from(*ms), p),
                                    p,
                                );
                            }
                            _ => {}
                        }
                    }
                }
                Ok(recs)
            });
        }
        let uid = self.uid(&format!("sink-{name}"));
        self.connectors
            .sink(ds, &Self::opts(&name, &def), &physical, &uid, updating)?;
        let mut lines = nest(format!("Sink: {name} connector={conn} uid={uid}"), &s.plan);
        lines.insert(0, format!("== statement {} ==", self.stmt));
        Ok(lines.join("\n"))
    }
}
