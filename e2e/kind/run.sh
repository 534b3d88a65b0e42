#!/usr/bin/env bash
# The e2e suite (e2e/run.sh) on kind: creates the cluster (up.sh), builds and loads the images
# (images.sh), installs the S3 store (s3.yaml: MinIO and its bucket `weir`), then runs the same
# numbered suite with E2E_TARGET=kind; the suite installs the chart (rendered with Helm's SDK,
# as locally) with the loaded operator image and runs its StreamJobs on the loaded worker image.
#
#   e2e/kind/run.sh              # needs docker, kind, kubectl, python3, curl (e2e/README.md)
#
# The cluster is kept afterwards for a quick re-run (the suite deletes its namespace; step 2
# empties the bucket's checkpoints/ and savepoints/); WEIR_KIND_DOWN=1 deletes it (down.sh)
# after the run. WEIR_KIND_NO_IMAGES=1 skips images.sh (images already loaded). Every
# WEIR_E2E_* variable of e2e/run.sh applies.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
source "$HERE/lib.sh"
need docker kind kubectl python3 curl

KUBECONFIG="$("$HERE/up.sh" | tail -1)"
export KUBECONFIG
if [[ "${WEIR_KIND_NO_IMAGES:-0}" != 1 ]]; then "$HERE/images.sh"; fi

log "installing the S3 store (MinIO) and its bucket"
kubectl -n weir-s3 delete job create-bucket --ignore-not-found >&2 # a Job runs once: again
kubectl apply -f "$HERE/s3.yaml" >&2
kubectl -n weir-s3 rollout status deploy/minio --timeout=300s >&2
kubectl -n weir-s3 wait --for=condition=complete job/create-bucket --timeout=300s >&2 ||
  die "the bucket was not created: $(kubectl -n weir-s3 logs job/create-bucket 2>&1 | tail -5)"

rc=0
E2E_TARGET=kind \
  WEIR_E2E_WORKER_IMAGE="$KIND_WORKER_IMAGE" \
  WEIR_E2E_OPERATOR_IMAGE="$KIND_OPERATOR_IMAGE" \
  WEIR_E2E_S3_ENDPOINT="$KIND_S3_ENDPOINT" \
  WEIR_E2E_S3_ACCESS_KEY="$KIND_S3_ACCESS_KEY" \
  WEIR_E2E_S3_SECRET_KEY="$KIND_S3_SECRET_KEY" \
  bash "$HERE/../run.sh" || rc=$?

if [[ "${WEIR_KIND_DOWN:-0}" == 1 && "${WEIR_E2E_KEEP:-0}" != 1 ]]; then
  "$HERE/down.sh"
else
  log "kind cluster $KIND_CLUSTER kept (KUBECONFIG=$KIND_KUBECONFIG); e2e/kind/down.sh deletes it"
fi
exit "$rc"
