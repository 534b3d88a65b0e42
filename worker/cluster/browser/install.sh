#!/usr/bin/env bash
# Installs what the dashboard's browser test (worker/cli/tests/cli.rs,
# the_dashboard_in_chromium_*) drives: Debian's chromium and Node.js from apt, and the
# package-lock'd playwright-core from the npm registry into a cache outside the work tree.
#
#   WEIR_CACHE   cache root (default: $HOME/.cache/weir); playwright-core lands in
#                $WEIR_CACHE/playwright-core-<version>/node_modules, printed as the last line
#
# Idempotent: does nothing when chromium, node and the locked playwright-core are there.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VERSION="1.65.1" # keep in step with package.json and package-lock.json
CACHE="${WEIR_CACHE:-$HOME/.cache/weir}"
DIR="$CACHE/playwright-core-$VERSION"
STAMP="$DIR/.lock-sha256"

missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
if ((${#missing[@]})); then
    echo "installing ${missing[*]} from apt"
    SUDO=""
    [[ $(id -u) == 0 ]] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

want="$(sha256sum "$HERE/package-lock.json" | cut -d' ' -f1)"
if [[ -d "$DIR/node_modules/playwright-core" && "$(cat "$STAMP" 2>/dev/null)" == "$want" ]]; then
    echo "playwright-core $VERSION already installed"
else
    echo "installing playwright-core $VERSION into $DIR"
    mkdir -p "$DIR"
    cp "$HERE/package.json" "$HERE/package-lock.json" "$DIR/"
    # --ignore-scripts: playwright-core has no install step; no browser is downloaded.
    (cd "$DIR" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
    echo "$want" >"$STAMP"
fi
echo "$DIR/node_modules"
