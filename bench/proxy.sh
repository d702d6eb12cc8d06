#!/usr/bin/env bash
# kvfleet-proxy vs direct redis-server vs twemproxy (nutcracker), 2 redis-server backends.
# Env: ROUNDS (3), TESTS, PIPES ("1,16"), N1/N16. Output ends with one SUMMARY line.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh nutcracker
cargo build --release --bins -q
python3 bench/proxy.py | tee "bench/out-proxy-$(date +%Y%m%d-%H%M%S).txt"
