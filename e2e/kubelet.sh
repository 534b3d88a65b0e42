#!/usr/bin/env bash
# Starts or stops the process-kubelet (weir-kubelet) against the local control plane
# (e2e/controlplane/up.sh must have run). Idempotent.
#
#   e2e/kubelet.sh start [extra weir-kubelet flags...]   # builds it if missing, waits for Node Ready
#   e2e/kubelet.sh stop                                  # SIGTERM, waits, SIGKILL after a grace
#   e2e/kubelet.sh status
#
# Its pid and log live in the control plane state dir: state/pids/weir-kubelet.pid,
# state/logs/weir-kubelet.log; pod roots and container logs under state/kubelet/.
# Image mappings: WEIR_KUBELET_IMAGES="name=/path other=/path" (each becomes --image), plus
# any extra flags given to `start`. Node name: WEIR_KUBELET_NODE (default weir-node).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
# shellcheck source=controlplane/lib.sh
source "$HERE/controlplane/lib.sh"

STATE="$K8S_STATE"
PIDFILE="$STATE/pids/weir-kubelet.pid"
LOGFILE="$STATE/logs/weir-kubelet.log"
NODE="${WEIR_KUBELET_NODE:-weir-node}"
GRACE="${WEIR_KUBELET_STOP_GRACE:-40}"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN="${WEIR_KUBELET_BIN:-$TARGET/debug/weir-kubelet}"

running_pid() {
  local pid
  [[ -f "$PIDFILE" ]] || return 1
  pid="$(cat "$PIDFILE")"
  [[ -n "$pid" ]] && alive "$pid" || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -- weir-kubelet >/dev/null || return 1
  echo "$pid"
}

node_ready() {
  [[ "$(kubectl --kubeconfig "$STATE/kubeconfig" --request-timeout=5s get node "$NODE" \
    -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" == True ]]
}

start() {
  [[ -f "$STATE/env" ]] || die "control plane not up (no $STATE/env); run e2e/controlplane/up.sh first"
  # shellcheck disable=SC1091
  source "$STATE/env"
  if pid="$(running_pid)"; then
    log "weir-kubelet already running (pid $pid)"
  else
    if [[ ! -x "$BIN" ]]; then
      log "building weir-kubelet"
      (cd "$ROOT" && nice -n 10 cargo build -p weir-kubelet >&2)
    fi
    local flags=(--node-name "$NODE" --state-dir "$STATE/kubelet")
    local m
    for m in ${WEIR_KUBELET_IMAGES:-}; do flags+=(--image "$m"); done
    mkdir -p "$STATE/pids" "$STATE/logs"
    setsid nohup "$BIN" "${flags[@]}" "$@" >"$LOGFILE" 2>&1 </dev/null &
    echo $! >"$PIDFILE"
    log "weir-kubelet started (pid $!, log $LOGFILE)"
  fi
  local deadline=$(($(date +%s) + 60))
  until node_ready; do
    pid="$(running_pid)" || { tail -20 "$LOGFILE" >&2; die "weir-kubelet exited; log: $LOGFILE"; }
    (($(date +%s) < deadline)) || die "node $NODE not Ready after 60s; log: $LOGFILE"
    sleep 0.5
  done
  log "node $NODE is Ready"
}

stop() {
  local pid
  if ! pid="$(running_pid)"; then
    log "weir-kubelet not running"
    rm -f "$PIDFILE"
    return 0
  fi
  log "stopping weir-kubelet (pid $pid)"
  kill -TERM "$pid"
  local deadline=$(($(date +%s) + GRACE))
  while alive "$pid" && (($(date +%s) < deadline)); do sleep 0.2; done
  if alive "$pid"; then
    log "weir-kubelet did not stop within ${GRACE}s; SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$PIDFILE"
  log "weir-kubelet stopped"
}

case "${1:-}" in
  start) shift; start "$@" ;;
  stop) stop ;;
  status) if pid="$(running_pid)"; then echo "running (pid $pid)"; else echo "stopped"; exit 1; fi ;;
  *) die "usage: $0 start [weir-kubelet flags...] | stop | status" ;;
esac
