//! DECIMAL arithmetic, ROUND/TRUNCATE of DECIMALs and CASTs to DECIMAL as DataFusion
//! functions with Flink's result types and semantics (see [`crate::decimal`]): DataFusion's
//! own decimal rules differ from Flink's in result precision and scale, in rounding and in
//! overflow (an error there, NULL in Flink).
//!
//! [`crate::expr`] replaces `+ - * / %` with a DECIMAL operand (and an integer or DECIMAL
//! other operand), `ROUND(decimal, digits)` / `TRUNCATE(decimal, digits)` with literal digits,
//! and every CAST to DECIMAL with calls of these functions before DataFusion's type coercion
//! sees them. The row evaluator ([`crate::expr`]'s `row`) evaluates the arithmetic inline.

use crate::decimal::{self, Op};
use crate::value::{Column, Row, SqlType, Value, append_column, arrow_schema, rows_to_batch};
use arrow::datatypes::DataType;
use datafusion_common::{Result as DfResult, exec_err, plan_err};
use datafusion_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use std::sync::Arc;

/// What a [`DecimalFn`] computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    /// `a op b`, DECIMAL or integer operands (at least one DECIMAL).
    Arith(Op),
    /// `CAST(x AS DECIMAL(p, s))` (`safe`: TRY_CAST, NULL where the text is no number).
    Cast { p: u8, s: u8, safe: bool },
    /// `ROUND(x, digits)` (`truncate`: TRUNCATE) of a DECIMAL.
    Round { digits: i64, truncate: bool },
}

/// One DECIMAL function (see the module's documentation).
#[derive(Debug)]
pub(crate) struct DecimalFn {
    name: &'static str,
    pub(crate) kind: Kind,
    signature: Signature,
}

impl PartialEq for DecimalFn {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind
    }
}
impl Eq for DecimalFn {}

impl std::hash::Hash for DecimalFn {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.kind.hash(state);
    }
}

/// The function computing `kind`.
pub(crate) fn function(kind: Kind) -> Arc<ScalarUDF> {
    let name = match kind {
        Kind::Arith(Op::Add) => "decimal_add",
        Kind::Arith(Op::Sub) => "decimal_subtract",
        Kind::Arith(Op::Mul) => "decimal_multiply",
        Kind::Arith(Op::Div) => "decimal_divide",
        Kind::Arith(Op::Rem) => "decimal_mod",
        Kind::Cast { safe: false, .. } => "cast_to_decimal",
        Kind::Cast { safe: true, .. } => "try_cast_to_decimal",
        Kind::Round {
            truncate: false, ..
        } => "decimal_round",
        Kind::Round { truncate: true, .. } => "decimal_truncate",
    };
    Arc::new(ScalarUDF::new_from_impl(DecimalFn {
        name,
        kind,
        signature: Signature::user_defined(Volatility::Immutable),
    }))
}

/// DECIMAL's (precision, scale) of an argument of Arrow type `t` (an integer's as it
/// converts), if it is a DECIMAL or an integer.
pub(crate) fn operand(t: &DataType) -> Option<(u8, u8)> {
    SqlType::from_arrow(t)?.decimal()
}

impl DecimalFn {
    /// The argument types (as they are) and the result type, or why the call does not fit.
    fn typed(&self, args: &[DataType]) -> DfResult<(Vec<SqlType>, SqlType)> {
        let tys: Vec<SqlType> = args
            .iter()
            .map(|t| SqlType::from_arrow(t).unwrap_or(SqlType::String))
            .collect();
        let ret = match (self.kind, args) {
            (Kind::Arith(op), [a, b]) => match (operand(a), operand(b)) {
                (Some(x), Some(y)) => {
                    let (p, s) = op.result_type(x, y);
                    SqlType::Decimal(p, s)
                }
                _ => return plan_err!("{} needs DECIMAL or integer operands", op.symbol()),
            },
            (Kind::Cast { p, s, .. }, [_]) => SqlType::Decimal(p, s),
            (Kind::Round { digits, .. }, [a]) => match SqlType::from_arrow(a) {
                Some(SqlType::Decimal(p, s)) => {
                    let (p, s) = decimal::round_type(p, s, digits);
                    SqlType::Decimal(p, s)
                }
                _ => return plan_err!("{} needs a DECIMAL", self.name),
            },
            _ => return plan_err!("{}: wrong number of arguments", self.name),
        };
        Ok((tys, ret))
    }
}

/// One row's result.
fn eval(kind: Kind, args: &[Value], ret: SqlType) -> Result<Value, String> {
    let SqlType::Decimal(p, s) = ret else {
        return Ok(Value::Null);
    };
    let out = |v: Option<i128>| v.map_or(Value::Null, |v| Value::Decimal(v, s));
    Ok(match kind {
        Kind::Arith(op) => {
            let (Some(a), Some(b)) = (args[0].as_decimal(), args[1].as_decimal()) else {
                return Ok(Value::Null);
            };
            out(op.apply(a, b, (p, s))?)
        }
        Kind::Round { digits, truncate } => match args[0] {
            Value::Decimal(v, from) => out(decimal::to_type(
                decimal::round(v, from, digits, truncate),
                from,
                p,
                s,
            )),
            _ => Value::Null,
        },
        Kind::Cast { safe, .. } => match &args[0] {
            Value::Null => Value::Null,
            Value::Int(i) => out(decimal::to_type(i128::from(*i), 0, p, s)),
            Value::Decimal(v, from) => out(decimal::to_type(*v, *from, p, s)),
            Value::Double(d) => out(decimal::from_f64(*d, p, s)),
            // As Flink's, through the double the float widens to.
            Value::Float(f) => out(decimal::from_f64(f64::from(*f), p, s)),
            Value::Bool(b) => out(decimal::to_type(i128::from(*b), 0, p, s)),
            // Text too long for the type is an error, as one that is no number (Flink's
            // NumberFormatException); numbers too long are NULL.
            Value::Str(t) => match decimal::parse(t, p, s) {
                Ok(Some(v)) => Value::Decimal(v, s),
                Err(_) | Ok(None) if safe => Value::Null,
                Ok(None) => return Err(format!("'{t}' does not fit DECIMAL({p}, {s})")),
                Err(why) => return Err(why),
            },
            Value::Ts(_) => return Err("a TIMESTAMP cannot be cast to DECIMAL".into()),
            Value::Date(_) => return Err("a DATE cannot be cast to DECIMAL".into()),
            Value::Time(..) => return Err("a TIME cannot be cast to DECIMAL".into()),
            Value::Bytes(_) => return Err("BYTES cannot be cast to DECIMAL".into()),
            Value::Array(_) | Value::Map(_) | Value::Row(_) => {
                return Err("an ARRAY, MAP or ROW cannot be cast to DECIMAL".into());
            }
        },
    })
}

impl ScalarUDFImpl for DecimalFn {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(self.typed(arg_types)?.1.arrow())
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> DfResult<Vec<DataType>> {
        // The arguments are taken as they are (STRING in DataFusion's representations as
        // Utf8, which the rows are read from).
        let (tys, _) = self.typed(arg_types)?;
        Ok(tys.iter().map(|t| t.arrow()).collect())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let n = args.number_rows;
        let types: Vec<DataType> = args.args.iter().map(|a| a.data_type()).collect();
        let (arg_tys, ret) = self.typed(&types)?;
        let mut rows: Vec<Row> = (0..n)
            .map(|_| Row(Vec::with_capacity(arg_tys.len())))
            .collect();
        for (a, ty) in args.args.into_iter().zip(&arg_tys) {
            append_column(&a.into_array(n)?, *ty, &mut rows)?;
        }
        let mut out = Vec::with_capacity(n);
        for r in &rows {
            match eval(self.kind, &r.0, ret) {
                Ok(v) => out.push(Row(vec![v])),
                Err(why) => return exec_err!("{why}"),
            }
        }
        let col = [Column {
            name: "out".into(),
            ty: ret,
        }];
        let batch = rows_to_batch(&col, &arrow_schema(&col), out.iter())?;
        Ok(ColumnarValue::Array(batch.column(0).clone()))
    }
}
