//! Streams beyond single replies (those are in `cases/streams.txt` and
//! `cases/stream_groups.txt`; random sequences in `random_ops`): blocked
//! XREAD and XREADGROUP woken by XADD, next to redis-server; streams with
//! consumer groups surviving SAVE and restart, DUMP/RESTORE both ways
//! with redis-server, and reaching a redis-server replica.

use std::time::{Duration, Instant};

use kvfleet_harness::{
    Proc, RawClient, TempDir, caught_up, eventually, kvfleet_server, redis_server,
};
use kvfleet_resp::Frame;

use crate::persist::{keyspace, text};

fn blocked(c: &mut RawClient) -> bool {
    c.info_field("clients", "blocked_clients") == "1"
}

/// A stream with entries, two groups, pending entries and a deletion.
fn fill(c: &mut RawClient) {
    for i in 1..=5 {
        c.call(&[
            "XADD",
            "s",
            &format!("{i}-0"),
            "f",
            &i.to_string(),
            "g",
            "x",
        ]);
    }
    c.call(&["XADD", "s", "6-0", "other", "field"]);
    c.call(&["XGROUP", "CREATE", "s", "g1", "0"]);
    c.call(&["XGROUP", "CREATE", "s", "g2", "$"]);
    c.call(&[
        "XREADGROUP",
        "GROUP",
        "g1",
        "alice",
        "COUNT",
        "3",
        "STREAMS",
        "s",
        ">",
    ]);
    c.call(&[
        "XREADGROUP",
        "GROUP",
        "g1",
        "bob",
        "COUNT",
        "1",
        "STREAMS",
        "s",
        ">",
    ]);
    c.call(&["XACK", "s", "g1", "2-0"]);
    c.call(&["XDEL", "s", "3-0"]);
}

/// What must survive a copy: entries, counters, groups, PELs.
fn state(c: &mut RawClient) -> String {
    format!(
        "{:?} {:?} {:?} {:?}",
        c.call(&["XRANGE", "s", "-", "+"]),
        c.call(&["XINFO", "GROUPS", "s"]),
        c.call(&["XPENDING", "s", "g1"]),
        c.call(&["XLEN", "s"]),
    )
}

#[test]
fn blocked_xread_and_xreadgroup_wake_on_xadd_as_in_redis() {
    let (kv, redis) = (kvfleet_server(&[]), redis_server(&[]));
    for server in [&redis, &kv] {
        let mut w = server.client();
        w.call(&["XADD", "s", "1-0", "a", "1"]);
        // XREAD with $: only what arrives after the call
        let mut r = server.client();
        r.send(&kvfleet_harness::encode_cmd(&[
            b"XREAD", b"BLOCK", b"0", b"STREAMS", b"s", b"$",
        ]));
        assert!(eventually(Duration::from_secs(10), || blocked(&mut w)));
        w.call(&["XADD", "s", "2-0", "b", "2"]);
        let got = String::from_utf8_lossy(&r.read_reply().unwrap()).into_owned();
        assert_eq!(
            got,
            "*1\r\n*2\r\n$1\r\ns\r\n*1\r\n*2\r\n$3\r\n2-0\r\n*2\r\n$1\r\nb\r\n$1\r\n2\r\n"
        );
        w.call(&["XGROUP", "CREATE", "s", "g", "$"]);
        // a write that is not an XADD to the stream does not wake it
        r.send(&kvfleet_harness::encode_cmd(&[
            b"XREADGROUP",
            b"GROUP",
            b"g",
            b"c",
            b"BLOCK",
            b"0",
            b"STREAMS",
            b"s",
            b">",
        ]));
        assert!(eventually(Duration::from_secs(10), || blocked(&mut w)));
        w.call(&["SET", "other", "x"]);
        w.call(&["XADD", "s", "3-0", "c", "3"]);
        let got = String::from_utf8_lossy(&r.read_reply().unwrap()).into_owned();
        assert!(got.contains("3-0"), "{got}");
        // delivered to the group: now pending for c
        assert_eq!(
            w.call(&["XPENDING", "s", "g"]),
            Frame::Array(vec![
                Frame::Integer(1),
                Frame::Bulk("3-0".into()),
                Frame::Bulk("3-0".into()),
                Frame::Array(vec![Frame::Array(vec![
                    Frame::Bulk("c".into()),
                    Frame::Bulk("1".into())
                ])]),
            ])
        );
        // a timeout answers nil after the time given
        let t = Instant::now();
        assert_eq!(
            r.cmd(&[b"XREAD", b"BLOCK", b"150", b"STREAMS", b"s", b"$"]),
            b"*-1\r\n"
        );
        assert!(t.elapsed() >= Duration::from_millis(150));
    }
}

#[test]
fn streams_with_groups_survive_restart_dump_restore_and_replication() {
    let redis = redis_server(&[]);
    let mut r = redis.client();
    fill(&mut r);
    let want = state(&mut r);

    // kvfleet's own file, across a restart
    let dir = TempDir::new("streams");
    let d = dir.path().to_str().unwrap().to_string();
    {
        let kv = kvfleet_server(&["--dir", &d]);
        let mut c = kv.client();
        fill(&mut c);
        assert_eq!(state(&mut c), want, "kvfleet before the restart");
        assert_eq!(c.call(&["SAVE"]), Frame::Simple("OK".into()));
    }
    let kv = kvfleet_server(&["--dir", &d]);
    let mut c = kv.client();
    assert_eq!(state(&mut c), want, "kvfleet after the restart");

    // DUMP from Redis restores into kvfleet, and ours into Redis
    let from_redis = match r.call(&["DUMP", "s"]) {
        Frame::Bulk(b) => b,
        other => panic!("{other:?}"),
    };
    c.cmd(&[b"DEL", b"s"]);
    assert_eq!(c.cmd(&[b"RESTORE", b"s", b"0", &from_redis]), b"+OK\r\n");
    assert_eq!(state(&mut c), state(&mut r), "Redis's DUMP in kvfleet");
    let ours = match c.call(&["DUMP", "s"]) {
        Frame::Bulk(b) => b,
        other => panic!("{other:?}"),
    };
    let redis2 = redis_server(&[]);
    let mut r2 = redis2.client();
    assert_eq!(r2.cmd(&[b"RESTORE", b"s", b"0", &ours]), b"+OK\r\n");
    assert_eq!(state(&mut r2), state(&mut c), "kvfleet's DUMP in Redis");

    // a redis-server replica: XADD * arrives with the master's ID
    replicate(&kv, &mut c);
}

fn replicate(kv: &Proc, m: &mut RawClient) {
    let port = kv.port.to_string();
    let replica = redis_server(&["--replicaof", "127.0.0.1", &port]);
    let mut r = replica.client();
    assert!(r.wait_info(
        "replication",
        "master_link_status",
        "up",
        Duration::from_secs(20)
    ));
    for _ in 0..20 {
        m.call(&["XADD", "s", "*", "k", "v"]);
    }
    m.call(&["XADD", "t", "MAXLEN", "5", "*", "k", "v"]);
    m.call(&[
        "XREADGROUP",
        "GROUP",
        "g2",
        "carol",
        "COUNT",
        "4",
        "STREAMS",
        "s",
        ">",
    ]);
    m.call(&["XCLAIM", "s", "g1", "dave", "0", "1-0", "JUSTID"]);
    assert!(caught_up(m, &mut r));
    assert_eq!(text(&r.call(&["XLEN", "s"])), text(&m.call(&["XLEN", "s"])));
    assert_eq!(state(&mut r), state(&mut *m), "replica");
    assert_eq!(keyspace(&mut r), keyspace(&mut *m));
}
