//! kvfleet-proxy in front of groups of real servers (kvfleet-server, and
//! Debian's redis-server): routing checked on the backends themselves,
//! multi-key splits, CROSSSLOT, SCAN across groups, ordering under
//! pipelining, backend failure and recovery, reload, bad input, and the
//! differential suite through the proxy.

use std::time::{Duration, Instant};

use kvfleet_harness::{
    Proc, RawClient, bulk, eventually, kvfleet_proxy, kvfleet_server, kvfleet_server_on,
    redis_server,
};
use kvfleet_model::commands::lookup;
use kvfleet_resp::Frame;

fn three_servers() -> Vec<Proc> {
    (0..3).map(|_| kvfleet_server(&[])).collect()
}

fn refs(v: &[Proc]) -> Vec<&Proc> {
    v.iter().collect()
}

/// Group of a slot under the proxy's even split of 1024 slots over `n` groups.
fn even_group(slot: u16, n: usize) -> usize {
    let mut start = 0;
    for g in 0..n {
        let len = 1024 / n + usize::from(g < 1024 % n);
        if (slot as usize) < start + len {
            return g;
        }
        start += len;
    }
    unreachable!()
}

#[test]
fn every_key_lands_on_the_group_owning_its_slot() {
    let servers = three_servers();
    let px = kvfleet_proxy(&refs(&servers), &[]);
    let mut c = px.client();
    let keys: Vec<String> = (0..300).map(|i| format!("user:{i}")).collect();
    let cmds: Vec<Vec<Vec<u8>>> = keys
        .iter()
        .map(|k| vec![b"SET".to_vec(), k.as_bytes().to_vec(), b"v".to_vec()])
        .collect();
    assert!(c.pipeline(&cmds).iter().all(|r| r == b"+OK\r\n"));
    let mut direct: Vec<RawClient> = servers.iter().map(|s| s.client()).collect();
    for k in &keys {
        let want = even_group(kvfleet_model::slot(k.as_bytes()), 3);
        for (g, d) in direct.iter_mut().enumerate() {
            let has = d.cmd(&[b"EXISTS", k.as_bytes()]) == b":1\r\n";
            assert_eq!(
                has,
                g == want,
                "{k}: on group {g}? {has}; expected group {want}"
            );
        }
    }
    // DBSIZE fans out and sums
    assert_eq!(c.call(&["DBSIZE"]), Frame::Integer(300));
}

#[test]
fn multi_key_commands_split_across_groups_and_merge_in_order() {
    let servers = three_servers();
    let px = kvfleet_proxy(&refs(&servers), &[]);
    let mut c = px.client();
    let keys: Vec<String> = (0..20).map(|i| format!("k{i}")).collect();
    let mut mset: Vec<&[u8]> = vec![b"MSET"];
    let vals: Vec<String> = (0..20).map(|i| format!("v{i}")).collect();
    for (k, v) in keys.iter().zip(&vals) {
        mset.push(k.as_bytes());
        mset.push(v.as_bytes());
    }
    assert_eq!(c.cmd(&mset), b"+OK\r\n");
    let groups: std::collections::HashSet<usize> = keys
        .iter()
        .map(|k| even_group(kvfleet_model::slot(k.as_bytes()), 3))
        .collect();
    assert_eq!(groups.len(), 3, "the keys should span every group");
    let mut mget: Vec<&[u8]> = vec![b"MGET", b"missing"];
    mget.extend(keys.iter().map(|k| k.as_bytes()));
    let Frame::Array(got) = c.call(
        &mget
            .iter()
            .map(|a| std::str::from_utf8(a).unwrap())
            .collect::<Vec<_>>(),
    ) else {
        panic!("MGET not an array")
    };
    assert_eq!(got[0], Frame::Null);
    for (i, v) in vals.iter().enumerate() {
        assert_eq!(got[i + 1], bulk(v), "MGET position {}", i + 1);
    }
    let mut exists: Vec<&str> = vec!["EXISTS", "missing"];
    exists.extend(keys.iter().map(|k| k.as_str()));
    exists.push("k0"); // counted twice, as Redis does
    assert_eq!(c.call(&exists), Frame::Integer(21));
    let mut del: Vec<&str> = vec!["DEL"];
    del.extend(keys[..10].iter().map(|k| k.as_str()));
    assert_eq!(c.call(&del), Frame::Integer(10));
    assert_eq!(c.call(&["DBSIZE"]), Frame::Integer(10));
    let Frame::Array(all) = c.call(&["KEYS", "*"]) else {
        panic!("KEYS")
    };
    assert_eq!(all.len(), 10);
}

#[test]
fn multi_key_commands_outside_one_slot_get_crossslot_unless_tagged() {
    let servers = three_servers();
    let px = kvfleet_proxy(&refs(&servers), &[]);
    let mut c = px.client();
    let r = c.cmd(&[b"MSETNX", b"a", b"1", b"b", b"2"]);
    assert_eq!(
        r,
        b"-CROSSSLOT Keys in request don't hash to the same slot\r\n"
    );
    assert_eq!(
        c.cmd(&[b"MSETNX", b"{u1}a", b"1", b"{u1}b", b"2"]),
        b":1\r\n"
    );
    assert_eq!(c.cmd(&[b"RENAME", b"{u1}a", b"{u1}c"]), b"+OK\r\n");
    assert_eq!(c.cmd(&[b"GET", b"{u1}c"]), b"$1\r\n1\r\n");
    assert!(
        c.cmd(&[b"SUNIONSTORE", b"x", b"y", b"z"])
            .starts_with(b"-CROSSSLOT")
    );
    // the connection stays usable, and unsupported commands are named
    let r = c.cmd(&[b"CONFIG", b"GET", b"maxmemory"]);
    assert_eq!(
        r,
        b"-ERR kvfleet-proxy does not support the 'CONFIG' command\r\n"
    );
    assert_eq!(c.cmd(&[b"PING"]), b"+PONG\r\n");
}

#[test]
fn scan_through_the_proxy_is_complete_over_10k_keys() {
    let servers = three_servers();
    let px = kvfleet_proxy(&refs(&servers), &[]);
    let mut c = px.client();
    let cmds: Vec<Vec<Vec<u8>>> = (0..10_000)
        .map(|i| {
            vec![
                b"SET".to_vec(),
                format!("s:{i}").into_bytes(),
                b"v".to_vec(),
            ]
        })
        .collect();
    assert!(c.pipeline(&cmds).iter().all(|r| r == b"+OK\r\n"));
    let mut seen = std::collections::HashSet::new();
    let mut cursor = "0".to_string();
    let mut calls = 0;
    loop {
        let Frame::Array(r) = c.call(&["SCAN", &cursor, "COUNT", "500"]) else {
            panic!("SCAN reply")
        };
        let Frame::Bulk(next) = &r[0] else {
            panic!("cursor")
        };
        let Frame::Array(keys) = &r[1] else {
            panic!("keys")
        };
        for k in keys {
            let Frame::Bulk(k) = k else { panic!("key") };
            seen.insert(k.clone());
        }
        calls += 1;
        cursor = String::from_utf8(next.to_vec()).unwrap();
        if cursor == "0" {
            break;
        }
        assert!(calls < 1000, "SCAN does not terminate");
    }
    assert_eq!(seen.len(), 10_000, "SCAN missed keys");
    assert!(calls > 3, "expected several SCAN calls, got {calls}");
    assert_eq!(c.cmd(&[b"SCAN", b"nope"]), b"-ERR invalid cursor\r\n");
}

#[test]
fn pipelined_commands_to_different_groups_reply_in_order() {
    let servers = three_servers();
    let px = kvfleet_proxy(&refs(&servers), &[]);
    let mut c = px.client();
    // 20k INCRs over 50 keys on all groups: every reply must be the next
    // value of its own key, which only holds if replies come back in order
    let cmds: Vec<Vec<Vec<u8>>> = (0..20_000)
        .map(|i| vec![b"INCR".to_vec(), format!("ctr:{}", i % 50).into_bytes()])
        .collect();
    let replies = c.pipeline(&cmds);
    for (i, r) in replies.iter().enumerate() {
        let want = format!(":{}\r\n", i / 50 + 1);
        assert_eq!(r, want.as_bytes(), "reply {i}");
    }
}

#[test]
fn resp3_clients_get_resp3_replies_through_the_proxy() {
    let servers = three_servers();
    let px = kvfleet_proxy(&refs(&servers), &[]);
    let mut c = px.client();
    c.cmd(&[b"HSET", b"h", b"f", b"v"]);
    assert_eq!(c.cmd(&[b"HGETALL", b"h"]), b"*2\r\n$1\r\nf\r\n$1\r\nv\r\n");
    let hello = c.cmd(&[b"HELLO", b"3"]);
    assert!(
        hello.starts_with(b"%7\r\n"),
        "{}",
        String::from_utf8_lossy(&hello)
    );
    assert_eq!(c.cmd(&[b"HGETALL", b"h"]), b"%1\r\n$1\r\nf\r\n$1\r\nv\r\n");
    assert_eq!(c.cmd(&[b"GET", b"nosuch"]), b"_\r\n");
    let mut mget: Vec<Vec<u8>> = vec![b"MGET".to_vec()];
    mget.extend((0..10).map(|i| format!("none{i}").into_bytes()));
    let r = c.cmd(&mget.iter().map(|v| &v[..]).collect::<Vec<_>>());
    assert_eq!(r, [&b"*10\r\n"[..], &b"_\r\n".repeat(10)].concat());
}

#[test]
fn a_dead_backend_gives_errors_not_hangs_and_traffic_recovers() {
    let mut servers = three_servers();
    let px = kvfleet_proxy(&refs(&servers), &[]);
    let mut c = px.client();
    // a key on the last group
    let key = (0..)
        .map(|i| format!("dead:{i}"))
        .find(|k| even_group(kvfleet_model::slot(k.as_bytes()), 3) == 2)
        .unwrap();
    let other = (0..)
        .map(|i| format!("live:{i}"))
        .find(|k| even_group(kvfleet_model::slot(k.as_bytes()), 3) == 0)
        .unwrap();
    assert_eq!(c.cmd(&[b"SET", key.as_bytes(), b"1"]), b"+OK\r\n");
    let port = servers[2].port;
    drop(servers.remove(2));
    let t = Instant::now();
    let r = c.cmd(&[b"GET", key.as_bytes()]);
    assert!(
        r.starts_with(b"-ERR kvfleet-proxy: backend"),
        "{}",
        String::from_utf8_lossy(&r)
    );
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "error took {:?}",
        t.elapsed()
    );
    // other groups keep serving, and a split touching the dead group fails cleanly
    assert_eq!(c.cmd(&[b"SET", other.as_bytes(), b"2"]), b"+OK\r\n");
    let r = c.cmd(&[b"MGET", other.as_bytes(), key.as_bytes()]);
    assert!(
        r.starts_with(b"-ERR kvfleet-proxy: backend"),
        "{}",
        String::from_utf8_lossy(&r)
    );
    // the server comes back (empty) on its port; the proxy reconnects by itself
    let _back = kvfleet_server_on(port, &[]);
    assert!(
        eventually(Duration::from_secs(10), || c.cmd(&[
            b"SET",
            key.as_bytes(),
            b"3"
        ]) == b"+OK\r\n"),
        "never recovered"
    );
    assert_eq!(
        c.cmd(&[b"MGET", other.as_bytes(), key.as_bytes()]),
        b"*2\r\n$1\r\n2\r\n$1\r\n3\r\n"
    );
}

#[test]
fn reload_swaps_the_topology_and_refuses_a_lower_epoch() {
    let servers: Vec<Proc> = (0..2).map(|_| kvfleet_server(&[])).collect();
    let tmp = kvfleet_harness::TempDir::new("proxy-topo");
    let dir = tmp.path();
    let path = dir.join("topology.toml");
    let write = |epoch: u64, a: &str, b: &str| {
        let t = format!(
            "epoch = {epoch}\n[[groups]]\nname = \"a\"\nmaster = \"{a}\"\nslots = [\"0-511\"]\n[[groups]]\nname = \"b\"\nmaster = \"{b}\"\nslots = [\"512-1023\"]\n"
        );
        std::fs::write(&path, t).unwrap();
    };
    write(5, &servers[0].addr(), &servers[1].addr());
    let px = kvfleet_proxy(&[], &["--topology", path.to_str().unwrap()]);
    let mut c = px.client();
    assert_eq!(c.call(&["PROXY", "EPOCH"]), Frame::Integer(5));
    let key = (0..)
        .map(|i| format!("r:{i}"))
        .find(|k| kvfleet_model::slot(k.as_bytes()) < 512)
        .unwrap();
    c.cmd(&[b"SET", key.as_bytes(), b"x"]);
    assert_eq!(
        servers[0].client().cmd(&[b"EXISTS", key.as_bytes()]),
        b":1\r\n"
    );
    // swap the groups' masters at a higher epoch, under a live client
    write(6, &servers[1].addr(), &servers[0].addr());
    assert_eq!(c.call(&["PROXY", "RELOAD"]), Frame::Integer(6));
    c.cmd(&[b"SET", key.as_bytes(), b"y"]);
    assert_eq!(
        servers[1].client().cmd(&[b"GET", key.as_bytes()]),
        b"$1\r\ny\r\n"
    );
    // an older epoch is refused and routing stays
    write(4, &servers[0].addr(), &servers[1].addr());
    let r = c.cmd(&[b"PROXY", b"RELOAD"]);
    assert!(
        r.starts_with(b"-ERR reload failed: topology epoch 4 is lower"),
        "{}",
        String::from_utf8_lossy(&r)
    );
    assert_eq!(c.call(&["PROXY", "EPOCH"]), Frame::Integer(6));
    // SIGHUP re-reads the file too; a DNS name works as a master address
    let named = format!("localhost:{}", servers[0].port);
    write(7, &named, &servers[1].addr());
    let pid = px.child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
    assert!(
        eventually(Duration::from_secs(5), || c.call(&["PROXY", "EPOCH"])
            == Frame::Integer(7)),
        "SIGHUP did not reload"
    );
    c.cmd(&[b"SET", key.as_bytes(), b"z"]);
    assert_eq!(
        servers[0].client().cmd(&[b"GET", key.as_bytes()]),
        b"$1\r\nz\r\n"
    );
    // a broken file is refused with the reason
    std::fs::write(
        &path,
        "epoch = 9\n[[groups]]\nmaster = \"x:1\"\nslots = [\"0-100\"]\n",
    )
    .unwrap();
    let r = c.cmd(&[b"PROXY", b"RELOAD"]);
    assert!(
        r.starts_with(b"-ERR reload failed: slots not owned"),
        "{}",
        String::from_utf8_lossy(&r)
    );
}

#[test]
fn bad_input_gets_errors_and_the_proxy_keeps_serving() {
    let servers = three_servers();
    let px = kvfleet_proxy(&refs(&servers), &[]);
    let mut c = px.client();
    assert_eq!(
        c.cmd(&[b"NOSUCH", b"a"]),
        b"-ERR unknown command 'NOSUCH', with args beginning with: 'a' \r\n"
    );
    assert_eq!(
        c.cmd(&[b"GET"]),
        b"-ERR wrong number of arguments for 'get' command\r\n"
    );
    // inline commands are re-encoded for the backend
    c.send(b"SET inl \"a b\"\r\nGET inl\r\n");
    assert_eq!(c.read_reply().unwrap(), b"+OK\r\n");
    assert_eq!(c.read_reply().unwrap(), b"$3\r\na b\r\n");
    // malformed RESP: Redis's protocol error, then the connection closes
    let mut bad = px.client();
    bad.send(b"*1\r\n$abc\r\n");
    assert_eq!(
        bad.read_reply().unwrap(),
        b"-ERR Protocol error: invalid bulk length\r\n"
    );
    assert!(bad.closed());
    let mut huge = px.client();
    huge.send(b"*2\r\n$3\r\nGET\r\n$99999999999\r\n");
    assert_eq!(
        huge.read_reply().unwrap(),
        b"-ERR Protocol error: invalid bulk length\r\n"
    );
    assert!(huge.closed());
    // a large but legal value goes through intact
    let big = vec![b'z'; 4 << 20];
    assert_eq!(c.cmd(&[b"SET", b"big", &big]), b"+OK\r\n");
    assert_eq!(c.cmd(&[b"STRLEN", b"big"]), b":4194304\r\n");
    assert_eq!(c.cmd(&[b"PING"]), b"+PONG\r\n");
}

#[test]
fn auth_on_the_proxy_guards_every_command() {
    let servers = three_servers();
    let px = kvfleet_proxy(&refs(&servers), &["--password", "s3cret"]);
    let mut c = px.client();
    assert_eq!(
        c.cmd(&[b"GET", b"a"]),
        b"-NOAUTH Authentication required.\r\n"
    );
    assert_eq!(
        c.cmd(&[b"AUTH", b"wrong"]),
        b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"
    );
    assert_eq!(c.cmd(&[b"AUTH", b"s3cret"]), b"+OK\r\n");
    assert_eq!(c.cmd(&[b"GET", b"a"]), b"$-1\r\n");
}

#[test]
fn redis_server_backends_work_too_including_scripts_by_key() {
    let servers: Vec<Proc> = (0..2).map(|_| redis_server(&[])).collect();
    let px = kvfleet_proxy(&refs(&servers), &[]);
    let mut c = px.client();
    let cmds: Vec<Vec<Vec<u8>>> = (0..200)
        .map(|i| {
            vec![
                b"SET".to_vec(),
                format!("r{i}").into_bytes(),
                format!("{i}").into_bytes(),
            ]
        })
        .collect();
    assert!(c.pipeline(&cmds).iter().all(|r| r == b"+OK\r\n"));
    assert_eq!(c.call(&["DBSIZE"]), Frame::Integer(200));
    assert_eq!(
        c.cmd(&[b"MGET", b"r1", b"r150", b"r199"]),
        b"*3\r\n$1\r\n1\r\n$3\r\n150\r\n$3\r\n199\r\n"
    );
    // scripts: loaded on every group, run where their key lives
    let Frame::Bulk(sha) = c.call(&["SCRIPT", "LOAD", "return redis.call('GET', KEYS[1])"]) else {
        panic!("SCRIPT LOAD")
    };
    let sha = String::from_utf8(sha.to_vec()).unwrap();
    assert_eq!(
        c.call(&["SCRIPT", "EXISTS", &sha, "0000"]),
        Frame::Array(vec![Frame::Integer(1), Frame::Integer(0)])
    );
    for k in ["r3", "r77", "r180"] {
        let want = bulk(&k[1..]);
        assert_eq!(c.call(&["EVALSHA", &sha, "1", k]), want, "{k}");
    }
    assert!(
        c.cmd(&[b"EVAL", b"return 1", b"2", b"r1", b"r2"])
            .starts_with(b"-CROSSSLOT")
    );
    // a bitmap command the kvfleet server does not run yet is routed all the same
    assert_eq!(c.cmd(&[b"SETBIT", b"bits", b"7", b"1"]), b":0\r\n");
    assert_eq!(c.cmd(&[b"BITCOUNT", b"bits"]), b":1\r\n");
}

/// Commands the differential suite runs that the proxy answers differently
/// by design: transactions and blocking (their own tests above), per-server
/// admin, connection introspection.
const NOT_THROUGH_PROXY: &[&str] = &[
    "multi",
    "exec",
    "discard",
    "watch",
    "unwatch",
    "blpop",
    "brpop",
    "blmove",
    "brpoplpush",
    "blmpop",
    "bzpopmin",
    "bzpopmax",
    "bzmpop",
    "subscribe",
    "psubscribe",
    "config",
    "debug",
    "latency",
    "client",
    "hello",
    "command",
    "info",
    "object",
    "randomkey",
    "scan",
    "swapdb",
    "move",
    "select",
    "reset",
    "slowlog",
    "time",
    "lastsave",
    "slots",
    "copy",
];

/// Prefixes every key argument with `tag`, so one case file's keys share a
/// slot (multi-key commands then pass the proxy) while different files land
/// on different groups.
fn tagged(args: &[Vec<u8>], tag: &str) -> Vec<Vec<u8>> {
    let mut out = args.to_vec();
    let a: Vec<&[u8]> = args.iter().map(|x| &x[..]).collect();
    if let Some(spec) = lookup(a[0]) {
        let mut idx = Vec::new();
        spec.key_indexes(&a, &mut idx);
        for i in idx {
            out[i] = [tag.as_bytes(), &args[i]].concat();
        }
    }
    out
}

#[test]
fn differential_suite_through_the_proxy_matches_redis() {
    let redis_p = redis_server(&[]);
    let servers = three_servers();
    let px = kvfleet_proxy(&refs(&servers), &[]);
    let mut redis = redis_p.client();
    let mut ours = px.client();
    let mut compared = 0;
    let mut failures = Vec::new();
    for proto in [2u8, 3] {
        for (fi, (name, text)) in crate::differential::CASES.iter().enumerate() {
            let tag = format!("{{f{fi}}}");
            for c in [&mut redis, &mut ours] {
                c.cmd(&[b"FLUSHALL"]);
                c.cmd(&[b"HELLO", if proto == 3 { b"3" } else { b"2" }]);
            }
            for (lineno, line) in text.lines().enumerate() {
                let Some((mode, args)) = crate::differential::parse_line(line) else {
                    continue;
                };
                let args = tagged(&args, &tag);
                let a: Vec<&[u8]> = args.iter().map(|x| &x[..]).collect();
                let lname = String::from_utf8_lossy(a[0]).to_ascii_lowercase();
                if NOT_THROUGH_PROXY.contains(&lname.as_str()) {
                    continue;
                }
                let want = redis.cmd(&a);
                let got = ours.cmd(&a);
                compared += 1;
                if !crate::differential::same(mode, &want, &got) {
                    failures.push(format!(
                        "RESP{proto} {name}.txt:{}: {}\n    redis: {:?}\n    proxy: {:?}",
                        lineno + 1,
                        line.trim(),
                        String::from_utf8_lossy(&want),
                        String::from_utf8_lossy(&got)
                    ));
                }
            }
        }
    }
    println!(
        "differential through proxy: {compared} compared, {} failed",
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} replies differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(compared > 1000, "too few compared: {compared}");
}

#[test]
fn redis_benchmark_and_redis_cli_work_through_the_proxy() {
    let servers = three_servers();
    let px = kvfleet_proxy(&refs(&servers), &[]);
    let out = std::process::Command::new("redis-benchmark")
        .args([
            "-p",
            &px.port.to_string(),
            "-n",
            "20000",
            "-c",
            "20",
            "-P",
            "8",
            "-r",
            "1000",
            "-t",
            "set,get,mset,incr,lpush",
            "-q",
        ])
        .output()
        .expect("redis-benchmark");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    for t in ["SET", "GET", "MSET (10 keys)", "INCR", "LPUSH"] {
        assert!(
            text.contains(&format!("{t}: ")),
            "no {t} result in:\n{text}"
        );
    }
    let out = std::process::Command::new("redis-cli")
        .args([
            "-p",
            &px.port.to_string(),
            "--no-raw",
            "mget",
            "key:000000000001",
            "nosuch",
        ])
        .output()
        .expect("redis-cli");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("(nil)"));
}

#[test]
fn transactions_run_on_one_group_and_watch_aborts_them() {
    let servers = three_servers();
    let px = kvfleet_proxy(&refs(&servers), &[]);
    let mut c = px.client();
    assert_eq!(c.cmd(&[b"MULTI"]), b"+OK\r\n");
    assert_eq!(c.cmd(&[b"SET", b"{t}a", b"1"]), b"+QUEUED\r\n");
    assert_eq!(c.cmd(&[b"INCR", b"{t}a"]), b"+QUEUED\r\n");
    assert_eq!(c.cmd(&[b"MGET", b"{t}a", b"{t}b"]), b"+QUEUED\r\n");
    assert_eq!(
        c.cmd(&[b"EXEC"]),
        b"*3\r\n+OK\r\n:2\r\n*2\r\n$1\r\n2\r\n$-1\r\n"
    );
    // a key of another slot inside the transaction aborts it
    assert_eq!(c.cmd(&[b"MULTI"]), b"+OK\r\n");
    assert_eq!(c.cmd(&[b"SET", b"{t}a", b"5"]), b"+QUEUED\r\n");
    assert!(c.cmd(&[b"SET", b"other", b"5"]).starts_with(b"-CROSSSLOT"));
    assert_eq!(
        c.cmd(&[b"EXEC"]),
        b"-EXECABORT Transaction discarded because of previous errors.\r\n"
    );
    assert_eq!(c.cmd(&[b"GET", b"{t}a"]), b"$1\r\n2\r\n");
    assert_eq!(c.cmd(&[b"EXEC"]), b"-ERR EXEC without MULTI\r\n");
    // WATCH, then a write by another client: EXEC returns the null array
    let mut other = px.client();
    assert_eq!(c.cmd(&[b"WATCH", b"{t}a"]), b"+OK\r\n");
    assert_eq!(other.cmd(&[b"SET", b"{t}a", b"9"]), b"+OK\r\n");
    assert_eq!(c.cmd(&[b"MULTI"]), b"+OK\r\n");
    assert_eq!(c.cmd(&[b"SET", b"{t}a", b"10"]), b"+QUEUED\r\n");
    assert_eq!(c.cmd(&[b"EXEC"]), b"*-1\r\n");
    assert_eq!(c.cmd(&[b"GET", b"{t}a"]), b"$1\r\n9\r\n");
    // WATCH untouched: EXEC applies; DISCARD clears the queue
    assert_eq!(c.cmd(&[b"WATCH", b"{t}a"]), b"+OK\r\n");
    assert_eq!(c.cmd(&[b"MULTI"]), b"+OK\r\n");
    assert_eq!(c.cmd(&[b"INCR", b"{t}a"]), b"+QUEUED\r\n");
    assert_eq!(c.cmd(&[b"EXEC"]), b"*1\r\n:10\r\n");
    assert_eq!(c.cmd(&[b"MULTI"]), b"+OK\r\n");
    assert_eq!(c.cmd(&[b"INCR", b"{t}a"]), b"+QUEUED\r\n");
    assert_eq!(c.cmd(&[b"DISCARD"]), b"+OK\r\n");
    assert_eq!(c.cmd(&[b"GET", b"{t}a"]), b"$2\r\n10\r\n");
}

#[test]
fn blocking_pops_wait_on_a_private_connection_and_wake_on_push() {
    let servers = three_servers();
    let px = kvfleet_proxy(&refs(&servers), &[]);
    let mut waiter = px.client();
    let mut pusher = px.client();
    waiter.send(&kvfleet_harness::encode_cmd(&[b"BLPOP", b"q", b"0"]));
    // the shared connections keep serving everyone else meanwhile
    for i in 0..50 {
        let k = format!("x{i}");
        assert_eq!(pusher.cmd(&[b"SET", k.as_bytes(), b"1"]), b"+OK\r\n");
    }
    assert_eq!(pusher.cmd(&[b"RPUSH", b"q", b"job"]), b":1\r\n");
    assert_eq!(
        waiter.read_reply().unwrap(),
        b"*2\r\n$1\r\nq\r\n$3\r\njob\r\n"
    );
    // a timeout answers null, and the client carries on in order
    waiter.send(&kvfleet_harness::encode_cmd(&[b"BLPOP", b"q", b"0.1"]));
    waiter.send(&kvfleet_harness::encode_cmd(&[b"PING"]));
    assert_eq!(waiter.read_reply().unwrap(), b"*-1\r\n");
    assert_eq!(waiter.read_reply().unwrap(), b"+PONG\r\n");
    assert!(
        waiter
            .cmd(&[b"BLPOP", b"a", b"b", b"1"])
            .starts_with(b"-CROSSSLOT")
    );
}

#[test]
fn pubsub_through_the_proxy_spans_groups_with_redis_counts() {
    let servers = three_servers();
    let px = kvfleet_proxy(&refs(&servers), &[]);
    // channels on three different groups
    let chans: Vec<String> = (0..3)
        .map(|g| {
            (0..)
                .map(|i| format!("news:{i}"))
                .find(|c| even_group(kvfleet_model::slot(c.as_bytes()), 3) == g)
                .unwrap()
        })
        .collect();
    let mut sub = px.client();
    let mut args: Vec<&[u8]> = vec![b"SUBSCRIBE"];
    args.extend(chans.iter().map(|c| c.as_bytes()));
    sub.send(&kvfleet_harness::encode_cmd(&args));
    for (i, c) in chans.iter().enumerate() {
        let want = format!(
            "*3\r\n$9\r\nsubscribe\r\n${}\r\n{c}\r\n:{}\r\n",
            c.len(),
            i + 1
        );
        assert_eq!(sub.read_reply().unwrap(), want.as_bytes());
    }
    assert_eq!(
        sub.cmd(&[b"PSUBSCRIBE", b"news:*"]),
        b"*3\r\n$10\r\npsubscribe\r\n$6\r\nnews:*\r\n:4\r\n"
    );
    // RESP2 subscribed mode: only pub/sub commands and PING
    assert_eq!(sub.cmd(&[b"PING"]), b"*2\r\n$4\r\npong\r\n$0\r\n\r\n");
    assert!(
        sub.cmd(&[b"GET", b"x"])
            .starts_with(b"-ERR Can't execute 'get'")
    );
    let mut p = px.client();
    for c in &chans {
        // one channel subscriber and one pattern subscriber
        assert_eq!(p.call(&["PUBLISH", c, "hi"]), Frame::Integer(2), "{c}");
        let m = format!("*3\r\n$7\r\nmessage\r\n${}\r\n{c}\r\n$2\r\nhi\r\n", c.len());
        let pm = format!(
            "*4\r\n$8\r\npmessage\r\n$6\r\nnews:*\r\n${}\r\n{c}\r\n$2\r\nhi\r\n",
            c.len()
        );
        let mut got = vec![sub.read_reply().unwrap(), sub.read_reply().unwrap()];
        got.sort();
        let mut want = vec![m.into_bytes(), pm.into_bytes()];
        want.sort();
        assert_eq!(got, want, "{c}");
    }
    assert_eq!(
        p.call(&["PUBSUB", "NUMSUB", &chans[0], &chans[2], "none"]),
        Frame::Array(vec![
            bulk(&chans[0]),
            Frame::Integer(1),
            bulk(&chans[2]),
            Frame::Integer(1),
            bulk("none"),
            Frame::Integer(0)
        ])
    );
    let Frame::Array(listed) = p.call(&["PUBSUB", "CHANNELS", "news:*"]) else {
        panic!()
    };
    assert_eq!(listed.len(), 3);
    assert_eq!(p.call(&["PUBSUB", "NUMPAT"]), Frame::Integer(1));
    // unsubscribing from everything counts down to the pattern
    sub.send(&kvfleet_harness::encode_cmd(&[b"UNSUBSCRIBE"]));
    let mut sorted = chans.clone();
    sorted.sort();
    for (i, c) in sorted.iter().enumerate() {
        let want = format!(
            "*3\r\n$11\r\nunsubscribe\r\n${}\r\n{c}\r\n:{}\r\n",
            c.len(),
            3 - i
        );
        assert_eq!(sub.read_reply().unwrap(), want.as_bytes());
    }
    assert_eq!(
        sub.cmd(&[b"PUNSUBSCRIBE"]),
        b"*3\r\n$12\r\npunsubscribe\r\n$6\r\nnews:*\r\n:0\r\n"
    );
    assert_eq!(
        sub.cmd(&[b"GET", b"x"]),
        b"$-1\r\n",
        "out of subscribed mode"
    );
    assert_eq!(p.call(&["PUBLISH", &chans[1], "nobody"]), Frame::Integer(0));
}

#[test]
fn resp3_subscribers_get_push_frames_between_replies() {
    let servers = three_servers();
    let px = kvfleet_proxy(&refs(&servers), &[]);
    let mut sub = px.client();
    sub.cmd(&[b"HELLO", b"3"]);
    assert_eq!(
        sub.cmd(&[b"SUBSCRIBE", b"ch"]),
        b">3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n"
    );
    // RESP3 clients may run any command while subscribed
    assert_eq!(sub.cmd(&[b"SET", b"k", b"v"]), b"+OK\r\n");
    assert_eq!(
        px.client().call(&["PUBLISH", "ch", "m1"]),
        Frame::Integer(1)
    );
    assert_eq!(
        sub.read_reply().unwrap(),
        b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nm1\r\n"
    );
    assert_eq!(sub.cmd(&[b"GET", b"k"]), b"$1\r\nv\r\n");
}

#[test]
fn info_slowlog_and_metrics_report_per_command_latency() {
    let servers = three_servers();
    let tmp = kvfleet_harness::TempDir::new("proxy-cfg");
    let dir = tmp.path();
    let cfg = dir.join("proxy.toml");
    // every command is "slow", so the slow log fills
    std::fs::write(&cfg, "slowlog_log_slower_than = 0\nslowlog_max_len = 5\n").unwrap();
    let mport = kvfleet_harness::free_port().to_string();
    let px = kvfleet_proxy(
        &refs(&servers),
        &["--config", cfg.to_str().unwrap(), "--metrics-port", &mport],
    );
    let mut c = px.client();
    for i in 0..40 {
        c.cmd(&[b"SET", format!("m{i}").as_bytes(), b"v"]);
        c.cmd(&[b"GET", format!("m{i}").as_bytes()]);
    }
    c.cmd(&[b"GET"]); // a failed call
    let Frame::Bulk(info) = c.call(&["INFO", "commandstats"]) else {
        panic!("INFO")
    };
    let info = String::from_utf8_lossy(&info).into_owned();
    let get = info
        .lines()
        .find(|l| l.starts_with("cmdstat_get:"))
        .expect("cmdstat_get");
    assert!(get.contains("calls=41,"), "{get}"); // error replies count as calls too
    assert!(get.contains("failed_calls=1,"), "{get}");
    for f in ["p50=", "p99=", "p99.9=", "p99.99=", "max="] {
        assert!(get.contains(f), "{f} missing in {get}");
    }
    let Frame::Bulk(stats) = c.call(&["INFO", "stats"]) else {
        panic!("INFO")
    };
    assert!(String::from_utf8_lossy(&stats).contains("instantaneous_ops_per_sec:"));
    let Frame::Bulk(backends) = c.call(&["INFO", "backends"]) else {
        panic!("INFO")
    };
    let backends = String::from_utf8_lossy(&backends).into_owned();
    assert!(backends.contains("groups:3"), "{backends}");
    assert!(
        backends.contains(&format!("master={}", servers[1].addr())),
        "{backends}"
    );
    assert_eq!(c.call(&["SLOWLOG", "LEN"]), Frame::Integer(5));
    let Frame::Array(log) = c.call(&["SLOWLOG", "GET", "1"]) else {
        panic!("SLOWLOG")
    };
    assert_eq!(log.len(), 1);
    // the metrics endpoint says the same
    let body = (0..50)
        .find_map(|_| {
            let mut s =
                std::net::TcpStream::connect(("127.0.0.1", mport.parse::<u16>().unwrap())).ok()?;
            use std::io::{Read, Write};
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .ok()?;
            let mut body = String::new();
            s.read_to_string(&mut body).ok()?;
            Some(body)
        })
        .expect("metrics endpoint");
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(
        body.contains("kvfleet_proxy_commands_total{cmd=\"get\"} 41"),
        "{body}"
    );
    assert!(
        body.contains("kvfleet_proxy_commands_failed_total{cmd=\"get\"} 1"),
        "{body}"
    );
    assert!(
        body.contains("kvfleet_proxy_command_latency_seconds{cmd=\"set\",quantile=\"0.99\"}"),
        "{body}"
    );
    assert!(
        body.contains("kvfleet_proxy_backend_connections{"),
        "{body}"
    );
}

fn get_calls(p: &Proc) -> u64 {
    let Frame::Bulk(b) = p.client().call(&["INFO", "commandstats"]) else {
        panic!("INFO")
    };
    String::from_utf8_lossy(&b)
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_get:calls="))
        .and_then(|v| v.split(',').next()?.parse().ok())
        .unwrap_or(0)
}

#[test]
fn reads_prefer_a_healthy_same_zone_replica_and_fall_back_to_the_master() {
    let master = redis_server(&[]);
    let replica = redis_server(&["--replicaof", "127.0.0.1", &master.port.to_string()]);
    let tmp = kvfleet_harness::TempDir::new("proxy-zone");
    let dir = tmp.path();
    let topo = dir.join("topology.toml");
    std::fs::write(
        &topo,
        format!(
            "epoch = 1\n[[groups]]\nmaster = \"{}\"\nslots = [\"0-1023\"]\nreplicas = [{{ addr = \"{}\", zone = \"z1\" }}]\n",
            master.addr(),
            replica.addr()
        ),
    )
    .unwrap();
    let proxy_in = |zone: &str| {
        let cfg = dir.join(format!("proxy-{zone}.toml"));
        std::fs::write(
            &cfg,
            format!("zone = \"{zone}\"\nread_policy = \"prefer-replica-same-zone\"\nreplica_check_ms = 100\n"),
        )
        .unwrap();
        kvfleet_proxy(
            &[],
            &[
                "--config",
                cfg.to_str().unwrap(),
                "--topology",
                topo.to_str().unwrap(),
            ],
        )
    };
    let near = proxy_in("z1");
    let far = proxy_in("z2");
    let mut c = near.client();
    assert_eq!(c.cmd(&[b"SET", b"k", b"v"]), b"+OK\r\n");
    // once a check finds the replica in sync, reads land there
    assert!(
        eventually(Duration::from_secs(10), || {
            let before = get_calls(&replica);
            c.cmd(&[b"GET", b"k"]) == b"$1\r\nv\r\n" && get_calls(&replica) > before
        }),
        "reads never reached the replica"
    );
    let (m0, r0) = (get_calls(&master), get_calls(&replica));
    for _ in 0..20 {
        assert_eq!(c.cmd(&[b"GET", b"k"]), b"$1\r\nv\r\n");
    }
    assert_eq!((get_calls(&master) - m0, get_calls(&replica) - r0), (0, 20));
    // writes still go to the master
    assert_eq!(c.cmd(&[b"SET", b"k2", b"w"]), b"+OK\r\n");
    assert_eq!(master.client().cmd(&[b"GET", b"k2"]), b"$1\r\nw\r\n");
    // a proxy in another zone reads from the master while it is up
    let mut f = far.client();
    let (m0, r0) = (get_calls(&master), get_calls(&replica));
    for _ in 0..10 {
        assert_eq!(f.cmd(&[b"GET", b"k"]), b"$1\r\nv\r\n");
    }
    assert_eq!((get_calls(&master) - m0, get_calls(&replica) - r0), (10, 0));
    // the replica stops replicating: reads return to the master
    replica.client().cmd(&[b"REPLICAOF", b"NO", b"ONE"]);
    assert!(
        eventually(Duration::from_secs(10), || {
            let before = get_calls(&master);
            c.cmd(&[b"GET", b"k"]);
            get_calls(&master) > before
        }),
        "reads did not fall back to the master"
    );
}

#[test]
fn a_moved_reply_is_retried_once_at_the_address_it_names() {
    let old = kvfleet_server(&[]);
    let new = kvfleet_server(&[]);
    assert_eq!(
        new.client().cmd(&[b"SET", b"moved:k", b"there"]),
        b"+OK\r\n"
    );
    // the old owner gives up every slot and points at the new one
    let mut o = old.client();
    assert_eq!(o.cmd(&[b"SLOTS", b"DISOWN", b"0-1023"]), b"+OK\r\n");
    let addr = new.addr();
    assert_eq!(
        o.cmd(&[b"SLOTS", b"MOVED-ADDR", addr.as_bytes()]),
        b"+OK\r\n"
    );
    let px = kvfleet_proxy(&[&old], &[]);
    let mut c = px.client();
    // routed to the old owner, redirected, answered by the new one
    assert_eq!(c.cmd(&[b"GET", b"moved:k"]), b"$5\r\nthere\r\n");
    assert_eq!(c.cmd(&[b"SET", b"moved:k2", b"v"]), b"+OK\r\n");
    assert_eq!(new.client().cmd(&[b"GET", b"moved:k2"]), b"$1\r\nv\r\n");
    // a second redirection is not followed: the client sees it
    let mut n = new.client();
    assert_eq!(n.cmd(&[b"SLOTS", b"DISOWN", b"0-1023"]), b"+OK\r\n");
    assert_eq!(
        n.cmd(&[b"SLOTS", b"MOVED-ADDR", old.addr().as_bytes()]),
        b"+OK\r\n"
    );
    assert!(c.cmd(&[b"GET", b"moved:k"]).starts_with(b"-MOVED "));
}

#[test]
fn clients_over_max_clients_are_refused_and_idle_ones_closed() {
    let servers = three_servers();
    let tmp = kvfleet_harness::TempDir::new("proxy-lim");
    let dir = tmp.path();
    let cfg = dir.join("proxy.toml");
    std::fs::write(&cfg, "max_clients = 2\nclient_timeout = 1\n").unwrap();
    let px = kvfleet_proxy(&refs(&servers), &["--config", cfg.to_str().unwrap()]);
    let mut a = px.client();
    assert_eq!(a.cmd(&[b"PING"]), b"+PONG\r\n");
    let mut b = px.client();
    assert_eq!(b.cmd(&[b"PING"]), b"+PONG\r\n");
    let mut third = px.client();
    assert_eq!(
        third.read_reply().unwrap(),
        b"-ERR max number of clients reached\r\n"
    );
    // idle clients are closed after client_timeout
    let t = Instant::now();
    assert!(a.closed(), "idle client not closed");
    assert!(t.elapsed() < Duration::from_secs(5));
}

#[test]
fn killing_a_backend_mid_traffic_never_sends_a_reply_to_the_wrong_client() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
    let mut servers = three_servers();
    let px = kvfleet_proxy(&refs(&servers), &[]);
    let port = px.port;
    let stop = Arc::new(AtomicBool::new(false));
    let (errors, values, late_ok) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let restarted = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let (stop, errors, values, late_ok, restarted) = (
                stop.clone(),
                errors.clone(),
                values.clone(),
                late_ok.clone(),
                restarted.clone(),
            );
            std::thread::spawn(move || {
                let mut c = RawClient::connect(port);
                let mut n = 0u64;
                while !stop.load(Relaxed) {
                    // ten keys spread over every group, each written then read back
                    let cmds: Vec<Vec<Vec<u8>>> = (0..10)
                        .flat_map(|i| {
                            let k = format!("w{w}:{n}:{i}").into_bytes();
                            let v = format!("value-of-{w}-{n}-{i}").into_bytes();
                            [
                                vec![b"SET".to_vec(), k.clone(), v],
                                vec![b"GET".to_vec(), k],
                            ]
                        })
                        .collect();
                    let replies = c.pipeline(&cmds);
                    for (i, pair) in replies.chunks(2).enumerate() {
                        let want = format!("value-of-{w}-{n}-{i}");
                        let set_ok = pair[0] == b"+OK\r\n";
                        assert!(
                            set_ok || pair[0].starts_with(b"-ERR kvfleet-proxy: backend"),
                            "SET: {:?}",
                            String::from_utf8_lossy(&pair[0])
                        );
                        let get = String::from_utf8_lossy(&pair[1]).into_owned();
                        if get.starts_with('$') && get != "$-1\r\n" {
                            // a value can only ever be this client's own
                            assert_eq!(
                                get,
                                format!("${}\r\n{want}\r\n", want.len()),
                                "misdelivered reply"
                            );
                            values.fetch_add(1, Relaxed);
                            if restarted.load(Relaxed) {
                                late_ok.fetch_add(1, Relaxed);
                            }
                        } else {
                            assert!(
                                get == "$-1\r\n" || get.starts_with("-ERR kvfleet-proxy: backend"),
                                "GET: {get:?}"
                            );
                            errors.fetch_add(1, Relaxed);
                        }
                    }
                    n += 1;
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let victim = servers.remove(1);
    let vport = victim.port;
    drop(victim);
    std::thread::sleep(Duration::from_millis(700));
    let _back = kvfleet_server_on(vport, &[]);
    restarted.store(true, Relaxed);
    assert!(
        eventually(Duration::from_secs(10), || late_ok.load(Relaxed) > 100),
        "traffic did not recover"
    );
    stop.store(true, Relaxed);
    for w in workers {
        w.join().expect("worker saw a wrong reply");
    }
    assert!(
        errors.load(Relaxed) > 0,
        "the dead backend caused no errors"
    );
    assert!(values.load(Relaxed) > 1000);
}

#[test]
fn reloads_under_load_keep_every_client_answered_and_in_order() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
    let servers: Vec<Proc> = (0..2).map(|_| kvfleet_server(&[])).collect();
    let tmp = kvfleet_harness::TempDir::new("proxy-rl");
    let dir = tmp.path();
    let path = dir.join("topology.toml");
    let write = |epoch: u64, a: &str, b: &str| {
        let t = format!(
            "epoch = {epoch}\n[[groups]]\nmaster = \"{a}\"\nslots = [\"0-511\"]\n[[groups]]\nmaster = \"{b}\"\nslots = [\"512-1023\"]\n"
        );
        std::fs::write(&path, t).unwrap();
    };
    let (a, b) = (servers[0].addr(), servers[1].addr());
    write(1, &a, &b);
    let px = kvfleet_proxy(&[], &["--topology", path.to_str().unwrap()]);
    let port = px.port;
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let (stop, done) = (stop.clone(), done.clone());
            std::thread::spawn(move || {
                let mut c = RawClient::connect(port);
                let mut n = 0u64;
                while !stop.load(Relaxed) {
                    // ECHO-like round trips through the backends: each reply names its request
                    let cmds: Vec<Vec<Vec<u8>>> = (0..8)
                        .map(|i| {
                            let k = format!("rl:{w}:{i}");
                            vec![
                                b"SET".to_vec(),
                                k.into_bytes(),
                                format!("{w}-{n}-{i}").into_bytes(),
                                b"GET".to_vec(),
                            ]
                        })
                        .collect();
                    for (i, r) in c.pipeline(&cmds).iter().enumerate() {
                        // SET ... GET returns the previous value: one this worker wrote, or nothing
                        let got = String::from_utf8_lossy(r).into_owned();
                        let mine = got == "$-1\r\n"
                            || got.lines().nth(1).is_some_and(|v| {
                                v.starts_with(&format!("{w}-")) && v.ends_with(&format!("-{i}"))
                            });
                        assert!(mine, "worker {w} got {got:?}");
                    }
                    done.fetch_add(8, Relaxed);
                    n += 1;
                }
            })
        })
        .collect();
    let mut admin = px.client();
    for epoch in 2..22 {
        let (x, y) = if epoch % 2 == 0 { (&b, &a) } else { (&a, &b) };
        write(epoch, x, y);
        assert_eq!(
            admin.call(&["PROXY", "RELOAD"]),
            Frame::Integer(epoch as i64)
        );
        std::thread::sleep(Duration::from_millis(25));
    }
    let before = done.load(Relaxed);
    assert!(
        eventually(Duration::from_secs(5), || done.load(Relaxed)
            > before + 1000),
        "traffic stalled after the reloads"
    );
    stop.store(true, Relaxed);
    for w in workers {
        w.join().expect("a worker saw a reply that was not its own");
    }
}

#[test]
fn stream_reads_route_by_their_keys_and_xread_block_wakes_on_xadd() {
    let servers: Vec<Proc> = (0..2).map(|_| redis_server(&[])).collect();
    let px = kvfleet_proxy(&refs(&servers), &[]);
    let mut c = px.client();
    let Frame::Bulk(id) = c.call(&["XADD", "events", "*", "f", "v"]) else {
        panic!("XADD")
    };
    let Frame::Array(r) = c.call(&["XREAD", "COUNT", "5", "STREAMS", "events", "0"]) else {
        panic!("XREAD")
    };
    assert_eq!(r.len(), 1, "one stream in the reply");
    assert!(format!("{r:?}").contains(&String::from_utf8_lossy(&id).to_string()));
    assert!(
        c.cmd(&[b"XREAD", b"STREAMS", b"a", b"b", b"0", b"0"])
            .starts_with(b"-CROSSSLOT")
    );
    let mut waiter = px.client();
    waiter.send(&kvfleet_harness::encode_cmd(&[
        b"XREAD", b"BLOCK", b"0", b"STREAMS", b"jobs", b"$",
    ]));
    // wait until a backend has parked it (no sleeping on a guess)
    let blocked = || {
        servers.iter().any(|b| {
            let Frame::Bulk(t) = b.client().call(&["INFO", "clients"]) else {
                return false;
            };
            String::from_utf8_lossy(&t).contains("blocked_clients:1")
        })
    };
    assert!(
        eventually(Duration::from_secs(5), blocked),
        "XREAD never blocked"
    );
    assert!(c.call(&["XADD", "jobs", "*", "n", "1"]) != Frame::Null);
    let r = waiter.read_reply().unwrap();
    assert!(
        r.starts_with(b"*1\r\n*2\r\n$4\r\njobs\r\n"),
        "{}",
        String::from_utf8_lossy(&r)
    );
}

#[test]
fn client_commands_name_list_and_kill_proxy_clients() {
    let servers = three_servers();
    let px = kvfleet_proxy(&refs(&servers), &[]);
    let mut a = px.client();
    let mut b = px.client();
    assert_eq!(a.cmd(&[b"CLIENT", b"SETNAME", b"worker-a"]), b"+OK\r\n");
    assert_eq!(a.cmd(&[b"CLIENT", b"GETNAME"]), b"$8\r\nworker-a\r\n");
    let Frame::Integer(id) = a.call(&["CLIENT", "ID"]) else {
        panic!("CLIENT ID")
    };
    let Frame::Bulk(list) = b.call(&["CLIENT", "LIST"]) else {
        panic!("CLIENT LIST")
    };
    let list = String::from_utf8_lossy(&list).into_owned();
    assert!(
        list.contains(&format!("id={id} ")) && list.contains("name=worker-a"),
        "{list}"
    );
    assert_eq!(
        b.call(&["CLIENT", "KILL", "ID", &id.to_string()]),
        Frame::Integer(1)
    );
    assert!(a.closed(), "killed client still connected");
    assert_eq!(
        b.cmd(&[b"CLIENT", b"KILL", b"ID", b"999999"]),
        b"-ERR No such client\r\n"
    );
}

#[test]
fn a_client_that_never_reads_is_closed_at_max_pending_bytes() {
    let servers = three_servers();
    let tmp = kvfleet_harness::TempDir::new("proxy-obuf");
    let dir = tmp.path();
    let cfg = dir.join("proxy.toml");
    std::fs::write(&cfg, "max_pending_bytes = 4194304\n").unwrap();
    let px = kvfleet_proxy(&refs(&servers), &["--config", cfg.to_str().unwrap()]);
    let mut c = px.client();
    let big = vec![b'b'; 1 << 20];
    assert_eq!(c.cmd(&[b"SET", b"big", &big]), b"+OK\r\n");
    // 300 MB of replies asked for, none read
    let mut flood = std::net::TcpStream::connect(("127.0.0.1", px.port)).unwrap();
    use std::io::Write;
    let get = kvfleet_harness::encode_cmd(&[b"GET", b"big"]);
    for _ in 0..300 {
        if flood.write_all(&get).is_err() {
            break;
        }
    }
    let closed = || {
        let Frame::Bulk(t) = c.call(&["INFO", "stats"]) else {
            return false;
        };
        String::from_utf8_lossy(&t).contains("client_output_buffer_limit_disconnections:1")
    };
    assert!(
        eventually(Duration::from_secs(10), closed),
        "flooding client not closed"
    );
    assert_eq!(c.cmd(&[b"PING"]), b"+PONG\r\n");
}
