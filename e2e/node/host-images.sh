#!/usr/bin/env bash
# A shortcut to the node's images without Docker or a release build: packs the workspace's
# debug `weir` and `weir-operator` (as `cargo test --workspace` built them in CARGO_TARGET_DIR)
# with the shared libraries `ldd` names, tini (static), busybox (`sh`, `kill`, `sleep`… for
# `kubectl exec`) and the host's CA bundle into one-layer images (image.py), user 65532, with
# the Dockerfile's entrypoints, and imports them into the node's containerd. For iterating on
# the suite; images.sh builds the images users get (the Dockerfile). Same Debian release as
# the host is assumed (the libraries are the host's).
#
#   e2e/node/host-images.sh     # names: WEIR_NODE_WORKER_IMAGE, WEIR_NODE_OPERATOR_IMAGE
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
# shellcheck source=lib.sh
source "$HERE/lib.sh"

BIN_DIR="${CARGO_TARGET_DIR:-$ROOT/target}/debug"
ctr_k8s version >/dev/null 2>&1 || die "the node's containerd is not running: run e2e/node/up.sh first"
apt_install "$NODE_CACHE/apt-images.log" tini busybox-static ca-certificates
tmp="$(mktemp -d /tmp/weir-host-images.XXXXXX)"
trap 'rm -rf "$tmp"' EXIT

pack() { # binary image
  local bin="$BIN_DIR/$1" lib args
  [[ -x "$bin" ]] || die "missing $bin (cargo test --workspace --no-run builds it)"
  args=(--user 65532:65532 --entrypoint "[\"/usr/bin/tini\", \"--\", \"/usr/local/bin/$1\"]" --dir /tmp
    --file "$bin:/usr/local/bin/$1:0755" --file /usr/bin/tini-static:/usr/bin/tini:0755
    --file /bin/busybox:/bin/busybox:0755
    --file /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:0644)
  for a in sh sleep cat kill ls echo; do args+=(--symlink "/bin/$a:busybox"); done
  # Each library at the path the binary asks for, with the content of the file it resolves to.
  for lib in $(ldd "$bin" | awk '/=> \// { print $3 } /^\t\// { print $1 }'); do
    args+=(--file "$(readlink -f "$lib"):$lib:0755")
  done
  python3 "$HERE/image.py" "$tmp/$1.tar" "$2" "${args[@]}" >/dev/null
  ctr_k8s images import "$tmp/$1.tar" >/dev/null
  rm -f "$tmp/$1.tar"
  log "imported $2 ($1 from $BIN_DIR)"
}
pack weir "$NODE_WORKER_IMAGE"
pack weir-operator "$NODE_OPERATOR_IMAGE"
