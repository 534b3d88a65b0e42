//! Time and number text as Flink writes and reads it: Java's `DateTimeFormatter` patterns
//! (`yyyy-MM-dd HH:mm:ss`), Java's `Double.toString`, and the calendar arithmetic of
//! `EXTRACT`, `TIMESTAMPADD`, `TIMESTAMPDIFF` and `FLOOR`/`CEIL … TO unit` on timestamps
//! (UTC epoch milliseconds, proleptic Gregorian calendar).

use crate::connectors::{days_from_civil, fraction_millis};
use weir_engine::time::civil_from_days;

const DAY_MS: i64 = 86_400_000;

/// A double as Java's `Double.toString` writes it (and so Flink's `CAST(d AS STRING)` and
/// `print`): the shortest digits that read back as the same double; plain notation with at
/// least one fractional digit from 10^-3 up to 10^7 (`0.001`, `1234567.0`), otherwise
/// scientific (`1.6325E8`, `1.0E-4`); `NaN`, `Infinity`, `-Infinity`.
pub(crate) fn java_double(d: f64) -> String {
    java_text(d, || format!("{}", d.abs()), || format!("{:e}", d.abs()))
}

/// A float as Java's `Float.toString` writes it (Flink's `CAST(f AS STRING)` of a FLOAT):
/// the shortest digits that read back as the same 32-bit float, with `Double.toString`'s
/// notation (`0.1`, `1.0E-5`, `3.4028235E38`).
pub(crate) fn java_float(f: f32) -> String {
    java_text(
        f64::from(f),
        || format!("{}", f.abs()),
        || format!("{:e}", f.abs()),
    )
}

/// Java's notation for a number `d` whose shortest digits are `plain` (`{}`) and `sci`
/// (`{:e}`) for its type.
fn java_text(d: f64, plain: impl FnOnce() -> String, sci: impl FnOnce() -> String) -> String {
    if d.is_nan() {
        return "NaN".into();
    }
    if d.is_infinite() {
        return if d > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    if d == 0.0 {
        return if d.is_sign_negative() { "-0.0" } else { "0.0" }.into();
    }
    let sign = if d < 0.0 { "-" } else { "" };
    let a = d.abs();
    if (1e-3..1e7).contains(&a) {
        let s = plain();
        return if s.contains('.') {
            format!("{sign}{s}")
        } else {
            format!("{sign}{s}.0")
        };
    }
    let s = sci();
    let (mantissa, exp) = s.split_once('e').expect("{:e} has an exponent");
    let mantissa = if mantissa.contains('.') {
        mantissa.to_string()
    } else {
        format!("{mantissa}.0")
    };
    format!("{sign}{mantissa}E{exp}")
}

/// The calendar fields of a timestamp.
struct Civil {
    year: i64,
    month: u32,
    day: u32,
    /// Milliseconds into the day.
    ms: i64,
    days: i64,
}

fn civil(t: i64) -> Civil {
    let days = t.div_euclid(DAY_MS);
    let (year, month, day) = civil_from_days(days);
    Civil {
        year,
        month,
        day,
        ms: t.rem_euclid(DAY_MS),
        days,
    }
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn month_days(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(y) => 29,
        _ => 28,
    }
}

/// Monday 0 … Sunday 6 (1970-01-01 was a Thursday).
fn weekday_from_monday(days: i64) -> i64 {
    (days + 3).rem_euclid(7)
}

fn day_of_year(c: &Civil) -> i64 {
    c.days - days_from_civil(c.year, 1, 1) + 1
}

/// The ISO-8601 week of the year (weeks start on Monday; week 1 holds the first Thursday).
fn iso_week(days: i64) -> i64 {
    let thursday = days - weekday_from_monday(days) + 3;
    let c = civil(thursday * DAY_MS);
    (day_of_year(&c) - 1) / 7 + 1
}

/// `EXTRACT(unit FROM t)` as Flink computes it (DOW: Sunday 1 … Saturday 7).
pub(super) fn extract(unit: &str, t: i64) -> Result<i64, String> {
    let c = civil(t);
    Ok(match unit.to_ascii_uppercase().as_str() {
        "MILLENNIUM" => (c.year + 999).div_euclid(1000),
        "CENTURY" => (c.year + 99).div_euclid(100),
        "DECADE" => c.year.div_euclid(10),
        "YEAR" => c.year,
        "QUARTER" => i64::from((c.month - 1) / 3 + 1),
        "MONTH" => i64::from(c.month),
        "WEEK" => iso_week(c.days),
        "DOY" | "DAYOFYEAR" => day_of_year(&c),
        "DAY" | "DAYOFMONTH" => i64::from(c.day),
        "DOW" | "DAYOFWEEK" => (c.days + 4).rem_euclid(7) + 1,
        "ISODOW" => weekday_from_monday(c.days) + 1,
        "HOUR" => c.ms / 3_600_000,
        "MINUTE" => c.ms / 60_000 % 60,
        "SECOND" => c.ms / 1000 % 60,
        "MILLISECOND" => c.ms % 1000,
        "MICROSECOND" => c.ms % 1000 * 1000,
        "NANOSECOND" => c.ms % 1000 * 1_000_000,
        "EPOCH" => t.div_euclid(1000),
        other => return Err(format!("unknown time unit '{other}'")),
    })
}

/// Whether EXTRACT's `unit` is a field Flink extracts from a TIME (its job fails on the
/// others, microseconds included).
pub(super) fn is_time_unit(unit: &str) -> bool {
    matches!(
        unit.to_ascii_uppercase().as_str(),
        "HOUR" | "MINUTE" | "SECOND" | "MILLISECOND"
    )
}

/// `t` plus `n` months, the day clamped to the end of the month (Jan 31 + 1 month = Feb 28/29).
fn add_months(t: i64, n: i64) -> Result<i64, String> {
    let c = civil(t);
    let m0 = c.year * 12 + i64::from(c.month) - 1 + n;
    let (y, m) = (m0.div_euclid(12), (m0.rem_euclid(12) + 1) as u32);
    if !(-1_000_000..=1_000_000).contains(&y) {
        return Err(format!("adding {n} months to the timestamp overflows"));
    }
    let d = c.day.min(month_days(y, m));
    Ok(days_from_civil(y, i64::from(m), i64::from(d)) * DAY_MS + c.ms)
}

/// Milliseconds of the fixed-length units; None for months, quarters and years.
fn unit_ms(unit: &str) -> Result<Option<i64>, String> {
    Ok(match unit {
        "MILLISECOND" => Some(1),
        "SECOND" => Some(1000),
        "MINUTE" => Some(60_000),
        "HOUR" => Some(3_600_000),
        "DAY" => Some(DAY_MS),
        "WEEK" => Some(7 * DAY_MS),
        "MONTH" | "QUARTER" | "YEAR" => None,
        other => return Err(format!("unknown time unit '{other}'")),
    })
}

fn unit_months(unit: &str) -> i64 {
    match unit {
        "QUARTER" => 3,
        "YEAR" => 12,
        _ => 1,
    }
}

/// `TIMESTAMPADD(unit, n, t)`.
pub(super) fn add(unit: &str, n: i64, t: i64) -> Result<i64, String> {
    let unit = unit.to_ascii_uppercase();
    let overflow = || format!("TIMESTAMPADD({unit}, {n}, …) overflows");
    match unit_ms(&unit)? {
        Some(ms) => n
            .checked_mul(ms)
            .and_then(|d| t.checked_add(d))
            .ok_or_else(overflow),
        None => add_months(t, n.checked_mul(unit_months(&unit)).ok_or_else(overflow)?),
    }
}

/// `TIMESTAMPDIFF(unit, t1, t2)`: whole units from `t1` to `t2`, truncated toward zero; for
/// months, the most months that can be added to `t1` (clamping the day) without passing `t2`.
pub(super) fn diff(unit: &str, t1: i64, t2: i64) -> Result<i64, String> {
    let unit = unit.to_ascii_uppercase();
    if let Some(ms) = unit_ms(&unit)? {
        return Ok((t2 - t1) / ms);
    }
    let months = |from: i64, to: i64| -> Result<i64, String> {
        // from <= to. An estimate that is never too high, then counted up.
        let mut m = (to - from) / (31 * DAY_MS);
        while add_months(from, m + 1)? <= to {
            m += 1;
        }
        Ok(m)
    };
    let m = if t1 <= t2 {
        months(t1, t2)?
    } else {
        -months(t2, t1)?
    };
    Ok(m / unit_months(&unit))
}

/// `FLOOR(t TO unit)`.
pub(super) fn floor(unit: &str, t: i64) -> Result<i64, String> {
    let unit = unit.to_ascii_uppercase();
    let c = civil(t);
    let month_start = |m: u32| days_from_civil(c.year, i64::from(m), 1) * DAY_MS;
    Ok(match unit.as_str() {
        "YEAR" => month_start(1),
        "QUARTER" => month_start((c.month - 1) / 3 * 3 + 1),
        "MONTH" => month_start(c.month),
        "WEEK" => {
            return Err("FLOOR/CEIL of a timestamp to WEEK is not supported yet".into());
        }
        u => {
            let ms = unit_ms(u)?.expect("fixed-length unit");
            t - t.rem_euclid(ms)
        }
    })
}

/// `CEIL(t TO unit)`: `t` itself when it is on a unit boundary, else the next boundary.
pub(super) fn ceil(unit: &str, t: i64) -> Result<i64, String> {
    let f = floor(unit, t)?;
    if f == t {
        return Ok(t);
    }
    let unit = unit.to_ascii_uppercase();
    match unit_ms(&unit)? {
        Some(ms) => Ok(f + ms),
        None => add_months(f, unit_months(&unit)),
    }
}

/// Reads `yyyy-MM-dd[ HH:mm:ss[.S…]]` (Flink's TIMESTAMP text; no `T`, no zone, no spaces
/// around it).
/// A DATE's text as Flink's `CAST(s AS DATE)` reads it: `yyyy-M-d` (one or two digits for
/// the month and the day), optionally followed by a time (` 12:00:00`, ignored); a day that
/// the month does not have is no date (None), unlike TIMESTAMP's clamping.
pub(crate) fn parse_date(s: &str) -> Option<i32> {
    let date = s.split([' ', 'T']).next()?;
    let mut parts = date.split('-');
    let mut num = |max_len: usize| -> Option<i64> {
        let p = parts.next()?;
        if p.is_empty() || p.len() > max_len || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        p.parse().ok()
    };
    let (y, m, d) = (num(4)?, num(2)?, num(2)?);
    if parts.next().is_some() || !(1..=12).contains(&m) {
        return None;
    }
    if !(1..=i64::from(month_days(y, m as u32))).contains(&d) {
        return None;
    }
    i32::try_from(days_from_civil(y, m, d)).ok()
}

/// A TIME's text as Flink reads it: `H[:m[:s[.f…]]]` (one or two digits each; hours 0 to 23,
/// minutes and seconds 0 to 59), as milliseconds of the day, the fraction cut to
/// milliseconds and then to `p` digits. None for any other text.
pub(crate) fn parse_time(s: &str, p: u8) -> Option<i32> {
    let (hms, frac) = s.split_once('.').unwrap_or((s, ""));
    let colons = hms.matches(':').count();
    if colons > 2 || (!frac.is_empty() && colons != 2) || (s.contains('.') && frac.is_empty()) {
        return None;
    }
    let mut parts = hms.split(':');
    let mut num = |max: i64| -> Option<i64> {
        let Some(t) = parts.next() else {
            return Some(0);
        };
        if t.is_empty() || t.len() > 2 || !t.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        t.parse().ok().filter(|v| *v <= max)
    };
    let (h, m, sec) = (num(23)?, num(59)?, num(59)?);
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let ms = frac
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(3)
        .fold(0, |acc, b| acc * 10 + i64::from(b - b'0'));
    Some(truncate_time(((h * 60 + m) * 60 + sec) * 1000 + ms, p))
}

/// Milliseconds of the day cut to `p` fractional digits (TIME(0): whole seconds), as Flink's
/// CAST to TIME(p) does.
pub(crate) fn truncate_time(ms: i64, p: u8) -> i32 {
    let unit = match p {
        0 => 1000,
        1 => 100,
        2 => 10,
        _ => 1,
    };
    (ms - ms % unit) as i32
}

pub(crate) fn parse_sql_timestamp(s: &str) -> Option<i64> {
    let (date, time) = s.split_once(' ').unwrap_or((s, ""));
    let mut d = date.split('-');
    let (y, m, day) = (d.next()?, d.next()?, d.next()?);
    if d.next().is_some()
        || y.len() != 4
        || m.is_empty()
        || m.len() > 2
        || day.is_empty()
        || day.len() > 2
    {
        return None;
    }
    let num = |x: &str| -> Option<i64> {
        x.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| x.parse().ok())
            .flatten()
    };
    let (y, m, day) = (num(y)?, num(m)?, num(day)?);
    // As Java's SMART resolver: a day up to 31 is clamped to the month's end.
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) {
        return None;
    }
    let day = day.min(i64::from(month_days(y, m as u32)));
    let mut ms = 0;
    if !time.is_empty() {
        let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
        let mut parts = hms.split(':');
        let hh = num(parts.next()?)?;
        let mm = num(parts.next()?)?;
        let ss = num(parts.next()?)?;
        // 24:00:00 is the end of the day, the next day's start.
        let midnight = hh == 24 && mm == 0 && ss == 0 && frac.bytes().all(|b| b == b'0');
        if parts.next().is_some() || (hh > 23 && !midnight) || mm > 59 || ss > 59 {
            return None;
        }
        if !frac.bytes().all(|b| b.is_ascii_digit()) || frac.len() > 9 {
            return None;
        }
        let millis = fraction_millis(frac);
        ms = ((hh * 60 + mm) * 60 + ss) * 1000 + millis;
    }
    Some(days_from_civil(y, m, day) * DAY_MS + ms)
}

/// One element of a `DateTimeFormatter` pattern.
#[derive(Debug, PartialEq)]
enum Part {
    Literal(String),
    /// A pattern letter repeated `n` times.
    Field(char, usize),
}

fn compile(pattern: &str) -> Result<Vec<Part>, String> {
    let mut parts = Vec::new();
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' {
            // 'text' is literal; '' is a quote.
            let mut text = String::new();
            i += 1;
            if chars.get(i) == Some(&'\'') {
                parts.push(Part::Literal("'".into()));
                i += 1;
                continue;
            }
            loop {
                match chars.get(i) {
                    None => return Err(format!("unterminated quote in pattern '{pattern}'")),
                    Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                        text.push('\'');
                        i += 2;
                    }
                    Some('\'') => {
                        i += 1;
                        break;
                    }
                    Some(&x) => {
                        text.push(x);
                        i += 1;
                    }
                }
            }
            parts.push(Part::Literal(text));
        } else if c.is_ascii_alphabetic() {
            let mut n = 1;
            while chars.get(i + n) == Some(&c) {
                n += 1;
            }
            if !"yuMLdDHhkKmsSaEe".contains(c) {
                return Err(format!(
                    "pattern letter '{c}' in '{pattern}' is not supported yet (supported: y u M L d D H h k K m s S a E, and 'quoted text')"
                ));
            }
            parts.push(Part::Field(c, n));
            i += n;
        } else {
            parts.push(Part::Literal(c.to_string()));
            i += 1;
        }
    }
    Ok(parts)
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const WEEKDAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

/// Formats `t` with a Java `DateTimeFormatter` pattern (English names, as Flink's default
/// locale on a server).
pub(super) fn format(t: i64, pattern: &str) -> Result<String, String> {
    let c = civil(t);
    let mut out = String::new();
    let pad = |out: &mut String, v: i64, n: usize| {
        out.push_str(&format!("{v:0n$}"));
    };
    for p in compile(pattern)? {
        match p {
            Part::Literal(s) => out.push_str(&s),
            Part::Field(f, n) => match f {
                'y' | 'u' if n == 2 => pad(&mut out, c.year.rem_euclid(100), 2),
                'y' | 'u' => pad(&mut out, c.year, n),
                'M' | 'L' if n >= 4 => out.push_str(MONTHS[c.month as usize - 1]),
                'M' | 'L' if n == 3 => out.push_str(&MONTHS[c.month as usize - 1][..3]),
                'M' | 'L' => pad(&mut out, i64::from(c.month), n),
                'd' => pad(&mut out, i64::from(c.day), n),
                'D' => pad(&mut out, day_of_year(&c), n),
                'H' => pad(&mut out, c.ms / 3_600_000, n),
                'k' => pad(&mut out, (c.ms / 3_600_000 + 23) % 24 + 1, n),
                'h' => pad(&mut out, (c.ms / 3_600_000 + 11) % 12 + 1, n),
                'K' => pad(&mut out, c.ms / 3_600_000 % 12, n),
                'm' => pad(&mut out, c.ms / 60_000 % 60, n),
                's' => pad(&mut out, c.ms / 1000 % 60, n),
                'S' => {
                    // Fraction of the second: the first n digits (milliseconds, then zeros).
                    let digits = format!("{:03}", c.ms % 1000);
                    let mut frac: String = digits.chars().take(n).collect();
                    while frac.len() < n {
                        frac.push('0');
                    }
                    out.push_str(&frac);
                }
                'a' => out.push_str(if c.ms < 12 * 3_600_000 { "AM" } else { "PM" }),
                'E' | 'e' => {
                    let w = WEEKDAYS[weekday_from_monday(c.days) as usize];
                    out.push_str(if n >= 4 { w } else { &w[..3] });
                }
                _ => unreachable!("compile() accepts only the letters above"),
            },
        }
    }
    Ok(out)
}

/// Parses `s` with a Java `DateTimeFormatter` pattern into UTC epoch milliseconds (missing
/// fields default to 1970-01-01 00:00:00.000); None if `s` does not match. A day of the month
/// past the month's end (up to 31) is clamped to it, or with `roll` (as Java's lenient
/// `SimpleDateFormat`) counted on into the next month.
pub(super) fn parse(s: &str, pattern: &str, roll: bool) -> Result<Option<i64>, String> {
    let parts = compile(pattern)?;
    let (mut y, mut mo, mut d, mut h, mut mi, mut sec, mut ms) = (1970, 1, 1, 0, 0, 0, 0);
    let mut pm: Option<bool> = None;
    let mut twelve = false;
    let b = s.as_bytes();
    let mut i = 0;
    for (k, p) in parts.iter().enumerate() {
        match p {
            Part::Literal(l) => {
                if !s[i..].starts_with(l.as_str()) {
                    return Ok(None);
                }
                i += l.len();
            }
            Part::Field('a', _) => {
                let rest = s[i..].to_ascii_uppercase();
                pm = Some(if rest.starts_with("AM") {
                    false
                } else if rest.starts_with("PM") {
                    true
                } else {
                    return Ok(None);
                });
                i += 2;
            }
            Part::Field(f @ ('M' | 'L'), n) if *n >= 3 => {
                let _ = f;
                let rest = &s[i..];
                let Some((m, name)) = MONTHS.iter().enumerate().find_map(|(m, name)| {
                    let name = if *n == 3 { &name[..3] } else { name };
                    rest.starts_with(name).then_some((m, name))
                }) else {
                    return Ok(None);
                };
                mo = m as i64 + 1;
                i += name.len();
            }
            Part::Field('E' | 'e', n) => {
                let rest = &s[i..];
                let Some(len) = WEEKDAYS.iter().find_map(|w| {
                    let w = if *n >= 4 { w } else { &w[..3] };
                    rest.starts_with(w).then_some(w.len())
                }) else {
                    return Ok(None);
                };
                i += len;
            }
            Part::Field(f, n) => {
                // Adjacent numeric fields (yyyyMMdd) take exactly their width; the last of
                // a run takes as many digits as there are.
                let text_month =
                    |p: Option<&Part>| matches!(p, Some(Part::Field('M' | 'L', m)) if *m >= 3);
                let next_numeric = matches!(parts.get(k + 1), Some(Part::Field(g, _)) if !"aEe".contains(*g))
                    && !text_month(parts.get(k + 1));
                let start = i;
                let max = if next_numeric { *n } else { 10 };
                while i < b.len() && i - start < max && b[i].is_ascii_digit() {
                    i += 1;
                }
                if i == start || (next_numeric && i - start != *n) {
                    return Ok(None);
                }
                let digits = &s[start..i];
                let v: i64 = digits
                    .parse()
                    .map_err(|_| format!("'{digits}' is too long"))?;
                match f {
                    'y' | 'u' if *n == 2 => y = 2000 + v,
                    'y' | 'u' => y = v,
                    'M' | 'L' => mo = v,
                    'd' => d = v,
                    'D' => return Err("parsing a day of the year (D) is not supported yet".into()),
                    'H' | 'k' => h = v % 24,
                    'h' | 'K' => {
                        h = v % 12;
                        twelve = true;
                    }
                    'm' => mi = v,
                    's' => sec = v,
                    'S' => {
                        ms = fraction_millis(digits);
                    }
                    _ => unreachable!("compile() accepts only the letters above"),
                }
            }
        }
    }
    if i != b.len() {
        return Ok(None);
    }
    if twelve && pm == Some(true) {
        h += 12;
    }
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 59 {
        return Ok(None);
    }
    if !roll {
        d = d.min(i64::from(month_days(y, mo as u32)));
    }
    Ok(Some(
        days_from_civil(y, mo, d) * DAY_MS + ((h * 60 + mi) * 60 + sec) * 1000 + ms,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_print_as_java_does() {
        for (d, s) in [
            (163_250_000.0, "1.6325E8"),
            (1.5, "1.5"),
            (0.001, "0.001"),
            (0.0001, "1.0E-4"),
            (1_234_567.0, "1234567.0"),
            (12_345_678.9, "1.23456789E7"),
            (1e7, "1.0E7"),
            (9_999_999.0, "9999999.0"),
            (-0.5, "-0.5"),
            (1e300, "1.0E300"),
            (0.0, "0.0"),
            (100.0, "100.0"),
        ] {
            assert_eq!(java_double(d), s);
        }
    }

    #[test]
    fn patterns_format_and_parse_as_java_does() {
        let t = parse_sql_timestamp("2023-11-14 22:14:05.123").unwrap();
        assert_eq!(
            format(t, "yyyy-MM-dd HH:mm:ss").unwrap(),
            "2023-11-14 22:14:05"
        );
        assert_eq!(format(t, "EEE, d MMM yyyy").unwrap(), "Tue, 14 Nov 2023");
        assert_eq!(format(t, "hh:mm a").unwrap(), "10:14 PM");
        assert_eq!(format(t, "HH:mm:ss.SSS").unwrap(), "22:14:05.123");
        assert_eq!(format(t, "yyyy-MM-dd'T'HH:mm").unwrap(), "2023-11-14T22:14");
        assert_eq!(
            parse("20231114", "yyyyMMdd", false).unwrap(),
            parse_sql_timestamp("2023-11-14")
        );
        assert_eq!(
            parse("2023/11/14 22:14", "yyyy/MM/dd HH:mm", false).unwrap(),
            parse_sql_timestamp("2023-11-14 22:14:00")
        );
        assert_eq!(parse("nope", "yyyy", false).unwrap(), None);
    }
}
