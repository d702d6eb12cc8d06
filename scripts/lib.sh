# Shell helpers the scripts share (sourced, not run).

# wait_ready PORT NAME [HINT]: wait up to 10 s for PING on 127.0.0.1:PORT.
wait_ready() {
  for _ in $(seq 100); do
    [ "$(redis-cli -p "$1" ping 2>/dev/null)" = PONG ] && return 0
    sleep 0.1
  done
  echo "$2 on $1 did not answer PING${3:+; $3}" >&2
  return 1
}
