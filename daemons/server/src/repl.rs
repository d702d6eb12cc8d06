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

/// What a replica said before PSYNC, and its progress.
#[derive(Debug, Default)]
pub struct ReplicaInfo {
    pub ip: String,
    pub port: AtomicU64,
    /// Offset the replica last acknowledged (`REPLCONF ACK`).
    pub ack: AtomicU64,
    /// When (Unix ms) it last did.
    pub ack_ms: AtomicU64,
}

/// The replication side of the write stream (under the feed's lock).
#[derive(Debug, Default)]
pub struct ReplStream {
    /// `master_repl_offset`: bytes of stream so far.
    pub offset: u64,
    /// The last `BACKLOG_SIZE` bytes, for partial resyncs; active once the
    /// first replica attached.
    pub backlog: VecDeque<u8>,
    pub active: bool,
    pub replicas: Vec<(mpsc::UnboundedSender<Bytes>, Arc<ReplicaInfo>)>,
}

impl ReplStream {
    pub fn push(&mut self, cmds: &[u8]) {
        self.offset += cmds.len() as u64;
        self.backlog.extend(cmds);
        let over = self.backlog.len().saturating_sub(BACKLOG_SIZE);
        self.backlog.drain(..over);
        if !self.replicas.is_empty() {
            let b = Bytes::copy_from_slice(cmds);
            self.replicas.retain(|(tx, _)| tx.send(b.clone()).is_ok());
        }
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
) -> std::io::Result<()> {
    let ip = stream
        .peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_default();
    let info = Arc::new(ReplicaInfo {
        ip,
        port: req.port.into(),
        ..Default::default()
    });
    let (tx, mut rx) = mpsc::unbounded_channel::<Bytes>();
    let f = &srv.persist.feed;
    // partial resync: same history, and the backlog still holds the gap
    let missed = {
        let mut g = f.inner.lock();
        // PSYNC names the next byte it wants, counting from 1
        let same = req.replid == srv.replid.as_bytes() && req.offset >= 1;
        match same.then(|| g.repl.since(req.offset as u64 - 1)).flatten() {
            Some(bytes) => {
                g.repl.replicas.push((tx.clone(), info.clone()));
                Some(bytes)
            }
            None => None,
        }
    };
    let missed_was_partial = missed.is_some();
    if let Some(bytes) = missed {
        srv.persist.sync_partial_ok.fetch_add(1, Relaxed);
        stream
            .write_all(format!("+CONTINUE {}\r\n", srv.replid).as_bytes())
            .await?;
        stream.write_all(&bytes).await?;
        tracing::info!(replica = %info.ip, from = req.offset, "partial resync");
    } else {
        if req.offset >= 0 {
            srv.persist.sync_partial_err.fetch_add(1, Relaxed);
        }
        srv.persist.sync_full.fetch_add(1, Relaxed);
        full_sync(&srv, stream, &req, tx.clone(), info.clone()).await?;
    }
    drop(tx);
    // After an `$EOF:` transfer the replica finds the end by the mark being
    // the last bytes it read: nothing may follow until it has loaded and
    // sent its first ACK (Redis's masters wait the same way).
    let mut streaming = missed_was_partial || !req.eof_capable;
    // stream writes to the replica; read its ACKs
    let mut inbuf = BytesMut::with_capacity(1024);
    let mut parser = kvfleet_resp::RequestParser::new();
    let mut out = Vec::new();
    let result = loop {
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
                        streaming = true;
                    }
                    let _ = inbuf.split_to(n);
                }
            }
        }
    };
    f.inner
        .lock()
        .repl
        .replicas
        .retain(|(_, i)| !Arc::ptr_eq(i, &info));
    tracing::info!(replica = %info.ip, "replica gone");
    result
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
    let (start_tx, start_rx) = tokio::sync::oneshot::channel::<u64>();
    let s = srv.clone();
    let writer = tokio::task::spawn_blocking(move || {
        let _one = s.persist.running.lock();
        let f = &s.persist.feed;
        let mut at = 0;
        let st = crate::persist::snapshot::start_with(&s.db, || {
            let mut g = f.inner.lock();
            g.repl.active = true;
            at = g.repl.offset;
            g.repl.replicas.push((tx, info));
            // the stream after the snapshot starts in database 0
            let mut select = Vec::new();
            feed::encode(&mut select, &[b"SELECT", b"0"]);
            g.repl.push(&select);
            f.update_active(&g);
        });
        s.persist
            .latest_fork_usec
            .store(st.pause.as_micros() as u64, Relaxed);
        let _ = start_tx.send(at);
        let w = ChunkWriter {
            tx: chunk_tx,
            buf: Vec::with_capacity(CHUNK),
        };
        crate::persist::snapshot::write(&s.db, &st, &crate::persist::aux_fields(&s), w)
            .and_then(|mut w| w.flush())
    });
    let at = start_rx
        .await
        .map_err(|_| std::io::Error::other("snapshot failed to start"))?;
    stream
        .write_all(format!("+FULLRESYNC {} {at}\r\n", srv.replid).as_bytes())
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
    writer
        .await
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
    if g.repl.replicas.is_empty() {
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
    if g.repl.replicas.is_empty() {
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
    pub generation: AtomicU64,
    pub link_up: std::sync::atomic::AtomicBool,
    pub sync_in_progress: std::sync::atomic::AtomicBool,
    /// The master's replication id and the offset applied so far (for PSYNC).
    pub replid: parking_lot::Mutex<String>,
    pub offset: AtomicU64,
    /// Unix ms of the last byte from the master.
    pub last_io_ms: AtomicU64,
    /// Held by the live link: after REPLICAOF, a new link starts only once
    /// the old one has stopped applying (never two appliers at once).
    link: tokio::sync::Mutex<()>,
}

impl Follow {
    pub fn is_replica(&self) -> bool {
        self.master.read().is_some()
    }
}

/// `REPLICAOF host port`: follow it (from a task that reconnects until told
/// otherwise). `REPLICAOF NO ONE`: stop and keep the data, as a master.
pub fn replicaof(srv: &Server, target: Option<(String, u16)>) {
    let f = &srv.follow;
    let generation = f.generation.fetch_add(1, Relaxed) + 1;
    *f.master.write() = target.clone();
    f.link_up.store(false, Relaxed);
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
        }
        srv.follow.link_up.store(false, Relaxed);
        srv.follow.sync_in_progress.store(false, Relaxed);
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
        let line = read_line(&mut s, &mut inbuf).await?;
        if line.starts_with(b"-") && !line.starts_with(b"-NOAUTH") {
            return Err(String::from_utf8_lossy(&line).into_owned());
        }
    }
    let (id, off) = (f.replid.lock().clone(), f.offset.load(Relaxed));
    let mut psync = Vec::new();
    if id.is_empty() {
        feed::encode(&mut psync, &[b"PSYNC", b"?", b"-1"]);
    } else {
        let next = (off + 1).to_string();
        feed::encode(&mut psync, &[b"PSYNC", id.as_bytes(), next.as_bytes()]);
    }
    s.write_all(&psync).await.map_err(|e| e.to_string())?;
    let line = read_line(&mut s, &mut inbuf).await?;
    let text = String::from_utf8_lossy(&line).into_owned();
    if let Some(rest) = text.strip_prefix("+FULLRESYNC ") {
        let mut w = rest.split_whitespace();
        let (Some(id), Some(off)) = (w.next(), w.next().and_then(|o| o.parse::<u64>().ok())) else {
            return Err(format!("bad reply to PSYNC: {text}"));
        };
        f.sync_in_progress.store(true, Relaxed);
        let rdb = read_rdb(&mut s, &mut inbuf).await?;
        let s2 = srv.clone();
        let keys = tokio::task::spawn_blocking(move || load_from_master(&s2, &rdb))
            .await
            .map_err(|e| e.to_string())??;
        *f.replid.lock() = id.to_string();
        f.offset.store(off, Relaxed);
        f.sync_in_progress.store(false, Relaxed);
        tracing::info!(keys, offset = off, "full sync from master loaded");
    } else if text.starts_with("+CONTINUE") {
        if let Some(id) = text.split_whitespace().nth(1) {
            *f.replid.lock() = id.to_string();
        }
        tracing::info!(offset = off, "partial resync from master");
    } else {
        return Err(format!("master refused PSYNC: {text}"));
    }
    f.link_up.store(true, Relaxed);
    f.last_io_ms.store(crate::util::now_ms(), Relaxed);
    apply_stream(srv, &mut s, inbuf, generation).await
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
    while let Some(item) = l.next_item().map_err(|e| format!("master's RDB: {e}"))? {
        if let kvfleet_rdb::Item::Record(r) = item {
            records.push(r);
        }
    }
    // the whole file checked out: now drop the old data and take the new
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

/// Applies the master's commands; answers `REPLCONF GETACK` and
/// acknowledges the offset every second.
async fn apply_stream(
    srv: &Arc<Server>,
    s: &mut TcpStream,
    mut inbuf: BytesMut,
    generation: u64,
) -> Result<(), String> {
    let f = &srv.follow;
    let mut conn = crate::cmd::ConnState::new(crate::server::ClientHandle::internal(0), true);
    conn.from_master = true;
    let mut out = BytesMut::new();
    let mut parser = kvfleet_resp::RequestParser::new();
    let limits = kvfleet_resp::Limits {
        max_bulk_len: usize::MAX,
        authenticated: true,
    };
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    let ack = |off: u64| {
        let mut b = Vec::new();
        feed::encode(&mut b, &[b"REPLCONF", b"ACK", off.to_string().as_bytes()]);
        b
    };
    // the first ACK tells the master the snapshot is loaded
    s.write_all(&ack(f.offset.load(Relaxed)))
        .await
        .map_err(|e| e.to_string())?;
    loop {
        if f.generation.load(Relaxed) != generation {
            return Ok(());
        }
        let mut reply = None;
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
            f.offset.fetch_add(n as u64, Relaxed);
            if getack {
                reply = Some(ack(f.offset.load(Relaxed)));
            }
            let _ = inbuf.split_to(n);
        }
        srv.persist.feed.flush();
        if let Some(r) = reply {
            s.write_all(&r).await.map_err(|e| e.to_string())?;
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
                s.write_all(&ack(f.offset.load(Relaxed))).await.map_err(|e| e.to_string())?;
            }
        }
    }
}
