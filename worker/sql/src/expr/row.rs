//! Row-at-a-time evaluation of the DataFusion physical expressions whose Arrow semantics can
//! be reproduced exactly on single values: columns, literals, CAST / TRY_CAST between
//! BOOLEAN, the integer types (widening), DOUBLE, STRING and TIMESTAMP, `+ - * / %`,
//! comparisons, AND / OR / NOT,
//! IS [NOT] NULL, unary minus, `TO_TIMESTAMP_LTZ` (DataFusion's `to_timestamp_millis` /
//! `to_timestamp_seconds` over numbers), and DECIMAL arithmetic, comparisons and casts between
//! DECIMALs and from integers (the functions of [`crate::builtins::decimal`], computed by
//! [`crate::decimal`] as there: Nexmark q1's `0.908 * price` is one per row).
//!
//! A [`Calc`](super::Calc) whose filter and computed expressions all compile here evaluates
//! them on each row's values directly instead of building an Arrow batch; every other
//! expression keeps going through Arrow. Each operation follows the Arrow kernel DataFusion
//! runs for it: NULL in, NULL out (no error); BIGINT `+ - *` and unary minus wrap around (a
//! constant's unary minus is checked, as DataFusion negates constants as scalars), INT,
//! SMALLINT and TINYINT likewise at their width (all integers are `Value::Int`); BIGINT
//! `/` and `%` by zero fail, `i64::MIN / -1` fails and `i64::MIN % -1` is 0; DOUBLE follows
//! IEEE 754; DOUBLE comparisons use the total order with `-0.0 = 0.0`; AND/OR use
//! three-valued logic; CAST fails (TRY_CAST gives NULL) where the value does not fit.
//! Errors carry Arrow's message. Only the operand an AND/OR result depends on is evaluated,
//! so a row whose other operand would fail (say, a division by zero) does not fail here,
//! where DataFusion, which evaluates whole batches, may.

use crate::builtins::decimal::{DecimalFn, Kind as DecKind};
use crate::decimal::Op as DecOp;
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

type Result<T> = std::result::Result<T, Box<DataFusionError>>;

/// The Arrow types a compiled node's values can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ty {
    /// `DataType::Null` (an untyped NULL literal)
    Null,
    Bool,
    /// `Int64`
    Int,
    /// `Int32`, `Int16`, `Int8`: carried as `Value::Int` like BIGINT; their arithmetic wraps
    /// around at their width.
    I32,
    I16,
    I8,
    Float,
    Str,
    /// `Timestamp(Millisecond, None)`
    TsMs,
    /// `Timestamp(Second, None)` (what `TO_TIMESTAMP_LTZ(x, 0)` returns)
    TsSec,
    /// `Decimal128(p, s)`: `Value::Decimal` in rows, its unscaled `i128` here.
    Dec(u8, u8),
}

impl Ty {
    fn of(t: &DataType) -> Option<Ty> {
        Some(match t {
            DataType::Null => Ty::Null,
            DataType::Boolean => Ty::Bool,
            DataType::Int64 => Ty::Int,
            DataType::Int32 => Ty::I32,
            DataType::Int16 => Ty::I16,
            DataType::Int8 => Ty::I8,
            DataType::Float64 => Ty::Float,
            // Arrow's string representations hold the same text.
            DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8 => Ty::Str,
            DataType::Timestamp(TimeUnit::Millisecond, None) => Ty::TsMs,
            DataType::Timestamp(TimeUnit::Second, None) => Ty::TsSec,
            DataType::Decimal128(p, s) if *s >= 0 => Ty::Dec(*p, *s as u8),
            _ => return None,
        })
    }

    fn is_ts(self) -> bool {
        matches!(self, Ty::TsMs | Ty::TsSec)
    }

    /// Whether values of the type are integers read with `int_at` (timestamps aside).
    fn is_int(self) -> bool {
        matches!(self, Ty::Int | Ty::I32 | Ty::I16 | Ty::I8)
    }

    /// The SQL type of a narrower integer (its arithmetic wraps to it); None for the others.
    fn narrow(self) -> Option<SqlType> {
        match self {
            Ty::I32 => Some(SqlType::Int),
            Ty::I16 => Some(SqlType::SmallInt),
            Ty::I8 => Some(SqlType::TinyInt),
            _ => None,
        }
    }

    /// How many bits an integer type holds (0 for the others).
    fn int_bits(self) -> u32 {
        match self {
            Ty::Int => 64,
            Ty::I32 => 32,
            Ty::I16 => 16,
            Ty::I8 => 8,
            _ => 0,
        }
    }
}

/// A literal's value.
#[derive(Debug, Clone)]
enum Lit {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    /// A DECIMAL's unscaled value (at the node type's scale).
    Dec(i128),
}

/// A value of type `T` or NULL, or the error that evaluating it raised (boxed, to keep the
/// result small on the hot path).
type Eval<T> = std::result::Result<Option<T>, Box<DataFusionError>>;

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
    Lit(Lit),
    /// `conv` applied to `arg`; `safe` gives NULL where the value does not fit (TRY_CAST).
    Cast {
        arg: Box<Node>,
        conv: Conv,
        safe: bool,
        /// The type a value that does not fit is reported as not fitting.
        fail_to: DataType,
    },
    Arith {
        op: Arith,
        l: Box<Node>,
        r: Box<Node>,
    },
    /// Arithmetic on INT, SMALLINT or TINYINT operands (of type `to`): computed on 64 bits,
    /// where their `+ - *` cannot overflow, then wrapped around to `to`. A node of its own
    /// so that BIGINT's arithmetic stays as it is.
    NarrowArith {
        op: Arith,
        to: SqlType,
        l: Box<Node>,
        r: Box<Node>,
    },
    /// Unary minus of an INT, SMALLINT or TINYINT operand (of type `to`).
    NarrowNeg {
        arg: Box<Node>,
        to: SqlType,
        checked: bool,
    },
    /// DECIMAL arithmetic (Flink's, see [`crate::decimal`]) with a DECIMAL(p, s) result;
    /// each operand a DECIMAL at its scale or an integer (`*_int`, scale 0).
    DecArith {
        op: DecOp,
        l: Box<Node>,
        l_int: bool,
        ls: u8,
        r: Box<Node>,
        r_int: bool,
        rs: u8,
        p: u8,
        s: u8,
    },
    /// A DECIMAL product whose scale is the sum of its operands' (no rescale): the common
    /// `price * 0.908`, kept apart from [`Node::DecArith`] because it is a per-row hot path.
    DecMul {
        l: Box<Node>,
        l_int: bool,
        r: Box<Node>,
        r_int: bool,
        p: u8,
    },
    /// A BIGINT column times a DECIMAL or integer literal that fits an i64 (`0.908 * price`),
    /// at the sum of their scales: [`Node::DecMul`] without the operand dispatch, the product
    /// unable to overflow the i128, and only the precision to check (`limit` = 10^p).
    DecScale {
        idx: usize,
        by: i64,
        limit: u128,
    },
    /// A DECIMAL (at scale `from`, or an integer: `int`) cast to DECIMAL(p, s): rounded
    /// HALF_UP, NULL where it does not fit.
    DecCast {
        arg: Box<Node>,
        int: bool,
        from: u8,
        p: u8,
        s: u8,
    },
    /// A comparison of two operands of type `ty`.
    Cmp {
        op: Cmp,
        ty: Ty,
        l: Box<Node>,
        r: Box<Node>,
    },
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    Not(Box<Node>),
    /// IS NULL (`not`: IS NOT NULL) of an operand of type `Ty`.
    IsNull {
        arg: Box<Node>,
        ty: Ty,
        not: bool,
    },
    /// Unary minus; `checked` for a constant operand (DataFusion negates it as a scalar).
    Neg {
        arg: Box<Node>,
        checked: bool,
    },
}

/// A compiled expression: its tree and the Arrow type of its result.
#[derive(Debug)]
pub(super) struct RowExpr {
    node: Node,
    /// The result's type; converted to the SQL type it is carried as like `ValueReader` does.
    ty: Ty,
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
        let ok = matches!(
            (ty, out),
            (Ty::Null, _)
                | (Ty::Bool, SqlType::Boolean)
                | (Ty::Int, SqlType::BigInt)
                | (Ty::I32, SqlType::Int)
                | (Ty::I16, SqlType::SmallInt)
                | (Ty::I8, SqlType::TinyInt)
                | (Ty::Float, SqlType::Double)
                | (Ty::Str, SqlType::String)
                | (Ty::TsMs | Ty::TsSec, SqlType::Timestamp)
        ) || matches!((ty, out), (Ty::Dec(p, s), SqlType::Decimal(q, t)) if (p, s) == (q, t));
        ok.then_some(RowExpr { node, ty })
    }

    /// The value of the expression for `row`, as its SQL type carries it.
    pub(super) fn eval(&self, row: &[Value]) -> Result<Value> {
        let n = &self.node;
        Ok(match self.ty {
            Ty::Null => None,
            Ty::Bool => n.bool_at(row)?.map(Value::Bool),
            Ty::Int | Ty::I32 | Ty::I16 | Ty::I8 => n.int_at(row)?.map(Value::Int),
            Ty::Float => n.float_at(row)?.map(Value::Double),
            Ty::Str => n.str_at(row)?.map(|s| Value::Str(s.into_owned())),
            Ty::Dec(_, s) => n.dec_at(row)?.map(|v| Value::Decimal(v, s)),
            Ty::TsMs => n.int_at(row)?.map(Value::Ts),
            // Arrow's safe cast from seconds to milliseconds: NULL on overflow.
            Ty::TsSec => n
                .int_at(row)?
                .and_then(|t| t.checked_mul(1000))
                .map(Value::Ts),
        }
        .unwrap_or(Value::Null))
    }

    /// Whether the (BOOLEAN) expression is TRUE for `row`: a filter's NULL counts as false.
    pub(super) fn is_true(&self, row: &[Value]) -> Result<bool> {
        Ok(self.node.bool_at(row)? == Some(true))
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
        // Integers of every width are read alike, as BIGINT's `Value::Int`.
        let read_as = if col.ty.is_integer() {
            SqlType::BigInt
        } else {
            col.ty
        };
        return Some((
            Node::Col {
                idx: c.index(),
                ty: read_as,
            },
            ty,
            false,
        ));
    }
    if let Some(l) = e.downcast_ref::<Literal>() {
        let v = match (l.value(), ty) {
            (v, _) if v.is_null() => Lit::Null,
            (ScalarValue::Boolean(Some(b)), Ty::Bool) => Lit::Bool(*b),
            (ScalarValue::Int64(Some(i)), Ty::Int)
            | (ScalarValue::TimestampMillisecond(Some(i), None), Ty::TsMs)
            | (ScalarValue::TimestampSecond(Some(i), None), Ty::TsSec) => Lit::Int(*i),
            (ScalarValue::Int32(Some(i)), Ty::I32) => Lit::Int(i64::from(*i)),
            (ScalarValue::Int16(Some(i)), Ty::I16) => Lit::Int(i64::from(*i)),
            (ScalarValue::Int8(Some(i)), Ty::I8) => Lit::Int(i64::from(*i)),
            (ScalarValue::Float64(Some(f)), Ty::Float) => Lit::Float(*f),
            (ScalarValue::Decimal128(Some(v), ..), Ty::Dec(..)) => Lit::Dec(*v),
            (
                ScalarValue::Utf8(Some(s))
                | ScalarValue::Utf8View(Some(s))
                | ScalarValue::LargeUtf8(Some(s)),
                Ty::Str,
            ) => Lit::Str(s.clone()),
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
            if lt != ty || rt != ty || !matches!(ty, Ty::Int | Ty::Float) && ty.narrow().is_none() {
                return None;
            }
            match ty.narrow() {
                Some(to) => Node::NarrowArith { op, to, l, r },
                None => Node::Arith { op, l, r },
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
            Node::Cmp { op, ty: lt, l, r }
        };
        return Some((node, ty, ls && rs));
    }
    if let Some(n) = e.downcast_ref::<NotExpr>() {
        let (a, at, s) = compile(n.arg(), cols, schema)?;
        return (at == Ty::Bool && ty == Ty::Bool).then(|| (Node::Not(Box::new(a)), ty, s));
    }
    let is_null = |arg, not| {
        let (a, at, s) = compile(arg, cols, schema)?;
        let node = Node::IsNull {
            arg: Box::new(a),
            ty: at,
            not,
        };
        (ty == Ty::Bool).then_some((node, ty, s))
    };
    if let Some(n) = e.downcast_ref::<IsNullExpr>() {
        return is_null(n.arg(), false);
    }
    if let Some(n) = e.downcast_ref::<IsNotNullExpr>() {
        return is_null(n.arg(), true);
    }
    if let Some(n) = e.downcast_ref::<NegativeExpr>() {
        let (a, at, s) = compile(n.arg(), cols, schema)?;
        if at != ty {
            return None;
        }
        if let Some(to) = ty.narrow() {
            let node = Node::NarrowNeg {
                arg: Box::new(a),
                to,
                checked: s,
            };
            return Some((node, ty, s));
        }
        if !matches!(ty, Ty::Int | Ty::Float) {
            return None;
        }
        return Some((
            Node::Neg {
                arg: Box::new(a),
                checked: s,
            },
            ty,
            s,
        ));
    }
    if let Some(f) = e.downcast_ref::<ScalarFunctionExpr>()
        && let Some(d) = f.fun().inner().downcast_ref::<DecimalFn>()
    {
        let Ty::Dec(p, s) = ty else { return None };
        // An operand: a DECIMAL at its scale, or an integer at scale 0.
        let operand = |a: &Arc<dyn PhysicalExpr>| {
            let (n, t, c) = compile(a, cols, schema)?;
            match t {
                Ty::Dec(_, s) => Some((n, false, s, c)),
                t if t.is_int() => Some((n, true, 0, c)),
                _ => None,
            }
        };
        return match (d.kind, f.args()) {
            (DecKind::Arith(op), [a, b]) => {
                let (l, l_int, ls, lc) = operand(a)?;
                let (r, r_int, rs, rc) = operand(b)?;
                let node = if op == DecOp::Mul && ls + rs == s {
                    let scale = match (&l, &r) {
                        (
                            Node::Col {
                                idx,
                                ty: SqlType::BigInt,
                            },
                            Node::Lit(Lit::Dec(by)),
                        )
                        | (
                            Node::Lit(Lit::Dec(by)),
                            Node::Col {
                                idx,
                                ty: SqlType::BigInt,
                            },
                        ) => {
                            let limit = crate::decimal::pow10(u32::from(p));
                            limit
                                .zip(i64::try_from(*by).ok())
                                .map(|(limit, by)| Node::DecScale {
                                    idx: *idx,
                                    by,
                                    limit: limit.unsigned_abs(),
                                })
                        }
                        _ => None,
                    };
                    scale.unwrap_or_else(|| Node::DecMul {
                        l: Box::new(l),
                        l_int,
                        r: Box::new(r),
                        r_int,
                        p,
                    })
                } else {
                    Node::DecArith {
                        op,
                        l: Box::new(l),
                        l_int,
                        ls,
                        r: Box::new(r),
                        r_int,
                        rs,
                        p,
                        s,
                    }
                };
                Some((node, ty, lc && rc))
            }
            (DecKind::Cast { .. }, [a]) => {
                let (arg, int, from, c) = operand(a)?;
                let node = Node::DecCast {
                    arg: Box::new(arg),
                    int,
                    from,
                    p,
                    s,
                };
                Some((node, ty, c))
            }
            _ => None,
        };
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
            Ty::Null => Conv::Same,
            t if t.is_int() => Conv::Same,
            t if t == unit_ty => Conv::Same,
            Ty::Float => Conv::FloatToInt,
            _ => return None,
        };
        return Some((
            Node::Cast {
                arg: Box::new(a),
                conv,
                safe: false,
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
        // Widening keeps the value; narrowing is left to Arrow (or to Flink's cast function
        // that replaces it).
        (a, b) if a.is_int() && b.is_int() && a.int_bits() < b.int_bits() => Conv::Same,
        (a, Ty::Float) if a.is_int() => Conv::IntToFloat,
        (Ty::Float, Ty::Int) => Conv::FloatToInt,
        (a, Ty::Bool) if a.is_int() => Conv::IntToBool,
        (Ty::Float, Ty::Bool) => Conv::FloatToBool,
        (Ty::Bool, b) if b.is_int() => Conv::BoolToInt,
        (Ty::Bool, Ty::Float) => Conv::BoolToFloat,
        (a, Ty::Str) if a.is_int() => Conv::IntToStr,
        (Ty::Bool, Ty::Str) => Conv::BoolToStr,
        // A number to a timestamp: its BIGINT value (a DOUBLE truncated first), in `to`'s unit.
        (Ty::Int, t) if t.is_ts() => Conv::Same,
        (Ty::Float, t) if t.is_ts() => Conv::FloatToInt,
        // A timestamp to a number: its BIGINT value.
        (t, Ty::Int) if t.is_ts() => Conv::Same,
        (t, Ty::Float) if t.is_ts() => Conv::IntToFloat,
        _ => return None,
    };
    // Casts that change nothing are left out, and a BIGINT column cast to DOUBLE is read as
    // a DOUBLE column (which reads integers as floats): one call fewer per row each.
    match (conv, &a) {
        (Conv::Same, _) => return Some((a, ty, s)),
        (
            Conv::IntToFloat,
            Node::Col {
                idx,
                ty: SqlType::BigInt,
            },
        ) => {
            let col = Node::Col {
                idx: *idx,
                ty: SqlType::Double,
            };
            return Some((col, ty, s));
        }
        _ => {}
    }
    Some((
        Node::Cast {
            arg: Box::new(a),
            conv,
            safe,
            // A DOUBLE goes to a timestamp through BIGINT, which Arrow's error names.
            fail_to: DataType::Int64,
        },
        ty,
        s,
    ))
}

// The failures are out of line, so that the evaluation methods stay small.

#[cold]
#[inline(never)]
fn arrow_err<T>(e: ArrowError) -> Eval<T> {
    Err(Box::new(DataFusionError::from(e)))
}

#[cold]
#[inline(never)]
fn exec_failed<T>(why: &str) -> Eval<T> {
    Err(Box::new(DataFusionError::Execution(why.to_string())))
}

#[cold]
#[inline(never)]
fn cast_failed<T>(f: f64, to: &DataType) -> Eval<T> {
    arrow_err(ArrowError::CastError(format!(
        "Can't cast value {f:?} to type {to}"
    )))
}

#[cold]
#[inline(never)]
fn overflowed<T>(what: std::fmt::Arguments<'_>) -> Eval<T> {
    arrow_err(ArrowError::ArithmeticOverflow(format!(
        "Overflow happened on: {what}"
    )))
}

/// Normalises `-0.0` to `0.0` (DataFusion does before comparing with the total order).
fn norm_zero(f: f64) -> f64 {
    if f == 0.0 { 0.0 } else { f }
}

/// `Some(f(a, b))` when both are values, else NULL.
fn both<A, B, T>(a: Option<A>, b: Option<B>, f: impl FnOnce(A, B) -> T) -> Option<T> {
    Some(f(a?, b?))
}

/// The result of comparison `op` (or NULL) given the operands' order, or which are NULL.
fn compared(op: Cmp, o: Option<Ordering>, nulls: (bool, bool)) -> Option<bool> {
    match (op, o) {
        (Cmp::Distinct, None) => Some(nulls.0 != nulls.1),
        (Cmp::NotDistinct, None) => Some(nulls.0 == nulls.1),
        (_, None) => None,
        (Cmp::Eq | Cmp::NotDistinct, Some(o)) => Some(o == Ordering::Equal),
        (Cmp::NotEq | Cmp::Distinct, Some(o)) => Some(o != Ordering::Equal),
        (Cmp::Lt, Some(o)) => Some(o == Ordering::Less),
        (Cmp::LtEq, Some(o)) => Some(o != Ordering::Greater),
        (Cmp::Gt, Some(o)) => Some(o == Ordering::Greater),
        (Cmp::GtEq, Some(o)) => Some(o != Ordering::Less),
    }
}

/// Evaluation, one method per result type; compilation only asks a node for its own type
/// (BIGINT and timestamps are `int`), so the other arms are unreachable and give NULL.
impl Node {
    // The `*_at` methods read a column or a literal inline and call the evaluation method
    // for anything else: most operands are columns and literals, and a call per operand
    // costs as much as the operation.

    #[inline(always)]
    fn int_at(&self, row: &[Value]) -> Eval<i64> {
        match self {
            Node::Col { idx, ty } => Ok(match (row.get(*idx), ty) {
                (Some(Value::Int(i)), SqlType::BigInt)
                | (Some(Value::Ts(i)), SqlType::Timestamp) => Some(*i),
                _ => None,
            }),
            Node::Lit(Lit::Int(i)) => Ok(Some(*i)),
            _ => self.int(row),
        }
    }

    #[inline(always)]
    fn dec_at(&self, row: &[Value]) -> Eval<i128> {
        match self {
            Node::Col {
                idx,
                ty: SqlType::Decimal(_, s),
            } => Ok(match row.get(*idx) {
                Some(Value::Decimal(v, vs)) if vs == s => Some(*v),
                // A value of another scale (never written so) is read as the Arrow path's
                // batch builder reads it.
                Some(v) => v
                    .as_decimal()
                    .and_then(|(v, vs)| crate::decimal::rescale(v, vs, *s)),
                None => None,
            }),
            Node::Lit(Lit::Dec(v)) => Ok(Some(*v)),
            Node::DecScale { idx, by, limit } => Ok(match row.get(*idx) {
                Some(Value::Int(i)) => {
                    let v = i128::from(*i) * i128::from(*by);
                    (v.unsigned_abs() < *limit).then_some(v)
                }
                _ => None,
            }),
            _ => self.dec(row),
        }
    }

    /// A DECIMAL operand's unscaled value, or an integer operand's (`int`).
    #[inline(always)]
    fn dec_operand(&self, int: bool, row: &[Value]) -> Eval<i128> {
        if int {
            Ok(self.int_at(row)?.map(i128::from))
        } else {
            self.dec_at(row)
        }
    }

    fn dec(&self, row: &[Value]) -> Eval<i128> {
        Ok(match self {
            Node::DecArith {
                op,
                l,
                l_int,
                ls,
                r,
                r_int,
                rs,
                p,
                s,
            } => {
                let (Some(a), Some(b)) = (l.dec_operand(*l_int, row)?, r.dec_operand(*r_int, row)?)
                else {
                    return Ok(None);
                };
                match op.apply((a, *ls), (b, *rs), (*p, *s)) {
                    Ok(v) => v,
                    Err(why) => return exec_failed(why),
                }
            }
            Node::DecMul {
                l,
                l_int,
                r,
                r_int,
                p,
            } => {
                let (Some(a), Some(b)) = (l.dec_operand(*l_int, row)?, r.dec_operand(*r_int, row)?)
                else {
                    return Ok(None);
                };
                crate::decimal::product_at_scale(a, b, *p)
            }
            Node::DecCast {
                arg,
                int,
                from,
                p,
                s,
            } => arg
                .dec_operand(*int, row)?
                .and_then(|v| crate::decimal::to_type(v, *from, *p, *s)),
            Node::Col { .. } | Node::Lit(_) | Node::DecScale { .. } => self.dec_at(row)?,
            _ => None,
        })
    }

    #[inline(always)]
    fn float_at(&self, row: &[Value]) -> Eval<f64> {
        match self {
            Node::Col { idx, .. } => Ok(match row.get(*idx) {
                Some(Value::Double(d)) => Some(*d),
                Some(Value::Int(i)) => Some(*i as f64),
                _ => None,
            }),
            Node::Lit(Lit::Float(f)) => Ok(Some(*f)),
            _ => self.float(row),
        }
    }

    #[inline(always)]
    fn bool_at(&self, row: &[Value]) -> Eval<bool> {
        match self {
            Node::Col { idx, .. } => Ok(match row.get(*idx) {
                Some(Value::Bool(b)) => Some(*b),
                _ => None,
            }),
            Node::Lit(Lit::Bool(b)) => Ok(Some(*b)),
            _ => self.bool(row),
        }
    }

    #[inline(always)]
    fn str_at<'a>(&'a self, row: &'a [Value]) -> Eval<Cow<'a, str>> {
        match self {
            Node::Col { idx, .. } => Ok(match row.get(*idx) {
                Some(Value::Str(s)) => Some(Cow::Borrowed(s.as_str())),
                _ => None,
            }),
            Node::Lit(Lit::Str(s)) => Ok(Some(Cow::Borrowed(s.as_str()))),
            _ => self.str(row),
        }
    }

    fn int(&self, row: &[Value]) -> Eval<i64> {
        Ok(match self {
            Node::Col { idx, ty } => match (row.get(*idx), ty) {
                (Some(Value::Int(i)), SqlType::BigInt)
                | (Some(Value::Ts(i)), SqlType::Timestamp) => Some(*i),
                _ => None,
            },
            Node::Lit(Lit::Int(i)) => Some(*i),
            Node::Cast {
                arg,
                conv,
                safe,
                fail_to,
                ..
            } => match conv {
                Conv::FloatToInt => match arg.float_at(row)? {
                    None => None,
                    Some(f) => match num_cast::<f64, i64>(f) {
                        Some(i) => Some(i),
                        None if *safe => None,
                        None => return cast_failed(f, fail_to),
                    },
                },
                Conv::BoolToInt => arg.bool_at(row)?.map(i64::from),
                _ => arg.int_at(row)?,
            },
            Node::Arith { op, l, r } => {
                let (Some(a), Some(b)) = (l.int_at(row)?, r.int_at(row)?) else {
                    return Ok(None);
                };
                Some(match op {
                    Arith::Add => a.wrapping_add(b),
                    Arith::Sub => a.wrapping_sub(b),
                    Arith::Mul => a.wrapping_mul(b),
                    Arith::Div | Arith::Rem if b == 0 => {
                        return arrow_err(ArrowError::DivideByZero);
                    }
                    Arith::Div => match a.checked_div(b) {
                        Some(q) => q,
                        None => return overflowed(format_args!("{a:?} / {b:?}")),
                    },
                    Arith::Rem => a.wrapping_rem(b),
                })
            }
            Node::Neg { arg, checked, .. } => match arg.int_at(row)? {
                None => None,
                Some(i) if *checked => match i.checked_neg() {
                    Some(n) => Some(n),
                    None => return overflowed(format_args!("- {i:?}")),
                },
                Some(i) => Some(i.wrapping_neg()),
            },
            Node::NarrowArith { op, to, l, r } => {
                let (Some(a), Some(b)) = (l.int_at(row)?, r.int_at(row)?) else {
                    return Ok(None);
                };
                // Values of the type are in its range (every reader and writer wraps them),
                // so the wrapping operations are exact here before the result is wrapped.
                Some(match op {
                    Arith::Add => to.wrap(a.wrapping_add(b)),
                    Arith::Sub => to.wrap(a.wrapping_sub(b)),
                    Arith::Mul => to.wrap(a.wrapping_mul(b)),
                    Arith::Div | Arith::Rem if b == 0 => {
                        return arrow_err(ArrowError::DivideByZero);
                    }
                    // Only MIN / -1 leaves the range; Arrow's kernel fails on it.
                    Arith::Div if to.wrap(a.wrapping_div(b)) != a.wrapping_div(b) => {
                        return overflowed(format_args!("{a:?} / {b:?}"));
                    }
                    Arith::Div => a.wrapping_div(b),
                    Arith::Rem => a.wrapping_rem(b),
                })
            }
            Node::NarrowNeg { arg, to, checked } => match arg.int_at(row)? {
                None => None,
                Some(i) if *checked && to.wrap(i.wrapping_neg()) != i.wrapping_neg() => {
                    return overflowed(format_args!("- {i:?}"));
                }
                Some(i) => Some(to.wrap(i.wrapping_neg())),
            },
            _ => None,
        })
    }

    fn float(&self, row: &[Value]) -> Eval<f64> {
        Ok(match self {
            Node::Col { idx, .. } => match row.get(*idx) {
                Some(Value::Double(d)) => Some(*d),
                // What the Arrow path's batch builder makes of an integer in a DOUBLE column.
                Some(Value::Int(i)) => Some(*i as f64),
                _ => None,
            },
            Node::Lit(Lit::Float(f)) => Some(*f),
            Node::Cast { arg, conv, .. } => match conv {
                Conv::IntToFloat => arg.int_at(row)?.map(|i| i as f64),
                Conv::BoolToFloat => arg.bool_at(row)?.map(|b| f64::from(u8::from(b))),
                _ => arg.float_at(row)?,
            },
            Node::Arith { op, l, r } => both(l.float_at(row)?, r.float_at(row)?, |a, b| match op {
                Arith::Add => a + b,
                Arith::Sub => a - b,
                Arith::Mul => a * b,
                Arith::Div => a / b,
                Arith::Rem => a % b,
            }),
            Node::Neg { arg, .. } => arg.float_at(row)?.map(|f| -f),
            _ => None,
        })
    }

    fn bool(&self, row: &[Value]) -> Eval<bool> {
        Ok(match self {
            Node::Col { idx, .. } => match row.get(*idx) {
                Some(Value::Bool(b)) => Some(*b),
                _ => None,
            },
            Node::Lit(Lit::Bool(b)) => Some(*b),
            Node::Cast { arg, conv, .. } => match conv {
                Conv::IntToBool => arg.int_at(row)?.map(|i| i != 0),
                Conv::FloatToBool => arg.float_at(row)?.map(|f| f != 0.0),
                _ => arg.bool_at(row)?,
            },
            Node::Cmp { op, ty, l, r } => {
                let o = match ty {
                    Ty::Int | Ty::I32 | Ty::I16 | Ty::I8 | Ty::TsMs | Ty::TsSec => {
                        let (a, b) = (l.int_at(row)?, r.int_at(row)?);
                        (both(a, b, |a, b| a.cmp(&b)), (a.is_none(), b.is_none()))
                    }
                    Ty::Float => {
                        let (a, b) = (l.float_at(row)?, r.float_at(row)?);
                        let o = both(a, b, |a, b| norm_zero(a).total_cmp(&norm_zero(b)));
                        (o, (a.is_none(), b.is_none()))
                    }
                    Ty::Bool => {
                        let (a, b) = (l.bool_at(row)?, r.bool_at(row)?);
                        (both(a, b, |a, b| a.cmp(&b)), (a.is_none(), b.is_none()))
                    }
                    Ty::Str => {
                        let (a, b) = (l.str_at(row)?, r.str_at(row)?);
                        let nulls = (a.is_none(), b.is_none());
                        (both(a, b, |a, b| a.as_bytes().cmp(b.as_bytes())), nulls)
                    }
                    Ty::Dec(..) => {
                        let (a, b) = (l.dec_at(row)?, r.dec_at(row)?);
                        (both(a, b, |a, b| a.cmp(&b)), (a.is_none(), b.is_none()))
                    }
                    Ty::Null => (None, (true, true)),
                };
                compared(*op, o.0, o.1)
            }
            Node::And(l, r) => match l.bool_at(row)? {
                Some(false) => Some(false),
                a => match (a, r.bool_at(row)?) {
                    (_, Some(false)) => Some(false),
                    (Some(true), Some(true)) => Some(true),
                    _ => None,
                },
            },
            Node::Or(l, r) => match l.bool_at(row)? {
                Some(true) => Some(true),
                a => match (a, r.bool_at(row)?) {
                    (_, Some(true)) => Some(true),
                    (Some(false), Some(false)) => Some(false),
                    _ => None,
                },
            },
            Node::Not(a) => a.bool_at(row)?.map(|b| !b),
            Node::IsNull { arg, ty, not } => {
                let null = match ty {
                    Ty::Null => true,
                    Ty::Bool => arg.bool_at(row)?.is_none(),
                    Ty::Int | Ty::I32 | Ty::I16 | Ty::I8 | Ty::TsMs | Ty::TsSec => {
                        arg.int_at(row)?.is_none()
                    }
                    Ty::Float => arg.float_at(row)?.is_none(),
                    Ty::Str => arg.str_at(row)?.is_none(),
                    Ty::Dec(..) => arg.dec_at(row)?.is_none(),
                };
                Some(null != *not)
            }
            _ => None,
        })
    }

    fn str<'a>(&'a self, row: &'a [Value]) -> Eval<Cow<'a, str>> {
        Ok(match self {
            Node::Col { idx, .. } => match row.get(*idx) {
                Some(Value::Str(s)) => Some(Cow::Borrowed(s.as_str())),
                _ => None,
            },
            Node::Lit(Lit::Str(s)) => Some(Cow::Borrowed(s.as_str())),
            Node::Cast { arg, conv, .. } => match conv {
                Conv::IntToStr => arg.int_at(row)?.map(|i| Cow::Owned(i.to_string())),
                Conv::BoolToStr => arg
                    .bool(row)?
                    .map(|b| Cow::Borrowed(if b { "TRUE" } else { "FALSE" })),
                _ => arg.str_at(row)?,
            },
            _ => None,
        })
    }
}
