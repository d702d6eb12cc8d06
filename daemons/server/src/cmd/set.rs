//! Set commands. An intset replies in numeric order, as Redis's does; a
//! table in its own order (clients must not rely on it, and the
//! differential suite sorts those replies).

use super::{
    CmdError, CmdResult, Ctx, Handler, SYNTAX, WRONGTYPE, cursor_arg, err, int_arg, is, pop_count,
    scan_opts,
};
use crate::cmd::hash::{random_picks, scan_collect, scan_write};
use crate::db::set::Member;
use crate::db::value::SetVal;
use crate::db::{Value, ValueRef};
use crate::util::glob_match;

pub fn handler(name: &str) -> Option<Handler> {
    Some(match name {
        "sadd" => sadd,
        "srem" => srem,
        "smembers" => smembers,
        "sismember" => sismember,
        "smismember" => smismember,
        "scard" => scard,
        "spop" => spop,
        "srandmember" => srandmember,
        "smove" => smove,
        "sinter" => sinter,
        "sinterstore" => sinterstore,
        "sintercard" => sintercard,
        "sunion" => sunion,
        "sunionstore" => sunionstore,
        "sdiff" => sdiff,
        "sdiffstore" => sdiffstore,
        "sscan" => sscan,
        _ => return None,
    })
}

fn reply_members(ctx: &mut Ctx<'_, '_>, s: &SetVal) {
    ctx.set_hdr(s.len());
    for m in s.iter() {
        ctx.bulk(&m);
    }
}

fn sadd(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let s = ctx.db.set_or_new(a[1])?;
    let mut n = 0;
    for m in &a[2..] {
        if s.insert(m) {
            n += 1;
        }
    }
    if n > 0 {
        ctx.dirty += 1;
    }
    ctx.int(n);
    Ok(())
}

fn srem(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let mut n = 0;
    if let Some(s) = ctx.db.set_val(a[1])? {
        for m in &a[2..] {
            if s.remove(m) {
                n += 1;
            }
        }
    }
    ctx.reply_removed(a[1], n);
    Ok(())
}

fn smembers(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let resp3 = ctx.conn.resp3;
    let mut out = std::mem::take(ctx.out);
    let r = ctx.db.set_val(a[1]).map(|s| {
        kvfleet_resp::encode::set(&mut out, s.as_ref().map_or(0, |s| s.len()), resp3);
        if let Some(s) = s {
            s.iter()
                .for_each(|m| kvfleet_resp::encode::bulk(&mut out, &m));
        }
    });
    *ctx.out = out;
    r
}

fn sismember(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let r = ctx.db.set_val(a[1])?.is_some_and(|s| s.contains(a[2]));
    ctx.int(r as i64);
    Ok(())
}

fn smismember(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let r: Vec<bool> = match ctx.db.set_val(a[1])? {
        Some(s) => a[2..].iter().map(|m| s.contains(m)).collect(),
        None => vec![false; a.len() - 2],
    };
    ctx.array(r.len());
    r.into_iter().for_each(|b| ctx.int(b as i64));
    Ok(())
}

fn scard(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let n = ctx.db.set_val(a[1])?.map_or(0, |s| s.len());
    ctx.int(n as i64);
    Ok(())
}

fn spop(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let count = pop_count(a)?;
    let Some(s) = ctx.db.set_val(a[1])? else {
        if count.is_some() {
            ctx.set_hdr(0)
        } else {
            ctx.null()
        }
        return Ok(());
    };
    if count.is_some_and(|c| c >= s.len()) {
        // the whole set, in the order of the union Redis replies with
        let all: SetVal = s.iter().collect();
        ctx.db.remove(a[1]);
        ctx.dirty += 1;
        reply_members(ctx, &all);
        return Ok(());
    }
    let n = count.unwrap_or(1).min(s.len());
    let mut popped = Vec::with_capacity(n);
    for _ in 0..n {
        let i = fastrand::usize(..s.len());
        popped.push(s.remove_index(i));
    }
    ctx.db.remove_if_empty(a[1]);
    if n > 0 {
        ctx.dirty += 1;
    }
    match count {
        None => ctx.bulk(&popped[0]),
        Some(_) => {
            ctx.set_hdr(popped.len());
            popped.iter().for_each(|m| ctx.bulk(m));
        }
    }
    Ok(())
}

fn srandmember(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let count = match a.len() {
        2 => None,
        3 => Some(int_arg(a[2])?),
        _ => return Err(SYNTAX),
    };
    if count == Some(i64::MIN) {
        return Err(err("ERR value is out of range"));
    }
    // Copy out only the picked members (never the whole set), then reply.
    let picked: Option<Vec<Box<[u8]>>> = ctx.db.set_val(a[1])?.map(|s| match count {
        None if s.is_empty() => Vec::new(),
        None => vec![Box::from(&*s.get_index(fastrand::usize(..s.len())))],
        // the whole set, in the order Redis iterates it
        Some(c) if c >= s.len() as i64 => s.iter().map(|m| Box::from(&*m)).collect(),
        Some(c) => random_picks(c, s.len())
            .into_iter()
            .map(|i| Box::from(&*s.get_index(i)))
            .collect(),
    });
    match (count, picked) {
        (None, Some(v)) if !v.is_empty() => ctx.bulk(&v[0]),
        (None, _) => ctx.null(),
        (Some(_), v) => {
            let v = v.unwrap_or_default();
            ctx.array(v.len());
            v.iter().for_each(|m| ctx.bulk(m));
        }
    }
    Ok(())
}

fn smove(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let (src, dst, m) = (a[1], a[2], a[3]);
    let in_src = match ctx.db.set_val(src)? {
        Some(s) => s.contains(m),
        None => {
            ctx.db.set_val(dst)?;
            ctx.int(0);
            return Ok(());
        }
    };
    ctx.db.set_val(dst)?;
    if src == dst {
        ctx.int(in_src as i64);
        return Ok(());
    }
    if !in_src {
        ctx.int(0);
        return Ok(());
    }
    if let Some(s) = ctx.db.set_val(src)? {
        s.remove(m);
    }
    ctx.db.remove_if_empty(src);
    ctx.db.set_or_new(dst)?.insert(m);
    ctx.dirty += 1;
    ctx.int(1);
    Ok(())
}

#[derive(Clone, Copy)]
enum Op {
    Inter,
    Union,
    Diff,
}

/// Reads the sets at `keys` (missing = empty) and combines them.
fn combine(ctx: &mut Ctx<'_, '_>, keys: &[&[u8]], op: Op) -> Result<SetVal, CmdError> {
    // Type-check (and count the access) first; then borrow every input at once.
    for k in keys {
        ctx.db.set_val(k)?;
    }
    let db = &ctx.db;
    let sets: Vec<Option<&SetVal>> = keys
        .iter()
        .map(|k| match db.view(k) {
            Some(e) => match e.value() {
                ValueRef::Set(s) => Some(s),
                _ => None,
            },
            _ => None,
        })
        .collect();
    Ok(match op {
        Op::Inter => {
            if sets.iter().any(|s| s.is_none()) {
                return Ok(SetVal::default());
            }
            let mut sets: Vec<&SetVal> = sets.into_iter().flatten().collect();
            sets.sort_by_key(|s| s.len());
            let (first, rest) = sets.split_first().expect("non-empty");
            first
                .iter()
                .filter(|m| rest.iter().all(|s| s.contains(m)))
                .collect()
        }
        Op::Union => sets.into_iter().flatten().flat_map(|s| s.iter()).collect(),
        Op::Diff => {
            let Some(Some(first)) = sets.first() else {
                return Ok(SetVal::default());
            };
            let rest: Vec<&SetVal> = sets[1..].iter().flatten().copied().collect();
            first
                .iter()
                .filter(|m| !rest.iter().any(|s| s.contains(m)))
                .collect()
        }
    })
}

fn algebra(ctx: &mut Ctx<'_, '_>, a: &[&[u8]], op: Op) -> CmdResult {
    let r = combine(ctx, &a[1..], op)?;
    reply_members(ctx, &r);
    Ok(())
}

fn algebra_store(ctx: &mut Ctx<'_, '_>, a: &[&[u8]], op: Op) -> CmdResult {
    let r = combine(ctx, &a[2..], op)?;
    let n = r.len();
    ctx.db.remove(a[1]);
    if n > 0 {
        ctx.db.set(a[1], Value::Set(Box::new(r)));
    }
    ctx.dirty += 1;
    ctx.int(n as i64);
    Ok(())
}

fn sinter(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    algebra(ctx, a, Op::Inter)
}
fn sunion(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    algebra(ctx, a, Op::Union)
}
fn sdiff(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    algebra(ctx, a, Op::Diff)
}
fn sinterstore(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    algebra_store(ctx, a, Op::Inter)
}
fn sunionstore(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    algebra_store(ctx, a, Op::Union)
}
fn sdiffstore(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    algebra_store(ctx, a, Op::Diff)
}

/// Parses `numkeys key... [LIMIT n]` for SINTERCARD/ZINTERCARD.
pub fn intercard_args<'b>(a: &[&'b [u8]]) -> Result<(Vec<&'b [u8]>, usize), CmdError> {
    let n = int_arg(a[1])?;
    if n <= 0 {
        return Err(err("ERR numkeys should be greater than 0"));
    }
    let n = n as usize;
    if n > a.len() - 2 {
        return Err(err(
            "ERR Number of keys can't be greater than number of args",
        ));
    }
    let keys = a[2..2 + n].to_vec();
    let mut limit = 0usize;
    let mut i = 2 + n;
    while i < a.len() {
        if is(a[i], "limit") && i + 1 < a.len() {
            let l = int_arg(a[i + 1]).map_err(|_| err("ERR LIMIT can't be negative"))?;
            if l < 0 {
                return Err(err("ERR LIMIT can't be negative"));
            }
            limit = l as usize;
            i += 2;
        } else {
            return Err(SYNTAX);
        }
    }
    Ok((keys, limit))
}

fn sintercard(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let (keys, limit) = intercard_args(a)?;
    let r = combine(ctx, &keys, Op::Inter)?;
    let n = if limit > 0 {
        r.len().min(limit)
    } else {
        r.len()
    };
    ctx.int(n as i64);
    Ok(())
}

fn sscan(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let cursor = cursor_arg(a[2])?;
    let o = scan_opts(&a[3..], false)?;
    let (next, items) = match ctx.db.peek(a[1]).map(|e| e.value()) {
        Some(ValueRef::Set(s)) => {
            if s.is_intset() {
                // whole, as Redis scans an intset
                let items = s
                    .iter()
                    .filter(|m| o.pattern.is_none_or(|p| glob_match(p, m, false)))
                    .map(|m: Member<'_>| m.to_vec())
                    .collect();
                (0, items)
            } else {
                scan_collect(cursor, s.len(), false, o.count, |i, out| {
                    let m = s.get_index(i);
                    if o.pattern.is_none_or(|p| glob_match(p, &m, false)) {
                        out.push(m.to_vec());
                    }
                })
            }
        }
        Some(_) => return Err(WRONGTYPE),
        None => (0, Vec::new()),
    };
    scan_write(ctx, next, &items);
    Ok(())
}
