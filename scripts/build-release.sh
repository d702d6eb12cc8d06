#!/usr/bin/env bash
# The production build of kvfleet-server and kvfleet-proxy: profile-guided
# (PGO). Builds them instrumented, runs scripts/pgo-train.sh against them, and
# rebuilds with the profile; prints the server binary's path (the proxy is
# beside it: target/pgo/release/).
# Why: docs/decisions/0012-profile-guided-build.md. The plain
# `cargo build --release` binary behaves the same, only slower.
set -euo pipefail
cd "$(dirname "$0")/.."
# llvm-profdata must read what rustc's LLVM wrote: the same major version
llvm=$(rustc -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')
if ! dpkg-query -W -f='${Status}' "llvm-$llvm" 2>/dev/null | grep -q "install ok installed" &&
  ! apt-cache show "llvm-$llvm" >/dev/null 2>&1; then
  apt-get update -qq >&2 || true
  if ! apt-cache show "llvm-$llvm" >/dev/null 2>&1; then
    echo "build-release: rustc uses LLVM $llvm and Debian has no llvm-$llvm package;" \
      "PGO needs that version's llvm-profdata (or use the plain cargo build --release)" >&2
    exit 1
  fi
fi
bash scripts/deps.sh "llvm-$llvm" >&2
profdata=/usr/lib/llvm-$llvm/bin/llvm-profdata
root=$PWD/target
prof=$root/pgo-profile
rm -rf "$prof"
mkdir -p "$prof"

echo "== PGO 1/3: instrumented build" >&2
CARGO_TARGET_DIR=$root/pgo-gen RUSTFLAGS="-Cprofile-generate=$root/pgo-gen/profraw" \
  cargo build --release --quiet -p kvfleet-server -p kvfleet-proxy >&2
# what the instrumented build scripts and proc-macros wrote while compiling: unused
rm -rf "$root/pgo-gen/profraw"
echo "== PGO 2/3: training (scripts/pgo-train.sh)" >&2
LLVM_PROFILE_FILE="$prof/kv-%m-%p.profraw" bash scripts/pgo-train.sh \
  "$root/pgo-gen/release/kvfleet-server" "$root/pgo-gen/release/kvfleet-proxy" >&2
"$profdata" merge -o "$prof/kvfleet.profdata" "$prof"/*.profraw
echo "== PGO 3/3: optimised build" >&2
CARGO_TARGET_DIR=$root/pgo \
  RUSTFLAGS="-Cprofile-use=$prof/kvfleet.profdata -Cllvm-args=-pgo-warn-missing-function=false" \
  cargo build --release --quiet -p kvfleet-server -p kvfleet-proxy >&2
echo "$root/pgo/release/kvfleet-server"
