//! The scalar UDFs compiled into the `weir` binary: the one place that registers them. The
//! same registry plans a script in `weir run`, in the JobManager and in every TaskManager, so
//! a SQL job calling these functions runs anywhere.
//!
//! A custom worker build adds its own functions here (docs/sql.md, "User-defined
//! functions") and ships the resulting binary as its worker image.

use weir_sql::udf::{Registry, UdfError};

/// Every UDF of this build.
pub fn registry() -> Result<Registry, UdfError> {
    let mut r = Registry::new();
    r.register_string_fn("enrich_user", enrich_user)?;
    Ok(r)
}

/// The tiers `enrich_user` assigns.
const TIERS: [&str; 3] = ["bronze", "silver", "gold"];

/// `enrich_user(STRING) -> STRING`: the user id followed by its tier in parentheses, the tier
/// chosen by the sum of the id's UTF-8 bytes modulo 3 (bronze, silver, gold), so it is
/// deterministic: `enrich_user('user_1')` is `user_1 (bronze)`. NULL gives NULL. It stands
/// for a lookup in reference data compiled into the worker.
pub fn enrich_user(id: &str) -> String {
    let sum: u64 = id.bytes().map(u64::from).sum();
    format!("{id} ({})", TIERS[(sum % 3) as usize])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enrich_user_assigns_the_tier_of_the_byte_sum() {
        // "user_" sums to 542; the digits add 48 + n.
        assert_eq!(enrich_user("user_0"), "user_0 (gold)"); // 590 % 3 = 2
        assert_eq!(enrich_user("user_1"), "user_1 (bronze)"); // 591 % 3 = 0
        assert_eq!(enrich_user("user_2"), "user_2 (silver)"); // 592 % 3 = 1
    }

    #[test]
    fn the_built_in_udfs_register_without_conflicts() {
        assert_eq!(registry().unwrap().names(), ["enrich_user"]);
    }
}
