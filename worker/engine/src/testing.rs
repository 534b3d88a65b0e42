//! What tests of the engine and of the crates built on it share (not an API for jobs).

/// The seed of a randomized test: `WEIR_TEST_SEED`, else the clock. Print it in every
/// assertion so a failure can be replayed.
pub fn test_seed() -> u64 {
    match std::env::var("WEIR_TEST_SEED") {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("WEIR_TEST_SEED must be a number, got '{v}'")),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("the clock is after 1970")
            .as_nanos() as u64,
    }
}
