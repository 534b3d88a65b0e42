#!/usr/bin/env bash
# Installs the s3s-fs S3-compatible server used by weir-storage's integration tests
# (worker/storage/tests/s3.rs) into a cache outside the work tree.
#
#   WEIR_CACHE   cache root (default: $HOME/.cache/weir); the binary lands in $WEIR_CACHE/bin/s3s-fs
#
# Idempotent: does nothing when the pinned version is already installed.
set -euo pipefail

VERSION="0.14.1"
CACHE="${WEIR_CACHE:-$HOME/.cache/weir}"
BIN="$CACHE/bin/s3s-fs"
STAMP="$CACHE/bin/.s3s-fs-version"

if [[ -x "$BIN" && "$(cat "$STAMP" 2>/dev/null)" == "$VERSION" ]]; then
    echo "s3s-fs $VERSION already installed at $BIN"
    exit 0
fi

mkdir -p "$CACHE/bin"
echo "installing s3s-fs $VERSION into $CACHE (takes a few minutes on 2 cores)"
# Its own target dir so it neither pollutes nor waits on the workspace's build lock.
CARGO_TARGET_DIR="$CACHE/target-s3s-fs" \
    nice -n 10 cargo install "s3s-fs@$VERSION" --features binary --locked --root "$CACHE"
echo "$VERSION" >"$STAMP"
echo "installed $BIN"
