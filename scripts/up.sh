#!/usr/bin/env bash
# Brings up a local kvfleet: builds, then starts what exists so far — three
# kvfleet-server data nodes (one group each) on 6390, 6391, 6392 and a
# kvfleet-proxy on 6380 that spreads the 1024 slots over them.
# The ConfigServer joins here when it lands.
# Stop with: scripts/up.sh stop
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=.kvfleet
PORTS=(6390 6391 6392)
PROXY_PORT=6380

stop() {
  for pidf in "$RUN"/*.pid; do
    [ -e "$pidf" ] || continue
    pid=$(cat "$pidf")
    kill "$pid" 2>/dev/null || true
    # servers save their RDB file on SIGTERM: wait until they are gone
    for _ in $(seq 300); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
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
  # each server's RDB file in a directory of its own (saved on stop, loaded on start)
  mkdir -p "$RUN/server-$port"
  nohup target/release/kvfleet-server --port "$port" --dir "$RUN/server-$port" >"$RUN/server-$port.log" 2>&1 &
  echo $! >"$RUN/server-$port.pid"
done
. scripts/lib.sh
for port in "${PORTS[@]}"; do
  wait_ready "$port" kvfleet-server "see $RUN/" || exit 1
done
groups=()
for port in "${PORTS[@]}"; do
  groups+=(--group "127.0.0.1:$port")
done
nohup target/release/kvfleet-proxy --port "$PROXY_PORT" "${groups[@]}" >"$RUN/proxy-$PROXY_PORT.log" 2>&1 &
echo $! >"$RUN/proxy-$PROXY_PORT.pid"
wait_ready "$PROXY_PORT" kvfleet-proxy "see $RUN/" || exit 1
echo "kvfleet is up: kvfleet-proxy on $PROXY_PORT over kvfleet-server ${PORTS[*]} (logs in $RUN/)."
echo "Try: redis-cli -p $PROXY_PORT set hello world && redis-cli -p $PROXY_PORT get hello"
echo "Stop: scripts/up.sh stop"
