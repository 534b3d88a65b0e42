# Shared settings of the kind scripts. Sourced, not executed.
# shellcheck shell=bash disable=SC2034

# shellcheck source=../controlplane/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../controlplane/lib.sh" # log, die, WEIR_CACHE

KIND_CLUSTER="${WEIR_KIND_CLUSTER:-weir-e2e}"
# Written by up.sh; the last line up.sh prints.
KIND_KUBECONFIG="${WEIR_KIND_KUBECONFIG:-$WEIR_CACHE/kind/$KIND_CLUSTER.kubeconfig}"
# The images images.sh builds from the repository's Dockerfile and loads into the nodes. A tag
# other than `latest`, so the default pull policy (IfNotPresent) uses the loaded image.
KIND_WORKER_IMAGE="${WEIR_KIND_WORKER_IMAGE:-weir-worker:e2e}"
KIND_OPERATOR_IMAGE="${WEIR_KIND_OPERATOR_IMAGE:-weir-operator:e2e}"
# The S3 store of s3.yaml as the pods reach it, with the credentials of its Secret.
KIND_S3_ENDPOINT="http://weir-s3.weir-s3.svc.cluster.local:9000"
KIND_S3_ACCESS_KEY=e2e-access-key
KIND_S3_SECRET_KEY=e2e-secret-key
# The kind release these scripts were written against (`kind version`); others that read the
# v1alpha4 config work too. Install: `go install sigs.k8s.io/kind@v0.24.0` or the release binary.
KIND_TESTED_VERSION=v0.24.0

need() { # command...
  local c
  for c in "$@"; do
    command -v "$c" >/dev/null || die "'$c' is not installed (e2e/README.md, \"On kind\", says what is needed)"
  done
}
cluster_exists() { kind get clusters 2>/dev/null | grep -qx "$KIND_CLUSTER"; }
