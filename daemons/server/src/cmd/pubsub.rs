//! Pub/sub: channel and pattern subscriptions, PUBLISH fan-out with Redis's
//! output-buffer limits for slow subscribers, and PUBSUB introspection.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use bytes::{Bytes, BytesMut};

use super::{CmdResult, Ctx, err, is};
use crate::cmd::ConnState;
use crate::server::{ClientHandle, Server};
use crate::util::glob_match;
use kvfleet_resp::encode;

/// `[kind, name, count]` as a push (RESP3) or array (RESP2).
fn sub_reply(out: &mut BytesMut, resp3: bool, kind: &[u8], name: Option<&[u8]>, count: usize) {
    encode::push(out, 3, resp3);
    encode::bulk(out, kind);
    match name {
        Some(n) => encode::bulk(out, n),
        None => encode::null(out, resp3),
    }
    encode::int(out, count as i64);
}

fn count(conn: &ConnState) -> usize {
    conn.channels.len() + conn.patterns.len()
}

fn sync_counts(conn: &ConnState) {
    conn.handle.subs.store(conn.channels.len(), Relaxed);
    conn.handle.psubs.store(conn.patterns.len(), Relaxed);
}

pub fn subscribe(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    if ctx.conn.in_exec {
        return Err(err(
            "ERR SUBSCRIBE isn't allowed for a DENY BLOCKING client",
        ));
    }
    for ch in &a[1..] {
        if ctx.conn.channels.insert((*ch).into()) {
            ctx.srv
                .pubsub
                .channels
                .write()
                .entry((*ch).into())
                .or_default()
                .push(ctx.conn.handle.clone());
        }
        sync_counts(ctx.conn);
        let (resp3, n) = (ctx.conn.resp3, count(ctx.conn));
        sub_reply(ctx.out, resp3, b"subscribe", Some(ch), n);
    }
    Ok(())
}

pub fn psubscribe(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    if ctx.conn.in_exec {
        return Err(err(
            "ERR PSUBSCRIBE isn't allowed for a DENY BLOCKING client",
        ));
    }
    for p in &a[1..] {
        if ctx.conn.patterns.insert((*p).into()) {
            ctx.srv
                .pubsub
                .patterns
                .write()
                .push(((*p).into(), ctx.conn.handle.clone()));
        }
        sync_counts(ctx.conn);
        let (resp3, n) = (ctx.conn.resp3, count(ctx.conn));
        sub_reply(ctx.out, resp3, b"psubscribe", Some(p), n);
    }
    Ok(())
}

fn drop_channel(srv: &Server, id: u64, ch: &[u8]) {
    let mut chans = srv.pubsub.channels.write();
    if let Some(v) = chans.get_mut(ch) {
        v.retain(|c| c.id != id);
        if v.is_empty() {
            chans.remove(ch);
        }
    }
}

fn drop_pattern(srv: &Server, id: u64, p: &[u8]) {
    srv.pubsub
        .patterns
        .write()
        .retain(|(q, c)| !(c.id == id && &q[..] == p));
}

pub fn unsubscribe(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let id = ctx.conn.handle.id;
    let targets: Vec<Box<[u8]>> = if a.len() > 1 {
        a[1..].iter().map(|c| (*c).into()).collect()
    } else {
        ctx.conn.channels.iter().cloned().collect()
    };
    if targets.is_empty() {
        let (resp3, n) = (ctx.conn.resp3, count(ctx.conn));
        sub_reply(ctx.out, resp3, b"unsubscribe", None, n);
        return Ok(());
    }
    for ch in targets {
        if ctx.conn.channels.shift_remove(&ch) {
            drop_channel(ctx.srv, id, &ch);
        }
        sync_counts(ctx.conn);
        let (resp3, n) = (ctx.conn.resp3, count(ctx.conn));
        sub_reply(ctx.out, resp3, b"unsubscribe", Some(&ch), n);
    }
    Ok(())
}

pub fn punsubscribe(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let id = ctx.conn.handle.id;
    let targets: Vec<Box<[u8]>> = if a.len() > 1 {
        a[1..].iter().map(|c| (*c).into()).collect()
    } else {
        ctx.conn.patterns.iter().cloned().collect()
    };
    if targets.is_empty() {
        let (resp3, n) = (ctx.conn.resp3, count(ctx.conn));
        sub_reply(ctx.out, resp3, b"punsubscribe", None, n);
        return Ok(());
    }
    for p in targets {
        if ctx.conn.patterns.shift_remove(&p) {
            drop_pattern(ctx.srv, id, &p);
        }
        sync_counts(ctx.conn);
        let (resp3, n) = (ctx.conn.resp3, count(ctx.conn));
        sub_reply(ctx.out, resp3, b"punsubscribe", Some(&p), n);
    }
    Ok(())
}

/// Drops every subscription of a closing or RESET connection.
pub fn unsubscribe_all(srv: &Server, conn: &mut ConnState) {
    let id = conn.handle.id;
    for ch in conn.channels.drain(..) {
        drop_channel(srv, id, &ch);
    }
    for p in conn.patterns.drain(..) {
        drop_pattern(srv, id, &p);
    }
    sync_counts(conn);
}

/// Queues an encoded message for a subscriber, enforcing the output buffer limits.
fn deliver(srv: &Server, c: &Arc<ClientHandle>, msg: Bytes) {
    if c.killed.load(Relaxed) {
        return;
    }
    let pending = c.pending.fetch_add(msg.len(), Relaxed) + msg.len();
    let (hard, soft, soft_secs) = {
        let rt = srv.rt.read();
        (
            rt.pubsub_hard_limit,
            rt.pubsub_soft_limit,
            rt.pubsub_soft_seconds,
        )
    };
    let now = crate::util::now_ms();
    let over_soft = soft > 0 && pending > soft;
    if over_soft {
        let since = c.soft_since.load(Relaxed);
        if since == 0 {
            c.soft_since.store(now, Relaxed);
        } else if now - since >= soft_secs * 1000 {
            tracing::warn!(
                client = c.id,
                pending,
                "closing pubsub client over soft output buffer limit"
            );
            return c.kill();
        }
    } else {
        c.soft_since.store(0, Relaxed);
    }
    if hard > 0 && pending > hard {
        tracing::warn!(
            client = c.id,
            pending,
            "closing pubsub client over hard output buffer limit"
        );
        return c.kill();
    }
    let _ = c.push.send(msg);
}

fn encode_message(resp3: bool, pattern: Option<&[u8]>, ch: &[u8], msg: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(ch.len() + msg.len() + 48);
    match pattern {
        Some(p) => {
            encode::push(&mut out, 4, resp3);
            encode::bulk(&mut out, b"pmessage");
            encode::bulk(&mut out, p);
        }
        None => {
            encode::push(&mut out, 3, resp3);
            encode::bulk(&mut out, b"message");
        }
    }
    encode::bulk(&mut out, ch);
    encode::bulk(&mut out, msg);
    out.freeze()
}

pub fn publish_to(srv: &Server, ch: &[u8], msg: &[u8]) -> usize {
    let mut n = 0;
    let mut cached: [Option<Bytes>; 2] = [None, None];
    if let Some(subs) = srv.pubsub.channels.read().get(ch) {
        for c in subs.iter().filter(|c| !c.killed.load(Relaxed)) {
            let r3 = c.resp.load(Relaxed) == 3;
            let m = cached[r3 as usize]
                .get_or_insert_with(|| encode_message(r3, None, ch, msg))
                .clone();
            deliver(srv, c, m);
            n += 1;
        }
    }
    for (p, c) in srv.pubsub.patterns.read().iter() {
        if !c.killed.load(Relaxed) && glob_match(p, ch, false) {
            let r3 = c.resp.load(Relaxed) == 3;
            deliver(srv, c, encode_message(r3, Some(p), ch, msg));
            n += 1;
        }
    }
    srv.stats.pubsub_messages.fetch_add(1, Relaxed);
    n
}

pub fn publish(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let n = publish_to(ctx.srv, a[1], a[2]);
    let mut cmd = Vec::new();
    if ctx.srv.persist.feed.active() {
        crate::persist::feed::encode(&mut cmd, a);
        ctx.srv.persist.feed.append_repl(&cmd);
    }
    ctx.int(n as i64);
    Ok(())
}

pub fn pubsub(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let sub = a[1];
    if is(sub, "channels") && a.len() <= 3 {
        let pat = a.get(2).copied();
        let mut v: Vec<Box<[u8]>> = ctx
            .srv
            .pubsub
            .channels
            .read()
            .keys()
            .filter(|c| pat.is_none_or(|p| glob_match(p, c, false)))
            .cloned()
            .collect();
        v.sort();
        ctx.array(v.len());
        v.iter().for_each(|c| ctx.bulk(c));
    } else if is(sub, "numsub") {
        let counts: Vec<usize> = {
            let chans = ctx.srv.pubsub.channels.read();
            a[2..]
                .iter()
                .map(|c| chans.get(*c).map_or(0, |v| v.len()))
                .collect()
        };
        // Redis 7.0 answers a flat array here, even in RESP3
        ctx.array(counts.len() * 2);
        for (c, n) in a[2..].iter().zip(counts) {
            ctx.bulk(c);
            ctx.int(n as i64);
        }
    } else if is(sub, "numpat") && a.len() == 2 {
        let mut pats: Vec<Box<[u8]>> = ctx
            .srv
            .pubsub
            .patterns
            .read()
            .iter()
            .map(|(p, _)| p.clone())
            .collect();
        pats.sort();
        pats.dedup();
        ctx.int(pats.len() as i64);
    } else if (is(sub, "shardchannels") && a.len() <= 3) || is(sub, "shardnumsub") {
        if is(sub, "shardchannels") {
            ctx.array(0)
        } else {
            ctx.array((a.len() - 2) * 2);
            for c in &a[2..] {
                ctx.bulk(c);
                ctx.int(0);
            }
        }
    } else {
        return Err(super::sub_error(
            "pubsub",
            sub,
            &[
                "channels",
                "numsub",
                "numpat",
                "shardchannels",
                "shardnumsub",
                "help",
            ],
        ));
    }
    Ok(())
}
