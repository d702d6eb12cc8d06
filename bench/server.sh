#!/usr/bin/env bash
# kvfleet-server vs redis-server 7.0.15 (redis-benchmark, alternated rounds).
# Env: ROUNDS (3), TESTS, PIPES ("1,16"), N1/N16 (requests per run), AOF (everysec|always|no: both servers log writes). Output ends with one SUMMARY line.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cargo build --release --bins -q
python3 bench/server.py | tee "bench/out-server-$(date +%Y%m%d-%H%M%S).txt"
