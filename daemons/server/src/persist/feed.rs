//! The write stream: every change, as the commands that replay it exactly
//! (the AOF now; replicas will read the same stream). Commands are appended
//! while their slots are still locked, so the stream's order is an order in
//! which they could have run one at a time. Commands whose effect depends on
//! the moment or on chance are rewritten into ones that do not (relative
//! expiries become absolute, SPOP becomes SREM of what it popped, a served
//! BLPOP becomes LPOP, INCRBYFLOAT becomes SET of the result), as Redis does.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use kvfleet_resp::Frame;

use super::aof::AofFile;
use crate::cmd::Keys;

/// The stream's state. The hot path reads only `active` (one load) when no
/// AOF is on.
#[derive(Debug, Default)]
pub struct Feed {
    active: AtomicBool,
    /// Bytes appended and not yet written to the file.
    pending: AtomicBool,
    pub inner: parking_lot::Mutex<Inner>,
}

#[derive(Debug, Default)]
pub struct Inner {
    pub buf: Vec<u8>,
    pub aof: Option<AofFile>,
    /// A write to the file failed (reported as `aof_last_write_status:err`)
    /// until one succeeds.
    pub write_failed: bool,
    /// Replicas and the backlog.
    pub repl: crate::repl::ReplStream,
}

impl Feed {
    #[inline]
    pub fn active(&self) -> bool {
        self.active.load(Relaxed)
    }

    /// Whether commands must be appended: an AOF is open or replication is on.
    pub fn update_active(&self, g: &Inner) {
        let on = g.aof.is_some() || (g.repl.active && !g.repl.mirror);
        self.active.store(on, Relaxed);
        crate::db::set_log_expired(on);
    }

    /// DELs for the keys that expired in `slot` (called with it locked).
    pub fn expired_dels(slot: &mut crate::db::Slot, out: &mut Vec<u8>) {
        for k in slot.expired_log.drain(..) {
            encode(out, &[b"DEL", &k]);
        }
    }

    /// Adds encoded commands (called with their slots locked); returns the
    /// replication offset just past them (what WAIT waits for).
    pub fn append(&self, cmds: &[u8]) -> u64 {
        let mut g = self.inner.lock();
        if g.aof.is_some() {
            g.buf.extend_from_slice(cmds);
            self.pending.store(true, Relaxed);
        }
        // a replica's stream is its master's, passed on by the link
        if g.repl.active && !g.repl.mirror {
            g.repl.push(cmds);
        }
        g.repl.offset
    }

    /// Adds commands for replicas only (PUBLISH: Redis sends it to replicas,
    /// so their subscribers get the message, but keeps it out of the AOF).
    pub fn append_repl(&self, cmds: &[u8]) {
        if self.active() {
            let mut g = self.inner.lock();
            if g.repl.active && !g.repl.mirror {
                g.repl.push(cmds);
            }
        }
    }

    /// Writes what was appended to the file (and fsyncs under `always`):
    /// called before replies go out, so an acknowledged write has reached
    /// the OS (and the disk, with `always`) — Redis's `beforeSleep` flush.
    #[inline]
    pub fn flush(&self) {
        if self.pending.load(Relaxed) {
            self.flush_slow();
        }
    }

    #[cold]
    fn flush_slow(&self) {
        let mut g = self.inner.lock();
        self.pending.store(false, Relaxed);
        let Inner {
            buf,
            aof,
            write_failed,
            ..
        } = &mut *g;
        if let Some(f) = aof {
            match f.write(buf) {
                Ok(()) => *write_failed = false,
                Err(e) => {
                    if !*write_failed {
                        tracing::error!(error = %e, "writing the AOF failed");
                    }
                    *write_failed = true;
                }
            }
        }
        buf.clear();
    }
}

pub use kvfleet_resp::encode::command as encode;

/// Appends to `out` the commands that replay `args`, which just ran with an
/// effect and answered `reply`.
pub fn replay(name: &str, args: &[&[u8]], db: &mut Keys<'_>, reply: &[u8], out: &mut Vec<u8>) {
    let key = args.get(1).copied().unwrap_or_default();
    let mut num = itoa::Buffer::new();
    // the key's expiry after the command, if it still exists
    let expiry = |db: &mut Keys<'_>| db.peek(key).map(|e| e.expire_at());
    match name {
        "set" => {
            let opts = &args[3..];
            if opts.is_empty()
                || opts
                    .iter()
                    .all(|o| o.eq_ignore_ascii_case(b"nx") || o.eq_ignore_ascii_case(b"xx"))
            {
                return encode(out, args);
            }
            match expiry(db) {
                Some(at) if at != 0 => encode(
                    out,
                    &[b"SET", key, args[2], b"PXAT", num.format(at).as_bytes()],
                ),
                _ => encode(out, &[b"SET", key, args[2]]),
            }
        }
        "setex" | "psetex" => match expiry(db) {
            Some(at) if at != 0 => encode(
                out,
                &[b"SET", key, args[3], b"PXAT", num.format(at).as_bytes()],
            ),
            _ => encode(out, &[b"DEL", key]),
        },
        "expire" | "pexpire" | "expireat" | "pexpireat" | "getex" => match expiry(db) {
            Some(0) => encode(out, &[b"PERSIST", key]),
            Some(at) => encode(out, &[b"PEXPIREAT", key, num.format(at).as_bytes()]),
            None => encode(out, &[b"DEL", key]),
        },
        "restore" => match expiry(db) {
            Some(at) => {
                let mut v: Vec<&[u8]> = vec![b"RESTORE", key, num.format(at).as_bytes(), args[3]];
                v.extend([&b"REPLACE"[..], b"ABSTTL"]);
                encode(out, &v)
            }
            None => encode(out, &[b"DEL", key]),
        },
        "incrbyfloat" => match db.peek(key).and_then(|e| e.str().map(<[u8]>::to_vec)) {
            Some(v) => encode(out, &[b"SET", key, &v, b"KEEPTTL"]),
            None => encode(out, args),
        },
        "hincrbyfloat" => match reply_strings(reply).first() {
            Some(v) => encode(out, &[b"HSET", key, args[2], v]),
            None => encode(out, args),
        },
        "spop" => {
            let members = reply_strings(reply);
            let mut v: Vec<&[u8]> = vec![b"SREM", key];
            v.extend(members.iter().map(|m| &m[..]));
            if members.is_empty() {
                return;
            }
            encode(out, &v)
        }
        // served blocking pops: the non-blocking form on the key that served
        "blpop" | "brpop" | "bzpopmin" | "bzpopmax" => {
            let r = reply_strings(reply);
            let Some(k) = r.first() else { return };
            let cmd: &[u8] = match name {
                "blpop" => b"LPOP",
                "brpop" => b"RPOP",
                "bzpopmin" => b"ZPOPMIN",
                _ => b"ZPOPMAX",
            };
            encode(out, &[cmd, k])
        }
        "blmove" => encode(out, &[b"LMOVE", args[1], args[2], args[3], args[4]]),
        // the ID the server picked for `*` / `ms-*`
        "xadd" => match (
            crate::cmd::stream::xadd_id_index(args),
            reply_strings(reply).first(),
        ) {
            (Ok(i), Some(id)) if i < args.len() => {
                let mut v = args.to_vec();
                v[i] = id;
                encode(out, &v)
            }
            _ => encode(out, args),
        },
        "brpoplpush" => encode(out, &[b"RPOPLPUSH", args[1], args[2]]),
        "blmpop" | "bzmpop" => {
            // timeout numkeys key... dir [COUNT n] → the *MPOP form without timeout
            let cmd: &[u8] = if name == "blmpop" { b"LMPOP" } else { b"ZMPOP" };
            let mut v: Vec<&[u8]> = vec![cmd];
            v.extend_from_slice(&args[2..]);
            encode(out, &v)
        }
        _ => encode(out, args),
    }
}

/// The bulk strings of a reply, flattened (a bulk, or arrays of them).
fn reply_strings(reply: &[u8]) -> Vec<Vec<u8>> {
    fn walk(f: &Frame, out: &mut Vec<Vec<u8>>) {
        match f {
            Frame::Bulk(b) => out.push(b.to_vec()),
            Frame::Array(v) | Frame::Set(v) | Frame::Push(v) => v.iter().for_each(|f| walk(f, out)),
            Frame::Double(d) => out.push(d.to_vec()),
            _ => {}
        }
    }
    let mut out = Vec::new();
    if let Ok(Some((f, _))) = kvfleet_resp::parse_frame(&bytes::Bytes::copy_from_slice(reply)) {
        walk(&f, &mut out);
    }
    out
}
