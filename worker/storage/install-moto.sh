#!/usr/bin/env bash
# Installs moto's S3 server (PyPI `moto`), the second S3-compatible server weir-storage's
# tests start (`weir_storage::testing::Moto`): unlike s3s-fs it implements
# ListMultipartUploads, as S3 does, which the tests of uploads whose writer died before
# recording them need. Into a virtualenv in a cache outside the work tree, every package pinned
# (worker/storage/moto-requirements.txt).
#
#   WEIR_CACHE   cache root (default: $HOME/.cache/weir); the server lands in
#                $WEIR_CACHE/moto-$VERSION/bin/moto_server
#
# Idempotent: does nothing when the pinned version is already installed.
set -euo pipefail

VERSION="5.2.6"
CACHE="${WEIR_CACHE:-$HOME/.cache/weir}"
DIR="$CACHE/moto-$VERSION"
REQUIREMENTS="$(cd "$(dirname "$0")" && pwd)/moto-requirements.txt"

STAMP="$DIR/.installed"
if [[ -f "$STAMP" ]]; then
    echo "moto $VERSION already installed at $DIR/bin/moto_server"
    exit 0
fi

python3 -c "import ensurepip, venv" 2>/dev/null || { apt-get update -q && apt-get install -y -q python3-venv; }
echo "installing moto $VERSION into $DIR"
# The stamp is written last: an interrupted install is redone from scratch.
rm -rf "$DIR"
mkdir -p "$CACHE"
python3 -m venv "$DIR"
"$DIR/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQUIREMENTS"
touch "$STAMP"
echo "installed $DIR/bin/moto_server"
