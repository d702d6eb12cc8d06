//! Lua scripting beyond single replies (those are in `cases/scripting.txt`
//! and `cases/functions.txt`): atomicity under concurrent clients, with
//! declared and undeclared keys; BUSY and SCRIPT/FUNCTION KILL past
//! `busy-reply-threshold`, next to redis-server doing the same; script
//! effects and libraries reaching a redis-server replica; libraries
//! surviving a restart and moving between kvfleet and redis-server with
//! FUNCTION DUMP/RESTORE.

use std::time::Duration;

use kvfleet_harness::{
    Proc, RawClient, TempDir, caught_up, eventually, kvfleet_server, redis_server,
};
use kvfleet_resp::Frame;

use crate::persist::{keyspace, text};

const INCR_BY_READ: &str = "local v = tonumber(redis.call('get', KEYS[1]) or '0') redis.call('set', KEYS[1], v + 1) return v + 1";
const INCR_UNDECLARED: &str = "local v = tonumber(redis.call('get', ARGV[1]) or '0') redis.call('set', ARGV[1], v + 1) return v + 1";

fn err_text(f: &Frame) -> String {
    match f {
        Frame::Error(e) => String::from_utf8_lossy(e).into_owned(),
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn scripts_are_atomic_with_declared_and_undeclared_keys() {
    // clients on both workers at once
    let kv = kvfleet_server(&["--threads", "2", "--adaptive-threads", "no"]);
    let port = kv.port;
    let threads: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || {
                let mut c = RawClient::connect(port);
                for _ in 0..300 {
                    // read-modify-write: lost updates if two ever interleave
                    let r = c.call(&["EVAL", INCR_BY_READ, "1", "counter"]);
                    assert!(matches!(r, Frame::Integer(_)), "{r:?}");
                    let r = c.call(&["EVAL", INCR_UNDECLARED, "0", "undeclared"]);
                    assert!(matches!(r, Frame::Integer(_)), "{r:?}");
                    // a plain command racing the scripts on the same key
                    if t == 0 {
                        c.call(&["INCR", "plain"]);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let mut c = kv.client();
    assert_eq!(text(&c.call(&["GET", "counter"])), "1200");
    assert_eq!(text(&c.call(&["GET", "undeclared"])), "1200");
    assert_eq!(text(&c.call(&["GET", "plain"])), "300");
}

/// Starts a script that loops forever (writing first if `write`), and
/// waits until another client is refused with BUSY.
fn start_busy(server: &Proc, body: &str) -> (RawClient, RawClient) {
    let mut other = server.client();
    other.call(&["CONFIG", "SET", "busy-reply-threshold", "100"]);
    let mut runner = server.client();
    runner.send(&kvfleet_harness::encode_cmd(&[
        b"EVAL",
        body.as_bytes(),
        b"0",
    ]));
    assert!(
        eventually(Duration::from_secs(10), || matches!(
            other.call(&["PING"]),
            Frame::Error(ref e) if e.starts_with(b"BUSY")
        )),
        "no BUSY while the script runs"
    );
    (runner, other)
}

#[test]
fn a_busy_script_answers_busy_and_dies_by_script_kill_as_in_redis() {
    let kv = kvfleet_server(&[]);
    // one worker thread: the script's thread must hand its other clients on
    let kv1 = kvfleet_server(&["--threads", "1"]);
    let redis = redis_server(&[]);
    for server in [&redis, &kv, &kv1] {
        let (mut runner, mut other) = start_busy(server, "local i = 0 while true do i = i + 1 end");
        let e = err_text(&other.call(&["GET", "k"]));
        assert_eq!(
            e,
            "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE."
        );
        // FUNCTION KILL does not stop an EVAL
        assert!(err_text(&other.call(&["FUNCTION", "KILL"])).starts_with("BUSY"));
        assert_eq!(other.call(&["SCRIPT", "KILL"]), Frame::Simple("OK".into()));
        let r = runner.read_reply().expect("the script's reply");
        let r = String::from_utf8_lossy(&r).into_owned();
        // Redis's text, with where the script was stopped
        assert!(
            r.starts_with("-ERR Script killed by user with SCRIPT KILL... script: ")
                && r.ends_with(", on @user_script:1.\r\n"),
            "{r}"
        );
        assert_eq!(other.call(&["PING"]), Frame::Simple("PONG".into()));
        assert!(err_text(&other.call(&["SCRIPT", "KILL"])).starts_with("NOTBUSY"));
    }
}

#[test]
fn a_script_that_wrote_is_unkillable_and_shutdown_nosave_ends_it() {
    let kv = kvfleet_server(&["--threads", "1"]);
    let (mut runner, mut other) = start_busy(
        &kv,
        "redis.call('set', 'k', 'v') local i = 0 while true do i = i + 1 end",
    );
    assert!(err_text(&other.call(&["SCRIPT", "KILL"])).starts_with("UNKILLABLE"));
    other.send(&kvfleet_harness::encode_cmd(&[b"SHUTDOWN", b"NOSAVE"]));
    assert!(
        eventually(Duration::from_secs(10), || runner.closed()),
        "the server did not stop"
    );
}

#[test]
fn a_function_is_killed_by_function_kill() {
    let kv = kvfleet_server(&[]);
    let mut c = kv.client();
    c.call(&["CONFIG", "SET", "busy-reply-threshold", "100"]);
    let lib = "#!lua name=spin\nredis.register_function('spin', function() local i = 0 while true do i = i + 1 end end)";
    assert_eq!(text(&c.call(&["FUNCTION", "LOAD", lib])), "spin");
    let mut runner = kv.client();
    runner.send(&kvfleet_harness::encode_cmd(&[b"FCALL", b"spin", b"0"]));
    assert!(eventually(Duration::from_secs(10), || matches!(
        c.call(&["PING"]),
        Frame::Error(ref e) if e.starts_with(b"BUSY Redis is busy running a script. You can only call FUNCTION KILL")
    )));
    // FUNCTION STATS names the running function while it runs
    let stats = format!("{:?}", c.call(&["FUNCTION", "STATS"]));
    assert!(stats.contains("spin"), "{stats}");
    assert!(err_text(&c.call(&["SCRIPT", "KILL"])).starts_with("BUSY"));
    assert_eq!(c.call(&["FUNCTION", "KILL"]), Frame::Simple("OK".into()));
    let r = String::from_utf8_lossy(&runner.read_reply().unwrap()).into_owned();
    assert!(r.starts_with("-ERR Script killed by user"), "{r}");
}

#[test]
fn script_effects_and_libraries_reach_a_redis_replica() {
    let kv = kvfleet_server(&[]);
    let mut m = kv.client();
    let lib = "#!lua name=lib\nredis.register_function('bump', function(keys, args) return redis.call('incrby', keys[1], args[1]) end)\nredis.register_function{function_name='peek', callback=function(keys) return redis.call('get', keys[1]) end, flags={'no-writes'}}";
    m.call(&["FUNCTION", "LOAD", lib]);
    let port = kv.port.to_string();
    let replica = redis_server(&["--replicaof", "127.0.0.1", &port]);
    let mut r = replica.client();
    assert!(r.wait_info(
        "replication",
        "master_link_status",
        "up",
        Duration::from_secs(20)
    ));
    // effects, not scripts: a random value and a time-dependent write land equal
    m.call(&[
        "EVAL",
        "redis.call('set', KEYS[1], tostring(math.random())) redis.call('rpush', KEYS[2], 'a', 'b') redis.call('hset', KEYS[3], 'f', redis.call('time')[1]) return 1",
        "3",
        "{s}r",
        "{s}l",
        "{s}h",
    ]);
    m.call(&["FCALL", "bump", "1", "counter", "5"]);
    m.call(&["FCALL", "bump", "1", "counter", "7"]);
    m.call(&["EVAL", "redis.call('set', 'undeclared', 'x') return 1", "0"]);
    assert!(caught_up(&mut m, &mut r));
    assert_eq!(keyspace(&mut r), keyspace(&mut m));
    assert_eq!(text(&r.call(&["GET", "counter"])), "12");
    // the library arrived with the snapshot: a read-only function runs on the replica
    assert_eq!(text(&r.call(&["FCALL_RO", "peek", "1", "counter"])), "12");
}

#[test]
fn libraries_survive_a_restart_and_move_between_kvfleet_and_redis() {
    let dir = TempDir::new("functions");
    let d = dir.path().to_str().unwrap().to_string();
    let lib = "#!lua name=persisted\nredis.register_function('hello', function(keys, args) return 'hello ' .. args[1] end)";
    {
        let kv = kvfleet_server(&["--dir", &d]);
        let mut c = kv.client();
        c.call(&["FUNCTION", "LOAD", lib]);
        assert_eq!(c.call(&["SAVE"]), Frame::Simple("OK".into()));
    }
    let kv = kvfleet_server(&["--dir", &d]);
    let mut c = kv.client();
    assert_eq!(
        text(&c.call(&["FCALL", "hello", "0", "again"])),
        "hello again"
    );

    // kvfleet's DUMP restores into redis-server, and back
    let payload = match c.call(&["FUNCTION", "DUMP"]) {
        Frame::Bulk(b) => b,
        other => panic!("{other:?}"),
    };
    let redis = redis_server(&[]);
    let mut r = redis.client();
    let restored = r.cmd(&[b"FUNCTION", b"RESTORE", &payload]);
    assert_eq!(restored, b"+OK\r\n");
    assert_eq!(
        text(&r.call(&["FCALL", "hello", "0", "redis"])),
        "hello redis"
    );
    r.call(&[
        "FUNCTION",
        "LOAD",
        "#!lua name=fromredis\nredis.register_function('twice', function(keys, args) return args[1] * 2 end)",
    ]);
    let payload = match r.call(&["FUNCTION", "DUMP"]) {
        Frame::Bulk(b) => b,
        other => panic!("{other:?}"),
    };
    // APPEND refuses the library we already have; REPLACE takes both
    let e = c.cmd(&[b"FUNCTION", b"RESTORE", &payload]);
    assert!(
        e.starts_with(b"-ERR Library"),
        "{}",
        String::from_utf8_lossy(&e)
    );
    assert_eq!(
        c.cmd(&[b"FUNCTION", b"RESTORE", &payload, b"REPLACE"]),
        b"+OK\r\n"
    );
    assert_eq!(text(&c.call(&["FCALL", "twice", "0", "21"])), "42");
    assert_eq!(
        c.cmd(&[b"FUNCTION", b"RESTORE", &payload, b"FLUSH"]),
        b"+OK\r\n"
    );
    assert_eq!(
        c.cmd(&[b"FUNCTION", b"RESTORE", b"garbage"]),
        b"-ERR DUMP payload version or checksum are wrong\r\n"
    );
}

#[test]
fn info_memory_counts_scripts_and_libraries_as_redis_does() {
    let kv = kvfleet_server(&[]);
    let redis = redis_server(&[]);
    let lib = "#!lua name=counts\nredis.register_function('a', function() return 1 end)\nredis.register_function('b', function() return 2 end)";
    let fields = [
        "number_of_cached_scripts",
        "number_of_functions",
        "number_of_libraries",
    ];
    let mut seen = Vec::new();
    for server in [&redis, &kv] {
        let mut c = server.client();
        c.call(&["SCRIPT", "LOAD", "return 1"]);
        c.call(&["EVAL", "return 2", "0"]);
        assert_eq!(text(&c.call(&["FUNCTION", "LOAD", lib])), "counts");
        let counts: Vec<String> = fields.iter().map(|f| c.info_field("memory", f)).collect();
        let lua: u64 = c.info_field("memory", "used_memory_lua").parse().unwrap();
        assert!(lua > 0, "used_memory_lua is {lua}");
        c.call(&["SCRIPT", "FLUSH"]);
        c.call(&["FUNCTION", "FLUSH"]);
        let flushed: Vec<String> = fields.iter().map(|f| c.info_field("memory", f)).collect();
        seen.push((counts, flushed));
    }
    assert_eq!(seen[0], seen[1]);
    assert_eq!(seen[1].0, ["2", "2", "1"]);
    assert_eq!(seen[1].1, ["0", "0", "0"]);
}
