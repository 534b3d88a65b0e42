#!/usr/bin/env bash
# The large-state benchmark (issue #27): Weir against Flink 2.3, both on RocksDB with
# incremental checkpoints every 10 s to a local directory, on one GROUP BY job whose state is
# several times the managed memory. bench/large_state.py does the work and documents what is
# measured; bench/README.md ("Large state") has the results.
#
#   bash bench/large-state.sh                        # defaults below, both engines
#   KEYS=1000000 EVENTS=2000000 bash bench/large-state.sh
#   ENGINES=weir bash bench/large-state.sh           # one engine
#
# Prints `<engine> <metric>=<value>` lines, then a Markdown table; every figure is kept in
# bench/out/large-state/large-state.json, each run's log next to it.
#
# Env: KEYS (distinct keys, default 2000000), EVENTS (default 3 × KEYS: every key written
# three times), MANAGED_MB (RocksDB's managed memory on both engines, default 16), INTERVAL
# (checkpoint interval, default 10s), RESCALE_TO (parallelism of the rescale restore, default 2;
# 0 skips it), MAX_SECONDS (a main run still going after this long is cancelled and measured
# on what it read so far, default 300), ENGINES (default weir,flink), REUSE_FLINK=1 (report the Flink results of the
# last run of the same input instead of running Flink again), NICE (default 10), WEIR_BIN (default
# $CARGO_TARGET_DIR/release/weir, built if missing), BENCH_DATA_DIR, WEIR_CACHE,
# CARGO_TARGET_DIR.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
export WEIR_CACHE="${WEIR_CACHE:-$HOME/.cache/weir}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$WEIR_CACHE/target}"
KEYS="${KEYS:-2000000}"
EVENTS="${EVENTS:-$((3 * KEYS))}"
OUT="$HERE/out/large-state"
log() { echo "[large-state] $*" >&2; }
mkdir -p "$OUT"

FLINK_VENV="$(bash "$HERE/setup.sh")"
WEIR_BIN="${WEIR_BIN:-$CARGO_TARGET_DIR/release/weir}"
if ! [ -x "$WEIR_BIN" ]; then
    log "building weir: cargo build --release -p weir (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
    (cd "$REPO" && nice -n "${NICE:-10}" cargo build --release -p weir) >"$OUT/build.log" 2>&1
fi
log "weir binary: $WEIR_BIN (modified $(date -u -r "$WEIR_BIN" +%FT%TZ)); load: $(cat /proc/loadavg)"

exec "$FLINK_VENV/bin/python" "$HERE/large_state.py" --out "$OUT" \
    --data-dir "${BENCH_DATA_DIR:-$HERE/out}" --keys "$KEYS" --events "$EVENTS" \
    --weir-bin "$WEIR_BIN" --flink-python "$FLINK_VENV/bin/python" \
    --engines "${ENGINES:-weir,flink}" --interval "${INTERVAL:-10s}" \
    --managed-mb "${MANAGED_MB:-16}" --rescale-to "${RESCALE_TO:-2}" --max-seconds "${MAX_SECONDS:-300}" --nice "${NICE:-10}" \
    --reuse "$([ "${REUSE_FLINK:-0}" = 1 ] && echo flink || true)"
