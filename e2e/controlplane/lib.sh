# Shared settings for the local control plane scripts. Sourced, not executed.
# shellcheck shell=bash disable=SC2034

# Everything lives outside the repository.
WEIR_CACHE="${WEIR_CACHE:-$HOME/.cache/weir}"
K8S_CACHE="$WEIR_CACHE/k8s"
K8S_BIN="$K8S_CACHE/bin"
# Runtime state (etcd data, certs, logs, kubeconfig) of a running control plane.
K8S_STATE="${WEIR_K8S_STATE:-$K8S_CACHE/state}"

# What install.sh builds. Changing any of these invalidates the cached binaries.
K8S_SRC_PKG=kubernetes
K8S_SRC_VERSION="1.20.5+really1.20.2-1.1+deb12u1" # Debian bookworm, upstream 1.20.2
GO_DEB_VERSION="1.15.15-1~deb11u4"                # Debian bullseye golang-1.15
K8S_RECIPE=1                                      # bump when the build recipe changes
K8S_STAMP="k8s=$K8S_SRC_VERSION go=$GO_DEB_VERSION recipe=$K8S_RECIPE"
K8S_BINARIES=(kube-apiserver kube-controller-manager kube-scheduler)

# Ports (all bound to 127.0.0.1).
K8S_APISERVER_PORT="${WEIR_K8S_APISERVER_PORT:-6443}"
K8S_ETCD_PORT="${WEIR_K8S_ETCD_PORT:-23790}" # not 2379: a distro etcd may own it
K8S_ETCD_PEER_PORT="${WEIR_K8S_ETCD_PEER_PORT:-23800}"
K8S_KCM_PORT="${WEIR_K8S_KCM_PORT:-10257}"
K8S_SCHED_PORT="${WEIR_K8S_SCHED_PORT:-10259}"

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf '[%s] ERROR: %s\n' "$(date +%H:%M:%S)" "$*" >&2; exit 1; }

# The packages of the arguments that dpkg does not list as installed, one per line.
missing_apt_packages() {
  local p status
  for p in "$@"; do
    status="$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)"
    [[ "$status" == "install ok installed" ]] || printf '%s\n' "$p"
  done
}

# apt_install LOG package...: installs the missing ones (bookworm, the machine's own sources);
# runs `apt-get update` and retries once when the first attempt fails.
apt_install() {
  local logfile="$1" missing
  shift
  mapfile -t missing < <(missing_apt_packages "$@")
  ((${#missing[@]})) || return 0
  log "installing apt packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y --no-install-recommends "${missing[@]}" >"$logfile" 2>&1; then
    log "apt-get install failed; running apt-get update and retrying"
    apt-get update >>"$logfile" 2>&1
    apt-get install -y --no-install-recommends "${missing[@]}" >>"$logfile" 2>&1 ||
      { tail -20 "$logfile" >&2; die "apt-get install ${missing[*]} failed"; }
  fi
}

# alive PID: the process exists and is not a zombie waiting to be reaped.
alive() {
  local state
  state="$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null)" || return 1
  [[ -n "$state" && "$state" != Z ]]
}

# Step timing for the e2e scripts, which set STEP=setup and TS=$(date +%s.%N) first:
# `step NAME` logs how long the previous step took and starts NAME.
now() { date +%s.%N; }
secs() { awk -v s="$1" -v e="$2" 'BEGIN { printf "%.1f", e - s }'; }
step() { # name
  local t
  t=$(now)
  [[ "$STEP" == setup ]] || log "ok   $STEP ($(secs "$TS" "$t")s)"
  STEP="$1"
  TS=$t
  log "step $STEP"
}

# wait_until TIMEOUT DESCRIPTION COMMAND...: runs COMMAND every WAIT_POLL seconds (default 1)
# until it succeeds; after TIMEOUT seconds calls the script's `fail` naming DESCRIPTION.
wait_until() {
  local timeout="$1" what="$2" deadline
  shift 2
  deadline=$(($(date +%s) + timeout))
  until "$@"; do
    (($(date +%s) < deadline)) || fail "timed out after ${timeout}s waiting for $what"
    sleep "${WAIT_POLL:-1}"
  done
}

# Processes the up/down scripts start and stop, each with its log in $LOGS and its pid file in
# $PIDS (set by the script, as is PROCS, the names `wait_for` watches, and `fail`).

# launch NAME COMMAND...: starts COMMAND in its own session (setsid: it outlives the script
# and its terminal), output to $LOGS/NAME.log, pid to $PIDS/NAME.pid.
launch() {
  local name="$1"
  shift
  setsid nohup "$@" >"$LOGS/$name.log" 2>&1 </dev/null &
  echo $! >"$PIDS/$name.pid"
}

# wait_for DESCRIPTION TIMEOUT COMMAND...: polls COMMAND (quietly) every 0.5 s; `fail`s when
# one of PROCS has exited meanwhile or after TIMEOUT seconds.
wait_for() {
  local what="$1" timeout="$2" deadline p
  shift 2
  deadline=$(($(date +%s) + timeout))
  until "$@" >/dev/null 2>&1; do
    for p in "${PROCS[@]}"; do
      [[ -f "$PIDS/$p.pid" ]] && ! alive "$(cat "$PIDS/$p.pid")" && fail "$p exited while waiting for $what"
    done
    (($(date +%s) < deadline)) || fail "timed out after ${timeout}s waiting for $what"
    sleep 0.5
  done
}

# stop_pid NAME PID: SIGTERM, then SIGKILL when it has not exited after $GRACE seconds.
stop_pid() {
  local deadline
  log "stopping $1 (pid $2)"
  kill -TERM "$2" 2>/dev/null || true
  deadline=$(($(date +%s) + GRACE))
  while alive "$2" && (($(date +%s) < deadline)); do sleep 0.2; done
  if alive "$2"; then
    log "$1 did not stop within ${GRACE}s; sending SIGKILL"
    kill -KILL "$2" 2>/dev/null || true
    while alive "$2"; do sleep 0.1; done
  fi
}

# openssl, quiet: its chatter goes to $LOGS/openssl.log.
openssl_q() { openssl "$@" 2>>"$LOGS/openssl.log" >/dev/null; }
