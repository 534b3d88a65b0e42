//! Job configuration, layered: built-in defaults, then a config file (YAML, Flink's flat
//! `key: value` form or Flink 2's nested `config.yaml`), then the `WEIR_PROPERTIES` environment
//! variable (same format), then explicit overrides. The keys, their defaults and the duration
//! grammar are the contract's ([`weir_contract::options`], [`weir_contract::duration`]); this
//! module resolves values into the engine's types. An unknown key is an error that names the
//! closest valid key.

use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::path::Path;
use weir_contract::options::{self as opt, ConfigOption, OPTIONS};

/// The most key groups `pipeline.max-parallelism` may ask for, as in Flink (32768).
pub const MAX_KEY_GROUPS: usize = 1 << 15;

/// What a source does with a record it cannot decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DecodeErrorPolicy {
    /// Fail the job, naming file, line and reason (the default).
    #[default]
    Fail,
    /// Skip the record, count it in the `skipped` metric and log its location.
    Skip,
}

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

/// Parses a duration the way Flink writes them: `500ms`, `1s`, `10 s`, `2min`, `1h`, `1d`, or a
/// bare number of milliseconds (the contract's grammar, [`weir_contract::duration`]).
pub fn parse_duration(v: &str) -> Option<std::time::Duration> {
    weir_contract::duration::parse(v.trim()).ok()
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
    /// `state.backend.rocksdb.write-cache.entries`: decoded entries kept in front of RocksDB.
    pub write_cache_entries: usize,
    /// The RocksDB properties switched on by `state.backend.rocksdb.metrics.*`
    /// (`rocksdb.block-cache-usage`, ...), reported as gauges of the same names.
    pub rocksdb_metrics: Vec<String>,
}

impl Default for StateBackendConfig {
    fn default() -> Self {
        StateBackendConfig {
            kind: StateBackendKind::HashMap,
            incremental: true,
            local_dir: std::env::temp_dir(),
            write_cache_entries: opt::ROCKSDB_WRITE_CACHE_ENTRIES
                .default
                .parse()
                .expect("a number"),
            rocksdb_metrics: Vec::new(),
        }
    }
}

/// The memory keys as configured.
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryConfig {
    /// `taskmanager.memory.process.size` (`None`: no budget).
    pub process: Option<u64>,
    /// `taskmanager.memory.framework.size`.
    pub framework: u64,
    /// `taskmanager.network.memory.fraction`.
    pub network_fraction: f64,
    /// `taskmanager.memory.managed.fraction`.
    pub managed_fraction: f64,
    /// `taskmanager.memory.segment-size`.
    pub segment: u64,
    /// `state.backend.rocksdb.memory.write-buffer-ratio`.
    pub write_buffer_ratio: f64,
    /// `state.backend.rocksdb.memory.write-cache-ratio`.
    pub write_cache_ratio: f64,
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
    /// `state.savepoints.allowed-roots`: besides `savepoints_dir`, where savepoints requested
    /// over REST may go.
    pub savepoint_roots: Vec<String>,
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
            values: OPTIONS
                .iter()
                .map(|o| (o.key.to_string(), o.default.to_string()))
                .collect(),
        }
    }
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

    /// Merges a config file's text: YAML, flat (`a.b: v`) or nested (`a:` / `  b: v`).
    /// Errors name `origin` and the line.
    pub fn merge_text(&mut self, text: &str, origin: &str) -> Result<()> {
        let entries = weir_contract::config_file::parse(text)
            .map_err(|e| Error::Config(format!("{origin}: {e}")))?;
        for e in entries {
            self.set(&e.key, e.value.trim()).map_err(|err| {
                Error::Config(format!(
                    "{origin}:{}: {}",
                    e.line,
                    err.to_string().trim_start_matches("configuration: ")
                ))
            })?;
        }
        Ok(())
    }

    /// Sets one key, validating name and value.
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        if opt::find(key).is_none() {
            return Err(Error::Config(format!(
                "unknown key '{key}'; did you mean '{}'?",
                opt::nearest(key)
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
        self.get(opt::SAVEPOINT_IGNORE_UNCLAIMED_STATE) == "true"
    }

    pub(crate) fn get(&self, o: ConfigOption) -> &str {
        self.values
            .get(o.key)
            .map(String::as_str)
            .expect("every key has a default")
    }

    pub(crate) fn positive(&self, o: ConfigOption) -> Result<usize> {
        let (key, v) = (o.key, self.get(o));
        match v.parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(Error::Config(format!(
                "'{key}' must be a positive integer, got '{v}'"
            ))),
        }
    }

    pub(crate) fn duration(&self, o: ConfigOption) -> Result<std::time::Duration> {
        let (key, v) = (o.key, self.get(o));
        parse_duration(v).ok_or_else(|| {
            Error::Config(format!(
                "'{key}' must be a duration like 500ms, 10s or 2min, got '{v}'"
            ))
        })
    }

    fn memory_size(&self, o: ConfigOption) -> Result<u64> {
        let (key, v) = (o.key, self.get(o));
        parse_memory_size(v).ok_or_else(|| {
            Error::Config(format!(
                "'{key}' must be a memory size like 512m, 1g or 64kb, got '{v}'"
            ))
        })
    }

    fn fraction(&self, o: ConfigOption) -> Result<f64> {
        let (key, v) = (o.key, self.get(o));
        match v.parse::<f64>() {
            Ok(f) if (0.0..1.0).contains(&f) => Ok(f),
            _ => Err(Error::Config(format!(
                "'{key}' must be a fraction in [0, 1), got '{v}'"
            ))),
        }
    }

    /// The TaskManager memory keys (`taskmanager.memory.*`, `taskmanager.network.memory.*`).
    pub fn memory(&self) -> Result<MemoryConfig> {
        let network_fraction = self.fraction(opt::NETWORK_MEMORY_FRACTION)?;
        let managed_fraction = self.fraction(opt::MANAGED_MEMORY_FRACTION)?;
        if network_fraction + managed_fraction >= 1.0 {
            return Err(Error::Config(format!(
                "'{}' ({network_fraction}) and '{}' ({managed_fraction}) leave nothing of the \
                 budget for tasks; their sum must be below 1",
                opt::NETWORK_MEMORY_FRACTION.key,
                opt::MANAGED_MEMORY_FRACTION.key
            )));
        }
        let segment = self.memory_size(opt::MEMORY_SEGMENT_SIZE)?;
        if segment < 1024 {
            return Err(Error::Config(format!(
                "'{}' must be at least 1kb, got '{}'",
                opt::MEMORY_SEGMENT_SIZE.key,
                self.get(opt::MEMORY_SEGMENT_SIZE)
            )));
        }
        let write_buffer_ratio = self.fraction(opt::ROCKSDB_WRITE_BUFFER_RATIO)?;
        let write_cache_ratio = self.fraction(opt::ROCKSDB_WRITE_CACHE_RATIO)?;
        if write_buffer_ratio + write_cache_ratio >= 1.0 {
            return Err(Error::Config(format!(
                "'{}' ({write_buffer_ratio}) and '{}' ({write_cache_ratio}) leave nothing of \
                 managed memory for RocksDB's block cache; their sum must be below 1",
                opt::ROCKSDB_WRITE_BUFFER_RATIO.key,
                opt::ROCKSDB_WRITE_CACHE_RATIO.key
            )));
        }
        Ok(MemoryConfig {
            process: match self.get(opt::MEMORY_PROCESS_SIZE) {
                "" => None,
                _ => Some(self.memory_size(opt::MEMORY_PROCESS_SIZE)?),
            },
            framework: self.memory_size(opt::MEMORY_FRAMEWORK_SIZE)?,
            network_fraction,
            managed_fraction,
            segment,
            write_buffer_ratio,
            write_cache_ratio,
        })
    }

    fn optional(&self, o: ConfigOption) -> Option<String> {
        Some(self.get(o).to_string()).filter(|v| !v.is_empty())
    }

    /// Checkpointing, restore and restart settings, checked for consistency.
    pub fn checkpointing(&self) -> Result<CheckpointConfig> {
        let c = self.checkpointing_values()?;
        if c.interval.is_some() && c.dir.is_none() {
            return Err(Error::Config(format!(
                "{} is set but {} is not; set it to file:///some/dir",
                opt::CHECKPOINTING_INTERVAL.key,
                opt::CHECKPOINTS_DIR.key
            )));
        }
        Ok(c)
    }

    /// The settings, each value checked on its own (keys may be set in any order).
    fn checkpointing_values(&self) -> Result<CheckpointConfig> {
        let interval = Some(self.duration(opt::CHECKPOINTING_INTERVAL)?).filter(|d| !d.is_zero());
        let mode = match self
            .get(opt::CHECKPOINTING_MODE)
            .to_ascii_uppercase()
            .as_str()
        {
            "EXACTLY_ONCE" => CheckpointingMode::ExactlyOnce,
            "AT_LEAST_ONCE" => CheckpointingMode::AtLeastOnce,
            v => {
                return Err(Error::Config(format!(
                    "'{}' must be EXACTLY_ONCE or AT_LEAST_ONCE, got '{v}'",
                    opt::CHECKPOINTING_MODE.key
                )));
            }
        };
        let unaligned = self.boolean(opt::CHECKPOINTING_UNALIGNED)?;
        if unaligned && mode == CheckpointingMode::AtLeastOnce {
            return Err(Error::Config(format!(
                "'{}' needs {} EXACTLY_ONCE (at-least-once checkpoints do not align, so there is \
                 nothing to overtake)",
                opt::CHECKPOINTING_UNALIGNED.key,
                opt::CHECKPOINTING_MODE.key
            )));
        }
        let dir = self.optional(opt::CHECKPOINTS_DIR);
        let retained: usize = self
            .get(opt::CHECKPOINTS_RETAINED)
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| {
                Error::Config(format!(
                    "'{}' must be at least 1, got '{}'",
                    opt::CHECKPOINTS_RETAINED.key,
                    self.get(opt::CHECKPOINTS_RETAINED)
                ))
            })?;
        let number = |o: ConfigOption| -> Result<u64> {
            self.get(o).parse().map_err(|_| {
                Error::Config(format!(
                    "'{}' must be a whole number, got '{}'",
                    o.key,
                    self.get(o)
                ))
            })
        };
        let float = |o: ConfigOption| -> Result<f64> {
            self.get(o).parse().map_err(|_| {
                Error::Config(format!(
                    "'{}' must be a number, got '{}'",
                    o.key,
                    self.get(o)
                ))
            })
        };
        let fixed = || -> Result<RestartStrategy> {
            Ok(RestartStrategy::FixedDelay {
                attempts: number(opt::FIXED_DELAY_ATTEMPTS)?,
                delay: self.duration(opt::FIXED_DELAY_DELAY)?,
            })
        };
        let restart = match self.get(opt::RESTART_STRATEGY) {
            "none" | "disable" => RestartStrategy::None,
            "fixed-delay" => fixed()?,
            "exponential-delay" => {
                let jitter = float(opt::EXPONENTIAL_JITTER)?;
                if !(0.0..=1.0).contains(&jitter) {
                    return Err(Error::Config(format!(
                        "'{}' must be between 0 and 1, got {jitter}",
                        opt::EXPONENTIAL_JITTER.key
                    )));
                }
                let multiplier = float(opt::EXPONENTIAL_MULTIPLIER)?;
                if !(multiplier.is_finite() && multiplier >= 1.0) {
                    return Err(Error::Config(format!(
                        "'{}' must be a number of at least 1, got {multiplier}",
                        opt::EXPONENTIAL_MULTIPLIER.key
                    )));
                }
                RestartStrategy::ExponentialDelay {
                    initial: self.duration(opt::EXPONENTIAL_INITIAL_BACKOFF)?,
                    max: self.duration(opt::EXPONENTIAL_MAX_BACKOFF)?,
                    multiplier,
                    jitter,
                    attempts: number(opt::EXPONENTIAL_ATTEMPTS)?,
                }
            }
            "" if interval.is_some() => fixed()?,
            "" => RestartStrategy::None,
            v => {
                return Err(Error::Config(format!(
                    "'{}' must be none, fixed-delay or exponential-delay, got '{v}'",
                    opt::RESTART_STRATEGY.key
                )));
            }
        };
        Ok(CheckpointConfig {
            interval,
            mode,
            unaligned,
            timeout: self.duration(opt::CHECKPOINTING_TIMEOUT)?,
            min_pause: self.duration(opt::CHECKPOINTING_MIN_PAUSE)?,
            dir,
            retained,
            savepoints_dir: self.optional(opt::SAVEPOINTS_DIR),
            savepoint_roots: self
                .get(opt::SAVEPOINT_ALLOWED_ROOTS)
                .split(',')
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .map(str::to_string)
                .collect(),
            restore_from: self.optional(opt::SAVEPOINT_PATH),
            restart,
            tolerable_failures: number(opt::TOLERABLE_FAILED_CHECKPOINTS)?,
            retention: match self
                .get(opt::CHECKPOINT_RETENTION)
                .to_ascii_uppercase()
                .as_str()
            {
                "RETAIN_ON_CANCELLATION" => CheckpointRetention::RetainOnCancellation,
                "DELETE_ON_CANCELLATION" => CheckpointRetention::DeleteOnCancellation,
                v => {
                    return Err(Error::Config(format!(
                        "'{}' must be RETAIN_ON_CANCELLATION or DELETE_ON_CANCELLATION, got '{v}'",
                        opt::CHECKPOINT_RETENTION.key
                    )));
                }
            },
            storage: weir_storage::StorageOptions::from_config(self.values.iter())
                .map_err(|e| Error::Config(e.to_string()))?,
        })
    }

    fn validate(&self) -> Result<()> {
        for k in [
            opt::PARALLELISM_DEFAULT,
            opt::MAX_PARALLELISM,
            opt::BATCH_SIZE,
            opt::CHANNEL_CAPACITY,
        ] {
            self.positive(k)?;
        }
        self.chaining()?;
        self.decode_error_policy()?;
        self.state_ttl()?;
        self.checkpointing_values()?;
        self.rest()?;
        self.state_backend()?;
        self.memory()?;
        if self.parallelism()? > self.max_parallelism()? {
            return Err(Error::Config(format!(
                "{} ({}) exceeds {} ({})",
                opt::PARALLELISM_DEFAULT.key,
                self.get(opt::PARALLELISM_DEFAULT),
                opt::MAX_PARALLELISM.key,
                self.get(opt::MAX_PARALLELISM)
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

    /// The REST API's token and TLS files (`security.rest.token-file`, `security.ssl.rest.*`):
    /// reads the token file, refuses TLS files named while TLS is off. Called by whoever
    /// serves or calls the API, not when validating, so a process that does neither needs
    /// none of the files.
    pub fn rest_security(&self) -> Result<weir_contract::security::RestSecurity> {
        weir_contract::security::RestSecurity::from_options(|o| self.get(o).to_string())
            .map_err(|e| Error::Config(e.to_string()))
    }

    /// `rest.address` and `rest.port`.
    pub fn rest(&self) -> Result<RestConfig> {
        let port = match self.get(opt::REST_PORT) {
            "" => None,
            v => Some(v.parse().map_err(|_| {
                Error::Config(format!(
                    "'{}' must be a port number (0-65535), got '{v}'",
                    opt::REST_PORT.key
                ))
            })?),
        };
        Ok(RestConfig {
            address: self.get(opt::REST_ADDRESS).to_string(),
            port,
        })
    }

    /// `parallelism.default`.
    pub fn parallelism(&self) -> Result<usize> {
        self.positive(opt::PARALLELISM_DEFAULT)
    }
    /// `pipeline.max-parallelism`.
    pub fn max_parallelism(&self) -> Result<usize> {
        match self.positive(opt::MAX_PARALLELISM)? {
            n if n <= MAX_KEY_GROUPS => Ok(n),
            n => Err(Error::Config(format!(
                "'{}' must be at most {MAX_KEY_GROUPS} (Flink's limit; key groups are numbered in 16 bits), got {n}",
                opt::MAX_PARALLELISM.key
            ))),
        }
    }
    /// `pipeline.batch-size`.
    pub fn batch_size(&self) -> Result<usize> {
        self.positive(opt::BATCH_SIZE)
    }
    /// `pipeline.channel-capacity`.
    pub fn channel_capacity(&self) -> Result<usize> {
        self.positive(opt::CHANNEL_CAPACITY)
    }
    /// `pipeline.operator-chaining.enabled`.
    pub fn chaining(&self) -> Result<bool> {
        self.boolean(opt::OPERATOR_CHAINING)
    }
    /// A `true`/`false` key.
    fn boolean(&self, o: ConfigOption) -> Result<bool> {
        let key = o.key;
        match self.get(o) {
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
        let kind = match self.get(opt::STATE_BACKEND).to_ascii_lowercase().as_str() {
            "hashmap" => StateBackendKind::HashMap,
            "rocksdb" => StateBackendKind::RocksDb,
            v => {
                return Err(Error::Config(format!(
                    "'{}' must be hashmap or rocksdb, got '{v}'",
                    opt::STATE_BACKEND.key
                )));
            }
        };
        let incremental = match self.get(opt::STATE_BACKEND_INCREMENTAL) {
            "true" => true,
            "false" => false,
            v => {
                return Err(Error::Config(format!(
                    "'{}' must be true or false, got '{v}'",
                    opt::STATE_BACKEND_INCREMENTAL.key
                )));
            }
        };
        let local_dir = match self.optional(opt::ROCKSDB_LOCAL_DIR) {
            None => std::env::temp_dir(),
            Some(d) => {
                let p = std::path::PathBuf::from(d.strip_prefix("file://").unwrap_or(&d));
                if !p.is_absolute() {
                    return Err(Error::Config(format!(
                        "'{}' must be an absolute local path, got '{d}'",
                        opt::ROCKSDB_LOCAL_DIR.key
                    )));
                }
                p
            }
        };
        let key = opt::ROCKSDB_WRITE_CACHE_ENTRIES.key;
        let v = self.get(opt::ROCKSDB_WRITE_CACHE_ENTRIES);
        let write_cache_entries = v.parse::<usize>().map_err(|_| {
            Error::Config(format!(
                "'{key}' must be a number of entries (0 or more), got '{v}'"
            ))
        })?;
        let mut rocksdb_metrics = Vec::new();
        for o in opt::ROCKSDB_METRICS {
            if self.boolean(*o)? {
                let metric = o.key.rsplit('.').next().expect("a key has segments");
                rocksdb_metrics.push(format!("rocksdb.{metric}"));
            }
        }
        Ok(StateBackendConfig {
            kind,
            incremental,
            local_dir,
            write_cache_entries,
            rocksdb_metrics,
        })
    }
    /// `table.exec.state.ttl`: `None` when state is kept forever (the default `0`).
    pub fn state_ttl(&self) -> Result<Option<std::time::Duration>> {
        Ok(Some(self.duration(opt::TABLE_EXEC_STATE_TTL)?).filter(|d| !d.is_zero()))
    }

    /// `pipeline.decode-error-policy`.
    pub fn decode_error_policy(&self) -> Result<DecodeErrorPolicy> {
        match self.get(opt::DECODE_ERROR_POLICY) {
            "fail" => Ok(DecodeErrorPolicy::Fail),
            "skip" => Ok(DecodeErrorPolicy::Skip),
            v => Err(Error::Config(format!(
                "'{}' must be fail or skip, got '{v}'",
                opt::DECODE_ERROR_POLICY.key
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
    fn values_that_would_exhaust_the_process_or_hang_are_refused_naming_them() {
        let mut c = Config::default();
        c.set("execution.checkpointing.interval", "1s").unwrap();
        c.set("restart-strategy.type", "exponential-delay").unwrap();
        // Refused when set or, at the latest, when resolved.
        let mut refused = |key: &str, value: &str| -> String {
            let err = match c.set(key, value) {
                Err(e) => e,
                Ok(()) => match (c.max_parallelism(), c.checkpointing()) {
                    (Err(e), _) | (_, Err(e)) => e,
                    _ => panic!("{key}: {value} was accepted"),
                },
            };
            err.to_string()
        };
        let err = refused("pipeline.max-parallelism", "4294967296");
        assert!(
            err.contains("'pipeline.max-parallelism' must be at most 32768")
                && err.contains("got 4294967296"),
            "{err}"
        );
        for bad in ["NaN", "-2", "0.5", "inf"] {
            let err = refused("restart-strategy.exponential-delay.backoff-multiplier", bad);
            assert!(
                err.contains("'restart-strategy.exponential-delay.backoff-multiplier' must be a number of at least 1"),
                "{bad}: {err}"
            );
        }
        let mut c = Config::default();
        c.set("pipeline.max-parallelism", "32768").unwrap();
        assert_eq!(c.max_parallelism().unwrap(), 32768);
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
