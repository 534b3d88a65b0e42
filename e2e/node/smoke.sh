#!/usr/bin/env bash
# Smoke test of the real node: brings up the control plane (advertising the node's address) and
# the node (up.sh), asserts in numbered steps what a real kubelet, containerd, CNI, kube-proxy
# and the cluster DNS give pods, and tears both down however it ends (WEIR_NODE_KEEP=1 leaves
# them running). Exits non-zero with a message naming the first failed step.
#   1. Node weir-node Ready without taints; an image built here (busybox, uid 65532) imported
#   2. a Deployment of it runs with a pod IP from the CNI bridge (10.88.0.0/16, not the node's)
#      and passes its httpGet readiness probe
#   3. `kubectl logs` shows its output; `kubectl exec` runs in it as uid 65532
#   4. a ClusterIP Service routes to it (kube-proxy): from the host, and from another pod by the
#      Service's short and full DNS names, which resolve to the ClusterIP
#      and the apiserver through Service kubernetes, and a server on the host through the node's
#      address (where the suite's S3 server and Kafka broker listen)
#   5. a container over its memory limit is OOM-killed by the kernel and restarted
#      (restartCount, lastState.terminated.reason OOMKilled)
# Run as root.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
source "$HERE/lib.sh"

NS=weir-node-smoke
IMAGE=weir-smoke:e2e
WORK="$(mktemp -d /tmp/weir-node-smoke.XXXXXX)"
KUBECONFIG_PATH="$K8S_STATE/kubeconfig"
k() { kubectl --kubeconfig "$KUBECONFIG_PATH" --request-timeout=20s "$@"; }
kn() { k -n "$NS" "$@"; }

STEP=setup
T0=$(date +%s.%N)
TS=$T0
fail() { die "step $STEP: $*"; }

on_exit() {
  local rc=$?
  if ((rc != 0)); then
    log "FAILED at step: $STEP"
    {
      echo "---- pods in $NS"
      kn get pods -o wide 2>&1 || true
      echo "---- events in $NS"
      kn get events --sort-by=.lastTimestamp 2>&1 | tail -30 || true
      echo "---- kubelet log"
      tail -30 "$NODE_STATE/logs/kubelet.log" 2>&1 || true
    } >&2
  fi
  if [[ "${WEIR_NODE_KEEP:-0}" == 1 ]]; then
    log "WEIR_NODE_KEEP=1: control plane and node left running (export KUBECONFIG=$KUBECONFIG_PATH)"
  else
    "$HERE/down.sh" >&2 || true
    "$HERE/../controlplane/down.sh" >&2 || true
  fi
  [[ -z "${HOST_HTTP_PID:-}" ]] || kill "$HOST_HTTP_PID" 2>/dev/null || true
  rm -rf "$WORK"
  exit "$rc"
}
trap on_exit EXIT

log "bringing up the control plane and the node"
WEIR_K8S_ADVERTISE_ADDRESS="$NODE_IP" "$HERE/../controlplane/up.sh" >/dev/null
"$HERE/up.sh"

# ---------------------------------------------------------------------------------------------
step "1 node Ready, image built and imported"
[[ "$(k get node "$NODE_NAME" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}')" == True ]] ||
  fail "node $NODE_NAME is not Ready"
taints="$(k get node "$NODE_NAME" -o 'jsonpath={.spec.taints}')"
[[ -z "$taints" ]] || fail "node $NODE_NAME has taints: $taints"
applets=(sh httpd wget ssl_client nslookup dd sleep cat echo hostname id mkdir)
links=()
for a in "${applets[@]}"; do links+=(--symlink "/bin/$a:busybox"); done
python3 "$HERE/image.py" "$WORK/smoke.tar" "$IMAGE" --user 65532:65532 --dir /tmp \
  --file /bin/busybox:/bin/busybox:0755 "${links[@]}" --cmd '["sh"]' >/dev/null
ctr_k8s images import "$WORK/smoke.tar" >/dev/null
ctr_k8s images ls -q | grep -xF "docker.io/library/$IMAGE" >/dev/null || fail "$IMAGE not in containerd after import"

k delete namespace "$NS" --ignore-not-found --wait=true >/dev/null # a kept run's leftovers

# ---------------------------------------------------------------------------------------------
step "2 a pod of the local image runs with a pod IP from the CNI bridge"
k create namespace "$NS" >/dev/null
kn apply -f - >/dev/null <<YAML
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: $IMAGE
        imagePullPolicy: Never
        command: [sh, -c, 'mkdir -p /tmp/www && hostname > /tmp/www/index.html && echo "web serving as \$(id -u)" && exec httpd -f -p 8080 -h /tmp/www']
        ports: [{name: http, containerPort: 8080}]
        readinessProbe: {httpGet: {path: /, port: http}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: http}]
YAML
kn rollout status deployment/web --timeout=120s >/dev/null || fail "Deployment web did not become available"
pod="$(kn get pods -l app=web -o 'jsonpath={.items[0].metadata.name}')"
pod_ip="$(kn get pod "$pod" -o 'jsonpath={.status.podIP}')"
k get pods -A -o wide >&2
[[ "$pod_ip" == "${NODE_POD_CIDR%.*.*}."* && "$pod_ip" != "$NODE_IP" ]] ||
  fail "pod $pod has IP '$pod_ip', expected one from the CNI bridge's $NODE_POD_CIDR"
body="$(curl -fsS --max-time 5 "http://$pod_ip:8080/")" || fail "nothing served at http://$pod_ip:8080/"
[[ "$body" == "$pod" ]] || fail "http://$pod_ip:8080/ served '$body', expected the pod name $pod"

# ---------------------------------------------------------------------------------------------
step "3 kubectl logs and kubectl exec"
logs="$(kn logs "$pod")" || fail "kubectl logs $pod failed"
[[ "$logs" == *"web serving as 65532"* ]] || fail "kubectl logs $pod printed '$logs', expected 'web serving as 65532'"
uid="$(kn exec "$pod" -- id -u)" || fail "kubectl exec $pod failed"
[[ "$uid" == 65532 ]] || fail "kubectl exec $pod -- id -u printed '$uid', expected 65532"
served="$(kn exec "$pod" -- cat /tmp/www/index.html)"
[[ "$served" == "$pod" ]] || fail "kubectl exec cat printed '$served', expected $pod"

# ---------------------------------------------------------------------------------------------
step "4 a ClusterIP Service routes to it, by address and by DNS name from another pod"
cluster_ip="$(kn get service web -o 'jsonpath={.spec.clusterIP}')"
mkdir -p "$WORK/host"
echo "served by the host" >"$WORK/host/index.html"
python3 -m http.server --bind "$NODE_IP" --directory "$WORK/host" 0 >"$WORK/host.log" 2>&1 &
HOST_HTTP_PID=$!
wait_until 10 "the host's HTTP server" grep -q "Serving HTTP" "$WORK/host.log"
host_port="$(sed -n 's/.*port \([0-9]*\).*/\1/p' "$WORK/host.log" | head -1)"
wait_until 30 "http://$cluster_ip/ from the host" \
  bash -c "[[ \"\$(curl -fsS --max-time 3 http://$cluster_ip/)\" == '$pod' ]]"
kn apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  restartPolicy: Never
  containers:
  - name: client
    image: $IMAGE
    imagePullPolicy: Never
    command:
    - sh
    - -c
    - |
      nslookup web.$NS.svc.$CLUSTER_DOMAIN
      echo "short: \$(wget -qO- http://web/)"
      echo "full: \$(wget -qO- http://web.$NS.svc.$CLUSTER_DOMAIN/)"
      echo "apiserver \$KUBERNETES_SERVICE_HOST: \$(wget -qO- --no-check-certificate https://\$KUBERNETES_SERVICE_HOST:\$KUBERNETES_SERVICE_PORT/readyz)"
      echo "host: \$(wget -qO- http://$NODE_IP:$host_port/)"
YAML
wait_until 90 "pod client to finish" \
  bash -c "[[ \"\$(kubectl --kubeconfig '$KUBECONFIG_PATH' -n $NS get pod client -o 'jsonpath={.status.phase}')\" =~ ^(Succeeded|Failed)\$ ]]"
out="$(kn logs client)"
phase="$(kn get pod client -o 'jsonpath={.status.phase}')"
[[ "$phase" == Succeeded ]] || fail "pod client ended $phase; its output: $out"
grep -q "Address: $cluster_ip" <<<"$out" ||
  fail "web.$NS.svc.$CLUSTER_DOMAIN did not resolve to the ClusterIP $cluster_ip; nslookup said: $out"
grep -qx "short: $pod" <<<"$out" || fail "http://web/ from pod client did not reach $pod: $out"
grep -qx "full: $pod" <<<"$out" || fail "http://web.$NS.svc.$CLUSTER_DOMAIN/ from pod client did not reach $pod: $out"
kubernetes_ip="$(k get service kubernetes -o 'jsonpath={.spec.clusterIP}')"
grep -qx "apiserver $kubernetes_ip: ok" <<<"$out" ||
  fail "pod client did not reach the apiserver at Service kubernetes ($kubernetes_ip:443): $out"
grep -qx "host: served by the host" <<<"$out" ||
  fail "pod client did not reach the host's server at http://$NODE_IP:$host_port/: $out"
kill "$HOST_HTTP_PID"
HOST_HTTP_PID=""

# ---------------------------------------------------------------------------------------------
step "5 a container over its memory limit is OOM-killed and restarted"
# Guaranteed QoS (requests = limits): the kubelet asks for a negative oom_score_adj, which
# containerd must clamp (restrict_oom_score_adj) for the container to start at all here. dd is
# the container's process and fills a 64 MiB buffer against a 32 MiB limit.
kn apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Pod
metadata: {name: hog}
spec:
  containers:
  - name: hog
    image: $IMAGE
    imagePullPolicy: Never
    command: [dd, if=/dev/zero, of=/dev/null, bs=64M, count=1]
    resources:
      requests: {cpu: 100m, memory: 32Mi}
      limits: {cpu: 100m, memory: 32Mi}
YAML
restarts() { kn get pod hog -o 'jsonpath={.status.containerStatuses[0].restartCount}' 2>/dev/null; }
wait_until 120 "pod hog to be restarted" bash -c "(( \$(kubectl --kubeconfig '$KUBECONFIG_PATH' -n $NS get pod hog -o 'jsonpath={.status.containerStatuses[0].restartCount}' 2>/dev/null || echo 0) >= 1 ))"
reason="$(kn get pod hog -o 'jsonpath={.status.containerStatuses[0].lastState.terminated.reason}')"
code="$(kn get pod hog -o 'jsonpath={.status.containerStatuses[0].lastState.terminated.exitCode}')"
qos="$(kn get pod hog -o 'jsonpath={.status.qosClass}')"
[[ "$qos" == Guaranteed ]] || fail "pod hog has QoS class $qos, expected Guaranteed"
[[ "$reason" == OOMKilled ]] || fail "pod hog's last termination: reason '$reason' exit code $code, expected OOMKilled"
log "hog restarted $(restarts) time(s), last terminated: $reason (exit code $code)"

step done
k delete namespace "$NS" --wait=false >/dev/null
log "node smoke test passed in $(secs "$T0" "$(now)")s"
