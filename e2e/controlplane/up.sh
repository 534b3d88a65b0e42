#!/usr/bin/env bash
# Starts a local Kubernetes control plane: etcd, kube-apiserver, kube-controller-manager and
# kube-scheduler, all as local processes bound to 127.0.0.1. Binaries come from install.sh
# (run it first; up.sh runs it for you if the binaries are missing).
#
# State (etcd data, PKI, token file, logs, pid files, kubeconfig) lives in
#   ${WEIR_K8S_STATE:-${WEIR_CACHE:-$HOME/.cache/weir}/k8s/state}
# The last line printed on stdout is the kubeconfig path, so
#   export KUBECONFIG="$(e2e/controlplane/up.sh)"
# works. Idempotent: when the control plane is already up and healthy it only prints the path.
# A half-started or dead control plane is torn down (down.sh) and started afresh.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
source "$HERE/lib.sh"

STATE="$K8S_STATE"
KUBECONFIG_PATH="$STATE/kubeconfig"
PKI="$STATE/pki"
LOGS="$STATE/logs"
PIDS="$STATE/pids"
PROCS=(etcd kube-apiserver kube-controller-manager kube-scheduler)
READY_TIMEOUT="${WEIR_K8S_READY_TIMEOUT:-120}"
API="https://127.0.0.1:$K8S_APISERVER_PORT"
# WEIR_K8S_ADVERTISE_ADDRESS (e2e/node sets it to the pod bridge's address): the apiserver then
# listens on all addresses and publishes that one as the endpoint of Service default/kubernetes,
# so pods on a real node reach it at the Service's ClusterIP (kube-proxy) as on any cluster.
# Unset: loopback only, as the process-kubelet needs.
ADVERTISE="${WEIR_K8S_ADVERTISE_ADDRESS:-}"

proc_alive() { # name
  local pidfile="$PIDS/$1.pid" pid
  [[ -f "$pidfile" ]] || return 1
  pid="$(cat "$pidfile")"
  [[ -n "$pid" ]] && alive "$pid" || return 1
  # Guard against a recycled pid: the process must still be the binary we started.
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$1" || return 1
}

api_get() { # path
  curl -sS --max-time 5 --cacert "$PKI/ca.crt" -H "Authorization: Bearer $(cat "$STATE/admin.token")" "$API$1"
}

healthy() {
  local p
  for p in "${PROCS[@]}"; do proc_alive "$p" || return 1; done
  [[ "$(api_get /readyz 2>/dev/null)" == ok ]]
}

if [[ -d "$STATE" ]]; then
  if [[ -f "$STATE/UP" ]] && [[ "$(cat "$STATE/advertise" 2>/dev/null)" == "$ADVERTISE" ]] && healthy; then
    log "control plane already up ($API)"
    echo "$KUBECONFIG_PATH"
    exit 0
  fi
  log "control plane state found but not up and healthy (or with another advertise address); tearing it down first"
  "$HERE/down.sh" >&2
fi

# Binaries (no-op on a warm cache).
"$HERE/install.sh" >&2
for b in "${K8S_BINARIES[@]}"; do [[ -x "$K8S_BIN/$b" ]] || die "missing $K8S_BIN/$b"; done
command -v etcd >/dev/null || die "etcd not found (install.sh installs etcd-server)"
command -v kubectl >/dev/null || die "kubectl not found"

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for port in "$K8S_ETCD_PORT" "$K8S_ETCD_PEER_PORT" "$K8S_APISERVER_PORT" "$K8S_KCM_PORT" "$K8S_SCHED_PORT"; do
  port_free "$port" || die "port 127.0.0.1:$port is already in use (override with WEIR_K8S_*_PORT)"
done

start=$(date +%s.%N)
rm -rf "$STATE"
mkdir -p "$PKI" "$LOGS" "$PIDS" "$STATE/etcd" "$STATE/apiserver-certs" "$STATE/kcm-certs" "$STATE/scheduler-certs"
chmod 700 "$STATE" "$STATE/etcd"

# --- PKI -------------------------------------------------------------------------------------
# Our own CA and an apiserver serving certificate signed by it (X.509 v3, SANs, serverAuth).
# The same CA is the controller-manager's --root-ca-file, i.e. the ca.crt mounted into every
# service-account token, so kubectl, kube-rs (rustls) from the host and in-cluster clients all
# verify the server against one CA.
openssl_q genrsa -out "$PKI/ca.key" 2048
openssl_q req -x509 -new -key "$PKI/ca.key" -sha256 -days 3650 -subj "/CN=weir-local-ca" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -out "$PKI/ca.crt"
openssl_q genrsa -out "$PKI/apiserver.key" 2048
cat >"$PKI/apiserver.ext" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,IP:10.0.0.1${ADVERTISE:+,IP:$ADVERTISE},DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
EXT
openssl_q req -new -key "$PKI/apiserver.key" -subj "/CN=kube-apiserver" -out "$PKI/apiserver.csr"
openssl_q x509 -req -in "$PKI/apiserver.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
  -days 3650 -sha256 -extfile "$PKI/apiserver.ext" -out "$PKI/apiserver.crt"
# The apiserver's client certificate towards kubelets (`kubectl logs/exec` go through them); a
# real kubelet (e2e/node) trusts clients signed by this CA, and system:masters may do anything.
openssl_q genrsa -out "$PKI/apiserver-kubelet-client.key" 2048
openssl_q req -new -key "$PKI/apiserver-kubelet-client.key" -subj "/O=system:masters/CN=kube-apiserver-kubelet-client" \
  -out "$PKI/apiserver-kubelet-client.csr"
printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n' \
  >"$PKI/client.ext"
openssl_q x509 -req -in "$PKI/apiserver-kubelet-client.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
  -days 3650 -sha256 -extfile "$PKI/client.ext" -out "$PKI/apiserver-kubelet-client.crt"
# Service-account token signing key pair.
openssl_q genrsa -out "$PKI/sa.key" 2048
openssl_q rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub"
chmod 600 "$PKI"/*.key

# --- static tokens -----------------------------------------------------------------------------
newtoken() { openssl rand -hex 16; }
ADMIN_TOKEN="$(newtoken)"
KCM_TOKEN="$(newtoken)"
SCHED_TOKEN="$(newtoken)"
echo "$ADMIN_TOKEN" >"$STATE/admin.token"
# token,user,uid,"group1,group2"
cat >"$STATE/tokens.csv" <<CSV
$ADMIN_TOKEN,admin,admin,"system:masters"
$KCM_TOKEN,system:kube-controller-manager,system:kube-controller-manager
$SCHED_TOKEN,system:kube-scheduler,system:kube-scheduler
CSV
chmod 600 "$STATE/tokens.csv" "$STATE/admin.token"

write_kubeconfig() { # path user token
  local ca_data
  ca_data="$(base64 -w0 <"$PKI/ca.crt")"
  cat >"$1" <<KC
apiVersion: v1
kind: Config
clusters:
- name: weir-local
  cluster:
    server: $API
    certificate-authority-data: $ca_data
users:
- name: $2
  user:
    token: $3
contexts:
- name: weir-local
  context:
    cluster: weir-local
    user: $2
    namespace: default
current-context: weir-local
KC
  chmod 600 "$1"
}
write_kubeconfig "$STATE/kcm.kubeconfig" system:kube-controller-manager "$KCM_TOKEN"
write_kubeconfig "$STATE/scheduler.kubeconfig" system:kube-scheduler "$SCHED_TOKEN"

# --- processes ---------------------------------------------------------------------------------
fail() { # message
  local p
  log "ERROR: $1"
  for p in "${PROCS[@]}"; do
    [[ -f "$LOGS/$p.log" ]] || continue
    log "---- last lines of $LOGS/$p.log"
    tail -15 "$LOGS/$p.log" >&2
  done
  WEIR_K8S_KEEP_STATE=1 "$HERE/down.sh" >&2 || true
  log "processes stopped; logs kept in $LOGS (the next up.sh or down.sh removes them)"
  exit 1
}


ETCD_URL="http://127.0.0.1:$K8S_ETCD_PORT"
log "starting etcd on $ETCD_URL"
launch etcd etcd \
  --name weir-local \
  --data-dir "$STATE/etcd" \
  --listen-client-urls "$ETCD_URL" \
  --advertise-client-urls "$ETCD_URL" \
  --listen-peer-urls "http://127.0.0.1:$K8S_ETCD_PEER_PORT" \
  --initial-advertise-peer-urls "http://127.0.0.1:$K8S_ETCD_PEER_PORT" \
  --initial-cluster "weir-local=http://127.0.0.1:$K8S_ETCD_PEER_PORT" \
  --initial-cluster-state new \
  --listen-metrics-urls "" \
  --log-level warn
wait_for "etcd health" 30 curl -fsS --max-time 2 "$ETCD_URL/health"

# --endpoint-reconciler-type none (loopback only, without WEIR_K8S_ADVERTISE_ADDRESS): the
#   apiserver would otherwise publish its advertise address as the endpoint of Service
#   default/kubernetes, and 1.20 rejects a loopback address there ("may not be in the loopback
#   range"), logging an error every 10 s. In-cluster clients reach the apiserver through
#   KUBERNETES_SERVICE_HOST/PORT, which the process-kubelet sets to 127.0.0.1 and the secure
#   port (the certificate has 127.0.0.1 and the kubernetes.default.svc names as SANs).
# --cert-dir: only for the self-signed fallback pair, which --tls-cert-file leaves unused;
#   kept so that nothing is ever written outside the state directory.
log "starting kube-apiserver on $API"
if [[ -n "$ADVERTISE" ]]; then
  API_ADDRESSES=(--bind-address 0.0.0.0 --advertise-address "$ADVERTISE" --endpoint-reconciler-type lease)
else
  API_ADDRESSES=(--bind-address 127.0.0.1 --advertise-address 127.0.0.1 --endpoint-reconciler-type none)
fi
launch kube-apiserver "$K8S_BIN/kube-apiserver" \
  --etcd-servers "$ETCD_URL" \
  "${API_ADDRESSES[@]}" \
  --secure-port "$K8S_APISERVER_PORT" \
  --insecure-port 0 \
  --cert-dir "$STATE/apiserver-certs" \
  --tls-cert-file "$PKI/apiserver.crt" \
  --tls-private-key-file "$PKI/apiserver.key" \
  --client-ca-file "$PKI/ca.crt" \
  --token-auth-file "$STATE/tokens.csv" \
  --authorization-mode Node,RBAC \
  --service-account-issuer https://kubernetes.default.svc.cluster.local \
  --service-account-key-file "$PKI/sa.pub" \
  --service-account-signing-key-file "$PKI/sa.key" \
  --service-cluster-ip-range 10.0.0.0/24 \
  --kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" \
  --kubelet-client-key "$PKI/apiserver-kubelet-client.key" \
  --kubelet-certificate-authority "$PKI/ca.crt" \
  --kubelet-preferred-address-types InternalIP \
  --allow-privileged=true \
  --profiling=false \
  --v=1
wait_for "kube-apiserver /readyz" "$READY_TIMEOUT" bash -c "[[ \"\$(curl -sS --max-time 2 --cacert '$PKI/ca.crt' -H 'Authorization: Bearer $ADMIN_TOKEN' '$API/readyz')\" == ok ]]"

log "starting kube-controller-manager"
launch kube-controller-manager "$K8S_BIN/kube-controller-manager" \
  --kubeconfig "$STATE/kcm.kubeconfig" \
  --authentication-kubeconfig "$STATE/kcm.kubeconfig" \
  --authorization-kubeconfig "$STATE/kcm.kubeconfig" \
  --bind-address 127.0.0.1 \
  --secure-port "$K8S_KCM_PORT" \
  --port 0 \
  --cert-dir "$STATE/kcm-certs" \
  --root-ca-file "$PKI/ca.crt" \
  --service-account-private-key-file "$PKI/sa.key" \
  --use-service-account-credentials=true \
  --service-cluster-ip-range 10.0.0.0/24 \
  --leader-elect=false \
  --profiling=false \
  --v=1

log "starting kube-scheduler"
launch kube-scheduler "$K8S_BIN/kube-scheduler" \
  --kubeconfig "$STATE/scheduler.kubeconfig" \
  --authentication-kubeconfig "$STATE/scheduler.kubeconfig" \
  --authorization-kubeconfig "$STATE/scheduler.kubeconfig" \
  --bind-address 127.0.0.1 \
  --secure-port "$K8S_SCHED_PORT" \
  --port 0 \
  --cert-dir "$STATE/scheduler-certs" \
  --leader-elect=false \
  --profiling=false \
  --v=1

write_kubeconfig "$KUBECONFIG_PATH" admin "$ADMIN_TOKEN"
KC=(kubectl --kubeconfig "$KUBECONFIG_PATH" --request-timeout=5s)
wait_for "kubectl get ns default" 60 "${KC[@]}" get ns default
# The token controller (controller-manager) must have created the default ServiceAccount
# before any Pod can be admitted; waiting here also proves the controller-manager works.
wait_for "ServiceAccount default/default" 60 "${KC[@]}" -n default get serviceaccount default
for p in "${PROCS[@]}"; do proc_alive "$p" || fail "$p is not running"; done

# For scripts (and a process-kubelet): `source "$STATE/env"`.
cat >"$STATE/env" <<ENV
export KUBECONFIG=$KUBECONFIG_PATH
export WEIR_K8S_API=$API
export WEIR_K8S_API_HOST=127.0.0.1
export WEIR_K8S_API_PORT=$K8S_APISERVER_PORT
export WEIR_K8S_CA=$PKI/ca.crt
export WEIR_K8S_LOGS=$LOGS
ENV
echo "$ADVERTISE" >"$STATE/advertise"
touch "$STATE/UP"
elapsed=$(secs "$start" "$(now)")
log "control plane up in ${elapsed}s: $API; logs in $LOGS"
log "use: export KUBECONFIG=$KUBECONFIG_PATH"
echo "$KUBECONFIG_PATH"
