//! Replication, master side. A replica (kvfleet, or Redis's `REPLICAOF`)
//! sends `PSYNC replid offset`: within the backlog it gets `+CONTINUE` and
//! the bytes it missed; otherwise `+FULLRESYNC replid offset`, the forkless
//! snapshot streamed as an RDB (diskless, `$EOF:` framing), and from then
//! the write stream (docs/decisions/0006) — the same commands the AOF gets,
//! so a replica replays exactly what the master did.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::persist::feed;
use crate::server::Server;

/// Redis's default `repl-backlog-size`.
pub const BACKLOG_SIZE: usize = 1 << 20;

/// A new replication history id (40 hex digits).
pub fn new_replid() -> String {
    (0..40)
        .map(|_| char::from_digit(fastrand::u32(..16), 16).expect("hex digit"))
        .collect()
}

/// What a replica said before PSYNC, and its progress.
#[derive(Debug, Default)]
pub struct ReplicaInfo {
    pub ip: String,
    pub port: AtomicU64,
    /// Offset the replica last acknowledged (`REPLCONF ACK`).
    pub ack: AtomicU64,
    /// When (Unix ms) it last did.
    pub ack_ms: AtomicU64,
    /// Loaded its snapshot and receiving the stream (`state=online`).
    pub online: std::sync::atomic::AtomicBool,
}

/// Run-time replication settings the command path reads.
#[derive(Debug)]
pub struct Policy {
    /// `min-replicas-to-write` / `min-replicas-max-lag` (seconds).
    pub min_to_write: AtomicU64,
    pub max_lag: AtomicU64,
    /// Replicas that acknowledged within `max_lag` (refreshed by the cron
    /// and on every ACK).
    pub good: AtomicU64,
    pub read_only: std::sync::atomic::AtomicBool,
    pub priority: AtomicU64,
}

impl Policy {
    pub fn new(cfg: &crate::config::Config) -> Policy {
        Policy {
            min_to_write: cfg.min_replicas_to_write.into(),
            max_lag: cfg.min_replicas_max_lag.into(),
            good: 0.into(),
            read_only: cfg.replica_read_only.into(),
            priority: cfg.replica_priority.into(),
        }
    }

    /// Whether a write may run under `min-replicas-to-write`.
    #[inline]
    pub fn enough_replicas(&self) -> bool {
        let min = self.min_to_write.load(Relaxed);
        min == 0 || self.good.load(Relaxed) >= min
    }
}

/// Recounts the replicas with a recent enough ACK.
pub fn refresh_good(srv: &Server) {
    let lag_ms = srv.repl_policy.max_lag.load(Relaxed) * 1000;
    let now = crate::util::now_ms();
    let good = {
        let g = srv.persist.feed.inner.lock();
        g.repl
            .replicas
            .iter()
            .filter(|(_, i)| {
                i.online.load(Relaxed) && now.saturating_sub(i.ack_ms.load(Relaxed)) <= lag_ms
            })
            .count()
    };
    srv.repl_policy.good.store(good as u64, Relaxed);
}

/// Each replica's (ip, listening port, online, acknowledged offset).
pub fn replica_addrs(srv: &Server) -> Vec<(String, u16, bool, u64)> {
    let g = srv.persist.feed.inner.lock();
    g.repl
        .replicas
        .iter()
        .map(|(_, i)| {
            (
                i.ip.clone(),
                i.port.load(Relaxed) as u16,
                i.online.load(Relaxed),
                i.ack.load(Relaxed),
            )
        })
        .collect()
}

/// The replication stream and this server's place in its history (under
/// the feed's lock). A master writes its own commands into it; a replica
/// writes the bytes it applied from its master, verbatim and at the
/// master's offsets (Redis's PSYNC2): its own replicas then see the same
/// history, and after a promotion or a FAILOVER every server of the group
/// can continue from where it was instead of a full sync.
#[derive(Debug)]
pub struct ReplStream {
    /// `master_replid`: the history this stream belongs to.
    pub replid: String,
    /// `master_replid2`: the history before the last promotion (or master
    /// switch), valid up to `second_offset` (the next byte, 1-based; -1: none).
    pub replid2: String,
    pub second_offset: i64,
    /// `master_repl_offset`: bytes of stream so far.
    pub offset: u64,
    /// The last `limit` bytes, for partial resyncs; active once the first
    /// replica attached (always on a replica).
    pub backlog: VecDeque<u8>,
    pub limit: usize,
    pub active: bool,
    /// This server follows a master: the stream is what the master link
    /// applied, not what local commands did.
    pub mirror: bool,
    pub replicas: Vec<(mpsc::UnboundedSender<Bytes>, Arc<ReplicaInfo>)>,
}

impl Default for ReplStream {
    fn default() -> ReplStream {
        ReplStream {
            replid: new_replid(),
            replid2: "0".repeat(40),
            second_offset: -1,
            offset: 0,
            backlog: VecDeque::new(),
            limit: BACKLOG_SIZE,
            active: false,
            mirror: false,
            replicas: Vec::new(),
        }
    }
}

impl ReplStream {
    pub fn push(&mut self, cmds: &[u8]) {
        self.offset += cmds.len() as u64;
        self.backlog.extend(cmds);
        let over = self.backlog.len().saturating_sub(self.limit);
        self.backlog.drain(..over);
        if !self.replicas.is_empty() {
            let b = Bytes::copy_from_slice(cmds);
            self.replicas.retain(|(tx, _)| tx.send(b.clone()).is_ok());
        }
    }

    /// `repl-backlog-size`: keeps the newest bytes when it shrinks.
    pub fn set_limit(&mut self, limit: usize) {
        self.limit = limit.max(16 * 1024);
        let over = self.backlog.len().saturating_sub(self.limit);
        self.backlog.drain(..over);
    }

    /// The stream from `from` on, if the backlog still holds it.
    fn since(&self, from: u64) -> Option<Vec<u8>> {
        let first = self.offset - self.backlog.len() as u64;
        if !self.active || from < first || from > self.offset {
            return None;
        }
        Some(
            self.backlog
                .iter()
                .skip((from - first) as usize)
                .copied()
                .collect(),
        )
    }

    /// Whether `PSYNC replid next` continues this history: the current
    /// one, or the previous one up to where it ended.
    fn continues(&self, replid: &[u8], next: i64) -> bool {
        next >= 1
            && (replid == self.replid.as_bytes()
                || (replid == self.replid2.as_bytes() && next <= self.second_offset))
    }

    /// A new history starts here (a promotion, or a master's new id): the
    /// old one stays valid up to this point for replicas that followed it.
    pub fn shift_replid(&mut self, new: String) {
        self.replid2 = std::mem::replace(&mut self.replid, new);
        self.second_offset = self.offset as i64 + 1;
    }

    /// Drops every replica link; they reconnect and PSYNC again (to learn
    /// a new replication id, or to full-sync after ours changed data).
    pub fn disconnect_replicas(&mut self) {
        self.replicas.clear();
    }

    pub fn first_byte(&self) -> u64 {
        self.offset - self.backlog.len() as u64 + 1
    }
}

/// A connection that sent PSYNC: what it asked for.
#[derive(Debug)]
pub struct Psync {
    pub replid: Vec<u8>,
    pub offset: i64,
    pub eof_capable: bool,
    pub port: u64,
}

/// Serves one replica until it goes away.
pub async fn serve_replica(
    srv: Arc<Server>,
    stream: &mut TcpStream,
    req: Psync,
    handle: &crate::server::ClientHandle,
) -> std::io::Result<()> {
    handle.kind.store(crate::server::KIND_REPLICA, Relaxed);
    let ip = stream
        .peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_default();
    let info = Arc::new(ReplicaInfo {
        ip,
        port: req.port.into(),
        ..Default::default()
    });
    let result = tokio::select! {
        r = replica_link(&srv, stream, req, info.clone()) => r,
        _ = handle.kill.notified() => Ok(()),
    };
    // however the link ended (even killed mid-transfer), it leaves the list
    srv.persist
        .feed
        .inner
        .lock()
        .repl
        .replicas
        .retain(|(_, i)| !Arc::ptr_eq(i, &info));
    refresh_good(&srv);
    tracing::info!(replica = %info.ip, "replica gone");
    result
}

async fn replica_link(
    srv: &Arc<Server>,
    stream: &mut TcpStream,
    req: Psync,
    info: Arc<ReplicaInfo>,
) -> std::io::Result<()> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Bytes>();
    let f = &srv.persist.feed;
    // partial resync: same history, and the backlog still holds the gap
    let missed = {
        let mut g = f.inner.lock();
        // PSYNC names the next byte it wants, counting from 1
        let same = g.repl.continues(&req.replid, req.offset);
        match same.then(|| g.repl.since(req.offset as u64 - 1)).flatten() {
            Some(bytes) => {
                g.repl.replicas.push((tx.clone(), info.clone()));
                Some((bytes, g.repl.replid.clone()))
            }
            None => None,
        }
    };
    let missed_was_partial = missed.is_some();
    if let Some((bytes, replid)) = missed {
        srv.persist.sync_partial_ok.fetch_add(1, Relaxed);
        stream
            .write_all(format!("+CONTINUE {replid}\r\n").as_bytes())
            .await?;
        stream.write_all(&bytes).await?;
        tracing::info!(replica = %info.ip, from = req.offset, "partial resync");
    } else {
        if req.offset >= 0 {
            srv.persist.sync_partial_err.fetch_add(1, Relaxed);
        }
        srv.persist.sync_full.fetch_add(1, Relaxed);
        full_sync(srv, stream, &req, tx.clone(), info.clone()).await?;
    }
    drop(tx);
    // After an `$EOF:` transfer the replica finds the end by the mark being
    // the last bytes it read: nothing may follow until it has loaded and
    // sent its first ACK (Redis's masters wait the same way).
    let mut streaming = missed_was_partial || !req.eof_capable;
    info.online.store(streaming, Relaxed);
    // stream writes to the replica; read its ACKs
    let mut inbuf = BytesMut::with_capacity(1024);
    let mut parser = kvfleet_resp::RequestParser::new();
    let mut out = Vec::new();
    loop {
        tokio::select! {
            m = rx.recv(), if streaming => {
                let Some(m) = m else { break Ok(()) };
                out.clear();
                out.extend_from_slice(&m);
                while let Ok(m) = rx.try_recv() {
                    out.extend_from_slice(&m);
                    if out.len() > 1 << 20 {
                        break;
                    }
                }
                if let Err(e) = stream.write_all(&out).await {
                    break Err(e);
                }
            }
            r = stream.read_buf(&mut inbuf) => {
                match r {
                    Ok(0) => break Ok(()),
                    Err(e) => break Err(e),
                    Ok(_) => {}
                }
                let limits = kvfleet_resp::Limits { max_bulk_len: 1 << 20, authenticated: true };
                while let Ok(Some(n)) = parser.parse(&inbuf, &limits) {
                    let args: Vec<&[u8]> = (0..parser.args.len()).map(|i| parser.arg(&inbuf, i)).collect();
                    if args.len() == 3
                        && args[0].eq_ignore_ascii_case(b"replconf")
                        && args[1].eq_ignore_ascii_case(b"ack")
                        && let Some(off) = crate::util::parse_i64(args[2])
                    {
                        info.ack.store(off.max(0) as u64, Relaxed);
                        info.ack_ms.store(crate::util::now_ms(), Relaxed);
                        info.online.store(true, Relaxed);
                        streaming = true;
                        refresh_good(srv);
                    }
                    let _ = inbuf.split_to(n);
                }
            }
        }
    }
}

/// `+FULLRESYNC`, then the snapshot as an RDB; the replica joins the stream
/// at the snapshot's instant (so it gets every write after it, none before).
async fn full_sync(
    srv: &Arc<Server>,
    stream: &mut TcpStream,
    req: &Psync,
    tx: mpsc::UnboundedSender<Bytes>,
    info: Arc<ReplicaInfo>,
) -> std::io::Result<()> {
    let (chunk_tx, mut chunks) = mpsc::channel::<Vec<u8>>(8);
    let (start_tx, start_rx) = tokio::sync::oneshot::channel::<(String, u64)>();
    let s = srv.clone();
    let (done_tx, done) = tokio::sync::oneshot::channel();
    let job = move || {
        // bulk work, as BGSAVE's (lowered once the snapshot started)
        crate::priority::mark_background();
        let _one = s.persist.running.lock();
        let f = &s.persist.feed;
        let mut at = (String::new(), 0);
        let st = crate::persist::snapshot::start_with(&s.db, || {
            let mut g = f.inner.lock();
            g.repl.active = true;
            at = (g.repl.replid.clone(), g.repl.offset);
            g.repl.replicas.push((tx, info));
            if !g.repl.mirror {
                // the stream after the snapshot starts in database 0 (a
                // replica passes its master's stream on as it is)
                let mut select = Vec::new();
                feed::encode(&mut select, &[b"SELECT", b"0"]);
                g.repl.push(&select);
            }
            f.update_active(&g);
        });
        s.persist
            .latest_fork_usec
            .store(st.pause.as_micros() as u64, Relaxed);
        let aux = crate::persist::aux_fields(&s, Some((&at.0, at.1)));
        let _ = start_tx.send(at.clone());
        let w = ChunkWriter {
            tx: chunk_tx,
            buf: Vec::with_capacity(CHUNK),
        };
        let compress = s.rt.read().rdbcompression;
        let r = crate::persist::snapshot::write(
            &s.db,
            &st,
            &aux,
            &s.scripts.lib_codes.lock().clone(),
            compress,
            w,
        )
        .and_then(|mut w| w.flush());
        let _ = done_tx.send(r);
    };
    std::thread::Builder::new()
        .name("replsync".into())
        .spawn(job)?;
    let (replid, at) = start_rx
        .await
        .map_err(|_| std::io::Error::other("snapshot failed to start"))?;
    stream
        .write_all(format!("+FULLRESYNC {replid} {at}\r\n").as_bytes())
        .await?;
    if req.eof_capable {
        let mark: String = (0..40)
            .map(|_| char::from_digit(fastrand::u32(..16), 16).expect("hex"))
            .collect();
        stream
            .write_all(format!("$EOF:{mark}\r\n").as_bytes())
            .await?;
        while let Some(c) = chunks.recv().await {
            stream.write_all(&c).await?;
        }
        stream.write_all(mark.as_bytes()).await?;
    } else {
        // old replicas want the length first: gather the whole file
        let mut all = Vec::new();
        while let Some(c) = chunks.recv().await {
            all.extend_from_slice(&c);
        }
        stream
            .write_all(format!("${}\r\n", all.len()).as_bytes())
            .await?;
        stream.write_all(&all).await?;
    }
    done.await
        .map_err(std::io::Error::other)?
        .map_err(|e| std::io::Error::other(format!("snapshot for a replica: {e}")))?;
    tracing::info!(offset = at, "full resync sent");
    Ok(())
}

const CHUNK: usize = 256 * 1024;

/// Hands the snapshot's bytes to the async side in chunks.
struct ChunkWriter {
    tx: mpsc::Sender<Vec<u8>>,
    buf: Vec<u8>,
}

impl Write for ChunkWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            let b = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
            self.tx
                .blocking_send(b)
                .map_err(|_| std::io::Error::other("replica went away"))?;
        }
        Ok(())
    }
}

/// How many replicas acknowledged `target`.
pub fn acked_since(srv: &Server, target: u64) -> usize {
    let g = srv.persist.feed.inner.lock();
    g.repl
        .replicas
        .iter()
        .filter(|(_, i)| i.ack.load(Relaxed) >= target)
        .count()
}

/// Asks every replica for its offset now (`REPLCONF GETACK *`), for WAIT.
pub fn request_acks(srv: &Server) {
    let mut g = srv.persist.feed.inner.lock();
    if g.repl.replicas.is_empty() || g.repl.mirror {
        return;
    }
    let mut cmd = Vec::new();
    feed::encode(&mut cmd, &[b"REPLCONF", b"GETACK", b"*"]);
    g.repl.push(&cmd);
}

/// The master's keepalive to its replicas (Redis's `repl-ping-replica-period`).
pub fn ping_replicas(srv: &Server) {
    let f = &srv.persist.feed;
    let mut g = f.inner.lock();
    // a replica passes its master's pings on and sends none of its own
    if g.repl.replicas.is_empty() || g.repl.mirror {
        return;
    }
    let mut ping = Vec::new();
    feed::encode(&mut ping, &[b"PING"]);
    g.repl.push(&ping);
}

/// The replica side: which master this server follows and how far it got.
#[derive(Debug, Default)]
pub struct Follow {
    /// `Some((host, port))` while a replica; REPLICAOF bumps `generation`
    /// so an old link's task stops.
    pub master: parking_lot::RwLock<Option<(String, u16)>>,
    /// `master.is_some()`, readable without the lock.
    replica: std::sync::atomic::AtomicBool,
    pub generation: AtomicU64,
    pub link_up: std::sync::atomic::AtomicBool,
    pub sync_in_progress: std::sync::atomic::AtomicBool,
    /// Unix ms of the last byte from the master.
    pub last_io_ms: AtomicU64,
    /// The live link's client (CLIENT LIST shows it with flag `M`; CLIENT
    /// KILL TYPE master drops it and the link reconnects).
    pub client: parking_lot::Mutex<Option<Arc<crate::server::ClientHandle>>>,
    /// Held by the live link: after REPLICAOF, a new link starts only once
    /// the old one has stopped applying (never two appliers at once).
    link: tokio::sync::Mutex<()>,
}

impl Follow {
    /// One atomic load: the write path asks on every write command.
    #[inline]
    pub fn is_replica(&self) -> bool {
        self.replica.load(Relaxed)
    }
}

/// `REPLICAOF host port`: follow it (from a task that reconnects until told
/// otherwise). `REPLICAOF NO ONE`: stop and keep the data, as a master.
pub fn replicaof(srv: &Server, target: Option<(String, u16)>) {
    let f = &srv.follow;
    let generation = f.generation.fetch_add(1, Relaxed) + 1;
    let was_replica = f.master.read().is_some();
    *f.master.write() = target.clone();
    f.replica.store(target.is_some(), Relaxed);
    f.link_up.store(false, Relaxed);
    if let Some(c) = f.client.lock().take() {
        c.kill();
    }
    {
        let feed = &srv.persist.feed;
        let mut g = feed.inner.lock();
        if target.is_none() && was_replica {
            // promoted: a history of our own from here, the master's valid
            // up to here (its other replicas can continue with us)
            g.repl.shift_replid(new_replid());
        }
        g.repl.mirror = target.is_some();
        g.repl.active |= target.is_some();
        // our replicas reconnect: to learn the new id, or to follow the
        // new master's history through us
        g.repl.disconnect_replicas();
        feed.update_active(&g);
    }
    if let (Some((host, port)), Some(srv)) = (target, srv.me.upgrade()) {
        tokio::spawn(follow(srv, host, port, generation));
    }
}

async fn follow(srv: Arc<Server>, host: String, port: u16, generation: u64) {
    while srv.follow.generation.load(Relaxed) == generation {
        let _link = srv.follow.link.lock().await;
        if srv.follow.generation.load(Relaxed) != generation {
            return;
        }
        if let Err(e) = follow_once(&srv, &host, port, generation).await {
            tracing::warn!(master = %format!("{host}:{port}"), error = %e, "replication link");
            if srv.failover.state() == crate::failover::State::InProgress {
                srv.failover
                    .abort(&srv, "the failover target could not be reached");
                return;
            }
        }
        srv.follow.link_up.store(false, Relaxed);
        srv.follow.sync_in_progress.store(false, Relaxed);
        srv.follow.client.lock().take();
        if srv.follow.generation.load(Relaxed) != generation {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

/// One connection to the master: handshake, full or partial sync, then
/// apply its stream until the link fails or REPLICAOF changes.
async fn follow_once(
    srv: &Arc<Server>,
    host: &str,
    port: u16,
    generation: u64,
) -> Result<(), String> {
    let f = &srv.follow;
    let mut s = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        TcpStream::connect((host, port)),
    )
    .await
    .map_err(|_| "connect timed out".to_string())?
    .map_err(|e| e.to_string())?;
    let _ = s.set_nodelay(true);
    let handle = crate::server::ClientHandle::new(
        srv.next_id.fetch_add(1, Relaxed),
        s.peer_addr().map(|a| a.to_string()).unwrap_or_default(),
        s.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        tokio::sync::mpsc::unbounded_channel().0,
    );
    handle.kind.store(crate::server::KIND_MASTER, Relaxed);
    *f.client.lock() = Some(handle.clone());
    srv.clients.lock().insert(handle.id, handle.clone());
    let r = tokio::select! {
        r = sync_and_apply(srv, &mut s, generation) => r,
        _ = handle.kill.notified() => Err("link killed (CLIENT KILL)".into()),
    };
    srv.clients.lock().remove(&handle.id);
    r
}

async fn sync_and_apply(
    srv: &Arc<Server>,
    s: &mut TcpStream,
    generation: u64,
) -> Result<(), String> {
    let f = &srv.follow;
    let mut inbuf = BytesMut::with_capacity(64 * 1024);
    let my_port = srv.port.load(Relaxed).to_string();
    let mut hs = Vec::new();
    feed::encode(&mut hs, &[b"PING"]);
    feed::encode(
        &mut hs,
        &[b"REPLCONF", b"listening-port", my_port.as_bytes()],
    );
    feed::encode(&mut hs, &[b"REPLCONF", b"capa", b"eof", b"capa", b"psync2"]);
    s.write_all(&hs).await.map_err(|e| e.to_string())?;
    for _ in 0..3 {
        let line = read_line(s, &mut inbuf).await?;
        if line.starts_with(b"-") && !line.starts_with(b"-NOAUTH") {
            return Err(String::from_utf8_lossy(&line).into_owned());
        }
    }
    // our own history (as a master, or our master's as a replica): the
    // new master continues it if it shares it (PSYNC2), else full sync
    let (id, off) = {
        let g = srv.persist.feed.inner.lock();
        (g.repl.replid.clone(), g.repl.offset)
    };
    let failing_over = srv.failover.state() == crate::failover::State::InProgress;
    let next = (off + 1).to_string();
    let mut psync = Vec::new();
    let mut args: Vec<&[u8]> = vec![b"PSYNC", id.as_bytes(), next.as_bytes()];
    if failing_over {
        // tells the target to become the master first (FAILOVER)
        args.push(b"FAILOVER");
    }
    feed::encode(&mut psync, &args);
    s.write_all(&psync).await.map_err(|e| e.to_string())?;
    let line = read_line(s, &mut inbuf).await?;
    let text = String::from_utf8_lossy(&line).into_owned();
    if let Some(rest) = text.strip_prefix("+FULLRESYNC ") {
        let mut w = rest.split_whitespace();
        let (Some(id), Some(off)) = (w.next(), w.next().and_then(|o| o.parse::<u64>().ok())) else {
            return Err(format!("bad reply to PSYNC: {text}"));
        };
        srv.failover.link_established(srv);
        f.sync_in_progress.store(true, Relaxed);
        let rdb = read_rdb(s, &mut inbuf).await?;
        let s2 = srv.clone();
        let keys = tokio::task::spawn_blocking(move || load_from_master(&s2, &rdb))
            .await
            .map_err(|e| e.to_string())??;
        {
            let feed = &srv.persist.feed;
            let mut g = feed.inner.lock();
            g.repl.replid = id.to_string();
            g.repl.replid2 = "0".repeat(40);
            g.repl.second_offset = -1;
            g.repl.offset = off;
            g.repl.backlog.clear();
            g.repl.active = true;
            g.repl.disconnect_replicas();
        }
        f.sync_in_progress.store(false, Relaxed);
        tracing::info!(keys, offset = off, "full sync from master loaded");
        if srv.persist.feed.inner.lock().aof.is_some() {
            // the AOF holds the old data: start it again from the new
            let _ = crate::persist::bgrewriteaof(srv);
        }
    } else if text.starts_with("+CONTINUE") {
        srv.failover.link_established(srv);
        let mut g = srv.persist.feed.inner.lock();
        if let Some(new) = text.split_whitespace().nth(1)
            && new != g.repl.replid
        {
            // the master's history changed name (it was promoted): ours
            // follows, and our replicas reconnect to learn it
            g.repl.shift_replid(new.to_string());
            g.repl.disconnect_replicas();
        }
        tracing::info!(offset = off, "partial resync from master");
    } else {
        if failing_over {
            srv.failover
                .abort(srv, "Failover target rejected psync request");
        }
        return Err(format!("master refused PSYNC: {text}"));
    }
    f.link_up.store(true, Relaxed);
    f.last_io_ms.store(crate::util::now_ms(), Relaxed);
    apply_stream(srv, s, inbuf, generation).await
}

/// A status or error line.
async fn read_line(s: &mut TcpStream, buf: &mut BytesMut) -> Result<Vec<u8>, String> {
    loop {
        // masters send newlines as keepalives while they prepare a snapshot
        while buf.first() == Some(&b'\n') {
            let _ = buf.split_to(1);
        }
        if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
            let line = buf.split_to(i + 2);
            return Ok(line[..i].to_vec());
        }
        read_more(s, buf).await?;
    }
}

async fn read_more(s: &mut TcpStream, buf: &mut BytesMut) -> Result<(), String> {
    if buf.capacity() - buf.len() < 16 * 1024 {
        buf.reserve(64 * 1024);
    }
    match tokio::time::timeout(std::time::Duration::from_secs(60), s.read_buf(buf)).await {
        Err(_) => Err("master timed out".into()),
        Ok(Ok(0)) => Err("master closed the connection".into()),
        Ok(Err(e)) => Err(e.to_string()),
        Ok(Ok(_)) => Ok(()),
    }
}

/// The RDB of a full sync: `$<len>` or `$EOF:<40-byte mark>` framing.
async fn read_rdb(s: &mut TcpStream, buf: &mut BytesMut) -> Result<Vec<u8>, String> {
    let head = read_line(s, buf).await?;
    let head = String::from_utf8_lossy(&head).into_owned();
    if let Some(mark) = head.strip_prefix("$EOF:") {
        let mark = mark.as_bytes().to_vec();
        let mut data = Vec::new();
        loop {
            data.extend_from_slice(&buf.split_to(buf.len()));
            if data.len() >= mark.len() && data.ends_with(&mark) {
                data.truncate(data.len() - mark.len());
                return Ok(data);
            }
            read_more(s, buf).await?;
        }
    }
    let len: usize = head
        .strip_prefix('$')
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("bad RDB header from master: {head}"))?;
    while buf.len() < len {
        read_more(s, buf).await?;
    }
    Ok(buf.split_to(len).to_vec())
}

/// Replaces the keyspace with the master's snapshot.
fn load_from_master(srv: &Server, rdb: &[u8]) -> Result<u64, String> {
    let mut l = kvfleet_rdb::Loader::new(rdb).map_err(|e| format!("master's RDB: {e}"))?;
    let mut records = Vec::new();
    let mut functions = Vec::new();
    while let Some(item) = l.next_item().map_err(|e| format!("master's RDB: {e}"))? {
        match item {
            kvfleet_rdb::Item::Record(r) => records.push(r),
            kvfleet_rdb::Item::Function(code) => functions.push(code),
            _ => {}
        }
    }
    // the master's libraries replace ours, as its keyspace does
    srv.scripts.replace_libraries(&functions)?;
    // the whole file checked out: now drop the old data and take the new
    let _batch = srv.db.batch.lock();
    for s in srv.db.slots.iter() {
        s.lock().clear();
    }
    let now = crate::util::now_ms();
    let mut n = 0;
    for r in records {
        if crate::persist::insert_record(&srv.db, r, now)? {
            n += 1;
        }
    }
    Ok(n)
}

/// Applies the master's commands and passes them on, verbatim, to our own
/// stream; answers `REPLCONF GETACK` and acknowledges every second.
async fn apply_stream(
    srv: &Arc<Server>,
    s: &mut TcpStream,
    mut inbuf: BytesMut,
    generation: u64,
) -> Result<(), String> {
    let f = &srv.follow;
    let feed = &srv.persist.feed;
    let mut conn = crate::cmd::ConnState::new(crate::server::ClientHandle::internal(0), true);
    conn.from_master = true;
    let mut out = BytesMut::new();
    let mut parser = kvfleet_resp::RequestParser::new();
    let limits = kvfleet_resp::Limits {
        max_bulk_len: usize::MAX,
        authenticated: true,
    };
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    let offset = || feed.inner.lock().repl.offset;
    let ack = |off: u64| {
        let mut b = Vec::new();
        feed::encode(&mut b, &[b"REPLCONF", b"ACK", off.to_string().as_bytes()]);
        b
    };
    // Bytes applied but not yet counted: a transaction counts at its EXEC
    // (a snapshot between MULTI and EXEC must not record an offset past
    // commands it does not hold).
    let mut held: Vec<u8> = Vec::new();
    // the first ACK tells the master the snapshot is loaded
    s.write_all(&ack(offset()))
        .await
        .map_err(|e| e.to_string())?;
    loop {
        if f.generation.load(Relaxed) != generation {
            return Ok(());
        }
        let mut reply = false;
        {
            let _batch = srv.db.batch.lock();
            while let Ok(Some(n)) = parser.parse(&inbuf, &limits) {
                let args: Vec<&[u8]> = (0..parser.args.len())
                    .map(|i| parser.arg(&inbuf, i))
                    .collect();
                let getack = args.len() >= 2
                    && args[0].eq_ignore_ascii_case(b"replconf")
                    && args[1].eq_ignore_ascii_case(b"getack");
                if !args.is_empty() && !getack {
                    out.clear();
                    conn.now_ms = crate::util::now_ms();
                    crate::cmd::dispatch(srv, &mut conn, &mut out, &args);
                }
                held.extend_from_slice(&inbuf[..n]);
                if conn.multi.is_none() {
                    feed.inner.lock().repl.push(&held);
                    held.clear();
                }
                reply |= getack;
                let _ = inbuf.split_to(n);
            }
        }
        feed.flush();
        if reply {
            s.write_all(&ack(offset()))
                .await
                .map_err(|e| e.to_string())?;
        }
        tokio::select! {
            r = read_more(s, &mut inbuf) => {
                r?;
                f.last_io_ms.store(crate::util::now_ms(), Relaxed);
            }
            _ = tick.tick() => {
                // Redis's repl-timeout: a master silent this long (it pings every 10 s) is gone
                let silent = crate::util::now_ms().saturating_sub(f.last_io_ms.load(Relaxed));
                if silent > 60_000 {
                    return Err("no data from the master for 60 s".into());
                }
                s.write_all(&ack(offset())).await.map_err(|e| e.to_string())?;
            }
        }
    }
}
