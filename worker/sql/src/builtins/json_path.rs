//! Flink's `JSON_VALUE(json, path [RETURNING type])`, `JSON_QUERY(json, path)` and
//! `JSON_EXISTS(json, path)` (their default `NULL ON EMPTY`, `NULL ON ERROR` and `FALSE ON
//! ERROR` behaviour), and `JSON_STRING(value)`. Paths are Flink's (Jayway's) without
//! filters, functions and lists of keys: `$`, `.name`, `['name']`, `["name"]`, `[index]`
//! (negative: from the end), `.*` and `[*]`, `[i, j]`, `[from:to]` and `..name`, optionally
//! after a `lax` or `strict` mode word; a path without `$` is read as `$.` + path.
//!
//! The document is read as Flink's Jackson reads it: the first JSON value of the text (what
//! follows it is ignored), the last of duplicate keys wins, and numbers keep their text as
//! Java's `BigDecimal` writes it (`1.50` stays `1.50`, `1e3` is `1E+3`). Text that is not JSON,
//! a path that is not valid and a path that finds nothing all give NULL (JSON_EXISTS: FALSE).

use super::{Typing, count, str_arg, udf};
use crate::value::{SqlType, Value};
use datafusion_expr::ScalarUDF;
use std::sync::Arc;

/// How deep arrays and objects may nest (Jackson's default limit is 1000); deeper is an error.
const MAX_DEPTH: usize = 1000;

/// A parsed JSON value; numbers keep the text Flink gives them.
#[derive(Debug, PartialEq)]
enum Json {
    Null,
    Bool(bool),
    /// A number without fraction or exponent (Jackson's Integer, Long or BigInteger).
    Number(String),
    /// A number with a fraction or an exponent (Jackson's BigDecimal), as `BigDecimal`
    /// writes it.
    Decimal(String),
    Str(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

struct Parser<'a> {
    b: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self
            .b
            .get(self.pos)
            .is_some_and(|c| matches!(c, b' ' | b'\t' | b'\n' | b'\r'))
        {
            self.pos += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        self.ws();
        if self.b.get(self.pos) == Some(&c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn value(&mut self, depth: usize) -> Option<Json> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.ws();
        let rest = &self.b[self.pos..];
        for (word, v) in [
            (&b"null"[..], Json::Null),
            (b"true", Json::Bool(true)),
            (b"false", Json::Bool(false)),
        ] {
            // Jackson reads `nullx` as one unrecognised token.
            if rest.starts_with(word)
                && !rest
                    .get(word.len())
                    .is_some_and(|c| c.is_ascii_alphanumeric())
            {
                self.pos += word.len();
                return Some(v);
            }
        }
        match rest.first()? {
            b'"' => self.string().map(Json::Str),
            b'[' => {
                self.pos += 1;
                let mut items = Vec::new();
                if self.eat(b']') {
                    return Some(Json::Array(items));
                }
                loop {
                    items.push(self.value(depth + 1)?);
                    if self.eat(b']') {
                        return Some(Json::Array(items));
                    }
                    if !self.eat(b',') {
                        return None;
                    }
                }
            }
            b'{' => {
                self.pos += 1;
                let mut fields = Vec::new();
                if self.eat(b'}') {
                    return Some(Json::Object(fields));
                }
                loop {
                    self.ws();
                    let key = self.string()?;
                    if !self.eat(b':') {
                        return None;
                    }
                    fields.push((key, self.value(depth + 1)?));
                    if self.eat(b'}') {
                        return Some(Json::Object(fields));
                    }
                    if !self.eat(b',') {
                        return None;
                    }
                }
            }
            _ => self.number(),
        }
    }

    fn string(&mut self) -> Option<String> {
        if self.b.get(self.pos) != Some(&b'"') {
            return None;
        }
        self.pos += 1;
        let mut out = Vec::new();
        loop {
            let c = *self.b.get(self.pos)?;
            self.pos += 1;
            match c {
                b'"' => return String::from_utf8(out).ok(),
                // Jackson refuses unescaped control characters.
                0..=0x1f => return None,
                b'\\' => {
                    let e = *self.b.get(self.pos)?;
                    self.pos += 1;
                    let ch = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => self.unicode_escape()?,
                        _ => return None,
                    };
                    out.extend_from_slice(ch.encode_utf8(&mut [0; 4]).as_bytes());
                }
                c => out.push(c),
            }
        }
    }

    /// The character of `\uXXXX` (a surrogate pair is two escapes); a lone surrogate, which
    /// Java keeps in its UTF-16 string, becomes U+FFFD.
    fn unicode_escape(&mut self) -> Option<char> {
        let hex4 = |p: &mut Self| -> Option<u32> {
            let h = std::str::from_utf8(p.b.get(p.pos..p.pos + 4)?).ok()?;
            p.pos += 4;
            u32::from_str_radix(h, 16).ok()
        };
        let hi = hex4(self)?;
        if (0xD800..0xDC00).contains(&hi) && self.b[self.pos..].starts_with(b"\\u") {
            let save = self.pos;
            self.pos += 2;
            let lo = hex4(self)?;
            if (0xDC00..0xE000).contains(&lo) {
                return char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00));
            }
            self.pos = save;
        }
        Some(char::from_u32(hi).unwrap_or('\u{fffd}'))
    }

    /// A JSON number, as Flink writes it: an integer's digits (`-0` is `0`), a number with a
    /// fraction or an exponent as Java's `BigDecimal.toString`.
    fn number(&mut self) -> Option<Json> {
        let start = self.pos;
        let digits = |p: &mut Self| {
            let s = p.pos;
            while p.b.get(p.pos).is_some_and(u8::is_ascii_digit) {
                p.pos += 1;
            }
            std::str::from_utf8(&p.b[s..p.pos]).expect("ASCII digits")
        };
        let negative = self.b.get(self.pos) == Some(&b'-');
        if negative {
            self.pos += 1;
        }
        let int = digits(self);
        // JSON (and Jackson) refuse leading zeros and a missing integer part.
        if int.is_empty() || (int.len() > 1 && int.starts_with('0')) {
            return None;
        }
        let mut frac = "";
        if self.b.get(self.pos) == Some(&b'.') {
            self.pos += 1;
            frac = digits(self);
            if frac.is_empty() {
                return None;
            }
        }
        let mut exp = 0i64;
        let mut has_exp = false;
        if matches!(self.b.get(self.pos), Some(b'e' | b'E')) {
            self.pos += 1;
            has_exp = true;
            let neg = match self.b.get(self.pos) {
                Some(b'-') => {
                    self.pos += 1;
                    true
                }
                Some(b'+') => {
                    self.pos += 1;
                    false
                }
                _ => false,
            };
            let e = digits(self);
            // BigDecimal's scale is a 32-bit int.
            exp = e.parse::<i32>().ok()?.into();
            if neg {
                exp = -exp;
            }
        }
        debug_assert!(self.pos > start);
        if frac.is_empty() && !has_exp {
            let int = int.trim_start_matches('0');
            return Some(Json::Number(match (int.is_empty(), negative) {
                (true, _) => "0".to_string(),
                (false, true) => format!("-{int}"),
                (false, false) => int.to_string(),
            }));
        }
        let all = format!("{int}{frac}");
        let coeff = match all.trim_start_matches('0') {
            "" => "0",
            c => c,
        };
        let scale = frac.len() as i64 - exp;
        Some(Json::Decimal(big_decimal_text(
            negative && coeff != "0",
            coeff,
            scale,
        )))
    }
}

/// Java's `BigDecimal.toString` of ±`coeff` × 10^-`scale` (`coeff` without leading zeros).
fn big_decimal_text(negative: bool, coeff: &str, scale: i64) -> String {
    let sign = if negative { "-" } else { "" };
    let n = coeff.len() as i64;
    let adjusted = -scale + (n - 1);
    if scale == 0 {
        return format!("{sign}{coeff}");
    }
    if scale > 0 && adjusted >= -6 {
        return if n > scale {
            let (i, f) = coeff.split_at((n - scale) as usize);
            format!("{sign}{i}.{f}")
        } else {
            format!("{sign}0.{}{coeff}", "0".repeat((scale - n) as usize))
        };
    }
    let (first, rest) = coeff.split_at(1);
    let point = if rest.is_empty() { "" } else { "." };
    let plus = if adjusted > 0 { "+" } else { "" };
    format!("{sign}{first}{point}{rest}E{plus}{adjusted}")
}

/// The first JSON value of `text` (None: it does not start with one).
fn parse(text: &str) -> Option<Json> {
    Parser {
        b: text.as_bytes(),
        pos: 0,
    }
    .value(0)
}

/// One step of a path.
#[derive(Debug, PartialEq)]
enum Step {
    /// `.name`, `['name']`
    Key(String),
    /// `[i]` (negative: from the end)
    Index(i64),
    /// `.*`, `[*]`: an object's values or an array's items
    Wildcard,
    /// `[i, j, …]`
    Indexes(Vec<i64>),
    /// `[from:to]` (to exclusive; negative: from the end)
    Slice(Option<i64>, Option<i64>),
    /// `..name`: the values of `name` in this value and all values below it
    Scan(String),
}

impl Step {
    fn definite(&self) -> bool {
        matches!(self, Step::Key(_) | Step::Index(_))
    }
}

/// What a path is.
#[derive(Debug, PartialEq)]
enum Path {
    /// The steps; a path with a step that is not definite finds a list of values.
    Steps(Vec<Step>),
    /// A path with a filter (`[?(…)]`), a function (`.length()`) or a list of keys, which
    /// Weir does not evaluate yet.
    Unsupported,
}

/// Whether `path` is in strict mode, and the rest of it: `lax` and `strict` say, and a path
/// without either is strict (as in Flink and Calcite).
fn path_mode(path: &str) -> (bool, &str) {
    let p = path.trim_start();
    for mode in ["lax", "strict"] {
        // Compared as bytes: the path's text may have a multi-byte character there.
        let b = p.as_bytes();
        if b.get(..mode.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(mode.as_bytes()))
            && b.get(mode.len()).is_some_and(u8::is_ascii_whitespace)
        {
            return (mode == "strict", p[mode.len()..].trim_start());
        }
    }
    (true, p)
}

/// `path` parsed (None: not a valid path).
fn parse_path(path: &str) -> Option<Path> {
    let p = path_mode(path).1.trim_end();
    let owned;
    let mut rest = match p.strip_prefix('$') {
        Some(r) => r,
        None => {
            owned = format!(".{p}");
            &owned
        }
    };
    let name_end = |r: &str| r.find(['.', '[']).unwrap_or(r.len());
    let valid_name = |n: &str| !n.is_empty() && !n.contains(char::is_whitespace);
    let mut steps = Vec::new();
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("..") {
            let end = name_end(r);
            let name = &r[..end];
            if name == "*" || name.is_empty() {
                return Some(Path::Unsupported);
            }
            if !valid_name(name) {
                return None;
            }
            steps.push(Step::Scan(name.to_string()));
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('.') {
            let end = name_end(r);
            let name = &r[..end];
            if name == "*" {
                steps.push(Step::Wildcard);
            } else if name.ends_with(')') {
                return Some(Path::Unsupported);
            } else if valid_name(name) {
                steps.push(Step::Key(name.to_string()));
            } else {
                return None;
            }
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']')?;
            let inner = r[..end].trim();
            rest = &r[end + 1..];
            let quoted = inner.len() >= 2
                && ((inner.starts_with('\'') && inner.ends_with('\''))
                    || (inner.starts_with('"') && inner.ends_with('"')));
            let int = |t: &str| t.trim().parse::<i64>().ok();
            let bound = |t: &str| match t.trim() {
                "" => Some(None),
                t => t.parse::<i64>().ok().map(Some),
            };
            if quoted {
                let name = &inner[1..inner.len() - 1];
                if name.contains(['\'', '"']) {
                    // A list of keys (`['a','b']`).
                    return Some(Path::Unsupported);
                }
                steps.push(Step::Key(name.to_string()));
            } else if inner == "*" {
                steps.push(Step::Wildcard);
            } else if let Some(i) = int(inner) {
                steps.push(Step::Index(i));
            } else if inner.starts_with('?') {
                return Some(Path::Unsupported);
            } else if let Some((from, to)) = inner.split_once(':') {
                steps.push(Step::Slice(bound(from)?, bound(to)?));
            } else if inner.contains(',') {
                steps.push(Step::Indexes(
                    inner.split(',').map(int).collect::<Option<_>>()?,
                ));
            } else {
                return None;
            }
        } else {
            return None;
        }
    }
    Some(Path::Steps(steps))
}

/// An object's values in Flink's order: a duplicate key keeps its first position and takes
/// its last value (Jackson reads objects into a `LinkedHashMap`).
fn object_entries(fields: &[(String, Json)]) -> Vec<(&str, &Json)> {
    let mut out: Vec<(&str, &Json)> = Vec::with_capacity(fields.len());
    for (k, v) in fields {
        match out.iter_mut().find(|(n, _)| n == k) {
            Some(slot) => slot.1 = v,
            None => out.push((k, v)),
        }
    }
    out
}

/// An array index counted from the end when negative.
fn array_index(len: usize, i: i64) -> Option<usize> {
    let i = if i < 0 { len as i64 + i } else { i };
    usize::try_from(i).ok().filter(|&i| i < len)
}

/// The value the definite `steps` lead to in `doc` (None: there is none).
fn find<'a>(doc: &'a Json, steps: &[Step]) -> Option<&'a Json> {
    let mut at = doc;
    for step in steps {
        at = match (step, at) {
            (Step::Key(k), Json::Object(fields)) => &fields.iter().rev().find(|(n, _)| n == k)?.1,
            (Step::Index(i), Json::Array(items)) => &items[array_index(items.len(), *i)?],
            _ => return None,
        };
    }
    Some(at)
}

/// The values `path` finds in `doc` as Flink's (Jayway's) indefinite paths do: None when the
/// definite steps before the first indefinite one find nothing; after it, values a step
/// does not apply to are left out (so the list may be empty).
fn find_all<'a>(doc: &'a Json, steps: &[Step]) -> Option<Vec<&'a Json>> {
    let first = steps
        .iter()
        .position(|s| !s.definite())
        .unwrap_or(steps.len());
    let mut at = vec![find(doc, &steps[..first])?];
    for step in &steps[first..] {
        let mut next = Vec::new();
        for v in at {
            match (step, v) {
                (Step::Key(k), Json::Object(fields)) => {
                    next.extend(fields.iter().rev().find(|(n, _)| n == k).map(|f| &f.1));
                }
                (Step::Index(i), Json::Array(items)) => {
                    next.extend(array_index(items.len(), *i).map(|i| &items[i]));
                }
                (Step::Wildcard, Json::Object(fields)) => {
                    next.extend(object_entries(fields).into_iter().map(|(_, v)| v));
                }
                (Step::Wildcard, Json::Array(items)) => next.extend(items),
                (Step::Indexes(ix), Json::Array(items)) => next.extend(
                    ix.iter()
                        .filter_map(|&i| array_index(items.len(), i).map(|i| &items[i])),
                ),
                (Step::Slice(from, to), Json::Array(items)) => {
                    let n = items.len() as i64;
                    let clamp = |b: i64| (if b < 0 { n + b } else { b }).clamp(0, n) as usize;
                    let (from, to) = (clamp(from.unwrap_or(0)), clamp(to.unwrap_or(n)));
                    if from < to {
                        next.extend(&items[from..to]);
                    }
                }
                (Step::Scan(k), v) => scan(v, k, &mut next),
                _ => {}
            }
        }
        at = next;
    }
    Some(at)
}

/// `..k`: the value of `k` in `v` (when an object), then the same below each of its values.
fn scan<'a>(v: &'a Json, k: &str, out: &mut Vec<&'a Json>) {
    match v {
        Json::Object(fields) => {
            let entries = object_entries(fields);
            out.extend(entries.iter().filter(|(n, _)| *n == k).map(|(_, v)| *v));
            for (_, v) in entries {
                scan(v, k, out);
            }
        }
        Json::Array(items) => items.iter().for_each(|i| scan(i, k, out)),
        _ => {}
    }
}

/// What JSON_VALUE's path finds, as Flink 2.3 tells them apart.
enum Found<T> {
    /// In lax mode: nothing, JSON null, an object, an array or a list of values (a
    /// wildcard, a scan): the ON EMPTY behaviour applies.
    Empty,
    /// A scalar (converted).
    Scalar(T),
    /// The text is not JSON or the path is not valid, or in strict mode (a path's default)
    /// it finds nothing, null or no scalar: the ON ERROR behaviour applies.
    Error(String),
}

/// What `path` finds in `json`, the scalar converted by `f`.
fn json_scalar<T>(json: &str, path: &str, f: impl FnOnce(&Json) -> T) -> Found<T> {
    let strict = path_mode(path).0;
    let no_scalar = |what: &str| {
        if strict {
            Found::Error(format!(
                "the path '{path}' finds {what}, and strict mode requires a scalar"
            ))
        } else {
            Found::Empty
        }
    };
    // An indefinite path finds a list, which is never the scalar JSON_VALUE needs.
    let steps = match parse_path(path) {
        None => return Found::Error(format!("'{path}' is not a valid JSON path")),
        Some(Path::Steps(steps)) if steps.iter().all(Step::definite) => steps,
        Some(_) => return no_scalar("a list of values"),
    };
    let Some(doc) = parse(json) else {
        return Found::Error("the text is not JSON".into());
    };
    match find(&doc, &steps) {
        None if strict => Found::Error(format!("the path '{path}' finds nothing")),
        Some(Json::Null) if strict => Found::Error(format!("the path '{path}' finds null")),
        None | Some(Json::Null) => Found::Empty,
        Some(Json::Array(_)) => no_scalar("an array"),
        Some(Json::Object(_)) => no_scalar("an object"),
        Some(v) => Found::Scalar(f(v)),
    }
}

/// JSON_VALUE's `behaviour ON EMPTY` or `ON ERROR`: its kind and DEFAULT value (arguments
/// `k` and `k + 1`, as [`crate::parse`] writes the clauses; `NULL` without them).
fn on(a: &[Value], k: usize, case: &str, why: impl FnOnce() -> String) -> Result<Value, String> {
    match a.get(k).and_then(str_arg) {
        None | Some("NULL") => Ok(Value::Null),
        Some("DEFAULT") => Ok(a.get(k + 1).cloned().unwrap_or_default()),
        Some(_) => Err(format!("{} (ERROR ON {case})", why())),
    }
}

/// JSON_VALUE with `convert` reading the scalar found (a scalar it does not take fails the
/// job, whatever the ON ERROR clause says, as Flink 2.3's does), NULL, ERROR or DEFAULT as
/// the ON EMPTY and ON ERROR clauses say otherwise.
fn json_value_with(
    a: &[Value],
    convert: impl FnOnce(&Json) -> Result<Value, String>,
) -> Result<Value, String> {
    let (Some(json), Some(path)) = (str_arg(&a[0]), str_arg(&a[1])) else {
        return Ok(Value::Null);
    };
    match json_scalar(json, path, convert) {
        Found::Scalar(v) => v,
        Found::Empty => on(a, 2, "EMPTY", || {
            format!("the path '{path}' finds no scalar value")
        }),
        Found::Error(why) => on(a, 4, "ERROR", || why),
    }
}

/// The JSON text of a scalar (a string as its value, for JSON_VALUE's STRING result).
fn scalar_text(v: &Json) -> String {
    match v {
        Json::Str(s) | Json::Number(s) | Json::Decimal(s) => s.clone(),
        Json::Bool(b) => b.to_string(),
        Json::Null | Json::Array(_) | Json::Object(_) => String::new(),
    }
}

fn eval_json_value(a: &[Value]) -> Result<Value, String> {
    json_value_with(a, |v| Ok(Value::Str(scalar_text(v))))
}

/// The scalar `path` finds converted by `convert`; a scalar it does not take fails the job,
/// naming the value and `what` it must be.
fn typed_scalar(
    a: &[Value],
    what: &str,
    convert: impl FnOnce(&Json) -> Option<Value>,
) -> Result<Value, String> {
    let quoted = |v: &Json| match v {
        Json::Str(s) => format!("'{s}'"),
        v => scalar_text(v),
    };
    json_value_with(a, |v| {
        convert(v).ok_or_else(|| format!("the JSON value {} is not {what}", quoted(v)))
    })
}

/// `JSON_VALUE(json, path RETURNING INT)`: Flink takes only a JSON integer of INT's range
/// (its Jackson reads an Integer) and fails the job on any other scalar.
fn eval_json_value_int(a: &[Value]) -> Result<Value, String> {
    typed_scalar(a, "a JSON integer of INT's range", |v| match v {
        Json::Number(n) => n.parse::<i32>().ok().map(|i| Value::Int(i.into())),
        _ => None,
    })
}

/// `RETURNING DOUBLE`: Flink takes only a JSON number with a fraction or an exponent (its
/// Jackson reads a BigDecimal; `2` is an Integer and fails the job).
fn eval_json_value_double(a: &[Value]) -> Result<Value, String> {
    typed_scalar(
        a,
        "a JSON number with a fraction or an exponent",
        |v| match v {
            Json::Decimal(d) => d.parse::<f64>().ok().map(Value::Double),
            _ => None,
        },
    )
}

/// `RETURNING BOOLEAN`: only JSON `true` and `false`.
fn eval_json_value_boolean(a: &[Value]) -> Result<Value, String> {
    typed_scalar(a, "a JSON boolean", |v| match v {
        Json::Bool(b) => Some(Value::Bool(*b)),
        _ => None,
    })
}

/// The steps of `path` (None: not a valid path); a path Weir does not evaluate is an error.
fn path_steps(path: &str) -> Result<Option<Vec<Step>>, String> {
    match parse_path(path) {
        None => Ok(None),
        Some(Path::Unsupported) => Err(format!(
            "the JSON path '{path}' has a filter, a function or a list of keys, which Weir \
             does not evaluate yet"
        )),
        Some(Path::Steps(steps)) => Ok(Some(steps)),
    }
}

fn eval_json_exists(a: &[Value]) -> Result<Value, String> {
    let (Some(json), Some(path)) = (str_arg(&a[0]), str_arg(&a[1])) else {
        return Ok(Value::Null);
    };
    // Text that is not JSON, a path that is not valid, and (in strict mode) a path that
    // finds nothing are errors: `FALSE ON ERROR` unless the call says otherwise.
    let on_error = |why: String| match a.get(2).and_then(str_arg) {
        None | Some("FALSE") => Ok(Value::Bool(false)),
        Some("TRUE") => Ok(Value::Bool(true)),
        Some("UNKNOWN") => Ok(Value::Null),
        Some(_) => Err(format!("{why} (ERROR ON ERROR)")),
    };
    let Some(steps) = path_steps(path)? else {
        return on_error(format!("'{path}' is not a valid JSON path"));
    };
    let Some(doc) = parse(json) else {
        return on_error("the text is not JSON".into());
    };
    // A definite path exists when it finds a value other than null; an indefinite one when
    // it finds a list, even an empty one (as in Flink).
    if steps.iter().all(Step::definite) {
        match find(&doc, &steps) {
            None | Some(Json::Null) if path_mode(path).0 => on_error(format!(
                "the path '{path}' finds nothing or null, which strict mode refuses"
            )),
            found => Ok(Value::Bool(!matches!(found, None | Some(Json::Null)))),
        }
    } else {
        Ok(Value::Bool(find_all(&doc, &steps).is_some()))
    }
}

/// `JSON_QUERY(json, path)`: the object or array `path` finds, as compact JSON text (Flink's
/// default `WITHOUT ARRAY WRAPPER`, `NULL ON EMPTY`, `NULL ON ERROR`: a scalar is NULL); an
/// indefinite path's values as an array.
fn eval_json_query(a: &[Value]) -> Result<Value, String> {
    let (Some(json), Some(path)) = (str_arg(&a[0]), str_arg(&a[1])) else {
        return Ok(Value::Null);
    };
    let Some(steps) = path_steps(path)? else {
        return Ok(Value::Null);
    };
    let Some(doc) = parse(json) else {
        return Ok(Value::Null);
    };
    let mut out = String::new();
    if steps.iter().all(Step::definite) {
        match find(&doc, &steps) {
            Some(v @ (Json::Array(_) | Json::Object(_))) => write_json(v, &mut out),
            _ => return Ok(Value::Null),
        }
    } else {
        let Some(found) = find_all(&doc, &steps) else {
            return Ok(Value::Null);
        };
        out.push('[');
        for (i, v) in found.into_iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            write_json(v, &mut out);
        }
        out.push(']');
    }
    Ok(Value::Str(out))
}

/// `s` as a JSON string, as Jackson writes it: `"` and `\` escaped, the control characters
/// as `\n`-style or `\u00XX` escapes, everything else as it is.
fn write_json_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `v` as compact JSON text, as Flink's Jackson writes the maps and lists it read.
fn write_json(v: &Json, out: &mut String) {
    match v {
        Json::Null => out.push_str("null"),
        Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Json::Number(n) | Json::Decimal(n) => out.push_str(n),
        Json::Str(s) => write_json_string(s, out),
        Json::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(item, out);
            }
            out.push(']');
        }
        Json::Object(fields) => {
            out.push('{');
            for (i, (k, v)) in object_entries(fields).into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json_string(k, out);
                out.push(':');
                write_json(v, out);
            }
            out.push('}');
        }
    }
}

/// `JSON_STRING(value)`: the value as JSON text, as Flink writes it (a DOUBLE as Java's
/// `BigDecimal.valueOf(d)` writes it, `1.0E+10`; a TIMESTAMP as an ISO-8601 string without
/// trailing fractional zeros).
fn eval_json_string(a: &[Value]) -> Result<Value, String> {
    let mut out = String::new();
    match &a[0] {
        Value::Null => return Ok(Value::Null),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) => out.push_str(&i.to_string()),
        Value::Decimal(v, s) => out.push_str(&crate::decimal::format(*v, *s)),
        Value::Double(_) | Value::Float(_) => {
            let text = match &a[0] {
                Value::Float(f) => super::java_float(*f),
                v => super::java_double(v.as_f64().unwrap_or(f64::NAN)),
            };
            let mut p = Parser {
                b: text.as_bytes(),
                pos: 0,
            };
            match p.number() {
                Some(Json::Number(n) | Json::Decimal(n)) if p.pos == text.len() => {
                    out.push_str(&n);
                }
                _ => return Err(format!("{text} cannot be written as a JSON number")),
            }
        }
        Value::Str(s) => write_json_string(s, &mut out),
        Value::Date(d) => write_json_string(&crate::value::format_date(*d), &mut out),
        // Base64, as Flink writes BYTES.
        Value::Bytes(b) => write_json_string(&crate::builtins::base64(b), &mut out),
        Value::Time(..) => return Err("takes no TIME (cast it to STRING first)".into()),
        Value::Array(_) | Value::Map(_) | Value::Row(_) => {
            return Err("takes no ARRAY, MAP or ROW in Weir yet".into());
        }
        Value::Ts(t) => {
            let text = crate::value::format_timestamp(*t).replacen(' ', "T", 1);
            let text = match text.split_once('.') {
                Some((whole, frac)) if frac.trim_end_matches('0').is_empty() => whole.to_string(),
                Some((whole, frac)) => format!("{whole}.{}", frac.trim_end_matches('0')),
                None => text,
            };
            write_json_string(&text, &mut out);
        }
    }
    Ok(Value::Str(out))
}

/// `s IS JSON kind` (`kind`: VALUE, SCALAR, ARRAY or OBJECT): whether `s` is JSON text of
/// that kind; FALSE for NULL, as in Flink.
fn eval_is_json(a: &[Value]) -> Result<Value, String> {
    let (Some(s), Some(kind)) = (str_arg(&a[0]), str_arg(&a[1])) else {
        return Ok(Value::Bool(false));
    };
    Ok(Value::Bool(parse(s).is_some_and(|doc| match kind {
        "SCALAR" => !matches!(doc, Json::Array(_) | Json::Object(_)),
        "ARRAY" => matches!(doc, Json::Array(_)),
        "OBJECT" => matches!(doc, Json::Object(_)),
        _ => true,
    })))
}

/// Both arguments are STRING (Flink refuses other types rather than casting them).
fn json_and_path(
    args: &[Option<SqlType>],
    ret: SqlType,
) -> Result<(Vec<SqlType>, SqlType), String> {
    count(args, 2, 2)?;
    if !args
        .iter()
        .all(|t| matches!(t, None | Some(SqlType::String)))
    {
        return Err("takes a STRING of JSON and a STRING path".into());
    }
    Ok((vec![SqlType::String, SqlType::String], ret))
}

/// JSON_VALUE's: the JSON and the path, then (written by [`crate::parse`] from ON EMPTY and
/// ON ERROR clauses) each behaviour's kind and DEFAULT value, which is of the result type.
fn json_value_typing(
    args: &[Option<SqlType>],
    ret: SqlType,
) -> Result<(Vec<SqlType>, SqlType), String> {
    if args.len() != 6 {
        return json_and_path(args, ret);
    }
    let (tys, ret) = json_and_path(&args[..2], ret)?;
    let s = SqlType::String;
    Ok(([tys, vec![s, ret, s, ret]].concat(), ret))
}

/// JSON_EXISTS's: the JSON and the path, and the ON ERROR behaviour when written.
fn json_exists_typing(args: &[Option<SqlType>]) -> Result<(Vec<SqlType>, SqlType), String> {
    count(args, 2, 3)?;
    let (mut tys, ret) = json_and_path(&args[..2], SqlType::Boolean)?;
    tys.resize(args.len(), SqlType::String);
    Ok((tys, ret))
}

const VALUE_TYPING: Typing = |a| json_value_typing(a, SqlType::String);
const QUERY_TYPING: Typing = |a| json_and_path(a, SqlType::String);
const INT_TYPING: Typing = |a| json_value_typing(a, SqlType::Int);
const DOUBLE_TYPING: Typing = |a| json_value_typing(a, SqlType::Double);
const BOOLEAN_TYPING: Typing = |a| json_value_typing(a, SqlType::Boolean);
const EXISTS_TYPING: Typing = json_exists_typing;
const IS_JSON_TYPING: Typing = |a| json_and_path(a, SqlType::Boolean);

/// The functions of this module, by their SQL names.
pub(super) fn functions() -> Vec<Arc<ScalarUDF>> {
    vec![
        udf(
            "json_value",
            "JSON_VALUE(json, path [behaviour ON EMPTY] [behaviour ON ERROR])",
            VALUE_TYPING,
            eval_json_value,
        ),
        udf(
            "json_value_int",
            "JSON_VALUE(json, path RETURNING INT)",
            INT_TYPING,
            eval_json_value_int,
        ),
        udf(
            "json_value_double",
            "JSON_VALUE(json, path RETURNING DOUBLE)",
            DOUBLE_TYPING,
            eval_json_value_double,
        ),
        udf(
            "json_value_boolean",
            "JSON_VALUE(json, path RETURNING BOOLEAN)",
            BOOLEAN_TYPING,
            eval_json_value_boolean,
        ),
        udf(
            "json_query",
            "JSON_QUERY(json, path)",
            QUERY_TYPING,
            eval_json_query,
        ),
        udf(
            "json_string",
            "JSON_STRING(value)",
            |a| {
                count(a, 1, 1)?;
                // Flink's planner refuses a TIME.
                if matches!(a[0], Some(SqlType::Time(_))) {
                    return Err("takes no TIME (cast it to STRING first)".into());
                }
                Ok((vec![a[0].unwrap_or(SqlType::String)], SqlType::String))
            },
            eval_json_string,
        ),
        udf(
            "is_json",
            "s IS JSON [VALUE | SCALAR | ARRAY | OBJECT]",
            IS_JSON_TYPING,
            eval_is_json,
        ),
        udf(
            "json_exists",
            "JSON_EXISTS(json, path [TRUE | FALSE | UNKNOWN | ERROR ON ERROR])",
            EXISTS_TYPING,
            eval_json_exists,
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(json: &str, path: &str) -> Value {
        eval_json_value(&[Value::Str(json.into()), Value::Str(path.into())]).unwrap()
    }

    #[test]
    fn numbers_keep_the_text_java_s_big_decimal_gives_them() {
        for (json, text) in [
            ("1.50", "1.50"),
            ("1e3", "1E+3"),
            ("1.5e2", "1.5E+2"),
            ("0.0000001", "1E-7"),
            ("0.000001", "0.000001"),
            ("-0.0", "0.0"),
            ("-0", "0"),
            ("12345678901234567890", "12345678901234567890"),
            ("-12.5E-1", "-1.25"),
        ] {
            let number = if json.contains(['.', 'e', 'E']) {
                Json::Decimal(text.into())
            } else {
                Json::Number(text.into())
            };
            assert_eq!(parse(json), Some(number), "{json}");
        }
        assert_eq!(parse("01"), None, "leading zeros");
        assert_eq!(parse("nullx"), None);
        assert_eq!(
            parse("[1] [2]"),
            Some(Json::Array(vec![Json::Number("1".into())]))
        );
        assert_eq!(parse("-"), None);
        assert_eq!(parse("1."), None);
    }

    #[test]
    fn paths_find_keys_and_indexes_and_anything_else_is_null() {
        let doc = r#"{"a": {"b": [10, {"c": "x\u00e9"}]}, "a": {"b": [1, {"c": "last"}]}}"#;
        assert_eq!(value(doc, "$.a.b[1].c"), Value::Str("last".into()));
        assert_eq!(value(doc, "lax $['a'][\"b\"][0]"), Value::Str("1".into()));
        assert_eq!(value(doc, "a.b[-2]"), Value::Str("1".into()));
        assert_eq!(value(doc, "$.a.b"), Value::Null, "not a scalar");
        assert_eq!(value(doc, "$.a.b[*]"), Value::Null, "a list");
        assert_eq!(value(doc, "$.a b"), Value::Null, "not a path");
        assert_eq!(
            value(r#"{"s": "\ud83d\ude00\n"}"#, "$.s"),
            Value::Str("😀\n".into())
        );
        assert_eq!(value("{'a': 1}", "$.a"), Value::Null);
        assert_eq!(value(r#"{"é": "ü"}"#, "$.é"), Value::Str("ü".into()));
        assert_eq!(value(r#"{"éa": 1}"#, "éa"), Value::Str("1".into()));
    }

    #[test]
    fn on_empty_and_on_error_tell_a_missing_value_from_bad_text_and_strict_misses() {
        let s = |t: &str| Value::Str(t.into());
        // JSON_VALUE(json, path DEFAULT 'empty' ON EMPTY DEFAULT 'error' ON ERROR)
        let both = |json: &str, path: &str| {
            let a = [
                s(json),
                s(path),
                s("DEFAULT"),
                s("empty"),
                s("DEFAULT"),
                s("error"),
            ];
            eval_json_value(&a).unwrap()
        };
        for (json, path, want) in [
            (r#"{"a": 1}"#, "$.a", "1"),
            (r#"{"a": 1}"#, "lax $.b", "empty"),
            (r#"{"a": null}"#, "lax $.a", "empty"),
            (r#"{"a": [1]}"#, "lax $.a", "empty"),
            (r#"{"a": [1]}"#, "lax $.a[*]", "empty"),
            ("not json", "lax $.a", "error"),
            (r#"{"a": 1}"#, "lax $.a b", "error"),
            // Without a mode word a path is strict.
            (r#"{"a": 1}"#, "$.b", "error"),
            (r#"{"a": 1}"#, "strict $.b", "error"),
            (r#"{"a": null}"#, "$.a", "error"),
            (r#"{"a": {"b": 1}}"#, "strict $.a", "error"),
            (r#"{"a": [1]}"#, "$.a[*]", "error"),
        ] {
            assert_eq!(both(json, path), s(want), "{json} {path}");
        }
        // ERROR fails the call, naming why; without clauses (and with NULL) it is NULL.
        let err = eval_json_value(&[
            s("{}"),
            s("lax $.b"),
            s("ERROR"),
            Value::Null,
            s("NULL"),
            Value::Null,
        ])
        .unwrap_err();
        assert!(
            err.contains("'lax $.b' finds no scalar value (ERROR ON EMPTY)"),
            "{err}"
        );
        assert_eq!(value("not json", "$.a"), Value::Null);
        // A scalar RETURNING does not take fails whatever ON ERROR says.
        let a = [
            s(r#"{"a": "x"}"#),
            s("$.a"),
            s("NULL"),
            Value::Null,
            s("DEFAULT"),
            Value::Int(7),
        ];
        assert!(eval_json_value_int(&a).is_err());
        // JSON_EXISTS(json, path behaviour ON ERROR)
        let exists =
            |json: &str, path: &str, on: &str| eval_json_exists(&[s(json), s(path), s(on)]);
        assert_eq!(
            exists(r#"{"a": 1}"#, "strict $.b", "TRUE"),
            Ok(Value::Bool(true))
        );
        assert_eq!(
            exists(r#"{"a": 1}"#, "lax $.b", "TRUE"),
            Ok(Value::Bool(false))
        );
        assert_eq!(exists("[", "$.a", "UNKNOWN"), Ok(Value::Null));
        assert!(exists("[", "$.a", "ERROR").is_err());
        assert!(exists(r#"{"a": null}"#, "strict $.a", "ERROR").is_err());
    }

    #[test]
    fn json_exists_is_false_for_null_and_refuses_paths_it_cannot_evaluate() {
        let exists = |json: &str, path: &str| {
            eval_json_exists(&[Value::Str(json.into()), Value::Str(path.into())])
        };
        assert_eq!(exists(r#"{"a": null}"#, "$.a"), Ok(Value::Bool(false)));
        assert_eq!(exists(r#"{"a": []}"#, "strict $.a"), Ok(Value::Bool(true)));
        assert_eq!(exists("not json", "$.a"), Ok(Value::Bool(false)));
        assert_eq!(exists(r#"{"a": []}"#, "$.a[*]"), Ok(Value::Bool(true)));
        assert_eq!(exists(r#"{"a": 1}"#, "$.x[*]"), Ok(Value::Bool(false)));
        let err = exists(r#"{"a": [1]}"#, "$['a','b']").unwrap_err();
        assert!(err.contains("'$['a','b']'"), "{err}");
    }

    #[test]
    fn returning_takes_only_the_json_type_flink_s_jackson_reads() {
        let args = |json: &str| [Value::Str(json.into()), Value::Str("$.a".into())];
        assert_eq!(
            eval_json_value_int(&args(r#"{"a": -7}"#)),
            Ok(Value::Int(-7))
        );
        assert_eq!(eval_json_value_int(&args(r#"{"b": 1}"#)), Ok(Value::Null));
        let err = eval_json_value_int(&args(r#"{"a": 12345678901234}"#)).unwrap_err();
        assert_eq!(
            err,
            "the JSON value 12345678901234 is not a JSON integer of INT's range"
        );
        assert_eq!(
            eval_json_value_double(&args(r#"{"a": 1.50}"#)),
            Ok(Value::Double(1.5))
        );
        let err = eval_json_value_double(&args(r#"{"a": "2.5"}"#)).unwrap_err();
        assert!(err.contains("'2.5'"), "{err}");
        assert!(eval_json_value_double(&args(r#"{"a": 2}"#)).is_err());
        assert_eq!(
            eval_json_value_boolean(&args(r#"{"a": false}"#)),
            Ok(Value::Bool(false))
        );
        assert!(eval_json_value_boolean(&args(r#"{"a": 1}"#)).is_err());
    }

    #[test]
    fn json_query_writes_objects_and_arrays_compactly_as_jackson_does() {
        let query = |json: &str, path: &str| {
            eval_json_query(&[Value::Str(json.into()), Value::Str(path.into())])
        };
        let doc = r#" { "k" : "v\"q\\\/é\n\u0001" , "n": [1, 2.50, 1e3, -0], "k" : 2 } "#;
        assert_eq!(
            query(doc, "$"),
            Ok(Value::Str(r#"{"k":2,"n":[1,2.50,1E+3,0]}"#.into()))
        );
        assert_eq!(
            query(r#"{"a": {"s": "v\"q\\/é\n\u0001"}}"#, "$.a"),
            Ok(Value::Str(r#"{"s":"v\"q\\/é\n\u0001"}"#.into()))
        );
        assert_eq!(query(r#"{"a": 1}"#, "$.a"), Ok(Value::Null), "a scalar");
        assert_eq!(query(r#"{"a": 5}"#, "$.a[*]"), Ok(Value::Str("[]".into())));
        assert_eq!(query(r#"{"b": 5}"#, "$.a[*]"), Ok(Value::Null));
        let doc = r#"{"a": {"b": 1}, "b": 2, "c": [{"b": 3}], "d": [10, 11, 12, 13]}"#;
        assert_eq!(query(doc, "$..b"), Ok(Value::Str("[2,1,3]".into())));
        assert_eq!(query(doc, "$.d[1:3]"), Ok(Value::Str("[11,12]".into())));
        assert_eq!(query(doc, "$.d[-2:]"), Ok(Value::Str("[12,13]".into())));
        assert_eq!(
            query(doc, "$.d[0, -1, 9]"),
            Ok(Value::Str("[10,13]".into()))
        );
        assert_eq!(query(doc, "$.c[*].b"), Ok(Value::Str("[3]".into())));
        assert!(query(doc, "$.d[?(@ > 10)]").unwrap_err().contains("filter"));
    }

    #[test]
    fn json_string_writes_values_as_flink_does() {
        let js = |v: Value| eval_json_string(&[v]);
        assert_eq!(js(Value::Double(1.0e10)), Ok(Value::Str("1.0E+10".into())));
        assert_eq!(js(Value::Double(0.1)), Ok(Value::Str("0.1".into())));
        assert!(js(Value::Double(f64::NAN)).unwrap_err().contains("NaN"));
        assert_eq!(
            js(Value::Str("a\"b".into())),
            Ok(Value::Str(r#""a\"b""#.into()))
        );
        // 2024-01-01 10:00:00.500 and 10:00:00.000
        assert_eq!(
            js(Value::Ts(1_704_103_200_500)),
            Ok(Value::Str(r#""2024-01-01T10:00:00.5""#.into()))
        );
        assert_eq!(
            js(Value::Ts(1_704_103_200_000)),
            Ok(Value::Str(r#""2024-01-01T10:00:00""#.into()))
        );
        assert_eq!(js(Value::Null), Ok(Value::Null));
    }
}
