//! Worker runtimes (decision 0013): where connections are placed, moving
//! them between workers without losing a request or a client's state, and
//! the governor retiring an idle worker.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

use kvfleet_harness::{CpuGroup, RawClient, bulk, eventually, kvfleet_server};
use kvfleet_resp::Frame;

/// Client threads that load a server until stopped.
struct Loaders<T> {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<T>>,
}

/// `n` threads, each running `body(i, its client, stop flag)`, which loops
/// until the flag is set and returns what the test checks.
fn loaders<T: Send + 'static>(
    port: u16,
    n: usize,
    body: impl Fn(usize, RawClient, &AtomicBool) -> T + Clone + Send + 'static,
) -> Loaders<T> {
    let stop = Arc::new(AtomicBool::new(false));
    let threads = (0..n)
        .map(|i| {
            let (stop, body) = (stop.clone(), body.clone());
            std::thread::spawn(move || body(i, RawClient::connect(port), &stop))
        })
        .collect();
    Loaders { stop, threads }
}

impl<T> Loaders<T> {
    /// Stops the threads; their results, in order.
    fn stop(self) -> Vec<T> {
        self.stop.store(true, Relaxed);
        self.threads
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect()
    }
}

fn id(c: &mut RawClient) -> i64 {
    match c.call(&["CLIENT", "ID"]) {
        Frame::Integer(n) => n,
        other => panic!("CLIENT ID -> {other:?}"),
    }
}

/// The worker serving client `id`, from CLIENT LIST's `io-thread` field.
fn worker_of(c: &mut RawClient, id: i64) -> usize {
    let Frame::Bulk(list) = c.call(&["CLIENT", "LIST"]) else {
        panic!("CLIENT LIST not bulk")
    };
    let list = String::from_utf8_lossy(&list).into_owned();
    let line = list
        .lines()
        .find(|l| l.starts_with(&format!("id={id} ")))
        .unwrap_or_else(|| panic!("client {id} not in CLIENT LIST:\n{list}"));
    line.split(' ')
        .find_map(|f| f.strip_prefix("io-thread="))
        .expect("io-thread field")
        .parse()
        .unwrap()
}

/// Connections per worker, from INFO's `kvfleet_thread<i>:connections=...`.
fn connections(c: &mut RawClient, threads: usize) -> Vec<usize> {
    (0..threads)
        .map(|i| {
            let f = c.info_field("server", &format!("kvfleet_thread{i}"));
            f.split(',')
                .find_map(|kv| kv.strip_prefix("connections="))
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect()
}

#[test]
fn pipelined_clients_lose_nothing_while_moved_back_and_forth() {
    let srv = kvfleet_server(&["--threads", "2"]);
    let mut c = srv.client();
    assert_eq!(c.info_field("server", "kvfleet_threads_adaptive"), "yes");
    // light load: everything on the first worker
    assert_eq!(c.info_field("server", "kvfleet_threads_active"), "1");
    let (rounds, depth) = (1000, 40);
    let loaders: Vec<_> = (0..4)
        .map(|w| {
            let mut cl = srv.client();
            std::thread::spawn(move || {
                let key = format!("w{w}");
                let incr: Vec<Vec<Vec<u8>>> = (0..depth)
                    .map(|_| vec![b"INCR".to_vec(), key.clone().into_bytes()])
                    .collect();
                for r in 0..rounds {
                    for (i, reply) in cl.pipeline(&incr).into_iter().enumerate() {
                        let want = format!(":{}\r\n", r * depth + i + 1);
                        assert_eq!(reply, want.as_bytes(), "{key} round {r}");
                    }
                }
            })
        })
        .collect();
    let mut toggles = 0;
    while !loaders.iter().all(|l| l.is_finished()) && toggles < 200 {
        let n = if toggles % 2 == 0 { "2" } else { "1" };
        assert_eq!(c.call(&["DEBUG", "WORKERS", n]), Frame::Simple("OK".into()));
        toggles += 1;
        std::thread::sleep(Duration::from_millis(15));
    }
    for l in loaders {
        l.join().expect("a loader saw a wrong or missing reply");
    }
    for w in 0..4 {
        assert_eq!(
            c.call(&["GET", &format!("w{w}")]),
            bulk(&(rounds * depth).to_string())
        );
    }
    let moved: u64 = c
        .info_field("server", "kvfleet_connections_moved")
        .parse()
        .unwrap();
    assert!(
        moved >= 4,
        "{toggles} toggles moved only {moved} connections"
    );
    // the loaders are gone: only this client is counted
    assert!(
        eventually(Duration::from_secs(5), || connections(&mut c, 2)
            .iter()
            .sum::<usize>()
            == 1),
        "connection counts leaked: {:?}",
        connections(&mut c, 2)
    );
}

#[test]
fn a_moved_client_keeps_its_transaction_subscription_name_and_block() {
    let srv = kvfleet_server(&["--threads", "2", "--adaptive-threads", "no"]);
    let mut c = srv.client();
    assert_eq!(c.info_field("server", "kvfleet_threads_active"), "2");
    // placement by connection count spreads clients evenly; take four
    // that landed on worker 1
    let pool: Vec<(i64, RawClient)> = (0..12)
        .map(|_| {
            let mut x = srv.client();
            (id(&mut x), x)
        })
        .collect();
    let on: Vec<usize> = pool.iter().map(|(i, _)| worker_of(&mut c, *i)).collect();
    let ones = on.iter().filter(|&&w| w == 1).count();
    assert!((5..=7).contains(&ones), "12 clients spread as {on:?}");
    let (ones, zeros): (Vec<_>, Vec<_>) = pool.into_iter().zip(on).partition(|(_, w)| *w == 1);
    let mut ones = ones.into_iter().map(|(x, _)| x);
    let mut next = || ones.next().unwrap();
    let ((mi, mut m), (si, mut s), (bi, mut b), (pi, mut p)) = (next(), next(), next(), next());
    assert_eq!(m.call(&["MULTI"]), Frame::Simple("OK".into()));
    assert_eq!(m.call(&["SET", "k", "v"]), Frame::Simple("QUEUED".into()));
    assert_eq!(
        s.call(&["SUBSCRIBE", "ch"]),
        Frame::Array(vec![bulk("subscribe"), bulk("ch"), Frame::Integer(1)])
    );
    assert_eq!(
        p.call(&["CLIENT", "SETNAME", "pp"]),
        Frame::Simple("OK".into())
    );
    b.send(&kvfleet_harness::encode_cmd(&[b"BLPOP", b"q", b"0"]));
    assert!(c.wait_info("clients", "blocked_clients", "1", Duration::from_secs(5)));

    // retire worker 1: everyone but the blocked client moves at once
    assert_eq!(
        c.call(&["DEBUG", "WORKERS", "1"]),
        Frame::Simple("OK".into())
    );
    assert!(
        eventually(Duration::from_secs(5), || [mi, si, pi]
            .iter()
            .all(|&i| worker_of(&mut c, i) == 0)),
        "idle clients did not move"
    );
    assert_eq!(worker_of(&mut c, bi), 1, "a blocked client waits in place");
    assert_eq!(c.info_field("server", "kvfleet_threads_active"), "1");

    assert_eq!(
        m.call(&["EXEC"]),
        Frame::Array(vec![Frame::Simple("OK".into())])
    );
    assert_eq!(c.call(&["GET", "k"]), bulk("v"));
    assert_eq!(c.call(&["PUBLISH", "ch", "hello"]), Frame::Integer(1));
    assert_eq!(
        s.read_frame().expect("subscriber closed"),
        Frame::Array(vec![bulk("message"), bulk("ch"), bulk("hello")])
    );
    assert_eq!(p.call(&["CLIENT", "GETNAME"]), bulk("pp"));
    assert_eq!(c.call(&["LPUSH", "q", "x"]), Frame::Integer(1));
    let popped = b.read_reply().expect("blocked client closed");
    assert_eq!(popped, b"*2\r\n$1\r\nq\r\n$1\r\nx\r\n");
    assert!(
        eventually(Duration::from_secs(5), || worker_of(&mut c, bi) == 0),
        "the unblocked client did not follow"
    );
    // new clients go to the active worker only
    let mut n = srv.client();
    let ni = id(&mut n);
    assert_eq!(worker_of(&mut c, ni), 0);

    // spread again and kill a client on worker 1
    assert_eq!(
        c.call(&["DEBUG", "WORKERS", "2"]),
        Frame::Simple("OK".into())
    );
    assert_eq!(
        c.call(&["DEBUG", "WORKERS", "3"]),
        Frame::Error("ERR workers must be between 1 and 2".into())
    );
    // any client of ours the spread put on worker 1
    let mut all: Vec<(i64, RawClient)> = zeros.into_iter().map(|(x, _)| x).collect();
    all.extend(ones);
    all.extend([(mi, m), (si, s), (bi, b), (pi, p), (ni, n)]);
    let mut victim = None;
    assert!(eventually(Duration::from_secs(5), || {
        victim = all.iter().position(|(i, _)| worker_of(&mut c, *i) == 1);
        victim.is_some()
    }));
    let (vid, victim_conn) = &mut all[victim.unwrap()];
    assert_eq!(
        c.call(&["CLIENT", "KILL", "ID", &vid.to_string()]),
        Frame::Integer(1)
    );
    assert!(victim_conn.closed(), "killed client {vid} still open");
}

#[test]
fn the_governor_retires_an_idle_worker() {
    let srv = kvfleet_server(&["--threads", "2"]);
    let mut c = srv.client();
    let _other = srv.client();
    assert_eq!(
        c.call(&["DEBUG", "WORKERS", "2"]),
        Frame::Simple("OK".into())
    );
    assert_eq!(c.info_field("server", "kvfleet_threads_active"), "2");
    // idle for the governor's 1 s: back to one worker, every client with it
    assert!(
        c.wait_info(
            "server",
            "kvfleet_threads_active",
            "1",
            Duration::from_secs(10)
        ),
        "an idle second worker was kept"
    );
    assert!(eventually(Duration::from_secs(5), || connections(
        &mut c, 2
    ) == vec![2, 0]));
}

#[test]
fn a_worker_left_without_clients_retires_at_once() {
    let srv = kvfleet_server(&["--threads", "2"]);
    let mut all: Vec<(i64, RawClient)> = (0..4)
        .map(|_| {
            let mut o = srv.client();
            (id(&mut o), o)
        })
        .collect();
    let t0 = std::time::Instant::now();
    assert_eq!(
        all[0].1.call(&["DEBUG", "WORKERS", "2"]),
        Frame::Simple("OK".into())
    );
    let c = &mut all[0].1;
    assert!(eventually(Duration::from_secs(5), || connections(c, 2) == vec![2, 2]));
    // every client on the second worker goes
    let ids: Vec<i64> = all.iter().map(|(i, _)| *i).collect();
    let on: Vec<usize> = ids.iter().map(|i| worker_of(&mut all[0].1, *i)).collect();
    let (mut stay, go): (Vec<_>, Vec<_>) = all.into_iter().zip(on).partition(|(_, w)| *w == 0);
    assert_eq!((stay.len(), go.len()), (2, 2));
    drop(go);
    let c = &mut stay[0].0.1;
    assert!(
        c.wait_info(
            "server",
            "kvfleet_threads_active",
            "1",
            Duration::from_secs(5)
        ),
        "an empty worker stayed active"
    );
    // sooner than the governor's gather (1 s of low load after the spread)
    assert!(
        t0.elapsed() < Duration::from_millis(900),
        "retired only after {:?}",
        t0.elapsed()
    );
    assert_eq!(connections(c, 2), vec![2, 0]);
}

#[test]
fn busy_polling_is_reported_and_can_be_turned_off() {
    let srv = kvfleet_server(&["--threads", "2"]);
    let mut c = srv.client();
    assert_eq!(c.info_field("server", "kvfleet_busy_poll_us"), "20");
    assert_eq!(c.info_field("server", "kvfleet_spreads_undone"), "0");
    let t0 = c.info_field("server", "kvfleet_thread0");
    assert!(t0.contains(",polling=0,poll_hits="), "{t0}");
    let off = kvfleet_server(&["--threads", "2", "--busy-poll-us", "0"]);
    let mut c = off.client();
    assert_eq!(c.info_field("server", "kvfleet_busy_poll_us"), "0");
}

/// Replies the first worker held for a burst (decision 0015).
fn bursts(c: &mut RawClient) -> u64 {
    let t0 = c.info_field("server", "kvfleet_thread0");
    let b = t0
        .split(',')
        .find_map(|f| f.strip_prefix("bursts="))
        .unwrap();
    b.parse().unwrap()
}

#[test]
fn under_a_cpu_quota_no_polling_no_second_worker_and_replies_in_bursts() {
    let srv = kvfleet_server(&["--threads", "2"]);
    let mut c = srv.client();
    assert_eq!(c.info_field("server", "kvfleet_cpu_quota"), "0.00");
    let group = CpuGroup::new("quota", 0.5);
    group.add(srv.child.id());
    // the governor reads the quota within a second
    assert!(c.wait_info(
        "server",
        "kvfleet_cpu_quota",
        "0.50",
        Duration::from_secs(5)
    ));
    assert_eq!(c.info_field("server", "kvfleet_cpu_quota_bound"), "0");
    // a request-per-round-trip load that polls without a quota: not under
    // one; it wants more than half a core, so the quota binds: replies go
    // out in bursts, and no second worker is woken to share the half core
    let load = loaders(srv.port, 8, |_, mut l, stop| {
        while !stop.load(Relaxed) {
            l.cmd(&[b"SET", b"k", b"v"]);
        }
    });
    assert!(c.wait_info(
        "server",
        "kvfleet_cpu_quota_bound",
        "1",
        Duration::from_secs(5)
    ));
    for _ in 0..30 {
        std::thread::sleep(Duration::from_millis(100));
        let t0 = c.info_field("server", "kvfleet_thread0");
        assert!(t0.contains(",polling=0,"), "polling under a quota: {t0}");
        assert_eq!(c.info_field("server", "kvfleet_threads_active"), "1");
    }
    assert!(
        bursts(&mut c) > 0,
        "no reply held for a burst while quota-bound"
    );
    load.stop();
    // out of the group: the quota is gone
    drop(group);
    assert!(c.wait_info(
        "server",
        "kvfleet_cpu_quota",
        "0.00",
        Duration::from_secs(5)
    ));
}

#[test]
fn a_worker_writing_its_replies_in_bursts_loses_none() {
    // bursts from any busy share: whether this machine's worker reaches the
    // default 97% depends on what else runs here, and the threshold itself
    // is a unit test (`workers::tests`)
    let srv = kvfleet_server(&["--threads", "1", "--reply-burst-busy", "0"]);
    let mut c = srv.client();
    // 8 clients pipeline 32 INCRs of their own counter per round trip and
    // check every reply, in order, while the worker holds replies for a
    // burst (decision 0015)
    let load = loaders(srv.port, 8, |i, mut l, stop| {
        let key = format!("burst:{i}");
        let batch: Vec<Vec<Vec<u8>>> = (0..32)
            .map(|_| vec![b"INCR".to_vec(), key.clone().into_bytes()])
            .collect();
        let mut n = 0u64;
        while !stop.load(Relaxed) {
            for r in l.pipeline(&batch) {
                n += 1;
                assert_eq!(r, format!(":{n}\r\n").into_bytes(), "client {i}");
            }
        }
        (key, n)
    });
    let held = eventually(Duration::from_secs(15), || bursts(&mut c) >= 2000);
    for (key, n) in load.stop() {
        assert!(n > 0);
        assert_eq!(c.call(&["GET", &key]), bulk(&n.to_string()), "{key}");
    }
    assert!(held, "replies were not held for bursts: {}", bursts(&mut c));
    // above 1: never
    let off = kvfleet_server(&["--threads", "1", "--reply-burst-busy", "1.5"]);
    let mut c = off.client();
    for _ in 0..100 {
        assert_eq!(c.call(&["PING"]), Frame::Simple("PONG".into()));
    }
    assert_eq!(bursts(&mut c), 0);
}
