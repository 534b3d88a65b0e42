//! Window table-valued functions as Flink 1.13+ has them:
//! `FROM TABLE(TUMBLE|HOP|CUMULATE(TABLE t, DESCRIPTOR(ts), …))`.
//!
//! A TVF query without GROUP BY assigns each row to its windows (one output row per window,
//! with `window_start`, `window_end` and `window_time`); `GROUP BY window_start, window_end`
//! over a TVF aggregates on the engine's window operator, through the same
//! `Planner::aggregate_windows` as group windows. Streams remember which of their columns
//! are a window's bounds ([`WindowProps`]), so a later `GROUP BY` of those columns is a
//! cascading window aggregate and a join on them is a window join (window_join.rs).

use crate::error::{Result, SqlError};
use crate::plan::{Planner, Stream, Win, fn_name, interval_ms, nest, norm};
use crate::value::{Column, Row, SqlType, Value};
use sqlparser::ast::{
    self, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, GroupByExpr, Spanned,
};
use sqlparser::keywords::Keyword;
use sqlparser::tokenizer::{Token, TokenWithSpan};
use weir_engine::runtime::Rec;

/// Where a stream's rows carry the window they belong to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WindowProps {
    /// The window kind the bounds come from.
    pub(crate) win: Win,
    /// Index of the `window_start` column (whatever it is called now).
    pub(crate) start: usize,
    /// Index of the `window_end` column.
    pub(crate) end: usize,
}

/// A planned window TVF before its windows are assigned: aggregation reads `input`
/// directly, so each row reaches the window operator once however many windows it is in.
pub(crate) struct Tvf {
    input: Stream,
    win: Win,
    /// The DESCRIPTOR column: the input's time attribute.
    time_col: usize,
    /// The call as written, for EXPLAIN.
    call: String,
}

const WINDOW_COLS: [&str; 3] = ["window_start", "window_end", "window_time"];

/// Drops the `TABLE` keyword of the table argument of window TVF calls
/// (`TUMBLE(TABLE t, …)`, `HOP(DATA => TABLE t, …)`), which sqlparser does not parse: the
/// argument becomes the plain name (or subquery) that `window_tvf` reads.
pub(crate) fn untable_tvf_args(tokens: Vec<TokenWithSpan>) -> Vec<TokenWithSpan> {
    let significant: Vec<usize> = (0..tokens.len())
        .filter(|&i| !matches!(tokens[i].token, Token::Whitespace(_)))
        .collect();
    let is_word =
        |i: usize, k: Keyword| matches!(&tokens[i].token, Token::Word(w) if w.keyword == k);
    let is_tvf = |i: usize| {
        matches!(&tokens[i].token, Token::Word(w)
            if matches!(w.value.to_ascii_lowercase().as_str(), "tumble" | "hop" | "cumulate" | "session"))
    };
    let mut drop = vec![false; tokens.len()];
    // Paren depths at which we are directly inside a window TVF's argument list.
    let mut tvf_depths: Vec<usize> = Vec::new();
    let mut depth = 0usize;
    for (n, &i) in significant.iter().enumerate() {
        let at = |k: usize| significant.get(n + k).copied();
        match &tokens[i].token {
            Token::LParen => {
                depth += 1;
                // TABLE ( tvf ( : the inner paren opens the argument list.
                if n >= 3
                    && is_word(significant[n - 3], Keyword::TABLE)
                    && tokens[significant[n - 2]].token == Token::LParen
                    && is_tvf(significant[n - 1])
                {
                    tvf_depths.push(depth);
                }
            }
            Token::RParen => {
                if tvf_depths.last() == Some(&depth) {
                    tvf_depths.pop();
                }
                depth = depth.saturating_sub(1);
            }
            Token::Word(w) if w.keyword == Keyword::TABLE && tvf_depths.last() == Some(&depth) => {
                let prev = &tokens[significant[n - 1]].token;
                let next_is_arg = at(1)
                    .is_some_and(|j| matches!(tokens[j].token, Token::Word(_) | Token::LParen));
                if matches!(prev, Token::LParen | Token::Comma | Token::RArrow) && next_is_arg {
                    drop[i] = true;
                }
            }
            _ => {}
        }
    }
    tokens
        .into_iter()
        .zip(drop)
        .filter(|(_, d)| !d)
        .map(|(t, _)| t)
        .collect()
}

/// The GROUP BY keys of a cascading window aggregate: when `input` carries windows and
/// `keys` name both its window_start and window_end columns, the keys with those two first.
pub(crate) fn inherited_window_keys(input: &Stream, keys: &[Expr]) -> Option<Vec<Expr>> {
    let props = input.window?;
    let find = |col: usize| {
        keys.iter()
            .position(|k| matches!(k, Expr::Identifier(id) if norm(id) == input.cols[col].name))
    };
    let (s, e) = (find(props.start)?, find(props.end)?);
    let mut out = vec![keys[s].clone(), keys[e].clone()];
    out.extend(
        keys.iter()
            .enumerate()
            .filter(|(i, _)| *i != s && *i != e)
            .map(|(_, k)| k.clone()),
    );
    Some(out)
}

/// The window columns of a projection of `input`: kept when both bounds are selected as
/// plain columns (renaming allowed, `window_start AS starttime`).
pub(crate) fn carry_window(input: &Stream, items: &[(String, Expr)]) -> Option<WindowProps> {
    let props = input.window?;
    let find = |col: usize| {
        items.iter().position(
            |(_, e)| matches!(e, Expr::Identifier(id) if norm(id) == input.cols[col].name),
        )
    };
    Some(WindowProps {
        win: props.win,
        start: find(props.start)?,
        end: find(props.end)?,
    })
}

impl Planner<'_> {
    /// Reads `TUMBLE(TABLE t, DESCRIPTOR(ts), size)`, `HOP(…, slide, size)` or
    /// `CUMULATE(…, step, max size)`, positional or named (`DATA =>`, `TIMECOL =>`, `SIZE =>`,
    /// `SLIDE =>`, `STEP =>`), and plans its input.
    pub(crate) fn window_tvf(&mut self, expr: &Expr) -> Result<Tvf> {
        let Expr::Function(f) = expr else {
            return Err(SqlError::at(
                expr.span(),
                format!(
                    "TABLE({expr}) is not a window table-valued function; use TABLE(TUMBLE(…)), TABLE(HOP(…)) or TABLE(CUMULATE(…))"
                ),
            ));
        };
        let name = fn_name(f);
        let params: &[&str] = match name.as_str() {
            "tumble" => &["data", "timecol", "size"],
            "hop" => &["data", "timecol", "slide", "size"],
            "cumulate" => &["data", "timecol", "step", "size"],
            "session" => {
                return Err(SqlError::at(
                    f.span(),
                    "SESSION window table-valued functions are not supported yet; use GROUP BY SESSION(ts, gap)",
                ));
            }
            _ => {
                return Err(SqlError::at(
                    f.span(),
                    format!(
                        "table function {} is not supported; window TVFs are TUMBLE, HOP and CUMULATE",
                        name.to_uppercase()
                    ),
                ));
            }
        };
        let upper = name.to_uppercase();
        let list = match &f.args {
            FunctionArguments::List(l) => l.args.as_slice(),
            _ => &[],
        };
        let mut args: Vec<Option<&Expr>> = vec![None; params.len()];
        for (i, a) in list.iter().enumerate() {
            let (slot, e) = match a {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => (i, e),
                FunctionArg::Named {
                    name: n,
                    arg: FunctionArgExpr::Expr(e),
                    ..
                } => {
                    let n = n.value.to_ascii_lowercase();
                    let Some(slot) = params.iter().position(|p| *p == n) else {
                        return Err(SqlError::at(
                            a.span(),
                            format!(
                                "{upper} has no parameter {}; its parameters are {}",
                                n.to_uppercase(),
                                params.join(", ").to_uppercase()
                            ),
                        ));
                    };
                    (slot, e)
                }
                _ => {
                    return Err(SqlError::at(
                        a.span(),
                        format!("unexpected argument {a} of {upper}"),
                    ));
                }
            };
            if slot >= params.len() {
                return Err(SqlError::at(
                    a.span(),
                    format!(
                        "{upper} takes {} arguments ({}); the OFFSET argument is not supported yet",
                        params.len(),
                        params.join(", ").to_uppercase()
                    ),
                ));
            }
            args[slot] = Some(e);
        }
        let arg = |i: usize| {
            args[i].ok_or_else(|| {
                SqlError::at(
                    f.span(),
                    format!("{upper} needs its {} argument", params[i].to_uppercase()),
                )
            })
        };
        let data = arg(0)?;
        let input = match data {
            Expr::Identifier(id) => self.scan(&norm(id), id.span)?,
            Expr::Subquery(q) => self.query(q)?,
            other => {
                return Err(SqlError::at(
                    other.span(),
                    format!(
                        "{upper}'s first argument must be TABLE name or a (subquery), found {other}"
                    ),
                ));
            }
        };
        let desc = arg(1)?;
        let time = match desc {
            Expr::Function(d) if fn_name(d) == "descriptor" => {
                match crate::plan::function_args(d).as_slice() {
                    [Expr::Identifier(id)] => Some(norm(id)),
                    _ => None,
                }
            }
            _ => None,
        }
        .ok_or_else(|| {
            SqlError::at(
                desc.span(),
                format!("{upper}'s time column must be written DESCRIPTOR(column), found {desc}"),
            )
        })?;
        let time_col = match input.rowtime {
            Some(rt) if input.cols[rt].name == time => rt,
            _ => {
                return Err(SqlError::at(
                    desc.span(),
                    format!(
                        "{upper}'s DESCRIPTOR must name the time attribute of its input (the column of WATERMARK FOR{}); '{time}' is not",
                        input
                            .rowtime
                            .map(|rt| format!(", here '{}'", input.cols[rt].name))
                            .unwrap_or_else(|| ", which the input does not declare".into())
                    ),
                ));
            }
        };
        if let Some(c) = input
            .cols
            .iter()
            .find(|c| WINDOW_COLS.contains(&c.name.as_str()))
        {
            return Err(SqlError::at(
                data.span(),
                format!(
                    "the input of {upper} already has a column named {}; rename it (AS …) before windowing again",
                    c.name
                ),
            ));
        }
        let win = match name.as_str() {
            "tumble" => Win::Tumble(interval_ms(arg(2)?)?),
            "hop" => {
                let (slide, size) = (interval_ms(arg(2)?)?, interval_ms(arg(3)?)?);
                if size % slide != 0 {
                    return Err(SqlError::at(
                        arg(3)?.span(),
                        "HOP's size must be a multiple of its slide",
                    ));
                }
                Win::Hop { slide, size }
            }
            _ => {
                let (step, size) = (interval_ms(arg(2)?)?, interval_ms(arg(3)?)?);
                if size % step != 0 {
                    return Err(SqlError::at(
                        arg(3)?.span(),
                        "CUMULATE's max size must be a multiple of its step",
                    ));
                }
                Win::Cumulate { step, size }
            }
        };
        Ok(Tvf {
            input,
            win,
            time_col,
            call: format!("{} time={time}", win.describe()),
        })
    }

    /// Assigns each row to its windows: one output row per window, with window_start,
    /// window_end and window_time (the new time attribute; the row's timestamp becomes
    /// window_end - 1, as for a window aggregate's results).
    pub(crate) fn assign_windows(&mut self, tvf: Tvf) -> Result<Stream> {
        let Tvf {
            input,
            win,
            time_col,
            call,
        } = tvf;
        let spec = win.spec();
        let uid = self.uid(&format!("window-tvf-{}", win.prefix()));
        let ds = input
            .ds
            .transform_batches("WindowTableFunction", move |recs: Vec<Rec<Row>>| {
                let mut out = Vec::with_capacity(recs.len());
                for r in recs {
                    // A NULL time belongs to no window.
                    let Some(Value::Ts(ts)) = r.value.0.get(time_col) else {
                        continue;
                    };
                    for w in spec.windows_of(*ts) {
                        let mut v = r.value.0.clone();
                        v.extend([
                            Value::Ts(w.start),
                            Value::Ts(w.end),
                            Value::Ts(w.max_timestamp()),
                        ]);
                        out.push(Rec {
                            ts: w.max_timestamp(),
                            value: Row(v),
                        });
                    }
                }
                Ok(out)
            })
            .uid(&uid);
        let mut cols = input.cols;
        cols.extend(WINDOW_COLS.iter().map(|n| Column {
            name: n.to_string(),
            ty: SqlType::Timestamp,
        }));
        let n = cols.len();
        Ok(Stream {
            proctime: None,
            ds,
            cols,
            rowtime: Some(n - 1),
            plan: nest(
                format!("WindowTableFunction: {call} uid={uid}"),
                &input.plan,
            ),
            window: Some(WindowProps {
                win,
                start: n - 3,
                end: n - 2,
            }),
        })
    }

    /// A SELECT whose FROM is a window TVF: window aggregation when it groups by
    /// window_start and window_end, window assignment otherwise.
    pub(crate) fn tvf_select(
        &mut self,
        expr: &Expr,
        alias: Option<&ast::TableAlias>,
        select: &ast::Select,
        names: Option<&[String]>,
    ) -> Result<Stream> {
        let tvf = self.window_tvf(expr)?;
        let qualifier = alias.map(|a| norm(&a.name));
        let mut cols = tvf.input.cols.clone();
        cols.extend(WINDOW_COLS.iter().map(|n| Column {
            name: n.to_string(),
            ty: SqlType::Timestamp,
        }));
        let select = crate::window_join::Scope::single(qualifier, &cols).rewrite_select(select)?;
        let group = match &select.group_by {
            GroupByExpr::Expressions(e, mods) if mods.is_empty() => e.clone(),
            _ => Vec::new(),
        };
        if group.is_empty() {
            let s = self.assign_windows(tvf)?;
            return self.select_over(s, &select, names);
        }
        let is = |e: &Expr, n: &str| matches!(e, Expr::Identifier(id) if norm(id) == n);
        let has = |n: &str| group.iter().any(|g| is(g, n));
        if !has("window_start") || !has("window_end") {
            return Err(SqlError::at(
                group[0].span(),
                "a GROUP BY over a window table-valued function must include window_start and window_end (Flink's window aggregation)",
            ));
        }
        if let Some(g) = group.iter().find(|g| is(g, "window_time")) {
            return Err(SqlError::at(
                g.span(),
                "group by window_start and window_end; select window_time without grouping by it",
            ));
        }
        let keys: Vec<Expr> = group
            .iter()
            .filter(|g| !is(g, "window_start") && !is(g, "window_end"))
            .cloned()
            .collect();
        let Tvf {
            mut input,
            win,
            call,
            ..
        } = tvf;
        input.plan = nest(format!("WindowTableFunction: {call}"), &input.plan);
        self.aggregate_windows(
            input,
            select.selection.as_ref(),
            win,
            false,
            &keys,
            &select.projection,
            select.having.as_ref(),
            names,
            "WindowAggregate",
        )
    }
}
