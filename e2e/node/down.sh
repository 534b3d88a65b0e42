#!/usr/bin/env bash
# Stops the real node started by up.sh and removes its state; containerd's images stay cached.
# Order: the kubelet stops every pod it runs (so the CNI plugin releases addresses and removes
# its iptables rules), then the kubelet, kube-proxy (and its iptables chains), the DNS server,
# any container left, containerd, the mounts under the state directory and the bridge.
# Works with the control plane already down (the pods are then killed through containerd).
# Idempotent.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
source "$HERE/lib.sh"

PIDS="$NODE_STATE/pids"
GRACE="${WEIR_NODE_STOP_GRACE:-20}"

if [[ ! -d "$NODE_STATE" ]]; then
  log "node already down (no state in $NODE_STATE)"
  exit 0
fi
[[ "$(id -u)" == 0 ]] || die "e2e/node/down.sh needs root"
start=$(date +%s.%N)

pid_of() { # name -> pid when it still runs
  local pid
  [[ -f "$PIDS/$1.pid" ]] || return 1
  pid="$(cat "$PIDS/$1.pid")"
  [[ -n "$pid" ]] && alive "$pid" || return 1
  echo "$pid"
}
stop() { # name
  local pid
  pid="$(pid_of "$1")" || return 0
  stop_pid "$1" "$pid"
}
running_tasks() { ctr_k8s tasks ls -q 2>/dev/null | grep -c . || true; }

# 1. Let the kubelet stop the pods: force-delete the node's pods (their controllers may make new
#    ones; the node is cordoned first so they stay Pending) and wait for the tasks to go.
if pid_of kubelet >/dev/null && pid_of containerd >/dev/null && [[ -f "$K8S_STATE/kubeconfig" ]]; then
  KC=(kubectl --kubeconfig "$K8S_STATE/kubeconfig" --request-timeout=10s)
  if "${KC[@]}" cordon "$NODE_NAME" >/dev/null 2>&1; then
    "${KC[@]}" delete pods --all-namespaces --field-selector "spec.nodeName=$NODE_NAME" \
      --grace-period=0 --force --wait=false >/dev/null 2>&1 || true
    deadline=$(($(date +%s) + GRACE))
    while (($(running_tasks) > 0)) && (($(date +%s) < deadline)); do sleep 0.5; done
    (($(running_tasks) == 0)) || log "$(running_tasks) containers still running after ${GRACE}s; killing them"
  fi
fi

stop kubelet
stop cluster-dns
stop kube-proxy
if [[ -x "$K8S_BIN/kube-proxy" ]]; then
  "$K8S_BIN/kube-proxy" --cleanup >/dev/null 2>&1 || true
fi

# 2. Whatever still runs (control plane gone, kubelet killed): kill and delete through containerd.
if pid_of containerd >/dev/null; then
  for task in $(ctr_k8s tasks ls -q 2>/dev/null); do
    ctr_k8s tasks kill -s SIGKILL "$task" >/dev/null 2>&1 || true
  done
  sleep 0.5
  for task in $(ctr_k8s tasks ls -q 2>/dev/null); do
    ctr_k8s tasks delete -f "$task" >/dev/null 2>&1 || true
  done
  for c in $(ctr_k8s containers ls -q 2>/dev/null); do
    ctr_k8s containers delete "$c" >/dev/null 2>&1 || true
  done
fi
stop containerd

# 3. Network leftovers of pods the CNI plugin did not tear down: their netns bind mounts, the
#    bridge plugin's masquerade chains (commented with our network's name) and the bridge.
for ns in /var/run/netns/cni-*; do
  [[ -e "$ns" ]] || continue
  # Only namespaces holding an address of our pod network (another CNI user's are not ours).
  if ip netns exec "${ns##*/}" ip -4 -o addr show 2>/dev/null | grep -qF " inet ${NODE_POD_CIDR%.*.*}."; then
    umount "$ns" 2>/dev/null || true
    rm -f "$ns"
  fi
done
if command -v iptables-save >/dev/null; then
  # iptables-save quotes the rule as a shell would read it, so each line is replayed with -D.
  iptables-save -t nat 2>/dev/null | grep -F -- '-A POSTROUTING' | grep -F 'name: \"weir-pods\"' |
    while read -r rule; do
      chain="${rule##* -j }"
      eval "iptables -t nat -D ${rule#-A }" 2>/dev/null || true
      iptables -t nat -F "$chain" 2>/dev/null || true
      iptables -t nat -X "$chain" 2>/dev/null || true
    done || true # no rule of ours: grep finds nothing
  # The kubelet's own chains (KUBE-MARK-*, KUBE-FIREWALL, canaries), which kube-proxy --cleanup
  # leaves: first the jumps to them from the built-in chains, then the chains.
  for table in nat filter mangle; do
    iptables-save -t "$table" 2>/dev/null | grep -E -- '^-A [A-Z]+ .*-j KUBE-' | grep -vE -- '^-A KUBE-' |
      while read -r rule; do eval "iptables -t $table -D ${rule#-A }" 2>/dev/null || true; done || true
    iptables-save -t "$table" 2>/dev/null | sed -n 's/^:\(KUBE-[^ ]*\) .*/\1/p' |
      while read -r chain; do iptables -t "$table" -F "$chain" 2>/dev/null || true; done || true
    iptables-save -t "$table" 2>/dev/null | sed -n 's/^:\(KUBE-[^ ]*\) .*/\1/p' |
      while read -r chain; do iptables -t "$table" -X "$chain" 2>/dev/null || true; done || true
  done
fi
ip link del "$NODE_BRIDGE" 2>/dev/null || true

# 4. Mounts the kubelet and containerd left (secret tmpfs, shm, rootfs overlays), deepest first.
for dir in "$NODE_STATE" "$CONTAINERD_STATE"; do
  awk -v d="$dir/" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r | while read -r m; do
    umount -l "$m" 2>/dev/null || true
  done
done
rm -rf "$NODE_STATE" "$CONTAINERD_STATE"
elapsed=$(secs "$start" "$(now)")
log "node $NODE_NAME down in ${elapsed}s"
