//! Lowering of a regular (unbounded) inner join onto the engine: each input filtered by the
//! conditions that read only it, its computed keys appended and its rows tagged with its
//! side; both unioned, keyed by the equi-join keys, and joined by
//! [`RegularJoinFn`](crate::exec::regular_join::RegularJoinFn), which keeps both sides' rows
//! in keyed state (bounded by `table.exec.state.ttl`).

use super::{Planner, Stream, nest};
use crate::error::{Result, SqlError};
use crate::exec::regular_join::RegularJoinFn;
use crate::expr::compile;
use crate::join::{KeyExprs, PairCondition, conjoin, rows_schema, side_calc};
use crate::value::{Column, Row, SqlType, Value, write_key};
use sqlparser::ast::{Expr, Spanned, visit_expressions};
use std::ops::ControlFlow;
use std::sync::Arc;
use weir_engine::runtime::Rec;

/// Which inputs `e` reads, by the joined stream's column names (`nl` left columns first).
fn reads(e: &Expr, cols: &[Column], nl: usize) -> (bool, bool) {
    let (mut l, mut r) = (false, false);
    let _ = visit_expressions(e, |x| {
        if let Expr::Identifier(id) = x
            && let Some(i) = cols.iter().position(|c| c.name == id.value)
        {
            if i < nl {
                l = true;
            } else {
                r = true;
            }
        }
        ControlFlow::<()>::Continue(())
    });
    (l, r)
}

impl Planner<'_> {
    /// Plans `left INNER JOIN right` on the equi keys `lkeys = rkeys` (at least none) and
    /// the conditions `conds` (resolved to the joined columns `cols`, shown as written).
    pub(crate) fn regular_join(
        &mut self,
        (left, right): (Stream, Stream),
        cols: &[Column],
        (lkeys, rkeys, to_double): (KeyExprs, KeyExprs, Vec<bool>),
        (conds, shown_conds): (Vec<Expr>, Vec<String>),
        shown_keys: Vec<String>,
    ) -> Result<Stream> {
        let nl = left.cols.len();
        let (lcols, rcols) = cols.split_at(nl);
        // Conditions on one side filter that side; the rest are tested on each pair.
        let mut one_side: [Vec<Expr>; 2] = Default::default();
        let mut shown_side: [Vec<String>; 2] = Default::default();
        let (mut pair, mut shown_pair) = (Vec::new(), Vec::new());
        for (c, shown) in conds.into_iter().zip(shown_conds) {
            match reads(&c, cols, nl) {
                (true, false) => {
                    one_side[0].push(c);
                    shown_side[0].push(shown);
                }
                (false, true) => {
                    one_side[1].push(c);
                    shown_side[1].push(shown);
                }
                _ => {
                    pair.push(c);
                    shown_pair.push(shown);
                }
            }
        }
        let filter = |conds: Vec<Expr>, side_cols: &[Column]| -> Result<_> {
            let Some(e) = conjoin(conds) else {
                return Ok(None);
            };
            let c = compile(&self.funcs, &e, side_cols)?;
            if c.ty != SqlType::Boolean {
                return Err(SqlError::at(e.span(), "a join condition must be BOOLEAN"));
            }
            Ok(Some(c.expr))
        };
        let [lconds, rconds] = one_side;
        let (lcalc, lkey_at) = side_calc(&self.funcs, lcols, lkeys, filter(lconds, lcols)?)?;
        let (rcalc, rkey_at) = side_calc(&self.funcs, rcols, rkeys, filter(rconds, rcols)?)?;
        let cond = PairCondition::compile(&self.funcs, pair, cols)?;
        let ttl = self.env.config().state_ttl()?;

        // Each side's rows, filtered, with their computed keys and their side's tag (a
        // trailing 0 or 1); a row with a NULL key joins nothing and stays out.
        let tag = |st: &Stream, side: i64, calc: Option<crate::expr::Calc>, key_at: Vec<usize>| {
            st.ds
                .transform_batches("Join input", move |recs: Vec<Rec<Row>>| {
                    let mut recs = match &calc {
                        Some(calc) => calc.apply(recs)?,
                        None => recs,
                    };
                    recs.retain(|r| !key_at.iter().any(|&k| r.value.0[k] == Value::Null));
                    for r in &mut recs {
                        r.value.0.push(Value::Int(side));
                    }
                    Ok(recs)
                })
        };
        let luid = self.uid("regular-join-left");
        let ruid = self.uid("regular-join-right");
        let juid = self.uid("regular-join");
        let key_at = Arc::new([lkey_at.clone(), rkey_at.clone()]);
        let inputs = tag(&left, 0, lcalc, lkey_at)
            .uid(&luid)
            .union(&[tag(&right, 1, rcalc, rkey_at).uid(&ruid)]);
        let side = |r: &Row| usize::from(matches!(r.0.last(), Some(Value::Int(1))));
        let converts = to_double.contains(&true);
        let key_of = key_at.clone();
        let keyed = inputs.key_by(move |r: &Row| {
            key_of[side(r)]
                .iter()
                .zip(&to_double)
                .map(|(&c, &d)| match &r.0[c] {
                    Value::Int(i) if d => Value::Double(*i as f64),
                    other => other.clone(),
                })
                .collect::<Vec<_>>()
        });
        // Keys of one representation on both sides are hashed from the row's bytes.
        let keyed = if converts {
            keyed
        } else {
            keyed.with_key_bytes(move |r: &Row, buf| {
                write_key(key_at[side(r)].iter().map(|&c| &r.0[c]), buf)
            })
        };
        let ds = keyed
            .process(RegularJoinFn::new([nl, cols.len() - nl], cond, ttl))
            .name("Join INNER")
            .uid(&juid)
            .state_schema(&rows_schema(lcols, rcols));

        let conj = |v: &[String]| v.join(" AND ");
        let mut title = format!("Join: type=INNER keys=[{}]", shown_keys.join(", "));
        for (what, v) in [
            ("left_where", &shown_side[0]),
            ("right_where", &shown_side[1]),
            ("where", &shown_pair),
        ] {
            if !v.is_empty() {
                title.push_str(&format!(" {what}=({})", conj(v)));
            }
        }
        if let Some(ttl) = ttl {
            title.push_str(&format!(" state_ttl={} ms", ttl.as_millis()));
        }
        title.push_str(&format!(" uid={juid}"));
        let mut child = left.plan.clone();
        child.extend(right.plan.iter().cloned());
        Ok(Stream {
            ds,
            cols: cols.to_vec(),
            // A regular join's output has no time attribute (its rows are not ordered by
            // either input's), as in Flink.
            rowtime: None,
            proctime: None,
            plan: nest(title, &child),
            window: None,
        })
    }
}
