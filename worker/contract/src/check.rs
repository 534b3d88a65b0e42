//! `weir check` as the operator runs it before an upgrade: the subcommand, its options and
//! what its exit codes mean.

/// The subcommand.
pub const COMMAND: &str = "check";
/// The checkpoint or savepoint to check the job against.
pub const ARG_STATE: &str = "--state";
/// Exit code: the job can restore the state.
pub const EXIT_COMPATIBLE: i32 = 0;
/// Exit code: the job cannot restore the state; the report names each refused operator on a
/// line starting with [`REFUSED_PREFIX`]. Any other exit code is an error (the job does not
/// plan, the state cannot be read).
pub const EXIT_INCOMPATIBLE: i32 = 2;
/// How the report's line for each refusal starts (after indentation).
pub const REFUSED_PREFIX: &str = "refused: ";
