//! String commands: GET/SET and friends, counters, ranges.

use super::{
    CmdError, CmdResult, Ctx, Handler, NOT_INT, SYNTAX, WRONGTYPE, err, float_arg, int_arg, is,
};
use crate::db::{Entry, Value};
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
    let idx = slot.find(key, now);
    if f.get
        && let Some(i) = idx
        && !matches!(slot.map[i].value, Value::Str(_))
    {
        return Err(WRONGTYPE);
    }
    if (f.nx && idx.is_some()) || (f.xx && idx.is_none()) {
        if f.get {
            match idx {
                Some(i) => match &slot.map[i].value {
                    Value::Str(s) => kvfleet_resp::encode::bulk(ctx.out, s),
                    _ => unreachable!("checked above"),
                },
                None => kvfleet_resp::encode::null(ctx.out, ctx.conn.resp3),
            }
        } else {
            kvfleet_resp::encode::null(ctx.out, ctx.conn.resp3);
        }
        return Ok(());
    }
    // Overwriting a string of the same length (a cache refresh) reuses its buffer.
    if !f.get
        && let Some(i) = idx
        && let Value::Str(s) = &mut slot.map[i].value
        && s.len() == a[2].len()
    {
        s.copy_from_slice(a[2]);
        slot.map[i].lru = crate::db::lru_clock();
        if !f.keepttl {
            slot.set_expire(i, exp);
        }
        ctx.out.extend_from_slice(b"+OK\r\n");
        ctx.dirty += 1;
        return Ok(());
    }
    let value = Value::Str(a[2].into());
    match idx {
        Some(i) => {
            let e = &mut slot.map[i];
            let old = std::mem::replace(&mut e.value, value);
            e.lru = crate::db::lru_clock();
            if !f.keepttl {
                slot.set_expire(i, exp);
            }
            if f.get {
                if let Value::Str(s) = old {
                    kvfleet_resp::encode::bulk(ctx.out, &s);
                }
            } else {
                ctx.out.extend_from_slice(b"+OK\r\n");
            }
        }
        None => {
            let mut e = Entry::new(value);
            e.expire_at = exp;
            slot.insert(key, e);
            if f.get {
                kvfleet_resp::encode::null(ctx.out, ctx.conn.resp3);
            } else {
                ctx.out.extend_from_slice(b"+OK\r\n");
            }
        }
    }
    ctx.dirty += 1;
    Ok(())
}

fn setnx(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    if ctx.db.exists(a[1]) {
        ctx.int(0);
    } else {
        ctx.db.set(a[1], Value::Str(a[2].into()));
        ctx.dirty += 1;
        ctx.int(1);
    }
    Ok(())
}

fn setex_generic(ctx: &mut Ctx<'_, '_>, a: &[&[u8]], ms: bool, name: &str) -> CmdResult {
    let v = int_arg(a[2])?;
    let at = expire_at(v, ms, false, ctx.now, name)?;
    ctx.db.set_with_expire(a[1], Value::Str(a[3].into()), at);
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
    ctx.db.set(a[1], Value::Str(a[2].into()));
    ctx.dirty += 1;
    ctx.opt_bulk(old.as_deref());
    Ok(())
}

fn getdel(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    ctx.db.str_value(a[1])?;
    match ctx.db.remove(a[1]) {
        Some(Entry {
            value: Value::Str(s),
            ..
        }) => {
            ctx.dirty += 1;
            ctx.bulk(&s)
        }
        _ => ctx.null(),
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
    let Some(i) = slot.find(key, now) else {
        ctx.null();
        return Ok(());
    };
    let Value::Str(s) = &slot.map[i].value else {
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
    } else if f.persist && slot.map[i].expire_at != 0 {
        slot.set_expire(i, 0);
        ctx.dirty += 1;
    }
    Ok(())
}

fn mget(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    ctx.array(a.len() - 1);
    for k in &a[1..] {
        match ctx.db.get(k) {
            Some(Entry {
                value: Value::Str(s),
                ..
            }) => kvfleet_resp::encode::bulk(ctx.out, s),
            _ => kvfleet_resp::encode::null(ctx.out, ctx.conn.resp3),
        }
    }
    Ok(())
}

fn mset(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    if a.len().is_multiple_of(2) {
        return Err(super::arity_error(ctx.spec.name));
    }
    for kv in a[1..].chunks(2) {
        ctx.db.set(kv[0], Value::Str(kv[1].into()));
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
        ctx.db.set(kv[0], Value::Str(kv[1].into()));
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
        Some(Entry {
            value: Value::Str(s),
            ..
        }) => {
            check_size(s.len() + a[2].len())?;
            let mut v = Vec::with_capacity(s.len() + a[2].len());
            v.extend_from_slice(s);
            v.extend_from_slice(a[2]);
            let n = v.len();
            *s = v.into_boxed_slice();
            n
        }
        Some(_) => return Err(WRONGTYPE),
        None => {
            ctx.db.set(a[1], Value::Str(a[2].into()));
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
    let cur = match ctx.db.get(key) {
        Some(Entry {
            value: Value::Str(s),
            ..
        }) => Some(util::parse_i64(s).ok_or(NOT_INT)?),
        Some(_) => return Err(WRONGTYPE),
        None => None,
    };
    let n = cur
        .unwrap_or(0)
        .checked_add(by)
        .ok_or_else(|| err("ERR increment or decrement would overflow"))?;
    let mut buf = itoa::Buffer::new();
    let digits = buf.format(n).as_bytes();
    match ctx.db.get(key) {
        // same width: rewrite in place, no allocation on the counter hot path
        Some(Entry {
            value: Value::Str(s),
            ..
        }) if s.len() == digits.len() => s.copy_from_slice(digits),
        Some(e) => e.value = Value::Str(digits.into()),
        None => ctx.db.set(key, Value::Str(digits.into())),
    }
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
        Some(Entry {
            value: Value::Str(s),
            ..
        }) => util::parse_f64(s).ok_or(super::NOT_FLOAT)?,
        Some(_) => return Err(WRONGTYPE),
        None => 0.0,
    };
    let n = cur + by;
    if !n.is_finite() {
        return Err(err("ERR increment would produce NaN or Infinity"));
    }
    let v = util::fmt_human(n);
    match ctx.db.get(a[1]) {
        Some(e) => e.value = Value::Str(v.clone().into()),
        None => ctx.db.set(a[1], Value::Str(v.clone().into())),
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
    match ctx.db.get(a[1]) {
        Some(Entry {
            value: Value::Str(s),
            ..
        }) => {
            if val.is_empty() {
                let n = s.len() as i64;
                ctx.int(n);
                return Ok(());
            }
            check_size(off + val.len())?;
            let mut v = s.to_vec();
            if v.len() < off + val.len() {
                v.resize(off + val.len(), 0);
            }
            v[off..off + val.len()].copy_from_slice(val);
            let n = v.len();
            *s = v.into_boxed_slice();
            ctx.dirty += 1;
            ctx.int(n as i64);
        }
        Some(_) => return Err(WRONGTYPE),
        None => {
            if val.is_empty() {
                ctx.int(0);
                return Ok(());
            }
            check_size(off + val.len())?;
            let mut v = vec![0u8; off + val.len()];
            v[off..].copy_from_slice(val);
            let n = v.len();
            ctx.db.set(a[1], Value::Str(v.into()));
            ctx.dirty += 1;
            ctx.int(n as i64);
        }
    }
    Ok(())
}
