#!/usr/bin/env bash
# Deletes the kind cluster of the e2e suite (and its kubeconfig file). Idempotent.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
source "$HERE/lib.sh"
need kind

if cluster_exists; then
  log "deleting kind cluster $KIND_CLUSTER"
  kind delete cluster --name "$KIND_CLUSTER" >&2
else
  log "no kind cluster $KIND_CLUSTER"
fi
rm -f "$KIND_KUBECONFIG"
