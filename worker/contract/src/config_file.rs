//! Reading a worker's config file: YAML, in either of Flink's shapes — the flat one
//! (`execution.checkpointing.interval: 10s`) and Flink 2's nested `config.yaml`
//! (`execution:` / `checkpointing:` / `interval: 10s`), or a mix. Nested maps are joined into
//! dotted keys; every entry keeps the line it was written on, so an error about its key or
//! value can name the line.
//!
//! ```
//! let entries = weir_contract::config_file::parse(
//!     "parallelism.default: 4\nexecution:\n  checkpointing:\n    interval: 10s\n",
//! )?;
//! assert_eq!(entries[0].key, "parallelism.default");
//! assert_eq!((entries[1].key.as_str(), entries[1].value.as_str(), entries[1].line),
//!            ("execution.checkpointing.interval", "10s", 4));
//! # Ok::<(), weir_contract::config_file::ConfigFileError>(())
//! ```

use serde_yaml::Value;

/// One `key: value` of a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The dotted key.
    pub key: String,
    /// The value as text (numbers and booleans as written; an empty value is empty).
    pub value: String,
    /// The 1-based line the key is on.
    pub line: usize,
}

/// Why a config file cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigFileError {
    /// Not YAML.
    #[error("line {line}: not valid YAML: {message}")]
    Syntax {
        /// 1-based line of the problem (0 when the parser did not say).
        line: usize,
        /// The YAML parser's explanation.
        message: String,
    },
    /// The document is not a map of keys.
    #[error("line 1: expected `key: value` lines (a YAML map), found {found}")]
    NotAMap {
        /// What the document is instead.
        found: &'static str,
    },
    /// A value that is a list (or another non-scalar that is not a nested map).
    #[error("line {line}: '{key}' must be a single value, found a {found}")]
    NotAScalar {
        /// The key holding it.
        key: String,
        /// 1-based line of the key.
        line: usize,
        /// What the value is.
        found: &'static str,
    },
    /// A map key that is not text (e.g. a list).
    #[error("line {line}: a key must be text, found a {found}")]
    BadKey {
        /// 1-based line of the enclosing map.
        line: usize,
        /// What the key is.
        found: &'static str,
    },
}

impl ConfigFileError {
    /// The 1-based line the error is about.
    pub fn line(&self) -> usize {
        match self {
            ConfigFileError::Syntax { line, .. }
            | ConfigFileError::NotAScalar { line, .. }
            | ConfigFileError::BadKey { line, .. } => *line,
            ConfigFileError::NotAMap { .. } => 1,
        }
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Sequence(_) => "list",
        Value::Mapping(_) => "map",
        Value::Tagged(_) => "tagged value",
    }
}

/// Parses a config file into its entries, in file order. An empty file has none.
pub fn parse(text: &str) -> Result<Vec<Entry>, ConfigFileError> {
    let doc: Value = serde_yaml::from_str(text).map_err(|e| ConfigFileError::Syntax {
        line: e.location().map_or(0, |l| l.line()),
        message: e.to_string(),
    })?;
    let map = match doc {
        Value::Null => return Ok(Vec::new()),
        Value::Mapping(m) => m,
        other => {
            return Err(ConfigFileError::NotAMap {
                found: kind(&other),
            });
        }
    };
    let lines = Lines::new(text);
    let mut out = Vec::new();
    flatten(&map, &mut Vec::new(), &lines, 0, &mut out)?;
    Ok(out)
}

/// `map`'s entries under the key path `path`; `from` is the line index where the map starts.
fn flatten(
    map: &serde_yaml::Mapping,
    path: &mut Vec<String>,
    lines: &Lines<'_>,
    from: usize,
    out: &mut Vec<Entry>,
) -> Result<(), ConfigFileError> {
    // Siblings follow each other in the file at one indentation: searching from the previous
    // sibling, at its indentation, skips a nested key of the same name.
    let (mut cursor, mut indent) = (from, None);
    for (k, v) in map {
        let k = match k {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            other => {
                return Err(ConfigFileError::BadKey {
                    line: from + 1,
                    found: kind(other),
                });
            }
        };
        let (index, found_indent) = lines.find(&k, cursor, indent);
        (cursor, indent) = (index, indent.or(found_indent));
        path.push(k);
        let key = path.join(".");
        let value = match v {
            Value::Mapping(inner) => {
                flatten(inner, path, lines, index, out)?;
                path.pop();
                continue;
            }
            Value::Null => String::new(),
            Value::Bool(b) => b.to_string(),
            Value::Number(n) => n.to_string(),
            Value::String(s) => s.clone(),
            other => {
                return Err(ConfigFileError::NotAScalar {
                    key,
                    line: index + 1,
                    found: kind(other),
                });
            }
        };
        path.pop();
        out.push(Entry {
            key,
            value,
            line: index + 1,
        });
    }
    Ok(())
}

/// The file's lines, to find where a key was written (the YAML parser keeps no positions).
struct Lines<'a>(Vec<&'a str>);

impl<'a> Lines<'a> {
    fn new(text: &'a str) -> Self {
        Lines(text.lines().collect())
    }

    /// Index and indentation of the first line at or after `from` (at indentation `indent`,
    /// when given) that starts, after an optional quote, with `key` followed by `:`; `from`
    /// when there is none (a key in flow style, `{a: 1}`, is on its map's line).
    fn find(&self, key: &str, from: usize, indent: Option<usize>) -> (usize, Option<usize>) {
        self.0
            .iter()
            .enumerate()
            .skip(from)
            .find_map(|(i, line)| {
                let rest = line.trim_start();
                let width = line.len() - rest.len();
                if indent.is_some_and(|n| n != width) {
                    return None;
                }
                let rest = rest.trim_start_matches(['"', '\'']);
                let after = rest.strip_prefix(key)?;
                after
                    .trim_start_matches(['"', '\''])
                    .trim_start()
                    .starts_with(':')
                    .then_some((i, Some(width)))
            })
            .unwrap_or((from, None))
    }
}
