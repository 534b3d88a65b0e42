#!/usr/bin/env bash
# Installs what the local Kubernetes control plane needs, caching everything under
# ${WEIR_CACHE:-$HOME/.cache/weir}/k8s:
#   - apt packages: etcd-server, rsync, openssl, curl and the build tools;
#   - Go 1.15 from Debian bullseye (apt-get download + dpkg -x, never installed system-wide);
#   - Debian bookworm's `kubernetes` source package (1.20.2, vendored);
#   - kube-apiserver, kube-controller-manager and kube-scheduler built from it with Go 1.15.
# The bullseye and deb-src entries live only in a private apt configuration under the cache
# (own sources.list and lists directory), so the system's apt sources are never changed and a
# later `apt-get install` of bookworm packages is unaffected.
# On a warm cache (binaries present, version stamp matching) it returns in well under a second.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
source "$HERE/lib.sh"

APT_PACKAGES=(etcd-server rsync openssl curl make gcc dpkg-dev xz-utils ca-certificates)

binaries_ok() {
  local b
  [[ -f "$K8S_BIN/STAMP" && "$(cat "$K8S_BIN/STAMP")" == "$K8S_STAMP" ]] || return 1
  for b in "${K8S_BINARIES[@]}"; do [[ -x "$K8S_BIN/$b" ]] || return 1; done
}

# Fast path: nothing to do.
if binaries_ok && [[ -z "$(missing_apt_packages "${APT_PACKAGES[@]}")" ]]; then
  log "control plane binaries up to date in $K8S_BIN ($K8S_STAMP)"
  exit 0
fi

[[ "$(id -u)" == 0 ]] || die "install.sh needs root (apt-get install)"
mkdir -p "$K8S_CACHE"
exec 9>"$K8S_CACHE/.install.lock"
flock 9 # one install at a time

# 1. System packages from the machine's normal (bookworm) sources.
apt_install "$K8S_CACHE/apt-install.log" "${APT_PACKAGES[@]}"

if binaries_ok; then
  log "control plane binaries up to date in $K8S_BIN ($K8S_STAMP)"
  exit 0
fi

# 2. A private apt configuration: bookworm deb-src and bullseye binaries, used only for
#    `apt-get source` / `apt-get download` by this script.
APT_DIR="$K8S_CACHE/apt"
mkdir -p "$APT_DIR/lists/partial" "$APT_DIR/archives/partial" "$K8S_CACHE/downloads"
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
cat >"$APT_DIR/sources.list" <<SRC
deb-src [signed-by=$KEYRING] http://deb.debian.org/debian bookworm main
deb-src [signed-by=$KEYRING] http://deb.debian.org/debian-security bookworm-security main
deb [signed-by=$KEYRING] http://deb.debian.org/debian bullseye main
deb [signed-by=$KEYRING] http://deb.debian.org/debian-security bullseye-security main
SRC
PAPT=(
  -o "Dir::Etc::SourceList=$APT_DIR/sources.list"
  -o "Dir::Etc::SourceParts=/dev/null"
  -o "Dir::State::Lists=$APT_DIR/lists"
  -o "Dir::Cache::archives=$APT_DIR/archives"
  -o "Dir::Cache::pkgcache="
  -o "Dir::Cache::srcpkgcache="
  -o "APT::Sandbox::User=root"
  -o "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false"
  -o "Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false"
  -o "Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false"
  -o "Acquire::IndexTargets::deb::CNF::DefaultEnabled=false"
)
private_apt_updated=0
private_apt_update() {
  ((private_apt_updated)) && return 0
  log "updating private apt lists (bookworm deb-src, bullseye) in $APT_DIR"
  apt-get "${PAPT[@]}" update >"$APT_DIR/update.log" 2>&1 ||
    { tail -20 "$APT_DIR/update.log" >&2; die "private apt-get update failed"; }
  private_apt_updated=1
}

# 3. Go 1.15 (bullseye), unpacked, never installed.
GO_DIR="$K8S_CACHE/go1.15"
GOROOT_DIR="$GO_DIR/usr/lib/go-1.15"
if [[ ! -f "$GO_DIR/STAMP" || "$(cat "$GO_DIR/STAMP")" != "$GO_DEB_VERSION" ]]; then
  private_apt_update
  dl="$K8S_CACHE/downloads"
  (cd "$dl" && apt-get "${PAPT[@]}" download \
    "golang-1.15-go=$GO_DEB_VERSION" "golang-1.15-src=$GO_DEB_VERSION" >"$APT_DIR/download-go.log" 2>&1) ||
    { tail -20 "$APT_DIR/download-go.log" >&2; die "apt-get download golang-1.15 failed"; }
  rm -rf "$GO_DIR"
  mkdir -p "$GO_DIR"
  for deb in "$dl"/golang-1.15-go_*.deb "$dl"/golang-1.15-src_*.deb; do dpkg -x "$deb" "$GO_DIR"; done
  "$GOROOT_DIR/bin/go" version >/dev/null || die "unpacked Go 1.15 does not run"
  echo "$GO_DEB_VERSION" >"$GO_DIR/STAMP"
fi
export GOROOT="$GOROOT_DIR"
export PATH="$GOROOT/bin:$PATH"
log "using $(go version) from $GOROOT"

# 4. Kubernetes source (bookworm deb-src), unpacked with Debian's patches applied.
SRC_DIR="$K8S_CACHE/src"
K8S_TREE="$SRC_DIR/kubernetes"
if [[ ! -f "$SRC_DIR/STAMP" || "$(cat "$SRC_DIR/STAMP")" != "$K8S_SRC_VERSION" ]]; then
  dl="$K8S_CACHE/downloads"
  dsc="$dl/${K8S_SRC_PKG}_${K8S_SRC_VERSION#*:}.dsc"
  if [[ ! -f "$dsc" ]]; then
    private_apt_update
    (cd "$dl" && apt-get "${PAPT[@]}" source --download-only "$K8S_SRC_PKG=$K8S_SRC_VERSION" \
      >"$APT_DIR/download-src.log" 2>&1) ||
      { tail -20 "$APT_DIR/download-src.log" >&2; die "apt-get source $K8S_SRC_PKG failed"; }
  fi
  rm -rf "$SRC_DIR"
  mkdir -p "$SRC_DIR"
  log "unpacking $(basename "$dsc")"
  dpkg-source --no-check -x "$dsc" "$K8S_TREE" >"$K8S_CACHE/unpack.log" 2>&1 ||
    { tail -20 "$K8S_CACHE/unpack.log" >&2; die "dpkg-source -x failed"; }
  echo "$K8S_SRC_VERSION" >"$SRC_DIR/STAMP"
fi

# 5. Build the three binaries with Go 1.15.
log "building ${K8S_BINARIES[*]} (Go 1.15, nice 15); log: $K8S_CACHE/build.log"
start=$(date +%s)
whats=()
for b in "${K8S_BINARIES[@]}"; do whats+=("cmd/$b"); done
(
  cd "$K8S_TREE"
  export CGO_ENABLED=0 GOFLAGS=-mod=vendor GOPROXY=off GOTOOLCHAIN=local
  export GOCACHE="$K8S_CACHE/gocache"
  nice -n 15 make WHAT="${whats[*]}"
) >"$K8S_CACHE/build.log" 2>&1 || { tail -40 "$K8S_CACHE/build.log" >&2; die "kubernetes build failed"; }
elapsed=$(($(date +%s) - start))

mkdir -p "$K8S_BIN"
rm -f "$K8S_BIN/STAMP"
for b in "${K8S_BINARIES[@]}"; do
  install -m 0755 "$K8S_TREE/_output/bin/$b" "$K8S_BIN/$b.tmp"
  mv -f "$K8S_BIN/$b.tmp" "$K8S_BIN/$b"
done
echo "$K8S_STAMP" >"$K8S_BIN/STAMP"
log "kubernetes build took ${elapsed}s ($((elapsed / 60))m$((elapsed % 60))s)"
log "version: $("$K8S_BIN/kube-apiserver" --version)"

# The build tree and Go build cache are large and no longer needed once the binaries are
# cached; the downloaded sources stay so a rebuild needs no network.
if [[ "${WEIR_K8S_KEEP_BUILD:-0}" != 1 ]]; then
  rm -rf "$K8S_TREE/_output" "$K8S_CACHE/gocache"
fi
log "binaries cached in $K8S_BIN"
