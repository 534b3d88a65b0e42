#!/usr/bin/env bash
# Smoke check of a running control plane (up.sh). Each numbered step asserts one thing and the
# script exits non-zero with a clear message at the first one that fails.
#   1. the apiserver answers /readyz and kubectl works
#   2. a CustomResourceDefinition (apiextensions.k8s.io/v1, structural schema, status
#      subresource) is accepted and becomes Established
#   3. a custom resource is created; one violating the schema is rejected
#   4. its status subresource is patched (and the main resource ignores status changes)
#   5. a Deployment gets a ReplicaSet and a Pod from the controller-manager; the scheduler
#      marks the Pod unschedulable (no Node exists yet: expected, it stays Pending)
#   6. everything is deleted and the garbage collector removes the ReplicaSet and Pod
# Usage: smoke.sh [KUBECONFIG]   (default: the one up.sh wrote)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
source "$HERE/lib.sh"

KUBECONFIG_PATH="${1:-${KUBECONFIG:-$K8S_STATE/kubeconfig}}"
[[ -f "$KUBECONFIG_PATH" ]] || die "no kubeconfig at $KUBECONFIG_PATH (run e2e/controlplane/up.sh first)"
NS=weir-smoke
CRD=smokes.e2e.weir.dev
k() { kubectl --kubeconfig "$KUBECONFIG_PATH" --request-timeout=10s "$@"; }
kn() { k -n "$NS" "$@"; }

STEP="setup"
T0=$(date +%s.%N)
TS=$T0

cleanup() {
  k delete deployment -n "$NS" weir-smoke --ignore-not-found --wait=false >/dev/null 2>&1 || true
  k delete namespace "$NS" --ignore-not-found --wait=false >/dev/null 2>&1 || true
  k delete crd "$CRD" --ignore-not-found --wait=false >/dev/null 2>&1 || true
}
on_exit() {
  local rc=$?
  if ((rc != 0)); then
    log "FAILED at step: $STEP"
    {
      echo "---- objects in $NS"
      kn get all,smokes -o wide 2>&1 || true
      echo "---- events in $NS"
      kn get events --sort-by=.lastTimestamp 2>&1 | tail -20 || true
    } >&2
    cleanup
    log "SMOKE FAILED (logs of the control plane: $K8S_STATE/logs)"
  fi
  exit "$rc"
}
trap on_exit EXIT
fail() { die "$STEP: $*"; }

WAIT_POLL=0.5 # the control plane answers quickly

# ------------------------------------------------------------------------------------------------
step "1 apiserver ready, kubectl works"
[[ "$(k get --raw /readyz 2>&1)" == ok ]] || fail "/readyz is not ok"
k get ns default >/dev/null || fail "kubectl get ns default failed"
log "server $(k version -o json 2>/dev/null | sed -n 's/.*"gitVersion": "\([^"]*\)".*/\1/p' | tail -1)"
# Leftovers of an interrupted earlier run.
if k get ns "$NS" >/dev/null 2>&1 || k get crd "$CRD" >/dev/null 2>&1; then
  log "removing leftovers of an earlier run"
  k delete ns "$NS" --ignore-not-found --timeout=60s >/dev/null
  k delete crd "$CRD" --ignore-not-found --timeout=60s >/dev/null
fi

step "2 CRD apiextensions.k8s.io/v1 with structural schema and status subresource"
k apply -f - >/dev/null <<'YAML' || fail "CRD was not accepted"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: smokes.e2e.weir.dev
spec:
  group: e2e.weir.dev
  scope: Namespaced
  names: {plural: smokes, singular: smoke, kind: Smoke}
  versions:
  - name: v1
    served: true
    storage: true
    subresources:
      status: {}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [message]
            properties:
              message: {type: string}
              replicas: {type: integer, minimum: 1}
          status:
            type: object
            properties:
              phase: {type: string}
              observedGeneration: {type: integer}
YAML
k wait --for condition=established --timeout=30s "crd/$CRD" >/dev/null || fail "CRD not Established"
# Discovery of the new resource can lag a little behind Established.
wait_until 30 "smokes in discovery" bash -c "kubectl --kubeconfig '$KUBECONFIG_PATH' api-resources --api-group=e2e.weir.dev 2>/dev/null | grep -q '^smokes'"

step "3 custom resource created; schema violations rejected"
k create namespace "$NS" >/dev/null || fail "cannot create namespace $NS"
kn apply -f - >/dev/null <<'YAML' || fail "custom resource was not accepted"
apiVersion: e2e.weir.dev/v1
kind: Smoke
metadata: {name: smoke-1}
spec: {message: hello, replicas: 2}
YAML
[[ "$(kn get smoke smoke-1 -o jsonpath='{.spec.message}')" == hello ]] || fail "custom resource not readable"
if out="$(kn apply --validate=false -f - 2>&1 <<'YAML'
apiVersion: e2e.weir.dev/v1
kind: Smoke
metadata: {name: smoke-bad}
spec: {message: hello, replicas: "two"}
YAML
)"; then
  fail "a resource violating the schema (replicas: \"two\") was accepted"
fi
grep -q 'spec.replicas' <<<"$out" || fail "schema rejection did not name the field: $out"

step "4 status subresource patched"
status_patch='{"status":{"phase":"Ready","observedGeneration":1}}'
errfile="$(mktemp)"
# WEIR_SMOKE_FORCE_REST=1 exercises the fallback path.
if [[ "${WEIR_SMOKE_FORCE_REST:-0}" != 1 ]] &&
  kn patch smoke smoke-1 --subresource=status --type=merge -p "$status_patch" >/dev/null 2>"$errfile"; then
  log "patched via kubectl patch --subresource=status"
else
  # Fallback for a kubectl without --subresource: PATCH /status with the kubeconfig's token.
  if [[ -s "$errfile" ]]; then
    log "kubectl patch --subresource=status failed ($(head -1 "$errfile")); using the REST API"
  else
    log "patching via the REST API (WEIR_SMOKE_FORCE_REST=1)"
  fi
  server="$(k config view --raw --minify -o jsonpath='{.clusters[0].cluster.server}')"
  token="$(k config view --raw --minify -o jsonpath='{.users[0].user.token}')"
  cafile="$(mktemp)"
  k config view --raw --minify -o jsonpath='{.clusters[0].cluster.certificate-authority-data}' | base64 -d >"$cafile"
  curl -fsS --cacert "$cafile" -H "Authorization: Bearer $token" -X PATCH \
    -H 'Content-Type: application/merge-patch+json' -d "$status_patch" \
    "$server/apis/e2e.weir.dev/v1/namespaces/$NS/smokes/smoke-1/status" >/dev/null ||
    { rm -f "$cafile"; fail "PATCH .../status via REST failed"; }
  rm -f "$cafile"
fi
rm -f "$errfile"
[[ "$(kn get smoke smoke-1 -o jsonpath='{.status.phase}')" == Ready ]] || fail "status.phase is not Ready after the status patch"
# With a status subresource the main endpoint ignores status changes.
kn patch smoke smoke-1 --type=merge -p '{"status":{"phase":"Hacked"},"spec":{"message":"bye"}}' >/dev/null ||
  fail "patching the main resource failed"
[[ "$(kn get smoke smoke-1 -o jsonpath='{.status.phase}/{.spec.message}')" == Ready/bye ]] ||
  fail "main resource endpoint changed status (or dropped the spec change)"

step "5 Deployment -> ReplicaSet -> Pod (controller-manager), Pod unschedulable (scheduler)"
kn apply -f - >/dev/null <<'YAML' || fail "Deployment was not accepted"
apiVersion: apps/v1
kind: Deployment
metadata: {name: weir-smoke, labels: {app: weir-smoke}}
spec:
  replicas: 1
  selector: {matchLabels: {app: weir-smoke}}
  template:
    metadata: {labels: {app: weir-smoke}}
    spec:
      containers:
      - name: main
        image: weir-smoke:none
YAML
rs_count() { [[ "$(kn get rs -l app=weir-smoke -o jsonpath='{range .items[*]}{.metadata.ownerReferences[0].name}{"\n"}{end}' 2>/dev/null)" == weir-smoke ]]; }
wait_until 60 "a ReplicaSet owned by Deployment weir-smoke" rs_count
pod_exists() { [[ -n "$(kn get pods -l app=weir-smoke -o name 2>/dev/null)" ]]; }
wait_until 60 "a Pod of ReplicaSet weir-smoke" pod_exists
pod="$(kn get pods -l app=weir-smoke -o name | head -1)"
log "created $pod"
[[ "$(kn get "$pod" -o jsonpath='{.status.phase}')" == Pending ]] || fail "$pod is not Pending"
# The ServiceAccount admission plugin mounted a token (needs the token controller's secret).
kn get "$pod" -o jsonpath='{.spec.volumes[*].secret.secretName}' | grep -q '^default-token-' ||
  fail "$pod has no service-account token volume"
unschedulable() {
  [[ "$(kn get "$pod" -o jsonpath='{.status.conditions[?(@.type=="PodScheduled")].reason}' 2>/dev/null)" == Unschedulable ]]
}
wait_until 60 "the scheduler to mark $pod Unschedulable (no Node yet)" unschedulable
log "scheduler: $(kn get "$pod" -o jsonpath='{.status.conditions[?(@.type=="PodScheduled")].message}')"

step "6 delete; garbage collector removes ReplicaSet and Pod"
kn delete deployment weir-smoke --timeout=30s >/dev/null || fail "cannot delete the Deployment"
gone() { [[ -z "$(kn get rs,pods -l app=weir-smoke -o name 2>/dev/null)" ]]; }
wait_until 90 "ReplicaSet and Pod to be garbage-collected" gone
kn delete smoke smoke-1 --timeout=30s >/dev/null || fail "cannot delete the custom resource"
k delete crd "$CRD" --timeout=60s >/dev/null || fail "cannot delete the CRD"
k delete namespace "$NS" --timeout=90s >/dev/null || fail "namespace $NS was not deleted"

step "finished"
log "SMOKE PASSED in $(secs "$T0" "$(now)")s"
