#!/usr/bin/env python3
"""kvfleet-proxy vs direct Redis vs twemproxy under redis-benchmark.

Two Debian redis-server 7.0.15 backends; in front of them kvfleet-proxy
(slots spread over both) and twemproxy (nutcracker, ketama over both). Each
(test, pipeline) pair runs against a direct redis-server, kvfleet-proxy and
twemproxy, rotating which goes first, for ROUNDS rounds. Reports medians of
rps, p50 and p99, ratios to direct Redis and to twemproxy, the p50 the proxy
adds at P=1, and the proxy's CPU seconds per million requests. The last
line is the summary.
"""
import csv, io, os, statistics, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import cpu_seconds, start  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROUNDS = int(os.environ.get("ROUNDS", "3"))
TESTS = os.environ.get("TESTS", "set,get,mset,incr,lpush").split(",")
PIPES = [int(p) for p in os.environ.get("PIPES", "1,16").split(",")]
N = {1: int(os.environ.get("N1", "300000")), 16: int(os.environ.get("N16", "2000000"))}
SLOW = {"mset": 4}






def bench(port, test, pipe):
    n = N[pipe] // SLOW.get(test, 1)
    out = subprocess.run(
        ["redis-benchmark", "-p", str(port), "-c", "50", "-n", str(n), "-P", str(pipe), "-d", "100",
         "-r", "100000", "-t", test, "--csv", "-q"],
        capture_output=True, text=True, check=True).stdout
    row = list(csv.DictReader(io.StringIO(out)))[-1]
    return float(row["rps"]), float(row["p50_latency_ms"]), float(row["p99_latency_ms"]), n


def unloaded_p50(port):
    """p50 (ms) of GET from one client, one request at a time: the hop itself."""
    out = subprocess.run(["redis-benchmark", "-p", str(port), "-c", "1", "-n", "20000", "-P", "1", "-t", "get", "--csv", "-q"],
                         capture_output=True, text=True, check=True).stdout
    return float(list(csv.DictReader(io.StringIO(out)))[-1]["p50_latency_ms"])


def main():
    kv = os.path.join(ROOT, "target", "release", "kvfleet-proxy")
    b1, b2, direct, kport, tport = 17001, 17002, 17003, 17380, 17381
    redis = lambda p: ["redis-server", "--port", str(p), "--save", "", "--appendonly", "no", "--bind", "127.0.0.1"]
    tmp = tempfile.mkdtemp()
    nc_conf = os.path.join(tmp, "nutcracker.yml")
    with open(nc_conf, "w") as f:
        f.write(f"pool:\n  listen: 127.0.0.1:{tport}\n  hash: fnv1a_64\n  distribution: ketama\n"
                f"  redis: true\n  auto_eject_hosts: false\n  servers:\n"
                f"   - 127.0.0.1:{b1}:1\n   - 127.0.0.1:{b2}:1\n")
    procs = {
        "b1": start(redis(b1), b1),
        "b2": start(redis(b2), b2),
        "direct": start(redis(direct), direct),
    }
    procs["kvfleet"] = start([kv, "--port", str(kport), "--group", f"127.0.0.1:{b1}", "--group", f"127.0.0.1:{b2}"], kport)
    procs["twemproxy"] = start(["nutcracker", "-c", nc_conf, "-s", str(tport + 1), "-a", "127.0.0.1",
                                "-p", os.path.join(tmp, "nc.pid"), "-o", os.path.join(tmp, "nc.log")], tport)
    ports = {"direct": direct, "kvfleet": kport, "twemproxy": tport}
    names = list(ports)
    res, cpu = {}, [0.0, 0]
    try:
        for rnd in range(ROUNDS):
            for ti, test in enumerate(TESTS):
                for pipe in PIPES:
                    k = (rnd + ti) % 3
                    for name in names[k:] + names[:k]:
                        c0 = cpu_seconds(procs["kvfleet"].pid) if name == "kvfleet" else 0
                        rps, p50, p99, n = bench(ports[name], test, pipe)
                        if name == "kvfleet":
                            cpu[0] += cpu_seconds(procs["kvfleet"].pid) - c0
                            cpu[1] += n
                        res.setdefault((test, pipe, name), []).append((rps, p50, p99))
                        print(f"round {rnd + 1} {test:<6} P={pipe:<2} {name:<9} {rps:>11,.0f} rps  p50 {p50:.3f}  p99 {p99:.3f} ms", flush=True)
        print()
        print(f"medians of {ROUNDS} rounds, -c 50 -d 100 -r 100000; 2 redis-server backends")
        print(f"{'test':<6} {'P':>2}  {'direct':>9} {'kvfleet':>9} {'twemproxy':>9}  {'kv/direct':>9} {'kv/twem':>7}  {'p50 d/kv/tw (ms)':>20}  {'p99 d/kv/tw (ms)':>20}")
        r_direct, r_twem, added = {p: [] for p in PIPES}, {p: [] for p in PIPES}, []
        for pipe in PIPES:
            for test in TESTS:
                m = {n: [statistics.median(x) for x in zip(*res[(test, pipe, n)])] for n in names}
                rd, rt = m["kvfleet"][0] / m["direct"][0], m["kvfleet"][0] / m["twemproxy"][0]
                r_direct[pipe].append(rd)
                r_twem[pipe].append(rt)
                if pipe == 1:
                    added.append((m["kvfleet"][1] - m["direct"][1]) * 1000)
                print(f"{test:<6} {pipe:>2}  {m['direct'][0]:>9,.0f} {m['kvfleet'][0]:>9,.0f} {m['twemproxy'][0]:>9,.0f}  {rd:>9.2f} {rt:>7.2f}  "
                      f"{m['direct'][1]:.3f}/{m['kvfleet'][1]:.3f}/{m['twemproxy'][1]:.3f}  {m['direct'][2]:.3f}/{m['kvfleet'][2]:.3f}/{m['twemproxy'][2]:.3f}")
        print(f"kvfleet-proxy CPU seconds per million requests: {cpu[0] / cpu[1] * 1e6:.2f}")
        hop = {n: [] for n in names}
        for rnd in range(ROUNDS):
            k = rnd % 3
            for name in names[k:] + names[:k]:
                hop[name].append(unloaded_p50(ports[name]))
        hop = {n: statistics.median(v) * 1000 for n, v in hop.items()}
        print(f"unloaded GET p50 (-c 1 -P 1, us): direct {hop['direct']:.0f}, kvfleet {hop['kvfleet']:.0f}, twemproxy {hop['twemproxy']:.0f}; "
              f"added by kvfleet-proxy {hop['kvfleet'] - hop['direct']:.0f}, by twemproxy {hop['twemproxy'] - hop['direct']:.0f}")
        parts = [f"P={p}:vs_direct={statistics.median(r_direct[p]):.2f} vs_twemproxy={statistics.median(r_twem[p]):.2f}" for p in PIPES]
        if added:
            parts.append(f"added_p50_P1_c50_us={statistics.median(added):.0f}")
        parts.append(f"added_p50_unloaded_us={hop['kvfleet'] - hop['direct']:.0f}")
        print("SUMMARY kvfleet-proxy: " + " ".join(parts))
    finally:
        for p in procs.values():
            p.kill()
            p.wait()


if __name__ == "__main__":
    main()
