//! Sorted-set commands. Ranges are computed into a vector of (member, score)
//! first and replied after, so one range walker serves ZRANGE in all its forms,
//! the STORE variants and the REMRANGE commands.

use crate::db::Bytes;
use std::ops::Bound;

use super::{
    CmdError, CmdResult, Ctx, Handler, NOT_FLOAT, SYNTAX, WRONGTYPE, clamp_range, cursor_arg, err,
    int_arg, is, pop_count, scan_opts, timeout_arg,
};
use crate::cmd::hash::{random_picks, scan_collect, scan_write};
use crate::db::{Score, Value, ValueRef, ZSet};
use crate::util::{self, glob_match};

pub fn handler(name: &str) -> Option<Handler> {
    Some(match name {
        "zadd" => zadd,
        "zincrby" => zincrby,
        "zrem" => zrem,
        "zcard" => zcard,
        "zcount" => zcount,
        "zlexcount" => zlexcount,
        "zscore" => zscore,
        "zmscore" => zmscore,
        "zrank" => zrank,
        "zrevrank" => zrevrank,
        "zrange" => zrange,
        "zrangestore" => zrangestore,
        "zrangebyscore" => zrangebyscore,
        "zrevrangebyscore" => zrevrangebyscore,
        "zrangebylex" => zrangebylex,
        "zrevrangebylex" => zrevrangebylex,
        "zrevrange" => zrevrange,
        "zremrangebyrank" => zremrangebyrank,
        "zremrangebyscore" => zremrangebyscore,
        "zremrangebylex" => zremrangebylex,
        "zpopmin" => zpopmin,
        "zpopmax" => zpopmax,
        "bzpopmin" => bzpopmin,
        "bzpopmax" => bzpopmax,
        "zmpop" => zmpop,
        "bzmpop" => bzmpop,
        "zrandmember" => zrandmember,
        "zunion" => zunion,
        "zinter" => zinter,
        "zdiff" => zdiff,
        "zunionstore" => zunionstore,
        "zinterstore" => zinterstore,
        "zdiffstore" => zdiffstore,
        "zintercard" => zintercard,
        "zscan" => zscan,
        _ => return None,
    })
}

type Items = Vec<(Box<[u8]>, f64)>;

/// Writes (member, score) pairs: flat in RESP2, pairs in RESP3 (or always
/// pairs when `nested`, as ZMPOP does).
fn reply_items(ctx: &mut Ctx<'_, '_>, items: &Items, withscores: bool, nested: bool) {
    let pairs = withscores && (ctx.resp3() || nested);
    ctx.array(if withscores && !pairs {
        items.len() * 2
    } else {
        items.len()
    });
    for (m, s) in items {
        if pairs {
            ctx.array(2);
        }
        ctx.bulk(m);
        if withscores {
            ctx.double(*s);
        }
    }
}

// === ranges ===

#[derive(Clone, Copy, Debug)]
struct ScoreBound {
    v: f64,
    excl: bool,
}

fn parse_score_bound(a: &[u8]) -> Result<ScoreBound, CmdError> {
    let bad = || err("ERR min or max is not a float");
    let (excl, s) = if a.first() == Some(&b'(') {
        (true, &a[1..])
    } else {
        (false, a)
    };
    let v = util::parse_f64(s).ok_or_else(bad)?;
    Ok(ScoreBound { v, excl })
}

fn score_ge(s: f64, min: ScoreBound) -> bool {
    if min.excl { s > min.v } else { s >= min.v }
}
fn score_le(s: f64, max: ScoreBound) -> bool {
    if max.excl { s < max.v } else { s <= max.v }
}

#[derive(Clone, Debug)]
enum LexBound {
    Min,
    Max,
    Incl(Box<[u8]>),
    Excl(Box<[u8]>),
}

fn parse_lex_bound(a: &[u8]) -> Result<LexBound, CmdError> {
    match a.first() {
        Some(b'-') if a.len() == 1 => Ok(LexBound::Min),
        Some(b'+') if a.len() == 1 => Ok(LexBound::Max),
        Some(b'[') => Ok(LexBound::Incl(a[1..].into())),
        Some(b'(') => Ok(LexBound::Excl(a[1..].into())),
        _ => Err(err("ERR min or max not valid string range item")),
    }
}

fn lex_ge(m: &[u8], min: &LexBound) -> bool {
    match min {
        LexBound::Min => true,
        LexBound::Max => false,
        LexBound::Incl(x) => m >= &x[..],
        LexBound::Excl(x) => m > &x[..],
    }
}
fn lex_le(m: &[u8], max: &LexBound) -> bool {
    match max {
        LexBound::Min => false,
        LexBound::Max => true,
        LexBound::Incl(x) => m <= &x[..],
        LexBound::Excl(x) => m < &x[..],
    }
}

/// The member a bound names (none for `-` and `+`).
fn lex_member(b: &LexBound) -> Option<&[u8]> {
    match b {
        LexBound::Incl(x) | LexBound::Excl(x) => Some(x),
        LexBound::Min | LexBound::Max => None,
    }
}

enum RangeBy {
    Rank(i64, i64),
    Score(ScoreBound, ScoreBound),
    Lex(LexBound, LexBound),
}

struct RangeReq {
    by: RangeBy,
    rev: bool,
    /// (offset, count); count < 0 means all.
    limit: Option<(i64, i64)>,
}

/// Visits the members of `z` in the range, in reply order, without copying them.
fn range_visit(z: &ZSet, r: &RangeReq, mut f: impl FnMut(&[u8], f64)) {
    let (off, cnt) = r.limit.unwrap_or((0, -1));
    if off < 0 {
        return;
    }
    let take = if cnt < 0 { usize::MAX } else { cnt as usize };
    let off = off as usize;
    match &r.by {
        RangeBy::Rank(s, e) => {
            if let Some((s, e)) = clamp_range(*s, *e, z.len()) {
                let n = e - s + 1;
                if r.rev {
                    z.down_from(s).take(n).for_each(|(m, s)| f(m, s));
                } else {
                    z.from_rank(s).take(n).for_each(|(m, s)| f(m, s));
                }
            }
        }
        RangeBy::Score(min, max) => {
            if r.rev {
                z.up_to_score(max.v)
                    .rev()
                    .skip_while(|(_, s)| !score_le(*s, *max))
                    .take_while(|(_, s)| score_ge(*s, *min))
                    .skip(off)
                    .take(take)
                    .for_each(|(m, s)| f(m, s));
            } else {
                z.from_score(min.v)
                    .skip_while(|(_, s)| !score_ge(*s, *min))
                    .take_while(|(_, s)| score_le(*s, *max))
                    .skip(off)
                    .take(take)
                    .for_each(|(m, s)| f(m, s));
            }
        }
        RangeBy::Lex(min, max) => {
            // start at the bound where the set allows it (one score, big)
            if r.rev {
                lex_member(max)
                    .and_then(|x| z.up_to_member(x))
                    .unwrap_or_else(|| z.iter())
                    .rev()
                    .skip_while(|(m, _)| !lex_le(m, max))
                    .take_while(|(m, _)| lex_ge(m, min))
                    .skip(off)
                    .take(take)
                    .for_each(|(m, s)| f(m, s));
            } else {
                lex_member(min)
                    .and_then(|x| z.from_member(x))
                    .unwrap_or_else(|| z.iter())
                    .skip_while(|(m, _)| !lex_ge(m, min))
                    .take_while(|(m, _)| lex_le(m, max))
                    .skip(off)
                    .take(take)
                    .for_each(|(m, s)| f(m, s));
            }
        }
    }
}

/// Items of `z` in the range, in reply order.
fn range_items(z: &ZSet, r: &RangeReq) -> Items {
    let mut out = Items::new();
    range_visit(z, r, |m, s| out.push((m.into(), s)));
    out
}

fn range_count(ctx: &mut Ctx<'_, '_>, key: &[u8], r: &RangeReq) -> Result<usize, CmdError> {
    let Some(z) = ctx.db.zset(key)? else {
        return Ok(0);
    };
    // a big set counts by rank where it can (ZCOUNT, ZLEXCOUNT)
    let counted = match (&r.by, r.limit) {
        (RangeBy::Score(min, max), None) => z.count_scores((min.v, min.excl), (max.v, max.excl)),
        (RangeBy::Lex(min, max), None) => match (lex_start(min), lex_end(max)) {
            (Some(lo), Some(hi)) => z.count_members(lo, hi),
            _ => Some(0),
        },
        _ => None,
    };
    Ok(counted.unwrap_or_else(|| {
        let mut n = 0;
        range_visit(z, r, |_, _| n += 1);
        n
    }))
}

/// A lex range's lower end as a bound on members; `None`: nothing is
/// above it (`+`).
fn lex_start(b: &LexBound) -> Option<Bound<&[u8]>> {
    match b {
        LexBound::Min => Some(Bound::Unbounded),
        LexBound::Max => None,
        LexBound::Incl(x) => Some(Bound::Included(x)),
        LexBound::Excl(x) => Some(Bound::Excluded(x)),
    }
}

/// A lex range's upper end; `None`: nothing is below it (`-`).
fn lex_end(b: &LexBound) -> Option<Bound<&[u8]>> {
    match b {
        LexBound::Min => None,
        LexBound::Max => Some(Bound::Unbounded),
        LexBound::Incl(x) => Some(Bound::Included(x)),
        LexBound::Excl(x) => Some(Bound::Excluded(x)),
    }
}

fn zset_items(ctx: &mut Ctx<'_, '_>, key: &[u8], r: &RangeReq) -> Result<Items, CmdError> {
    Ok(ctx
        .db
        .zset(key)?
        .map(|z| range_items(z, r))
        .unwrap_or_default())
}

// === ZADD and point commands ===

/// # Format
/// `ZADD key [NX | XX] [GT | LT] [CH] [INCR] score member [score member ...]`
fn zadd(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let (mut nx, mut xx, mut gt, mut lt, mut ch, mut incr) =
        (false, false, false, false, false, false);
    let mut i = 2;
    while i < a.len() {
        let o = a[i];
        if is(o, "nx") {
            nx = true;
        } else if is(o, "xx") {
            xx = true;
        } else if is(o, "gt") {
            gt = true;
        } else if is(o, "lt") {
            lt = true;
        } else if is(o, "ch") {
            ch = true;
        } else if is(o, "incr") {
            incr = true;
        } else {
            break;
        }
        i += 1;
    }
    let rest = &a[i..];
    if rest.is_empty() || !rest.len().is_multiple_of(2) {
        return Err(SYNTAX);
    }
    if nx && xx {
        return Err(err(
            "ERR XX and NX options at the same time are not compatible",
        ));
    }
    if (nx && (gt || lt)) || (gt && lt) {
        return Err(err(
            "ERR GT, LT, and/or NX options at the same time are not compatible",
        ));
    }
    if incr && rest.len() > 2 {
        return Err(err(
            "ERR INCR option supports a single increment-element pair",
        ));
    }
    let mut pairs = Vec::with_capacity(rest.len() / 2);
    for p in rest.chunks(2) {
        pairs.push((util::parse_f64(p[0]).ok_or(NOT_FLOAT)?, p[1]));
    }
    let flags = AddFlags {
        nx,
        xx,
        gt,
        lt,
        ch,
        incr,
    };
    add_parsed(ctx, a[1], flags, pairs)
}

/// ZADD's options (checked for conflicts by the caller).
#[derive(Debug, Default, Clone, Copy)]
pub struct AddFlags {
    pub nx: bool,
    pub xx: bool,
    pub gt: bool,
    pub lt: bool,
    pub ch: bool,
    pub incr: bool,
}

/// ZADD after parsing (GEOADD comes here with its geohash scores).
pub fn add_parsed(
    ctx: &mut Ctx<'_, '_>,
    key: &[u8],
    flags: AddFlags,
    pairs: Vec<(f64, &[u8])>,
) -> CmdResult {
    let AddFlags {
        nx,
        xx,
        gt,
        lt,
        ch,
        incr,
    } = flags;
    if xx && ctx.db.zset(key)?.is_none() {
        if incr {
            ctx.null()
        } else {
            ctx.int(0)
        }
        return Ok(());
    }
    let z = ctx.db.zset_or_new(key)?;
    let (mut added, mut changed) = (0, 0);
    let mut incr_result = None;
    for (score, m) in pairs {
        let cur = z.score(m);
        let mut new = score;
        if let Some(c) = cur {
            if nx {
                continue;
            }
            if incr {
                new = c + score;
                if new.is_nan() {
                    ctx.db.remove_if_empty(key);
                    return Err(err("ERR resulting score is not a number (NaN)"));
                }
            }
            if (gt && new <= c) || (lt && new >= c) {
                continue;
            }
            if new != c {
                z.insert(m, new);
                changed += 1;
            }
            incr_result = Some(new);
        } else {
            if xx {
                continue;
            }
            z.insert(m, new);
            added += 1;
            incr_result = Some(new);
        }
    }
    ctx.db.remove_if_empty(key);
    if added + changed > 0 {
        ctx.dirty += 1;
    }
    if incr {
        match incr_result {
            Some(s) => ctx.double(s),
            None => ctx.null(),
        }
    } else {
        ctx.int(if ch { added + changed } else { added });
    }
    Ok(())
}

fn zincrby(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let by = util::parse_f64(a[2]).ok_or(NOT_FLOAT)?;
    let z = ctx.db.zset_or_new(a[1])?;
    // a new member takes the increment itself: -0 stays -0 in the reply, as in Redis
    let new = z.score(a[3]).map_or(by, |c| c + by);
    if new.is_nan() {
        ctx.db.remove_if_empty(a[1]);
        return Err(err("ERR resulting score is not a number (NaN)"));
    }
    z.insert(a[3], new);
    ctx.dirty += 1;
    ctx.double(new);
    Ok(())
}

fn zrem(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let mut n = 0;
    if let Some(z) = ctx.db.zset(a[1])? {
        for m in &a[2..] {
            if z.remove(m).is_some() {
                n += 1;
            }
        }
    }
    ctx.reply_removed(a[1], n);
    Ok(())
}

fn zcard(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let n = ctx.db.zset(a[1])?.map_or(0, |z| z.len());
    ctx.int(n as i64);
    Ok(())
}

fn zcount(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let (min, max) = (parse_score_bound(a[2])?, parse_score_bound(a[3])?);
    let r = RangeReq {
        by: RangeBy::Score(min, max),
        rev: false,
        limit: None,
    };
    let n = range_count(ctx, a[1], &r)?;
    ctx.int(n as i64);
    Ok(())
}

fn zlexcount(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let (min, max) = (parse_lex_bound(a[2])?, parse_lex_bound(a[3])?);
    let r = RangeReq {
        by: RangeBy::Lex(min, max),
        rev: false,
        limit: None,
    };
    let n = range_count(ctx, a[1], &r)?;
    ctx.int(n as i64);
    Ok(())
}

fn zscore(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    match ctx.db.zset(a[1])?.and_then(|z| z.score(a[2])) {
        Some(s) => ctx.double(s),
        None => ctx.null(),
    }
    Ok(())
}

fn zmscore(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let v: Vec<Option<f64>> = match ctx.db.zset(a[1])? {
        Some(z) => a[2..].iter().map(|m| z.score(m)).collect(),
        None => vec![None; a.len() - 2],
    };
    ctx.array(v.len());
    for s in v {
        match s {
            Some(s) => ctx.double(s),
            None => ctx.null(),
        }
    }
    Ok(())
}

fn rank_generic(ctx: &mut Ctx<'_, '_>, a: &[&[u8]], rev: bool) -> CmdResult {
    let r = ctx
        .db
        .zset(a[1])?
        .and_then(|z| z.rank(a[2]).map(|r| if rev { z.len() - 1 - r } else { r }));
    match r {
        Some(r) => ctx.int(r as i64),
        None => ctx.null(),
    }
    Ok(())
}

fn zrank(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    rank_generic(ctx, a, false)
}
fn zrevrank(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    rank_generic(ctx, a, true)
}

// === ZRANGE family ===

#[derive(Clone, Copy, PartialEq)]
enum Style {
    /// ZRANGE / ZRANGESTORE with options
    Auto,
    Score,
    Lex,
    Rank,
}

/// Parses a range command from `a[min_at]` on. Returns the request and WITHSCORES.
fn parse_range(
    a: &[&[u8]],
    min_at: usize,
    style: Style,
    rev_in: bool,
    store: bool,
) -> Result<(RangeReq, bool), CmdError> {
    let (mut by_score, mut by_lex, mut rev, mut withscores) =
        (style == Style::Score, style == Style::Lex, rev_in, false);
    let mut limit = None;
    let mut i = min_at + 2;
    while i < a.len() {
        let o = a[i];
        if style == Style::Auto && is(o, "byscore") {
            by_score = true;
        } else if style == Style::Auto && is(o, "bylex") {
            by_lex = true;
        } else if style == Style::Auto && is(o, "rev") {
            rev = true;
        } else if !store && is(o, "withscores") && style != Style::Lex {
            withscores = true;
        } else if style != Style::Rank && is(o, "limit") && i + 2 < a.len() {
            limit = Some((int_arg(a[i + 1])?, int_arg(a[i + 2])?));
            i += 2;
        } else {
            return Err(SYNTAX);
        }
        i += 1;
    }
    if by_score && by_lex {
        return Err(SYNTAX);
    }
    if limit.is_some() && !by_score && !by_lex {
        return Err(err(
            "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX",
        ));
    }
    if withscores && by_lex {
        return Err(err(
            "ERR syntax error, WITHSCORES not supported in combination with BYLEX",
        ));
    }
    // With REV the first bound is the maximum, except for ranks.
    let (lo, hi) = if rev && (by_score || by_lex) {
        (a[min_at + 1], a[min_at])
    } else {
        (a[min_at], a[min_at + 1])
    };
    let by = if by_score {
        RangeBy::Score(parse_score_bound(lo)?, parse_score_bound(hi)?)
    } else if by_lex {
        RangeBy::Lex(parse_lex_bound(lo)?, parse_lex_bound(hi)?)
    } else {
        RangeBy::Rank(int_arg(lo)?, int_arg(hi)?)
    };
    Ok((RangeReq { by, rev, limit }, withscores))
}

fn range_cmd(ctx: &mut Ctx<'_, '_>, a: &[&[u8]], style: Style, rev: bool) -> CmdResult {
    let (r, ws) = parse_range(a, 2, style, rev, false)?;
    let items = zset_items(ctx, a[1], &r)?;
    reply_items(ctx, &items, ws, false);
    Ok(())
}

fn zrange(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    range_cmd(ctx, a, Style::Auto, false)
}
fn zrangebyscore(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    range_cmd(ctx, a, Style::Score, false)
}
fn zrevrangebyscore(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    range_cmd(ctx, a, Style::Score, true)
}
fn zrangebylex(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    range_cmd(ctx, a, Style::Lex, false)
}
fn zrevrangebylex(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    range_cmd(ctx, a, Style::Lex, true)
}
fn zrevrange(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    range_cmd(ctx, a, Style::Rank, true)
}

fn store_items(ctx: &mut Ctx<'_, '_>, dst: &[u8], items: &Items) {
    ctx.db.remove(dst);
    if !items.is_empty() {
        let longest = items.iter().map(|(m, _)| m.len()).max().unwrap_or(0);
        let mut z = ZSet::sized(items.len(), longest);
        for (m, s) in items {
            z.insert(m, *s);
        }
        ctx.db.set(dst, Value::ZSet(Box::new(z)));
    }
    ctx.dirty += 1;
    ctx.int(items.len() as i64);
}

fn zrangestore(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let (r, _) = parse_range(a, 3, Style::Auto, false, true)?;
    let items = zset_items(ctx, a[2], &r)?;
    store_items(ctx, a[1], &items);
    Ok(())
}

fn remrange(ctx: &mut Ctx<'_, '_>, key: &[u8], r: RangeReq) -> CmdResult {
    let items = zset_items(ctx, key, &r)?;
    if let Some(z) = ctx.db.zset(key)? {
        for (m, _) in &items {
            z.remove(m);
        }
        ctx.db.remove_if_empty(key);
    }
    if !items.is_empty() {
        ctx.dirty += 1;
    }
    ctx.int(items.len() as i64);
    Ok(())
}

fn zremrangebyrank(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let r = RangeReq {
        by: RangeBy::Rank(int_arg(a[2])?, int_arg(a[3])?),
        rev: false,
        limit: None,
    };
    remrange(ctx, a[1], r)
}
fn zremrangebyscore(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let r = RangeReq {
        by: RangeBy::Score(parse_score_bound(a[2])?, parse_score_bound(a[3])?),
        rev: false,
        limit: None,
    };
    remrange(ctx, a[1], r)
}
fn zremrangebylex(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let r = RangeReq {
        by: RangeBy::Lex(parse_lex_bound(a[2])?, parse_lex_bound(a[3])?),
        rev: false,
        limit: None,
    };
    remrange(ctx, a[1], r)
}

// === pops ===

fn pop_items(ctx: &mut Ctx<'_, '_>, key: &[u8], max: bool, n: usize) -> Result<Items, CmdError> {
    let Some(z) = ctx.db.zset(key)? else {
        return Ok(Items::new());
    };
    let mut out = Items::new();
    for _ in 0..n {
        let first = if max {
            z.iter().next_back()
        } else {
            z.iter().next()
        };
        let Some(m) = first.map(|(m, _)| Bytes::from(m)) else {
            break;
        };
        let s = z.remove(&m).expect("present");
        out.push((m, s));
    }
    ctx.db.remove_if_empty(key);
    if !out.is_empty() {
        ctx.dirty += 1;
    }
    Ok(out)
}

fn zpop(ctx: &mut Ctx<'_, '_>, a: &[&[u8]], max: bool) -> CmdResult {
    let count = pop_count(a)?;
    let items = pop_items(ctx, a[1], max, count.unwrap_or(1))?;
    if count.is_none() && ctx.resp3() {
        // a single pop is a flat [member, score] even in RESP3
        ctx.array(items.len() * 2);
        for (m, s) in &items {
            ctx.bulk(m);
            ctx.double(*s);
        }
    } else {
        reply_items(ctx, &items, true, false);
    }
    Ok(())
}

fn zpopmin(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    zpop(ctx, a, false)
}
fn zpopmax(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    zpop(ctx, a, true)
}

fn bzpop(ctx: &mut Ctx<'_, '_>, a: &[&[u8]], max: bool) -> CmdResult {
    let timeout = timeout_arg(a[a.len() - 1])?;
    let keys = &a[1..a.len() - 1];
    for k in keys {
        ctx.db.zset(k)?;
    }
    for k in keys {
        let items = pop_items(ctx, k, max, 1)?;
        if let Some((m, s)) = items.first() {
            ctx.array(3);
            ctx.bulk(k);
            ctx.bulk(m);
            ctx.double(*s);
            return Ok(());
        }
    }
    ctx.block_or_null(keys, timeout);
    Ok(())
}

fn bzpopmin(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    bzpop(ctx, a, false)
}
fn bzpopmax(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    bzpop(ctx, a, true)
}

fn zmpop_serve(
    ctx: &mut Ctx<'_, '_>,
    keys: &[&[u8]],
    max: bool,
    count: usize,
) -> Result<bool, CmdError> {
    for k in keys {
        ctx.db.zset(k)?;
    }
    for k in keys {
        if ctx.db.zset(k)?.is_some() {
            let items = pop_items(ctx, k, !max, count)?;
            ctx.array(2);
            ctx.bulk(k);
            reply_items(ctx, &items, true, true);
            return Ok(true);
        }
    }
    Ok(false)
}

fn zmpop(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let (keys, min, count) = crate::cmd::list::mpop_args(a, 1, ("min", "max"))?;
    if !zmpop_serve(ctx, &keys, min, count)? {
        ctx.null_array();
    }
    Ok(())
}

fn bzmpop(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let timeout = timeout_arg(a[1])?;
    let (keys, min, count) = crate::cmd::list::mpop_args(a, 2, ("min", "max"))?;
    if !zmpop_serve(ctx, &keys, min, count)? {
        ctx.block_or_null(&keys, timeout);
    }
    Ok(())
}

fn zrandmember(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let (count, ws) = match a.len() {
        2 => (None, false),
        3 => (Some(int_arg(a[2])?), false),
        4 if is(a[3], "withscores") => (Some(int_arg(a[2])?), true),
        _ => return Err(SYNTAX),
    };
    if let Some(c) = count
        && ws
        && c.checked_mul(2).is_none()
    {
        return Err(err("ERR value is out of range"));
    }
    let items: Items = match ctx.db.zset(a[1])? {
        Some(z) => {
            let by_index = |i: usize| {
                let (m, s) = z.get_index(i).expect("in range");
                (Bytes::from(m), s)
            };
            match count {
                None => vec![by_index(fastrand::usize(..z.len()))],
                // the whole set: Redis walks its listpack from the tail here
                Some(c) if c >= z.len() as i64 => {
                    z.iter().rev().map(|(m, s)| (m.into(), s)).collect()
                }
                Some(c) => {
                    // a packed set is walked once here, not once per pick
                    let packed: Vec<(&[u8], f64)> = if z.is_packed() {
                        z.iter().collect()
                    } else {
                        Vec::new()
                    };
                    random_picks(c, z.len())
                        .into_iter()
                        .map(|i| match packed.get(i) {
                            Some(&(m, s)) => (Bytes::from(m), s),
                            None => by_index(i),
                        })
                        .collect()
                }
            }
        }
        None => Items::new(),
    };
    match count {
        None => match items.first() {
            Some((m, _)) => ctx.bulk(m),
            None => ctx.null(),
        },
        Some(_) => reply_items(ctx, &items, ws, false),
    }
    Ok(())
}

// === set algebra ===

#[derive(Clone, Copy)]
enum Op {
    Union,
    Inter,
    Diff,
}

#[derive(Clone, Copy)]
enum Agg {
    Sum,
    Min,
    Max,
}

fn agg(a: Agg, x: f64, y: f64) -> f64 {
    match a {
        Agg::Sum => {
            let r = x + y;
            if r.is_nan() { 0.0 } else { r }
        }
        Agg::Min => x.min(y),
        Agg::Max => x.max(y),
    }
}

/// Reads a zset or a plain set (scores 1) as (member, score) pairs.
fn input(ctx: &mut Ctx<'_, '_>, key: &[u8]) -> Result<Option<Items>, CmdError> {
    match ctx.db.get(key).map(|e| e.value()) {
        None => Ok(None),
        Some(ValueRef::ZSet(z)) => Ok(Some(z.iter().map(|(m, s)| (m.into(), s)).collect())),
        Some(ValueRef::Set(s)) => Ok(Some(s.iter().map(|m| (Box::from(&*m), 1.0)).collect())),
        Some(_) => Err(WRONGTYPE),
    }
}

/// `numkeys key... [WEIGHTS w...] [AGGREGATE SUM|MIN|MAX] [WITHSCORES]` from `a[at]`.
fn algebra(
    ctx: &mut Ctx<'_, '_>,
    a: &[&[u8]],
    at: usize,
    op: Op,
    store: bool,
) -> Result<(Items, bool), CmdError> {
    let n = int_arg(a[at])?;
    if n < 1 {
        return Err(err(format!(
            "ERR at least 1 input key is needed for '{}' command",
            ctx.spec.name
        )));
    }
    let n = n as usize;
    if n > a.len() - at - 1 {
        return Err(SYNTAX);
    }
    let keys = &a[at + 1..at + 1 + n];
    let mut weights = vec![1.0; n];
    let mut aggregate = Agg::Sum;
    let mut ws = false;
    let mut i = at + 1 + n;
    while i < a.len() {
        let rest = a.len() - i - 1;
        if !matches!(op, Op::Diff) && is(a[i], "weights") && rest >= n {
            for (j, w) in weights.iter_mut().enumerate() {
                *w = util::parse_f64(a[i + 1 + j])
                    .ok_or_else(|| err("ERR weight value is not a float"))?;
            }
            i += n + 1;
        } else if !matches!(op, Op::Diff) && is(a[i], "aggregate") && rest >= 1 {
            let v = a[i + 1];
            aggregate = if is(v, "sum") {
                Agg::Sum
            } else if is(v, "min") {
                Agg::Min
            } else if is(v, "max") {
                Agg::Max
            } else {
                return Err(SYNTAX);
            };
            i += 2;
        } else if !store && is(a[i], "withscores") {
            ws = true;
            i += 1;
        } else {
            return Err(SYNTAX);
        }
    }
    Ok((combine(ctx, keys, &weights, aggregate, op)?, ws))
}

/// Combines the zsets (or plain sets, scores 1) at `keys`, weighted, into
/// (member, score) pairs in score order.
fn combine(
    ctx: &mut Ctx<'_, '_>,
    keys: &[&[u8]],
    weights: &[f64],
    aggregate: Agg,
    op: Op,
) -> Result<Items, CmdError> {
    let mut inputs = Vec::with_capacity(keys.len());
    for k in keys {
        inputs.push(input(ctx, k)?);
    }
    let weigh = |s: f64, w: f64| {
        let r = s * w;
        if r.is_nan() { 0.0 } else { r }
    };
    let mut acc: indexmap::IndexMap<Box<[u8]>, f64, crate::db::Hasher> = Default::default();
    match op {
        Op::Union => {
            for (inp, w) in inputs.iter().zip(weights) {
                for (m, s) in inp.iter().flatten() {
                    let v = weigh(*s, *w);
                    acc.entry(m.clone())
                        .and_modify(|x| *x = agg(aggregate, *x, v))
                        .or_insert(v);
                }
            }
        }
        Op::Inter => {
            if inputs.iter().all(|x| x.is_some()) {
                let maps: Vec<indexmap::IndexMap<&[u8], f64, crate::db::Hasher>> = inputs
                    .iter()
                    .map(|x| {
                        x.as_ref()
                            .expect("all some")
                            .iter()
                            .map(|(m, s)| (&m[..], *s))
                            .collect()
                    })
                    .collect();
                for (m, s) in inputs[0].as_ref().expect("some") {
                    let mut v = weigh(*s, weights[0]);
                    let mut all = true;
                    for (j, mp) in maps.iter().enumerate().skip(1) {
                        match mp.get(&m[..]) {
                            Some(x) => v = agg(aggregate, v, weigh(*x, weights[j])),
                            None => {
                                all = false;
                                break;
                            }
                        }
                    }
                    if all {
                        acc.insert(m.clone(), v);
                    }
                }
            }
        }
        Op::Diff => {
            if let Some(first) = &inputs[0] {
                let others: Vec<std::collections::HashSet<&[u8]>> = inputs[1..]
                    .iter()
                    .flatten()
                    .map(|x| x.iter().map(|(m, _)| &m[..]).collect())
                    .collect();
                for (m, s) in first {
                    if !others.iter().any(|o| o.contains(&m[..])) {
                        acc.insert(m.clone(), *s);
                    }
                }
            }
        }
    }
    let mut items: Items = acc.into_iter().collect();
    items.sort_by(|x, y| Score(x.1).cmp(&Score(y.1)).then_with(|| x.0.cmp(&y.0)));
    Ok(items)
}

fn zunion(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let (items, ws) = algebra(ctx, a, 1, Op::Union, false)?;
    reply_items(ctx, &items, ws, false);
    Ok(())
}
fn zinter(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let (items, ws) = algebra(ctx, a, 1, Op::Inter, false)?;
    reply_items(ctx, &items, ws, false);
    Ok(())
}
fn zdiff(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let (items, ws) = algebra(ctx, a, 1, Op::Diff, false)?;
    reply_items(ctx, &items, ws, false);
    Ok(())
}
fn zunionstore(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let (items, _) = algebra(ctx, a, 2, Op::Union, true)?;
    store_items(ctx, a[1], &items);
    Ok(())
}
fn zinterstore(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let (items, _) = algebra(ctx, a, 2, Op::Inter, true)?;
    store_items(ctx, a[1], &items);
    Ok(())
}
fn zdiffstore(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let (items, _) = algebra(ctx, a, 2, Op::Diff, true)?;
    store_items(ctx, a[1], &items);
    Ok(())
}

fn zintercard(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let (keys, limit) = crate::cmd::set::intercard_args(a)?;
    let weights = vec![1.0; keys.len()];
    let items = combine(ctx, &keys, &weights, Agg::Sum, Op::Inter)?;
    let c = if limit > 0 {
        items.len().min(limit)
    } else {
        items.len()
    };
    ctx.int(c as i64);
    Ok(())
}

fn zscan(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let cursor = cursor_arg(a[2])?;
    let o = scan_opts(&a[3..], false)?;
    let (next, items) = match ctx.db.zset(a[1])? {
        Some(z) => {
            // a packed set is scanned in one call, as Redis does a listpack
            if z.is_packed() {
                let mut items = Vec::new();
                for (m, s) in z.iter() {
                    if o.pattern.is_none_or(|p| glob_match(p, m, false)) {
                        items.push(m.to_vec());
                        items.push(util::g17(s));
                    }
                }
                (0, items)
            } else {
                scan_collect(cursor, z.len(), false, o.count, |i, out| {
                    let (m, s) = z.get_index(i).expect("in range");
                    if o.pattern.is_none_or(|p| glob_match(p, m, false)) {
                        out.push(m.to_vec());
                        out.push(util::g17(s));
                    }
                })
            }
        }
        None => (0, Vec::new()),
    };
    scan_write(ctx, next, &items);
    Ok(())
}
