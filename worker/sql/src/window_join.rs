//! Window joins (Flink's window join) and the name scope of joined relations.
//!
//! Two relations that carry windows (window TVFs, window aggregates, cascades) joined
//! `ON L.window_start = R.window_start AND L.window_end = R.window_end [AND L.k = R.k …]
//! [AND other conditions]` are joined per window: both sides are tagged, unioned and keyed by
//! (window_start, window_end, equi keys); a keyed process function buffers each side's rows
//! in keyed list state until the watermark passes the window's end, then emits the pairs
//! that satisfy the remaining conditions (plus unmatched rows padded with NULLs for outer
//! joins) and clears the state. Rows arriving after their window fired are dropped.

use crate::error::{Result, SqlError};
use crate::join::PairCondition;
use crate::plan::{Planner, Stream, nest, norm};
use crate::tvf::WindowProps;
use crate::value::{Column, Row, Value, write_key};
use sqlparser::ast::{
    self, BinaryOperator, Expr, Ident, SelectItem, Spanned, VisitMut, VisitorMut,
};
use std::ops::ControlFlow;
use weir_engine::api::{Collector, KeyedContext, KeyedProcessFunction, RuntimeContext};
use weir_engine::runtime::Rec;
use weir_engine::state::{ListState, StateDescriptor};
use weir_engine::time::Timestamp;

/// Which rows of a join survive without a partner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JoinKind {
    Inner,
    Left,
    Right,
    Full,
}

impl JoinKind {
    fn sql(self) -> &'static str {
        match self {
            JoinKind::Inner => "INNER",
            JoinKind::Left => "LEFT",
            JoinKind::Right => "RIGHT",
            JoinKind::Full => "FULL",
        }
    }
}

/// How column references of a query resolve over its FROM relations: `q.col` by the
/// relation's alias (or table name), `col` when only one relation has it.
pub(crate) struct Scope {
    sides: Vec<Side>,
}

/// One relation of a scope: its qualifier and, per column, (name in the relation, name in
/// the planned stream).
type Side = (Option<String>, Vec<(String, String)>);

impl Scope {
    /// The scope of a single relation: qualified names lose their qualifier.
    pub(crate) fn single(qualifier: Option<String>, cols: &[Column]) -> Scope {
        Scope {
            sides: vec![(
                qualifier,
                cols.iter()
                    .map(|c| (c.name.clone(), c.name.clone()))
                    .collect(),
            )],
        }
    }

    fn resolve_qualified(&self, q: &Ident, c: &Ident) -> Result<Option<String>> {
        let (qn, cn) = (norm(q), norm(c));
        let Some((_, cols)) = self
            .sides
            .iter()
            .find(|(sq, _)| sq.as_deref() == Some(qn.as_str()))
        else {
            if self.sides.len() == 1 {
                // Leave it to the expression compiler's message.
                return Ok(None);
            }
            return Err(SqlError::at(
                q.span,
                format!(
                    "unknown table or alias '{qn}' in '{q}.{c}'; the FROM clause names {}",
                    self.sides
                        .iter()
                        .filter_map(|(q, _)| q.clone())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        };
        match cols.iter().find(|(n, _)| *n == cn) {
            Some((_, internal)) => Ok(Some(internal.clone())),
            None => Err(SqlError::at(
                c.span,
                format!(
                    "column '{cn}' not found in '{qn}'; its columns: {}",
                    cols.iter()
                        .filter(|(n, _)| !n.starts_with('$'))
                        .map(|(n, _)| n.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )),
        }
    }

    fn resolve_bare(&self, c: &Ident) -> Result<Option<String>> {
        if self.sides.len() == 1 {
            return Ok(None);
        }
        let cn = norm(c);
        let found: Vec<&String> = self
            .sides
            .iter()
            .filter_map(|(_, cols)| cols.iter().find(|(n, _)| *n == cn).map(|(_, i)| i))
            .collect();
        match found.as_slice() {
            [one] => Ok(Some((*one).clone())),
            [] => Ok(None),
            _ => Err(SqlError::at(
                c.span,
                format!(
                    "column '{cn}' is ambiguous: both sides of the join have it; qualify it (alias.{cn})"
                ),
            )),
        }
    }

    fn rewrite_expr(&self, e: &mut Expr) -> Result<()> {
        struct V<'a>(&'a Scope, Option<SqlError>);
        impl VisitorMut for V<'_> {
            type Break = ();
            fn pre_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<()> {
                let resolved = match e {
                    Expr::CompoundIdentifier(ids) if ids.len() == 2 => {
                        self.0.resolve_qualified(&ids[0], &ids[1])
                    }
                    Expr::Identifier(id) => self.0.resolve_bare(id),
                    _ => Ok(None),
                };
                match resolved {
                    Ok(Some(name)) => *e = Expr::Identifier(Ident::with_quote('"', name)),
                    Ok(None) => {}
                    Err(err) => {
                        self.1 = Some(err);
                        return ControlFlow::Break(());
                    }
                }
                ControlFlow::Continue(())
            }
        }
        let mut v = V(self, None);
        let _ = e.visit(&mut v);
        v.1.map_or(Ok(()), Err)
    }

    /// The SELECT with its column references resolved to the planned stream's columns;
    /// output columns keep the names they were written with, `q.*` expands to q's columns.
    pub(crate) fn rewrite_select(&self, select: &ast::Select) -> Result<ast::Select> {
        let mut s = select.clone();
        let mut items = Vec::new();
        for it in &select.projection {
            match it {
                SelectItem::UnnamedExpr(e) => {
                    let name = match e {
                        Expr::Identifier(id) => Some(id.clone()),
                        Expr::CompoundIdentifier(ids) => ids.last().cloned(),
                        _ => None,
                    };
                    let mut e = e.clone();
                    self.rewrite_expr(&mut e)?;
                    items.push(match name {
                        Some(alias) if !matches!(&e, Expr::Identifier(id) if id.value == alias.value) => {
                            SelectItem::ExprWithAlias { expr: e, alias }
                        }
                        _ => SelectItem::UnnamedExpr(e),
                    });
                }
                SelectItem::ExprWithAlias { expr, alias } => {
                    let mut e = expr.clone();
                    self.rewrite_expr(&mut e)?;
                    items.push(SelectItem::ExprWithAlias {
                        expr: e,
                        alias: alias.clone(),
                    });
                }
                SelectItem::QualifiedWildcard(kind, _) if self.sides.len() > 1 => {
                    let q = kind.to_string();
                    let q = q.trim_end_matches(".*");
                    let qn = norm(&Ident::new(q));
                    let Some((_, cols)) = self
                        .sides
                        .iter()
                        .find(|(sq, _)| sq.as_deref() == Some(qn.as_str()))
                    else {
                        return Err(SqlError::at(
                            it.span(),
                            format!("unknown table or alias '{qn}' in {it}"),
                        ));
                    };
                    for (n, internal) in cols.iter().filter(|(n, _)| !n.starts_with('$')) {
                        items.push(SelectItem::ExprWithAlias {
                            expr: Expr::Identifier(Ident::with_quote('"', internal.clone())),
                            alias: Ident::with_quote('"', n.clone()),
                        });
                    }
                }
                other => items.push(other.clone()),
            }
        }
        s.projection = items;
        if let Some(w) = &mut s.selection {
            self.rewrite_expr(w)?;
        }
        if let Some(h) = &mut s.having {
            self.rewrite_expr(h)?;
        }
        if let ast::GroupByExpr::Expressions(es, _) = &mut s.group_by {
            for e in es {
                self.rewrite_expr(e)?;
            }
        }
        Ok(s)
    }
}

/// Buffers both sides' rows per (window, equi keys) until the window ends.
#[derive(Clone)]
struct WindowJoinFn {
    kind: JoinKind,
    /// window_end's index in left and right rows.
    ends: [usize; 2],
    /// Column counts of the two sides.
    widths: [usize; 2],
    /// The non-equi conditions over a joined row.
    cond: Option<PairCondition>,
    rows: [ListState<Row>; 2],
}

impl KeyedProcessFunction for WindowJoinFn {
    type Key = Vec<Value>;
    type In = Row;
    type Out = Row;

    fn open(&mut self, ctx: &mut RuntimeContext<'_>) -> weir_engine::Result<()> {
        self.rows = [
            ctx.list_state(StateDescriptor::new("window-join-left")),
            ctx.list_state(StateDescriptor::new("window-join-right")),
        ];
        Ok(())
    }

    fn process_element(
        &mut self,
        mut row: Row,
        ctx: &mut KeyedContext<'_, Vec<Value>>,
        _out: &mut Collector<Row>,
    ) -> weir_engine::Result<()> {
        let side = match row.0.pop() {
            Some(Value::Int(1)) => 1,
            _ => 0,
        };
        let Some(Value::Ts(end)) = row.0.get(self.ends[side]) else {
            return Ok(()); // no window: joins nothing
        };
        let fire = end - 1;
        if fire <= ctx.current_watermark() {
            return Ok(()); // the window was joined already: late, dropped
        }
        // The window's timer comes with the first row of either side.
        if self.rows[side].add(ctx, row) {
            ctx.timer_service().register_event_time_timer(fire);
        }
        Ok(())
    }

    fn on_timer(
        &mut self,
        ts: Timestamp,
        ctx: &mut KeyedContext<'_, Vec<Value>>,
        out: &mut Collector<Row>,
    ) -> weir_engine::Result<()> {
        let mut left = self.rows[0].take(ctx);
        let right = self.rows[1].take(ctx);
        // Each pair is tested in one scratch row, the right row cloned into its tail once
        // and each left row swapped into its head and back (no clones, no drops: a window
        // often has one row on one side and thousands on the other); only a pair that
        // satisfies the condition is copied out as an output row.
        let nl = self.widths[0];
        let mut joined = vec![Value::Null; nl + self.widths[1]];
        let mut matched = [vec![false; left.len()], vec![false; right.len()]];
        for (j, r) in right.iter().enumerate() {
            joined[nl..].clone_from_slice(&r.0);
            for (i, l) in left.iter_mut().enumerate() {
                joined[..nl].swap_with_slice(&mut l.0);
                let holds = PairCondition::holds(self.cond.as_ref(), &joined);
                if matches!(holds, Ok(true)) {
                    matched[0][i] = true;
                    matched[1][j] = true;
                    out.collect_with_timestamp(Row(joined.clone()), ts);
                }
                joined[..nl].swap_with_slice(&mut l.0);
                holds?;
            }
        }
        let nulls = |n: usize| std::iter::repeat_n(Value::Null, n);
        if matches!(self.kind, JoinKind::Left | JoinKind::Full) {
            for (l, _) in left.into_iter().zip(&matched[0]).filter(|(_, m)| !**m) {
                let mut v = l.0;
                v.extend(nulls(self.widths[1]));
                out.collect_with_timestamp(Row(v), ts);
            }
        }
        if matches!(self.kind, JoinKind::Right | JoinKind::Full) {
            for (r, _) in right.into_iter().zip(&matched[1]).filter(|(_, m)| !**m) {
                let mut v: Vec<Value> = nulls(self.widths[0]).collect();
                v.extend(r.0);
                out.collect_with_timestamp(Row(v), ts);
            }
        }
        Ok(())
    }
}

impl Planner<'_> {
    /// Joins two relations that carry windows, window by window (see the module docs).
    pub(crate) fn window_join(
        &mut self,
        left: Stream,
        lq: Option<String>,
        right: Stream,
        rq: Option<String>,
        on: &Expr,
        kind: JoinKind,
    ) -> Result<(Stream, Scope)> {
        if lq.is_some() && lq == rq {
            return Err(SqlError::at(
                on.span(),
                format!(
                    "both sides of the join are named '{}'; give one an alias",
                    lq.unwrap_or_default()
                ),
            ));
        }
        // The joined row is the left row then the right row; right names that clash get
        // a numeric suffix (as Flink does), qualified names reach either side.
        let mut cols = left.cols.clone();
        let mut right_names = Vec::new();
        for c in &right.cols {
            let mut name = c.name.clone();
            let mut n = 0;
            while cols.iter().any(|x| x.name == name) {
                name = format!("{}{n}", c.name);
                n += 1;
            }
            right_names.push((c.name.clone(), name.clone()));
            cols.push(Column { name, ty: c.ty });
        }
        let scope = Scope {
            sides: vec![
                (
                    lq.clone(),
                    left.cols
                        .iter()
                        .map(|c| (c.name.clone(), c.name.clone()))
                        .collect(),
                ),
                (rq.clone(), right_names),
            ],
        };
        let mut on_r = on.clone();
        scope.rewrite_expr(&mut on_r)?;
        let nl = left.cols.len();
        let side_of = |e: &Expr| match e {
            Expr::Identifier(id) => cols.iter().position(|c| c.name == norm(id)),
            _ => None,
        };
        let (Some(lw), Some(rw)) = (left.window, right.window) else {
            return Err(SqlError::at(
                on.span(),
                format!(
                    "joins are not supported yet except window joins, whose sides both come from window TVFs or window aggregates; here the {} side has no window",
                    if left.window.is_none() {
                        "left"
                    } else {
                        "right"
                    }
                ),
            ));
        };
        let mut window_eq = [false, false];
        let mut keys: Vec<(usize, usize)> = Vec::new();
        let mut rest: Vec<Expr> = Vec::new();
        let mut parts = Vec::new();
        crate::join::conjuncts(&on_r, &mut parts);
        for p in parts {
            if let Expr::BinaryOp {
                left: a,
                op: BinaryOperator::Eq,
                right: b,
            } = &p
                && let (Some(x), Some(y)) = (side_of(a), side_of(b))
                && (x < nl) != (y < nl)
            {
                let (l, r) = if x < nl { (x, y - nl) } else { (y, x - nl) };
                if l == lw.start && r == rw.start {
                    window_eq[0] = true;
                    continue;
                }
                if l == lw.end && r == rw.end {
                    window_eq[1] = true;
                    continue;
                }
                if left.cols[l].ty == right.cols[r].ty {
                    keys.push((l, r));
                    continue;
                }
            }
            rest.push(p);
        }
        if window_eq != [true, true] {
            return Err(SqlError::at(
                on.span(),
                format!(
                    "a window join needs ON {l}.{} = {r}.{} AND {l}.{} = {r}.{} (the window bounds of both sides)",
                    left.cols[lw.start].name,
                    right.cols[rw.start].name,
                    left.cols[lw.end].name,
                    right.cols[rw.end].name,
                    l = lq.as_deref().unwrap_or("L"),
                    r = rq.as_deref().unwrap_or("R"),
                ),
            ));
        }
        if lw.win != rw.win {
            return Err(SqlError::at(
                on.span(),
                format!(
                    "the sides of a window join must use the same windows; here {} and {}",
                    lw.win.describe(),
                    rw.win.describe()
                ),
            ));
        }
        let residual = crate::join::conjoin(rest);
        let cond = PairCondition::compile(&self.funcs, residual.clone(), &cols)?;
        // Tag each side's rows (a trailing 0 or 1), union them and key them by window and
        // equi keys: the key function reads the tag to find the side's key columns.
        let tag = |s: &Stream, side: i64, uid: String| {
            s.ds.transform_batches("WindowJoin input", move |recs: Vec<Rec<Row>>| {
                Ok(recs
                    .into_iter()
                    .map(|mut r| {
                        r.value.0.push(Value::Int(side));
                        r
                    })
                    .collect())
            })
            .uid(&uid)
        };
        let key_cols: [Vec<usize>; 2] = [
            [lw.start, lw.end]
                .into_iter()
                .chain(keys.iter().map(|k| k.0))
                .collect(),
            [rw.start, rw.end]
                .into_iter()
                .chain(keys.iter().map(|k| k.1))
                .collect(),
        ];
        let luid = self.uid("window-join-left");
        let ruid = self.uid("window-join-right");
        let join_uid = self.uid("window-join");
        let f = WindowJoinFn {
            kind,
            ends: [lw.end, rw.end],
            widths: [nl, right.cols.len()],
            cond,
            rows: Default::default(),
        };
        let side = |r: &Row| usize::from(matches!(r.0.last(), Some(Value::Int(1))));
        let cols_of_key = key_cols.clone();
        let ds = tag(&left, 0, luid)
            .union(&[tag(&right, 1, ruid)])
            .key_by(move |r: &Row| {
                key_cols[side(r)]
                    .iter()
                    .map(|&i| r.0[i].clone())
                    .collect::<Vec<_>>()
            })
            .with_key_bytes(move |r: &Row, buf| {
                write_key(cols_of_key[side(r)].iter().map(|&i| &r.0[i]), buf)
            })
            .process(f)
            .name(&format!("WindowJoin {}", kind.sql()))
            .uid(&join_uid)
            .state_schema(&format!(
                "{} {}",
                lw.win.describe(),
                crate::join::rows_schema(&left.cols, &right.cols)
            ));
        let shown = |i: usize, q: &Option<String>, s: &Stream| {
            format!("{}.{}", q.as_deref().unwrap_or("?"), s.cols[i].name)
        };
        let title = format!(
            "WindowJoin: type={} window={} on=[{}] where=({}) uid={join_uid}",
            kind.sql(),
            lw.win.describe(),
            [(lw.start, rw.start), (lw.end, rw.end)]
                .into_iter()
                .chain(keys.iter().copied())
                .map(|(l, r)| format!("{} = {}", shown(l, &lq, &left), shown(r, &rq, &right)))
                .collect::<Vec<_>>()
                .join(", "),
            residual
                .map(|r| r.to_string())
                .unwrap_or_else(|| "true".into())
        );
        let mut plan = nest(title, &left.plan);
        plan.extend(right.plan.iter().map(|l| format!("  {l}")));
        // The output keeps a side's window bounds when that side's rows are always there.
        let window = match kind {
            JoinKind::Inner | JoinKind::Left => Some(lw),
            JoinKind::Right => Some(WindowProps {
                win: rw.win,
                start: nl + rw.start,
                end: nl + rw.end,
            }),
            JoinKind::Full => None,
        };
        Ok((
            Stream {
                ds,
                cols,
                rowtime: None,
                proctime: None,
                plan,
                window,
            },
            scope,
        ))
    }
}
