#!/usr/bin/env bash
# Idempotent setup for the engine-core benchmark.
#  - Python venv with apache-flink==2.3.0 in a cache OUTSIDE the repo
#  (peak RSS is measured without GNU time: /proc VmHWM for the Flink JVM,
#   getrusage(RUSAGE_CHILDREN) for weir; see bench/README.md)
# Env: WEIR_CACHE (default $HOME/.cache/weir), FLINK_VENV, PYTHON (default python3)
set -euo pipefail

FLINK_VERSION="2.3.0"
WEIR_CACHE="${WEIR_CACHE:-$HOME/.cache/weir}"
FLINK_VENV="${FLINK_VENV:-$WEIR_CACHE/flink-venv}"
PYTHON="${PYTHON:-python3}"

log() { echo "[setup] $*" >&2; }

# --- Java 17 -----------------------------------------------------------------
JAVA_BIN="${JAVA_BIN:-/usr/bin/java}"
if ! [ -x "$JAVA_BIN" ]; then
    JAVA_BIN="$(command -v java || true)"
fi
if [ -z "$JAVA_BIN" ]; then
    log "ERROR: no java found (Flink 2.3 needs Java 17+; expected /usr/bin/java)"
    exit 1
fi
java_ver="$("$JAVA_BIN" -version 2>&1 | head -1)"
log "java: $JAVA_BIN ($java_ver)"

# --- Flink venv ----------------------------------------------------------------
stamp="$FLINK_VENV/.apache-flink-$FLINK_VERSION.ok"
if [ -f "$stamp" ] && "$FLINK_VENV/bin/python" -c 'import pyflink' 2>/dev/null; then
    log "flink venv ready: $FLINK_VENV (apache-flink $FLINK_VERSION)"
else
    log "creating venv $FLINK_VENV and installing apache-flink==$FLINK_VERSION (takes a few minutes, ~1 GB)"
    mkdir -p "$(dirname "$FLINK_VENV")"
    "$PYTHON" -m venv "$FLINK_VENV"
    "$FLINK_VENV/bin/python" -m pip install -q --upgrade pip
    "$FLINK_VENV/bin/python" -m pip install -q "apache-flink==$FLINK_VERSION"
    "$FLINK_VENV/bin/python" -c 'import pyflink, os; print(os.path.dirname(pyflink.__file__))' >/dev/null
    touch "$stamp"
    log "flink venv installed: $FLINK_VENV"
fi
echo "$FLINK_VENV"
