#!/usr/bin/env bash
# Installs Helm's Go SDK for Python (PyPI helm-python-sdk: no helm binary is packaged for this
# machine) into a venv under the cache, once. Prints the venv's python on the last line.
set -euo pipefail
CACHE="${WEIR_CACHE:-$HOME/.cache/weir}"
VENV="$CACHE/helm-venv"
VERSION=0.2.2
if [[ -x "$VENV/bin/python" ]] && "$VENV/bin/python" -c "import importlib.metadata as m, sys; import yaml; sys.exit(m.version('helm-python-sdk') != '$VERSION')" 2>/dev/null; then
  echo "$VENV/bin/python"
  exit 0
fi
command -v python3 >/dev/null || { echo "python3 is required" >&2; exit 1; }
python3 -m venv "$VENV" >&2
"$VENV/bin/pip" install --quiet --disable-pip-version-check "helm-python-sdk==$VERSION" "PyYAML==6.0.2" >&2
"$VENV/bin/python" -c "import helm_python" >&2
echo "$VENV/bin/python"
