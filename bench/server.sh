#!/usr/bin/env bash
# kvfleet-server vs redis-server 7.0.15 (redis-benchmark, alternated rounds).
# Env: ROUNDS (3), PGO (1: the profile-guided build), TESTS, PIPES ("1,16"), N1/N16 (requests per run), AOF (everysec|always|no: both servers log writes), SERVER_CPUS (e.g. 0.5: each server under that cgroup CPU quota, so the servers and not redis-benchmark set the pace at P=1; root). Output ends with one SUMMARY line.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
# the production build: profile-guided (PGO=0: the plain `cargo build --release` one)
if [ "${PGO:-1}" = 0 ]; then
  cargo build --release --bins -q
  export KV_BIN=$PWD/target/release/kvfleet-server
else
  KV_BIN=$(bash scripts/build-release.sh)
  export KV_BIN
fi
python3 bench/server.py | tee "bench/out-server-$(date +%Y%m%d-%H%M%S).txt"
