#!/usr/bin/env bash
# Cost of a non-windowed COUNT(DISTINCT ...) as its groups grow: the same GROUP BY over N and
# 2N generated rows (few keys, every value distinct), printing
#   distinct agg=<AGG> rows=<N> seconds=<s> us_per_row=<us>
# AGG=SUM or AVG (or MIN, MAX) measures that aggregate's DISTINCT instead of COUNT's.
# for each. Linear cost keeps us_per_row flat as N doubles (issue 19: 80 k rows took 51 s
# when every row copied its group's set of distinct values).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
cd "$HERE/.."
ROWS="${ROWS:-80000}"
BACKEND="${BACKEND:-hashmap}"
AGG="${AGG:-COUNT}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${WEIR_CACHE:-$HOME/.cache/weir}/target}"
cargo build --release --locked -p weir -q
WEIR="${WEIR_BIN:-$CARGO_TARGET_DIR/release/weir}"
DIR=$(mktemp -d); trap 'rm -rf "$DIR"' EXIT
for n in "$ROWS" $((ROWS * 2)); do
  cat >"$DIR/distinct.sql" <<SQL
CREATE TABLE t (k INT, v BIGINT) WITH ('connector' = 'datagen', 'number-of-rows' = '$n',
  'fields.k.min' = '0', 'fields.k.max' = '3', 'fields.v.kind' = 'sequence',
  'fields.v.start' = '1', 'fields.v.end' = '$n');
CREATE TABLE out (k INT, d BIGINT) WITH ('connector' = 'blackhole');
INSERT INTO out SELECT k, $AGG(DISTINCT v) FROM t GROUP BY k;
SQL
  start=$(date +%s.%N)
  "$WEIR" run "$DIR/distinct.sql" --no-progress --set "state.backend.type=$BACKEND" >/dev/null
  end=$(date +%s.%N)
  python3 -c "s=$end-$start; print(f'distinct agg=$AGG rows=$n seconds={s:.2f} us_per_row={s*1e6/$n:.1f}')"
done
