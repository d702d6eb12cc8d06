//! The differential suite: every case file in `cases/` runs against Debian's
//! `redis-server` 7.0.15 and `kvfleet-server`, in RESP2 and again in RESP3,
//! and the raw reply bytes must be equal.
//!
//! Case syntax, one command per line (quoted like redis-cli input):
//! `CMD args` compares exactly; `~CMD` sorts the reply's elements first
//! (replies Redis orders by hash); `@CMD` compares only the reply's type and
//! length (random replies); `!CMD` runs on both without comparing.

use bytes::Bytes;
use kvfleet_harness::{RawClient, kvfleet_server, redis_server};
use kvfleet_resp::Frame;

#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Mode {
    Exact,
    Sorted,
    Shape,
    Ignore,
}

pub fn parse_line(line: &str) -> Option<(Mode, Vec<Vec<u8>>)> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let (mode, rest) = match line.as_bytes()[0] {
        b'~' => (Mode::Sorted, &line[1..]),
        b'@' => (Mode::Shape, &line[1..]),
        b'!' => (Mode::Ignore, &line[1..]),
        _ => (Mode::Exact, line),
    };
    let mut out = Vec::new();
    let mut ranges = Vec::new();
    kvfleet_resp::request::split_args(rest.as_bytes(), &mut out, &mut ranges)
        .expect("balanced quotes in case file");
    Some((mode, ranges.into_iter().map(|r| out[r].to_vec()).collect()))
}

fn frame(raw: &[u8]) -> Frame {
    kvfleet_resp::parse_frame(&Bytes::copy_from_slice(raw))
        .expect("valid")
        .expect("complete")
        .0
}

fn enc(f: &Frame) -> Vec<u8> {
    let mut v = Vec::new();
    f.encode(&mut v);
    v
}

/// Sorts array elements (recursively, so SCAN's inner key list too) and map pairs.
fn sorted(f: Frame) -> Frame {
    match f {
        Frame::Array(v) | Frame::Set(v) => {
            let mut v: Vec<Frame> = v.into_iter().map(sorted).collect();
            v.sort_by_key(enc);
            Frame::Array(v)
        }
        Frame::Map(mut v) => {
            v.sort_by_key(|(k, _)| enc(k));
            Frame::Map(v)
        }
        other => other,
    }
}

fn shape(f: &Frame) -> String {
    match f {
        Frame::Array(v) | Frame::Set(v) | Frame::Push(v) => format!("array[{}]", v.len()),
        Frame::Map(v) => format!("map[{}]", v.len()),
        Frame::Bulk(_) => "bulk".into(),
        Frame::Integer(_) => "int".into(),
        Frame::Null => "null".into(),
        Frame::Error(e) => format!("error {}", String::from_utf8_lossy(e)),
        Frame::Double(_) => "double".into(),
        other => format!("{other:?}"),
    }
}

/// Whether two raw replies agree under a case line's mode.
pub fn same(mode: Mode, want: &[u8], got: &[u8]) -> bool {
    match mode {
        Mode::Exact => want == got,
        Mode::Sorted => enc(&sorted(frame(want))) == enc(&sorted(frame(got))),
        Mode::Shape => shape(&frame(want)) == shape(&frame(got)),
        Mode::Ignore => true,
    }
}

/// Case files as (name, text), embedded so the suite needs no path logic.
pub const CASES: &[(&str, &str)] = &[
    ("strings", include_str!("cases/strings.txt")),
    ("keys", include_str!("cases/keys.txt")),
    ("hash", include_str!("cases/hash.txt")),
    ("list", include_str!("cases/list.txt")),
    ("set", include_str!("cases/set.txt")),
    ("zset", include_str!("cases/zset.txt")),
    ("bitmap", include_str!("cases/bitmap.txt")),
    ("hll", include_str!("cases/hll.txt")),
    ("sort", include_str!("cases/sort.txt")),
    ("scripting", include_str!("cases/scripting.txt")),
    ("functions", include_str!("cases/functions.txt")),
    ("streams", include_str!("cases/streams.txt")),
    ("stream_groups", include_str!("cases/stream_groups.txt")),
    ("geo", include_str!("cases/geo.txt")),
    ("introspect", include_str!("cases/introspect.txt")),
    ("multi", include_str!("cases/multi.txt")),
    ("connection", include_str!("cases/connection.txt")),
    ("errors", include_str!("cases/errors.txt")),
];

/// Runs every case file against both servers in `proto`; returns (commands, failures).
pub fn run_cases(
    redis: &mut RawClient,
    ours: &mut RawClient,
    proto: u8,
    cases: &[(&str, &str)],
) -> (usize, Vec<String>) {
    let mut n = 0;
    let mut failures = Vec::new();
    for (name, text) in cases {
        for c in [&mut *redis, &mut *ours] {
            c.cmd(&[b"FLUSHALL"]);
            c.cmd(&[b"HELLO", if proto == 3 { b"3" } else { b"2" }]);
        }
        for (lineno, line) in text.lines().enumerate() {
            let Some((mode, args)) = parse_line(line) else {
                continue;
            };
            let a: Vec<&[u8]> = args.iter().map(|x| &x[..]).collect();
            let want = redis.cmd(&a);
            let got = ours.cmd(&a);
            n += 1;
            if !same(mode, &want, &got) {
                failures.push(format!(
                    "RESP{proto} {name}.txt:{}: {}\n    redis:   {:?}\n    kvfleet: {:?}",
                    lineno + 1,
                    line.trim(),
                    String::from_utf8_lossy(&want),
                    String::from_utf8_lossy(&got)
                ));
            }
        }
    }
    (n, failures)
}

#[test]
fn differential_suite_matches_redis_7_0_in_resp2_and_resp3() {
    let redis_p = redis_server(&[]);
    let ours_p = kvfleet_server(&[]);
    let mut redis = redis_p.client();
    let mut ours = ours_p.client();
    let mut total = 0;
    let mut failures = Vec::new();
    for proto in [2, 3] {
        let (n, f) = run_cases(&mut redis, &mut ours, proto, CASES);
        total += n;
        failures.extend(f);
    }
    println!(
        "differential: {total} commands compared, {} passed, {} failed",
        total - failures.len(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {total} replies differ from Redis:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(total > 500, "suite too small: {total}");
}
