//! The SQL connectors compiled into the `weir` binary: the one place that registers them.
//! weir-sql's built-in connectors plus weir-kafka's `kafka` and `upsert-kafka`; the same
//! registry plans a script in `weir run`, in the JobManager and in every TaskManager.

use weir_sql::connectors::{Connectors, DuplicateConnector};

/// Every SQL connector of this build.
pub fn registry() -> Result<Connectors, DuplicateConnector> {
    let mut c = Connectors::builtin();
    weir_kafka::sql::register(&mut c)?;
    Ok(c)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_binary_registers_the_kafka_connectors_next_to_the_built_in_ones() {
        assert_eq!(
            super::registry().unwrap().names(),
            [
                "blackhole",
                "datagen",
                "filesystem",
                "kafka",
                "print",
                "upsert-kafka"
            ]
        );
    }
}
