#!/usr/bin/env bash
# Checkpoint duration under backpressure, aligned vs unaligned barriers: the same job (a fast
# generator, a slow stage behind a rebalance whose input channels stay full, keyed windows)
# with a checkpoint every 100 ms, once per mode. Prints one line per mode:
#   <mode> checkpoints=<n> median_ms=<m> max_ms=<x> failed=<f> elapsed_ms=<t>
# EVENTS and SLOW_US (µs of work per record in the slow stage) tune it.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
cd "$HERE/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${WEIR_CACHE:-$HOME/.cache/weir}/target}"
cargo run --release --locked -q -p weir-engine --example backpressure_checkpoints -- \
  "${EVENTS:-400000}" "${SLOW_US:-20}"
