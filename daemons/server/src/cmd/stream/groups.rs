//! Consumer groups: XGROUP, XACK, XPENDING, XCLAIM, XAUTOCLAIM, and what
//! XREADGROUP and XINFO need of a group (delivery, PEL hand-over, lag).

use super::*;

/// The consumer, created if new, its seen time refreshed.
pub(super) fn consumer<'s>(g: &'s mut Group, name: &[u8], now: u64) -> &'s mut Consumer {
    let c = g.consumers.entry(name.into()).or_default();
    c.seen_time = now;
    c
}

/// Replicas and the AOF get a consumer group's changes as Redis 7.0 sends
/// them (t_stream.c `streamPropagateXCLAIM`): one idempotent XCLAIM per
/// PEL entry touched, carrying this server's owner, delivery time and count,
/// so a replica's PEL equals the master's instead of being re-derived from
/// its own clock (a replayed `XCLAIM key g c <min-idle>` could even claim
/// nothing there).
pub(super) fn propagate_claim(
    out: &mut Vec<u8>,
    key: &[u8],
    gname: &[u8],
    g: &Group,
    id: StreamId,
    p: &Pending,
) {
    let (mut t, mut n) = (itoa::Buffer::new(), itoa::Buffer::new());
    crate::persist::feed::encode(
        out,
        &[
            b"XCLAIM",
            key,
            gname,
            &p.consumer,
            b"0",
            &id.fmt(),
            b"TIME",
            t.format(p.delivery_time).as_bytes(),
            b"RETRYCOUNT",
            n.format(p.delivery_count).as_bytes(),
            b"FORCE",
            b"JUSTID",
            b"LASTID",
            &g.last_id.fmt(),
        ],
    );
}

/// `XGROUP SETID key group last-id ENTRIESREAD n`: the group's position
/// when no XCLAIM carries it (NOACK reads, XCLAIM's LASTID alone).
pub(super) fn propagate_group_id(out: &mut Vec<u8>, key: &[u8], gname: &[u8], g: &Group) {
    let mut n = itoa::Buffer::new();
    crate::persist::feed::encode(
        out,
        &[
            b"XGROUP",
            b"SETID",
            key,
            gname,
            &g.last_id.fmt(),
            b"ENTRIESREAD",
            n.format(g.entries_read).as_bytes(),
        ],
    );
}

/// Which XREADGROUP form served the entries.
pub(super) enum Read {
    /// An explicit ID: the consumer's own pending entries, delivered again.
    History,
    /// `>`: new entries, into the PEL unless NOACK.
    New { noack: bool },
}

/// What an XREADGROUP on `key` changed, in Redis's replicated form: the
/// consumer if this read created it, an XCLAIM per entry it (re)delivered
/// into the PEL, and after a `>` read the group's new position with its
/// read counter (Redis 7.0 sent that only for NOACK, so its replicas' lag
/// drifted; later versions always send it, as we do).
#[allow(clippy::too_many_arguments)]
pub(super) fn propagate_read(
    out: &mut Vec<u8>,
    key: &[u8],
    s: &Stream,
    gname: &[u8],
    cname: &[u8],
    created: bool,
    items: &[(StreamId, Option<Fields>)],
    how: Read,
) {
    let g = &s.groups[gname];
    if created && g.consumers.contains_key(cname) {
        crate::persist::feed::encode(out, &[b"XGROUP", b"CREATECONSUMER", key, gname, cname]);
    }
    if !matches!(how, Read::New { noack: true }) {
        for (id, fv) in items {
            if fv.is_some()
                && let Some(p) = g.pel.get(id)
            {
                propagate_claim(out, key, gname, g, *id, p);
            }
        }
    }
    if matches!(how, Read::New { .. }) && !items.is_empty() {
        propagate_group_id(out, key, gname, g);
    }
}

/// XREADGROUP `>`: entries after the group's last ID, into the PEL.
pub(super) fn deliver_new(
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
pub(super) fn history(
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
pub(super) fn has_tombstones(s: &Stream, start: StreamId) -> bool {
    if s.entries.is_empty() || s.max_deleted == StreamId::MIN {
        return false;
    }
    if s.first_id() > s.max_deleted {
        return false;
    }
    start <= s.max_deleted
}

/// Redis's `streamEstimateDistanceFromFirstEverEntry`: -1 when unknown.
pub(super) fn estimate_read(s: &Stream, id: StreamId) -> i64 {
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
pub(super) fn lag(s: &Stream, g: &Group) -> Option<i64> {
    if s.entries_added == 0 {
        return Some(0);
    }
    if g.entries_read != -1 && !has_tombstones(s, g.last_id) {
        return Some(s.entries_added as i64 - g.entries_read);
    }
    let read = estimate_read(s, g.last_id);
    (read != -1).then(|| s.entries_added as i64 - read)
}

/// Redis's other NOGROUP text (XGROUP subcommands, XINFO CONSUMERS: the key exists).
pub(super) fn no_such_group(key: &[u8], group: &[u8]) -> CmdError {
    err(format!(
        "NOGROUP No such consumer group '{}' for key name '{}'",
        String::from_utf8_lossy(group),
        String::from_utf8_lossy(key)
    ))
}

pub(super) fn nogroup(key: &[u8], group: &[u8]) -> CmdError {
    err(format!(
        "NOGROUP No such key '{}' or consumer group '{}'",
        String::from_utf8_lossy(key),
        String::from_utf8_lossy(group)
    ))
}

/// # Format
/// `XGROUP CREATE key group id|$ [MKSTREAM] [ENTRIESREAD n] | SETID key group id|$ [ENTRIESREAD n] | DESTROY key group | CREATECONSUMER key group consumer | DELCONSUMER key group consumer | HELP`
pub(super) fn xgroup(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
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
        return Err(crate::cmd::sub_error("xgroup", sub, &known));
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
    let exists = ctx.db.stream(key)?.is_some();
    if !exists && !mkstream {
        return Err(err(
            "ERR The XGROUP subcommand requires the key to exist. Note that for CREATE you may want to use the MKSTREAM option to create an empty stream automatically.",
        ));
    }
    if exists && !create && !is(sub, "destroy") {
        let has = ctx
            .db
            .stream(key)?
            .is_some_and(|s| s.groups.contains_key(gname));
        if !has {
            return Err(no_such_group(key, gname));
        }
    }
    if create {
        let id = if a[4] == b"$" {
            ctx.db.stream(key)?.map_or(StreamId::MIN, |s| s.last_id)
        } else {
            parse_id(a[4], 0)?
        };
        if !exists {
            ctx.db.set(key, Value::Stream(Box::default()));
        }
        let s = ctx.db.stream(key)?.expect("made");
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
    let s = ctx.db.stream(key)?.expect("exists");
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
pub(super) fn unpend(g: &mut Group, id: StreamId) -> bool {
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
pub(super) fn hand_over(
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
pub(super) fn reply_claimed(ctx: &mut Ctx<'_, '_>, items: Vec<(StreamId, Option<Fields>)>) {
    ctx.array(items.len());
    for (id, fv) in items {
        match fv {
            Some(fv) => reply_entry(ctx, &id, &fv),
            None => ctx.bulk(&id.fmt()),
        }
    }
}

/// XINFO's `entries-read` and `lag` fields of a group.
pub(super) fn read_and_lag(ctx: &mut Ctx<'_, '_>, s: &Stream, g: &Group) {
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
pub(super) fn xack(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let ids = a[3..]
        .iter()
        .map(|x| parse_id(x, 0))
        .collect::<Result<Vec<_>, _>>()?;
    let Some(g) = ctx.db.stream(a[1])?.and_then(|s| s.groups.get_mut(a[2])) else {
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
pub(super) fn xpending(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
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
    let Some(g) = ctx.db.stream(key)?.and_then(|s| s.groups.get_mut(gname)) else {
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
pub(super) fn min_idle(a: &[u8], cmd: &str) -> Result<u64, CmdError> {
    let ms =
        int_arg(a).map_err(|_| err(format!("ERR Invalid min-idle-time argument for {cmd}")))?;
    Ok(ms.max(0) as u64)
}

pub(super) fn xclaim(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
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
    // the effect for replicas and the AOF, built only while one listens
    let record = ctx.srv.persist.feed.active();
    let Some(s) = ctx.db.stream(key)? else {
        return Err(nogroup(key, gname));
    };
    let Some(g) = s.groups.get_mut(gname) else {
        return Err(nogroup(key, gname));
    };
    let mut advanced = false;
    if let Some(l) = lastid
        && l > g.last_id
    {
        g.last_id = l;
        advanced = true;
    }
    let entries = &s.entries;
    let mut claimed = Vec::new();
    let mut changed = false;
    let mut prop = Vec::new();
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
            // the entry is gone: it leaves the PEL (replicas too: an XCLAIM
            // of a missing entry drops it there)
            if record {
                propagate_claim(&mut prop, key, gname, g, id, &g.pel[&id]);
            }
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
        if record {
            propagate_claim(&mut prop, key, gname, g, id, &g.pel[&id]);
        }
    }
    if record && advanced && prop.is_empty() {
        propagate_group_id(&mut prop, key, gname, g);
    }
    let items: Vec<(StreamId, Option<Fields>)> = claimed
        .iter()
        .map(|id| (*id, (!justid).then(|| entries[id].clone())))
        .collect();
    if changed || lastid.is_some() {
        ctx.dirty += 1;
    }
    ctx.conn.propagate = record.then_some(prop);
    reply_claimed(ctx, items);
    Ok(())
}

/// # Format
/// `XAUTOCLAIM key group consumer min-idle-time start [COUNT count] [JUSTID]`
pub(super) fn xautoclaim(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
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
    let record = ctx.srv.persist.feed.active();
    let Some(s) = ctx.db.stream(key)? else {
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
    let mut prop = Vec::new();
    let pending: Vec<StreamId> = g.pel.range(start..).map(|(id, _)| *id).collect();
    let mut idx = 0;
    while attempts > 0 && left > 0 && idx < pending.len() {
        attempts -= 1;
        let id = pending[idx];
        idx += 1;
        if !entries.contains_key(&id) {
            if record {
                propagate_claim(&mut prop, key, gname, g, id, &g.pel[&id]);
            }
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
        if record {
            propagate_claim(&mut prop, key, gname, g, id, &g.pel[&id]);
        }
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
    ctx.conn.propagate = record.then_some(prop);
    ctx.array(3);
    ctx.bulk(&next.fmt());
    reply_claimed(ctx, items);
    ctx.array(deleted.len());
    for id in deleted {
        ctx.bulk(&id.fmt());
    }
    Ok(())
}
