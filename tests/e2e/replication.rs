//! Replication against the real thing: kvfleet and Debian's redis-server
//! 7.0.15 as masters and replicas of each other under write load (keyspaces
//! compared in full), partial resyncs after a dropped link or a restarted
//! replica, full syncs after a restarted master or a backlog overrun,
//! chains of replicas and promotions without full syncs (PSYNC2), FAILOVER
//! without losing an acknowledged write, WAIT, min-replicas-to-write and
//! CLIENT PAUSE.

use std::time::{Duration, Instant};

use kvfleet_harness::{
    Proc, RawClient, TempDir, caught_up, eventually, kvfleet_server, kvfleet_server_on,
    redis_server,
};
use kvfleet_resp::Frame;

use crate::persist::{keyspace, populate, strs, text, write_tricky};

#[test]
fn a_redis_replica_of_a_kvfleet_master_converges_under_writes_and_resyncs_partially() {
    let kv = kvfleet_server(&[]);
    let port = kv.port;
    let mut m = kv.client();
    populate(&mut m);
    write_tricky(&mut m, port);
    // writers keep going while the replica attaches and loads the snapshot
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = writer(port, stop.clone());
    let port_s = port.to_string();
    let redis = redis_server(&["--replicaof", "127.0.0.1", &port_s]);
    let mut r = redis.client();
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
    assert!(caught_up(&mut m, &mut r), "replica did not catch up");
    assert_eq!(keyspace(&mut r), keyspace(&mut m), "replica keyspace");
    assert_eq!(m.info_field("replication", "connected_slaves"), "1");
    assert_eq!(m.info_field("stats", "sync_full"), "1");

    // the link drops; the replica comes back within the backlog: partial resync
    r.call(&["CLIENT", "KILL", "TYPE", "master"]);
    m.call(&["SET", "while:away", "1"]);
    m.call(&["HSET", "while:away:h", "f", "v"]);
    assert!(caught_up(&mut m, &mut r));
    assert_eq!(m.info_field("stats", "sync_partial_ok"), "1");
    // WAIT: the replica acknowledges a fresh write; asking for two times out with one
    m.call(&["SET", "waited", "1"]);
    assert_eq!(text(&m.call(&["WAIT", "1", "5000"])), "1");
    let t = Instant::now();
    assert_eq!(text(&m.call(&["WAIT", "2", "200"])), "1");
    assert!(t.elapsed() >= Duration::from_millis(200));
    assert_eq!(text(&m.call(&["WAIT", "0", "0"])), "1", "no wait for zero");
    assert_eq!(
        m.info_field("stats", "sync_full"),
        "1",
        "no second full sync"
    );
    assert_eq!(keyspace(&mut r), keyspace(&mut m));
    // ROLE lists the replica with its acknowledged offset
    let role = strs(&mut m, &["ROLE"]);
    assert_eq!(role[0], "master");

    // keys that expire on the master (lazily or actively) leave the replica
    // too: Redis replicas do not expire keys themselves, they wait for DELs
    for i in 0..20 {
        m.call(&["SET", &format!("short:{i}"), "v", "PX", "50"]);
    }
    assert!(caught_up(&mut m, &mut r));
    let with_short = text(&r.call(&["DBSIZE"]));
    std::thread::sleep(Duration::from_millis(100));
    m.call(&["GET", "short:0"]); // one lazily
    assert!(
        eventually(Duration::from_secs(10), || {
            text(&r.call(&["DBSIZE"])) == text(&m.call(&["DBSIZE"]))
        }),
        "replica kept expired keys: {with_short} before, {} now vs master {}",
        text(&r.call(&["DBSIZE"])),
        text(&m.call(&["DBSIZE"]))
    );
}

/// MSETs and a few non-deterministic commands from another thread until told to stop.
fn writer(
    port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut c = RawClient::connect(port);
        let mut n = 0u64;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let batch: Vec<Vec<Vec<u8>>> = (0..50)
                .map(|_| {
                    n += 1;
                    vec![
                        b"MSET".to_vec(),
                        format!("w:{}", n % 500).into_bytes(),
                        n.to_string().into_bytes(),
                        b"w:last".to_vec(),
                        n.to_string().into_bytes(),
                    ]
                })
                .collect();
            c.pipeline(&batch);
            c.call(&["INCRBYFLOAT", "w:float", "0.5"]);
            c.call(&["SADD", "w:set", &n.to_string()]);
            c.call(&["SPOP", "w:set"]);
            c.call(&["SET", "w:ttl", "v", "EX", "100"]);
        }
    })
}

#[test]
fn a_kvfleet_replica_follows_redis_and_kvfleet_masters_and_can_be_promoted() {
    for master_is_redis in [true, false] {
        let master = if master_is_redis {
            redis_server(&["--repl-diskless-sync-delay", "0"])
        } else {
            kvfleet_server(&[])
        };
        let mut m = master.client();
        populate(&mut m);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let w = writer(master.port, stop.clone());
        let target = format!("127.0.0.1 {}", master.port);
        let replica = kvfleet_server(&["--replicaof", &target]);
        let mut r = replica.client();
        std::thread::sleep(Duration::from_millis(500));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        w.join().unwrap();
        assert!(
            caught_up(&mut m, &mut r),
            "replica of {}",
            if master_is_redis { "redis" } else { "kvfleet" }
        );
        assert_eq!(keyspace(&mut r), keyspace(&mut m));
        assert_eq!(r.info_field("replication", "role"), "slave");
        assert!(
            matches!(r.call(&["SET", "x", "1"]), Frame::Error(e) if e.starts_with(b"READONLY"))
        );
        if !master_is_redis {
            m.call(&["SET", "waited", "1"]);
            assert_eq!(
                text(&m.call(&["WAIT", "1", "5000"])),
                "1",
                "our replica acks GETACK"
            );
        }
        assert!(
            matches!(r.call(&["WAIT", "1", "10"]), Frame::Error(_)),
            "WAIT on a replica"
        );

        // the link drops: back within the backlog, a partial resync
        let before = m.info_field("stats", "sync_partial_ok");
        assert_eq!(text(&m.call(&["CLIENT", "KILL", "TYPE", "replica"])), "1");
        m.call(&["SET", "while:away", "1"]);
        assert!(caught_up(&mut m, &mut r));
        assert_eq!(keyspace(&mut r), keyspace(&mut m));
        let after = m.info_field("stats", "sync_partial_ok");
        assert_eq!(
            after.parse::<u64>().unwrap(),
            before.parse::<u64>().unwrap() + 1,
            "partial resync"
        );

        // promotion keeps the data and takes writes
        assert_eq!(text(&r.call(&["REPLICAOF", "NO", "ONE"])), "OK");
        assert_eq!(r.info_field("replication", "role"), "master");
        assert_eq!(text(&r.call(&["SET", "x", "1"])), "OK");
        assert_eq!(text(&r.call(&["GET", "while:away"])), "1");
    }
}

/// Stops a server with `SHUTDOWN <how>` (it answers by closing) and waits for the exit.
/// Sends SIGSTOP/SIGCONT (`sig` without the prefix) to a server.
fn signal(p: &Proc, sig: &str) {
    let pid = p.child.id().to_string();
    let ok = std::process::Command::new("kill")
        .args([&format!("-{sig}"), &pid])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{sig} {pid}");
}

fn shutdown(p: &mut Proc, how: &str) {
    let mut c = p.client();
    c.send(&kvfleet_harness::encode_cmd(&[b"SHUTDOWN", how.as_bytes()]));
    assert!(
        eventually(Duration::from_secs(30), || !p.alive()),
        "{} did not exit on SHUTDOWN {how}",
        p.name
    );
}

fn stat(c: &mut RawClient, field: &str) -> u64 {
    c.info_field("stats", field).parse().expect("a number")
}

#[test]
fn a_restarted_replica_resyncs_partially_and_a_restarted_master_fully() {
    for master_is_redis in [false, true] {
        let mdir = TempDir::new("master");
        let mdir_s = mdir.path().display().to_string();
        let mut master = if master_is_redis {
            redis_server(&["--repl-diskless-sync-delay", "0"])
        } else {
            kvfleet_server(&["--dir", &mdir_s])
        };
        let mut m = master.client();
        populate(&mut m);
        let rdir = TempDir::new("replica");
        let target = format!("127.0.0.1 {}", master.port);
        let rdir_s = rdir.path().display().to_string();
        let flags = ["--dir", rdir_s.as_str(), "--replicaof", target.as_str()];
        let mut replica = kvfleet_server(&flags);
        let rport = replica.port;
        let mut r = replica.client();
        assert!(caught_up(&mut m, &mut r));

        // the replica stops cleanly (saving its position with its data) and comes back
        shutdown(&mut replica, "SAVE");
        m.call(&["SET", "while:down", "1"]);
        m.call(&["INCR", "counter"]);
        let (full, partial) = (stat(&mut m, "sync_full"), stat(&mut m, "sync_partial_ok"));
        let replica = kvfleet_server_on(rport, &flags);
        let mut r = replica.client();
        assert!(caught_up(&mut m, &mut r), "restarted replica catches up");
        assert_eq!(keyspace(&mut r), keyspace(&mut m));
        assert_eq!(
            stat(&mut m, "sync_full"),
            full,
            "no full sync after a replica restart"
        );
        assert_eq!(stat(&mut m, "sync_partial_ok"), partial + 1);
        if master_is_redis {
            continue;
        }

        // the master restarts: a new history, so the replica syncs in full
        shutdown(&mut master, "SAVE");
        let master = kvfleet_server_on(master.port, &["--dir", &mdir_s]);
        let mut m = master.client();
        m.call(&["SET", "after:restart", "1"]);
        assert!(
            caught_up(&mut m, &mut r),
            "replica follows the restarted master"
        );
        assert_eq!(stat(&mut m, "sync_full"), 1);
        assert_eq!(keyspace(&mut r), keyspace(&mut m));
        assert_eq!(
            r.info_field("replication", "master_replid"),
            m.info_field("replication", "master_replid")
        );
    }
}

#[test]
fn chained_replicas_share_the_masters_history_and_survive_a_promotion_without_full_syncs() {
    let master = kvfleet_server(&[]);
    let mut m = master.client();
    populate(&mut m);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let w = writer(master.port, stop.clone());
    let a = kvfleet_server(&["--replicaof", &format!("127.0.0.1 {}", master.port)]);
    let mut ra = a.client();
    assert!(ra.wait_info(
        "replication",
        "master_link_status",
        "up",
        Duration::from_secs(30)
    ));
    // a Redis replica and a kvfleet replica of the replica, attached under writes
    let b = redis_server(&["--replicaof", "127.0.0.1", &a.port.to_string()]);
    let c = kvfleet_server(&["--replicaof", &format!("127.0.0.1 {}", a.port)]);
    let (mut rb, mut rc) = (b.client(), c.client());
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    w.join().unwrap();
    // one history: every server at the master's offset, under the master's id
    for r in [&mut ra, &mut rb, &mut rc] {
        assert!(caught_up(&mut m, r), "chained replica catches up");
        assert_eq!(keyspace(r), keyspace(&mut m));
        assert_eq!(
            r.info_field("replication", "master_replid"),
            m.info_field("replication", "master_replid")
        );
    }
    let old_id = m.info_field("replication", "master_replid");
    // PUBLISH travels down the chain to subscribers of every replica
    let mut subs: Vec<RawClient> = [&b, &c]
        .iter()
        .map(|p| {
            let mut s = p.client();
            s.call(&["SUBSCRIBE", "news"]);
            s
        })
        .collect();
    m.call(&["PUBLISH", "news", "hello"]);
    for s in &mut subs {
        assert_eq!(
            s.read_frame().expect("a message"),
            Frame::Array(vec![
                kvfleet_harness::bulk("message"),
                kvfleet_harness::bulk("news"),
                kvfleet_harness::bulk("hello")
            ])
        );
    }

    // the master dies; its replica is promoted; the chain continues from it
    // with partial resyncs, no snapshot
    drop(master);
    let (full, partial) = (stat(&mut ra, "sync_full"), stat(&mut ra, "sync_partial_ok"));
    assert_eq!(text(&ra.call(&["REPLICAOF", "NO", "ONE"])), "OK");
    assert_eq!(text(&ra.call(&["SET", "after:promotion", "1"])), "OK");
    for r in [&mut rb, &mut rc] {
        assert!(caught_up(&mut ra, r), "replica follows the promoted one");
        assert_eq!(text(&r.call(&["GET", "after:promotion"])), "1");
        assert_eq!(
            r.info_field("replication", "master_replid"),
            ra.info_field("replication", "master_replid")
        );
    }
    assert_eq!(ra.info_field("replication", "master_replid2"), old_id);
    assert_eq!(stat(&mut ra, "sync_full"), full, "no full sync");
    assert_eq!(stat(&mut ra, "sync_partial_ok"), partial + 2);
    assert_eq!(keyspace(&mut rb), keyspace(&mut ra));
    assert_eq!(keyspace(&mut rc), keyspace(&mut ra));
}

#[test]
fn failover_hands_over_to_a_caught_up_replica_without_losing_an_acknowledged_write() {
    // (master is Redis, target is Redis): every direction kvfleet takes part in
    for (master_is_redis, target_is_redis) in [(false, false), (false, true), (true, false)] {
        let what = format!("master redis={master_is_redis} target redis={target_is_redis}");
        let m = if master_is_redis {
            redis_server(&["--repl-diskless-sync-delay", "0"])
        } else {
            kvfleet_server(&[])
        };
        let mut mc = m.client();
        populate(&mut mc);
        let t = if target_is_redis {
            redis_server(&["--replicaof", "127.0.0.1", &m.port.to_string()])
        } else {
            kvfleet_server(&["--replicaof", &format!("127.0.0.1 {}", m.port)])
        };
        let mut tc = t.client();
        assert!(caught_up(&mut mc, &mut tc), "{what}");
        // Redis's master marks a replica online a cron tick after the transfer
        assert!(eventually(Duration::from_secs(10), || text(
            &mc.call(&["INFO", "replication"])
        )
        .contains("state=online")));

        // a client writes until the old master turns it away
        let port = m.port;
        let writer = std::thread::spawn(move || {
            let mut c = RawClient::connect(port);
            let mut acked = 0u64;
            loop {
                match c.call(&["INCR", "failover:counter"]) {
                    Frame::Integer(_) => acked += 1,
                    Frame::Error(e) => {
                        assert!(e.starts_with(b"READONLY"), "{e:?}");
                        return acked;
                    }
                    other => panic!("{other:?}"),
                }
            }
        });
        assert!(eventually(Duration::from_secs(10), || {
            matches!(mc.call(&["GET", "failover:counter"]), Frame::Bulk(n) if n.len() >= 3)
        }));
        let (full, partial) = (stat(&mut tc, "sync_full"), stat(&mut tc, "sync_partial_ok"));
        assert_eq!(
            text(&mc.call(&["FAILOVER", "TO", "127.0.0.1", &t.port.to_string()])),
            "OK",
            "{what}"
        );
        let acked = writer.join().unwrap();
        assert!(
            eventually(Duration::from_secs(10), || {
                mc.info_field("replication", "role") == "slave"
                    && tc.info_field("replication", "role") == "master"
                    && mc.info_field("replication", "master_link_status") == "up"
            }),
            "{what}: roles did not switch"
        );
        assert_eq!(
            mc.info_field("replication", "master_failover_state"),
            "no-failover"
        );
        assert!(caught_up(&mut tc, &mut mc), "{what}");
        assert_eq!(
            text(&tc.call(&["GET", "failover:counter"])),
            acked.to_string(),
            "{what}: every acknowledged INCR, nothing else"
        );
        assert_eq!(keyspace(&mut mc), keyspace(&mut tc), "{what}");
        // the old master continued the new one's history: no snapshot
        assert_eq!(stat(&mut tc, "sync_full"), full, "{what}: no full sync");
        assert_eq!(stat(&mut tc, "sync_partial_ok"), partial + 1, "{what}");
    }
}

#[test]
fn failover_and_replication_settings_refuse_bad_requests_as_redis_does() {
    let kv = kvfleet_server(&[]);
    let redis = redis_server(&[]);
    let cases: &[&[&str]] = &[
        &["FAILOVER"],
        &["FAILOVER", "ABORT"],
        &["FAILOVER", "TO", "127.0.0.1", "1", "FORCE"],
        &["FAILOVER", "TIMEOUT", "0"],
        &["FAILOVER", "TIMEOUT", "x"],
        &["FAILOVER", "BOGUS"],
        &["FAILOVER", "TO", "127.0.0.1"],
        &["FAILOVER", "TO", "127.0.0.1", "1"],
        &["FAILOVER", "FORCE"],
        &["FAILOVER", "TO", "127.0.0.1", "x"],
        &["FAILOVER", "TO", "127.0.0.1", "99999"],
        &["SHUTDOWN", "ABORT"],
        &["SHUTDOWN", "BOGUS"],
        &["SHUTDOWN", "SAVE", "NOSAVE"],
        &["CONFIG", "SET", "min-replicas-to-write", "-1"],
        &["CLIENT", "PAUSE", "-1"],
        &["CLIENT", "PAUSE", "x"],
        &["CLIENT", "PAUSE", "10", "SOME"],
        &["CLIENT", "KILL", "TYPE", "bogus"],
        &["CLIENT", "LIST", "TYPE", "bogus"],
        &["CONFIG", "SET", "repl-backlog-size", "x"],
        &["CONFIG", "SET", "min-replicas-to-write", "x"],
    ];
    let (mut k, mut r) = (kv.client(), redis.client());
    for c in cases {
        assert_eq!(k.call(c), r.call(c), "{c:?}");
    }
    // on a replica
    let rep = kvfleet_server(&["--replicaof", &format!("127.0.0.1 {}", kv.port)]);
    let rrep = redis_server(&["--replicaof", "127.0.0.1", &redis.port.to_string()]);
    assert_eq!(
        rep.client().call(&["FAILOVER"]),
        rrep.client().call(&["FAILOVER"])
    );
}

#[test]
fn min_replicas_backlog_size_pause_and_replication_clients_work_as_in_redis() {
    let m = kvfleet_server(&[]);
    let mut mc = m.client();
    // min-replicas-to-write: no write until a replica acknowledges recently
    assert_eq!(
        text(&mc.call(&["CONFIG", "SET", "min-replicas-to-write", "1"])),
        "OK"
    );
    mc.call(&["CONFIG", "SET", "min-replicas-max-lag", "2"]);
    assert_eq!(
        mc.call(&["SET", "k", "v"]),
        Frame::Error("NOREPLICAS Not enough good replicas to write.".into())
    );
    assert_eq!(text(&mc.call(&["GET", "k"])), "(nil)", "reads still work");
    let r = kvfleet_server(&["--replicaof", &format!("127.0.0.1 {}", m.port)]);
    let mut rc = r.client();
    assert!(eventually(Duration::from_secs(30), || text(
        &mc.call(&["SET", "k", "v"])
    ) == "OK"));
    assert_eq!(mc.info_field("replication", "min_slaves_good_slaves"), "1");
    // the links show as clients of their kind, and can be killed by kind
    let list = text(&mc.call(&["CLIENT", "LIST", "TYPE", "replica"]));
    assert_eq!(list.lines().count(), 1, "{list}");
    assert!(list.contains("flags=S"), "{list}");
    let list = text(&rc.call(&["CLIENT", "LIST", "TYPE", "master"]));
    assert!(list.contains("flags=M"), "{list}");
    drop(r);
    assert!(
        eventually(Duration::from_secs(10), || matches!(
            mc.call(&["SET", "k", "v2"]),
            Frame::Error(_)
        )),
        "writes refused once the replica is gone"
    );
    mc.call(&["CONFIG", "SET", "min-replicas-to-write", "0"]);

    // repl-backlog-size: a replica away for more than the backlog syncs in full
    assert_eq!(
        text(&mc.call(&["CONFIG", "SET", "repl-backlog-size", "16kb"])),
        "OK"
    );
    let r = kvfleet_server(&["--replicaof", &format!("127.0.0.1 {}", m.port)]);
    let mut rc = r.client();
    assert!(caught_up(&mut mc, &mut rc));
    assert_eq!(mc.info_field("replication", "repl_backlog_size"), "16384");
    let full = stat(&mut mc, "sync_full");
    assert_eq!(text(&rc.call(&["CLIENT", "KILL", "TYPE", "master"])), "1");
    let big = "x".repeat(1000);
    for i in 0..40 {
        mc.call(&["SET", &format!("big:{i}"), &big]);
    }
    assert!(caught_up(&mut mc, &mut rc));
    assert_eq!(stat(&mut mc, "sync_full"), full + 1, "backlog overrun");
    assert_eq!(keyspace(&mut rc), keyspace(&mut mc));

    // CLIENT PAUSE WRITE holds writes (not reads) until UNPAUSE
    assert_eq!(text(&mc.call(&["CLIENT", "PAUSE", "20000", "WRITE"])), "OK");
    let port = m.port;
    let held = std::thread::spawn(move || {
        let t = Instant::now();
        let r = RawClient::connect(port).call(&["SET", "paused", "1"]);
        (r, t.elapsed())
    });
    let mut other = m.client();
    assert_eq!(text(&other.call(&["GET", "big:0"])), big, "reads go on");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(text(&other.call(&["GET", "paused"])), "(nil)", "write held");
    assert_eq!(text(&other.call(&["CLIENT", "UNPAUSE"])), "OK");
    let (reply, waited) = held.join().unwrap();
    assert_eq!(text(&reply), "OK");
    assert!(waited >= Duration::from_millis(300));
    // CLIENT PAUSE ALL ends by itself at its timeout
    mc.call(&["CLIENT", "PAUSE", "300", "ALL"]);
    let t = Instant::now();
    assert_eq!(text(&other.call(&["PING"])), "PONG");
    assert!(
        t.elapsed() >= Duration::from_millis(250),
        "{:?}",
        t.elapsed()
    );
}

#[test]
fn a_failover_waiting_for_a_stalled_replica_can_be_aborted_and_writes_resume() {
    let m = kvfleet_server(&[]);
    let mut mc = m.client();
    let r = kvfleet_server(&["--replicaof", &format!("127.0.0.1 {}", m.port)]);
    let mut rc = r.client();
    assert!(caught_up(&mut mc, &mut rc));
    // the replica stops acknowledging (SIGSTOP): FAILOVER waits for it
    signal(&r, "STOP");
    mc.call(&["SET", "before", "1"]);
    let target = [
        "FAILOVER",
        "TO",
        "127.0.0.1",
        &r.port.to_string(),
        "TIMEOUT",
        "60000",
    ];
    assert_eq!(text(&mc.call(&target)), "OK");
    assert_eq!(
        mc.info_field("replication", "master_failover_state"),
        "waiting-for-sync"
    );
    // a write waits meanwhile; ABORT (not a write) answers at once and releases it
    let port = m.port;
    let held = std::thread::spawn(move || RawClient::connect(port).call(&["SET", "held", "1"]));
    let mut admin = m.client();
    assert_eq!(text(&admin.call(&["GET", "held"])), "(nil)");
    assert_eq!(text(&admin.call(&["FAILOVER", "ABORT"])), "OK");
    assert_eq!(text(&held.join().unwrap()), "OK");
    assert_eq!(mc.info_field("replication", "role"), "master");
    assert_eq!(
        mc.info_field("replication", "master_failover_state"),
        "no-failover"
    );
    signal(&r, "CONT");
    assert!(caught_up(&mut mc, &mut rc));
    assert_eq!(text(&rc.call(&["GET", "held"])), "1");
}

#[test]
fn bitmap_hyperloglog_geo_and_sort_writes_replicate_to_redis_and_kvfleet_replicas() {
    let m = kvfleet_server(&[]);
    let mut mc = m.client();
    let redis = redis_server(&["--replicaof", "127.0.0.1", &m.port.to_string()]);
    let kv = kvfleet_server(&["--replicaof", &format!("127.0.0.1 {}", m.port)]);
    let (mut rr, mut rk) = (redis.client(), kv.client());
    let writes: &[&[&str]] = &[
        &["SETBIT", "bits", "100", "1"],
        &[
            "BITFIELD", "bits", "SET", "u8", "#2", "200", "INCRBY", "i5", "40", "9",
        ],
        &["SET", "b1", "abc"],
        &["BITOP", "XOR", "bits2", "bits", "b1"],
        &["PFADD", "hll", "a", "b", "c", "d"],
        &["PFADD", "hll2", "x", "y"],
        &["PFCOUNT", "hll"],
        &["PFMERGE", "hll3", "hll", "hll2"],
        &[
            "GEOADD",
            "geo",
            "13.361389",
            "38.115556",
            "Palermo",
            "15.087269",
            "37.502669",
            "Catania",
        ],
        &[
            "GEOSEARCHSTORE",
            "geo2",
            "geo",
            "FROMLONLAT",
            "15",
            "37",
            "BYRADIUS",
            "200",
            "km",
            "STOREDIST",
        ],
        &["GEORADIUS", "geo", "15", "37", "200", "km", "STORE", "geo3"],
        &["RPUSH", "nums", "3", "1", "2"],
        &["SET", "w_1", "30"],
        &["SET", "w_2", "20"],
        &["SET", "w_3", "10"],
        &["SORT", "nums", "BY", "w_*", "STORE", "sorted"],
        &[
            "SORT", "nums", "DESC", "LIMIT", "0", "2", "STORE", "sorted2",
        ],
    ];
    for w in writes {
        assert!(!matches!(mc.call(w), Frame::Error(_)), "{w:?}");
    }
    for r in [&mut rr, &mut rk] {
        assert!(caught_up(&mut mc, r));
        assert_eq!(keyspace(r), keyspace(&mut mc));
    }
}

/// The value after `name` in a RESP2 reply of field/value pairs.
fn field<'a>(pairs: &'a [Frame], name: &str) -> &'a Frame {
    pairs
        .chunks(2)
        .find(|p| matches!(&p[0], Frame::Bulk(b) if b.as_ref() == name.as_bytes()))
        .map(|p| &p[1])
        .unwrap_or_else(|| panic!("no {name} in {pairs:?}"))
}

/// A stream's consumer groups as XINFO STREAM FULL shows them (PEL entries
/// with their delivery times and counts), minus the consumers' seen/active
/// times, which each server takes from its own clock.
fn groups_state(c: &mut RawClient, key: &str) -> Vec<String> {
    let f = c.call(&["XINFO", "STREAM", key, "FULL"]);
    let Frame::Array(top) = &f else {
        panic!("{f:?}")
    };
    let Frame::Array(groups) = field(top, "groups") else {
        panic!("{f:?}")
    };
    let mut out = Vec::new();
    for g in groups {
        let Frame::Array(g) = g else { panic!("{g:?}") };
        for k in [
            "name",
            "last-delivered-id",
            "entries-read",
            "lag",
            "pending",
        ] {
            out.push(format!("{k}={}", text(field(g, k))));
        }
        let Frame::Array(cs) = field(g, "consumers") else {
            panic!("{g:?}")
        };
        for c in cs {
            let Frame::Array(c) = c else { panic!("{c:?}") };
            out.push(format!(
                "consumer {} pending={}",
                text(field(c, "name")),
                text(field(c, "pending"))
            ));
        }
    }
    out
}

#[test]
fn consumer_group_changes_reach_replicas_with_the_masters_delivery_times_and_owners() {
    let m = kvfleet_server(&[]);
    let mut mc = m.client();
    let redis = redis_server(&["--replicaof", "127.0.0.1", &m.port.to_string()]);
    let kv = kvfleet_server(&["--replicaof", &format!("127.0.0.1 {}", m.port)]);
    let (mut rr, mut rk) = (redis.client(), kv.client());
    for i in 1..=8 {
        mc.call(&["XADD", "s", &format!("{i}-0"), "f", &i.to_string()]);
    }
    assert_eq!(text(&mc.call(&["XGROUP", "CREATE", "s", "g", "0"])), "OK");
    for r in [&mut rr, &mut rk] {
        assert!(caught_up(&mut mc, r));
    }
    // The replicas apply what follows late. Had they re-run the commands as
    // sent, they would stamp their own, later delivery times, and the
    // min-idle claim below would find nothing idle enough there.
    signal(&redis, "STOP");
    signal(&kv, "STOP");
    let reads: &[&[&str]] = &[
        &[
            "XREADGROUP",
            "GROUP",
            "g",
            "c1",
            "COUNT",
            "3",
            "STREAMS",
            "s",
            ">",
        ],
        &[
            "XREADGROUP",
            "GROUP",
            "g",
            "c2",
            "NOACK",
            "COUNT",
            "1",
            "STREAMS",
            "s",
            ">",
        ],
        // history: the consumer's pending entries delivered again (count 2)
        &["XREADGROUP", "GROUP", "g", "c1", "STREAMS", "s", "0"],
        // a consumer created by a read that finds nothing
        &["XREADGROUP", "GROUP", "g", "c5", "STREAMS", "s", "0"],
    ];
    for r in reads {
        assert!(!matches!(mc.call(r), Frame::Error(_)), "{r:?}");
    }
    // time passes on the master while the replicas are stopped
    std::thread::sleep(Duration::from_millis(300));
    signal(&redis, "CONT");
    signal(&kv, "CONT");
    assert_eq!(
        text(&mc.call(&["XCLAIM", "s", "g", "c3", "250", "1-0", "JUSTID"])),
        "1-0"
    );
    assert_eq!(text(&mc.call(&["XDEL", "s", "2-0"])), "1");
    // 1-0 claimed by c4, 2-0 dropped from the PEL (its entry is gone)
    assert_eq!(
        text(&mc.call(&[
            "XAUTOCLAIM",
            "s",
            "g",
            "c4",
            "0",
            "0-0",
            "COUNT",
            "2",
            "JUSTID"
        ])),
        "3-0,1-0,2-0"
    );
    // LASTID alone moves the group: XGROUP SETID on the replicas
    assert_eq!(
        text(&mc.call(&["XCLAIM", "s", "g", "c3", "0", "7-0", "LASTID", "6-0"])),
        ""
    );
    let want = groups_state(&mut mc, "s");
    assert!(
        want.iter().any(|l| l == "last-delivered-id=6-0"),
        "{want:?}"
    );
    for r in [&mut rr, &mut rk] {
        assert!(caught_up(&mut mc, r));
        assert_eq!(groups_state(r, "s"), want);
        assert_eq!(keyspace(r), keyspace(&mut mc));
    }
}
