//! Record formats (`'format' = 'json' | 'csv' | 'raw'`) for connectors whose records are
//! byte strings, such as Kafka's keys and values: one record's bytes decode into the
//! values of some of a table's columns, and a row's values encode into one record. The JSON
//! decoder is the filesystem connector's ([`crate::json`]); CSV fields and JSON strings
//! convert with [`crate::connectors::parse_text`], so every connector reads text the same way.

use crate::connectors::{PhysicalColumn, parse_text};
use crate::json::JsonRowDecoder;
use crate::nested::Nested;
use crate::value::{SqlType, Value};

/// The formats a record-oriented connector can read and write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per record, fields named as the columns.
    Json,
    /// One CSV line per record (no header), fields in column order.
    Csv,
    /// The record's bytes as the value of a single STRING column (UTF-8).
    Raw,
}

/// The format names, as a message lists them.
pub const FORMATS: &str = "'json', 'csv', 'raw'";

impl Format {
    /// The format named `name` (`None`: not one Weir knows).
    pub fn named(name: &str) -> Option<Format> {
        match name {
            "json" => Some(Format::Json),
            "csv" => Some(Format::Csv),
            "raw" => Some(Format::Raw),
            _ => None,
        }
    }

    /// Why `cols` cannot be carried by this format, if they cannot (`raw` holds exactly one
    /// STRING column).
    pub fn check_columns(self, cols: &[PhysicalColumn]) -> Result<(), String> {
        if self == Format::Raw && !matches!(cols, [c] if c.col.ty == SqlType::String) {
            return Err(format!(
                "format 'raw' holds exactly one STRING column, but the format's columns are [{}]",
                cols.iter()
                    .map(|c| format!("{} {}", c.field, c.col.ty.sql_name()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        Ok(())
    }

    /// A decoder of records into the values of `cols` whose `read` flag is set, in order.
    pub fn decoder(self, table: &str, cols: &[PhysicalColumn], read: &[bool]) -> RecordDecoder {
        RecordDecoder {
            kind: match self {
                Format::Json => Kind::Json(Box::new(JsonRowDecoder::new(table, cols, read, 0))),
                Format::Csv => Kind::Csv,
                Format::Raw => Kind::Raw,
            },
            cols: cols.to_vec(),
            read: read.to_vec(),
        }
    }

    /// Encodes the values of `cols` (one per column, in order) as one record.
    pub fn encode(self, cols: &[PhysicalColumn], vals: &[&Value]) -> Vec<u8> {
        match self {
            Format::Json => json_object(
                cols.iter()
                    .zip(vals.iter().copied())
                    .map(|(c, v)| (c.field.as_str(), v, c.col.ty)),
            ),
            Format::Csv => {
                let mut w = csv::WriterBuilder::new()
                    .has_headers(false)
                    .terminator(csv::Terminator::Any(b'\n'))
                    .from_writer(Vec::new());
                let fields: Vec<String> = vals
                    .iter()
                    .map(|v| match v {
                        Value::Null => String::new(),
                        // As Flink's csv format: `12:34:56.5`, Base64.
                        Value::Time(ms, p) => json_time(*ms, *p),
                        Value::Bytes(b) => crate::builtins::base64(b),
                        // As Flink's csv format: an ARRAY's elements and a ROW's fields
                        // joined by `;` (its array-element delimiter), NULL as nothing.
                        Value::Array(parts) | Value::Row(parts) => parts
                            .iter()
                            .map(|p| crate::builtins::flink_text(p).unwrap_or_default())
                            .collect::<Vec<_>>()
                            .join(";"),
                        // The JSON form of a timestamp (`2026-01-01 00:00:00.000`) parses back.
                        Value::Ts(t) => crate::value::format_timestamp(*t),
                        other => other.to_string(),
                    })
                    .collect();
                w.write_record(&fields)
                    .expect("writing CSV into memory cannot fail");
                let mut out = w
                    .into_inner()
                    .expect("flushing CSV into memory cannot fail");
                if out.last() == Some(&b'\n') {
                    out.pop();
                }
                out
            }
            Format::Raw => match vals.first() {
                Some(Value::Null) | None => Vec::new(),
                Some(v) => v.to_string().into_bytes(),
            },
        }
    }
}

/// One JSON object of `fields`, written by hand: a DECIMAL is a number with its exact text
/// (`1.50`, as Flink writes it), which serde_json's 64-bit numbers cannot hold. Fields in
/// name order, as a `serde_json::Map` writes them.
/// Each field comes with its type, which names a ROW's fields.
pub(crate) fn json_object<'a>(
    fields: impl Iterator<Item = (&'a str, &'a Value, SqlType)>,
) -> Vec<u8> {
    let mut fields: Vec<_> = fields.collect();
    fields.sort_by(|a, b| a.0.cmp(b.0));
    let mut out = vec![b'{'];
    for (i, (name, v, ty)) in fields.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        serde_json::to_writer(&mut out, name).expect("a string serializes");
        out.push(b':');
        json_value(v, ty, &mut out);
    }
    out.push(b'}');
    out
}

/// Appends one value's JSON text (see [`json_object`]): an ARRAY as a JSON array, a MAP and
/// a ROW as an object (a MAP's keys as their text, a ROW's fields in their order), as
/// Flink's json format writes them.
fn json_value(v: &Value, ty: SqlType, out: &mut Vec<u8>) {
    let nested = match ty {
        SqlType::Nested(n) => Some(n.get()),
        _ => None,
    };
    match (v, nested) {
        (Value::Array(items), Some(Nested::Array(e))) => {
            out.push(b'[');
            for (i, x) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                json_value(x, *e, out);
            }
            out.push(b']');
            return;
        }
        (Value::Map(entries), Some(Nested::Map(_, vt))) => {
            out.push(b'{');
            for (i, (k, x)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                let key = crate::builtins::flink_text(k).unwrap_or_default();
                serde_json::to_writer(&mut *out, &key).expect("a string serializes");
                out.push(b':');
                json_value(x, *vt, out);
            }
            out.push(b'}');
            return;
        }
        (Value::Row(values), Some(Nested::Row(fields))) => {
            out.push(b'{');
            for (i, (x, (name, t))) in values.iter().zip(fields).enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, name).expect("a string serializes");
                out.push(b':');
                json_value(x, *t, out);
            }
            out.push(b'}');
            return;
        }
        _ => {}
    }
    match v {
        Value::Decimal(x, s) => out.extend_from_slice(crate::decimal::format(*x, *s).as_bytes()),
        // Java's Float.toString (`0.1`, `1.0E-5`), as Jackson writes a float; the
        // widened double's digits (`0.10000000149011612`) would be another number.
        Value::Float(f) if f.is_finite() => {
            out.extend_from_slice(crate::builtins::java_float(*f).as_bytes())
        }
        // Java's Double.toString (`1.6325E8`, `0.001`, `3.0`), as Jackson writes a double and
        // as CAST and `print` write it: one formatter for all three.
        Value::Double(d) if d.is_finite() => {
            out.extend_from_slice(crate::builtins::java_double(*d).as_bytes())
        }
        // NaN and the infinities as strings (`"NaN"`, `"-Infinity"`), as Flink's Jackson
        // writes them; they read back into a DOUBLE or FLOAT column.
        Value::Double(d) => {
            serde_json::to_writer(out, &crate::builtins::java_double(*d)).expect("a string")
        }
        Value::Float(f) => {
            serde_json::to_writer(out, &crate::builtins::java_float(*f)).expect("a string")
        }
        v => serde_json::to_writer(out, &v.to_json()).expect("a plain JSON value serializes"),
    }
}

/// A TIME as Flink's json and csv formats write it: `HH:mm:ss`, then the fraction without
/// its trailing zeros, if any (`12:34:56.5`).
pub(crate) fn json_time(ms: i32, _p: u8) -> String {
    let mut text = crate::value::format_time(ms, 3);
    if text.ends_with(".0") {
        text.truncate(text.len() - 2);
    }
    text
}

/// A value as a partition directory holds it (None: NULL): a string's (or a timestamp's)
/// text, any other value's JSON text as the `json` format writes it (a DECIMAL `1.50`).
pub(crate) fn partition_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::Str(s) => Some(s.clone()),
        Value::Ts(t) => Some(crate::value::format_timestamp(*t)),
        v => {
            let mut out = Vec::new();
            json_value(v, SqlType::String, &mut out);
            Some(String::from_utf8(out).expect("JSON text is UTF-8"))
        }
    }
}

/// The values of the read columns of a CSV record whose `i`-th field is `field(i)` (a
/// missing field is empty, which is NULL but for STRING columns).
pub(crate) fn csv_values<'a>(
    cols: &[PhysicalColumn],
    read: &[bool],
    field: impl Fn(usize) -> Option<&'a str>,
) -> Result<Vec<Value>, String> {
    cols.iter()
        .enumerate()
        .filter(|&(i, _)| read[i])
        .map(|(i, c)| {
            let s = field(i).unwrap_or("");
            parse_text(s, c.col.ty).ok_or_else(|| {
                format!(
                    "CSV field {} ('{}') = '{s}' is not a valid {}",
                    i + 1,
                    c.field,
                    c.col.ty.sql_name()
                )
            })
        })
        .collect()
}

enum Kind {
    Json(Box<JsonRowDecoder>),
    Csv,
    Raw,
}

/// Decodes records of one format (one decoder per reader: it keeps the JSON decoder's field
/// order guess).
pub struct RecordDecoder {
    kind: Kind,
    cols: Vec<PhysicalColumn>,
    read: Vec<bool>,
}

impl RecordDecoder {
    /// The values of the read columns; the error says what does not fit.
    pub fn decode(&mut self, bytes: &[u8]) -> Result<Vec<Value>, String> {
        match &mut self.kind {
            Kind::Json(d) => {
                let trimmed = bytes.trim_ascii();
                if trimmed.is_empty() {
                    return Err("the record is empty, not a JSON object".into());
                }
                d.decode(trimmed).map(|r| r.0)
            }
            Kind::Csv => {
                let mut r = csv::ReaderBuilder::new()
                    .has_headers(false)
                    .flexible(true)
                    .from_reader(bytes.trim_ascii_end());
                let mut rec = csv::StringRecord::new();
                match r.read_record(&mut rec) {
                    Ok(_) => {}
                    Err(e) => return Err(format!("not a CSV line: {e}")),
                }
                csv_values(&self.cols, &self.read, |i| rec.get(i))
            }
            Kind::Raw => Ok(if self.read.first().copied().unwrap_or(false) {
                vec![Value::Str(String::from_utf8_lossy(bytes).into_owned())]
            } else {
                Vec::new()
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::Column;

    fn cols(spec: &[(&str, SqlType)]) -> Vec<PhysicalColumn> {
        spec.iter()
            .map(|(f, ty)| PhysicalColumn {
                col: Column {
                    name: f.to_string(),
                    ty: *ty,
                },
                field: f.to_string(),
                metadata: None,
                is_virtual: false,
                span: sqlparser::tokenizer::Span::empty(),
            })
            .collect()
    }

    #[test]
    fn csv_records_round_trip_quoted_commas_nulls_and_timestamps() {
        let c = cols(&[
            ("name", SqlType::String),
            ("n", SqlType::BigInt),
            ("at", SqlType::Timestamp),
            ("x", SqlType::Double),
        ]);
        let vals = [
            Value::Str("a, \"b\"".into()),
            Value::Null,
            Value::Ts(1_767_225_661_005),
            Value::Double(2.5),
        ];
        let bytes = Format::Csv.encode(&c, &vals.iter().collect::<Vec<_>>());
        assert_eq!(
            String::from_utf8_lossy(&bytes),
            r#""a, ""b""",,2026-01-01 00:01:01.005,2.5"#
        );
        let mut d = Format::Csv.decoder("t", &c, &[true; 4]);
        assert_eq!(d.decode(&bytes).unwrap(), vals);
        // Only the read columns, in order.
        let mut d = Format::Csv.decoder("t", &c, &[false, true, false, true]);
        assert_eq!(
            d.decode(b"z,7,,1.5").unwrap(),
            [Value::Int(7), Value::Double(1.5)]
        );
        assert_eq!(
            d.decode(b"z,seven").unwrap_err(),
            "CSV field 2 ('n') = 'seven' is not a valid BIGINT"
        );
    }

    #[test]
    fn json_records_decode_by_name_and_encode_every_column() {
        let c = cols(&[("id", SqlType::BigInt), ("who", SqlType::String)]);
        let mut d = Format::Json.decoder("t", &c, &[true, true]);
        assert_eq!(
            d.decode(b" {\"who\": \"x\", \"id\": 3}\n").unwrap(),
            [Value::Int(3), Value::Str("x".into())]
        );
        assert!(d.decode(b"").unwrap_err().contains("empty"));
        let bytes = Format::Json.encode(&c, &[&Value::Int(3), &Value::Null]);
        assert_eq!(bytes, br#"{"id":3,"who":null}"#);
    }

    #[test]
    fn decimals_keep_their_digits_through_json_and_csv_records() {
        let c = cols(&[
            ("price", SqlType::Decimal(10, 2)),
            ("a \"quoted\" name", SqlType::String),
            ("id", SqlType::BigInt),
        ]);
        let vals = [
            Value::Decimal(150, 2),
            Value::Str("x".into()),
            Value::Int(-4),
        ];
        // Fields in name order, as before decimals were written by hand.
        let bytes = Format::Json.encode(&c, &vals.iter().collect::<Vec<_>>());
        assert_eq!(
            String::from_utf8_lossy(&bytes),
            r#"{"a \"quoted\" name":"x","id":-4,"price":1.50}"#
        );
        let mut d = Format::Json.decoder("t", &c, &[true; 3]);
        assert_eq!(d.decode(&bytes).unwrap(), vals);
        // Text is rounded HALF_UP to the scale; too many digits is NULL (Flink's formats).
        assert_eq!(
            d.decode(br#"{"price": "2.675"}"#).unwrap()[0],
            Value::Decimal(268, 2)
        );
        assert_eq!(
            d.decode(br#"{"price": 123456789.5}"#).unwrap()[0],
            Value::Null
        );
        let csv = Format::Csv.encode(&c, &vals.iter().collect::<Vec<_>>());
        assert_eq!(String::from_utf8_lossy(&csv), "1.50,x,-4");
        let mut d = Format::Csv.decoder("t", &c, &[true; 3]);
        assert_eq!(d.decode(&csv).unwrap(), vals);
        assert!(d.decode(b"1.5x,y,1").is_err());
    }

    #[test]
    fn floats_and_dates_go_through_json_and_csv_records_as_flink_writes_them() {
        let c = cols(&[("f", SqlType::Float), ("d", SqlType::Date)]);
        // 2024-02-29 is day 19782; 0.1 is the float nearest it, written with its own digits.
        let vals = [Value::Float(0.1), Value::Date(19_782)];
        let bytes = Format::Json.encode(&c, &vals.iter().collect::<Vec<_>>());
        assert_eq!(
            String::from_utf8_lossy(&bytes),
            r#"{"d":"2024-02-29","f":0.1}"#
        );
        let mut d = Format::Json.decoder("t", &c, &[true; 2]);
        assert_eq!(d.decode(&bytes).unwrap(), vals);
        let csv = Format::Csv.encode(&c, &vals.iter().collect::<Vec<_>>());
        assert_eq!(String::from_utf8_lossy(&csv), "0.1,2024-02-29");
        let mut d = Format::Csv.decoder("t", &c, &[true; 2]);
        assert_eq!(d.decode(&csv).unwrap(), vals);
        assert_eq!(
            d.decode(b"1.0E-5,1969-12-31").unwrap(),
            [Value::Float(1.0e-5), Value::Date(-1)]
        );
        assert_eq!(
            d.decode(b"0.5,2023-02-29").unwrap_err(),
            "CSV field 2 ('d') = '2023-02-29' is not a valid DATE"
        );
    }

    #[test]
    fn times_bytes_and_doubles_go_through_json_and_csv_records_as_flink_writes_them() {
        // Flink 2.3 wrote these (json and csv formats of the filesystem connector).
        let c = cols(&[
            ("a", SqlType::Time(0)),
            ("b", SqlType::Time(3)),
            ("c", SqlType::Bytes),
            ("d", SqlType::Double),
            ("e", SqlType::Double),
        ]);
        let vals = [
            Value::Time(45_296_000, 0),
            Value::Time(45_296_500, 3),
            Value::Bytes(vec![0x68, 0xff]),
            Value::Double(163_250_000.0),
            Value::Double(0.001),
        ];
        let bytes = Format::Json.encode(&c, &vals.iter().collect::<Vec<_>>());
        assert_eq!(
            String::from_utf8_lossy(&bytes),
            r#"{"a":"12:34:56","b":"12:34:56.5","c":"aP8=","d":1.6325E8,"e":0.001}"#
        );
        let mut d = Format::Json.decoder("t", &c, &[true; 5]);
        assert_eq!(d.decode(&bytes).unwrap(), vals);
        let csv = Format::Csv.encode(&c, &vals.iter().collect::<Vec<_>>());
        assert_eq!(
            String::from_utf8_lossy(&csv),
            "12:34:56,12:34:56.5,aP8=,1.6325E8,0.001"
        );
        let mut d = Format::Csv.decoder("t", &c, &[true; 5]);
        assert_eq!(d.decode(&csv).unwrap(), vals);
        // NaN and infinities are strings in JSON (Flink writes `"g":"NaN"`) and read back.
        let special = [Value::Double(f64::NAN), Value::Double(f64::NEG_INFINITY)];
        let two = &c[3..];
        let bytes = Format::Json.encode(two, &special.iter().collect::<Vec<_>>());
        assert_eq!(
            String::from_utf8_lossy(&bytes),
            r#"{"d":"NaN","e":"-Infinity"}"#
        );
        let mut j = Format::Json.decoder("t", two, &[true; 2]);
        assert_eq!(j.decode(&bytes).unwrap(), special);
        // A TIME read into TIME(0) loses its fraction; empty BYTES are no bytes, as Flink
        // writes them; text that is no time, or no Base64, is a bad record naming the field.
        assert_eq!(
            d.decode(b"23:59:59.999,00:00,,1,2").unwrap()[..3],
            [
                Value::Time(86_399_000, 0),
                Value::Time(0, 3),
                Value::Bytes(Vec::new())
            ]
        );
        assert_eq!(
            d.decode(b"24:00:00,,,,").unwrap_err(),
            "CSV field 1 ('a') = '24:00:00' is not a valid TIME(0)"
        );
        assert_eq!(
            d.decode(b",,not base64!,,").unwrap_err(),
            "CSV field 3 ('c') = 'not base64!' is not a valid BYTES"
        );
    }

    #[test]
    fn raw_holds_exactly_one_string_column() {
        let one = cols(&[("line", SqlType::String)]);
        assert!(Format::Raw.check_columns(&one).is_ok());
        let err = Format::Raw
            .check_columns(&cols(&[("n", SqlType::BigInt)]))
            .unwrap_err();
        assert!(err.contains("[n BIGINT]"), "{err}");
        let mut d = Format::Raw.decoder("t", &one, &[true]);
        assert_eq!(d.decode(b"a b,c").unwrap(), [Value::Str("a b,c".into())]);
        assert_eq!(Format::Raw.encode(&one, &[&Value::Str("x".into())]), b"x");
    }
}
