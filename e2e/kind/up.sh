#!/usr/bin/env bash
# Creates the kind cluster of the e2e suite (one node, cluster.yaml) unless it exists, waits for
# the node to be Ready and prints the path of its kubeconfig as the last stdout line:
#
#   export KUBECONFIG="$(e2e/kind/up.sh | tail -1)"
#
# Idempotent. Variables: WEIR_KIND_CLUSTER (name, default weir-e2e), WEIR_KIND_NODE_IMAGE
# (kindest/node image; default: the one of the installed kind release), WEIR_KIND_KUBECONFIG.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
source "$HERE/lib.sh"
need docker kind kubectl

if cluster_exists; then
  log "kind cluster $KIND_CLUSTER exists"
else
  log "creating kind cluster $KIND_CLUSTER ($(kind version 2>/dev/null || echo 'kind ?'); tested with $KIND_TESTED_VERSION)"
  kind create cluster --name "$KIND_CLUSTER" --config "$HERE/cluster.yaml" \
    ${WEIR_KIND_NODE_IMAGE:+--image "$WEIR_KIND_NODE_IMAGE"} --wait 180s >&2
fi
mkdir -p "$(dirname "$KIND_KUBECONFIG")"
kind get kubeconfig --name "$KIND_CLUSTER" >"$KIND_KUBECONFIG.tmp"
mv "$KIND_KUBECONFIG.tmp" "$KIND_KUBECONFIG"
kubectl --kubeconfig "$KIND_KUBECONFIG" wait --for=condition=Ready node --all --timeout=180s >&2
kubectl --kubeconfig "$KIND_KUBECONFIG" get storageclass -o name | grep -q . ||
  die "kind cluster $KIND_CLUSTER has no StorageClass (the suite needs one for its output volume)"
echo "$KIND_KUBECONFIG"
