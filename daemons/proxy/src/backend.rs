//! Shared, pipelined connections to backend servers.
//!
//! Each backend server gets a few long-lived connections per protocol (RESP2,
//! and RESP3 once a RESP3 client needs it). A client always uses the same one
//! of them (its id picks it), so its commands to that server stay in order.
//! Clients hand over whole batches (every command of one read that goes to
//! this connection); the connection task writes whatever has queued in one
//! write and matches replies to requests in order.
//!
//! A connection that fails answers everything in flight with an error, then
//! reconnects with capped exponential backoff, answering new requests with the
//! error meanwhile: a client of a dead backend gets an error, never a hang,
//! and no server is ever latched as dead.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use smallvec::SmallVec;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::stats::Stats;
use kvfleet_resp::frame::frame_len;

/// Replies for one client, back to back in `data`. A backend connection
/// hands over every reply of one read that answers the same client batch in
/// one message: one channel hand-off and one buffer per run, not per reply.
#[derive(Debug)]
pub struct Reply {
    pub data: Bytes,
    /// `(seq, part, end)`: the request each frame answers (part `part` of a
    /// split command) and where its frame ends in `data`, in order.
    pub ids: SmallVec<[(u64, u32, u32); 8]>,
}

impl Reply {
    pub fn one(seq: u64, part: u32, data: Bytes) -> Reply {
        let end = data.len() as u32;
        let mut ids = SmallVec::new();
        ids.push((seq, part, end));
        Reply { data, ids }
    }
}

pub type ReplyTx = mpsc::UnboundedSender<Reply>;

/// Commands of one client for one connection, encoded back to back.
pub struct Batch {
    pub data: Vec<u8>,
    pub ids: SmallVec<[(u64, u32); 16]>,
    pub tx: ReplyTx,
}

impl Batch {
    pub fn new(tx: ReplyTx) -> Batch {
        Batch {
            data: Vec::new(),
            ids: SmallVec::new(),
            tx,
        }
    }

    pub fn push(&mut self, cmd: &[u8], seq: u64, part: u32) {
        self.data.extend_from_slice(cmd);
        self.ids.push((seq, part));
    }

    fn fail(self, msg: &Bytes) {
        for (seq, part) in self.ids {
            let _ = self.tx.send(Reply::one(seq, part, msg.clone()));
        }
    }
}

#[derive(Debug, Clone)]
pub struct BackendOpts {
    pub password: String,
    pub connect_timeout: Duration,
    pub reply_timeout: Duration,
    pub dns_refresh: Duration,
    pub conns: usize,
}

/// The connections to one backend address in one protocol.
pub struct Pool {
    conns: Vec<mpsc::Sender<Batch>>,
}

/// What INFO and `/metrics` say about one backend address.
#[derive(Default)]
pub struct ServerState {
    /// Connections up right now (both protocols).
    pub connected: AtomicI64,
    /// Connection failures so far.
    pub errors: AtomicU64,
}

impl Pool {
    fn spawn(addr: &str, resp3: bool, opts: &BackendOpts, ctx: &Ctx) -> Pool {
        let conns = (0..opts.conns)
            .map(|_| {
                let (tx, rx) = mpsc::channel(1024);
                let (addr, opts, ctx) = (addr.to_string(), opts.clone(), ctx.clone());
                tokio::spawn(run(addr, resp3, opts, ctx, rx));
                tx
            })
            .collect();
        Pool { conns }
    }

    /// The connection client `id` always uses (per-client order depends on it).
    pub fn conn(&self, id: u64) -> &mpsc::Sender<Batch> {
        &self.conns[id as usize % self.conns.len()]
    }
}

/// Both protocols' pools for one backend address.
pub struct Server {
    pub addr: String,
    pub state: Arc<ServerState>,
    opts: BackendOpts,
    stats: Arc<Stats>,
    resp2: OnceLock<Pool>,
    resp3: OnceLock<Pool>,
}

/// What a connection task reports to.
#[derive(Clone)]
struct Ctx {
    stats: Arc<Stats>,
    state: Arc<ServerState>,
}

impl Server {
    pub fn pool(&self, resp3: bool) -> &Pool {
        let cell = if resp3 { &self.resp3 } else { &self.resp2 };
        cell.get_or_init(|| {
            let ctx = Ctx {
                stats: self.stats.clone(),
                state: self.state.clone(),
            };
            Pool::spawn(&self.addr, resp3, &self.opts, &ctx)
        })
    }
}

/// Every backend server the proxy talks to, by address. Servers dropped from
/// the topology keep their connections until the last client holding the old
/// routing lets go of them.
pub struct Backends {
    opts: BackendOpts,
    stats: Arc<Stats>,
    servers: parking_lot::Mutex<HashMap<String, std::sync::Weak<Server>>>,
}

impl Backends {
    pub fn new(opts: BackendOpts, stats: Arc<Stats>) -> Backends {
        Backends {
            opts,
            stats,
            servers: Default::default(),
        }
    }

    /// A connection of one client's own (MULTI/WATCH, blocking commands). It
    /// waits as long as a blocking command does, and closes when dropped.
    pub fn private(&self, addr: &str, resp3: bool) -> Pool {
        let opts = BackendOpts {
            conns: 1,
            reply_timeout: Duration::from_secs(u32::MAX as u64),
            ..self.opts.clone()
        };
        let ctx = Ctx {
            stats: self.stats.clone(),
            state: Arc::default(),
        };
        Pool::spawn(addr, resp3, &opts, &ctx)
    }

    pub fn opts(&self) -> &BackendOpts {
        &self.opts
    }

    pub fn get(&self, addr: &str) -> Arc<Server> {
        let mut m = self.servers.lock();
        if let Some(s) = m.get(addr).and_then(|w| w.upgrade()) {
            return s;
        }
        m.retain(|_, w| w.strong_count() > 0);
        let s = Arc::new(Server {
            addr: addr.to_string(),
            state: Arc::default(),
            opts: self.opts.clone(),
            stats: self.stats.clone(),
            resp2: OnceLock::new(),
            resp3: OnceLock::new(),
        });
        m.insert(addr.to_string(), Arc::downgrade(&s));
        s
    }
}

const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Stop gathering queued batches into one write past this.
const WRITE_CHUNK: usize = 256 * 1024;

async fn run(
    addr: String,
    resp3: bool,
    opts: BackendOpts,
    ctx: Ctx,
    mut rx: mpsc::Receiver<Batch>,
) {
    let mut backoff = MIN_BACKOFF;
    loop {
        let err = match connect(&addr, resp3, &opts).await {
            Ok(s) => {
                backoff = MIN_BACKOFF;
                tracing::debug!(%addr, resp3, "backend connected");
                ctx.state.connected.fetch_add(1, Relaxed);
                let r = serve(s, &mut rx, &opts, &addr).await;
                ctx.state.connected.fetch_sub(1, Relaxed);
                match r {
                    Ok(()) => return,
                    Err(e) => e,
                }
            }
            Err(e) => e,
        };
        ctx.stats.backend_errors.fetch_add(1, Relaxed);
        ctx.state.errors.fetch_add(1, Relaxed);
        tracing::warn!(%addr, error = %err, retry_in = ?backoff, "backend unavailable");
        let msg = Bytes::from(format!(
            "-ERR kvfleet-proxy: backend {addr} unavailable ({err})\r\n"
        ));
        // Until the next attempt, requests fail at once instead of waiting.
        let until = Instant::now() + backoff;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(until) => break,
                b = rx.recv() => match b {
                    Some(b) => b.fail(&msg),
                    None => return,
                },
            }
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Connects (resolving the name again each time), authenticates and picks the protocol.
async fn connect(addr: &str, resp3: bool, opts: &BackendOpts) -> Result<TcpStream, String> {
    let mut s = tokio::time::timeout(opts.connect_timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let _ = s.set_nodelay(true);
    let mut hello = Vec::new();
    let mut expect = 0;
    if resp3 {
        let mut args: Vec<&[u8]> = vec![b"HELLO", b"3"];
        if !opts.password.is_empty() {
            args.extend([&b"AUTH"[..], b"default", opts.password.as_bytes()]);
        }
        encode_cmd(&mut hello, &args);
        expect += 1;
    } else if !opts.password.is_empty() {
        encode_cmd(&mut hello, &[b"AUTH", opts.password.as_bytes()]);
        expect += 1;
    }
    if expect == 0 {
        return Ok(s);
    }
    let handshake = async {
        s.write_all(&hello).await.map_err(|e| e.to_string())?;
        let mut buf = BytesMut::with_capacity(1024);
        loop {
            if let Some(n) = frame_len(&buf).map_err(|e| e.to_string())? {
                if buf[0] == b'-' {
                    return Err(String::from_utf8_lossy(&buf[1..n - 2]).into_owned());
                }
                return Ok(());
            }
            if s.read_buf(&mut buf).await.map_err(|e| e.to_string())? == 0 {
                return Err("closed during handshake".into());
            }
        }
    };
    tokio::time::timeout(opts.connect_timeout, handshake)
        .await
        .map_err(|_| "handshake timed out".to_string())??;
    Ok(s)
}

/// `seq` of a frame from a subscriber link (confirmations and messages).
pub const PUSH_SEQ: u64 = u64::MAX;
/// `seq` announcing that a subscriber link failed; `data` is the error.
pub const LINK_DOWN_SEQ: u64 = u64::MAX - 1;

/// A client's subscriber connection to one group: every frame it reads goes
/// to the client (`seq` [`PUSH_SEQ`], `part` = group), commands go out as
/// given. Pub/sub state lives on the connection, so it cannot be shared.
pub fn subscriber(
    addr: String,
    resp3: bool,
    opts: BackendOpts,
    to: ReplyTx,
    group: u32,
) -> mpsc::UnboundedSender<Vec<u8>> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
    tokio::spawn(async move {
        let down = |e: String| {
            let msg = format!("-ERR kvfleet-proxy: subscriber connection to {addr} lost ({e})\r\n");
            let _ = to.send(Reply::one(LINK_DOWN_SEQ, group, Bytes::from(msg)));
        };
        let s = match connect(&addr, resp3, &opts).await {
            Ok(s) => s,
            Err(e) => return down(e),
        };
        let (mut rd, mut wr) = s.into_split();
        let mut buf = BytesMut::with_capacity(16 * 1024);
        loop {
            tokio::select! {
                r = rd.read_buf(&mut buf) => {
                    match r {
                        Ok(0) => return down("closed by the server".into()),
                        Err(e) => return down(e.to_string()),
                        Ok(_) => {}
                    }
                    loop {
                        match frame_len(&buf) {
                            Ok(Some(n)) => {
                                let data = buf.split_to(n).freeze();
                                if to.send(Reply::one(PUSH_SEQ, group, data)).is_err() {
                                    return;
                                }
                            }
                            Ok(None) => break,
                            Err(e) => return down(format!("protocol error: {e}")),
                        }
                    }
                }
                c = rx.recv() => match c {
                    Some(c) => {
                        if let Err(e) = wr.write_all(&c).await {
                            return down(e.to_string());
                        }
                    }
                    None => return,
                },
            }
        }
    });
    tx
}

/// `INFO <section>` from one server on a connection of its own, as `field -> value`.
pub async fn info(
    addr: &str,
    section: &str,
    opts: &BackendOpts,
) -> Result<HashMap<String, String>, String> {
    let mut s = connect(addr, false, opts).await?;
    let mut req = Vec::new();
    encode_cmd(&mut req, &[b"INFO", section.as_bytes()]);
    let ask = async {
        s.write_all(&req).await.map_err(|e| e.to_string())?;
        let mut buf = BytesMut::with_capacity(4096);
        loop {
            if let Some(n) = frame_len(&buf).map_err(|e| e.to_string())? {
                return Ok(buf.split_to(n));
            }
            if s.read_buf(&mut buf).await.map_err(|e| e.to_string())? == 0 {
                return Err("closed".to_string());
            }
        }
    };
    let frame = tokio::time::timeout(opts.connect_timeout, ask)
        .await
        .map_err(|_| "INFO timed out".to_string())??;
    if frame.first() != Some(&b'$') {
        return Err(String::from_utf8_lossy(&frame).trim().to_string());
    }
    let text = String::from_utf8_lossy(&frame);
    Ok(text
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect())
}

pub use kvfleet_resp::encode::command as encode_cmd;

/// Pipelines batches onto one connection until it fails (`Err`) or every
/// sender is gone (`Ok`). Whatever is in flight when it fails gets the error.
async fn serve(
    stream: TcpStream,
    rx: &mut mpsc::Receiver<Batch>,
    opts: &BackendOpts,
    addr: &str,
) -> Result<(), String> {
    let peer = stream.peer_addr().ok();
    let (mut rd, mut wr) = stream.into_split();
    let mut inflight = Inflight::default();
    let mut rbuf = BytesMut::with_capacity(64 * 1024);
    let mut wbuf: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut written = 0;
    let mut last_progress = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut last_dns = Instant::now();
    // Every sender gone (the server left the topology, or its client did):
    // finish what is in flight, then close.
    let mut closing = false;
    let result: Result<(), String> = 'conn: loop {
        if closing && inflight.is_empty() && written == wbuf.len() {
            return Ok(());
        }
        tokio::select! {
            r = rd.read_buf(&mut rbuf) => {
                match r {
                    Ok(0) => break Err("closed by the server".into()),
                    Err(e) => break Err(e.to_string()),
                    Ok(_) => {}
                }
                last_progress = Instant::now();
                if let Err(e) = inflight.answer_from(&mut rbuf) {
                    break 'conn Err(e);
                }
                if rbuf.capacity() - rbuf.len() < 4096 {
                    rbuf.reserve(64 * 1024);
                }
            }
            b = rx.recv(), if written == wbuf.len() && !closing => {
                let Some(b) = b else {
                    closing = true;
                    continue;
                };
                if inflight.is_empty() {
                    last_progress = Instant::now();
                }
                wbuf.clear();
                written = 0;
                let mut next = Some(b);
                while let Some(b) = next.take() {
                    wbuf.extend_from_slice(&b.data);
                    inflight.push(b);
                    if wbuf.len() < WRITE_CHUNK {
                        next = rx.try_recv().ok();
                    }
                }
                // Let the other ready clients run first and queue theirs, so
                // one write carries many clients' batches (Redis flushes in
                // beforeSleep for the same reason).
                if wbuf.len() < WRITE_CHUNK {
                    tokio::task::yield_now().await;
                    while wbuf.len() < WRITE_CHUNK {
                        let Ok(b) = rx.try_recv() else { break };
                        wbuf.extend_from_slice(&b.data);
                        inflight.push(b);
                    }
                }
            }
            r = wr.write(&wbuf[written..]), if written < wbuf.len() => {
                match r {
                    Ok(n) => written += n,
                    Err(e) => break Err(e.to_string()),
                }
            }
            _ = tick.tick() => {
                if !inflight.is_empty() && last_progress.elapsed() > opts.reply_timeout {
                    break Err(format!("no reply for {:?}", opts.reply_timeout));
                }
                if last_dns.elapsed() >= opts.dns_refresh {
                    last_dns = Instant::now();
                    if let (Some(p), Ok(found)) = (peer, tokio::net::lookup_host(addr).await) {
                        let found: Vec<_> = found.collect();
                        if !found.is_empty() && !found.contains(&p) {
                            break Err(format!("{addr} no longer resolves to {p}"));
                        }
                    }
                }
            }
        }
    };
    let err = result.expect_err("only failures leave the loop");
    let msg = Bytes::from(format!(
        "-ERR kvfleet-proxy: backend {addr} connection lost ({err})\r\n"
    ));
    while inflight.answer(msg.clone()) {}
    Err(err)
}

/// Requests awaiting replies, in order. Consecutive requests of one batch
/// share its reply channel (no per-request clone of the sender).
#[derive(Default)]
struct Inflight {
    ids: VecDeque<(u64, u32)>,
    /// Each batch's channel and how many of `ids` are still its.
    txs: VecDeque<(ReplyTx, usize)>,
}

impl Inflight {
    fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    fn push(&mut self, b: Batch) {
        if b.ids.is_empty() {
            return;
        }
        self.ids.extend(b.ids.iter().copied());
        self.txs.push_back((b.tx, b.ids.len()));
    }

    /// Sends `data` as the oldest request's reply; false when none is waiting.
    fn answer(&mut self, data: Bytes) -> bool {
        let Some((seq, part)) = self.ids.pop_front() else {
            return false;
        };
        let (tx, left) = self.txs.front_mut().expect("a channel per id");
        let _ = tx.send(Reply::one(seq, part, data));
        *left -= 1;
        if *left == 0 {
            self.txs.pop_front();
        }
        true
    }

    /// Answers requests with the complete frames at the front of `buf`, one
    /// message per run of replies to the same batch.
    fn answer_from(&mut self, buf: &mut BytesMut) -> Result<(), String> {
        // `buf[..off]` holds the run's frames, `ids` their requests
        let mut off = 0;
        let mut ids = SmallVec::new();
        loop {
            let n = match frame_len(&buf[off..]) {
                Ok(Some(n)) => n,
                Ok(None) => break,
                Err(e) => return Err(format!("protocol error: {e}")),
            };
            if buf[off] == b'>' || off + n > u32::MAX as usize {
                self.send_run(buf, &mut off, &mut ids, false);
                if buf[0] == b'>' {
                    let _ = buf.split_to(n); // an out-of-band push: not a reply
                    continue;
                }
            }
            let Some((seq, part)) = self.ids.pop_front() else {
                return Err("reply without a request".into());
            };
            off += n;
            ids.push((seq, part, off as u32));
            let (_, left) = self.txs.front_mut().expect("a channel per id");
            *left -= 1;
            if *left == 0 {
                self.send_run(buf, &mut off, &mut ids, true);
            }
        }
        self.send_run(buf, &mut off, &mut ids, false);
        Ok(())
    }

    /// Sends the run `buf[..off]` to the front batch's client; `done` when
    /// that batch has no more requests waiting.
    fn send_run(
        &mut self,
        buf: &mut BytesMut,
        off: &mut usize,
        ids: &mut SmallVec<[(u64, u32, u32); 8]>,
        done: bool,
    ) {
        if !ids.is_empty() {
            let data = buf.split_to(*off).freeze();
            let (tx, _) = self.txs.front().expect("a channel per id");
            let _ = tx.send(Reply {
                data,
                ids: std::mem::take(ids),
            });
        }
        if done {
            self.txs.pop_front();
        }
        *off = 0;
    }
}
