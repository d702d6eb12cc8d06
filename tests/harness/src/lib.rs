//! The one integration harness: spawns kvfleet binaries (built on demand with
//! the test's own cargo profile) and Debian's `redis-server` on free loopback
//! ports, waits for readiness with PING instead of sleeping, and kills them on
//! drop. [`RawClient`] speaks RESP byte-for-byte, for exact reply comparison.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kvfleet_resp::Frame;

/// How long a process may take to answer PING.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// `target/<profile>` of the running test binary.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test exe path");
    // target/<profile>/deps/<test-bin>
    exe.parent()
        .and_then(|p| p.parent())
        .expect("target/<profile>")
        .to_path_buf()
}

/// Path to a workspace binary, built once per test process so tests never run a stale one.
/// `KVFLEET_BIN_DIR` names a directory of already-built binaries to test
/// instead (the profile-guided release build, scripts/build-release.sh).
pub fn binary(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    if let Some(dir) = std::env::var_os("KVFLEET_BIN_DIR") {
        let p = PathBuf::from(dir).join(name);
        assert!(p.exists(), "{} not built (KVFLEET_BIN_DIR)", p.display());
        return p;
    }
    let dir = target_dir();
    BUILT.get_or_init(|| {
        if std::env::var_os("KVFLEET_NO_BUILD").is_some() {
            return;
        }
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--quiet", "--workspace", "--bins"]);
        if dir.ends_with("release") {
            cmd.arg("--release");
        }
        let st = cmd.status().expect("run cargo build");
        assert!(st.success(), "cargo build of the binaries failed");
    });
    let p = dir.join(name);
    assert!(p.exists(), "{} not built", p.display());
    p
}

/// A free loopback port (the OS picks; tiny race until the child binds it, so spawns retry).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind :0")
        .local_addr()
        .expect("addr")
        .port()
}

/// A directory of its own under the system temp dir, removed on drop (also
/// when the test fails), for config files and server working directories.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("kvfleet-{tag}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A spawned process, killed (SIGKILL) and reaped on drop.
pub struct Proc {
    pub child: Child,
    pub port: u16,
    pub name: String,
    /// A working directory of its own, removed on drop (redis-server writes
    /// RDB files there; a shared one would leak data between tests).
    pub dir: Option<TempDir>,
}

impl Proc {
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn client(&self) -> RawClient {
        RawClient::connect(self.port)
    }

    pub fn redis_url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// True while the process has not exited.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_ready(p: &mut Proc) -> bool {
    let deadline = Instant::now() + READY_TIMEOUT;
    while Instant::now() < deadline {
        if !p.alive() {
            return false;
        }
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", p.port)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            if s.write_all(b"*1\r\n$4\r\nPING\r\n").is_ok() {
                let mut buf = [0u8; 64];
                // -LOADING (redis-server reading its RDB/AOF) is not ready yet:
                // tests would see it as a reply to their first command
                if let Ok(n) = s.read(&mut buf)
                    && (buf[..n].starts_with(b"+PONG") || buf[..n].starts_with(b"-NOAUTH"))
                {
                    return true;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// Spawns `make(port)` until one binds and answers PING (ports can be raced).
fn spawn_ready(name: &str, make: impl Fn(u16) -> Command) -> Proc {
    for _ in 0..5 {
        let port = free_port();
        let mut cmd = make(port);
        cmd.stdin(Stdio::null()).stdout(Stdio::null());
        if std::env::var_os("KVFLEET_TEST_LOGS").is_none() {
            cmd.stderr(Stdio::null());
        }
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        let mut p = Proc {
            child,
            port,
            name: name.into(),
            dir: None,
        };
        if wait_ready(&mut p) {
            return p;
        }
    }
    panic!("{name} did not become ready");
}

/// The flags every test server gets unless the test gives its own, matching
/// [`redis_server`]'s: no save points, and RDB files in a directory of its
/// own (removed with the process) rather than the working directory.
fn server_defaults(extra: &[String]) -> (Vec<String>, Option<TempDir>) {
    let mut args = Vec::new();
    let mut tmp = None;
    if !extra.iter().any(|a| a == "--dir") {
        let t = TempDir::new("kvfleet");
        args.extend(["--dir".to_string(), t.path().display().to_string()]);
        tmp = Some(t);
    }
    if !extra.iter().any(|a| a == "--save") {
        args.extend(["--save".to_string(), String::new()]);
    }
    (args, tmp)
}

/// `kvfleet-server` on a given port (to restart one where a proxy expects
/// it, or on the same `--dir` to reload what it saved).
pub fn kvfleet_server_on(port: u16, extra: &[&str]) -> Proc {
    let bin = binary("kvfleet-server");
    let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    let (defaults, tmp) = server_defaults(&extra);
    let mut c = Command::new(&bin);
    c.args(["--port", &port.to_string()])
        .args(&defaults)
        .args(&extra);
    c.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let child = c.spawn().expect("spawn kvfleet-server");
    let mut p = Proc {
        child,
        port,
        name: "kvfleet-server".into(),
        dir: tmp,
    };
    assert!(
        wait_ready(&mut p),
        "kvfleet-server on {port} did not become ready"
    );
    p
}

/// `kvfleet-server` on a free port with extra flags.
pub fn kvfleet_server(extra: &[&str]) -> Proc {
    let bin = binary("kvfleet-server");
    let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    let (defaults, tmp) = server_defaults(&extra);
    let mut p = spawn_ready("kvfleet-server", |port| {
        let mut c = Command::new(&bin);
        c.args(["--port", &port.to_string()])
            .args(&defaults)
            .args(&extra);
        c
    });
    p.dir = tmp;
    p
}

/// `kvfleet-proxy` on a free port in front of `backends` (one group each,
/// slots spread evenly in order), with extra flags.
pub fn kvfleet_proxy(backends: &[&Proc], extra: &[&str]) -> Proc {
    let mut args: Vec<String> = Vec::new();
    for b in backends {
        args.push("--group".into());
        args.push(b.addr());
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let bin = binary("kvfleet-proxy");
    spawn_ready("kvfleet-proxy", |port| {
        let mut c = Command::new(&bin);
        c.args(["--port", &port.to_string()]).args(&args);
        c
    })
}

/// Debian's `redis-server` on a free port, persistence off, with extra `--name value` flags.
pub fn redis_server(extra: &[&str]) -> Proc {
    let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    let tmp = TempDir::new("redis");
    let dir = tmp.path().to_path_buf();
    let mut p = spawn_ready("redis-server", |port| {
        let mut c = Command::new("redis-server");
        c.args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .args(["--daemonize", "no", "--protected-mode", "no"])
        .arg("--dir")
        .arg(&dir)
        .args(&extra);
        c
    });
    p.dir = Some(tmp);
    p
}

pub fn have_redis_server() -> bool {
    Command::new("redis-server")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Encodes a command as a RESP multibulk.
pub fn encode_cmd(args: &[&[u8]]) -> Vec<u8> {
    let mut v = Vec::new();
    kvfleet_resp::encode::command(&mut v, args);
    v
}

/// A blocking RESP client that returns replies as raw bytes.
pub struct RawClient {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl RawClient {
    pub fn connect(port: u16) -> Self {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        stream.set_nodelay(true).ok();
        RawClient {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn send(&mut self, raw: &[u8]) {
        self.stream.write_all(raw).expect("write");
    }

    /// Reads one complete reply frame's bytes; `None` on EOF.
    pub fn read_reply(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some(n) =
                kvfleet_resp::frame_len(&self.buf).expect("server sent a malformed frame")
            {
                return Some(self.buf.drain(..n).collect());
            }
            let mut chunk = [0u8; 65536];
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) => panic!("read: {e}"),
            }
        }
    }

    /// True when the server closed the connection: reads (discarding anything
    /// still buffered) until EOF or a reset; false if the read timeout passes first.
    pub fn closed(&mut self) -> bool {
        let mut b = [0u8; 65536];
        loop {
            match self.stream.read(&mut b) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return false;
                }
                Err(_) => return true,
            }
        }
    }

    pub fn cmd(&mut self, args: &[&[u8]]) -> Vec<u8> {
        self.send(&encode_cmd(args));
        self.read_reply().expect("connection closed")
    }

    /// Sends every command in one write (a pipeline) and reads one reply per command.
    pub fn pipeline(&mut self, cmds: &[Vec<Vec<u8>>]) -> Vec<Vec<u8>> {
        let mut batch = Vec::new();
        for c in cmds {
            let args: Vec<&[u8]> = c.iter().map(|a| &a[..]).collect();
            batch.extend(encode_cmd(&args));
        }
        self.send(&batch);
        (0..cmds.len())
            .map(|_| self.read_reply().expect("connection closed mid-pipeline"))
            .collect()
    }

    /// `cmd` with string arguments, returning the decoded frame.
    pub fn call(&mut self, args: &[&str]) -> Frame {
        let a: Vec<&[u8]> = args.iter().map(|s| s.as_bytes()).collect();
        self.send(&encode_cmd(&a));
        self.read_frame().expect("connection closed")
    }

    /// The next reply (or push) decoded; `None` on EOF.
    pub fn read_frame(&mut self) -> Option<Frame> {
        let raw = Bytes::from(self.read_reply()?);
        Some(
            kvfleet_resp::parse_frame(&raw)
                .expect("frame")
                .expect("complete")
                .0,
        )
    }

    /// One field of `INFO <section>`; panics when the server has no such field.
    pub fn info_field(&mut self, section: &str, field: &str) -> String {
        let Frame::Bulk(b) = self.call(&["INFO", section]) else {
            panic!("INFO not bulk")
        };
        let text = String::from_utf8_lossy(&b).into_owned();
        text.lines()
            .find_map(|l| {
                l.strip_prefix(&format!("{field}:"))
                    .map(|v| v.trim().to_string())
            })
            .unwrap_or_else(|| panic!("no {field} in INFO {section}"))
    }

    /// Polls `INFO <section>` until `field` reads `value`; false if it did
    /// not within `timeout`.
    pub fn wait_info(
        &mut self,
        section: &str,
        field: &str,
        value: &str,
        timeout: Duration,
    ) -> bool {
        eventually(timeout, || self.info_field(section, field) == value)
    }
}

/// Waits (up to 30 s) until `replica`'s link is up and it has applied
/// everything `master` streamed (equal replication offsets).
pub fn caught_up(master: &mut RawClient, replica: &mut RawClient) -> bool {
    eventually(Duration::from_secs(30), || {
        replica.info_field("replication", "master_link_status") == "up"
            && replica.info_field("replication", "master_repl_offset")
                == master.info_field("replication", "master_repl_offset")
    })
}

/// A child cgroup of the test's own with a CPU quota, on whichever hierarchy
/// carries the `cpu` controller (v1 `cpu`, or v2); processes added to it go
/// back to the parent and the group is removed on drop. Needs root.
pub struct CpuGroup {
    dir: PathBuf,
    parent: PathBuf,
}

impl CpuGroup {
    /// A group capped at `cores`; panics where no cgroup can be made.
    pub fn new(tag: &str, cores: f64) -> CpuGroup {
        let own = std::fs::read_to_string("/proc/self/cgroup").expect("/proc/self/cgroup");
        let path = |v2: bool| {
            own.lines().find_map(|l| {
                let mut f = l.splitn(3, ':');
                let (id, ctl, path) = (f.next()?, f.next()?, f.next()?);
                let hit = if v2 {
                    id == "0" && ctl.is_empty()
                } else {
                    ctl.split(',').any(|c| c == "cpu")
                };
                hit.then(|| path.trim_start_matches('/').to_string())
            })
        };
        let name = format!("kvfleet-{tag}-{}", std::process::id());
        let period = 100_000u64;
        let quota = (cores * period as f64) as u64;
        // v1: the `cpu` hierarchy's mount
        for mount in ["/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/cpu"] {
            let Some(p) = path(false) else { break };
            let parent = PathBuf::from(mount).join(p);
            if parent.join("cpu.cfs_quota_us").exists() {
                let dir = parent.join(&name);
                std::fs::create_dir(&dir).expect("mkdir cgroup (root needed)");
                std::fs::write(dir.join("cpu.cfs_period_us"), period.to_string()).unwrap();
                std::fs::write(dir.join("cpu.cfs_quota_us"), quota.to_string()).unwrap();
                return CpuGroup { dir, parent };
            }
        }
        // v2: the unified hierarchy, `cpu` enabled for children
        for mount in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
            let Some(p) = path(true) else { break };
            let parent = PathBuf::from(mount).join(p);
            let ok = std::fs::read_to_string(parent.join("cgroup.controllers"))
                .is_ok_and(|c| c.split_whitespace().any(|c| c == "cpu"));
            if ok {
                let _ = std::fs::write(parent.join("cgroup.subtree_control"), "+cpu");
                let dir = parent.join(&name);
                std::fs::create_dir(&dir).expect("mkdir cgroup (root needed)");
                std::fs::write(dir.join("cpu.max"), format!("{quota} {period}")).unwrap();
                return CpuGroup { dir, parent };
            }
        }
        panic!("no writable cgroup with the cpu controller on this machine");
    }

    /// Moves process `pid` (all its threads) into the group.
    pub fn add(&self, pid: u32) {
        std::fs::write(self.dir.join("cgroup.procs"), pid.to_string()).expect("cgroup.procs");
    }
}

impl Drop for CpuGroup {
    fn drop(&mut self) {
        let procs = std::fs::read_to_string(self.dir.join("cgroup.procs")).unwrap_or_default();
        for pid in procs.split_whitespace() {
            let _ = std::fs::write(self.parent.join("cgroup.procs"), pid);
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// Shorthand for a bulk frame in assertions.
pub fn bulk(s: &str) -> Frame {
    Frame::Bulk(Bytes::copy_from_slice(s.as_bytes()))
}

/// Polls `f` until it is true or `timeout` passes; for state that changes
/// asynchronously (expiry, kills), where no readiness signal exists.
pub fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
