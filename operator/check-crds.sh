#!/usr/bin/env bash
# Regenerates the StreamJob CRD from the Rust types and fails when crds/streamjob.yaml, or the
# Helm chart's copy charts/weir-operator/crds/streamjob.yaml, differs.
# Regenerate both with: operator/check-crds.sh --write
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
copies=("$root/crds/streamjob.yaml" "$root/charts/weir-operator/crds/streamjob.yaml")
generated="$(mktemp)"
trap 'rm -f "$generated"' EXIT

(cd "$root" && cargo run --quiet -p weir-operator --bin crdgen) > "$generated"

if [[ "${1:-}" == --write ]]; then
    for f in "${copies[@]}"; do cp "$generated" "$f"; echo "wrote ${f#"$root"/}"; done
    exit 0
fi
stale=0
for f in "${copies[@]}"; do
    if ! diff -u "$f" "$generated"; then
        echo "${f#"$root"/} is stale: the StreamJob types changed." >&2
        stale=1
    fi
done
if ((stale)); then
    echo "Regenerate with: operator/check-crds.sh --write" >&2
    exit 1
fi
echo "crds/streamjob.yaml and the chart's copy are up to date."
