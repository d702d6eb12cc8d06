//! String commands: GET/SET and friends, counters, ranges.

use super::{
    CmdError, CmdResult, Ctx, Handler, NOT_INT, SYNTAX, WRONGTYPE, err, float_arg, int_arg, is,
};
use crate::db::Entry;
use crate::util;

pub fn handler(name: &str) -> Option<Handler> {
    Some(match name {
        "get" => get,
        "set" => set,
        "setnx" => setnx,
        "setex" => setex,
        "psetex" => psetex,
        "getset" => getset,
        "getdel" => getdel,
        "getex" => getex,
        "mget" => mget,
        "mset" => mset,
        "msetnx" => msetnx,
        "append" => append,
        "strlen" => strlen,
        "incr" => incr,
        "decr" => decr,
        "incrby" => incrby,
        "decrby" => decrby,
        "incrbyfloat" => incrbyfloat,
        "getrange" | "substr" => getrange,
        "setrange" => setrange,
        _ => return None,
    })
}

/// Largest string Redis lets SETRANGE/APPEND build (`proto-max-bulk-len`).
const MAX_STRING: usize = 512 * 1024 * 1024;

/// # Format
/// `GET key`
fn get(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let v = ctx.db.str_value(a[1])?;
    match v {
        Some(v) => kvfleet_resp::encode::bulk(ctx.out, v),
        None => kvfleet_resp::encode::null(ctx.out, ctx.conn.resp3),
    }
    Ok(())
}

#[derive(Default, Clone, Copy)]
struct SetFlags {
    nx: bool,
    xx: bool,
    get: bool,
    keepttl: bool,
    persist: bool,
    /// (value, unit_ms, absolute)
    expire: Option<(i64, bool, bool)>,
}

/// Redis's `parseExtendedStringArgumentsOrReply` for SET (`is_set`) and GETEX.
fn parse_ext(a: &[&[u8]], is_set: bool) -> Result<SetFlags, CmdError> {
    let mut f = SetFlags::default();
    let mut j = 0;
    while j < a.len() {
        let o = a[j];
        let has_exp = f.expire.is_some();
        let next = a.get(j + 1);
        if is(o, "nx") && !f.xx && is_set {
            f.nx = true;
        } else if is(o, "xx") && !f.nx && is_set {
            f.xx = true;
        } else if is(o, "get") && is_set {
            f.get = true;
        } else if is(o, "keepttl") && !f.persist && !has_exp && is_set {
            f.keepttl = true;
        } else if is(o, "persist") && !is_set && !has_exp && !f.keepttl {
            f.persist = true;
        } else if let Some(n) = next.filter(|_| !f.keepttl && !f.persist && !has_exp) {
            let (ms, abs) = if is(o, "ex") {
                (false, false)
            } else if is(o, "px") {
                (true, false)
            } else if is(o, "exat") {
                (false, true)
            } else if is(o, "pxat") {
                (true, true)
            } else {
                return Err(SYNTAX);
            };
            f.expire = Some((int_arg(n)?, ms, abs));
            j += 1;
        } else {
            return Err(SYNTAX);
        }
        j += 1;
    }
    Ok(f)
}

/// Absolute expiry in ms from (value, unit_ms, absolute), with Redis's checks.
pub fn expire_at(v: i64, ms: bool, abs: bool, now: u64, cmd: &str) -> Result<u64, CmdError> {
    let bad = || err(format!("ERR invalid expire time in '{cmd}' command"));
    if v <= 0 {
        return Err(bad());
    }
    let v = if ms {
        v
    } else {
        v.checked_mul(1000).ok_or_else(bad)?
    };
    let v = if abs {
        v
    } else {
        v.checked_add(now as i64).ok_or_else(bad)?
    };
    Ok(v as u64)
}

/// # Format
/// `SET key value [NX | XX] [GET] [EX s | PX ms | EXAT ts | PXAT ms-ts | KEEPTTL]`
fn set(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let f = parse_ext(&a[3..], true)?;
    let exp = match f.expire {
        Some((v, ms, abs)) => expire_at(v, ms, abs, ctx.now, "set")?,
        None => 0,
    };
    let key = a[1];
    let now = ctx.now;
    let slot = ctx.db.slot_mut(key);
    let idx = slot.find_touched(key, now);
    if f.get
        && let Some(i) = idx
        && slot.map[i].str().is_none()
    {
        return Err(WRONGTYPE);
    }
    if (f.nx && idx.is_some()) || (f.xx && idx.is_none()) {
        match idx.filter(|_| f.get) {
            Some(i) => kvfleet_resp::encode::bulk(ctx.out, slot.map[i].str().expect("checked")),
            None => kvfleet_resp::encode::null(ctx.out, ctx.conn.resp3),
        }
        return Ok(());
    }
    match idx {
        Some(i) => {
            let e = &mut slot.map[i];
            if f.get {
                kvfleet_resp::encode::bulk(ctx.out, e.str().expect("checked"));
            }
            let access = e.access();
            let at = if f.keepttl { e.expire_at() } else { exp };
            // A same-length overwrite (a cache refresh) reuses the record.
            if e.str().is_some_and(|s| s.len() == a[2].len()) && (e.expire_at() != 0) == (at != 0) {
                e.str_mut().expect("a string").copy_from_slice(a[2]);
                e.set_access(access);
                slot.set_expire(i, at);
            } else {
                let mut n = Entry::string(key, a[2], at);
                n.set_access(access);
                slot.insert(n);
            }
        }
        None => {
            slot.insert(Entry::string(key, a[2], exp));
            if f.get {
                kvfleet_resp::encode::null(ctx.out, ctx.conn.resp3);
            }
        }
    }
    if !f.get {
        ctx.out.extend_from_slice(b"+OK\r\n");
    }
    ctx.dirty += 1;
    Ok(())
}

fn setnx(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    // a write lookup: touches the key it finds
    if ctx.db.get(a[1]).is_some() {
        ctx.int(0);
    } else {
        ctx.db.set_str(a[1], a[2]);
        ctx.dirty += 1;
        ctx.int(1);
    }
    Ok(())
}

fn setex_generic(ctx: &mut Ctx<'_, '_>, a: &[&[u8]], ms: bool, name: &str) -> CmdResult {
    let v = int_arg(a[2])?;
    let at = expire_at(v, ms, false, ctx.now, name)?;
    let now = ctx.now;
    ctx.db
        .slot_mut(a[1])
        .overwrite(Entry::string(a[1], a[3], at), now);
    ctx.dirty += 1;
    ctx.ok();
    Ok(())
}

fn setex(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    setex_generic(ctx, a, false, "setex")
}

fn psetex(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    setex_generic(ctx, a, true, "psetex")
}

fn getset(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let old = ctx.db.str_value(a[1])?.map(|s| s.to_vec());
    ctx.db.set_str(a[1], a[2]);
    ctx.dirty += 1;
    ctx.opt_bulk(old.as_deref());
    Ok(())
}

fn getdel(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    ctx.db.str_value(a[1])?;
    match ctx.db.remove(a[1]) {
        Some(e) => {
            ctx.dirty += 1;
            ctx.bulk(e.str().expect("checked"))
        }
        None => ctx.null(),
    }
    Ok(())
}

/// # Format
/// `GETEX key [EX s | PX ms | EXAT ts | PXAT ms-ts | PERSIST]`
fn getex(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let f = parse_ext(&a[2..], false)?;
    let exp = match f.expire {
        Some((v, ms, abs)) => Some(expire_at(v, ms, abs, ctx.now, "getex")?),
        None => None,
    };
    let key = a[1];
    let now = ctx.now;
    let slot = ctx.db.slot_mut(key);
    let Some(i) = slot.find_touched(key, now) else {
        ctx.null();
        return Ok(());
    };
    let Some(s) = slot.map[i].str() else {
        return Err(WRONGTYPE);
    };
    kvfleet_resp::encode::bulk(ctx.out, s);
    if let Some(at) = exp {
        if at <= now {
            slot.remove_index(i);
        } else {
            slot.set_expire(i, at);
        }
        ctx.dirty += 1;
    } else if f.persist && slot.map[i].expire_at() != 0 {
        slot.set_expire(i, 0);
        ctx.dirty += 1;
    }
    Ok(())
}

fn mget(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    ctx.array(a.len() - 1);
    for k in &a[1..] {
        match ctx.db.get(k).and_then(|e| e.str()) {
            Some(s) => kvfleet_resp::encode::bulk(ctx.out, s),
            None => kvfleet_resp::encode::null(ctx.out, ctx.conn.resp3),
        }
    }
    Ok(())
}

fn mset(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    if a.len().is_multiple_of(2) {
        return Err(super::arity_error(ctx.spec.name));
    }
    for kv in a[1..].chunks(2) {
        ctx.db.set_str(kv[0], kv[1]);
    }
    ctx.dirty += (a.len() / 2) as u64;
    ctx.ok();
    Ok(())
}

fn msetnx(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    if a.len().is_multiple_of(2) {
        return Err(super::arity_error(ctx.spec.name));
    }
    if a[1..].chunks(2).any(|kv| ctx.db.exists(kv[0])) {
        ctx.int(0);
        return Ok(());
    }
    for kv in a[1..].chunks(2) {
        ctx.db.set_str(kv[0], kv[1]);
    }
    ctx.dirty += (a.len() / 2) as u64;
    ctx.int(1);
    Ok(())
}

fn check_size(len: usize) -> CmdResult {
    if len > MAX_STRING {
        return Err(err(
            "ERR string exceeds maximum allowed size (proto-max-bulk-len)",
        ));
    }
    Ok(())
}

fn append(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let len = match ctx.db.get(a[1]) {
        Some(e) => {
            let cur = e.str().ok_or(WRONGTYPE)?.len();
            check_size(cur + a[2].len())?;
            // grows with spare capacity, so appends are amortised O(1) as in Redis
            let s = e.raw_str().expect("a string");
            s.extend_from_slice(a[2]);
            s.len()
        }
        None => {
            ctx.db.set_str(a[1], a[2]);
            a[2].len()
        }
    };
    ctx.dirty += 1;
    ctx.int(len as i64);
    Ok(())
}

fn strlen(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let n = ctx.db.str_value(a[1])?.map_or(0, |s| s.len());
    ctx.int(n as i64);
    Ok(())
}

fn incr_by(ctx: &mut Ctx<'_, '_>, key: &[u8], by: i64) -> CmdResult {
    let overflow = || err("ERR increment or decrement would overflow");
    let mut buf = itoa::Buffer::new();
    let n = match ctx.db.get(key) {
        Some(e) => {
            let cur = util::parse_i64(e.str().ok_or(WRONGTYPE)?).ok_or(NOT_INT)?;
            let n = cur.checked_add(by).ok_or_else(overflow)?;
            // same width rewrites in place: no allocation on the counter hot path
            e.set_str(buf.format(n).as_bytes());
            n
        }
        None => {
            ctx.db.set_str(key, buf.format(by).as_bytes());
            by
        }
    };
    ctx.dirty += 1;
    ctx.int(n);
    Ok(())
}

fn incr(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    incr_by(ctx, a[1], 1)
}

fn decr(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    incr_by(ctx, a[1], -1)
}

fn incrby(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let by = int_arg(a[2])?;
    incr_by(ctx, a[1], by)
}

fn decrby(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let by = int_arg(a[2])?;
    if by == i64::MIN {
        return Err(err("ERR decrement would overflow"));
    }
    incr_by(ctx, a[1], -by)
}

fn incrbyfloat(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let by = float_arg(a[2])?;
    let cur = match ctx.db.get(a[1]) {
        Some(e) => util::parse_f64(e.str().ok_or(WRONGTYPE)?).ok_or(super::NOT_FLOAT)?,
        None => 0.0,
    };
    let n = cur + by;
    if !n.is_finite() {
        return Err(err("ERR increment would produce NaN or Infinity"));
    }
    let v = util::fmt_human(n);
    match ctx.db.get(a[1]) {
        Some(e) => e.set_str(&v),
        None => ctx.db.set_str(a[1], &v),
    }
    ctx.dirty += 1;
    ctx.bulk(&v);
    Ok(())
}

fn getrange(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let (start, end) = (int_arg(a[2])?, int_arg(a[3])?);
    let s = ctx.db.str_value(a[1])?.unwrap_or(b"");
    let len = s.len() as i64;
    if start < 0 && end < 0 && start > end {
        ctx.bulk(b"");
        return Ok(());
    }
    let mut st = if start < 0 { len + start } else { start };
    let mut en = if end < 0 { len + end } else { end };
    st = st.max(0);
    en = en.max(0);
    if en >= len {
        en = len - 1;
    }
    if st > en || len == 0 {
        ctx.bulk(b"");
    } else {
        let r = s[st as usize..=en as usize].to_vec();
        ctx.bulk(&r);
    }
    Ok(())
}

fn setrange(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let off = int_arg(a[2])?;
    if off < 0 {
        return Err(err("ERR offset is out of range"));
    }
    let val = a[3];
    let off = off as usize;
    let n = match ctx.db.get(a[1]) {
        Some(e) => {
            let cur = e.str().ok_or(WRONGTYPE)?.len();
            if val.is_empty() {
                ctx.int(cur as i64);
                return Ok(());
            }
            check_size(off + val.len())?;
            let v = e.raw_str().expect("a string");
            if v.len() < off + val.len() {
                v.resize(off + val.len(), 0);
            }
            v[off..off + val.len()].copy_from_slice(val);
            v.len()
        }
        None => {
            if val.is_empty() {
                ctx.int(0);
                return Ok(());
            }
            check_size(off + val.len())?;
            // Redis builds this string raw (growable), not embedded
            let mut e = Entry::string(a[1], b"", 0);
            let v = e.raw_str().expect("a string");
            v.resize(off, 0);
            v.extend_from_slice(val);
            let n = v.len();
            ctx.db.slot_mut(a[1]).insert(e);
            n
        }
    };
    ctx.dirty += 1;
    ctx.int(n as i64);
    Ok(())
}
