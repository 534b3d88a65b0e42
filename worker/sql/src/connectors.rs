//! The SQL connector registry: `'connector' = '…'` in `CREATE TABLE … WITH (…)` picks a
//! source or sink here. Sources produce rows of the table's physical columns.

use crate::changelog::ChangeRow;
use crate::error::{Result, SqlError};
use crate::value::{Column, Row, SqlType, Value};
use rand::Rng;
use rand::distributions::Alphanumeric;
use sqlparser::tokenizer::Span;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use weir_engine::api::{DataStream, StreamExecutionEnvironment};
use weir_engine::config::DecodeErrorPolicy;
use weir_engine::connectors::{BlackholeSink, DataGen, FileSink, FileSource, PrintSink};
use weir_engine::runtime::Rec;

/// Connectors usable as sources.
pub const SOURCES: &[&str] = &["datagen", "filesystem"];
/// Connectors usable as sinks.
pub const SINKS: &[&str] = &["print", "blackhole", "filesystem"];

/// A table's connector options with positions, for validation errors.
pub struct Options<'a> {
    /// Table name, for messages.
    pub table: &'a str,
    /// Options as written.
    pub map: &'a BTreeMap<String, String>,
    /// Where each key was written.
    pub spans: &'a BTreeMap<String, Span>,
    /// Where the table was declared.
    pub table_span: Span,
}

impl Options<'_> {
    fn err(&self, key: &str, msg: impl Into<String>) -> SqlError {
        SqlError::at(self.spans.get(key).copied().unwrap_or(self.table_span), msg)
    }

    /// The connector name.
    pub fn connector(&self) -> Result<&str> {
        self.map
            .get("connector")
            .map(String::as_str)
            .ok_or_else(|| {
                SqlError::at(
                    self.table_span,
                    format!(
                        "table '{}' has no 'connector' option; add WITH ('connector' = '…')",
                        self.table
                    ),
                )
            })
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.map.get(key).map(String::as_str)
    }

    fn required(&self, key: &str) -> Result<&str> {
        self.get(key).ok_or_else(|| {
            SqlError::at(
                self.table_span,
                format!("table '{}' needs the option '{key}'", self.table),
            )
        })
    }

    fn number<T: std::str::FromStr>(&self, key: &str) -> Result<Option<T>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.trim().parse().map(Some).map_err(|_| {
                self.err(key, format!("option '{key}' = '{v}' is not a valid number"))
            }),
        }
    }

    fn check_known(&self, known: impl Fn(&str) -> bool, connector: &str) -> Result<()> {
        for k in self.map.keys() {
            if k != "connector" && !known(k) {
                return Err(self.err(
                    k,
                    format!("unknown option '{k}' for connector '{connector}' (see docs/sql.md)"),
                ));
            }
        }
        Ok(())
    }
}

/// Parses text as a value of `ty` (CSV fields, JSON strings).
pub fn parse_text(s: &str, ty: SqlType) -> Option<Value> {
    let s = s.trim();
    Some(match ty {
        SqlType::String => Value::Str(s.to_string()),
        _ if s.is_empty() => Value::Null,
        SqlType::Boolean => Value::Bool(s.eq_ignore_ascii_case("true")),
        SqlType::BigInt => Value::Int(s.parse().ok()?),
        SqlType::Double => Value::Double(s.parse().ok()?),
        SqlType::Timestamp => Value::Ts(match s.parse::<i64>() {
            Ok(ms) => ms,
            Err(_) => parse_timestamp(s)?,
        }),
    })
}

/// Parses `YYYY-MM-DD[ T]HH:MM:SS[.fff][Z]` as UTC epoch milliseconds.
pub fn parse_timestamp(s: &str) -> Option<i64> {
    let s = s.trim_end_matches('Z');
    let (date, time) = s.split_once([' ', 'T']).unwrap_or((s, "00:00:00"));
    let mut d = date.splitn(3, '-').map(|x| x.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.splitn(3, ':').map(|x| x.parse::<i64>());
    let (hh, mm) = (t.next()?.ok()?, t.next()?.ok()?);
    let ss = t.next().map(|x| x.ok()).unwrap_or(Some(0))?;
    // Milliseconds: the first three fraction digits ("5" is 500, "123456" is 123).
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let ms = frac
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(3)
        .fold(0i64, |acc, b| acc * 10 + i64::from(b - b'0'));
    // days from civil (Howard Hinnant)
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 24 + hh) * 60 + mm) * 60_000 + ss * 1000 + ms)
}

/// One JSON-lines record as the filesystem source reads it: the object's fields in order,
/// flat (names and string values in two shared buffers), so decoding a line costs a few
/// allocations instead of a `serde_json::Value` tree with one per name and per string.
///
/// From JSON it deserializes as any JSON value; between tasks (postcard, when the source is
/// not chained to its decoder) it travels as the struct itself ([`JsonRecordWire`]).
#[derive(Debug, Clone, Default, serde::Serialize)]
struct JsonRecord {
    /// Field names, concatenated.
    names: String,
    /// String values and the JSON text of nested values, concatenated.
    text: String,
    /// Per field: where its name ends in `names`, and its value.
    fields: Vec<(u32, JsonScalar)>,
    /// The line's JSON text when it is not an object.
    not_object: Option<String>,
}

/// [`JsonRecord`]'s fields, as it is serialized between tasks.
#[derive(serde::Deserialize)]
struct JsonRecordWire {
    names: String,
    text: String,
    fields: Vec<(u32, JsonScalar)>,
    not_object: Option<String>,
}

/// A field value; strings and nested values point into [`JsonRecord::text`].
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
enum JsonScalar {
    Null,
    Bool(bool),
    I64(i64),
    U64(u64),
    F64(f64),
    Str(u32, u32),
    /// An array or object, as JSON text.
    Nested(u32, u32),
}

impl JsonRecord {
    fn name(&self, i: usize) -> &str {
        let start = if i == 0 {
            0
        } else {
            self.fields[i - 1].0 as usize
        };
        &self.names[start..self.fields[i].0 as usize]
    }

    /// The index of field `name`, trying `hint` first (records of a file usually share
    /// their field order).
    fn find(&self, name: &str, hint: usize) -> Option<usize> {
        if hint < self.fields.len() && self.name(hint) == name {
            return Some(hint);
        }
        (0..self.fields.len()).find(|&i| self.name(i) == name)
    }

    fn text(&self, start: u32, end: u32) -> &str {
        &self.text[start as usize..end as usize]
    }

    /// The value as JSON text, for messages.
    fn json_text(&self, v: JsonScalar) -> String {
        match v {
            JsonScalar::Str(a, b) => serde_json::Value::from(self.text(a, b)).to_string(),
            other => self.unquoted(other),
        }
    }

    /// A non-string value's JSON text (what a STRING column reads from it).
    fn unquoted(&self, v: JsonScalar) -> String {
        match v {
            JsonScalar::Null => "null".into(),
            JsonScalar::Bool(b) => b.to_string(),
            JsonScalar::I64(i) => i.to_string(),
            JsonScalar::U64(u) => u.to_string(),
            JsonScalar::F64(f) => serde_json::Number::from_f64(f)
                .map(|n| n.to_string())
                .unwrap_or_else(|| f.to_string()),
            JsonScalar::Str(a, b) | JsonScalar::Nested(a, b) => self.text(a, b).to_string(),
        }
    }

    /// Converts field value `v` to a value of `ty`, as the JSON format reads it.
    fn value(&self, v: JsonScalar, ty: SqlType) -> Option<Value> {
        use JsonScalar as J;
        Some(match (v, ty) {
            (J::Null, _) => Value::Null,
            (J::Str(a, b), _) => parse_text(self.text(a, b), ty)?,
            (J::Bool(b), SqlType::Boolean) => Value::Bool(b),
            (J::I64(i), SqlType::BigInt) => Value::Int(i),
            (J::U64(u), SqlType::BigInt) => Value::Int(i64::try_from(u).ok()?),
            (J::I64(i), SqlType::Double) => Value::Double(i as f64),
            (J::U64(u), SqlType::Double) => Value::Double(u as f64),
            (J::F64(f), SqlType::Double) => Value::Double(f),
            (J::I64(i), SqlType::Timestamp) => Value::Ts(i),
            (J::U64(u), SqlType::Timestamp) => Value::Ts(i64::try_from(u).ok()?),
            (other, SqlType::String) => Value::Str(self.unquoted(other)),
            _ => return None,
        })
    }
}

impl<'de> serde::Deserialize<'de> for JsonRecord {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        if d.is_human_readable() {
            return d.deserialize_any(RecordVisitor);
        }
        let w = <JsonRecordWire as serde::Deserialize>::deserialize(d)?;
        Ok(JsonRecord {
            names: w.names,
            text: w.text,
            fields: w.fields,
            not_object: w.not_object,
        })
    }
}

struct RecordVisitor;

impl RecordVisitor {
    fn not_object<E>(v: serde_json::Value) -> std::result::Result<JsonRecord, E> {
        Ok(JsonRecord {
            not_object: Some(v.to_string()),
            ..JsonRecord::default()
        })
    }
}

impl<'de> serde::de::Visitor<'de> for RecordVisitor {
    type Value = JsonRecord;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(
        self,
        mut map: A,
    ) -> std::result::Result<JsonRecord, A::Error> {
        let mut rec = JsonRecord {
            fields: Vec::with_capacity(map.size_hint().unwrap_or(8)),
            ..JsonRecord::default()
        };
        while map.next_key_seed(AppendStr(&mut rec.names))?.is_some() {
            let v = map.next_value_seed(FieldValue(&mut rec.text))?;
            rec.fields.push((rec.names.len() as u32, v));
        }
        Ok(rec)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(
        self,
        seq: A,
    ) -> std::result::Result<JsonRecord, A::Error> {
        use serde::Deserialize;
        let v = serde_json::Value::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))?;
        Self::not_object(v)
    }
    fn visit_bool<E>(self, v: bool) -> std::result::Result<JsonRecord, E> {
        Self::not_object(v.into())
    }
    fn visit_i64<E>(self, v: i64) -> std::result::Result<JsonRecord, E> {
        Self::not_object(v.into())
    }
    fn visit_u64<E>(self, v: u64) -> std::result::Result<JsonRecord, E> {
        Self::not_object(v.into())
    }
    fn visit_f64<E>(self, v: f64) -> std::result::Result<JsonRecord, E> {
        Self::not_object(v.into())
    }
    fn visit_str<E>(self, v: &str) -> std::result::Result<JsonRecord, E> {
        Self::not_object(v.into())
    }
    fn visit_unit<E>(self) -> std::result::Result<JsonRecord, E> {
        Self::not_object(serde_json::Value::Null)
    }
}

/// Deserializes a map key by appending it to a buffer.
struct AppendStr<'a>(&'a mut String);

impl<'de> serde::de::DeserializeSeed<'de> for AppendStr<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> serde::de::Visitor<'de> for AppendStr<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a field name")
    }
    fn visit_str<E>(self, v: &str) -> std::result::Result<(), E> {
        self.0.push_str(v);
        Ok(())
    }
}

/// Deserializes a field value, appending string (and nested) values to a buffer.
struct FieldValue<'a>(&'a mut String);

impl FieldValue<'_> {
    fn push(self, s: &str) -> (u32, u32) {
        let start = self.0.len() as u32;
        self.0.push_str(s);
        (start, self.0.len() as u32)
    }
}

impl<'de> serde::de::DeserializeSeed<'de> for FieldValue<'_> {
    type Value = JsonScalar;
    fn deserialize<D: serde::Deserializer<'de>>(
        self,
        d: D,
    ) -> std::result::Result<JsonScalar, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for FieldValue<'_> {
    type Value = JsonScalar;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> std::result::Result<JsonScalar, E> {
        Ok(JsonScalar::Null)
    }
    fn visit_none<E>(self) -> std::result::Result<JsonScalar, E> {
        Ok(JsonScalar::Null)
    }
    fn visit_bool<E>(self, v: bool) -> std::result::Result<JsonScalar, E> {
        Ok(JsonScalar::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> std::result::Result<JsonScalar, E> {
        Ok(JsonScalar::I64(v))
    }
    fn visit_u64<E>(self, v: u64) -> std::result::Result<JsonScalar, E> {
        Ok(JsonScalar::U64(v))
    }
    fn visit_f64<E>(self, v: f64) -> std::result::Result<JsonScalar, E> {
        Ok(JsonScalar::F64(v))
    }
    fn visit_str<E>(self, v: &str) -> std::result::Result<JsonScalar, E> {
        let (a, b) = self.push(v);
        Ok(JsonScalar::Str(a, b))
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(
        self,
        seq: A,
    ) -> std::result::Result<JsonScalar, A::Error> {
        use serde::Deserialize;
        let v = serde_json::Value::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))?;
        let (a, b) = self.push(&v.to_string());
        Ok(JsonScalar::Nested(a, b))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(
        self,
        map: A,
    ) -> std::result::Result<JsonScalar, A::Error> {
        use serde::Deserialize;
        let v = serde_json::Value::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
        let (a, b) = self.push(&v.to_string());
        Ok(JsonScalar::Nested(a, b))
    }
}

/// Turns decoded file records into rows of a table's columns. A record whose fields do not
/// fit the columns is handled like an undecodable one (`pipeline.decode-error-policy`): the
/// job fails naming the table, field and value, or the record is skipped with a warning.
#[derive(Clone)]
struct Decoder {
    table: String,
    policy: DecodeErrorPolicy,
    skipped: Arc<AtomicU64>,
}

impl Decoder {
    fn rows<T>(
        &self,
        recs: Vec<Rec<T>>,
        mut row: impl FnMut(&T) -> std::result::Result<Vec<Value>, String>,
    ) -> weir_engine::Result<Vec<Rec<Row>>> {
        let mut out = Vec::with_capacity(recs.len());
        for r in recs {
            match row(&r.value) {
                Ok(values) => out.push(Rec {
                    ts: r.ts,
                    value: Row(values),
                }),
                Err(reason) => match self.policy {
                    DecodeErrorPolicy::Fail => {
                        return Err(weir_engine::Error::User(format!(
                            "table '{}': {reason}; fix the input, or set \
                             pipeline.decode-error-policy: skip to skip such records",
                            self.table
                        )));
                    }
                    DecodeErrorPolicy::Skip => {
                        let n = self.skipped.fetch_add(1, Ordering::Relaxed) + 1;
                        if n <= 10 || n.is_power_of_two() {
                            tracing::warn!(table = %self.table, %reason, skipped = n, "skipping a record that does not fit the table's columns");
                        }
                    }
                },
            }
        }
        Ok(out)
    }
}

/// A physical column and the field name it is read from / written to.
#[derive(Debug, Clone)]
pub struct PhysicalColumn {
    /// Column.
    pub col: Column,
    /// Field name as written in the DDL.
    pub field: String,
}

fn datagen_option(k: &str, cols: &[PhysicalColumn]) -> bool {
    matches!(k, "number-of-rows" | "rows-per-second" | "seed")
        || k.strip_prefix("fields.").is_some_and(|rest| {
            rest.rsplit_once('.').is_some_and(|(f, o)| {
                cols.iter().any(|c| c.field == f)
                    && matches!(o, "kind" | "min" | "max" | "length" | "start" | "end")
            })
        })
}

/// Rejects options the table's connector does not know, when the table is declared (and
/// not only when a query first uses it).
pub fn validate(opts: &Options<'_>, cols: &[PhysicalColumn]) -> Result<()> {
    match opts.connector()? {
        "datagen" => opts.check_known(|k| datagen_option(k, cols), "datagen"),
        "filesystem" => opts.check_known(|k| matches!(k, "path" | "format"), "filesystem"),
        c @ ("print" | "blackhole") => opts.check_known(|_| false, c),
        _ => Ok(()),
    }
}

/// Builds the source of a table.
pub fn source(
    env: &StreamExecutionEnvironment,
    opts: &Options<'_>,
    cols: &[PhysicalColumn],
    uid: &str,
) -> Result<DataStream<Row>> {
    let connector = opts.connector()?;
    let name = format!("Source: {} ({connector})", opts.table);
    match connector {
        "datagen" => datagen(env, opts, cols, &name, uid),
        "filesystem" => {
            opts.check_known(|k| matches!(k, "path" | "format"), connector)?;
            let path = opts.required("path")?.to_string();
            let table = opts.table.to_string();
            let cols = cols.to_vec();
            let policy = env.config().decode_error_policy()?;
            let decode = Decoder { table, policy, skipped: Arc::new(AtomicU64::new(0)) };
            match opts.required("format")? {
                "json" => {
                    let raw = env
                        .from_source(FileSource::<JsonRecord>::json_lines(&path), None, &name)
                        .uid(uid);
                    Ok(raw
                        .transform_batches("Decode JSON", move |recs| {
                            // Where each column's field was in the previous record.
                            let mut hints: Vec<usize> = (0..cols.len()).collect();
                            decode.rows(recs, |rec| {
                                if let Some(text) = &rec.not_object {
                                    return Err(format!("{text} is not a JSON object"));
                                }
                                let mut values = Vec::with_capacity(cols.len());
                                for (c, hint) in cols.iter().zip(hints.iter_mut()) {
                                    let Some(i) = rec.find(&c.field, *hint) else {
                                        values.push(Value::Null);
                                        continue;
                                    };
                                    *hint = i;
                                    let v = rec.fields[i].1;
                                    values.push(rec.value(v, c.col.ty).ok_or_else(|| {
                                        format!(
                                            "field '{}' = {} is not a valid {}",
                                            c.field,
                                            rec.json_text(v),
                                            c.col.ty.sql_name()
                                        )
                                    })?);
                                }
                                Ok(values)
                            })
                        })
                        .uid(&format!("{uid}-decode")))
                }
                "csv" => {
                    let raw = env
                        .from_source(FileSource::<Vec<String>>::csv(&path), None, &name)
                        .uid(uid);
                    Ok(raw
                        .transform_batches("Decode CSV", move |recs| {
                            decode.rows(recs, |fields| {
                                cols.iter()
                                    .enumerate()
                                    .map(|(i, c)| {
                                        let s = fields.get(i).map(String::as_str).unwrap_or("");
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
                            })
                        })
                        .uid(&format!("{uid}-decode")))
                }
                other => Err(opts.err("format", format!("format '{other}' is not supported; use 'json' or 'csv'"))),
            }
        }
        other if SINKS.contains(&other) => Err(opts.err(
            "connector",
            format!("connector '{other}' can only be written to (INSERT INTO), not read; sources are: {}", SOURCES.join(", ")),
        )),
        other => Err(opts.err(
            "connector",
            format!("unknown connector '{other}'; available sources: {}", SOURCES.join(", ")),
        )),
    }
}

enum FieldGen {
    Sequence { start: i64, ty: SqlType },
    Int { min: i64, max: i64 },
    Double { min: f64, max: f64 },
    Str { length: usize },
    Bool,
}

fn datagen(
    env: &StreamExecutionEnvironment,
    opts: &Options<'_>,
    cols: &[PhysicalColumn],
    name: &str,
    uid: &str,
) -> Result<DataStream<Row>> {
    validate(opts, cols)?;
    let mut gens = Vec::new();
    let mut rows: Option<u64> = opts.number("number-of-rows")?;
    for c in cols {
        let key = |o: &str| format!("fields.{}.{o}", c.field);
        let kind = opts.get(&key("kind")).unwrap_or("random");
        let g = match kind {
            "sequence" => {
                let start: i64 = opts.number(&key("start"))?.unwrap_or(0);
                let end: Option<i64> = opts.number(&key("end"))?;
                if let Some(end) = end {
                    let n = u64::try_from(end - start + 1).unwrap_or(0);
                    rows = Some(rows.map_or(n, |r| r.min(n)));
                }
                if !matches!(c.col.ty, SqlType::BigInt | SqlType::String) {
                    return Err(opts.err(
                        &key("kind"),
                        format!(
                            "sequence generation needs a numeric or string column; '{}' is {}",
                            c.field,
                            c.col.ty.sql_name()
                        ),
                    ));
                }
                FieldGen::Sequence {
                    start,
                    ty: c.col.ty,
                }
            }
            "random" => match c.col.ty {
                SqlType::BigInt => FieldGen::Int {
                    min: opts.number(&key("min"))?.unwrap_or(0),
                    max: opts.number(&key("max"))?.unwrap_or(i32::MAX as i64),
                },
                SqlType::Double => FieldGen::Double {
                    min: opts.number(&key("min"))?.unwrap_or(0.0),
                    max: opts.number(&key("max"))?.unwrap_or(1.0),
                },
                SqlType::String => FieldGen::Str {
                    length: opts.number(&key("length"))?.unwrap_or(10),
                },
                SqlType::Boolean => FieldGen::Bool,
                SqlType::Timestamp => {
                    return Err(SqlError::at(
                        opts.table_span,
                        format!(
                            "datagen cannot generate TIMESTAMP column '{}' yet; generate a BIGINT of epoch milliseconds and add a computed column `ts AS TO_TIMESTAMP_LTZ(millis, 3)`",
                            c.field
                        ),
                    ));
                }
            },
            other => {
                return Err(opts.err(
                    &key("kind"),
                    format!("datagen kind '{other}' is not supported; use 'random' or 'sequence'"),
                ));
            }
        };
        if let FieldGen::Int { min, max } = g
            && min > max
        {
            return Err(opts.err(
                &key("min"),
                format!("fields.{}.min ({min}) is greater than max ({max})", c.field),
            ));
        }
        if let FieldGen::Double { min, max } = g
            && min > max
        {
            return Err(opts.err(
                &key("min"),
                format!("fields.{}.min ({min}) is greater than max ({max})", c.field),
            ));
        }
        gens.push(g);
    }
    let seed: u64 = opts.number("seed")?.unwrap_or(0);
    let mut g = DataGen::new(seed, move |ctx| {
        Row(gens
            .iter()
            .map(|g| match g {
                FieldGen::Sequence { start, ty } => {
                    let v = start + ctx.index as i64;
                    if *ty == SqlType::String {
                        Value::Str(v.to_string())
                    } else {
                        Value::Int(v)
                    }
                }
                FieldGen::Int { min, max } => Value::Int(ctx.rng.gen_range(*min..=*max)),
                FieldGen::Double { min, max } => Value::Double(if min == max {
                    *min
                } else {
                    ctx.rng.gen_range(*min..*max)
                }),
                FieldGen::Str { length } => Value::Str(
                    (&mut ctx.rng)
                        .sample_iter(&Alphanumeric)
                        .take(*length)
                        .map(char::from)
                        .collect(),
                ),
                FieldGen::Bool => Value::Bool(ctx.rng.r#gen()),
            })
            .collect())
    });
    if let Some(n) = rows {
        g = g.bounded(n);
    }
    if let Some(r) = opts.number::<f64>("rows-per-second")? {
        g = g.rows_per_second(r);
    }
    Ok(env.from_source(g, None, name).uid(uid))
}

/// Whether a sink connector consumes updating results (changelogs with `-U`/`+U`); the
/// others are append-only.
pub fn consumes_updates(connector: &str) -> bool {
    matches!(connector, "print" | "blackhole")
}

/// Attaches the sink of a table; `updating` streams carry their row kind in a last,
/// hidden column (see `changelog.rs`).
pub fn sink(
    stream: DataStream<Row>,
    opts: &Options<'_>,
    cols: &[PhysicalColumn],
    uid: &str,
    updating: bool,
) -> Result<()> {
    let connector = opts.connector()?;
    let name = format!("Sink: {} ({connector})", opts.table);
    if updating && !consumes_updates(connector) {
        return Err(opts.err(
            "connector",
            format!("table '{}': connector '{connector}' is append-only and cannot consume an updating result", opts.table),
        ));
    }
    match connector {
        "print" if updating => {
            opts.check_known(|_| false, connector)?;
            stream
                .map(ChangeRow)
                .sink_to(PrintSink::<ChangeRow>::display())
                .name(&name)
                .uid(uid);
        }
        "print" => {
            opts.check_known(|_| false, connector)?;
            stream
                .sink_to(PrintSink::<Row>::display())
                .name(&name)
                .uid(uid);
        }
        "blackhole" => {
            opts.check_known(|_| false, connector)?;
            stream.sink_to(BlackholeSink).name(&name).uid(uid);
        }
        "filesystem" => {
            opts.check_known(|k| matches!(k, "path" | "format"), connector)?;
            let path = opts.required("path")?.to_string();
            match opts.required("format")? {
                "json" => {}
                other => {
                    return Err(opts.err("format", format!("the filesystem sink writes format 'json' only; '{other}' is not supported yet")));
                }
            }
            let fields: Vec<String> = cols.iter().map(|c| c.field.clone()).collect();
            stream
                .map(move |r: Row| {
                    serde_json::Value::Object(
                        fields
                            .iter()
                            .zip(r.0.iter())
                            .map(|(f, v)| (f.clone(), v.to_json()))
                            .collect(),
                    )
                })
                .uid(&format!("{uid}-encode"))
                .sink_to(FileSink::json_lines(path))
                .name(&name)
                .uid(uid);
        }
        other if SOURCES.contains(&other) => {
            return Err(opts.err(
                "connector",
                format!(
                    "connector '{other}' can only be read, not written; sinks are: {}",
                    SINKS.join(", ")
                ),
            ));
        }
        other => {
            return Err(opts.err(
                "connector",
                format!(
                    "unknown connector '{other}'; available sinks: {}",
                    SINKS.join(", ")
                ),
            ));
        }
    }
    Ok(())
}
