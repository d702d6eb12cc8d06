//! Seeded random operation sequences run against Debian's redis-server
//! 7.0.15 and kvfleet-server side by side: every reply must be equal, and
//! so must the values left behind. Covers the families whose edge cases
//! are easiest to miss by hand (bitmaps' ranges and overflow rules).

use kvfleet_harness::{RawClient, kvfleet_server, redis_server};

/// A small deterministic generator (no dependency, the same sequence on every run).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn signed(&mut self, n: i64) -> i64 {
        self.below(2 * n as u64 + 1) as i64 - n
    }

    fn pick<'a>(&mut self, v: &[&'a str]) -> &'a str {
        v[self.below(v.len() as u64) as usize]
    }
}

/// Runs `ops` commands from `next_op` on both servers, comparing each
/// reply; returns the final values of `keys` (equal on both).
fn compare(
    seed: u64,
    ops: usize,
    keys: &[&str],
    mut next_op: impl FnMut(&mut Lcg) -> Vec<String>,
) -> Vec<Vec<u8>> {
    let (redis, kv) = (redis_server(&[]), kvfleet_server(&[]));
    let (mut r, mut k): (RawClient, RawClient) = (redis.client(), kv.client());
    let mut rng = Lcg(seed);
    for i in 0..ops {
        let cmd = next_op(&mut rng);
        let a: Vec<&[u8]> = cmd.iter().map(|s| s.as_bytes()).collect();
        let (want, got) = (r.cmd(&a), k.cmd(&a));
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&want),
            "op {i} (seed {seed}): {cmd:?}"
        );
    }
    keys.iter()
        .map(|key| {
            let a: [&[u8]; 2] = [b"GET", key.as_bytes()];
            let v = k.cmd(&a);
            assert_eq!(v, r.cmd(&a), "final value of {key}");
            v
        })
        .collect()
}

#[test]
fn random_bitmap_operations_match_redis() {
    let keys = ["b1", "b2", "b3", "b4"];
    compare(42, 4000, &keys, |g| {
        let key = g.pick(&keys).to_string();
        let num = |g: &mut Lcg, n: i64| g.signed(n).to_string();
        let mode = |g: &mut Lcg| g.pick(&["", "BYTE", "BIT"]).to_string();
        let mut v: Vec<String> = match g.below(9) {
            0 | 1 => vec![
                "SETBIT".into(),
                key,
                g.below(300).to_string(),
                g.below(2).to_string(),
            ],
            2 => vec!["GETBIT".into(), key, g.below(320).to_string()],
            3 => vec!["BITCOUNT".into(), key, num(g, 50), num(g, 50), mode(g)],
            4 => vec![
                "BITPOS".into(),
                key,
                g.below(2).to_string(),
                num(g, 50),
                num(g, 50),
                mode(g),
            ],
            5 => {
                let op = g.pick(&["AND", "OR", "XOR", "NOT"]);
                let mut v = vec!["BITOP".into(), op.into(), key];
                let n = if op == "NOT" { 1 } else { 1 + g.below(3) };
                for _ in 0..n {
                    v.push(g.pick(&keys).into());
                }
                v
            }
            _ => {
                let mut v = vec![
                    if g.below(4) == 0 {
                        "BITFIELD_RO"
                    } else {
                        "BITFIELD"
                    }
                    .to_string(),
                    key,
                ];
                for _ in 0..1 + g.below(4) {
                    let signed = g.below(2) == 0;
                    let bits = 1 + g.below(if signed { 64 } else { 63 });
                    let ty = format!("{}{bits}", if signed { "i" } else { "u" });
                    let off = if g.below(3) == 0 {
                        format!("#{}", g.below(20))
                    } else {
                        g.below(200).to_string()
                    };
                    match g.below(4) {
                        0 => v.extend(["GET".into(), ty, off]),
                        1 => v.extend(["SET".into(), ty, off, g.signed(1 << 20).to_string()]),
                        2 => v.extend(["INCRBY".into(), ty, off, g.signed(300).to_string()]),
                        _ => v.extend(["OVERFLOW".into(), g.pick(&["WRAP", "SAT", "FAIL"]).into()]),
                    }
                }
                v
            }
        };
        v.retain(|s| !s.is_empty());
        v
    });
}

#[test]
fn random_hyperloglog_operations_match_redis_byte_for_byte() {
    // PFADD batches grow the sketches through the sparse encoding's edits
    // into dense ones; GET compares the raw strings (header, cache, registers)
    let keys = ["h1", "h2", "h3"];
    let finals = compare(7, 1500, &keys, |g| {
        let key = g.pick(&keys).to_string();
        match g.below(8) {
            0..=3 => {
                let mut v = vec!["PFADD".to_string(), key];
                let spread = [50, 2000, 100_000][g.below(3) as usize];
                for _ in 0..g.below(40) {
                    v.push(format!("e{}", g.below(spread)));
                }
                v
            }
            4 => vec!["PFCOUNT".into(), key],
            5 => {
                let mut v = vec!["PFCOUNT".to_string()];
                for _ in 0..1 + g.below(3) {
                    v.push(g.pick(&keys).into());
                }
                v
            }
            6 => vec![
                "PFMERGE".into(),
                key,
                g.pick(&keys).into(),
                g.pick(&keys).into(),
            ],
            _ => vec!["GET".into(), key],
        }
    });
    // the run must have reached both encodings: `$<len>\r\nHYLL` + encoding byte
    let encodings: Vec<u8> = finals
        .iter()
        .filter_map(|v| v.get(v.iter().position(|&b| b == b'\n')? + 5).copied())
        .collect();
    assert!(encodings.contains(&0), "a dense sketch: {encodings:?}");
}

#[test]
fn random_geo_operations_match_redis() {
    // points scattered around a few centres; searches of every shape and
    // option, sorted so the comparison does not depend on scan order
    let keys = ["g1", "g2"];
    let finals = compare(11, 1200, &keys, |g| {
        let key = g.pick(&keys).to_string();
        let lon = |g: &mut Lcg| format!("{:.6}", g.signed(179_000_000) as f64 / 1e6);
        let lat = |g: &mut Lcg| format!("{:.6}", g.signed(85_000_000) as f64 / 1e6);
        let near = |g: &mut Lcg, c: f64| format!("{:.6}", c + g.signed(2_000_000) as f64 / 1e6);
        let member = |g: &mut Lcg| format!("m{}", g.below(60));
        let unit = |g: &mut Lcg| g.pick(&["m", "km", "mi", "ft"]).to_string();
        let order = |g: &mut Lcg| g.pick(&["ASC", "DESC"]).to_string();
        match g.below(10) {
            0..=3 => {
                let mut v = vec!["GEOADD".into(), key];
                for _ in 0..1 + g.below(4) {
                    if g.below(2) == 0 {
                        v.extend([near(g, 13.0), near(g, 38.0), member(g)]);
                    } else {
                        v.extend([lon(g), lat(g), member(g)]);
                    }
                }
                v
            }
            4 => vec!["GEOPOS".into(), key, member(g), member(g)],
            5 => vec!["GEODIST".into(), key, member(g), member(g), unit(g)],
            6 => vec!["GEOHASH".into(), key, member(g), member(g)],
            7 => {
                let mut v = vec![
                    "GEOSEARCH".into(),
                    key,
                    "FROMLONLAT".into(),
                    near(g, 13.0),
                    near(g, 38.0),
                ];
                if g.below(2) == 0 {
                    v.extend([
                        "BYRADIUS".into(),
                        (1 + g.below(300)).to_string(),
                        "km".into(),
                    ]);
                } else {
                    v.extend([
                        "BYBOX".into(),
                        (1 + g.below(400)).to_string(),
                        (1 + g.below(400)).to_string(),
                        "km".into(),
                    ]);
                }
                v.push(order(g));
                v.extend(["WITHDIST".into(), "WITHCOORD".into(), "WITHHASH".into()]);
                if g.below(2) == 0 {
                    v.extend(["COUNT".into(), (1 + g.below(5)).to_string()]);
                }
                v
            }
            8 => vec![
                "GEORADIUSBYMEMBER".into(),
                key,
                member(g),
                (g.below(500)).to_string(),
                unit(g),
                order(g),
                "WITHDIST".into(),
            ],
            _ => vec![
                "GEOSEARCHSTORE".into(),
                g.pick(&keys).into(),
                key,
                "FROMLONLAT".into(),
                near(g, 13.0),
                near(g, 38.0),
                "BYRADIUS".into(),
                (1 + g.below(300)).to_string(),
                "km".into(),
                if g.below(2) == 0 { "STOREDIST" } else { "ASC" }.into(),
            ],
        }
    });
    assert!(
        finals.iter().all(|v| v.starts_with(b"-WRONGTYPE")),
        "both keys end as sorted sets"
    );
}

#[test]
fn random_sorted_set_operations_match_redis_across_both_encodings() {
    // ~200 members and few distinct scores: sets grow past 128 members (the
    // packed form's limit) and shrink back, ties order by member. Lex ranges
    // are defined only where every score is equal: they go to `zl`, whose
    // scores are all 0
    let keys = ["z1", "z2", "zl"];
    compare(0x25E7, 3000, &[], |g| {
        let key = g.pick(&keys).to_string();
        let member = |g: &mut Lcg| format!("m{}", g.below(300));
        let scored = |g: &mut Lcg| {
            g.pick(&["0", "-0", "1", "1.5", "-2", "3", "inf", "-inf", "1e3", "7"])
                .to_string()
        };
        let lexkey = key == "zl";
        let score = |g: &mut Lcg| if lexkey { "0".to_string() } else { scored(g) };
        let bound = |g: &mut Lcg| {
            let b = g.pick(&["(", "", ""]).to_string() + &scored(g);
            b.replace("(-inf", "-inf").replace("(inf", "inf")
        };
        let lex = |g: &mut Lcg| match g.below(6) {
            0 => "-".to_string(),
            1 => "+".to_string(),
            _ => format!("{}m{}", g.pick(&["[", "("]), g.below(300)),
        };
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<String>>();
        match g.below(20) {
            0..=6 => {
                let mut c = vec!["ZADD".to_string(), key];
                c.extend(
                    ["NX", "XX", "GT", "LT", "CH", ""]
                        .iter()
                        .filter(|_| g.below(6) == 0)
                        .filter(|f| !f.is_empty())
                        .map(|f| f.to_string()),
                );
                for _ in 0..1 + g.below(24) {
                    c.extend([score(g), member(g)]);
                }
                c
            }
            7 => vec![
                "ZINCRBY".into(),
                g.pick(&keys[..2]).into(),
                scored(g),
                member(g),
            ],
            8 => {
                let mut c = vec!["ZREM".to_string(), key];
                c.extend((0..1 + g.below(8)).map(|_| member(g)));
                c
            }
            9 => vec![
                "ZRANGE".into(),
                key,
                "0".into(),
                "-1".into(),
                "WITHSCORES".into(),
            ],
            10 => {
                let (a, b) = (g.signed(150).to_string(), g.signed(150).to_string());
                let mut c = vec!["ZRANGE".to_string(), key, a, b];
                if g.below(2) == 0 {
                    c.push("REV".into());
                }
                c.push("WITHSCORES".into());
                c
            }
            11 => {
                let rev = g.below(2) == 0;
                let mut c = zrange_by(key, (bound(g), bound(g)), "BYSCORE", rev);
                if g.below(2) == 0 {
                    c.extend([
                        "LIMIT".into(),
                        g.below(20).to_string(),
                        g.signed(10).to_string(),
                    ]);
                }
                c.push("WITHSCORES".into());
                c
            }
            12 => {
                let rev = g.below(2) == 0;
                zrange_by("zl".into(), (lex(g), lex(g)), "BYLEX", rev)
            }
            13 => vec![
                g.pick(&["ZRANK", "ZREVRANK", "ZSCORE"]).into(),
                key,
                member(g),
            ],
            14 => vec![
                g.pick(&["ZPOPMIN", "ZPOPMAX"]).into(),
                key,
                g.below(4).to_string(),
            ],
            15 => match g.below(12) {
                0 => vec![
                    "ZREMRANGEBYRANK".into(),
                    key,
                    g.signed(150).to_string(),
                    g.signed(150).to_string(),
                ],
                1 => vec!["ZREMRANGEBYSCORE".into(), key, bound(g), bound(g)],
                2 => vec!["ZREMRANGEBYLEX".into(), "zl".into(), lex(g), lex(g)],
                // mostly not: the sets must grow past the packed form's limit
                _ => vec!["ZCARD".into(), key],
            },
            16 => vec!["ZCOUNT".into(), key, bound(g), bound(g)],
            17 => vec!["ZLEXCOUNT".into(), "zl".into(), lex(g), lex(g)],
            18 => v(&["OBJECT", "ENCODING", &key]),
            _ => {
                let dst = g.pick(&keys[..2]).to_string();
                let op = g
                    .pick(&["ZUNIONSTORE", "ZINTERSTORE", "ZDIFFSTORE"])
                    .to_string();
                vec![op, dst, "2".into(), key, g.pick(&keys).into()]
            }
        }
    });
}

#[test]
fn random_hash_operations_match_redis_across_both_encodings() {
    // `h1` stays packed (short values, 100 fields) and is read whole, in
    // order; `h2` outgrows the packed form by a 65-byte value, `h3` by its
    // count (700 fields against 512); those two are read only where the
    // order of a hash table does not show
    compare(0x4A5E, 4000, &[], |g| {
        let key = g.pick(&["h1", "h2", "h3"]).to_string();
        let wide = key == "h3";
        let field = |g: &mut Lcg| format!("f{}", g.below(if wide { 700 } else { 100 }));
        let long = key == "h2";
        let value = |g: &mut Lcg| match g.below(if long { 10 } else { 40 }) {
            0 if long => "x".repeat(65),
            1 => "x".repeat(64),
            2 => g.signed(1000).to_string(),
            _ => "v".repeat(g.below(12) as usize),
        };
        match g.below(16) {
            0..=5 => {
                let mut c = vec!["HSET".to_string(), key];
                for _ in 0..1 + g.below(24) {
                    c.extend([field(g), value(g)]);
                }
                c
            }
            6 | 7 if !wide || g.below(4) == 0 => {
                let mut c = vec!["HDEL".to_string(), key];
                c.extend((0..1 + g.below(6)).map(|_| field(g)));
                c
            }
            8 => vec!["HINCRBY".into(), key, field(g), g.signed(50).to_string()],
            9 => vec!["HSETNX".into(), key, field(g), value(g)],
            10 => vec![
                g.pick(&["HGET", "HEXISTS", "HSTRLEN"]).into(),
                key,
                field(g),
            ],
            11 => {
                let mut c = vec!["HMGET".to_string(), key];
                c.extend((0..1 + g.below(5)).map(|_| field(g)));
                c
            }
            12 => vec!["HLEN".into(), key],
            13 => vec!["OBJECT".into(), "ENCODING".into(), key],
            _ => vec![g.pick(&["HGETALL", "HKEYS", "HVALS"]).into(), "h1".into()],
        }
    });
}

#[test]
fn random_set_operations_match_redis_across_both_encodings() {
    // `s1` holds integers only (16-, 32- and 64-bit, fewer than 512) and is
    // read whole, in Redis's numeric intset order; `s2` turns into a table
    // by a non-integer member, `s3` by its count (800 integers against
    // 512): those two are read only where a table's order does not show
    compare(0x5E7, 4000, &[], |g| {
        let key = g.pick(&["s1", "s2", "s3"]).to_string();
        let member = |g: &mut Lcg, key: &str| match (key, g.below(10)) {
            ("s3", _) => g.below(800).to_string(),
            ("s2", 0) => format!("m{}", g.below(5)),
            (_, 1) => (g.signed(40) * 100_000_000_000).to_string(),
            (_, 2) => (g.signed(40) * 1_000_000).to_string(),
            _ => g.signed(150).to_string(),
        };
        match g.below(18) {
            0..=5 => {
                let mut c = vec!["SADD".to_string(), key.clone()];
                for _ in 0..1 + g.below(12) {
                    c.push(member(g, &key));
                }
                c
            }
            6 | 7 => {
                let mut c = vec!["SREM".to_string(), key.clone()];
                c.extend((0..1 + g.below(6)).map(|_| member(g, &key)));
                c
            }
            8 => vec!["SISMEMBER".into(), key.clone(), member(g, &key)],
            9 => {
                let mut c = vec!["SMISMEMBER".to_string(), key.clone()];
                c.extend((0..1 + g.below(4)).map(|_| member(g, &key)));
                c
            }
            10 => vec!["SCARD".into(), key],
            11 => vec!["OBJECT".into(), "ENCODING".into(), key],
            12 if g.below(2) == 0 => vec!["SMEMBERS".into(), "s1".into()],
            12 => vec!["SRANDMEMBER".into(), "s1".into(), "1000".into()],
            13 => vec![
                g.pick(&["SUNIONSTORE", "SINTERSTORE", "SDIFFSTORE"]).into(),
                "d".into(),
                "s1".into(),
                key,
            ],
            14 if g.below(2) == 0 => vec!["SCARD".into(), "d".into()],
            14 => vec!["OBJECT".into(), "ENCODING".into(), "d".into()],
            15 => vec!["SDIFF".into(), "s1".into(), key],
            16 => vec!["SSCAN".into(), "s1".into(), "0".into()],
            _ if g.below(8) == 0 => vec!["SPOP".into(), "s1".into(), "1000".into()],
            _ => vec!["SMOVE".into(), key, "s1".into(), g.signed(150).to_string()],
        }
    });
}

/// `ZRANGE key lo hi BY… [REV]`, the bounds swapped for REV as Redis expects.
fn zrange_by(key: String, (lo, hi): (String, String), by: &str, rev: bool) -> Vec<String> {
    let mut c = vec!["ZRANGE".to_string(), key];
    c.extend(if rev { [hi, lo] } else { [lo, hi] });
    c.push(by.into());
    if rev {
        c.push("REV".into());
    }
    c
}

/// IDs in a small space (so XDEL, XRANGE and XCLAIM hit existing entries).
fn small_id(rng: &mut Lcg) -> String {
    format!("{}-{}", rng.below(40), rng.below(4))
}

#[test]
fn random_stream_operations_match_redis() {
    let groups = ["g1", "g2"];
    let consumers = ["c1", "c2", "c3"];
    compare(0x5EED_57AE, 2500, &[], |rng| {
        let g = rng.pick(&groups).to_string();
        let c = rng.pick(&consumers).to_string();
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        match rng.below(18) {
            0..=3 => {
                let id = match rng.below(4) {
                    0 => format!("{}-*", rng.below(40)),
                    _ => small_id(rng),
                };
                let mut cmd = v(&["XADD", "s"]);
                if rng.below(5) == 0 {
                    cmd.extend(v(&["MAXLEN", "=", &rng.below(30).to_string()]));
                }
                cmd.push(id);
                for f in 0..1 + rng.below(3) {
                    cmd.push(format!("f{f}"));
                    cmd.push(rng.below(100).to_string());
                }
                cmd
            }
            4 => v(&["XDEL", "s", &small_id(rng), &small_id(rng)]),
            5 => match rng.below(2) {
                0 => v(&["XTRIM", "s", "MAXLEN", &rng.below(40).to_string()]),
                _ => v(&["XTRIM", "s", "MINID", &small_id(rng)]),
            },
            6 => {
                let (a, b) = (small_id(rng), small_id(rng));
                let a = if rng.below(3) == 0 {
                    format!("({a}")
                } else {
                    a
                };
                v(&["XRANGE", "s", &a, &b, "COUNT", &rng.below(8).to_string()])
            }
            7 => v(&["XREVRANGE", "s", "+", &small_id(rng)]),
            8 => v(&["XLEN", "s"]),
            9 => v(&[
                "XREAD",
                "COUNT",
                &(1 + rng.below(5)).to_string(),
                "STREAMS",
                "s",
                &small_id(rng),
            ]),
            10 => match rng.below(3) {
                0 => v(&["XGROUP", "CREATE", "s", &g, &small_id(rng), "MKSTREAM"]),
                1 => v(&["XGROUP", "SETID", "s", &g, &small_id(rng)]),
                _ => v(&["XGROUP", "DELCONSUMER", "s", &g, &c]),
            },
            11 | 12 => {
                let id = if rng.below(3) == 0 {
                    "0".to_string()
                } else {
                    ">".to_string()
                };
                let mut cmd = v(&[
                    "XREADGROUP",
                    "GROUP",
                    &g,
                    &c,
                    "COUNT",
                    &(1 + rng.below(4)).to_string(),
                ]);
                if rng.below(6) == 0 {
                    cmd.push("NOACK".into());
                }
                cmd.extend(v(&["STREAMS", "s", &id]));
                cmd
            }
            13 => v(&["XACK", "s", &g, &small_id(rng), &small_id(rng)]),
            14 => v(&["XPENDING", "s", &g]),
            15 => v(&[
                "XCLAIM",
                "s",
                &g,
                &c,
                "0",
                &small_id(rng),
                &small_id(rng),
                "JUSTID",
            ]),
            16 => v(&[
                "XAUTOCLAIM",
                "s",
                &g,
                &c,
                "0",
                &small_id(rng),
                "COUNT",
                &(1 + rng.below(4)).to_string(),
            ]),
            _ => v(&["XINFO", "GROUPS", "s"]),
        }
    });
}
