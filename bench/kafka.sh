#!/usr/bin/env bash
# Kafka throughput per CPU-second: Weir's Kafka -> one-second tumbling window -> Kafka job
# with exactly-once and at-least-once delivery (checkpoints every second, parallelism 1),
# next to the ceiling: plain librdkafka consuming the same records and producing each one,
# against the same broker (noida-db, the integration tests' broker, started by the example).
# A consume-only line shows plain librdkafka reading the records without writing them.
#
#   bash bench/kafka.sh                 # 1,000,000 records
#   RECORDS=200000 bash bench/kafka.sh  # fewer
#
# Builds worker/kafka/examples/kafka_bench.rs in release into $CARGO_TARGET_DIR (default
# $WEIR_CACHE/target-kafka-bench, its own, so it never disturbs another build):
#   cargo build --release --locked -p weir-kafka --features test-support --example kafka_bench
# CPU is the bench process's user + system time per phase; the broker's is not counted.
# Ends with a table and the line
#   kafka exactly_once/ceiling=<ratio> at_least_once/ceiling=<ratio>
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
cd "$HERE/.."
RECORDS="${RECORDS:-1000000}"
CACHE="${WEIR_CACHE:-$HOME/.cache/weir}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CACHE/target-kafka-bench}"
bash worker/kafka/install-noida-db.sh >/dev/null
cargo build --release --locked -q -p weir-kafka --features test-support --example kafka_bench
OUT=$(mktemp)
trap 'rm -f "$OUT"' EXIT
"$CARGO_TARGET_DIR/release/examples/kafka_bench" "$RECORDS" | tee "$OUT"
python3 - "$OUT" <<'PY'
import sys
rows = {}
for line in open(sys.argv[1]):
    f = dict(kv.split("=", 1) for kv in line.split())
    rows[f["mode"]] = f
print()
print(f"{'phase':<15}{'records':>10}{'wall s':>9}{'CPU s':>8}{'records/CPU-s':>15}{'of ceiling':>12}{'checkpoints':>13}")
ceiling = float(rows["ceiling"]["per_cpu_s"])
for mode in ["produce", "consume-only", "ceiling", "exactly-once", "at-least-once"]:
    r = rows[mode]
    share = "" if mode in ("produce", "consume-only") else f"{float(r['per_cpu_s']) / ceiling:.2f}"
    print(f"{mode:<15}{r['records']:>10}{r['wall_s']:>9}{r['cpu_s']:>8}{r['per_cpu_s']:>15}{share:>12}{r['checkpoints']:>13}")
eo = float(rows["exactly-once"]["per_cpu_s"]) / ceiling
alo = float(rows["at-least-once"]["per_cpu_s"]) / ceiling
print(f"kafka exactly_once/ceiling={eo:.2f} at_least_once/ceiling={alo:.2f}")
PY
