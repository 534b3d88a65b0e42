//! Flink's built-in scalar functions where DataFusion's differ from them or are missing, and
//! Flink's CASTs to and from STRING: each a row-at-a-time function over [`Value`]s with
//! Flink's semantics (argument and result types, NULL handling, rounding, text formats),
//! wrapped as a DataFusion `ScalarUDF` so the planner resolves it by name ahead of
//! DataFusion's function of that name.
//!
//! [`crate::expr`] rewrites Flink's special syntax (`EXTRACT`, `FLOOR(ts TO unit)`,
//! `TIMESTAMPADD(unit, …)`, `SUBSTRING(s FROM …)`) into calls of these functions, and replaces
//! the CASTs whose text DataFusion writes differently (BOOLEAN, DOUBLE and TIMESTAMP to
//! STRING; STRING to numbers, BOOLEAN and TIMESTAMP) with the `cast_*` functions here.

mod datetime;
pub(crate) mod decimal;
mod encoding;
mod json_path;
mod nested;

use crate::value::{Column, Row, SqlType, Value, append_column, arrow_schema, rows_to_batch};
use arrow::datatypes::DataType;
use datafusion_common::{Result as DfResult, exec_err, plan_err};
use datafusion_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use std::cell::RefCell;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, LazyLock};

pub(crate) use datetime::{java_double, java_float, parse_date, parse_time, truncate_time};
pub(crate) use encoding::{base64, from_base64};

/// The argument types of a call (`None`: an untyped NULL) to the types its arguments are
/// converted to and its result type, or why the call does not fit.
type Typing = fn(&[Option<SqlType>]) -> Result<(Vec<SqlType>, SqlType), String>;
/// One row's result from its arguments (converted as [`Typing`] said), or a runtime error.
type Eval = fn(&[Value]) -> Result<Value, String>;

/// A Flink function evaluated a row at a time.
pub(crate) struct Builtin {
    name: &'static str,
    /// How Flink writes a call, for errors: `ROUND(x [, digits])`.
    usage: &'static str,
    signature: Signature,
    typing: Typing,
    eval: Eval,
}

impl fmt::Debug for Builtin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.usage)
    }
}

impl PartialEq for Builtin {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}
impl Eq for Builtin {}

impl Hash for Builtin {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

fn arg_types(types: &[DataType]) -> Vec<Option<SqlType>> {
    types
        .iter()
        .map(|t| match t {
            DataType::Null => None,
            t => SqlType::from_arrow(t),
        })
        .collect()
}

impl Builtin {
    fn typed(&self, types: &[DataType]) -> DfResult<(Vec<SqlType>, SqlType)> {
        match (self.typing)(&arg_types(types)) {
            Ok(t) => Ok(t),
            Err(why) => plan_err!(
                "{}: {why} (called with {})",
                self.usage,
                types
                    .iter()
                    .map(|t| SqlType::from_arrow(t).map_or("NULL", |t| t.sql_name()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

impl ScalarUDFImpl for Builtin {
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
        let (args, _) = self.typed(arg_types)?;
        for (from, to) in arg_types.iter().zip(&args) {
            // Flink never takes BYTES or a TIME for a STRING argument (cast it first).
            if matches!(from, DataType::Binary | DataType::Time32(_)) && *to == SqlType::String {
                return plan_err!(
                    "{}: takes a STRING, not {} (as in Flink)",
                    self.usage,
                    SqlType::from_arrow(from).map_or("?", |t| t.sql_name())
                );
            }
            if !arrow::compute::can_cast_types(from, &to.arrow()) {
                return plan_err!(
                    "{}: cannot take a {from} as a {}",
                    self.usage,
                    to.sql_name()
                );
            }
        }
        Ok(args.iter().map(|t| t.arrow()).collect())
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
            match (self.eval)(&r.0) {
                Ok(v) => out.push(Row(vec![v])),
                Err(why) => return exec_err!("{}: {why}", self.usage),
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

/// `a = b` of two ARRAY, MAP or ROW values (see `crate::expr`): NULL when either is.
pub(crate) fn nested_equals() -> Arc<ScalarUDF> {
    static EQUALS: LazyLock<Arc<ScalarUDF>> = LazyLock::new(|| {
        udf(
            "nested_equals",
            "a = b",
            |a| {
                count(a, 2, 2)?;
                let t = crate::nested::common_of(a)?;
                Ok((vec![t, t], SqlType::Boolean))
            },
            |a| {
                Ok(match (&a[0], &a[1]) {
                    (Value::Null, _) | (_, Value::Null) => Value::Null,
                    (x, y) => Value::Bool(x == y),
                })
            },
        )
    });
    EQUALS.clone()
}

/// Whether `f` is one of Weir's functions (this module's, the DECIMAL ones, user functions,
/// `PROCTIME`) rather than DataFusion's.
pub(crate) fn is_weirs(f: &ScalarUDF) -> bool {
    let f = f.inner();
    f.is::<Builtin>()
        || f.is::<decimal::DecimalFn>()
        || f.is::<crate::udf::RowUdf>()
        || f.is::<crate::udf::ProcTime>()
}

fn udf(name: &'static str, usage: &'static str, typing: Typing, eval: Eval) -> Arc<ScalarUDF> {
    Arc::new(ScalarUDF::new_from_impl(Builtin {
        name,
        usage,
        signature: Signature::user_defined(Volatility::Immutable),
        typing,
        eval,
    }))
}

// ---- typing helpers ------------------------------------------------------------------------

fn count(args: &[Option<SqlType>], min: usize, max: usize) -> Result<(), String> {
    if args.len() < min || args.len() > max {
        return Err(if min == max {
            format!("takes {min} arguments, not {}", args.len())
        } else {
            format!("takes {min} to {max} arguments, not {}", args.len())
        });
    }
    Ok(())
}

fn is_numeric(t: Option<SqlType>) -> bool {
    t.is_none_or(SqlType::is_numeric)
}

/// Numbers keep their type (BIGINT or DOUBLE); the other arguments are BIGINT.
fn numeric_with_digits(args: &[Option<SqlType>]) -> Result<(Vec<SqlType>, SqlType), String> {
    count(args, 1, 2)?;
    if !is_numeric(args[0]) || !args.get(1).copied().is_none_or(is_numeric) {
        return Err("takes a number and an integer number of digits".into());
    }
    let t = args[0].unwrap_or(SqlType::Double);
    let mut tys = vec![t];
    if args.len() == 2 {
        tys.push(SqlType::BigInt);
    }
    Ok((tys, t))
}

macro_rules! fixed {
    ($($arg:ident),* => $ret:ident) => {
        |args: &[Option<SqlType>]| -> Result<(Vec<SqlType>, SqlType), String> {
            let want = [$(SqlType::$arg),*];
            count(args, want.len(), want.len())?;
            Ok((want.to_vec(), SqlType::$ret))
        }
    };
}

/// The first `min..=max` of `tys`, as many as there are arguments.
fn optional(
    args: &[Option<SqlType>],
    tys: &[SqlType],
    min: usize,
    ret: SqlType,
) -> Result<(Vec<SqlType>, SqlType), String> {
    count(args, min, tys.len())?;
    Ok((tys[..args.len()].to_vec(), ret))
}

// ---- evaluation helpers --------------------------------------------------------------------

fn str_arg(v: &Value) -> Option<&str> {
    match v {
        Value::Str(s) => Some(s),
        _ => None,
    }
}

fn int_arg(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) | Value::Ts(i) => Some(*i),
        _ => None,
    }
}

/// A TIMESTAMP's epoch milliseconds, a DATE's start (its midnight), or a TIME's instant on
/// 1970-01-01 (as Flink's functions over times compute).
fn ts_arg(v: &Value) -> Option<i64> {
    match v {
        Value::Ts(t) => Some(*t),
        Value::Date(d) => Some(i64::from(*d) * DAY_MS),
        Value::Time(ms, _) => Some(i64::from(*ms)),
        _ => None,
    }
}

const DAY_MS: i64 = 86_400_000;

/// The result `t` (epoch milliseconds) of a function of `arg`: a DATE (its day, the time
/// dropped, as Flink's DATE + INTERVAL) when `arg` is one, a TIME (its time of day, around
/// the clock) when `arg` is one, else a TIMESTAMP.
fn same_kind(arg: &Value, t: i64) -> Value {
    match arg {
        Value::Date(_) => Value::Date(t.div_euclid(DAY_MS) as i32),
        Value::Time(_, p) => Value::Time(t.rem_euclid(DAY_MS) as i32, *p),
        _ => Value::Ts(t),
    }
}

/// `lead` argument types, then a TIMESTAMP or DATE at position `at` (the last), whose type
/// is the result's (Flink's `FLOOR(date TO MONTH)` and `TIMESTAMPADD(DAY, 1, date)` are
/// DATEs).
fn date_or_timestamp(
    args: &[Option<SqlType>],
    at: usize,
    lead: &[SqlType],
) -> Result<(Vec<SqlType>, SqlType), String> {
    count(args, at + 1, at + 1)?;
    let t = match args[at] {
        Some(t @ (SqlType::Date | SqlType::Time(_))) => t,
        _ => SqlType::Timestamp,
    };
    let mut tys = lead.to_vec();
    tys.push(t);
    Ok((tys, t))
}

/// The typing of a function of a TIMESTAMP's (or a TIME's) field at position `at` (the last),
/// after STRING units: BIGINT.
fn time_field(args: &[Option<SqlType>], at: usize) -> Result<(Vec<SqlType>, SqlType), String> {
    count(args, at + 1, at + 1)?;
    let mut tys = vec![SqlType::String; at];
    tys.push(match args[at] {
        Some(t @ SqlType::Time(_)) => t,
        _ => SqlType::Timestamp,
    });
    Ok((tys, SqlType::BigInt))
}

thread_local! {
    /// The last patterns compiled on this thread: a query's patterns are mostly constants.
    static REGEXES: RefCell<Vec<(String, Option<regex::Regex>)>> = const { RefCell::new(Vec::new()) };
}

/// `pattern` compiled (None: not a valid regular expression), cached per thread.
fn with_regex<T>(pattern: &str, f: impl FnOnce(Option<&regex::Regex>) -> T) -> T {
    REGEXES.with(|cache| {
        let mut cache = cache.borrow_mut();
        if let Some(i) = cache.iter().position(|(p, _)| p == pattern) {
            return f(cache[i].1.as_ref());
        }
        if cache.len() >= 16 {
            cache.remove(0);
        }
        cache.push((pattern.to_string(), regex::Regex::new(pattern).ok()));
        f(cache.last().and_then(|(_, r)| r.as_ref()))
    })
}

// ---- strings -------------------------------------------------------------------------------

/// Flink's INITCAP: words are runs of ASCII letters and digits; each word's first letter is
/// upper-cased and its other ASCII letters lower-cased; every other character (non-ASCII
/// letters included) is kept and ends a word.
fn initcap(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut start = true;
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(if start {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            });
            start = false;
        } else {
            out.push(c);
            start = true;
        }
    }
    out
}

/// Flink's SUBSTRING(s, start [, length]) over characters: `start` 1 is the first character,
/// 0 counts as 1 and a negative start counts from the end.
fn substring(s: &str, start: i64, len: Option<i64>) -> Option<String> {
    if len.is_some_and(|l| l < 0) {
        return None;
    }
    let n = s.chars().count() as i64;
    let from = match start {
        p if p > 0 => p - 1,
        0 => 0,
        // Counting from the end past the first character gives the empty string.
        p if n + p < 0 => return Some(String::new()),
        p => n + p,
    };
    let to = match len {
        Some(l) => from.saturating_add(l).min(n),
        None => n,
    };
    let from = from.max(0);
    if from >= to {
        return Some(String::new());
    }
    Some(
        s.chars()
            .skip(from as usize)
            .take((to - from) as usize)
            .collect(),
    )
}

fn eval_substring(a: &[Value]) -> Result<Value, String> {
    let (Some(s), Some(start)) = (str_arg(&a[0]), int_arg(&a[1])) else {
        return Ok(Value::Null);
    };
    let len = match a.get(2) {
        Some(Value::Null) => return Ok(Value::Null),
        Some(v) => int_arg(v),
        None => None,
    };
    Ok(substring(s, start, len).map_or(Value::Null, Value::Str))
}

fn eval_split_index(a: &[Value]) -> Result<Value, String> {
    let (Some(s), Some(sep), Some(i)) = (str_arg(&a[0]), str_arg(&a[1]), int_arg(&a[2])) else {
        return Ok(Value::Null);
    };
    if i < 0 || s.is_empty() {
        return Ok(Value::Null);
    }
    // An empty separator splits at whitespace (as Flink's, Apache Commons' split does).
    let part = if sep.is_empty() {
        s.split(char::is_whitespace).nth(i as usize)
    } else {
        s.split(sep).nth(i as usize)
    };
    Ok(part.map_or(Value::Null, |p| Value::Str(p.to_string())))
}

/// Flink replaces every match with the replacement taken literally (`$1` is the text `$1`);
/// an invalid pattern gives NULL.
fn eval_regexp_replace(a: &[Value]) -> Result<Value, String> {
    let (Some(s), Some(p), Some(r)) = (str_arg(&a[0]), str_arg(&a[1]), str_arg(&a[2])) else {
        return Ok(Value::Null);
    };
    Ok(with_regex(p, |re| match re {
        Some(re) => Value::Str(re.replace_all(s, regex::NoExpand(r)).into_owned()),
        None => Value::Null,
    }))
}

/// The group `index` (default 1) of the first match; NULL without a match or such a group.
fn eval_regexp_extract(a: &[Value]) -> Result<Value, String> {
    let (Some(s), Some(p)) = (str_arg(&a[0]), str_arg(&a[1])) else {
        return Ok(Value::Null);
    };
    let index = match a.get(2) {
        Some(v) => match int_arg(v) {
            Some(i) if i >= 0 => i as usize,
            _ => return Ok(Value::Null),
        },
        None => 1,
    };
    Ok(with_regex(p, |re| {
        re.and_then(|re| re.captures(s))
            .and_then(|c| c.get(index))
            .map_or(Value::Null, |m| Value::Str(m.as_str().to_string()))
    }))
}

fn eval_regexp(a: &[Value]) -> Result<Value, String> {
    let (Some(s), Some(p)) = (str_arg(&a[0]), str_arg(&a[1])) else {
        return Ok(Value::Null);
    };
    Ok(with_regex(p, |re| {
        re.map_or(Value::Null, |re| Value::Bool(re.is_match(s)))
    }))
}

// ---- numbers -------------------------------------------------------------------------------

/// `d` rounded to `digits` decimal places as Flink does: on the decimal text of the double
/// (its shortest representation, as Java's `BigDecimal.valueOf`), half away from zero, so
/// `ROUND(1.005, 2)` is 1.01. `truncate` drops the digits instead.
fn round_double(d: f64, digits: i64, truncate: bool) -> f64 {
    if !d.is_finite() || digits > 300 {
        return d;
    }
    let text = format!("{:e}", d.abs());
    let (mantissa, exp) = text.split_once('e').expect("{:e} has an exponent");
    let exp: i64 = exp.parse().expect("{:e}'s exponent is a number");
    let all: Vec<u8> = mantissa
        .bytes()
        .filter(u8::is_ascii_digit)
        .map(|b| b - b'0')
        .collect();
    // |d| is 0.d1d2d3… × 10^(exp + 1): the digits before position `keep` are the result's,
    // which is an integer × 10^-digits.
    let keep = exp + 1 + digits;
    // Java's BigDecimal has no negative zero.
    if keep < 0 {
        return 0.0;
    }
    let keep = keep as usize;
    let mut kept: Vec<u8> = all.iter().copied().take(keep).collect();
    kept.resize(keep, 0);
    let mut carry = !truncate && all.get(keep).is_some_and(|&x| x >= 5);
    for x in kept.iter_mut().rev() {
        if !carry {
            break;
        }
        *x = (*x + 1) % 10;
        carry = *x == 0;
    }
    let mut int = String::from(if carry { "1" } else { "0" });
    int.extend(kept.iter().map(|x| char::from(b'0' + x)));
    let v: f64 = format!("{int}e{}", -digits).parse().unwrap_or(0.0);
    if d < 0.0 && v != 0.0 { -v } else { v }
}

/// A FLOAT rounded as Flink's: the float widened to a double, rounded as DOUBLE is
/// ([`round_double`]), and narrowed back.
fn round_float(f: f32, digits: i64, truncate: bool) -> f32 {
    round_double(f64::from(f), digits, truncate) as f32
}

/// `i` rounded (or truncated) to `digits` decimal places; only negative digits change it.
fn round_int(i: i64, digits: i64, truncate: bool) -> Result<i64, String> {
    if digits >= 0 {
        return Ok(i);
    }
    if digits < -18 {
        return Ok(0);
    }
    let p = 10i64.pow((-digits) as u32);
    let down = i / p * p;
    let rest = (i - down).abs();
    if truncate || rest * 2 < p {
        return Ok(down);
    }
    // Flink's BIGINT arithmetic wraps around.
    Ok(down.wrapping_add(if i < 0 { -p } else { p }))
}

fn round_or_truncate(a: &[Value], truncate: bool) -> Result<Value, String> {
    let digits = match a.get(1) {
        Some(Value::Null) => return Ok(Value::Null),
        Some(v) => int_arg(v).unwrap_or(0),
        None => 0,
    };
    Ok(match &a[0] {
        Value::Int(i) => Value::Int(round_int(*i, digits, truncate)?),
        Value::Double(d) => Value::Double(round_double(*d, digits, truncate)),
        Value::Float(f) => Value::Float(round_float(*f, digits, truncate)),
        Value::Decimal(v, s) => Value::Decimal(crate::decimal::round(*v, *s, digits, truncate), *s),
        _ => Value::Null,
    })
}

// ---- casts ---------------------------------------------------------------------------------

/// A value as Flink's `CAST(… AS STRING)` writes it.
pub(crate) fn flink_text(v: &Value) -> Option<String> {
    Some(match v {
        Value::Null => return None,
        Value::Bool(b) => if *b { "TRUE" } else { "FALSE" }.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Double(d) => java_double(*d),
        Value::Str(s) => s.clone(),
        Value::Ts(t) => crate::value::format_timestamp(*t),
        Value::Decimal(x, s) => crate::decimal::format(*x, *s),
        Value::Float(f) => java_float(*f),
        Value::Date(d) => crate::value::format_date(*d),
        Value::Time(ms, p) => crate::value::format_time(*ms, *p),
        // The bytes decoded as UTF-8, each malformed sequence a U+FFFD (Java's `new
        // String(bytes, UTF_8)`).
        Value::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        // `[1, NULL]`, `{a=1, b=NULL}`, `(1, a)`: each part as it casts to STRING.
        Value::Array(items) => format!("[{}]", texts(items.iter())),
        Value::Row(fields) => format!("({})", texts(fields.iter())),
        Value::Map(entries) => {
            let parts: Vec<String> = entries
                .iter()
                .map(|(k, v)| format!("{}={}", text_or_null(k), text_or_null(v)))
                .collect();
            format!("{{{}}}", parts.join(", "))
        }
    })
}

fn text_or_null(v: &Value) -> String {
    flink_text(v).unwrap_or_else(|| "NULL".into())
}

fn texts<'a>(vals: impl Iterator<Item = &'a Value>) -> String {
    vals.map(text_or_null).collect::<Vec<_>>().join(", ")
}

fn parse_bigint(s: &str) -> Result<i64, String> {
    let t = s.trim();
    if let Ok(i) = t.parse::<i64>() {
        return Ok(i);
    }
    // Flink reads a decimal and drops its fraction: CAST('1.5' AS INT) is 1.
    match t.parse::<f64>() {
        Ok(d) if d.is_finite() && t.bytes().all(|b| b.is_ascii_digit() || b"+-.".contains(&b)) => {
            let x = d.trunc();
            if (-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&x) {
                Ok(x as i64)
            } else {
                Err(format!("'{s}' is out of the range of BIGINT"))
            }
        }
        _ => Err(format!("'{s}' is not a number")),
    }
}

fn parse_double(s: &str) -> Result<f64, String> {
    let t = s.trim();
    match t {
        "NaN" => return Ok(f64::NAN),
        "Infinity" | "+Infinity" => return Ok(f64::INFINITY),
        "-Infinity" => return Ok(f64::NEG_INFINITY),
        _ => {}
    }
    // Java reads a type suffix (1.5d, 2f); Rust reads "inf" and "nan", which Java does not.
    let t = t.strip_suffix(['d', 'D', 'f', 'F']).unwrap_or(t);
    if t.bytes()
        .any(|b| b.is_ascii_alphabetic() && !b"eE".contains(&b))
    {
        return Err(format!("'{s}' is not a number"));
    }
    t.parse().map_err(|_| format!("'{s}' is not a number"))
}

/// The text as Java's `Float.parseFloat` reads it: the same syntax as DOUBLE's, rounded once to
/// the nearest float (not through a double).
fn parse_float(s: &str) -> Result<f32, String> {
    let d = parse_double(s)?;
    let t = s.trim();
    let t = t.strip_suffix(['d', 'D', 'f', 'F']).unwrap_or(t);
    Ok(t.parse::<f32>().unwrap_or(d as f32))
}

fn parse_boolean(s: &str) -> Result<bool, String> {
    // Unlike numbers, Flink does not trim a BOOLEAN's text.
    match s.to_ascii_lowercase().as_str() {
        "true" | "t" | "yes" | "y" | "1" => Ok(true),
        "false" | "f" | "no" | "n" | "0" => Ok(false),
        _ => Err(format!(
            "'{s}' is not a BOOLEAN (true/false, t/f, yes/no, y/n, 1/0)"
        )),
    }
}

fn cast_from_string(a: &[Value], to: SqlType) -> Result<Value, String> {
    let Some(s) = str_arg(&a[0]) else {
        return Ok(Value::Null);
    };
    Ok(match to {
        t @ (SqlType::BigInt | SqlType::Int | SqlType::SmallInt | SqlType::TinyInt) => {
            Value::Int(t.checked_int(parse_bigint(s)?)?)
        }
        SqlType::Double => Value::Double(parse_double(s)?),
        // Java's Float.parseFloat rounds the text to the nearest float.
        SqlType::Float => Value::Float(parse_float(s)?),
        SqlType::Decimal(p, sc) => {
            crate::decimal::parse(s, p, sc)?.map_or(Value::Null, |v| Value::Decimal(v, sc))
        }
        SqlType::Boolean => Value::Bool(parse_boolean(s)?),
        SqlType::Timestamp => Value::Ts(
            datetime::parse_sql_timestamp(s)
                .ok_or_else(|| format!("'{s}' is not a TIMESTAMP (yyyy-MM-dd[ HH:mm:ss[.SSS]])"))?,
        ),
        SqlType::Date => Value::Date(
            datetime::parse_date(s.trim())
                .ok_or_else(|| format!("'{s}' is not a DATE (yyyy-MM-dd)"))?,
        ),
        SqlType::Time(p) => Value::Time(
            datetime::parse_time(s.trim(), p)
                .ok_or_else(|| format!("'{s}' is not a TIME (HH:mm:ss[.SSS])"))?,
            p,
        ),
        // The text's UTF-8 bytes.
        SqlType::Bytes => Value::Bytes(s.as_bytes().to_vec()),
        SqlType::String => Value::Str(s.to_string()),
        SqlType::Nested(_) => {
            return Err(format!(
                "a STRING cannot be cast to {} (as in Flink)",
                to.sql_name()
            ));
        }
    })
}

/// `CAST(x AS TIME(p))` (a[1] is `p`; a[2] TRUE for TRY_CAST) of a STRING, a TIMESTAMP or a
/// TIME: the time of day, cut to `p` fractional digits.
fn cast_to_time(a: &[Value]) -> Result<Value, String> {
    let p = int_arg(&a[1]).unwrap_or(0).clamp(0, 3) as u8;
    let ms = match &a[0] {
        Value::Str(s) => match datetime::parse_time(s.trim(), p) {
            Some(ms) => ms,
            None if matches!(a[2], Value::Bool(true)) => return Ok(Value::Null),
            None => return Err(format!("'{s}' is not a TIME (HH:mm:ss[.SSS])")),
        },
        // Flink's time of a timestamp: the remainder of its epoch milliseconds by a day's
        // (negative before 1970), cut toward zero to `p` digits, then around the clock:
        // 1969-12-31 23:59:59.999 is 00:00:00 as a TIME(0) and 23:59:59.999 as a TIME(3).
        v => match ts_arg(v) {
            Some(t) => datetime::truncate_time(t % DAY_MS, p).rem_euclid(DAY_MS as i32),
            None => return Ok(Value::Null),
        },
    };
    Ok(Value::Time(ms, p))
}

/// The typing of `to_time0` and `to_time3`, the rewritten `CAST(x AS TIME(p))` (for
/// TIME(0), and for the other precisions): STRING, TIMESTAMP and TIME cast to TIME, as in
/// Flink; other types are refused.
fn to_time_typing(
    args: &[Option<SqlType>],
    ret: SqlType,
) -> Result<(Vec<SqlType>, SqlType), String> {
    count(args, 3, 3)?;
    let from = match args[0] {
        None => SqlType::String,
        Some(t @ (SqlType::String | SqlType::Timestamp | SqlType::Time(_))) => t,
        Some(t) => {
            return Err(format!(
                "a {} cannot be cast to TIME (as in Flink)",
                t.sql_name()
            ));
        }
    };
    Ok((vec![from, SqlType::BigInt, SqlType::Boolean], ret))
}

fn nullify(r: Result<Value, String>) -> Result<Value, String> {
    Ok(r.unwrap_or(Value::Null))
}

/// The function replacing a `CAST` (`safe`: `TRY_CAST`) from `from` to `to`, where Flink's
/// result differs from Arrow's cast.
pub(crate) fn cast_function(from: &DataType, to: &DataType, safe: bool) -> Option<Arc<ScalarUDF>> {
    static TO_STRING: LazyLock<Arc<ScalarUDF>> = LazyLock::new(|| {
        udf(
            "cast_to_string",
            "CAST(x AS STRING)",
            |args| {
                count(args, 1, 1)?;
                Ok((vec![args[0].unwrap_or(SqlType::String)], SqlType::String))
            },
            |a| Ok(flink_text(&a[0]).map_or(Value::Null, Value::Str)),
        )
    });
    // `cast_string_to_<name>` and `try_cast_string_to_<name>` (giving NULL where the text
    // does not parse), for `safe` (TRY_CAST).
    macro_rules! from_string {
        ($safe:expr, $name:literal, $sql:literal, $ty:ident) => {{
            static CAST: LazyLock<Arc<ScalarUDF>> = LazyLock::new(|| {
                udf(
                    concat!("cast_string_to_", $name),
                    concat!("CAST(s AS ", $sql, ")"),
            fixed!(String => $ty),
                    |a| cast_from_string(a, SqlType::$ty),
                )
            });
            static TRY_CAST: LazyLock<Arc<ScalarUDF>> = LazyLock::new(|| {
                udf(
                    concat!("try_cast_string_to_", $name),
                    concat!("TRY_CAST(s AS ", $sql, ")"),
            fixed!(String => $ty),
                    |a| nullify(cast_from_string(a, SqlType::$ty)),
                )
            });
            Some(if $safe {
                TRY_CAST.clone()
            } else {
                CAST.clone()
            })
        }};
    }
    let is_str =
        |t: &DataType| matches!(t, DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8);
    let from_str = is_str(from);
    if let Some(t @ SqlType::Nested(_)) = SqlType::from_arrow(to) {
        return Some(nested::cast(t));
    }
    if matches!(SqlType::from_arrow(from), Some(SqlType::Nested(_))) && is_str(to) {
        return Some(TO_STRING.clone());
    }
    if let Some(f) = narrowing_cast(from, to) {
        return Some(f);
    }
    if let (DataType::Decimal128(..), DataType::Boolean) = (from, to) {
        // Arrow has no such cast; Flink's is TRUE for every number but zero.
        static TO_BOOLEAN: LazyLock<Arc<ScalarUDF>> = LazyLock::new(|| {
            udf(
                "cast_decimal_to_boolean",
                "CAST(x AS BOOLEAN)",
                |args| {
                    count(args, 1, 1)?;
                    Ok((vec![args[0].unwrap_or(SqlType::Boolean)], SqlType::Boolean))
                },
                |a| {
                    Ok(match a[0] {
                        Value::Decimal(v, _) => Value::Bool(v != 0),
                        _ => Value::Null,
                    })
                },
            )
        });
        return Some(TO_BOOLEAN.clone());
    }
    if let DataType::Decimal128(p, s) = *to {
        // Rounded HALF_UP, NULL where the value does not fit (Arrow's kernel fails there).
        return Some(decimal::function(decimal::Kind::Cast {
            p,
            s: u8::try_from(s).ok()?,
            safe,
        }));
    }
    match (from, to) {
        (
            DataType::Boolean
            | DataType::Float64
            | DataType::Float32
            | DataType::Timestamp(..)
            | DataType::Date32
            | DataType::Time32(_)
            | DataType::Binary
            | DataType::Decimal128(..),
            to,
        ) if is_str(to) => Some(TO_STRING.clone()),
        (DataType::Time32(_), DataType::Timestamp(..)) => {
            // The time on 1970-01-01, as Flink's.
            static TO_TIMESTAMP: LazyLock<Arc<ScalarUDF>> = LazyLock::new(|| {
                udf(
                    "cast_time_to_timestamp",
                    "CAST(t AS TIMESTAMP(3))",
                    |a| {
                        count(a, 1, 1)?;
                        Ok((vec![a[0].unwrap_or(SqlType::Time(3))], SqlType::Timestamp))
                    },
                    |a| Ok(ts_arg(&a[0]).map_or(Value::Null, Value::Ts)),
                )
            });
            Some(TO_TIMESTAMP.clone())
        }
        (DataType::Timestamp(..), DataType::Date32) => {
            // Flink's day of a timestamp is its epoch milliseconds divided by a day's,
            // rounded toward zero: before 1970, the next day (1969-12-31 12:00 is
            // 1970-01-01), where Arrow's kernel gives the calendar's.
            static TO_DATE: LazyLock<Arc<ScalarUDF>> = LazyLock::new(|| {
                udf(
                    "cast_timestamp_to_date",
                    "CAST(ts AS DATE)",
                    fixed!(Timestamp => Date),
                    |a| {
                        Ok(ts_arg(&a[0])
                            .map_or(Value::Null, |t| Value::Date((t / 86_400_000) as i32)))
                    },
                )
            });
            Some(TO_DATE.clone())
        }
        _ if !from_str => None,
        // Out of an integer type's range is an error (TRY_CAST: NULL), as Java's parseInt.
        (_, DataType::Int64) => from_string!(safe, "bigint", "BIGINT", BigInt),
        (_, DataType::Int32) => from_string!(safe, "int", "INT", Int),
        (_, DataType::Int16) => from_string!(safe, "smallint", "SMALLINT", SmallInt),
        (_, DataType::Int8) => from_string!(safe, "tinyint", "TINYINT", TinyInt),
        (_, DataType::Float64) => from_string!(safe, "double", "DOUBLE", Double),
        (_, DataType::Float32) => from_string!(safe, "float", "FLOAT", Float),
        (_, DataType::Date32) => from_string!(safe, "date", "DATE", Date),
        (_, DataType::Binary) => from_string!(safe, "bytes", "BYTES", Bytes),
        (_, DataType::Boolean) => from_string!(safe, "boolean", "BOOLEAN", Boolean),
        (_, DataType::Timestamp(arrow::datatypes::TimeUnit::Millisecond, None)) => {
            from_string!(safe, "timestamp", "TIMESTAMP(3)", Timestamp)
        }
        _ => None,
    }
}

/// A number cast to INT, SMALLINT or TINYINT (`to`), as Java narrows: an integer wraps
/// around, a DOUBLE is cut to an `int` (saturating; NaN is 0) and then wraps. Arrow's cast
/// kernel fails (or, for TRY_CAST, gives NULL) where the value does not fit instead.
fn narrow(a: &[Value], to: SqlType) -> Result<Value, String> {
    Ok(match &a[0] {
        Value::Int(i) => Value::Int(to.wrap(*i)),
        Value::Double(d) => Value::Int(to.wrap(i64::from(*d as i32))),
        Value::Float(f) => Value::Int(to.wrap(i64::from(*f as i32))),
        _ => Value::Null,
    })
}

/// The function for a CAST from a number to a narrower integer type (widening casts and
/// casts from other types keep Arrow's kernel).
fn narrowing_cast(from: &DataType, to: &DataType) -> Option<Arc<ScalarUDF>> {
    let from = SqlType::from_arrow(from).filter(|t| t.is_numeric())?;
    let to = SqlType::from_arrow(to).filter(|t| t.int_range().is_some())?;
    let bits = |t: SqlType| t.int_range().map_or(64, |(_, hi)| 64 - hi.leading_zeros());
    if from.is_integer() && bits(from) <= bits(to) {
        return None;
    }
    macro_rules! narrowing {
        ($name:literal, $usage:literal, $ty:ident) => {{
            static F: LazyLock<Arc<ScalarUDF>> = LazyLock::new(|| {
                udf(
                    $name,
                    $usage,
                    |a| {
                        count(a, 1, 1)?;
                        let arg = match a[0] {
                            Some(t @ (SqlType::Double | SqlType::Float)) => t,
                            _ => SqlType::BigInt,
                        };
                        Ok((vec![arg], SqlType::$ty))
                    },
                    |a| narrow(a, SqlType::$ty),
                )
            });
            F.clone()
        }};
    }
    Some(match to {
        SqlType::Int => narrowing!("cast_to_int", "CAST(x AS INT)", Int),
        SqlType::SmallInt => narrowing!("cast_to_smallint", "CAST(x AS SMALLINT)", SmallInt),
        _ => narrowing!("cast_to_tinyint", "CAST(x AS TINYINT)", TinyInt),
    })
}

// ---- more strings and numbers --------------------------------------------------------------

/// The 1-based character position of `needle` in `s` at or after `from` (0: none).
fn locate(needle: &str, s: &str, from: i64) -> i64 {
    let from = from.max(1) as usize - 1;
    let Some(start) = s.char_indices().nth(from).map(|(i, _)| i) else {
        return 0;
    };
    s[start..].find(needle).map_or(0, |b| {
        (from + s[start..start + b].chars().count() + 1) as i64
    })
}

fn eval_locate(a: &[Value]) -> Result<Value, String> {
    let (Some(needle), Some(s)) = (str_arg(&a[0]), str_arg(&a[1])) else {
        return Ok(Value::Null);
    };
    let from = match a.get(2) {
        Some(v) => match int_arg(v) {
            Some(i) => i,
            None => return Ok(Value::Null),
        },
        None => 1,
    };
    Ok(Value::Int(locate(needle, s, from)))
}

/// The longest string LPAD, RPAD and REPEAT build, in characters (1 Mi, as datagen's longest
/// string): a mistyped length fails the task naming it instead of aborting the process on an
/// allocation of gigabytes.
pub(crate) const MAX_BUILT_STRING: i64 = 1 << 20;

fn check_built_length(len: i64) -> Result<(), String> {
    if len > MAX_BUILT_STRING {
        return Err(format!(
            "the result would be {len} characters long; Weir builds strings of at most \
             {MAX_BUILT_STRING} characters"
        ));
    }
    Ok(())
}

/// LPAD / RPAD: `s` cut or padded with `pad` to `len` characters; NULL for a negative length
/// or an empty pad that would be needed.
fn pad(a: &[Value], left: bool) -> Result<Value, String> {
    let (Some(s), Some(len), Some(pad)) = (str_arg(&a[0]), int_arg(&a[1]), str_arg(&a[2])) else {
        return Ok(Value::Null);
    };
    let n = s.chars().count() as i64;
    if len < 0 || (len > n && pad.is_empty()) {
        return Ok(Value::Null);
    }
    check_built_length(len)?;
    if len <= n {
        return Ok(Value::Str(s.chars().take(len as usize).collect()));
    }
    let fill: String = pad.chars().cycle().take((len - n) as usize).collect();
    Ok(Value::Str(if left {
        fill + s
    } else {
        format!("{s}{fill}")
    }))
}

/// REPEAT(s, n): `s` `n` times; empty for `n` ≤ 0.
fn eval_repeat(a: &[Value]) -> Result<Value, String> {
    let (Some(s), Some(n)) = (str_arg(&a[0]), int_arg(&a[1])) else {
        return Ok(Value::Null);
    };
    if n <= 0 || s.is_empty() {
        return Ok(Value::Str(String::new()));
    }
    check_built_length((s.chars().count() as i64).saturating_mul(n))?;
    Ok(Value::Str(s.repeat(n as usize)))
}

fn left_right(a: &[Value], left: bool) -> Result<Value, String> {
    let (Some(s), Some(k)) = (str_arg(&a[0]), int_arg(&a[1])) else {
        return Ok(Value::Null);
    };
    let n = s.chars().count() as i64;
    let k = k.clamp(0, n) as usize;
    Ok(Value::Str(if left {
        s.chars().take(k).collect()
    } else {
        s.chars().skip(n as usize - k).collect()
    }))
}

/// REPLACE as Java's `String.replace`: an empty search string matches between characters.
fn eval_replace(a: &[Value]) -> Result<Value, String> {
    let (Some(s), Some(from), Some(to)) = (str_arg(&a[0]), str_arg(&a[1]), str_arg(&a[2])) else {
        return Ok(Value::Null);
    };
    if from.is_empty() {
        let mut out = String::from(to);
        for c in s.chars() {
            out.push(c);
            out.push_str(to);
        }
        return Ok(Value::Str(out));
    }
    Ok(Value::Str(s.replace(from, to)))
}

fn eval_hex(a: &[Value]) -> Result<Value, String> {
    Ok(match &a[0] {
        Value::Int(i) => Value::Str(format!("{i:X}")),
        Value::Str(s) => Value::Str(s.bytes().map(|b| format!("{b:02X}")).collect()),
        _ => Value::Null,
    })
}

fn one_number(args: &[Option<SqlType>]) -> Result<(Vec<SqlType>, SqlType), String> {
    count(args, 1, 1)?;
    if !is_numeric(args[0]) {
        return Err("takes a number".into());
    }
    let t = args[0].unwrap_or(SqlType::Double);
    Ok((vec![t], t))
}

/// FLOOR and CEIL: a number of the argument's type, a DECIMAL's with scale 0 (Flink's
/// DECIMAL(p, 0)).
fn integral_number(args: &[Option<SqlType>]) -> Result<(Vec<SqlType>, SqlType), String> {
    let (tys, ret) = one_number(args)?;
    Ok(match ret {
        SqlType::Decimal(p, _) => (tys, SqlType::Decimal(p, 0)),
        _ => (tys, ret),
    })
}

/// FLOOR (`ceil`: CEIL) of a decimal `v` at scale `s`, at scale 0.
fn decimal_integral(v: i128, s: u8, ceil: bool) -> i128 {
    let unit = crate::decimal::pow10(u32::from(s)).unwrap_or(1);
    if ceil {
        -(-v).div_euclid(unit)
    } else {
        v.div_euclid(unit)
    }
}

fn one_double(args: &[Option<SqlType>]) -> Result<(Vec<SqlType>, SqlType), String> {
    count(args, 1, 1)?;
    if !is_numeric(args[0]) {
        return Err("takes a number".into());
    }
    Ok((vec![SqlType::Double], SqlType::Double))
}

/// An integer stays an integer; a DOUBLE goes through `f`, a FLOAT too (exact for ABS,
/// FLOOR, CEIL and SIGN, whose results a float holds).
fn int_or(a: &[Value], int: fn(i64) -> i64, f: fn(f64) -> f64) -> Result<Value, String> {
    Ok(match &a[0] {
        Value::Int(i) => Value::Int(int(*i)),
        Value::Double(d) => Value::Double(f(*d)),
        Value::Float(x) => Value::Float(f(f64::from(*x)) as f32),
        _ => Value::Null,
    })
}

fn double_fn(a: &[Value], f: fn(f64) -> f64) -> Result<Value, String> {
    Ok(a[0].as_f64().map_or(Value::Null, |d| Value::Double(f(d))))
}

fn more() -> Vec<Arc<ScalarUDF>> {
    use SqlType::{BigInt, String as Str};
    vec![
        udf(
            "locate",
            "LOCATE(needle, s [, from])",
            |a| optional(a, &[Str, Str, BigInt], 2, SqlType::Int),
            eval_locate,
        ),
        udf(
            "lpad",
            "LPAD(s, length, pad)",
            fixed!(String, BigInt, String => String),
            |a| pad(a, true),
        ),
        udf(
            "rpad",
            "RPAD(s, length, pad)",
            fixed!(String, BigInt, String => String),
            |a| pad(a, false),
        ),
        udf(
            "repeat",
            "REPEAT(s, n)",
            fixed!(String, BigInt => String),
            eval_repeat,
        ),
        udf(
            "left",
            "LEFT(s, n)",
            fixed!(String, BigInt => String),
            |a| left_right(a, true),
        ),
        udf(
            "right",
            "RIGHT(s, n)",
            fixed!(String, BigInt => String),
            |a| left_right(a, false),
        ),
        udf(
            "replace",
            "REPLACE(s, search, replacement)",
            fixed!(String, String, String => String),
            eval_replace,
        ),
        // Flink's ASCII is the first UTF-8 byte as a signed byte.
        udf("ascii", "ASCII(s)", fixed!(String => Int), |a| {
            Ok(str_arg(&a[0]).map_or(Value::Null, |s| {
                Value::Int(s.bytes().next().map_or(0, |b| i64::from(b as i8)))
            }))
        }),
        udf("bin", "BIN(n)", fixed!(BigInt => String), |a| {
            Ok(int_arg(&a[0]).map_or(Value::Null, |i| Value::Str(format!("{i:b}"))))
        }),
        udf(
            "hex",
            "HEX(n or s)",
            |a| {
                count(a, 1, 1)?;
                match a[0] {
                    None => Ok((vec![BigInt], Str)),
                    Some(t) if t.is_integer() => Ok((vec![BigInt], Str)),
                    Some(Str) => Ok((vec![Str], Str)),
                    // Flink refuses DOUBLE, BOOLEAN, …, rather than casting them.
                    Some(_) => Err("takes an integer or a STRING".into()),
                }
            },
            eval_hex,
        ),
        udf(
            "elt",
            "ELT(index, s1, s2, …)",
            |a| {
                if a.len() < 2 {
                    return Err("takes an index and at least one string".into());
                }
                let mut tys = vec![BigInt];
                tys.extend(std::iter::repeat_n(Str, a.len() - 1));
                Ok((tys, Str))
            },
            |a| {
                Ok(match int_arg(&a[0]) {
                    Some(i) if i >= 1 && (i as usize) < a.len() => a[i as usize].clone(),
                    _ => Value::Null,
                })
            },
        ),
        udf("abs", "ABS(x)", one_number, |a| match a[0] {
            Value::Decimal(v, s) => Ok(Value::Decimal(v.abs(), s)),
            _ => int_or(a, i64::wrapping_abs, f64::abs),
        }),
        udf("floor", "FLOOR(x)", integral_number, |a| match a[0] {
            Value::Decimal(v, s) => Ok(Value::Decimal(decimal_integral(v, s, false), 0)),
            _ => int_or(a, |i| i, f64::floor),
        }),
        udf("ceil", "CEIL(x)", integral_number, |a| match a[0] {
            Value::Decimal(v, s) => Ok(Value::Decimal(decimal_integral(v, s, true), 0)),
            _ => int_or(a, |i| i, f64::ceil),
        }),
        udf("ceiling", "CEILING(x)", integral_number, |a| match a[0] {
            Value::Decimal(v, s) => Ok(Value::Decimal(decimal_integral(v, s, true), 0)),
            _ => int_or(a, |i| i, f64::ceil),
        }),
        udf("sign", "SIGN(x)", one_number, |a| {
            if let Value::Decimal(v, s) = a[0] {
                let one = crate::decimal::pow10(u32::from(s)).unwrap_or(0);
                return Ok(Value::Decimal(v.signum() * one, s));
            }
            int_or(a, i64::signum, |d| {
                if d == 0.0 || d.is_nan() {
                    d
                } else {
                    d.signum()
                }
            })
        }),
        udf("sqrt", "SQRT(x)", one_double, |a| double_fn(a, f64::sqrt)),
        udf(
            "e",
            "E()",
            |a| {
                count(a, 0, 0)?;
                Ok((vec![], SqlType::Double))
            },
            |_| Ok(Value::Double(std::f64::consts::E)),
        ),
        // LOG(x) is the natural logarithm; LOG(base, x).
        udf(
            "log",
            "LOG([base,] x)",
            |a| {
                count(a, 1, 2)?;
                Ok((vec![SqlType::Double; a.len()], SqlType::Double))
            },
            |a| {
                Ok(match a {
                    [x] => x.as_f64().map_or(Value::Null, |x| Value::Double(x.ln())),
                    [b, x] => match (b.as_f64(), x.as_f64()) {
                        (Some(b), Some(x)) => Value::Double(x.ln() / b.ln()),
                        _ => Value::Null,
                    },
                    _ => Value::Null,
                })
            },
        ),
    ]
}

// ---- the library ---------------------------------------------------------------------------

/// Every function of this module callable by name, with the names they take over from
/// DataFusion's library.
pub(crate) fn all() -> Vec<Arc<ScalarUDF>> {
    use SqlType::{BigInt, String as Str, Timestamp};
    let mut fns = vec![
        udf("initcap", "INITCAP(s)", fixed!(String => String), |a| {
            Ok(str_arg(&a[0]).map_or(Value::Null, |s| Value::Str(initcap(s))))
        }),
        udf(
            "substring",
            "SUBSTRING(s, start [, length])",
            |a| optional(a, &[Str, BigInt, BigInt], 2, Str),
            eval_substring,
        ),
        udf(
            "substr",
            "SUBSTR(s, start [, length])",
            |a| optional(a, &[Str, BigInt, BigInt], 2, Str),
            eval_substring,
        ),
        udf(
            "split_index",
            "SPLIT_INDEX(s, separator, index)",
            fixed!(String, String, BigInt => String),
            eval_split_index,
        ),
        udf(
            "regexp_replace",
            "REGEXP_REPLACE(s, regex, replacement)",
            fixed!(String, String, String => String),
            eval_regexp_replace,
        ),
        udf(
            "regexp_extract",
            "REGEXP_EXTRACT(s, regex [, group])",
            |a| optional(a, &[Str, Str, BigInt], 2, Str),
            eval_regexp_extract,
        ),
        udf(
            "regexp",
            "REGEXP(s, regex)",
            fixed!(String, String => Boolean),
            eval_regexp,
        ),
        udf("round", "ROUND(x [, digits])", numeric_with_digits, |a| {
            round_or_truncate(a, false)
        }),
        udf(
            "truncate",
            "TRUNCATE(x [, digits])",
            numeric_with_digits,
            |a| round_or_truncate(a, true),
        ),
        udf(
            "date_format",
            "DATE_FORMAT(timestamp, format)",
            |a| {
                count(a, 2, 2)?;
                let first = match a[0] {
                    Some(SqlType::String) => Str,
                    // Flink's planner refuses a DATE (cast it to TIMESTAMP(3) first).
                    Some(SqlType::Date | SqlType::Time(_)) => {
                        return Err("takes a TIMESTAMP or a STRING".into());
                    }
                    _ => Timestamp,
                };
                Ok((vec![first, Str], Str))
            },
            |a| {
                let t = match &a[0] {
                    Value::Ts(t) => *t,
                    Value::Str(s) => match datetime::parse_sql_timestamp(s.trim()) {
                        Some(t) => t,
                        None => return Ok(Value::Null),
                    },
                    _ => return Ok(Value::Null),
                };
                let Some(f) = str_arg(&a[1]) else {
                    return Ok(Value::Null);
                };
                Ok(Value::Str(datetime::format(t, f)?))
            },
        ),
        udf(
            "from_unixtime",
            "FROM_UNIXTIME(seconds [, format])",
            |a| optional(a, &[BigInt, Str], 1, Str),
            |a| {
                let Some(s) = int_arg(&a[0]) else {
                    return Ok(Value::Null);
                };
                let f = match a.get(1) {
                    Some(Value::Str(f)) => f.as_str(),
                    Some(_) => return Ok(Value::Null),
                    None => "yyyy-MM-dd HH:mm:ss",
                };
                let ms = s
                    .checked_mul(1000)
                    .ok_or_else(|| format!("{s} seconds is out of range"))?;
                Ok(Value::Str(datetime::format(ms, f)?))
            },
        ),
        udf(
            "unix_timestamp",
            "UNIX_TIMESTAMP(s [, format])",
            |a| optional(a, &[Str, Str], 1, BigInt),
            |a| {
                let Some(s) = str_arg(&a[0]) else {
                    return Ok(Value::Null);
                };
                let f = match a.get(1) {
                    Some(Value::Str(f)) => f.as_str(),
                    Some(_) => return Ok(Value::Null),
                    None => "yyyy-MM-dd HH:mm:ss",
                };
                // As Flink: a day past the month's end rolls into the next month, and text
                // that does not parse gives Long.MIN_VALUE.
                Ok(Value::Int(
                    datetime::parse(s, f, true)?.map_or(i64::MIN, |ms| ms.div_euclid(1000)),
                ))
            },
        ),
        udf(
            "to_timestamp",
            "TO_TIMESTAMP(s [, format])",
            |a| optional(a, &[Str, Str], 1, Timestamp),
            |a| {
                let Some(s) = str_arg(&a[0]) else {
                    return Ok(Value::Null);
                };
                Ok(match a.get(1) {
                    Some(Value::Str(f)) => datetime::parse(s, f, false)?,
                    Some(_) => None,
                    None => datetime::parse_sql_timestamp(s.trim()),
                }
                .map_or(Value::Null, Value::Ts))
            },
        ),
        udf(
            "to_date",
            "TO_DATE(s [, format])",
            |a| optional(a, &[Str, Str], 1, SqlType::Date),
            |a| {
                let Some(s) = str_arg(&a[0]) else {
                    return Ok(Value::Null);
                };
                // NULL for text that is no date, as Flink's.
                Ok(match a.get(1) {
                    Some(Value::Str(f)) => datetime::parse(s, f, false)?
                        .map(|ms| Value::Date(ms.div_euclid(DAY_MS) as i32)),
                    Some(_) => None,
                    None => datetime::parse_date(s.trim()).map(Value::Date),
                }
                .unwrap_or(Value::Null))
            },
        ),
        udf(
            "timestampadd",
            "TIMESTAMPADD(unit, count, timestamp)",
            |a| date_or_timestamp(a, 2, &[Str, BigInt]),
            |a| {
                let (Some(unit), Some(n), Some(t)) =
                    (str_arg(&a[0]), int_arg(&a[1]), ts_arg(&a[2]))
                else {
                    return Ok(Value::Null);
                };
                Ok(same_kind(&a[2], datetime::add(unit, n, t)?))
            },
        ),
        udf(
            "timestampdiff",
            "TIMESTAMPDIFF(unit, timestamp1, timestamp2)",
            // INT, as Flink's: a difference beyond its range wraps around. Two TIMEs are
            // instants of 1970-01-01.
            |a| {
                count(a, 3, 3)?;
                let t = |x: Option<SqlType>| match x {
                    Some(t @ SqlType::Time(_)) => t,
                    _ => Timestamp,
                };
                Ok((vec![Str, t(a[1]), t(a[2])], SqlType::Int))
            },
            |a| {
                let (Some(unit), Some(t1), Some(t2)) =
                    (str_arg(&a[0]), ts_arg(&a[1]), ts_arg(&a[2]))
                else {
                    return Ok(Value::Null);
                };
                // Flink's difference of two TIMEs is of their whole seconds (00:00:00.001 to
                // 23:59:59.999 is 86399000 milliseconds).
                let secs = |v: &Value, t: i64| match v {
                    Value::Time(..) => t - t % 1000,
                    _ => t,
                };
                Ok(Value::Int(datetime::diff(
                    unit,
                    secs(&a[1], t1),
                    secs(&a[2], t2),
                )?))
            },
        ),
        udf(
            "timestamp_floor",
            "FLOOR(timestamp TO unit)",
            |a| date_or_timestamp(a, 1, &[Str]),
            |a| {
                let (Some(unit), Some(t)) = (str_arg(&a[0]), ts_arg(&a[1])) else {
                    return Ok(Value::Null);
                };
                Ok(same_kind(&a[1], datetime::floor(unit, t)?))
            },
        ),
        udf(
            "timestamp_ceil",
            "CEIL(timestamp TO unit)",
            |a| date_or_timestamp(a, 1, &[Str]),
            |a| {
                let (Some(unit), Some(t)) = (str_arg(&a[0]), ts_arg(&a[1])) else {
                    return Ok(Value::Null);
                };
                Ok(same_kind(&a[1], datetime::ceil(unit, t)?))
            },
        ),
        udf(
            "extract",
            "EXTRACT(unit FROM timestamp)",
            |a| time_field(a, 1),
            |a| {
                let (Some(unit), Some(t)) = (str_arg(&a[0]), ts_arg(&a[1])) else {
                    return Ok(Value::Null);
                };
                if matches!(a[1], Value::Time(..)) && !datetime::is_time_unit(unit) {
                    // Flink's job fails on a date field of a TIME.
                    return Err(format!("a TIME has no {unit}"));
                }
                Ok(Value::Int(datetime::extract(unit, t)?))
            },
        ),
    ];
    // HOUR(ts), DAYOFWEEK(ts), …: EXTRACT of that field.
    macro_rules! field {
        ($name:literal, $usage:literal, $unit:literal) => {
            udf(
                $name,
                $usage,
                |a| time_field(a, 0),
                |a| {
                    ts_arg(&a[0]).map_or(Ok(Value::Null), |t| {
                        datetime::extract($unit, t).map(Value::Int)
                    })
                },
            )
        };
    }
    fns.extend(more());
    fns.extend(encoding::functions());
    fns.extend(nested::functions());
    fns.extend([
        udf(
            "to_time0",
            "CAST(x AS TIME)",
            |a| to_time_typing(a, SqlType::Time(0)),
            cast_to_time,
        ),
        udf(
            "to_time3",
            "CAST(x AS TIME(p))",
            |a| to_time_typing(a, SqlType::Time(3)),
            cast_to_time,
        ),
    ]);
    fns.extend(json_path::functions());
    fns.extend([
        field!("year", "YEAR(timestamp)", "YEAR"),
        field!("quarter", "QUARTER(timestamp)", "QUARTER"),
        field!("month", "MONTH(timestamp)", "MONTH"),
        field!("week", "WEEK(timestamp)", "WEEK"),
        field!("dayofyear", "DAYOFYEAR(timestamp)", "DOY"),
        field!("dayofmonth", "DAYOFMONTH(timestamp)", "DAY"),
        field!("dayofweek", "DAYOFWEEK(timestamp)", "DOW"),
        field!("hour", "HOUR(timestamp)", "HOUR"),
        field!("minute", "MINUTE(timestamp)", "MINUTE"),
        field!("second", "SECOND(timestamp)", "SECOND"),
    ]);
    fns
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_round_half_up_on_their_decimal_text() {
        assert_eq!(round_double(1.005, 2, false), 1.01);
        assert_eq!(round_double(2.675, 2, false), 2.68);
        assert_eq!(round_double(-2.5, 0, false), -3.0);
        assert_eq!(round_double(15.0, -1, false), 20.0);
        assert_eq!(round_double(9.99, 1, false), 10.0);
        assert_eq!(round_double(0.004, 2, false), 0.0);
        assert_eq!(round_double(5.4321, 2, true), 5.43);
        assert_eq!(round_double(-3.9, 0, true), -3.0);
        assert_eq!(round_double(1234.5, -2, true), 1200.0);
        assert_eq!(round_int(1250, -2, false), Ok(1300));
        assert_eq!(round_int(-15, -1, false), Ok(-20));
        assert_eq!(round_int(1234, -1, true), Ok(1230));
    }

    #[test]
    fn initcap_capitalises_ascii_words_only() {
        assert_eq!(initcap("élan vital"), "éLan Vital");
        assert_eq!(initcap("o'neil mc-donald"), "O'Neil Mc-Donald");
        assert_eq!(initcap("HELLO wORLD"), "Hello World");
    }

    #[test]
    fn substring_counts_characters_from_one_or_from_the_end() {
        assert_eq!(substring("héllo", 2, None).as_deref(), Some("éllo"));
        assert_eq!(substring("hello", 0, Some(3)).as_deref(), Some("hel"));
        assert_eq!(substring("hello", -3, None).as_deref(), Some("llo"));
        assert_eq!(substring("hello", 10, None).as_deref(), Some(""));
    }
}
