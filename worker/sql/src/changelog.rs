//! Updating results: non-windowed GROUP BY, aggregates without GROUP BY and SELECT DISTINCT
//! produce a changelog, as in Flink. Each row carries its kind (Flink's `RowKind`: `+I`
//! insert, `-U` update-before, `+U` update-after, `-D` delete) in the hidden last column
//! `$kind`; a Calc passes it through, the `print` sink shows it (`-U[a, 1]`), `blackhole`
//! discards it, and append-only sinks refuse the stream at plan time.

use crate::agg::{Acc, SqlAggregate};
use crate::error::{Result, SqlError};
use crate::expr::{Calc, compile};
use crate::plan::{AggRewriter, Planner, RewrittenAggregate, Stream, nest, norm};
use crate::value::{Column, Row, SqlType, Value};
use serde::{Deserialize, Serialize};
use sqlparser::ast::{Expr, Ident, SelectItem, Spanned};
use sqlparser::tokenizer::Span;
use std::fmt;
use weir_engine::api::{Collector, KeyedContext, KeyedProcessFunction, RuntimeContext};
use weir_engine::state::{StateDescriptor, StateTtlConfig, ValueState};
use weir_engine::window::AggregateFunction;

/// The hidden column holding a changelog row's kind.
pub const KIND: &str = "$kind";

/// Flink's `RowKind`, as carried in the `$kind` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowKind {
    /// `+I`
    Insert = 0,
    /// `-U`: the row's previous value, retracted.
    UpdateBefore = 1,
    /// `+U`: the row's new value.
    UpdateAfter = 2,
    /// `-D`
    Delete = 3,
}

impl RowKind {
    /// Flink's short form: `+I`, `-U`, `+U`, `-D`.
    pub fn short(self) -> &'static str {
        match self {
            RowKind::Insert => "+I",
            RowKind::UpdateBefore => "-U",
            RowKind::UpdateAfter => "+U",
            RowKind::Delete => "-D",
        }
    }

    pub(crate) fn from_value(v: Option<&Value>) -> RowKind {
        match v {
            Some(Value::Int(1)) => RowKind::UpdateBefore,
            Some(Value::Int(2)) => RowKind::UpdateAfter,
            Some(Value::Int(3)) => RowKind::Delete,
            _ => RowKind::Insert,
        }
    }
}

/// A row of an updating stream (its kind in the last value), displayed as Flink's print
/// connector shows changes: `-U[a, 1]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeRow(pub Row);

impl fmt::Display for ChangeRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (kind, vals) = match self.0.0.split_last() {
            Some((k, vals)) => (RowKind::from_value(Some(k)), vals),
            None => (RowKind::Insert, &[][..]),
        };
        write!(f, "{}[", kind.short())?;
        for (i, v) in vals.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{v}")?;
        }
        f.write_str("]")
    }
}

/// Whether the stream is an updating result (has the `$kind` column).
pub(crate) fn is_updating(s: &Stream) -> bool {
    s.cols.iter().any(|c| c.name == KIND)
}

/// The plan node that made `s` an updating result, as Flink names it in messages.
pub(crate) fn producer(s: &Stream) -> String {
    s.plan
        .iter()
        .map(|l| l.trim())
        .find(|l| {
            ["GroupAggregate(", "Rank(", "Deduplicate("]
                .iter()
                .any(|p| l.starts_with(p))
        })
        .map(|l| l.split(" uid=").next().unwrap_or(l).to_string())
        .unwrap_or_else(|| "GroupAggregate".into())
}

/// Refuses an updating stream for a sink that only takes inserts, with Flink's message.
pub(crate) fn check_sink(
    consumes_updates: bool,
    table: &str,
    s: &Stream,
    span: Span,
) -> Result<()> {
    if is_updating(s) && !consumes_updates {
        return Err(SqlError::at(
            span,
            format!(
                "Table sink '{table}' doesn't support consuming update changes which is produced by node {}; write it to a 'print', 'blackhole' or 'upsert-kafka' sink, or group by a window",
                producer(s)
            ),
        ));
    }
    Ok(())
}

/// Refuses an updating input for an operator that needs inserts only.
pub(crate) fn refuse_updating(s: &Stream, what: &str, span: Span) -> Result<()> {
    if is_updating(s) {
        return Err(SqlError::at(
            span,
            format!(
                "{what} over an updating input (produced by {}) is not supported yet",
                producer(s)
            ),
        ));
    }
    Ok(())
}

/// The running aggregate of one group: emits `+I` for its first row, then `-U` (old) and
/// `+U` (new) whenever its result changes (nothing when it does not, as Flink).
#[derive(Clone)]
struct GroupAgg {
    agg: SqlAggregate,
    nk: usize,
    /// `table.exec.state.ttl`: a group idle that long starts afresh (its next row is an
    /// insert), as Flink's idle-state retention.
    ttl: Option<StateTtlConfig>,
    /// Over an updating input: the input row's kind column; the last aggregate call is then
    /// a hidden COUNT(*) of the group's rows, so that a group whose rows were all retracted
    /// is deleted (`-D`), as Flink's.
    kind_at: Option<usize>,
    acc: ValueState<Vec<Acc>>,
}

impl GroupAgg {
    /// The results the query selects (all but the hidden row count over updating input).
    fn visible(&self) -> impl Fn(Vec<Value>) -> Vec<Value> + use<> {
        let n = self.agg.calls.len() - usize::from(self.kind_at.is_some());
        move |mut v| {
            v.truncate(n);
            v
        }
    }

    /// A retraction from an updating input: taken out of its group's accumulators (nothing
    /// when the group is unknown); the group's result changes, or it is deleted when no row
    /// is left in it.
    fn retract(
        &mut self,
        row: Row,
        ctx: &mut KeyedContext<'_, Vec<Value>>,
        out: &mut Collector<Row>,
    ) -> weir_engine::Result<()> {
        let agg = &self.agg;
        let visible = self.visible();
        let changed = self.acc.mutate(ctx, |acc| {
            let old = visible(agg.get_result(acc));
            agg.retract(&row, acc);
            let left = matches!(acc.last(), Some(Acc::Count(n)) if *n > 0);
            (old, left.then(|| visible(agg.get_result(acc))))
        });
        let key = &row.0[..self.nk];
        match changed {
            None => {}
            Some((old, None)) => {
                self.acc.clear(ctx);
                self.emit(key, old, RowKind::Delete, out);
            }
            Some((old, Some(new))) if old != new => {
                self.emit(key, old, RowKind::UpdateBefore, out);
                self.emit(key, new, RowKind::UpdateAfter, out);
            }
            Some(_) => {}
        }
        Ok(())
    }

    fn emit(&self, key: &[Value], vals: Vec<Value>, kind: RowKind, out: &mut Collector<Row>) {
        let mut v = key.to_vec();
        v.extend(vals);
        v.push(Value::Int(kind as i64));
        out.collect(Row(v));
    }
}

impl KeyedProcessFunction for GroupAgg {
    type Key = Vec<Value>;
    type In = Row;
    type Out = Row;

    fn open(&mut self, ctx: &mut RuntimeContext<'_>) -> weir_engine::Result<()> {
        self.acc = ctx.value_state(StateDescriptor::new("accumulators").with_ttl(self.ttl));
        Ok(())
    }

    fn process_element(
        &mut self,
        row: Row,
        ctx: &mut KeyedContext<'_, Vec<Value>>,
        out: &mut Collector<Row>,
    ) -> weir_engine::Result<()> {
        if let Some(k) = self.kind_at
            && matches!(
                RowKind::from_value(row.0.get(k)),
                RowKind::UpdateBefore | RowKind::Delete
            )
        {
            return self.retract(row, ctx, out);
        }
        // In place: a DISTINCT accumulator holds every value seen, and copying it for each
        // row made a group's cost quadratic in its size.
        let agg = &self.agg;
        let visible = self.visible();
        let fresh = std::cell::Cell::new(false);
        let (old, new) = self.acc.update_with(
            ctx,
            || {
                fresh.set(true);
                agg.create_accumulator()
            },
            |acc| {
                let old = (!fresh.get()).then(|| visible(agg.get_result(acc)));
                agg.add(&row, acc);
                (old, visible(agg.get_result(acc)))
            },
        );
        let key = &row.0[..self.nk];
        match old {
            None => self.emit(key, new, RowKind::Insert, out),
            Some(old) if old != new => {
                self.emit(key, old, RowKind::UpdateBefore, out);
                self.emit(key, new, RowKind::UpdateAfter, out);
            }
            Some(_) => {}
        }
        Ok(())
    }
}

impl Planner<'_> {
    /// Plans a non-windowed GROUP BY (or a global aggregate when `key_exprs` is empty) as
    /// an updating result.
    pub(crate) fn group_aggregate(
        &mut self,
        input: Stream,
        filter: Option<&Expr>,
        key_exprs: &[Expr],
        items: &[SelectItem],
        having: Option<&Expr>,
        names: Option<&[String]>,
    ) -> Result<Stream> {
        let span = key_exprs
            .first()
            .map(|k| k.span())
            .or_else(|| items.first().map(|i| i.span()))
            .unwrap_or(Span::empty());
        let updating = is_updating(&input);
        let mut keys: Vec<(String, String)> = Vec::new();
        for (i, k) in key_exprs.iter().enumerate() {
            let col = match k {
                Expr::Identifier(id) => norm(id),
                _ => format!("$key{i}"),
            };
            keys.push((k.to_string(), col));
        }
        let items = self.expand(&input, items)?;
        let RewrittenAggregate {
            items: out_items,
            having,
            calls,
        } = AggRewriter::rewrite_select(None, &keys, &items, having)?;
        let mut pre = Vec::new();
        let mut key_types = Vec::new();
        for k in key_exprs {
            let c = compile(&self.funcs, k, &input.cols)?;
            key_types.push(c.ty);
            pre.push((c.expr, c.ty));
        }
        let mut agg_calls = Vec::new();
        let mut shown = Vec::new();
        self.compile_agg_calls(&calls, &input.cols, &mut pre, &mut agg_calls, &mut shown)?;
        let agg_types: Vec<SqlType> = agg_calls.iter().map(|c| c.ty).collect();
        // Over an updating input the retractions are taken back out of the accumulators:
        // only aggregates that can do that are accepted, and the rows' kinds travel along.
        let kind_at = if updating {
            if let Some((_, shown)) = agg_calls.iter().zip(&shown).find(|(c, _)| !c.retractable()) {
                return Err(SqlError::at(
                    span,
                    format!(
                        "{shown} over an updating input (produced by {}) is not supported yet: only COUNT, and SUM and AVG of integers or DOUBLE, take retractions",
                        producer(&input)
                    ),
                ));
            }
            let k = compile(
                &self.funcs,
                &Expr::Identifier(Ident::with_quote('"', KIND)),
                &input.cols,
            )?;
            pre.push((k.expr, k.ty));
            agg_calls.push(crate::agg::AggCall {
                kind: crate::agg::AggKind::Count,
                arg: None,
                filter: None,
                distinct: false,
                ty: SqlType::BigInt,
            });
            Some(pre.len() - 1)
        } else {
            None
        };
        let filter_c = self.where_condition(filter, &input.cols)?;
        let pre_uid = self.uid("group-input");
        let calc = Calc::new(input.cols.clone(), filter_c, pre);
        let nk = key_exprs.len();
        let agg_uid = self.uid("group-aggregate");
        let key_shown: Vec<String> = key_exprs.iter().map(|k| k.to_string()).collect();
        let node = format!(
            "GroupAggregate(groupBy=[{}], select=[{}])",
            key_shown.join(", "),
            key_shown
                .iter()
                .cloned()
                .chain(shown)
                .collect::<Vec<_>>()
                .join(", ")
        );
        let agg = SqlAggregate { calls: agg_calls };
        let schema = agg.state_schema(&key_types);
        let f = GroupAgg {
            agg,
            nk,
            ttl: self.env.config().state_ttl()?.map(StateTtlConfig::new),
            kind_at,
            acc: ValueState::default(),
        };
        let ds = input
            .ds
            .transform_batches("Calc", move |r| calc.apply(r))
            .uid(&pre_uid)
            .key_by(move |r: &Row| r.0[..nk].to_vec())
            .process(f)
            .name(&node)
            .uid(&agg_uid)
            .state_schema(&schema);
        let mut cols: Vec<Column> = keys
            .iter()
            .zip(&key_types)
            .map(|((_, n), t)| Column {
                name: n.clone(),
                ty: *t,
            })
            .collect();
        cols.extend(agg_types.iter().enumerate().map(|(i, t)| Column {
            name: format!("$agg{i}"),
            ty: *t,
        }));
        cols.push(Column {
            name: KIND.into(),
            ty: SqlType::BigInt,
        });
        let plan = nest(
            format!("{node} uid={agg_uid}"),
            &nest(
                format!(
                    "Calc: {}uid={pre_uid}",
                    filter.map(|f| format!("where=({f}) ")).unwrap_or_default()
                ),
                &input.plan,
            ),
        );
        let agg_stream = Stream {
            ds,
            cols,
            rowtime: None,
            plan,
            window: None,
            proctime: None,
        };
        self.project_aggregate(agg_stream, out_items, having, names)
    }
}
