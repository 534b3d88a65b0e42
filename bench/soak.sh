#!/usr/bin/env bash
# The soak of issue 19: a keyed windowed job (parallelism 2, 2,000 events/s) with checkpoints
# every 200 ms in a real S3 server (s3s-fs) and its exactly-once output in the same bucket,
# savepoints over REST every 2 s, a task failure every 5-25 s, S3 unreachable (a proxy cutting
# its connections) for 0.2-3 s every 3-15 s, two busy REST clients and 100 never-speaking connections, for
# SOAK_SECS seconds (default 600). It fails unless the output equals a failure-free run's,
# every savepoint reported complete is in the bucket and the API kept answering; it prints
# one line with what was injected and what happened:
#   soak WEIR_TEST_SEED=<seed> WEIR_SOAK_SECS=<s>: <wall> s wall, ... restarts <n>; S3 outages <n>; ...
# CI runs the same test for 20 s (`cargo test --workspace --test rest soak`).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
cd "$HERE/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${WEIR_CACHE:-$HOME/.cache/weir}/target}"
REPORT=$(mktemp); trap 'rm -f "$REPORT"' EXIT
WEIR_SOAK_SECS="${SOAK_SECS:-600}" WEIR_SOAK_REPORT="$REPORT" \
  cargo test --workspace --locked --test rest a_soak_of -- --nocapture >/dev/null
cat "$REPORT"
