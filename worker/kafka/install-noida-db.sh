#!/usr/bin/env bash
# Installs noida-db, the Kafka-protocol broker weir-kafka's integration tests start
# (worker/kafka/tests/kafka.rs), from PyPI into a cache outside the work tree.
#
#   WEIR_CACHE   cache root (default: $HOME/.cache/weir); the binary lands in
#                $WEIR_CACHE/noida-db-$VERSION/noida_db/noida-db
#
# Idempotent: does nothing when the pinned version is already installed. The package is one
# static binary; `--no-deps` because its Python wrapper is not used.
set -euo pipefail

VERSION="0.2.3"
CACHE="${WEIR_CACHE:-$HOME/.cache/weir}"
DIR="$CACHE/noida-db-$VERSION"
BIN="$DIR/noida_db/noida-db"

if [[ -x "$BIN" ]]; then
    echo "noida-db $VERSION already installed at $BIN"
    exit 0
fi

echo "installing noida-db $VERSION into $DIR"
# A temporary directory first, renamed at the end: an interrupted install leaves no half copy.
TMP="$(mktemp -d "$CACHE/.noida-db-XXXXXX")"
trap 'rm -rf "$TMP"' EXIT
PIP=(python3 -m pip)
"${PIP[@]}" --version >/dev/null 2>&1 || PIP=(pip3)
"${PIP[@]}" install --quiet --disable-pip-version-check --no-deps --target "$TMP" "noida-db==$VERSION"
chmod +x "$TMP/noida_db/noida-db"
rm -rf "$DIR"
mv "$TMP" "$DIR"
trap - EXIT
echo "installed $BIN"
