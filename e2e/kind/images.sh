#!/usr/bin/env bash
# Builds the worker and operator images from the repository's Dockerfile (targets `worker` and
# `operator`, one shared build stage) and loads them into the kind cluster's nodes.
#
#   e2e/kind/images.sh          # after up.sh; names: WEIR_KIND_WORKER_IMAGE, WEIR_KIND_OPERATOR_IMAGE
#
# Idempotent: Docker's build cache (and the Dockerfile's cargo cache mounts) make a rebuild of an
# unchanged tree quick; `kind load` skips nodes that already have the image.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
# shellcheck source=lib.sh
source "$HERE/lib.sh"
need docker kind
cluster_exists || die "no kind cluster $KIND_CLUSTER: run e2e/kind/up.sh first"

export DOCKER_BUILDKIT=1 # the Dockerfile uses RUN --mount=type=cache
for pair in "worker=$KIND_WORKER_IMAGE" "operator=$KIND_OPERATOR_IMAGE"; do
  target="${pair%%=*}"
  image="${pair#*=}"
  log "docker build --target $target -t $image"
  t0=$(date +%s)
  docker build --target "$target" -t "$image" "$ROOT" >&2
  log "built $image in $(($(date +%s) - t0))s"
done
kind load docker-image --name "$KIND_CLUSTER" "$KIND_WORKER_IMAGE" "$KIND_OPERATOR_IMAGE" >&2
log "loaded $KIND_WORKER_IMAGE and $KIND_OPERATOR_IMAGE into kind cluster $KIND_CLUSTER"
