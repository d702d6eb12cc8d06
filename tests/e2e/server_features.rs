//! Server behaviour beyond single replies: expiry, eviction, blocking pops,
//! pub/sub (and its output-buffer limit), slot commands and ownership,
//! concurrency across connections, SCAN's guarantee, config and INFO.

use std::time::{Duration, Instant};

use kvfleet_harness::{RawClient, bulk, encode_cmd, eventually, kvfleet_server};
use kvfleet_resp::Frame;

fn int(c: &mut RawClient, args: &[&str]) -> i64 {
    match c.call(args) {
        Frame::Integer(n) => n,
        other => panic!("{args:?} -> {other:?}"),
    }
}

/// `SET e:<i> v PX <px>` for i in 0..n, for a pipeline.
fn sets_expiring(n: usize, px: u64) -> Vec<Vec<Vec<u8>>> {
    (0..n)
        .map(|i| {
            let px = px.to_string();
            [
                &b"SET"[..],
                format!("e:{i}").as_bytes(),
                b"v",
                b"PX",
                px.as_bytes(),
            ]
            .map(<[u8]>::to_vec)
            .to_vec()
        })
        .collect()
}

#[test]
fn active_expiry_reclaims_keys_nobody_reads() {
    let srv = kvfleet_server(&[]);
    let mut c = srv.client();
    let mut cmds = sets_expiring(2000, 200);
    cmds.push(vec![b"SET".to_vec(), b"keep".to_vec(), b"v".to_vec()]);
    assert!(c.pipeline(&cmds).iter().all(|r| r == b"+OK\r\n"));
    assert_eq!(int(&mut c, &["DBSIZE"]), 2001);
    assert!(
        eventually(Duration::from_secs(10), || int(&mut c, &["DBSIZE"]) == 1),
        "expired keys were not reclaimed"
    );
    assert_eq!(c.info_field("stats", "expired_keys"), "2000");
}

/// A few keys with a TTL among many without: active expiry samples the
/// volatile keys only (as Redis's expires dict), so they go within a cycle
/// or two. Sampling all keys found about one expired key in 200 and stopped
/// each cycle early: 936 of the 1,000 were still there after 5 s.
#[test]
fn active_expiry_finds_few_volatile_keys_among_many_persistent_ones() {
    let srv = kvfleet_server(&[]);
    let mut c = srv.client();
    assert_eq!(
        c.call(&["DEBUG", "POPULATE", "200000", "p"]),
        Frame::Simple("OK".into())
    );
    let cmds = sets_expiring(1000, 100);
    assert!(c.pipeline(&cmds).iter().all(|r| r == b"+OK\r\n"));
    assert_eq!(int(&mut c, &["DBSIZE"]), 201_000);
    assert!(
        eventually(Duration::from_secs(5), || int(&mut c, &["DBSIZE"])
            == 200_000),
        "expired keys among persistent ones were not reclaimed: {} left",
        int(&mut c, &["DBSIZE"]) - 200_000
    );
    assert_eq!(c.info_field("stats", "expired_keys"), "1000");
}

#[test]
fn lazy_expiry_hides_keys_when_active_expiry_is_off() {
    let srv = kvfleet_server(&[]);
    let mut c = srv.client();
    assert_eq!(
        c.call(&["DEBUG", "SET-ACTIVE-EXPIRE", "0"]),
        Frame::Simple("OK".into())
    );
    c.call(&["SET", "k", "v", "PX", "50"]);
    let start = Instant::now();
    assert!(eventually(Duration::from_secs(5), || c.call(&["GET", "k"])
        == Frame::Null));
    assert!(start.elapsed() >= Duration::from_millis(50));
    assert_eq!(int(&mut c, &["EXISTS", "k"]), 0);
    c.call(&["DEBUG", "SET-ACTIVE-EXPIRE", "1"]);
}

#[test]
fn maxmemory_evicts_under_lru_and_refuses_under_noeviction() {
    let srv = kvfleet_server(&[]);
    let mut c = srv.client();
    let used: u64 = c.info_field("memory", "used_memory").parse().unwrap();
    let limit = used + 4 * 1024 * 1024;
    c.call(&["CONFIG", "SET", "maxmemory", &limit.to_string()]);
    c.call(&["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"]);
    let val = vec![b'x'; 1000];
    for i in 0..20_000 {
        let r = c.cmd(&[b"SET", format!("k:{i}").as_bytes(), &val]);
        assert_eq!(r, b"+OK\r\n");
    }
    let evicted: u64 = c.info_field("stats", "evicted_keys").parse().unwrap();
    assert!(evicted > 10_000, "evicted only {evicted}");
    let used: u64 = c.info_field("memory", "used_memory").parse().unwrap();
    assert!(
        used <= limit + 1024 * 1024,
        "used {used} over limit {limit}"
    );
    assert!(int(&mut c, &["DBSIZE"]) < 20_000);
    c.call(&["CONFIG", "SET", "maxmemory-policy", "noeviction"]);
    let mut refused = false;
    for i in 0..20_000 {
        let r = c.cmd(&[b"SET", format!("n:{i}").as_bytes(), &val]);
        if r != b"+OK\r\n" {
            assert_eq!(
                r,
                b"-OOM command not allowed when used memory > 'maxmemory'.\r\n"
            );
            refused = true;
            break;
        }
    }
    assert!(refused, "noeviction never refused a write");
    assert_eq!(
        c.call(&["GET", "nosuch"]),
        Frame::Null,
        "reads must still work"
    );
    assert_eq!(
        int(&mut c, &["DEL", "k:19999"]),
        1,
        "deletes must still work"
    );
}

#[test]
fn volatile_ttl_evicts_only_keys_with_ttl() {
    let srv = kvfleet_server(&["--maxmemory-policy", "volatile-ttl"]);
    let mut c = srv.client();
    let val = vec![b'x'; 1000];
    for i in 0..2000 {
        c.cmd(&[b"SET", format!("p:{i}").as_bytes(), &val]);
    }
    let used: u64 = c.info_field("memory", "used_memory").parse().unwrap();
    c.call(&[
        "CONFIG",
        "SET",
        "maxmemory",
        &(used + 2 * 1024 * 1024).to_string(),
    ]);
    for i in 0..6000 {
        c.cmd(&[b"SET", format!("v:{i}").as_bytes(), &val, b"EX", b"1000"]);
    }
    assert!(
        c.info_field("stats", "evicted_keys")
            .parse::<u64>()
            .unwrap()
            > 0
    );
    for i in (0..2000).step_by(97) {
        assert_eq!(
            int(&mut c, &["EXISTS", &format!("p:{i}")]),
            1,
            "persistent key p:{i} was evicted"
        );
    }
}

#[test]
fn blpop_wakes_on_push_from_another_client() {
    let srv = kvfleet_server(&[]);
    let port = srv.port;
    let waiter = std::thread::spawn(move || {
        let mut c = RawClient::connect(port);
        c.call(&["BLPOP", "q1", "q2", "5"])
    });
    let mut c = srv.client();
    assert!(c.wait_info("clients", "blocked_clients", "1", Duration::from_secs(5)));
    assert_eq!(int(&mut c, &["RPUSH", "q2", "job"]), 1);
    assert_eq!(
        waiter.join().unwrap(),
        Frame::Array(vec![bulk("q2"), bulk("job")])
    );
    assert_eq!(
        int(&mut c, &["EXISTS", "q2"]),
        0,
        "the element must be consumed exactly once"
    );
    assert_eq!(c.info_field("clients", "blocked_clients"), "0");
}

#[test]
fn blocking_pops_time_out_and_blmove_moves() {
    let srv = kvfleet_server(&[]);
    let mut c = srv.client();
    let t = Instant::now();
    assert_eq!(c.cmd(&[b"BLPOP", b"nosuch", b"0.2"]), b"*-1\r\n");
    assert!(
        t.elapsed() >= Duration::from_millis(190),
        "returned after {:?}",
        t.elapsed()
    );
    let port = srv.port;
    let waiter = std::thread::spawn(move || {
        RawClient::connect(port).call(&["BLMOVE", "src", "dst", "LEFT", "RIGHT", "0"])
    });
    assert!(c.wait_info("clients", "blocked_clients", "1", Duration::from_secs(5)));
    c.call(&["LPUSH", "src", "a"]);
    assert_eq!(waiter.join().unwrap(), bulk("a"));
    assert_eq!(
        c.call(&["LRANGE", "dst", "0", "-1"]),
        Frame::Array(vec![bulk("a")])
    );
    let port = srv.port;
    let z = std::thread::spawn(move || RawClient::connect(port).call(&["BZPOPMIN", "zq", "0"]));
    assert!(c.wait_info("clients", "blocked_clients", "1", Duration::from_secs(5)));
    c.call(&["ZADD", "zq", "3", "m"]);
    assert_eq!(
        z.join().unwrap(),
        Frame::Array(vec![bulk("zq"), bulk("m"), bulk("3")])
    );
}

#[test]
fn blocked_client_that_disconnects_is_forgotten() {
    let srv = kvfleet_server(&[]);
    let mut c = srv.client();
    {
        let mut b = srv.client();
        b.send(&encode_cmd(&[b"BLPOP", b"never", b"0"]));
        assert!(c.wait_info("clients", "blocked_clients", "1", Duration::from_secs(5)));
    }
    assert!(c.wait_info("clients", "blocked_clients", "0", Duration::from_secs(5)));
    c.call(&["RPUSH", "never", "x"]);
    assert_eq!(
        int(&mut c, &["LLEN", "never"]),
        1,
        "no ghost consumer may take the element"
    );
}

#[test]
fn pubsub_delivers_to_channels_and_patterns_in_resp2_and_resp3() {
    let srv = kvfleet_server(&[]);
    let mut sub2 = srv.client();
    assert_eq!(
        sub2.cmd(&[b"SUBSCRIBE", b"news"]),
        b"*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n"
    );
    assert_eq!(
        sub2.cmd(&[b"PSUBSCRIBE", b"n*"]),
        b"*3\r\n$10\r\npsubscribe\r\n$2\r\nn*\r\n:2\r\n"
    );
    assert!(
        sub2.cmd(&[b"GET", b"x"])
            .starts_with(b"-ERR Can't execute 'get'")
    );
    assert_eq!(sub2.cmd(&[b"PING"]), b"*2\r\n$4\r\npong\r\n$0\r\n\r\n");
    let mut sub3 = srv.client();
    sub3.cmd(&[b"HELLO", b"3"]);
    assert_eq!(
        sub3.cmd(&[b"SUBSCRIBE", b"news"]),
        b">3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n"
    );
    assert_eq!(
        sub3.cmd(&[b"GET", b"x"]),
        b"_\r\n",
        "RESP3 subscribers may run commands"
    );
    let mut p = srv.client();
    assert_eq!(int(&mut p, &["PUBLISH", "news", "hi"]), 3);
    assert_eq!(
        sub2.read_reply().unwrap(),
        b"*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$2\r\nhi\r\n"
    );
    assert_eq!(
        sub2.read_reply().unwrap(),
        b"*4\r\n$8\r\npmessage\r\n$2\r\nn*\r\n$4\r\nnews\r\n$2\r\nhi\r\n"
    );
    assert_eq!(
        sub3.read_reply().unwrap(),
        b">3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$2\r\nhi\r\n"
    );
    assert_eq!(
        p.call(&["PUBSUB", "NUMSUB", "news"]),
        Frame::Array(vec![bulk("news"), Frame::Integer(2)])
    );
    assert_eq!(int(&mut p, &["PUBSUB", "NUMPAT"]), 1);
    assert_eq!(
        sub2.cmd(&[b"UNSUBSCRIBE"]),
        b"*3\r\n$11\r\nunsubscribe\r\n$4\r\nnews\r\n:1\r\n"
    );
    drop(sub3);
    assert!(eventually(Duration::from_secs(5), || int(
        &mut p,
        &["PUBLISH", "news", "x"]
    ) == 1));
}

#[test]
fn slow_subscriber_is_disconnected_at_the_hard_output_limit() {
    let srv = kvfleet_server(&[]);
    let mut p = srv.client();
    p.call(&[
        "CONFIG",
        "SET",
        "client-output-buffer-limit",
        "pubsub 1mb 512kb 60",
    ]);
    let mut slow = srv.client();
    slow.cmd(&[b"SUBSCRIBE", b"firehose"]);
    // The slow subscriber never reads; its socket buffers fill, then our queue.
    let msg = vec![b'm'; 64 * 1024];
    let mut delivered_to_zero = false;
    for _ in 0..2000 {
        if int(
            &mut p,
            &["PUBLISH", "firehose", std::str::from_utf8(&msg).unwrap()],
        ) == 0
        {
            delivered_to_zero = true;
            break;
        }
    }
    assert!(delivered_to_zero, "slow subscriber was never disconnected");
    assert_eq!(
        p.call(&["PING"]),
        Frame::Simple("PONG".into()),
        "the publisher keeps being served"
    );
    assert!(
        slow.closed(),
        "the slow subscriber's connection must be closed"
    );
}

#[test]
fn slot_commands_count_scan_delete_and_redirect() {
    let srv = kvfleet_server(&[]);
    let mut c = srv.client();
    for i in 0..300 {
        c.call(&["SET", &format!("{{tag}}:{i}"), "v"]);
    }
    c.call(&["SET", "other", "v"]);
    let slot = kvfleet_model_slot("tag");
    assert_eq!(int(&mut c, &["SLOTS", "COUNT", &slot.to_string()]), 300);
    let mut cursor = "0".to_string();
    let mut seen = std::collections::HashSet::new();
    loop {
        let Frame::Array(v) = c.call(&["SLOTS", "SCAN", &slot.to_string(), &cursor, "COUNT", "50"])
        else {
            panic!()
        };
        let Frame::Bulk(next) = &v[0] else { panic!() };
        let Frame::Array(keys) = &v[1] else { panic!() };
        for k in keys {
            let Frame::Bulk(k) = k else { panic!() };
            seen.insert(k.clone());
        }
        cursor = String::from_utf8_lossy(next).into_owned();
        if cursor == "0" {
            break;
        }
    }
    assert_eq!(seen.len(), 300);
    assert_eq!(int(&mut c, &["SLOTS", "DEL", &slot.to_string()]), 300);
    assert_eq!(int(&mut c, &["DBSIZE"]), 1);
    c.call(&["SLOTS", "MOVED-ADDR", "10.0.0.9:6379"]);
    let oslot = kvfleet_model_slot("other");
    c.call(&["SLOTS", "DISOWN", &format!("{oslot}-{oslot}")]);
    assert_eq!(
        c.cmd(&[b"GET", b"other"]),
        format!("-MOVED {oslot} 10.0.0.9:6379\r\n").into_bytes()
    );
    assert_eq!(
        c.cmd(&[b"SET", b"other", b"x"]),
        format!("-MOVED {oslot} 10.0.0.9:6379\r\n").into_bytes()
    );
    c.call(&["SLOTS", "OWN", &format!("{oslot}")]);
    assert_eq!(c.call(&["GET", "other"]), bulk("v"));
}

/// The slot function as the server uses it, checked independently by the model crate's vectors.
fn kvfleet_model_slot(tag: &str) -> u16 {
    (crc32(tag.as_bytes()) % 1024) as u16
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn concurrent_clients_on_both_cores_never_lose_updates() {
    // both workers from the start (the governor would keep a light load on one)
    let srv = kvfleet_server(&["--threads", "2", "--adaptive-threads", "no"]);
    let port = srv.port;
    let workers: Vec<_> = (0..8)
        .map(|_| {
            std::thread::spawn(move || {
                let mut c = RawClient::connect(port);
                let mut batch = Vec::new();
                for i in 0..2000 {
                    batch.extend(encode_cmd(&[b"INCR", b"shared"]));
                    batch.extend(encode_cmd(&[
                        b"MSET",
                        format!("a{i}").as_bytes(),
                        b"1",
                        format!("b{i}").as_bytes(),
                        b"1",
                    ]));
                    batch.extend(encode_cmd(&[b"MULTI"]));
                    batch.extend(encode_cmd(&[b"INCR", b"{t}x"]));
                    batch.extend(encode_cmd(&[b"INCR", b"{t}y"]));
                    batch.extend(encode_cmd(&[b"EXEC"]));
                }
                c.send(&batch);
                for _ in 0..2000 * 6 {
                    c.read_reply().unwrap();
                }
            })
        })
        .collect();
    let mut c = srv.client();
    // EXEC must be atomic: no reader ever sees x and y apart
    for _ in 0..200 {
        let Frame::Array(v) = c.call(&["MGET", "{t}x", "{t}y"]) else {
            panic!()
        };
        assert_eq!(v[0], v[1], "MULTI/EXEC was observed half-applied");
    }
    for w in workers {
        w.join().unwrap();
    }
    assert_eq!(c.call(&["GET", "shared"]), bulk("16000"));
    assert_eq!(c.call(&["GET", "{t}x"]), bulk("16000"));
    assert_eq!(int(&mut c, &["DBSIZE"]), 4003);
}

#[test]
fn scan_returns_every_key_present_throughout_despite_concurrent_deletes() {
    let srv = kvfleet_server(&["--threads", "2", "--adaptive-threads", "no"]);
    let mut c = srv.client();
    let cmds: Vec<Vec<Vec<u8>>> = (0..10_000)
        .map(|i| {
            vec![
                b"SET".to_vec(),
                format!("key:{i}").into_bytes(),
                b"v".to_vec(),
            ]
        })
        .collect();
    assert!(c.pipeline(&cmds).iter().all(|r| r == b"+OK\r\n"));
    let mut w = srv.client();
    let mut cursor = "0".to_string();
    let mut seen = std::collections::HashSet::new();
    let mut round = 0;
    loop {
        let Frame::Array(v) = c.call(&["SCAN", &cursor, "COUNT", "100"]) else {
            panic!()
        };
        let Frame::Bulk(next) = &v[0] else { panic!() };
        let Frame::Array(keys) = &v[1] else { panic!() };
        for k in keys {
            let Frame::Bulk(k) = k else { panic!() };
            seen.insert(String::from_utf8_lossy(k).into_owned());
        }
        // churn: delete odd keys (swap-removes inside slot tables) and add new ones
        for j in 0..20 {
            let i = (round * 20 + j) * 2 + 1;
            if i < 10_000 {
                w.call(&["DEL", &format!("key:{i}")]);
            }
            w.call(&["SET", &format!("new:{round}:{j}"), "v"]);
        }
        round += 1;
        cursor = String::from_utf8_lossy(next).into_owned();
        if cursor == "0" {
            break;
        }
    }
    for i in (0..10_000).step_by(2) {
        assert!(
            seen.contains(&format!("key:{i}")),
            "SCAN missed key:{i}, present from start to end"
        );
    }
}

#[test]
fn slowlog_info_and_client_commands_report_what_happened() {
    let srv = kvfleet_server(&[]);
    let mut c = srv.client();
    c.call(&["CONFIG", "SET", "slowlog-log-slower-than", "0"]);
    c.call(&["CLIENT", "SETNAME", "tester"]);
    c.call(&["SET", "a", "1"]);
    let Frame::Array(entries) = c.call(&["SLOWLOG", "GET", "1"]) else {
        panic!()
    };
    let Frame::Array(e) = &entries[0] else {
        panic!()
    };
    assert_eq!(e[3], Frame::Array(vec![bulk("SET"), bulk("a"), bulk("1")]));
    assert_eq!(e[5], bulk("tester"));
    let Frame::Bulk(list) = c.call(&["CLIENT", "LIST"]) else {
        panic!()
    };
    assert!(String::from_utf8_lossy(&list).contains("name=tester"));
    for (section, field) in [
        ("server", "redis_version"),
        ("server", "tcp_port"),
        ("clients", "connected_clients"),
        ("memory", "used_memory"),
        ("memory", "maxmemory_policy"),
        ("persistence", "rdb_changes_since_last_save"),
        ("stats", "total_commands_processed"),
        ("stats", "keyspace_hits"),
        ("replication", "role"),
        ("cpu", "used_cpu_user"),
    ] {
        c.info_field(section, field);
    }
    assert_eq!(c.info_field("server", "tcp_port"), srv.port.to_string());
    let Frame::Bulk(cs) = c.call(&["INFO", "commandstats"]) else {
        panic!()
    };
    assert!(String::from_utf8_lossy(&cs).contains("cmdstat_set:calls=1,"));
    let mut victim = srv.client();
    let Frame::Integer(id) = victim.call(&["CLIENT", "ID"]) else {
        panic!()
    };
    assert_eq!(int(&mut c, &["CLIENT", "KILL", "ID", &id.to_string()]), 1);
    assert!(victim.closed());
}

#[test]
fn config_file_is_read_and_bad_config_exits_64_before_binding() {
    let tmp = kvfleet_harness::TempDir::new("cfg");
    let dir = tmp.path();
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "maxmemory_policy = \"sometimes\"\n").unwrap();
    let st = std::process::Command::new(kvfleet_harness::binary("kvfleet-server"))
        .args(["--config", bad.to_str().unwrap()])
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert_eq!(st.code(), Some(64));
    let good = dir.join("good.toml");
    std::fs::write(&good, "requirepass = \"pw\"\nmaxmemory = 123456789\n").unwrap();
    let srv = kvfleet_server(&["--config", good.to_str().unwrap()]);
    let mut c = srv.client();
    assert_eq!(c.cmd(&[b"AUTH", b"pw"]), b"+OK\r\n");
    assert_eq!(
        c.call(&["CONFIG", "GET", "maxmemory"]),
        Frame::Array(vec![bulk("maxmemory"), bulk("123456789")])
    );
}

#[test]
fn every_eviction_policy_evicts_and_volatile_policies_spare_persistent_keys() {
    for policy in [
        "allkeys-lru",
        "volatile-lru",
        "allkeys-lfu",
        "volatile-lfu",
        "allkeys-random",
        "volatile-random",
        "volatile-ttl",
    ] {
        let srv = kvfleet_server(&["--maxmemory-policy", policy]);
        let mut c = srv.client();
        let val = vec![b'x'; 1000];
        let cmds: Vec<Vec<Vec<u8>>> = (0..1000)
            .map(|i| vec![b"SET".to_vec(), format!("p:{i}").into_bytes(), val.clone()])
            .collect();
        assert!(
            c.pipeline(&cmds).iter().all(|r| r == b"+OK\r\n"),
            "{policy}: preload refused"
        );
        let used: u64 = c.info_field("memory", "used_memory").parse().unwrap();
        c.call(&[
            "CONFIG",
            "SET",
            "maxmemory",
            &(used + 2 * 1024 * 1024).to_string(),
        ]);
        for i in 0..5000 {
            let r = c.cmd(&[b"SET", format!("v:{i}").as_bytes(), &val, b"EX", b"1000"]);
            assert_eq!(r, b"+OK\r\n", "{policy}: write refused");
        }
        let evicted: u64 = c.info_field("stats", "evicted_keys").parse().unwrap();
        assert!(evicted > 1000, "{policy}: evicted only {evicted}");
        if policy.starts_with("volatile") {
            assert_eq!(
                int(&mut c, &["EXISTS", "p:0", "p:499", "p:999"]),
                3,
                "{policy} evicted a persistent key"
            );
        }
    }
}

#[test]
fn slow_subscriber_over_the_soft_limit_for_its_grace_period_is_disconnected() {
    let srv = kvfleet_server(&[]);
    let mut p = srv.client();
    // no hard limit: only the soft one (256 KB tolerated for 1 s) can close it
    p.call(&[
        "CONFIG",
        "SET",
        "client-output-buffer-limit",
        "pubsub 0 256kb 1",
    ]);
    let mut slow = srv.client();
    slow.cmd(&[b"SUBSCRIBE", b"drip"]);
    let msg = "m".repeat(16 * 1024);
    let started = Instant::now();
    let mut gone_after = None;
    while started.elapsed() < Duration::from_secs(20) {
        if int(&mut p, &["PUBLISH", "drip", &msg]) == 0 {
            gone_after = Some(started.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let gone_after = gone_after.expect("soft limit never disconnected the subscriber");
    assert!(
        gone_after >= Duration::from_secs(1),
        "disconnected before the 1 s grace period: {gone_after:?}"
    );
    assert!(slow.closed());
}

#[test]
fn lfu_eviction_keeps_frequently_read_keys_and_object_freq_counts_reads() {
    let srv = kvfleet_server(&["--maxmemory-policy", "allkeys-lfu"]);
    let mut c = srv.client();
    let val = vec![b'x'; 1000];
    let set = |prefix: &str, n: usize| -> Vec<Vec<Vec<u8>>> {
        (0..n)
            .map(|i| {
                vec![
                    b"SET".to_vec(),
                    format!("{prefix}:{i}").into_bytes(),
                    val.clone(),
                ]
            })
            .collect()
    };
    assert!(c.pipeline(&set("hot", 100)).iter().all(|r| r == b"+OK\r\n"));
    assert!(
        c.pipeline(&set("cold", 900))
            .iter()
            .all(|r| r == b"+OK\r\n")
    );
    // a fresh key starts at Redis's LFU_INIT_VAL (4 if a minute boundary decayed it)
    let fresh = int(&mut c, &["OBJECT", "FREQ", "cold:0"]);
    assert!((4..=5).contains(&fresh), "fresh key freq {fresh}");
    let reads: Vec<Vec<Vec<u8>>> = (0..100 * 60)
        .map(|i| vec![b"GET".to_vec(), format!("hot:{}", i % 100).into_bytes()])
        .collect();
    c.pipeline(&reads);
    let hot = int(&mut c, &["OBJECT", "FREQ", "hot:7"]);
    assert!(hot > fresh, "60 reads left freq at {hot}");

    let used: u64 = c.info_field("memory", "used_memory").parse().unwrap();
    c.call(&[
        "CONFIG",
        "SET",
        "maxmemory",
        &(used + 256 * 1024).to_string(),
    ]);
    c.call(&["CONFIG", "SET", "maxmemory-samples", "10"]);
    for r in c.pipeline(&set("new", 1000)) {
        assert_eq!(r, b"+OK\r\n");
    }
    let evicted: u64 = c.info_field("stats", "evicted_keys").parse().unwrap();
    assert!(evicted > 500, "evicted only {evicted}");
    let hot_left = (0..100)
        .filter(|i| int(&mut c, &["EXISTS", &format!("hot:{i}")]) == 1)
        .count();
    assert!(
        hot_left >= 90,
        "only {hot_left} of 100 hot keys survived {evicted} evictions"
    );

    // OBJECT IDLETIME is Redis's error under an LFU policy, and FREQ under LRU
    let r = c.cmd(&[b"OBJECT", b"IDLETIME", b"hot:7"]);
    assert!(
        r.starts_with(b"-ERR An LFU maxmemory policy is selected"),
        "{r:?}"
    );
    c.call(&["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"]);
    let r = c.cmd(&[b"OBJECT", b"FREQ", b"hot:7"]);
    assert!(
        r.starts_with(b"-ERR An LFU maxmemory policy is not selected"),
        "{r:?}"
    );
}

#[test]
fn a_watched_key_that_expires_aborts_exec_as_in_redis() {
    let ours = kvfleet_server(&[]);
    let redis = kvfleet_harness::redis_server(&[]);
    for p in [&ours, &redis] {
        let mut c = p.client();
        let mut other = p.client();
        assert_eq!(
            c.cmd(&[b"SET", b"w", b"v", b"PX", b"100"]),
            b"+OK\r\n",
            "{}",
            p.name
        );
        assert_eq!(c.cmd(&[b"WATCH", b"w", b"never"]), b"+OK\r\n");
        assert!(
            eventually(Duration::from_secs(5), || other.cmd(&[b"PTTL", b"w"])
                == b":-2\r\n"),
            "{}: key did not expire",
            p.name
        );
        assert_eq!(c.cmd(&[b"MULTI"]), b"+OK\r\n");
        assert_eq!(c.cmd(&[b"SET", b"x", b"1"]), b"+QUEUED\r\n");
        assert_eq!(
            c.cmd(&[b"EXEC"]),
            b"*-1\r\n",
            "{}: EXEC after expiry",
            p.name
        );
        // a watched key that was missing and still is does not abort
        assert_eq!(c.cmd(&[b"WATCH", b"never"]), b"+OK\r\n");
        assert_eq!(c.cmd(&[b"MULTI"]), b"+OK\r\n");
        assert_eq!(c.cmd(&[b"SET", b"x", b"1"]), b"+QUEUED\r\n");
        assert_eq!(c.cmd(&[b"EXEC"]), b"*1\r\n+OK\r\n", "{}", p.name);
    }
}

#[test]
fn config_set_timeout_closes_idle_clients_but_not_subscribers() {
    let srv = kvfleet_server(&[]);
    let mut c = srv.client();
    let mut idle = srv.client();
    assert_eq!(idle.call(&["PING"]), Frame::Simple("PONG".into()));
    let mut sub = srv.client();
    sub.call(&["SUBSCRIBE", "ch"]);
    assert_eq!(
        c.call(&["CONFIG", "SET", "timeout", "1"]),
        Frame::Simple("OK".into())
    );
    assert_eq!(
        c.call(&["CONFIG", "GET", "timeout"]),
        Frame::Array(vec![bulk("timeout"), bulk("1")])
    );
    let t = Instant::now();
    assert!(idle.closed(), "an idle client outlived `timeout 1`");
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "closed too early: {:?}",
        t.elapsed()
    );
    // the subscriber was idle as long, and is exempt (as in Redis)
    assert_eq!(
        sub.call(&["PING"]),
        Frame::Array(vec![bulk("pong"), bulk("")])
    );
    assert!(c.closed(), "the client that set it was idle as long");
    let mut c = srv.client();
    c.call(&["CONFIG", "SET", "timeout", "0"]);
    let mut kept = srv.client();
    assert_eq!(kept.call(&["PING"]), Frame::Simple("PONG".into()));
    std::thread::sleep(Duration::from_millis(1500)); // idle past the old limit on purpose
    assert_eq!(
        kept.call(&["PING"]),
        Frame::Simple("PONG".into()),
        "timeout 0 closes nobody"
    );
}
