//! The SQL connector registry: `'connector' = '…'` in `CREATE TABLE … WITH (…)` picks a
//! [`ConnectorFactory`] from a [`Connectors`] registry, which validates the table's options
//! when it is declared and builds its source or sink when a statement reads or writes it.
//! The built-in connectors (`datagen`, `filesystem`, `print`, `blackhole`) are factories like
//! any other; crates outside weir-sql add theirs (the `weir` binary registers weir-kafka's
//! `kafka` and `upsert-kafka`), so weir-sql does not depend on them. Sources produce rows of
//! the table's physical and metadata columns.

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
    BlackholeSink, DataGen, FileSink, FileSource, JsonText, MakeCsvDecoder, MakeLineDecoder,
    PartitionedJsonText, PrintSink, StringRecord,
};

/// A connector: what `'connector' = '<name>'` builds. Implementations check their own
/// options' values and build engine streams of SQL rows; the [`Connectors`] registry does
/// the checks every connector shares (unknown options with a suggestion, metadata keys,
/// reading a sink-only connector, an updating result into an append-only sink), so the
/// messages are the same for all.
pub trait ConnectorFactory: Send + Sync {
    /// The `'connector'` value.
    fn name(&self) -> &str;
    /// Whether tables of this connector can be read.
    fn reads(&self) -> bool;
    /// Whether tables of this connector can be written (INSERT INTO).
    fn writes(&self) -> bool;
    /// The option keys it accepts (besides `connector`) for a table with these columns.
    fn option_keys(&self, cols: &[PhysicalColumn]) -> Vec<String>;
    /// Prefixes of option keys it passes through (e.g. `properties.`).
    fn option_prefixes(&self) -> &[&str] {
        &[]
    }
    /// The metadata keys `METADATA FROM '…'` columns may name.
    fn metadata_keys(&self) -> &[&str] {
        &[]
    }
    /// Checks the option values (and anything else about the table) when it is declared;
    /// the keys are already known to be accepted.
    fn validate(&self, _opts: &Options<'_>, _cols: &[PhysicalColumn]) -> Result<()> {
        Ok(())
    }
    /// Whether the sink consumes updating results (rows with `-U`/`+U`/`-D` kinds).
    fn consumes_updates(&self) -> bool {
        false
    }
    /// Whether the source produces an updating result: its rows end with the hidden
    /// `$kind` column (see `changelog.rs`).
    fn produces_updates(&self) -> bool {
        false
    }
    /// Builds the source of a table. `read[i]` says whether any statement reads column `i`;
    /// the rows hold only those columns, in the table's order (projection push-down), then
    /// the `$kind` column when the source produces updates. `row_width` is the number of read
    /// columns with the table's computed columns (room to allocate rows with). Only called
    /// when [`reads`](Self::reads) says so.
    fn source(
        &self,
        _env: &StreamExecutionEnvironment,
        opts: &Options<'_>,
        _cols: &[PhysicalColumn],
        _read: &[bool],
        _row_width: usize,
        _uid: &str,
    ) -> Result<DataStream<Row>> {
        Err(opts.err(
            "connector",
            format!("connector '{}' cannot be read", self.name()),
        ))
    }
    /// Attaches the sink of a table. `cols` are the written columns (virtual metadata columns
    /// excluded); `updating` streams carry their row kind in a last, hidden column. Only
    /// called when [`writes`](Self::writes) says so.
    fn sink(
        &self,
        _stream: DataStream<Row>,
        opts: &Options<'_>,
        _cols: &[PhysicalColumn],
        _uid: &str,
        _updating: bool,
    ) -> Result<()> {
        Err(opts.err(
            "connector",
            format!("connector '{}' cannot be written to", self.name()),
        ))
    }
}

/// A connector name registered twice.
#[derive(Debug, thiserror::Error)]
#[error("a SQL connector named '{0}' is already registered")]
pub struct DuplicateConnector(pub String);

/// The connectors a planner can use, by name.
#[derive(Clone)]
pub struct Connectors {
    factories: BTreeMap<String, Arc<dyn ConnectorFactory>>,
}

impl std::fmt::Debug for Connectors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.factories.keys()).finish()
    }
}

impl Default for Connectors {
    fn default() -> Self {
        Self::builtin()
    }
}

/// The closest of `candidates` to `key`, as a "; did you mean 'x'?" suffix.
fn suggestion<'a>(key: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    candidates
        .into_iter()
        .map(|c| (weir_contract::options::edit_distance(c, key), c))
        .filter(|(d, c)| *d <= c.len().max(key.len()) / 2)
        .min()
        .map(|(_, c)| format!("; did you mean '{c}'?"))
        .unwrap_or_default()
}

impl Connectors {
    /// The connectors built into weir-sql: `datagen`, `filesystem`, `print`, `blackhole`.
    pub fn builtin() -> Self {
        let mut c = Connectors {
            factories: BTreeMap::new(),
        };
        for f in [
            Arc::new(Datagen) as Arc<dyn ConnectorFactory>,
            Arc::new(Filesystem),
            Arc::new(Print),
            Arc::new(Blackhole),
        ] {
            c.factories.insert(f.name().to_string(), f);
        }
        c
    }

    /// Adds a connector; its name must be new.
    pub fn register(
        &mut self,
        factory: Arc<dyn ConnectorFactory>,
    ) -> std::result::Result<(), DuplicateConnector> {
        let name = factory.name().to_string();
        if self.factories.contains_key(&name) {
            return Err(DuplicateConnector(name));
        }
        self.factories.insert(name, factory);
        Ok(())
    }

    /// The registered connector names, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.factories.keys().map(String::as_str).collect()
    }

    fn listed(&self, pick: impl Fn(&dyn ConnectorFactory) -> bool) -> String {
        self.factories
            .values()
            .filter(|f| pick(f.as_ref()))
            .map(|f| f.name())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The table's connector; an unknown or missing one is an error at its option.
    pub fn factory(&self, opts: &Options<'_>) -> Result<&dyn ConnectorFactory> {
        let name = opts.connector()?;
        self.factories.get(name).map(|f| f.as_ref()).ok_or_else(|| {
            opts.err(
                "connector",
                format!(
                    "unknown connector '{name}'{}; available: {}",
                    suggestion(name, self.names()),
                    self.names().join(", ")
                ),
            )
        })
    }

    /// Checks a table when it is declared: its connector exists, it knows every option and
    /// metadata key, and the values are valid.
    pub fn validate(&self, opts: &Options<'_>, cols: &[PhysicalColumn]) -> Result<()> {
        let f = self.factory(opts)?;
        let keys = f.option_keys(cols);
        for k in opts.map.keys() {
            let known = k == "connector"
                || keys.iter().any(|o| o == k)
                || f.option_prefixes().iter().any(|p| k.starts_with(p));
            if !known {
                let hint = suggestion(
                    k,
                    keys.iter()
                        .map(String::as_str)
                        .chain(f.option_prefixes().iter().copied()),
                );
                return Err(opts.err(
                    k,
                    format!(
                        "unknown option '{k}' for connector '{}'{hint} (see docs/sql.md)",
                        f.name()
                    ),
                ));
            }
        }
        for c in cols {
            if let Some(key) = &c.metadata
                && !f.metadata_keys().contains(&key.as_str())
            {
                return Err(SqlError::at(
                    c.span,
                    format!(
                        "column '{}': connector '{}' has no metadata '{key}'{}; it has: {}",
                        c.field,
                        f.name(),
                        suggestion(key, f.metadata_keys().iter().copied()),
                        if f.metadata_keys().is_empty() {
                            "none".to_string()
                        } else {
                            f.metadata_keys().join(", ")
                        }
                    ),
                ));
            }
        }
        f.validate(opts, cols)
    }

    /// Whether the table's connector produces an updating result when read.
    pub fn produces_updates(&self, opts: &Options<'_>) -> Result<bool> {
        Ok(self.factory(opts)?.produces_updates())
    }

    /// Whether the table's connector consumes updating results.
    pub fn consumes_updates(&self, opts: &Options<'_>) -> Result<bool> {
        Ok(self.factory(opts)?.consumes_updates())
    }

    /// Whether the table can be written; the error names the connectors that can.
    pub fn check_writable(&self, opts: &Options<'_>) -> Result<()> {
        let f = self.factory(opts)?;
        if !f.writes() {
            return Err(opts.err(
                "connector",
                format!(
                    "connector '{}' of table '{}' cannot be written to; sinks are: {}",
                    f.name(),
                    opts.table,
                    self.listed(|f| f.writes())
                ),
            ));
        }
        Ok(())
    }

    /// Builds the source of a table (see [`ConnectorFactory::source`]).
    pub fn source(
        &self,
        env: &StreamExecutionEnvironment,
        opts: &Options<'_>,
        cols: &[PhysicalColumn],
        read: &[bool],
        row_width: usize,
        uid: &str,
    ) -> Result<DataStream<Row>> {
        let f = self.factory(opts)?;
        if !f.reads() {
            return Err(opts.err(
                "connector",
                format!(
                    "connector '{}' can only be written to (INSERT INTO), not read; sources are: {}",
                    f.name(),
                    self.listed(|f| f.reads())
                ),
            ));
        }
        opts.check_unpartitioned("reading a table")?;
        f.source(env, opts, cols, read, row_width, uid)
    }

    /// Attaches the sink of a table (see [`ConnectorFactory::sink`]).
    pub fn sink(
        &self,
        stream: DataStream<Row>,
        opts: &Options<'_>,
        cols: &[PhysicalColumn],
        uid: &str,
        updating: bool,
    ) -> Result<()> {
        self.check_writable(opts)?;
        let f = self.factory(opts)?;
        if f.name() != "filesystem" {
            opts.check_unpartitioned(&format!("connector '{}'", f.name()))?;
        }
        if updating && !f.consumes_updates() {
            return Err(opts.err(
                "connector",
                format!(
                    "table '{}': connector '{}' is append-only and cannot consume an updating result",
                    opts.table,
                    f.name()
                ),
            ));
        }
        f.sink(stream, opts, cols, uid, updating)
    }
}

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
    /// `PRIMARY KEY (…) NOT ENFORCED` columns (empty: none).
    pub primary_key: &'a [Ident],
    /// The `WATERMARK FOR` column (normalized name), which every row read must carry.
    pub event_time: Option<String>,
}

impl Options<'_> {
    /// An error at option `key` (at the table when the option is absent).
    pub fn err(&self, key: &str, msg: impl Into<String>) -> SqlError {
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

    /// The value of option `key`, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.map.get(key).map(String::as_str)
    }

    /// The value of option `key`; its absence is an error naming it.
    pub fn required(&self, key: &str) -> Result<&str> {
        self.get(key).ok_or_else(|| {
            SqlError::at(
                self.table_span,
                format!("table '{}' needs the option '{key}'", self.table),
            )
        })
    }

    /// Option `key` as a number, or `None` when absent.
    pub fn number<T: std::str::FromStr>(&self, key: &str) -> Result<Option<T>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.trim().parse().map(Some).map_err(|_| {
                self.err(key, format!("option '{key}' = '{v}' is not a valid number"))
            }),
        }
    }

    /// Refuses `PARTITIONED BY` where the connector cannot lay out partitions.
    pub fn check_unpartitioned(&self, what: &str) -> Result<()> {
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
    pub fn memory_size(&self, key: &str) -> Result<Option<u64>> {
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
    pub fn duration(&self, key: &str) -> Result<Option<std::time::Duration>> {
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
}

/// Parses text as a value of `ty` (CSV fields, JSON strings).
pub fn parse_text(s: &str, ty: SqlType) -> Option<Value> {
    let s = s.trim();
    Some(match ty {
        SqlType::String => Value::Str(s.to_string()),
        // Empty text is no bytes (as Flink writes them), not NULL.
        SqlType::Bytes => Value::Bytes(crate::builtins::from_base64(s)?),
        _ if s.is_empty() => Value::Null,
        SqlType::Boolean => Value::Bool(s.eq_ignore_ascii_case("true")),
        t @ (SqlType::BigInt | SqlType::Int | SqlType::SmallInt | SqlType::TinyInt) => {
            Value::Int(t.checked_int(s.parse().ok()?).ok()?)
        }
        SqlType::Double => Value::Double(s.parse().ok()?),
        SqlType::Float => Value::Float(s.parse().ok()?),
        // ISO `yyyy-MM-dd`, as Flink's json and csv formats read a DATE.
        SqlType::Date => Value::Date(crate::builtins::parse_date(s)?),
        // `HH:mm:ss[.SSS]`, as Flink's json and csv formats read a TIME.
        SqlType::Time(p) => Value::Time(crate::builtins::parse_time(s, p)?, p),
        SqlType::Decimal(p, sc) => decimal_text(s, p, sc)?,
        // Nested values have no text form here (the json format reads JSON arrays and
        // objects).
        SqlType::Nested(_) => return None,
        SqlType::Timestamp => Value::Ts(match s.parse::<i64>() {
            Ok(ms) if crate::value::timestamp_in_range(ms) => ms,
            Ok(_) => return None,
            Err(_) => parse_timestamp(s)?,
        }),
    })
}

/// A number's text as a DECIMAL(p, s) value: rounded HALF_UP to the scale, NULL when it has
/// more digits than the precision (as Flink's formats read it); None for text that is not a
/// number.
pub(crate) fn decimal_text(text: &str, p: u8, s: u8) -> Option<Value> {
    Some(match crate::decimal::parse(text, p, s).ok()? {
        Some(v) => Value::Decimal(v, s),
        None => Value::Null,
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
    /// `METADATA [FROM 'key']`: the metadata key; `None`: a payload column.
    pub metadata: Option<String>,
    /// `VIRTUAL` metadata: read only, never written.
    pub is_virtual: bool,
    /// Where the column is declared.
    pub span: Span,
}

/// The longest string `datagen` generates (1 MiB): a mistyped length must fail the plan, not
/// abort the process allocating it for every row.
const MAX_DATAGEN_LENGTH: usize = 1 << 20;

/// Options of `datagen` for a table with `cols`.
fn datagen_options(cols: &[PhysicalColumn]) -> Vec<String> {
    let mut keys: Vec<String> = ["number-of-rows", "rows-per-second", "seed"]
        .map(String::from)
        .into();
    for c in cols {
        for o in ["kind", "min", "max", "length", "start", "end"] {
            keys.push(format!("fields.{}.{o}", c.field));
        }
    }
    keys
}

/// Options of the filesystem connector (the rolling policy applies when it is a sink).
const FILESYSTEM_OPTIONS: &[&str] = &[
    "path",
    "format",
    "sink.rolling-policy.file-size",
    "sink.rolling-policy.rollover-interval",
];

/// `'connector' = 'datagen'`: generated rows (random or sequences), bounded or not.
struct Datagen;

impl ConnectorFactory for Datagen {
    fn name(&self) -> &str {
        "datagen"
    }
    fn reads(&self) -> bool {
        true
    }
    fn writes(&self) -> bool {
        false
    }
    fn option_keys(&self, cols: &[PhysicalColumn]) -> Vec<String> {
        datagen_options(cols)
    }
    fn source(
        &self,
        env: &StreamExecutionEnvironment,
        opts: &Options<'_>,
        cols: &[PhysicalColumn],
        read: &[bool],
        _row_width: usize,
        uid: &str,
    ) -> Result<DataStream<Row>> {
        let name = format!("Source: {} (datagen)", opts.table);
        datagen(env, opts, cols, read, &name, uid)
    }
}

/// `'connector' = 'filesystem'`: JSON or CSV files read, JSON lines written exactly once.
struct Filesystem;

impl ConnectorFactory for Filesystem {
    fn name(&self) -> &str {
        "filesystem"
    }
    fn reads(&self) -> bool {
        true
    }
    fn writes(&self) -> bool {
        true
    }
    fn option_keys(&self, _: &[PhysicalColumn]) -> Vec<String> {
        FILESYSTEM_OPTIONS.iter().map(|k| k.to_string()).collect()
    }
    fn source(
        &self,
        env: &StreamExecutionEnvironment,
        opts: &Options<'_>,
        cols: &[PhysicalColumn],
        read: &[bool],
        row_width: usize,
        uid: &str,
    ) -> Result<DataStream<Row>> {
        let name = format!("Source: {} (filesystem)", opts.table);
        let path = opts.required("path")?.to_string();
        let table = opts.table.to_string();
        let cols = cols.to_vec();
        // A physical event-time column is checked as its record is decoded, where the file
        // and line are known (and the policy applies as to any undecodable record).
        let event_time = opts.event_time.as_ref().and_then(|column| {
            let i = cols.iter().position(|c| &c.col.name == column)?;
            read[i].then(|| EventTime {
                table: opts.table.to_string(),
                column: column.clone(),
                slot: read[..i].iter().filter(|r| **r).count(),
            })
        });
        match opts.required("format")? {
            "json" => {
                // Decoded in the source reader, straight into rows: a line that is not
                // JSON or does not fit the columns is a decode error with its file and
                // line, and counts as skipped under `pipeline.decode-error-policy: skip`.
                let (table, read) = (table.clone(), read.to_vec());
                let event_time = event_time.clone();
                let make: MakeLineDecoder<Row> = Arc::new(move || {
                    let mut d = JsonRowDecoder::new(&table, &cols, &read, row_width)
                        .with_event_time(event_time.clone());
                    Box::new(move |line: &[u8]| d.decode(line))
                });
                Ok(env
                    .from_source(FileSource::lines_with(&path, make), None, &name)
                    .uid(uid))
            }
            "csv" => {
                // Decoded in the source reader too: a field that does not fit its column
                // is reported with its file and line.
                let read = read.to_vec();
                let checked = move |row: Row| match &event_time {
                    Some(et) => et.of(&row.0).map(|_| row),
                    None => Ok(row),
                };
                let make: MakeCsvDecoder<Row> = Arc::new(move || {
                    let (table, cols, read, checked) =
                        (table.clone(), cols.clone(), read.clone(), checked.clone());
                    Box::new(move |fields: &StringRecord| {
                        crate::format::csv_values(&cols, &read, |i| fields.get(i))
                            .map_err(|e| format!("table '{table}': {e}"))
                            .map(Row)
                            .and_then(&checked)
                    })
                });
                Ok(env
                    .from_source(FileSource::csv_with(&path, make), None, &name)
                    .uid(uid))
            }
            other => Err(opts.err(
                "format",
                format!("format '{other}' is not supported; use 'json' or 'csv'"),
            )),
        }
    }
    fn sink(
        &self,
        stream: DataStream<Row>,
        opts: &Options<'_>,
        cols: &[PhysicalColumn],
        uid: &str,
        _updating: bool,
    ) -> Result<()> {
        let name = format!("Sink: {} (filesystem)", opts.table);
        let path = opts.required("path")?.to_string();
        match opts.required("format")? {
            "json" => {}
            other => {
                return Err(opts.err(
                    "format",
                    format!(
                        "the filesystem sink writes format 'json' only; '{other}' is not supported yet"
                    ),
                ));
            }
        }
        let fields: Vec<String> = cols.iter().map(|c| c.field.clone()).collect();
        let types: Vec<SqlType> = cols.iter().map(|c| c.col.ty).collect();
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
            // The row split here, each value's text written by the same writer as the
            // unpartitioned lines' (a DECIMAL keeps its digits: `1.50`, in the line and in
            // the directory name).
            let keys: Vec<usize> = opts
                .partition_keys
                .iter()
                .filter_map(|k| fields.iter().position(|f| f == &k.value))
                .collect();
            stream
                .map(move |r: Row| {
                    let values = keys
                        .iter()
                        .map(|&k| crate::format::partition_text(&r.0[k]))
                        .collect();
                    let line = crate::format::json_object(
                        fields
                            .iter()
                            .zip(&types)
                            .zip(&r.0)
                            .map(|((f, t), v)| (f.as_str(), v, *t))
                            .enumerate()
                            .filter(|(i, _)| !keys.contains(i))
                            .map(|(_, f)| f),
                    );
                    PartitionedJsonText {
                        values,
                        text: String::from_utf8(line).expect("JSON text is UTF-8"),
                    }
                })
                .uid(&format!("{uid}-encode"))
                .sink_to(sink)
                .name(&name)
                .uid(uid);
            return Ok(());
        }
        stream
            .map(move |r: Row| {
                // The JSON text, written by hand so that a DECIMAL keeps its digits (`1.50`).
                let line = crate::format::json_object(
                    fields
                        .iter()
                        .zip(&types)
                        .zip(&r.0)
                        .map(|((f, t), v)| (f.as_str(), v, *t)),
                );
                JsonText(String::from_utf8(line).expect("JSON text is UTF-8"))
            })
            .uid(&format!("{uid}-encode"))
            .sink_to(sink)
            .name(&name)
            .uid(uid);
        Ok(())
    }
}

/// `'connector' = 'print'`: rows (or changes, `-U[…]`) to standard output.
struct Print;

impl ConnectorFactory for Print {
    fn name(&self) -> &str {
        "print"
    }
    fn reads(&self) -> bool {
        false
    }
    fn writes(&self) -> bool {
        true
    }
    fn option_keys(&self, _: &[PhysicalColumn]) -> Vec<String> {
        Vec::new()
    }
    fn consumes_updates(&self) -> bool {
        true
    }
    fn sink(
        &self,
        stream: DataStream<Row>,
        opts: &Options<'_>,
        _: &[PhysicalColumn],
        uid: &str,
        updating: bool,
    ) -> Result<()> {
        let name = format!("Sink: {} (print)", opts.table);
        if updating {
            stream
                .map(ChangeRow)
                .sink_to(PrintSink::<ChangeRow>::display())
                .name(&name)
                .uid(uid);
        } else {
            stream
                .sink_to(PrintSink::<Row>::display())
                .name(&name)
                .uid(uid);
        }
        Ok(())
    }
}

/// `'connector' = 'blackhole'`: discards everything (benchmarks).
struct Blackhole;

impl ConnectorFactory for Blackhole {
    fn name(&self) -> &str {
        "blackhole"
    }
    fn reads(&self) -> bool {
        false
    }
    fn writes(&self) -> bool {
        true
    }
    fn option_keys(&self, _: &[PhysicalColumn]) -> Vec<String> {
        Vec::new()
    }
    fn consumes_updates(&self) -> bool {
        true
    }
    fn sink(
        &self,
        stream: DataStream<Row>,
        opts: &Options<'_>,
        _: &[PhysicalColumn],
        uid: &str,
        _updating: bool,
    ) -> Result<()> {
        let name = format!("Sink: {} (blackhole)", opts.table);
        stream.sink_to(BlackholeSink).name(&name).uid(uid);
        Ok(())
    }
}

enum FieldGen {
    Sequence {
        start: i64,
        ty: SqlType,
    },
    Int {
        min: i64,
        max: i64,
    },
    /// DOUBLE, or FLOAT (`float`: the value rounded to 32 bits).
    Double {
        min: f64,
        max: f64,
        float: bool,
    },
    Str {
        length: usize,
    },
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
                if !(c.col.ty.is_integer() || c.col.ty == SqlType::String) {
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
                t @ (SqlType::BigInt | SqlType::Int | SqlType::SmallInt | SqlType::TinyInt) => {
                    // BIGINT and INT default to 0..=INT's maximum; the narrower types to
                    // their own maximum, and no bound may leave the column's range.
                    let (lo, hi) = t.int_range().unwrap_or((i64::MIN, i64::MAX));
                    let bound = |o: &str, default: i64| -> Result<i64> {
                        let v = opts.number(&key(o))?.unwrap_or(default);
                        t.checked_int(v).map_err(|why| {
                            opts.err(&key(o), format!("fields.{}.{o}: {why}", c.field))
                        })
                    };
                    FieldGen::Int {
                        min: bound("min", 0.max(lo))?,
                        max: bound("max", hi.min(i32::MAX.into()))?,
                    }
                }
                t @ (SqlType::Double | SqlType::Float) => FieldGen::Double {
                    min: opts.number(&key("min"))?.unwrap_or(0.0),
                    max: opts.number(&key("max"))?.unwrap_or(1.0),
                    float: t == SqlType::Float,
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
                SqlType::Decimal(..) => {
                    return Err(SqlError::at(
                        opts.table_span,
                        format!(
                            "datagen cannot generate DECIMAL column '{}' yet; generate a DOUBLE or BIGINT and add a computed column with a CAST",
                            c.field
                        ),
                    ));
                }
                t @ (SqlType::Date | SqlType::Time(_) | SqlType::Bytes | SqlType::Nested(_)) => {
                    return Err(SqlError::at(
                        opts.table_span,
                        format!(
                            "datagen cannot generate {} column '{}' yet",
                            t.sql_name(),
                            c.field
                        ),
                    ));
                }
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
        if let FieldGen::Double { min, max, .. } = g
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
                            // A sequence running past a narrow type's range wraps around, as
                            // the column's arithmetic does.
                            Value::Int(ty.wrap(v))
                        }
                    }
                    FieldGen::Int { min, max } => Value::Int(ctx.rng.gen_range(*min..=*max)),
                    FieldGen::Double { min, max, float } => {
                        let d = if min == max {
                            *min
                        } else {
                            ctx.rng.gen_range(*min..*max)
                        };
                        if *float {
                            Value::Float(d as f32)
                        } else {
                            Value::Double(d)
                        }
                    }
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
