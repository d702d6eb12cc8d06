//! Hash commands. Small hashes are packed and keep insertion order across
//! deletes, as Redis's listpack does, so HGETALL answers in Redis's order
//! (`crate::db::hash`).

use super::{CmdResult, Ctx, Handler, cursor_arg, err, float_arg, int_arg, is, scan_opts};
use crate::util::{self, glob_match};

pub fn handler(name: &str) -> Option<Handler> {
    Some(match name {
        "hset" => hset,
        "hmset" => hmset,
        "hsetnx" => hsetnx,
        "hget" => hget,
        "hmget" => hmget,
        "hdel" => hdel,
        "hlen" => hlen,
        "hstrlen" => hstrlen,
        "hexists" => hexists,
        "hkeys" => hkeys,
        "hvals" => hvals,
        "hgetall" => hgetall,
        "hincrby" => hincrby,
        "hincrbyfloat" => hincrbyfloat,
        "hrandfield" => hrandfield,
        "hscan" => hscan,
        _ => return None,
    })
}

fn hset_generic(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> Result<i64, super::CmdError> {
    if !a.len().is_multiple_of(2) {
        return Err(super::arity_error(ctx.spec.name));
    }
    let h = ctx.db.hash_or_new(a[1])?;
    let mut added = 0;
    for fv in a[2..].chunks(2) {
        added += i64::from(h.set(fv[0], fv[1]));
    }
    ctx.dirty += 1;
    Ok(added)
}

fn hset(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let n = hset_generic(ctx, a)?;
    ctx.int(n);
    Ok(())
}

fn hmset(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    hset_generic(ctx, a)?;
    ctx.ok();
    Ok(())
}

fn hsetnx(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let h = ctx.db.hash_or_new(a[1])?;
    if h.contains(a[2]) {
        ctx.int(0);
    } else {
        h.set(a[2], a[3]);
        ctx.dirty += 1;
        ctx.int(1);
    }
    Ok(())
}

fn hget(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    match ctx.db.hash(a[1])?.and_then(|h| h.get(a[2])) {
        Some(v) => kvfleet_resp::encode::bulk(ctx.out, v),
        None => kvfleet_resp::encode::null(ctx.out, ctx.conn.resp3),
    }
    Ok(())
}

fn hmget(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let resp3 = ctx.conn.resp3;
    let h = ctx.db.hash(a[1])?.map(|h| &*h);
    let mut out = std::mem::take(ctx.out);
    kvfleet_resp::encode::array(&mut out, a.len() - 2);
    for f in &a[2..] {
        match h.and_then(|h| h.get(f)) {
            Some(v) => kvfleet_resp::encode::bulk(&mut out, v),
            None => kvfleet_resp::encode::null(&mut out, resp3),
        }
    }
    *ctx.out = out;
    Ok(())
}

fn hdel(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let mut n = 0;
    if let Some(h) = ctx.db.hash(a[1])? {
        for f in &a[2..] {
            if h.remove(f) {
                n += 1;
            }
        }
    }
    ctx.reply_removed(a[1], n);
    Ok(())
}

fn hlen(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let n = ctx.db.hash(a[1])?.map_or(0, |h| h.len());
    ctx.int(n as i64);
    Ok(())
}

fn hstrlen(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let n = ctx
        .db
        .hash(a[1])?
        .and_then(|h| h.get(a[2]))
        .map_or(0, |v| v.len());
    ctx.int(n as i64);
    Ok(())
}

fn hexists(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let n = ctx.db.hash(a[1])?.is_some_and(|h| h.contains(a[2]));
    ctx.int(n as i64);
    Ok(())
}

/// HKEYS (keys), HVALS (values), HGETALL (both).
fn hgetall_generic(ctx: &mut Ctx<'_, '_>, key: &[u8], keys: bool, vals: bool) -> CmdResult {
    let resp3 = ctx.conn.resp3;
    let mut out = std::mem::take(ctx.out);
    let h = ctx.db.hash(key)?;
    let n = h.as_ref().map_or(0, |h| h.len());
    if keys && vals {
        kvfleet_resp::encode::map(&mut out, n, resp3);
    } else {
        kvfleet_resp::encode::array(&mut out, n);
    }
    if let Some(h) = h {
        for (k, v) in h.iter() {
            if keys {
                kvfleet_resp::encode::bulk(&mut out, k);
            }
            if vals {
                kvfleet_resp::encode::bulk(&mut out, v);
            }
        }
    }
    *ctx.out = out;
    Ok(())
}

fn hkeys(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    hgetall_generic(ctx, a[1], true, false)
}
fn hvals(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    hgetall_generic(ctx, a[1], false, true)
}
fn hgetall(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    hgetall_generic(ctx, a[1], true, true)
}

fn hincrby(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let by = int_arg(a[3])?;
    let h = ctx.db.hash_or_new(a[1])?;
    let cur = match h.get(a[2]) {
        Some(v) => util::parse_i64(v).ok_or_else(|| err("ERR hash value is not an integer"))?,
        None => 0,
    };
    let n = cur
        .checked_add(by)
        .ok_or_else(|| err("ERR increment or decrement would overflow"));
    let n = match n {
        Ok(n) => n,
        Err(e) => {
            ctx.db.remove_if_empty(a[1]);
            return Err(e);
        }
    };
    h.set(a[2], itoa::Buffer::new().format(n).as_bytes());
    ctx.dirty += 1;
    ctx.int(n);
    Ok(())
}

fn hincrbyfloat(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let by = float_arg(a[3])?;
    let h = ctx.db.hash_or_new(a[1])?;
    let cur = match h.get(a[2]) {
        Some(v) => util::parse_f64(v).ok_or_else(|| err("ERR hash value is not a float")),
        None => Ok(0.0),
    };
    let r = cur.and_then(|c| {
        let n = c + by;
        if n.is_finite() {
            Ok(n)
        } else {
            Err(err("ERR increment would produce NaN or Infinity"))
        }
    });
    let n = match r {
        Ok(n) => n,
        Err(e) => {
            ctx.db.remove_if_empty(a[1]);
            return Err(e);
        }
    };
    let v = util::fmt_human(n);
    h.set(a[2], v.as_ref());
    ctx.dirty += 1;
    ctx.bulk(&v);
    Ok(())
}

/// # Format
/// `HRANDFIELD key [count [WITHVALUES]]`
fn hrandfield(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let (count, withvalues) = match a.len() {
        2 => (None, false),
        3 => (Some(int_arg(a[2])?), false),
        4 if is(a[3], "withvalues") => (Some(int_arg(a[2])?), true),
        _ => return Err(super::SYNTAX),
    };
    if let Some(c) = count
        && withvalues
        && c.checked_mul(2).is_none()
    {
        return Err(err("ERR value is out of range"));
    }
    let resp3 = ctx.conn.resp3;
    let mut out = std::mem::take(ctx.out);
    let r = ctx.db.hash(a[1]);
    let h = match r {
        Ok(h) => h,
        Err(e) => {
            *ctx.out = out;
            return Err(e);
        }
    };
    let len = h.as_ref().map_or(0, |h| h.len());
    let Some(c) = count else {
        match h {
            Some(h) if len > 0 => {
                let i = fastrand::usize(..len);
                kvfleet_resp::encode::bulk(&mut out, h.get_index(i).expect("in range").0);
            }
            _ => kvfleet_resp::encode::null(&mut out, resp3),
        }
        *ctx.out = out;
        return Ok(());
    };
    let picks = random_picks(c, len);
    if withvalues && resp3 {
        kvfleet_resp::encode::array(&mut out, picks.len());
    } else {
        kvfleet_resp::encode::array(&mut out, picks.len() * if withvalues { 2 } else { 1 });
    }
    if let Some(h) = h {
        // a packed hash is walked once, not once per pick
        let packed: Vec<(&[u8], &[u8])> = if h.is_packed() {
            h.iter().collect()
        } else {
            Vec::new()
        };
        for i in picks {
            let (k, v) = match packed.get(i) {
                Some(&p) => p,
                None => h.get_index(i).expect("in range"),
            };
            if withvalues && resp3 {
                kvfleet_resp::encode::array(&mut out, 2);
            }
            kvfleet_resp::encode::bulk(&mut out, k);
            if withvalues {
                kvfleet_resp::encode::bulk(&mut out, v);
            }
        }
    }
    *ctx.out = out;
    Ok(())
}

/// Indexes for the RAND commands: `count >= 0` distinct (all, in order, when
/// `count >= len`), negative with repetition.
pub fn random_picks(count: i64, len: usize) -> Vec<usize> {
    if count >= 0 {
        let c = count as usize;
        if c >= len {
            (0..len).collect()
        } else if c * 4 < len {
            // few out of many: draw distinct indexes, O(count) not O(len)
            let mut seen = std::collections::HashSet::with_capacity(c);
            let mut idx = Vec::with_capacity(c);
            while idx.len() < c {
                let i = fastrand::usize(..len);
                if seen.insert(i) {
                    idx.push(i);
                }
            }
            idx
        } else {
            let mut idx: Vec<usize> = (0..len).collect();
            fastrand::shuffle(&mut idx);
            idx.truncate(c);
            idx
        }
    } else if len == 0 {
        Vec::new()
    } else {
        (0..count.unsigned_abs())
            .map(|_| fastrand::usize(..len))
            .collect()
    }
}

/// Shared by HSCAN/SSCAN/ZSCAN: small containers come back whole with cursor 0
/// (as Redis does for listpacks and intsets); large ones by index cursor,
/// walked downward so swap-removes never hide an element.
pub fn scan_collect(
    cursor: u64,
    len: usize,
    small: bool,
    count: usize,
    mut item: impl FnMut(usize, &mut Vec<Vec<u8>>),
) -> (u64, Vec<Vec<u8>>) {
    let mut items: Vec<Vec<u8>> = Vec::new();
    if small || len == 0 {
        for i in 0..len {
            item(i, &mut items);
        }
        return (0, items);
    }
    let mut i = if cursor == 0 {
        len
    } else {
        (cursor as usize - 1).min(len)
    };
    let mut budget = count;
    while i > 0 && budget > 0 {
        i -= 1;
        budget -= 1;
        item(i, &mut items);
    }
    (if i == 0 { 0 } else { i as u64 + 1 }, items)
}

pub fn scan_write(ctx: &mut Ctx<'_, '_>, next: u64, items: &[Vec<u8>]) {
    ctx.array(2);
    ctx.bulk(itoa::Buffer::new().format(next).as_bytes());
    ctx.array(items.len());
    for it in items {
        ctx.bulk(it);
    }
}

fn hscan(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let cursor = cursor_arg(a[2])?;
    let o = scan_opts(&a[3..], false)?;
    let keep = |k: &[u8], v: &[u8], out: &mut Vec<Vec<u8>>| {
        if o.pattern.is_none_or(|p| glob_match(p, k, false)) {
            out.push(k.to_vec());
            out.push(v.to_vec());
        }
    };
    let (next, items) = match ctx.db.hash(a[1])? {
        // a packed hash comes back whole, as Redis's listpack does
        Some(h) if h.is_packed() => {
            let mut out = Vec::new();
            for (k, v) in h.iter() {
                keep(k, v, &mut out);
            }
            (0, out)
        }
        Some(h) => scan_collect(cursor, h.len(), false, o.count, |i, out| {
            let (k, v) = h.get_index(i).expect("in range");
            keep(k, v, out);
        }),
        None => (0, Vec::new()),
    };
    scan_write(ctx, next, &items);
    Ok(())
}
