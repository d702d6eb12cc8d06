//! List commands, including the blocking pops (which park the connection via `Ctx::block`).

use super::{
    CmdError, CmdResult, Ctx, Handler, NO_KEY, OUT_OF_RANGE, SYNTAX, WRONGTYPE, clamp_range, err,
    int_arg, is, pop_count, timeout_arg,
};
use crate::db::ValueRef;

pub fn handler(name: &str) -> Option<Handler> {
    Some(match name {
        "lpush" => lpush,
        "rpush" => rpush,
        "lpushx" => lpushx,
        "rpushx" => rpushx,
        "lpop" => lpop,
        "rpop" => rpop,
        "llen" => llen,
        "lindex" => lindex,
        "lset" => lset,
        "lrange" => lrange,
        "ltrim" => ltrim,
        "lrem" => lrem,
        "linsert" => linsert,
        "lpos" => lpos,
        "rpoplpush" => rpoplpush,
        "lmove" => lmove,
        "lmpop" => lmpop,
        "blpop" => blpop,
        "brpop" => brpop,
        "brpoplpush" => brpoplpush,
        "blmove" => blmove,
        "blmpop" => blmpop,
        _ => return None,
    })
}

fn push_generic(ctx: &mut Ctx<'_, '_>, a: &[&[u8]], left: bool, only_existing: bool) -> CmdResult {
    if only_existing && ctx.db.list(a[1])?.is_none() {
        ctx.int(0);
        return Ok(());
    }
    let l = ctx.db.list_or_new(a[1])?;
    for v in &a[2..] {
        if left {
            l.push_front((*v).into());
        } else {
            l.push_back((*v).into());
        }
    }
    let n = l.len() as i64;
    ctx.dirty += 1;
    ctx.int(n);
    Ok(())
}

fn lpush(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    push_generic(ctx, a, true, false)
}
fn rpush(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    push_generic(ctx, a, false, false)
}
fn lpushx(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    push_generic(ctx, a, true, true)
}
fn rpushx(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    push_generic(ctx, a, false, true)
}

/// Pops up to `n` from one end; deletes the key when it empties.
fn pop_n(
    ctx: &mut Ctx<'_, '_>,
    key: &[u8],
    left: bool,
    n: usize,
) -> Result<Option<Vec<Box<[u8]>>>, CmdError> {
    let Some(l) = ctx.db.list(key)? else {
        return Ok(None);
    };
    let mut v = Vec::with_capacity(n.min(l.len()));
    for _ in 0..n {
        match if left { l.pop_front() } else { l.pop_back() } {
            Some(x) => v.push(x),
            None => break,
        }
    }
    ctx.db.remove_if_empty(key);
    if !v.is_empty() {
        ctx.dirty += 1;
    }
    Ok(Some(v))
}

fn pop_generic(ctx: &mut Ctx<'_, '_>, a: &[&[u8]], left: bool) -> CmdResult {
    if a.len() > 3 {
        return Err(super::arity_error(ctx.spec.name));
    }
    let count = pop_count(a)?;
    match count {
        None => match pop_n(ctx, a[1], left, 1)? {
            Some(v) if !v.is_empty() => ctx.bulk(&v[0]),
            _ => ctx.null(),
        },
        Some(c) => {
            if ctx.db.list(a[1])?.is_none() {
                ctx.null_array();
                return Ok(());
            }
            let v = pop_n(ctx, a[1], left, c)?.unwrap_or_default();
            ctx.array(v.len());
            v.iter().for_each(|x| ctx.bulk(x));
        }
    }
    Ok(())
}

fn lpop(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    pop_generic(ctx, a, true)
}
fn rpop(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    pop_generic(ctx, a, false)
}

fn llen(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let n = ctx.db.list(a[1])?.map_or(0, |l| l.len());
    ctx.int(n as i64);
    Ok(())
}

fn lindex(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let i = int_arg(a[2])?;
    let v = ctx.db.list(a[1])?.and_then(|l| {
        let idx = if i < 0 { l.len() as i64 + i } else { i };
        if idx < 0 {
            None
        } else {
            l.get(idx as usize).cloned()
        }
    });
    ctx.opt_bulk(v.as_deref());
    Ok(())
}

fn lset(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let i = int_arg(a[2])?;
    let l = ctx.db.list(a[1])?.ok_or(NO_KEY)?;
    let idx = if i < 0 { l.len() as i64 + i } else { i };
    if idx < 0 || idx as usize >= l.len() {
        return Err(OUT_OF_RANGE);
    }
    l[idx as usize] = a[3].into();
    ctx.dirty += 1;
    ctx.ok();
    Ok(())
}

fn lrange(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let (s, e) = (int_arg(a[2])?, int_arg(a[3])?);
    let mut out = std::mem::take(ctx.out);
    let r = ctx.db.list(a[1]);
    match r {
        Err(e) => {
            *ctx.out = out;
            return Err(e);
        }
        Ok(l) => {
            let l = l.map(|l| &*l);
            match l.and_then(|l| clamp_range(s, e, l.len()).map(|r| (l, r))) {
                Some((l, (s, e))) => {
                    kvfleet_resp::encode::array(&mut out, e - s + 1);
                    for x in l.range(s..=e) {
                        kvfleet_resp::encode::bulk(&mut out, x);
                    }
                }
                None => kvfleet_resp::encode::array(&mut out, 0),
            }
        }
    }
    *ctx.out = out;
    Ok(())
}

fn ltrim(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let (s, e) = (int_arg(a[2])?, int_arg(a[3])?);
    if let Some(l) = ctx.db.list(a[1])? {
        match clamp_range(s, e, l.len()) {
            Some((s, e)) => {
                l.truncate(e + 1);
                l.drain(..s);
            }
            None => l.clear(),
        }
        ctx.db.remove_if_empty(a[1]);
        ctx.dirty += 1;
    }
    ctx.ok();
    Ok(())
}

fn lrem(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let count = int_arg(a[2])?;
    let val = a[3];
    let mut removed = 0i64;
    if let Some(l) = ctx.db.list(a[1])? {
        let limit = if count == 0 { i64::MAX } else { count.abs() };
        if count >= 0 {
            let mut i = 0;
            while i < l.len() && removed < limit {
                if &*l[i] == val {
                    l.remove(i);
                    removed += 1;
                } else {
                    i += 1;
                }
            }
        } else {
            let mut i = l.len();
            while i > 0 && removed < limit {
                i -= 1;
                if &*l[i] == val {
                    l.remove(i);
                    removed += 1;
                }
            }
        }
    }
    ctx.reply_removed(a[1], removed);
    Ok(())
}

fn linsert(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let before = if is(a[2], "before") {
        true
    } else if is(a[2], "after") {
        false
    } else {
        return Err(SYNTAX);
    };
    let Some(l) = ctx.db.list(a[1])? else {
        ctx.int(0);
        return Ok(());
    };
    match l.iter().position(|x| &**x == a[3]) {
        Some(i) => {
            l.insert(if before { i } else { i + 1 }, a[4].into());
            let n = l.len() as i64;
            ctx.dirty += 1;
            ctx.int(n);
        }
        None => ctx.int(-1),
    }
    Ok(())
}

/// # Format
/// `LPOS key element [RANK rank] [COUNT num-matches] [MAXLEN len]`
fn lpos(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let (mut rank, mut count, mut maxlen) = (1i64, None, 0i64);
    let mut i = 3;
    while i < a.len() {
        if i + 1 >= a.len() {
            return Err(SYNTAX);
        }
        if is(a[i], "rank") {
            rank = int_arg(a[i + 1])?;
            if rank == 0 {
                return Err(err(
                    "ERR RANK can't be zero: use 1 to start from the first match, 2 from the second ... or use negative to start from the end of the list",
                ));
            }
            if rank == i64::MIN {
                return Err(err("ERR value is out of range"));
            }
        } else if is(a[i], "count") {
            let c = int_arg(a[i + 1])?;
            if c < 0 {
                return Err(err("ERR COUNT can't be negative"));
            }
            count = Some(c);
        } else if is(a[i], "maxlen") {
            maxlen = int_arg(a[i + 1])?;
            if maxlen < 0 {
                return Err(err("ERR MAXLEN can't be negative"));
            }
        } else {
            return Err(SYNTAX);
        }
        i += 2;
    }
    let mut found = Vec::new();
    if let Some(l) = ctx.db.list(a[1])? {
        let want = match count {
            Some(0) => usize::MAX,
            Some(c) => c as usize,
            None => 1,
        };
        let mut skip = rank.unsigned_abs() - 1;
        let n = l.len();
        let limit = if maxlen == 0 {
            n
        } else {
            (maxlen as usize).min(n)
        };
        for step in 0..limit {
            let idx = if rank > 0 { step } else { n - 1 - step };
            if &*l[idx] == a[2] {
                if skip > 0 {
                    skip -= 1;
                    continue;
                }
                found.push(idx as i64);
                if found.len() >= want {
                    break;
                }
            }
        }
    }
    if count.is_some() {
        ctx.array(found.len());
        found.iter().for_each(|&x| ctx.int(x));
    } else {
        match found.first() {
            Some(&x) => ctx.int(x),
            None => ctx.null(),
        }
    }
    Ok(())
}

fn side(a: &[u8]) -> Result<bool, CmdError> {
    if is(a, "left") {
        Ok(true)
    } else if is(a, "right") {
        Ok(false)
    } else {
        Err(SYNTAX)
    }
}

/// Moves one element; `None` when the source is empty.
fn move_one(
    ctx: &mut Ctx<'_, '_>,
    src: &[u8],
    dst: &[u8],
    from_left: bool,
    to_left: bool,
) -> Result<Option<Box<[u8]>>, CmdError> {
    if src == dst {
        // a rotation: the key stays, with its TTL, even when it holds one
        // element (popping it first would delete the key)
        let Some(l) = ctx.db.list(src)? else {
            return Ok(None);
        };
        let Some(x) = (if from_left {
            l.pop_front()
        } else {
            l.pop_back()
        }) else {
            return Ok(None);
        };
        if to_left {
            l.push_front(x.clone());
        } else {
            l.push_back(x.clone());
        }
        ctx.dirty += 1;
        return Ok(Some(x));
    }
    if ctx.db.list(src)?.is_none() {
        return Ok(None);
    }
    ctx.db.list(dst)?; // WRONGTYPE before anything moves
    let v = pop_n(ctx, src, from_left, 1)?.and_then(|mut v| v.pop());
    if let Some(x) = &v {
        let l = ctx.db.list_or_new(dst)?;
        if to_left {
            l.push_front(x.clone());
        } else {
            l.push_back(x.clone());
        }
        ctx.dirty += 1;
    }
    Ok(v)
}

fn rpoplpush(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let v = move_one(ctx, a[1], a[2], false, true)?;
    ctx.opt_bulk(v.as_deref());
    Ok(())
}

fn lmove(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let (f, t) = (side(a[3])?, side(a[4])?);
    let v = move_one(ctx, a[1], a[2], f, t)?;
    ctx.opt_bulk(v.as_deref());
    Ok(())
}

/// Parses `numkeys key... LEFT|RIGHT [COUNT n]` starting at `a[at]`.
pub fn mpop_args<'b>(
    a: &[&'b [u8]],
    at: usize,
    sides: (&str, &str),
) -> Result<(Vec<&'b [u8]>, bool, usize), CmdError> {
    let n = int_arg(a[at]).map_err(|_| err("ERR numkeys should be greater than 0"))?;
    if n <= 0 {
        return Err(err("ERR numkeys should be greater than 0"));
    }
    let n = n as usize;
    if at + 1 + n >= a.len() {
        return Err(SYNTAX);
    }
    let keys = a[at + 1..at + 1 + n].to_vec();
    let w = a[at + 1 + n];
    let left = if is(w, sides.0) {
        true
    } else if is(w, sides.1) {
        false
    } else {
        return Err(SYNTAX);
    };
    let mut count = 1;
    let mut i = at + 2 + n;
    let mut seen = false;
    while i < a.len() {
        if is(a[i], "count") && i + 1 < a.len() && !seen {
            let c = int_arg(a[i + 1]).map_err(|_| err("ERR count should be greater than 0"))?;
            if c <= 0 {
                return Err(err("ERR count should be greater than 0"));
            }
            count = c as usize;
            seen = true;
            i += 2;
        } else {
            return Err(SYNTAX);
        }
    }
    Ok((keys, left, count))
}

/// Serves an MPOP from the first non-empty key; false when all are empty.
fn lmpop_serve(
    ctx: &mut Ctx<'_, '_>,
    keys: &[&[u8]],
    left: bool,
    count: usize,
) -> Result<bool, CmdError> {
    for k in keys {
        ctx.db.list(k)?;
    }
    for k in keys {
        if ctx.db.list(k)?.is_some() {
            let v = pop_n(ctx, k, left, count)?.unwrap_or_default();
            ctx.array(2);
            ctx.bulk(k);
            ctx.array(v.len());
            v.iter().for_each(|x| ctx.bulk(x));
            return Ok(true);
        }
    }
    Ok(false)
}

fn lmpop(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let (keys, left, count) = mpop_args(a, 1, ("left", "right"))?;
    if !lmpop_serve(ctx, &keys, left, count)? {
        ctx.null_array();
    }
    Ok(())
}

fn bpop(ctx: &mut Ctx<'_, '_>, a: &[&[u8]], left: bool) -> CmdResult {
    let timeout = timeout_arg(a[a.len() - 1])?;
    let keys = &a[1..a.len() - 1];
    for k in keys {
        if let Some(e) = ctx.db.peek(k)
            && !matches!(e.value(), ValueRef::List(_))
        {
            return Err(WRONGTYPE);
        }
    }
    for k in keys {
        if let Some(v) = pop_n(ctx, k, left, 1)?.and_then(|mut v| v.pop()) {
            ctx.array(2);
            ctx.bulk(k);
            ctx.bulk(&v);
            return Ok(());
        }
    }
    ctx.block_or_null(keys, timeout);
    Ok(())
}

fn blpop(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    bpop(ctx, a, true)
}
fn brpop(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    bpop(ctx, a, false)
}

fn bmove(ctx: &mut Ctx<'_, '_>, a: &[&[u8]], f: bool, t: bool, timeout: &[u8]) -> CmdResult {
    let timeout = timeout_arg(timeout)?;
    match move_one(ctx, a[1], a[2], f, t)? {
        Some(v) => ctx.bulk(&v),
        None => ctx.block_or_null(&a[1..2], timeout),
    }
    Ok(())
}

fn brpoplpush(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    bmove(ctx, a, false, true, a[3])
}

fn blmove(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let (f, t) = (side(a[3])?, side(a[4])?);
    bmove(ctx, a, f, t, a[5])
}

fn blmpop(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let timeout = timeout_arg(a[1])?;
    let (keys, left, count) = mpop_args(a, 2, ("left", "right"))?;
    if !lmpop_serve(ctx, &keys, left, count)? {
        ctx.block_or_null(&keys, timeout);
    }
    Ok(())
}
