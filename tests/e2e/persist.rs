//! Persistence against the real thing: DUMP/RESTORE payloads and RDB files
//! cross between kvfleet-server and Debian's redis-server 7.0.15 in both
//! directions (every type, in Redis's compact and plain encodings), the
//! forkless snapshot is point-in-time under concurrent writers, a corrupt
//! file stops the server from starting, and save points fire.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kvfleet_harness::{
    RawClient, TempDir, binary, kvfleet_server, kvfleet_server_on, redis_server,
};
use kvfleet_resp::Frame;

pub(crate) fn text(f: &Frame) -> String {
    match f {
        Frame::Bulk(b) | Frame::Simple(b) | Frame::Double(b) => {
            String::from_utf8_lossy(b).into_owned()
        }
        Frame::Integer(n) => n.to_string(),
        Frame::Null => "(nil)".into(),
        Frame::Array(v) => v.iter().map(text).collect::<Vec<_>>().join(","),
        other => format!("{other:?}"),
    }
}

pub(crate) fn strs(c: &mut RawClient, args: &[&str]) -> Vec<String> {
    match c.call(args) {
        Frame::Array(v) => v.iter().map(text).collect(),
        other => panic!("{args:?} -> {other:?}"),
    }
}

/// The whole keyspace as `key -> "type:value;ttl?"`, in a form that does
/// not depend on encodings or iteration order.
pub(crate) fn keyspace(c: &mut RawClient) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for k in strs(c, &["KEYS", "*"]) {
        let t = text(&c.call(&["TYPE", &k]));
        let v = match t.as_str() {
            "string" => text(&c.call(&["GET", &k])),
            "list" => strs(c, &["LRANGE", &k, "0", "-1"]).join(","),
            "set" => {
                let mut m = strs(c, &["SMEMBERS", &k]);
                m.sort();
                m.join(",")
            }
            "hash" => {
                let v = strs(c, &["HGETALL", &k]);
                let mut pairs: Vec<String> = v.chunks(2).map(|p| p.join("=")).collect();
                pairs.sort();
                pairs.join(",")
            }
            "zset" => strs(c, &["ZRANGE", &k, "0", "-1", "WITHSCORES"]).join(","),
            "stream" => format!(
                "{:?} {:?}",
                c.call(&["XRANGE", &k, "-", "+"]),
                c.call(&["XINFO", "GROUPS", &k])
            ),
            other => panic!("type {other}"),
        };
        let ttl = matches!(c.call(&["PTTL", &k]), Frame::Integer(n) if n > 0);
        out.insert(k, format!("{t}:{v};ttl={ttl}"));
    }
    out
}

/// Every type, in every encoding Redis 7.0 picks for it: embstr/int/raw
/// strings (raw ones LZF-compressed in its files), listpack and hashtable
/// hashes and sorted sets, quicklists, intsets and hashtable sets.
pub(crate) fn populate(c: &mut RawClient) {
    let big = "x".repeat(300);
    let mut cmds: Vec<Vec<String>> = vec![
        vec!["SET".into(), "s:small".into(), "hello".into()],
        vec!["SET".into(), "s:int".into(), "12345".into()],
        vec!["SET".into(), "s:neg".into(), "-70000".into()],
        vec!["SET".into(), "s:big".into(), big.clone()],
        vec!["SET".into(), "s:zeros".into(), "007".into()],
        vec![
            "SET".into(),
            "s:ttl".into(),
            "v".into(),
            "EX".into(),
            "1000".into(),
        ],
        vec![
            "HSET".into(),
            "h:small".into(),
            "f1".into(),
            "v1".into(),
            "n".into(),
            "42".into(),
        ],
        vec![
            "RPUSH".into(),
            "l:small".into(),
            "a".into(),
            "1".into(),
            "-5".into(),
            big.clone(),
        ],
        vec![
            "SADD".into(),
            "set:int".into(),
            "1".into(),
            "-2".into(),
            "300000".into(),
        ],
        vec![
            "SADD".into(),
            "set:str".into(),
            "a".into(),
            "b".into(),
            "c".into(),
        ],
        vec![
            "ZADD".into(),
            "z:small".into(),
            "1.5".into(),
            "a".into(),
            "-2".into(),
            "b".into(),
            "inf".into(),
            "c".into(),
        ],
        vec!["PEXPIRE".into(), "h:small".into(), "500000".into()],
    ];
    let mut h = vec!["HSET".to_string(), "h:big".into()];
    let mut z = vec!["ZADD".to_string(), "z:big".into()];
    let mut l = vec!["RPUSH".to_string(), "l:big".into()];
    let mut s = vec!["SADD".to_string(), "set:big".into()];
    for i in 0..300 {
        h.extend([format!("field{i}"), format!("value{i}")]);
        z.extend([format!("{}", i as f64 / 3.0), format!("m{i}")]);
        l.push(format!("item{i}"));
        s.push(format!("{i}"));
    }
    cmds.extend([h, z, l, s]);
    let cmds: Vec<Vec<Vec<u8>>> = cmds
        .into_iter()
        .map(|c| c.into_iter().map(String::into_bytes).collect())
        .collect();
    for r in c.pipeline(&cmds) {
        assert!(!r.starts_with(b"-"), "{}", String::from_utf8_lossy(&r));
    }
}

fn dump(c: &mut RawClient, key: &str) -> Vec<u8> {
    match c.call(&["DUMP", key]) {
        Frame::Bulk(b) => b.to_vec(),
        other => panic!("DUMP {key} -> {other:?}"),
    }
}

/// DUMP from `from`, RESTORE (with the remaining TTL) into `to`, key by key.
fn copy_keys<'k>(from: &mut RawClient, to: &mut RawClient, keys: impl Iterator<Item = &'k String>) {
    for key in keys {
        let p = dump(from, key);
        let pttl = text(&from.call(&["PTTL", key]));
        let ttl = if pttl.starts_with('-') {
            "0".into()
        } else {
            pttl
        };
        let reply = to.cmd(&[b"RESTORE", key.as_bytes(), ttl.as_bytes(), &p]);
        assert_eq!(String::from_utf8_lossy(&reply), "+OK\r\n", "RESTORE {key}");
    }
}

#[test]
fn dump_payloads_cross_between_kvfleet_and_redis_for_every_type() {
    let redis = redis_server(&[]);
    let kv = kvfleet_server(&[]);
    let (mut r, mut k) = (redis.client(), kv.client());
    populate(&mut r);
    let want = keyspace(&mut r);
    // Redis → kvfleet
    copy_keys(&mut r, &mut k, want.keys());
    assert_eq!(
        keyspace(&mut k),
        want,
        "kvfleet after RESTOREs of Redis payloads"
    );
    // kvfleet → a fresh Redis
    let redis2 = redis_server(&[]);
    let mut r2 = redis2.client();
    copy_keys(&mut k, &mut r2, want.keys());
    assert_eq!(
        keyspace(&mut r2),
        want,
        "Redis after RESTOREs of kvfleet payloads"
    );
    // strings' payloads are byte-identical to Redis's (short ones are not compressed)
    assert_eq!(dump(&mut k, "s:small"), dump(&mut r, "s:small"));
    assert_eq!(dump(&mut k, "s:int"), dump(&mut r, "s:int"));
}

#[test]
fn restore_errors_and_options_answer_as_redis_does() {
    let redis = redis_server(&[]);
    let kv = kvfleet_server(&[]);
    let (mut r, mut k) = (redis.client(), kv.client());
    for c in [&mut r, &mut k] {
        c.call(&["SET", "src", "value"]);
        c.call(&["SET", "busy", "x"]);
    }
    let good = dump(&mut r, "src");
    let mut flipped = good.clone();
    flipped[2] ^= 0x20;
    let mut newer = good.clone();
    let n = newer.len();
    newer[n - 10] = 11;
    let cases: Vec<Vec<&[u8]>> = vec![
        vec![b"RESTORE", b"busy", b"0", &good],
        vec![b"RESTORE", b"new", b"-1", &good],
        vec![b"RESTORE", b"new", b"abc", &good],
        vec![b"RESTORE", b"new", b"0", &flipped],
        vec![b"RESTORE", b"new", b"0", &newer],
        vec![b"RESTORE", b"new", b"0", b"short"],
        vec![b"RESTORE", b"new", b"0", &good, b"IDLETIME", b"-1"],
        vec![b"RESTORE", b"new", b"0", &good, b"FREQ", b"256"],
        vec![
            b"RESTORE",
            b"new",
            b"0",
            &good,
            b"IDLETIME",
            b"5",
            b"FREQ",
            b"3",
        ],
        vec![b"RESTORE", b"new", b"0", &good, b"BOGUS"],
        vec![b"RESTORE", b"busy", b"0", &good, b"REPLACE"],
        vec![b"GET", b"busy"],
        vec![b"RESTORE", b"gone", b"1", &good, b"ABSTTL"],
        vec![b"EXISTS", b"gone"],
        vec![b"RESTORE", b"t", b"100000", &good],
        vec![b"PTTL", b"t"],
        vec![b"DUMP", b"missing"],
        vec![b"RESTORE", b"ws", b"0", &good, b"IDLETIME", b"100"],
        vec![b"OBJECT", b"IDLETIME", b"ws"],
    ];
    for args in cases {
        let (a, b) = (r.cmd(&args), k.cmd(&args));
        if args[0] == b"PTTL" || args[0] == b"OBJECT" {
            // both within a second of what was asked
            let num =
                |v: &[u8]| -> i64 { String::from_utf8_lossy(&v[1..v.len() - 2]).parse().unwrap() };
            assert!((num(&a) - num(&b)).abs() < 2000, "{a:?} vs {b:?}");
            continue;
        }
        assert_eq!(
            String::from_utf8_lossy(&b),
            String::from_utf8_lossy(&a),
            "{:?}",
            String::from_utf8_lossy(args[0])
        );
    }
}

fn dir_of(p: &kvfleet_harness::Proc) -> std::path::PathBuf {
    p.dir
        .as_ref()
        .expect("a dir of its own")
        .path()
        .to_path_buf()
}

#[test]
fn rdb_files_cross_between_kvfleet_and_redis_and_survive_a_restart() {
    // Redis's file (compact encodings, LZF) → kvfleet
    let redis = redis_server(&["--rdbcompression", "yes"]);
    let mut r = redis.client();
    populate(&mut r);
    let want = keyspace(&mut r);
    assert_eq!(text(&r.call(&["SAVE"])), "OK");
    let redis_size = std::fs::metadata(dir_of(&redis).join("dump.rdb"))
        .unwrap()
        .len();
    let kv = kvfleet_server(&["--dir", &dir_of(&redis).display().to_string()]);
    let mut k = kv.client();
    assert_eq!(keyspace(&mut k), want, "kvfleet loading Redis's dump.rdb");
    let loaded = k.info_field("persistence", "rdb_last_load_keys_loaded");
    assert_eq!(loaded, want.len().to_string());
    drop(k);
    drop(kv);

    // kvfleet's file → Redis, and → kvfleet again after a restart
    let dir = TempDir::new("rdb-cross");
    let d = dir.path().display().to_string();
    let kv = kvfleet_server(&["--dir", &d]);
    let mut k = kv.client();
    populate(&mut k);
    assert_eq!(text(&k.call(&["SAVE"])), "OK");
    // compressible strings are stored LZF-compressed, as Redis stores them
    // (the compact container encodings Redis uses we do not write)
    let size = std::fs::metadata(dir.path().join("dump.rdb"))
        .unwrap()
        .len();
    assert!(size < redis_size * 2, "{size} vs Redis {redis_size}");
    let rdb_size = |k: &mut RawClient| {
        assert_eq!(text(&k.call(&["SAVE"])), "OK");
        std::fs::metadata(dir.path().join("dump.rdb"))
            .unwrap()
            .len()
    };
    k.call(&["SET", "compressible", &"abc".repeat(30_000)]);
    let packed = rdb_size(&mut k);
    assert_eq!(
        text(&k.call(&["CONFIG", "SET", "rdbcompression", "no"])),
        "OK"
    );
    let plain = rdb_size(&mut k);
    assert!(plain > packed + 80_000, "{plain} uncompressed vs {packed}");
    k.call(&["CONFIG", "SET", "rdbcompression", "yes"]);
    let want = keyspace(&mut k);
    rdb_size(&mut k);
    let port = kv.port;
    drop(k);
    drop(kv);
    let kv = kvfleet_server_on(port, &["--dir", &d]);
    assert_eq!(keyspace(&mut kv.client()), want, "kvfleet after restart");
    let redis = redis_server(&["--dir", &d]);
    assert_eq!(
        keyspace(&mut redis.client()),
        want,
        "Redis loading kvfleet's dump.rdb"
    );
}

/// A background save while writers run: the file must hold the keyspace of
/// one instant. Each step `n` sets `k:{n % N}` and `last` to `n` in one MSET
/// (atomic), so in a point-in-time copy every key holds the latest `n` of
/// its residue at or below `last` — any key from before or after that
/// instant breaks the equation.
#[test]
fn bgsave_under_concurrent_writers_saves_one_instant() {
    const N: u64 = 20_000;
    // writers on both workers at once
    let kv = kvfleet_server(&["--threads", "2", "--adaptive-threads", "no"]);
    let mut c = kv.client();
    let init: Vec<Vec<Vec<u8>>> = (0..N)
        .map(|i| {
            vec![
                b"SET".to_vec(),
                format!("k:{i}").into_bytes(),
                b"-1".to_vec(),
            ]
        })
        .collect();
    c.pipeline(&init);
    let port = kv.port;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..2u64)
        .map(|w| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut c = RawClient::connect(port);
                let mut n = w;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    // writer w owns the steps n ≡ w (mod 2): both write `last`
                    let batch: Vec<Vec<Vec<u8>>> = (0..64)
                        .map(|_| {
                            n += 2;
                            vec![
                                b"MSET".to_vec(),
                                format!("k:{}", n % N).into_bytes(),
                                n.to_string().into_bytes(),
                                format!("last{w}").into_bytes(),
                                n.to_string().into_bytes(),
                            ]
                        })
                        .collect();
                    c.pipeline(&batch);
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300)); // let the writers get going
    assert_eq!(text(&c.call(&["BGSAVE"])), "Background saving started");
    assert!(c.wait_info(
        "persistence",
        "rdb_bgsave_in_progress",
        "0",
        Duration::from_secs(30)
    ));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    assert_eq!(c.info_field("persistence", "rdb_last_bgsave_status"), "ok");
    let pause: u64 = c.info_field("stats", "latest_fork_usec").parse().unwrap();
    assert!(pause > 0 && pause < 1_000_000, "pause {pause} µs");

    let f = std::fs::File::open(dir_of(&kv).join("dump.rdb")).unwrap();
    let mut l = kvfleet_rdb::Loader::new(std::io::BufReader::new(f)).unwrap();
    let mut vals = BTreeMap::new();
    while let Some(item) = l.next_item().unwrap() {
        if let kvfleet_rdb::Item::Record(r) = item {
            let kvfleet_rdb::Value::Str(v) = r.value else {
                panic!()
            };
            let v: i64 = String::from_utf8(v).unwrap().parse().unwrap();
            vals.insert(String::from_utf8(r.key).unwrap(), v);
        }
    }
    let last = |w: u64| vals.get(&format!("last{w}")).copied().unwrap_or(-1);
    let (l0, l1) = (last(0), last(1));
    assert!(l0 > 0 && l1 > 0, "the writers ran before the snapshot");
    let mut checked = 0;
    for i in 0..N {
        let v = vals[&format!("k:{i}")];
        // the latest step of each writer at or below its `last` that hit key i
        // writer w's steps are w+2, w+4, …: with N even, key i is only
        // ever written by the writer of its parity
        let w = i % 2;
        let last = if w == 0 { l0 } else { l1 };
        let s = last - (last - i as i64).rem_euclid(N as i64);
        let want = if s >= w as i64 + 2 { s } else { -1 };
        assert_eq!(v, want, "k:{i} in the snapshot (last0={l0}, last1={l1})");
        checked += 1;
    }
    assert_eq!(checked, N);
}

#[test]
fn a_corrupt_or_truncated_rdb_stops_the_server_with_a_clear_error() {
    let dir = TempDir::new("rdb-corrupt");
    let d = dir.path().display().to_string();
    {
        let kv = kvfleet_server(&["--dir", &d]);
        let mut c = kv.client();
        populate(&mut c);
        assert_eq!(text(&c.call(&["SAVE"])), "OK");
    }
    let path = dir.path().join("dump.rdb");
    let good = std::fs::read(&path).unwrap();
    let start = |why: &str| -> String {
        let out = Command::new(binary("kvfleet-server"))
            .args(["--port", "0", "--dir", &d, "--save", ""])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let t = Instant::now();
        let out = out.wait_with_output().unwrap();
        assert!(t.elapsed() < Duration::from_secs(30));
        assert!(!out.status.success(), "started on a {why} file");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let mut flipped = good.clone();
    let mid = good.len() / 2;
    flipped[mid] ^= 0x55;
    std::fs::write(&path, &flipped).unwrap();
    let err = start("bit-flipped");
    assert!(
        err.contains("not starting") && err.contains("dump.rdb"),
        "{err}"
    );
    std::fs::write(&path, &good[..good.len() - 20]).unwrap();
    let err = start("truncated");
    assert!(
        err.contains("unexpected end") || err.contains("bad data"),
        "{err}"
    );
    std::fs::write(&path, b"REDIS0042").unwrap();
    assert!(start("future-version").contains("version 42"));
}

#[test]
fn save_points_trigger_a_background_save() {
    let kv = kvfleet_server(&[]);
    let mut c = kv.client();
    assert_eq!(c.info_field("persistence", "rdb_saves"), "0");
    assert_eq!(text(&c.call(&["CONFIG", "SET", "save", "1 3"])), "OK");
    for i in 0..3 {
        c.call(&["SET", &format!("k{i}"), "v"]);
    }
    assert!(
        c.wait_info("persistence", "rdb_saves", "1", Duration::from_secs(10)),
        "no save after 3 changes and 1 s"
    );
    assert_eq!(
        c.info_field("persistence", "rdb_changes_since_last_save"),
        "0"
    );
    assert!(dir_of(&kv).join("dump.rdb").exists());
    assert!(text(&c.call(&["CONFIG", "SET", "save", "1"])).contains("Invalid save"));
}

/// Commands whose effect depends on the moment or on chance, which the AOF
/// must hold in a replayable form, plus a transaction and a served BLPOP.
pub(crate) fn write_tricky(c: &mut RawClient, port: u16) {
    for args in [
        &["SET", "t:ex", "v", "EX", "1000"][..],
        &["SET", "t:gone", "v", "PX", "1"],
        &["SETEX", "t:setex", "900", "v"],
        &["SET", "t:exp", "v"],
        &["EXPIRE", "t:exp", "800"],
        &["SET", "t:getex", "v"],
        &["GETEX", "t:getex", "PX", "700000"],
        &["SADD", "t:set", "a", "b", "c", "d", "e"],
        &["SPOP", "t:set"],
        &["SPOP", "t:set", "2"],
        &["INCRBYFLOAT", "t:float", "1.1"],
        &["INCRBYFLOAT", "t:float", "2.2"],
        &["HINCRBYFLOAT", "t:hf", "f", "0.3"],
        &["MULTI"],
        &["INCR", "t:multi"],
        &["RPUSH", "t:list", "a", "b", "c"],
        &["EXEC"],
    ] {
        let r = c.call(args);
        assert!(!matches!(r, Frame::Error(_)), "{args:?} -> {r:?}");
    }
    // a BLPOP served by a later push
    let mut blocked = RawClient::connect(port);
    blocked.send(&kvfleet_harness::encode_cmd(&[b"BLPOP", b"t:q", b"5"]));
    assert!(c.wait_info("clients", "blocked_clients", "1", Duration::from_secs(5)));
    c.call(&["RPUSH", "t:q", "x", "y"]);
    assert!(blocked.read_reply().is_some());
    let p = dump(c, "t:list");
    assert_eq!(
        c.cmd(&[b"RESTORE", b"t:restored", b"600000", &p]),
        b"+OK\r\n"
    );
}

#[test]
fn the_aof_replays_exactly_after_a_kill_a_rewrite_and_in_redis_and_back() {
    let dir = TempDir::new("aof");
    let d = dir.path().display().to_string();
    let flags = ["--dir", &d, "--appendonly", "yes"];
    let kv = kvfleet_server(&flags);
    let port = kv.port;
    let mut c = kv.client();
    populate(&mut c);
    write_tricky(&mut c, port);
    let want = keyspace(&mut c);
    assert_eq!(c.info_field("persistence", "aof_enabled"), "1");
    drop(c);
    drop(kv); // SIGKILL: acknowledged writes are in the OS already
    let kv = kvfleet_server_on(port, &flags);
    let mut c = kv.client();
    assert_eq!(keyspace(&mut c), want, "after kill -9 and restart");

    // rewrite, write more, restart: base + new increment only
    assert_eq!(
        text(&c.call(&["BGREWRITEAOF"])),
        "Background append only file rewriting started"
    );
    assert!(c.wait_info(
        "persistence",
        "aof_rewrite_in_progress",
        "0",
        Duration::from_secs(30)
    ));
    assert_eq!(
        c.info_field("persistence", "aof_last_bgrewrite_status"),
        "ok"
    );
    c.call(&["SET", "after:rewrite", "1"]);
    c.call(&["DEL", "s:big"]);
    let want = keyspace(&mut c);
    let manifest =
        std::fs::read_to_string(dir.path().join("appendonlydir/appendonly.aof.manifest")).unwrap();
    assert!(
        manifest.contains("appendonly.aof.2.base.rdb") && !manifest.contains(".1."),
        "{manifest}"
    );
    let files = std::fs::read_dir(dir.path().join("appendonlydir"))
        .unwrap()
        .count();
    assert_eq!(files, 3, "old parts deleted: {manifest}");
    drop(c);
    drop(kv);
    let kv = kvfleet_server_on(port, &flags);
    assert_eq!(
        keyspace(&mut kv.client()),
        want,
        "after a rewrite and restart"
    );
    drop(kv);

    // Redis 7.0 loads our directory, writes more, rewrites; we load its
    let redis = redis_server(&["--dir", &d, "--appendonly", "yes"]);
    let mut r = redis.client();
    assert_eq!(keyspace(&mut r), want, "redis-server loading kvfleet's AOF");
    r.call(&["SET", "from:redis", "1", "EX", "900"]);
    assert_eq!(
        text(&r.call(&["BGREWRITEAOF"])),
        "Background append only file rewriting started"
    );
    assert!(r.wait_info(
        "persistence",
        "aof_rewrite_in_progress",
        "0",
        Duration::from_secs(30)
    ));
    r.call(&["HSET", "from:redis:h", "f", "v"]);
    let want = keyspace(&mut r);
    drop(r);
    drop(redis);
    let kv = kvfleet_server_on(port, &flags);
    assert_eq!(
        keyspace(&mut kv.client()),
        want,
        "kvfleet loading Redis's AOF"
    );
}

#[test]
fn a_cut_off_aof_tail_is_dropped_or_refused_as_configured() {
    let dir = TempDir::new("aof-tail");
    let d = dir.path().display().to_string();
    let flags = [
        "--dir",
        &d,
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
    ];
    let kv = kvfleet_server(&flags);
    let port = kv.port;
    let mut c = kv.client();
    c.call(&["SET", "a", "1"]);
    c.call(&["RPUSH", "l", "x"]);
    drop(c);
    drop(kv);
    let incr = dir.path().join("appendonlydir/appendonly.aof.1.incr.aof");
    let good = std::fs::read(&incr).unwrap();
    let mut cut = good.clone();
    cut.extend_from_slice(b"*3\r\n$3\r\nSET\r\n$1\r\nb\r\n$5\r\nhal");
    std::fs::write(&incr, &cut).unwrap();

    // aof_load_truncated = false: refuse, naming the file
    let conf = dir.path().join("strict.toml");
    std::fs::write(&conf, "aof_load_truncated = false\n").unwrap();
    let out = Command::new(binary("kvfleet-server"))
        .args(["--config", &conf.display().to_string(), "--port", "0"])
        .args(flags)
        .args(["--save", ""])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("incomplete command") && err.contains("incr.aof"),
        "{err}"
    );

    // the default: load up to the cut, truncate the file there
    let kv = kvfleet_server_on(port, &flags);
    let mut c = kv.client();
    assert_eq!(text(&c.call(&["GET", "a"])), "1");
    assert_eq!(text(&c.call(&["EXISTS", "b"])), "0");
    assert_eq!(
        std::fs::read(&incr).unwrap(),
        good,
        "truncated at the last whole command"
    );
    c.call(&["SET", "c", "3"]);
    drop(c);
    drop(kv);
    let kv = kvfleet_server_on(port, &flags);
    assert_eq!(text(&kv.client().call(&["GET", "c"])), "3");
}
