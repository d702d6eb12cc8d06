//! MULTI/EXEC/DISCARD/WATCH. EXEC locks every slot its queued commands touch
//! (all slots if one of them is a whole-keyspace command) for the whole
//! transaction, in ascending slot order, so it is atomic against every other
//! client without a global lock.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use bytes::BytesMut;
use smallvec::SmallVec;

use super::{CmdResult, ConnState, Ctx, err, run};
use crate::server::Server;
use kvfleet_model::NUM_SLOTS;
use kvfleet_model::commands::{COMMANDS, flag};
use kvfleet_resp::encode;

pub fn multi(ctx: &mut Ctx<'_, '_>, _a: &[&[u8]]) -> CmdResult {
    if ctx.conn.multi.is_some() {
        return Err(err("ERR MULTI calls can not be nested"));
    }
    ctx.conn.multi = Some(Vec::new());
    ctx.conn.multi_err = false;
    ctx.conn.handle.multi.store(0, Relaxed);
    ctx.ok();
    Ok(())
}

pub fn discard(ctx: &mut Ctx<'_, '_>, _a: &[&[u8]]) -> CmdResult {
    if ctx.conn.multi.take().is_none() {
        return Err(err("ERR DISCARD without MULTI"));
    }
    ctx.conn.multi_err = false;
    ctx.conn.handle.multi.store(-1, Relaxed);
    unwatch_all(ctx.srv, ctx.conn);
    ctx.ok();
    Ok(())
}

pub fn watch(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    if ctx.conn.multi.is_some() {
        return Err(err("ERR WATCH inside MULTI is not allowed"));
    }
    for k in &a[1..] {
        if ctx.conn.watched.iter().any(|w| &w.0[..] == *k) {
            continue;
        }
        let live = ctx.db.peek(k).is_some();
        ctx.conn.watched.push(((*k).into(), live));
        ctx.srv
            .watches
            .keys
            .lock()
            .entry((*k).into())
            .or_default()
            .push(ctx.conn.watch_dirty.clone());
        ctx.srv.watches.count.fetch_add(1, Relaxed);
    }
    ctx.ok();
    Ok(())
}

pub fn unwatch(ctx: &mut Ctx<'_, '_>, _a: &[&[u8]]) -> CmdResult {
    unwatch_all(ctx.srv, ctx.conn);
    ctx.ok();
    Ok(())
}

pub fn unwatch_all(srv: &Server, conn: &mut ConnState) {
    if !conn.watched.is_empty() {
        let mut keys = srv.watches.keys.lock();
        for (k, _) in conn.watched.drain(..) {
            if let Some(v) = keys.get_mut(&k) {
                v.retain(|f| !Arc::ptr_eq(f, &conn.watch_dirty));
                if v.is_empty() {
                    keys.remove(&k);
                }
            }
            srv.watches.count.fetch_sub(1, Relaxed);
        }
    }
    conn.watch_dirty.store(false, Relaxed);
}

/// The table row exists for COMMAND; `dispatch` sends EXEC to [`exec`].
pub fn exec_placeholder(_ctx: &mut Ctx<'_, '_>, _a: &[&[u8]]) -> CmdResult {
    Err(err("ERR EXEC without MULTI"))
}

/// A key that was live at WATCH and is gone now without a write signalling
/// it: it expired (lazily or by the active cycle). Redis 7.0 aborts EXEC then.
fn watched_key_expired(srv: &Server, conn: &ConnState) -> bool {
    let now = crate::util::now_ms();
    conn.watched.iter().filter(|(_, live)| *live).any(|(k, _)| {
        let slot = srv.db.slots[kvfleet_model::slot(k) as usize].lock();
        slot.map.get(k).is_none_or(|e| e.expired(now))
    })
}

pub fn exec(srv: &Server, conn: &mut ConnState, out: &mut BytesMut) {
    let Some(queue) = conn.multi.take() else {
        encode::error(out, b"ERR EXEC without MULTI");
        return;
    };
    conn.handle.multi.store(-1, Relaxed);
    if std::mem::take(&mut conn.multi_err) {
        unwatch_all(srv, conn);
        encode::error(
            out,
            b"EXECABORT Transaction discarded because of previous errors.",
        );
        return;
    }
    if conn.watch_dirty.load(Relaxed) || watched_key_expired(srv, conn) {
        unwatch_all(srv, conn);
        encode::null_array(out, conn.resp3);
        return;
    }
    let mut all = false;
    let mut slots: Vec<u16> = Vec::new();
    let mut idxs = Vec::with_capacity(queue.len());
    let mut keys = Vec::new();
    for cmd in &queue {
        let args: Vec<&[u8]> = cmd.iter().map(|a| &a[..]).collect();
        let idx = srv.lookup(args[0]).expect("queued commands were looked up");
        let spec = &COMMANDS[idx];
        all |= spec.has(flag::ALL_SLOTS) || super::may_reach_undeclared(spec.name, &args);
        keys.clear();
        spec.key_indexes(&args, &mut keys);
        slots.extend(keys.iter().map(|&i| kvfleet_model::slot(args[i])));
        idxs.push(idx);
    }
    if all {
        slots = (0..NUM_SLOTS as u16).collect();
    }
    slots.sort_unstable();
    slots.dedup();
    let mut guards: SmallVec<_> = slots
        .iter()
        .map(|&s| (s, srv.db.slots[s as usize].lock()))
        .collect();
    encode::array(out, queue.len());
    conn.in_exec = true;
    for (cmd, idx) in queue.iter().zip(idxs) {
        let args: Vec<&[u8]> = cmd.iter().map(|a| &a[..]).collect();
        run(srv, conn, out, idx, &args, Some((&mut guards, all)));
    }
    conn.in_exec = false;
    if !conn.feed_buf.is_empty() {
        // the transaction's writes, atomic in the stream too (slots still locked)
        let mut cmds = Vec::with_capacity(conn.feed_buf.len() + 32);
        cmds.extend_from_slice(b"*1\r\n$5\r\nMULTI\r\n");
        cmds.append(&mut conn.feed_buf);
        cmds.extend_from_slice(b"*1\r\n$4\r\nEXEC\r\n");
        conn.woff = srv.persist.feed.append(&cmds);
    }
    drop(guards);
    unwatch_all(srv, conn);
}
