//! The CPU quota of the cgroup the server runs in (cgroup v2 `cpu.max`, v1
//! `cpu.cfs_quota_us`), in cores.
//!
//! Busy polling (decision 0014) spends CPU that would otherwise sit idle.
//! Under a quota that CPU is the container's budget: spinning spends it, and
//! a process that runs out of it is stopped, every thread, until the next
//! period (100 ms by default). So the governor polls only where no quota
//! applies. The quota of every ancestor counts too: the tightest one binds.

use std::path::{Path, PathBuf};

/// The tightest CPU quota over this process's cgroup and its ancestors, in
/// cores; `None` when none is set (or cgroups cannot be read).
pub fn cpu_quota() -> Option<f64> {
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    quota_from(&cgroup, &mounts, |p| std::fs::read_to_string(p).ok())
}

/// A cgroup file system that can carry a CPU quota.
struct Mount<'a> {
    /// The cgroup path mounted here (`/` unless inside a namespace).
    root: &'a str,
    point: &'a str,
    v2: bool,
}

fn quota_from(
    cgroup: &str,
    mountinfo: &str,
    read: impl Fn(&Path) -> Option<String>,
) -> Option<f64> {
    let mut tightest: Option<f64> = None;
    for m in cpu_mounts(mountinfo) {
        let Some(own) = own_cgroup(cgroup, m.v2) else {
            continue;
        };
        // where this process's cgroup sits under the mount point
        let rel = if m.root == "/" {
            own
        } else {
            match own.strip_prefix(m.root) {
                Some(r) if r.is_empty() || r.starts_with('/') => r,
                _ => continue,
            }
        };
        let top = PathBuf::from(m.point);
        let mut dir = top.join(rel.trim_start_matches('/'));
        loop {
            let q = if m.v2 {
                read(&dir.join("cpu.max")).and_then(|t| parse_v2(&t))
            } else {
                read(&dir.join("cpu.cfs_quota_us")).and_then(|q| {
                    parse_v1(
                        &q,
                        &read(&dir.join("cpu.cfs_period_us")).unwrap_or_default(),
                    )
                })
            };
            if let Some(q) = q {
                tightest = Some(tightest.map_or(q, |t| t.min(q)));
            }
            if dir == top || !dir.pop() || !dir.starts_with(&top) {
                break;
            }
        }
    }
    tightest
}

/// The cgroup v2 mounts and the v1 mounts with the `cpu` controller.
fn cpu_mounts(mountinfo: &str) -> impl Iterator<Item = Mount<'_>> {
    mountinfo.lines().filter_map(|l| {
        // "id parent maj:min root point options [optional...] - fstype source super"
        let (pre, post) = l.split_once(" - ")?;
        let mut pre = pre.split(' ');
        let root = pre.nth(3)?;
        let point = pre.next()?;
        let mut post = post.split(' ');
        let fstype = post.next()?;
        let options = post.nth(1).unwrap_or("");
        match fstype {
            "cgroup2" => Some(Mount {
                root,
                point,
                v2: true,
            }),
            "cgroup" if options.split(',').any(|o| o == "cpu") => Some(Mount {
                root,
                point,
                v2: false,
            }),
            _ => None,
        }
    })
}

/// This process's cgroup path in the v2 hierarchy, or in the v1 one that
/// has the `cpu` controller.
fn own_cgroup(cgroup: &str, v2: bool) -> Option<&str> {
    cgroup.lines().find_map(|l| {
        let mut f = l.splitn(3, ':');
        let (id, controllers, path) = (f.next()?, f.next()?, f.next()?);
        let hit = if v2 {
            id == "0" && controllers.is_empty()
        } else {
            controllers.split(',').any(|c| c == "cpu")
        };
        hit.then_some(path)
    })
}

/// `cpu.max`: "max 100000" (none) or "50000 100000" (half a core).
fn parse_v2(text: &str) -> Option<f64> {
    let mut f = text.split_whitespace();
    let quota: f64 = f.next()?.parse().ok()?;
    let period: f64 = f.next().unwrap_or("100000").parse().ok()?;
    (quota > 0.0 && period > 0.0).then(|| quota / period)
}

/// `cpu.cfs_quota_us` (-1: none) over `cpu.cfs_period_us`.
fn parse_v1(quota: &str, period: &str) -> Option<f64> {
    let quota: f64 = quota.trim().parse().ok()?;
    let period: f64 = period.trim().parse().unwrap_or(100_000.0);
    (quota > 0.0 && period > 0.0).then(|| quota / period)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const HYBRID: &str = "\
24 30 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
25 24 0:23 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw
27 24 0:25 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:12 - cgroup cgroup rw,cpu,cpuacct
28 24 0:26 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:13 - cgroup cgroup rw,memory
";

    fn files(f: &[(&str, &str)]) -> impl Fn(&Path) -> Option<String> {
        let m: HashMap<PathBuf, String> = f
            .iter()
            .map(|(p, t)| (PathBuf::from(p), t.to_string()))
            .collect();
        move |p| m.get(p).cloned()
    }

    #[test]
    fn v1_quota_of_the_own_cgroup_or_an_ancestor() {
        let cg = "12:memory:/kv\n4:cpu,cpuacct:/fleet/kv\n0::/\n";
        // on the process's own cgroup
        let read = files(&[
            (
                "/sys/fs/cgroup/cpu,cpuacct/fleet/kv/cpu.cfs_quota_us",
                "50000\n",
            ),
            (
                "/sys/fs/cgroup/cpu,cpuacct/fleet/kv/cpu.cfs_period_us",
                "100000\n",
            ),
            ("/sys/fs/cgroup/cpu,cpuacct/fleet/cpu.cfs_quota_us", "-1\n"),
            ("/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us", "-1\n"),
        ]);
        assert_eq!(quota_from(cg, HYBRID, read), Some(0.5));
        // none on it, 1.5 cores on its parent
        let read = files(&[
            (
                "/sys/fs/cgroup/cpu,cpuacct/fleet/kv/cpu.cfs_quota_us",
                "-1\n",
            ),
            (
                "/sys/fs/cgroup/cpu,cpuacct/fleet/cpu.cfs_quota_us",
                "150000\n",
            ),
            (
                "/sys/fs/cgroup/cpu,cpuacct/fleet/cpu.cfs_period_us",
                "100000\n",
            ),
        ]);
        assert_eq!(quota_from(cg, HYBRID, read), Some(1.5));
        // none anywhere
        let read = files(&[("/sys/fs/cgroup/cpu,cpuacct/fleet/kv/cpu.cfs_quota_us", "-1")]);
        assert_eq!(quota_from(cg, HYBRID, read), None);
    }

    #[test]
    fn v2_takes_the_tightest_up_the_tree() {
        let mounts = "30 1 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate\n";
        let cg = "0::/system.slice/kv.service\n";
        let read = files(&[
            (
                "/sys/fs/cgroup/system.slice/kv.service/cpu.max",
                "200000 100000\n",
            ),
            ("/sys/fs/cgroup/system.slice/cpu.max", "max 100000\n"),
            ("/sys/fs/cgroup/cpu.max", "75000 100000\n"),
        ]);
        assert_eq!(quota_from(cg, mounts, read), Some(0.75));
        let read = files(&[(
            "/sys/fs/cgroup/system.slice/kv.service/cpu.max",
            "max 100000\n",
        )]);
        assert_eq!(quota_from(cg, mounts, read), None);
    }

    #[test]
    fn a_container_sees_its_own_cgroup_as_the_mount_root() {
        // inside a cgroup namespace the mount's root is the container's cgroup
        let mounts =
            "700 690 0:26 /kubepods/pod1/c1 /sys/fs/cgroup ro,nosuid - cgroup2 cgroup2 rw\n";
        let cg = "0::/kubepods/pod1/c1\n";
        let read = files(&[("/sys/fs/cgroup/cpu.max", "25000 100000")]);
        assert_eq!(quota_from(cg, mounts, read), Some(0.25));
        // and in a namespace the path may already be relative: "/"
        let mounts = "700 690 0:26 / /sys/fs/cgroup ro,nosuid - cgroup2 cgroup2 rw\n";
        let read = files(&[("/sys/fs/cgroup/cpu.max", "25000 100000")]);
        assert_eq!(quota_from("0::/\n", mounts, read), Some(0.25));
    }

    #[test]
    fn garbage_reads_as_no_quota() {
        assert_eq!(parse_v2("max"), None);
        assert_eq!(parse_v2(""), None);
        assert_eq!(parse_v2("abc 100000"), None);
        assert_eq!(parse_v1("-1", "100000"), None);
        assert_eq!(parse_v1("x", ""), None);
        assert_eq!(quota_from("garbage", "more garbage", |_| None), None);
        // this machine: whatever it has, reading it does not fail
        let _ = cpu_quota();
    }
}
