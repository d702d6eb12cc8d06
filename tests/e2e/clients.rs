//! Real clients against kvfleet-server: the `redis` crate (RESP2 and RESP3,
//! many concurrent tasks on one multiplexed connection), `redis-cli` and
//! `redis-benchmark` from Debian's redis-tools.

use std::process::Command;

use kvfleet_harness::kvfleet_server;
use redis::AsyncCommands;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn redis_crate_round_trips_every_family() {
    let srv = kvfleet_server(&[]);
    rt().block_on(async {
        let client = redis::Client::open(srv.redis_url()).unwrap();
        let mut c = client.get_multiplexed_async_connection().await.unwrap();
        let _: () = c.set("s", "v").await.unwrap();
        let v: String = c.get("s").await.unwrap();
        assert_eq!(v, "v");
        let n: i64 = c.incr("n", 5).await.unwrap();
        assert_eq!(n, 5);
        let _: () = c
            .hset_multiple("h", &[("a", "1"), ("b", "2")])
            .await
            .unwrap();
        let h: std::collections::HashMap<String, String> = c.hgetall("h").await.unwrap();
        assert_eq!(h.len(), 2);
        let _: () = c.rpush("l", &["x", "y", "z"]).await.unwrap();
        let l: Vec<String> = c.lrange("l", 0, -1).await.unwrap();
        assert_eq!(l, ["x", "y", "z"]);
        let _: () = c.sadd("st", &["1", "2"]).await.unwrap();
        let card: i64 = c.scard("st").await.unwrap();
        assert_eq!(card, 2);
        let _: () = c.zadd("z", "m", 1.5).await.unwrap();
        let sc: f64 = c.zscore("z", "m").await.unwrap();
        assert_eq!(sc, 1.5);
        let (a, b): (i64, i64) = redis::pipe()
            .atomic()
            .incr("p", 1)
            .incr("p", 1)
            .query_async(&mut c)
            .await
            .unwrap();
        assert_eq!((a, b), (1, 2));
        let e: redis::RedisResult<i64> = c.incr("s", 1).await;
        assert!(e.unwrap_err().to_string().contains("not an integer"));
    });
}

#[test]
fn many_tasks_on_one_multiplexed_connection_get_their_own_replies() {
    let srv = kvfleet_server(&[]);
    rt().block_on(async {
        let client = redis::Client::open(srv.redis_url()).unwrap();
        let c = client.get_multiplexed_async_connection().await.unwrap();
        let mut tasks = Vec::new();
        for t in 0..32 {
            let mut c = c.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..200 {
                    let k = format!("k:{t}:{i}");
                    let _: () = c.set(&k, i).await.unwrap();
                    let v: i64 = c.get(&k).await.unwrap();
                    assert_eq!(v, i, "reply crossed to the wrong task");
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let mut c = c.clone();
        let n: i64 = redis::cmd("DBSIZE").query_async(&mut c).await.unwrap();
        assert_eq!(n, 32 * 200);
    });
}

#[test]
fn resp3_clients_work_end_to_end() {
    let srv = kvfleet_server(&[]);
    rt().block_on(async {
        let client = redis::Client::open(format!("{}?protocol=resp3", srv.redis_url())).unwrap();
        let mut c = client.get_multiplexed_async_connection().await.unwrap();
        let _: () = c.hset("h", "f", "v").await.unwrap();
        let h: std::collections::HashMap<String, String> = c.hgetall("h").await.unwrap();
        assert_eq!(h.get("f").map(String::as_str), Some("v"));
        let _: () = c.zadd("z", "m", 2.5).await.unwrap();
        let s: f64 = c.zscore("z", "m").await.unwrap();
        assert_eq!(s, 2.5);
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query_async(&mut c)
            .await
            .unwrap();
        assert!(info.contains("redis_version:7.0.15"), "{info}");
    });
}

fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .arg("-p")
        .arg(port.to_string())
        .args(args)
        .output()
        .expect("redis-cli");
    assert!(out.status.success(), "redis-cli {args:?} failed");
    String::from_utf8_lossy(&out.stdout).trim_end().to_string()
}

#[test]
fn redis_cli_talks_to_kvfleet() {
    let srv = kvfleet_server(&[]);
    assert_eq!(cli(srv.port, &["PING"]), "PONG");
    assert_eq!(cli(srv.port, &["SET", "a", "hello world"]), "OK");
    assert_eq!(cli(srv.port, &["GET", "a"]), "hello world");
    assert_eq!(cli(srv.port, &["-3", "HSET", "h", "f", "v"]), "1");
    assert_eq!(cli(srv.port, &["HGETALL", "h"]), "f\nv");
    assert!(cli(srv.port, &["INFO", "keyspace"]).contains("db0:keys=2"));
    // redis-cli --pipe speaks raw RESP and checks every reply
    let mut child = Command::new("redis-cli")
        .args(["-p", &srv.port.to_string(), "--pipe"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let stdin = child.stdin.as_mut().unwrap();
        for i in 0..5000 {
            stdin
                .write_all(&kvfleet_harness::encode_cmd(&[
                    b"SET",
                    format!("p:{i}").as_bytes(),
                    b"x",
                ]))
                .unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("errors: 0, replies: 5000"), "{text}");
    assert_eq!(cli(srv.port, &["DBSIZE"]), "5002");
}

#[test]
fn redis_benchmark_runs_clean_against_kvfleet() {
    let srv = kvfleet_server(&[]);
    let out = Command::new("redis-benchmark")
        .args([
            "-p",
            &srv.port.to_string(),
            "-n",
            "20000",
            "-c",
            "20",
            "-P",
            "8",
            "-q",
            "-r",
            "1000",
        ])
        .args([
            "-t",
            "ping,set,get,incr,lpush,rpush,lpop,rpop,sadd,hset,spop,zadd,zpopmin,lrange_100,mset",
        ])
        .output()
        .expect("redis-benchmark");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    for t in [
        "SET",
        "GET",
        "INCR",
        "LPUSH",
        "SADD",
        "HSET",
        "ZADD",
        "LRANGE_100",
        "MSET",
    ] {
        assert!(text.contains(t), "no {t} line in:\n{text}");
    }
    assert!(!text.to_lowercase().contains("error"), "{text}");
    assert_eq!(cli(srv.port, &["EXISTS", "key:__rand_int__"]), "0");
    assert!(cli(srv.port, &["DBSIZE"]).parse::<u64>().unwrap() > 1000);
}
