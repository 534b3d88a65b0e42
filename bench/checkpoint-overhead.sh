#!/usr/bin/env bash
# Checkpointing overhead on the engine-core job: the same 3M-event tumbling-window run with
# no checkpointing and with a checkpoint every second, RUNS times each (median), ending with
#   checkpoint overhead=<percent>
# CHECKPOINT_DIR chooses where checkpoints go (default: a temp file:// directory); S3=1 starts
# a local S3-compatible server (s3s-fs, installed by worker/storage/install-s3s-fs.sh) and
# checkpoints to s3://weir/checkpoints on it.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
cd "$HERE/.."
EVENTS="${EVENTS:-3000000}"
RUNS="${RUNS:-3}"
INTERVAL="${INTERVAL:-1s}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${WEIR_CACHE:-$HOME/.cache/weir}/target}"
DATA_DIR="${BENCH_DATA_DIR:-$HERE/out}"
mkdir -p "$DATA_DIR"
DATA="$DATA_DIR/events-$EVENTS.jsonl"
[ -f "$DATA" ] || python3 "$HERE/gen_events.py" "$EVENTS" "$DATA"
cargo build --release --locked -p weir -q
WEIR="${WEIR_BIN:-$CARGO_TARGET_DIR/release/weir}"
CHK="${CHECKPOINT_DIR:-file://$(mktemp -d)}"
EXTRA=()
if [ "${S3:-0}" = 1 ]; then
  bash worker/storage/install-s3s-fs.sh >/dev/null
  S3S="${WEIR_S3S_FS:-${WEIR_CACHE:-$HOME/.cache/weir}/bin/s3s-fs}"
  ROOT=$(mktemp -d); mkdir -p "$ROOT/weir"
  PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  "$S3S" --host 127.0.0.1 --port "$PORT" --access-key bench --secret-key bench-secret "$ROOT" >/dev/null 2>&1 &
  S3PID=$!; trap 'kill $S3PID 2>/dev/null; rm -rf "$ROOT"' EXIT
  for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.1; done
  export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret
  CHK="s3://weir/checkpoints"
  EXTRA=(--set s3.endpoint="http://127.0.0.1:$PORT" --set s3.path-style-access=true --set s3.region=us-east-1)
fi

run() { # prints elapsed_ms of one run; extra args are passed to weir
  local out; out=$(mktemp)
  "$WEIR" run bench-tumbling --arg input="$DATA" -p 1 --no-progress --summary-json "$out" "$@" >/dev/null 2>&1
  python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["elapsed_ms"], d.get("checkpoints",{}).get("completed",0))' "$out"
  rm -f "$out"
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

base=(); with=(); completed=0
for i in $(seq "$RUNS"); do
  read -r ms _ < <(run); base+=("$ms")
  read -r ms n < <(run --set execution.checkpointing.interval="$INTERVAL" --set state.checkpoints.dir="$CHK" "${EXTRA[@]}"); with+=("$ms"); completed=$((completed + n))
done
b=$(printf '%s\n' "${base[@]}" | median)
w=$(printf '%s\n' "${with[@]}" | median)
echo "no checkpoints: ${base[*]} ms (median $b); checkpoint every $INTERVAL to $CHK: ${with[*]} ms (median $w), $completed checkpoints completed in $RUNS runs"
python3 -c "import sys; b,w=float(sys.argv[1]),float(sys.argv[2]); print(f'checkpoint overhead={100*(w-b)/b:.1f}%')" "$b" "$w"
