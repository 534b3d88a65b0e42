#!/usr/bin/env bash
# The e2e suite (e2e/run.sh) on the real node: the control plane advertising the node's address,
# the node (up.sh), the images built here from the Dockerfile and imported into its containerd
# (images.sh), s3s-fs listening on the node's address 10.88.0.1 (where pods reach the host) with
# the bucket `weir`, then the same numbered suite with E2E_TARGET=cluster on those images: the
# operator from the rendered chart (its read-only root filesystem included), JobManagers and
# TaskManagers as real containers, crashes through `kubectl exec`, the bucket read through a
# toolbox pod, the JobManager's REST API through the apiserver's pod proxy.
#
#   e2e/node/run.sh       # as root
#   WEIR_NODE_IMAGES=host e2e/node/run.sh   # images of the workspace's debug binaries
#                                           # (host-images.sh) instead of the Dockerfile's
#   WEIR_NODE_IMAGES=none e2e/node/run.sh   # the images already imported
#
# Everything is torn down afterwards (node, control plane, s3s-fs) unless WEIR_E2E_KEEP=1.
# Every WEIR_E2E_* variable of e2e/run.sh applies. Prints each phase's time.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
# shellcheck source=lib.sh
source "$HERE/lib.sh"
[[ "$(id -u)" == 0 ]] || die "e2e/node/run.sh needs root"

WORK="$(mktemp -d /tmp/weir-node-e2e.XXXXXX)"
S3_KEY=e2e-access-key
S3_SECRET=e2e-secret-key
S3_PID=""
t0=$(date +%s)
phase_start=$t0
phase() { # message: logs the time since the previous phase
  local t
  t=$(date +%s)
  log "$1 ($((t - phase_start))s)"
  phase_start=$t
}
cleanup() {
  local rc=$?
  if [[ "${WEIR_E2E_KEEP:-0}" == 1 ]]; then
    log "WEIR_E2E_KEEP=1: node, control plane and s3s-fs (pid ${S3_PID:-none}, $WORK/s3) left running"
  else
    [[ -z "$S3_PID" ]] || kill "$S3_PID" 2>/dev/null || true
    "$HERE/down.sh" >&2 || true
    "$HERE/../controlplane/down.sh" >&2 || true
    rm -rf "$WORK"
  fi
  log "e2e/node/run.sh: exit code $rc after $(($(date +%s) - t0))s"
  exit "$rc"
}
trap cleanup EXIT

KUBECONFIG="$(WEIR_K8S_ADVERTISE_ADDRESS="$NODE_IP" "$HERE/../controlplane/up.sh" | tail -1)"
export KUBECONFIG
phase "control plane up"
"$HERE/up.sh"
phase "node up"
case "${WEIR_NODE_IMAGES:-dockerfile}" in
dockerfile) "$HERE/images.sh" ;;
host) "$HERE/host-images.sh" ;;
none) ;;
*) die "WEIR_NODE_IMAGES=$WEIR_NODE_IMAGES: expected dockerfile, host or none" ;;
esac
phase "images ready: $NODE_WORKER_IMAGE, $NODE_OPERATOR_IMAGE"

bash "$ROOT/worker/storage/install-s3s-fs.sh" >&2
S3S_FS="${WEIR_S3S_FS:-$WEIR_CACHE/bin/s3s-fs}"
S3_PORT="$(python3 -c "import socket; s=socket.socket(); s.bind(('$NODE_IP',0)); print(s.getsockname()[1])")"
mkdir -p "$WORK/s3/weir"
setsid "$S3S_FS" --host "$NODE_IP" --port "$S3_PORT" --access-key "$S3_KEY" --secret-key "$S3_SECRET" \
  "$WORK/s3" >"$WORK/s3s-fs.log" 2>&1 </dev/null &
S3_PID=$!
for _ in $(seq 40); do (exec 3<>"/dev/tcp/$NODE_IP/$S3_PORT") 2>/dev/null && break; sleep 0.5; done
(exec 3<>"/dev/tcp/$NODE_IP/$S3_PORT") 2>/dev/null || { cat "$WORK/s3s-fs.log" >&2; die "s3s-fs did not listen on $NODE_IP:$S3_PORT"; }
phase "s3s-fs on http://$NODE_IP:$S3_PORT"

E2E_TARGET=cluster \
  WEIR_E2E_WORKER_IMAGE="$NODE_WORKER_IMAGE" \
  WEIR_E2E_OPERATOR_IMAGE="$NODE_OPERATOR_IMAGE" \
  WEIR_E2E_S3_ENDPOINT="http://$NODE_IP:$S3_PORT" \
  WEIR_E2E_S3_ACCESS_KEY="$S3_KEY" \
  WEIR_E2E_S3_SECRET_KEY="$S3_SECRET" \
  bash "$ROOT/e2e/run.sh"
phase "suite passed"
