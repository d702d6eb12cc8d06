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
# One release build serves the binaries and the tests (2 cores: keep builds shared).
# No doc-tests: the crates have none, and empty runs would close the log.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --release --workspace --lib --bins --tests -- --test-threads 2 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
if [ "$status" = 0 ]; then
  # The production build (profile-guided, scripts/build-release.sh) is a
  # different binary: the end-to-end suites run against it too.
  echo "== profile-guided release build, and the e2e suites against it"
  bin=$(bash scripts/build-release.sh)
  set +e
  KVFLEET_BIN_DIR=$(dirname "$bin") cargo test --release -p kvfleet-e2e -- --test-threads 2 2>&1 |
    tee -a "$log"
  status=${PIPESTATUS[0]}
  set -e
fi
passed=$(grep -o '[0-9]* passed' "$log" | awk '{s+=$1} END {print s+0}')
failed=$(grep -o '[0-9]* failed' "$log" | awk '{s+=$1} END {print s+0}')
echo "kvfleet: $passed passed, $failed failed"
exit "$status"
