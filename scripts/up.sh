#!/usr/bin/env bash
# Brings up a local kvfleet: builds, then starts what exists so far — three
# kvfleet-server data nodes (one per future group) on 6390, 6391, 6392.
# The proxy and ConfigServer join here as they land.
# Stop with: scripts/up.sh stop
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=.kvfleet
PORTS=(6390 6391 6392)

stop() {
  for pidf in "$RUN"/*.pid; do
    [ -e "$pidf" ] || continue
    kill "$(cat "$pidf")" 2>/dev/null || true
    rm -f "$pidf"
  done
}

if [ "${1:-}" = "stop" ]; then
  stop
  echo "kvfleet stopped"
  exit 0
fi

bash scripts/deps.sh
cargo build --release --bins
mkdir -p "$RUN"
stop
for port in "${PORTS[@]}"; do
  nohup target/release/kvfleet-server --port "$port" >"$RUN/server-$port.log" 2>&1 &
  echo $! >"$RUN/server-$port.pid"
done
for port in "${PORTS[@]}"; do
  for _ in $(seq 100); do
    redis-cli -p "$port" ping >/dev/null 2>&1 && break
    sleep 0.1
  done
  redis-cli -p "$port" ping >/dev/null || { echo "server on $port did not start; see $RUN/server-$port.log" >&2; exit 1; }
done
echo "kvfleet is up: kvfleet-server on ports ${PORTS[*]} (logs in $RUN/)."
echo "Try: redis-cli -p 6390 set hello world && redis-cli -p 6390 get hello"
echo "Stop: scripts/up.sh stop"
