#!/usr/bin/env bash
# Snapshot pause and GET latency during BGSAVE: kvfleet-server vs redis-server 7.0.15.
# Env: SIZES ("1 8", GB of used memory), PROBE_SECS (idle probe length), SYNC_GB (time a replica full sync up to this size, 1). Ends with one SUMMARY line.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cargo build --release --bins -q
python3 bench/snapshot.py | tee "bench/out-snapshot-$(date +%Y%m%d-%H%M%S).txt"
