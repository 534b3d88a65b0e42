#!/usr/bin/env bash
# Stops the local control plane started by up.sh (only the processes whose pids it recorded)
# and removes its state directory. Idempotent: with nothing running it just says so.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
source "$HERE/lib.sh"

STATE="$K8S_STATE"
PIDS="$STATE/pids"
# Reverse start order: clients first, etcd last.
PROCS=(kube-scheduler kube-controller-manager kube-apiserver etcd)
GRACE="${WEIR_K8S_STOP_GRACE:-10}"

if [[ ! -d "$STATE" ]]; then
  log "control plane already down (no state in $STATE)"
  exit 0
fi

start=$(date +%s.%N)
pid_of() { # name -> pid if that process is still the one we started
  local pidfile="$PIDS/$1.pid" pid
  [[ -f "$pidfile" ]] || return 1
  pid="$(cat "$pidfile")"
  [[ -n "$pid" && -d "/proc/$pid" ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$1" || return 1
  echo "$pid"
}

for name in "${PROCS[@]}"; do
  pid="$(pid_of "$name")" || continue
  stop_pid "$name" "$pid"
done

if [[ "${WEIR_K8S_KEEP_STATE:-0}" == 1 ]]; then
  rm -f "$STATE/UP"
  log "state kept in $STATE (WEIR_K8S_KEEP_STATE=1)"
else
  rm -rf "$STATE"
fi
elapsed=$(secs "$start" "$(now)")
log "control plane down in ${elapsed}s"
