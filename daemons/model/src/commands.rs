//! The command table: one row per command with arity, flags and key positions.
//!
//! The server answers `COMMAND` from these rows and binds a handler to each;
//! the proxy will route and split from the same rows. Arity follows Redis: a
//! positive number is exact, a negative one is "at least".

/// Command flags (Redis's names, lowercase on the wire).
pub mod flag {
    pub const WRITE: u32 = 1 << 0;
    pub const READONLY: u32 = 1 << 1;
    /// Refused with `-OOM` when `maxmemory` is exceeded.
    pub const DENYOOM: u32 = 1 << 2;
    pub const ADMIN: u32 = 1 << 3;
    pub const PUBSUB: u32 = 1 << 4;
    pub const NOSCRIPT: u32 = 1 << 5;
    pub const BLOCKING: u32 = 1 << 6;
    pub const LOADING: u32 = 1 << 7;
    pub const STALE: u32 = 1 << 8;
    pub const FAST: u32 = 1 << 9;
    /// Served without authentication (`AUTH`, `HELLO`, `QUIT`).
    pub const NO_AUTH: u32 = 1 << 10;
    /// Not queued inside `MULTI`; runs at once (`EXEC`, `DISCARD`, `WATCH`, ...).
    pub const NO_MULTI: u32 = 1 << 11;
    /// Touches the whole keyspace (no key arguments but needs every slot).
    pub const ALL_SLOTS: u32 = 1 << 12;

    pub const NAMES: &[(u32, &str)] = &[
        (WRITE, "write"),
        (READONLY, "readonly"),
        (DENYOOM, "denyoom"),
        (ADMIN, "admin"),
        (PUBSUB, "pubsub"),
        (NOSCRIPT, "noscript"),
        (BLOCKING, "blocking"),
        (LOADING, "loading"),
        (STALE, "stale"),
        (FAST, "fast"),
        (NO_AUTH, "no_auth"),
        (NO_MULTI, "no_multi"),
    ];
}

/// Where a command's keys are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keys {
    None,
    /// Keys at `first`, `first+step`, ... up to `last` (negative counts from the end).
    Range {
        first: i8,
        last: i8,
        step: u8,
    },
    /// A count at `numkeys_at` followed by that many keys; `fixed` is an extra
    /// key before the count (the destination of `ZUNIONSTORE`), 0 if none.
    NumKeys {
        fixed: u8,
        numkeys_at: u8,
    },
    /// XREAD / XREADGROUP: after the `STREAMS` keyword (searched from
    /// argument `from`, past XREADGROUP's group and consumer names), the
    /// first half of the remaining arguments are keys, the second their IDs.
    Streams {
        from: u8,
    },
}

#[derive(Debug)]
pub struct CommandSpec {
    /// Lowercase name.
    pub name: &'static str,
    pub arity: i32,
    pub flags: u32,
    pub keys: Keys,
    /// Redis's command group, for `COMMAND DOCS`.
    pub group: &'static str,
}

impl CommandSpec {
    pub fn has(&self, f: u32) -> bool {
        self.flags & f != 0
    }

    pub fn arity_ok(&self, argc: usize) -> bool {
        let a = self.arity;
        if a >= 0 {
            argc == a as usize
        } else {
            argc >= (-a) as usize
        }
    }

    /// `(first, last, step)` as `COMMAND INFO` reports them.
    pub fn key_range(&self) -> (i64, i64, i64) {
        match self.keys {
            Keys::None => (0, 0, 0),
            Keys::Range { first, last, step } => (first as i64, last as i64, step as i64),
            // Redis reports XREAD's keys through key specs, not first/last/step
            Keys::Streams { .. } => (0, 0, 0),
            Keys::NumKeys { fixed, .. } => {
                if fixed > 0 {
                    (fixed as i64, fixed as i64, 1)
                } else {
                    (0, 0, 0)
                }
            }
        }
    }

    /// Pushes the argument indexes that hold keys (`args[0]` is the name).
    /// Malformed counts yield no keys; the handler reports the error.
    pub fn key_indexes(&self, args: &[&[u8]], out: &mut Vec<usize>) {
        let n = args.len() as i64;
        match self.keys {
            Keys::None => {}
            Keys::Range { first, last, step } => {
                let first = first as i64;
                let last = if last < 0 {
                    n + last as i64
                } else {
                    (last as i64).min(n - 1)
                };
                let mut i = first;
                while i <= last && i < n {
                    out.push(i as usize);
                    i += step as i64;
                }
            }
            Keys::Streams { from } => {
                let from = from as usize;
                let Some(at) = args
                    .iter()
                    .skip(from)
                    .position(|a| a.eq_ignore_ascii_case(b"streams"))
                    .map(|p| p + from + 1)
                else {
                    return;
                };
                let rest = args.len().saturating_sub(at);
                out.extend(at..at + rest / 2);
            }
            Keys::NumKeys { fixed, numkeys_at } => {
                if fixed > 0 && (fixed as i64) < n {
                    out.push(fixed as usize);
                }
                let at = numkeys_at as usize;
                let Some(count) = args
                    .get(at)
                    .and_then(|c| std::str::from_utf8(c).ok())
                    .and_then(|c| c.parse::<usize>().ok())
                else {
                    return;
                };
                let end = (at + 1).saturating_add(count).min(args.len());
                out.extend(at + 1..end);
            }
        }
    }
}

use Keys::{NumKeys, Range};
use flag::*;

const fn k(first: i8, last: i8, step: u8) -> Keys {
    Range { first, last, step }
}
const K1: Keys = k(1, 1, 1);
const K12: Keys = k(1, 2, 1);
const KALL: Keys = k(1, -1, 1);
const KBLOCK: Keys = k(1, -2, 1);
const N: Keys = Keys::None;

macro_rules! cmd {
    ($name:literal, $arity:expr, $flags:expr, $keys:expr, $group:literal) => {
        CommandSpec {
            name: $name,
            arity: $arity,
            flags: $flags,
            keys: $keys,
            group: $group,
        }
    };
}

/// Every command kvfleet knows. Order is irrelevant; names are unique.
pub static COMMANDS: &[CommandSpec] = &[
    // connection
    cmd!("ping", -1, FAST | STALE, N, "connection"),
    cmd!("echo", 2, FAST, N, "connection"),
    cmd!(
        "quit",
        -1,
        FAST | STALE | NO_AUTH | LOADING | NOSCRIPT,
        N,
        "connection"
    ),
    cmd!("select", 2, FAST | LOADING | STALE, N, "connection"),
    cmd!(
        "hello",
        -1,
        FAST | NO_AUTH | LOADING | STALE | NOSCRIPT,
        N,
        "connection"
    ),
    cmd!(
        "auth",
        -2,
        FAST | NO_AUTH | LOADING | STALE | NOSCRIPT,
        N,
        "connection"
    ),
    cmd!(
        "client",
        -2,
        ADMIN | NOSCRIPT | LOADING | STALE,
        N,
        "connection"
    ),
    cmd!(
        "reset",
        1,
        FAST | NO_AUTH | LOADING | STALE | NOSCRIPT | NO_MULTI,
        N,
        "connection"
    ),
    // server
    cmd!("command", -1, LOADING | STALE, N, "server"),
    cmd!(
        "config",
        -2,
        ADMIN | NOSCRIPT | LOADING | STALE,
        N,
        "server"
    ),
    cmd!("info", -1, LOADING | STALE, N, "server"),
    cmd!("dbsize", 1, READONLY | FAST | ALL_SLOTS, N, "server"),
    cmd!("flushall", -1, WRITE | ALL_SLOTS, N, "server"),
    cmd!("flushdb", -1, WRITE | ALL_SLOTS, N, "server"),
    cmd!("slowlog", -2, ADMIN | LOADING | STALE, N, "server"),
    cmd!("time", 1, FAST | LOADING | STALE, N, "server"),
    cmd!(
        "debug",
        -2,
        ADMIN | NOSCRIPT | LOADING | STALE | ALL_SLOTS,
        N,
        "server"
    ),
    cmd!("lastsave", 1, FAST | LOADING | STALE, N, "server"),
    cmd!("save", 1, ADMIN | NOSCRIPT | NO_MULTI, N, "server"),
    cmd!("bgsave", -1, ADMIN | NOSCRIPT, N, "server"),
    cmd!("bgrewriteaof", 1, ADMIN | NOSCRIPT, N, "server"),
    cmd!(
        "replconf",
        -1,
        ADMIN | NOSCRIPT | LOADING | STALE,
        N,
        "server"
    ),
    cmd!("psync", -3, ADMIN | NOSCRIPT | NO_MULTI, N, "server"),
    cmd!("sync", 1, ADMIN | NOSCRIPT | NO_MULTI, N, "server"),
    cmd!("role", 1, NOSCRIPT | LOADING | STALE | FAST, N, "server"),
    cmd!("replicaof", 3, ADMIN | NOSCRIPT | STALE, N, "server"),
    cmd!("slaveof", 3, ADMIN | NOSCRIPT | STALE, N, "server"),
    cmd!("wait", 3, NOSCRIPT, N, "generic"),
    cmd!("failover", -1, ADMIN | NOSCRIPT | STALE, N, "server"),
    cmd!(
        "shutdown",
        -1,
        ADMIN | NOSCRIPT | LOADING | STALE | NO_MULTI,
        N,
        "server"
    ),
    cmd!("dump", 2, READONLY, K1, "generic"),
    cmd!("restore", -4, WRITE | DENYOOM, K1, "generic"),
    cmd!("slots", -2, ADMIN | NOSCRIPT | ALL_SLOTS, N, "server"),
    // transactions
    cmd!(
        "multi",
        1,
        NOSCRIPT | LOADING | STALE | FAST | NO_MULTI,
        N,
        "transactions"
    ),
    cmd!(
        "exec",
        1,
        NOSCRIPT | LOADING | STALE | NO_MULTI,
        N,
        "transactions"
    ),
    cmd!(
        "discard",
        1,
        NOSCRIPT | LOADING | STALE | FAST | NO_MULTI,
        N,
        "transactions"
    ),
    cmd!(
        "watch",
        -2,
        NOSCRIPT | LOADING | STALE | FAST | NO_MULTI,
        KALL,
        "transactions"
    ),
    cmd!(
        "unwatch",
        1,
        NOSCRIPT | LOADING | STALE | FAST,
        N,
        "transactions"
    ),
    // pubsub
    cmd!(
        "subscribe",
        -2,
        PUBSUB | NOSCRIPT | LOADING | STALE,
        N,
        "pubsub"
    ),
    cmd!(
        "unsubscribe",
        -1,
        PUBSUB | NOSCRIPT | LOADING | STALE,
        N,
        "pubsub"
    ),
    cmd!(
        "psubscribe",
        -2,
        PUBSUB | NOSCRIPT | LOADING | STALE,
        N,
        "pubsub"
    ),
    cmd!(
        "punsubscribe",
        -1,
        PUBSUB | NOSCRIPT | LOADING | STALE,
        N,
        "pubsub"
    ),
    cmd!("publish", 3, PUBSUB | LOADING | STALE | FAST, N, "pubsub"),
    cmd!("pubsub", -2, PUBSUB | LOADING | STALE, N, "pubsub"),
    // generic
    cmd!("del", -2, WRITE, KALL, "generic"),
    cmd!("unlink", -2, WRITE | FAST, KALL, "generic"),
    cmd!("exists", -2, READONLY | FAST, KALL, "generic"),
    cmd!("type", 2, READONLY | FAST, K1, "generic"),
    cmd!("rename", 3, WRITE, K12, "generic"),
    cmd!("renamenx", 3, WRITE | FAST, K12, "generic"),
    cmd!("copy", -3, WRITE | DENYOOM, K12, "generic"),
    cmd!("expire", -3, WRITE | FAST, K1, "generic"),
    cmd!("pexpire", -3, WRITE | FAST, K1, "generic"),
    cmd!("expireat", -3, WRITE | FAST, K1, "generic"),
    cmd!("pexpireat", -3, WRITE | FAST, K1, "generic"),
    cmd!("ttl", 2, READONLY | FAST, K1, "generic"),
    cmd!("pttl", 2, READONLY | FAST, K1, "generic"),
    cmd!("expiretime", 2, READONLY | FAST, K1, "generic"),
    cmd!("pexpiretime", 2, READONLY | FAST, K1, "generic"),
    cmd!("persist", 2, WRITE | FAST, K1, "generic"),
    cmd!("keys", 2, READONLY | ALL_SLOTS, N, "generic"),
    cmd!("scan", -2, READONLY | ALL_SLOTS, N, "generic"),
    cmd!("randomkey", 1, READONLY | ALL_SLOTS, N, "generic"),
    cmd!("touch", -2, READONLY | FAST, KALL, "generic"),
    cmd!("object", -2, READONLY, k(2, 2, 1), "generic"),
    cmd!("memory", -2, READONLY, k(2, 2, 1), "server"),
    cmd!(
        "latency",
        -2,
        ADMIN | NOSCRIPT | LOADING | STALE,
        N,
        "server"
    ),
    // string
    cmd!("get", 2, READONLY | FAST, K1, "string"),
    cmd!("set", -3, WRITE | DENYOOM, K1, "string"),
    cmd!("setnx", 3, WRITE | DENYOOM | FAST, K1, "string"),
    cmd!("setex", 4, WRITE | DENYOOM, K1, "string"),
    cmd!("psetex", 4, WRITE | DENYOOM, K1, "string"),
    cmd!("getset", 3, WRITE | DENYOOM | FAST, K1, "string"),
    cmd!("getdel", 2, WRITE | FAST, K1, "string"),
    cmd!("getex", -2, WRITE | FAST, K1, "string"),
    cmd!("mget", -2, READONLY | FAST, KALL, "string"),
    cmd!("mset", -3, WRITE | DENYOOM, k(1, -1, 2), "string"),
    cmd!("msetnx", -3, WRITE | DENYOOM, k(1, -1, 2), "string"),
    cmd!("append", 3, WRITE | DENYOOM | FAST, K1, "string"),
    cmd!("strlen", 2, READONLY | FAST, K1, "string"),
    cmd!("incr", 2, WRITE | DENYOOM | FAST, K1, "string"),
    cmd!("decr", 2, WRITE | DENYOOM | FAST, K1, "string"),
    cmd!("incrby", 3, WRITE | DENYOOM | FAST, K1, "string"),
    cmd!("decrby", 3, WRITE | DENYOOM | FAST, K1, "string"),
    cmd!("incrbyfloat", 3, WRITE | DENYOOM | FAST, K1, "string"),
    cmd!("getrange", 4, READONLY, K1, "string"),
    cmd!("substr", 4, READONLY, K1, "string"),
    cmd!("setrange", 4, WRITE | DENYOOM, K1, "string"),
    // bitmap
    cmd!("setbit", 4, WRITE | DENYOOM, K1, "bitmap"),
    cmd!("getbit", 3, READONLY | FAST, K1, "bitmap"),
    cmd!("bitcount", -2, READONLY, K1, "bitmap"),
    cmd!("bitpos", -3, READONLY, K1, "bitmap"),
    cmd!("bitop", -4, WRITE | DENYOOM, k(2, -1, 1), "bitmap"),
    cmd!("bitfield", -2, WRITE | DENYOOM, K1, "bitmap"),
    cmd!("bitfield_ro", -2, READONLY | FAST, K1, "bitmap"),
    // sort (keys its BY/GET patterns form are found at run time)
    cmd!("sort", -2, WRITE | DENYOOM, K1, "generic"),
    cmd!("sort_ro", -2, READONLY, K1, "generic"),
    // geo (sorted sets of geohash scores)
    cmd!("geoadd", -5, WRITE | DENYOOM, K1, "geo"),
    cmd!("geodist", -4, READONLY, K1, "geo"),
    cmd!("geohash", -2, READONLY, K1, "geo"),
    cmd!("geopos", -2, READONLY, K1, "geo"),
    cmd!("georadius", -6, WRITE | DENYOOM, K1, "geo"),
    cmd!("georadius_ro", -6, READONLY, K1, "geo"),
    cmd!("georadiusbymember", -5, WRITE | DENYOOM, K1, "geo"),
    cmd!("georadiusbymember_ro", -5, READONLY, K1, "geo"),
    cmd!("geosearch", -7, READONLY, K1, "geo"),
    cmd!("geosearchstore", -8, WRITE | DENYOOM, K12, "geo"),
    // hyperloglog
    cmd!("pfadd", -2, WRITE | DENYOOM | FAST, K1, "hyperloglog"),
    cmd!("pfcount", -2, READONLY, KALL, "hyperloglog"),
    cmd!("pfmerge", -2, WRITE | DENYOOM, KALL, "hyperloglog"),
    // hash
    cmd!("hset", -4, WRITE | DENYOOM | FAST, K1, "hash"),
    cmd!("hmset", -4, WRITE | DENYOOM | FAST, K1, "hash"),
    cmd!("hsetnx", 4, WRITE | DENYOOM | FAST, K1, "hash"),
    cmd!("hget", 3, READONLY | FAST, K1, "hash"),
    cmd!("hmget", -3, READONLY | FAST, K1, "hash"),
    cmd!("hdel", -3, WRITE | FAST, K1, "hash"),
    cmd!("hlen", 2, READONLY | FAST, K1, "hash"),
    cmd!("hstrlen", 3, READONLY | FAST, K1, "hash"),
    cmd!("hexists", 3, READONLY | FAST, K1, "hash"),
    cmd!("hkeys", 2, READONLY, K1, "hash"),
    cmd!("hvals", 2, READONLY, K1, "hash"),
    cmd!("hgetall", 2, READONLY, K1, "hash"),
    cmd!("hincrby", 4, WRITE | DENYOOM | FAST, K1, "hash"),
    cmd!("hincrbyfloat", 4, WRITE | DENYOOM | FAST, K1, "hash"),
    cmd!("hrandfield", -2, READONLY, K1, "hash"),
    cmd!("hscan", -3, READONLY, K1, "hash"),
    // list
    cmd!("lpush", -3, WRITE | DENYOOM | FAST, K1, "list"),
    cmd!("rpush", -3, WRITE | DENYOOM | FAST, K1, "list"),
    cmd!("lpushx", -3, WRITE | DENYOOM | FAST, K1, "list"),
    cmd!("rpushx", -3, WRITE | DENYOOM | FAST, K1, "list"),
    cmd!("lpop", -2, WRITE | FAST, K1, "list"),
    cmd!("rpop", -2, WRITE | FAST, K1, "list"),
    cmd!("llen", 2, READONLY | FAST, K1, "list"),
    cmd!("lindex", 3, READONLY, K1, "list"),
    cmd!("lset", 4, WRITE | DENYOOM, K1, "list"),
    cmd!("lrange", 4, READONLY, K1, "list"),
    cmd!("ltrim", 4, WRITE, K1, "list"),
    cmd!("lrem", 4, WRITE, K1, "list"),
    cmd!("linsert", 5, WRITE | DENYOOM, K1, "list"),
    cmd!("lpos", -3, READONLY, K1, "list"),
    cmd!("rpoplpush", 3, WRITE | DENYOOM, K12, "list"),
    cmd!("lmove", 5, WRITE | DENYOOM, K12, "list"),
    cmd!(
        "lmpop",
        -4,
        WRITE,
        NumKeys {
            fixed: 0,
            numkeys_at: 1
        },
        "list"
    ),
    cmd!("blpop", -3, WRITE | BLOCKING | NOSCRIPT, KBLOCK, "list"),
    cmd!("brpop", -3, WRITE | BLOCKING | NOSCRIPT, KBLOCK, "list"),
    cmd!(
        "brpoplpush",
        4,
        WRITE | DENYOOM | BLOCKING | NOSCRIPT,
        K12,
        "list"
    ),
    cmd!(
        "blmove",
        6,
        WRITE | DENYOOM | BLOCKING | NOSCRIPT,
        K12,
        "list"
    ),
    cmd!(
        "blmpop",
        -5,
        WRITE | BLOCKING,
        NumKeys {
            fixed: 0,
            numkeys_at: 2
        },
        "list"
    ),
    // set
    cmd!("sadd", -3, WRITE | DENYOOM | FAST, K1, "set"),
    cmd!("srem", -3, WRITE | FAST, K1, "set"),
    cmd!("smembers", 2, READONLY, K1, "set"),
    cmd!("sismember", 3, READONLY | FAST, K1, "set"),
    cmd!("smismember", -3, READONLY | FAST, K1, "set"),
    cmd!("scard", 2, READONLY | FAST, K1, "set"),
    cmd!("spop", -2, WRITE | FAST, K1, "set"),
    cmd!("srandmember", -2, READONLY, K1, "set"),
    cmd!("smove", 4, WRITE | FAST, K12, "set"),
    cmd!("sinter", -2, READONLY, KALL, "set"),
    cmd!("sinterstore", -3, WRITE | DENYOOM, KALL, "set"),
    cmd!(
        "sintercard",
        -3,
        READONLY,
        NumKeys {
            fixed: 0,
            numkeys_at: 1
        },
        "set"
    ),
    cmd!("sunion", -2, READONLY, KALL, "set"),
    cmd!("sunionstore", -3, WRITE | DENYOOM, KALL, "set"),
    cmd!("sdiff", -2, READONLY, KALL, "set"),
    cmd!("sdiffstore", -3, WRITE | DENYOOM, KALL, "set"),
    cmd!("sscan", -3, READONLY, K1, "set"),
    // sorted set
    cmd!("zadd", -4, WRITE | DENYOOM | FAST, K1, "sorted-set"),
    cmd!("zincrby", 4, WRITE | DENYOOM | FAST, K1, "sorted-set"),
    cmd!("zrem", -3, WRITE | FAST, K1, "sorted-set"),
    cmd!("zcard", 2, READONLY | FAST, K1, "sorted-set"),
    cmd!("zcount", 4, READONLY | FAST, K1, "sorted-set"),
    cmd!("zlexcount", 4, READONLY | FAST, K1, "sorted-set"),
    cmd!("zscore", 3, READONLY | FAST, K1, "sorted-set"),
    cmd!("zmscore", -3, READONLY | FAST, K1, "sorted-set"),
    cmd!("zrank", 3, READONLY | FAST, K1, "sorted-set"),
    cmd!("zrevrank", 3, READONLY | FAST, K1, "sorted-set"),
    cmd!("zrange", -4, READONLY, K1, "sorted-set"),
    cmd!("zrangestore", -5, WRITE | DENYOOM, K12, "sorted-set"),
    cmd!("zrangebyscore", -4, READONLY, K1, "sorted-set"),
    cmd!("zrevrangebyscore", -4, READONLY, K1, "sorted-set"),
    cmd!("zrangebylex", -4, READONLY, K1, "sorted-set"),
    cmd!("zrevrangebylex", -4, READONLY, K1, "sorted-set"),
    cmd!("zrevrange", -4, READONLY, K1, "sorted-set"),
    cmd!("zremrangebyrank", 4, WRITE, K1, "sorted-set"),
    cmd!("zremrangebyscore", 4, WRITE, K1, "sorted-set"),
    cmd!("zremrangebylex", 4, WRITE, K1, "sorted-set"),
    cmd!("zpopmin", -2, WRITE | FAST, K1, "sorted-set"),
    cmd!("zpopmax", -2, WRITE | FAST, K1, "sorted-set"),
    cmd!(
        "bzpopmin",
        -3,
        WRITE | FAST | BLOCKING | NOSCRIPT,
        KBLOCK,
        "sorted-set"
    ),
    cmd!(
        "bzpopmax",
        -3,
        WRITE | FAST | BLOCKING | NOSCRIPT,
        KBLOCK,
        "sorted-set"
    ),
    cmd!(
        "zmpop",
        -4,
        WRITE,
        NumKeys {
            fixed: 0,
            numkeys_at: 1
        },
        "sorted-set"
    ),
    cmd!(
        "bzmpop",
        -5,
        WRITE | BLOCKING,
        NumKeys {
            fixed: 0,
            numkeys_at: 2
        },
        "sorted-set"
    ),
    cmd!("zrandmember", -2, READONLY, K1, "sorted-set"),
    cmd!(
        "zunion",
        -3,
        READONLY,
        NumKeys {
            fixed: 0,
            numkeys_at: 1
        },
        "sorted-set"
    ),
    cmd!(
        "zinter",
        -3,
        READONLY,
        NumKeys {
            fixed: 0,
            numkeys_at: 1
        },
        "sorted-set"
    ),
    cmd!(
        "zdiff",
        -3,
        READONLY,
        NumKeys {
            fixed: 0,
            numkeys_at: 1
        },
        "sorted-set"
    ),
    cmd!(
        "zunionstore",
        -4,
        WRITE | DENYOOM,
        NumKeys {
            fixed: 1,
            numkeys_at: 2
        },
        "sorted-set"
    ),
    cmd!(
        "zinterstore",
        -4,
        WRITE | DENYOOM,
        NumKeys {
            fixed: 1,
            numkeys_at: 2
        },
        "sorted-set"
    ),
    cmd!(
        "zdiffstore",
        -4,
        WRITE | DENYOOM,
        NumKeys {
            fixed: 1,
            numkeys_at: 2
        },
        "sorted-set"
    ),
    cmd!(
        "zintercard",
        -3,
        READONLY,
        NumKeys {
            fixed: 0,
            numkeys_at: 1
        },
        "sorted-set"
    ),
    cmd!("zscan", -3, READONLY, K1, "sorted-set"),
    // streams
    cmd!("xadd", -5, WRITE | DENYOOM | FAST, K1, "stream"),
    cmd!("xrange", -4, READONLY, K1, "stream"),
    cmd!("xrevrange", -4, READONLY, K1, "stream"),
    cmd!("xlen", 2, READONLY | FAST, K1, "stream"),
    cmd!("xdel", -3, WRITE | FAST, K1, "stream"),
    cmd!("xtrim", -4, WRITE, K1, "stream"),
    cmd!(
        "xread",
        -4,
        READONLY | BLOCKING,
        Keys::Streams { from: 1 },
        "stream"
    ),
    cmd!("xsetid", -3, WRITE | DENYOOM | FAST, K1, "stream"),
    cmd!("xack", -4, WRITE | FAST, K1, "stream"),
    cmd!("xpending", -3, READONLY, K1, "stream"),
    cmd!("xclaim", -6, WRITE | FAST, K1, "stream"),
    cmd!("xautoclaim", -6, WRITE | FAST, K1, "stream"),
    cmd!("xinfo", -2, READONLY, k(2, 2, 1), "stream"),
    cmd!("xgroup", -2, WRITE, k(2, 2, 1), "stream"),
    cmd!(
        "xreadgroup",
        -7,
        WRITE | BLOCKING,
        Keys::Streams { from: 4 },
        "stream"
    ),
    // scripting
    cmd!("eval", -3, NOSCRIPT | STALE, NK2, "scripting"),
    cmd!("evalsha", -3, NOSCRIPT | STALE, NK2, "scripting"),
    cmd!("eval_ro", -3, NOSCRIPT | STALE | READONLY, NK2, "scripting"),
    cmd!(
        "evalsha_ro",
        -3,
        NOSCRIPT | STALE | READONLY,
        NK2,
        "scripting"
    ),
    cmd!("fcall", -3, NOSCRIPT | STALE, NK2, "scripting"),
    cmd!(
        "fcall_ro",
        -3,
        NOSCRIPT | STALE | READONLY,
        NK2,
        "scripting"
    ),
    cmd!("script", -2, NOSCRIPT, N, "scripting"),
    cmd!("function", -2, NOSCRIPT, N, "scripting"),
];

const NK2: Keys = NumKeys {
    fixed: 0,
    numkeys_at: 2,
};

/// Redis 7.0 commands kvfleet-server does not run yet. Proxies route them
/// (to `redis-server` backends, which do); the server answers them with
/// Redis's unknown-command error. Rows move to [`COMMANDS`] as the server
/// learns them.
pub static EXTRA_COMMANDS: &[CommandSpec] = &[cmd!("lcs", -3, READONLY, K12, "string")];

/// One row as `COMMAND INFO` answers it (Redis 7.0's ten fields).
pub fn encode_info(out: &mut bytes::BytesMut, c: &CommandSpec, resp3: bool) {
    use kvfleet_resp::encode;
    encode::array(out, 10);
    encode::bulk(out, c.name.as_bytes());
    encode::int(out, c.arity as i64);
    let flags = flag::NAMES.iter().filter(|(f, _)| c.flags & f != 0);
    encode::set(out, flags.clone().count(), resp3);
    flags.for_each(|(_, n)| encode::simple(out, n.as_bytes()));
    let (first, last, step) = c.key_range();
    encode::int(out, first);
    encode::int(out, last);
    encode::int(out, step);
    let cat = format!("@{}", c.group.replace("sorted-set", "sortedset"));
    encode::set(out, 1, resp3);
    encode::simple(out, cat.as_bytes());
    for _ in 0..3 {
        encode::set(out, 0, resp3);
    }
}

/// Finds a command by name, ignoring ASCII case.
pub fn lookup(name: &[u8]) -> Option<&'static CommandSpec> {
    COMMANDS
        .iter()
        .find(|c| c.name.as_bytes().eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_lowercase() {
        let mut names: Vec<_> = COMMANDS.iter().map(|c| c.name).collect();
        names.sort();
        let before = names.len();
        names.dedup();
        assert_eq!(before, names.len(), "duplicate command rows");
        assert!(
            COMMANDS
                .iter()
                .all(|c| c.name == c.name.to_ascii_lowercase())
        );
    }

    #[test]
    fn stream_reads_take_the_first_half_after_streams_as_keys() {
        let mut out = Vec::new();
        let xread = COMMANDS.iter().find(|c| c.name == "xread").unwrap();
        let args: Vec<&[u8]> = vec![b"XREAD", b"COUNT", b"2", b"STREAMS", b"a", b"b", b"0", b"0"];
        xread.key_indexes(&args, &mut out);
        assert_eq!(out, [4, 5]);
        out.clear();
        // a group or consumer named "streams" before the keyword does not confuse it
        let args: Vec<&[u8]> = vec![b"XREAD", b"STREAMS", b"streams", b"$"];
        xread.key_indexes(&args, &mut out);
        assert_eq!(out, [2]);
        out.clear();
        let group = COMMANDS.iter().find(|c| c.name == "xreadgroup").unwrap();
        let args: Vec<&[u8]> = vec![
            b"XREADGROUP",
            b"GROUP",
            b"streams",
            b"c",
            b"STREAMS",
            b"k",
            b">",
        ];
        group.key_indexes(&args, &mut out);
        assert_eq!(out, [5]);
    }

    #[test]
    fn key_indexes_follow_the_row() {
        let mut out = Vec::new();
        let args: Vec<&[u8]> = vec![b"mset", b"a", b"1", b"b", b"2"];
        lookup(b"MSET").unwrap().key_indexes(&args, &mut out);
        assert_eq!(out, [1, 3]);
        out.clear();
        let args: Vec<&[u8]> = vec![b"blpop", b"a", b"b", b"0"];
        lookup(b"blpop").unwrap().key_indexes(&args, &mut out);
        assert_eq!(out, [1, 2]);
        out.clear();
        let args: Vec<&[u8]> = vec![
            b"zunionstore",
            b"d",
            b"2",
            b"a",
            b"b",
            b"WEIGHTS",
            b"1",
            b"2",
        ];
        lookup(b"zunionstore").unwrap().key_indexes(&args, &mut out);
        assert_eq!(out, [1, 3, 4]);
        out.clear();
        let args: Vec<&[u8]> = vec![b"zunion", b"99", b"a"];
        lookup(b"zunion").unwrap().key_indexes(&args, &mut out);
        assert_eq!(out, [2]);
    }
}
