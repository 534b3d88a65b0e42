//! Top-N and deduplication, planned from Flink's query shape: a subquery that numbers its
//! rows with `ROW_NUMBER() OVER (PARTITION BY p ORDER BY o)` read by a query whose WHERE
//! keeps `rn <= N` (or `rn < N`, `rn = 1`). The subquery is planned without the numbering,
//! its partition and order expressions appended as hidden columns; the ranking runs in
//! [`RankFn`](crate::exec::rank::RankFn); the outer query then reads the ranked, updating
//! rows (the subquery's columns and `rn`) by a generated name.

use super::{Planner, Stream, nest, norm};
use crate::changelog::{KIND, refuse_updating};
use crate::error::{Result, SqlError};
use crate::exec::rank::{RankFn, SortKey};
use crate::join::{conjoin, conjuncts};
use crate::value::{Column, Row, SqlType, write_key};
use sqlparser::ast::{
    self, BinaryOperator, Expr, FunctionArguments, Ident, Query, Select, SelectItem, SetExpr,
    Spanned, TableFactor, Value as AstValue, WindowType,
};

/// The N of a conjunct `rn <= N`, `rn < N`, `rn = 1` (or mirrored), `None` when the
/// conjunct does not read `rn`; an error when it reads it otherwise.
fn rank_bound(e: &Expr, rn: &str) -> Result<Option<usize>> {
    let is_rn = |e: &Expr| matches!(e, Expr::Identifier(id) if norm(id) == rn);
    let number = |e: &Expr| match e {
        Expr::Value(v) => match &v.value {
            AstValue::Number(n, _) => n.parse::<i64>().ok(),
            _ => None,
        },
        _ => None,
    };
    let mut reads = false;
    let _ = ast::visit_expressions(e, |x| {
        reads |= is_rn(x);
        std::ops::ControlFlow::<()>::Continue(())
    });
    if !reads {
        return Ok(None);
    }
    let bound = match e {
        Expr::BinaryOp { left, op, right } => {
            // As `rn op n`.
            let (op, n) = match (is_rn(left), is_rn(right)) {
                (true, false) => (op.clone(), number(right)),
                (false, true) => (
                    match op {
                        BinaryOperator::GtEq => BinaryOperator::LtEq,
                        BinaryOperator::Gt => BinaryOperator::Lt,
                        other => other.clone(),
                    },
                    number(left),
                ),
                _ => (op.clone(), None),
            };
            match (op, n) {
                (BinaryOperator::LtEq, Some(n)) if n >= 1 => Some(n),
                (BinaryOperator::Lt, Some(n)) if n >= 2 => Some(n - 1),
                (BinaryOperator::Eq, Some(1)) => Some(1),
                _ => None,
            }
        }
        _ => None,
    };
    match bound {
        Some(n) => Ok(Some(n as usize)),
        None => Err(SqlError::at(
            e.span(),
            format!(
                "'{e}': a ROW_NUMBER() result is only supported as Top-N, filtered with {rn} <= N, {rn} < N or {rn} = 1 (other rank ranges are not supported yet)"
            ),
        )),
    }
}

impl Planner<'_> {
    /// Plans the Top-N of a `SELECT … FROM (SELECT …, ROW_NUMBER() OVER (…) AS rn FROM …)
    /// WHERE rn <= N` and returns the outer query reading it; `None` when `select` is not of
    /// that shape.
    pub(crate) fn rewrite_top_n(&mut self, q: &Query, select: &Select) -> Result<Option<Query>> {
        let [twj] = select.from.as_slice() else {
            return Ok(None);
        };
        let TableFactor::Derived {
            subquery,
            lateral: false,
            alias,
            ..
        } = &twj.relation
        else {
            return Ok(None);
        };
        if !twj.joins.is_empty() {
            return Ok(None);
        }
        let SetExpr::Select(inner) = subquery.body.as_ref() else {
            return Ok(None);
        };
        let Some((pos, f, rn)) = inner
            .projection
            .iter()
            .enumerate()
            .find_map(|(i, it)| match it {
                SelectItem::ExprWithAlias {
                    expr: Expr::Function(f),
                    alias,
                } if f.over.is_some() => Some((i, f, alias)),
                _ => None,
            })
        else {
            return Ok(None);
        };
        let fname = f.name.to_string().to_lowercase();
        match fname.as_str() {
            "row_number" => {}
            "rank" | "dense_rank" => {
                return Err(SqlError::at(
                    f.name.span(),
                    format!(
                        "{}() Top-N is not supported yet; use ROW_NUMBER()",
                        fname.to_uppercase()
                    ),
                ));
            }
            _ => return Ok(None),
        }
        let span = f.name.span();
        if !matches!(&f.args, FunctionArguments::None)
            && !matches!(&f.args, FunctionArguments::List(l) if l.args.is_empty())
        {
            return Err(SqlError::at(span, "ROW_NUMBER() takes no arguments"));
        }
        let Some(WindowType::WindowSpec(spec)) = &f.over else {
            return Err(SqlError::at(
                span,
                "named windows (OVER w) are not supported yet",
            ));
        };
        if spec.window_frame.is_some() || spec.order_by.is_empty() {
            return Err(SqlError::at(
                span,
                "ROW_NUMBER() needs OVER ([PARTITION BY …] ORDER BY …) without a frame",
            ));
        }
        let rn_name = norm(rn);
        // The outer WHERE's bound on rn; its other conjuncts stay.
        let mut n: Option<usize> = None;
        let mut rest = Vec::new();
        if let Some(w) = &select.selection {
            let mut parts = Vec::new();
            conjuncts(w, &mut parts);
            for p in parts {
                match rank_bound(&p, &rn_name)? {
                    Some(b) => n = Some(n.map_or(b, |m| m.min(b))),
                    None => rest.push(p),
                }
            }
        }
        let Some(n) = n else {
            return Err(SqlError::at(
                span,
                format!(
                    "ROW_NUMBER() is only supported as Top-N or deduplication: keep its first rows with WHERE {rn_name} <= N in the query that reads it (OVER aggregations are not supported yet)"
                ),
            ));
        };

        // The subquery, numbered no more, with the partition and order expressions as
        // hidden columns.
        let hidden = |kind: &str, i: usize| format!("$rank_{kind}{i}");
        let mut inner2 = inner.as_ref().clone();
        inner2.projection.remove(pos);
        for (i, e) in spec.partition_by.iter().enumerate() {
            inner2.projection.push(SelectItem::ExprWithAlias {
                expr: e.clone(),
                alias: Ident::with_quote('"', hidden("p", i)),
            });
        }
        for (i, o) in spec.order_by.iter().enumerate() {
            inner2.projection.push(SelectItem::ExprWithAlias {
                expr: o.expr.clone(),
                alias: Ident::with_quote('"', hidden("o", i)),
            });
        }
        let mut inner_q = subquery.as_ref().clone();
        *inner_q.body = SetExpr::Select(Box::new(inner2));
        let st = self.query(&inner_q)?;
        refuse_updating(&st, "ROW_NUMBER() (Top-N)", span)?;
        let at = |name: &str| {
            st.cols
                .iter()
                .position(|c| c.name == name)
                .expect("a hidden column the subquery selects")
        };
        let part: Vec<usize> = (0..spec.partition_by.len())
            .map(|i| at(&hidden("p", i)))
            .collect();
        let order: Vec<SortKey> = spec
            .order_by
            .iter()
            .enumerate()
            .map(|(i, o)| {
                let descending = o.options.asc == Some(false);
                SortKey {
                    col: at(&hidden("o", i)),
                    descending,
                    nulls_first: o.options.nulls_first.unwrap_or(!descending),
                }
            })
            .collect();
        let width = st.cols.len() - part.len() - order.len();
        // Ordered by the time attribute, keeping one row: a deduplication (Flink's
        // Deduplicate), where a later row of the same time replaces the kept one when the
        // last is kept.
        let by_rowtime = match (spec.order_by.as_slice(), st.rowtime) {
            ([o], Some(rt)) => {
                matches!(&o.expr, Expr::Identifier(id) if norm(id) == st.cols[rt].name)
                    || matches!(&o.expr, Expr::CompoundIdentifier(ids) if ids.last().is_some_and(|id| norm(id) == st.cols[rt].name))
            }
            _ => false,
        } && n == 1;
        let keep_last = by_rowtime && order[0].descending;
        let shown_part: Vec<String> = spec.partition_by.iter().map(|e| e.to_string()).collect();
        let node = if by_rowtime {
            format!(
                "Deduplicate(keep=[{}], key=[{}], order=[ROWTIME])",
                if keep_last { "LastRow" } else { "FirstRow" },
                shown_part.join(", ")
            )
        } else {
            format!(
                "Rank(rankType=[ROW_NUMBER], rankRange=[rankStart=1, rankEnd={n}], partitionBy=[{}], orderBy=[{}])",
                shown_part.join(", "),
                spec.order_by
                    .iter()
                    .map(|o| o.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        let ttl = self.env.config().state_ttl()?;
        let uid = self.uid("rank");
        let types: Vec<SqlType> = st.cols.iter().map(|c| c.ty).collect();
        let schema = format!(
            "rank(n={n}, order={}) rows({})",
            order
                .iter()
                .map(|k| format!("{}{}", k.col, if k.descending { " DESC" } else { "" }))
                .collect::<Vec<_>>()
                .join(", "),
            crate::agg::types_list(&types)
        );
        let key_of = part.clone();
        let ds = st
            .ds
            .key_by(move |r: &Row| key_of.iter().map(|&c| r.0[c].clone()).collect::<Vec<_>>())
            .with_key_bytes(move |r: &Row, buf| write_key(part.iter().map(|&c| &r.0[c]), buf))
            .process(RankFn::new(order, n, keep_last, width, ttl))
            .name(&node)
            .uid(&uid)
            .state_schema(&schema);
        let mut cols = st.cols[..width].to_vec();
        cols.push(Column {
            name: rn_name,
            ty: SqlType::BigInt,
        });
        cols.push(Column {
            name: KIND.into(),
            ty: SqlType::BigInt,
        });
        let ranked = Stream {
            ds,
            cols,
            rowtime: None,
            proctime: None,
            plan: nest(format!("{node} uid={uid}"), &st.plan),
            window: None,
        };
        let mut outer = select.clone();
        outer.selection = conjoin(rest);
        outer.from = vec![self.stash(format!("${uid}"), ranked, alias.clone())];
        let mut q2 = q.clone();
        *q2.body = SetExpr::Select(Box::new(outer));
        Ok(Some(q2))
    }
}
