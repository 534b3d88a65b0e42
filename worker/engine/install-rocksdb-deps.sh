#!/usr/bin/env bash
# System libraries the RocksDB state backend links against (Debian bookworm).
# The `rocksdb` crate links the distribution's librocksdb (7.8.3) instead of compiling
# RocksDB's C++ (which takes ~20+ minutes on 2 cores); bindgen needs libclang for the C header.
# The link location is set in .cargo/config.toml ([env] ROCKSDB_LIB_DIR, SNAPPY_LIB_DIR, ...).
# Also the `openssl` command, with which the TLS tests make their CA and certificates
# (weir_contract::security::testing).
# Idempotent: installs only what is missing.
set -euo pipefail

packages=(librocksdb-dev libsnappy-dev liblz4-dev libzstd-dev zlib1g-dev libbz2-dev libclang-dev clang openssl)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "rocksdb deps: all installed (${packages[*]})"
  exit 0
fi

echo "rocksdb deps: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y --no-install-recommends "${missing[@]}"
