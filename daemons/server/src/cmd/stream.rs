//! Streams: XADD, XLEN, XRANGE, XREVRANGE, XDEL, XTRIM, XSETID and XREAD
//! (with BLOCK), on `db::stream::Stream`.

use super::{CmdError, CmdResult, Ctx, Handler, SYNTAX, WRONGTYPE, err, int_arg, is};
use crate::db::Value;
use crate::db::stream::{Consumer, Fields, Group, Pending, Stream, StreamId};

pub fn handler(name: &str) -> Option<Handler> {
    Some(match name {
        "xadd" => xadd,
        "xlen" => xlen,
        "xrange" => xrange,
        "xrevrange" => xrevrange,
        "xdel" => xdel,
        "xtrim" => xtrim,
        "xsetid" => xsetid,
        "xread" => xread,
        "xreadgroup" => xreadgroup,
        "xgroup" => xgroup,
        "xack" => xack,
        "xpending" => xpending,
        "xclaim" => xclaim,
        "xautoclaim" => xautoclaim,
        "xinfo" => xinfo,
        _ => return None,
    })
}

const BAD_ID: &str = "ERR Invalid stream ID specified as stream command argument";

/// Stream entries per node in Redis (`stream-node-max-entries`): `~`
/// trimming removes whole nodes of this many.
const NODE: usize = 100;

/// `ms-seq`, `ms` (seq = `missing_seq`), refusing anything else.
fn parse_id(a: &[u8], missing_seq: u64) -> Result<StreamId, CmdError> {
    let num = |b: &[u8]| -> Result<u64, CmdError> {
        if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
            return Err(err(BAD_ID));
        }
        std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| err(BAD_ID))
    };
    match a.iter().position(|&b| b == b'-') {
        Some(p) => Ok(StreamId::new(num(&a[..p])?, num(&a[p + 1..])?)),
        None => Ok(StreamId::new(num(a)?, missing_seq)),
    }
}

/// A range bound: `-`, `+`, `(id` (exclusive) or an id.
fn bound(a: &[u8], start: bool) -> Result<Option<StreamId>, CmdError> {
    match a {
        b"-" => return Ok(Some(StreamId::MIN)),
        b"+" => return Ok(Some(StreamId::MAX)),
        _ => {}
    }
    let missing = if start { 0 } else { u64::MAX };
    if let Some(rest) = a.strip_prefix(b"(") {
        let id = parse_id(rest, missing)?;
        // exclusive: one step inward
        let inward = if start { id.next() } else { id.prev() };
        return match inward {
            Some(id) => Ok(Some(id)),
            None => Err(err(if start {
                "ERR invalid start ID for the interval"
            } else {
                "ERR invalid end ID for the interval"
            })),
        };
    }
    parse_id(a, missing).map(Some)
}

fn stream_mut<'a>(
    ctx: &'a mut Ctx<'_, '_>,
    key: &[u8],
) -> Result<Option<&'a mut Stream>, CmdError> {
    match ctx.db.get(key) {
        None => Ok(None),
        Some(e) => match e.value_mut() {
            Some(Value::Stream(s)) => Ok(Some(s)),
            _ => Err(WRONGTYPE),
        },
    }
}

fn reply_entry(ctx: &mut Ctx<'_, '_>, id: &StreamId, fv: &[Box<[u8]>]) {
    ctx.array(2);
    ctx.bulk(&id.fmt());
    ctx.array(fv.len());
    for b in fv {
        ctx.bulk(b);
    }
}

/// MAXLEN/MINID trimming as parsed from XADD or XTRIM.
struct Trim {
    minid: Option<StreamId>,
    maxlen: usize,
    approx: bool,
    limit: Option<usize>,
}

/// Parses `MAXLEN|MINID [=|~] threshold [LIMIT n]` at `a[i]`; returns the
/// index after it.
fn parse_trim(a: &[&[u8]], mut i: usize, trim: &mut Option<Trim>) -> Result<usize, CmdError> {
    let minid = is(a[i], "minid");
    i += 1;
    let mut approx = false;
    if i < a.len() && (a[i] == b"~" || a[i] == b"=") {
        approx = a[i] == b"~";
        i += 1;
    }
    let Some(t) = a.get(i) else {
        return Err(SYNTAX);
    };
    let mut tr = Trim {
        minid: None,
        maxlen: 0,
        approx,
        limit: None,
    };
    if minid {
        tr.minid = Some(parse_id(t, 0)?);
    } else {
        let n = int_arg(t)?;
        if n < 0 {
            return Err(err("ERR The MAXLEN argument must be >= 0."));
        }
        tr.maxlen = n as usize;
    }
    i += 1;
    if i + 1 < a.len() && is(a[i], "limit") {
        let n = int_arg(a[i + 1])?;
        if n < 0 {
            return Err(err("ERR The LIMIT argument must be >= 0."));
        }
        if !approx {
            return Err(err(
                "ERR syntax error, LIMIT cannot be used without the special ~ option",
            ));
        }
        tr.limit = Some(n as usize);
        i += 2;
    }
    *trim = Some(tr);
    Ok(i)
}

/// Removes entries from the head per `t`; returns how many went.
fn do_trim(s: &mut Stream, t: &Trim) -> usize {
    let over = |s: &Stream| match t.minid {
        Some(min) => s.entries.keys().next().is_some_and(|id| *id < min),
        None => s.entries.len() > t.maxlen,
    };
    let limit = match (t.approx, t.limit) {
        (true, Some(0)) | (true, None) => NODE * 100,
        (true, Some(l)) => l,
        (false, _) => usize::MAX,
    };
    let mut removed = 0;
    if t.approx {
        // like Redis, only whole nodes go: NODE entries at a time, while the
        // whole node is still over the threshold
        loop {
            if removed + NODE > limit || s.entries.len() < NODE {
                break;
            }
            let fits = match t.minid {
                Some(min) => s.entries.keys().nth(NODE - 1).is_some_and(|id| *id < min),
                None => s.entries.len() - NODE >= t.maxlen,
            };
            if !fits {
                break;
            }
            for _ in 0..NODE {
                s.entries.pop_first();
            }
            removed += NODE;
        }
        return removed;
    }
    while removed < limit && over(s) {
        s.entries.pop_first();
        removed += 1;
    }
    removed
}

/// Where XADD's ID is (after NOMKSTREAM and trimming options).
pub fn xadd_id_index(a: &[&[u8]]) -> Result<usize, CmdError> {
    let mut i = 2;
    let mut trim = None;
    while i < a.len() {
        if is(a[i], "nomkstream") {
            i += 1;
        } else if is(a[i], "maxlen") || is(a[i], "minid") {
            i = parse_trim(a, i, &mut trim)?;
        } else {
            break;
        }
    }
    Ok(i)
}

/// # Format
/// `XADD key [NOMKSTREAM] [MAXLEN|MINID [=|~] threshold [LIMIT count]] *|id field value [field value ...]`
fn xadd(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let key = a[1];
    let mut i = 2;
    let (mut nomk, mut trim) = (false, None);
    while i < a.len() {
        if is(a[i], "nomkstream") {
            nomk = true;
            i += 1;
        } else if is(a[i], "maxlen") || is(a[i], "minid") {
            i = parse_trim(a, i, &mut trim)?;
        } else {
            break;
        }
    }
    if i >= a.len() || (a.len() - i - 1) == 0 || !(a.len() - i - 1).is_multiple_of(2) {
        return Err(super::arity_error("xadd"));
    }
    // the ID: *, ms-*, ms-seq or ms
    let idarg = a[i];
    let explicit: Option<(u64, Option<u64>)> = if idarg == b"*" {
        None
    } else if let Some(ms) = idarg.strip_suffix(b"-*") {
        if ms.contains(&b'-') {
            return Err(err(BAD_ID));
        }
        Some((parse_id(ms, 0)?.ms, None))
    } else {
        let id = parse_id(idarg, 0)?;
        if id == StreamId::MIN {
            return Err(err("ERR The ID specified in XADD must be greater than 0-0"));
        }
        Some((id.ms, Some(id.seq)))
    };
    let now = ctx.now;
    if stream_mut(ctx, key)?.is_none() {
        if nomk {
            ctx.null();
            return Ok(());
        }
        ctx.db.set(key, Value::Stream(Box::default()));
    }
    let s = stream_mut(ctx, key)?.expect("just made");
    let last = s.last_id;
    let id = match explicit {
        None => {
            if now > last.ms {
                StreamId::new(now, 0)
            } else {
                last.next().ok_or_else(|| {
                    err("ERR The stream has exhausted the last possible ID, unable to add more items")
                })?
            }
        }
        Some((ms, None)) => {
            if ms > last.ms {
                StreamId::new(ms, 0)
            } else if ms == last.ms && last.seq < u64::MAX {
                StreamId::new(ms, last.seq + 1)
            } else {
                return Err(xadd_too_small(ctx, key));
            }
        }
        Some((ms, Some(seq))) => {
            let id = StreamId::new(ms, seq);
            if id <= last {
                return Err(xadd_too_small(ctx, key));
            }
            id
        }
    };
    let s = stream_mut(ctx, key)?.expect("just made");
    s.entries
        .insert(id, a[i + 1..].iter().map(|b| Box::from(*b)).collect());
    s.last_id = id;
    s.entries_added += 1;
    if let Some(t) = &trim {
        do_trim(s, t);
    }
    ctx.dirty += 1;
    ctx.bulk(&id.fmt());
    Ok(())
}

/// XADD's "too small" error; a stream this command just created empty goes again.
fn xadd_too_small(ctx: &mut Ctx<'_, '_>, key: &[u8]) -> CmdError {
    if let Ok(Some(s)) = stream_mut(ctx, key)
        && s.entries.is_empty()
        && s.entries_added == 0
        && s.groups.is_empty()
    {
        ctx.db.remove(key);
    }
    err("ERR The ID specified in XADD is equal or smaller than the target stream top item")
}

fn xlen(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let n = stream_mut(ctx, a[1])?.map_or(0, |s| s.len());
    ctx.int(n as i64);
    Ok(())
}

fn xrange(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    range(ctx, a, false)
}

fn xrevrange(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    range(ctx, a, true)
}

/// # Format
/// `XRANGE key start end [COUNT count]`, `XREVRANGE key end start [COUNT count]`
fn range(ctx: &mut Ctx<'_, '_>, a: &[&[u8]], rev: bool) -> CmdResult {
    let (sa, ea) = if rev { (a[3], a[2]) } else { (a[2], a[3]) };
    let start = bound(sa, true)?;
    let end = bound(ea, false)?;
    let mut count = None;
    if a.len() == 6 && is(a[4], "count") {
        let c = int_arg(a[5])?;
        count = Some(c.max(0) as usize);
    } else if a.len() != 4 {
        return Err(SYNTAX);
    }
    if count == Some(0) {
        ctx.null_array();
        return Ok(());
    }
    let Some(s) = stream_mut(ctx, a[1])? else {
        ctx.array(0);
        return Ok(());
    };
    let (Some(start), Some(end)) = (start, end) else {
        ctx.array(0);
        return Ok(());
    };
    if start > end {
        ctx.array(0);
        return Ok(());
    }
    let limit = count.unwrap_or(usize::MAX);
    let items: Vec<(StreamId, Fields)> = if rev {
        s.entries
            .range(start..=end)
            .rev()
            .take(limit)
            .map(|(k, v)| (*k, v.clone()))
            .collect()
    } else {
        s.entries
            .range(start..=end)
            .take(limit)
            .map(|(k, v)| (*k, v.clone()))
            .collect()
    };
    ctx.array(items.len());
    for (id, fv) in &items {
        reply_entry(ctx, id, fv);
    }
    Ok(())
}

fn xdel(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let ids = a[2..]
        .iter()
        .map(|x| parse_id(x, 0))
        .collect::<Result<Vec<_>, _>>()?;
    let Some(s) = stream_mut(ctx, a[1])? else {
        ctx.int(0);
        return Ok(());
    };
    let mut n = 0;
    for id in ids {
        if s.entries.remove(&id).is_some() {
            n += 1;
            if id > s.max_deleted {
                s.max_deleted = id;
            }
        }
    }
    if n > 0 {
        ctx.dirty += 1;
    }
    ctx.int(n);
    Ok(())
}

/// # Format
/// `XTRIM key MAXLEN|MINID [=|~] threshold [LIMIT count]`
fn xtrim(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    if !(is(a[2], "maxlen") || is(a[2], "minid")) {
        return Err(SYNTAX);
    }
    let mut trim = None;
    let i = parse_trim(a, 2, &mut trim)?;
    if i != a.len() {
        return Err(SYNTAX);
    }
    let Some(s) = stream_mut(ctx, a[1])? else {
        ctx.int(0);
        return Ok(());
    };
    let n = do_trim(s, trim.as_ref().expect("parsed"));
    if n > 0 {
        ctx.dirty += 1;
    }
    ctx.int(n as i64);
    Ok(())
}

/// # Format
/// `XSETID key last-id [ENTRIESADDED entries-added] [MAXDELETEDID max-deleted-id]`
fn xsetid(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let id = parse_id(a[2], 0)?;
    let (mut added, mut maxdel) = (None, None);
    let mut i = 3;
    while i < a.len() {
        if is(a[i], "entriesadded") && i + 1 < a.len() {
            let n = int_arg(a[i + 1])?;
            if n < 0 {
                return Err(err("ERR entries_added must be positive"));
            }
            added = Some(n as u64);
        } else if is(a[i], "maxdeletedid") && i + 1 < a.len() {
            maxdel = Some(parse_id(a[i + 1], 0)?);
        } else {
            return Err(SYNTAX);
        }
        i += 2;
    }
    if let Some(m) = maxdel
        && id < m
    {
        return Err(err(
            "ERR The ID specified in XSETID is smaller than the provided max_deleted_entry_id",
        ));
    }
    let Some(s) = stream_mut(ctx, a[1])? else {
        return Err(err("ERR no such key"));
    };
    if let Some((top, _)) = s.entries.last_key_value()
        && id < *top
    {
        return Err(err(
            "ERR The ID specified in XSETID is smaller than the target stream top item",
        ));
    }
    if let Some(n) = added
        && (n as usize) < s.len()
    {
        return Err(err(
            "ERR The entries_added specified in XSETID is smaller than the target stream length",
        ));
    }
    s.last_id = id;
    if let Some(n) = added {
        s.entries_added = n;
    }
    if let Some(m) = maxdel {
        s.max_deleted = m;
    }
    ctx.dirty += 1;
    ctx.ok();
    Ok(())
}

fn xread(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    read(ctx, a, false)
}

fn xreadgroup(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    read(ctx, a, true)
}

/// One stream's part of an XREAD/XREADGROUP reply.
type Found = (usize, Vec<(StreamId, Option<Fields>)>);

/// # Format
/// `XREAD [COUNT count] [BLOCK milliseconds] STREAMS key [key ...] id [id ...]`,
/// `XREADGROUP GROUP group consumer [COUNT count] [BLOCK milliseconds] [NOACK] STREAMS key [key ...] id [id ...]`
fn read(ctx: &mut Ctx<'_, '_>, a: &[&[u8]], grouped: bool) -> CmdResult {
    let (mut count, mut block, mut noack) = (usize::MAX, None, false);
    let mut group: Option<(&[u8], &[u8])> = None;
    let mut i = 1;
    let mut streams_at = None;
    while i < a.len() {
        let more = i + 1 < a.len();
        if is(a[i], "count") && more {
            let c = int_arg(a[i + 1])?;
            count = if c <= 0 { usize::MAX } else { c as usize };
            i += 2;
        } else if is(a[i], "block") && more {
            let ms = int_arg(a[i + 1])
                .map_err(|_| err("ERR timeout is not an integer or out of range"))?;
            if ms < 0 {
                return Err(err("ERR timeout is negative"));
            }
            block = Some(ms);
            i += 2;
        } else if is(a[i], "streams") {
            streams_at = Some(i + 1);
            break;
        } else if is(a[i], "group") && i + 2 < a.len() {
            if !grouped {
                return Err(err(
                    "ERR The GROUP option is only supported by XREADGROUP. You called XREAD instead.",
                ));
            }
            group = Some((a[i + 1], a[i + 2]));
            i += 3;
        } else if is(a[i], "noack") {
            if !grouped {
                return Err(err(
                    "ERR The NOACK option is only supported by XREADGROUP. You called XREAD instead.",
                ));
            }
            noack = true;
            i += 1;
        } else {
            return Err(SYNTAX);
        }
    }
    let Some(at) = streams_at else {
        return Err(SYNTAX);
    };
    let rest = &a[at..];
    if rest.is_empty() || !rest.len().is_multiple_of(2) {
        return Err(err(format!(
            "ERR Unbalanced {} list of streams: for each stream key an ID or '$' must be specified.",
            if grouped { "XREADGROUP" } else { "XREAD" }
        )));
    }
    if grouped && group.is_none() {
        return Err(err("ERR Missing GROUP option for XREADGROUP"));
    }
    let n = rest.len() / 2;
    let (keys, idargs) = rest.split_at(n);
    // `$` means the last ID when the command first ran: a re-run after a
    // wake-up must not move it. `None` stands for XREADGROUP's `>`.
    let mut ids: Vec<Option<StreamId>> = Vec::with_capacity(n);
    let saved = std::mem::take(&mut ctx.conn.xread_ids);
    for (j, (k, idarg)) in keys.iter().zip(idargs).enumerate() {
        if let Some((g, _)) = group {
            let has = stream_mut(ctx, k)?.is_some_and(|s| s.groups.contains_key(g));
            if !has {
                return Err(err(format!(
                    "NOGROUP No such key '{}' or consumer group '{}' in XREADGROUP with GROUP option",
                    String::from_utf8_lossy(k),
                    String::from_utf8_lossy(g)
                )));
            }
        }
        let id = if *idarg == b"$" {
            if grouped {
                return Err(err(
                    "ERR The $ ID is meaningless in the context of XREADGROUP: you want to read the history of this consumer by specifying a proper ID, or use the > ID to get new messages. The $ ID would just return an empty result set.",
                ));
            }
            Some(match saved.get(j) {
                Some(id) => *id,
                None => stream_mut(ctx, k)?.map_or(StreamId::MIN, |s| s.last_id),
            })
        } else if *idarg == b">" {
            if !grouped {
                return Err(err(
                    "ERR The > ID can be specified only when calling XREADGROUP using the GROUP <group> <consumer> option.",
                ));
            }
            None
        } else {
            Some(parse_id(idarg, 0)?)
        };
        ids.push(id);
    }
    let now = ctx.now;
    let mut found: Vec<Found> = Vec::new();
    for (j, k) in keys.iter().enumerate() {
        let Some(s) = stream_mut(ctx, k)? else {
            continue;
        };
        match (group, ids[j]) {
            (None, Some(after)) => {
                let Some(from) = after.next() else { continue };
                let items: Vec<_> = s
                    .entries
                    .range(from..)
                    .take(count)
                    .map(|(k, v)| (*k, Some(v.clone())))
                    .collect();
                if !items.is_empty() {
                    found.push((j, items));
                }
            }
            (Some((g, c)), Some(after)) => {
                // the consumer's own history (deleted entries as nil)
                let items = history(s, g, c, after, count, now);
                found.push((j, items));
            }
            (Some((g, c)), None) => {
                let items = deliver_new(s, g, c, count, noack, now);
                if !items.is_empty() {
                    found.push((j, items));
                }
            }
            (None, None) => unreachable!("> is refused for XREAD"),
        }
    }
    if grouped && !found.is_empty() {
        ctx.dirty += 1;
    }
    if found.is_empty() {
        if let Some(ms) = block
            && ctx.may_block()
        {
            ctx.conn.xread_ids = ids.iter().map(|i| i.unwrap_or(StreamId::MAX)).collect();
            let timeout = (ms > 0).then(|| std::time::Duration::from_millis(ms as u64));
            ctx.block(keys, timeout);
            return Ok(());
        }
        ctx.null_array();
        return Ok(());
    }
    if ctx.resp3() {
        ctx.map(found.len());
    } else {
        ctx.array(found.len());
    }
    for (j, items) in &found {
        if !ctx.resp3() {
            ctx.array(2);
        }
        ctx.bulk(keys[*j]);
        ctx.array(items.len());
        for (id, fv) in items {
            match fv {
                Some(fv) => reply_entry(ctx, id, fv),
                None => {
                    ctx.array(2);
                    ctx.bulk(&id.fmt());
                    ctx.null_array();
                }
            }
        }
    }
    Ok(())
}

/// The consumer, created if new, its seen time refreshed.
fn consumer<'s>(g: &'s mut Group, name: &[u8], now: u64) -> &'s mut Consumer {
    let c = g.consumers.entry(name.into()).or_default();
    c.seen_time = now;
    c
}

/// XREADGROUP `>`: entries after the group's last ID, into the PEL.
fn deliver_new(
    s: &mut Stream,
    gname: &[u8],
    cname: &[u8],
    count: usize,
    noack: bool,
    now: u64,
) -> Vec<(StreamId, Option<Fields>)> {
    let last = s.groups[gname].last_id;
    let Some(from) = last.next() else {
        return Vec::new();
    };
    let items: Vec<(StreamId, Fields)> = s
        .entries
        .range(from..)
        .take(count)
        .map(|(k, v)| (*k, v.clone()))
        .collect();
    let tomb_after = |s: &Stream, id: StreamId| has_tombstones(s, id);
    let mut reads = Vec::new();
    for (id, _) in &items {
        reads.push(tomb_after(s, *id));
    }
    if items.is_empty() {
        // nothing new: Redis neither serves nor creates the consumer
        return Vec::new();
    }
    let added = s.entries_added;
    let estimates: Vec<i64> = items.iter().map(|(id, _)| estimate_read(s, *id)).collect();
    let g = s.groups.get_mut(gname).expect("checked");
    consumer(g, cname, now);
    for (k, (id, _)) in items.iter().enumerate() {
        if g.entries_read != -1 && !reads[k] {
            g.entries_read += 1;
        } else if added > 0 {
            g.entries_read = estimates[k];
        }
        g.last_id = *id;
        if !noack {
            if let Some(old) = g.pel.get(id).map(|p| p.consumer.clone())
                && let Some(oc) = g.consumers.get_mut(&old)
            {
                oc.pel.remove(id);
            }
            g.pel.insert(
                *id,
                Pending {
                    consumer: cname.into(),
                    delivery_time: now,
                    delivery_count: 1,
                },
            );
            g.consumers
                .get_mut(cname)
                .expect("just made")
                .pel
                .insert(*id);
        }
    }
    items.into_iter().map(|(id, fv)| (id, Some(fv))).collect()
}

/// XREADGROUP with an ID: the consumer's pending entries after it.
fn history(
    s: &mut Stream,
    gname: &[u8],
    cname: &[u8],
    after: StreamId,
    count: usize,
    now: u64,
) -> Vec<(StreamId, Option<Fields>)> {
    let Some(from) = after.next() else {
        return Vec::new();
    };
    let entries = &s.entries;
    let g = s.groups.get_mut(gname).expect("checked");
    let ids: Vec<StreamId> = consumer(g, cname, now)
        .pel
        .range(from..)
        .take(count)
        .copied()
        .collect();
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        match entries.get(&id) {
            Some(fv) => {
                if let Some(p) = g.pel.get_mut(&id) {
                    p.delivery_time = now;
                    p.delivery_count += 1;
                }
                out.push((id, Some(fv.clone())));
            }
            None => out.push((id, None)),
        }
    }
    out
}

/// Redis's `streamRangeHasTombstones(s, start, NULL)`.
fn has_tombstones(s: &Stream, start: StreamId) -> bool {
    if s.entries.is_empty() || s.max_deleted == StreamId::MIN {
        return false;
    }
    if s.first_id() > s.max_deleted {
        return false;
    }
    start <= s.max_deleted
}

/// Redis's `streamEstimateDistanceFromFirstEverEntry`: -1 when unknown.
fn estimate_read(s: &Stream, id: StreamId) -> i64 {
    let added = s.entries_added as i64;
    if added == 0 {
        return 0;
    }
    if s.entries.is_empty() && id <= s.last_id {
        return added;
    }
    if id == s.last_id {
        return added;
    }
    if id > s.last_id {
        return -1;
    }
    let first = s.first_id();
    if s.max_deleted == StreamId::MIN || s.max_deleted < first {
        if id < first {
            return added - s.len() as i64;
        }
        if id == first {
            return added - s.len() as i64 + 1;
        }
    }
    -1
}

/// A group's lag, or nil when it cannot be known.
fn lag(s: &Stream, g: &Group) -> Option<i64> {
    if s.entries_added == 0 {
        return Some(0);
    }
    if g.entries_read != -1 && !has_tombstones(s, g.last_id) {
        return Some(s.entries_added as i64 - g.entries_read);
    }
    let read = estimate_read(s, g.last_id);
    (read != -1).then(|| s.entries_added as i64 - read)
}

fn nogroup(key: &[u8], group: &[u8]) -> CmdError {
    err(format!(
        "NOGROUP No such key '{}' or consumer group '{}'",
        String::from_utf8_lossy(key),
        String::from_utf8_lossy(group)
    ))
}

/// # Format
/// `XGROUP CREATE key group id|$ [MKSTREAM] [ENTRIESREAD n] | SETID key group id|$ [ENTRIESREAD n] | DESTROY key group | CREATECONSUMER key group consumer | DELCONSUMER key group consumer | HELP`
fn xgroup(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let sub = a[1];
    if is(sub, "help") && a.len() == 2 {
        ctx.help_lines(&[
            "XGROUP <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "CREATE <key> <groupname> <id|$> [option]",
            "    Create a new consumer group. Options are:",
            "    * MKSTREAM",
            "      Create the empty stream if it does not exist.",
            "    * ENTRIESREAD entries_read",
            "      Set the group's entries_read counter (internal use).",
            "CREATECONSUMER <key> <groupname> <consumer>",
            "    Create a new consumer in the specified group.",
            "DELCONSUMER <key> <groupname> <consumer>",
            "    Remove the specified consumer.",
            "DESTROY <key> <groupname>",
            "    Remove the specified group.",
            "SETID <key> <groupname> <id|$> [ENTRIESREAD entries_read]",
            "    Set the current group ID and entries_read counter.",
            "HELP",
            "    Prints this help.",
        ]);
        return Ok(());
    }
    let known = [
        "create",
        "setid",
        "destroy",
        "createconsumer",
        "delconsumer",
        "help",
    ];
    let arity_ok = match String::from_utf8_lossy(sub).to_ascii_lowercase().as_str() {
        "create" => (5..=8).contains(&a.len()),
        "setid" => a.len() == 5 || a.len() == 7,
        "destroy" => a.len() == 4,
        "createconsumer" | "delconsumer" => a.len() == 5,
        _ => false,
    };
    if !arity_ok {
        return Err(super::sub_error("xgroup", sub, &known));
    }
    let (mut mkstream, mut entries_read) = (false, -1i64);
    let create = is(sub, "create");
    let setid = is(sub, "setid");
    let mut i = 5;
    while (create || setid) && i < a.len() {
        if create && is(a[i], "mkstream") {
            mkstream = true;
            i += 1;
        } else if is(a[i], "entriesread") && i + 1 < a.len() {
            entries_read = int_arg(a[i + 1])?;
            if entries_read < -1 {
                return Err(err("ERR value for ENTRIESREAD must be positive or -1"));
            }
            i += 2;
        } else {
            return Err(err(format!(
                "ERR unknown subcommand or wrong number of arguments for '{}'. Try XGROUP HELP.",
                String::from_utf8_lossy(sub)
            )));
        }
    }
    let (key, gname) = (a[2], a[3]);
    let now = ctx.now;
    let exists = stream_mut(ctx, key)?.is_some();
    if !exists && !mkstream {
        return Err(err(
            "ERR The XGROUP subcommand requires the key to exist. Note that for CREATE you may want to use the MKSTREAM option to create an empty stream automatically.",
        ));
    }
    if exists && !create && !is(sub, "destroy") {
        let has = stream_mut(ctx, key)?.is_some_and(|s| s.groups.contains_key(gname));
        if !has {
            return Err(err(format!(
                "NOGROUP No such consumer group '{}' for key name '{}'",
                String::from_utf8_lossy(gname),
                String::from_utf8_lossy(key)
            )));
        }
    }
    if create {
        let id = if a[4] == b"$" {
            stream_mut(ctx, key)?.map_or(StreamId::MIN, |s| s.last_id)
        } else {
            parse_id(a[4], 0)?
        };
        if !exists {
            ctx.db.set(key, Value::Stream(Box::default()));
        }
        let s = stream_mut(ctx, key)?.expect("made");
        if s.groups.contains_key(gname) {
            return Err(err("BUSYGROUP Consumer Group name already exists"));
        }
        s.groups.insert(
            gname.into(),
            Group {
                last_id: id,
                entries_read,
                ..Default::default()
            },
        );
        ctx.dirty += 1;
        ctx.ok();
        return Ok(());
    }
    let s = stream_mut(ctx, key)?.expect("exists");
    if setid {
        let id = if a[4] == b"$" {
            s.last_id
        } else {
            parse_id(a[4], 0)?
        };
        let g = s.groups.get_mut(gname).expect("checked");
        g.last_id = id;
        g.entries_read = entries_read;
        ctx.dirty += 1;
        ctx.ok();
        return Ok(());
    }
    if is(sub, "destroy") {
        let n = s.groups.remove(gname).is_some();
        if n {
            ctx.dirty += 1;
        }
        ctx.int(n as i64);
        return Ok(());
    }
    let g = s.groups.get_mut(gname).expect("checked");
    let cname = a[4];
    if is(sub, "createconsumer") {
        let created = !g.consumers.contains_key(cname);
        if created {
            consumer(g, cname, now);
            ctx.dirty += 1;
        }
        ctx.int(created as i64);
        return Ok(());
    }
    // DELCONSUMER: its pending entries go with it
    let pending = match g.consumers.remove(cname) {
        Some(c) => {
            for id in &c.pel {
                g.pel.remove(id);
            }
            ctx.dirty += 1;
            c.pel.len()
        }
        None => 0,
    };
    ctx.int(pending as i64);
    Ok(())
}

/// Drops `id` from the group's PEL and its owner's; whether it was there.
fn unpend(g: &mut Group, id: StreamId) -> bool {
    match g.pel.remove(&id) {
        Some(p) => {
            if let Some(c) = g.consumers.get_mut(&p.consumer) {
                c.pel.remove(&id);
            }
            true
        }
        None => false,
    }
}

/// Hands the pending `id` to consumer `cname` (XCLAIM, XAUTOCLAIM):
/// delivered at `time`, with `count` as its delivery count.
fn hand_over(
    g: &mut Group,
    id: StreamId,
    cname: &[u8],
    now: u64,
    time: u64,
    count: impl FnOnce(u64) -> u64,
) {
    if let Some(old) = g.pel.get(&id).map(|p| p.consumer.clone())
        && let Some(c) = g.consumers.get_mut(&old)
    {
        c.pel.remove(&id);
    }
    consumer(g, cname, now).pel.insert(id);
    let p = g.pel.get_mut(&id).expect("pending");
    p.consumer = cname.into();
    p.delivery_time = time;
    p.delivery_count = count(p.delivery_count);
}

/// XCLAIM's and XAUTOCLAIM's list: entries, or their IDs with JUSTID.
fn reply_claimed(ctx: &mut Ctx<'_, '_>, items: Vec<(StreamId, Option<Fields>)>) {
    ctx.array(items.len());
    for (id, fv) in items {
        match fv {
            Some(fv) => reply_entry(ctx, &id, &fv),
            None => ctx.bulk(&id.fmt()),
        }
    }
}

/// XINFO's `entries-read` and `lag` fields of a group.
fn read_and_lag(ctx: &mut Ctx<'_, '_>, s: &Stream, g: &Group) {
    ctx.bulk(b"entries-read");
    if g.entries_read == -1 {
        ctx.null();
    } else {
        ctx.int(g.entries_read);
    }
    ctx.bulk(b"lag");
    match lag(s, g) {
        Some(l) => ctx.int(l),
        None => ctx.null(),
    }
}

/// # Format
/// `XACK key group id [id ...]`
fn xack(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let ids = a[3..]
        .iter()
        .map(|x| parse_id(x, 0))
        .collect::<Result<Vec<_>, _>>()?;
    let Some(g) = stream_mut(ctx, a[1])?.and_then(|s| s.groups.get_mut(a[2])) else {
        ctx.int(0);
        return Ok(());
    };
    let mut n = 0;
    for id in ids {
        if unpend(g, id) {
            n += 1;
        }
    }
    if n > 0 {
        ctx.dirty += 1;
    }
    ctx.int(n);
    Ok(())
}

/// # Format
/// `XPENDING key group [[IDLE min-idle-time] start end count [consumer]]`
fn xpending(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let summary = a.len() == 3;
    if a.len() != 3 && !(6..=9).contains(&a.len()) {
        return Err(SYNTAX);
    }
    let (mut minidle, mut range, mut cname) = (0i64, None, None);
    if !summary {
        let mut at = 3;
        if is(a[3], "idle") {
            minidle = int_arg(a[4])?;
            if a.len() < 8 {
                return Err(SYNTAX);
            }
            at = 5;
        }
        let count = int_arg(a[at + 2])?.max(0) as usize;
        let start = bound(a[at], true)?.expect("a bound");
        let end = bound(a[at + 1], false)?.expect("a bound");
        if at + 3 < a.len() {
            cname = Some(a[at + 3]);
        }
        range = Some((start, end, count));
    }
    let now = ctx.now;
    let (key, gname) = (a[1], a[2]);
    let Some(g) = stream_mut(ctx, key)?.and_then(|s| s.groups.get_mut(gname)) else {
        return Err(nogroup(key, gname));
    };
    let Some((start, end, count)) = range else {
        let n = g.pel.len();
        let edges = g
            .pel
            .keys()
            .next()
            .copied()
            .zip(g.pel.keys().next_back().copied());
        let per: Vec<(Box<[u8]>, usize)> = g
            .consumers
            .iter()
            .filter(|(_, c)| !c.pel.is_empty())
            .map(|(n, c)| (n.clone(), c.pel.len()))
            .collect();
        ctx.array(4);
        ctx.int(n as i64);
        let Some((first, last)) = edges else {
            ctx.null();
            ctx.null();
            ctx.null_array();
            return Ok(());
        };
        ctx.bulk(&first.fmt());
        ctx.bulk(&last.fmt());
        ctx.array(per.len());
        for (n, c) in per {
            ctx.array(2);
            ctx.bulk(&n);
            ctx.bulk(itoa::Buffer::new().format(c).as_bytes());
        }
        return Ok(());
    };
    let rows: Vec<(StreamId, Box<[u8]>, u64, u64)> = if start > end || count == 0 {
        Vec::new()
    } else {
        let pick = |(id, p): (&StreamId, &Pending)| {
            let idle = now.saturating_sub(p.delivery_time);
            (minidle <= 0 || idle >= minidle as u64)
                .then(|| (*id, p.consumer.clone(), idle, p.delivery_count))
        };
        match cname {
            Some(c) => match g.consumers.get(c) {
                Some(cons) => cons
                    .pel
                    .range(start..=end)
                    .filter_map(|id| g.pel.get_key_value(id).and_then(pick))
                    .take(count)
                    .collect(),
                None => Vec::new(),
            },
            None => g
                .pel
                .range(start..=end)
                .filter_map(pick)
                .take(count)
                .collect(),
        }
    };
    ctx.array(rows.len());
    for (id, c, idle, n) in rows {
        ctx.array(4);
        ctx.bulk(&id.fmt());
        ctx.bulk(&c);
        ctx.int(idle as i64);
        ctx.int(n as i64);
    }
    Ok(())
}

/// # Format
/// `XCLAIM key group consumer min-idle-time id [id ...] [IDLE ms] [TIME unix-time-milliseconds] [RETRYCOUNT count] [FORCE] [JUSTID] [LASTID lastid]`
/// XCLAIM's and XAUTOCLAIM's min-idle-time (negative counts as 0).
fn min_idle(a: &[u8], cmd: &str) -> Result<u64, CmdError> {
    let ms =
        int_arg(a).map_err(|_| err(format!("ERR Invalid min-idle-time argument for {cmd}")))?;
    Ok(ms.max(0) as u64)
}

fn xclaim(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let (key, gname, cname) = (a[1], a[2], a[3]);
    let minidle = min_idle(a[4], "XCLAIM")?;
    let now = ctx.now;
    let mut ids = Vec::new();
    let mut i = 5;
    while i < a.len() {
        match parse_id(a[i], 0) {
            Ok(id) => ids.push(id),
            Err(_) => break,
        }
        i += 1;
    }
    let (mut deliverytime, mut retrycount, mut force, mut justid, mut lastid) =
        (None, None, false, false, None);
    while i < a.len() {
        let more = i + 1 < a.len();
        if is(a[i], "force") {
            force = true;
        } else if is(a[i], "justid") {
            justid = true;
        } else if is(a[i], "idle") && more {
            let ms = int_arg(a[i + 1])
                .map_err(|_| err("ERR Invalid IDLE option argument for XCLAIM"))?;
            deliverytime = Some(now.saturating_sub(ms.max(0) as u64));
            i += 1;
        } else if is(a[i], "time") && more {
            let t = int_arg(a[i + 1])
                .map_err(|_| err("ERR Invalid TIME option argument for XCLAIM"))?;
            deliverytime = Some(t.max(0) as u64);
            i += 1;
        } else if is(a[i], "retrycount") && more {
            let n = int_arg(a[i + 1])
                .map_err(|_| err("ERR Invalid RETRYCOUNT option argument for XCLAIM"))?;
            retrycount = Some(n.max(0) as u64);
            i += 1;
        } else if is(a[i], "lastid") && more {
            lastid = Some(parse_id(a[i + 1], 0)?);
            i += 1;
        } else {
            return Err(err(format!(
                "ERR Unrecognized XCLAIM option '{}'",
                String::from_utf8_lossy(a[i])
            )));
        }
        i += 1;
    }
    let deliverytime = deliverytime.map(|t| t.min(now));
    let Some(s) = stream_mut(ctx, key)? else {
        return Err(nogroup(key, gname));
    };
    let Some(g) = s.groups.get_mut(gname) else {
        return Err(nogroup(key, gname));
    };
    if let Some(l) = lastid
        && l > g.last_id
    {
        g.last_id = l;
    }
    let entries = &s.entries;
    let mut claimed = Vec::new();
    let mut changed = false;
    for id in ids {
        let present = entries.contains_key(&id);
        let mut forced = false;
        if let std::collections::btree_map::Entry::Vacant(v) = g.pel.entry(id) {
            if !force || !present {
                continue;
            }
            // FORCE makes a PEL entry owned by nobody yet (no idle check)
            v.insert(Pending {
                consumer: Box::default(),
                delivery_time: now,
                delivery_count: 0,
            });
            forced = true;
        }
        if !present {
            // the entry is gone: it leaves the PEL
            unpend(g, id);
            changed = true;
            continue;
        }
        let p = g.pel.get(&id).expect("present");
        if !forced && minidle > 0 && now.saturating_sub(p.delivery_time) < minidle {
            continue;
        }
        hand_over(
            g,
            id,
            cname,
            now,
            deliverytime.unwrap_or(now),
            |n| match retrycount {
                Some(r) => r,
                None if justid => n,
                None => n + 1,
            },
        );
        changed = true;
        claimed.push(id);
    }
    let items: Vec<(StreamId, Option<Fields>)> = claimed
        .iter()
        .map(|id| (*id, (!justid).then(|| entries[id].clone())))
        .collect();
    if changed || lastid.is_some() {
        ctx.dirty += 1;
    }
    reply_claimed(ctx, items);
    Ok(())
}

/// # Format
/// `XAUTOCLAIM key group consumer min-idle-time start [COUNT count] [JUSTID]`
fn xautoclaim(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let (key, gname, cname) = (a[1], a[2], a[3]);
    let minidle = min_idle(a[4], "XAUTOCLAIM")?;
    let start = bound(a[5], true)?.expect("a bound");
    let (mut count, mut justid) = (100usize, false);
    let mut i = 6;
    while i < a.len() {
        if is(a[i], "count") && i + 1 < a.len() {
            let c = int_arg(a[i + 1])?;
            if !(1..=(i64::MAX / 10)).contains(&c) {
                return Err(err("ERR COUNT must be > 0"));
            }
            count = c as usize;
            i += 2;
        } else if is(a[i], "justid") {
            justid = true;
            i += 1;
        } else {
            return Err(SYNTAX);
        }
    }
    let now = ctx.now;
    let Some(s) = stream_mut(ctx, key)? else {
        return Err(nogroup(key, gname));
    };
    let Some(g) = s.groups.get_mut(gname) else {
        return Err(nogroup(key, gname));
    };
    let entries = &s.entries;
    // Redis scans at most count*10 PEL entries per call; deleted entries
    // count against COUNT like claimed ones
    let mut attempts = count * 10;
    let mut left = count;
    let mut claimed = Vec::new();
    let mut deleted = Vec::new();
    let pending: Vec<StreamId> = g.pel.range(start..).map(|(id, _)| *id).collect();
    let mut idx = 0;
    while attempts > 0 && left > 0 && idx < pending.len() {
        attempts -= 1;
        let id = pending[idx];
        idx += 1;
        if !entries.contains_key(&id) {
            unpend(g, id);
            deleted.push(id);
            left -= 1;
            continue;
        }
        let p = g.pel.get(&id).expect("listed");
        if minidle > 0 && now.saturating_sub(p.delivery_time) < minidle {
            continue;
        }
        hand_over(g, id, cname, now, now, |n| if justid { n } else { n + 1 });
        claimed.push(id);
        left -= 1;
    }
    let next = pending.get(idx).copied().unwrap_or(StreamId::MIN);
    let items: Vec<(StreamId, Option<Fields>)> = claimed
        .iter()
        .map(|id| (*id, (!justid).then(|| entries[id].clone())))
        .collect();
    if !claimed.is_empty() || !deleted.is_empty() {
        ctx.dirty += 1;
    }
    ctx.array(3);
    ctx.bulk(&next.fmt());
    reply_claimed(ctx, items);
    ctx.array(deleted.len());
    for id in deleted {
        ctx.bulk(&id.fmt());
    }
    Ok(())
}

fn opt_id(ctx: &mut Ctx<'_, '_>, e: Option<(StreamId, Fields)>) {
    match e {
        Some((id, fv)) => reply_entry(ctx, &id, &fv),
        None => ctx.null(),
    }
}

/// # Format
/// `XINFO STREAM key [FULL [COUNT count]] | GROUPS key | CONSUMERS key group | HELP`
fn xinfo(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let sub = a[1];
    if is(sub, "help") && a.len() == 2 {
        ctx.help_lines(&[
            "XINFO <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "CONSUMERS <key> <groupname>",
            "    Show consumers of <groupname>.",
            "GROUPS <key>",
            "    Show the stream consumer groups.",
            "STREAM <key> [FULL [COUNT <count>]",
            "    Show information about the stream.",
            "HELP",
            "    Prints this help.",
        ]);
        return Ok(());
    }
    let known = ["consumers", "groups", "stream", "help"];
    let ok = (is(sub, "consumers") && a.len() == 4)
        || (is(sub, "groups") && a.len() == 3)
        || (is(sub, "stream") && a.len() >= 3);
    if !ok {
        return Err(super::sub_error("xinfo", sub, &known));
    }
    let key = a[2];
    let now = ctx.now;
    let Some(s) = stream_mut(ctx, key)? else {
        return Err(err("ERR no such key"));
    };
    let s = s.clone();
    if is(sub, "consumers") {
        let Some(g) = s.groups.get(a[3]) else {
            return Err(err(format!(
                "NOGROUP No such consumer group '{}' for key name '{}'",
                String::from_utf8_lossy(a[3]),
                String::from_utf8_lossy(key)
            )));
        };
        ctx.array(g.consumers.len());
        for (n, c) in &g.consumers {
            ctx.map(3);
            ctx.bulk(b"name");
            ctx.bulk(n);
            ctx.bulk(b"pending");
            ctx.int(c.pel.len() as i64);
            ctx.bulk(b"idle");
            ctx.int(now.saturating_sub(c.seen_time) as i64);
        }
        return Ok(());
    }
    if is(sub, "groups") {
        ctx.array(s.groups.len());
        for (n, g) in &s.groups {
            ctx.map(6);
            ctx.bulk(b"name");
            ctx.bulk(n);
            ctx.bulk(b"consumers");
            ctx.int(g.consumers.len() as i64);
            ctx.bulk(b"pending");
            ctx.int(g.pel.len() as i64);
            ctx.bulk(b"last-delivered-id");
            ctx.bulk(&g.last_id.fmt());
            read_and_lag(ctx, &s, g);
        }
        return Ok(());
    }
    // STREAM [FULL [COUNT n]]
    let mut full = false;
    let mut count = 10usize;
    let bad_stream = || {
        err(format!(
            "ERR unknown subcommand or wrong number of arguments for '{}'. Try XINFO HELP.",
            String::from_utf8_lossy(sub)
        ))
    };
    if a.len() > 3 {
        if !is(a[3], "full") {
            return Err(bad_stream());
        }
        full = true;
        if a.len() == 6 && is(a[4], "count") {
            let c = int_arg(a[5])?;
            count = if c <= 0 { usize::MAX } else { c as usize };
        } else if a.len() != 4 {
            return Err(bad_stream());
        }
    }
    // Redis's radix tree: one key and node per 100-entry listpack node
    let nodes = s.len().div_ceil(NODE);
    ctx.map(if full { 9 } else { 10 });
    ctx.bulk(b"length");
    ctx.int(s.len() as i64);
    ctx.bulk(b"radix-tree-keys");
    ctx.int(nodes as i64);
    ctx.bulk(b"radix-tree-nodes");
    ctx.int((nodes + 1) as i64);
    ctx.bulk(b"last-generated-id");
    ctx.bulk(&s.last_id.fmt());
    ctx.bulk(b"max-deleted-entry-id");
    ctx.bulk(&s.max_deleted.fmt());
    ctx.bulk(b"entries-added");
    ctx.int(s.entries_added as i64);
    ctx.bulk(b"recorded-first-entry-id");
    ctx.bulk(&s.first_id().fmt());
    if !full {
        ctx.bulk(b"groups");
        ctx.int(s.groups.len() as i64);
        ctx.bulk(b"first-entry");
        opt_id(
            ctx,
            s.entries.first_key_value().map(|(k, v)| (*k, v.clone())),
        );
        ctx.bulk(b"last-entry");
        opt_id(
            ctx,
            s.entries.last_key_value().map(|(k, v)| (*k, v.clone())),
        );
        return Ok(());
    }
    ctx.bulk(b"entries");
    let items: Vec<_> = s.entries.iter().take(count).collect();
    ctx.array(items.len());
    for (id, fv) in items {
        reply_entry(ctx, id, fv);
    }
    ctx.bulk(b"groups");
    ctx.array(s.groups.len());
    for (n, g) in &s.groups {
        ctx.map(7);
        ctx.bulk(b"name");
        ctx.bulk(n);
        ctx.bulk(b"last-delivered-id");
        ctx.bulk(&g.last_id.fmt());
        read_and_lag(ctx, &s, g);
        ctx.bulk(b"pel-count");
        ctx.int(g.pel.len() as i64);
        ctx.bulk(b"pending");
        let pel: Vec<_> = g.pel.iter().take(count).collect();
        ctx.array(pel.len());
        for (id, p) in pel {
            ctx.array(4);
            ctx.bulk(&id.fmt());
            ctx.bulk(&p.consumer);
            ctx.int(p.delivery_time as i64);
            ctx.int(p.delivery_count as i64);
        }
        ctx.bulk(b"consumers");
        ctx.array(g.consumers.len());
        for (cn, c) in &g.consumers {
            ctx.map(4);
            ctx.bulk(b"name");
            ctx.bulk(cn);
            ctx.bulk(b"seen-time");
            ctx.int(c.seen_time as i64);
            ctx.bulk(b"pel-count");
            ctx.int(c.pel.len() as i64);
            ctx.bulk(b"pending");
            let pel: Vec<_> = c.pel.iter().take(count).collect();
            ctx.array(pel.len());
            for id in pel {
                let p = &g.pel[id];
                ctx.array(3);
                ctx.bulk(&id.fmt());
                ctx.int(p.delivery_time as i64);
                ctx.int(p.delivery_count as i64);
            }
        }
    }
    Ok(())
}
