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
