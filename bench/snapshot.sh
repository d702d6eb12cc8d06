#!/usr/bin/env bash
# Snapshot pause and GET latency during BGSAVE: kvfleet-server vs redis-server 7.0.15.
# Env: SIZES ("1 8", GB of used memory), PROBE_SECS (idle probe length). Ends with one SUMMARY line.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cargo build --release --bins -q
python3 bench/snapshot.py | tee "bench/out-snapshot-$(date +%Y%m%d-%H%M%S).txt"
