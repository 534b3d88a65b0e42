#!/usr/bin/env bash
# Engine-core benchmark: Weir vs Apache Flink 2.3 on the same input.
#
#   bash bench/engine-core.sh
#
# Generates EVENTS (default 3,000,000) JSON lines {"user_id","amount","ts"} in
# event-time order, then runs the same job on both engines at parallelism 1:
# 1-minute tumbling event-time windows, COUNT(*) and SUM(amount) per user_id,
# output discarded. Prints one JSON line per engine and ends with
#   throughput weir=<events/s> flink=<events/s> ratio=<weir/flink>
#   peak_rss_mib weir=<n> flink=<n>
#   per_core weir=<events/CPU-s> flink=<events/CPU-s> ratio=<weir/flink>
# per_core: events per CPU-second of the engine's process while the job runs (Weir: cpu_ms,
# the weir process's utime+stime; Flink: job_cpu_ms, the JVM's utime+stime during the job's
# net runtime, sampled from /proc by flink_tumbling.py).
#
# Env:
#   EVENTS            number of events (default 3000000)
#   WEIR_CACHE        cache dir (default $HOME/.cache/weir): Flink venv, cargo target
#   CARGO_TARGET_DIR  default $WEIR_CACHE/target
#   BENCH_DATA_DIR    where the generated input lives (default bench/out)
#   WEIR_BIN          use this weir binary instead of building one
#   WEIR_BUILD=0      do not run cargo build (use an existing binary if any)
#   SKIP_FLINK=1 / SKIP_WEIR=1   run only one side
#   FLINK_JVM_ARGS    extra JVM flags for the Flink JVM (default none)
#   NICE              niceness for build and runs (default 10; 0 for a quiet machine)
#   RUNS              runs per engine (default 1); the median-throughput run is reported
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
EVENTS="${EVENTS:-3000000}"
export WEIR_CACHE="${WEIR_CACHE:-$HOME/.cache/weir}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$WEIR_CACHE/target}"
DATA_DIR="${BENCH_DATA_DIR:-$HERE/out}"
OUT_DIR="$HERE/out/engine-core"
NICE="${NICE:-10}"
RUN=(nice -n "$NICE")

log() { echo "[engine-core] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

mkdir -p "$DATA_DIR" "$OUT_DIR"
log "$(date -u +%Y-%m-%dT%H:%M:%SZ) host=$(hostname) cores=$(nproc) events=$EVENTS"

# ---- 1. setup -----------------------------------------------------------------
FLINK_VENV="$(bash "$HERE/setup.sh")" || die "setup failed"
PY="$FLINK_VENV/bin/python"

# wall, peak RSS and CPU of a command: "<wall_ms> <maxrss_kib> <exit> <cpu_ms>" in $1
measure() { "$PY" "$HERE/measure.py" "$@"; }

# ---- 2. data ------------------------------------------------------------------
INPUT="$DATA_DIR/events-$EVENTS.jsonl"
"${RUN[@]}" python3 "$HERE/gen_events.py" "$EVENTS" "$INPUT" || die "data generation failed"
EXPECTED_ROWS="$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["rows"])' "$INPUT.expected.json")"
log "input: $INPUT ($EVENTS events, expected output rows: $EXPECTED_ROWS)"

# ---- 3. weir build ------------------------------------------------------------
WEIR_STATUS=""
if [ "${SKIP_WEIR:-0}" = 1 ]; then
    WEIR_STATUS="skipped (SKIP_WEIR=1)"
elif [ -n "${WEIR_BIN:-}" ]; then
    [ -x "$WEIR_BIN" ] || WEIR_STATUS="WEIR_BIN=$WEIR_BIN is not an executable"
else
    WEIR_BIN="$CARGO_TARGET_DIR/release/weir"
    if [ "${WEIR_BUILD:-1}" != 0 ] && ! grep -rqs "bench-tumbling" "$REPO/worker/cli/src"; then
        # Building a checkout without the job would only re-link a binary
        # that cannot run it over release/weir in the (shared) target dir.
        log "this checkout ($REPO) has no bench-tumbling job in worker/cli/src: not building weir"
        WEIR_STATUS="this checkout has no 'bench-tumbling' job; set WEIR_BIN=/path/to/weir built from a branch that has it"
    elif [ "${WEIR_BUILD:-1}" != 0 ]; then
        log "building weir: cargo build --release -p weir (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
        if ! (cd "$REPO" && "${RUN[@]}" cargo build --release -p weir) >"$OUT_DIR/weir-build.log" 2>&1; then
            log "cargo build --release -p weir FAILED (see $OUT_DIR/weir-build.log):"
            tail -5 "$OUT_DIR/weir-build.log" >&2
            WEIR_STATUS="build failed"
        fi
    fi
    if [ -z "$WEIR_STATUS" ] && [ -x "$WEIR_BIN" ]; then
        # CARGO_TARGET_DIR is shared between worktrees by default: release/weir
        # is whatever worktree built (or re-linked) it last. Say which one.
        log "weir binary: $WEIR_BIN (modified $(date -u -r "$WEIR_BIN" +%Y-%m-%dT%H:%M:%SZ); built here from $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?'); if another worktree shares CARGO_TARGET_DIR it may be theirs, use WEIR_BIN or a private CARGO_TARGET_DIR to be sure)"
    fi
    if [ -z "$WEIR_STATUS" ] && ! [ -x "$WEIR_BIN" ]; then
        WEIR_STATUS="binary not found at $WEIR_BIN"
    fi
fi

# ---- 4. flink -----------------------------------------------------------------
# Each run's JSON line (plus "run" and "loadavg_1m" at its start) is appended to
# $OUT_DIR/<engine>-$EVENTS.runs.jsonl; with RUNS>1 the run with the median
# events/s is reported.
RUNS="${RUNS:-1}"
add_fields() {  # add_fields JSON RUN LOAD -> JSON with run + loadavg_1m
    "$PY" -c 'import json,sys; d=json.loads(sys.argv[1]); d["run"]=int(sys.argv[2]); d["loadavg_1m"]=float(sys.argv[3]); print(json.dumps(d))' "$@"
}
pick_median() {  # pick_median FILE -> line with median events_per_s
    "$PY" -c '
import json,sys
rows=[json.loads(l) for l in open(sys.argv[1]) if l.strip()]
rows.sort(key=lambda d: d.get("events_per_s") or 0)
if rows: print(json.dumps(rows[(len(rows)-1)//2]))' "$1"
}
FLINK_RUNS_FILE="$OUT_DIR/flink-$EVENTS.runs.jsonl"
WEIR_RUNS_FILE="$OUT_DIR/weir-$EVENTS.runs.jsonl"
rm -f "$FLINK_RUNS_FILE" "$WEIR_RUNS_FILE"

FLINK_JSON=""
if [ "${SKIP_FLINK:-0}" = 1 ]; then
    log "flink: skipped (SKIP_FLINK=1)"
else
    for i in $(seq 1 "$RUNS"); do
        load="$(cut -d' ' -f1 /proc/loadavg)"
        log "flink run $i/$RUNS: Apache Flink 2.3.0 (PyFlink SQL, streaming, parallelism 1); loadavg: $(cut -d' ' -f1-3 /proc/loadavg)"
        FLINK_LOG="$OUT_DIR/flink-$EVENTS.run$i.log"
        line=""
        if "${RUN[@]}" "$PY" "$HERE/flink_tumbling.py" "$INPUT" --events "$EVENTS" \
            >"$OUT_DIR/flink-$EVENTS.run$i.stdout" 2>"$FLINK_LOG"; then
            line="$(grep '^{"engine": "flink"' "$OUT_DIR/flink-$EVENTS.run$i.stdout" | tail -1)"
        fi
        if [ -z "$line" ]; then
            log "flink run $i: FAILED (see $FLINK_LOG)"; tail -20 "$FLINK_LOG" >&2
            continue
        fi
        line="$(add_fields "$line" "$i" "$load")"
        echo "$line" >>"$FLINK_RUNS_FILE"
        [ "$RUNS" = 1 ] || log "flink run $i: $line"
    done
    [ -s "$FLINK_RUNS_FILE" ] && FLINK_JSON="$(pick_median "$FLINK_RUNS_FILE")"
fi

# ---- 5. weir ------------------------------------------------------------------
WEIR_JSON=""
if [ -z "$WEIR_STATUS" ]; then
  for i in $(seq 1 "$RUNS"); do
    SUMMARY="$OUT_DIR/weir-$EVENTS.run$i.summary.json"
    MEASURE="$OUT_DIR/weir-$EVENTS.run$i.measure"
    WLOG="$OUT_DIR/weir-$EVENTS.run$i.log"
    rm -f "$SUMMARY"
    load="$(cut -d' ' -f1 /proc/loadavg)"
    log "weir run $i/$RUNS: $WEIR_BIN run bench-tumbling --parallelism 1; loadavg: $(cut -d' ' -f1-3 /proc/loadavg)"
    if measure "$MEASURE" "${RUN[@]}" "$WEIR_BIN" run bench-tumbling \
        --arg "input=$INPUT" --parallelism 1 --no-progress --summary-json "$SUMMARY" \
        >"$WLOG" 2>&1 && [ -s "$SUMMARY" ]; then
        line="$("$PY" - "$SUMMARY" "$MEASURE" "$EVENTS" "$EXPECTED_ROWS" "$WEIR_BIN" <<'PYEOF'
import datetime, hashlib, json, os, sys
s = json.load(open(sys.argv[1]))
weir_bin = os.path.realpath(sys.argv[5])
with open(weir_bin, "rb") as f:
    bin_sha = hashlib.sha256(f.read()).hexdigest()[:16]
bin_mtime = datetime.datetime.fromtimestamp(
    os.stat(weir_bin).st_mtime, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
wall_ms, rss_kib, _, cpu_ms = (int(x) for x in open(sys.argv[2]).read().split())
events, expected_rows = int(sys.argv[3]), int(sys.argv[4])
job_ms = s["elapsed_ms"]
print(json.dumps({
    "engine": "weir",
    "events": events,
    "job_ms": job_ms,
    "wall_ms": wall_ms,
    "events_per_s": round(events / (job_ms / 1000.0)) if job_ms > 0 else None,
    "peak_rss_mib": round(rss_kib / 1024),
    "cpu_ms": cpu_ms,
    "records_in": s.get("records_in"),
    "records_out": s.get("records_out"),
    "expected_rows": expected_rows,
    "rows_ok": s.get("records_in") == events and s.get("records_out") == expected_rows,
    "weir_bin": weir_bin,
    "weir_bin_mtime": bin_mtime,
    "weir_bin_sha256": bin_sha,
}))
PYEOF
)" || line=""
        if [ -z "$line" ]; then
            WEIR_STATUS="could not read summary $SUMMARY"; break
        fi
        line="$(add_fields "$line" "$i" "$load")"
        echo "$line" >>"$WEIR_RUNS_FILE"
        [ "$RUNS" = 1 ] || log "weir run $i: $line"
    else
        rc="$(cut -d' ' -f3 "$MEASURE" 2>/dev/null || echo '?')"
        if [ "$rc" = 0 ]; then
            WEIR_STATUS="weir exited 0 but wrote no summary at $SUMMARY (does this weir implement 'run bench-tumbling --summary-json'?)"
        else
            WEIR_STATUS="weir run failed with exit code $rc (log: $WLOG)"
        fi
        if [ -s "$WLOG" ]; then
            tail -20 "$WLOG" >&2
        fi
        break
    fi
  done
  [ -s "$WEIR_RUNS_FILE" ] && WEIR_JSON="$(pick_median "$WEIR_RUNS_FILE")"
fi
[ -z "$WEIR_STATUS" ] || log "weir: NOT MEASURED: $WEIR_STATUS"

# ---- 6. report ----------------------------------------------------------------
[ -n "$FLINK_JSON" ] && echo "$FLINK_JSON"
[ -n "$WEIR_JSON" ] && echo "$WEIR_JSON"
"$PY" - "$FLINK_JSON" "$WEIR_JSON" <<'PYEOF'
import json, sys
f = json.loads(sys.argv[1]) if sys.argv[1] else {}
w = json.loads(sys.argv[2]) if sys.argv[2] else {}
if w and w.get("rows_ok") is False:
    print(f"[engine-core] WARNING: weir records_in/records_out = {w.get('records_in')}/"
          f"{w.get('records_out')}, expected {w.get('events')}/{w.get('expected_rows')}",
          file=sys.stderr)
fe, we = f.get("events_per_s"), w.get("events_per_s")
ratio = f"{we / fe:.2f}" if fe and we else "n/a"
def v(x):
    return "n/a" if x is None else str(x)
print(f"throughput weir={v(we)} flink={v(fe)} ratio={ratio}")
print(f"peak_rss_mib weir={v(w.get('peak_rss_mib'))} flink={v(f.get('peak_rss_mib'))}")
def per_core(d, cpu_field):
    cpu = d.get(cpu_field)
    return round(d["events"] / (cpu / 1000.0)) if cpu and d.get("events") else None
fc, wc = per_core(f, "job_cpu_ms"), per_core(w, "cpu_ms")
core_ratio = f"{wc / fc:.2f}" if fc and wc else "n/a"
print(f"per_core weir={v(wc)} flink={v(fc)} ratio={core_ratio}")
PYEOF
