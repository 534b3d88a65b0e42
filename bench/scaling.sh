#!/usr/bin/env bash
# Parallelism scaling: the same Nexmark queries at parallelism 1 and 2, on Weir and on Apache
# Flink 2.3, on the same data, in one run (bench/sql.sh does each measurement).
#
#   bash bench/scaling.sh                      # q0 q1 q5 q7, 4M events, 1 run per engine and p
#   RUNS=3 NICE=0 bash bench/scaling.sh q5     # median of 3 runs, on a quiet machine
#
# For each query, p=1 then p=2 (each through `PARALLELISM=<p> bench/sql.sh <query>`), then one
# line:
#   <query> weir_p1=<ev/s> weir_p2=<ev/s> weir_ratio=<p2/p1> flink_p1=<ev/s> flink_p2=<ev/s>
#     flink_ratio=<p2/p1> weir_cpu_p1=<events/CPU-s> weir_cpu_p2=<events/CPU-s>
#     flink_cpu_p1=<events/CPU-s> flink_cpu_p2=<events/CPU-s>
# (one line; events/s and events per CPU-second as bench/sql.sh defines them). On 2 cores a
# ratio near 2 means the second core is used; events per CPU-second falling from p1 to p2 is
# what the parallel plan costs on top (exchanges, more threads). The 1-minute load average
# is logged with every run (bench/out/sql/*-p<p>.runs.jsonl): other processes take cores away
# from p=2 first, so quote figures taken at a low load.
#
# Env: as bench/sql.sh (EVENTS, RUNS, NICE, SETTLE, WEIR_BIN, SKIP_FLINK, ...).
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
QUERIES=("$@")
[ "${#QUERIES[@]}" -gt 0 ] || QUERIES=(q0 q1 q5 q7)

# the "<query> weir=.. flink=.. ..." line of bench/sql.sh at parallelism $1 for query $2
measure_at() {
    PARALLELISM="$1" bash "$HERE/sql.sh" "$2" | grep "^$2 weir=" | tail -1
}

LINES=()
for q in "${QUERIES[@]}"; do
    p1="$(measure_at 1 "$q")"
    p2="$(measure_at 2 "$q")"
    LINES+=("$(python3 - "$q" "$p1" "$p2" <<'PYEOF'
import sys
q, p1, p2 = sys.argv[1], sys.argv[2], sys.argv[3]
def fields(line):
    return dict(kv.split("=", 1) for kv in line.split()[1:] if "=" in kv)
a, b = fields(p1), fields(p2)
def num(d, k):
    try:
        return float(d[k])
    except (KeyError, ValueError):
        return None
def ratio(k):
    x, y = num(a, k), num(b, k)
    return f"{y / x:.2f}" if x and y else "n/a"
v = lambda d, k: d.get(k, "n/a")
print(f"{q} weir_p1={v(a, 'weir')} weir_p2={v(b, 'weir')} weir_ratio={ratio('weir')}"
      f" flink_p1={v(a, 'flink')} flink_p2={v(b, 'flink')} flink_ratio={ratio('flink')}"
      f" weir_cpu_p1={v(a, 'weir_per_core')} weir_cpu_p2={v(b, 'weir_per_core')}"
      f" flink_cpu_p1={v(a, 'flink_per_core')} flink_cpu_p2={v(b, 'flink_per_core')}")
PYEOF
)")
    echo "[scaling] ${LINES[-1]}" >&2
done
printf '%s\n' "${LINES[@]}"
