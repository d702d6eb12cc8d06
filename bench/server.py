#!/usr/bin/env python3
"""kvfleet-server vs Debian's redis-server 7.0.15 under redis-benchmark.

Both servers run side by side on loopback; every (test, pipeline) pair runs
on both, alternating which goes first, for ROUNDS rounds. Reports medians of
rps, p50 and p99, the kvfleet/Redis ratios (of the medians, and the median
of each round's ratio, whose two runs are adjacent in time), each server's CPU per request
(utime+stime of its process during the run, per row and overall), the load
generator's share of a core (a row where it is ~100% for both servers is
client-bound: redis-benchmark is one thread and set the pace), and used_memory / RSS
after DEBUG POPULATE of 1M 100-byte strings: on fresh processes (the data
structures' cost), and again after all the throughput runs (what the
allocators kept). The last line is the summary.
"""
import hashlib
import csv, io, os, resource, shutil, statistics, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import cpu_cap, cpu_seconds, rss, start  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROUNDS = int(os.environ.get("ROUNDS", "3"))
TESTS = os.environ.get("TESTS", "set,get,incr,lpush,rpop,sadd,hset,zadd,lrange_100,mset,pfadd,geoadd,evalsha,xadd").split(",")
# EVALSHA's script: a fixed-window rate limiter, the common small script
LIMITER = "local n = redis.call('incr', KEYS[1]) if n == 1 then redis.call('expire', KEYS[1], 60) end return n"
PIPES = [int(p) for p in os.environ.get("PIPES", "1,16").split(",")]
# requests per run, sized for >= 5 s on this machine (2 shared cores)
AOF = os.environ.get("AOF", "")
# SERVER_CPUS=0.5 caps each server at that many cores (a cgroup CPU quota, as a
# container limit would): at P=1 the servers then set the pace instead of
# redis-benchmark, and the rps ratio is their CPU per request. Needs root.
SERVER_CPUS = float(os.environ.get("SERVER_CPUS", "0"))
N = {1: int(os.environ.get("N1", "500000")), 16: int(os.environ.get("N16", "4000000"))}
SLOW = {"lrange_100": 8, "mset": 4}  # these do more per request: fewer of them
# Rows redis-benchmark has no -t test for: the command it sends instead.
CUSTOM = {"pfadd": ["PFADD", "hll:__rand_int__", "e:__rand_int__"],
          "geoadd": ["GEOADD", "geo:__rand_int__", "13.361389", "38.115556", "m:__rand_int__"],
          "evalsha": ["EVALSHA", hashlib.sha1(LIMITER.encode()).hexdigest(), "1", "rl:__rand_int__"],
          "xadd": ["XADD", "st:__rand_int__", "*", "field", "__rand_int__"]}


def cli(port, *args):
    out = subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True, text=True, check=True).stdout
    if out.startswith("ERR") or out.startswith("(error)"):
        sys.exit(f"redis-cli {args} on {port}: {out.strip()}")
    return out


def info(port, field):
    for line in cli(port, "info", "memory").splitlines():
        if line.startswith(field + ":"):
            return int(line.split(":")[1])
    return 0


def bench(port, test, pipe):
    """One redis-benchmark run: rps, p50, p99, requests, and the share of one
    core the load generator used (near 1.0: it, not the server, set the pace)."""
    n = N[pipe] // SLOW.get(test, 1)
    ru0, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.monotonic()
    out = subprocess.run(
        ["redis-benchmark", "-p", str(port), "-c", "50", "-n", str(n), "-P", str(pipe), "-d", "100",
         "-r", "100000", "--csv", "-q"] + (CUSTOM[test] if test in CUSTOM else ["-t", test]),
        capture_output=True, text=True, check=True).stdout
    ru1, wall = resource.getrusage(resource.RUSAGE_CHILDREN), time.monotonic() - t0
    client = (ru1.ru_utime - ru0.ru_utime + ru1.ru_stime - ru0.ru_stime) / wall
    rows = list(csv.DictReader(io.StringIO(out)))
    row = rows[-1]
    return float(row["rps"]), float(row["p50_latency_ms"]), float(row["p99_latency_ms"]), n, client


def populate(servers, ports, when):
    mem = {}
    for name in ("redis", "kvfleet"):
        cli(ports[name], "flushall")
        time.sleep(0.5)
        cli(ports[name], "debug", "populate", "1000000", "key", "100")
        time.sleep(0.5)
        mem[name] = (info(ports[name], "used_memory"), rss(servers[name].pid))
        print(f"{name:<8} {when}, after 1M x 100-byte strings: used_memory {mem[name][0] / 2**20:.1f} MiB, RSS {mem[name][1] / 2**20:.1f} MiB", flush=True)
    return mem["kvfleet"][0] / mem["redis"][0], mem["kvfleet"][1] / mem["redis"][1]


def main():
    # server.sh passes the profile-guided release build (scripts/build-release.sh)
    kv_bin = os.environ.get("KV_BIN") or os.path.join(ROOT, "target", "release", "kvfleet-server")
    print(f"kvfleet-server binary: {kv_bin}", flush=True)
    rport, kport = 16379, 16390
    # no save points on either; AOF=everysec|always|no turns the append-only file on for both
    aof = ["--appendonly", "yes", "--appendfsync", AOF] if AOF else ["--appendonly", "no"]
    rdir, kdir = tempfile.mkdtemp(), tempfile.mkdtemp()
    # everything from the first start on is undone in `finally`, whatever fails
    servers, release = {}, []
    try:
        servers["redis"] = start(["redis-server", "--port", str(rport), "--save", "", "--bind", "127.0.0.1",
                                  "--enable-debug-command", "yes", "--dir", rdir] + aof, rport)
        servers["kvfleet"] = start([kv_bin, "--port", str(kport), "--save", "", "--dir", kdir] + aof, kport)
        ports = {"redis": rport, "kvfleet": kport}
        if SERVER_CPUS:
            for name, p in servers.items():
                release.append(cpu_cap(p.pid, SERVER_CPUS, name))
            print(f"each server capped at {SERVER_CPUS} cores (cgroup CPU quota)", flush=True)
        fresh = populate(servers, ports, "fresh")
        for name in ports:
            cli(ports[name], "flushall")
            cli(ports[name], "script", "load", LIMITER)
        res = {}  # (test, pipe, server) -> list of (rps, p50, p99, server us/req, client share)
        cpu = {"redis": [0.0, 0], "kvfleet": [0.0, 0]}  # seconds, requests
        if ROUNDS == 0:
            print(f"SUMMARY kvfleet/redis: fresh used_memory={fresh[0]:.2f} rss={fresh[1]:.2f}")
            return
        for rnd in range(ROUNDS):
            for test in TESTS:
                for pipe in PIPES:
                    order = ["redis", "kvfleet"] if (rnd + TESTS.index(test)) % 2 == 0 else ["kvfleet", "redis"]
                    for name in order:
                        pid = servers[name].pid
                        c0 = cpu_seconds(pid)
                        rps, p50, p99, n, client = bench(ports[name], test, pipe)
                        spent = cpu_seconds(pid) - c0
                        cpu[name][0] += spent
                        cpu[name][1] += n
                        # the server's CPU per request (µs), the client's share of a core
                        res.setdefault((test, pipe, name), []).append((rps, p50, p99, spent / n * 1e6, client))
                        print(f"round {rnd + 1} {test:<11} P={pipe:<2} {name:<8} {rps:>11,.0f} rps  p50 {p50:.3f}  p99 {p99:.3f} ms"
                              f"  server {spent / n * 1e6:.2f} us/req  client {client:.0%} of a core", flush=True)
        print()
        print(f"medians of {ROUNDS} rounds, -c 50 -d 100 -r 100000")
        # "client" is the load generator's share of one core during the run:
        # redis-benchmark is one thread, so at ~100% both servers answer as
        # fast as it can ask and the rps ratio measures the client, not them;
        # "srv us/req" (CPU per request) is then the server's own figure
        # "paired": the median over rounds of each round's kvfleet/redis rps,
        # the two runs of a round being adjacent in time; "won": rounds where
        # kvfleet served more. This machine's speed drifts by up to 20% over
        # minutes, for client and server alike: a pair shares more of it than
        # the medians of whole columns do
        print(f"{'test':<11} {'P':>2}  {'redis rps':>11} {'kvfleet rps':>11} {'ratio':>6} {'paired':>6} {'won':>5}  {'p50 r/k (ms)':>14} {'ratio':>6}  {'p99 r/k (ms)':>14} {'ratio':>6}"
              f"  {'srv us/req r/k':>14} {'ratio':>6}  {'client r/k':>10}")
        ratios = {p: [] for p in PIPES}
        paired = {p: [] for p in PIPES}
        cpu_ratios = {p: [] for p in PIPES}
        client_bound = {p: 0 for p in PIPES}
        for pipe in PIPES:
            for test in TESTS:
                r = [statistics.median(x) for x in zip(*res[(test, pipe, "redis")])]
                k = [statistics.median(x) for x in zip(*res[(test, pipe, "kvfleet")])]
                ratio = k[0] / r[0]
                ratios[pipe].append(ratio)
                per_round = [kr[0] / rr[0] for kr, rr in zip(res[(test, pipe, "kvfleet")], res[(test, pipe, "redis")])]
                pair = statistics.median(per_round)
                paired[pipe].append(pair)
                won = f"{sum(x >= 1 for x in per_round)}/{len(per_round)}"
                cpu_ratios[pipe].append(k[3] / r[3])
                bound = min(r[4], k[4]) >= 0.9
                client_bound[pipe] += bound
                print(f"{test:<11} {pipe:>2}  {r[0]:>11,.0f} {k[0]:>11,.0f} {ratio:>6.2f} {pair:>6.2f} {won:>5}  {r[1]:>6.3f}/{k[1]:<7.3f} {k[1] / r[1]:>6.2f}  {r[2]:>6.3f}/{k[2]:<7.3f} {k[2] / r[2]:>6.2f}"
                      f"  {r[3]:>6.2f}/{k[3]:<7.2f} {k[3] / r[3]:>6.2f}  {r[4]:>4.0%}/{k[4]:<4.0%}{'  client-bound' if bound else ''}")
        cpu_per_m = {n: cpu[n][0] / cpu[n][1] * 1e6 for n in cpu}
        print(f"CPU seconds per million requests: redis {cpu_per_m['redis']:.2f}, kvfleet {cpu_per_m['kvfleet']:.2f}, ratio {cpu_per_m['kvfleet'] / cpu_per_m['redis']:.2f}")
        after = populate(servers, ports, "after the runs")
        summary = " ".join(f"P={p}:rps_ratio_median={statistics.median(ratios[p]):.2f}(min {min(ratios[p]):.2f})"
                           f",paired_median={statistics.median(paired[p]):.2f}(min {min(paired[p]):.2f})"
                           f",srv_cpu_ratio_median={statistics.median(cpu_ratios[p]):.2f}(max {max(cpu_ratios[p]):.2f})"
                           f",client_bound={client_bound[p]}/{len(TESTS)}" for p in PIPES)
        print(f"SUMMARY kvfleet/redis: {summary} cpu_per_req={cpu_per_m['kvfleet'] / cpu_per_m['redis']:.2f} "
              f"fresh used_memory={fresh[0]:.2f} rss={fresh[1]:.2f}; after runs used_memory={after[0]:.2f} rss={after[1]:.2f}")
    finally:
        for p in servers.values():
            p.kill()
            p.wait()
        for r in release:
            r()
        shutil.rmtree(rdir, ignore_errors=True)
        shutil.rmtree(kdir, ignore_errors=True)


if __name__ == "__main__":
    main()
