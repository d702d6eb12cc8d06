"""Helpers the benchmark scripts share: start a server and wait for PING, read a process's CPU time and RSS."""
import os, subprocess, sys, time

CLK = os.sysconf("SC_CLK_TCK")


def start(cmd, port):
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        r = subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True, text=True)
        if r.stdout.strip() == "PONG":
            return p
        time.sleep(0.05)
    p.kill()
    sys.exit(f"{cmd[0]} on {port} did not start")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK


def rss(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def cpu_cap(pid, cores, tag):
    """Moves process `pid` into a new cgroup capped at `cores` CPUs (v1 `cpu`
    or v2, whichever carries the controller; needs root). Returns a function
    that moves it back and removes the group."""
    period = 100000
    quota = int(cores * period)
    own = open("/proc/self/cgroup").read().splitlines()
    v1 = next((l.split(":", 2)[2] for l in own if "cpu" in l.split(":")[1].split(",")), None)
    v2 = next((l.split(":", 2)[2] for l in own if l.startswith("0::")), None)
    made = None
    for mount in ("/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/cpu"):
        if v1 is not None and os.path.exists(f"{mount}{v1.rstrip('/')}/cpu.cfs_quota_us"):
            parent = f"{mount}{v1.rstrip('/')}"
            made = (parent, f"{parent}/kvfleet-bench-{tag}-{os.getpid()}")
            os.mkdir(made[1])
            with open(f"{made[1]}/cpu.cfs_period_us", "w") as f:
                f.write(str(period))
            with open(f"{made[1]}/cpu.cfs_quota_us", "w") as f:
                f.write(str(quota))
            break
    if made is None and v2 is not None:
        for mount in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified"):
            parent = f"{mount}{v2.rstrip('/')}"
            try:
                ctl = open(f"{parent}/cgroup.controllers").read().split()
            except OSError:
                continue
            if "cpu" in ctl:
                try:
                    with open(f"{parent}/cgroup.subtree_control", "w") as f:
                        f.write("+cpu")
                except OSError:
                    pass
                made = (parent, f"{parent}/kvfleet-bench-{tag}-{os.getpid()}")
                os.mkdir(made[1])
                with open(f"{made[1]}/cpu.max", "w") as f:
                    f.write(f"{quota} {period}")
                break
    if made is None:
        sys.exit("SERVER_CPUS: no writable cgroup with the cpu controller (root needed)")
    with open(f"{made[1]}/cgroup.procs", "w") as f:
        f.write(str(pid))

    def release():
        try:
            for p in open(f"{made[1]}/cgroup.procs").read().split():
                with open(f"{made[0]}/cgroup.procs", "w") as f:
                    f.write(p)
            os.rmdir(made[1])
        except OSError:
            pass
    return release
