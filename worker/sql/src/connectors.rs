//! The SQL connector registry: `'connector' = '…'` in `CREATE TABLE … WITH (…)` picks a
//! source or sink here. Sources produce rows of the table's physical columns.

use crate::changelog::ChangeRow;
use crate::error::{Result, SqlError};
use crate::json::JsonRowDecoder;
use crate::value::{Column, EventTime, Row, SqlType, Value};
use rand::Rng;
use rand::distributions::Alphanumeric;
use sqlparser::ast::Ident;
use sqlparser::tokenizer::Span;
use std::collections::BTreeMap;
use std::sync::Arc;
use weir_engine::api::{DataStream, StreamExecutionEnvironment};
use weir_engine::connectors::{
    BlackholeSink, DataGen, FileSink, FileSource, MakeCsvDecoder, MakeLineDecoder, PrintSink,
    StringRecord,
};

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
    /// `PARTITIONED BY` columns (filesystem sinks only).
    pub partition_keys: &'a [Ident],
    /// The `WATERMARK FOR` column (normalized name), which every row read must carry.
    pub event_time: Option<String>,
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

    /// Refuses `PARTITIONED BY` where the connector cannot lay out partitions.
    fn check_unpartitioned(&self, what: &str) -> Result<()> {
        match self.partition_keys.first() {
            Some(key) => Err(SqlError::at(
                key.span,
                format!(
                    "table '{}' is PARTITIONED BY ({key}), which {what} does not support; \
                     only the filesystem connector writes partitions",
                    self.table
                ),
            )),
            None => Ok(()),
        }
    }

    /// An option that is a memory size (`128mb`, `1g`, bytes), or `None` when absent.
    fn memory_size(&self, key: &str) -> Result<Option<u64>> {
        self.get(key)
            .map(|v| {
                weir_engine::config::parse_memory_size(v).ok_or_else(|| {
                    self.err(
                        key,
                        format!("option '{key}' = '{v}' is not a memory size (e.g. 128mb, 1g)"),
                    )
                })
            })
            .transpose()
    }

    /// An option that is a duration (`30 min`, `10s`, milliseconds), or `None` when absent.
    fn duration(&self, key: &str) -> Result<Option<std::time::Duration>> {
        self.get(key)
            .map(|v| {
                weir_engine::config::parse_duration(v).ok_or_else(|| {
                    self.err(
                        key,
                        format!("option '{key}' = '{v}' is not a duration (e.g. 30 min, 10s)"),
                    )
                })
            })
            .transpose()
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
            Ok(ms) if crate::value::timestamp_in_range(ms) => ms,
            Ok(_) => return None,
            Err(_) => parse_timestamp(s)?,
        }),
    })
}

/// Parses `YYYY-MM-DD[ T]HH:MM:SS[.fff][Z]` as UTC epoch milliseconds; `None` for text that
/// is not such a timestamp or lies outside TIMESTAMP(3) (years 0000 to 9999).
pub fn parse_timestamp(s: &str) -> Option<i64> {
    let s = s.trim_end_matches('Z');
    let (date, time) = s.split_once([' ', 'T']).unwrap_or((s, "00:00:00"));
    let mut d = date.splitn(3, '-').map(|x| x.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.splitn(3, ':').map(|x| x.parse::<i64>());
    let (hh, mm) = (t.next()?.ok()?, t.next()?.ok()?);
    let ss = t.next().map(|x| x.ok()).unwrap_or(Some(0))?;
    // Bounded fields cannot overflow the arithmetic below (a day past the month's end, or
    // an hour past the day's, still rolls over as before).
    if !(0..=9999).contains(&y)
        || !(1..=12).contains(&m)
        || !(1..=31).contains(&day)
        || [hh, mm, ss].iter().any(|f| !(0..100).contains(f))
    {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let ms = fraction_millis(frac);
    Some(((days_from_civil(y, m, day) * 24 + hh) * 60 + mm) * 60_000 + ss * 1000 + ms)
        .filter(|ms| crate::value::timestamp_in_range(*ms))
}

/// The milliseconds of a second's fraction digits: the first three ("5" is 500, "123456" is
/// 123). The digits must be ASCII digits.
pub(crate) fn fraction_millis(frac: &str) -> i64 {
    frac.bytes()
        .chain(std::iter::repeat(b'0'))
        .take(3)
        .fold(0i64, |acc, b| acc * 10 + i64::from(b - b'0'))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub(crate) fn days_from_civil(y: i64, m: i64, day: i64) -> i64 {
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A physical column and the field name it is read from / written to.
#[derive(Debug, Clone)]
pub struct PhysicalColumn {
    /// Column.
    pub col: Column,
    /// Field name as written in the DDL.
    pub field: String,
}

/// The longest string `datagen` generates (1 MiB): a mistyped length must fail the plan, not
/// abort the process allocating it for every row.
const MAX_DATAGEN_LENGTH: usize = 1 << 20;

fn datagen_option(k: &str, cols: &[PhysicalColumn]) -> bool {
    matches!(k, "number-of-rows" | "rows-per-second" | "seed")
        || k.strip_prefix("fields.").is_some_and(|rest| {
            rest.rsplit_once('.').is_some_and(|(f, o)| {
                cols.iter().any(|c| c.field == f)
                    && matches!(o, "kind" | "min" | "max" | "length" | "start" | "end")
            })
        })
}

/// Options of the filesystem connector (the rolling policy applies when it is a sink).
fn filesystem_option(k: &str) -> bool {
    matches!(
        k,
        "path"
            | "format"
            | "sink.rolling-policy.file-size"
            | "sink.rolling-policy.rollover-interval"
    )
}

/// Rejects options the table's connector does not know, when the table is declared (and
/// not only when a query first uses it).
pub fn validate(opts: &Options<'_>, cols: &[PhysicalColumn]) -> Result<()> {
    match opts.connector()? {
        "datagen" => opts.check_known(|k| datagen_option(k, cols), "datagen"),
        "filesystem" => opts.check_known(filesystem_option, "filesystem"),
        c @ ("print" | "blackhole") => opts.check_known(|_| false, c),
        _ => Ok(()),
    }
}

/// Builds the source of a table. `read[i]` says whether any statement reads column `i`; the
/// rows hold only those columns, in the table's order (projection push-down, as Flink's
/// sources do): the `json` and `csv` formats do not convert the others, `datagen` generates
/// them (its random sequence does not depend on what is read) and drops them. `row_width`
/// is the number of read columns with the table's computed columns: the `json` format
/// allocates its rows that wide, so the computed columns are appended in place.
pub fn source(
    env: &StreamExecutionEnvironment,
    opts: &Options<'_>,
    cols: &[PhysicalColumn],
    read: &[bool],
    row_width: usize,
    uid: &str,
) -> Result<DataStream<Row>> {
    let connector = opts.connector()?;
    let name = format!("Source: {} ({connector})", opts.table);
    match connector {
        "datagen" => datagen(env, opts, cols, read, &name, uid),
        "filesystem" => {
            opts.check_known(filesystem_option, connector)?;
            opts.check_unpartitioned("reading a table")?;
            let path = opts.required("path")?.to_string();
            let table = opts.table.to_string();
            let cols = cols.to_vec();
            // A physical event-time column is checked as its record is decoded, where the
            // file and line are known (and the policy applies as to any undecodable record).
            let event_time = opts.event_time.as_ref().and_then(|column| {
                let i = cols.iter().position(|c| &c.col.name == column)?;
                read[i].then(|| EventTime {
                    table: opts.table.to_string(),
                    column: column.clone(),
                    slot: read[..i].iter().filter(|r| **r).count(),
                })
            });
            let checked = move |row: Row| match &event_time {
                Some(et) => et.of(&row.0).map(|_| row),
                None => Ok(row),
            };
            match opts.required("format")? {
                "json" => {
                    // Decoded in the source reader, straight into rows: a line that is not
                    // JSON or does not fit the columns is a decode error with its file and
                    // line, and counts as skipped under `pipeline.decode-error-policy: skip`.
                    let (table, read) = (table.clone(), read.to_vec());
                    let make: MakeLineDecoder<Row> = Arc::new(move || {
                        let mut d = JsonRowDecoder::new(&table, &cols, &read, row_width);
                        let checked = checked.clone();
                        Box::new(move |line: &[u8]| d.decode(line).and_then(&checked))
                    });
                    Ok(env
                        .from_source(FileSource::lines_with(&path, make), None, &name)
                        .uid(uid))
                }
                "csv" => {
                    // Decoded in the source reader too: a field that does not fit its column
                    // is reported with its file and line.
                    let read = read.to_vec();
                    let make: MakeCsvDecoder<Row> = Arc::new(move || {
                        let (table, cols, read, checked) =
                            (table.clone(), cols.clone(), read.clone(), checked.clone());
                        Box::new(move |fields: &StringRecord| {
                            cols.iter()
                                .enumerate()
                                .filter(|&(i, _)| read[i])
                                .map(|(i, c)| {
                                    let s = fields.get(i).unwrap_or("");
                                    parse_text(s, c.col.ty).ok_or_else(|| {
                                        format!(
                                            "table '{table}': CSV field {} ('{}') = '{s}' is not a valid {}",
                                            i + 1,
                                            c.field,
                                            c.col.ty.sql_name()
                                        )
                                    })
                                })
                                .collect::<std::result::Result<Vec<_>, String>>()
                                .map(Row)
                                .and_then(&checked)
                        })
                    });
                    Ok(env
                        .from_source(FileSource::csv_with(&path, make), None, &name)
                        .uid(uid))
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
    read: &[bool],
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
                    length: match opts.number(&key("length"))?.unwrap_or(10) {
                        n if n <= MAX_DATAGEN_LENGTH => n,
                        n => {
                            return Err(opts.err(
                                &key("length"),
                                format!(
                                    "fields.{}.length ({n}) is longer than a generated string may be ({MAX_DATAGEN_LENGTH})",
                                    c.field
                                ),
                            ));
                        }
                    },
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
    let read = read.to_vec();
    let mut g = DataGen::new(seed, move |ctx| {
        Row(gens
            .iter()
            .zip(&read)
            .filter_map(|(g, &read)| {
                let v = match g {
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
                };
                read.then_some(v)
            })
            .collect())
    });
    if let Some(n) = rows {
        g = g.bounded(n);
    }
    if let Some(r) = opts.number::<f64>("rows-per-second")? {
        if !(r.is_finite() && r > 0.0) {
            return Err(opts.err(
                "rows-per-second",
                format!("'rows-per-second' must be a positive number of rows, got {r}"),
            ));
        }
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
    if connector != "filesystem" {
        opts.check_unpartitioned(&format!("connector '{connector}'"))?;
    }
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
            opts.check_known(filesystem_option, connector)?;
            let path = opts.required("path")?.to_string();
            match opts.required("format")? {
                "json" => {}
                other => {
                    return Err(opts.err("format", format!("the filesystem sink writes format 'json' only; '{other}' is not supported yet")));
                }
            }
            let fields: Vec<String> = cols.iter().map(|c| c.field.clone()).collect();
            let mut sink = FileSink::json_lines(path);
            if let Some(size) = opts.memory_size("sink.rolling-policy.file-size")? {
                sink = sink.with_rolling_file_size(size);
            }
            if let Some(interval) = opts.duration("sink.rolling-policy.rollover-interval")? {
                sink = sink.with_rollover_interval(interval);
            }
            for key in opts.partition_keys {
                if !fields.iter().any(|f| f == &key.value) {
                    return Err(SqlError::at(
                        key.span,
                        format!(
                            "PARTITIONED BY column '{}' is not a column of table '{}'; columns: {}",
                            key.value,
                            opts.table,
                            fields.join(", ")
                        ),
                    ));
                }
            }
            if !opts.partition_keys.is_empty() {
                sink = sink.partitioned_by(opts.partition_keys.iter().map(|k| k.value.as_str()));
            }
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
                .sink_to(sink)
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
