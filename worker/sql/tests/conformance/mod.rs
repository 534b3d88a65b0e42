//! The scalar-expression conformance suite: every case of `cases.txt` evaluated on Weir and
//! compared with what Apache Flink 2.3 gave for it (`expected.jsonl`, written by `record.py`).
//!
//! A case is an expression and an input row. Weir compiles the expression over the row's
//! columns and evaluates it as a SQL Calc does, row by row and over Arrow; the value compared
//! is `CAST((expr) AS STRING)`, as Flink's is, so the text is what a user sees in a STRING
//! column (and in `print`). The result type is compared by the type Weir carries it as
//! (TIMESTAMP and TIMESTAMP_LTZ are both Weir's TIMESTAMP(3)). A case Flink
//! refuses, at planning or at runtime, must fail on Weir too.
//!
//! A case with an input column of a type Weir does not have is Weir's error: it is recorded
//! from Flink for when the type lands, and listed as a known difference until then. ARRAY,
//! MAP and ROW values are built by the expressions (`ARRAY[a, b]`), not read as input
//! columns. TIME and BYTES columns hold the text Flink's json format reads (Base64 for
//! BYTES).
//!
//! `known_differences.txt` lists the cases Weir still gets wrong; they are reported, and a
//! listed case that matches fails the suite so that the list only shrinks.

use std::collections::BTreeSet;
use std::fmt;
use weir_engine::runtime::Rec;
use weir_sql::value::{Column, SqlType};
use weir_sql::{Row, Value};

const CASES: &str = include_str!("cases.txt");
const EXPECTED: &str = include_str!("expected.jsonl");
const KNOWN: &str = include_str!("known_differences.txt");

/// One case: an expression over an input row.
struct Case {
    expr: String,
    input: String,
    cols: Vec<Column>,
    row: Vec<Value>,
    /// An input column type Weir does not have (ARRAY, MAP, ROW): the case cannot run on Weir.
    missing_type: Option<String>,
}

impl Case {
    fn key(&self) -> String {
        format!("{} ;; {}", self.expr, self.input)
            .trim_end()
            .to_string()
    }
}

/// What an engine made of a case.
#[derive(Debug, PartialEq)]
enum Outcome {
    /// The result's type (Flink's name, or Weir's carried type) and its text (None: NULL).
    Value { ty: String, text: Option<String> },
    /// Planning or evaluation failed.
    Error(String),
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Value { ty, text: Some(t) } => write!(f, "{t:?} : {ty}"),
            Outcome::Value { ty, text: None } => write!(f, "NULL : {ty}"),
            Outcome::Error(e) => write!(f, "error: {e}"),
        }
    }
}

fn parse_cases() -> Vec<Case> {
    CASES
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('['))
        .map(|l| {
            let (expr, input) = l
                .split_once(";;")
                .unwrap_or_else(|| panic!("cases.txt: no ';;' in {l}"));
            let (expr, input) = (expr.trim().to_string(), input.trim().to_string());
            let (cols, row, missing_type) = parse_columns(&input);
            Case {
                expr,
                input,
                cols,
                row,
                missing_type,
            }
        })
        .collect()
}

/// `a INT = 1, s STRING = 'x, y'` as Weir's columns and values.
/// The third element names the first column type Weir does not have (its columns are left
/// out).
fn parse_columns(text: &str) -> (Vec<Column>, Vec<Value>, Option<String>) {
    let (mut cols, mut row, mut missing) = (Vec::new(), Vec::new(), None);
    let mut rest = text.trim();
    while !rest.is_empty() {
        let (name, tail) = rest
            .split_once(char::is_whitespace)
            .unwrap_or_else(|| panic!("bad input {text:?}"));
        // The type runs to the '=' outside parentheses (DECIMAL(10, 2)).
        let mut depth = 0;
        let eq = tail
            .char_indices()
            .find(|&(_, c)| {
                depth += match c {
                    '(' => 1,
                    ')' => -1,
                    _ => 0,
                };
                depth == 0 && c == '='
            })
            .map(|(i, _)| i)
            .unwrap_or_else(|| panic!("no '=' in {text:?}"));
        let ty_name = tail[..eq].trim().to_ascii_uppercase();
        let mut lit = tail[eq + 1..].trim_start();
        let ty = carried_type(&ty_name);
        let is_ts = lit.starts_with("TIMESTAMP");
        if is_ts {
            lit = lit["TIMESTAMP".len()..].trim_start();
        }
        let (value_text, quoted, tail) = if let Some(q) = lit.strip_prefix('\'') {
            let mut end = 0;
            let b = q.as_bytes();
            while end < b.len() {
                if b[end] == b'\'' {
                    if b.get(end + 1) == Some(&b'\'') {
                        end += 2;
                        continue;
                    }
                    break;
                }
                end += 1;
            }
            (q[..end].replace("''", "'"), true, &q[end + 1..])
        } else {
            let end = lit.find(',').unwrap_or(lit.len());
            (lit[..end].trim().to_string(), false, &lit[end..])
        };
        rest = tail.trim_start().trim_start_matches(',').trim_start();
        let Some(ty) = ty else {
            missing.get_or_insert(ty_name);
            continue;
        };
        let v = if !quoted && value_text.eq_ignore_ascii_case("null") {
            Value::Null
        } else {
            match ty {
                SqlType::Boolean => Value::Bool(value_text.eq_ignore_ascii_case("true")),
                SqlType::BigInt | SqlType::Int | SqlType::SmallInt | SqlType::TinyInt => {
                    Value::Int(value_text.parse().expect("integer literal"))
                }
                SqlType::Double => Value::Double(value_text.parse().expect("number literal")),
                SqlType::Float => Value::Float(value_text.parse().expect("number literal")),
                SqlType::Date => Value::Date(
                    weir_sql::connectors::parse_text(&value_text, SqlType::Date)
                        .and_then(|v| match v {
                            Value::Date(d) => Some(d),
                            _ => None,
                        })
                        .expect("date literal"),
                ),
                SqlType::Decimal(p, s) => {
                    match weir_sql::decimal::parse(&value_text, p, s).expect("decimal literal") {
                        Some(v) => Value::Decimal(v, s),
                        // As Flink's JSON format reads a number too long for the column.
                        None => Value::Null,
                    }
                }
                SqlType::String => Value::Str(value_text),
                // As Flink's json format reads them: the text, Base64 for BYTES.
                SqlType::Time(_) | SqlType::Bytes => {
                    weir_sql::connectors::parse_text(&value_text, ty)
                        .expect("TIME or BYTES literal")
                }
                SqlType::Timestamp => Value::Ts(
                    weir_sql::connectors::parse_timestamp(&value_text).expect("timestamp literal"),
                ),
                SqlType::Nested(_) => panic!("cases.txt has no ARRAY, MAP or ROW input columns"),
            }
        };
        cols.push(Column {
            name: name.to_ascii_lowercase(),
            ty,
        });
        row.push(v);
    }
    (cols, row, missing)
}

/// The type Weir carries a Flink type as (None: one Weir has no counterpart for).
fn carried_type(flink: &str) -> Option<SqlType> {
    let t = flink.trim_end_matches(" NOT NULL").trim();
    if let Some(inner) = t.strip_suffix('>') {
        return nested_type(inner);
    }
    let base = t.split('(').next().unwrap_or(t).trim();
    Some(match base {
        "BOOLEAN" => SqlType::Boolean,
        "TINYINT" => SqlType::TinyInt,
        "SMALLINT" => SqlType::SmallInt,
        "INT" | "INTEGER" => SqlType::Int,
        "BIGINT" => SqlType::BigInt,
        "FLOAT" | "REAL" => SqlType::Float,
        "DOUBLE" => SqlType::Double,
        "DECIMAL" => {
            let args = t.split_once('(').map(|(_, a)| a.trim_end_matches(')'));
            let mut nums = args
                .into_iter()
                .flat_map(|a| a.split(','))
                .map(|n| n.trim().parse::<u8>().ok());
            let p = nums.next().flatten().unwrap_or(10);
            let s = nums.next().flatten().unwrap_or(0);
            SqlType::Decimal(p, s)
        }
        "CHAR" | "VARCHAR" | "STRING" => SqlType::String,
        "TIMESTAMP" | "TIMESTAMP_LTZ" => SqlType::Timestamp,
        "DATE" => SqlType::Date,
        "TIME" => SqlType::Time(
            t.split_once('(')
                .and_then(|(_, a)| a.trim_end_matches(')').trim().parse::<u8>().ok())
                .unwrap_or(0)
                .min(3),
        ),
        "BYTES" | "VARBINARY" | "BINARY" => SqlType::Bytes,
        _ if t.starts_with("TIMESTAMP(") => SqlType::Timestamp,
        _ => return None,
    })
}

/// `ARRAY<T`, `MAP<K, V`, ``ROW<`a` T, …`` (the closing `>` cut) as Weir carries them.
fn nested_type(t: &str) -> Option<SqlType> {
    use weir_sql::nested::{array_of, map_of, row_of};
    // The parts at the top level, split at commas outside <> and ().
    let parts = |s: &str| {
        let (mut out, mut depth, mut start) = (Vec::new(), 0i32, 0);
        for (i, c) in s.char_indices() {
            match c {
                '<' | '(' => depth += 1,
                '>' | ')' => depth -= 1,
                ',' if depth == 0 => {
                    out.push(s[start..i].trim().to_string());
                    start = i + 1;
                }
                _ => {}
            }
        }
        out.push(s[start..].trim().to_string());
        out
    };
    if let Some(e) = t.strip_prefix("ARRAY<") {
        return Some(array_of(carried_type(e)?));
    }
    if let Some(kv) = t.strip_prefix("MAP<") {
        let kv = parts(kv);
        return Some(map_of(carried_type(&kv[0])?, carried_type(&kv[1])?));
    }
    let fields = t.strip_prefix("ROW<")?;
    let fields = parts(fields)
        .into_iter()
        .map(|f| {
            let (name, ty) = f.strip_prefix('`')?.split_once("` ")?;
            Some((name.to_string(), carried_type(ty)?))
        })
        .collect::<Option<Vec<_>>>()?;
    Some(row_of(fields))
}

/// Flink's recorded outcome of each case, in file order.
fn parse_expected() -> Vec<(String, Outcome)> {
    EXPECTED
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let j: serde_json::Value = serde_json::from_str(l).expect("expected.jsonl line");
            let s = |k: &str| j.get(k).and_then(|v| v.as_str()).map(str::to_string);
            let key = format!("{} ;; {}", s("expr").unwrap(), s("input").unwrap())
                .trim_end()
                .to_string();
            let outcome = match s("error") {
                Some(kind) => {
                    Outcome::Error(format!("{kind}: {}", s("message").unwrap_or_default()))
                }
                None => Outcome::Value {
                    ty: s("type").unwrap(),
                    text: s("value"),
                },
            };
            (key, outcome)
        })
        .collect()
}

fn parse(sql: &str) -> Result<sqlparser::ast::Expr, String> {
    weir_sql::parse::parse_expression(sql).map_err(|e| e.to_string())
}

/// Weir's outcome of a case, by the row evaluator (when it covers the expression) and by
/// Arrow: both paths must agree.
fn weir(case: &Case) -> Outcome {
    if let Some(ty) = &case.missing_type {
        return Outcome::Error(format!("{ty} is not a type of Weir"));
    }
    let funcs = weir_sql::expr::Functions::default();
    let compile = |sql: &str| {
        parse(sql).and_then(|e| {
            weir_sql::expr::compile(&funcs, &e, &case.cols).map_err(|e| e.to_string())
        })
    };
    let ty = match compile(&case.expr) {
        Ok(c) => c.ty,
        Err(e) => return Outcome::Error(e),
    };
    let text = match compile(&format!("CAST(({}) AS STRING)", case.expr)) {
        Ok(c) => c,
        Err(e) => return Outcome::Error(e),
    };
    let calc = weir_sql::expr::Calc::new(case.cols.clone(), None, vec![(text.expr, text.ty)]);
    let run = |calc: &weir_sql::expr::Calc| {
        let rec = Rec {
            ts: 0,
            value: Row(case.row.clone()),
        };
        calc.apply(vec![rec])
            .map_err(|e| e.to_string())
            .map(|out| match out[0].value.0.last() {
                Some(Value::Str(s)) => Some(s.clone()),
                Some(Value::Null) | None => None,
                Some(other) => Some(format!("{other} (not a STRING)")),
            })
    };
    let rowwise = run(&calc);
    let arrow = run(&calc.clone().over_arrow());
    match (rowwise, arrow) {
        (Ok(a), Ok(b)) if a == b => Outcome::Value {
            ty: ty.sql_name().to_string(),
            text: a,
        },
        (Err(e), Err(_)) => Outcome::Error(e),
        (a, b) => Outcome::Error(format!(
            "the row path ({a:?}) and the Arrow path ({b:?}) disagree"
        )),
    }
}

/// Whether Weir's outcome is Flink's: both errors, or the same text and the type Weir
/// carries Flink's type as.
fn agrees(flink: &Outcome, weir: &Outcome) -> bool {
    match (flink, weir) {
        (Outcome::Error(_), Outcome::Error(_)) => true,
        (Outcome::Value { ty: fty, text: ft }, Outcome::Value { ty: wty, text: wt }) => {
            ft == wt && carried_type(fty).is_some_and(|t| t.sql_name() == wty)
        }
        _ => false,
    }
}

pub fn run() {
    let cases = parse_cases();
    let expected = parse_expected();
    assert_eq!(
        cases.len(),
        expected.len(),
        "cases.txt has {} cases, expected.jsonl {} recordings: re-record with record.py",
        cases.len(),
        expected.len()
    );
    let known: BTreeSet<&str> = KNOWN
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let mut keys = BTreeSet::new();
    let (mut matched, mut differ, mut unexpected, mut fixed) = (0, 0, Vec::new(), Vec::new());
    for (case, (key, flink)) in cases.iter().zip(&expected) {
        assert_eq!(
            &case.key(),
            key,
            "expected.jsonl is not a recording of cases.txt: re-record with record.py"
        );
        keys.insert(key.as_str());
        let ours = weir(case);
        let listed = known.contains(key.as_str());
        if agrees(flink, &ours) {
            matched += 1;
            if listed {
                fixed.push(key.clone());
            }
        } else {
            differ += 1;
            let line = format!(
                "{}\n    input: {}\n    Flink: {flink}\n    Weir:  {ours}",
                case.expr,
                if case.input.is_empty() {
                    "-"
                } else {
                    &case.input
                }
            );
            if !listed {
                unexpected.push(line);
            } else {
                eprintln!("known difference: {line}");
            }
        }
    }
    let stale: Vec<&&str> = known.iter().filter(|k| !keys.contains(**k)).collect();
    eprintln!(
        "conformance: {} cases, {matched} as Flink, {differ} differ ({} listed as known)",
        cases.len(),
        known.len()
    );
    for u in &unexpected {
        eprintln!("DIFFERS: {u}");
    }
    assert!(
        unexpected.is_empty() && fixed.is_empty() && stale.is_empty(),
        "{} cases differ from Flink and are not listed in known_differences.txt (above); \
         {} listed cases now match Flink (remove them): {fixed:#?}; \
         {} listed cases are not in cases.txt: {stale:#?}",
        unexpected.len(),
        fixed.len(),
        stale.len()
    );
}
