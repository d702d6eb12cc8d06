#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it: formatting, lints, unit tests,
# and the end-to-end suites against real binaries and Debian's redis-server.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --release --all-targets -- -D warnings
echo "== build"
cargo build --release --workspace --bins
echo "== tests"
# One release build serves clippy, the binaries and the tests (2 cores: keep builds shared).
cargo test --release --workspace -- --test-threads 2
