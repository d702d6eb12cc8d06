//! Generic key commands: DEL, EXISTS, TTLs, RENAME, KEYS/SCAN, OBJECT.

use super::{CmdResult, Ctx, Handler, NO_KEY, SYNTAX, cursor_arg, err, int_arg, is, scan_opts};
use crate::db::{Entry, Slot, ValueRef};
use crate::util::glob_match;
use kvfleet_model::NUM_SLOTS;

pub fn handler(name: &str) -> Option<Handler> {
    Some(match name {
        "del" | "unlink" => del,
        "exists" => exists,
        "type" => type_,
        "rename" => rename,
        "renamenx" => renamenx,
        "copy" => copy,
        "expire" => expire,
        "pexpire" => pexpire,
        "expireat" => expireat,
        "pexpireat" => pexpireat,
        "ttl" => ttl,
        "pttl" => pttl,
        "expiretime" => expiretime,
        "pexpiretime" => pexpiretime,
        "persist" => persist,
        "keys" => keys,
        "scan" => scan,
        "randomkey" => randomkey,
        "touch" => touch,
        "object" => object,
        "dump" => dump,
        "restore" => restore,
        _ => return None,
    })
}

fn del(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let mut n = 0;
    for k in &a[1..] {
        if ctx.db.remove(k).is_some() {
            n += 1;
        }
    }
    ctx.dirty += n;
    ctx.int(n as i64);
    Ok(())
}

fn exists(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let n = a[1..].iter().filter(|k| ctx.db.exists(k)).count();
    ctx.int(n as i64);
    Ok(())
}

fn touch(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let n = a[1..].iter().filter(|k| ctx.db.get(k).is_some()).count();
    ctx.int(n as i64);
    Ok(())
}

fn type_(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let t = ctx.db.peek(a[1]).map_or("none", |e| e.type_name());
    ctx.simple(t.as_bytes());
    Ok(())
}

fn rename_generic(ctx: &mut Ctx<'_, '_>, a: &[&[u8]], nx: bool) -> CmdResult {
    let (src, dst) = (a[1], a[2]);
    // a write lookup: touches the key
    if ctx.db.get(src).is_none() {
        return Err(NO_KEY);
    }
    if src == dst {
        if nx {
            ctx.int(0)
        } else {
            ctx.ok()
        }
        return Ok(());
    }
    if nx && ctx.db.exists(dst) {
        ctx.int(0);
        return Ok(());
    }
    let e = ctx.db.remove(src).expect("checked above");
    ctx.db.remove(dst);
    ctx.db.slot_mut(dst).insert(e.rekey(dst));
    ctx.dirty += 1;
    if nx {
        ctx.int(1)
    } else {
        ctx.ok()
    }
    Ok(())
}

fn rename(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    rename_generic(ctx, a, false)
}

fn renamenx(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    rename_generic(ctx, a, true)
}

/// # Format
/// `COPY source destination [DB 0] [REPLACE]`
fn copy(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let mut replace = false;
    let mut i = 3;
    while i < a.len() {
        if is(a[i], "replace") {
            replace = true;
        } else if is(a[i], "db") && i + 1 < a.len() {
            let db = int_arg(a[i + 1])?;
            if db != 0 {
                return Err(err("ERR DB index is out of range"));
            }
            i += 1;
        } else {
            return Err(SYNTAX);
        }
        i += 1;
    }
    let (src, dst) = (a[1], a[2]);
    if src == dst {
        return Err(err("ERR source and destination objects are the same"));
    }
    let Some(e) = ctx.db.peek(src).cloned() else {
        ctx.int(0);
        return Ok(());
    };
    if ctx.db.exists(dst) {
        if !replace {
            ctx.int(0);
            return Ok(());
        }
        ctx.db.remove(dst);
    }
    ctx.db.slot_mut(dst).insert(e.rekey(dst));
    ctx.dirty += 1;
    ctx.int(1);
    Ok(())
}

fn expire_generic(
    ctx: &mut Ctx<'_, '_>,
    a: &[&[u8]],
    ms: bool,
    abs: bool,
    name: &str,
) -> CmdResult {
    let v = int_arg(a[2])?;
    let (mut nx, mut xx, mut gt, mut lt) = (false, false, false, false);
    for o in &a[3..] {
        if is(o, "nx") {
            nx = true;
        } else if is(o, "xx") {
            xx = true;
        } else if is(o, "gt") {
            gt = true;
        } else if is(o, "lt") {
            lt = true;
        } else {
            return Err(err(format!(
                "ERR Unsupported option {}",
                String::from_utf8_lossy(o)
            )));
        }
    }
    if nx && (xx || gt || lt) {
        return Err(err(
            "ERR NX and XX, GT or LT options at the same time are not compatible",
        ));
    }
    if gt && lt {
        return Err(err(
            "ERR GT and LT options at the same time are not compatible",
        ));
    }
    let bad = || err(format!("ERR invalid expire time in '{name}' command"));
    let mut when = if ms {
        v
    } else {
        v.checked_mul(1000).ok_or_else(bad)?
    };
    if !abs {
        when = when.checked_add(ctx.now as i64).ok_or_else(bad)?;
    }
    let key = a[1];
    let now = ctx.now;
    let slot = ctx.db.slot_mut(key);
    let Some(i) = slot.find_touched(key, now) else {
        ctx.int(0);
        return Ok(());
    };
    let cur = slot.map[i].expire_at();
    // A persistent key counts as an infinite TTL for GT and LT.
    let ok = !(nx && cur != 0
        || xx && cur == 0
        || gt && (cur == 0 || when <= cur as i64)
        || lt && cur != 0 && when >= cur as i64);
    if !ok {
        ctx.int(0);
        return Ok(());
    }
    if when <= now as i64 {
        slot.remove_index(i);
    } else {
        slot.set_expire(i, when as u64);
    }
    ctx.dirty += 1;
    ctx.int(1);
    Ok(())
}

fn expire(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    expire_generic(ctx, a, false, false, "expire")
}
fn pexpire(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    expire_generic(ctx, a, true, false, "pexpire")
}
fn expireat(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    expire_generic(ctx, a, false, true, "expireat")
}
fn pexpireat(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    expire_generic(ctx, a, true, true, "pexpireat")
}

/// -2 missing, -1 persistent, else `f(expire_at, now)`.
fn ttl_generic(ctx: &mut Ctx<'_, '_>, key: &[u8], f: impl Fn(u64, u64) -> i64) -> CmdResult {
    let now = ctx.now;
    let r = match ctx.db.peek(key) {
        None => -2,
        Some(e) if e.expire_at() == 0 => -1,
        Some(e) => f(e.expire_at(), now),
    };
    ctx.int(r);
    Ok(())
}

fn ttl(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    ttl_generic(ctx, a[1], |at, now| {
        ((at.saturating_sub(now) + 500) / 1000) as i64
    })
}
fn pttl(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    ttl_generic(ctx, a[1], |at, now| at.saturating_sub(now) as i64)
}
fn expiretime(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    ttl_generic(ctx, a[1], |at, _| (at / 1000) as i64)
}
fn pexpiretime(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    ttl_generic(ctx, a[1], |at, _| at as i64)
}

fn persist(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let now = ctx.now;
    let slot = ctx.db.slot_mut(a[1]);
    let r = match slot.find_touched(a[1], now) {
        Some(i) if slot.map[i].expire_at() != 0 => {
            slot.set_expire(i, 0);
            1
        }
        _ => 0,
    };
    ctx.dirty += r as u64;
    ctx.int(r);
    Ok(())
}

fn keys(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let pat = a[1];
    let all = pat == b"*";
    let now = ctx.now;
    let mut found: Vec<Box<[u8]>> = Vec::new();
    ctx.db.for_each_slot(|_, s| {
        for e in s.map.iter() {
            if !e.expired(now) && (all || glob_match(pat, e.key(), false)) {
                found.push(e.key().into());
            }
        }
    });
    ctx.array(found.len());
    for k in &found {
        ctx.bulk(k);
    }
    Ok(())
}

/// SCAN cursors: slot in the high bits, and in the low 32 bits 0 for "start
/// this slot" or 1 + the next index to visit. Each slot is walked from its
/// last index down, so a swap-remove during iteration only ever moves an
/// already-visited entry into the unvisited range (a duplicate, never a miss),
/// which is the SCAN guarantee.
pub fn scan_slot(
    s: &Slot,
    pos: u32,
    budget: &mut usize,
    now: u64,
    mut emit: impl FnMut(&[u8], &Entry),
) -> u32 {
    let mut i = if pos == 0 {
        s.map.len()
    } else {
        (pos as usize - 1).min(s.map.len())
    };
    while i > 0 && *budget > 0 {
        i -= 1;
        *budget -= 1;
        let e = &s.map[i];
        if !e.expired(now) {
            emit(e.key(), e);
        }
    }
    if i == 0 { u32::MAX } else { i as u32 + 1 }
}

/// # Format
/// `SCAN cursor [MATCH pattern] [COUNT count] [TYPE type]`
fn scan(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let cursor = cursor_arg(a[1])?;
    let o = scan_opts(&a[2..], true)?;
    let mut slot = (cursor >> 32) as usize;
    let mut pos = cursor as u32;
    let mut budget = o.count;
    let now = ctx.now;
    let mut found: Vec<Box<[u8]>> = Vec::new();
    while slot < NUM_SLOTS && budget > 0 {
        let next = ctx.db.with_slot(slot, |s| {
            scan_slot(s, pos, &mut budget, now, |k, e| {
                if o.pattern.is_none_or(|p| glob_match(p, k, false))
                    && o.typ
                        .is_none_or(|t| t.eq_ignore_ascii_case(e.type_name().as_bytes()))
                {
                    found.push(k.into());
                }
            })
        });
        if next == u32::MAX {
            slot += 1;
            pos = 0;
        } else {
            pos = next;
        }
    }
    let next = if slot >= NUM_SLOTS {
        0
    } else {
        ((slot as u64) << 32) | pos as u64
    };
    ctx.array(2);
    ctx.bulk(itoa::Buffer::new().format(next).as_bytes());
    ctx.array(found.len());
    for k in &found {
        ctx.bulk(k);
    }
    Ok(())
}

fn randomkey(ctx: &mut Ctx<'_, '_>, _a: &[&[u8]]) -> CmdResult {
    let now = ctx.now;
    let start = fastrand::usize(..NUM_SLOTS);
    for off in 0..NUM_SLOTS {
        let picked = ctx.db.with_slot((start + off) % NUM_SLOTS, |s| {
            // a few tries per slot to step over expired keys
            for _ in 0..8 {
                let len = s.map.len();
                if len == 0 {
                    return None;
                }
                let i = fastrand::usize(..len);
                if s.map[i].expired(now) {
                    s.remove_index(i);
                    s.expired += 1;
                    continue;
                }
                return Some(Box::<[u8]>::from(s.map[i].key()));
            }
            None
        });
        if let Some(k) = picked {
            ctx.bulk(&k);
            return Ok(());
        }
    }
    ctx.null();
    Ok(())
}

fn object(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let sub = a[1];
    if is(sub, "help") {
        let lines: &[&str] = &[
            "OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "ENCODING <key>",
            "    Return the kind of internal representation used in order to store the value",
            "    associated with a <key>.",
            "FREQ <key>",
            "    Return the access frequency index of the <key>. The returned integer is",
            "    proportional to the logarithm of the recent access frequency of the key.",
            "IDLETIME <key>",
            "    Return the idle time of the <key>, that is the approximated number of",
            "    seconds elapsed since the last access to the key.",
            "REFCOUNT <key>",
            "    Return the number of references of the value associated with the specified",
            "    <key>.",
            "HELP",
            "    Prints this help.",
        ];
        ctx.help_lines(lines);
        return Ok(());
    }
    let known = ["encoding", "freq", "idletime", "refcount", "help"];
    if !known[..4].iter().any(|s| is(sub, s)) || a.len() != 3 {
        return Err(super::sub_error("object", sub, &known));
    }
    let lfu = crate::db::lfu_mode();
    let Some(e) = ctx.db.peek(a[2]) else {
        ctx.null();
        return Ok(());
    };
    if is(sub, "encoding") {
        let enc = e.encoding();
        ctx.bulk(enc.as_bytes());
    } else if is(sub, "refcount") {
        let rc = if matches!(e.value(), ValueRef::Str(s) if s.len() <= 20 && crate::util::parse_i64(s).is_some_and(|n| (0..10000).contains(&n)))
        {
            i32::MAX as i64
        } else {
            1
        };
        ctx.int(rc);
    } else if is(sub, "freq") {
        if !lfu {
            return Err(err(
                "ERR An LFU maxmemory policy is not selected, access frequency not tracked. Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust.",
            ));
        }
        let f = crate::db::lfu_decayed(e.access());
        ctx.int(f as i64);
    } else {
        if lfu {
            return Err(err(
                "ERR An LFU maxmemory policy is selected, idle time not tracked. Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust.",
            ));
        }
        let idle = crate::db::lru_clock().saturating_sub(e.access()) as i64;
        ctx.int(idle);
    }
    Ok(())
}

/// `DUMP key`: Redis 7.0's payload (plain encodings; see docs/server.md).
fn dump(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    match ctx.db.peek(a[1]) {
        Some(e) => {
            let p = crate::persist::codec::dump(e.value());
            ctx.bulk(&p);
        }
        None => ctx.null(),
    }
    Ok(())
}

/// # Format
/// `RESTORE key ttl payload [REPLACE] [ABSTTL] [IDLETIME seconds] [FREQ frequency]`
fn restore(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let (mut replace, mut absttl) = (false, false);
    let (mut idle, mut freq): (Option<i64>, Option<i64>) = (None, None);
    let mut i = 4;
    while i < a.len() {
        let more = i + 1 < a.len();
        if is(a[i], "replace") {
            replace = true;
        } else if is(a[i], "absttl") {
            absttl = true;
        } else if is(a[i], "idletime") && more && freq.is_none() {
            let v = int_arg(a[i + 1])?;
            if v < 0 {
                return Err(err("ERR Invalid IDLETIME value, must be >= 0"));
            }
            idle = Some(v);
            i += 1;
        } else if is(a[i], "freq") && more && idle.is_none() {
            let v = int_arg(a[i + 1])?;
            if !(0..=255).contains(&v) {
                return Err(err("ERR Invalid FREQ value, must be >= 0 and <= 255"));
            }
            freq = Some(v);
            i += 1;
        } else {
            return Err(SYNTAX);
        }
        i += 1;
    }
    let key = a[1];
    if !replace && ctx.db.exists(key) {
        return Err(err("BUSYKEY Target key name already exists."));
    }
    let ttl = int_arg(a[2])?;
    if ttl < 0 {
        return Err(err("ERR Invalid TTL value, must be >= 0"));
    }
    let value = match kvfleet_rdb::dump::decode(a[3]) {
        Err(kvfleet_rdb::Error::Footer) => {
            return Err(err("ERR DUMP payload version or checksum are wrong"));
        }
        v => v
            .ok()
            .and_then(|v| crate::persist::codec::to_value(v).ok())
            .ok_or_else(|| err("ERR Bad data format"))?,
    };
    let deleted = replace && ctx.db.remove(key).is_some();
    let at = match ttl {
        0 => 0,
        t if absttl => t as u64,
        t => ctx.now + t as u64,
    };
    if at != 0 && at <= ctx.now {
        // already expired: Redis answers OK and keeps nothing
        if deleted {
            ctx.dirty += 1;
        }
        ctx.ok();
        return Ok(());
    }
    let mut e = Entry::new(key, value, at);
    if let Some(f) = freq
        && crate::db::lfu_mode()
    {
        e.set_access(crate::db::lfu_stamp(f as u8));
    }
    if let Some(s) = idle
        && !crate::db::lfu_mode()
    {
        e.set_access(crate::db::lru_clock().saturating_sub(s.min(u32::MAX as i64) as u32));
    }
    ctx.db.slot_mut(key).insert(e);
    ctx.dirty += 1;
    ctx.ok();
    Ok(())
}
