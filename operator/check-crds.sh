#!/usr/bin/env bash
# Regenerates the StreamJob CRD from the Rust types and fails when crds/streamjob.yaml differs.
# Regenerate with: cargo run -p weir-operator --bin crdgen > crds/streamjob.yaml
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
checked_in="$root/crds/streamjob.yaml"
generated="$(mktemp)"
trap 'rm -f "$generated"' EXIT

(cd "$root" && cargo run --quiet -p weir-operator --bin crdgen) > "$generated"

if ! diff -u "$checked_in" "$generated"; then
    echo >&2
    echo "crds/streamjob.yaml is stale: the StreamJob types changed." >&2
    echo "Regenerate it with: cargo run -p weir-operator --bin crdgen > crds/streamjob.yaml" >&2
    exit 1
fi
echo "crds/streamjob.yaml is up to date."
