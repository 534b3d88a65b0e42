//! Rows as they travel between SQL operators, and their conversion to and from Arrow.
//!
//! Between operators a SQL stream carries `Row`s in the engine's typed batches, so the
//! engine's keyed state, windows, watermarks and checkpoints apply unchanged. Expressions are
//! evaluated by DataFusion over Arrow `RecordBatch`es built from a whole batch of rows.

use crate::nested::{Nested, NestedId};
use arrow::array::{
    Array, ArrayRef, BinaryArray, BinaryBuilder, BooleanArray, BooleanBuilder, Date32Array,
    Date32Builder, Decimal128Array, Decimal128Builder, Float32Array, Float32Builder, Float64Array,
    Float64Builder, Int8Array, Int16Array, Int32Array, Int64Array, PrimitiveBuilder, StringArray,
    StringBuilder, Time32MillisecondArray, Time32MillisecondBuilder, Time32SecondArray,
    Time32SecondBuilder, TimestampMillisecondArray, TimestampMillisecondBuilder,
};
use arrow::datatypes::{
    ArrowPrimitiveType, DataType, Field, Int8Type, Int16Type, Int32Type, Int64Type, Schema,
    SchemaRef, TimeUnit,
};
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// The SQL types Weir's streaming SQL carries between operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SqlType {
    /// BOOLEAN
    Boolean,
    /// BIGINT
    BigInt,
    /// INT (32-bit; values are carried as `Value::Int` and wrap around at 32 bits in
    /// arithmetic, as Java's `int`)
    Int,
    /// SMALLINT (16-bit)
    SmallInt,
    /// TINYINT (8-bit)
    TinyInt,
    /// DOUBLE (64-bit floating point; `DOUBLE PRECISION`)
    Double,
    /// STRING, VARCHAR, CHAR
    String,
    /// TIMESTAMP(3), TIMESTAMP_LTZ(3) (epoch milliseconds)
    Timestamp,
    /// DECIMAL(precision, scale): exact, `Value::Decimal` in rows (see [`crate::decimal`])
    Decimal(u8, u8),
    /// FLOAT, REAL (32-bit floating point, `Value::Float` in rows: arithmetic rounds to 32
    /// bits as Java's `float`). After the others, so that their encodings stay as they were.
    Float,
    /// DATE (days since 1970-01-01, `Value::Date` in rows).
    Date,
    /// TIME(p), p 0 to 3 (TIME(6) and TIME(9) are TIME(3), as in Flink): a time of day,
    /// `Value::Time` in rows (milliseconds of the day, as Flink keeps it). Evaluated as
    /// Arrow's `Time32(Second)` for TIME(0) and `Time32(Millisecond)` for the other
    /// precisions, so an expression's TIME result is TIME(0) or TIME(3).
    Time(u8),
    /// BYTES, VARBINARY, BINARY (`Value::Bytes` in rows).
    Bytes,
    /// ARRAY, MAP and ROW: the interned description of the type (see [`crate::nested`]);
    /// `Value::Array`, `Value::Map` and `Value::Row` in rows.
    Nested(NestedId),
}

impl SqlType {
    /// The Arrow type values of this type are evaluated as.
    pub fn arrow(self) -> DataType {
        match self {
            SqlType::Boolean => DataType::Boolean,
            SqlType::BigInt => DataType::Int64,
            SqlType::Int => DataType::Int32,
            SqlType::SmallInt => DataType::Int16,
            SqlType::TinyInt => DataType::Int8,
            SqlType::Double => DataType::Float64,
            SqlType::String => DataType::Utf8,
            SqlType::Timestamp => DataType::Timestamp(TimeUnit::Millisecond, None),
            SqlType::Decimal(p, s) => DataType::Decimal128(p, s as i8),
            SqlType::Float => DataType::Float32,
            SqlType::Date => DataType::Date32,
            SqlType::Time(0) => DataType::Time32(TimeUnit::Second),
            SqlType::Time(_) => DataType::Time32(TimeUnit::Millisecond),
            SqlType::Bytes => DataType::Binary,
            SqlType::Nested(n) => crate::nested::arrow(n.get()),
        }
    }

    /// The SQL type an Arrow result type is carried as, if any.
    pub fn from_arrow(t: &DataType) -> Option<SqlType> {
        Some(match t {
            DataType::Boolean => SqlType::Boolean,
            DataType::Int8 => SqlType::TinyInt,
            DataType::Int16 | DataType::UInt8 => SqlType::SmallInt,
            DataType::Int32 | DataType::UInt16 => SqlType::Int,
            DataType::Int64 | DataType::UInt32 | DataType::UInt64 => SqlType::BigInt,
            DataType::Decimal32(p, s) | DataType::Decimal64(p, s) | DataType::Decimal128(p, s)
                if *p <= crate::decimal::MAX_PRECISION && (0..=*p as i8).contains(s) =>
            {
                SqlType::Decimal(*p, *s as u8)
            }
            DataType::Float16 | DataType::Float32 => SqlType::Float,
            DataType::Float64
            | DataType::Decimal32(..)
            | DataType::Decimal64(..)
            | DataType::Decimal128(..)
            | DataType::Decimal256(..) => SqlType::Double,
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null => {
                SqlType::String
            }
            DataType::Date32 | DataType::Date64 => SqlType::Date,
            DataType::Timestamp(..) => SqlType::Timestamp,
            DataType::Time32(TimeUnit::Second) => SqlType::Time(0),
            DataType::Time32(_) | DataType::Time64(_) => SqlType::Time(3),
            DataType::Binary | DataType::LargeBinary | DataType::BinaryView => SqlType::Bytes,
            _ => return crate::nested::from_arrow(t),
        })
    }

    /// The type's name in Flink SQL.
    pub fn sql_name(self) -> &'static str {
        match self {
            SqlType::Decimal(p, s) => decimal_name(p, s),
            SqlType::Boolean => "BOOLEAN",
            SqlType::BigInt => "BIGINT",
            SqlType::Int => "INT",
            SqlType::SmallInt => "SMALLINT",
            SqlType::TinyInt => "TINYINT",
            SqlType::Double => "DOUBLE",
            SqlType::String => "STRING",
            SqlType::Timestamp => "TIMESTAMP(3)",
            SqlType::Float => "FLOAT",
            SqlType::Date => "DATE",
            SqlType::Time(0) => "TIME(0)",
            SqlType::Time(1) => "TIME(1)",
            SqlType::Time(2) => "TIME(2)",
            SqlType::Time(_) => "TIME(3)",
            SqlType::Bytes => "BYTES",
            SqlType::Nested(n) => n.name(),
        }
    }

    /// Whether the type is TINYINT, SMALLINT, INT or BIGINT.
    pub fn is_integer(self) -> bool {
        matches!(
            self,
            SqlType::BigInt | SqlType::Int | SqlType::SmallInt | SqlType::TinyInt
        )
    }

    /// Whether the type is an integer type, DECIMAL, FLOAT or DOUBLE.
    pub fn is_numeric(self) -> bool {
        self.is_integer()
            || matches!(
                self,
                SqlType::Double | SqlType::Float | SqlType::Decimal(..)
            )
    }

    /// DECIMAL's (precision, scale); an integer type's as it converts to DECIMAL in
    /// arithmetic with one (INT is DECIMAL(10, 0)); None for the other types.
    pub fn decimal(self) -> Option<(u8, u8)> {
        Some(match self {
            SqlType::Decimal(p, s) => (p, s),
            SqlType::TinyInt => crate::decimal::integer_type(8),
            SqlType::SmallInt => crate::decimal::integer_type(16),
            SqlType::Int => crate::decimal::integer_type(32),
            SqlType::BigInt => crate::decimal::integer_type(64),
            _ => return None,
        })
    }

    /// For TINYINT, SMALLINT and INT, the value range (BIGINT: None): a value outside it
    /// read from text is an error, and arithmetic wraps around into it.
    #[inline]
    pub fn int_range(self) -> Option<(i64, i64)> {
        match self {
            SqlType::Int => Some((i32::MIN.into(), i32::MAX.into())),
            SqlType::SmallInt => Some((i16::MIN.into(), i16::MAX.into())),
            SqlType::TinyInt => Some((i8::MIN.into(), i8::MAX.into())),
            _ => None,
        }
    }

    /// `i` wrapped around into this integer type's range, as Java's narrowing conversion
    /// (`(int) l`) does; BIGINT and other types keep it.
    #[inline]
    pub fn wrap(self, i: i64) -> i64 {
        match self {
            SqlType::Int => i64::from(i as i32),
            SqlType::SmallInt => i64::from(i as i16),
            SqlType::TinyInt => i64::from(i as i8),
            _ => i,
        }
    }

    /// Whether `i` is a value of this integer type (always for BIGINT): the JSON decoder's
    /// per-field check, without building a message.
    #[inline]
    pub fn holds_int(self, i: i64) -> bool {
        self.wrap(i) == i
    }

    /// `i` as a value of this integer type, or why it does not fit (for text read into a
    /// column: Flink's decoders refuse such values rather than wrap them).
    /// Inlined with the message out of line: the JSON and CSV decoders call it for every
    /// integer field, and for BIGINT it is a no-op.
    #[inline]
    pub fn checked_int(self, i: i64) -> Result<i64, String> {
        match self.int_range() {
            Some((lo, hi)) if !(lo..=hi).contains(&i) => Err(self.out_of_range(i, lo, hi)),
            _ => Ok(i),
        }
    }

    #[cold]
    #[inline(never)]
    fn out_of_range(self, i: i64, lo: i64, hi: i64) -> String {
        format!("{i} is out of range for {} ({lo} to {hi})", self.sql_name())
    }
}

/// `DECIMAL(p, s)` as a static string (types are named in messages and state schemas; there
/// are 741 of them, each leaked once).
fn decimal_name(p: u8, s: u8) -> &'static str {
    use std::sync::Mutex;
    static NAMES: Mutex<Vec<((u8, u8), &'static str)>> = Mutex::new(Vec::new());
    let mut names = NAMES.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, n)) = names.iter().find(|(k, _)| *k == (p, s)) {
        return n;
    }
    let n: &'static str = Box::leak(format!("DECIMAL({p}, {s})").into_boxed_str());
    names.push(((p, s), n));
    n
}

/// A named, typed column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Column {
    /// Name as used in queries (unquoted identifiers are lower-cased).
    pub name: String,
    /// Type.
    pub ty: SqlType,
}

/// Builds the Arrow schema for columns.
pub fn arrow_schema(cols: &[Column]) -> SchemaRef {
    Arc::new(Schema::new(
        cols.iter()
            .map(|c| Field::new(&c.name, c.ty.arrow(), true))
            .collect::<Vec<_>>(),
    ))
}

/// One SQL value.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub enum Value {
    /// NULL
    #[default]
    Null,
    /// BOOLEAN
    Bool(bool),
    /// integer types
    Int(i64),
    /// floating-point types
    Double(f64),
    /// strings
    Str(String),
    /// timestamps in epoch milliseconds
    Ts(i64),
    /// DECIMAL: the unscaled number and the scale (`1.50` is `Decimal(150, 2)`). Last, so
    /// that the encodings of the other variants in state stay as they were.
    Decimal(i128, u8),
    /// FLOAT (32-bit floating point).
    Float(f32),
    /// DATE: days since 1970-01-01.
    Date(i32),
    /// TIME(p): milliseconds of the day (0 to 86,399,999) and the precision `p`, which
    /// decides how it is written (TIME(0) `12:34:56`, TIME(3) `12:34:56.0`); values of any
    /// precision compare by their milliseconds.
    Time(i32, u8),
    /// BYTES, VARBINARY.
    Bytes(Vec<u8>),
    /// ARRAY: the elements. Shared (and serialized as a sequence): a nested value is
    /// cloned and dropped without recursing through `Value`'s own glue, which stays as
    /// small as for the scalar rows every query moves.
    Array(#[serde(with = "shared")] Arc<Vec<Value>>),
    /// MAP: the entries, in the order they were made, each key once.
    /// Serialized with its entries ordered by key, so that equal maps are equal keys.
    Map(#[serde(with = "shared_map")] Arc<Vec<(Value, Value)>>),
    /// ROW: the fields' values (their names are the type's).
    Row(#[serde(with = "shared")] Arc<Vec<Value>>),
}

/// Serde for a MAP's entries: ordered by key (see [`sorted_entries`]).
mod shared_map {
    use super::Value;
    use serde::{Deserializer, Serialize, Serializer};
    use std::sync::Arc;

    pub fn serialize<S: Serializer>(v: &Arc<Vec<(Value, Value)>>, s: S) -> Result<S::Ok, S::Error> {
        super::sorted_entries(v).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Arc<Vec<(Value, Value)>>, D::Error> {
        super::shared::deserialize(d)
    }
}

/// Serde for the shared payloads of nested values, as the vectors they hold (serde's `rc`
/// feature is not enabled in the workspace).
mod shared {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::sync::Arc;

    pub fn serialize<T: Serialize, S: Serializer>(
        v: &Arc<Vec<T>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        v.as_slice().serialize(s)
    }

    pub fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Arc<Vec<T>>, D::Error> {
        Vec::deserialize(d).map(Arc::new)
    }
}

/// The earliest TIMESTAMP(3), 0000-01-01 00:00:00.000, in epoch milliseconds.
pub const MIN_TIMESTAMP_MS: i64 = -62_167_219_200_000;
/// The latest TIMESTAMP(3), 9999-12-31 23:59:59.999, in epoch milliseconds.
pub const MAX_TIMESTAMP_MS: i64 = 253_402_300_799_999;

/// Whether `ms` is a TIMESTAMP(3) (years 0000 to 9999, as Flink's).
pub fn timestamp_in_range(ms: i64) -> bool {
    (MIN_TIMESTAMP_MS..=MAX_TIMESTAMP_MS).contains(&ms)
}

/// A table's event-time (`WATERMARK FOR`) column and where rows hold it: every row needs a
/// TIMESTAMP(3) there. Checked where a row is decoded (so the error names the file and line)
/// and again where timestamps are assigned (for computed columns).
#[derive(Debug, Clone)]
pub(crate) struct EventTime {
    /// Table name, for messages.
    pub table: String,
    /// The column's name.
    pub column: String,
    /// Its position in the rows.
    pub slot: usize,
}

impl EventTime {
    /// The row's event time, or why it has none. Called once or twice per row: the check
    /// inlines into the caller and the message is built out of line.
    #[inline]
    pub(crate) fn of(&self, row: &[Value]) -> Result<i64, String> {
        match row.get(self.slot) {
            Some(Value::Ts(t)) if timestamp_in_range(*t) => Ok(*t),
            other => Err(self.missing(other)),
        }
    }

    #[cold]
    #[inline(never)]
    fn missing(&self, value: Option<&Value>) -> String {
        let problem = match value {
            Some(Value::Ts(t)) => {
                format!("= {t} ms since the epoch, outside TIMESTAMP(3) (years 0000 to 9999)")
            }
            None | Some(Value::Null) => "is NULL or missing".to_string(),
            Some(other) => format!("= {other} is not a TIMESTAMP(3)"),
        };
        format!(
            "table '{}': event-time column '{}' (WATERMARK FOR) {problem}; every row needs an \
             event time: fix the input, or set pipeline.decode-error-policy: skip to drop such \
             rows",
            self.table, self.column
        )
    }
}

impl Value {
    fn rank(&self) -> u8 {
        match self {
            Value::Null => 0,
            Value::Bool(_) => 1,
            Value::Int(_) | Value::Double(_) | Value::Decimal(..) | Value::Float(_) => 2,
            Value::Str(_) => 3,
            Value::Ts(_) => 4,
            Value::Date(_) => 5,
            Value::Time(..) => 6,
            Value::Bytes(_) => 7,
            Value::Array(_) => 8,
            Value::Map(_) => 9,
            Value::Row(_) => 10,
        }
    }

    /// The value as a float, for numeric aggregates.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Double(d) => Some(*d),
            Value::Decimal(v, s) => Some(crate::decimal::to_f64(*v, *s)),
            Value::Float(f) => Some(f64::from(*f)),
            _ => None,
        }
    }

    /// The value as a decimal (unscaled, scale): integers at scale 0.
    pub fn as_decimal(&self) -> Option<(i128, u8)> {
        match self {
            Value::Int(i) => Some((i128::from(*i), 0)),
            Value::Decimal(v, s) => Some((*v, *s)),
            _ => None,
        }
    }
}

/// Two decimals (or integers) compared by value; None when one of them cannot be brought to
/// the other's scale (then they compare as doubles).
fn cmp_decimals((a, sa): (i128, u8), (b, sb): (i128, u8)) -> Option<Ordering> {
    let s = sa.max(sb);
    let a = crate::decimal::rescale(a, sa, s)?;
    let b = crate::decimal::rescale(b, sb, s)?;
    Some(a.cmp(&b))
}

impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Value {}

impl PartialOrd for Value {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Value {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Value::Bool(a), Value::Bool(b)) => a.cmp(b),
            (Value::Int(a), Value::Int(b)) => a.cmp(b),
            (Value::Double(a), Value::Double(b)) => a.total_cmp(b),
            (Value::Int(a), Value::Double(b)) => (*a as f64).total_cmp(b),
            (Value::Double(a), Value::Int(b)) => a.total_cmp(&(*b as f64)),
            (Value::Str(a), Value::Str(b)) => a.cmp(b),
            (Value::Ts(a), Value::Ts(b)) => a.cmp(b),
            (Value::Decimal(..), Value::Decimal(..) | Value::Int(_))
            | (Value::Int(_), Value::Decimal(..)) => {
                let (a, b) = (self.as_decimal(), other.as_decimal());
                match a.zip(b).and_then(|(a, b)| cmp_decimals(a, b)) {
                    Some(o) => o,
                    None => self
                        .as_f64()
                        .unwrap_or(0.0)
                        .total_cmp(&other.as_f64().unwrap_or(0.0)),
                }
            }
            (Value::Float(a), Value::Float(b)) => a.total_cmp(b),
            (Value::Date(a), Value::Date(b)) => a.cmp(b),
            (Value::Time(a, _), Value::Time(b, _)) => a.cmp(b),
            // Unsigned bytes, shorter first where one is the other's prefix (as Flink's).
            (Value::Bytes(a), Value::Bytes(b)) => a.cmp(b),
            // Element by element, a shorter prefix first.
            (Value::Array(a), Value::Array(b)) | (Value::Row(a), Value::Row(b)) => a.cmp(b),
            // Maps are equal when their entries are, in any order (as Java's `Map.equals`).
            (Value::Map(a), Value::Map(b)) => sorted_entries(a).cmp(&sorted_entries(b)),
            // A FLOAT next to another number compares as the DOUBLE it widens to (Java's).
            (Value::Decimal(..), Value::Double(_))
            | (Value::Double(_), Value::Decimal(..))
            | (Value::Float(_), Value::Int(_) | Value::Double(_) | Value::Decimal(..))
            | (Value::Int(_) | Value::Double(_) | Value::Decimal(..), Value::Float(_)) => self
                .as_f64()
                .unwrap_or(0.0)
                .total_cmp(&other.as_f64().unwrap_or(0.0)),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

impl Hash for Value {
    fn hash<H: Hasher>(&self, state: &mut H) {
        match self {
            Value::Null => 0u8.hash(state),
            Value::Bool(b) => b.hash(state),
            Value::Int(i) => i.hash(state),
            Value::Double(d) => d.to_bits().hash(state),
            Value::Str(s) => s.hash(state),
            Value::Ts(t) => t.hash(state),
            // Equal decimals of different scales (1.5, 1.50) hash alike: by the value with
            // its trailing zeros dropped.
            Value::Decimal(v, s) => {
                let (mut v, mut s) = (*v, *s);
                while s > 0 && v % 10 == 0 {
                    v /= 10;
                    s -= 1;
                }
                (v, s).hash(state)
            }
            Value::Float(f) => f.to_bits().hash(state),
            Value::Date(d) => d.hash(state),
            Value::Time(ms, _) => ms.hash(state),
            Value::Bytes(b) => b.hash(state),
            Value::Array(a) | Value::Row(a) => a.hash(state),
            Value::Map(m) => sorted_entries(m).hash(state),
        }
    }
}

/// A map's entries ordered by key, so that equal maps compare and hash alike.
fn sorted_entries(m: &[(Value, Value)]) -> Vec<&(Value, Value)> {
    let mut v: Vec<&(Value, Value)> = m.iter().collect();
    v.sort();
    v
}

/// Formats a DATE (days since the epoch) as Flink writes it: `2024-02-29`.
pub fn format_date(days: i32) -> String {
    let (y, m, d) = weir_engine::time::civil_from_days(i64::from(days));
    format!("{y:04}-{m:02}-{d:02}")
}

/// Formats a TIME of precision `p` as Flink's CAST to STRING writes it: `12:34:56` for
/// TIME(0); else at least one fractional digit and at most `min(p, 3)`, trailing zeros
/// dropped (`12:34:56.0`, `12:34:56.5`, `12:34:56.789`), as Flink's `unixTimeToString`.
pub fn format_time(ms: i32, p: u8) -> String {
    let ms = ms.rem_euclid(86_400_000);
    let (h, m, s) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60);
    let mut out = format!("{h:02}:{m:02}:{s:02}");
    if p > 0 {
        out.push('.');
        let mut frac = ms % 1000;
        for _ in 0..p.min(3) {
            out.push(char::from(b'0' + (frac / 100) as u8));
            frac = frac % 100 * 10;
            if frac == 0 {
                break;
            }
        }
    }
    out
}

/// A TIME as Java's `LocalTime.toString` writes it (Flink's `print`): `12:34`, `12:34:56`,
/// `12:34:56.500` (the seconds only when the time has some, milliseconds as three digits).
pub fn java_local_time(ms: i32) -> String {
    let ms = ms.rem_euclid(86_400_000);
    let (h, m, s, frac) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
    match (s, frac) {
        (0, 0) => format!("{h:02}:{m:02}"),
        (s, 0) => format!("{h:02}:{m:02}:{s:02}"),
        (s, f) => format!("{h:02}:{m:02}:{s:02}.{f:03}"),
    }
}

/// Formats a timestamp the way Flink's SQL client shows `TIMESTAMP(3)`:
/// `2026-01-01 00:01:00.000`.
pub fn format_timestamp(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let rem = ms.rem_euclid(86_400_000);
    let (y, m, d) = weir_engine::time::civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{:03}",
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000
    )
}

/// A TIMESTAMP as Java's `LocalDateTime.toString` writes it (Flink's `print`):
/// `2026-01-01T00:01`, `2026-01-01T00:01:05`, `2026-01-01T00:01:00.500` (the seconds only
/// when the time has some, milliseconds as three digits).
pub fn java_local_date_time(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let (y, m, d) = weir_engine::time::civil_from_days(days);
    let time = java_local_time(ms.rem_euclid(86_400_000) as i32);
    format!("{y:04}-{m:02}-{d:02}T{time}")
}

/// As Flink's `print` connector writes a value: Java's `toString` of it (`null`, `true`,
/// `2026-01-01T00:01`, `[1, null]`, `{a=1}`, `+I[1, x]`).
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("null"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            // As Java's Double.toString, which Flink's print uses: 1.6325E8, 3.0.
            Value::Double(d) => f.write_str(&crate::builtins::java_double(*d)),
            Value::Str(s) => f.write_str(s),
            Value::Ts(t) => f.write_str(&java_local_date_time(*t)),
            Value::Decimal(v, s) => f.write_str(&crate::decimal::format(*v, *s)),
            // As Java's Float.toString: 1.0E-5, 3.4028235E38.
            Value::Float(x) => f.write_str(&crate::builtins::java_float(*x)),
            Value::Date(d) => f.write_str(&format_date(*d)),
            // As Flink's print connector writes a TIME: Java's `LocalTime.toString`.
            Value::Time(ms, _) => f.write_str(&java_local_time(*ms)),
            // As Flink's print connector writes a byte[]: Java's Arrays.toString.
            Value::Bytes(b) => {
                f.write_str("[")?;
                for (i, x) in b.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{}", *x as i8)?;
                }
                f.write_str("]")
            }
            // As Flink's print connector writes Java's lists, maps and rows (`toString`):
            // `[1, NULL]`, `{a=1}`, `+I[1, x]`, each element as it prints on its own.
            Value::Array(items) => write_list(f, "[", items, "]"),
            Value::Row(fields) => write_list(f, "+I[", fields, "]"),
            Value::Map(entries) => {
                f.write_str("{")?;
                for (i, (k, v)) in entries.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{k}={v}")?;
                }
                f.write_str("}")
            }
        }
    }
}

fn write_list(f: &mut fmt::Formatter<'_>, open: &str, items: &[Value], close: &str) -> fmt::Result {
    f.write_str(open)?;
    for (i, v) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{v}")?;
    }
    f.write_str(close)
}

impl Value {
    /// The value as JSON (timestamps as Flink's JSON format writes them).
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => (*b).into(),
            Value::Int(i) => (*i).into(),
            Value::Double(d) => serde_json::Number::from_f64(*d)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
            Value::Str(s) => s.clone().into(),
            Value::Ts(t) => format_timestamp(*t).into(),
            // A JSON number; serde_json's numbers are 64-bit, so the text's trailing zeros
            // are lost here (the record formats write the exact text, see `format`).
            Value::Decimal(v, s) => match crate::decimal::format(*v, *s).parse::<f64>() {
                Ok(d) => serde_json::Number::from_f64(d)
                    .map(serde_json::Value::Number)
                    .unwrap_or(serde_json::Value::Null),
                Err(_) => serde_json::Value::Null,
            },
            // The number Java's Float.toString writes (0.1, not the double 0.100000001…),
            // as Flink's json format does; NaN and infinities are NULL as for DOUBLE.
            Value::Float(f) => crate::builtins::java_float(*f)
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map_or(serde_json::Value::Null, serde_json::Value::Number),
            // As Flink's json format: `"2024-02-29"`.
            Value::Date(d) => format_date(*d).into(),
            // As Flink's json format: `"12:34:56"`, `"12:34:56.5"`.
            Value::Time(ms, p) => crate::format::json_time(*ms, *p).into(),
            // As Flink's json format: Base64 text.
            Value::Bytes(b) => crate::builtins::base64(b).into(),
            // A JSON array; a ROW's fields too (their names are the type's: the record
            // formats write an object, see `format`).
            Value::Array(items) | Value::Row(items) => items.iter().map(Value::to_json).collect(),
            // A JSON object, each key as its text.
            Value::Map(entries) => entries
                .iter()
                .map(|(k, v)| {
                    (
                        crate::builtins::flink_text(k).unwrap_or_default(),
                        v.to_json(),
                    )
                })
                .collect::<serde_json::Map<_, _>>()
                .into(),
        }
    }
}

/// A row: one value per column of the stream's schema.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Row(pub Vec<Value>);

/// Displays as Flink's print connector does for an insert: `+I[a, 1, 2.5]`.
impl fmt::Display for Row {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("+I[")?;
        for (i, v) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{v}")?;
        }
        f.write_str("]")
    }
}

/// Builds an Arrow batch from rows of the given schema.
pub fn rows_to_batch<'a>(
    cols: &[Column],
    schema: &SchemaRef,
    rows: impl Iterator<Item = &'a Row> + Clone,
) -> Result<RecordBatch, arrow::error::ArrowError> {
    rows_to_batch_columns(cols, schema, rows, &vec![true; cols.len()])
}

/// Builds an Arrow batch from rows of the given schema, converting only the columns whose
/// `used` flag is set; the others are all-NULL arrays (cheap to build, never read).
pub fn rows_to_batch_columns<'a>(
    cols: &[Column],
    schema: &SchemaRef,
    rows: impl Iterator<Item = &'a Row> + Clone,
    used: &[bool],
) -> Result<RecordBatch, arrow::error::ArrowError> {
    let n = rows.clone().count();
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(cols.len());
    for (i, c) in cols.iter().enumerate() {
        if !used.get(i).copied().unwrap_or(true) {
            arrays.push(arrow::array::new_null_array(&c.ty.arrow(), n));
            continue;
        }
        let vals = rows.clone().map(|r| r.0.get(i).unwrap_or(&Value::Null));
        arrays.push(column_array(c.ty, vals, n)?);
    }
    RecordBatch::try_new_with_options(
        schema.clone(),
        arrays,
        &RecordBatchOptions::new().with_row_count(Some(n)),
    )
}

/// The Arrow array of `n` values `vals` of type `ty` (a value of another type is NULL).
fn column_array<'a>(
    ty: SqlType,
    vals: impl Iterator<Item = &'a Value> + Clone,
    n: usize,
) -> Result<ArrayRef, arrow::error::ArrowError> {
    Ok(match ty {
        SqlType::Boolean => {
            let mut b = BooleanBuilder::with_capacity(n);
            for v in vals {
                b.append_option(match v {
                    Value::Bool(x) => Some(*x),
                    _ => None,
                });
            }
            Arc::new(b.finish())
        }
        SqlType::BigInt => int_array::<Int64Type>(vals, n, |x| x),
        // Narrower integers wrap around (a function's INT result computed as 64 bits,
        // such as ABS of INT's minimum, is what Java's `int` holds).
        SqlType::Int => int_array::<Int32Type>(vals, n, |x| x as i32),
        SqlType::SmallInt => int_array::<Int16Type>(vals, n, |x| x as i16),
        SqlType::TinyInt => int_array::<Int8Type>(vals, n, |x| x as i8),
        SqlType::Double => {
            let mut b = Float64Builder::with_capacity(n);
            for v in vals {
                b.append_option(v.as_f64());
            }
            Arc::new(b.finish())
        }
        SqlType::Float => {
            let mut b = Float32Builder::with_capacity(n);
            for v in vals {
                b.append_option(match v {
                    Value::Float(f) => Some(*f),
                    // A wider number rounds to the nearest float, as Java's `(float)`.
                    v => v.as_f64().map(|d| d as f32),
                });
            }
            Arc::new(b.finish())
        }
        SqlType::String => {
            let bytes = vals
                .clone()
                .map(|v| match v {
                    Value::Str(s) => s.len(),
                    _ => 0,
                })
                .sum();
            let mut b = StringBuilder::with_capacity(n, bytes);
            for v in vals {
                match v {
                    Value::Str(s) => b.append_value(s),
                    _ => b.append_null(),
                }
            }
            Arc::new(b.finish())
        }
        SqlType::Date => {
            let mut b = Date32Builder::with_capacity(n);
            b.extend(vals.map(|v| match v {
                Value::Date(x) => Some(*x),
                _ => None,
            }));
            Arc::new(b.finish())
        }
        SqlType::Time(0) => {
            let mut b = Time32SecondBuilder::with_capacity(n);
            b.extend(vals.map(|v| match v {
                Value::Time(x, _) => Some(x / 1000),
                _ => None,
            }));
            Arc::new(b.finish())
        }
        SqlType::Time(_) => {
            let mut b = Time32MillisecondBuilder::with_capacity(n);
            b.extend(vals.map(|v| match v {
                Value::Time(x, _) => Some(*x),
                _ => None,
            }));
            Arc::new(b.finish())
        }
        SqlType::Bytes => {
            let mut b = BinaryBuilder::with_capacity(n, 0);
            for v in vals {
                match v {
                    Value::Bytes(x) => b.append_value(x),
                    _ => b.append_null(),
                }
            }
            Arc::new(b.finish())
        }
        SqlType::Timestamp => {
            let mut b = TimestampMillisecondBuilder::with_capacity(n);
            for v in vals {
                b.append_option(match v {
                    Value::Ts(x) => Some(*x),
                    _ => None,
                });
            }
            Arc::new(b.finish())
        }
        SqlType::Decimal(p, s) => {
            let mut b = Decimal128Builder::with_capacity(n);
            for v in vals {
                // A value of another scale (or an integer) is brought to the column's;
                // NULL where it does not fit.
                b.append_option(
                    v.as_decimal()
                        .and_then(|(x, from)| crate::decimal::to_type(x, from, p, s)),
                );
            }
            Arc::new(b.finish().with_precision_and_scale(p, s as i8)?)
        }
        SqlType::Nested(t) => nested_array(t.get(), &vals.collect::<Vec<_>>())?,
    })
}

/// The Arrow array of nested values (one type for every depth, so that the recursion
/// through [`column_array`] instantiates it once).
fn nested_array(ty: &Nested, vals: &[&Value]) -> Result<ArrayRef, arrow::error::ArrowError> {
    use arrow::array::{ListArray, MapArray, StructArray};
    use arrow::buffer::{NullBuffer, OffsetBuffer};
    let nulls = |is: fn(&Value) -> bool| -> NullBuffer { vals.iter().map(|v| is(v)).collect() };
    Ok(match ty {
        Nested::Array(e) => {
            let items: Vec<&Value> = vals
                .iter()
                .flat_map(|v| match v {
                    Value::Array(a) => a.as_slice(),
                    _ => &[],
                })
                .collect();
            let child = column_array(*e, items.iter().copied(), items.len())?;
            let offsets = OffsetBuffer::from_lengths(vals.iter().map(|v| match v {
                Value::Array(a) => a.len(),
                _ => 0,
            }));
            let DataType::List(field) = crate::nested::arrow(ty) else {
                unreachable!("an ARRAY is a List");
            };
            Arc::new(ListArray::try_new(
                field,
                offsets,
                child,
                Some(nulls(|v| matches!(v, Value::Array(_)))),
            )?)
        }
        Nested::Map(k, v) => {
            let entries: Vec<&(Value, Value)> = vals
                .iter()
                .flat_map(|v| match v {
                    Value::Map(m) => m.as_slice(),
                    _ => &[],
                })
                .collect();
            let keys = column_array(*k, entries.iter().map(|e| &e.0), entries.len())?;
            let values = column_array(*v, entries.iter().map(|e| &e.1), entries.len())?;
            let field = crate::nested::map_entries(*k, *v);
            let DataType::Struct(kv) = field.data_type().clone() else {
                unreachable!("map entries are a Struct");
            };
            let entries_array = StructArray::try_new(kv, vec![keys, values], None)?;
            let offsets = OffsetBuffer::from_lengths(vals.iter().map(|v| match v {
                Value::Map(m) => m.len(),
                _ => 0,
            }));
            Arc::new(MapArray::try_new(
                Arc::new(field),
                offsets,
                entries_array,
                Some(nulls(|v| matches!(v, Value::Map(_)))),
                false,
            )?)
        }
        Nested::Row(fields) => {
            let columns = fields
                .iter()
                .enumerate()
                .map(|(i, (_, t))| {
                    let field_vals = vals.iter().map(|v| match v {
                        Value::Row(f) => f.get(i).unwrap_or(&Value::Null),
                        _ => &Value::Null,
                    });
                    column_array(*t, field_vals, vals.len())
                })
                .collect::<Result<Vec<_>, _>>()?;
            Arc::new(StructArray::try_new_with_length(
                crate::nested::row_fields(fields),
                columns,
                Some(nulls(|v| matches!(v, Value::Row(_)))),
                vals.len(),
            )?)
        }
    })
}

/// An Arrow array of the integers among `vals` (anything else is NULL), each converted by
/// `narrow`.
fn int_array<'a, T: ArrowPrimitiveType>(
    vals: impl Iterator<Item = &'a Value>,
    n: usize,
    narrow: fn(i64) -> T::Native,
) -> ArrayRef {
    let mut b = PrimitiveBuilder::<T>::with_capacity(n);
    for v in vals {
        b.append_option(match v {
            Value::Int(x) => Some(narrow(*x)),
            _ => None,
        });
    }
    Arc::new(b.finish())
}

/// Reads the values of one evaluated column, cast once to the column's SQL type.
pub struct ValueReader {
    array: ArrayRef,
    ty: SqlType,
    /// A nested type's parts: an ARRAY's elements, a MAP's keys and values, a ROW's fields.
    parts: Vec<ValueReader>,
}

impl ValueReader {
    /// Casts `array` to `ty`'s Arrow type if needed (a nested array part by part, by
    /// position: Arrow names the parts of the same SQL type differently).
    pub fn new(array: &ArrayRef, ty: SqlType) -> Result<Self, arrow::error::ArrowError> {
        if let SqlType::Nested(n) = ty {
            return Self::nested(array, ty, n.get());
        }
        let array = if array.data_type() == &ty.arrow() {
            array.clone()
        } else {
            arrow::compute::cast(array, &ty.arrow())?
        };
        Ok(ValueReader {
            array,
            ty,
            parts: Vec::new(),
        })
    }

    fn nested(array: &ArrayRef, ty: SqlType, n: &Nested) -> Result<Self, arrow::error::ArrowError> {
        use arrow::array::AsArray;
        let wrong = || {
            arrow::error::ArrowError::CastError(format!(
                "cannot read a {} as {}",
                array.data_type(),
                ty.sql_name()
            ))
        };
        let parts = match (n, array.data_type()) {
            (Nested::Array(e), DataType::List(_)) => {
                vec![ValueReader::new(array.as_list::<i32>().values(), *e)?]
            }
            (Nested::Map(k, v), DataType::Map(..)) => {
                let m = array.as_map();
                vec![
                    ValueReader::new(m.keys(), *k)?,
                    ValueReader::new(m.values(), *v)?,
                ]
            }
            (Nested::Row(fields), DataType::Struct(f)) if f.len() == fields.len() => array
                .as_struct()
                .columns()
                .iter()
                .zip(fields)
                .map(|(c, (_, t))| ValueReader::new(c, *t))
                .collect::<Result<_, _>>()?,
            (_, DataType::Null) => {
                return Ok(ValueReader {
                    array: array.clone(),
                    ty,
                    parts: Vec::new(),
                });
            }
            _ => return Err(wrong()),
        };
        Ok(ValueReader {
            array: array.clone(),
            ty,
            parts,
        })
    }

    /// The nested value at row `i` (not NULL).
    fn get_nested(&self, i: usize) -> Value {
        use arrow::array::AsArray;
        match self.array.data_type() {
            DataType::List(_) => {
                let offsets = self.array.as_list::<i32>().value_offsets();
                let (from, to) = (offsets[i] as usize, offsets[i + 1] as usize);
                Value::Array(Arc::new((from..to).map(|j| self.parts[0].get(j)).collect()))
            }
            DataType::Map(..) => {
                let offsets = self.array.as_map().value_offsets();
                let (from, to) = (offsets[i] as usize, offsets[i + 1] as usize);
                Value::Map(Arc::new(
                    (from..to)
                        .map(|j| (self.parts[0].get(j), self.parts[1].get(j)))
                        .collect(),
                ))
            }
            _ => Value::Row(Arc::new(self.parts.iter().map(|p| p.get(i)).collect())),
        }
    }

    /// The value at row `i`.
    pub fn get(&self, i: usize) -> Value {
        let array = &self.array;
        if array.is_null(i) {
            return Value::Null;
        }
        match self.ty {
            SqlType::Boolean => Value::Bool(as_arr::<BooleanArray>(array).value(i)),
            SqlType::BigInt => Value::Int(as_arr::<Int64Array>(array).value(i)),
            SqlType::Int => Value::Int(as_arr::<Int32Array>(array).value(i).into()),
            SqlType::SmallInt => Value::Int(as_arr::<Int16Array>(array).value(i).into()),
            SqlType::TinyInt => Value::Int(as_arr::<Int8Array>(array).value(i).into()),
            SqlType::Double => Value::Double(as_arr::<Float64Array>(array).value(i)),
            SqlType::String => Value::Str(as_arr::<StringArray>(array).value(i).to_string()),
            SqlType::Timestamp => Value::Ts(as_arr::<TimestampMillisecondArray>(array).value(i)),
            SqlType::Decimal(_, s) => Value::Decimal(as_arr::<Decimal128Array>(array).value(i), s),
            SqlType::Float => Value::Float(as_arr::<Float32Array>(array).value(i)),
            SqlType::Date => Value::Date(as_arr::<Date32Array>(array).value(i)),
            SqlType::Time(0) => Value::Time(as_arr::<Time32SecondArray>(array).value(i) * 1000, 0),
            SqlType::Time(p) => Value::Time(as_arr::<Time32MillisecondArray>(array).value(i), p),
            SqlType::Bytes => Value::Bytes(as_arr::<BinaryArray>(array).value(i).to_vec()),
            SqlType::Nested(_) => self.get_nested(i),
        }
    }
}

/// Reads column `array` (cast to `ty` first) into `rows[i].0`, appending one value per row.
pub fn append_column(
    array: &ArrayRef,
    ty: SqlType,
    rows: &mut [Row],
) -> Result<(), arrow::error::ArrowError> {
    let reader = ValueReader::new(array, ty)?;
    for (i, r) in rows.iter_mut().enumerate() {
        r.0.push(reader.get(i));
    }
    Ok(())
}

/// Writes `vals` into `buf` (replacing its contents) as the engine serializes a key of type
/// `Vec<Value>` (postcard: a varint length, then per value its variant's index and payload,
/// integers zigzag varints), without serde: window operators write every row's key.
pub(crate) fn write_key<'a>(vals: impl ExactSizeIterator<Item = &'a Value>, buf: &mut Vec<u8>) {
    buf.clear();
    write_values(vals, buf);
}

/// Appends `vals` as postcard writes a `Vec<Value>` (see [`write_key`]).
fn write_values<'a>(vals: impl ExactSizeIterator<Item = &'a Value>, buf: &mut Vec<u8>) {
    fn varint(mut n: u64, buf: &mut Vec<u8>) {
        while n >= 0x80 {
            buf.push((n as u8) | 0x80);
            n >>= 7;
        }
        buf.push(n as u8);
    }
    let zigzag = |i: i64| ((i << 1) ^ (i >> 63)) as u64;
    varint(vals.len() as u64, buf);
    // The variant indexes follow the declaration order of `Value`.
    for v in vals {
        match v {
            Value::Null => buf.push(0),
            Value::Bool(b) => buf.extend_from_slice(&[1, u8::from(*b)]),
            Value::Int(i) => {
                buf.push(2);
                varint(zigzag(*i), buf);
            }
            Value::Double(d) => {
                buf.push(3);
                buf.extend_from_slice(&d.to_le_bytes());
            }
            Value::Str(s) => {
                buf.push(4);
                varint(s.len() as u64, buf);
                buf.extend_from_slice(s.as_bytes());
            }
            Value::Ts(t) => {
                buf.push(5);
                varint(zigzag(*t), buf);
            }
            Value::Decimal(v, s) => {
                // postcard writes an i128 as a zigzag varint of 128 bits, a u8 as its byte.
                buf.push(6);
                let mut z = ((*v << 1) ^ (*v >> 127)) as u128;
                while z >= 0x80 {
                    buf.push((z as u8) | 0x80);
                    z >>= 7;
                }
                buf.push(z as u8);
                buf.push(*s);
            }
            Value::Float(f) => {
                buf.push(7);
                buf.extend_from_slice(&f.to_le_bytes());
            }
            Value::Date(d) => {
                buf.push(8);
                varint(zigzag(i64::from(*d)), buf);
            }
            Value::Time(ms, p) => {
                buf.push(9);
                varint(zigzag(i64::from(*ms)), buf);
                buf.push(*p);
            }
            Value::Bytes(b) => {
                buf.push(10);
                varint(b.len() as u64, buf);
                buf.extend_from_slice(b);
            }
            Value::Array(a) => {
                buf.push(11);
                write_values(a.iter(), buf);
            }
            Value::Map(m) => {
                // A sequence of (key, value) tuples ordered by key (as `shared_map` writes
                // them): the length, then each pair in place.
                buf.push(12);
                varint(m.len() as u64, buf);
                for (k, v) in sorted_entries(m) {
                    let pair = [k, v];
                    let at = buf.len();
                    write_values(pair.into_iter(), buf);
                    buf.remove(at); // a tuple has no length prefix
                }
            }
            Value::Row(r) => {
                buf.push(13);
                write_values(r.iter(), buf);
            }
        }
    }
}

fn as_arr<T: 'static>(a: &ArrayRef) -> &T {
    a.as_any()
        .downcast_ref::<T>()
        .expect("array was cast to the column's type")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_written_as_the_engine_serializes_them() {
        let ints = [
            0,
            1,
            -1,
            63,
            64,
            -64,
            -65,
            127,
            128,
            300,
            -300,
            1 << 35,
            i64::MAX,
            i64::MAX >> 1,
            i64::MIN,
        ];
        // Around every varint length: 7 bits a byte, zigzag doubling the magnitude.
        let edges = (1..10).flat_map(|k| {
            let p = 1i64 << (7 * k - 1).min(62);
            [p - 1, p, -p, -p - 1]
        });
        let ints: Vec<i64> = ints.into_iter().chain(edges).collect();
        let mut values = vec![Value::Null, Value::Bool(false), Value::Bool(true)];
        values.extend(ints.iter().map(|&i| Value::Int(i)));
        values.extend(ints.iter().map(|&i| Value::Ts(i)));
        values.extend([0.0, -0.0, 1.5, f64::NAN, f64::INFINITY].map(Value::Double));
        values.extend([0.0, -0.0, 0.1, f32::MIN_POSITIVE, f32::NAN, f32::MAX].map(Value::Float));
        values.extend([0, 1, -1, 19_782, -719_162, 2_932_896, i32::MIN, i32::MAX].map(Value::Date));
        values.extend(
            [(0, 0), (45_296_000, 0), (86_399_999, 3), (1, 9)].map(|(t, p)| Value::Time(t, p)),
        );
        values.extend([vec![], vec![0], vec![0xff; 200]].map(Value::Bytes));
        values.extend([
            Value::Array(Arc::new(vec![
                Value::Int(1),
                Value::Null,
                Value::Str("x".into()),
            ])),
            Value::Array(Arc::new(Vec::new())),
            Value::Map(Arc::new(vec![
                (Value::Str("a".into()), Value::Int(1)),
                (Value::Str("b".into()), Value::Null),
            ])),
            Value::Row(Arc::new(vec![
                Value::Array(Arc::new(vec![Value::Bool(true)])),
                Value::Decimal(150, 2),
            ])),
        ]);
        values.extend(
            [
                0,
                1,
                -1,
                150,
                i128::from(i64::MAX) * 1000,
                -(10i128.pow(38) - 1),
            ]
            .map(|v| Value::Decimal(v, 2)),
        );
        values.extend(
            [
                "",
                "a",
                "Ä€",
                &"x".repeat(127),
                &"y".repeat(128),
                &"é".repeat(10_000),
            ]
            .map(|s| Value::Str(s.to_string())),
        );
        let (mut ours, mut theirs) = (vec![9], Vec::new());
        for v in &values {
            let key = vec![v.clone()];
            write_key(key.iter(), &mut ours);
            weir_engine::keygroup::serialize_key(&key, &mut theirs);
            assert_eq!(ours, theirs, "{v:?}");
        }
        for n in [0, 2, 200] {
            let key: Vec<Value> = values.iter().cycle().take(n).cloned().collect();
            write_key(key.iter(), &mut ours);
            weir_engine::keygroup::serialize_key(&key, &mut theirs);
            assert_eq!(ours, theirs, "{n} values");
        }
    }

    #[test]
    fn a_value_is_as_large_as_before_decimals() {
        // 32 bytes, as when the largest variant was a String: rows are vectors of values,
        // and every operator moves them.
        assert_eq!(std::mem::size_of::<Value>(), 32);
    }

    #[test]
    fn times_and_bytes_print_as_flinks_print_connector_and_cast_write_them() {
        // Flink 2.3's `print`: `+I[12:34, 00:00, 12:34:56.050, [104, -1], []]`.
        let row = Row(vec![
            Value::Time(45_240_000, 0),
            Value::Time(0, 3),
            Value::Time(45_296_050, 3),
            Value::Bytes(vec![104, 0xff]),
            Value::Bytes(Vec::new()),
        ]);
        assert_eq!(
            row.to_string(),
            "+I[12:34, 00:00, 12:34:56.050, [104, -1], []]"
        );
        // Flink's CAST(t AS STRING): at least one fractional digit for TIME(1..3).
        assert_eq!(format_time(45_296_050, 3), "12:34:56.05");
        assert_eq!(format_time(0, 3), "00:00:00.0");
        assert_eq!(format_time(86_399_999, 0), "23:59:59");
        assert_eq!(format_time(86_399_999, 3), "23:59:59.999");
    }

    #[test]
    fn print_writes_timestamps_nulls_and_nested_values_as_flinks_print_connector() {
        // Flink 2.3's `print` of the same values:
        // `+I[[1, null], {a=1}, +I[1, x], true, 2026-01-01T00:01, 2026-01-01T00:01:00.500,
        // [2026-01-01T00:01], null, 2026-01-01T00:00:05, 0001-01-01T00:00]`.
        let row = Row(vec![
            Value::Array(Arc::new(vec![Value::Int(1), Value::Null])),
            Value::Map(Arc::new(vec![(Value::Str("a".into()), Value::Int(1))])),
            Value::Row(Arc::new(vec![Value::Int(1), Value::Str("x".into())])),
            Value::Bool(true),
            Value::Ts(1_767_225_660_000),
            Value::Ts(1_767_225_660_500),
            Value::Array(Arc::new(vec![Value::Ts(1_767_225_660_000)])),
            Value::Null,
            Value::Ts(1_767_225_605_000),
            Value::Ts(-62_135_596_800_000),
        ]);
        assert_eq!(
            row.to_string(),
            "+I[[1, null], {a=1}, +I[1, x], true, 2026-01-01T00:01, 2026-01-01T00:01:00.500, \
             [2026-01-01T00:01], null, 2026-01-01T00:00:05, 0001-01-01T00:00]"
        );
    }

    #[test]
    fn nested_values_go_through_arrow_and_back_unchanged() {
        use crate::nested::{array_of, map_of, row_of};
        let row_ty = row_of(vec![
            ("x".into(), SqlType::Int),
            ("y".into(), SqlType::String),
        ]);
        let cols = vec![
            Column {
                name: "a".into(),
                ty: array_of(array_of(SqlType::BigInt)),
            },
            Column {
                name: "m".into(),
                ty: map_of(SqlType::String, SqlType::Decimal(5, 2)),
            },
            Column {
                name: "r".into(),
                ty: row_ty,
            },
        ];
        let rows = vec![
            Row(vec![
                Value::Array(Arc::new(vec![
                    Value::Array(Arc::new(vec![Value::Int(1), Value::Null])),
                    Value::Null,
                    Value::Array(Arc::new(vec![])),
                ])),
                Value::Map(Arc::new(vec![(
                    Value::Str("k".into()),
                    Value::Decimal(150, 2),
                )])),
                Value::Row(Arc::new(vec![Value::Int(7), Value::Null])),
            ]),
            Row(vec![Value::Null, Value::Null, Value::Null]),
        ];
        let batch = rows_to_batch(&cols, &arrow_schema(&cols), rows.iter()).unwrap();
        let mut back: Vec<Row> = vec![Row(Vec::new()), Row(Vec::new())];
        for (i, c) in cols.iter().enumerate() {
            append_column(batch.column(i), c.ty, &mut back).unwrap();
        }
        assert_eq!(back, rows);
        assert_eq!(row_ty.sql_name(), "ROW<`x` INT, `y` STRING>");
    }

    #[test]
    fn maps_are_equal_in_any_order_and_hash_alike() {
        use std::hash::BuildHasher;
        let a = Value::Map(Arc::new(vec![
            (Value::Str("a".into()), Value::Int(1)),
            (Value::Str("b".into()), Value::Int(2)),
        ]));
        let b = Value::Map(Arc::new(vec![
            (Value::Str("b".into()), Value::Int(2)),
            (Value::Str("a".into()), Value::Int(1)),
        ]));
        assert_eq!(a, b);
        let s = std::collections::hash_map::RandomState::new();
        assert_eq!(s.hash_one(&a), s.hash_one(&b));
        // As keys (GROUP BY a MAP): the same bytes, here and in the engine's serializer.
        let (mut ka, mut kb) = (Vec::new(), Vec::new());
        write_key([&a].into_iter(), &mut ka);
        write_key([&b].into_iter(), &mut kb);
        assert_eq!(ka, kb);
        weir_engine::keygroup::serialize_key(&vec![b.clone()], &mut kb);
        assert_eq!(ka, kb);
        assert_ne!(
            a,
            Value::Map(Arc::new(vec![(Value::Str("a".into()), Value::Int(1))]))
        );
    }

    #[test]
    fn timestamps_format_like_flinks_sql_client() {
        assert_eq!(
            format_timestamp(1_767_225_660_500),
            "2026-01-01 00:01:00.500"
        );
        assert_eq!(format_timestamp(0), "1970-01-01 00:00:00.000");
    }
}
