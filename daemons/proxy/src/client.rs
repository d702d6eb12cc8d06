//! One task per client: parse every complete command in the buffer, route
//! each (a batch per backend connection), then write replies in the order the
//! commands came, as they complete.
//!
//! Each command takes the next sequence number and a [`Pending`] entry; the
//! backends answer `(seq, part, bytes)` on this client's channel, in any
//! order across groups. The entries at the front that are complete are
//! written out. Split commands (MGET over several groups) complete when all
//! their parts have.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use smallvec::SmallVec;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::backend::{Batch, LINK_DOWN_SEQ, PUSH_SEQ, Pool, Reply, ReplyTx, Server, encode_cmd};
use crate::merge::{Merger, scan_reply, split_cursor};
use crate::pubsub::{self, Kind, Subs, Waiting};
use crate::routing::Routing;
use crate::table::{Cmd, Merge, Route, SplitKind, script_merge, table};
use crate::{ClientInfo, Proxy, local};
use kvfleet_resp::{Limits, RequestParser, encode};

const READ_BUF: usize = 16 * 1024;
/// Write replies out before the batch completes once this much is ready.
const FLUSH_AT: usize = 64 * 1024;
/// Stats index for commands the table does not know.
const NO_CMD: u16 = u16::MAX;

enum State {
    Done(Bytes),
    Wait,
    Scan {
        group: u32,
        groups: u32,
    },
    Merge(Box<Merger>),
    /// A (P)(UN)SUBSCRIBE waiting for its groups' confirmations.
    Subs(Box<Waiting>),
}

struct Pending {
    cmd: u16,
    started: Instant,
    state: State,
    /// The request as sent, kept for one retry after `-MOVED` and for the slow log.
    raw: Bytes,
    retried: bool,
}

pub struct Client {
    pub px: Arc<Proxy>,
    pub info: Arc<ClientInfo>,
    pub id: u64,
    pub resp3: bool,
    pub authed: bool,
    /// Close once every earlier reply is written (QUIT, protocol error).
    pub close: bool,
    /// Stop reading until everything in flight has answered (after a
    /// protocol switch, whose later commands use other backend connections).
    pub barrier: bool,
    routing: Arc<Routing>,
    routing_version: u64,
    tx: ReplyTx,
    pending: VecDeque<Pending>,
    /// Sequence number of `pending[0]`.
    head: u64,
    out: BytesMut,
    batches: Vec<(Arc<Server>, Batch)>,
    keys: Vec<usize>,
    batch_start: Instant,
    /// Connections of this client's own, by backend address and protocol.
    private: Vec<(String, bool, Pool)>,
    /// What goes to a private connection after this batch: (address, batch).
    private_batch: Option<(String, Batch)>,
    /// Inside MULTI: the queued commands, kept here until EXEC.
    multi: Option<Multi>,
    /// The slot WATCH pinned this client to, until EXEC, DISCARD or UNWATCH.
    watch_slot: Option<u16>,
    /// Channels and patterns, and the subscriber connections behind them.
    subs: Option<Box<Subs>>,
    /// `read_policy = prefer-replica-same-zone`.
    replica_reads: bool,
    /// Servers `-MOVED` sent us to lately.
    redirects: Vec<Arc<Server>>,
}

/// A transaction being queued. It goes to one group as MULTI, the commands,
/// EXEC, on the client's private connection (where any WATCH went).
#[derive(Default)]
struct Multi {
    queued: Vec<Bytes>,
    slot: Option<u16>,
    /// An error while queuing: EXEC answers EXECABORT, as Redis does.
    aborted: bool,
}

pub async fn serve(px: Arc<Proxy>, stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let id = px.next_id.fetch_add(1, Relaxed);
    let info = Arc::new(ClientInfo {
        id,
        addr: stream
            .peer_addr()
            .map(|a| a.to_string())
            .unwrap_or_default(),
        name: Default::default(),
        created: Instant::now(),
        last_cmd: usize::MAX.into(),
        kill: Default::default(),
    });
    px.clients.lock().insert(id, info.clone());
    px.stats.connections_received.fetch_add(1, Relaxed);
    let (tx, rx) = mpsc::unbounded_channel();
    let routing = px.routing.get();
    let mut c = Client {
        authed: !px.auth_required.load(Relaxed),
        routing_version: px.routing.version(),
        routing,
        px: px.clone(),
        info,
        id,
        resp3: false,
        close: false,
        barrier: false,
        tx,
        pending: VecDeque::new(),
        head: 0,
        out: BytesMut::with_capacity(READ_BUF),
        batches: Vec::new(),
        keys: Vec::new(),
        batch_start: Instant::now(),
        private: Vec::new(),
        private_batch: None,
        multi: None,
        watch_slot: None,
        subs: None,
        replica_reads: px.cfg.read().read_policy == "prefer-replica-same-zone",
        redirects: Vec::new(),
    };
    if let Err(e) = c.run(stream, rx).await {
        tracing::debug!(id, error = %e, "client closed");
    }
    px.clients.lock().remove(&id);
}

impl Client {
    async fn run(
        &mut self,
        mut stream: TcpStream,
        mut rx: mpsc::UnboundedReceiver<Reply>,
    ) -> std::io::Result<()> {
        let (mut rd, mut wr) = stream.split();
        // bytes of `out` already written; replies keep arriving meanwhile
        let mut written = 0usize;
        let mut inbuf = BytesMut::with_capacity(READ_BUF);
        let mut parser = RequestParser::new();
        // one waiter registration for the connection's life, not one per batch
        let info = self.info.clone();
        let kill = info.kill.notified();
        tokio::pin!(kill);
        let (max_pending, timeout, max_bytes) = {
            let cfg = self.px.cfg.read();
            let max_bytes = match cfg.max_pending_bytes {
                0 => usize::MAX,
                n => n,
            };
            (cfg.max_pending, cfg.client_timeout, max_bytes)
        };
        loop {
            let v = self.px.routing.version();
            if v != self.routing_version {
                self.routing = self.px.routing.get();
                self.routing_version = v;
            }
            self.batch_start = Instant::now();
            while self.pending.len() < max_pending
                && !self.close
                && (!self.barrier || self.pending.is_empty())
            {
                self.barrier = false;
                let limits = Limits {
                    max_bulk_len: kvfleet_resp::request::DEFAULT_MAX_BULK_LEN,
                    authenticated: self.authed,
                };
                match parser.parse(&inbuf, &limits) {
                    Ok(Some(n)) => {
                        let cmd = match parser.args.is_empty() {
                            true => None,
                            false => table().lookup(parser.arg(&inbuf, 0)),
                        };
                        // commands with a connection of their own wait for
                        // everything before them (and hold back what follows)
                        if !self.pending.is_empty() && cmd.is_some_and(|c| self.exclusive(c)) {
                            self.barrier = true;
                            break;
                        }
                        let raw = inbuf.split_to(n).freeze();
                        if parser.args.is_empty() {
                            continue;
                        }
                        let argv: SmallVec<[&[u8]; 8]> = (0..parser.args.len())
                            .map(|i| parser.arg(&raw, i))
                            .collect();
                        let raw = if parser.inline {
                            let mut v = Vec::new();
                            encode_cmd(&mut v, &argv);
                            Bytes::from(v)
                        } else {
                            raw.clone()
                        };
                        self.command(cmd, &argv, raw);
                    }
                    Ok(None) => {
                        if parser.pending_bulk > 0 {
                            inbuf.reserve(parser.pending_bulk);
                        }
                        break;
                    }
                    Err(e) => {
                        let mut b = BytesMut::new();
                        encode::error(&mut b, format!("ERR {e}").as_bytes());
                        self.push(NO_CMD, State::Done(b.freeze()), Bytes::new());
                        self.close = true;
                        break;
                    }
                }
            }
            self.send_batches().await;
            self.drain_ready();
            // Replies of one read go out in one write: wait for the rest of
            // the batch (split over groups, they arrive piecemeal) unless a
            // deep pipeline has already piled up plenty.
            let want_write = written < self.out.len()
                && (self.pending.is_empty() || self.out.len() >= FLUSH_AT || written > 0);
            if self.out.len() - written > max_bytes {
                // a client that does not read its replies: Redis's output
                // buffer limit, applied to what waits here for it
                tracing::warn!(
                    id = self.id,
                    bytes = self.out.len() - written,
                    "client over max_pending_bytes; closing"
                );
                self.px.stats.output_limit_kills.fetch_add(1, Relaxed);
                return Ok(());
            }
            if self.close && self.pending.is_empty() && written == self.out.len() {
                return Ok(());
            }
            let idle = async {
                match timeout {
                    0 => std::future::pending::<()>().await,
                    t => tokio::time::sleep(std::time::Duration::from_secs(t)).await,
                }
            };
            let can_read = self.pending.len() < max_pending
                && !self.close
                && !self.barrier
                && self.out.len() - written < 4 * FLUSH_AT;
            tokio::select! {
                r = wr.write(&self.out[written..]), if want_write => {
                    let n = r?;
                    written += n;
                    self.px.stats.net_out.fetch_add(n as u64, Relaxed);
                    if written == self.out.len() {
                        self.out.clear();
                        written = 0;
                    }
                }
                r = rd.read_buf(&mut inbuf), if can_read => {
                    let n = r?;
                    if n == 0 {
                        return Ok(());
                    }
                    self.px.stats.net_in.fetch_add(n as u64, Relaxed);
                    if inbuf.capacity() - inbuf.len() < 1024 {
                        inbuf.reserve(READ_BUF);
                    }
                }
                Some(r) = rx.recv() => {
                    self.on_replies(r);
                    while let Ok(r) = rx.try_recv() {
                        self.on_replies(r);
                    }
                }
                _ = &mut kill => return Ok(()),
                _ = idle, if self.pending.is_empty() && self.out.is_empty() => return Ok(()),
            }
        }
    }

    fn push(&mut self, cmd: u16, state: State, raw: Bytes) {
        self.pending.push_back(Pending {
            cmd,
            started: self.batch_start,
            state,
            raw,
            retried: false,
        });
    }

    fn next_seq(&self) -> u64 {
        self.head + self.pending.len() as u64
    }

    /// A reply the proxy makes itself: written straight out when nothing is
    /// in flight before it, else queued behind what is.
    pub fn reply(&mut self, cmd: u16, f: impl FnOnce(&mut BytesMut, bool)) {
        if self.pending.is_empty() {
            let at = self.out.len();
            f(&mut self.out, self.resp3);
            if cmd != NO_CMD {
                let err = self.out.get(at) == Some(&b'-');
                let us = self.batch_start.elapsed().as_micros() as u64;
                self.px.stats.record(cmd as usize, us, err);
            }
        } else {
            let mut b = BytesMut::new();
            f(&mut b, self.resp3);
            self.push(cmd, State::Done(b.freeze()), Bytes::new());
        }
    }

    pub fn error(&mut self, cmd: u16, msg: &str) {
        self.reply(cmd, |o, _| encode::error(o, msg.as_bytes()));
    }

    /// Adds a command to this read's batch for `server` (the `Arc` is cloned
    /// once per batch, not per command: its count is shared across threads).
    fn forward(&mut self, server: &Arc<Server>, data: &[u8], seq: u64, part: u32) {
        batch_for(&mut self.batches, &self.tx, server).push(data, seq, part);
    }

    /// As [`Client::forward`], to group `g`'s master.
    fn forward_group(&mut self, g: usize, data: &[u8], seq: u64, part: u32) {
        let master = &self.routing.groups[g].master;
        batch_for(&mut self.batches, &self.tx, master).push(data, seq, part);
    }

    /// The server a `-MOVED` names, kept for the next redirections (a few).
    fn redirect(&mut self, addr: &str) -> Arc<Server> {
        if let Some(s) = self.redirects.iter().find(|s| s.addr == addr) {
            return s.clone();
        }
        let s = self.px.backends.get(addr);
        if self.redirects.len() >= 8 {
            self.redirects.remove(0);
        }
        self.redirects.push(s.clone());
        s
    }

    /// Whether this command must run alone: it goes to a private connection.
    fn exclusive(&self, cmd: &Cmd) -> bool {
        cmd.route == Route::Private
            && (self.multi.is_none()
                || matches!(cmd.spec.name, "exec" | "discard" | "multi" | "watch"))
    }

    async fn send_batches(&mut self) {
        if let Some((addr, batch)) = self.private_batch.take() {
            let resp3 = self.resp3;
            let i = match self
                .private
                .iter()
                .position(|(a, r, _)| *a == addr && *r == resp3)
            {
                Some(i) => i,
                None => {
                    let pool = self.px.backends.private(&addr, resp3);
                    self.private.push((addr.clone(), resp3, pool));
                    self.private.len() - 1
                }
            };
            if let Err(e) = self.private[i].2.conn(0).send(batch).await {
                let msg = Bytes::from(format!("-ERR kvfleet-proxy: backend {addr} is gone\r\n"));
                for (seq, part) in e.0.ids {
                    let _ = self.tx.send(Reply::one(seq, part, msg.clone()));
                }
            }
        }
        for (server, batch) in self.batches.drain(..) {
            let conn = server.pool(self.resp3).conn(self.id);
            if let Err(e) = conn.send(batch).await {
                let msg = Bytes::from(format!(
                    "-ERR kvfleet-proxy: backend {} is gone\r\n",
                    server.addr
                ));
                for (seq, part) in e.0.ids {
                    let _ = self.tx.send(Reply::one(seq, part, msg.clone()));
                }
            }
        }
    }

    /// `cmd` is `argv[0]`'s row, if the table has one.
    fn command(&mut self, cmd: Option<&'static Cmd>, argv: &[&[u8]], raw: Bytes) {
        let Some(cmd) = cmd else {
            let mut msg = format!(
                "ERR unknown command '{}', with args beginning with: ",
                String::from_utf8_lossy(argv[0])
            );
            for a in &argv[1..] {
                msg.push_str(&format!("'{}' ", String::from_utf8_lossy(a)));
            }
            self.error(NO_CMD, &msg);
            return;
        };
        self.info.last_cmd.store(cmd.index, Relaxed);
        let ci = cmd.index as u16;
        if !self.authed && !cmd.spec.has(kvfleet_model::commands::flag::NO_AUTH) {
            self.error(ci, "NOAUTH Authentication required.");
            return;
        }
        if !cmd.spec.arity_ok(argv.len()) {
            let msg = format!(
                "ERR wrong number of arguments for '{}' command",
                cmd.spec.name
            );
            self.error(ci, &msg);
            return;
        }
        if self.multi.is_some()
            && !matches!(
                cmd.spec.name,
                "exec" | "discard" | "multi" | "watch" | "quit" | "reset"
            )
        {
            self.queue(cmd, argv, raw);
            return;
        }
        if !self.resp3
            && self.subscribed()
            && !matches!(
                cmd.spec.name,
                "subscribe"
                    | "unsubscribe"
                    | "psubscribe"
                    | "punsubscribe"
                    | "ping"
                    | "quit"
                    | "reset"
            )
        {
            let msg = format!(
                "ERR Can't execute '{}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context",
                cmd.spec.name
            );
            self.error(ci, &msg);
            return;
        }
        let mut route = cmd.route;
        if matches!(cmd.spec.name, "script" | "function" | "pubsub") {
            match script_merge(cmd.spec.name, argv[1]) {
                Some(r) => route = r,
                None => {
                    let msg = format!(
                        "ERR kvfleet-proxy does not support '{} {}'",
                        cmd.spec.name.to_uppercase(),
                        String::from_utf8_lossy(argv[1]).to_uppercase()
                    );
                    self.error(ci, &msg);
                    return;
                }
            }
        }
        match route {
            Route::Local => local::run(self, cmd, argv),
            Route::Slot => self.route_slot(cmd, argv, raw),
            Route::Split(merge, kind) => self.route_split(cmd, argv, raw, merge, kind),
            Route::FanOut(merge) => {
                if matches!(cmd.spec.name, "flushall" | "flushdb")
                    && !self.px.cfg.read().allow_flushall
                {
                    self.error(
                        ci,
                        "ERR FLUSHALL is disabled on this proxy (allow_flushall)",
                    );
                    return;
                }
                self.fan_out(ci, raw, merge);
            }
            Route::AnyGroup => {
                let g = fastrand::usize(..self.routing.groups.len());
                self.send_to_group(ci, g, raw);
            }
            Route::Scan => self.route_scan(ci, argv),
            Route::Channel => {
                let g = self.routing.group_of(kvfleet_model::slot(argv[1]));
                self.send_to_group(ci, g, raw);
            }
            Route::Private => self.private_command(cmd, argv, raw),
            Route::Unsupported => {
                let msg = format!(
                    "ERR kvfleet-proxy does not support the '{}' command",
                    cmd.spec.name.to_uppercase()
                );
                self.error(ci, &msg);
            }
        }
    }

    /// The slot all of a command's keys share: `Ok(None)` without keys,
    /// `Err` when they span slots.
    fn keys_slot(&mut self, cmd: &Cmd, argv: &[&[u8]]) -> Result<Option<u16>, ()> {
        let mut keys = std::mem::take(&mut self.keys);
        keys.clear();
        cmd.spec.key_indexes(argv, &mut keys);
        let slot = keys.first().map(|&i| kvfleet_model::slot(argv[i]));
        let cross =
            slot.is_some_and(|s| keys[1..].iter().any(|&i| kvfleet_model::slot(argv[i]) != s));
        self.keys = keys;
        if cross { Err(()) } else { Ok(slot) }
    }

    /// A command inside MULTI: checked now, answered `+QUEUED`, sent at EXEC.
    fn queue(&mut self, cmd: &Cmd, argv: &[&[u8]], raw: Bytes) {
        let ci = cmd.index as u16;
        let runs_on_backend = matches!(
            cmd.route,
            Route::Slot | Route::Split(..) | Route::AnyGroup | Route::Private | Route::Channel
        ) || matches!(cmd.spec.name, "ping" | "echo");
        let slot = self.keys_slot(cmd, argv);
        let m = self.multi.as_mut().expect("in MULTI");
        let err = if !runs_on_backend {
            Some(format!(
                "ERR kvfleet-proxy does not support '{}' inside MULTI",
                cmd.spec.name.to_uppercase()
            ))
        } else {
            match slot {
                Err(()) => {
                    Some("CROSSSLOT Keys in request don't hash to the same slot".to_string())
                }
                Ok(Some(s)) => match m.slot.or(self.watch_slot) {
                    Some(t) if t != s => {
                        Some("CROSSSLOT Keys in request don't hash to the same slot".to_string())
                    }
                    _ => {
                        m.slot = Some(s);
                        None
                    }
                },
                Ok(None) => None,
            }
        };
        match err {
            Some(e) => {
                m.aborted = true;
                self.error(ci, &e);
            }
            None => {
                m.queued.push(raw);
                self.reply(ci, |o, _| encode::simple(o, b"QUEUED"));
            }
        }
    }

    /// The group a transaction or WATCH goes to.
    fn group_for(&self, slot: Option<u16>) -> usize {
        slot.map_or(0, |s| self.routing.group_of(s))
    }

    fn send_private(
        &mut self,
        ci: u16,
        g: usize,
        data: &[u8],
        parts: u32,
        state: State,
        raw: Bytes,
    ) {
        let seq = self.next_seq();
        let addr = self.routing.groups[g].master.addr.clone();
        let mut b = Batch::new(self.tx.clone());
        for part in 0..parts {
            b.ids.push((seq, part));
        }
        b.data.extend_from_slice(data);
        self.private_batch = Some((addr, b));
        self.push(ci, state, raw);
        self.barrier = true;
    }

    /// MULTI, EXEC, DISCARD, WATCH, UNWATCH and blocking commands.
    fn private_command(&mut self, cmd: &Cmd, argv: &[&[u8]], raw: Bytes) {
        let ci = cmd.index as u16;
        let crossslot = "CROSSSLOT Keys in request don't hash to the same slot";
        match cmd.spec.name {
            "multi" => {
                if self.multi.is_some() {
                    self.error(ci, "ERR MULTI calls can not be nested");
                } else {
                    self.multi = Some(Multi::default());
                    self.reply(ci, |o, _| encode::simple(o, b"OK"));
                }
            }
            "discard" => match self.multi.take() {
                None => self.error(ci, "ERR DISCARD without MULTI"),
                Some(_) => {
                    if let Some(s) = self.watch_slot.take() {
                        // the backend connection holds the WATCH: clear it there
                        let g = self.group_for(Some(s));
                        let mut data = Vec::new();
                        encode_cmd(&mut data, &[b"UNWATCH"]);
                        self.send_private(ci, g, &data, 1, State::Wait, raw);
                    } else {
                        self.reply(ci, |o, _| encode::simple(o, b"OK"));
                    }
                }
            },
            "exec" => {
                let Some(m) = self.multi.take() else {
                    self.error(ci, "ERR EXEC without MULTI");
                    return;
                };
                let watched = self.watch_slot.take();
                if m.aborted {
                    if let Some(s) = watched {
                        let g = self.group_for(Some(s));
                        let mut data = Vec::new();
                        encode_cmd(&mut data, &[b"UNWATCH"]);
                        let abort =
                            "-EXECABORT Transaction discarded because of previous errors.\r\n";
                        let mut mg = Merger::new(Merge::Last, 1);
                        mg.fixed = Some(Bytes::from_static(abort.as_bytes()));
                        self.send_private(ci, g, &data, 1, State::Merge(Box::new(mg)), raw);
                    } else {
                        self.error(
                            ci,
                            "EXECABORT Transaction discarded because of previous errors.",
                        );
                    }
                    return;
                }
                let g = self.group_for(m.slot.or(watched));
                let mut data = Vec::new();
                encode_cmd(&mut data, &[b"MULTI"]);
                for q in &m.queued {
                    data.extend_from_slice(q);
                }
                encode_cmd(&mut data, &[b"EXEC"]);
                let parts = m.queued.len() as u32 + 2;
                let mg = Merger::new(Merge::Last, parts as usize);
                self.send_private(ci, g, &data, parts, State::Merge(Box::new(mg)), raw);
            }
            "watch" => {
                if self.multi.is_some() {
                    self.error(ci, "ERR WATCH inside MULTI is not allowed");
                    return;
                }
                let slot = match self.keys_slot(cmd, argv) {
                    Ok(Some(s)) if self.watch_slot.is_none_or(|w| w == s) => s,
                    _ => return self.error(ci, crossslot),
                };
                self.watch_slot = Some(slot);
                let g = self.group_for(Some(slot));
                self.send_private(ci, g, &raw.clone(), 1, State::Wait, raw);
            }
            "unwatch" => match self.watch_slot.take() {
                Some(s) => {
                    let g = self.group_for(Some(s));
                    self.send_private(ci, g, &raw.clone(), 1, State::Wait, raw);
                }
                None => self.reply(ci, |o, _| encode::simple(o, b"OK")),
            },
            "subscribe" | "psubscribe" | "unsubscribe" | "punsubscribe" => {
                self.pubsub_command(cmd, argv, raw)
            }
            _ => {
                // a blocking command: on this client's own connection to the keys' group
                let slot = match self.keys_slot(cmd, argv) {
                    Ok(s) => s,
                    Err(()) => return self.error(ci, crossslot),
                };
                let g = self.group_for(slot);
                self.send_private(ci, g, &raw.clone(), 1, State::Wait, raw);
            }
        }
    }

    /// Whether RESP2's subscribed mode applies (any channel or pattern).
    pub fn subscribed(&self) -> bool {
        self.subs.as_ref().is_some_and(|s| s.count() > 0)
    }

    /// (P)(UN)SUBSCRIBE: channels to the group of their slot, patterns to
    /// every group, each on this client's subscriber connection there.
    fn pubsub_command(&mut self, cmd: &Cmd, argv: &[&[u8]], raw: Bytes) {
        let ci = cmd.index as u16;
        let kind = Kind::from_command(cmd.spec.name).expect("pub/sub command");
        let groups = self.routing.groups.len();
        let subs = self.subs.get_or_insert_with(Default::default);
        let mut names: Vec<Vec<u8>> = argv[1..].iter().map(|a| a.to_vec()).collect();
        let bare = names.is_empty();
        if bare {
            // UNSUBSCRIBE / PUNSUBSCRIBE with no names: everything of that kind
            names = if kind.is_pattern() {
                subs.patterns.iter().cloned().collect()
            } else {
                subs.channels.iter().cloned().collect()
            };
            names.sort();
            if names.is_empty() {
                let count = subs.count();
                let resp3 = self.resp3;
                self.reply(ci, |o, _| pubsub::frame(o, kind, None, count, resp3));
                return;
            }
        }
        let mut w = Waiting::default();
        let mut per_group: Vec<Vec<&[u8]>> = vec![Vec::new(); groups];
        for n in &names {
            if kind.is_pattern() {
                w.want(kind, n, groups);
                per_group.iter_mut().for_each(|g| g.push(n));
            } else {
                w.want(kind, n, 1);
                per_group[self.routing.group_of(kvfleet_model::slot(n))].push(n);
            }
        }
        subs.links.resize(groups, None);
        for (g, names) in per_group.iter().enumerate() {
            if names.is_empty() {
                continue;
            }
            let mut args: Vec<&[u8]> = vec![argv[0]];
            if !bare {
                args.extend(names.iter().copied());
            }
            let mut data = Vec::new();
            encode_cmd(&mut data, &args);
            let link = subs.links[g].get_or_insert_with(|| {
                crate::backend::subscriber(
                    self.routing.groups[g].master.addr.clone(),
                    self.resp3,
                    self.px.backends.opts().clone(),
                    self.tx.clone(),
                    g as u32,
                )
            });
            let _ = link.send(data);
        }
        self.push(ci, State::Subs(Box::new(w)), raw);
        self.barrier = true;
    }

    /// A frame from a subscriber connection: a confirmation for the waiting
    /// command, or a message to pass on.
    fn on_push(&mut self, data: Bytes) {
        let Some((kind, name)) = pubsub::confirmation(&data) else {
            self.out.extend_from_slice(&data);
            return;
        };
        let Some(idx) = self
            .pending
            .iter()
            .position(|p| matches!(p.state, State::Subs(_)))
        else {
            return;
        };
        let p = &mut self.pending[idx];
        let State::Subs(w) = &mut p.state else {
            unreachable!()
        };
        if w.confirm(kind, &name) {
            let State::Subs(w) = std::mem::replace(&mut p.state, State::Wait) else {
                unreachable!()
            };
            let subs = self.subs.get_or_insert_with(Default::default);
            p.state = State::Done(subs.reply(*w, self.resp3));
            if idx == 0 {
                self.drain_ready();
            }
        }
    }

    fn send_to_group(&mut self, ci: u16, g: usize, raw: Bytes) {
        let seq = self.next_seq();
        self.forward_group(g, &raw, seq, 0);
        self.push(ci, State::Wait, raw);
    }

    fn route_slot(&mut self, cmd: &Cmd, argv: &[&[u8]], raw: Bytes) {
        let Ok(slot) = self.keys_slot(cmd, argv) else {
            self.error(
                cmd.index as u16,
                "CROSSSLOT Keys in request don't hash to the same slot",
            );
            return;
        };
        // EVAL with no keys (and the like) may run anywhere
        let g = match slot {
            Some(s) => self.routing.group_of(s),
            None => fastrand::usize(..self.routing.groups.len()),
        };
        if self.replica_reads && cmd.spec.has(kvfleet_model::commands::flag::READONLY) {
            let seq = self.next_seq();
            let server = self.routing.groups[g].read_target(&self.px.zone);
            batch_for(&mut self.batches, &self.tx, server).push(&raw, seq, 0);
            self.push(cmd.index as u16, State::Wait, raw);
            return;
        }
        self.send_to_group(cmd.index as u16, g, raw);
    }

    fn route_split(
        &mut self,
        cmd: &Cmd,
        argv: &[&[u8]],
        raw: Bytes,
        merge: Merge,
        kind: SplitKind,
    ) {
        let step = if kind == SplitKind::Pairs { 2 } else { 1 };
        if kind == SplitKind::Pairs && !(argv.len() - 1).is_multiple_of(2) {
            let msg = format!(
                "ERR wrong number of arguments for '{}' command",
                cmd.spec.name
            );
            self.error(cmd.index as u16, &msg);
            return;
        }
        // group of each key, in argument order
        let mut groups: SmallVec<[(usize, usize); 16]> = SmallVec::new(); // (group, arg index)
        let mut i = 1;
        while i < argv.len() {
            groups.push((self.routing.group_of(kvfleet_model::slot(argv[i])), i));
            i += step;
        }
        let first = groups[0].0;
        if groups.iter().all(|(g, _)| *g == first) {
            // one group: the command goes as it came and its reply comes back as is
            self.send_to_group(cmd.index as u16, first, raw);
            return;
        }
        let mut order: SmallVec<[usize; 8]> = groups.iter().map(|(g, _)| *g).collect();
        order.sort_unstable();
        order.dedup();
        let seq = self.next_seq();
        let mut m = Merger::new(merge, order.len());
        m.nkeys = groups.len();
        let mut buf = Vec::new();
        for (part, &g) in order.iter().enumerate() {
            let mut args: SmallVec<[&[u8]; 16]> = SmallVec::new();
            args.push(argv[0]);
            let mut positions = Vec::new();
            for (k, &(kg, ai)) in groups.iter().enumerate() {
                if kg == g {
                    args.extend_from_slice(&argv[ai..ai + step]);
                    positions.push(k as u32);
                }
            }
            m.positions.push(positions);
            buf.clear();
            encode_cmd(&mut buf, &args);
            self.forward_group(g, &buf, seq, part as u32);
        }
        self.push(cmd.index as u16, State::Merge(Box::new(m)), raw);
    }

    fn fan_out(&mut self, ci: u16, raw: Bytes, merge: Merge) {
        let seq = self.next_seq();
        let n = self.routing.groups.len();
        for g in 0..n {
            self.forward_group(g, &raw, seq, g as u32);
        }
        self.push(ci, State::Merge(Box::new(Merger::new(merge, n))), raw);
    }

    fn route_scan(&mut self, ci: u16, argv: &[&[u8]]) {
        let Some(cursor) = std::str::from_utf8(argv[1])
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
        else {
            self.error(ci, "ERR invalid cursor");
            return;
        };
        let groups = self.routing.groups.len();
        let (g, bc) = split_cursor(cursor, groups as u64);
        let bc = bc.to_string();
        let mut args: SmallVec<[&[u8]; 8]> = SmallVec::from_slice(argv);
        args[1] = bc.as_bytes();
        let mut buf = Vec::new();
        encode_cmd(&mut buf, &args);
        let seq = self.next_seq();
        self.forward_group(g, &buf, seq, 0);
        let state = State::Scan {
            group: g as u32,
            groups: groups as u32,
        };
        self.push(ci, state, Bytes::from(buf));
    }

    /// A backend's run of replies. The common case, the reply the client
    /// waits for next, is copied straight to the output; others are kept
    /// until the replies before them have come.
    fn on_replies(&mut self, r: Reply) {
        let mut now = None;
        let mut start = 0;
        for &(seq, part, end) in &r.ids {
            let end = end as usize;
            let frame = &r.data[start..end];
            let next = seq == self.head
                && self
                    .pending
                    .front()
                    .is_some_and(|p| matches!(p.state, State::Wait));
            if next && !frame.starts_with(b"-MOVED ") {
                let p = self.pending.pop_front().expect("checked");
                self.head += 1;
                self.out.extend_from_slice(frame);
                self.account(&p, frame, &mut now);
                self.drain_from(&mut now);
            } else {
                self.on_reply(seq, part, r.data.slice(start..end));
            }
            start = end;
        }
    }

    fn on_reply(&mut self, seq: u64, part: u32, data: Bytes) {
        if seq == PUSH_SEQ {
            return self.on_push(data);
        }
        if seq == LINK_DOWN_SEQ {
            // like a Redis server going away: the client reconnects and resubscribes
            self.out.extend_from_slice(&data);
            self.head += self.pending.len() as u64;
            self.pending.clear();
            self.close = true;
            return;
        }
        let Some(idx) = seq.checked_sub(self.head).map(|i| i as usize) else {
            return;
        };
        let Some(p) = self.pending.get_mut(idx) else {
            return;
        };
        match &mut p.state {
            State::Done(_) | State::Subs(_) => {}
            State::Wait => {
                if data.starts_with(b"-MOVED ")
                    && !p.retried
                    && let Some(addr) = moved_addr(&data)
                {
                    p.retried = true;
                    let raw = p.raw.clone();
                    let server = self.redirect(&addr);
                    self.forward(&server, &raw, seq, 0);
                    self.px.auto_reload();
                    return;
                }
                p.state = State::Done(data);
            }
            State::Scan { group, groups } => {
                let data = scan_reply(&data, *group as usize, *groups as usize);
                p.state = State::Done(data);
            }
            State::Merge(m) => {
                if m.add(part, data) {
                    let State::Merge(m) = std::mem::replace(&mut p.state, State::Wait) else {
                        unreachable!()
                    };
                    p.state = State::Done(m.finish());
                }
            }
        }
        if idx == 0 {
            self.drain_ready();
        }
    }

    /// Moves the completed front of the queue to the output buffer.
    fn drain_ready(&mut self) {
        self.drain_from(&mut None);
    }

    /// [`Client::drain_ready`] sharing the caller's clock read.
    fn drain_from(&mut self, now: &mut Option<Instant>) {
        while let Some(State::Done(_)) = self.pending.front().map(|p| &p.state) {
            let p = self.pending.pop_front().expect("checked");
            self.head += 1;
            let State::Done(data) = &p.state else {
                unreachable!()
            };
            self.out.extend_from_slice(data);
            self.account(&p, data, now);
        }
    }

    /// Latency stats and the slow log for a command answered with `reply`
    /// (one clock read per pass, not per reply).
    fn account(&self, p: &Pending, reply: &[u8], now: &mut Option<Instant>) {
        if p.cmd == NO_CMD {
            return;
        }
        let now = *now.get_or_insert_with(Instant::now);
        let us = now.saturating_duration_since(p.started).as_micros() as u64;
        self.px
            .stats
            .record(p.cmd as usize, us, reply.first() == Some(&b'-'));
        let slower = self.px.slowlog_slower_than.load(Relaxed);
        if slower >= 0 && us >= slower as u64 {
            self.slowlog(us, &p.raw);
        }
    }

    fn slowlog(&self, us: u64, raw: &Bytes) {
        let mut parser = RequestParser::new();
        if let Ok(Some(_)) = parser.parse(raw, &Limits::default()) {
            let args: Vec<&[u8]> = (0..parser.args.len()).map(|i| parser.arg(raw, i)).collect();
            let max = self.px.cfg.read().slowlog_max_len;
            self.px.stats.slowlog_push(us, &args, max);
        }
    }

    /// RESET: back to a fresh connection's state (its private connections close).
    pub fn reset(&mut self) {
        self.subs = None;
        self.multi = None;
        self.watch_slot = None;
        self.private.clear();
        self.resp3 = false;
        self.barrier = true;
        self.authed = !self.px.auth_required.load(Relaxed);
    }

    pub fn routing(&self) -> &Routing {
        &self.routing
    }

    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }
}

/// The batch for `server` in this read, started if there is none yet.
fn batch_for<'b>(
    batches: &'b mut Vec<(Arc<Server>, Batch)>,
    tx: &ReplyTx,
    server: &Arc<Server>,
) -> &'b mut Batch {
    let i = match batches.iter().position(|(s, _)| Arc::ptr_eq(s, server)) {
        Some(i) => i,
        None => {
            batches.push((server.clone(), Batch::new(tx.clone())));
            batches.len() - 1
        }
    };
    &mut batches[i].1
}

/// The address in `-MOVED <slot> <host:port>`.
fn moved_addr(reply: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(reply).ok()?.trim_end();
    let addr = text.split_whitespace().nth(2)?;
    addr.contains(':').then(|| addr.to_string())
}
