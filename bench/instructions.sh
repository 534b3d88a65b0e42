#!/usr/bin/env bash
# Instruction counts of SQL benchmark queries (cachegrind): the repeatable measure behind
# "within N % of before" claims, unaffected by whatever else the machine is doing.
#
#   bash bench/instructions.sh [queries…]             # default: q0 q1 q2 q5, this checkout's release build
#   WEIR_BIN=/path/to/weir bash bench/instructions.sh q0 q5   # another build (e.g. an older commit's)
#
# Each query runs as bench/sql.sh builds it (bench/sql/nexmark_ddl.sql prepended; the queries
# write to blackhole) over bench/nexmark_gen.py's files for EVENTS events (default 400000:
# 368k bids), at parallelism PARALLELISM (default 1), under `valgrind --tool=cachegrind
# --cache-sim=no`. Prints one line per query: `<query> instructions=<I refs>`.
#
# Env: EVENTS, PARALLELISM (valgrind runs one thread at a time: the count is the work of all
#      subtasks, so p=2 against p=1 is what the parallel plan adds), BENCH_DATA_DIR (where
#      nexmark-<EVENTS>/ is or is generated; default bench/out),
#      WEIR_BIN (default $CARGO_TARGET_DIR/release/weir, built if missing), CARGO_TARGET_DIR.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${WEIR_CACHE:-$HOME/.cache/weir}/target}"
EVENTS="${EVENTS:-400000}"
PARALLELISM="${PARALLELISM:-1}"
DATA="${BENCH_DATA_DIR:-$HERE/out}/nexmark-$EVENTS"
WEIR_BIN="${WEIR_BIN:-$CARGO_TARGET_DIR/release/weir}"
QUERIES=("$@")
[ ${#QUERIES[@]} -gt 0 ] || QUERIES=(q0 q1 q2 q5)

command -v valgrind >/dev/null || { apt-get update -q && apt-get install -y -q valgrind; }
if [ ! -x "$WEIR_BIN" ]; then
    (cd "$HERE/.." && cargo build --release --locked -p weir -q)
fi
[ -f "$DATA/bid.jsonl" ] || python3 "$HERE/nexmark_gen.py" "$EVENTS" "$DATA"

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
for q in "${QUERIES[@]}"; do
    script="$WORK/$q.sql"
    { cat "$HERE/sql/nexmark_ddl.sql"; echo; cat "$HERE/sql/$q.sql"; } |
        sed -e "s|\${NEXMARK_DIR}|$DATA|g" >"$script"
    refs=$(valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file="$WORK/cg.$q" \
        "$WEIR_BIN" run "$script" -p "$PARALLELISM" --no-progress 2>&1 >/dev/null |
        sed -n -E 's/.*I\s+refs:\s+([0-9,]+).*/\1/p' | tr -d ,)
    echo "$q instructions=${refs:-n/a}"
done
