//! The bounds on a script's shape, so that planning costs time and stack in proportion to the
//! text: parentheses nest at most [`MAX_NESTING`] deep (checked on the tokens, before the
//! parser, whose backtracking grows exponentially near its own recursion limit), and an
//! expression tree is at most [`MAX_EXPR_DEPTH`] deep once long `AND`/`OR` chains are
//! rebalanced (the planner, DataFusion and the evaluators all recurse on that depth). An
//! `INTERVAL` literal longer than the span of TIMESTAMP(3) is refused here too, where its
//! text is still at hand, instead of overflowing the milliseconds it becomes.

use crate::error::{Result, SqlError};
use crate::parse::{ColumnKind, Statement};
use crate::value::{MAX_TIMESTAMP_MS, MIN_TIMESTAMP_MS};
use sqlparser::ast::{BinaryOperator, DateTimeField, Expr, Spanned, VisitMut, VisitorMut};
use sqlparser::tokenizer::{Token, TokenWithSpan};
use std::ops::ControlFlow;

/// How deep parentheses (function calls, CASTs, subqueries, grouping) may nest.
pub const MAX_NESTING: usize = 32;

/// How deep an expression tree may be after `AND`/`OR` chains are rebalanced: a chain of
/// more than this many arithmetic or comparison operators, or more than this many nested
/// operators, is refused.
pub const MAX_EXPR_DEPTH: usize = 256;

/// `AND`/`OR` chains with more operands than this are rebalanced; shorter ones keep the
/// shape they were written in (and so their EXPLAIN text).
const REBALANCE_OVER: usize = 16;

/// The longest interval, in milliseconds: the span of TIMESTAMP(3), years 0000 to 9999.
pub const MAX_INTERVAL_MS: i64 = MAX_TIMESTAMP_MS - MIN_TIMESTAMP_MS;

/// Refuses parentheses nested deeper than [`MAX_NESTING`], naming where.
pub fn check_nesting(tokens: &[TokenWithSpan]) -> Result<()> {
    let mut depth = 0usize;
    for t in tokens {
        match t.token {
            Token::LParen => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(SqlError::at(
                        t.span,
                        format!(
                            "parentheses nest more than {MAX_NESTING} deep here (nested function \
                             calls, CASTs and subqueries count); Weir's limit is {MAX_NESTING}: \
                             flatten the expression or move parts into a view"
                        ),
                    ));
                }
            }
            Token::RParen => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Rebalances long `AND`/`OR` chains of `stmt` and refuses expressions deeper than
/// [`MAX_EXPR_DEPTH`].
pub fn shape(stmt: &mut Statement) -> Result<()> {
    let mut s = Shaper { depth: 0 };
    let flow = match stmt {
        Statement::CreateView { query, .. }
        | Statement::Insert { query, .. }
        | Statement::Select(query) => query.visit(&mut s),
        Statement::CreateTableAs { def, query } => {
            for c in &mut def.columns {
                if let ColumnKind::Computed(e) = &mut c.kind
                    && let ControlFlow::Break(err) = e.visit(&mut s)
                {
                    return Err(err);
                }
            }
            query.visit(&mut s)
        }
        Statement::CreateTable(def) => {
            for c in &mut def.columns {
                if let ColumnKind::Computed(e) = &mut c.kind
                    && let ControlFlow::Break(err) = e.visit(&mut s)
                {
                    return Err(err);
                }
            }
            match &mut def.watermark {
                Some(w) => w.expr.visit(&mut s),
                None => ControlFlow::Continue(()),
            }
        }
        Statement::Explain(inner) => return shape(inner),
        Statement::CreateFunction(_) | Statement::DropFunction { .. } => ControlFlow::Continue(()),
    };
    match flow {
        ControlFlow::Break(err) => Err(err),
        ControlFlow::Continue(()) => Ok(()),
    }
}

struct Shaper {
    /// Depth of the expression being visited.
    depth: usize,
}

impl VisitorMut for Shaper {
    type Break = SqlError;

    fn pre_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<SqlError> {
        if let Expr::BinaryOp { op, .. } = e
            && matches!(op, BinaryOperator::And | BinaryOperator::Or)
        {
            let op = op.clone();
            let operands = chain(e, &op);
            if operands.len() > REBALANCE_OVER {
                *e = balanced(operands, &op);
            }
        }
        if let Expr::Interval(iv) = e
            && let Some(ms) = interval_literal_ms(iv)
            && ms.abs() > MAX_INTERVAL_MS as f64
        {
            return ControlFlow::Break(SqlError::at(
                e.span(),
                format!(
                    "{e} is out of range: an interval spans at most {MAX_INTERVAL_MS} ms \
                     (10000 years, the range of TIMESTAMP(3))"
                ),
            ));
        }
        self.depth += 1;
        if self.depth > MAX_EXPR_DEPTH {
            return ControlFlow::Break(SqlError::at(
                e.span(),
                format!(
                    "this expression nests more than {MAX_EXPR_DEPTH} levels deep (a chain of \
                     that many operators, or operators nested that deep); Weir's limit is \
                     {MAX_EXPR_DEPTH}: split it, e.g. compute parts in a view (long AND/OR \
                     chains have no limit)"
                ),
            ));
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, _e: &mut Expr) -> ControlFlow<SqlError> {
        self.depth -= 1;
        ControlFlow::Continue(())
    }
}

/// The operands of the chain of `op` rooted at `e`, left to right, without recursion (a
/// chain of thousands is as deep as it is long). Counts only when the chain is long enough
/// to be rebalanced; otherwise `e` is left as it was.
fn chain(e: &mut Expr, op: &BinaryOperator) -> Vec<Expr> {
    // Count first (cheap, borrows only) so short chains are not taken apart.
    let mut n = 1;
    let mut cur = &*e;
    while let Expr::BinaryOp { left, op: o, .. } = cur
        && o == op
    {
        n += 1;
        cur = left;
    }
    if n <= REBALANCE_OVER {
        return Vec::new();
    }
    let mut operands = Vec::new();
    let mut stack = vec![std::mem::replace(
        e,
        Expr::value(sqlparser::ast::Value::Null),
    )];
    while let Some(x) = stack.pop() {
        match x {
            Expr::BinaryOp { left, op: o, right } if &o == op => {
                stack.push(*right);
                stack.push(*left);
            }
            other => operands.push(other),
        }
    }
    operands
}

/// A balanced tree of `op` over `operands` (in order), at most log2(n) + 1 deep.
fn balanced(mut operands: Vec<Expr>, op: &BinaryOperator) -> Expr {
    if operands.len() == 1 {
        return operands.pop().expect("one operand");
    }
    let right = operands.split_off(operands.len() / 2);
    Expr::BinaryOp {
        left: Box::new(balanced(operands, op)),
        op: op.clone(),
        right: Box::new(balanced(right, op)),
    }
}

/// The milliseconds of `INTERVAL 'n' UNIT` with a plain number `n` (a year as 365.2425 days, a
/// month as a twelfth of that), or `None` for other forms, which DataFusion parses.
fn interval_literal_ms(iv: &sqlparser::ast::Interval) -> Option<f64> {
    use sqlparser::ast::Value as V;
    let Expr::Value(v) = iv.value.as_ref() else {
        return None;
    };
    let n: f64 = match &v.value {
        V::SingleQuotedString(s) | V::Number(s, _) => s.trim().parse().ok()?,
        _ => return None,
    };
    const DAY: f64 = 86_400_000.0;
    let unit = match iv.leading_field.as_ref()? {
        DateTimeField::Year | DateTimeField::Years => 365.2425 * DAY,
        DateTimeField::Month | DateTimeField::Months => 365.2425 * DAY / 12.0,
        DateTimeField::Week(_) | DateTimeField::Weeks => 7.0 * DAY,
        DateTimeField::Day | DateTimeField::Days => DAY,
        DateTimeField::Hour | DateTimeField::Hours => 3_600_000.0,
        DateTimeField::Minute | DateTimeField::Minutes => 60_000.0,
        DateTimeField::Second | DateTimeField::Seconds => 1_000.0,
        DateTimeField::Millisecond | DateTimeField::Milliseconds => 1.0,
        _ => return None,
    };
    Some(n * unit)
}
