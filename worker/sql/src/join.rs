//! Joins and name resolution in FROM clauses: `FROM a [AS x] [INNER|LEFT|RIGHT|FULL] JOIN b
//! [AS y] ON …`, the comma form `FROM a, b WHERE …`, qualified columns (`x.col`, `x.*`) and
//! `SELECT DISTINCT` (planned as a GROUP BY).
//!
//! A query with a join is rewritten before it is planned: both inputs are planned, joined by
//! an interval join, and the join's stream is stashed under a generated name; the query then
//! reads that name as its only table, with every column reference resolved to the join's
//! output columns (left ++ right, a right column whose name the left already has gets a
//! digit, as Flink names them: `price`, `price0`). The interval join is the engine's
//! (`KeyedStream::interval_join`): each input keyed by its equi-join keys, each row stamped
//! with its rowtime; this module supplies the joined rows, the residual condition and the
//! NULL padding of outer joins.

// `$kind`: the hidden column of an updating (changelog) stream.
use crate::changelog::KIND;
use crate::error::{Result, SqlError};
use crate::expr::{Calc, Functions, compile};
use crate::plan::{Planner, Stream, has_aggregate, nest, non_negative_interval_ms, norm};
use crate::value::{Column, Row, SqlType, Value, write_key};
use datafusion_physical_expr::PhysicalExpr;
use sqlparser::ast::{
    self, BinaryOperator, Expr, GroupByExpr, Ident, JoinConstraint, JoinOperator, ObjectName,
    Query, Select, SelectItem, SetExpr, Spanned, TableFactor, TableWithJoins, VisitMut, VisitorMut,
};
use sqlparser::tokenizer::Span;
use std::collections::BTreeSet;
use std::ops::ControlFlow;
use std::sync::Arc;
use weir_engine::api::{Collector, KeyedStream};
use weir_engine::join::IntervalJoinFunction;
use weir_engine::runtime::Rec;
use weir_engine::time::NO_TIMESTAMP;

/// A column visible in a FROM clause: the qualifier it can be named by, its own name, and
/// its (unique) name in the joined stream.
#[derive(Debug, Clone)]
struct ScopeCol {
    qual: Option<String>,
    name: String,
    internal: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JoinKind {
    Inner,
    Left,
    Right,
    Full,
}

impl JoinKind {
    fn name(self) -> &'static str {
        match self {
            JoinKind::Inner => "INNER",
            JoinKind::Left => "LEFT OUTER",
            JoinKind::Right => "RIGHT OUTER",
            JoinKind::Full => "FULL OUTER",
        }
    }
    fn keeps_left(self) -> bool {
        matches!(self, JoinKind::Left | JoinKind::Full)
    }
    fn keeps_right(self) -> bool {
        matches!(self, JoinKind::Right | JoinKind::Full)
    }
}

/// `a AND b AND c` as `[a, b, c]`.
pub(crate) fn conjuncts(e: &Expr, out: &mut Vec<Expr>) {
    match e {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            conjuncts(left, out);
            conjuncts(right, out);
        }
        Expr::Nested(inner)
            if matches!(
                inner.as_ref(),
                Expr::BinaryOp {
                    op: BinaryOperator::And,
                    ..
                }
            ) =>
        {
            conjuncts(inner, out)
        }
        other => out.push(other.clone()),
    }
}

pub(crate) fn conjoin(es: impl IntoIterator<Item = Expr>) -> Option<Expr> {
    es.into_iter().reduce(|a, b| Expr::BinaryOp {
        left: Box::new(a),
        op: BinaryOperator::And,
        right: Box::new(b),
    })
}

/// The part of a join's condition that is neither an equi-key nor a time bound: tested on
/// each joined row (left columns then right) by the interval and the window join alike, in
/// place when the row evaluator covers it, so a pair that fails costs no output row.
#[derive(Clone)]
pub(crate) struct PairCondition(Calc);

impl PairCondition {
    /// Compiles the conjunction of `conds` over the joined columns; `None` when there are none.
    pub(crate) fn compile(
        funcs: &Functions,
        conds: impl IntoIterator<Item = Expr>,
        cols: &[Column],
    ) -> Result<Option<Self>> {
        let Some(e) = conjoin(conds) else {
            return Ok(None);
        };
        let c = compile(funcs, &e, cols)?;
        if c.ty != SqlType::Boolean {
            return Err(SqlError::at(e.span(), "a join condition must be BOOLEAN"));
        }
        Ok(Some(PairCondition(Calc::new(
            cols.to_vec(),
            Some(c.expr),
            Vec::new(),
        ))))
    }

    /// Whether the joined `row` satisfies `cond` (every row does without one; NULL counts as
    /// false).
    pub(crate) fn holds(cond: Option<&Self>, row: &[Value]) -> weir_engine::Result<bool> {
        cond.map_or(Ok(true), |PairCondition(calc)| calc.test(row))
    }
}

/// The name a relation's columns can be qualified with: its alias, or the table's name.
fn qualifier(rel: &TableFactor) -> Option<String> {
    match rel {
        TableFactor::Table { alias: Some(a), .. }
        | TableFactor::Derived { alias: Some(a), .. }
        | TableFactor::TableFunction { alias: Some(a), .. }
        | TableFactor::Function { alias: Some(a), .. } => Some(norm(&a.name)),
        TableFactor::Table { name, .. } => name.0.last().and_then(|p| p.as_ident()).map(norm),
        _ => None,
    }
}

fn quoted(value: &str, span: Span) -> Ident {
    Ident {
        value: value.to_string(),
        quote_style: Some('"'),
        span,
    }
}

/// Replaces column references with the joined stream's column names.
struct Resolve<'a> {
    scope: &'a [ScopeCol],
    error: Option<SqlError>,
}

impl Resolve<'_> {
    fn quals(&self) -> String {
        let q: BTreeSet<&str> = self
            .scope
            .iter()
            .filter_map(|c| c.qual.as_deref())
            .collect();
        q.into_iter().collect::<Vec<_>>().join(", ")
    }
}

impl VisitorMut for Resolve<'_> {
    type Break = ();
    fn pre_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<()> {
        let (span, text) = match e {
            Expr::CompoundIdentifier(_) => (e.span(), e.to_string()),
            _ => (Span::empty(), String::new()),
        };
        match e {
            Expr::CompoundIdentifier(ids) if ids.len() == 2 => {
                let (q, c) = (norm(&ids[0]), norm(&ids[1]));
                let hits: Vec<&ScopeCol> = self
                    .scope
                    .iter()
                    .filter(|s| s.qual.as_deref() == Some(q.as_str()) && s.name == c)
                    .collect();
                match hits.as_slice() {
                    [one] => *e = Expr::Identifier(quoted(&one.internal, ids[1].span)),
                    [] if self
                        .scope
                        .iter()
                        .any(|s| s.qual.as_deref() == Some(q.as_str())) =>
                    {
                        let cols: Vec<&str> = self
                            .scope
                            .iter()
                            .filter(|s| s.qual.as_deref() == Some(q.as_str()))
                            .map(|s| s.name.as_str())
                            .collect();
                        self.error = Some(SqlError::at(
                            span,
                            format!(
                                "column '{q}.{c}' not found; '{q}' has columns: {}",
                                cols.join(", ")
                            ),
                        ));
                        return ControlFlow::Break(());
                    }
                    [] => {
                        self.error = Some(SqlError::at(
                            span,
                            format!(
                                "'{q}' in '{q}.{c}' is not a table or alias of the FROM clause; it names: {}",
                                self.quals()
                            ),
                        ));
                        return ControlFlow::Break(());
                    }
                    _ => {
                        self.error = Some(SqlError::at(
                            span,
                            format!(
                                "'{q}' names two inputs of the join; give them different aliases with AS"
                            ),
                        ));
                        return ControlFlow::Break(());
                    }
                }
            }
            Expr::CompoundIdentifier(_) => {
                self.error = Some(SqlError::at(
                    span,
                    format!("'{text}': only `column` or `alias.column` can name a column"),
                ));
                return ControlFlow::Break(());
            }
            Expr::Identifier(id) => {
                let c = norm(id);
                let hits: Vec<&ScopeCol> = self.scope.iter().filter(|s| s.name == c).collect();
                if hits.len() > 1 {
                    let quals: Vec<String> = hits
                        .iter()
                        .map(|h| h.qual.clone().unwrap_or_else(|| "(subquery)".into()))
                        .collect();
                    self.error = Some(SqlError::at(
                        id.span,
                        format!(
                            "column '{c}' is ambiguous: both {} have it; qualify it, e.g. {}.{c}",
                            quals.join(" and "),
                            quals[0]
                        ),
                    ));
                    return ControlFlow::Break(());
                }
                if let [one] = hits.as_slice()
                    && one.internal != c
                {
                    *e = Expr::Identifier(quoted(&one.internal, id.span));
                }
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

fn resolve(e: &mut Expr, scope: &[ScopeCol]) -> Result<()> {
    let mut r = Resolve { scope, error: None };
    let _ = e.visit(&mut r);
    match r.error {
        Some(err) => Err(err),
        None => Ok(()),
    }
}

/// Strips the qualifier of `q.col` when the FROM clause is one relation named `q`.
struct Unqualify<'a> {
    qual: Option<&'a str>,
    error: Option<SqlError>,
}

impl VisitorMut for Unqualify<'_> {
    type Break = ();
    fn pre_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<()> {
        let (span, text) = (e.span(), e.to_string());
        if let Expr::CompoundIdentifier(ids) = e {
            let q = ids.first().map(norm).unwrap_or_default();
            // `q.col`, and `q.col.field` or `col.field` (a ROW column's field, as in Flink).
            let (col, fields) = if self.qual == Some(q.as_str()) && ids.len() >= 2 {
                (ids[1].clone(), &ids[2..])
            } else {
                (ids[0].clone(), &ids[1..])
            };
            if fields.is_empty() {
                *e = Expr::Identifier(col);
            } else if self.qual != Some(q.as_str()) || ids.len() > 2 {
                *e = Expr::CompoundFieldAccess {
                    root: Box::new(Expr::Identifier(col)),
                    access_chain: fields
                        .iter()
                        .map(|f| sqlparser::ast::AccessExpr::Dot(Expr::Identifier(f.clone())))
                        .collect(),
                };
            } else {
                self.error = Some(SqlError::at(
                    span,
                    match self.qual {
                        Some(n) if ids.len() == 2 => format!(
                            "'{q}' in '{text}' is not a table or alias of the FROM clause; it names: {n}"
                        ),
                        None if ids.len() == 2 => format!(
                            "'{q}' in '{text}' is not a table or alias of the FROM clause; give the subquery an alias with AS"
                        ),
                        _ => format!("'{text}': only `column` or `alias.column` can name a column"),
                    },
                ));
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    }
}

/// Applies `f` to every expression of the SELECT list, WHERE, GROUP BY and HAVING, and
/// `wildcard` to every `q.*`. Unnamed `q.col` items keep `col` as their name.
fn rewrite_exprs(
    s: &mut Select,
    f: &mut dyn FnMut(&mut Expr) -> Result<()>,
    wildcard: &dyn Fn(&ObjectName, Span) -> Result<Vec<SelectItem>>,
) -> Result<()> {
    let mut items = Vec::new();
    let mut used = BTreeSet::new();
    for it in std::mem::take(&mut s.projection) {
        match it {
            SelectItem::UnnamedExpr(Expr::CompoundIdentifier(ids)) if !ids.is_empty() => {
                let mut alias = ids[ids.len() - 1].clone();
                let mut e = Expr::CompoundIdentifier(ids);
                f(&mut e)?;
                // `SELECT l.seq, r.seq` names the second `seq0`, its name in the join.
                if let Expr::Identifier(id) = &e
                    && used.contains(&norm(&alias))
                {
                    alias = id.clone();
                }
                used.insert(norm(&alias));
                items.push(SelectItem::ExprWithAlias { expr: e, alias });
            }
            SelectItem::UnnamedExpr(mut e) => {
                if let Expr::Identifier(id) = &e {
                    used.insert(norm(id));
                }
                f(&mut e)?;
                items.push(SelectItem::UnnamedExpr(e));
            }
            SelectItem::ExprWithAlias { mut expr, alias } => {
                used.insert(norm(&alias));
                f(&mut expr)?;
                items.push(SelectItem::ExprWithAlias { expr, alias });
            }
            SelectItem::QualifiedWildcard(kind, _) => {
                let span = kind.span();
                match kind {
                    ast::SelectItemQualifiedWildcardKind::ObjectName(n) => {
                        items.extend(wildcard(&n, span)?)
                    }
                    ast::SelectItemQualifiedWildcardKind::Expr(e) => {
                        return Err(SqlError::at(e.span(), format!("'{e}.*' is not supported")));
                    }
                }
            }
            other => items.push(other),
        }
    }
    s.projection = items;
    if let Some(w) = &mut s.selection {
        f(w)?;
    }
    if let GroupByExpr::Expressions(es, _) = &mut s.group_by {
        for e in es {
            f(e)?;
        }
    }
    if let Some(h) = &mut s.having {
        f(h)?;
    }
    Ok(())
}

/// Where a column reference points in a two-input scope.
struct Sides<'a> {
    scope: &'a [ScopeCol],
    nl: usize,
    left: bool,
    right: bool,
    unknown: bool,
}

impl VisitorMut for Sides<'_> {
    type Break = ();
    fn pre_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<()> {
        let idx = match e {
            Expr::CompoundIdentifier(ids) if ids.len() == 2 => {
                let (q, c) = (norm(&ids[0]), norm(&ids[1]));
                self.scope
                    .iter()
                    .position(|s| s.qual.as_deref() == Some(q.as_str()) && s.name == c)
            }
            Expr::Identifier(id) => {
                let c = norm(id);
                self.scope
                    .iter()
                    .position(|s| s.name == c || s.internal == c)
            }
            Expr::CompoundIdentifier(_) => None,
            _ => return ControlFlow::Continue(()),
        };
        match idx {
            Some(i) if i < self.nl => self.left = true,
            Some(_) => self.right = true,
            None => self.unknown = true,
        }
        ControlFlow::Continue(())
    }
}

/// Which inputs `e` reads: (left, right), or `None` if it names a column of neither.
fn sides(e: &Expr, scope: &[ScopeCol], nl: usize) -> Option<(bool, bool)> {
    let mut v = Sides {
        scope,
        nl,
        left: false,
        right: false,
        unknown: false,
    };
    let _ = e.clone().visit(&mut v);
    (!v.unknown).then_some((v.left, v.right))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    L,
    R,
}

/// `rowtime [± INTERVAL]` of one input: the side and the offset in milliseconds.
fn time_term(e: &Expr, lrt: &str, rrt: &str) -> Result<Option<(Side, i64)>> {
    Ok(match e {
        Expr::Nested(inner) => time_term(inner, lrt, rrt)?,
        Expr::Identifier(id) if id.value == lrt => Some((Side::L, 0)),
        Expr::Identifier(id) if id.value == rrt => Some((Side::R, 0)),
        Expr::BinaryOp {
            left,
            op: op @ (BinaryOperator::Plus | BinaryOperator::Minus),
            right,
        } if matches!(right.as_ref(), Expr::Interval(_)) => match time_term(left, lrt, rrt)? {
            Some((side, off)) => {
                let ms = non_negative_interval_ms(right)?;
                Some((
                    side,
                    if *op == BinaryOperator::Plus {
                        off + ms
                    } else {
                        off - ms
                    },
                ))
            }
            None => None,
        },
        _ => None,
    })
}

/// A comparison of both rowtimes as `l - r OP c`.
fn time_bounds(e: &Expr, lrt: &str, rrt: &str) -> Result<Option<Vec<(BinaryOperator, i64)>>> {
    let cmp = |a: &Expr, op: &BinaryOperator, b: &Expr| -> Result<Option<(BinaryOperator, i64)>> {
        let (Some((sa, oa)), Some((sb, ob))) = (time_term(a, lrt, rrt)?, time_term(b, lrt, rrt)?)
        else {
            return Ok(None);
        };
        if sa == sb {
            return Ok(None);
        }
        // l + oa OP r + ob  ⇔  l - r OP ob - oa; with the sides swapped the operator flips.
        Ok(Some(if sa == Side::L {
            (op.clone(), ob - oa)
        } else {
            let flipped = match op {
                BinaryOperator::Lt => BinaryOperator::Gt,
                BinaryOperator::LtEq => BinaryOperator::GtEq,
                BinaryOperator::Gt => BinaryOperator::Lt,
                BinaryOperator::GtEq => BinaryOperator::LtEq,
                o => o.clone(),
            };
            (flipped, oa - ob)
        }))
    };
    Ok(match e {
        Expr::Nested(inner) => time_bounds(inner, lrt, rrt)?,
        Expr::BinaryOp { left, op, right }
            if matches!(
                op,
                BinaryOperator::Eq
                    | BinaryOperator::Lt
                    | BinaryOperator::LtEq
                    | BinaryOperator::Gt
                    | BinaryOperator::GtEq
            ) =>
        {
            cmp(left, op, right)?.map(|b| vec![b])
        }
        Expr::Between {
            expr,
            negated: false,
            low,
            high,
        } => match (
            cmp(expr, &BinaryOperator::GtEq, low)?,
            cmp(expr, &BinaryOperator::LtEq, high)?,
        ) {
            (Some(a), Some(b)) => Some(vec![a, b]),
            _ => None,
        },
        _ => None,
    })
}

impl Planner<'_> {
    /// Rewrites a SELECT with joins, qualified columns or DISTINCT into a plainer one (joins
    /// are planned here and read back by name); `None` when there is nothing to rewrite.
    pub(crate) fn rewrite_select(&mut self, q: &Query, select: &Select) -> Result<Option<Query>> {
        let mut s = select.clone();
        if matches!(s.distinct, Some(ast::Distinct::Distinct)) {
            distinct_to_group_by(&mut s)?;
        }
        let joins = s.from.len() > 1 || s.from.iter().any(|t| !t.joins.is_empty());
        if joins {
            self.plan_join(q, &mut s)?;
        } else if let [twj] = s.from.as_slice()
            && (qualifier(&twj.relation).is_some()
                || matches!(twj.relation, TableFactor::Derived { .. }))
        {
            // Other relations without a name (table functions) keep their qualified columns
            // for their own planner.
            let qual = qualifier(&twj.relation);
            let mut f = |e: &mut Expr| -> Result<()> {
                let mut u = Unqualify {
                    qual: qual.as_deref(),
                    error: None,
                };
                let _ = e.visit(&mut u);
                u.error.map_or(Ok(()), Err)
            };
            let wildcard = |n: &ObjectName, span: Span| -> Result<Vec<SelectItem>> {
                let name = n.0.last().and_then(|p| p.as_ident()).map(norm);
                if n.0.len() == 1 && name.is_some() && name == qual {
                    Ok(vec![SelectItem::Wildcard(Default::default())])
                } else {
                    Err(SqlError::at(
                        span,
                        format!("'{n}' is not a table or alias of the FROM clause"),
                    ))
                }
            };
            rewrite_exprs(&mut s, &mut f, &wildcard)?;
        }
        if s == *select {
            return Ok(None);
        }
        let mut q2 = q.clone();
        *q2.body = SetExpr::Select(Box::new(s));
        Ok(Some(q2))
    }

    /// Plans one relation of a FROM clause: a table or subquery directly, anything else as
    /// `SELECT * FROM relation` (which the single-relation planner knows).
    fn join_input(
        &mut self,
        q: &Query,
        select: &Select,
        rel: &TableFactor,
    ) -> Result<(Stream, Vec<ScopeCol>)> {
        let planned = match rel {
            TableFactor::Table {
                name, args: None, ..
            } if name.0.len() == 1 && name.0[0].as_ident().is_some() => {
                let id = name.0[0].as_ident().expect("checked");
                Some(self.scan(&norm(id), name.span())?)
            }
            TableFactor::Derived {
                subquery,
                lateral: false,
                ..
            } => Some(self.query(subquery)?),
            _ => None,
        };
        if let Some(st) = planned {
            return Ok(Self::scoped(st, rel));
        }
        let mut s = select.clone();
        s.projection = vec![SelectItem::Wildcard(Default::default())];
        s.from = vec![TableWithJoins {
            relation: rel.clone(),
            joins: Vec::new(),
        }];
        s.selection = None;
        s.group_by = GroupByExpr::Expressions(Vec::new(), Vec::new());
        s.having = None;
        s.distinct = None;
        let mut wq = q.clone();
        *wq.body = SetExpr::Select(Box::new(s));
        let st = self.query(&wq)?;
        Ok(Self::scoped(st, rel))
    }

    /// A planned relation with the columns it shows its FROM clause.
    fn scoped(st: Stream, rel: &TableFactor) -> (Stream, Vec<ScopeCol>) {
        let qual = qualifier(rel);
        let scope = st
            .cols
            .iter()
            .filter(|c| c.name != KIND)
            .map(|c| ScopeCol {
                qual: qual.clone(),
                name: c.name.clone(),
                internal: c.name.clone(),
            })
            .collect();
        (st, scope)
    }

    fn plan_join(&mut self, q: &Query, s: &mut Select) -> Result<()> {
        let mut where_conj: Vec<Option<Expr>> = Vec::new();
        if let Some(w) = s.selection.take() {
            let mut v = Vec::new();
            conjuncts(&w, &mut v);
            where_conj = v.into_iter().map(Some).collect();
        }
        let from = std::mem::take(&mut s.from);
        let mut acc: Option<(Stream, Vec<ScopeCol>)> = None;
        for twj in &from {
            let right = self.join_input(q, s, &twj.relation)?;
            acc = Some(match acc {
                None => right,
                Some(left) => self.join_two(
                    left,
                    right,
                    JoinKind::Inner,
                    None,
                    &mut where_conj,
                    twj.relation.span(),
                )?,
            });
            for j in &twj.joins {
                let (kind, c) = match &j.join_operator {
                    JoinOperator::Join(c) | JoinOperator::Inner(c) | JoinOperator::CrossJoin(c) => {
                        (JoinKind::Inner, c)
                    }
                    JoinOperator::Left(c) | JoinOperator::LeftOuter(c) => (JoinKind::Left, c),
                    JoinOperator::Right(c) | JoinOperator::RightOuter(c) => (JoinKind::Right, c),
                    JoinOperator::FullOuter(c) => (JoinKind::Full, c),
                    other => {
                        let text = format!("{other:?}");
                        let name = text.split('(').next().unwrap_or(&text).to_uppercase();
                        return Err(SqlError::at(
                            j.relation.span(),
                            format!(
                                "{name} joins are not supported; use [INNER], LEFT, RIGHT or FULL [OUTER] JOIN … ON"
                            ),
                        ));
                    }
                };
                let on = match c {
                    JoinConstraint::On(e) => Some(e),
                    JoinConstraint::None if kind == JoinKind::Inner => None,
                    JoinConstraint::None => {
                        return Err(SqlError::at(
                            j.relation.span(),
                            format!("{} JOIN needs ON", kind.name()),
                        ));
                    }
                    JoinConstraint::Using(_) => {
                        return Err(SqlError::at(
                            j.relation.span(),
                            "JOIN … USING is not supported yet; use ON",
                        ));
                    }
                    JoinConstraint::Natural => {
                        return Err(SqlError::at(
                            j.relation.span(),
                            "NATURAL JOIN is not supported yet; use ON",
                        ));
                    }
                };
                let right = self.join_input(q, s, &j.relation)?;
                let left = acc
                    .take()
                    .expect("the FROM clause's first relation is planned");
                acc = Some(self.join_two(
                    left,
                    right,
                    kind,
                    on,
                    &mut where_conj,
                    j.relation.span(),
                )?);
            }
        }
        let (stream, scope) = acc.expect("a join has relations");
        s.selection = conjoin(where_conj.into_iter().flatten());
        let mut f = |e: &mut Expr| resolve(e, &scope);
        let wildcard = |n: &ObjectName, span: Span| -> Result<Vec<SelectItem>> {
            let q =
                n.0.last()
                    .and_then(|p| p.as_ident())
                    .map(norm)
                    .unwrap_or_default();
            let items: Vec<SelectItem> = scope
                .iter()
                .filter(|c| n.0.len() == 1 && c.qual.as_deref() == Some(q.as_str()))
                .map(|c| SelectItem::ExprWithAlias {
                    expr: Expr::Identifier(quoted(&c.internal, span)),
                    alias: quoted(&c.name, span),
                })
                .collect();
            if items.is_empty() {
                return Err(SqlError::at(
                    span,
                    format!("'{n}' is not a table or alias of the FROM clause"),
                ));
            }
            Ok(items)
        };
        rewrite_exprs(s, &mut f, &wildcard)?;
        let name = format!("${}", self.uid("join"));
        s.from = vec![self.stash(name, stream, None)];
        Ok(())
    }

    /// Keeps a planned stream under a generated `name` and returns the FROM relation that
    /// reads it (named `alias`, if given): how a query whose FROM clause was planned here
    /// (a join, a Top-N) reads its result.
    pub(crate) fn stash(
        &mut self,
        name: String,
        stream: Stream,
        alias: Option<ast::TableAlias>,
    ) -> TableWithJoins {
        let relation = TableFactor::Table {
            name: ObjectName::from(vec![Ident::with_quote('"', name.clone())]),
            alias,
            args: None,
            with_hints: Vec::new(),
            version: None,
            with_ordinality: false,
            partitions: Vec::new(),
            json_path: None,
            sample: None,
            index_hints: Vec::new(),
        };
        self.planned.insert(name, stream);
        TableWithJoins {
            relation,
            joins: Vec::new(),
        }
    }

    /// Joins two planned inputs: splits the conditions (ON, and for inner joins the WHERE
    /// conjuncts that read both inputs) into equi-keys, bounds on both rowtimes and a residual
    /// predicate, and plans an interval join.
    #[allow(clippy::too_many_arguments)]
    fn join_two(
        &mut self,
        (left, lscope): (Stream, Vec<ScopeCol>),
        (right, rscope): (Stream, Vec<ScopeCol>),
        kind: JoinKind,
        on: Option<&Expr>,
        where_conj: &mut [Option<Expr>],
        span: Span,
    ) -> Result<(Stream, Vec<ScopeCol>)> {
        for (st, which) in [(&left, "left"), (&right, "right")] {
            if st.cols.iter().any(|c| c.name == KIND) {
                return Err(SqlError::at(
                    span,
                    format!(
                        "the {which} input of this join is an updating result ({}); joins over updating inputs are not supported yet",
                        crate::changelog::producer(st)
                    ),
                ));
            }
        }
        let nl = left.cols.len();
        let mut scope = lscope;
        let mut cols = left.cols.clone();
        for (rc, col) in rscope.into_iter().zip(&right.cols) {
            let mut internal = rc.internal.clone();
            let mut n = 0;
            while scope.iter().any(|c| c.internal == internal) {
                internal = format!("{}{n}", rc.internal);
                n += 1;
            }
            cols.push(Column {
                name: internal.clone(),
                ty: col.ty,
            });
            scope.push(ScopeCol { internal, ..rc });
        }
        let mut conds = Vec::new();
        if let Some(on) = on {
            conjuncts(on, &mut conds);
        }
        if kind == JoinKind::Inner {
            for w in where_conj.iter_mut() {
                if let Some(e) = w
                    && sides(e, &scope, nl) == Some((true, true))
                {
                    conds.push(w.take().expect("checked"));
                }
            }
        }
        let lrt = left
            .rowtime
            .map(|i| cols[i].name.clone())
            .unwrap_or_default();
        let rrt = right
            .rowtime
            .map(|i| cols[nl + i].name.clone())
            .unwrap_or_default();
        // How EXPLAIN and messages name a joined column: `alias.column`.
        let shown = |internal: &str| -> String {
            match scope.iter().find(|c| c.internal == internal) {
                Some(ScopeCol {
                    qual: Some(q),
                    name,
                    ..
                }) => format!("{q}.{name}"),
                _ => internal.to_string(),
            }
        };
        let (lrt_shown, rrt_shown) = (shown(&lrt), shown(&rrt));
        let mut keys: Vec<(Expr, Expr)> = Vec::new();
        let mut shown_keys = Vec::new();
        let mut residual = Vec::new();
        let mut shown_residual = Vec::new();
        let (mut lower, mut upper): (Option<i64>, Option<i64>) = (None, None);
        let mut window_eq = BTreeSet::new();
        // Both inputs carry windows (window TVFs or window aggregates) and the condition
        // equates their window starts: a window join, even where their window ends are time
        // attributes that would also bound an interval join.
        let window_starts = match (left.window, right.window) {
            (Some(lw), Some(rw)) => Some((
                cols[lw.start].name.clone(),
                cols[nl + rw.start].name.clone(),
            )),
            _ => None,
        };
        let mut starts_equated = false;
        // The conjuncts read as time bounds: a regular join (one bound only) tests them on
        // each pair instead.
        let mut bound_conds: Vec<(Expr, String)> = Vec::new();
        for c in &conds {
            let mut r = c.clone();
            resolve(&mut r, &scope)?;
            if let (
                Some((ls, rs)),
                Expr::BinaryOp {
                    left: a,
                    op: BinaryOperator::Eq,
                    right: b,
                },
            ) = (&window_starts, &r)
                && let (Expr::Identifier(x), Expr::Identifier(y)) = (a.as_ref(), b.as_ref())
                && ((x.value == *ls && y.value == *rs) || (x.value == *rs && y.value == *ls))
            {
                starts_equated = true;
            }
            if !lrt.is_empty()
                && !rrt.is_empty()
                && let Some(bounds) = time_bounds(&r, &lrt, &rrt)?
            {
                bound_conds.push((r.clone(), c.to_string()));
                for (op, v) in bounds {
                    match op {
                        BinaryOperator::GtEq => lower = Some(lower.map_or(v, |l| l.max(v))),
                        BinaryOperator::Gt => lower = Some(lower.map_or(v + 1, |l| l.max(v + 1))),
                        BinaryOperator::LtEq => upper = Some(upper.map_or(v, |u| u.min(v))),
                        BinaryOperator::Lt => upper = Some(upper.map_or(v - 1, |u| u.min(v - 1))),
                        _ => {
                            lower = Some(lower.map_or(v, |l| l.max(v)));
                            upper = Some(upper.map_or(v, |u| u.min(v)));
                        }
                    }
                }
                continue;
            }
            if let Expr::BinaryOp {
                left: a,
                op: BinaryOperator::Eq,
                right: b,
            } = &r
            {
                match (sides(a, &scope, nl), sides(b, &scope, nl)) {
                    (Some((true, false)), Some((false, true))) => {
                        note_window_eq(a, b, &scope, &mut window_eq);
                        keys.push((a.as_ref().clone(), b.as_ref().clone()));
                        shown_keys.push(c.to_string());
                        continue;
                    }
                    (Some((false, true)), Some((true, false))) => {
                        note_window_eq(b, a, &scope, &mut window_eq);
                        keys.push((b.as_ref().clone(), a.as_ref().clone()));
                        shown_keys.push(c.to_string());
                        continue;
                    }
                    _ => {}
                }
            }
            residual.push(r);
            shown_residual.push(c.to_string());
        }
        let windowed = window_starts.is_some();
        if (window_eq.contains("window_start") && window_eq.contains("window_end"))
            || starts_equated
            || (windowed && lower.is_none() && upper.is_none())
        {
            // Both sides carry windows (and no interval bounds): a window join
            // (window_join.rs) over the same conditions, named as its FROM clause names them;
            // it names what is missing when the window bounds are not equated.
            let on = conjoin(conds.iter().cloned()).expect("the window bounds are equated");
            let qual = |cols: &[ScopeCol]| cols.first().and_then(|c| c.qual.clone());
            let (lq, rq) = (qual(&scope[..nl]), qual(&scope[nl..]));
            let wkind = match kind {
                JoinKind::Inner => crate::window_join::JoinKind::Inner,
                JoinKind::Left => crate::window_join::JoinKind::Left,
                JoinKind::Right => crate::window_join::JoinKind::Right,
                JoinKind::Full => crate::window_join::JoinKind::Full,
            };
            let (joined, _) = self.window_join(left, lq, right, rq, &on, wkind)?;
            return Ok((joined, scope));
        }
        let example = "e.g. ON a.k = b.k AND a.ts BETWEEN b.ts - INTERVAL '1' MINUTE AND b.ts";
        if kind == JoinKind::Inner && (lower.is_none() || upper.is_none()) {
            // Not bounded in time on both sides: a regular join, with any one-sided time
            // bound tested on each pair like the other conditions.
            for (r, shown_c) in bound_conds {
                residual.push(r);
                shown_residual.push(shown_c);
            }
            // WHERE conjuncts over one input filter that input before the join (they hold
            // of the joined row exactly when they hold of that input's row).
            for w in where_conj.iter_mut() {
                if let Some(e) = w
                    && matches!(sides(e, &scope, nl), Some((true, false) | (false, true)))
                {
                    let mut r = e.clone();
                    resolve(&mut r, &scope)?;
                    residual.push(r);
                    shown_residual.push(e.to_string());
                    *w = None;
                }
            }
            let keys = self.compile_keys(&keys, &cols[..nl], &cols[nl..])?;
            let joined = self.regular_join(
                (left, right),
                &cols,
                keys,
                (residual, shown_residual),
                shown_keys,
            )?;
            return Ok((joined, scope));
        }
        let (lower, upper) = match (lower, upper) {
            (Some(l), Some(u)) => (l, u),
            (None, None) => {
                let attrs = match (left.rowtime, right.rowtime) {
                    (Some(_), Some(_)) => format!("here {lrt_shown} and {rrt_shown}"),
                    (None, _) => "the left input has none (declare WATERMARK FOR)".into(),
                    (_, None) => "the right input has none (declare WATERMARK FOR)".into(),
                };
                return Err(SqlError::at(
                    span,
                    format!(
                        "regular {} joins (without bounds on both inputs' time attributes) produce an updating result and are not supported yet (regular INNER joins are); bound the join on the time attributes ({attrs}), {example}",
                        kind.name()
                    ),
                ));
            }
            _ => {
                return Err(SqlError::at(
                    span,
                    format!(
                        "an interval join needs a lower and an upper bound on {lrt_shown} - {rrt_shown}; found only one, {example}"
                    ),
                ));
            }
        };
        if lower > upper {
            return Err(SqlError::at(
                span,
                format!(
                    "the join's time bounds can never hold: {lrt_shown} - {rrt_shown} must lie in [{lower}, {upper}] ms"
                ),
            ));
        }
        let (lcols, rcols) = cols.split_at(nl);
        let (lkeys, rkeys, to_double) = self.compile_keys(&keys, lcols, rcols)?;
        let residual_c = PairCondition::compile(&self.funcs, residual.iter().cloned(), &cols)?;
        let luid = self.uid("join-left");
        let lks = tag_side(
            &self.funcs,
            &left,
            lkeys,
            lcols,
            to_double.clone(),
            ("Join input (left)", &luid),
        )?;
        let ruid = self.uid("join-right");
        let rks = tag_side(
            &self.funcs,
            &right,
            rkeys,
            rcols,
            to_double,
            ("Join input (right)", &ruid),
        )?;
        let juid = self.uid("interval-join");
        // The engine bounds `right - left`; the plan bounds `left - right`.
        let mut joining = lks.interval_join(&rks).between(-upper, -lower);
        if kind.keeps_left() {
            joining = joining.left_outer();
        }
        if kind.keeps_right() {
            joining = joining.right_outer();
        }
        let ds = joining
            .process(SqlIntervalJoin {
                nl,
                nr: cols.len() - nl,
                residual: residual_c,
            })
            .name(&format!("IntervalJoin {}", kind.name()))
            .uid(&juid)
            .state_schema(&rows_schema(lcols, rcols));
        let title = format!(
            "IntervalJoin: type={} keys=[{}] bounds=[{lower} ms <= {lrt_shown} - {rrt_shown} <= {upper} ms]{} uid={juid}",
            kind.name(),
            shown_keys.join(", "),
            if shown_residual.is_empty() {
                String::new()
            } else {
                format!(" where=({})", shown_residual.join(" AND "))
            }
        );
        let mut child = left.plan.clone();
        child.extend(right.plan.iter().cloned());
        Ok((
            Stream {
                ds,
                cols,
                // Both rowtimes become plain TIMESTAMP(3) columns (see docs/sql.md).
                rowtime: None,
                plan: nest(title, &child),
                window: None,
                proctime: None,
            },
            scope,
        ))
    }

    /// Compiles the equi-join keys over each input's columns (named as in the joined
    /// stream), and says which are compared as DOUBLE (an integer with a DOUBLE).
    pub(crate) fn compile_keys(
        &self,
        keys: &[(Expr, Expr)],
        lcols: &[Column],
        rcols: &[Column],
    ) -> Result<(KeyExprs, KeyExprs, Vec<bool>)> {
        let mut lkeys = Vec::new();
        let mut rkeys = Vec::new();
        let mut to_double = Vec::new();
        for (a, b) in keys {
            let ca = compile(&self.funcs, a, lcols)?;
            let cb = compile(&self.funcs, b, rcols)?;
            // Keys are compared by their serialized form: a DECIMAL only equals a DECIMAL of
            // its scale there.
            let decimal_scales = |t: SqlType| match t {
                SqlType::Decimal(_, s) => Some(s),
                _ => None,
            };
            let comparable = match (decimal_scales(ca.ty), decimal_scales(cb.ty)) {
                (None, None) => ca.ty.is_numeric() && cb.ty.is_numeric(),
                (a, b) => a == b,
            };
            if ca.ty != cb.ty && !comparable {
                return Err(SqlError::at(
                    a.span(),
                    format!(
                        "join key '{a} = {b}' compares {} with {}; add a CAST",
                        ca.ty.sql_name(),
                        cb.ty.sql_name()
                    ),
                ));
            }
            // Integers of any width are one representation; only DOUBLE differs.
            to_double
                .push(ca.ty != cb.ty && (ca.ty == SqlType::Double || cb.ty == SqlType::Double));
            lkeys.push((ca.expr, ca.ty));
            rkeys.push((cb.expr, cb.ty));
        }
        Ok((lkeys, rkeys, to_double))
    }
}

pub(crate) type KeyExprs = Vec<(Arc<dyn PhysicalExpr>, SqlType)>;

/// What one join input's rows go through before they are keyed: a Calc that keeps the rows
/// `filter` holds for and appends the computed keys (`None` when the keys are plain columns
/// and there is no filter), and where each key is in the row then.
pub(crate) fn side_calc(
    funcs: &Functions,
    side_cols: &[Column],
    keys: KeyExprs,
    filter: Option<Arc<dyn PhysicalExpr>>,
) -> Result<(Option<Calc>, Vec<usize>)> {
    let n = side_cols.len();
    let key_cols: Option<Vec<usize>> = keys
        .iter()
        .map(|(e, _)| {
            e.downcast_ref::<datafusion_physical_expr::expressions::Column>()
                .map(|c| c.index())
        })
        .collect();
    let computed = key_cols.is_none();
    let key_at = key_cols.unwrap_or_else(|| (n..n + keys.len()).collect());
    if !computed && filter.is_none() {
        return Ok((None, key_at));
    }
    let mut exprs = Vec::new();
    for c in side_cols {
        let e = compile(
            funcs,
            &Expr::Identifier(quoted(&c.name, Span::empty())),
            side_cols,
        )?;
        exprs.push((e.expr, e.ty));
    }
    if computed {
        exprs.extend(keys);
    }
    Ok((Some(Calc::new(side_cols.to_vec(), filter, exprs)), key_at))
}

/// One join input keyed by its equi-join keys, each record stamped with its rowtime (no
/// timestamp, so it joins nothing, when the rowtime or a key is NULL). Keys compared with a
/// key of the other type are carried as DOUBLE. Keys that are plain columns (`ON a.id =
/// b.id`, the common case) are read from the row; computed keys are appended to it.
fn tag_side(
    funcs: &Functions,
    st: &Stream,
    keys: KeyExprs,
    side_cols: &[Column],
    to_double: Vec<bool>,
    (name, uid): (&str, &str),
) -> Result<KeyedStream<Vec<Value>, Row>> {
    let rt = st.rowtime.expect("bounded on both rowtimes");
    let (calc, key_at) = side_calc(funcs, side_cols, keys, None)?;
    let key_at = Arc::new(key_at);
    let stamp_at = key_at.clone();
    let stamped = st.ds.transform_batches(name, move |recs: Vec<Rec<Row>>| {
        let mut recs = match &calc {
            Some(calc) => calc.apply(recs)?,
            None => recs,
        };
        for r in &mut recs {
            let vals = &r.value.0;
            r.ts = match vals[rt] {
                Value::Ts(t) if !stamp_at.iter().any(|&k| vals[k] == Value::Null) => t,
                _ => NO_TIMESTAMP,
            };
        }
        Ok(recs)
    });
    let converts = to_double.contains(&true);
    let write_at = key_at.clone();
    let keyed = stamped.uid(uid).key_by(move |r: &Row| {
        key_at
            .iter()
            .zip(&to_double)
            .map(|(&c, &d)| match &r.0[c] {
                Value::Int(i) if d => Value::Double(*i as f64),
                other => other.clone(),
            })
            .collect()
    });
    // The exchange into the join (at parallelism > 1) hashes each row's key bytes as written
    // from the row, not a key built and serialized per row. Keys converted to DOUBLE keep the
    // key function.
    Ok(if converts {
        keyed
    } else {
        keyed.with_key_bytes(move |r: &Row, buf| write_key(write_at.iter().map(|&c| &r.0[c]), buf))
    })
}

/// Records `l.window_start = r.window_start`-style equalities (window joins).
fn note_window_eq(a: &Expr, b: &Expr, scope: &[ScopeCol], seen: &mut BTreeSet<&'static str>) {
    let name = |e: &Expr| match e {
        Expr::Identifier(id) => scope
            .iter()
            .find(|c| c.internal == id.value)
            .map(|c| c.name.clone()),
        _ => None,
    };
    if let (Some(x), Some(y)) = (name(a), name(b))
        && x == y
    {
        if x == "window_start" {
            seen.insert("window_start");
        } else if x == "window_end" {
            seen.insert("window_end");
        }
    }
}

fn distinct_to_group_by(s: &mut Select) -> Result<()> {
    let span = s.select_token.0.span;
    if !matches!(&s.group_by, GroupByExpr::Expressions(e, _) if e.is_empty()) {
        return Err(SqlError::at(
            span,
            "SELECT DISTINCT with GROUP BY is not supported yet",
        ));
    }
    if let Some(a) = has_aggregate(&s.projection) {
        return Err(SqlError::at(
            a,
            "SELECT DISTINCT with aggregates is not supported yet",
        ));
    }
    let mut keys = Vec::new();
    for it in &s.projection {
        match it {
            SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => {
                keys.push(e.clone())
            }
            other => {
                return Err(SqlError::at(
                    other.span(),
                    "SELECT DISTINCT * is not supported yet; list the columns",
                ));
            }
        }
    }
    s.group_by = GroupByExpr::Expressions(keys, Vec::new());
    s.distinct = None;
    Ok(())
}

/// The state schema of a join buffering rows of `left` and `right` (the column types of each
/// side): a query whose inputs changed does not read another's buffered rows as its own.
pub(crate) fn rows_schema(left: &[Column], right: &[Column]) -> String {
    let types = |cols: &[Column]| cols.iter().map(|c| c.ty).collect::<Vec<_>>();
    format!(
        "left({}) right({})",
        crate::agg::types_list(&types(left)),
        crate::agg::types_list(&types(right))
    )
}

/// The SQL side of an interval join (the engine's `KeyedStream::interval_join` keeps the
/// rows and their time bounds): joined rows are left ++ right values, filtered by the
/// residual condition; an outer side's rows that joined nothing are padded with NULLs.
#[derive(Clone)]
struct SqlIntervalJoin {
    /// Columns of each side (a side's rows may carry its computed keys after them).
    nl: usize,
    nr: usize,
    residual: Option<PairCondition>,
}

impl IntervalJoinFunction for SqlIntervalJoin {
    type Left = Row;
    type Right = Row;
    type Out = Row;

    fn join(&self, l: &Row, r: &Row, out: &mut Collector<Row>) -> weir_engine::Result<bool> {
        let mut v = Vec::with_capacity(self.nl + self.nr);
        v.extend_from_slice(&l.0[..self.nl]);
        v.extend_from_slice(&r.0[..self.nr]);
        let pass = PairCondition::holds(self.residual.as_ref(), &v)?;
        if pass {
            out.collect(Row(v));
        }
        Ok(pass)
    }

    fn left_unmatched(&self, l: Row, out: &mut Collector<Row>) -> weir_engine::Result<()> {
        let mut v = l.0;
        v.truncate(self.nl);
        v.extend(std::iter::repeat_n(Value::Null, self.nr));
        out.collect(Row(v));
        Ok(())
    }

    fn right_unmatched(&self, r: Row, out: &mut Collector<Row>) -> weir_engine::Result<()> {
        let mut v: Vec<Value> = std::iter::repeat_n(Value::Null, self.nl).collect();
        v.extend_from_slice(&r.0[..self.nr]);
        out.collect(Row(v));
        Ok(())
    }
}
