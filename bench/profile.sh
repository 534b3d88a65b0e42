#!/usr/bin/env bash
# Where Weir's time goes on the engine-core job: instruction counts per function (cachegrind,
# repeatable whatever else the machine is doing), grouped into JSON decoding, allocation,
# file reading and the engine itself.  Usage: bash bench/profile.sh [events]  (default 300000)
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS="${1:-300000}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${WEIR_CACHE:-$HOME/.cache/weir}/target}"
command -v valgrind >/dev/null || { apt-get update -q && apt-get install -y -q valgrind; }
mkdir -p bench/out
DATA="bench/out/events-$EVENTS.jsonl"
[ -f "$DATA" ] || python3 bench/gen_events.py "$EVENTS" "$DATA"
cargo build --release --locked -p weir -q
OUT="bench/out/cachegrind.$EVENTS"
valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file="$OUT" \
  "$CARGO_TARGET_DIR/release/weir" run bench-tumbling --arg input="$DATA" -p 1 --no-progress 2>&1 | grep -E 'I\s+refs|FINISHED'
cg_annotate --auto=no "$OUT" 2>/dev/null | python3 -c '
import re, sys
groups = {"json decoding": 0, "allocation": 0, "file reading": 0, "engine (state, windows, timers, keys)": 0, "other": 0}
total = 0
for line in sys.stdin:
    m = re.match(r"\s*([\d,]+) \(\s*[\d.]+%\)\s+(\S.*)", line)
    if not m or "PROGRAM TOTALS" in line:
        continue
    n = int(m.group(1).replace(",", "")); f = m.group(2)
    total += n
    if "serde" in f or "from_utf8" in f or "parse_" in f: g = "json decoding"
    elif "malloc" in f or "mimalloc" in f or "free" in f or "__rdl_" in f or "__rust_alloc" in f: g = "allocation"
    elif "read_until" in f or "memchr" in f or "io/mod.rs" in f or "kernel" in f: g = "file reading"
    elif "weir_engine" in f or "hashbrown" in f or "foldhash" in f or "postcard" in f or "binary_heap" in f or "memcmp" in f or "memcpy" in f or "weir::jobs" in f or "hash" in f or "String as core::clone" in f or "any.rs" in f: g = "engine (state, windows, timers, keys)"
    else: g = "other"
    groups[g] += n
for g, n in sorted(groups.items(), key=lambda x: -x[1]):
    print(f"{g:<40} {100*n/max(total,1):5.1f}%")
print(f"instructions per event: {total/int(sys.argv[1]):.0f}")
' "$EVENTS"
