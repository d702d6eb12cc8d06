//! One task per client connection: read, parse every complete request in the
//! buffer, run each, and write all their replies in one write (pipelining
//! costs one syscall per batch, not per command). A blocked command parks the
//! task until a write to one of its keys, its timeout, a kill, or EOF.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::cmd::{self, ConnState};
use crate::script::Gate;
use crate::server::{ClientHandle, Server};
use crate::workers::NO_MOVE;
use kvfleet_resp::{Limits, RequestParser, encode};

/// Initial buffer sizes; both grow with the largest request or reply batch.
const READ_BUF: usize = 16 * 1024;
/// Flush replies mid-batch past this, so one huge pipeline cannot balloon memory.
const FLUSH_AT: usize = 256 * 1024;

/// Reuses one vector's allocation for argument slices of different lifetimes:
/// collecting an emptied vector through `map` keeps its buffer in place.
fn recycle<'a>(mut v: Vec<&'static [u8]>) -> Vec<&'a [u8]> {
    v.clear();
    v.into_iter()
        .map(|_| -> &'a [u8] { unreachable!() })
        .collect()
}
fn park(mut v: Vec<&[u8]>) -> Vec<&'static [u8]> {
    v.clear();
    v.into_iter()
        .map(|_| -> &'static [u8] { unreachable!() })
        .collect()
}

/// What a connection carries when it moves to another worker runtime.
pub struct Session {
    conn: ConnState,
    push_rx: mpsc::UnboundedReceiver<bytes::Bytes>,
    inbuf: BytesMut,
    out: BytesMut,
    parser: RequestParser,
    argv_store: Vec<&'static [u8]>,
    /// The clock read when the input arrived serves the batch it brought.
    read_ms: Option<u64>,
}

/// Why the connection loop returned without an error.
enum Exit {
    Closed,
    /// The governor asked this connection to move to that runtime.
    Move(usize),
}

/// Serves a new connection on worker runtime `rt`.
pub async fn serve(srv: Arc<Server>, stream: TcpStream, rt: usize) {
    let _ = stream.set_nodelay(true);
    let id = srv.next_id.fetch_add(1, Relaxed);
    let addr = stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let laddr = stream
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let (push_tx, push_rx) = mpsc::unbounded_channel();
    let handle = ClientHandle::new(id, addr, laddr, push_tx);
    handle.rt.store(rt, Relaxed);
    srv.clients.lock().insert(id, handle.clone());
    srv.stats.connections.fetch_add(1, Relaxed);
    let session = Box::new(Session {
        conn: ConnState::new(handle, !srv.auth_required.load(Relaxed)),
        push_rx,
        inbuf: BytesMut::with_capacity(READ_BUF),
        out: BytesMut::with_capacity(READ_BUF),
        parser: RequestParser::new(),
        argv_store: Vec::new(),
        read_ms: None,
    });
    drive(srv, stream, rt, session).await
}

/// Runs the connection on runtime `rt` until it closes or moves.
pub(crate) async fn drive(srv: Arc<Server>, mut stream: TcpStream, rt: usize, mut s: Box<Session>) {
    let handle = s.conn.handle.clone();
    let span = tracing::debug_span!("conn", id = handle.id, peer = %handle.addr);
    let _e = span.enter();
    if let Some(p) = srv.workers.polls() {
        p.add(rt, &stream);
    }
    loop {
        match conn_loop(&srv, &mut stream, &mut s).await {
            Ok(Exit::Move(to)) => {
                handle.move_to.store(NO_MOVE, Relaxed);
                let Some(h) = srv.workers.runtime(to).filter(|_| to != rt) else {
                    continue;
                };
                if let Some(p) = srv.workers.polls() {
                    p.remove(rt, &stream);
                }
                match stream.into_std() {
                    Ok(std) => {
                        srv.workers.moved(rt, to);
                        handle.rt.store(to, Relaxed);
                        h.spawn(crate::workers::resume(srv.clone(), std, to, Some(s)));
                        return;
                    }
                    Err(e) => tracing::debug!(error = %e, "could not move the connection"),
                }
            }
            Ok(Exit::Closed) => {}
            Err(e) => tracing::debug!(error = %e, "connection closed"),
        }
        break;
    }
    end(&srv, rt, s);
}

/// A connection's last words: its watches, subscriptions and place go.
pub(crate) fn end(srv: &Server, rt: usize, mut s: Box<Session>) {
    cmd::multi::unwatch_all(srv, &mut s.conn);
    cmd::pubsub::unsubscribe_all(srv, &mut s.conn);
    srv.clients.lock().remove(&s.conn.handle.id);
    srv.workers.closed(rt);
}

async fn conn_loop(
    srv: &Arc<Server>,
    stream: &mut TcpStream,
    s: &mut Session,
) -> std::io::Result<Exit> {
    let Session {
        conn,
        push_rx,
        inbuf,
        out,
        parser,
        argv_store,
        read_ms,
    } = s;
    let handle = conn.handle.clone();
    loop {
        // a command held by CLIENT PAUSE or FAILOVER, or while a long script
        // runs, stays in `inbuf`
        let mut held = false;
        let mut held_by_script = false;
        // Run every complete request in the buffer.
        conn.now_ms = read_ms.take().unwrap_or_else(crate::util::now_ms);
        conn.clock = std::time::Instant::now();
        loop {
            let limits = Limits {
                max_bulk_len: srv.proto_max_bulk_len.load(Relaxed),
                authenticated: conn.authed,
            };
            match parser.parse(inbuf, &limits) {
                Ok(Some(n)) => {
                    if !parser.args.is_empty() {
                        let mut argv = recycle(std::mem::take(argv_store));
                        argv.extend((0..parser.args.len()).map(|i| parser.arg(inbuf, i)));
                        if srv.pause.holds(&argv, conn.multi.as_deref(), srv) {
                            *argv_store = park(argv);
                            held = true;
                            break;
                        }
                        if srv.scripts.gate_engaged() && !conn.from_master {
                            match srv.scripts.gate(srv, &argv) {
                                Gate::Run => {}
                                Gate::Hold => {
                                    *argv_store = park(argv);
                                    held_by_script = true;
                                    break;
                                }
                                Gate::Busy(e) => {
                                    if conn.multi.is_some() {
                                        conn.multi_err = true;
                                    }
                                    srv.stats.errors.fetch_add(1, Relaxed);
                                    encode::error(out, e.0.as_bytes());
                                    *argv_store = park(argv);
                                    inbuf.advance(n);
                                    continue;
                                }
                            }
                        }
                        dispatch_guarded(srv, conn, out, &argv);
                        if conn.block.is_some() {
                            let owned: Vec<Vec<u8>> = argv.iter().map(|a| a.to_vec()).collect();
                            *argv_store = park(argv);
                            inbuf.advance(n);
                            flush(stream, out, srv, &handle).await?;
                            block(srv, stream, conn, out, inbuf, owned).await?;
                            if conn.close {
                                break;
                            }
                            continue;
                        }
                        *argv_store = park(argv);
                    }
                    inbuf.advance(n);
                    if conn.close || conn.handoff.is_some() || conn.wait.is_some() {
                        break;
                    }
                    if out.len() >= FLUSH_AT {
                        flush(stream, out, srv, &handle).await?;
                    }
                }
                Ok(None) => {
                    if parser.pending_bulk > 0 {
                        inbuf.reserve(parser.pending_bulk);
                    }
                    break;
                }
                Err(e) => {
                    let msg = format!("ERR {e}");
                    encode::error(out, msg.as_bytes());
                    srv.stats.errors.fetch_add(1, Relaxed);
                    conn.close = true;
                    break;
                }
            }
        }
        cmd::flush_stats(srv, conn);
        let rt = handle.rt.load(Relaxed);
        if !out.is_empty() && !conn.close && srv.workers.saturated(rt) {
            // a saturated worker's clients wait on it, asleep: each reply
            // written at once wakes one (on loopback, at our expense). Let
            // every ready client be served first, then write the replies
            // in a burst, as Redis does before it sleeps (decision 0015)
            srv.workers.burst(rt);
            tokio::task::yield_now().await;
        }
        flush(stream, out, srv, &handle).await?;
        if held {
            if !srv.pause.wait(&handle.kill).await {
                return Ok(Exit::Closed);
            }
            continue;
        }
        if held_by_script {
            if !srv.scripts.wait(&handle.kill).await {
                return Ok(Exit::Closed);
            }
            continue;
        }
        if let Some(req) = conn.handoff.take() {
            // PSYNC: from here on this connection is a replica link
            return crate::repl::serve_replica(srv.clone(), stream, req, &handle)
                .await
                .map(|()| Exit::Closed);
        }
        if let Some((n, target, deadline)) = conn.wait.take() {
            // WAIT: poll the replicas' acknowledgements (they answer GETACK
            // at once), then go on with the rest of the pipeline
            let count = loop {
                let c = crate::repl::acked_since(srv, target);
                if c >= n || deadline.is_some_and(|d| std::time::Instant::now() >= d) {
                    break c;
                }
                tokio::select! {
                    _ = tokio::time::sleep(std::time::Duration::from_millis(5)) => {}
                    _ = handle.kill.notified() => return Ok(Exit::Closed),
                }
            };
            encode::int(out, count as i64);
            flush(stream, out, srv, &handle).await?;
            continue;
        }
        if conn.close || handle.killed.load(Relaxed) {
            return Ok(Exit::Closed);
        }
        // replies are written: a safe point to move to another worker
        let to = handle.move_to.load(Relaxed);
        if to != NO_MOVE {
            return Ok(Exit::Move(to));
        }
        // an atomic, not `rt`'s lock: a read lock is two writes to a line
        // every worker shares
        let timeout = srv.idle_timeout.load(Relaxed);
        let idle = async {
            if timeout == 0 || conn.subscribed() {
                std::future::pending::<()>().await
            } else {
                tokio::time::sleep(std::time::Duration::from_secs(timeout)).await
            }
        };
        tokio::select! {
            r = stream.read_buf(inbuf) => {
                let n = r?;
                if n == 0 {
                    return Ok(Exit::Closed);
                }
                srv.stats.net_in.fetch_add(n as u64, Relaxed);
                let now = crate::util::now_ms();
                handle.last_ms.store(now, Relaxed);
                *read_ms = Some(now);
            }
            Some(m) = push_rx.recv() => {
                if handle.killed.load(Relaxed) {
                    return Ok(Exit::Closed);
                }
                out.extend_from_slice(&m);
                let mut n = m.len();
                while let Ok(m) = push_rx.try_recv() {
                    n += m.len();
                    out.extend_from_slice(&m);
                    if out.len() >= FLUSH_AT {
                        break;
                    }
                }
                flush(stream, out, srv, &handle).await?;
                handle.pending.fetch_sub(n, Relaxed);
            }
            _ = idle => return Ok(Exit::Closed),
        }
    }
}

/// Runs one command; a bug that panics in a handler answers this client
/// with an error and keeps the connection and the server serving (slot
/// locks are released on unwind and parking_lot does not poison them).
fn dispatch_guarded(srv: &Server, conn: &mut ConnState, out: &mut BytesMut, argv: &[&[u8]]) {
    let at = out.len();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        cmd::dispatch(srv, conn, out, argv)
    }));
    if r.is_err() {
        out.truncate(at);
        conn.in_exec = false;
        conn.block = None;
        srv.stats.errors.fetch_add(1, Relaxed);
        tracing::error!(command = %String::from_utf8_lossy(argv[0]), "command handler panicked");
        encode::error(
            out,
            b"ERR internal error while running the command (see the server log)",
        );
    }
}

/// Writes the batch; a kill (e.g. an output-buffer limit) interrupts a write
/// stuck on a client that stopped reading.
async fn flush(
    stream: &mut TcpStream,
    out: &mut BytesMut,
    srv: &Server,
    handle: &ClientHandle,
) -> std::io::Result<()> {
    // writes reach the AOF before their replies reach the client
    srv.persist.feed.flush();
    if !out.is_empty() {
        if handle.killed.load(Relaxed) {
            return Err(std::io::Error::other("client killed"));
        }
        tokio::select! {
            // the write usually completes at once: `kill` is only waited on
            // (and registered with) when it does not
            biased;
            r = stream.write_all(out) => r?,
            _ = handle.kill.notified() => return Err(std::io::Error::other("client killed")),
        }
        srv.stats.net_out.fetch_add(out.len() as u64, Relaxed);
        out.clear();
        // a burst of big replies should not pin a large buffer forever
        if out.capacity() > 4 * 1024 * 1024 {
            *out = BytesMut::with_capacity(READ_BUF);
        }
    }
    Ok(())
}

/// Parks a blocked command until woken, then re-runs it; on timeout runs it
/// once more in "timed out" mode so it writes its null reply.
async fn block(
    srv: &Arc<Server>,
    stream: &mut TcpStream,
    conn: &mut ConnState,
    out: &mut BytesMut,
    inbuf: &mut BytesMut,
    args: Vec<Vec<u8>>,
) -> std::io::Result<()> {
    let argv: Vec<&[u8]> = args.iter().map(|a| &a[..]).collect();
    while let Some(req) = conn.block.take() {
        let notify = conn.notify.clone();
        let sleep = async {
            match req.deadline {
                Some(d) => tokio::time::sleep_until(d.into()).await,
                None => std::future::pending().await,
            }
        };
        let mut eof = false;
        let timed_out = tokio::select! {
            _ = notify.notified() => false,
            _ = sleep => true,
            _ = conn.handle.kill.notified() => { eof = true; false }
            r = stream.read_buf(inbuf) => {
                // more pipelined input waits in the buffer; EOF ends the wait
                if matches!(r, Ok(0) | Err(_)) { eof = true; }
                false
            }
        };
        srv.unblock(&req.keys, &notify);
        if eof {
            conn.close = true;
            return Ok(());
        }
        conn.block_timed_out = timed_out;
        conn.now_ms = crate::util::now_ms();
        conn.clock = std::time::Instant::now();
        cmd::dispatch(srv, conn, out, &argv);
        conn.block_timed_out = false;
    }
    flush(stream, out, srv, &conn.handle).await
}
