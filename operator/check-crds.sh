#!/usr/bin/env bash
# Regenerates the CRDs (StreamJob, StreamJobSnapshot) from the Rust types and fails when
# crds/<kind>.yaml, or the Helm chart's copy charts/weir-operator/crds/<kind>.yaml, differs.
# Regenerate them all with: operator/check-crds.sh --write
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
generated="$(mktemp)"
trap 'rm -f "$generated"' EXIT

stale=0
for kind in streamjob streamjobsnapshot; do
    copies=("$root/crds/$kind.yaml" "$root/charts/weir-operator/crds/$kind.yaml")
    (cd "$root" && cargo run --quiet -p weir-operator --bin crdgen -- "$kind") > "$generated"
    if [[ "${1:-}" == --write ]]; then
        for f in "${copies[@]}"; do cp "$generated" "$f"; echo "wrote ${f#"$root"/}"; done
        continue
    fi
    for f in "${copies[@]}"; do
        if ! diff -u "$f" "$generated"; then
            echo "${f#"$root"/} is stale: the $kind types changed." >&2
            stale=1
        fi
    done
done
if ((stale)); then
    echo "Regenerate with: operator/check-crds.sh --write" >&2
    exit 1
fi
[[ "${1:-}" == --write ]] || echo "crds/ and the chart's copies are up to date."
