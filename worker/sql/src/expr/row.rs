//! Row-at-a-time evaluation of the DataFusion physical expressions whose Arrow semantics can
//! be reproduced exactly on single values: columns, literals, CAST / TRY_CAST between
//! BOOLEAN, BIGINT, DOUBLE, STRING and TIMESTAMP, `+ - * / %`, comparisons, AND / OR / NOT,
//! IS [NOT] NULL, unary minus and `TO_TIMESTAMP_LTZ` (DataFusion's `to_timestamp_millis` /
//! `to_timestamp_seconds` over numbers).
//!
//! A [`Calc`](super::Calc) whose filter and computed expressions all compile here evaluates
//! them on each row's values directly instead of building an Arrow batch; every other
//! expression keeps going through Arrow. Each operation follows the Arrow kernel DataFusion
//! runs for it: NULL in, NULL out (no error); BIGINT `+ - *` and unary minus wrap around (a
//! constant's unary minus is checked, as DataFusion negates constants as scalars); BIGINT
//! `/` and `%` by zero fail, `i64::MIN / -1` fails and `i64::MIN % -1` is 0; DOUBLE follows
//! IEEE 754; DOUBLE comparisons use the total order with `-0.0 = 0.0`; AND/OR use
//! three-valued logic; CAST fails (TRY_CAST gives NULL) where the value does not fit.
//! Errors carry Arrow's message. Only the operand an AND/OR result depends on is evaluated,
//! so a row whose other operand would fail (say, a division by zero) does not fail here,
//! where DataFusion, which evaluates whole batches, may.

use crate::value::{Column, SqlType, Value};
use arrow::compute::kernels::cast::num_cast;
use arrow::datatypes::{DataType, Schema, TimeUnit};
use arrow::error::ArrowError;
use datafusion_common::{DataFusionError, ScalarValue};
use datafusion_expr::Operator;
use datafusion_functions::datetime::to_timestamp::{ToTimestampMillisFunc, ToTimestampSecondsFunc};
use datafusion_physical_expr::expressions::{
    BinaryExpr, CastExpr, Column as ColumnExpr, IsNotNullExpr, IsNullExpr, Literal, NegativeExpr,
    NotExpr, TryCastExpr,
};
use datafusion_physical_expr::{PhysicalExpr, ScalarFunctionExpr};
use std::borrow::Cow;
use std::cmp::Ordering;
use std::sync::Arc;

type Result<T> = std::result::Result<T, DataFusionError>;

/// The Arrow types a compiled node's values can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ty {
    /// `DataType::Null` (an untyped NULL literal)
    Null,
    Bool,
    Int,
    Float,
    Str,
    /// `Timestamp(Millisecond, None)`
    TsMs,
    /// `Timestamp(Second, None)` (what `TO_TIMESTAMP_LTZ(x, 0)` returns)
    TsSec,
}

impl Ty {
    fn of(t: &DataType) -> Option<Ty> {
        Some(match t {
            DataType::Null => Ty::Null,
            DataType::Boolean => Ty::Bool,
            DataType::Int64 => Ty::Int,
            DataType::Float64 => Ty::Float,
            // Arrow's string representations hold the same text.
            DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8 => Ty::Str,
            DataType::Timestamp(TimeUnit::Millisecond, None) => Ty::TsMs,
            DataType::Timestamp(TimeUnit::Second, None) => Ty::TsSec,
            _ => return None,
        })
    }

    fn is_ts(self) -> bool {
        matches!(self, Ty::TsMs | Ty::TsSec)
    }
}

/// One value during evaluation; timestamps are in their node's unit, strings borrow from the
/// row or the expression where they can.
#[derive(Debug, Clone)]
enum Scalar<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Cow<'a, str>),
    Ts(i64),
}

#[derive(Debug, Clone, Copy)]
enum Arith {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

#[derive(Debug, Clone, Copy)]
enum Cmp {
    Eq,
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
    Distinct,
    NotDistinct,
}

/// A conversion between two node types, as Arrow's cast kernel does it.
#[derive(Debug, Clone, Copy)]
enum Conv {
    /// Same representation (same type, or a timestamp read as / made from its BIGINT).
    Same,
    IntToFloat,
    /// DOUBLE to BIGINT: truncation, out of range (and NaN) does not fit.
    FloatToInt,
    IntToBool,
    FloatToBool,
    BoolToInt,
    BoolToFloat,
    IntToStr,
    BoolToStr,
}

#[derive(Debug)]
enum Node {
    /// Input column `idx`, read as the Arrow path converts it (`SqlType` decides).
    Col {
        idx: usize,
        ty: SqlType,
    },
    Lit(Scalar<'static>),
    /// `conv` applied to `arg`; `safe` gives NULL where the value does not fit (TRY_CAST).
    Cast {
        arg: Box<Node>,
        conv: Conv,
        safe: bool,
        /// The result's type.
        to: Ty,
        /// The type a value that does not fit is reported as not fitting.
        fail_to: DataType,
    },
    Arith {
        op: Arith,
        float: bool,
        l: Box<Node>,
        r: Box<Node>,
    },
    Cmp {
        op: Cmp,
        l: Box<Node>,
        r: Box<Node>,
    },
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    Not(Box<Node>),
    IsNull(Box<Node>),
    IsNotNull(Box<Node>),
    /// Unary minus; `checked` for a constant operand (DataFusion negates it as a scalar).
    Neg {
        arg: Box<Node>,
        float: bool,
        checked: bool,
    },
}

/// A compiled expression: its tree and the Arrow type of its result.
#[derive(Debug)]
pub(super) struct RowExpr {
    node: Node,
    ty: Ty,
    /// The SQL type the result is carried as; converted to it like `ValueReader` does.
    out: SqlType,
}

impl RowExpr {
    /// Compiles `e` over rows of `cols` (whose Arrow schema is `schema`); `None` if some
    /// part of it is outside the row evaluator's subset.
    pub(super) fn compile(
        e: &Arc<dyn PhysicalExpr>,
        cols: &[Column],
        schema: &Schema,
        out: SqlType,
    ) -> Option<RowExpr> {
        let (node, ty, _) = compile(e, cols, schema)?;
        // The conversion to the carried type must be one `ValueReader`'s cast does losslessly
        // in the same way (NULL, the same type, or seconds to milliseconds).
        let ok = match (ty, out) {
            (Ty::Null, _) => true,
            (Ty::Bool, SqlType::Boolean)
            | (Ty::Int, SqlType::BigInt)
            | (Ty::Float, SqlType::Double)
            | (Ty::Str, SqlType::String)
            | (Ty::TsMs | Ty::TsSec, SqlType::Timestamp) => true,
            _ => false,
        };
        ok.then_some(RowExpr { node, ty, out })
    }

    /// The value of the expression for `row`, as its SQL type carries it.
    pub(super) fn eval(&self, row: &[Value]) -> Result<Value> {
        let v = self.node.eval(row)?;
        Ok(match v {
            Scalar::Null => Value::Null,
            Scalar::Bool(b) => Value::Bool(b),
            Scalar::Int(i) => Value::Int(i),
            Scalar::Float(f) => Value::Double(f),
            Scalar::Str(s) => Value::Str(s.into_owned()),
            // Arrow's safe cast from seconds to milliseconds: NULL on overflow.
            Scalar::Ts(t) if self.ty == Ty::TsSec => {
                t.checked_mul(1000).map(Value::Ts).unwrap_or(Value::Null)
            }
            Scalar::Ts(t) => Value::Ts(t),
        })
    }

    /// Whether the (BOOLEAN) expression is TRUE for `row`: a filter's NULL counts as false.
    pub(super) fn is_true(&self, row: &[Value]) -> Result<bool> {
        Ok(matches!(self.node.eval(row)?, Scalar::Bool(true)))
    }

    /// The SQL type of the result.
    #[allow(dead_code)]
    pub(super) fn sql_type(&self) -> SqlType {
        self.out
    }
}

/// Compiles one node: the node, its type, and whether DataFusion evaluates it as a scalar
/// (it reads no column).
fn compile(
    e: &Arc<dyn PhysicalExpr>,
    cols: &[Column],
    schema: &Schema,
) -> Option<(Node, Ty, bool)> {
    let ty = Ty::of(&e.data_type(schema).ok()?)?;
    if let Some(c) = e.downcast_ref::<ColumnExpr>() {
        let col = cols.get(c.index())?;
        if Ty::of(&col.ty.arrow())? != ty {
            return None;
        }
        return Some((
            Node::Col {
                idx: c.index(),
                ty: col.ty,
            },
            ty,
            false,
        ));
    }
    if let Some(l) = e.downcast_ref::<Literal>() {
        let v = match (l.value(), ty) {
            (v, _) if v.is_null() => Scalar::Null,
            (ScalarValue::Boolean(Some(b)), Ty::Bool) => Scalar::Bool(*b),
            (ScalarValue::Int64(Some(i)), Ty::Int) => Scalar::Int(*i),
            (ScalarValue::Float64(Some(f)), Ty::Float) => Scalar::Float(*f),
            (ScalarValue::Utf8(Some(s)), Ty::Str) => Scalar::Str(Cow::Owned(s.clone())),
            (ScalarValue::TimestampMillisecond(Some(t), None), Ty::TsMs)
            | (ScalarValue::TimestampSecond(Some(t), None), Ty::TsSec) => Scalar::Ts(*t),
            _ => return None,
        };
        return Some((Node::Lit(v), ty, true));
    }
    if let Some(c) = e.downcast_ref::<CastExpr>() {
        return cast(
            c.expr(),
            c.cast_type(),
            c.cast_options().safe,
            ty,
            cols,
            schema,
        );
    }
    if let Some(c) = e.downcast_ref::<TryCastExpr>() {
        return cast(c.expr(), c.cast_type(), true, ty, cols, schema);
    }
    if let Some(b) = e.downcast_ref::<BinaryExpr>() {
        let (l, lt, ls) = compile(b.left(), cols, schema)?;
        let (r, rt, rs) = compile(b.right(), cols, schema)?;
        // Arrow's kernels take operands of one type; the type coercion inserted the casts.
        if b.left().data_type(schema).ok()? != b.right().data_type(schema).ok()? {
            return None;
        }
        let (l, r) = (Box::new(l), Box::new(r));
        let arith = match b.op() {
            Operator::Plus => Some(Arith::Add),
            Operator::Minus => Some(Arith::Sub),
            Operator::Multiply => Some(Arith::Mul),
            Operator::Divide => Some(Arith::Div),
            Operator::Modulo => Some(Arith::Rem),
            _ => None,
        };
        let node = if let Some(op) = arith {
            if lt != ty || rt != ty || !matches!(ty, Ty::Int | Ty::Float) {
                return None;
            }
            Node::Arith {
                op,
                float: ty == Ty::Float,
                l,
                r,
            }
        } else if matches!(b.op(), Operator::And | Operator::Or) {
            if lt != Ty::Bool || rt != Ty::Bool || ty != Ty::Bool {
                return None;
            }
            // AND/OR results are arrays even over constants.
            let node = if *b.op() == Operator::And {
                Node::And(l, r)
            } else {
                Node::Or(l, r)
            };
            return Some((node, ty, false));
        } else {
            let op = match b.op() {
                Operator::Eq => Cmp::Eq,
                Operator::NotEq => Cmp::NotEq,
                Operator::Lt => Cmp::Lt,
                Operator::LtEq => Cmp::LtEq,
                Operator::Gt => Cmp::Gt,
                Operator::GtEq => Cmp::GtEq,
                Operator::IsDistinctFrom => Cmp::Distinct,
                Operator::IsNotDistinctFrom => Cmp::NotDistinct,
                _ => return None,
            };
            if lt == Ty::Null || lt != rt || ty != Ty::Bool {
                return None;
            }
            Node::Cmp { op, l, r }
        };
        return Some((node, ty, ls && rs));
    }
    if let Some(n) = e.downcast_ref::<NotExpr>() {
        let (a, at, s) = compile(n.arg(), cols, schema)?;
        return (at == Ty::Bool && ty == Ty::Bool).then(|| (Node::Not(Box::new(a)), ty, s));
    }
    if let Some(n) = e.downcast_ref::<IsNullExpr>() {
        let (a, _, s) = compile(n.arg(), cols, schema)?;
        return (ty == Ty::Bool).then(|| (Node::IsNull(Box::new(a)), ty, s));
    }
    if let Some(n) = e.downcast_ref::<IsNotNullExpr>() {
        let (a, _, s) = compile(n.arg(), cols, schema)?;
        return (ty == Ty::Bool).then(|| (Node::IsNotNull(Box::new(a)), ty, s));
    }
    if let Some(n) = e.downcast_ref::<NegativeExpr>() {
        let (a, at, s) = compile(n.arg(), cols, schema)?;
        if at != ty || !matches!(ty, Ty::Int | Ty::Float) {
            return None;
        }
        return Some((
            Node::Neg {
                arg: Box::new(a),
                float: ty == Ty::Float,
                checked: s,
            },
            ty,
            s,
        ));
    }
    if let Some(f) = e.downcast_ref::<ScalarFunctionExpr>() {
        // TO_TIMESTAMP_LTZ(x, 3) / (x, 0), as FlinkFunctions rewrites it: a number cast to a
        // timestamp of that unit (DOUBLE through BIGINT, failing where it does not fit).
        let inner = f.fun().inner();
        let unit_ty = if inner.is::<ToTimestampMillisFunc>() {
            Ty::TsMs
        } else if inner.is::<ToTimestampSecondsFunc>() {
            Ty::TsSec
        } else {
            return None;
        };
        let [arg] = f.args() else { return None };
        if ty != unit_ty {
            return None;
        }
        let (a, at, s) = compile(arg, cols, schema)?;
        let conv = match at {
            Ty::Null | Ty::Int => Conv::Same,
            t if t == unit_ty => Conv::Same,
            Ty::Float => Conv::FloatToInt,
            _ => return None,
        };
        return Some((
            Node::Cast {
                arg: Box::new(a),
                conv,
                safe: false,
                to: ty,
                fail_to: DataType::Int64,
            },
            ty,
            s,
        ));
    }
    None
}

/// A cast of `arg` to `to` (the node's type `ty`).
fn cast(
    arg: &Arc<dyn PhysicalExpr>,
    to: &DataType,
    safe: bool,
    ty: Ty,
    cols: &[Column],
    schema: &Schema,
) -> Option<(Node, Ty, bool)> {
    let (a, at, s) = compile(arg, cols, schema)?;
    if Ty::of(to)? != ty {
        return None;
    }
    let conv = match (at, ty) {
        (Ty::Null, _) => Conv::Same,
        (a, b) if a == b => Conv::Same,
        (Ty::Int, Ty::Float) => Conv::IntToFloat,
        (Ty::Float, Ty::Int) => Conv::FloatToInt,
        (Ty::Int, Ty::Bool) => Conv::IntToBool,
        (Ty::Float, Ty::Bool) => Conv::FloatToBool,
        (Ty::Bool, Ty::Int) => Conv::BoolToInt,
        (Ty::Bool, Ty::Float) => Conv::BoolToFloat,
        (Ty::Int, Ty::Str) => Conv::IntToStr,
        (Ty::Bool, Ty::Str) => Conv::BoolToStr,
        // A number to a timestamp: its BIGINT value (a DOUBLE truncated first), in `to`'s unit.
        (Ty::Int, t) if t.is_ts() => Conv::Same,
        (Ty::Float, t) if t.is_ts() => Conv::FloatToInt,
        // A timestamp to a number: its BIGINT value.
        (t, Ty::Int) if t.is_ts() => Conv::Same,
        (t, Ty::Float) if t.is_ts() => Conv::IntToFloat,
        _ => return None,
    };
    Some((
        Node::Cast {
            arg: Box::new(a),
            conv,
            safe,
            to: ty,
            // A DOUBLE goes to a timestamp through BIGINT, which Arrow's error names.
            fail_to: DataType::Int64,
        },
        ty,
        s,
    ))
}

fn arrow_err(e: ArrowError) -> DataFusionError {
    DataFusionError::from(e)
}

/// Normalises `-0.0` to `0.0` (DataFusion does before comparing with the total order).
fn norm_zero(f: f64) -> f64 {
    if f == 0.0 { 0.0 } else { f }
}

fn compare(l: &Scalar<'_>, r: &Scalar<'_>) -> Ordering {
    match (l, r) {
        (Scalar::Bool(a), Scalar::Bool(b)) => a.cmp(b),
        (Scalar::Int(a), Scalar::Int(b)) | (Scalar::Ts(a), Scalar::Ts(b)) => a.cmp(b),
        (Scalar::Float(a), Scalar::Float(b)) => norm_zero(*a).total_cmp(&norm_zero(*b)),
        (Scalar::Str(a), Scalar::Str(b)) => a.as_bytes().cmp(b.as_bytes()),
        // Compilation makes both operands one type.
        _ => Ordering::Equal,
    }
}

impl Node {
    fn eval<'a>(&'a self, row: &'a [Value]) -> Result<Scalar<'a>> {
        Ok(match self {
            Node::Col { idx, ty } => match (row.get(*idx), ty) {
                (Some(Value::Bool(b)), SqlType::Boolean) => Scalar::Bool(*b),
                (Some(Value::Int(i)), SqlType::BigInt) => Scalar::Int(*i),
                (Some(Value::Int(i)), SqlType::Double) => Scalar::Float(*i as f64),
                (Some(Value::Double(d)), SqlType::Double) => Scalar::Float(*d),
                (Some(Value::Str(s)), SqlType::String) => Scalar::Str(Cow::Borrowed(s)),
                (Some(Value::Ts(t)), SqlType::Timestamp) => Scalar::Ts(*t),
                // What the Arrow path's batch builder makes NULL.
                _ => Scalar::Null,
            },
            Node::Lit(v) => match v {
                Scalar::Str(Cow::Owned(s)) => Scalar::Str(Cow::Borrowed(s)),
                v => v.clone(),
            },
            Node::Cast {
                arg,
                conv,
                safe,
                to,
                fail_to,
            } => {
                let v = arg.eval(row)?;
                let int = |i: i64| {
                    if to.is_ts() {
                        Scalar::Ts(i)
                    } else {
                        Scalar::Int(i)
                    }
                };
                match (conv, v) {
                    (_, Scalar::Null) => Scalar::Null,
                    (Conv::Same, Scalar::Int(i) | Scalar::Ts(i)) => int(i),
                    (Conv::Same, v) => v,
                    (Conv::IntToFloat, Scalar::Int(i) | Scalar::Ts(i)) => Scalar::Float(i as f64),
                    (Conv::FloatToInt, Scalar::Float(f)) => match num_cast::<f64, i64>(f) {
                        Some(i) => int(i),
                        None if *safe => Scalar::Null,
                        None => {
                            return Err(arrow_err(ArrowError::CastError(format!(
                                "Can't cast value {f:?} to type {fail_to}"
                            ))));
                        }
                    },
                    (Conv::IntToBool, Scalar::Int(i)) => Scalar::Bool(i != 0),
                    (Conv::FloatToBool, Scalar::Float(f)) => Scalar::Bool(f != 0.0),
                    (Conv::BoolToInt, Scalar::Bool(b)) => Scalar::Int(i64::from(b)),
                    (Conv::BoolToFloat, Scalar::Bool(b)) => Scalar::Float(f64::from(u8::from(b))),
                    (Conv::IntToStr, Scalar::Int(i)) => Scalar::Str(Cow::Owned(i.to_string())),
                    (Conv::BoolToStr, Scalar::Bool(b)) => {
                        Scalar::Str(Cow::Borrowed(if b { "true" } else { "false" }))
                    }
                    // Compilation pairs each conversion with its operand type.
                    (_, v) => v,
                }
            }
            Node::Arith { op, float, l, r } => {
                let a = l.eval(row)?;
                let b = r.eval(row)?;
                match (a, b) {
                    (Scalar::Int(a), Scalar::Int(b)) if !float => Scalar::Int(match op {
                        Arith::Add => a.wrapping_add(b),
                        Arith::Sub => a.wrapping_sub(b),
                        Arith::Mul => a.wrapping_mul(b),
                        Arith::Div if b == 0 => return Err(arrow_err(ArrowError::DivideByZero)),
                        Arith::Div => a.checked_div(b).ok_or_else(|| {
                            arrow_err(ArrowError::ArithmeticOverflow(format!(
                                "Overflow happened on: {a:?} / {b:?}"
                            )))
                        })?,
                        Arith::Rem if b == 0 => return Err(arrow_err(ArrowError::DivideByZero)),
                        Arith::Rem => a.wrapping_rem(b),
                    }),
                    (Scalar::Float(a), Scalar::Float(b)) => Scalar::Float(match op {
                        Arith::Add => a + b,
                        Arith::Sub => a - b,
                        Arith::Mul => a * b,
                        Arith::Div => a / b,
                        Arith::Rem => a % b,
                    }),
                    _ => Scalar::Null,
                }
            }
            Node::Cmp { op, l, r } => {
                let a = l.eval(row)?;
                let b = r.eval(row)?;
                let (an, bn) = (matches!(a, Scalar::Null), matches!(b, Scalar::Null));
                match op {
                    Cmp::Distinct => Scalar::Bool(match (an, bn) {
                        (true, true) => false,
                        (false, false) => compare(&a, &b) != Ordering::Equal,
                        _ => true,
                    }),
                    Cmp::NotDistinct => Scalar::Bool(match (an, bn) {
                        (true, true) => true,
                        (false, false) => compare(&a, &b) == Ordering::Equal,
                        _ => false,
                    }),
                    _ if an || bn => Scalar::Null,
                    op => {
                        let o = compare(&a, &b);
                        Scalar::Bool(match op {
                            Cmp::Eq => o == Ordering::Equal,
                            Cmp::NotEq => o != Ordering::Equal,
                            Cmp::Lt => o == Ordering::Less,
                            Cmp::LtEq => o != Ordering::Greater,
                            Cmp::Gt => o == Ordering::Greater,
                            _ => o != Ordering::Less,
                        })
                    }
                }
            }
            Node::And(l, r) => match l.eval(row)? {
                Scalar::Bool(false) => Scalar::Bool(false),
                a => match (a, r.eval(row)?) {
                    (_, Scalar::Bool(false)) => Scalar::Bool(false),
                    (Scalar::Bool(true), Scalar::Bool(true)) => Scalar::Bool(true),
                    _ => Scalar::Null,
                },
            },
            Node::Or(l, r) => match l.eval(row)? {
                Scalar::Bool(true) => Scalar::Bool(true),
                a => match (a, r.eval(row)?) {
                    (_, Scalar::Bool(true)) => Scalar::Bool(true),
                    (Scalar::Bool(false), Scalar::Bool(false)) => Scalar::Bool(false),
                    _ => Scalar::Null,
                },
            },
            Node::Not(a) => match a.eval(row)? {
                Scalar::Bool(b) => Scalar::Bool(!b),
                _ => Scalar::Null,
            },
            Node::IsNull(a) => Scalar::Bool(matches!(a.eval(row)?, Scalar::Null)),
            Node::IsNotNull(a) => Scalar::Bool(!matches!(a.eval(row)?, Scalar::Null)),
            Node::Neg {
                arg,
                float,
                checked,
            } => match arg.eval(row)? {
                Scalar::Float(f) if *float => Scalar::Float(-f),
                Scalar::Int(i) if *checked => Scalar::Int(i.checked_neg().ok_or_else(|| {
                    arrow_err(ArrowError::ArithmeticOverflow(format!(
                        "Overflow happened on: - {i:?}"
                    )))
                })?),
                Scalar::Int(i) => Scalar::Int(i.wrapping_neg()),
                _ => Scalar::Null,
            },
        })
    }
}
