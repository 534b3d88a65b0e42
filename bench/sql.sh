#!/usr/bin/env bash
# SQL benchmark: the same Flink SQL text on Apache Flink 2.3 and on Weir.
#
#   bash bench/sql.sh                  # every query, 1 run per engine
#   RUNS=3 bash bench/sql.sh q0 q1 q2  # some queries, median of 3 runs
#   bash bench/sql.sh --verify q1      # both engines write their rows to files; compare them
#                                      # (updating results as their final tables)
#
# Queries (bench/sql/<query>.sql): tumbling (the engine-core job as a window TVF), tumbling_gw
# (the same in group-window syntax) over bench/gen_events.py's events-N.jsonl, and Nexmark
# q0-q22 over bench/nexmark_gen.py's bid/person/auction files (bench/sql/nexmark_ddl.sql is
# prepended). The runner substitutes ${NEXMARK_DIR} / ${EVENTS_PATH} / ${SINK_DIR} (q10's
# filesystem sink: a fresh directory per run); the text is otherwise identical for both
# engines; the exact script each ran is kept in bench/out/sql/<query>.sql.
#
# Prints one line per query:
#   <query> weir=<events/s> flink=<events/s> ratio=<weir/flink> weir_per_core=<events/CPU-s>
#     flink_per_core=<events/CPU-s> per_core_ratio=<weir_per_core/flink_per_core>
# (one line) where events = the input records the query reads (the rows of each input table,
# counted once) and events/s = events / job_ms (Flink: JobExecutionResult net runtime; Weir:
# elapsed_ms of --summary-json). Per core = events per CPU-second of the engine's process
# while the job runs: Weir's cpu_ms (utime+stime of the weir process), Flink's job_cpu_ms
# (utime+stime of the JVM during the job's net runtime, sampled from /proc by flink_sql.py).
# A side that cannot run the query prints n/a and says why on stderr; so do Flink runs kept
# from before job_cpu_ms existed (REUSE_FLINK=1) for the per-core fields. A query Weir's
# planner refuses (checked with `weir run --explain` first) prints weir=refused and, at the
# end of its line, `refused: <the first line of Weir's message>`.
#
# Env:
#   EVENTS            Nexmark events (default 4000000: 3.68M bids, 80k persons, 240k auctions)
#   TUMBLING_EVENTS   events for tumbling/tumbling_gw (default 3000000, engine-core's file)
#   RUNS              runs per engine and query (default 1); the median events/s is reported
#   PARALLELISM       parallelism of both engines' jobs (default 1; bench/scaling.sh runs 1 and 2)
#   STATE_BACKEND     hashmap (default) or rocksdb: both engines keep keyed state in RocksDB
#                     and checkpoint it every CHECKPOINT_INTERVAL (default 10s), incrementally,
#                     to a fresh local file:// directory
#   NICE              niceness (default 10; 0 on a quiet machine)
#   SETTLE            seconds to wait before each timed run (default 5); runs alternate which
#                     engine goes first (odd runs Flink, even runs Weir)
#   WEIR_BIN          weir binary (default $CARGO_TARGET_DIR/release/weir, built if missing
#                     unless WEIR_BUILD=0)
#   REUSE_FLINK=1     report the Flink runs kept from an earlier run of the same query and
#                     size (bench/out/sql/flink-<query>-<N>.runs.jsonl) instead of rerunning
#   SKIP_FLINK=1 / SKIP_WEIR=1, FLINK_JVM_ARGS, BENCH_DATA_DIR, WEIR_CACHE, CARGO_TARGET_DIR
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
export WEIR_CACHE="${WEIR_CACHE:-$HOME/.cache/weir}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$WEIR_CACHE/target}"
EVENTS="${EVENTS:-4000000}"
TUMBLING_EVENTS="${TUMBLING_EVENTS:-3000000}"
RUNS="${RUNS:-1}"
PARALLELISM="${PARALLELISM:-1}"
STATE_BACKEND="${STATE_BACKEND:-hashmap}"
CHECKPOINT_INTERVAL="${CHECKPOINT_INTERVAL:-10s}"
SETTLE="${SETTLE:-5}"
NICE="${NICE:-10}"
RUN=(nice -n "$NICE")
DATA_DIR="${BENCH_DATA_DIR:-$HERE/out}"
OUT_DIR="$HERE/out/sql"
VERIFY=0
QUERIES=()
for a in "$@"; do
    case "$a" in
        --verify) VERIFY=1 ;;
        -h|--help) sed -n '2,38p' "$0"; exit 0 ;;
        *) QUERIES+=("$a") ;;
    esac
done
[ "${#QUERIES[@]}" -gt 0 ] || QUERIES=(tumbling tumbling_gw q0 q1 q2 q3 q4 q5 q6 q7 q8 q9 q10 q11 \
    q12 q13 q14 q15 q16 q17 q18 q19 q20 q21 q22)

log() { echo "[sql] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }
mkdir -p "$DATA_DIR" "$OUT_DIR"
log "$(date -u +%Y-%m-%dT%H:%M:%SZ) host=$(hostname) cores=$(nproc) nexmark_events=$EVENTS tumbling_events=$TUMBLING_EVENTS runs=$RUNS parallelism=$PARALLELISM state_backend=$STATE_BACKEND verify=$VERIFY"

# ---- setup ------------------------------------------------------------------------------
FLINK_VENV="$(bash "$HERE/setup.sh")" || die "setup failed"
PY="$FLINK_VENV/bin/python"

WEIR_STATUS=""
if [ "${SKIP_WEIR:-0}" = 1 ]; then
    WEIR_STATUS="skipped (SKIP_WEIR=1)"
else
    WEIR_BIN="${WEIR_BIN:-$CARGO_TARGET_DIR/release/weir}"
    if ! [ -x "$WEIR_BIN" ] && [ "${WEIR_BUILD:-1}" != 0 ]; then
        log "building weir: cargo build --release -p weir (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
        (cd "$REPO" && "${RUN[@]}" cargo build --release -p weir) >"$OUT_DIR/weir-build.log" 2>&1 \
            || { tail -5 "$OUT_DIR/weir-build.log" >&2; WEIR_STATUS="build failed"; }
    fi
    [ -n "$WEIR_STATUS" ] || [ -x "$WEIR_BIN" ] || WEIR_STATUS="no weir binary at $WEIR_BIN"
    [ -n "$WEIR_STATUS" ] || log "weir binary: $WEIR_BIN (modified $(date -u -r "$WEIR_BIN" +%Y-%m-%dT%H:%M:%SZ))"
fi
[ -z "$WEIR_STATUS" ] || log "weir: $WEIR_STATUS"

# ---- data -------------------------------------------------------------------------------
need_nexmark=0; need_events=0
for q in "${QUERIES[@]}"; do
    [ -f "$HERE/sql/$q.sql" ] || die "no such query: bench/sql/$q.sql"
    case "$q" in tumbling*) need_events=1 ;; *) need_nexmark=1 ;; esac
done
NEXMARK_DIR="$DATA_DIR/nexmark-$EVENTS"
EVENTS_PATH="$DATA_DIR/events-$TUMBLING_EVENTS.jsonl"
if [ "$need_nexmark" = 1 ]; then
    "${RUN[@]}" python3 "$HERE/nexmark_gen.py" "$EVENTS" "$NEXMARK_DIR" || die "nexmark generation failed"
    # q13's side input (as the nexmark project's side_input_gen: keys 0..9999)
    [ -s "$NEXMARK_DIR/side_input.jsonl" ] || python3 -c '
import json, sys
with open(sys.argv[1], "w") as f:
    for i in range(10000):
        f.write(json.dumps({"key": i, "value": str(i)}) + "\n")' "$NEXMARK_DIR/side_input.jsonl"
fi
if [ "$need_events" = 1 ]; then
    "${RUN[@]}" python3 "$HERE/gen_events.py" "$TUMBLING_EVENTS" "$EVENTS_PATH" || die "event generation failed"
fi

# rows of the tables named on the query's "-- inputs:" line
input_events() {
    "$PY" - "$HERE/sql/$1.sql" "$NEXMARK_DIR/counts.json" "$TUMBLING_EVENTS" <<'PYEOF'
import json, sys
tables = []
for line in open(sys.argv[1]):
    if line.startswith("-- inputs:"):
        tables = line.split(":", 1)[1].split()
        break
total = 0
for t in tables:
    if t == "events":
        total += int(sys.argv[3])
    else:
        total += json.load(open(sys.argv[2]))[t]
print(total)
PYEOF
}

# the script both engines run: paths substituted; with --verify the blackhole sink becomes a
# filesystem/json sink writing to $3 (a query with its own filesystem sink, q10, writes to
# ${SINK_DIR}: $3, or bench/out/sql/sink-<query> when not verifying)
# shellcheck disable=SC2016  # the ${...} in its Python text are placeholders, not expansions
# an updating query's blackhole becomes (SINK_KIND) a filesystem sink in the debezium-json
# changelog format (Flink) or a print sink (Weir, whose filesystem sink is append-only)
script_for() {  # script_for QUERY OUT_SCRIPT [SINK_DIR [SINK_KIND: json|debezium-json|print]]
    local q="$1" out="$2" sink="${3:-}" kind="${4:-json}"
    {
        case "$q" in tumbling*) ;; *) cat "$HERE/sql/nexmark_ddl.sql"; echo ;; esac
        cat "$HERE/sql/$q.sql"
    } | NEXMARK_DIR="$NEXMARK_DIR" EVENTS_PATH="$EVENTS_PATH" SINK="$sink" KIND="$kind" \
        OWN_SINK="${sink:-$OUT_DIR/sink-$q}" "$PY" -c '
import os, re, sys
text = sys.stdin.read()
text = text.replace("${NEXMARK_DIR}", os.environ["NEXMARK_DIR"])
text = text.replace("${EVENTS_PATH}", os.environ["EVENTS_PATH"])
sink = os.environ["SINK"]
if "${SINK_DIR}" in text:
    text = text.replace("${SINK_DIR}", os.environ["OWN_SINK"])
    sink = ""
if sink:
    n = len(re.findall(r"\x27connector\x27\s*=\s*\x27blackhole\x27", text))
    if n != 1:
        sys.exit(f"expected one blackhole sink, found {n}")
    kind = os.environ["KIND"]
    to = (f"\x27connector\x27 = \x27filesystem\x27, \x27path\x27 = \x27{sink}\x27, \x27format\x27 = \x27{kind}\x27"
          if kind != "print" else "\x27connector\x27 = \x27print\x27")
    text = re.sub(r"\x27connector\x27\s*=\s*\x27blackhole\x27", to, text)
sys.stdout.write(text)' >"$out"
}

# wall, peak RSS and CPU of a command: "<wall_ms> <maxrss_kib> <exit> <cpu_ms>" in $1
measure() { "$PY" "$HERE/measure.py" "$@"; }

add_fields() {  # JSON RUN LOAD
    "$PY" -c 'import json,sys; d=json.loads(sys.argv[1]); d["run"]=int(sys.argv[2]); d["loadavg_1m"]=float(sys.argv[3]); print(json.dumps(d))' "$@"
}
pick_median() {
    "$PY" -c '
import json,sys
rows=[json.loads(l) for l in open(sys.argv[1]) if l.strip()]
rows.sort(key=lambda d: d.get("events_per_s") or 0)
if rows: print(json.dumps(rows[(len(rows)-1)//2]))' "$1"
}

# The state backend settings of one run (STATE_BACKEND=rocksdb), with a fresh checkpoint
# directory each: the same keys on both engines (Flink 2 still reads these 1.x names).
state_sets() {  # state_sets FLAG -> "FLAG key=value" words on stdout
    [ "$STATE_BACKEND" = rocksdb ] || return 0
    rm -rf "$OUT_DIR"/checkpoints.*  # the previous run's
    local ck; ck="$(mktemp -d "$OUT_DIR/checkpoints.XXXXXX")"
    printf '%s\n' "$1" state.backend.type=rocksdb "$1" "execution.checkpointing.interval=$CHECKPOINT_INTERVAL" \
        "$1" state.backend.incremental=true "$1" "state.checkpoints.dir=file://$ck"
}

run_flink() {  # run_flink QUERY SCRIPT EVENTS TAG -> JSON line on stdout, or nothing
    local q="$1" script="$2" events="$3" tag="$4" line=""
    [ "$tag" = verify ] || rm -rf "$OUT_DIR/sink-$q"  # q10's own sink, fresh for each run
    local sets; mapfile -t sets < <(state_sets --conf)
    if "${RUN[@]}" "$PY" "$HERE/flink_sql.py" "$script" --events "$events" --name "$q" \
        --parallelism "$PARALLELISM" "${sets[@]}" \
        >"$OUT_DIR/flink-$q.$tag.stdout" 2>"$OUT_DIR/flink-$q.$tag.log"; then
        line="$(grep '^{"engine": "flink"' "$OUT_DIR/flink-$q.$tag.stdout" | tail -1)"
    fi
    if [ -z "$line" ]; then
        log "$q: flink FAILED (log: $OUT_DIR/flink-$q.$tag.log):"
        grep -m3 -E 'Exception|Error' "$OUT_DIR/flink-$q.$tag.log" | cut -c1-400 >&2
    fi
    echo "$line"
}

run_weir() {  # run_weir QUERY SCRIPT EVENTS TAG -> JSON line on stdout, or nothing
    local q="$1" script="$2" events="$3" tag="$4"
    local summary="$OUT_DIR/weir-$q.$tag.summary.json" m="$OUT_DIR/weir-$q.$tag.measure"
    local wlog="$OUT_DIR/weir-$q.$tag.log"
    rm -f "$summary"
    [ "$tag" = verify ] || rm -rf "$OUT_DIR/sink-$q"
    local sets; mapfile -t sets < <(state_sets --set)
    if measure "$m" "${RUN[@]}" "$WEIR_BIN" run "$script" --parallelism "$PARALLELISM" --no-progress \
        "${sets[@]}" --summary-json "$summary" >"$wlog" 2>&1 && [ -s "$summary" ]; then
        "$PY" - "$summary" "$m" "$events" "$q" <<'PYEOF'
import json, sys
s = json.load(open(sys.argv[1]))
wall_ms, rss_kib, _, cpu_ms = (int(x) for x in open(sys.argv[2]).read().split())
events = int(sys.argv[3])
job_ms = s["elapsed_ms"]
print(json.dumps({
    "engine": "weir", "query": sys.argv[4], "events": events, "job_ms": job_ms,
    "wall_ms": wall_ms,
    "events_per_s": round(events / (job_ms / 1000.0)) if job_ms > 0 else None,
    "peak_rss_mib": round(rss_kib / 1024), "cpu_ms": cpu_ms,
    "records_in": s.get("records_in"), "records_out": s.get("records_out"),
}))
PYEOF
    else
        log "$q: weir cannot run it (log: $wlog):"
        grep -v '^\s*$' "$wlog" | tail -3 >&2
    fi
}

# The first line of Weir's refusal when its planner refuses SCRIPT (nothing when it plans it).
weir_refusal() {  # weir_refusal SCRIPT
    local out
    out="$("$WEIR_BIN" run "$1" --explain 2>&1 >/dev/null)" && return 0
    printf '%s\n' "$out" | grep -v '^\s*$' | head -1 | sed "s|^error: ||; s|^$1:|job.sql:|"
}

# ---- verify -----------------------------------------------------------------------------
if [ "$VERIFY" = 1 ]; then
    status=0
    for q in "${QUERIES[@]}"; do
        VDIR="$OUT_DIR/verify-$q"
        rm -rf "$VDIR"; mkdir -p "$VDIR"
        script_for "$q" "$VDIR/plain.sql" || die "$q: cannot build the script"
        events="$(input_events "$q")"
        updating=0
        if [ -z "$WEIR_STATUS" ]; then
            refusal="$(weir_refusal "$VDIR/plain.sql")"
            [ -z "$refusal" ] || { echo "$q verify=n/a weir=refused refused: $refusal"; status=1; continue; }
            # an updating result (compared as its final table: compare_rows.py --changelog)
            # (captured first: `grep -q` closing the pipe early fails it under pipefail)
            plan="$("$WEIR_BIN" run "$VDIR/plain.sql" --explain 2>/dev/null)"
            grep -qE '^ *(GroupAggregate|Rank|Deduplicate)\(' <<<"$plan" && updating=1
        fi
        if [ "$updating" = 1 ]; then
            script_for "$q" "$VDIR/flink.sql" "$VDIR/flink-out" debezium-json || die "$q: cannot build the script"
            script_for "$q" "$VDIR/weir.sql" "$VDIR/weir-out" print || die "$q: cannot build the script"
        else
            script_for "$q" "$VDIR/flink.sql" "$VDIR/flink-out" || die "$q: cannot build the script"
            script_for "$q" "$VDIR/weir.sql" "$VDIR/weir-out" || die "$q: cannot build the script"
        fi
        [ "${SKIP_FLINK:-0}" = 1 ] || [ -n "$(run_flink "$q" "$VDIR/flink.sql" "$events" verify)" ] \
            || { echo "$q verify=n/a (flink failed)"; status=1; continue; }
        if [ -n "$WEIR_STATUS" ] || [ -z "$(run_weir "$q" "$VDIR/weir.sql" "$events" verify)" ]; then
            echo "$q verify=n/a (weir cannot run it)"; status=1; continue
        fi
        if [ "$updating" = 1 ]; then
            "$PY" "$HERE/compare_rows.py" --changelog "$OUT_DIR/weir-$q.verify.log" "$VDIR/flink-out" \
                --label "$q" || status=1
        else
            "$PY" "$HERE/compare_rows.py" "$VDIR/weir-out" "$VDIR/flink-out" --label "$q" || status=1
        fi
    done
    exit "$status"
fi

# ---- bench ------------------------------------------------------------------------------
SUMMARY_LINES=()
for q in "${QUERIES[@]}"; do
    SCRIPT="$OUT_DIR/$q.sql"
    script_for "$q" "$SCRIPT" || die "$q: cannot build the script"
    events="$(input_events "$q")"
    # runs at parallelism 1 keep their old names (REUSE_FLINK finds them)
    n="$EVENTS"; case "$q" in tumbling*) n="$TUMBLING_EVENTS" ;; esac
    [ "$PARALLELISM" = 1 ] || n="$n-p$PARALLELISM"
    [ "$STATE_BACKEND" = hashmap ] || n="$n-$STATE_BACKEND"
    FR="$OUT_DIR/flink-$q-$n.runs.jsonl"; WR="$OUT_DIR/weir-$q-$n.runs.jsonl"
    reuse_flink=0
    if [ "${REUSE_FLINK:-0}" = 1 ] && [ -s "$FR" ]; then
        reuse_flink=1
        log "$q: REUSE_FLINK=1: Flink runs from $FR ($(wc -l <"$FR") runs) are reused, not rerun"
    else
        rm -f "$FR"
    fi
    rm -f "$WR"
    log "$q: $events input records ($SCRIPT)"
    weir_ok=1; refusal=""
    if [ -z "$WEIR_STATUS" ]; then
        refusal="$(weir_refusal "$SCRIPT")"
        [ -z "$refusal" ] || { weir_ok=0; log "$q: weir refuses it: $refusal"; }
    fi
    for i in $(seq 1 "$RUNS"); do
        # Odd runs start with Flink, even runs with Weir, so neither engine always runs right
        # after the other (a Flink run keeps both cores busy for 10-20 s; the next process on
        # this kind of machine can run markedly slower). Each run starts after SETTLE seconds.
        if [ $((i % 2)) = 1 ]; then order=(flink weir); else order=(weir flink); fi
        for engine in "${order[@]}"; do
            if [ "$engine" = flink ] && [ "${SKIP_FLINK:-0}" != 1 ] && [ "$reuse_flink" = 0 ]; then
                sleep "$SETTLE"
                load="$(cut -d' ' -f1 /proc/loadavg)"
                line="$(run_flink "$q" "$SCRIPT" "$events" "p$PARALLELISM.run$i")"
                [ -z "$line" ] || { line="$(add_fields "$line" "$i" "$load")"; echo "$line" >>"$FR"; log "$line"; }
            fi
            if [ "$engine" = weir ] && [ -z "$WEIR_STATUS" ] && [ "$weir_ok" = 1 ]; then
                sleep "$SETTLE"
                load="$(cut -d' ' -f1 /proc/loadavg)"
                line="$(run_weir "$q" "$SCRIPT" "$events" "p$PARALLELISM.run$i")"
                if [ -z "$line" ]; then
                    weir_ok=0
                else
                    line="$(add_fields "$line" "$i" "$load")"; echo "$line" >>"$WR"; log "$line"
                    "$PY" -c 'import json,sys; d=json.loads(sys.argv[1]); sys.exit(0 if d["records_in"]==d["events"] else 1)' "$line" \
                        || log "$q: WARNING: weir records_in differs from the input records ($events): $line"
                fi
            fi
        done
    done
    F="$([ -s "$FR" ] && pick_median "$FR")"; W="$([ -s "$WR" ] && pick_median "$WR")"
    SUMMARY_LINES+=("$("$PY" -c '
import json, sys
f = json.loads(sys.argv[2]) if sys.argv[2] else {}
w = json.loads(sys.argv[3]) if sys.argv[3] else {}
fe, we = f.get("events_per_s"), w.get("events_per_s")
v = lambda x: "n/a" if x is None else str(x)
ratio = f"{we / fe:.2f}" if fe and we else "n/a"
def per_core(d, cpu_field):
    cpu = d.get(cpu_field)
    return round(d["events"] / (cpu / 1000.0)) if cpu and d.get("events") else None
fc, wc = per_core(f, "job_cpu_ms"), per_core(w, "cpu_ms")
core_ratio = f"{wc / fc:.2f}" if fc and wc else "n/a"
refusal = sys.argv[4]
wv = "refused" if refusal else v(we)
print(f"{sys.argv[1]} weir={wv} flink={v(fe)} ratio={ratio}"
      f" weir_per_core={v(wc)} flink_per_core={v(fc)} per_core_ratio={core_ratio}"
      + (f" refused: {refusal}" if refusal else ""))
' "$q" "$F" "$W" "$refusal")")
done
printf '%s\n' "${SUMMARY_LINES[@]}"
