//! The one duration grammar of Weir, Flink's (`TimeUtils.parseDuration`): an integer, optional
//! spaces, and an optional unit, case-insensitive; a bare number is milliseconds. The worker
//! parses config values with [`parse`], the operator validates StreamJob fields with it, and the
//! CRD's pattern is [`PATTERN`], which admits exactly the spellings [`parse`] reads (a test
//! holds the three together), so a duration the API server admits never stops a worker.
//!
//! ```
//! use std::time::Duration;
//! assert_eq!(weir_contract::duration::parse("10 s"), Ok(Duration::from_secs(10)));
//! assert_eq!(weir_contract::duration::parse("1d"), Ok(Duration::from_secs(86_400)));
//! assert_eq!(weir_contract::duration::parse("250"), Ok(Duration::from_millis(250)));
//! assert!(weir_contract::duration::parse("10w").is_err());
//! ```

use std::time::Duration;

/// Every unit spelling with its length in milliseconds (Flink's labels, singular and plural).
pub const UNITS: &[(&str, u64)] = &[
    ("ms", 1),
    ("milli", 1),
    ("millis", 1),
    ("millisecond", 1),
    ("milliseconds", 1),
    ("s", 1_000),
    ("sec", 1_000),
    ("secs", 1_000),
    ("second", 1_000),
    ("seconds", 1_000),
    ("m", 60_000),
    ("min", 60_000),
    ("mins", 60_000),
    ("minute", 60_000),
    ("minutes", 60_000),
    ("h", 3_600_000),
    ("hour", 3_600_000),
    ("hours", 3_600_000),
    ("d", 86_400_000),
    ("day", 86_400_000),
    ("days", 86_400_000),
];

/// The CRD's pattern for duration fields: the grammar of [`parse`] as a regular expression
/// (ECMA 262 and RE2 alike, so no inline flags: each unit letter is a case class). Written
/// out because schemars needs a constant; [`pattern`] derives it from [`UNITS`] and a test
/// checks the two are equal.
pub const PATTERN: &str = "^[0-9]+ *([mM][sS]|[mM][iI][lL][lL][iI]|[mM][iI][lL][lL][iI][sS]|[mM][iI][lL][lL][iI][sS][eE][cC][oO][nN][dD]|[mM][iI][lL][lL][iI][sS][eE][cC][oO][nN][dD][sS]|[sS]|[sS][eE][cC]|[sS][eE][cC][sS]|[sS][eE][cC][oO][nN][dD]|[sS][eE][cC][oO][nN][dD][sS]|[mM]|[mM][iI][nN]|[mM][iI][nN][sS]|[mM][iI][nN][uU][tT][eE]|[mM][iI][nN][uU][tT][eE][sS]|[hH]|[hH][oO][uU][rR]|[hH][oO][uU][rR][sS]|[dD]|[dD][aA][yY]|[dD][aA][yY][sS])?$";

/// [`PATTERN`] derived from [`UNITS`].
pub fn pattern() -> String {
    let units: Vec<String> = UNITS
        .iter()
        .map(|(unit, _)| {
            unit.chars()
                .map(|c| format!("[{}{}]", c, c.to_ascii_uppercase()))
                .collect()
        })
        .collect();
    format!("^[0-9]+ *({})?$", units.join("|"))
}

/// Why a text is not a duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// No digits where the number belongs.
    #[error("expected an integer and a unit such as 500ms, 10s, 2min, 1h or 1d")]
    NoNumber,
    /// Something other than a known unit after the number.
    #[error("unknown unit {0:?}; use ms, s, min, h or d (or their long names)")]
    UnknownUnit(String),
    /// More milliseconds than fit in 64 bits.
    #[error("{0} is too large")]
    TooLarge(String),
}

/// Parses a duration (see the module docs). No surrounding whitespace: the config reader
/// trims values, and the CRD admits none.
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, rest) = text.split_at(digits);
    if number.is_empty() {
        return Err(DurationError::NoNumber);
    }
    let unit = rest.trim_start_matches(' ');
    let per_unit = if unit.is_empty() {
        1
    } else {
        UNITS
            .iter()
            .find(|(u, _)| u.eq_ignore_ascii_case(unit))
            .map(|(_, ms)| *ms)
            .ok_or_else(|| DurationError::UnknownUnit(unit.to_string()))?
    };
    let too_large = || DurationError::TooLarge(text.to_string());
    let n: u64 = number.parse().map_err(|_| too_large())?;
    n.checked_mul(per_unit)
        .map(Duration::from_millis)
        .ok_or_else(too_large)
}
