#!/usr/bin/env bash
# Builds the worker and operator images from the repository's Dockerfile on this machine, where
# no registry is reachable, and imports them into the real node's containerd (e2e/node/up.sh
# must have run). Every image comes from here:
#   1. base:    `debootstrap --variant=minbase bookworm`, `docker import`ed as weir-debian:bookworm
#   2. builder: weir-builder:<rustc>-bookworm = the base + gcc/pkg-config + the Rust toolchain CI
#               uses (`rustc --print sysroot`, imported as an image), laid out like rust:*-bookworm,
#               trusting the host's local CAs (/usr/local/share/ca-certificates) for crates.io
#   3. images:  `docker build --target worker|operator` of the Dockerfile with BASE_IMAGE and
#               BUILDER_IMAGE set to those two (BuildKit; cargo's registry and target directory
#               in its cache mounts, kept in Docker's data root across runs)
#   4. `docker save | ctr -n k8s.io images import`
# Docker is Debian's docker.io (20.10, its built-in BuildKit) run as a daemon of our own (socket
# /run/weir-docker/docker.sock, data root ~/.cache/weir/docker, no bridge and no iptables rules:
# builds use the host's network), stopped again at the end (WEIR_DOCKER_KEEP=1 keeps it).
# Steps 1-2 are skipped when their image exists. Prints each phase's time. Run as root.
#
#   e2e/node/images.sh          # names: WEIR_NODE_WORKER_IMAGE, WEIR_NODE_OPERATOR_IMAGE
#   WEIR_NODE_NO_IMPORT=1 e2e/node/images.sh   # build only (no node needed)
#   WEIR_NODE_BINARIES=DIR e2e/node/images.sh  # CI: the Dockerfile with BINARIES=prebuilt, its
#       binaries DIR/weir and DIR/weir-operator (CI's own `cargo build`): no builder image and
#       no second Rust build; the build context is a directory with just those two files
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
# shellcheck source=lib.sh
source "$HERE/lib.sh"

[[ "$(id -u)" == 0 ]] || die "e2e/node/images.sh needs root (apt-get, dockerd, debootstrap)"
IMPORT=1
[[ "${WEIR_NODE_NO_IMPORT:-0}" == 1 ]] && IMPORT=0
((!IMPORT)) || ctr_k8s version >/dev/null 2>&1 ||
  die "the node's containerd is not running: run e2e/node/up.sh first (or WEIR_NODE_NO_IMPORT=1 to only build)"

apt_install "$NODE_CACHE/apt-images.log" docker.io debootstrap
# Debian's CLI, not another `docker` on PATH: it builds with BuildKit without a buildx plugin.
DOCKER_BIN=/usr/bin/docker
export DOCKER_HOST="unix://$DOCKER_STATE/docker.sock" DOCKER_BUILDKIT=1
docker_() { "$DOCKER_BIN" "$@"; }
image_exists() { docker_ image inspect "$1" >/dev/null 2>&1; }
phase_start=$(date +%s)
phase() { # message: logs the time since the previous phase
  local t
  t=$(date +%s)
  log "$1 ($((t - phase_start))s)"
  phase_start=$t
}

# --- our Docker daemon ---------------------------------------------------------------------------
mkdir -p "$DOCKER_STATE" "$DOCKER_ROOT"
started_docker=0
if ! docker_ version >/dev/null 2>&1; then
  log "starting dockerd ($DOCKER_HOST, data root $DOCKER_ROOT)"
  # --oom-score-adjust 0: the default -500 needs CAP_SYS_RESOURCE.
  setsid nohup /usr/sbin/dockerd --data-root "$DOCKER_ROOT" --exec-root "$DOCKER_STATE" \
    --host "$DOCKER_HOST" --pidfile "$DOCKER_STATE/dockerd.pid" \
    --iptables=false --ip-forward=false --bridge=none --oom-score-adjust 0 \
    >"$NODE_CACHE/dockerd.log" 2>&1 </dev/null &
  started_docker=1
  for _ in $(seq 60); do docker_ version >/dev/null 2>&1 && break; sleep 0.5; done
  docker_ version >/dev/null 2>&1 || { tail -20 "$NODE_CACHE/dockerd.log" >&2; die "dockerd did not start"; }
fi
stop_docker() {
  ((started_docker)) && [[ "${WEIR_DOCKER_KEEP:-0}" != 1 ]] || return 0
  local pid
  pid="$(cat "$DOCKER_STATE/dockerd.pid" 2>/dev/null)" || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 100); do alive "$pid" || break; sleep 0.2; done
}
tmp=""
cleanup() {
  [[ -z "$tmp" ]] || rm -rf "$tmp"
  stop_docker
}
trap cleanup EXIT
phase "dockerd ready"

# --- 1. base image -------------------------------------------------------------------------------
if ! image_exists "$BASE_IMAGE"; then
  tmp="$(mktemp -d /tmp/weir-debootstrap.XXXXXX)"
  log "debootstrap --variant=minbase $DEBIAN_SUITE (log: $NODE_CACHE/debootstrap.log)"
  debootstrap --variant=minbase "$DEBIAN_SUITE" "$tmp/rootfs" http://deb.debian.org/debian \
    >"$NODE_CACHE/debootstrap.log" 2>&1 || { tail -20 "$NODE_CACHE/debootstrap.log" >&2; die "debootstrap failed"; }
  tar -C "$tmp/rootfs" --exclude='./var/cache/apt/archives/*.deb' --exclude='./var/lib/apt/lists/*' -c . |
    docker_ import - "$BASE_IMAGE" >/dev/null
  rm -rf "$tmp"
  tmp=""
  phase "base image $BASE_IMAGE imported"
fi

# --- 2. builder image (not needed for prebuilt binaries) -----------------------------------------
PREBUILT="${WEIR_NODE_BINARIES:-}"
BUILD_ARGS=(--build-arg "BASE_IMAGE=$BASE_IMAGE")
CONTEXT="$ROOT"
if [[ -n "$PREBUILT" ]]; then
  for b in weir weir-operator; do [[ -x "$PREBUILT/$b" ]] || die "WEIR_NODE_BINARIES=$PREBUILT: no executable $b there"; done
  # The context holds the two binaries and nothing else (hard links where the file system
  # allows: the debug binaries are 200 MB).
  tmp="$(mktemp -d "$NODE_CACHE/context.XXXXXX")"
  for b in weir weir-operator; do ln "$PREBUILT/$b" "$tmp/$b" 2>/dev/null || cp "$PREBUILT/$b" "$tmp/$b"; done
  CONTEXT="$tmp"
  BUILD_ARGS+=(--build-arg BINARIES=prebuilt)
  log "binaries from $PREBUILT (BINARIES=prebuilt): no builder image, no cargo build in Docker"
else
  SYSROOT="$(rustc --print sysroot)"
  RUSTC_VERSION="$(rustc --version | awk '{ print $2 }')"
  BUILDER_IMAGE="weir-builder:$RUSTC_VERSION-$DEBIAN_SUITE"
  TOOLCHAIN_IMAGE="weir-rust-toolchain:$RUSTC_VERSION"
  if ! image_exists "$BUILDER_IMAGE"; then
    if ! image_exists "$TOOLCHAIN_IMAGE"; then
      log "importing the Rust toolchain $SYSROOT (rustc $RUSTC_VERSION, without its docs) as $TOOLCHAIN_IMAGE"
      tar -C "$(readlink -f "$SYSROOT")" --exclude=./share/doc -c . | docker_ import - "$TOOLCHAIN_IMAGE" >/dev/null
    fi
    tmp="$(mktemp -d /tmp/weir-builder.XXXXXX)" # the context: the host's local CAs only
    mkdir "$tmp/ca"
    cp /usr/local/share/ca-certificates/*.crt "$tmp/ca/" 2>/dev/null || true
    docker_ build --network host -f "$HERE/builder.Dockerfile" -t "$BUILDER_IMAGE" \
      --build-arg "BASE_IMAGE=$BASE_IMAGE" --build-arg "TOOLCHAIN_IMAGE=$TOOLCHAIN_IMAGE" "$tmp" >&2
    rm -rf "$tmp"
    tmp=""
    # The toolchain lives on in the builder's layer; the import was only a way in.
    docker_ rmi "$TOOLCHAIN_IMAGE" >/dev/null
    phase "builder image $BUILDER_IMAGE built"
  fi
  BUILD_ARGS+=(--build-arg "BUILDER_IMAGE=$BUILDER_IMAGE")
fi

# --- 3. the images -------------------------------------------------------------------------------
for pair in "worker=$NODE_WORKER_IMAGE" "operator=$NODE_OPERATOR_IMAGE"; do
  target="${pair%%=*}"
  image="${pair#*=}"
  log "docker build --target $target -t $image ${BUILD_ARGS[*]}"
  docker_ build --network host --target "$target" -t "$image" -f "$ROOT/Dockerfile" \
    "${BUILD_ARGS[@]}" "$CONTEXT" >&2
  phase "built $image"
done

# --- 4. into the node's containerd ---------------------------------------------------------------
if ((IMPORT)); then
  docker_ save "$NODE_WORKER_IMAGE" "$NODE_OPERATOR_IMAGE" | ctr_k8s images import - >/dev/null
  phase "imported $NODE_WORKER_IMAGE and $NODE_OPERATOR_IMAGE into the node's containerd"
fi
# Dangling images of earlier builds would otherwise pile up in the data root.
docker_ image prune -f >/dev/null
