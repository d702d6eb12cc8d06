#!/usr/bin/env bash
# The workload a profile-guided build learns from (scripts/build-release.sh):
# an instrumented kvfleet-server as a master with one replica attached, under
# redis-benchmark at pipeline 1 and 16 over every command family, with and
# without the AOF. Code it never runs is optimised as cold, so it covers the
# families broadly, not only the benchmark's rows.
# With a second argument, an instrumented kvfleet-proxy in front of the master
# then carries the same families and its own fan-outs (MGET/MSET/DEL, SCAN).
# Usage: pgo-train.sh SERVER [PROXY]   (LLVM_PROFILE_FILE says where profiles go)
set -euo pipefail
bin=$1
proxy_bin=${2:-}
master=${PGO_PORT:-16520}
replica=$((master + 1))
proxy=$((master + 2))
work=$(mktemp -d)
pids=()
cleanup() {
  [ -n "${proxy_pid:-}" ] && kill -TERM "$proxy_pid" 2>/dev/null
  for p in "$master" "$replica"; do redis-cli -p "$p" shutdown nosave >/dev/null 2>&1 || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

. "$(dirname "$0")/lib.sh"

mkdir -p "$work/m" "$work/r"
"$bin" --port "$master" --save "" --dir "$work/m" >"$work/m.log" 2>&1 & pids+=($!)
"$bin" --port "$replica" --save "" --dir "$work/r" --replicaof "127.0.0.1 $master" >"$work/r.log" 2>&1 & pids+=($!)
wait_ready "$master" "pgo-train: kvfleet-server"
wait_ready "$replica" "pgo-train: kvfleet-server"
for _ in $(seq 200); do
  redis-cli -p "$replica" info replication | grep -q "master_link_status:up" && break
  sleep 0.05
done

limiter="local n = redis.call('incr', KEYS[1]) if n == 1 then redis.call('expire', KEYS[1], 60) end return n"
sha=$(redis-cli -p "$master" script load "$limiter")
redis-cli -p "$master" function load "#!lua name=train
redis.register_function('hit', function(keys, args) return redis.call('hincrby', keys[1], args[1], 1) end)" >/dev/null

port=$master
bench() { # P N COMMAND...
  local p=$1 n=$2
  shift 2
  redis-benchmark -p "$port" -c 50 -n "$n" -P "$p" -d 100 -r 100000 -q "$@" >/dev/null
}

run_all() { # P N
  local p=$1 n=$2
  bench "$p" "$n" -t ping,set,get,incr,lpush,rpush,lpop,rpop,sadd,hset,spop,zadd,zpopmin,lrange_100,mset
  bench "$p" "$n" EVALSHA "$sha" 1 rl:__rand_int__
  bench "$p" "$((n / 4))" EVAL "return redis.call('get', KEYS[1])" 1 key:__rand_int__
  bench "$p" "$((n / 4))" FCALL hit 1 h:__rand_int__ f
  bench "$p" "$n" PFADD hll:__rand_int__ e:__rand_int__
  bench "$p" "$((n / 4))" PFCOUNT hll:__rand_int__
  bench "$p" "$n" GEOADD geo:__rand_int__ 13.361389 38.115556 m:__rand_int__
  bench "$p" "$((n / 4))" GEOSEARCH geo:__rand_int__ FROMLONLAT 13.3 38.1 BYRADIUS 100 km ASC COUNT 5
  bench "$p" "$n" XADD st:__rand_int__ MAXLEN "~" 1000 "*" field __rand_int__
  bench "$p" "$((n / 4))" XRANGE st:__rand_int__ - + COUNT 10
  bench "$p" "$((n / 4))" XREAD COUNT 10 STREAMS st:__rand_int__ 0
  bench "$p" "$((n / 4))" SETBIT bits:__rand_int__ 100 1
  bench "$p" "$((n / 4))" BITCOUNT bits:__rand_int__
  bench "$p" "$((n / 4))" HGET myhash:__rand_int__ element:__rand_int__
  bench "$p" "$((n / 4))" HGETALL myhash:__rand_int__
  bench "$p" "$((n / 4))" ZRANGE myzset 0 10 WITHSCORES
  bench "$p" "$((n / 4))" ZSCORE myzset element:__rand_int__
  bench "$p" "$((n / 4))" SISMEMBER myset element:__rand_int__
  bench "$p" "$((n / 4))" SET ex:__rand_int__ v EX 100
  bench "$p" "$((n / 4))" TTL ex:__rand_int__
  bench "$p" "$((n / 4))" EXISTS key:__rand_int__
  bench "$p" "$((n / 4))" DEL counter:__rand_int__
  bench "$p" "$((n / 4))" APPEND ap:__rand_int__ abc
  bench "$p" "$((n / 4))" INCRBYFLOAT f:__rand_int__ 1.5
}

run_all 1 20000
run_all 16 100000
# the write path with the AOF on (every second, the default fsync)
redis-cli -p "$master" config set appendonly yes >/dev/null
bench 16 100000 -t set,incr,lpush,hset,zadd
bench 16 50000 XADD st:__rand_int__ "*" field __rand_int__
redis-cli -p "$master" config set appendonly no >/dev/null
bench 1 20000 -t get
redis-cli -p "$master" scan 0 count 1000 >/dev/null
redis-cli -p "$master" info >/dev/null

if [ -n "$proxy_bin" ]; then
  "$proxy_bin" --port "$proxy" --group "127.0.0.1:$master" >"$work/p.log" 2>&1 &
  proxy_pid=$!
  pids+=("$proxy_pid")
  wait_ready "$proxy" "pgo-train: kvfleet-proxy"
  port=$proxy
  run_all 1 10000
  run_all 16 50000
  bench 16 50000 MGET key:__rand_int__ key:__rand_int__ key:__rand_int__
  bench 16 50000 DEL key:__rand_int__ key:__rand_int__
  redis-cli -p "$proxy" scan 0 count 1000 >/dev/null
  redis-cli -p "$proxy" info >/dev/null
  # SIGTERM ends the proxy cleanly, so it writes its profile
  kill -TERM "$proxy_pid"
  wait "$proxy_pid" || true
  proxy_pid=
fi
