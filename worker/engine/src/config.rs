//! Job configuration, layered: built-in defaults, then a config file (`key: value` lines, as
//! in Flink's `config.yaml` flat form), then the `WEIR_PROPERTIES` environment variable (same
//! format), then explicit overrides. Key names follow Flink wherever the concept is the
//! same. An unknown key is an error that names the closest valid key.

use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::path::Path;

/// What a source does with a record it cannot decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DecodeErrorPolicy {
    /// Fail the job, naming file, line and reason (the default).
    #[default]
    Fail,
    /// Skip the record, count it in the `skipped` metric and log its location.
    Skip,
}

/// Every key Weir understands, with its default and a one-line description.
pub const KEYS: &[(&str, &str, &str)] = &[
    (
        "parallelism.default",
        "1",
        "parallelism of operators that do not set their own",
    ),
    (
        "pipeline.max-parallelism",
        "128",
        "number of key groups; the upper bound for rescaling keyed state",
    ),
    (
        "pipeline.operator-chaining.enabled",
        "true",
        "fuse forward-connected operators into one task",
    ),
    (
        "pipeline.batch-size",
        "1024",
        "records a source emits per batch",
    ),
    (
        "pipeline.channel-capacity",
        "8",
        "batches buffered per channel between tasks (bounds memory, drives backpressure)",
    ),
    (
        "pipeline.decode-error-policy",
        "fail",
        "what sources do with undecodable records: fail | skip",
    ),
    (
        "execution.checkpointing.interval",
        "0",
        "time between checkpoint triggers (e.g. 1s, 500ms); 0 disables checkpointing",
    ),
    (
        "execution.checkpointing.mode",
        "EXACTLY_ONCE",
        "EXACTLY_ONCE (aligned barriers) | AT_LEAST_ONCE (no alignment)",
    ),
    (
        "execution.checkpointing.unaligned",
        "false",
        "barriers overtake in-flight records, which are stored with the checkpoint (EXACTLY_ONCE only; savepoints stay aligned)",
    ),
    (
        "execution.checkpointing.timeout",
        "10min",
        "a checkpoint not complete after this is aborted and counted as failed",
    ),
    (
        "execution.checkpointing.min-pause",
        "0",
        "minimum time between the end of one checkpoint and the next trigger",
    ),
    (
        "state.checkpoints.dir",
        "",
        "where checkpoints go: file:///absolute/dir (required when checkpointing)",
    ),
    (
        "state.checkpoints.num-retained",
        "1",
        "completed checkpoints kept; older ones are deleted",
    ),
    (
        "state.backend.type",
        "hashmap",
        "where keyed state lives: hashmap (objects on the heap) | rocksdb (local RocksDB per subtask)",
    ),
    (
        "state.backend.incremental",
        "true",
        "rocksdb only: checkpoints upload only new SST files (false: full canonical snapshots)",
    ),
    (
        "state.backend.rocksdb.localdir",
        "",
        "rocksdb only: local working directory of the RocksDB instances (default: the system temp dir)",
    ),
    (
        "state.savepoints.dir",
        "",
        "default target directory for savepoints: file:///absolute/dir",
    ),
    (
        "execution.savepoint.path",
        "",
        "checkpoint or savepoint directory to restore the job from",
    ),
    (
        "execution.savepoint.ignore-unclaimed-state",
        "false",
        "allow restoring when the savepoint holds state of operators the job no longer has, \
         or keyed state an operator no longer registers (that state is dropped)",
    ),
    (
        "restart-strategy.type",
        "",
        "none | fixed-delay; default: fixed-delay when checkpointing, else none",
    ),
    (
        "restart-strategy.fixed-delay.attempts",
        "2147483647",
        "restarts allowed before the job fails",
    ),
    (
        "restart-strategy.fixed-delay.delay",
        "1s",
        "wait between a failure and the restart",
    ),
    (
        "restart-strategy.exponential-delay.initial-backoff",
        "1s",
        "wait before the first restart",
    ),
    (
        "restart-strategy.exponential-delay.max-backoff",
        "1min",
        "the wait never grows beyond this",
    ),
    (
        "restart-strategy.exponential-delay.backoff-multiplier",
        "1.5",
        "each restart waits this many times longer",
    ),
    (
        "restart-strategy.exponential-delay.jitter-factor",
        "0.1",
        "random +/- share of the wait, so restarts of many jobs spread out",
    ),
    (
        "restart-strategy.exponential-delay.attempts-before-reset-backoff",
        "2147483647",
        "restarts allowed before the job fails",
    ),
    (
        "execution.checkpointing.externalized-checkpoint-retention",
        "RETAIN_ON_CANCELLATION",
        "RETAIN_ON_CANCELLATION (keep checkpoints when the job is cancelled) | DELETE_ON_CANCELLATION",
    ),
    (
        "rest.address",
        "127.0.0.1",
        "address the REST API binds to, and the one `weir list|savepoint|stop|cancel` call",
    ),
    (
        "rest.port",
        "",
        "port of the REST API (0: any free port); empty: `weir run` serves none, the CLI calls 8081",
    ),
    (
        "jobmanager.rpc.address",
        "127.0.0.1",
        "where TaskManagers reach the JobManager (a host name or address)",
    ),
    (
        "jobmanager.rpc.port",
        "6123",
        "the JobManager's RPC port, which TaskManagers register at",
    ),
    (
        "jobmanager.bind-host",
        "",
        "address the JobManager's RPC port binds to; empty: $POD_IP if set, else 0.0.0.0",
    ),
    (
        "taskmanager.memory.process.size",
        "",
        "memory budget of a TaskManager process (e.g. 1g, 1728m); sizes network buffers and RocksDB memory. Empty: no budget",
    ),
    (
        "taskmanager.memory.framework.size",
        "32m",
        "part of the budget reserved for the runtime itself (threads, allocator, RPC, REST)",
    ),
    (
        "taskmanager.network.memory.fraction",
        "0.1",
        "share of the budget for buffers between tasks (in-process channels and the network exchange)",
    ),
    (
        "taskmanager.memory.managed.fraction",
        "0.4",
        "share of the budget for RocksDB (block cache and write buffers, shared by the TaskManager's instances)",
    ),
    (
        "taskmanager.memory.segment-size",
        "32kb",
        "size of one network buffer: a channel holds one batch per buffer",
    ),
    (
        "state.backend.rocksdb.memory.write-buffer-ratio",
        "0.5",
        "share of managed memory for RocksDB write buffers (memtables); the rest is the block cache",
    ),
    (
        "taskmanager.numberOfTaskSlots",
        "1",
        "slots a TaskManager offers; a slot runs one subtask of every task",
    ),
    (
        "taskmanager.host",
        "",
        "address a TaskManager's data port binds to and advertises; empty: $POD_IP if set, else 127.0.0.1",
    ),
    (
        "taskmanager.data.port",
        "0",
        "a TaskManager's data port for the network exchange (0: any free port)",
    ),
    (
        "heartbeat.interval",
        "10s",
        "how often the JobManager pings TaskManagers (they report metrics at least every second)",
    ),
    (
        "heartbeat.timeout",
        "50s",
        "silence after which a TaskManager (or, seen from it, the JobManager) counts as lost",
    ),
    (
        "execution.checkpointing.tolerable-failed-checkpoints",
        "2147483647",
        "consecutive checkpoint failures tolerated before the job fails (and restarts)",
    ),
];

/// What to do when a task fails.
#[derive(Debug, Clone, PartialEq)]
pub enum RestartStrategy {
    /// Fail the job.
    None,
    /// Restart after a fixed delay, up to `attempts` times.
    FixedDelay {
        /// Restarts allowed.
        attempts: u64,
        /// Wait before each restart.
        delay: std::time::Duration,
    },
    /// Restart after a delay that grows by `multiplier` up to `max`, with +/- `jitter`.
    ExponentialDelay {
        /// First wait.
        initial: std::time::Duration,
        /// Largest wait.
        max: std::time::Duration,
        /// Growth per restart.
        multiplier: f64,
        /// Random share of the wait added or removed (0.0–1.0).
        jitter: f64,
        /// Restarts allowed.
        attempts: u64,
    },
}

impl RestartStrategy {
    /// The longest wait before any restart (`None` when the job never restarts): with
    /// jitter, an exponential delay's cap can be exceeded by its jitter share.
    pub fn longest_delay(&self) -> Option<std::time::Duration> {
        match self {
            RestartStrategy::None => None,
            RestartStrategy::FixedDelay { delay, .. } => Some(*delay),
            RestartStrategy::ExponentialDelay { max, jitter, .. } => {
                Some(max.mul_f64(1.0 + jitter.clamp(0.0, 1.0)))
            }
        }
    }

    /// The wait before restart number `n` (0-based), given `random` uniform in [0, 1);
    /// `None` when no restart is allowed.
    pub fn delay(&self, n: u64, random: f64) -> Option<std::time::Duration> {
        match self {
            RestartStrategy::None => None,
            RestartStrategy::FixedDelay { attempts, delay } => (n < *attempts).then_some(*delay),
            RestartStrategy::ExponentialDelay {
                initial,
                max,
                multiplier,
                jitter,
                attempts,
            } => {
                if n >= *attempts {
                    return None;
                }
                let base = (initial.as_secs_f64() * multiplier.powi(n.min(1000) as i32))
                    .min(max.as_secs_f64());
                let factor = 1.0 + jitter * (2.0 * random - 1.0);
                Some(std::time::Duration::from_secs_f64((base * factor).max(0.0)))
            }
        }
    }
}

/// Parses a memory size the way Flink writes them: `1g`, `1728m`, `512 mb`, `64kb`, or a
/// bare number of bytes (units are binary: 1k = 1024 bytes).
pub fn parse_memory_size(v: &str) -> Option<u64> {
    let v = v.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let n: u64 = num.parse().ok()?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" | "bytes" => 0,
        "k" | "kb" | "kib" | "kibibytes" => 10,
        "m" | "mb" | "mib" | "mebibytes" => 20,
        "g" | "gb" | "gib" | "gibibytes" => 30,
        "t" | "tb" | "tib" | "tebibytes" => 40,
        _ => return None,
    };
    n.checked_mul(1u64 << shift)
}

/// Parses a duration the way Flink writes them: `500ms`, `1s`, `10 s`, `2min`, `1h`, or a
/// bare number of milliseconds.
pub fn parse_duration(v: &str) -> Option<std::time::Duration> {
    let v = v.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let n: u64 = num.parse().ok()?;
    let ms = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "ms" | "milli" | "millis" | "milliseconds" => n,
        "s" | "sec" | "secs" | "second" | "seconds" => n * 1000,
        "min" | "m" | "minute" | "minutes" => n * 60_000,
        "h" | "hour" | "hours" => n * 3_600_000,
        _ => return None,
    };
    Some(std::time::Duration::from_millis(ms))
}

/// Which keyed state backend operators use (`state.backend.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StateBackendKind {
    /// Typed values in a hash map per key group, on the heap.
    #[default]
    HashMap,
    /// A local RocksDB instance per keyed operator subtask.
    RocksDb,
}

/// The keyed state backend settings (`state.backend.*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateBackendConfig {
    /// `state.backend.type`.
    pub kind: StateBackendKind,
    /// `state.backend.incremental` (rocksdb only).
    pub incremental: bool,
    /// `state.backend.rocksdb.localdir`: parent of the RocksDB working directories.
    pub local_dir: std::path::PathBuf,
    /// RocksDB memory from the process's budget (set when tasks are deployed).
    pub memory: crate::runtime::memory::RocksMemory,
}

impl Default for StateBackendConfig {
    fn default() -> Self {
        StateBackendConfig {
            kind: StateBackendKind::HashMap,
            incremental: true,
            local_dir: std::env::temp_dir(),
            memory: Default::default(),
        }
    }
}

/// Checkpointing mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointingMode {
    /// Barriers are aligned: each record is in exactly one checkpoint.
    ExactlyOnce,
    /// No alignment: records after an early barrier may be replayed after a restore.
    AtLeastOnce,
}

/// What happens to a job's checkpoints when it is cancelled
/// (`execution.checkpointing.externalized-checkpoint-retention`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CheckpointRetention {
    /// Keep them, so the job can be resumed from its latest checkpoint (the default: the
    /// operator's `last-state` upgrade mode relies on it).
    #[default]
    RetainOnCancellation,
    /// Delete the job's checkpoint directory once the cancelled job has stopped.
    DeleteOnCancellation,
}

/// The REST API's address and port (`rest.address`, `rest.port`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestConfig {
    /// `rest.address`.
    pub address: String,
    /// `rest.port`; `None` when unset.
    pub port: Option<u16>,
}

/// Everything about checkpoints and recovery, resolved from the keys above.
#[derive(Debug, Clone)]
pub struct CheckpointConfig {
    /// `None`: checkpointing disabled.
    pub interval: Option<std::time::Duration>,
    /// Alignment mode.
    pub mode: CheckpointingMode,
    /// `execution.checkpointing.unaligned`: checkpoints (not savepoints) let barriers overtake
    /// queued records and persist them.
    pub unaligned: bool,
    /// Abort a checkpoint after this long.
    pub timeout: std::time::Duration,
    /// Pause after a checkpoint before the next trigger.
    pub min_pause: std::time::Duration,
    /// `state.checkpoints.dir`.
    pub dir: Option<String>,
    /// `state.checkpoints.num-retained`.
    pub retained: usize,
    /// `state.savepoints.dir`.
    pub savepoints_dir: Option<String>,
    /// `execution.savepoint.path`.
    pub restore_from: Option<String>,
    /// What to do when a task fails.
    pub restart: RestartStrategy,
    /// Consecutive checkpoint failures tolerated before the job fails.
    pub tolerable_failures: u64,
    /// `execution.checkpointing.externalized-checkpoint-retention`.
    pub retention: CheckpointRetention,
    /// S3 and other storage settings (`s3.*` keys).
    pub storage: weir_storage::StorageOptions,
}

/// Resolved configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    values: BTreeMap<String, String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            values: all_keys()
                .map(|(k, v, _)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }
}

/// Every key: the engine's and the storage layer's (`s3.*`, owned by `weir-storage`).
fn all_keys() -> impl Iterator<Item = &'static (&'static str, &'static str, &'static str)> {
    KEYS.iter().chain(weir_storage::KEYS.iter())
}

/// Edit distance, to suggest the intended key.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            cur.push(
                (prev[j] + usize::from(ca != *cb))
                    .min(prev[j + 1] + 1)
                    .min(cur[j] + 1),
            );
        }
        prev = cur;
    }
    prev[b.len()]
}

impl Config {
    /// Defaults, then the file (if any), then `WEIR_PROPERTIES`.
    pub fn load(file: Option<&Path>) -> Result<Self> {
        let mut c = Config::default();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| Error::io("cannot read config file", path, e))?;
            c.merge_text(&text, &path.display().to_string())?;
        }
        if let Ok(text) = std::env::var("WEIR_PROPERTIES") {
            c.merge_text(&text, "WEIR_PROPERTIES")?;
        }
        Ok(c)
    }

    /// Merges `key: value` lines; `#` starts a comment.
    pub fn merge_text(&mut self, text: &str, origin: &str) -> Result<()> {
        for (n, raw) in text.lines().enumerate() {
            let line = raw.split(" #").next().unwrap_or("").trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (k, v) = line.split_once(':').ok_or_else(|| {
                Error::Config(format!(
                    "{origin}:{}: expected `key: value`, found `{line}`",
                    n + 1
                ))
            })?;
            self.set(k.trim(), v.trim().trim_matches('"').trim_matches('\''))
                .map_err(|e| {
                    Error::Config(format!(
                        "{origin}:{}: {}",
                        n + 1,
                        e.to_string().trim_start_matches("configuration: ")
                    ))
                })?;
        }
        Ok(())
    }

    /// Sets one key, validating name and value.
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        if !all_keys().any(|(k, _, _)| *k == key) {
            let nearest = all_keys()
                .min_by_key(|(k, _, _)| distance(k, key))
                .map(|(k, _, _)| *k)
                .unwrap_or("");
            return Err(Error::Config(format!(
                "unknown key '{key}'; did you mean '{nearest}'?"
            )));
        }
        let old = self.values.insert(key.to_string(), value.to_string());
        if let Err(e) = self.validate() {
            match old {
                Some(o) => self.values.insert(key.to_string(), o),
                None => self.values.remove(key),
            };
            return Err(e);
        }
        Ok(())
    }

    /// `execution.savepoint.ignore-unclaimed-state`.
    pub(crate) fn allow_unclaimed_state(&self) -> bool {
        self.get("execution.savepoint.ignore-unclaimed-state") == "true"
    }

    fn get(&self, key: &str) -> &str {
        self.values
            .get(key)
            .map(String::as_str)
            .expect("every key has a default")
    }

    fn positive(&self, key: &str) -> Result<usize> {
        let v = self.get(key);
        match v.parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(Error::Config(format!(
                "'{key}' must be a positive integer, got '{v}'"
            ))),
        }
    }

    fn duration(&self, key: &str) -> Result<std::time::Duration> {
        let v = self.get(key);
        parse_duration(v).ok_or_else(|| {
            Error::Config(format!(
                "'{key}' must be a duration like 500ms, 10s or 2min, got '{v}'"
            ))
        })
    }

    fn memory_size(&self, key: &str) -> Result<u64> {
        let v = self.get(key);
        parse_memory_size(v).ok_or_else(|| {
            Error::Config(format!(
                "'{key}' must be a memory size like 512m, 1g or 64kb, got '{v}'"
            ))
        })
    }

    fn fraction(&self, key: &str) -> Result<f64> {
        let v = self.get(key);
        match v.parse::<f64>() {
            Ok(f) if (0.0..1.0).contains(&f) => Ok(f),
            _ => Err(Error::Config(format!(
                "'{key}' must be a fraction in [0, 1), got '{v}'"
            ))),
        }
    }

    /// The TaskManager memory keys (`taskmanager.memory.*`, `taskmanager.network.memory.*`).
    pub fn memory(&self) -> Result<crate::runtime::memory::MemoryConfig> {
        let network_fraction = self.fraction("taskmanager.network.memory.fraction")?;
        let managed_fraction = self.fraction("taskmanager.memory.managed.fraction")?;
        if network_fraction + managed_fraction >= 1.0 {
            return Err(Error::Config(format!(
                "'taskmanager.network.memory.fraction' ({network_fraction}) and \
                 'taskmanager.memory.managed.fraction' ({managed_fraction}) leave nothing of the \
                 budget for tasks; their sum must be below 1"
            )));
        }
        let segment = self.memory_size("taskmanager.memory.segment-size")?;
        if segment < 1024 {
            return Err(Error::Config(format!(
                "'taskmanager.memory.segment-size' must be at least 1kb, got '{}'",
                self.get("taskmanager.memory.segment-size")
            )));
        }
        Ok(crate::runtime::memory::MemoryConfig {
            process: match self.get("taskmanager.memory.process.size") {
                "" => None,
                _ => Some(self.memory_size("taskmanager.memory.process.size")?),
            },
            framework: self.memory_size("taskmanager.memory.framework.size")?,
            network_fraction,
            managed_fraction,
            segment,
            write_buffer_ratio: self.fraction("state.backend.rocksdb.memory.write-buffer-ratio")?,
        })
    }

    fn optional(&self, key: &str) -> Option<String> {
        Some(self.get(key).to_string()).filter(|v| !v.is_empty())
    }

    /// Checkpointing, restore and restart settings, checked for consistency.
    pub fn checkpointing(&self) -> Result<CheckpointConfig> {
        let c = self.checkpointing_values()?;
        if c.interval.is_some() && c.dir.is_none() {
            return Err(Error::Config(
                "execution.checkpointing.interval is set but state.checkpoints.dir is not; set it to file:///some/dir".into(),
            ));
        }
        Ok(c)
    }

    /// The settings, each value checked on its own (keys may be set in any order).
    fn checkpointing_values(&self) -> Result<CheckpointConfig> {
        let interval =
            Some(self.duration("execution.checkpointing.interval")?).filter(|d| !d.is_zero());
        let mode = match self
            .get("execution.checkpointing.mode")
            .to_ascii_uppercase()
            .as_str()
        {
            "EXACTLY_ONCE" => CheckpointingMode::ExactlyOnce,
            "AT_LEAST_ONCE" => CheckpointingMode::AtLeastOnce,
            v => {
                return Err(Error::Config(format!(
                    "'execution.checkpointing.mode' must be EXACTLY_ONCE or AT_LEAST_ONCE, got '{v}'"
                )));
            }
        };
        let unaligned = self.boolean("execution.checkpointing.unaligned")?;
        if unaligned && mode == CheckpointingMode::AtLeastOnce {
            return Err(Error::Config(
                "'execution.checkpointing.unaligned' needs execution.checkpointing.mode EXACTLY_ONCE \
                 (at-least-once checkpoints do not align, so there is nothing to overtake)"
                    .into(),
            ));
        }
        let dir = self.optional("state.checkpoints.dir");
        let retained: usize = self
            .get("state.checkpoints.num-retained")
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| {
                Error::Config(format!(
                    "'state.checkpoints.num-retained' must be at least 1, got '{}'",
                    self.get("state.checkpoints.num-retained")
                ))
            })?;
        let number = |key: &str| -> Result<u64> {
            self.get(key).parse().map_err(|_| {
                Error::Config(format!(
                    "'{key}' must be a whole number, got '{}'",
                    self.get(key)
                ))
            })
        };
        let float = |key: &str| -> Result<f64> {
            self.get(key).parse().map_err(|_| {
                Error::Config(format!("'{key}' must be a number, got '{}'", self.get(key)))
            })
        };
        let fixed = || -> Result<RestartStrategy> {
            Ok(RestartStrategy::FixedDelay {
                attempts: number("restart-strategy.fixed-delay.attempts")?,
                delay: self.duration("restart-strategy.fixed-delay.delay")?,
            })
        };
        let restart = match self.get("restart-strategy.type") {
            "none" | "disable" => RestartStrategy::None,
            "fixed-delay" => fixed()?,
            "exponential-delay" => {
                let jitter = float("restart-strategy.exponential-delay.jitter-factor")?;
                if !(0.0..=1.0).contains(&jitter) {
                    return Err(Error::Config(format!(
                        "'restart-strategy.exponential-delay.jitter-factor' must be between 0 and 1, got {jitter}"
                    )));
                }
                RestartStrategy::ExponentialDelay {
                    initial: self.duration("restart-strategy.exponential-delay.initial-backoff")?,
                    max: self.duration("restart-strategy.exponential-delay.max-backoff")?,
                    multiplier: float("restart-strategy.exponential-delay.backoff-multiplier")?,
                    jitter,
                    attempts: number(
                        "restart-strategy.exponential-delay.attempts-before-reset-backoff",
                    )?,
                }
            }
            "" if interval.is_some() => fixed()?,
            "" => RestartStrategy::None,
            v => {
                return Err(Error::Config(format!(
                    "'restart-strategy.type' must be none, fixed-delay or exponential-delay, got '{v}'"
                )));
            }
        };
        Ok(CheckpointConfig {
            interval,
            mode,
            unaligned,
            timeout: self.duration("execution.checkpointing.timeout")?,
            min_pause: self.duration("execution.checkpointing.min-pause")?,
            dir,
            retained,
            savepoints_dir: self.optional("state.savepoints.dir"),
            restore_from: self.optional("execution.savepoint.path"),
            restart,
            tolerable_failures: number("execution.checkpointing.tolerable-failed-checkpoints")?,
            retention: match self
                .get("execution.checkpointing.externalized-checkpoint-retention")
                .to_ascii_uppercase()
                .as_str()
            {
                "RETAIN_ON_CANCELLATION" => CheckpointRetention::RetainOnCancellation,
                "DELETE_ON_CANCELLATION" => CheckpointRetention::DeleteOnCancellation,
                v => {
                    return Err(Error::Config(format!(
                        "'execution.checkpointing.externalized-checkpoint-retention' must be \
                         RETAIN_ON_CANCELLATION or DELETE_ON_CANCELLATION, got '{v}'"
                    )));
                }
            },
            storage: weir_storage::StorageOptions::from_config(self.values.iter())
                .map_err(|e| Error::Config(e.to_string()))?,
        })
    }

    fn validate(&self) -> Result<()> {
        for k in [
            "parallelism.default",
            "pipeline.max-parallelism",
            "pipeline.batch-size",
            "pipeline.channel-capacity",
        ] {
            self.positive(k)?;
        }
        self.chaining()?;
        self.decode_error_policy()?;
        self.checkpointing_values()?;
        self.rest()?;
        self.state_backend()?;
        self.memory()?;
        if self.parallelism()? > self.max_parallelism()? {
            return Err(Error::Config(format!(
                "parallelism.default ({}) exceeds pipeline.max-parallelism ({})",
                self.get("parallelism.default"),
                self.get("pipeline.max-parallelism")
            )));
        }
        Ok(())
    }

    /// Every key with its value (defaults included), in key order: what a JobManager
    /// sends its TaskManagers.
    pub fn entries(&self) -> Vec<(String, String)> {
        self.values
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// The cluster keys (`jobmanager.*`, `taskmanager.*`, `heartbeat.*`). Empty bind
    /// addresses default to `pod_ip` (the pod's address on Kubernetes).
    pub fn cluster(&self, pod_ip: Option<&str>) -> Result<crate::runtime::cluster::ClusterConfig> {
        let port = |key: &str| -> Result<u16> {
            let v = self.get(key);
            v.parse().map_err(|_| {
                Error::Config(format!(
                    "'{key}' must be a port number (0-65535), got '{v}'"
                ))
            })
        };
        let or = |key: &str, fallback: &str| -> String {
            match self.get(key) {
                "" => pod_ip.unwrap_or(fallback).to_string(),
                v => v.to_string(),
            }
        };
        let heartbeat_interval = self.duration("heartbeat.interval")?;
        let heartbeat_timeout = self.duration("heartbeat.timeout")?;
        if heartbeat_timeout <= heartbeat_interval {
            return Err(Error::Config(format!(
                "'heartbeat.timeout' ({heartbeat_timeout:?}) must be longer than 'heartbeat.interval' ({heartbeat_interval:?})"
            )));
        }
        Ok(crate::runtime::cluster::ClusterConfig {
            rpc_address: self.get("jobmanager.rpc.address").to_string(),
            rpc_port: port("jobmanager.rpc.port")?,
            rpc_bind_host: or("jobmanager.bind-host", "0.0.0.0"),
            slots: self.positive("taskmanager.numberOfTaskSlots")?,
            taskmanager_host: or("taskmanager.host", "127.0.0.1"),
            data_port: port("taskmanager.data.port")?,
            heartbeat_interval,
            heartbeat_timeout,
            memory: self.memory()?,
        })
    }

    /// `rest.address` and `rest.port`.
    pub fn rest(&self) -> Result<RestConfig> {
        let port = match self.get("rest.port") {
            "" => None,
            v => Some(v.parse().map_err(|_| {
                Error::Config(format!(
                    "'rest.port' must be a port number (0-65535), got '{v}'"
                ))
            })?),
        };
        Ok(RestConfig {
            address: self.get("rest.address").to_string(),
            port,
        })
    }

    /// `parallelism.default`.
    pub fn parallelism(&self) -> Result<usize> {
        self.positive("parallelism.default")
    }
    /// `pipeline.max-parallelism`.
    pub fn max_parallelism(&self) -> Result<usize> {
        self.positive("pipeline.max-parallelism")
    }
    /// `pipeline.batch-size`.
    pub fn batch_size(&self) -> Result<usize> {
        self.positive("pipeline.batch-size")
    }
    /// `pipeline.channel-capacity`.
    pub fn channel_capacity(&self) -> Result<usize> {
        self.positive("pipeline.channel-capacity")
    }
    /// `pipeline.operator-chaining.enabled`.
    pub fn chaining(&self) -> Result<bool> {
        self.boolean("pipeline.operator-chaining.enabled")
    }
    /// A `true`/`false` key.
    fn boolean(&self, key: &str) -> Result<bool> {
        match self.get(key) {
            "true" => Ok(true),
            "false" => Ok(false),
            v => Err(Error::Config(format!(
                "'{key}' must be true or false, got '{v}'"
            ))),
        }
    }
    /// The keyed state backend: `state.backend.type`, `state.backend.incremental`,
    /// `state.backend.rocksdb.localdir`.
    pub fn state_backend(&self) -> Result<StateBackendConfig> {
        let kind = match self.get("state.backend.type").to_ascii_lowercase().as_str() {
            "hashmap" => StateBackendKind::HashMap,
            "rocksdb" => StateBackendKind::RocksDb,
            v => {
                return Err(Error::Config(format!(
                    "'state.backend.type' must be hashmap or rocksdb, got '{v}'"
                )));
            }
        };
        let incremental = match self.get("state.backend.incremental") {
            "true" => true,
            "false" => false,
            v => {
                return Err(Error::Config(format!(
                    "'state.backend.incremental' must be true or false, got '{v}'"
                )));
            }
        };
        let local_dir = match self.optional("state.backend.rocksdb.localdir") {
            None => std::env::temp_dir(),
            Some(d) => {
                let p = std::path::PathBuf::from(d.strip_prefix("file://").unwrap_or(&d));
                if !p.is_absolute() {
                    return Err(Error::Config(format!(
                        "'state.backend.rocksdb.localdir' must be an absolute local path, got '{d}'"
                    )));
                }
                p
            }
        };
        Ok(StateBackendConfig {
            kind,
            incremental,
            local_dir,
            memory: Default::default(),
        })
    }
    /// `pipeline.decode-error-policy`.
    pub fn decode_error_policy(&self) -> Result<DecodeErrorPolicy> {
        match self.get("pipeline.decode-error-policy") {
            "fail" => Ok(DecodeErrorPolicy::Fail),
            "skip" => Ok(DecodeErrorPolicy::Skip),
            v => Err(Error::Config(format!(
                "'pipeline.decode-error-policy' must be fail or skip, got '{v}'"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponential_delay_grows_caps_and_jitters() {
        let mut c = Config::default();
        c.set("restart-strategy.type", "exponential-delay").unwrap();
        c.set(
            "restart-strategy.exponential-delay.initial-backoff",
            "100ms",
        )
        .unwrap();
        c.set("restart-strategy.exponential-delay.max-backoff", "1s")
            .unwrap();
        c.set("restart-strategy.exponential-delay.backoff-multiplier", "2")
            .unwrap();
        c.set(
            "restart-strategy.exponential-delay.attempts-before-reset-backoff",
            "6",
        )
        .unwrap();
        let r = c.checkpointing().unwrap().restart;
        let ms = |n, rnd| r.delay(n, rnd).map(|d| d.as_millis());
        // random 0.5 means no jitter: 100, 200, 400, 800, then capped at 1000.
        assert_eq!(
            (0..6).map(|n| ms(n, 0.5).unwrap()).collect::<Vec<_>>(),
            vec![100, 200, 400, 800, 1000, 1000]
        );
        assert_eq!(ms(6, 0.5), None, "six restarts allowed");
        // Jitter 0.1: between 90 % and 110 % of the base.
        assert_eq!((ms(1, 0.0).unwrap(), ms(1, 0.999_999).unwrap()), (180, 219));
        // The longest wait any restart can see: the cap plus its jitter.
        assert_eq!(r.longest_delay().map(|d| d.as_millis()), Some(1100));
        c.set("restart-strategy.type", "none").unwrap();
        assert_eq!(c.checkpointing().unwrap().restart.delay(0, 0.5), None);
        assert_eq!(c.checkpointing().unwrap().restart.longest_delay(), None);
    }

    #[test]
    fn unknown_key_suggests_the_nearest_valid_key() {
        let err = Config::default()
            .set("paralelism.default", "2")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown key 'paralelism.default'"), "{err}");
        assert!(err.contains("did you mean 'parallelism.default'"), "{err}");
    }

    #[test]
    fn file_values_override_defaults_and_bad_values_name_the_line() {
        let mut c = Config::default();
        c.merge_text(
            "# comment\nparallelism.default: 4\npipeline.decode-error-policy: skip\n",
            "f.yaml",
        )
        .unwrap();
        assert_eq!(c.parallelism().unwrap(), 4);
        assert_eq!(c.decode_error_policy().unwrap(), DecodeErrorPolicy::Skip);
        let err = c
            .merge_text("\npipeline.batch-size: zero\n", "f.yaml")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("f.yaml:2")
                && err.contains("'pipeline.batch-size' must be a positive integer, got 'zero'"),
            "{err}"
        );
        assert_eq!(
            c.batch_size().unwrap(),
            1024,
            "a rejected value leaves the old one"
        );
    }
}
