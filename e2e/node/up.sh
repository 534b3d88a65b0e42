#!/usr/bin/env bash
# Brings up a real Kubernetes node next to the local control plane (e2e/controlplane/up.sh must
# have run, with WEIR_K8S_ADVERTISE_ADDRESS=10.88.0.1 so that pods reach the apiserver):
#   - the pod network: bridge weir0 = 10.88.0.1/16, the node's address and the pods' gateway;
#   - containerd (own socket, root and state) with the CRI plugin: runc, cgroupfs (cgroup v1),
#     restrict_oom_score_adj (no CAP_SYS_RESOURCE here), CNI bridge + host-local + portmap;
#     the pause image imported;
#   - the kubelet, registered as Node weir-node with a client certificate from the control
#     plane's CA and serving a CA-signed certificate, so `kubectl logs/exec` work;
#   - kube-proxy in iptables mode, so ClusterIPs route;
#   - cluster DNS (dns.py) on 10.88.0.1:53 answering <svc>.<ns>.svc.cluster.local.
# State (configs, certificates, kubelet root, logs, pids) in ${WEIR_NODE_STATE:-~/.cache/weir/
# node/state}; containerd's images stay in node/containerd across runs. Idempotent: when the node
# is up and Ready it only says so. Run as root. Stop with e2e/node/down.sh.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
source "$HERE/lib.sh"

[[ "$(id -u)" == 0 ]] || die "e2e/node/up.sh needs root (containerd, network, iptables)"
[[ -f "$K8S_STATE/UP" && -f "$K8S_STATE/env" ]] ||
  die "control plane not up: run WEIR_K8S_ADVERTISE_ADDRESS=$NODE_IP e2e/controlplane/up.sh first"
[[ "$(cat "$K8S_STATE/advertise" 2>/dev/null)" == "$NODE_IP" ]] ||
  die "the control plane was started without WEIR_K8S_ADVERTISE_ADDRESS=$NODE_IP (pods could not reach the apiserver): restart it with that variable"
# shellcheck disable=SC1091
source "$K8S_STATE/env"
"$HERE/install.sh" >&2

PKI="$K8S_STATE/pki"
LOGS="$NODE_STATE/logs"
PIDS="$NODE_STATE/pids"
KC=(kubectl --kubeconfig "$KUBECONFIG" --request-timeout=10s)
PROCS=(containerd kubelet kube-proxy cluster-dns)
READY_TIMEOUT="${WEIR_NODE_READY_TIMEOUT:-120}"

proc_alive() { # name
  local pid
  [[ -f "$PIDS/$1.pid" ]] || return 1
  pid="$(cat "$PIDS/$1.pid")"
  [[ -n "$pid" ]] && alive "$pid"
}
node_ready() {
  [[ "$("${KC[@]}" get node "$NODE_NAME" \
    -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" == True ]]
}

if [[ -f "$NODE_STATE/UP" ]]; then
  all=1
  for p in "${PROCS[@]}"; do proc_alive "$p" || all=0; done
  if ((all)) && node_ready; then
    log "node $NODE_NAME already up"
    exit 0
  fi
  log "node state found but not up and Ready; tearing it down first"
fi
[[ -d "$NODE_STATE" ]] && "$HERE/down.sh" >&2

start=$(date +%s.%N)
mkdir -p "$LOGS" "$PIDS" "$NODE_STATE/pki" "$NODE_STATE/cni/net.d" "$NODE_STATE/cni/ipam" \
  "$NODE_STATE/kubelet" "$CONTAINERD_ROOT" "$CONTAINERD_STATE"
chmod 700 "$NODE_STATE"

fail() { # message
  local p
  log "ERROR: $1"
  for p in "${PROCS[@]}"; do
    [[ -f "$LOGS/$p.log" ]] || continue
    log "---- last lines of $LOGS/$p.log"
    tail -20 "$LOGS/$p.log" >&2
  done
  exit 1
}

# --- certificates, signed by the control plane's CA --------------------------------------------
sign() { # name subject ext-lines
  local key="$NODE_STATE/pki/$1.key"
  openssl_q genrsa -out "$key" 2048
  openssl_q req -new -key "$key" -subj "$2" -out "$NODE_STATE/pki/$1.csr"
  printf '%b' "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n$3" \
    >"$NODE_STATE/pki/$1.ext"
  openssl_q x509 -req -in "$NODE_STATE/pki/$1.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" \
    -CAserial "$NODE_STATE/pki/ca.srl" -CAcreateserial -days 3650 -sha256 \
    -extfile "$NODE_STATE/pki/$1.ext" -out "$NODE_STATE/pki/$1.crt"
  chmod 600 "$key"
}
# The Node authorizer knows a kubelet by this subject.
sign kubelet-client "/O=system:nodes/CN=system:node:$NODE_NAME" "extendedKeyUsage=clientAuth\n"
# The apiserver checks it against the node's InternalIP (--kubelet-certificate-authority).
sign kubelet-serving "/CN=$NODE_NAME" \
  "extendedKeyUsage=serverAuth\nsubjectAltName=IP:$NODE_IP,DNS:$NODE_NAME\n"
# Bound to the role system:node-proxier, which reads Services and Endpoints: enough for the DNS
# server too.
sign kube-proxy "/CN=system:kube-proxy" "extendedKeyUsage=clientAuth\n"

node_kubeconfig() { # file cert
  cat >"$1" <<KC
apiVersion: v1
kind: Config
clusters:
- name: weir-local
  cluster:
    server: $WEIR_K8S_API
    certificate-authority: $PKI/ca.crt
users:
- name: node
  user:
    client-certificate: $NODE_STATE/pki/$2.crt
    client-key: $NODE_STATE/pki/$2.key
contexts:
- name: weir-local
  context: {cluster: weir-local, user: node}
current-context: weir-local
KC
  chmod 600 "$1"
}
node_kubeconfig "$NODE_STATE/kubelet.kubeconfig" kubelet-client
node_kubeconfig "$NODE_STATE/kube-proxy.kubeconfig" kube-proxy

# --- pod network ---------------------------------------------------------------------------------
# The bridge exists before the first pod so that the kubelet, the apiserver's endpoint and the
# DNS server can use its address; the CNI bridge plugin adopts it.
echo 1 >/proc/sys/net/ipv4/ip_forward
if ! ip link show "$NODE_BRIDGE" >/dev/null 2>&1; then
  ip link add "$NODE_BRIDGE" type bridge
fi
# A MAC address of its own, set explicitly: otherwise the bridge takes the lowest MAC of its
# ports, which changes as pods come and go, and running pods' cached neighbour entry for the
# gateway goes stale (connections from pods to the host, e.g. to S3 on 10.88.0.1, timed out
# for seconds after pods were replaced).
ip link set "$NODE_BRIDGE" address "$NODE_BRIDGE_MAC"
ip addr replace "$NODE_IP/${NODE_POD_CIDR#*/}" dev "$NODE_BRIDGE"
ip link set "$NODE_BRIDGE" up
# Pods talk to each other and to Services across the bridge; br_netfilter makes that traffic
# pass iptables so kube-proxy's DNAT applies.
modprobe br_netfilter 2>/dev/null || true
[[ "$(cat /proc/sys/net/bridge/bridge-nf-call-iptables 2>/dev/null)" == 1 ]] ||
  echo 1 >/proc/sys/net/bridge/bridge-nf-call-iptables ||
  die "net.bridge.bridge-nf-call-iptables is not 1 and cannot be set (br_netfilter missing): ClusterIPs would not route between pods"

cat >"$NODE_STATE/cni/net.d/10-weir.conflist" <<CNI
{
  "cniVersion": "0.4.0",
  "name": "weir-pods",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$NODE_BRIDGE",
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$NODE_STATE/cni/ipam",
        "ranges": [[{ "subnet": "$NODE_POD_CIDR", "gateway": "$NODE_IP" }]],
        "routes": [{ "dst": "0.0.0.0/0" }]
      }
    },
    { "type": "portmap", "capabilities": { "portMappings": true } }
  ]
}
CNI

# --- containerd ----------------------------------------------------------------------------------
cat >"$NODE_STATE/containerd.toml" <<TOML
version = 2
root = "$CONTAINERD_ROOT"
state = "$CONTAINERD_STATE"
# Our own daemon next to any system containerd: not its socket, not its oom_score_adj.
oom_score = 0
[grpc]
  address = "$CONTAINERD_SOCK"
[ttrpc]
  address = "$CONTAINERD_SOCK.ttrpc"
[debug]
  level = "warn"
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  # The kubelet asks for negative scores for Guaranteed pods; without CAP_SYS_RESOURCE runc
  # cannot set them, so containerd clamps them to its own.
  restrict_oom_score_adj = true
  # Not the host's /dev/shm size or hugepages: nothing here needs them.
  disable_hugetlb_controller = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$NODE_STATE/cni/net.d"
TOML
log "starting containerd ($CONTAINERD_SOCK)"
launch containerd containerd --config "$NODE_STATE/containerd.toml"
wait_for "containerd socket" 30 ctr_k8s version

import_image() { # tarball name
  if ! ctr_k8s images ls -q | grep -xF "$2" >/dev/null; then
    ctr_k8s images import "$1" >>"$LOGS/images.log" 2>&1 || fail "ctr images import $1 failed (see $LOGS/images.log)"
  fi
}
import_image "$NODE_IMAGES/pause.tar" "$PAUSE_IMAGE"

# --- kubelet -------------------------------------------------------------------------------------
# Eviction and image garbage collection thresholds are low: the machine's disk is shared with
# builds, and a node that evicts the suite's pods for a build's disk use would prove nothing.
cat >"$NODE_STATE/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
tlsCertFile: $NODE_STATE/pki/kubelet-serving.crt
tlsPrivateKeyFile: $NODE_STATE/pki/kubelet-serving.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: $PKI/ca.crt}
# Only clients with a certificate from the control plane's CA get here (the apiserver's
# kubelet client is system:masters).
authorization: {mode: AlwaysAllow}
cgroupDriver: cgroupfs
clusterDNS: [$NODE_IP]
clusterDomain: $CLUSTER_DOMAIN
resolvConf: /etc/resolv.conf
failSwapOn: false
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, nodefs.inodesFree: 1%, imagefs.available: 1%}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
# Container restarts and pod status show up within seconds (the suite waits on them).
nodeStatusUpdateFrequency: 10s
fileCheckFrequency: 20s
syncFrequency: 10s
YAML
log "starting kubelet (node $NODE_NAME at $NODE_IP)"
launch kubelet "$K8S_BIN/kubelet" \
  --config "$NODE_STATE/kubelet.yaml" \
  --kubeconfig "$NODE_STATE/kubelet.kubeconfig" \
  --container-runtime remote \
  --container-runtime-endpoint "unix://$CONTAINERD_SOCK" \
  --pod-infra-container-image "$PAUSE_IMAGE" \
  --hostname-override "$NODE_NAME" \
  --node-ip "$NODE_IP" \
  --root-dir "$NODE_STATE/kubelet" \
  --cert-dir "$NODE_STATE/pki" \
  --oom-score-adj 0 \
  --v 1

# --- kube-proxy ----------------------------------------------------------------------------------
cat >"$NODE_STATE/kube-proxy.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clusterCIDR: $NODE_POD_CIDR
hostnameOverride: $NODE_NAME
bindAddress: $NODE_IP
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
clientConnection: {kubeconfig: $NODE_STATE/kube-proxy.kubeconfig}
# Leave the host's conntrack sysctls alone (maxPerCore 0, timeouts 0 = unchanged).
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
oomScoreAdj: 0
YAML
log "starting kube-proxy (iptables mode)"
launch kube-proxy "$K8S_BIN/kube-proxy" --config "$NODE_STATE/kube-proxy.yaml" --v 1

# --- cluster DNS ---------------------------------------------------------------------------------
log "starting cluster DNS on $NODE_IP:53"
launch cluster-dns python3 "$HERE/dns.py" --listen "$NODE_IP:53" --api "$WEIR_K8S_API" \
  --ca "$PKI/ca.crt" --cert "$NODE_STATE/pki/kube-proxy.crt" --key "$NODE_STATE/pki/kube-proxy.key" \
  --domain "$CLUSTER_DOMAIN"

wait_for "Node $NODE_NAME Ready" "$READY_TIMEOUT" node_ready
wait_for "kube-proxy healthz" 60 curl -fsS --max-time 2 http://127.0.0.1:10256/healthz
wait_for "cluster DNS" 30 grep -q "serving $CLUSTER_DOMAIN" "$LOGS/cluster-dns.log"
for p in "${PROCS[@]}"; do proc_alive "$p" || fail "$p is not running"; done
touch "$NODE_STATE/UP"
elapsed=$(secs "$start" "$(now)")
log "node $NODE_NAME up in ${elapsed}s: pods on $NODE_POD_CIDR via $NODE_BRIDGE, DNS $NODE_IP; logs in $LOGS"
