//! Record formats (`'format' = 'json' | 'csv' | 'raw'`) for connectors whose records are
//! byte strings, such as Kafka's keys and values: one record's bytes decode into the
//! values of some of a table's columns, and a row's values encode into one record. The JSON
//! decoder is the filesystem connector's ([`crate::json`]); CSV fields and JSON strings
//! convert with [`crate::connectors::parse_text`], so every connector reads text the same way.

use crate::connectors::{PhysicalColumn, parse_text};
use crate::json::JsonRowDecoder;
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
            Format::Json => {
                let obj: serde_json::Map<String, serde_json::Value> = cols
                    .iter()
                    .zip(vals)
                    .map(|(c, v)| (c.field.clone(), v.to_json()))
                    .collect();
                serde_json::to_vec(&serde_json::Value::Object(obj))
                    .expect("a JSON object of plain values serializes")
            }
            Format::Csv => {
                let mut w = csv::WriterBuilder::new()
                    .has_headers(false)
                    .terminator(csv::Terminator::Any(b'\n'))
                    .from_writer(Vec::new());
                let fields: Vec<String> = vals
                    .iter()
                    .map(|v| match v {
                        Value::Null => String::new(),
                        // The JSON form of a timestamp (`2026-01-01 00:00:00.000`) parses back.
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
                self.cols
                    .iter()
                    .enumerate()
                    .filter(|&(i, _)| self.read[i])
                    .map(|(i, c)| {
                        let s = rec.get(i).unwrap_or("");
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
            Kind::Raw => Ok(if self.read.first().copied().unwrap_or(false) {
                vec![Value::Str(String::from_utf8_lossy(bytes).into_owned())]
            } else {
                Vec::new()
            }),
        }
    }
}
