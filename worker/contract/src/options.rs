//! Every configuration option a worker reads: key, type, default and description, in one table
//! ([`OPTIONS`]). The worker's "unknown key, did you mean" check and its defaults come from
//! it, the operator writes keys through these constants, and the reference tables in
//! docs/configuration.md are generated from it ([`reference`]; a test fails when they are
//! stale). Key names follow Flink wherever the concept is the same.

/// The type of an option's value, as the reference names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptionType {
    /// A whole number.
    Integer,
    /// `true` or `false`.
    Boolean,
    /// A duration in the grammar of [`crate::duration`].
    Duration,
    /// A memory size (`1g`, `1728m`, `64kb`, bytes; binary units).
    MemorySize,
    /// A number in `[0, 1)`.
    Fraction,
    /// A decimal number.
    Number,
    /// A port number, 0-65535.
    Port,
    /// One of the listed words.
    Enum(&'static [&'static str]),
    /// Free text: an address, a URI, a path.
    Text,
}

impl OptionType {
    /// How the reference spells the type.
    pub fn name(&self) -> String {
        match self {
            OptionType::Integer => "integer".into(),
            OptionType::Boolean => "boolean".into(),
            OptionType::Duration => "duration".into(),
            OptionType::MemorySize => "memory size".into(),
            OptionType::Fraction => "fraction".into(),
            OptionType::Number => "number".into(),
            OptionType::Port => "port".into(),
            OptionType::Enum(words) => words.join(" \\| "),
            OptionType::Text => "text".into(),
        }
    }
}

/// Which table of docs/configuration.md an option appears in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// Parallelism, chaining, batches, channels.
    Pipeline,
    /// Checkpoints, state backends, savepoints, storage, restarts.
    Checkpoints,
    /// The REST API.
    Rest,
    /// JobManager and TaskManager processes.
    Cluster,
    /// A TaskManager's memory budget.
    Memory,
    /// Authentication and TLS.
    Security,
}

impl Section {
    /// Every section, in document order.
    pub const ALL: [Section; 6] = [
        Section::Pipeline,
        Section::Checkpoints,
        Section::Rest,
        Section::Cluster,
        Section::Memory,
        Section::Security,
    ];

    /// The section's name in the markers of docs/configuration.md.
    pub fn name(self) -> &'static str {
        match self {
            Section::Pipeline => "pipeline",
            Section::Checkpoints => "checkpoints",
            Section::Rest => "rest",
            Section::Cluster => "cluster",
            Section::Memory => "memory",
            Section::Security => "security",
        }
    }
}

/// One configuration option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigOption {
    /// The key, as written in config files (`execution.checkpointing.interval`).
    pub key: &'static str,
    /// The type of its value.
    pub ty: OptionType,
    /// The value before any file or variable sets it; empty means unset.
    pub default: &'static str,
    /// What it does (Markdown; one line of the reference).
    pub description: &'static str,
    /// Where the reference lists it.
    pub section: Section,
}

macro_rules! options {
    ($( $(#[$doc:meta])* $name:ident = ($key:literal, $ty:expr, $default:literal, $section:ident, $desc:literal); )*) => {
        $( $(#[$doc])* pub const $name: ConfigOption = ConfigOption {
            key: $key,
            ty: $ty,
            default: $default,
            description: $desc,
            section: Section::$section,
        }; )*
        /// Every option, in reference order.
        pub const OPTIONS: &[ConfigOption] = &[$($name),*];
    };
}

use OptionType::*;

options! {
    /// `parallelism.default`.
    PARALLELISM_DEFAULT = ("parallelism.default", Integer, "1", Pipeline,
        "parallelism of operators that do not set their own");
    /// `pipeline.max-parallelism`.
    MAX_PARALLELISM = ("pipeline.max-parallelism", Integer, "128", Pipeline,
        "number of key groups; the upper bound for rescaling keyed state; at most 32768");
    /// `pipeline.operator-chaining.enabled`.
    OPERATOR_CHAINING = ("pipeline.operator-chaining.enabled", Boolean, "true", Pipeline,
        "fuse forward-connected operators into one task");
    /// `pipeline.batch-size`.
    BATCH_SIZE = ("pipeline.batch-size", Integer, "1024", Pipeline,
        "records per batch: what a source reads per poll, and what each subtask behind a keyed exchange receives (a source feeding one reads this many per receiving subtask)");
    /// `pipeline.channel-capacity`.
    CHANNEL_CAPACITY = ("pipeline.channel-capacity", Integer, "8", Pipeline,
        "batches buffered per channel between tasks; bounds memory and drives backpressure");
    /// `pipeline.decode-error-policy`.
    DECODE_ERROR_POLICY = ("pipeline.decode-error-policy", Enum(&["fail", "skip"]), "fail", Pipeline,
        "what sources do with records they cannot decode: `fail` the job naming file, line and reason, or `skip` and count them");
    /// `table.exec.state.ttl`.
    TABLE_EXEC_STATE_TTL = ("table.exec.state.ttl", Duration, "0", Pipeline,
        "how long SQL state stays after its key was last written (processing time): a regular join's rows per key and side, a Top-N's partition, a GROUP BY's group; `0` keeps it forever (Flink's option; sql.md, *Regular joins*)");

    /// `execution.checkpointing.interval`.
    CHECKPOINTING_INTERVAL = ("execution.checkpointing.interval", Duration, "0", Checkpoints,
        "time between checkpoint triggers (`500ms`, `10s`, `2min`); `0` disables checkpointing");
    /// `execution.checkpointing.mode`.
    CHECKPOINTING_MODE = ("execution.checkpointing.mode", Enum(&["EXACTLY_ONCE", "AT_LEAST_ONCE"]), "EXACTLY_ONCE", Checkpoints,
        "`EXACTLY_ONCE` (aligned barriers) or `AT_LEAST_ONCE`");
    /// `execution.checkpointing.unaligned`.
    CHECKPOINTING_UNALIGNED = ("execution.checkpointing.unaligned", Boolean, "false", Checkpoints,
        "barriers overtake queued records, which are stored with the checkpoint; needs `EXACTLY_ONCE`; savepoints stay aligned (see fault-tolerance.md)");
    /// `execution.checkpointing.timeout`.
    CHECKPOINTING_TIMEOUT = ("execution.checkpointing.timeout", Duration, "10min", Checkpoints,
        "a checkpoint not complete by then is aborted and counted as failed");
    /// `execution.checkpointing.min-pause`.
    CHECKPOINTING_MIN_PAUSE = ("execution.checkpointing.min-pause", Duration, "0", Checkpoints,
        "minimum pause between a checkpoint's end and the next trigger");
    /// `state.checkpoints.dir`.
    CHECKPOINTS_DIR = ("state.checkpoints.dir", Text, "", Checkpoints,
        "`file:///absolute/dir` or `s3://bucket/prefix`; required when checkpointing");
    /// `state.checkpoints.num-retained`.
    CHECKPOINTS_RETAINED = ("state.checkpoints.num-retained", Integer, "1", Checkpoints,
        "completed checkpoints kept; older ones are deleted");
    /// `state.backend.type`.
    STATE_BACKEND = ("state.backend.type", Enum(&["hashmap", "rocksdb"]), "hashmap", Checkpoints,
        "where keyed state lives: `hashmap` (typed objects on the heap) or `rocksdb` (a local RocksDB instance per keyed operator subtask; see fault-tolerance.md)");
    /// `state.backend.incremental`.
    STATE_BACKEND_INCREMENTAL = ("state.backend.incremental", Boolean, "true", Checkpoints,
        "`rocksdb` only: checkpoints upload only SST files not uploaded before; `false` writes full canonical snapshots");
    /// `state.backend.rocksdb.localdir`.
    ROCKSDB_LOCAL_DIR = ("state.backend.rocksdb.localdir", Text, "", Checkpoints,
        "`rocksdb` only: absolute local directory for the RocksDB working directories; each process keeps them in its own `weir-<pid>-<nonce>-<n>/` (holding a locked `.lock` file), removed when its last instance closes; directories of processes that were killed are removed by the next process that opens a RocksDB instance there; unset: the system temp dir");
    /// `state.backend.rocksdb.write-cache.entries`.
    ROCKSDB_WRITE_CACHE_ENTRIES = ("state.backend.rocksdb.write-cache.entries", Integer, "1000000", Checkpoints,
        "`rocksdb` only: entries each keyed operator subtask keeps decoded in memory in front of RocksDB; an entry is read once, changed in memory and written back when the cache is full or a checkpoint or savepoint is taken, and one removed before that never reaches RocksDB (fault-tolerance.md); its values live on the heap, and under a memory budget the cache is also bounded in bytes by its share of managed memory (`state.backend.rocksdb.memory.write-cache-ratio`). An interval join keeps up to this many rows per input in memory the same way, the rest in RocksDB only (fault-tolerance.md, *Interval join state*). `0`: only the entry in use");
    /// `state.backend.rocksdb.metrics.block-cache-capacity`.
    ROCKSDB_METRIC_BLOCK_CACHE_CAPACITY = ("state.backend.rocksdb.metrics.block-cache-capacity", Boolean, "false", Checkpoints,
        "`rocksdb` only: report RocksDB's `rocksdb.block-cache-capacity` per keyed operator subtask as the gauge `rocksdb.block-cache-capacity` (docs/rest-api.md, `/metrics`): block cache capacity in bytes (the budget's shared cache, or RocksDB's default cache of the instance)");
    /// `state.backend.rocksdb.metrics.block-cache-usage`.
    ROCKSDB_METRIC_BLOCK_CACHE_USAGE = ("state.backend.rocksdb.metrics.block-cache-usage", Boolean, "false", Checkpoints,
        "`rocksdb` only: report RocksDB's `rocksdb.block-cache-usage` per keyed operator subtask as the gauge `rocksdb.block-cache-usage` (docs/rest-api.md, `/metrics`): bytes of the entries residing in the block cache (shared: every instance of the process reports the same cache)");
    /// `state.backend.rocksdb.metrics.block-cache-pinned-usage`.
    ROCKSDB_METRIC_BLOCK_CACHE_PINNED_USAGE = ("state.backend.rocksdb.metrics.block-cache-pinned-usage", Boolean, "false", Checkpoints,
        "`rocksdb` only: report RocksDB's `rocksdb.block-cache-pinned-usage` per keyed operator subtask as the gauge `rocksdb.block-cache-pinned-usage` (docs/rest-api.md, `/metrics`): bytes of the block cache's entries that are pinned");
    /// `state.backend.rocksdb.metrics.cur-size-active-mem-table`.
    ROCKSDB_METRIC_CUR_SIZE_ACTIVE_MEM_TABLE = ("state.backend.rocksdb.metrics.cur-size-active-mem-table", Boolean, "false", Checkpoints,
        "`rocksdb` only: report RocksDB's `rocksdb.cur-size-active-mem-table` per keyed operator subtask as the gauge `rocksdb.cur-size-active-mem-table` (docs/rest-api.md, `/metrics`): approximate bytes of the active memtable");
    /// `state.backend.rocksdb.metrics.cur-size-all-mem-tables`.
    ROCKSDB_METRIC_CUR_SIZE_ALL_MEM_TABLES = ("state.backend.rocksdb.metrics.cur-size-all-mem-tables", Boolean, "false", Checkpoints,
        "`rocksdb` only: report RocksDB's `rocksdb.cur-size-all-mem-tables` per keyed operator subtask as the gauge `rocksdb.cur-size-all-mem-tables` (docs/rest-api.md, `/metrics`): approximate bytes of the active and unflushed immutable memtables");
    /// `state.backend.rocksdb.metrics.size-all-mem-tables`.
    ROCKSDB_METRIC_SIZE_ALL_MEM_TABLES = ("state.backend.rocksdb.metrics.size-all-mem-tables", Boolean, "false", Checkpoints,
        "`rocksdb` only: report RocksDB's `rocksdb.size-all-mem-tables` per keyed operator subtask as the gauge `rocksdb.size-all-mem-tables` (docs/rest-api.md, `/metrics`): approximate bytes of the active, unflushed immutable and pinned immutable memtables");
    /// `state.backend.rocksdb.metrics.num-immutable-mem-table`.
    ROCKSDB_METRIC_NUM_IMMUTABLE_MEM_TABLE = ("state.backend.rocksdb.metrics.num-immutable-mem-table", Boolean, "false", Checkpoints,
        "`rocksdb` only: report RocksDB's `rocksdb.num-immutable-mem-table` per keyed operator subtask as the gauge `rocksdb.num-immutable-mem-table` (docs/rest-api.md, `/metrics`): immutable memtables not flushed yet");
    /// `state.backend.rocksdb.metrics.mem-table-flush-pending`.
    ROCKSDB_METRIC_MEM_TABLE_FLUSH_PENDING = ("state.backend.rocksdb.metrics.mem-table-flush-pending", Boolean, "false", Checkpoints,
        "`rocksdb` only: report RocksDB's `rocksdb.mem-table-flush-pending` per keyed operator subtask as the gauge `rocksdb.mem-table-flush-pending` (docs/rest-api.md, `/metrics`): 1 when a memtable flush is pending, else 0");
    /// `state.backend.rocksdb.metrics.num-running-flushes`.
    ROCKSDB_METRIC_NUM_RUNNING_FLUSHES = ("state.backend.rocksdb.metrics.num-running-flushes", Boolean, "false", Checkpoints,
        "`rocksdb` only: report RocksDB's `rocksdb.num-running-flushes` per keyed operator subtask as the gauge `rocksdb.num-running-flushes` (docs/rest-api.md, `/metrics`): memtable flushes running");
    /// `state.backend.rocksdb.metrics.compaction-pending`.
    ROCKSDB_METRIC_COMPACTION_PENDING = ("state.backend.rocksdb.metrics.compaction-pending", Boolean, "false", Checkpoints,
        "`rocksdb` only: report RocksDB's `rocksdb.compaction-pending` per keyed operator subtask as the gauge `rocksdb.compaction-pending` (docs/rest-api.md, `/metrics`): 1 when a compaction is pending, else 0");
    /// `state.backend.rocksdb.metrics.num-running-compactions`.
    ROCKSDB_METRIC_NUM_RUNNING_COMPACTIONS = ("state.backend.rocksdb.metrics.num-running-compactions", Boolean, "false", Checkpoints,
        "`rocksdb` only: report RocksDB's `rocksdb.num-running-compactions` per keyed operator subtask as the gauge `rocksdb.num-running-compactions` (docs/rest-api.md, `/metrics`): compactions running");
    /// `state.backend.rocksdb.metrics.estimate-pending-compaction-bytes`.
    ROCKSDB_METRIC_ESTIMATE_PENDING_COMPACTION_BYTES = ("state.backend.rocksdb.metrics.estimate-pending-compaction-bytes", Boolean, "false", Checkpoints,
        "`rocksdb` only: report RocksDB's `rocksdb.estimate-pending-compaction-bytes` per keyed operator subtask as the gauge `rocksdb.estimate-pending-compaction-bytes` (docs/rest-api.md, `/metrics`): estimated bytes compaction has to rewrite to bring every level under its target size");
    /// `state.backend.rocksdb.metrics.estimate-num-keys`.
    ROCKSDB_METRIC_ESTIMATE_NUM_KEYS = ("state.backend.rocksdb.metrics.estimate-num-keys", Boolean, "false", Checkpoints,
        "`rocksdb` only: report RocksDB's `rocksdb.estimate-num-keys` per keyed operator subtask as the gauge `rocksdb.estimate-num-keys` (docs/rest-api.md, `/metrics`): estimated number of keys in RocksDB (entries only in the write cache are not counted)");
    /// `state.backend.rocksdb.metrics.estimate-live-data-size`.
    ROCKSDB_METRIC_ESTIMATE_LIVE_DATA_SIZE = ("state.backend.rocksdb.metrics.estimate-live-data-size", Boolean, "false", Checkpoints,
        "`rocksdb` only: report RocksDB's `rocksdb.estimate-live-data-size` per keyed operator subtask as the gauge `rocksdb.estimate-live-data-size` (docs/rest-api.md, `/metrics`): estimated bytes of live data in SST files");
    /// `state.backend.rocksdb.metrics.total-sst-files-size`.
    ROCKSDB_METRIC_TOTAL_SST_FILES_SIZE = ("state.backend.rocksdb.metrics.total-sst-files-size", Boolean, "false", Checkpoints,
        "`rocksdb` only: report RocksDB's `rocksdb.total-sst-files-size` per keyed operator subtask as the gauge `rocksdb.total-sst-files-size` (docs/rest-api.md, `/metrics`): bytes of all SST files of all versions");
    /// `state.backend.rocksdb.metrics.live-sst-files-size`.
    ROCKSDB_METRIC_LIVE_SST_FILES_SIZE = ("state.backend.rocksdb.metrics.live-sst-files-size", Boolean, "false", Checkpoints,
        "`rocksdb` only: report RocksDB's `rocksdb.live-sst-files-size` per keyed operator subtask as the gauge `rocksdb.live-sst-files-size` (docs/rest-api.md, `/metrics`): bytes of the SST files of the current version");
    /// `state.backend.rocksdb.metrics.background-errors`.
    ROCKSDB_METRIC_BACKGROUND_ERRORS = ("state.backend.rocksdb.metrics.background-errors", Boolean, "false", Checkpoints,
        "`rocksdb` only: report RocksDB's `rocksdb.background-errors` per keyed operator subtask as the gauge `rocksdb.background-errors` (docs/rest-api.md, `/metrics`): background errors RocksDB met (flushes, compactions)");
    /// `state.backend.rocksdb.metrics.write-cache-usage`.
    ROCKSDB_METRIC_WRITE_CACHE_USAGE = ("state.backend.rocksdb.metrics.write-cache-usage", Boolean, "false", Checkpoints,
        "`rocksdb` only: report the bytes charged to the keyed operator subtask's write cache (`state.backend.rocksdb.write-cache.entries`, `state.backend.rocksdb.memory.write-cache-ratio`) as the gauge `rocksdb.write-cache-usage` (docs/rest-api.md, `/metrics`): Weir's own, not a RocksDB property; estimated per entry from its key, value size and last encoding");
    /// `state.savepoints.dir`.
    SAVEPOINTS_DIR = ("state.savepoints.dir", Text, "", Checkpoints,
        "default savepoint target, `file:///…` or `s3://…`");
    /// `state.savepoints.allowed-roots`.
    SAVEPOINT_ALLOWED_ROOTS = ("state.savepoints.allowed-roots", Text, "", Checkpoints,
        "comma-separated directories (`file:///…`, `s3://…`) below which a savepoint requested over REST may be written, besides `state.savepoints.dir`; with neither set any target is accepted; a target with a `.` or `..` segment is always refused (security.md)");
    /// `s3.endpoint`.
    S3_ENDPOINT = ("s3.endpoint", Text, "", Checkpoints,
        "S3 endpoint URL for S3-compatible servers (storage.md); unset: AWS's endpoint for the region");
    /// `s3.path-style-access`.
    S3_PATH_STYLE_ACCESS = ("s3.path-style-access", Boolean, "false", Checkpoints,
        "address buckets by path (`endpoint/bucket/key`); needed by most S3-compatible servers");
    /// `s3.region`.
    S3_REGION = ("s3.region", Text, "", Checkpoints,
        "the bucket's region; unset: the AWS region chain, or `us-east-1` with an endpoint");
    /// `execution.savepoint.path`.
    SAVEPOINT_PATH = ("execution.savepoint.path", Text, "", Checkpoints,
        "checkpoint or savepoint directory to restore from (`weir run --from-savepoint`)");
    /// `execution.savepoint.ignore-unclaimed-state`.
    SAVEPOINT_IGNORE_UNCLAIMED_STATE = ("execution.savepoint.ignore-unclaimed-state", Boolean, "false", Checkpoints,
        "allow restoring when the savepoint holds state of operators the job no longer has, or keyed state an operator no longer registers (that state is dropped)");
    /// `execution.checkpointing.tolerable-failed-checkpoints`.
    TOLERABLE_FAILED_CHECKPOINTS = ("execution.checkpointing.tolerable-failed-checkpoints", Integer, "2147483647", Checkpoints,
        "consecutive checkpoint failures tolerated; beyond that the job fails (and restarts per the strategy). Flink's default is 0; Weir's keeps the job running, only counting and logging failed checkpoints");
    /// `execution.checkpointing.externalized-checkpoint-retention`.
    CHECKPOINT_RETENTION = ("execution.checkpointing.externalized-checkpoint-retention", Enum(&["RETAIN_ON_CANCELLATION", "DELETE_ON_CANCELLATION"]), "RETAIN_ON_CANCELLATION", Checkpoints,
        "what a cancel does to the job's checkpoints: `RETAIN_ON_CANCELLATION` keeps them (to resume from the latest one, which the operator's `last-state` upgrade mode relies on), `DELETE_ON_CANCELLATION` deletes `<state.checkpoints.dir>/<job-id>/` once the job has stopped. Jobs that finish or fail keep their retained checkpoints either way. Weir's default keeps them where Flink's does not retain checkpoints unless configured");
    /// `restart-strategy.type`.
    RESTART_STRATEGY = ("restart-strategy.type", Enum(&["none", "fixed-delay", "exponential-delay"]), "", Checkpoints,
        "`none`, `fixed-delay` or `exponential-delay`; unset: `fixed-delay` with checkpointing, else `none`");
    /// `restart-strategy.fixed-delay.attempts`.
    FIXED_DELAY_ATTEMPTS = ("restart-strategy.fixed-delay.attempts", Integer, "2147483647", Checkpoints,
        "restarts before the job fails");
    /// `restart-strategy.fixed-delay.delay`.
    FIXED_DELAY_DELAY = ("restart-strategy.fixed-delay.delay", Duration, "1s", Checkpoints,
        "pause before a restart");
    /// `restart-strategy.exponential-delay.initial-backoff`.
    EXPONENTIAL_INITIAL_BACKOFF = ("restart-strategy.exponential-delay.initial-backoff", Duration, "1s", Checkpoints,
        "pause before the first restart");
    /// `restart-strategy.exponential-delay.max-backoff`.
    EXPONENTIAL_MAX_BACKOFF = ("restart-strategy.exponential-delay.max-backoff", Duration, "1min", Checkpoints,
        "the pause never grows beyond this");
    /// `restart-strategy.exponential-delay.backoff-multiplier`.
    EXPONENTIAL_MULTIPLIER = ("restart-strategy.exponential-delay.backoff-multiplier", Number, "1.5", Checkpoints,
        "each restart waits this many times longer than the previous; at least 1");
    /// `restart-strategy.exponential-delay.jitter-factor`.
    EXPONENTIAL_JITTER = ("restart-strategy.exponential-delay.jitter-factor", Number, "0.1", Checkpoints,
        "random ± share of each pause (0 to 1)");
    /// `restart-strategy.exponential-delay.attempts-before-reset-backoff`.
    EXPONENTIAL_ATTEMPTS = ("restart-strategy.exponential-delay.attempts-before-reset-backoff", Integer, "2147483647", Checkpoints,
        "restarts before the job fails");

    /// `rest.address`.
    REST_ADDRESS = ("rest.address", Text, "127.0.0.1", Rest,
        "address the REST API binds to (`0.0.0.0`: every interface), and the one `weir list/savepoint/stop/cancel` call without `--address`");
    /// `rest.port`.
    REST_PORT = ("rest.port", Port, "", Rest,
        "port of the REST API; `0` picks a free one. Unset: `weir run` serves no REST API (like Flink's local mini-cluster), `weir jobmanager` serves 8081, and the job-control commands call port 8081");

    /// `jobmanager.rpc.address`.
    RPC_ADDRESS = ("jobmanager.rpc.address", Text, "127.0.0.1", Cluster,
        "where TaskManagers reach the JobManager (host name or address; the operator sets the JobManager Service's name)");
    /// `jobmanager.rpc.port`.
    RPC_PORT = ("jobmanager.rpc.port", Port, "6123", Cluster,
        "the JobManager's RPC port");
    /// `jobmanager.bind-host`.
    RPC_BIND_HOST = ("jobmanager.bind-host", Text, "", Cluster,
        "address the RPC port binds to; unset: `$POD_IP` if set (on Kubernetes), else `127.0.0.1` (set `0.0.0.0` to let TaskManagers on other hosts connect)");
    /// `taskmanager.numberOfTaskSlots`.
    TASK_SLOTS = ("taskmanager.numberOfTaskSlots", Integer, "1", Cluster,
        "slots a TaskManager offers; a slot runs one subtask of every task, so a job needs as many slots as its largest parallelism");
    /// `taskmanager.host`.
    TASKMANAGER_HOST = ("taskmanager.host", Text, "", Cluster,
        "address a TaskManager's data port binds to and advertises to other TaskManagers; unset: `$POD_IP` if set, else `127.0.0.1`");
    /// `taskmanager.data.port`.
    DATA_PORT = ("taskmanager.data.port", Port, "0", Cluster,
        "the data port of the network exchange (`0`: any free port)");
    /// `heartbeat.interval`.
    HEARTBEAT_INTERVAL = ("heartbeat.interval", Duration, "10s", Cluster,
        "how often the JobManager pings TaskManagers (TaskManagers report metrics at least every second)");
    /// `heartbeat.timeout`.
    HEARTBEAT_TIMEOUT = ("heartbeat.timeout", Duration, "50s", Cluster,
        "silence after which a TaskManager counts as lost (the job restarts from its latest checkpoint), and after which a TaskManager gives up on its JobManager and registers again");

    /// `taskmanager.memory.process.size`.
    MEMORY_PROCESS_SIZE = ("taskmanager.memory.process.size", MemorySize, "", Memory,
        "the budget a TaskManager lives within (`1g`, `1728m`, `512mb`, bytes; binary units). Unset: no budget — channels hold `pipeline.channel-capacity` batches, RocksDB uses its own defaults. Too small for the slots: the process refuses to start, naming the numbers");
    /// `taskmanager.memory.framework.size`.
    MEMORY_FRAMEWORK_SIZE = ("taskmanager.memory.framework.size", MemorySize, "32m", Memory,
        "part of the budget for the runtime itself (threads, allocator, RPC, REST)");
    /// `taskmanager.network.memory.fraction`.
    NETWORK_MEMORY_FRACTION = ("taskmanager.network.memory.fraction", Fraction, "0.1", Memory,
        "share of the budget for buffers between tasks, cut into segments shared by every channel with an end in the process");
    /// `taskmanager.memory.managed.fraction`.
    MANAGED_MEMORY_FRACTION = ("taskmanager.memory.managed.fraction", Fraction, "0.4", Memory,
        "share of the budget for RocksDB: one block cache for all instances of the process, plus a write-buffer limit per instance");
    /// `taskmanager.memory.segment-size`.
    MEMORY_SEGMENT_SIZE = ("taskmanager.memory.segment-size", MemorySize, "32kb", Memory,
        "one network buffer; a channel holds one batch per buffer, at least 2, at most `pipeline.channel-capacity`");
    /// `state.backend.rocksdb.memory.write-buffer-ratio`.
    ROCKSDB_WRITE_BUFFER_RATIO = ("state.backend.rocksdb.memory.write-buffer-ratio", Fraction, "0.5", Memory,
        "share of managed memory for RocksDB memtables (split evenly between the instances); what `write-cache-ratio` leaves of the rest is the block cache");
    /// `state.backend.rocksdb.memory.write-cache-ratio`.
    ROCKSDB_WRITE_CACHE_RATIO = ("state.backend.rocksdb.memory.write-cache-ratio", Fraction, "0.25", Memory,
        "share of managed memory for the write caches of decoded entries in front of RocksDB (split evenly between the instances; each cache also holds at most `state.backend.rocksdb.write-cache.entries`); with `write-buffer-ratio` it must leave some of managed memory to the block cache");

    /// `security.rest.token-file`.
    REST_TOKEN_FILE = ("security.rest.token-file", Text, "", Security,
        "file holding the REST API's bearer token (surrounding whitespace ignored). Set: every endpoint but `/healthz` and `/readyz` answers `401` unless the request carries `Authorization: Bearer <token>`, and `weir list/savepoint/stop/cancel` send it (security.md)");
    /// `security.ssl.rest.enabled`.
    SSL_REST_ENABLED = ("security.ssl.rest.enabled", Boolean, "false", Security,
        "serve the REST API over TLS (`https://`), and make the job-control commands call it so");
    /// `security.ssl.rest.cert-file`.
    SSL_REST_CERT_FILE = ("security.ssl.rest.cert-file", Text, "", Security,
        "PEM certificate chain the REST API presents; needed by the server when TLS is on");
    /// `security.ssl.rest.key-file`.
    SSL_REST_KEY_FILE = ("security.ssl.rest.key-file", Text, "", Security,
        "PEM private key (PKCS#8, PKCS#1 or SEC1) of that certificate");
    /// `security.ssl.rest.ca-file`.
    SSL_REST_CA_FILE = ("security.ssl.rest.ca-file", Text, "", Security,
        "PEM CA certificate(s) a REST client (`weir list/savepoint/stop/cancel`) trusts; needed by clients when TLS is on");
    /// `security.ssl.internal.enabled`.
    SSL_INTERNAL_ENABLED = ("security.ssl.internal.enabled", Boolean, "false", Security,
        "run the JobManager–TaskManager RPC over mutually authenticated TLS: every process presents `security.ssl.internal.cert-file` and accepts only peers whose certificate chains to `security.ssl.internal.ca-file`; a TaskManager also checks the JobManager's certificate against `jobmanager.rpc.address`");
    /// `security.ssl.internal.cert-file`.
    SSL_INTERNAL_CERT_FILE = ("security.ssl.internal.cert-file", Text, "", Security,
        "PEM certificate chain a JobManager or TaskManager presents on the RPC (extended key usage: server and client authentication)");
    /// `security.ssl.internal.key-file`.
    SSL_INTERNAL_KEY_FILE = ("security.ssl.internal.key-file", Text, "", Security,
        "PEM private key of that certificate");
    /// `security.ssl.internal.ca-file`.
    SSL_INTERNAL_CA_FILE = ("security.ssl.internal.ca-file", Text, "", Security,
        "PEM CA certificate(s) the RPC peers' certificates must chain to");
    /// `security.internal.token-file`.
    INTERNAL_TOKEN_FILE = ("security.internal.token-file", Text, "", Security,
        "file holding the shared secret of the JobManager–TaskManager RPC; set on both: each side proves it holds the secret (HMAC-SHA256 challenge–response, the secret never crosses the wire) before any command is taken, and a TaskManager without it is refused and logged");
}

/// The JobManager's RPC port when `jobmanager.rpc.port` is unset: [`RPC_PORT`]'s default.
pub const DEFAULT_RPC_PORT: u16 = 6123;

/// The option with this key.
pub fn find(key: &str) -> Option<&'static ConfigOption> {
    OPTIONS.iter().find(|o| o.key == key)
}

/// The known key closest to `key` (edit distance), to suggest when `key` is unknown.
pub fn nearest(key: &str) -> &'static str {
    OPTIONS
        .iter()
        .min_by_key(|o| edit_distance(o.key, key))
        .map_or("", |o| o.key)
}

/// Edit distance between two keys (what "did you mean" suggestions are ranked by, here and
/// for SQL connector options).
pub fn edit_distance(a: &str, b: &str) -> usize {
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

/// The opt-in RocksDB native metrics (Flink's `state.backend.rocksdb.metrics.*`): each key
/// switches on the RocksDB property `rocksdb.<the key's last segment>`.
pub const ROCKSDB_METRICS: &[ConfigOption] = &[
    ROCKSDB_METRIC_BLOCK_CACHE_CAPACITY,
    ROCKSDB_METRIC_BLOCK_CACHE_USAGE,
    ROCKSDB_METRIC_BLOCK_CACHE_PINNED_USAGE,
    ROCKSDB_METRIC_CUR_SIZE_ACTIVE_MEM_TABLE,
    ROCKSDB_METRIC_CUR_SIZE_ALL_MEM_TABLES,
    ROCKSDB_METRIC_SIZE_ALL_MEM_TABLES,
    ROCKSDB_METRIC_NUM_IMMUTABLE_MEM_TABLE,
    ROCKSDB_METRIC_MEM_TABLE_FLUSH_PENDING,
    ROCKSDB_METRIC_NUM_RUNNING_FLUSHES,
    ROCKSDB_METRIC_COMPACTION_PENDING,
    ROCKSDB_METRIC_NUM_RUNNING_COMPACTIONS,
    ROCKSDB_METRIC_ESTIMATE_PENDING_COMPACTION_BYTES,
    ROCKSDB_METRIC_ESTIMATE_NUM_KEYS,
    ROCKSDB_METRIC_ESTIMATE_LIVE_DATA_SIZE,
    ROCKSDB_METRIC_TOTAL_SST_FILES_SIZE,
    ROCKSDB_METRIC_LIVE_SST_FILES_SIZE,
    ROCKSDB_METRIC_BACKGROUND_ERRORS,
    ROCKSDB_METRIC_WRITE_CACHE_USAGE,
];

/// The reference table of one section, as docs/configuration.md shows it.
pub fn reference(section: Section) -> String {
    let mut out = String::from("| key | type | default | meaning |\n| --- | --- | --- | --- |\n");
    for o in OPTIONS.iter().filter(|o| o.section == section) {
        let default = if o.default.is_empty() {
            "—".to_string()
        } else {
            format!("`{}`", o.default)
        };
        out.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            o.key,
            o.ty.name(),
            default,
            o.description
        ));
    }
    out
}

/// The line opening a generated table in docs/configuration.md.
pub fn reference_begin(section: Section) -> String {
    format!(
        "<!-- generated from weir_contract::options (section {}); edit there -->",
        section.name()
    )
}

/// The line closing a generated table.
pub const REFERENCE_END: &str = "<!-- end of generated table -->";

/// `doc` with every generated table replaced by the current [`reference`]; the text between
/// the tables is kept. Errors name a section whose markers are missing.
pub fn update_reference(doc: &str) -> Result<String, String> {
    let mut out = doc.to_string();
    for section in Section::ALL {
        let begin = reference_begin(section);
        let start = out
            .find(&begin)
            .ok_or_else(|| format!("no line {begin:?} in the document"))?
            + begin.len();
        let end = out[start..]
            .find(REFERENCE_END)
            .ok_or_else(|| format!("no {REFERENCE_END:?} after {begin:?}"))?
            + start;
        out.replace_range(start..end, &format!("\n{}", reference(section)));
    }
    Ok(out)
}
