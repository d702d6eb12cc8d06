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

pub async fn serve(srv: Arc<Server>, mut stream: TcpStream) {
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
    let (push_tx, mut push_rx) = mpsc::unbounded_channel();
    let handle = ClientHandle::new(id, addr, laddr, push_tx);
    srv.clients.lock().insert(id, handle.clone());
    srv.stats.connections.fetch_add(1, Relaxed);
    let mut conn = ConnState::new(handle.clone(), !srv.auth_required.load(Relaxed));
    let span = tracing::debug_span!("conn", id, peer = %handle.addr);
    let _e = span.enter();
    if let Err(e) = conn_loop(&srv, &mut stream, &mut conn, &mut push_rx).await {
        tracing::debug!(error = %e, "connection closed");
    }
    cmd::multi::unwatch_all(&srv, &mut conn);
    cmd::pubsub::unsubscribe_all(&srv, &mut conn);
    srv.clients.lock().remove(&id);
}

async fn conn_loop(
    srv: &Arc<Server>,
    stream: &mut TcpStream,
    conn: &mut ConnState,
    push_rx: &mut mpsc::UnboundedReceiver<bytes::Bytes>,
) -> std::io::Result<()> {
    let mut inbuf = BytesMut::with_capacity(READ_BUF);
    let mut out = BytesMut::with_capacity(READ_BUF);
    let mut parser = RequestParser::new();
    let mut argv_store: Vec<&'static [u8]> = Vec::new();
    let handle = conn.handle.clone();
    // the clock read when the input arrived serves the batch it brought
    let mut read_ms = None;
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
            match parser.parse(&inbuf, &limits) {
                Ok(Some(n)) => {
                    if !parser.args.is_empty() {
                        let mut argv = recycle(std::mem::take(&mut argv_store));
                        argv.extend((0..parser.args.len()).map(|i| parser.arg(&inbuf, i)));
                        if srv.pause.holds(&argv, conn.multi.as_deref(), srv) {
                            argv_store = park(argv);
                            held = true;
                            break;
                        }
                        if srv.scripts.gate_engaged() && !conn.from_master {
                            match srv.scripts.gate(srv, &argv) {
                                Gate::Run => {}
                                Gate::Hold => {
                                    argv_store = park(argv);
                                    held_by_script = true;
                                    break;
                                }
                                Gate::Busy(e) => {
                                    if conn.multi.is_some() {
                                        conn.multi_err = true;
                                    }
                                    srv.stats.errors.fetch_add(1, Relaxed);
                                    encode::error(&mut out, e.0.as_bytes());
                                    argv_store = park(argv);
                                    inbuf.advance(n);
                                    continue;
                                }
                            }
                        }
                        dispatch_guarded(srv, conn, &mut out, &argv);
                        if conn.block.is_some() {
                            let owned: Vec<Vec<u8>> = argv.iter().map(|a| a.to_vec()).collect();
                            argv_store = park(argv);
                            inbuf.advance(n);
                            flush(stream, &mut out, srv, &handle).await?;
                            block(srv, stream, conn, &mut out, &mut inbuf, owned).await?;
                            if conn.close {
                                break;
                            }
                            continue;
                        }
                        argv_store = park(argv);
                    }
                    inbuf.advance(n);
                    if conn.close || conn.handoff.is_some() || conn.wait.is_some() {
                        break;
                    }
                    if out.len() >= FLUSH_AT {
                        flush(stream, &mut out, srv, &handle).await?;
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
                    encode::error(&mut out, msg.as_bytes());
                    srv.stats.errors.fetch_add(1, Relaxed);
                    conn.close = true;
                    break;
                }
            }
        }
        cmd::flush_stats(srv, conn);
        flush(stream, &mut out, srv, &handle).await?;
        if held {
            if !srv.pause.wait(&handle.kill).await {
                return Ok(());
            }
            continue;
        }
        if held_by_script {
            if !srv.scripts.wait(&handle.kill).await {
                return Ok(());
            }
            continue;
        }
        if let Some(req) = conn.handoff.take() {
            // PSYNC: from here on this connection is a replica link
            return crate::repl::serve_replica(srv.clone(), stream, req, &handle).await;
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
                    _ = handle.kill.notified() => return Ok(()),
                }
            };
            encode::int(&mut out, count as i64);
            flush(stream, &mut out, srv, &handle).await?;
            continue;
        }
        if conn.close || handle.killed.load(Relaxed) {
            return Ok(());
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
            r = stream.read_buf(&mut inbuf) => {
                let n = r?;
                if n == 0 {
                    return Ok(());
                }
                srv.stats.net_in.fetch_add(n as u64, Relaxed);
                let now = crate::util::now_ms();
                handle.last_ms.store(now, Relaxed);
                read_ms = Some(now);
            }
            Some(m) = push_rx.recv() => {
                if handle.killed.load(Relaxed) {
                    return Ok(());
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
                flush(stream, &mut out, srv, &handle).await?;
                handle.pending.fetch_sub(n, Relaxed);
            }
            _ = idle => return Ok(()),
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
