//! Durations as the StreamJob spec spells them: the contract's grammar
//! ([`weir_contract::duration`]), the one the worker reads and the CRD's pattern
//! ([`crate::crd::DURATION_PATTERN`]) admits, so the operator copies them into the worker's
//! config file unchanged.

use std::time::Duration;

/// Parses a spec duration. The error says what was expected; callers add the field name.
pub fn parse(text: &str) -> Result<Duration, String> {
    weir_contract::duration::parse(text).map_err(|e| e.to_string())
}
