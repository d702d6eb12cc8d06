#!/usr/bin/env bash
# Installs the system packages kvfleet builds and tests with (Debian, as root).
# Idempotent: skips apt when everything is already there. Extra package names
# may be given as arguments (benchmarks ask for their peers, e.g. nutcracker).
set -euo pipefail

PKGS=(redis-server redis-tools build-essential pkg-config ca-certificates "$@")

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null; then
  echo "deps: cargo not found; install the Rust toolchain (rustup, Rust >= 1.95) first" >&2
  exit 1
fi
for comp in rustfmt clippy; do
  rustup component list --installed 2>/dev/null | grep -q "^$comp" || rustup component add "$comp" >/dev/null 2>&1 || true
done
