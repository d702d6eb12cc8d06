//! Streams: XADD, XLEN, XRANGE, XREVRANGE, XDEL, XTRIM, XSETID and XREAD
//! (with BLOCK), on `db::stream::Stream`.

use super::{CmdError, CmdResult, Ctx, Handler, SYNTAX, err, int_arg, is};
use crate::db::Value;
use crate::db::stream::{Consumer, Fields, Group, Pending, Stream, StreamId};

mod groups;
use groups::*;

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

fn reply_entry(ctx: &mut Ctx<'_, '_>, id: &StreamId, fv: &Fields) {
    ctx.array(2);
    ctx.bulk(&id.fmt());
    let items = fv.iter();
    ctx.array(items.len());
    for b in items {
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
    let s = if nomk {
        match ctx.db.stream(key)? {
            Some(s) => s,
            None => {
                ctx.null();
                return Ok(());
            }
        }
    } else {
        ctx.db.stream_or_new(key)?
    };
    let id = match next_id(s.last_id, explicit, now) {
        Ok(id) => id,
        Err(None) => return Err(xadd_too_small(ctx, key)),
        Err(Some(e)) => return Err(e),
    };
    s.entries.insert(id, Fields::new(&a[i + 1..]));
    s.last_id = id;
    s.entries_added += 1;
    if let Some(t) = &trim {
        do_trim(s, t);
    }
    ctx.dirty += 1;
    ctx.bulk(&id.fmt());
    Ok(())
}

/// The ID XADD gives an entry after `last`: `explicit` as parsed (`ms`,
/// `ms-*`) or else from the clock; `Err(None)` when it is not above `last`.
fn next_id(
    last: StreamId,
    explicit: Option<(u64, Option<u64>)>,
    now: u64,
) -> Result<StreamId, Option<CmdError>> {
    match explicit {
        None if now > last.ms => Ok(StreamId::new(now, 0)),
        None => last.next().ok_or_else(|| {
            Some(err(
                "ERR The stream has exhausted the last possible ID, unable to add more items",
            ))
        }),
        Some((ms, None)) if ms > last.ms => Ok(StreamId::new(ms, 0)),
        Some((ms, None)) if ms == last.ms && last.seq < u64::MAX => {
            Ok(StreamId::new(ms, last.seq + 1))
        }
        Some((_, None)) => Err(None),
        Some((ms, Some(seq))) => {
            let id = StreamId::new(ms, seq);
            if id > last { Ok(id) } else { Err(None) }
        }
    }
}

/// XADD's "too small" error; a stream this command just created empty goes again.
fn xadd_too_small(ctx: &mut Ctx<'_, '_>, key: &[u8]) -> CmdError {
    if let Ok(Some(s)) = ctx.db.stream(key)
        && s.entries.is_empty()
        && s.entries_added == 0
        && s.groups.is_empty()
    {
        ctx.db.remove(key);
    }
    err("ERR The ID specified in XADD is equal or smaller than the target stream top item")
}

fn xlen(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let n = ctx.db.stream(a[1])?.map_or(0, |s| s.len());
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
    let Some(s) = ctx.db.stream(a[1])? else {
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
    let Some(s) = ctx.db.stream(a[1])? else {
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
    let Some(s) = ctx.db.stream(a[1])? else {
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
    let Some(s) = ctx.db.stream(a[1])? else {
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

/// XREAD/XREADGROUP's options, up to `STREAMS`.
struct ReadOpts<'a> {
    count: usize,
    block: Option<i64>,
    noack: bool,
    /// XREADGROUP's group and consumer.
    group: Option<(&'a [u8], &'a [u8])>,
    /// Where the keys start.
    streams_at: usize,
}

fn read_opts<'a>(a: &[&'a [u8]], grouped: bool) -> Result<ReadOpts<'a>, CmdError> {
    let mut o = ReadOpts {
        count: usize::MAX,
        block: None,
        noack: false,
        group: None,
        streams_at: 0,
    };
    let only_xreadgroup = |opt: &str| {
        err(format!(
            "ERR The {opt} option is only supported by XREADGROUP. You called XREAD instead."
        ))
    };
    let mut i = 1;
    while i < a.len() {
        let more = i + 1 < a.len();
        if is(a[i], "count") && more {
            let c = int_arg(a[i + 1])?;
            o.count = if c <= 0 { usize::MAX } else { c as usize };
            i += 2;
        } else if is(a[i], "block") && more {
            let ms = int_arg(a[i + 1])
                .map_err(|_| err("ERR timeout is not an integer or out of range"))?;
            if ms < 0 {
                return Err(err("ERR timeout is negative"));
            }
            o.block = Some(ms);
            i += 2;
        } else if is(a[i], "streams") {
            o.streams_at = i + 1;
            break;
        } else if is(a[i], "group") && i + 2 < a.len() {
            if !grouped {
                return Err(only_xreadgroup("GROUP"));
            }
            o.group = Some((a[i + 1], a[i + 2]));
            i += 3;
        } else if is(a[i], "noack") {
            if !grouped {
                return Err(only_xreadgroup("NOACK"));
            }
            o.noack = true;
            i += 1;
        } else {
            return Err(SYNTAX);
        }
    }
    if o.streams_at == 0 {
        return Err(SYNTAX);
    }
    let rest = a.len() - o.streams_at;
    if rest == 0 || !rest.is_multiple_of(2) {
        return Err(err(format!(
            "ERR Unbalanced {} list of streams: for each stream key an ID or '$' must be specified.",
            if grouped { "XREADGROUP" } else { "XREAD" }
        )));
    }
    if grouped && o.group.is_none() {
        return Err(err("ERR Missing GROUP option for XREADGROUP"));
    }
    Ok(o)
}

/// The ID to read after, per key; `None` stands for XREADGROUP's `>`.
/// `$` means the last ID when the command first ran: a re-run after a
/// wake-up must not move it.
fn read_ids(
    ctx: &mut Ctx<'_, '_>,
    keys: &[&[u8]],
    idargs: &[&[u8]],
    group: Option<&[u8]>,
) -> Result<Vec<Option<StreamId>>, CmdError> {
    let grouped = group.is_some();
    let mut ids = Vec::with_capacity(keys.len());
    let saved = std::mem::take(&mut ctx.conn.xread_ids);
    for (j, (k, idarg)) in keys.iter().zip(idargs).enumerate() {
        if let Some(g) = group {
            let has = ctx.db.stream(k)?.is_some_and(|s| s.groups.contains_key(g));
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
                None => ctx.db.stream(k)?.map_or(StreamId::MIN, |s| s.last_id),
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
    Ok(ids)
}

/// # Format
/// `XREAD [COUNT count] [BLOCK milliseconds] STREAMS key [key ...] id [id ...]`,
/// `XREADGROUP GROUP group consumer [COUNT count] [BLOCK milliseconds] [NOACK] STREAMS key [key ...] id [id ...]`
fn read(ctx: &mut Ctx<'_, '_>, a: &[&[u8]], grouped: bool) -> CmdResult {
    let o = read_opts(a, grouped)?;
    let (keys, idargs) = a[o.streams_at..].split_at((a.len() - o.streams_at) / 2);
    let ids = read_ids(ctx, keys, idargs, o.group.map(|(g, _)| g))?;
    let (count, now) = (o.count, ctx.now);
    let mut found: Vec<Found> = Vec::new();
    // what replicas and the AOF get instead of the command, if anyone listens
    let record = ctx.srv.persist.feed.active();
    let mut prop = Vec::new();
    let mut created_any = false;
    for (j, k) in keys.iter().enumerate() {
        let Some(s) = ctx.db.stream(k)? else {
            continue;
        };
        match (o.group, ids[j]) {
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
                let created = !s.groups[g].consumers.contains_key(c);
                let items = history(s, g, c, after, count, now);
                created_any |= created;
                if record {
                    groups::propagate_read(&mut prop, k, s, g, c, created, &items, Read::History);
                }
                found.push((j, items));
            }
            (Some((g, c)), None) => {
                let created = !s.groups[g].consumers.contains_key(c);
                let items = deliver_new(s, g, c, count, o.noack, now);
                if record {
                    let how = Read::New { noack: o.noack };
                    groups::propagate_read(&mut prop, k, s, g, c, created, &items, how);
                }
                if !items.is_empty() {
                    found.push((j, items));
                }
            }
            (None, None) => unreachable!("> is refused for XREAD"),
        }
    }
    if grouped {
        if !found.is_empty() || created_any {
            ctx.dirty += 1;
        }
        ctx.conn.propagate = record.then_some(prop);
    }
    if found.is_empty() {
        if let Some(ms) = o.block
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
    reply_found(ctx, keys, &found);
    Ok(())
}

/// XREAD's reply: per stream with entries, its key and them (a map in RESP3).
fn reply_found(ctx: &mut Ctx<'_, '_>, keys: &[&[u8]], found: &[Found]) {
    if ctx.resp3() {
        ctx.map(found.len());
    } else {
        ctx.array(found.len());
    }
    for (j, items) in found {
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
    let Some(s) = ctx.db.stream(key)? else {
        return Err(err("ERR no such key"));
    };
    let s = s.clone();
    if is(sub, "consumers") {
        let Some(g) = s.groups.get(a[3]) else {
            return Err(no_such_group(key, a[3]));
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
