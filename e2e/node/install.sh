#!/usr/bin/env bash
# Installs what a real Kubernetes node next to the local control plane needs, cached under
# ${WEIR_CACHE:-$HOME/.cache/weir}:
#   - apt packages (bookworm): containerd (1.6), runc, containernetworking-plugins, iptables,
#     conntrack, and gcc/libc6-dev for the pause binary;
#   - kubelet and kube-proxy built from the control plane's Debian `kubernetes` source (1.20.2)
#     with its Go 1.15 (e2e/controlplane/install.sh fetches both first), into k8s/bin;
#   - the pause image: build/pause/linux/pause.c from that source, compiled static and packed
#     as an image archive (node/images/pause.tar) that up.sh imports into containerd.
# Idempotent: on a warm cache (stamp matching, files present) it returns in well under a second.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
source "$HERE/lib.sh"

node_ok() {
  local b
  [[ -f "$K8S_BIN/STAMP.node" && "$(cat "$K8S_BIN/STAMP.node")" == "$NODE_STAMP" ]] || return 1
  for b in "${NODE_BINARIES[@]}"; do [[ -x "$K8S_BIN/$b" ]] || return 1; done
  [[ -f "$NODE_IMAGES/pause.tar" ]]
}

if node_ok && [[ -z "$(missing_apt_packages "${NODE_APT_PACKAGES[@]}")" ]]; then
  log "node binaries up to date in $K8S_BIN ($NODE_STAMP)"
  exit 0
fi

[[ "$(id -u)" == 0 ]] || die "e2e/node/install.sh needs root (apt-get install)"
# The source, Go and the private apt configuration come from the control plane's install.
"$HERE/../controlplane/install.sh"
mkdir -p "$NODE_CACHE" "$NODE_IMAGES"
exec 9>"$NODE_CACHE/.install.lock"
flock 9

apt_install "$NODE_CACHE/apt-install.log" "${NODE_APT_PACKAGES[@]}"
# Debian's containerd package may start its own daemon (where services run); ours runs with its
# own socket, root and state (up.sh), so the two never share containers.

if node_ok; then
  log "node binaries up to date in $K8S_BIN ($NODE_STAMP)"
  exit 0
fi

K8S_TREE="$K8S_CACHE/src/kubernetes"
[[ -d "$K8S_TREE" ]] || die "no kubernetes source in $K8S_TREE (e2e/controlplane/install.sh unpacks it)"
GOROOT_DIR="$K8S_CACHE/go1.15/usr/lib/go-1.15"
[[ -x "$GOROOT_DIR/bin/go" ]] || die "no Go 1.15 in $GOROOT_DIR (e2e/controlplane/install.sh unpacks it)"

log "building ${NODE_BINARIES[*]} (Go 1.15, nice 15); log: $NODE_CACHE/build.log"
start=$(date +%s)
whats=()
for b in "${NODE_BINARIES[@]}"; do whats+=("cmd/$b"); done
(
  cd "$K8S_TREE"
  export GOROOT="$GOROOT_DIR" PATH="$GOROOT_DIR/bin:$PATH"
  export CGO_ENABLED=0 GOFLAGS=-mod=vendor GOPROXY=off GOTOOLCHAIN=local
  export GOCACHE="$K8S_CACHE/gocache"
  nice -n 15 make WHAT="${whats[*]}"
) >"$NODE_CACHE/build.log" 2>&1 || { tail -40 "$NODE_CACHE/build.log" >&2; die "kubelet/kube-proxy build failed"; }
log "kubelet/kube-proxy build took $(($(date +%s) - start))s"

mkdir -p "$K8S_BIN"
rm -f "$K8S_BIN/STAMP.node"
for b in "${NODE_BINARIES[@]}"; do
  install -m 0755 "$K8S_TREE/_output/bin/$b" "$K8S_BIN/$b.tmp"
  mv -f "$K8S_BIN/$b.tmp" "$K8S_BIN/$b"
done

# The pause container: the sandbox every pod's namespaces hang on. Upstream's image is this
# program alone; compiled static, it needs nothing else in the image.
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
gcc -Os -static -DVERSION="${K8S_SRC_VERSION%%-*}" -o "$tmp/pause" "$K8S_TREE/build/pause/linux/pause.c" \
  2>"$NODE_CACHE/pause-build.log" || { cat "$NODE_CACHE/pause-build.log" >&2; die "compiling pause.c failed"; }
strip "$tmp/pause"
python3 "$HERE/image.py" "$NODE_IMAGES/pause.tar" "$PAUSE_IMAGE" \
  --entrypoint '["/pause"]' --user 65535:65535 --file "$tmp/pause:/pause:0755" >/dev/null

echo "$NODE_STAMP" >"$K8S_BIN/STAMP.node"
if [[ "${WEIR_K8S_KEEP_BUILD:-0}" != 1 ]]; then
  rm -rf "$K8S_TREE/_output" "$K8S_CACHE/gocache"
fi
log "node installed: $("$K8S_BIN/kubelet" --version), kube-proxy, $PAUSE_IMAGE"
