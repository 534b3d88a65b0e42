//! Durations as the StreamJob spec spells them: an integer and one unit (`500ms`, `30s`, `5m`
//! or `5min`, `2h`, `7d`), the same grammar as [`crate::crd::DURATION_PATTERN`]. The worker
//! accepts these spellings too, so the operator copies them into the config file unchanged.

use std::time::Duration;

/// Parses a spec duration. The error says what was expected; callers add the field name.
pub fn parse(text: &str) -> Result<Duration, String> {
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits_end);
    if number.is_empty() {
        return Err("expected an integer followed by ms, s, m, min, h or d".to_string());
    }
    let value: u64 = number
        .parse()
        .map_err(|_| format!("{number} is too large"))?;
    let millis_per_unit: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" | "min" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        other => {
            return Err(format!("unknown unit {other:?}; use ms, s, m, min, h or d"));
        }
    };
    value
        .checked_mul(millis_per_unit)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("{text} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_unit_parses_to_its_length() {
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse("5min"), Ok(Duration::from_secs(300)));
        assert_eq!(parse("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse("7d"), Ok(Duration::from_secs(7 * 86_400)));
    }

    #[test]
    fn a_missing_number_or_unknown_unit_is_rejected() {
        assert!(parse("s").is_err());
        assert!(parse("10").unwrap_err().contains("unknown unit"));
        assert!(parse("10 s").is_err());
        assert!(parse("10w").unwrap_err().contains("\"w\""));
    }

    #[test]
    fn an_overflowing_duration_is_rejected() {
        assert!(parse("99999999999999999999d").is_err());
        assert!(
            parse("999999999999999999d")
                .unwrap_err()
                .contains("too large")
        );
    }
}
