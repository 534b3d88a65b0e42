//! Weir's dataflow engine.
//!
//! Layers, lowest first (a layer never imports a higher one; a test reads the sources and
//! fails on an upward `crate::` path):
//! - [`time`], [`keygroup`], [`config`], [`error`], [`bytes`]: vocabulary shared by everything.
//! - [`state`] and timers: keyed state per key group, with TTL, and the backends that hold
//!   it (including the RocksDB files an incremental checkpoint references).
//! - [`checkpoint`]: snapshot format, checkpoint storage, restore planning.
//! - [`runtime`]: type-erased operators, chaining, bounded channels, watermarks, tasks.
//! - [`connectors`], [`window`], [`join`], [`api`]: the typed DataStream API and what plugs
//!   into it.
//!
//! [`testing`] (top layer) holds what the tests of this crate and the crates above it share.

pub mod api;
pub mod bytes;
pub mod checkpoint;
pub mod config;
pub mod connectors;
pub mod error;
pub mod join;
pub mod keygroup;
pub mod runtime;
pub mod state;
pub mod testing;
pub mod time;
mod timers;
pub mod window;

#[cfg(test)]
mod layer_rule;

pub use error::{Error, Result, report};
