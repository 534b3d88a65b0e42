//! A TaskManager's memory budget (`taskmanager.memory.process.size`).
//!
//! The budget is split once, when the process starts (fail fast: a budget too small for the
//! slots is a configuration error naming the numbers):
//!
//! | part | size |
//! | --- | --- |
//! | framework | `taskmanager.memory.framework.size`: the runtime itself |
//! | network | `taskmanager.network.memory.fraction` × budget: buffers between tasks |
//! | managed | `taskmanager.memory.managed.fraction` × budget: RocksDB and its write caches |
//! | task | the rest: operators' own objects (the hashmap backend's state lives here) |
//!
//! When tasks are deployed, the parts are fitted to what this process runs: the network part,
//! cut into `taskmanager.memory.segment-size` buffers, is shared by every channel with an end
//! in this process (a channel holds one batch per buffer, at most
//! `pipeline.channel-capacity`, at least two); managed memory becomes one block cache shared
//! by all RocksDB instances here, plus a write-buffer limit and a write-cache limit per
//! instance.

pub use crate::config::MemoryConfig;
use crate::error::{Error, Result};
use crate::state::RocksMemory;
use serde::{Deserialize, Serialize};

/// Tasks need at least this much per slot beyond buffers and RocksDB.
const MIN_TASK_PER_SLOT: u64 = 16 << 20;
/// A channel needs two buffers so producer and consumer can overlap.
const MIN_BUFFERS_PER_CHANNEL: u64 = 2;
/// RocksDB write buffers below this per instance flush constantly.
const MIN_WRITE_BUFFER: u64 = 1 << 20;

/// How a TaskManager's budget is split (bytes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemoryBudget {
    /// The whole budget.
    pub process: u64,
    /// The runtime's own share.
    pub framework: u64,
    /// Buffers between tasks.
    pub network: u64,
    /// RocksDB block cache and write buffers.
    pub managed: u64,
    /// What is left for the operators.
    pub task: u64,
    /// One network buffer.
    pub segment: u64,
    /// Share of managed memory for RocksDB write buffers.
    pub write_buffer_ratio: f64,
    /// Share of managed memory for the write caches in front of RocksDB.
    pub write_cache_ratio: f64,
    /// Slots the budget was planned for.
    pub slots: usize,
}

impl MemoryConfig {
    /// Splits the budget for `slots` slots; `None` without `taskmanager.memory.process.size`.
    pub fn plan(&self, slots: usize) -> Result<Option<MemoryBudget>> {
        let Some(process) = self.process else {
            return Ok(None);
        };
        let network = (process as f64 * self.network_fraction) as u64;
        let managed = (process as f64 * self.managed_fraction) as u64;
        let reserved = self.framework + network + managed;
        let need = reserved + MIN_TASK_PER_SLOT * slots as u64;
        if process < need {
            return Err(Error::Config(format!(
                "taskmanager.memory.process.size ({}) is too small for {slots} slot(s): framework {} \
                 + network {} + managed {} + {} for tasks ({} per slot) = {}; raise it to at least {} \
                 or configure fewer slots",
                mib(process),
                mib(self.framework),
                mib(network),
                mib(managed),
                mib(MIN_TASK_PER_SLOT * slots as u64),
                mib(MIN_TASK_PER_SLOT),
                mib(need),
                mib(need),
            )));
        }
        Ok(Some(MemoryBudget {
            process,
            framework: self.framework,
            network,
            managed,
            task: process - reserved,
            segment: self.segment,
            write_buffer_ratio: self.write_buffer_ratio,
            write_cache_ratio: self.write_cache_ratio,
            slots,
        }))
    }
}

/// What the deployed tasks of one process need memory for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Footprint {
    /// Channels with at least one end in this process.
    pub(crate) channels: usize,
    /// Keyed operator subtasks here that open a RocksDB instance.
    pub(crate) rocksdb_instances: usize,
}

/// The budget fitted to a [`Footprint`].
#[derive(Debug, Clone)]
pub(crate) struct Fitted {
    /// Batches a channel holds.
    pub(crate) channel_capacity: usize,
    /// What each RocksDB instance gets.
    pub(crate) rocks: RocksMemory,
}

impl MemoryBudget {
    /// Network buffers in the budget.
    pub fn buffers(&self) -> u64 {
        self.network / self.segment
    }

    /// Fits the budget to the tasks about to run; fails naming the numbers when the network
    /// buffers or the RocksDB write buffers would be too small.
    pub(crate) fn fit(&self, f: Footprint, configured_capacity: usize) -> Result<Fitted> {
        let buffers = self.buffers();
        let per_channel = buffers / f.channels.max(1) as u64;
        if f.channels > 0 && per_channel < MIN_BUFFERS_PER_CHANNEL {
            return Err(Error::Config(format!(
                "network memory {} gives {buffers} buffers of {} for {} channels; every channel \
                 needs at least {MIN_BUFFERS_PER_CHANNEL} ({} in all): raise \
                 taskmanager.memory.process.size or taskmanager.network.memory.fraction, or lower \
                 the parallelism",
                mib(self.network),
                kib(self.segment),
                f.channels,
                MIN_BUFFERS_PER_CHANNEL * f.channels as u64,
            )));
        }
        let channel_capacity = per_channel.min(configured_capacity as u64).max(1) as usize;
        let rocks = if f.rocksdb_instances == 0 {
            RocksMemory::default()
        } else {
            let write = (self.managed as f64 * self.write_buffer_ratio) as u64;
            let per_instance = write / f.rocksdb_instances as u64;
            if per_instance < MIN_WRITE_BUFFER {
                return Err(Error::Config(format!(
                    "managed memory {} gives {} of write buffers to {} RocksDB instances, {} each; \
                     each needs at least {}: raise taskmanager.memory.process.size or \
                     taskmanager.memory.managed.fraction, or lower the parallelism",
                    mib(self.managed),
                    mib(write),
                    f.rocksdb_instances,
                    mib(per_instance),
                    mib(MIN_WRITE_BUFFER),
                )));
            }
            let write_cache = (self.managed as f64 * self.write_cache_ratio) as u64;
            let cache = self.managed - write - write_cache;
            RocksMemory {
                block_cache: Some(rocksdb::Cache::new_lru_cache(cache as usize)),
                block_cache_bytes: cache,
                write_buffer_bytes: per_instance,
                write_cache_bytes: write_cache / f.rocksdb_instances as u64,
            }
        };
        Ok(Fitted {
            channel_capacity,
            rocks,
        })
    }

    /// Logs the split (once per process).
    pub fn log(&self) {
        tracing::info!(
            process = %mib(self.process),
            framework = %mib(self.framework),
            network = %mib(self.network),
            network_buffers = self.buffers(),
            managed = %mib(self.managed),
            task = %mib(self.task),
            slots = self.slots,
            "memory budget"
        );
    }
}

/// Resident memory of this process (Linux `/proc/self/statm`), if known.
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64)
}

fn kib(b: u64) -> String {
    format!("{} KiB", b >> 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(process: &str) -> MemoryConfig {
        MemoryConfig {
            process: crate::config::parse_memory_size(process),
            framework: 32 << 20,
            network_fraction: 0.1,
            managed_fraction: 0.4,
            segment: 32 << 10,
            write_buffer_ratio: 0.5,
            write_cache_ratio: 0.25,
        }
    }

    #[test]
    fn memory_sizes_read_like_flinks() {
        let p = crate::config::parse_memory_size;
        assert_eq!(p("1g"), Some(1 << 30));
        assert_eq!(p("1728m"), Some(1728 << 20));
        assert_eq!(p("512 mb"), Some(512 << 20));
        assert_eq!(p("32kb"), Some(32 << 10));
        assert_eq!(p("4096"), Some(4096));
        assert_eq!(p("1.5g"), None);
        assert_eq!(p("lots"), None);
        assert_eq!(p("99999999999t"), None, "overflow");
        let mut c = crate::config::Config::default();
        let e = c
            .set("taskmanager.memory.process.size", "1 gigantic")
            .unwrap_err()
            .to_string();
        assert!(e.contains("must be a memory size like 512m"), "{e}");
        let e = c
            .set("taskmanager.network.memory.fraction", "0.7")
            .unwrap_err()
            .to_string();
        assert!(e.contains("their sum must be below 1"), "{e}");
    }

    #[test]
    fn the_budget_splits_into_framework_network_managed_and_task() {
        let b = config("1g").plan(4).unwrap().unwrap();
        assert_eq!(b.network, 107_374_182);
        assert_eq!(b.managed, 429_496_729);
        assert_eq!(b.task, (1 << 30) - (32 << 20) - b.network - b.managed);
        assert_eq!(b.buffers(), 107_374_182 / 32768);
        assert_eq!(config("").plan(4).unwrap(), None);
    }

    #[test]
    fn a_budget_too_small_for_its_slots_names_the_numbers() {
        let e = config("100m").plan(4).unwrap_err().to_string();
        assert!(
            e.contains("taskmanager.memory.process.size (100.0 MiB) is too small for 4 slot(s)")
                && e.contains("network 10.0 MiB + managed 40.0 MiB + 64.0 MiB for tasks")
                && e.contains("at least 146.0 MiB"),
            "{e}"
        );
        assert!(config("200m").plan(4).is_ok());
    }

    #[test]
    fn channels_share_the_network_buffers_up_to_the_configured_capacity() {
        let b = config("1g").plan(2).unwrap().unwrap();
        // 3276 buffers: 100 channels get 32 each, capped by pipeline.channel-capacity.
        let f = |channels| Footprint {
            channels,
            rocksdb_instances: 0,
        };
        assert_eq!(b.fit(f(100), 8).unwrap().channel_capacity, 8);
        assert_eq!(b.fit(f(1000), 8).unwrap().channel_capacity, 3);
        let e = b.fit(f(2000), 8).unwrap_err().to_string();
        assert!(
            e.contains("gives 3276 buffers of 32 KiB for 2000 channels")
                && e.contains("(4000 in all)"),
            "{e}"
        );
    }

    #[test]
    fn rocksdb_instances_share_one_block_cache_and_split_the_write_buffers() {
        let b = config("1g").plan(2).unwrap().unwrap();
        let fitted = b
            .fit(
                Footprint {
                    channels: 4,
                    rocksdb_instances: 4,
                },
                8,
            )
            .unwrap();
        let quarter = (b.managed as f64 * 0.25) as u64;
        assert_eq!(
            fitted.rocks.block_cache_bytes(),
            b.managed - b.managed / 2 - quarter
        );
        assert_eq!(fitted.rocks.write_buffer_bytes(), b.managed / 2 / 4);
        assert_eq!(fitted.rocks.write_cache_bytes(), quarter / 4);
        let e = b
            .fit(
                Footprint {
                    channels: 4,
                    rocksdb_instances: 400,
                },
                8,
            )
            .unwrap_err()
            .to_string();
        assert!(e.contains("to 400 RocksDB instances, 0.5 MiB each"), "{e}");
    }
}
