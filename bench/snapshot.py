#!/usr/bin/env python3
"""BGSAVE's pause and the GET latency around it, kvfleet-server vs redis-server.

For each size (GB of used memory, filled with DEBUG POPULATE of 200-byte
values) each server in turn (order alternating by size): fill, probe GET
latency idle for PROBE_SECS, then BGSAVE while the same probe runs until the
save finishes. Reports latest_fork_usec (Redis's fork; kvfleet's all-slot
lock), save wall time, and the probe's p50/p99/p99.9/max idle and during.
The probe is one connection sending GETs of random keys one at a time from
Python (its own overhead, ~tens of µs, is in both columns alike).
"""
import os, random, socket, subprocess, sys, tempfile, threading, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import start  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZES = [float(s) for s in os.environ.get("SIZES", "1 8").split()]
PROBE_SECS = float(os.environ.get("PROBE_SECS", "5"))
SYNC_GB = float(os.environ.get("SYNC_GB", "1"))  # time a replica's full sync up to this size
KEYS_PER_GB = 3_700_000  # 200-byte values: ~270 B a key in Redis's used_memory


def cli(port, *args):
    return subprocess.run(["redis-cli", "-p", str(port), *map(str, args)],
                          capture_output=True, text=True, check=True).stdout.strip()


def info(port, section):
    out = {}
    for line in cli(port, "INFO", section).splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            out[k] = v.strip()
    return out


class Probe:
    def __init__(self, port, keys):
        self.s = socket.create_connection(("127.0.0.1", port))
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.keys = keys
        self.buf = b""

    def get(self, i):
        k = f"key:{i}".encode()
        self.s.sendall(b"*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n" % (len(k), k))
        while True:
            if self.buf.startswith(b"$"):
                nl = self.buf.find(b"\r\n")
                if nl > 0:
                    n = int(self.buf[1:nl])
                    end = nl + 2 + (n + 2 if n >= 0 else 0)
                    if len(self.buf) >= end:
                        self.buf = self.buf[end:]
                        return
            elif self.buf:
                raise RuntimeError(self.buf[:80])
            self.buf += self.s.recv(65536)

    def run(self, until):
        lat = []
        while not until():
            i = random.randrange(self.keys)
            t = time.perf_counter()
            self.get(i)
            lat.append(time.perf_counter() - t)
        return lat


def pct(lat, p):
    s = sorted(lat)
    return s[min(len(s) - 1, int(len(s) * p))] * 1e3


def summary(lat):
    return {"n": len(lat), "p50": pct(lat, 0.5), "p99": pct(lat, 0.99),
            "p999": pct(lat, 0.999), "max": max(lat) * 1e3}


def measure(name, cmd, port, gb, replica_cmd):
    tmp = tempfile.mkdtemp()
    p = start(cmd + ["--dir", tmp], port)
    try:
        keys = int(KEYS_PER_GB * gb)
        t = time.time()
        cli(port, "DEBUG", "POPULATE", keys, "key", 200)
        fill = time.time() - t
        used = int(info(port, "memory")["used_memory"])
        probe = Probe(port, keys)
        t0 = time.time()
        idle = probe.run(lambda: time.time() - t0 > PROBE_SECS)
        state = {"done": False, "started": False}
        during = []

        def until():
            return state["done"]

        # the probe runs across the BGSAVE call itself: Redis's fork pause falls there
        th = threading.Thread(target=lambda: during.extend(probe.run(until)))
        th.start()
        time.sleep(0.2)
        t1 = time.time()
        assert cli(port, "BGSAVE").startswith("Background saving started")
        while info(port, "persistence")["rdb_bgsave_in_progress"] != "0":
            time.sleep(0.05)
        save_secs = time.time() - t1
        time.sleep(0.2)
        state["done"] = True
        th.join()
        pause = int(info(port, "stats")["latest_fork_usec"])
        status = info(port, "persistence")["rdb_last_bgsave_status"]
        size = os.path.getsize(os.path.join(tmp, "dump.rdb"))
        sync_s = None
        if gb <= SYNC_GB:
            # a replica of the same kind: full sync of the whole dataset, timed to link up
            rport = port + 1
            rtmp = tempfile.mkdtemp()
            rcmd = replica_cmd(rport) + ["--dir", rtmp]
            t2 = time.time()
            rp = start(rcmd, rport)
            try:
                while info(rport, "replication").get("master_link_status") != "up":
                    time.sleep(0.05)
                sync_s = time.time() - t2
                assert int(info(rport, "keyspace").get("db0", "keys=0").split(",")[0][5:]) == keys
            finally:
                rp.kill()
                rp.wait()
                subprocess.run(["rm", "-rf", rtmp])
        return {"name": name, "gb": gb, "keys": keys, "used": used, "fill": fill, "pause_us": pause,
                "save_s": save_secs, "status": status, "file": size, "sync_s": sync_s,
                "idle": summary(idle), "during": summary(during)}
    finally:
        p.kill()
        p.wait()
        subprocess.run(["rm", "-rf", tmp])


def main():
    kv = os.path.join(ROOT, "target", "release", "kvfleet-server")
    targets = {
        "redis": lambda port: ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no",
                               "--enable-debug-command", "yes", "--repl-diskless-sync-delay", "0",
                               "--bind", "127.0.0.1"],
        "kvfleet": lambda port: [kv, "--port", str(port), "--save", ""],
    }
    replicaof = {
        "redis": ["--replicaof", "127.0.0.1", "17100"],
        "kvfleet": ["--replicaof", "127.0.0.1 17100"],
    }
    rows = []
    for n, gb in enumerate(SIZES):
        order = ["redis", "kvfleet"] if n % 2 == 0 else ["kvfleet", "redis"]
        for name in order:
            replica = lambda rport, name=name: targets[name](rport) + replicaof[name]
            r = measure(name, targets[name](17100), 17100, gb, replica)
            rows.append(r)
            i, d = r["idle"], r["during"]
            print(f"{name:8} {gb:4.1f} GB keys={r['keys']:,} used={r['used']/1e9:.2f} GB pause={r['pause_us']} us "
                  f"save={r['save_s']:.1f} s ({r['status']}, file {r['file']/1e9:.2f} GB) "
                  f"GET p50/p99/p99.9/max ms idle {i['p50']:.3f}/{i['p99']:.3f}/{i['p999']:.3f}/{i['max']:.3f} "
                  f"during {d['p50']:.3f}/{d['p99']:.3f}/{d['p999']:.3f}/{d['max']:.3f} (n={d['n']})"
                  + (f" replica full sync {r['sync_s']:.1f} s" if r["sync_s"] is not None else ""),
                  flush=True)
    parts = []
    for gb in SIZES:
        kvr = next(r for r in rows if r["name"] == "kvfleet" and r["gb"] == gb)
        rr = next(r for r in rows if r["name"] == "redis" and r["gb"] == gb)
        p999_ratio = kvr["during"]["p999"] / kvr["idle"]["p999"]
        parts.append(f"{gb:g}GB:pause_us={kvr['pause_us']}/redis={rr['pause_us']} "
                     f"p999_during/idle={p999_ratio:.2f} max_during_ms={kvr['during']['max']:.2f}"
                     f"/redis={rr['during']['max']:.2f} save_s={kvr['save_s']:.1f}/redis={rr['save_s']:.1f}"
                     + (f" full_sync_s={kvr['sync_s']:.1f}/redis={rr['sync_s']:.1f}" if kvr["sync_s"] is not None else ""))
    print("SUMMARY kvfleet snapshot: " + " ".join(parts))


if __name__ == "__main__":
    main()
