#!/usr/bin/env bash
# The numbered end-to-end suite: a StreamJob driven by the operator, checkpoints and
# savepoints on S3, output through the exactly-once file sink into the same bucket.
# Targets (E2E_TARGET):
#   local (default): the local Kubernetes control plane (e2e/controlplane) with the
#     process-kubelet (e2e/kubelet) and s3s-fs on this machine.
#   cluster (or kind): any cluster in KUBECONFIG with the images loaded and an S3-compatible
#     store (WEIR_E2E_S3_ENDPOINT); e2e/kind/run.sh sets everything up on kind and runs this.
#   node: e2e/node/run.sh: the real local node (containerd, kubelet) with the images built
#     here, then this script as the cluster target.
#
#   e2e/run.sh            # builds weir, weir-operator, weir-kubelet (debug), runs, tears down
#
# Each step prints its time. On failure it dumps the StreamJob (-o yaml), events, the operator,
# kubelet and worker logs, then tears everything down (WEIR_E2E_KEEP=1 keeps it all running).
# Variables: CARGO_TARGET_DIR, WEIR_E2E_WORK (scratch dir, default a fresh mktemp -d),
# WEIR_E2E_NO_BUILD=1 (use the binaries as built), WEIR_E2E_STEPS (e.g. "5 10": run only these
# of the steps 5-10, 15 and 16; 1-4 and 11-14 always run); for the cluster target also WEIR_E2E_WORKER_IMAGE, WEIR_E2E_OPERATOR_IMAGE, WEIR_E2E_S3_ENDPOINT,
# WEIR_E2E_S3_ACCESS_KEY, WEIR_E2E_S3_SECRET_KEY. See README.md.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
# shellcheck source=controlplane/lib.sh
source "$HERE/controlplane/lib.sh"

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN_DIR="$CARGO_TARGET_DIR/debug"
WORK="${WEIR_E2E_WORK:-$(mktemp -d /tmp/weir-e2e.XXXXXX)}"
[[ -n "${WEIR_E2E_WORK:-}" ]] || REMOVE_WORK=1 # a scratch dir of our own goes after a pass
mkdir -p "$WORK"
TARGET="${E2E_TARGET:-local}"
case "$TARGET" in
local | cluster) ;;
kind) TARGET=cluster ;;
# The real node (e2e/node/run.sh) sets it up, then runs this script as the cluster target.
node)
  [[ "${REMOVE_WORK:-0}" != 1 ]] || rmdir "$WORK"
  exec bash "$HERE/node/run.sh"
  ;;
*) die "E2E_TARGET=$TARGET: expected local, node, cluster or kind" ;;
esac
S3_ROOT="$WORK/s3"
BUCKET=weir
NS=e2e
OPNS=weir-system
JOB=clicks
# Every output goes to the bucket (pods share no volume), and is read back through the S3 API.
OUT="s3://$BUCKET/out"       # the exactly-once file sink's output
REF="s3://$BUCKET/reference" # the same job run with `weir run` (step 12)
# Where `weir_tool` finds a file this script writes (step 13's SQL script): here, or the
# toolbox pod's own /tmp.
if [[ "$TARGET" == local ]]; then TOOL_DIR="$WORK"; else TOOL_DIR=/tmp; fi
TOOLBOX=e2e-toolbox          # cluster: a pod of the worker image with the S3 secret
# Images: the process-kubelet maps them by name (registry and tag ignored); a cluster pulls them.
# The StreamJobs are examples/*.yaml as written, with what this environment supplies in place
# of the examples' own values (`example`, below).
WORKER_IMAGE="${WEIR_E2E_WORKER_IMAGE:-ghcr.io/weir/weir-worker:dev}"
OPERATOR_IMAGE="${WEIR_E2E_OPERATOR_IMAGE:-weir-operator:dev}"
[[ "${OPERATOR_IMAGE##*/}" == *:* ]] || die "WEIR_E2E_OPERATOR_IMAGE=$OPERATOR_IMAGE needs a tag (repository:tag)"
# The job (examples/datastream-job.yaml): user-metrics over generated clicks, throttled so it
# outlives the upgrade steps; step 11 lifts the throttle (a new StreamJob restoring from the
# deleted one's snapshot) so it finishes, and step 12 compares the committed output with a
# local `weir run` of the same arguments.
S3_KEY="${WEIR_E2E_S3_ACCESS_KEY:-e2e-access-key}"
S3_SECRET="${WEIR_E2E_S3_SECRET_KEY:-e2e-secret-key}"
S3_PID=""
KAFKA_PID=""
KAFKA="" # the broker of step 14 (local target only)

T0=$(date +%s.%N)
STEP=setup
TS=$T0
TIMES=()
step() { # name
  local t
  t=$(now)
  if [[ "$STEP" != setup ]]; then
    log "ok   step $STEP ($(secs "$TS" "$t")s)"
    TIMES+=("$(printf '%-70s %6ss' "$STEP" "$(secs "$TS" "$t")")")
  fi
  STEP="$1"
  TS=$t
  log "==== step $STEP"
}
fail() { die "step $STEP: $*"; }
want() { # step number: optional steps can be skipped with WEIR_E2E_STEPS
  [[ -z "${WEIR_E2E_STEPS:-}" ]] && return 0
  [[ " $WEIR_E2E_STEPS " == *" $1 "* ]]
}

k() { kubectl --request-timeout=20s "$@"; }
kn() { k -n "$NS" "$@"; }
sj() { kn get sj "$JOB" -o "jsonpath=$1" 2>/dev/null; }

wait_until_soft() { # timeout command...: like wait_until, but returns 1 instead of failing
  local deadline=$(($(date +%s) + $1))
  shift
  until "$@"; do
    (($(date +%s) < deadline)) || return 1
    sleep 1
  done
}

# ---- the target: what differs between the process-kubelet and a real cluster -----------------
# `weir` where the bucket is reachable: the workspace's binary here, or the toolbox pod's (the
# worker image) on a cluster.
weir_tool() {
  if [[ "$TARGET" == local ]]; then
    AWS_ACCESS_KEY_ID="$S3_KEY" AWS_SECRET_ACCESS_KEY="$S3_SECRET" "$BIN_DIR/weir" "$@"
  else
    kubectl -n "$NS" exec "$TOOLBOX" -c toolbox -- weir "$@"
  fi
}
# A shell command run where `weir_tool` runs (here, or in the toolbox pod).
tool_sh() {
  if [[ "$TARGET" == local ]]; then sh -c "$1"; else kubectl -n "$NS" exec -i "$TOOLBOX" -c toolbox -- sh -c "$1"; fi
}
# The bucket is read through the S3 API on both targets (weir objects: the engine's storage
# layer), never as files of the server's directory.
S3_SET=()
bucket_ls() { # prefix -> the URI of every object below s3://$BUCKET/prefix
  weir_tool objects ls "s3://$BUCKET/$1" "${S3_SET[@]}"
}
# Pipelines read to the end (`grep >/dev/null`, not `grep -q`): under pipefail, a grep that
# quits at its first match makes the writer fail with a broken pipe.
has_object() { # s3://bucket/key
  weir_tool objects ls "${1%/*}" "${S3_SET[@]}" | grep -xF "$1" >/dev/null
}
# fetch s3://BUCKET/PREFIX LOCAL_DIR: a copy here of every object below the prefix, through the
# S3 API (uploads in progress are not objects, so only committed part files arrive).
fetch() {
  local uri rel
  rm -rf "$2" && mkdir -p "$2"
  for uri in $(weir_tool objects ls "$1" "${S3_SET[@]}"); do
    rel="${uri#"$1"/}"
    mkdir -p "$2/$(dirname "$rel")"
    weir_tool objects cat "$uri" "${S3_SET[@]}" >"$2/$rel" || fail "reading $uri failed"
  done
}
savepoints_in_bucket() { # the savepoint directories that hold objects, as s3:// URIs, sorted
  bucket_ls savepoints/ | sed -n "s|^\(s3://$BUCKET/savepoints/[^/]*\)/.*|\1|p" | sort -u
}
# The JobManager's REST API: from here to the pod's own 127.0.0.x address under the
# process-kubelet; through the API server's pod proxy on a cluster (pod IPs are not routed).
jm_pod() { # jsonpath of the running JobManager pod's field, default its name
  kn get pods -l "weir.dev/job=$JOB,app.kubernetes.io/component=jobmanager" \
    --field-selector=status.phase=Running -o "jsonpath={.items[0].${1:-metadata.name}}"
}
rest() {
  if [[ "$TARGET" == local ]]; then
    curl -fsS --max-time 5 "http://$(jm_pod status.podIP):8081$1"
  else
    kubectl --request-timeout=5s get --raw "/api/v1/namespaces/$NS/pods/$(jm_pod):8081/proxy$1"
  fi
}
# main_process NAMESPACE SELECTOR CONTAINER BINARY: a handle for kill_main on the main process of
# the first selected pod's container. Local: the pid of the child of our weir-kubelet whose
# command line names the pod's root (state/kubelet/pods/<uid>/), only processes this suite's
# kubelet started. Cluster: pod and container; the images run the binary under tini (Dockerfile),
# so it is not the container's PID 1 and a SIGKILL from inside the container reaches it.
main_process() {
  local pod
  if [[ "$TARGET" == local ]]; then
    pod="$(k -n "$1" get pods -l "$2" -o 'jsonpath={.items[0].metadata.uid}')"
    container_pid "$pod" "$BIN_DIR/$4"
  else
    pod="$(k -n "$1" get pods -l "$2" -o 'jsonpath={.items[0].metadata.name}')"
    [[ -n "$pod" ]] && echo "$1/$pod/$3/$4"
  fi
}
container_pid() { # pod-uid binary
  local kubelet pid
  kubelet="$(cat "$K8S_STATE/pids/weir-kubelet.pid")"
  for pid in $(pgrep -P "$kubelet"); do
    if [[ "$(readlink "/proc/$pid/exe" 2>/dev/null)" == "$2" ]] &&
      tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep "^WEIR_PATH_PREFIX=.*/pods/$1/" >/dev/null; then
      echo "$pid"
      return 0
    fi
  done
  return 1
}
kill_main() { # handle from main_process: SIGKILL, as a crash
  if [[ "$TARGET" == local ]]; then
    kill -KILL "$1"
  else
    local ns pod container binary
    IFS=/ read -r ns pod container binary <<<"$1"
    # shellcheck disable=SC2016 # expanded by the container's shell
    kubectl -n "$ns" exec "$pod" -c "$container" -- sh -c '
      killed=""
      for d in /proc/[0-9]*; do
        p="${d#/proc/}"
        [ "$p" != 1 ] && [ "$p" != $$ ] && [ "$(cat "$d/comm" 2>/dev/null)" = "$1" ] || continue
        kill -KILL "$p" && killed="$killed $p"
      done
      [ -n "$killed" ] || { echo "no $1 process other than PID 1 in this container" >&2; exit 1; }
      echo "killed $1:$killed"' sh "$binary" >&2
  fi
}
# Cluster: the toolbox pod that reads the bucket and runs the reference jobs (after the
# namespace and the S3 Secret exist).
start_toolbox() {
  kn apply -f - >&2 <<YAML
apiVersion: v1
kind: Pod
metadata: {name: $TOOLBOX, namespace: $NS}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: toolbox
    image: $WORKER_IMAGE
    command: [/bin/sh, -c, "exec sleep infinity"]
    envFrom: [{secretRef: {name: s3-credentials}}]
YAML
  kn wait --for=condition=Ready "pod/$TOOLBOX" --timeout=180s >&2 || fail "toolbox pod $TOOLBOX not Ready"
}

# Events of both APIs (the operator writes events.k8s.io/v1, Kubernetes' controllers core/v1),
# oldest first: time, type, reason, object, count, message.
events_table() {
  kn get events.v1.events.k8s.io -o json 2>/dev/null | python3 -c '
import json, sys
rows = []
for e in json.load(sys.stdin)["items"]:
    series = e.get("series") or {}
    when = series.get("lastObservedTime") or e.get("eventTime") or e.get("deprecatedLastTimestamp") or ""
    obj = "%s/%s" % (e["regarding"].get("kind", ""), e["regarding"].get("name", ""))
    rows.append((when, e.get("type", ""), e.get("reason", ""), obj, series.get("count", e.get("deprecatedCount") or 1), e.get("note", "")))
for r in sorted(rows):
    print("%s %-7s %-22s %-45s x%-3s %s" % r)
'
}

# event_gap OBJECT FIRST THEN: seconds from OBJECT's first FIRST Event to its first THEN Event
# after it (events.k8s.io eventTime); fails when either is missing.
event_gap() {
  kn get events.v1.events.k8s.io -o json 2>/dev/null | python3 -c '
import datetime, json, sys
obj, first, then = sys.argv[1:]
def t(e):
    s = e.get("eventTime") or e.get("deprecatedFirstTimestamp") or ""
    return datetime.datetime.fromisoformat(s.replace("Z", "+00:00")) if s else None
es = [e for e in json.load(sys.stdin)["items"] if e["regarding"].get("name") == obj and t(e)]
a = sorted(t(e) for e in es if e.get("reason") == first)
if not a: sys.exit(1)
b = sorted(t(e) for e in es if e.get("reason") == then and t(e) >= a[0])
if not b: sys.exit(1)
print("%.1f" % (b[0] - a[0]).total_seconds())
' "$@"
}

# ---- teardown and failure dumps ---------------------------------------------------------------
dump() {
  {
    echo "==================== DIAGNOSTICS (failed at step: $STEP)"
    echo "---- kubectl get streamjob -o yaml"
    kn get sj -o yaml 2>&1 || true
    echo "---- pods, deployments"
    k get pods,deploy,svc,cm -A -o wide 2>&1 | grep -v kube-system || true
    echo "---- events in $NS (oldest first)"
    events_table | tail -60 || true
    echo "---- events in $OPNS"
    k -n "$OPNS" get events --sort-by=.lastTimestamp 2>&1 | tail -20 || true
    local f ns pod c
    if [[ "$TARGET" == local ]]; then
      for f in "$K8S_STATE"/kubelet/logs/*.log; do
        [[ -f "$f" ]] || continue
        echo "---- $(basename "$f") (last 60 lines)"
        tail -60 "$f"
      done
      echo "---- weir-kubelet log (last 40 lines)"
      tail -40 "$K8S_STATE/logs/weir-kubelet.log" 2>/dev/null || true
      echo "---- s3s-fs log (last 20 lines)"
      tail -20 "$WORK/s3s-fs.log" 2>/dev/null || true
    else
      for ns in "$OPNS" "$NS"; do
        for pod in $(k -n "$ns" get pods -o name 2>/dev/null); do
          for c in $(k -n "$ns" get "$pod" -o 'jsonpath={.spec.containers[*].name}' 2>/dev/null); do
            echo "---- $ns/${pod#pod/} $c (last 60 lines; then the previous container's last 30)"
            k -n "$ns" logs "$pod" -c "$c" --tail=60 2>&1 || true
            k -n "$ns" logs "$pod" -c "$c" --previous --tail=30 2>/dev/null || true
          done
        done
      done
    fi
    echo "---- bucket (objects, first 80)"
    bucket_ls "" 2>&1 | head -80 || true
  } >&2
}

teardown() {
  if [[ "${WEIR_E2E_KEEP:-0}" == 1 ]]; then
    log "WEIR_E2E_KEEP=1: leaving the control plane, kubelet and s3s-fs (pid ${S3_PID:-none}) or the cluster's namespace $NS running; work dir $WORK"
    return
  fi
  if [[ "$TARGET" == cluster ]]; then
    # The operator stays installed (a shared cluster may have had it before); kind/down.sh
    # deletes the whole kind cluster.
    k delete ns "$NS" --ignore-not-found --wait=true --timeout=180s >&2 || true
    return
  fi
  "$HERE/kubelet.sh" stop >&2 || true
  if [[ -n "$S3_PID" ]]; then kill "$S3_PID" 2>/dev/null || true; fi
  if [[ -n "$KAFKA_PID" ]]; then kill "$KAFKA_PID" 2>/dev/null || true; fi
  if [[ -n "${PRODUCER_PID:-}" ]]; then kill "$PRODUCER_PID" 2>/dev/null || true; fi
  "$HERE/controlplane/down.sh" >&2 || true
}

on_exit() {
  local rc=$?
  if ((rc != 0)); then
    log "FAILED at step: $STEP"
    dump
  fi
  teardown
  if ((rc == 0)); then
    log "step times:"
    printf '  %s\n' "${TIMES[@]}" >&2
    log "E2E PASSED in $(secs "$T0" "$(now)")s"
    if [[ "${REMOVE_WORK:-0}" == 1 && "${WEIR_E2E_KEEP:-0}" != 1 ]]; then rm -rf "$WORK"; fi
  else
    log "E2E FAILED at step $STEP after $(secs "$T0" "$(now)")s (work dir $WORK)"
  fi
  exit "$rc"
}
trap on_exit EXIT

# ---- environment -------------------------------------------------------------------------------
if [[ "$TARGET" == cluster ]]; then
step "0 environment: the cluster in KUBECONFIG, its S3 store, the Helm SDK"
[[ -n "${WEIR_E2E_S3_ENDPOINT:-}" ]] ||
  fail "E2E_TARGET=$TARGET needs WEIR_E2E_S3_ENDPOINT: the S3 endpoint as the pods reach it (bucket '$BUCKET' must exist)"
S3_ENDPOINT="$WEIR_E2E_S3_ENDPOINT"
k get ns default >/dev/null || fail "no cluster reachable with KUBECONFIG=${KUBECONFIG:-~/.kube/config}"
log "cluster $(kubectl config current-context 2>/dev/null || echo '?'), S3 $S3_ENDPOINT, images $WORKER_IMAGE $OPERATOR_IMAGE"
HELM_PY="$(bash "$ROOT/charts/install-helm-sdk.sh" | tail -1)"
else
step "0 environment: build, control plane, kubelet, s3s-fs"
if [[ "${WEIR_E2E_NO_BUILD:-0}" != 1 ]]; then
  # The binaries exactly as `cargo test --workspace` (make unit) builds them: a narrower
  # `cargo build -p …` resolves other dependency features and compiles Arrow and DataFusion
  # a second time (6 minutes on a cold cache).
  (cd "$ROOT" && nice -n 10 cargo test --locked --workspace --no-run >&2)
fi
for b in weir weir-operator weir-kubelet; do [[ -x "$BIN_DIR/$b" ]] || fail "missing $BIN_DIR/$b"; done
bash "$ROOT/worker/storage/install-s3s-fs.sh" >&2
S3S_FS="${WEIR_S3S_FS:-$WEIR_CACHE/bin/s3s-fs}"
HELM_PY="$(bash "$ROOT/charts/install-helm-sdk.sh" | tail -1)"

KUBECONFIG="$("$HERE/controlplane/up.sh")"
export KUBECONFIG
export WEIR_KUBELET_BIN="$BIN_DIR/weir-kubelet"
image_name() { local n="${1##*/}"; echo "${n%%[:@]*}"; } # as the kubelet maps images
WEIR_KUBELET_IMAGES="$(image_name "$WORKER_IMAGE")=$BIN_DIR/weir $(image_name "$OPERATOR_IMAGE")=$BIN_DIR/weir-operator" \
  "$HERE/kubelet.sh" start >&2

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
S3_PORT="$(free_port)"
mkdir -p "$S3_ROOT/$BUCKET"
setsid "$S3S_FS" --host 127.0.0.1 --port "$S3_PORT" --access-key "$S3_KEY" --secret-key "$S3_SECRET" \
  "$S3_ROOT" >"$WORK/s3s-fs.log" 2>&1 </dev/null &
S3_PID=$!
wait_until 20 "s3s-fs on 127.0.0.1:$S3_PORT" bash -c "(exec 3<>/dev/tcp/127.0.0.1/$S3_PORT) 2>/dev/null"
S3_ENDPOINT="http://127.0.0.1:$S3_PORT"
log "s3s-fs on $S3_ENDPOINT over $S3_ROOT (pid $S3_PID)"

# The Kafka-protocol broker of step 14 (noida-db, with transactions), on a port it picks.
bash "$ROOT/worker/kafka/install-noida-db.sh" >&2
NOIDA_DB="$WEIR_CACHE/noida-db-0.2.3/noida_db/noida-db"
rm -rf "$WORK/kafka/data" # topics of an earlier run in a reused work dir
mkdir -p "$WORK/kafka"
setsid "$NOIDA_DB" start --only kafka --host 127.0.0.1 --kafka-port 0 --data-dir "$WORK/kafka/data" \
  >"$WORK/kafka/broker.log" 2>&1 </dev/null &
KAFKA_PID=$!
kafka_port() { sed -n 's/^ *kafka *127\.0\.0\.1:\([0-9]*\).*/\1/p' "$WORK/kafka/broker.log" | head -1; }
kafka_listening() { [[ -n "$(kafka_port)" ]]; }
wait_until 20 "the Kafka broker to listen" kafka_listening
KAFKA="127.0.0.1:$(kafka_port)"
log "Kafka broker (noida-db) on $KAFKA (pid $KAFKA_PID)"
fi
S3_SET=(--set "s3.endpoint=$S3_ENDPOINT" --set s3.path-style-access=true --set s3.region=us-east-1)

# Leftovers of an earlier run that kept its control plane.
k delete ns "$NS" --ignore-not-found --wait=true --timeout=120s >/dev/null 2>&1 || true

# ---- 1 ------------------------------------------------------------------------------------------
step "1 CRDs and operator installed from the rendered Helm chart; operator pod Ready"
"$HELM_PY" "$ROOT/charts/check-chart.py" --output "$WORK/chart.yaml" --namespace "$OPNS" \
  --set "image.repository=${OPERATOR_IMAGE%:*}" --set "image.tag=${OPERATOR_IMAGE##*:}" \
  --set logLevel=info,weir_operator=debug >"$WORK/chart-check.log" 2>&1 ||
  { cat "$WORK/chart-check.log" >&2; fail "rendering the chart failed"; }
k create namespace "$OPNS" --dry-run=client -o yaml | k apply -f - >/dev/null
k apply -f "$WORK/chart.yaml" >&2 || fail "kubectl apply of the rendered chart failed"
k wait --for condition=established --timeout=60s crd/streamjobs.weir.dev crd/streamjobsnapshots.weir.dev >/dev/null ||
  fail "CRDs streamjobs.weir.dev and streamjobsnapshots.weir.dev not Established"
k -n "$OPNS" rollout status deploy/weir-weir-operator --timeout=120s >&2 ||
  fail "operator Deployment did not become Available"
op_ready() { [[ "$(k -n "$OPNS" get pods -l app.kubernetes.io/name=weir-operator -o 'jsonpath={.items[0].status.containerStatuses[0].ready}')" == true ]]; }
wait_until 60 "operator pod Ready" op_ready

# ---- 2 ------------------------------------------------------------------------------------------
step "2 StreamJob applied: user-metrics, exactly-once file sink, checkpoints and savepoints on S3"
k create namespace "$NS" >/dev/null
kn create secret generic s3-credentials --from-literal=AWS_ACCESS_KEY_ID="$S3_KEY" \
  --from-literal=AWS_SECRET_ACCESS_KEY="$S3_SECRET" >/dev/null
if [[ "$TARGET" == cluster ]]; then start_toolbox; fi
# The suite owns these prefixes of the bucket (a kept S3 store has earlier runs' objects).
for prefix in checkpoints savepoints out reference sql-out sql-ref; do
  weir_tool objects rm "s3://$BUCKET/$prefix" "${S3_SET[@]}" >/dev/null || fail "emptying s3://$BUCKET/$prefix failed"
done
# example FILE: examples/FILE as written, but for what this environment supplies, each a value
# the examples spell exactly so (e2e/README.md, "The examples as written"): the worker image,
# the S3 endpoint and keys, the Kafka broker.
example() {
  local file="$ROOT/examples/$1" value
  for value in weir-worker:latest http://minio.storage:9000 change-me-access-key change-me-secret-key; do
    grep -qF "$value" "$file" || fail "examples/$1 does not spell '$value', which the suite replaces"
  done
  sed -e "s|weir-worker:latest|$WORKER_IMAGE|g" -e "s|http://minio.storage:9000|$S3_ENDPOINT|g" \
    -e "s|change-me-access-key|$S3_KEY|g" -e "s|change-me-secret-key|$S3_SECRET|g" \
    -e "s|kafka\.kafka:9092|${KAFKA:-kafka.kafka:9092}|g" "$file"
}
# Changes to the applied StreamJob, as a user makes them: merge patches of its spec.
patch_sj() { # json [name]
  kn patch sj "${2:-$JOB}" --type merge -p "$1" >&2 || fail "kubectl patch $1 failed"
}
example datastream-job.yaml | kn apply -f - >&2 || fail "kubectl apply of examples/datastream-job.yaml failed"
job_arg() { # name -> its value in the job's args (name=value)
  sj '{.spec.job.args[*]}' | tr ' ' '\n' | sed -n "s|^$1=||p"
}
EVENTS="$(job_arg events)"
USERS="$(job_arg users)"
[[ "$(job_arg output)" == "$OUT" && -n "$EVENTS" && -n "$USERS" ]] ||
  fail "examples/datastream-job.yaml: expected output=$OUT, events and users in its args: $(sj '{.spec.job.args}')"
has_finalizer() { [[ "$(sj '{.metadata.finalizers}')" == *weir.dev/cleanup* ]]; }
wait_until 60 "the operator to add its finalizer" has_finalizer
pods_running() { # component count
  [[ "$(kn get pods -l "weir.dev/job=$JOB,app.kubernetes.io/component=$1" \
    --field-selector=status.phase=Running -o name 2>/dev/null | wc -l)" == "$2" ]]
}
wait_until 120 "1 JobManager and 2 TaskManager pods Running" bash -c \
  "$(declare -f k kn pods_running); NS=$NS JOB=$JOB; pods_running jobmanager 1 && pods_running taskmanager 2"

# ---- 3 ------------------------------------------------------------------------------------------
step "3 RUNNING, then STABLE with a completed checkpoint in status; kubectl wait --for=condition=Ready; spec.ingress makes and removes an Ingress"
stable() { [[ "$(sj '{.status.lifecycleState}')" == STABLE && -n "$(sj '{.status.jobStatus.lastCheckpoint}')" ]]; }
wait_until 180 "lifecycleState STABLE and status.jobStatus.lastCheckpoint" stable
[[ "$(sj '{.status.jobStatus.state}')" == RUNNING ]] || fail "job state is $(sj '{.status.jobStatus.state}'), not RUNNING"
JOB1="$(sj '{.status.jobStatus.jobId}')"
CHK="$(sj '{.status.jobStatus.lastCheckpoint}')"
log "job $JOB1 RUNNING, last checkpoint $CHK"
[[ "$CHK" == "s3://$BUCKET/checkpoints/$JOB1/chk-"* ]] || fail "checkpoint $CHK is not under s3://$BUCKET/checkpoints/$JOB1/"
# The status records a checkpoint when the operator looks (a settled job every minute) while
# the live job keeps only its 2 newest, 2 s apart: the recorded one, or a newer one of the same
# run that replaced it, has its _metadata object.
checkpoint_kept() { # s3://…/<job>/chk-<n>
  local n="${1##*/chk-}"
  has_object "$1/_metadata" ||
    bucket_ls "checkpoints/$JOB1" | sed -n 's|.*/chk-\([0-9]*\)/_metadata$|\1|p' | awk -v n="$n" '$1 > n { found = 1 } END { exit !found }'
}
checkpoint_kept "$CHK" || fail "no _metadata object for $CHK (or a newer checkpoint of $JOB1) in the bucket"
# (Checked after the checkpoint: the live job keeps only the 2 newest, 2 s apart.)
kn wait --for=condition=Ready "sj/$JOB" --timeout=10s >&2 || fail "condition Ready not met: $(sj '{.status.conditions}')"
[[ "$(sj '{.status.conditions[?(@.type=="Running")].status}')" == True ]] || fail "condition Running is not True: $(sj '{.status.conditions}')"
[[ "$(sj '{.status.conditions[?(@.type=="Degraded")].reason}')" == Healthy ]] || fail "condition Degraded is not Healthy: $(sj '{.status.conditions}')"

jq_py() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
# The TaskManagers' memory limit became their budget (taskmanager.memory.process.size).
# The job can run on the first TaskManager's slots before the second has registered (on a real
# node its container may start seconds later): wait for both.
budgets=""
tm_budgets() {
  budgets="$(rest /taskmanagers | jq_py '" ".join(str(t["memoryConfiguration"]["totalProcessMemory"]) for t in d["taskmanagers"])')"
  [[ "$budgets" == "268435456 268435456" ]]
}
deadline=$(($(date +%s) + 30))
until tm_budgets; do
  (($(date +%s) < deadline)) || fail "TaskManager memory budgets are '$budgets', not 256Mi each"
  sleep 1
done
log "both TaskManagers live within their 256Mi limit as their memory budget"

# spec.ingress: the operator creates an Ingress to the JobManager's REST port (no Ingress
# controller runs here: the object is what is checked), without restarting the job, and
# deletes it when the field goes.
kn patch sj "$JOB" --type merge -p '{"spec":{"ingress":{"template":"weir.example.com/{{namespace}}/{{name}}(/|$)(.*)","className":"nginx"}}}' >&2
ingress_backend() { kn get ingress "$JOB-jobmanager" -o 'jsonpath={.spec.rules[0].host} {.spec.rules[0].http.paths[0].path} {.spec.rules[0].http.paths[0].backend.service.name} {.spec.rules[0].http.paths[0].backend.service.port.name}' 2>/dev/null; }
want_ingress="weir.example.com /$NS/$JOB(/|\$)(.*) $JOB-jobmanager rest"
wait_until 60 "Ingress $JOB-jobmanager routing to the JobManager's rest port" eval '[[ "$(ingress_backend)" == "$want_ingress" ]]'
[[ "$(sj '{.status.jobStatus.jobId}')" == "$JOB1" && "$(sj '{.status.lifecycleState}')" == STABLE ]] ||
  fail "adding spec.ingress restarted the job: $(sj '{.status.jobStatus.jobId}') $(sj '{.status.lifecycleState}')"
kn patch sj "$JOB" --type json -p '[{"op":"remove","path":"/spec/ingress"}]' >&2
wait_until 60 "Ingress $JOB-jobmanager deleted with the field" eval '! kn get ingress "$JOB-jobmanager" >/dev/null 2>&1'
log "spec.ingress created Ingress $JOB-jobmanager ($want_ingress) and removed it with the field, job $JOB1 untouched"

# ---- 4 ------------------------------------------------------------------------------------------
step "4 parallelism 2 -> 3 with upgradeMode savepoint: savepoint taken and restored, STABLE again"
T_UPGRADE=$(now)
patch_sj '{"spec":{"job":{"parallelism":3}}}'
upgraded() { [[ "$(sj '{.status.jobStatus.jobId}')" != "$JOB1" && -n "$(sj '{.status.jobStatus.jobId}')" ]]; }
wait_until 180 "a new job id after the upgrade" upgraded
wait_until 180 "STABLE after the upgrade" stable
JOB2="$(sj '{.status.jobStatus.jobId}')"
SP1="$(sj '{.status.savepoints.last.location}')"
[[ "$(sj '{.status.savepoints.last.trigger}')" == upgrade ]] || fail "last savepoint trigger is not 'upgrade'"
[[ "$SP1" == "s3://$BUCKET/savepoints/savepoint-"* ]] || fail "upgrade savepoint '$SP1' not under s3://$BUCKET/savepoints/"
has_object "$SP1/_metadata" || fail "no _metadata object for savepoint $SP1 in the bucket"
[[ "$(sj '{.status.reconciliation.restorePath}')" == "$SP1" ]] || fail "restorePath is not the upgrade savepoint"
restored="$(rest "/jobs/$JOB2/checkpoints" | jq_py 'd.get("latest",{}).get("restored") or {}')"
log "JobManager reports restored: $restored"
[[ "$restored" == *"${SP1#s3://}"* ]] || fail "JM REST /jobs/$JOB2/checkpoints does not show a restore from $SP1"
par="$(rest "/jobs/$JOB2" | jq_py 'max(v.get("parallelism",0) for v in d.get("vertices",[]))')"
[[ "$par" == 3 ]] || fail "job runs at parallelism $par, not 3"
log "job $JOB2 restored from $SP1 at parallelism 3"
# The pre-flight check is on by default (bestEffort): it ran, and passed, before the old job
# was stopped. What it adds to the upgrade: from its PreflightCheck Event to PreflightPassed.
check_secs="$(event_gap "$JOB" PreflightCheck PreflightPassed)" || fail "no PreflightCheck then PreflightPassed Event of $JOB: $(events_table | tail -20)"
log "pre-flight check: ${check_secs}s of the $(secs "$T_UPGRADE" "$(now)")s upgrade"

# ---- 15 -----------------------------------------------------------------------------------------
if want 15; then
step "15 snapshots as resources: the upgrade savepoint is one; a hand-made one completes, its objects exist, deleting it deletes them"
snap() { kn get sjs "$1" -o "jsonpath=$2" 2>/dev/null; }
UPGRADE_SNAP="$(kn get sjs -l "weir.dev/job=$JOB,weir.dev/snapshot-trigger=upgrade" -o 'jsonpath={.items[0].metadata.name}')"
[[ -n "$UPGRADE_SNAP" ]] || fail "no StreamJobSnapshot records the upgrade savepoint: $(kn get sjs 2>&1)"
[[ "$(snap "$UPGRADE_SNAP" '{.status.path}')" == "$SP1" && "$(snap "$UPGRADE_SNAP" '{.status.state}')" == Completed ]] ||
  fail "snapshot $UPGRADE_SNAP does not record $SP1 as Completed"
[[ "$(snap "$UPGRADE_SNAP" '{.metadata.ownerReferences[0].name}')" == "$JOB" ]] || fail "snapshot $UPGRADE_SNAP is not owned by the StreamJob"
kn apply -f "$ROOT/examples/streamjobsnapshot.yaml" >&2 || fail "kubectl apply of examples/streamjobsnapshot.yaml failed"
HAND=clicks-by-hand
snap_done() { [[ "$(snap "$HAND" '{.status.state}')" == Completed ]]; }
wait_until 120 "snapshot $HAND Completed" snap_done
HAND_PATH="$(snap "$HAND" '{.status.path}')"
log "snapshot $HAND: $(snap "$HAND" '{.status.trigger} {.status.jobId} {.status.sizeBytes} bytes at {.status.path}')"
[[ "$HAND_PATH" == "s3://$BUCKET/savepoints/savepoint-"* ]] || fail "snapshot path '$HAND_PATH' not under s3://$BUCKET/savepoints/"
has_object "$HAND_PATH/_metadata" || fail "no _metadata object for snapshot $HAND_PATH in the bucket"
[[ "$(sj '{.status.jobStatus.jobId}')" == "$JOB2" ]] || fail "a snapshot restarted the job"
kn delete sjs "$HAND" --wait=false >&2
hand_gone() { ! kn get sjs "$HAND" >/dev/null 2>&1; }
wait_until 60 "snapshot $HAND deleted (finalizer released)" hand_gone
! has_object "$HAND_PATH/_metadata" || fail "disposeOnDelete left $HAND_PATH in the bucket"
log "deleting $HAND deleted $HAND_PATH from the bucket"
fi

# ---- 5 ------------------------------------------------------------------------------------------
if want 5; then
step "5 manual savepoint (nonce), periodic savepoints, history pruned to historyMaxCount"
patch_sj '{"spec":{"job":{"savepointTriggerNonce":1},"savepoints":{"historyMaxCount":2}}}'
manual_done() { [[ "$(sj '{.status.savepoints.last.trigger}')" == manual && "$(sj '{.status.savepoints.lastTriggerNonce}')" == 1 ]]; }
wait_until 120 "a completed manual savepoint" manual_done
SP_MANUAL="$(sj '{.status.savepoints.last.location}')"
has_object "$SP_MANUAL/_metadata" || fail "manual savepoint $SP_MANUAL not in the bucket"
[[ "$(sj '{.status.jobStatus.jobId}')" == "$JOB2" ]] || fail "a manual savepoint restarted the job"
patch_sj '{"spec":{"savepoints":{"periodicInterval":"5s"}}}'
periodic_twice() { [[ "$(sj '{range .status.savepoints.history[*]}{.trigger}{"\n"}{end}' | grep -c periodic)" -ge 1 &&
  "$(sj '{.status.savepoints.last.trigger}')" == periodic && "$(sj '{.status.savepoints.last.location}')" != "$LAST_PERIODIC" ]]; }
LAST_PERIODIC=none
wait_until 60 "a periodic savepoint" periodic_twice
LAST_PERIODIC="$(sj '{.status.savepoints.last.location}')"
wait_until 30 "a second periodic savepoint (5 s later)" periodic_twice
# Periodic savepoints off again, then the history must settle at historyMaxCount.
patch_sj '{"spec":{"savepoints":{"periodicInterval":null}}}'
# The savepoint the current deployment restores from is never pruned; of the others the newest
# historyMaxCount stay.
RESTORE="$(sj '{.status.reconciliation.restorePath}')"
unprotected() { sj '{range .status.savepoints.history[*]}{.location}{"\n"}{end}' | grep -v -x -F "$RESTORE" | grep -c . || true; }
pruned() { [[ "$(unprotected)" == 2 && -z "$(sj '{.status.savepoints.disposing[*]}')" ]]; }
wait_until 60 "history pruned to 2 (besides the restore path) with nothing left to dispose" pruned
kept="$(sj '{range .status.savepoints.history[*]}{.location}{"\n"}{end}' | sort)"
# A savepoint exists while it has objects (listed through the S3 API).
on_disk="$(savepoints_in_bucket)"
log "history: $(echo "$kept" | tr '\n' ' '); in the bucket: $(echo "$on_disk" | tr '\n' ' ')"
[[ "$kept" == "$on_disk" ]] || fail "savepoints in the bucket differ from the history (pruned ones must be deleted)"
[[ "$on_disk" != *"$SP_MANUAL"* ]] || fail "pruned manual savepoint $SP_MANUAL is still in the bucket"
[[ "$on_disk" == *"$RESTORE"* ]] || fail "the restore path $RESTORE was pruned"
[[ "$(sj '{.status.jobStatus.jobId}')" == "$JOB2" ]] || fail "savepoints restarted the job"
fi

# ---- 6 ------------------------------------------------------------------------------------------
if want 6; then
step "6 last-state upgrade; suspend (pods gone, savepoint recorded) and resume (restored from it)"
JOB_BEFORE="$(sj '{.status.jobStatus.jobId}')"
patch_sj '{"spec":{"job":{"upgradeMode":"last-state","restartNonce":1}}}'
wait_until 180 "a new job id after the last-state upgrade" bash -c \
  "[[ \"\$(kubectl -n $NS get sj $JOB -o 'jsonpath={.status.jobStatus.jobId}')\" != '$JOB_BEFORE' ]]"
wait_until 180 "STABLE after the last-state upgrade" stable
RP="$(sj '{.status.reconciliation.restorePath}')"
[[ "$RP" == "s3://$BUCKET/checkpoints/$JOB_BEFORE/chk-"* ]] || fail "last-state restorePath '$RP' is not a checkpoint of $JOB_BEFORE"
log "last-state upgrade restored from $RP"

patch_sj '{"spec":{"job":{"upgradeMode":"savepoint","state":"suspended"}}}'
suspended() { [[ "$(sj '{.status.lifecycleState}')" == SUSPENDED ]]; }
wait_until 180 "SUSPENDED" suspended
no_pods() { [[ -z "$(kn get pods -l "weir.dev/job=$JOB" -o name 2>/dev/null)" ]]; }
wait_until 90 "all job pods gone" no_pods
SP_SUSPEND="$(sj '{.status.savepoints.last.location}')"
[[ "$(sj '{.status.savepoints.last.trigger}')" == suspend ]] || fail "no suspend savepoint recorded"
has_object "$SP_SUSPEND/_metadata" || fail "suspend savepoint $SP_SUSPEND not in the bucket"
kn get sj "$JOB" >/dev/null || fail "the resource is gone"
patch_sj '{"spec":{"job":{"state":"running"}}}'
wait_until 180 "STABLE after resume" stable
[[ "$(sj '{.status.reconciliation.restorePath}')" == "$SP_SUSPEND" ]] || fail "resume did not restore from $SP_SUSPEND"
JOB3="$(sj '{.status.jobStatus.jobId}')"
restored="$(rest "/jobs/$JOB3/checkpoints" | jq_py 'd.get("latest",{}).get("restored") or {}')"
[[ "$restored" == *"${SP_SUSPEND#s3://}"* ]] || fail "JM REST does not show a restore from $SP_SUSPEND: $restored"
fi

# ---- 10 -----------------------------------------------------------------------------------------
if want 10; then
step "10 invalid manifests: schema rejects at apply; operator validation sets status.error + Event, job keeps running"
JOB_BEFORE="$(sj '{.status.jobStatus.jobId}')"
if kn patch sj "$JOB" --type merge -p '{"spec":{"job":{"parallelism":0}}}' >"$WORK/invalid.log" 2>&1; then
  fail "parallelism 0 was accepted"
fi
grep -q "parallelism" "$WORK/invalid.log" || fail "rejection does not name parallelism: $(cat "$WORK/invalid.log")"
if kn patch sj "$JOB" --type merge -p '{"spec":{"job":{"upgradeMode":"sometimes"}}}' >"$WORK/invalid.log" 2>&1; then
  fail "upgradeMode 'sometimes' was accepted"
fi
grep -q "upgradeMode" "$WORK/invalid.log" || fail "rejection does not name upgradeMode: $(cat "$WORK/invalid.log")"
log "schema rejected: $(tr '\n' ' ' <"$WORK/invalid.log" | cut -c1-200)"
# Valid for the schema, not for the operator: more parallelism than replicas x slots.
patch_sj '{"spec":{"job":{"parallelism":5}}}'
has_error() { [[ -n "$(sj '{.status.error}')" ]]; }
wait_until 60 "status.error" has_error
[[ "$(sj '{.status.conditions[?(@.type=="Degraded")].reason}')" == ValidationError ]] ||
  fail "condition Degraded does not say ValidationError: $(sj '{.status.conditions}')"
log "status.error: $(sj '{.status.error}')"
validation_event() { kn get events --field-selector reason=ValidationError -o name 2>/dev/null | grep . >/dev/null; }
wait_until 30 "a ValidationError Event" validation_event
sleep 5
[[ "$(sj '{.status.jobStatus.jobId}')" == "$JOB_BEFORE" && "$(sj '{.status.jobStatus.state}')" == RUNNING ]] ||
  fail "the running job was disturbed by an invalid spec"
[[ "$(rest "/jobs/$JOB_BEFORE" | jq_py 'd["state"]')" == RUNNING ]] || fail "JM does not report the job RUNNING"
patch_sj '{"spec":{"job":{"parallelism":3}}}'
cleared() { [[ -z "$(sj '{.status.error}')" ]]; }
wait_until 60 "status.error cleared after fixing the spec" cleared
[[ "$(sj '{.status.jobStatus.jobId}')" == "$JOB_BEFORE" ]] || fail "reverting to the running spec restarted the job"
fi

restarts() { # label selector -> restartCount of the first pod
  k get pods -A -l "$1" -o 'jsonpath={.items[0].status.containerStatuses[0].restartCount}'
}

# ---- 7 ------------------------------------------------------------------------------------------
if want 7; then
step "7 JobManager process killed: recreated, job resumes from the latest checkpoint"
JM_SEL="weir.dev/job=$JOB,app.kubernetes.io/component=jobmanager"
JOB_BEFORE="$(sj '{.status.jobStatus.jobId}')"
jm_main="$(main_process "$NS" "$JM_SEL" jobmanager weir)" || fail "no JobManager process found"
before="$(restarts "$JM_SEL")"
CHK_BEFORE="$(rest "/jobs/$JOB_BEFORE/checkpoints" | jq_py 'd["latest"]["completed"]["external_path"]')"
kill_main "$jm_main" || fail "killing the JobManager ($jm_main) failed"
log "killed the JobManager's process ($jm_main; latest checkpoint $CHK_BEFORE)"
jm_restarted() { [[ "$(restarts "$JM_SEL")" -gt "$before" ]]; }
wait_until 60 "the JobManager container to be restarted" jm_restarted
new_job_running() { [[ "$(rest /jobs | jq_py 'd["jobs"][0]["status"] if d["jobs"] else ""')" == RUNNING ]] 2>/dev/null; }
wait_until 120 "the job RUNNING again" new_job_running
JOB_AFTER="$(rest /jobs | jq_py 'd["jobs"][0]["id"]')"
restored="$(rest "/jobs/$JOB_AFTER/checkpoints" | jq_py '(d.get("latest",{}).get("restored") or {}).get("external_path","")')"
log "restarted JobManager runs $JOB_AFTER restored from '$restored'"
[[ "$restored" == "s3://$BUCKET/checkpoints/$JOB_BEFORE/chk-"* ]] ||
  fail "the restarted JobManager restored from '$restored', not from a checkpoint of $JOB_BEFORE (latest was $CHK_BEFORE)"
wait_until 120 "STABLE with the restarted JobManager" stable
fi

# ---- 8 ------------------------------------------------------------------------------------------
if want 8; then
step "8 operator killed between savepoint taken and redeploy: the restarted one finishes, no second savepoint"
OP_SEL="app.kubernetes.io/name=weir-operator"
JOB_BEFORE="$(sj '{.status.jobStatus.jobId}')"
RP_BEFORE="$(sj '{.status.reconciliation.restorePath}')"
savepoints_in_bucket >"$WORK/savepoints-before"
op_main="$(main_process "$OPNS" "$OP_SEL" operator weir-operator)" || fail "no operator process found"
op_before="$(restarts "$OP_SEL")"
patch_sj '{"spec":{"job":{"restartNonce":2}}}'
# The window: the savepoint is recorded as the restore path, the old pods are being removed.
deadline=$(($(date +%s) + 120))
until [[ "$(sj '{.status.reconciliation.phase}')" == TearingDown && "$(sj '{.status.reconciliation.restorePath}')" != "$RP_BEFORE" ]]; do
  (($(date +%s) < deadline)) || fail "never saw phase TearingDown with a new restorePath"
  [[ "$(sj '{.status.reconciliation.phase}')" != AwaitingReady ]] || fail "missed the window: already AwaitingReady"
  sleep 0.1
done
kill_main "$op_main" || fail "killing the operator ($op_main) failed"
SP_UPGRADE="$(sj '{.status.reconciliation.restorePath}')"
log "killed the operator's process ($op_main) in phase TearingDown, savepoint $SP_UPGRADE recorded"
op_restarted() { [[ "$(restarts "$OP_SEL")" -gt "$op_before" ]]; }
wait_until 60 "the operator container to be restarted" op_restarted
upgraded() { [[ "$(sj '{.status.jobStatus.jobId}')" != "$JOB_BEFORE" && -n "$(sj '{.status.jobStatus.jobId}')" ]]; }
wait_until 180 "the restarted operator to deploy the new job" upgraded
wait_until 180 "STABLE after the interrupted upgrade" stable
[[ "$(sj '{.status.reconciliation.restorePath}')" == "$SP_UPGRADE" ]] || fail "the new job does not restore from $SP_UPGRADE"
savepoints_in_bucket >"$WORK/savepoints-after"
new_sps="$(comm -13 "$WORK/savepoints-before" "$WORK/savepoints-after")"
log "savepoints written during the upgrade: $(echo "$new_sps" | tr '\n' ' ')"
[[ "$(echo "$new_sps" | grep -c .)" == 1 && "$new_sps" == "$SP_UPGRADE" ]] ||
  fail "expected exactly one new savepoint ($SP_UPGRADE), found: $new_sps"
fi

# ---- 9 ------------------------------------------------------------------------------------------
# ---- 16 -----------------------------------------------------------------------------------------
if want 16 && [[ "$TARGET" == local ]]; then
step "16 health without HA: storage made unreachable stalls checkpoints; the job is redeployed from its newest checkpoint once it returns"
JOB_BEFORE="$(sj '{.status.jobStatus.jobId}')"
patch_sj '{"spec":{"health":{"checkpointProgressTimeout":"15s"}}}'
sleep 3
[[ "$(sj '{.status.jobStatus.jobId}')" == "$JOB_BEFORE" ]] || fail "turning the health check on restarted the job"
kill -STOP "$S3_PID"
log "s3s-fs (pid $S3_PID) stopped: checkpoints stall"
health_event() { kn get events --field-selector reason=HealthRestart -o name 2>/dev/null | grep . >/dev/null; }
if ! wait_until_soft 90 health_event; then kill -CONT "$S3_PID"; fail "no HealthRestart Event within 90 s of stalled checkpoints"; fi
kill -CONT "$S3_PID"
log "HealthRestart: $(kn get events --field-selector reason=HealthRestart -o 'jsonpath={.items[0].message}'); s3s-fs resumed"
new_run() { [[ -n "$(sj '{.status.jobStatus.jobId}')" && "$(sj '{.status.jobStatus.jobId}')" != "$JOB_BEFORE" ]]; }
wait_until 180 "a new job id after the health restart" new_run
wait_until 180 "STABLE after the health restart" stable
RP="$(sj '{.status.reconciliation.restorePath}')"
[[ "$RP" == "s3://$BUCKET/checkpoints/$JOB_BEFORE/chk-"* ]] || fail "the health restart restored from '$RP', not a checkpoint of $JOB_BEFORE"
[[ "$(sj '{.status.health.restarts}')" == 1 ]] || fail "status.health.restarts is '$(sj '{.status.health.restarts}')', not 1"
[[ "$(sj '{.status.conditions[?(@.type=="Degraded")].status}')" == False ]] || fail "still Degraded once STABLE again"
patch_sj '{"spec":{"health":null}}'
log "job $(sj '{.status.jobStatus.jobId}') restored from $RP"
fi

if want 9; then
step "9 bad upgrade (job cannot start): rolled back to lastStableSpec from the upgrade savepoint"
JOB_BEFORE="$(sj '{.status.jobStatus.jobId}')"
STABLE_SPEC="$(sj '{.status.reconciliation.lastStableSpec}')"
# The same args with events=lots (a JSON merge patch replaces the whole list).
bad_args="$(sj '{.spec.job.args}' | python3 -c 'import json,sys; print(json.dumps(["events=lots" if a.startswith("events=") else a for a in json.load(sys.stdin)]))')"
patch_sj "{\"spec\":{\"job\":{\"args\":$bad_args}}}"
rolled_back() { [[ "$(sj '{.status.lifecycleState}')" == ROLLED_BACK && "$(sj '{.status.jobStatus.state}')" == RUNNING ]]; }
wait_until 240 "ROLLED_BACK with the job RUNNING" rolled_back
SP_BAD="$(sj '{.status.reconciliation.restorePath}')"
[[ "$SP_BAD" == "s3://$BUCKET/savepoints/"* ]] || fail "rollback restore path '$SP_BAD' is not a savepoint"
JOB_RB="$(sj '{.status.jobStatus.jobId}')"
restored="$(rest "/jobs/$JOB_RB/checkpoints" | jq_py '(d.get("latest",{}).get("restored") or {}).get("external_path","")')"
[[ "$restored" == "$SP_BAD" ]] || fail "rolled-back job restored from '$restored', not $SP_BAD"
args="$(kn get deploy "$JOB-jobmanager" -o 'jsonpath={.spec.template.spec.containers[0].args}')"
[[ "$args" == *"events=$EVENTS"* ]] || fail "the JobManager does not run the last stable spec: $args"
[[ "$(sj '{.status.reconciliation.lastStableSpec}')" == "$STABLE_SPEC" ]] || fail "lastStableSpec changed"
rollback_event() { kn get events --field-selector reason=Rollback -o name 2>/dev/null | grep . >/dev/null; }
wait_until 30 "a Rollback Event" rollback_event
# Its job cannot even be planned: the pre-flight check (bestEffort) could not decide, said
# so in a Warning, and let the upgrade go on.
kn get events --field-selector reason=PreflightFailed -o 'jsonpath={.items[*].message}' |
  grep -F "events=lots" >/dev/null || fail "no PreflightFailed Event naming events=lots"
log "rolled back to the stable spec; job $JOB_RB restored from $SP_BAD"
fi

# ---- 11 -----------------------------------------------------------------------------------------
step "11 running StreamJob deleted: a deletion savepoint as a snapshot that outlives it; a new StreamJob (throttle lifted) starts from it and FINISHES; deleted: pods, owned objects, finalizer gone"
JOB_BEFORE="$(sj '{.status.jobStatus.jobId}')"
UID_SJ="$(sj '{.metadata.uid}')"
kn delete sj "$JOB" --wait=false >&2
sj_gone() { ! kn get sj "$JOB" >/dev/null 2>&1; }
wait_until 180 "the running StreamJob to be deleted after its deletion savepoint" sj_gone
FINAL="$(kn get sjs -l "weir.dev/job=$JOB,weir.dev/snapshot-trigger=deletion" -o 'jsonpath={.items[0].metadata.name}')"
[[ -n "$FINAL" ]] || fail "no deletion StreamJobSnapshot outlives the StreamJob: $(kn get sjs 2>&1)"
FINAL_PATH="$(kn get sjs "$FINAL" -o 'jsonpath={.status.path}')"
[[ "$(kn get sjs "$FINAL" -o 'jsonpath={.status.state} {.status.trigger} {.status.jobId}')" == "Completed deletion $JOB_BEFORE" ]] ||
  fail "snapshot $FINAL is not a completed deletion savepoint of $JOB_BEFORE"
[[ -z "$(kn get sjs "$FINAL" -o 'jsonpath={.metadata.ownerReferences}')" ]] || fail "the deletion snapshot has an owner and would be collected"
has_object "$FINAL_PATH/_metadata" || fail "no _metadata object for the deletion savepoint $FINAL_PATH"
owned_snaps_gone() { [[ -z "$(kn get sjs -l "weir.dev/job=$JOB,weir.dev/snapshot-trigger!=deletion" -o name 2>/dev/null)" ]]; }
wait_until 120 "the StreamJob's other snapshots to be collected with it" owned_snaps_gone
log "deleted job $JOB_BEFORE left StreamJobSnapshot $FINAL at $FINAL_PATH"
# examples/datastream-job.yaml again, unthrottled (rate=0) and starting from the snapshot.
example datastream-job.yaml | kn create --dry-run=client -o json -f - | python3 -c '
import json, sys
snapshot = sys.argv[1]
# kubectl prints the objects one after another (a List only with --output of one list).
text, decoder, items, at = sys.stdin.read(), json.JSONDecoder(), [], 0
while text[at:].strip():
    o, at = decoder.raw_decode(text, len(text) - len(text[at:].lstrip()))
    items += o["items"] if o.get("kind") == "List" else [o]
for o in items:
    if o["kind"] == "StreamJob":
        job = o["spec"]["job"]
        job["args"] = ["rate=0" if a.startswith("rate=") else a for a in job["args"]]
        job["initialSnapshotName"] = snapshot
print(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
' "$FINAL" | kn apply -f - >&2 || fail "kubectl apply of the StreamJob from $FINAL failed"
finished() { [[ "$(sj '{.status.jobStatus.jobId}')" != "$JOB_BEFORE" && "$(sj '{.status.jobStatus.state}')" == FINISHED ]]; }
wait_until 300 "the unthrottled job to finish" finished
finished_stable() { [[ "$(sj '{.status.lifecycleState}')" == STABLE ]]; }
wait_until 60 "STABLE for the finished job (not rolled back after upgradeReadinessTimeout)" finished_stable
[[ "$(sj '{.status.reconciliation.restorePath}')" == "$FINAL_PATH" ]] || fail "the new StreamJob did not restore from $FINAL_PATH"
log "job $(sj '{.status.jobStatus.jobId}') restored from $FINAL_PATH, FINISHED, lifecycle STABLE"
UID_SJ="$(sj '{.metadata.uid}')"
kn delete sj "$JOB" --wait=false >&2
wait_until 120 "the StreamJob to be deleted (finalizer released)" sj_gone
owned_gone() {
  [[ -z "$(kn get deploy,svc,cm,pods,rs -o json | python3 -c "
import json,sys
for o in json.load(sys.stdin)['items']:
    refs = o['metadata'].get('ownerReferences', [])
    if o['metadata'].get('labels', {}).get('weir.dev/job') == '$JOB' or any(r['uid'] == '$UID_SJ' for r in refs):
        print(o['kind'], o['metadata']['name'])
")" ]]
}
wait_until 120 "pods and owned objects to be gone" owned_gone

# ---- 12 -----------------------------------------------------------------------------------------
step "12 sink output holds every input record exactly once (per-key count and checksum vs weir run)"
OUT_HERE="$WORK/out"
REF_HERE="$WORK/reference"
fetch "$OUT" "$OUT_HERE"
weir_tool run user-metrics --parallelism 2 --arg "events=$EVENTS" --arg "users=$USERS" \
  --arg "output=$REF" "${S3_SET[@]}" >"$WORK/reference.log" 2>&1 || { tail -20 "$WORK/reference.log" >&2; fail "weir run failed"; }
fetch "$REF" "$REF_HERE"
summary() { # dir -> per key: window results, events counted, amount total, checksum of the lines
  python3 - "$1" <<'PY'
import collections, glob, hashlib, json, os, re, sys
lines = collections.defaultdict(list)
for f in glob.glob(os.path.join(sys.argv[1], "*.jsonl")):
    for line in open(f):
        if line.strip():
            text = json.loads(line)
            lines[re.search(r"\b(user_\d+)\b", text).group(1)].append(text)
total = 0
for key in sorted(lines):
    rows = sorted(lines[key])
    events = sum(int(re.search(r"events=(\d+)", r).group(1)) for r in rows)
    cents = sum(round(float(re.search(r"amount=([0-9.]+)", r).group(1)) * 100) for r in rows)
    digest = hashlib.sha256("\n".join(rows).encode()).hexdigest()[:16]
    total += events
    print(f"{key} windows={len(rows)} events={events} amount_cents={cents} sha256={digest}")
print(f"total events {total}")
PY
}
summary "$OUT_HERE" >"$WORK/summary-e2e.txt"
summary "$REF_HERE" >"$WORK/summary-reference.txt"
cat "$WORK/summary-e2e.txt" >&2
grep -q "^total events $EVENTS\$" "$WORK/summary-reference.txt" || fail "the reference run does not count $EVENTS events"
diff "$WORK/summary-reference.txt" "$WORK/summary-e2e.txt" >&2 ||
  fail "the cluster's output differs from weir run's (lost or duplicated records)"
# Line by line, too: every window result exactly once.
sort "$OUT_HERE"/*.jsonl >"$WORK/lines-e2e.txt"
sort "$REF_HERE"/*.jsonl >"$WORK/lines-reference.txt"
cmp -s "$WORK/lines-e2e.txt" "$WORK/lines-reference.txt" ||
  fail "window results differ line by line: $(diff "$WORK/lines-reference.txt" "$WORK/lines-e2e.txt" | head -5)"
log "output: $(wc -l <"$WORK/lines-e2e.txt") window results, identical to weir run's"

# ---- 13 -----------------------------------------------------------------------------------------
step "13 a SQL StreamJob (examples/sql-job.yaml) runs on the cluster and writes exactly what weir run writes"
SQL_JOB=sql-metrics
SQL_OUT="s3://$BUCKET/sql-out"
SQL_REF="s3://$BUCKET/sql-ref"
example sql-job.yaml | kn apply -f - >&2 || fail "kubectl apply of examples/sql-job.yaml failed"
sql_sj() { kn get sj "$SQL_JOB" -o "jsonpath=$1" 2>/dev/null; }
sql_finished() { [[ "$(sql_sj '{.status.jobStatus.state}')" == FINISHED ]]; }
wait_until 180 "the SQL job to run and finish" sql_finished
log "SQL job $(sql_sj '{.status.jobStatus.jobId}') FINISHED, lifecycle $(sql_sj '{.status.lifecycleState}')"
# The reference runs the StreamJob's own script, its sink pointed elsewhere.
sql_sj '{.spec.job.sql}' >"$WORK/sql-job.sql"
grep -qF "'$SQL_OUT'" "$WORK/sql-job.sql" || fail "examples/sql-job.yaml does not write to '$SQL_OUT'"
sed "s|'$SQL_OUT'|'$SQL_REF'|" "$WORK/sql-job.sql" | tool_sh "cat >'$TOOL_DIR/user_metrics.sql'"
weir_tool run "$TOOL_DIR/user_metrics.sql" --parallelism 2 --no-progress "${S3_SET[@]}" \
  >"$WORK/sql-reference.log" 2>&1 || { tail -20 "$WORK/sql-reference.log" >&2; fail "weir run of the SQL failed"; }
fetch "$SQL_OUT" "$WORK/sql-out"
fetch "$SQL_REF" "$WORK/sql-ref"
# Rows with the amount in cents: a SUM over DOUBLE depends on the order records from the two
# source subtasks reach the window, which differs between runs in its last bits.
sql_rows() { # dir
  python3 - "$1" <<'PY' | sort
import glob, json, os, sys
for f in glob.glob(os.path.join(sys.argv[1], "*.jsonl")):
    for line in open(f):
        if line.strip():
            r = json.loads(line)
            r["amount"] = round(r["amount"] * 100)
            print(json.dumps(r, sort_keys=True))
PY
}
sql_rows "$WORK/sql-out" >"$WORK/sql-lines-e2e.txt"
sql_rows "$WORK/sql-ref" >"$WORK/sql-lines-reference.txt"
[[ -s "$WORK/sql-lines-reference.txt" ]] || fail "weir run wrote no rows"
cmp -s "$WORK/sql-lines-e2e.txt" "$WORK/sql-lines-reference.txt" ||
  fail "the SQL job's rows differ from weir run's: $(diff "$WORK/sql-lines-reference.txt" "$WORK/sql-lines-e2e.txt" | head -5)"
log "SQL output: $(wc -l <"$WORK/sql-lines-e2e.txt") rows, identical to weir run's"
kn delete sj "$SQL_JOB" --wait=false >&2
sql_gone() { ! kn get sj "$SQL_JOB" >/dev/null 2>&1; }
wait_until 120 "the SQL StreamJob to be deleted" sql_gone

# ---- 14 -----------------------------------------------------------------------------------------
step "14 Kafka in, Kafka out, exactly once: incompatible SQL refused by the pre-flight check, savepoint upgrade, last-state upgrade, JobManager and operator killed"
if [[ "$TARGET" != local ]]; then
  log "step 14 runs on the local target only (its broker, producer and readers run on this machine)"
else
# The StreamJob and its topics are examples/kafka-sql-job.yaml's (the broker is this run's own).
KJOB=clicks-per-user
KIN=clicks
KOUT=clicks-per-user
KROWS=15000            # produced at 100 rows/s while the steps below run
KBASE=1767225600000    # event time of row 0; row n is n * 100 ms later
ksj() { kn get sj "$KJOB" -o "jsonpath=$1" 2>/dev/null; }
kstable() { [[ "$(ksj '{.status.lifecycleState}')" == STABLE && -n "$(ksj '{.status.jobStatus.lastCheckpoint}')" ]]; }
kjob() { ksj '{.status.jobStatus.jobId}'; }
# The clicks, produced by `weir run` here into $KIN (one partition: the broker creates it).
cat >"$WORK/kafka/produce.sql" <<SQL
CREATE TABLE gen (
  user_no INT, cents INT, seq BIGINT,
  ts AS TO_TIMESTAMP_LTZ($KBASE + seq * 100, 3)
) WITH ('connector' = 'datagen', 'number-of-rows' = '$KROWS', 'rows-per-second' = '100',
  'fields.user_no.min' = '0', 'fields.user_no.max' = '7', 'fields.cents.min' = '100',
  'fields.cents.max' = '9999', 'fields.seq.kind' = 'sequence', 'fields.seq.start' = '0',
  'fields.seq.end' = '$((KROWS - 1))');
CREATE TABLE clicks (user_no INT, cents INT, seq BIGINT, ts TIMESTAMP(3)) WITH (
  'connector' = 'kafka', 'topic' = '$KIN', 'properties.bootstrap.servers' = '$KAFKA',
  'format' = 'json', 'sink.delivery-guarantee' = 'at-least-once');
INSERT INTO clicks SELECT user_no, cents, seq, ts FROM gen;
SQL
"$BIN_DIR/weir" run "$WORK/kafka/produce.sql" --no-progress >"$WORK/kafka/produce.log" 2>&1 &
PRODUCER_PID=$!
example kafka-sql-job.yaml | kn apply -f - >&2 || fail "kubectl apply of examples/kafka-sql-job.yaml failed"
# ksql EDIT: the StreamJob's query as a JSON string, as applied (EDIT '') or edited: `max` adds
# a MAX(cents) column (another aggregate: state the running job's savepoint cannot restore),
# `reference:DIR` bounds the source and writes to files in DIR instead (the reference run).
ksql() {
  kn get sj "$KJOB" -o json | python3 -c '
import json, re, sys
edit, q = sys.argv[1], json.load(sys.stdin)["spec"]["job"]["sql"]
def sub(old, new, text, **kw):
    out = re.sub(old, new, text, count=1, **kw)
    if out == text: sys.exit("examples/kafka-sql-job.yaml: no %r in its query" % old)
    return out
if edit == "max":
    q = sub(r"cents BIGINT\)", "cents BIGINT, top INT)", q)
    q = sub(r"SUM\(cents\)\n", "SUM(cents), MAX(cents)\n", q)
elif edit.startswith("reference:"):
    q = sub(r"\x27scan.startup.mode\x27 = \x27earliest-offset\x27", lambda m: m.group(0) + ", \x27scan.bounded.mode\x27 = \x27latest-offset\x27", q)
    q = sub(r"(CREATE TABLE per_user.*?WITH \().*?\);", lambda m: m.group(1) + "\x27connector\x27 = \x27filesystem\x27, \x27path\x27 = \x27%s\x27, \x27format\x27 = \x27json\x27);" % edit[10:], q, flags=re.S)
    print(q)
    sys.exit(0)
print(json.dumps(q))
' "$1"
}
wait_until 180 "the Kafka job STABLE with a completed checkpoint" kstable
KSQL="$(ksql '')"
K1="$(kjob)"
log "Kafka job $K1 RUNNING: $KIN -> $KOUT"

# Pre-flight: another aggregate cannot restore the running job's window state; the upgrade is
# refused before anything stops (same job id, still RUNNING), naming the operator.
patch_sj "{\"spec\":{\"job\":{\"sql\":$(ksql max)}}}" "$KJOB"
krefused() { [[ "$(ksj '{.status.conditions[?(@.type=="Degraded")].reason}')" == IncompatibleState ]]; }
wait_until 120 "the pre-flight check to refuse the changed aggregate" krefused
[[ "$(kjob)" == "$K1" && "$(ksj '{.status.jobStatus.state}')" == RUNNING ]] ||
  fail "the refused upgrade touched the job: $(kjob) is $(ksj '{.status.jobStatus.state}')"
kwhy="$(ksj '{.status.error}')"
[[ "$kwhy" == *"changed its state schema"* && "$kwhy" == *"MAX BIGINT"* ]] ||
  fail "the refusal does not name the changed operator: $kwhy"
kn get events --field-selector reason=IncompatibleState -o name | grep -q . ||
  fail "no IncompatibleState Event"
log "pre-flight refused the changed aggregate, $K1 still RUNNING: ${kwhy:0:160}…"

patch_sj "{\"spec\":{\"job\":{\"sql\":$KSQL,\"parallelism\":1}}}" "$KJOB"
knew() { [[ -n "$(kjob)" && "$(kjob)" != "$1" ]]; }
wait_until 180 "a new job after the savepoint upgrade" knew "$K1"
wait_until 180 "STABLE after the savepoint upgrade" kstable
K2="$(kjob)"
[[ "$(ksj '{.status.savepoints.last.trigger}')" == upgrade ]] || fail "the upgrade took no savepoint"
log "savepoint upgrade: $K2 restored from $(ksj '{.status.reconciliation.restorePath}')"

patch_sj '{"spec":{"job":{"upgradeMode":"last-state","parallelism":2}}}' "$KJOB"
wait_until 180 "a new job after the last-state upgrade" knew "$K2"
wait_until 180 "STABLE after the last-state upgrade" kstable
K3="$(kjob)"
[[ "$(ksj '{.status.reconciliation.restorePath}')" == "s3://$BUCKET/checkpoints/$K2/chk-"* ]] ||
  fail "the last-state upgrade restored from '$(ksj '{.status.reconciliation.restorePath}')', not a checkpoint of $K2"
log "last-state upgrade: $K3 restored from $(ksj '{.status.reconciliation.restorePath}')"

KJM_SEL="weir.dev/job=$KJOB,app.kubernetes.io/component=jobmanager"
kjm="$(main_process "$NS" "$KJM_SEL" jobmanager weir)" || fail "no JobManager process of $KJOB"
kbefore="$(restarts "$KJM_SEL")"
kill_main "$kjm" || fail "killing the JobManager ($kjm) failed"
log "killed the Kafka job's JobManager ($kjm)"
kjm_restarted() { [[ "$(restarts "$KJM_SEL")" -gt "$kbefore" ]]; }
wait_until 60 "the JobManager container to be restarted" kjm_restarted
krunning() { [[ "$(ksj '{.status.jobStatus.state}')" == RUNNING ]]; }
wait_until 180 "the job RUNNING under the restarted JobManager" krunning
wait_until 180 "STABLE with the restarted JobManager" kstable

OP_SEL="app.kubernetes.io/name=weir-operator"
kop="$(main_process "$OPNS" "$OP_SEL" operator weir-operator)" || fail "no operator process found"
kop_before="$(restarts "$OP_SEL")"
kill_main "$kop" || fail "killing the operator ($kop) failed"
log "killed the operator ($kop)"
kop_restarted() { [[ "$(restarts "$OP_SEL")" -gt "$kop_before" ]]; }
wait_until 60 "the operator container to be restarted" kop_restarted
wait_until 120 "STABLE after the operator restart" kstable

# Every click is in; then every window the watermark (last event - 1 s) closed is committed.
produced() { ! kill -0 "$PRODUCER_PID" 2>/dev/null; }
wait_until 300 "the producer to write its $KROWS clicks" produced
wait "$PRODUCER_PID" || { tail -20 "$WORK/kafka/produce.log" >&2; fail "the producer failed"; }
PRODUCER_PID=""
# read TOPIC DIR: every committed record of the topic (read_committed, to its end at start).
kafka_read() {
  cat >"$WORK/kafka/read.sql" <<SQL
CREATE TABLE t (window_start TIMESTAMP(3), user_no INT, clicks BIGINT, cents BIGINT) WITH (
  'connector' = 'kafka', 'topic' = '$1', 'properties.bootstrap.servers' = '$KAFKA', 'format' = 'json',
  'scan.startup.mode' = 'earliest-offset', 'scan.bounded.mode' = 'latest-offset',
  'properties.isolation.level' = 'read_committed');
CREATE TABLE o (window_start TIMESTAMP(3), user_no INT, clicks BIGINT, cents BIGINT)
  WITH ('connector' = 'filesystem', 'path' = '$2', 'format' = 'json');
INSERT INTO o SELECT * FROM t;
SQL
  rm -rf "$2"
  "$BIN_DIR/weir" run "$WORK/kafka/read.sql" --no-progress >"$WORK/kafka/read.log" 2>&1 ||
    { tail -20 "$WORK/kafka/read.log" >&2; fail "reading $1 failed"; }
}
# The reference: the same query over the same clicks with `weir run`, the source bounded.
ksql "reference:$WORK/kafka/reference" >"$WORK/kafka/reference.sql" || fail "no reference query"
"$BIN_DIR/weir" run "$WORK/kafka/reference.sql" --no-progress >"$WORK/kafka/reference.log" 2>&1 ||
  { tail -20 "$WORK/kafka/reference.log" >&2; fail "the reference run failed"; }
# compare: prints the verdict; exit 0 when every closed window is there once and right.
kafka_compare() {
  python3 - "$WORK/kafka/out" "$WORK/kafka/reference" "$KBASE" "$KROWS" <<'PY'
import collections, datetime, glob, json, os, sys
out_dir, ref_dir, base, rows = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
def load(d):
    rs = []
    for f in glob.glob(os.path.join(d, "*.jsonl")):
        rs += [json.loads(l) for l in open(f) if l.strip()]
    return rs
def ms(ts):
    fmt = "%Y-%m-%d %H:%M:%S.%f" if "." in ts else "%Y-%m-%d %H:%M:%S"
    t = datetime.datetime.strptime(ts, fmt).replace(tzinfo=datetime.timezone.utc)
    return int(t.timestamp() * 1000)
out, ref = load(out_dir), load(ref_dir)
key = lambda r: (r["window_start"], r["user_no"])
counts = collections.Counter(key(r) for r in out)
dups = [k for k, n in counts.items() if n > 1]
ref_by = {key(r): r for r in ref}
wrong = [r for r in out if ref_by.get(key(r)) != r]
# Closed by the job's watermark: the last click's event time minus 1 s.
closed = base + (rows - 1) * 100 - 1000
missing = [k for k, r in ref_by.items() if ms(r["window_start"]) + 10000 <= closed and k not in counts]
print(f"{len(out)} rows committed, {len(ref)} in the reference; {len(dups)} duplicated, {len(wrong)} differing, {len(missing)} closed windows missing")
if dups: print("duplicated:", dups[:3])
if wrong: print("differing:", wrong[:3])
if missing: print("missing:", missing[:3])
sys.exit(0 if not dups and not wrong and not missing and sum(r["clicks"] for r in ref) == rows else 1)
PY
}
kcomplete() { kafka_read "$KOUT" "$WORK/kafka/out" && kafka_compare >"$WORK/kafka/verdict" 2>&1; }
wait_until 180 "every closed window committed to $KOUT" kcomplete
log "Kafka output (read_committed): $(cat "$WORK/kafka/verdict")"
[[ "$(ksj '{.status.jobStatus.state}')" == RUNNING ]] || fail "the Kafka job is $(ksj '{.status.jobStatus.state}'), not RUNNING"
kn delete sj "$KJOB" --wait=false >&2
kgone() { ! kn get sj "$KJOB" >/dev/null 2>&1; }
wait_until 120 "the Kafka StreamJob to be deleted" kgone
fi

step "finished"
