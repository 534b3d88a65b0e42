//! The `json` format's reader: one JSON object per line, decoded straight into a row of the
//! table's physical columns.
//!
//! It scans the line once, without building a tree or copying field names: each field name
//! is matched against the columns (trying first the column the same position held in the
//! previous line, as the records of a file usually share their field order), a column the
//! script reads is converted to its type in place, and every other value is only skipped
//! over. Rows carry only the read columns, in the table's order (projection push-down, as
//! Flink's JSON format does). Strings are copied once,
//! into the row. Timestamps in the common `yyyy-MM-dd HH:mm:ss[.SSS]` form are read by byte
//! offset.
//!
//! It is lenient where strictness would cost a pass over every byte: a control character
//! inside a string is taken as it is, and a skipped nested value is checked only as far as
//! matching its quotes and brackets. Any other malformed line is refused, with serde_json's
//! message.

use crate::connectors::{PhysicalColumn, days_from_civil, parse_text};
use crate::nested::Nested;
use crate::value::{EventTime, Row, SqlType, Value};
use weir_engine::bytes;

/// Decodes the lines of one table's files (one decoder per source reader).
pub(crate) struct JsonRowDecoder {
    table: String,
    cols: Vec<Col>,
    /// The column the n-th field of the previous line was (`usize::MAX`: none).
    order: Vec<usize>,
    /// How many columns the rows hold (the read ones).
    width: usize,
    /// The capacity rows are allocated with: room for the table's computed columns too,
    /// which the next operator appends.
    row_capacity: usize,
    last_day: LastDay,
    /// The table's event-time column when rows hold it: checked as each line is decoded,
    /// where its file and line are known.
    event_time: Option<EventTime>,
}

struct Col {
    field: String,
    /// The field name as it appears unescaped in a compact line, quotes and colon included
    /// (`"price":`); empty when the name has a character JSON must escape.
    quoted: Vec<u8>,
    ty: SqlType,
    /// `ty` reduced to the cases with a fast path, compared once per field instead of
    /// `SqlType`'s (data-carrying) variants.
    fast: Fast,
    /// Its position in the rows when some statement reads it; `None`: it is not in the rows
    /// and its values are only skipped over.
    slot: Option<usize>,
}

impl JsonRowDecoder {
    /// A decoder for `cols`; `read[i]` says whether column `i` is used by a query. Rows hold
    /// the read columns in order and are allocated with room for `row_width` values (at
    /// least one per read column).
    pub(crate) fn new(
        table: &str,
        cols: &[PhysicalColumn],
        read: &[bool],
        row_width: usize,
    ) -> Self {
        let mut width = 0;
        JsonRowDecoder {
            table: table.to_string(),
            cols: cols
                .iter()
                .zip(read)
                .map(|(c, &read)| Col {
                    quoted: if c.field.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
                        Vec::new()
                    } else {
                        format!("\"{}\":", c.field).into_bytes()
                    },
                    field: c.field.clone(),
                    ty: c.col.ty,
                    fast: Fast::of(c.col.ty),
                    slot: read.then(|| {
                        width += 1;
                        width - 1
                    }),
                })
                .collect(),
            order: Vec::new(),
            width,
            row_capacity: row_width.max(width),
            last_day: LastDay::default(),
            event_time: None,
        }
    }

    /// Refuses lines whose `event_time` column is not a TIMESTAMP(3) (a decode error).
    pub(crate) fn with_event_time(mut self, event_time: Option<EventTime>) -> Self {
        self.event_time = event_time;
        self
    }

    /// Decodes one line (trimmed, not empty) into a row; the error names what is wrong.
    pub(crate) fn decode(&mut self, line: &[u8]) -> Result<Row, String> {
        let mut vals = Vec::with_capacity(self.row_capacity);
        vals.resize_with(self.width, || Value::Null);
        let mut p = Scanner { b: line, i: 0 };
        match self.object(&mut p, &mut vals) {
            Ok(()) => match &self.event_time {
                Some(et) => et.of(&vals).map(|_| Row(vals)),
                None => Ok(Row(vals)),
            },
            Err(Fault::Syntax(ours)) => Err(syntax_message(line, ours)),
            Err(Fault::Field(msg)) => Err(msg),
        }
    }

    fn object(&mut self, p: &mut Scanner<'_>, vals: &mut [Value]) -> Result<(), Fault> {
        p.ws();
        if p.peek() != Some(b'{') {
            return Err(Fault::Syntax("not a JSON object"));
        }
        p.i += 1;
        p.ws();
        if p.peek() == Some(b'}') {
            p.i += 1;
        } else {
            let mut pos = 0;
            loop {
                let col = if let Some(c) = self.predicted(pos, &p.b[p.i..]) {
                    p.i += self.cols[c].quoted.len();
                    Some(c)
                } else {
                    let (ks, ke, escaped) = p.string()?;
                    let col = if escaped {
                        let name: String =
                            serde_json::from_slice(&p.b[ks - 1..=ke]).map_err(|_| Fault::BAD)?;
                        self.lookup(pos, name.as_bytes())
                    } else {
                        self.lookup(pos, &p.b[ks..ke])
                    };
                    p.ws();
                    p.expect(b':')?;
                    col
                };
                p.ws();
                match col.and_then(|c| Some((c, self.cols[c].slot?))) {
                    Some((c, slot)) => self.value(p, c, &mut vals[slot])?,
                    None => p.skip_value()?,
                }
                pos += 1;
                // Compact JSON: the comma right after the value, the next name right after it.
                if p.peek() == Some(b',') && p.b.get(p.i + 1) == Some(&b'"') {
                    p.i += 1;
                    continue;
                }
                p.ws();
                match p.next() {
                    Some(b',') => p.ws(),
                    Some(b'}') => break,
                    _ => return Err(Fault::Syntax("expected ',' or '}' after a field")),
                }
            }
        }
        p.ws();
        if p.i != p.b.len() {
            return Err(Fault::Syntax("trailing characters after the object"));
        }
        Ok(())
    }

    /// The column field `pos` held last time, when `rest` starts with its quoted name and a
    /// colon: lines of one file mostly list the same fields in the same order, and comparing
    /// the name in place saves searching for its closing quote and then for the colon.
    #[inline(always)]
    fn predicted(&self, pos: usize, rest: &[u8]) -> Option<usize> {
        let c = *self.order.get(pos)?;
        let q = &self.cols.get(c)?.quoted;
        (!q.is_empty() && rest.get(..q.len()).is_some_and(|r| bytes::eq(r, q))).then_some(c)
    }

    /// The column named `name`, trying first the column field `pos` held last time.
    #[inline(always)]
    fn lookup(&mut self, pos: usize, name: &[u8]) -> Option<usize> {
        if let Some(&c) = self.order.get(pos)
            && c != usize::MAX
            && bytes::eq(self.cols[c].field.as_bytes(), name)
        {
            return Some(c);
        }
        let found = self
            .cols
            .iter()
            .position(|c| bytes::eq(c.field.as_bytes(), name));
        if self.order.len() <= pos {
            self.order.resize(pos + 1, usize::MAX);
        }
        self.order[pos] = found.unwrap_or(usize::MAX);
        found
    }

    /// Reads the value at the scanner as column `c`'s type into `out`. (Written in place, not
    /// returned: a returned value was copied three times on its way into the row.)
    fn value(&mut self, p: &mut Scanner<'_>, c: usize, out: &mut Value) -> Result<(), Fault> {
        let Col { ty, fast, .. } = self.cols[c];
        let start = p.i;
        let v = match p.peek() {
            Some(b'"') => {
                let (s, e, escaped) = p.string()?;
                if fast == Fast::Timestamp
                    && !escaped
                    && let Some(ms) = fast_timestamp(&p.b[s..e], &mut self.last_day)
                {
                    put(out, Value::Ts(ms));
                    return Ok(());
                }
                let owned;
                let text = if escaped {
                    owned = serde_json::from_slice::<String>(&p.b[s - 1..=e])
                        .map_err(|_| Fault::BAD)?;
                    owned.as_str()
                } else {
                    std::str::from_utf8(&p.b[s..e]).map_err(|_| Fault::BAD)?
                };
                match fast {
                    // Kept as written, spaces included (as Flink's JSON format does).
                    Fast::String => Some(Value::Str(text.to_owned())),
                    _ => parse_text(text, ty),
                }
            }
            Some(b'n') => {
                p.literal(b"null")?;
                Some(Value::Null)
            }
            Some(b't') => {
                p.literal(b"true")?;
                bool_value(true, ty)
            }
            Some(b'f') => {
                p.literal(b"false")?;
                bool_value(false, ty)
            }
            Some(b'-' | b'0'..=b'9') => {
                let (text, int) = p.number()?;
                match (int, ty) {
                    (Some(i), _) if fast == Fast::BigInt => Some(Value::Int(i)),
                    (Some(i), t) if t.is_integer() => t.holds_int(i).then_some(Value::Int(i)),
                    (Some(i), SqlType::Decimal(p, s)) => Some(
                        crate::decimal::to_type(i128::from(i), 0, p, s)
                            .map_or(Value::Null, |v| Value::Decimal(v, s)),
                    ),
                    (Some(i), SqlType::Timestamp) => {
                        crate::value::timestamp_in_range(i).then_some(Value::Ts(i))
                    }
                    _ => {
                        let text = std::str::from_utf8(text).expect("a number is ASCII");
                        number_value(text, int.is_some() || is_integer(text), ty)
                    }
                }
            }
            Some(b'[' | b'{') => {
                p.skip_value()?;
                match ty {
                    // A nested value read as a STRING is its (compact) JSON text.
                    SqlType::String => {
                        let v: serde_json::Value =
                            serde_json::from_slice(&p.b[start..p.i]).map_err(|_| Fault::BAD)?;
                        Some(Value::Str(v.to_string()))
                    }
                    SqlType::Nested(_) => nested_value(&p.b[start..p.i], ty)?,
                    _ => None,
                }
            }
            _ => return Err(Fault::Syntax("expected a value")),
        };
        match v {
            Some(v) => {
                put(out, v);
                Ok(())
            }
            None => Err(self.not_valid(c, &p.b[start..p.i])),
        }
    }

    /// The error for a value that does not fit column `c`.
    #[cold]
    #[inline(never)]
    fn not_valid(&self, c: usize, text: &[u8]) -> Fault {
        let col = &self.cols[c];
        Fault::Field(format!(
            "table '{}': field '{}' = {} is not a valid {}",
            self.table,
            col.field,
            String::from_utf8_lossy(text),
            col.ty.sql_name()
        ))
    }
}

/// The column types whose values the decoder reads without looking at the `SqlType`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fast {
    BigInt,
    Timestamp,
    String,
    Other,
}

impl Fast {
    fn of(ty: SqlType) -> Fast {
        match ty {
            SqlType::BigInt => Fast::BigInt,
            SqlType::Timestamp => Fast::Timestamp,
            SqlType::String => Fast::String,
            _ => Fast::Other,
        }
    }
}

/// Whether a JSON number's text is an integer (no fraction or exponent).
fn is_integer(text: &str) -> bool {
    !text.bytes().any(|c| matches!(c, b'.' | b'e' | b'E'))
}

/// Writes `v` into a row's slot, which holds NULL unless the line repeats a field: then
/// without running `Value`'s drop glue (an out-of-line call since ARRAY, MAP and ROW joined
/// the enum) for every field of every line.
#[inline(always)]
fn put(out: &mut Value, v: Value) {
    if matches!(out, Value::Null) {
        // Forgetting a NULL frees nothing.
        std::mem::forget(std::mem::replace(out, v));
    } else {
        *out = v;
    }
}

/// The JSON array or object `text` read as the nested type `ty` (out of line: the
/// decoder's loop over scalar fields stays as it was).
#[cold]
#[inline(never)]
fn nested_value(text: &[u8], ty: SqlType) -> Result<Option<Value>, Fault> {
    let v: serde_json::Value = serde_json::from_slice(text).map_err(|_| Fault::BAD)?;
    Ok(from_json(&v, ty))
}

/// A JSON value read as `ty` (an ARRAY from a JSON array, a MAP or a ROW from an object, a
/// ROW's missing fields NULL, as Flink's json format reads them); None where it does not fit.
fn from_json(v: &serde_json::Value, ty: SqlType) -> Option<Value> {
    use serde_json::Value as J;
    let nested = match ty {
        SqlType::Nested(n) => Some(n.get()),
        _ => None,
    };
    Some(match (v, nested) {
        (J::Null, _) => Value::Null,
        (J::Array(items), Some(Nested::Array(e))) => Value::Array(
            items
                .iter()
                .map(|x| from_json(x, *e))
                .collect::<Option<Vec<_>>>()?
                .into(),
        ),
        (J::Object(m), Some(Nested::Map(k, t))) => Value::Map(
            m.iter()
                .map(|(key, x)| Some((parse_text(key, *k)?, from_json(x, *t)?)))
                .collect::<Option<Vec<_>>>()?
                .into(),
        ),
        (J::Object(m), Some(Nested::Row(fields))) => Value::Row(
            fields
                .iter()
                .map(|(name, t)| m.get(name).map_or(Some(Value::Null), |x| from_json(x, *t)))
                .collect::<Option<Vec<_>>>()?
                .into(),
        ),
        (_, Some(_)) => return None,
        (J::String(s), _) if ty == SqlType::String => Value::Str(s.clone()),
        (J::String(s), _) => parse_text(s, ty)?,
        (J::Bool(b), _) => bool_value(*b, ty)?,
        (J::Number(n), _) => number_value(&n.to_string(), n.is_i64() || n.is_u64(), ty)?,
        (J::Array(_) | J::Object(_), _) if ty == SqlType::String => Value::Str(v.to_string()),
        (J::Array(_) | J::Object(_), _) => return None,
    })
}

fn bool_value(b: bool, ty: SqlType) -> Option<Value> {
    match ty {
        SqlType::Boolean => Some(Value::Bool(b)),
        SqlType::String => Some(Value::Str(b.to_string())),
        _ => None,
    }
}

/// A JSON number as a value of `ty`: integers fit the integer types (in their range), DOUBLE and TIMESTAMP (epoch ms);
/// any number fits DOUBLE and STRING (its text as written in the JSON).
fn number_value(text: &str, int: bool, ty: SqlType) -> Option<Value> {
    Some(match ty {
        t if int && t.is_integer() => Value::Int(t.checked_int(text.parse().ok()?).ok()?),
        SqlType::Timestamp if int => Value::Ts(
            text.parse()
                .ok()
                .filter(|ms| crate::value::timestamp_in_range(*ms))?,
        ),
        SqlType::Double => Value::Double(text.parse().ok()?),
        // Rounded once from the text to the nearest float, as Jackson's `getFloatValue`.
        SqlType::Float => Value::Float(text.parse().ok()?),
        // Exactly as written: `1.50` read into DECIMAL(10, 2) stays 1.50.
        SqlType::Decimal(p, s) => crate::connectors::decimal_text(text, p, s)?,
        // As Flink: the number's text as written (`1.50` stays `1.50`).
        SqlType::String => Value::Str(text.to_string()),
        _ => return None,
    })
}

/// The day of the last date [`fast_timestamp`] read: the lines of a file mostly share it.
#[derive(Default)]
struct LastDay {
    date: [u8; 10],
    /// `None` until a date was read.
    days: Option<i64>,
}

/// `yyyy-MM-dd[ T]HH:mm:ss[.f…][Z]` as epoch milliseconds, by byte offset; `None` for any
/// other form (the caller then tries the general parser). The date is compared with the
/// previous value's as two words, and `HH:mm:ss` is checked and read as one.
#[inline(always)]
fn fast_timestamp(b: &[u8], last: &mut LastDay) -> Option<i64> {
    let b = b.strip_suffix(b"Z").unwrap_or(b);
    if b.len() < 19 || !matches!(b[10], b' ' | b'T') {
        return None;
    }
    let days = if let Some(days) = last.days
        && bytes::eq(&b[..10], &last.date)
    {
        days
    } else {
        if b[4] != b'-' || b[7] != b'-' {
            return None;
        }
        let digit = |i: usize| {
            let d = b[i].wrapping_sub(b'0');
            (d < 10).then_some(i64::from(d))
        };
        let two = |i: usize| Some(digit(i)? * 10 + digit(i + 1)?);
        let y = two(0)? * 100 + two(2)?;
        let (m, d) = (two(5)?, two(8)?);
        let days = days_from_civil(y, m, d);
        last.date.copy_from_slice(&b[..10]);
        last.days = Some(days);
        days
    };
    // `HH:mm:ss`, the first byte lowest: the colons are bytes 2 and 5.
    let x = u64::from_le_bytes(b[11..19].try_into().expect("8 bytes"));
    const COLONS: u64 = 0xFF << 16 | 0xFF << 40;
    if x & COLONS != u64::from(b':') << 16 | u64::from(b':') << 40 {
        return None;
    }
    // With zeros for the colons, all eight bytes must be digits.
    let x = (x & !COLONS) | u64::from(b'0') << 16 | u64::from(b'0') << 40;
    if leading_digits(x) != 8 {
        return None;
    }
    let d = x - 0x3030_3030_3030_3030;
    let two = |at: u32| ((d >> (8 * at)) & 0xFF) as i64 * 10 + ((d >> (8 * at + 8)) & 0xFF) as i64;
    let (hh, mm, ss) = (two(0), two(3), two(6));
    let ms = match &b[19..] {
        [] => 0,
        [b'.', frac @ ..] if !frac.is_empty() && frac.iter().all(u8::is_ascii_digit) => {
            let f = |i: usize| frac.get(i).map_or(0, |&c| i64::from(c - b'0'));
            f(0) * 100 + f(1) * 10 + f(2)
        }
        _ => return None,
    };
    Some(((days * 24 + hh) * 60 + mm) * 60_000 + ss * 1000 + ms)
}

/// Why a line did not decode.
enum Fault {
    /// Malformed JSON (our short description; serde_json's is preferred).
    Syntax(&'static str),
    /// Well-formed, but a field does not fit its column: the full message.
    Field(String),
}

impl Fault {
    const BAD: Fault = Fault::Syntax("malformed JSON");
}

/// The message for a malformed line: serde_json's (with its column), or ours when serde_json
/// accepts what this reader does not.
fn syntax_message(line: &[u8], ours: &str) -> String {
    match serde_json::from_slice::<serde_json::Value>(line) {
        Err(e) => e.to_string(),
        Ok(v) if !v.is_object() => format!("{v} is not a JSON object"),
        Ok(_) => ours.to_string(),
    }
}

/// The index of the first `"` or `\\` in `b`. Field names and most values are short, so
/// eight bytes at a time (the "has a zero byte" bit trick; the lowest flagged byte is exact)
/// beats a SIMD search's set-up; long runs go to memchr.
#[inline(always)]
fn quote_or_backslash(b: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let mut chunks = b.chunks_exact(8);
    for (n, c) in chunks.by_ref().take(4).enumerate() {
        let x = u64::from_le_bytes(c.try_into().expect("8 bytes"));
        let hit = zero(x ^ (ONES * u64::from(b'"'))) | zero(x ^ (ONES * u64::from(b'\\')));
        if hit != 0 {
            return Some(n * 8 + (hit.trailing_zeros() / 8) as usize);
        }
    }
    let done = (b.len() - chunks.remainder().len()).min(32);
    if b.len() - done >= 8 {
        return memchr::memchr2(b'"', b'\\', &b[done..]).map(|o| done + o);
    }
    b[done..]
        .iter()
        .position(|&c| c == b'"' || c == b'\\')
        .map(|o| done + o)
}

/// How many of the eight bytes of `x` (the first byte lowest) are ASCII digits before the
/// first one that is not (8: all).
#[inline(always)]
fn leading_digits(x: u64) -> usize {
    const HIGH_NIBBLES: u64 = 0xF0F0_F0F0_F0F0_F0F0;
    const SEVENS: u64 = 0x7F7F_7F7F_7F7F_7F7F;
    // A digit (0x30..=0x39) has the high nibble 3 before and after adding 6; a carry out of a
    // byte only reaches the bytes after it, past the first non-digit. `m` is 0 in digit bytes.
    let after = x.wrapping_add(0x0606_0606_0606_0606) & HIGH_NIBBLES;
    let m = ((x & HIGH_NIBBLES) | (after >> 4)) ^ 0x3333_3333_3333_3333;
    let non_digit = (((m & SEVENS) + SEVENS) | m) & !SEVENS;
    (non_digit.trailing_zeros() / 8) as usize
}

/// The value of the first `n` (1 to 8) bytes of `x`, all ASCII digits, the first byte the
/// most significant: shifted so that zeros lead, then combined in pairs, fours and eights.
#[inline(always)]
fn digits_value(x: u64, n: usize) -> i64 {
    let v = x.wrapping_sub(0x3030_3030_3030_3030) << (8 * (8 - n));
    let v = (v.wrapping_mul(10) + (v >> 8)) & 0x00FF_00FF_00FF_00FF;
    let v = (v.wrapping_mul(100) + (v >> 16)) & 0x0000_FFFF_0000_FFFF;
    let v = (v.wrapping_mul(10_000) + (v >> 32)) & 0xFFFF_FFFF;
    v as i64
}

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
}

impl Scanner<'_> {
    #[inline]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    #[inline]
    fn next(&mut self) -> Option<u8> {
        let c = self.peek();
        self.i += 1;
        c
    }

    #[inline]
    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\r' | b'\n')) {
            self.i += 1;
        }
    }

    #[inline]
    fn expect(&mut self, c: u8) -> Result<(), Fault> {
        if self.next() == Some(c) {
            Ok(())
        } else {
            Err(Fault::Syntax("expected ':' after a field name"))
        }
    }

    #[inline]
    fn literal(&mut self, word: &[u8]) -> Result<(), Fault> {
        if self.b[self.i..].starts_with(word) {
            self.i += word.len();
            Ok(())
        } else {
            Err(Fault::BAD)
        }
    }

    /// A string at the scanner: the bounds of its contents and whether it has escapes.
    #[inline(always)]
    fn string(&mut self) -> Result<(usize, usize, bool), Fault> {
        if self.next() != Some(b'"') {
            return Err(Fault::Syntax("expected a string"));
        }
        let start = self.i;
        let mut escaped = false;
        loop {
            let Some(off) = quote_or_backslash(&self.b[self.i..]) else {
                return Err(Fault::Syntax("unterminated string"));
            };
            self.i += off;
            if self.b[self.i] == b'"' {
                let end = self.i;
                self.i += 1;
                return Ok((start, end, escaped));
            }
            escaped = true;
            self.i += 2;
            if self.i > self.b.len() {
                return Err(Fault::Syntax("unterminated string"));
            }
        }
    }

    /// A number at the scanner (JSON's grammar): its text, and its value when it is an
    /// integer that fits an i64.
    #[inline(always)]
    fn number(&mut self) -> Result<(&[u8], Option<i64>), Fault> {
        let start = self.i;
        let digits = |s: &mut Self| {
            let from = s.i;
            while matches!(s.peek(), Some(b'0'..=b'9')) {
                s.i += 1;
            }
            s.i > from
        };
        let neg = self.peek() == Some(b'-');
        if neg {
            self.i += 1;
        }
        let int_start = self.i;
        // The common case, an integer of 1 to 7 digits with 8 bytes to read: a word at a time,
        // without a branch per digit (whose exit the varying lengths mispredict); eight
        // digits read the next word for up to seven more.
        if let Some(w) = self.b.get(self.i..self.i + 8) {
            let x = u64::from_le_bytes(w.try_into().expect("8 bytes"));
            let n = leading_digits(x);
            if (1..8).contains(&n)
                && !(n > 1 && w[0] == b'0')
                && !matches!(w[n], b'.' | b'e' | b'E')
            {
                self.i += n;
                let v = digits_value(x, n);
                return Ok((&self.b[start..self.i], Some(if neg { -v } else { v })));
            }
            if n == 8
                && w[0] != b'0'
                && let Some(w2) = self.b.get(self.i + 8..self.i + 16)
            {
                let x2 = u64::from_le_bytes(w2.try_into().expect("8 bytes"));
                let m = leading_digits(x2);
                if m < 8 && !matches!(w2[m], b'.' | b'e' | b'E') {
                    let mut v = digits_value(x, 8);
                    if m > 0 {
                        v = v * 10i64.pow(m as u32) + digits_value(x2, m);
                    }
                    self.i += 8 + m;
                    return Ok((&self.b[start..self.i], Some(if neg { -v } else { v })));
                }
            }
        }
        match self.peek() {
            // No leading zeros: "0" and "0.5", not "01".
            Some(b'0') => {
                self.i += 1;
                if matches!(self.peek(), Some(b'0'..=b'9')) {
                    return Err(Fault::Syntax("malformed number"));
                }
            }
            _ if digits(self) => {}
            _ => return Err(Fault::Syntax("malformed number")),
        }
        let int_end = self.i;
        let mut int = true;
        if self.peek() == Some(b'.') {
            self.i += 1;
            int = false;
            if !digits(self) {
                return Err(Fault::Syntax("malformed number"));
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            int = false;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if !digits(self) {
                return Err(Fault::Syntax("malformed number"));
            }
        }
        let text = &self.b[start..self.i];
        // Up to 18 digits cannot overflow; longer integers go through `str::parse`.
        let value = (int && int_end - int_start <= 18).then(|| {
            let v = self.b[int_start..int_end]
                .iter()
                .fold(0i64, |acc, &d| acc * 10 + i64::from(d - b'0'));
            if neg { -v } else { v }
        });
        Ok((text, value))
    }

    /// Skips one value; nested values only as far as matching brackets and quotes.
    #[inline(always)]
    fn skip_value(&mut self) -> Result<(), Fault> {
        match self.peek() {
            Some(b'"') => self.string().map(|_| ()),
            Some(b'n') => self.literal(b"null"),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'-' | b'0'..=b'9') => self.number().map(|_| ()),
            Some(b'[' | b'{') => {
                let mut depth = 0usize;
                loop {
                    match self.peek() {
                        Some(b'"') => {
                            self.string()?;
                            continue;
                        }
                        Some(b'[' | b'{') => depth += 1,
                        Some(b']' | b'}') => {
                            depth -= 1;
                            if depth == 0 {
                                self.i += 1;
                                return Ok(());
                            }
                        }
                        Some(_) => {}
                        None => return Err(Fault::Syntax("unterminated array or object")),
                    }
                    self.i += 1;
                }
            }
            _ => Err(Fault::Syntax("expected a value")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connectors::parse_timestamp;
    use crate::value::Column;

    fn decoder(cols: &[(&str, SqlType)], read: &[bool]) -> JsonRowDecoder {
        let cols: Vec<PhysicalColumn> = cols
            .iter()
            .map(|(f, ty)| PhysicalColumn {
                col: Column {
                    name: f.to_lowercase(),
                    ty: *ty,
                },
                field: f.to_string(),
                metadata: None,
                is_virtual: false,
                span: sqlparser::tokenizer::Span::empty(),
            })
            .collect();
        JsonRowDecoder::new("t", &cols, read, 0)
    }

    fn all_types() -> JsonRowDecoder {
        use SqlType::*;
        decoder(
            &[
                ("id", BigInt),
                ("name", String),
                ("score", Double),
                ("ok", Boolean),
                ("ts", Timestamp),
            ],
            &[true; 5],
        )
    }

    #[test]
    fn fields_are_read_by_name_in_any_order_with_missing_ones_null() {
        let mut d = all_types();
        let row = d
            .decode(br#"{"id": 7, "name": "ann", "score": 1.5, "ok": true, "ts": "2026-01-01 00:00:01.250"}"#)
            .unwrap();
        assert_eq!(
            row.0,
            [
                Value::Int(7),
                Value::Str("ann".into()),
                Value::Double(1.5),
                Value::Bool(true),
                Value::Ts(1_767_225_601_250)
            ]
        );
        // Another order, an unknown nested field, a missing field and epoch-ms time.
        let row = d
            .decode(br#"{ "ts" : 1000 , "x": {"a": [1, "]"]}, "ok": false, "id": -3, "score": 2 }"#)
            .unwrap();
        assert_eq!(
            row.0,
            [
                Value::Int(-3),
                Value::Null,
                Value::Double(2.0),
                Value::Bool(false),
                Value::Ts(1000)
            ]
        );
        assert_eq!(d.decode(b"{}").unwrap().0, vec![Value::Null; 5]);
        // A repeated field: the last value counts (as a JSON object read into a map).
        let row = d.decode(br#"{"name": "a", "id": 1, "name": "b"}"#).unwrap();
        assert_eq!(
            row.0,
            [
                Value::Int(1),
                Value::Str("b".into()),
                Value::Null,
                Value::Null,
                Value::Null
            ]
        );
    }

    #[test]
    fn a_field_name_predicted_from_the_previous_line_matches_only_the_same_name() {
        use SqlType::*;
        let mut d = decoder(
            &[
                ("a", BigInt),
                ("ab", BigInt),
                ("q\"x", BigInt),
                ("b", BigInt),
            ],
            &[true; 4],
        );
        let mut line = |l: &str| d.decode(l.as_bytes()).map(|r| r.0);
        let i = |n: Option<i64>| n.map_or(Value::Null, Value::Int);
        let row = |a, ab, q, b| Ok(vec![i(a), i(ab), i(q), i(b)]);
        let first = r#"{"a":1,"q\"x":2,"b":3}"#;
        assert_eq!(line(first), row(Some(1), None, Some(2), Some(3)));
        // Same positions, other names: a longer name starting with the predicted one, an
        // escaped spelling of the predicted name, and an unknown name.
        assert_eq!(
            line(r#"{"ab":4,"q\"x":5,"\u0062":6}"#),
            row(None, Some(4), Some(5), Some(6))
        );
        assert_eq!(
            line(r#"{"a" :7, "zz":8, "b":9}"#),
            row(Some(7), None, None, Some(9))
        );
        // Spaces after the colon, and a colon missing after a predicted name.
        assert_eq!(
            line(r#"{"a": 10,"q\"x":  11,"b":12}"#),
            row(Some(10), None, Some(11), Some(12))
        );
        assert!(line(r#"{"a" 1,"q\"x":2,"b":3}"#).is_err());
        assert_eq!(line(first), row(Some(1), None, Some(2), Some(3)));
    }

    #[test]
    fn escapes_are_decoded_in_names_and_values() {
        let mut d = all_types();
        let row = d
            .decode(br#"{"na\u006de": " a \"quoted\" \\ line\n", "id": null}"#)
            .unwrap();
        assert_eq!(row.0[0], Value::Null);
        // Strings are kept as written, leading space and newline included (Flink's JSON).
        assert_eq!(row.0[1], Value::Str(" a \"quoted\" \\ line\n".into()));
    }

    #[test]
    fn a_string_column_reads_numbers_booleans_and_nested_values_as_their_json_text() {
        let mut d = decoder(&[("s", SqlType::String)], &[true]);
        for (line, want) in [
            (r#"{"s": 12}"#, "12"),
            // As Flink: the number's text, not the double's (a price keeps its cents).
            (r#"{"s": 1.50}"#, "1.50"),
            (r#"{"s": true}"#, "true"),
            (r#"{"s": {"a": [1, 2]}}"#, r#"{"a":[1,2]}"#),
        ] {
            assert_eq!(
                d.decode(line.as_bytes()).unwrap().0,
                [Value::Str(want.into())],
                "{line}"
            );
        }
    }

    #[test]
    fn unread_columns_are_left_out_of_the_rows_and_their_values_are_not_converted() {
        use SqlType::*;
        let mut d = decoder(
            &[("a", BigInt), ("b", BigInt), ("c", String)],
            &[true, false, true],
        );
        // "b" is not a BIGINT, but no query reads it; the rows hold a and c.
        let row = d.decode(br#"{"a": 1, "b": "not a number", "c": "x"}"#);
        assert_eq!(row.unwrap().0, [Value::Int(1), Value::Str("x".into())]);
        let row = d.decode(br#"{"c": "y", "b": [1, {"z": 2}]}"#);
        assert_eq!(row.unwrap().0, [Value::Null, Value::Str("y".into())]);
        assert!(d.decode(br#"{"a": 1, "b": "no closing quote}"#).is_err());
    }

    #[test]
    fn a_value_that_does_not_fit_its_column_is_refused_naming_table_field_and_value() {
        let mut d = all_types();
        for (line, msg) in [
            (
                r#"{"id": "x7"}"#,
                r#"table 't': field 'id' = "x7" is not a valid BIGINT"#,
            ),
            (
                r#"{"id": 1.5}"#,
                "table 't': field 'id' = 1.5 is not a valid BIGINT",
            ),
            (
                r#"{"ok": 1}"#,
                "table 't': field 'ok' = 1 is not a valid BOOLEAN",
            ),
            (
                r#"{"ts": "yesterday"}"#,
                r#"table 't': field 'ts' = "yesterday" is not a valid TIMESTAMP(3)"#,
            ),
        ] {
            assert_eq!(d.decode(line.as_bytes()).unwrap_err(), msg, "{line}");
        }
    }

    #[test]
    fn malformed_lines_are_refused_with_serde_json_s_message() {
        let mut d = all_types();
        for line in [
            r#"{"id": 1"#,
            r#"{"id" 1}"#,
            r#"{"id": 01}"#,
            r#"{"id": 1} x"#,
            r#"{"name": "ann}"#,
            r#"{"x": [1, 2}"#,
        ] {
            let err = d.decode(line.as_bytes()).unwrap_err();
            let serde = serde_json::from_str::<serde_json::Value>(line).unwrap_err();
            assert_eq!(err, serde.to_string(), "{line}");
        }
        assert_eq!(
            d.decode(b"[1, 2]").unwrap_err(),
            "[1,2] is not a JSON object"
        );
    }

    #[test]
    fn numbers_read_a_word_at_a_time_agree_with_serde_json() {
        let mut d = decoder(
            &[("n", SqlType::BigInt), ("f", SqlType::Double)],
            &[true; 2],
        );
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        for _ in 0..20_000 {
            let r = next();
            let digits = 1 + (r % 20) as usize;
            let ds = next();
            let mut num: String = (0..digits)
                .map(|k| char::from(b'0' + ((ds >> (3 * k)) % 10) as u8))
                .collect();
            if r & (1 << 6) != 0 {
                num.insert(0, '-');
            }
            // What follows the number decides whether it is an integer, and how much of the
            // line is left to read a word from.
            let tail = [",\"f\": 1}", "}", " }", ".5}", "e3}", "E-1}", "0}"][(r >> 7) as usize % 7];
            let line = format!("{{\"n\": {num}{tail}");
            let got = d.decode(line.as_bytes());
            let want = serde_json::from_str::<serde_json::Value>(&line);
            match (&got, &want) {
                // serde_json reads "-0" as the float -0.0; as a BIGINT it is 0.
                (Ok(row), Ok(v)) => match v["n"].as_i64().or((num == "-0").then_some(0)) {
                    Some(i) => assert_eq!(row.0[0], Value::Int(i), "{line}"),
                    None => panic!("{line}: read {:?}, serde_json {v}", row.0),
                },
                // Not an integer, or too large for BIGINT, or malformed: refused by both.
                (Err(_), Err(_)) => {}
                (Err(e), Ok(v)) => assert!(v["n"].as_i64().is_none(), "{line}: {e}"),
                (Ok(row), Err(e)) => panic!("{line}: read {:?}, serde_json: {e}", row.0),
            }
        }
    }

    #[test]
    fn the_word_at_a_time_search_finds_the_first_quote_or_backslash_at_any_offset() {
        for len in 0..80 {
            for at in 0..=len {
                for c in [b'"', b'\\'] {
                    let mut b = vec![b'a'; len];
                    // High bytes (UTF-8) before the match must not be taken for it.
                    for x in b.iter_mut().take(at).step_by(3) {
                        *x = 0xe2;
                    }
                    if at < len {
                        b[at] = c;
                        b.extend_from_slice(b"\"\\");
                    }
                    let want = (at < len).then_some(at);
                    assert_eq!(quote_or_backslash(&b), want, "len {len} at {at}");
                }
            }
        }
    }

    #[test]
    fn the_fixed_form_timestamp_reader_agrees_with_the_general_parser() {
        // One cache across different dates, as a file's lines would use it.
        let mut last = LastDay::default();
        for s in [
            "2026-01-01 00:00:00.000",
            "2026-01-01 00:00:19.999",
            "1999-12-31T23:59:59.5Z",
            "2024-02-29 12:34:56",
            "1969-07-20 20:17:40.123456",
            "2026-03-01 00:00:00.1",
        ] {
            assert_eq!(
                fast_timestamp(s.as_bytes(), &mut last),
                parse_timestamp(s),
                "{s}"
            );
            // Again with the day cached.
            assert_eq!(
                fast_timestamp(s.as_bytes(), &mut last),
                parse_timestamp(s),
                "{s}"
            );
        }
        for s in [
            "2026-1-01 00:00:00",
            "2026-01-01",
            "2026-01-01 00:00:00.",
            "x026-01-01 00:00:00",
            "2026-01-01 0:00:00.000",
            "2026-01-01 00-00:00",
            "2026-01-01 00:00-00",
            "2026-01-01 0a:00:00",
            "2026-01-01 00:0/:00",
            "2026-01-01 00:00:5:",
            "2026-01-01 00:00:00.0a0",
        ] {
            assert_eq!(
                fast_timestamp(s.as_bytes(), &mut LastDay::default()),
                None,
                "{s}"
            );
        }
    }
}
