#!/usr/bin/env bash
# Weir's two keyed state backends side by side on the Nexmark SQL queries (issue #27):
# hashmap, and rocksdb with a checkpoint every 10 s (incremental, to a local directory).
#
#   bash bench/state-backends.sh             # q5 q7, 1 run each
#   RUNS=3 bash bench/state-backends.sh q5   # median of 3 runs
#
# Prints one line per query:
#   <query> hashmap=<events/s> rocksdb=<events/s> ratio=<hashmap/rocksdb>
#     rocksdb_checkpoints=<completed> hashmap_ms=<elapsed> rocksdb_ms=<elapsed>
# (one line) where events = the bids the query reads and events/s = events / elapsed_ms of
# `weir run --summary-json` (median of the runs). A difference in rows emitted is warned about.
#
# Env: EVENTS (Nexmark events, default 4000000: 3.68 M bids), RUNS (default 1), NICE (default
# 10), CHECKPOINT_INTERVAL (default 10s), WRITE_CACHE (state.backend.rocksdb.write-cache.entries,
# default: the key's default), WEIR_BIN, BENCH_DATA_DIR, CARGO_TARGET_DIR, WEIR_CACHE.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
export WEIR_CACHE="${WEIR_CACHE:-$HOME/.cache/weir}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$WEIR_CACHE/target}"
EVENTS="${EVENTS:-4000000}"
RUNS="${RUNS:-1}"
RUN=(nice -n "${NICE:-10}")
DATA_DIR="${BENCH_DATA_DIR:-$HERE/out}"
OUT="$HERE/out/state-backends"
QUERIES=("$@")
[ "${#QUERIES[@]}" -gt 0 ] || QUERIES=(q5 q7)
log() { echo "[state-backends] $*" >&2; }
mkdir -p "$OUT"

WEIR_BIN="${WEIR_BIN:-$CARGO_TARGET_DIR/release/weir}"
if ! [ -x "$WEIR_BIN" ]; then
    log "building weir: cargo build --release -p weir"
    (cd "$REPO" && "${RUN[@]}" cargo build --release -p weir) >"$OUT/build.log" 2>&1
fi
NEXMARK_DIR="$DATA_DIR/nexmark-$EVENTS"
"${RUN[@]}" python3 "$HERE/nexmark_gen.py" "$EVENTS" "$NEXMARK_DIR" >&2
BIDS="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["bid"])' "$NEXMARK_DIR/counts.json")"
log "$(date -u +%FT%TZ) events=$EVENTS bids=$BIDS runs=$RUNS weir=$WEIR_BIN"

# one run: prints "<elapsed_ms> <checkpoints completed> <records_out>"
run() {  # run SCRIPT TAG [--set k=v]...
    local script="$1" tag="$2"; shift 2
    local summary="$OUT/$tag.summary.json"
    rm -f "$summary"
    "${RUN[@]}" "$WEIR_BIN" run "$script" --parallelism 1 --no-progress \
        --summary-json "$summary" "$@" >"$OUT/$tag.log" 2>&1 \
        || { log "$tag failed: $(tail -3 "$OUT/$tag.log")"; return 1; }
    python3 - "$summary" <<'PYEOF'
import json, sys
s = json.load(open(sys.argv[1]))
print(s["elapsed_ms"], s["checkpoints"]["completed"], s["records_out"])
PYEOF
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

for q in "${QUERIES[@]}"; do
    script="$OUT/$q.sql"
    { cat "$HERE/sql/nexmark_ddl.sql"; echo; cat "$HERE/sql/$q.sql"; } \
        | sed "s#\${NEXMARK_DIR}#$NEXMARK_DIR#g" >"$script"
    hm=(); rd=(); ckpts=0; out_hm=""; out_rd=""
    for i in $(seq 1 "$RUNS"); do
        read -r ms _ out_hm < <(run "$script" "$q-hashmap-$i")
        hm+=("$ms")
        ck="$(mktemp -d)"; local_dir="$(mktemp -d)"
        sets=(--set state.backend.type=rocksdb
              --set "execution.checkpointing.interval=${CHECKPOINT_INTERVAL:-10s}"
              --set "state.checkpoints.dir=file://$ck"
              --set "state.backend.rocksdb.localdir=$local_dir")
        [ -z "${WRITE_CACHE:-}" ] || sets+=(--set "state.backend.rocksdb.write-cache.entries=$WRITE_CACHE")
        read -r ms ckpts out_rd < <(run "$script" "$q-rocksdb-$i" "${sets[@]}")
        rd+=("$ms")
        rm -rf "$ck" "$local_dir"
        [ "$out_hm" = "$out_rd" ] || log "WARNING: $q: hashmap emitted $out_hm rows, rocksdb $out_rd"
        log "$q run $i: hashmap ${hm[-1]} ms, rocksdb ${rd[-1]} ms ($ckpts checkpoints)"
    done
    mh="$(printf '%s\n' "${hm[@]}" | median)"; mr="$(printf '%s\n' "${rd[@]}" | median)"
    python3 -c '
import sys
q, bids, mh, mr, ck = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
h, r = round(bids / (mh / 1000)), round(bids / (mr / 1000))
print(f"{q} hashmap={h} rocksdb={r} ratio={h / r:.2f} rocksdb_checkpoints={ck} hashmap_ms={mh} rocksdb_ms={mr}")
' "$q" "$BIDS" "$mh" "$mr" "$ckpts"
done
