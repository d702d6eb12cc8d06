//! `kvfleet-server` binary: flags → config → runtime → listener.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use kvfleet_server::busypoll::Pollers;
use kvfleet_server::config::Config;
use kvfleet_server::persist;
use kvfleet_server::server::Server;
use std::sync::atomic::Ordering::Relaxed;

/// A Redis-compatible data node. Every flag overrides the TOML file.
#[derive(Debug, Parser)]
#[command(name = "kvfleet-server", version)]
struct Args {
    /// TOML config file (see kvfleet-server.example.toml); defaults apply without one.
    #[arg(long)]
    config: Option<String>,
    /// TCP port.
    #[arg(long)]
    port: Option<u16>,
    /// Listen address.
    #[arg(long)]
    bind: Option<String>,
    /// Password for AUTH.
    #[arg(long)]
    requirepass: Option<String>,
    /// Memory limit in bytes.
    #[arg(long)]
    maxmemory: Option<u64>,
    /// Eviction policy.
    #[arg(long)]
    maxmemory_policy: Option<String>,
    /// Worker threads (0 = one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// yes: start on one worker and add more under load; no: use all from the start.
    #[arg(long)]
    adaptive_threads: Option<String>,
    /// Microseconds a busy worker polls for the next request before sleeping (0 = never).
    #[arg(long)]
    busy_poll_us: Option<u64>,
    /// Busy share (0-1) from which a worker writes its replies in bursts; above 1 never.
    #[arg(long)]
    reply_burst_busy: Option<f64>,
    /// Directory of the RDB file.
    #[arg(long)]
    dir: Option<String>,
    /// RDB file name.
    #[arg(long)]
    dbfilename: Option<String>,
    /// Save points, e.g. "3600 1 300 100"; "" disables.
    #[arg(long)]
    save: Option<String>,
    /// Append-only file: yes or no.
    #[arg(long)]
    appendonly: Option<String>,
    /// always, everysec or no.
    #[arg(long)]
    appendfsync: Option<String>,
    /// "host port" of a master to replicate.
    #[arg(long)]
    replicaof: Option<String>,
}

fn load(args: &Args) -> anyhow::Result<Config> {
    let mut cfg = match &args.config {
        Some(p) => {
            let s = std::fs::read_to_string(p).with_context(|| format!("reading {p}"))?;
            Config::from_toml_str(&s)?
        }
        None => Config::default(),
    };
    if let Some(p) = args.port {
        cfg.port = p;
    }
    if let Some(b) = &args.bind {
        cfg.bind = b.clone();
    }
    if let Some(p) = &args.requirepass {
        cfg.requirepass = p.clone();
    }
    if let Some(m) = args.maxmemory {
        cfg.maxmemory = m;
    }
    if let Some(p) = &args.maxmemory_policy {
        cfg.maxmemory_policy = p.clone();
    }
    if let Some(t) = args.threads {
        cfg.threads = t;
    }
    if let Some(a) = &args.adaptive_threads {
        cfg.adaptive_threads = match a.as_str() {
            "yes" => true,
            "no" => false,
            _ => anyhow::bail!("--adaptive-threads takes yes or no"),
        };
    }
    if let Some(u) = args.busy_poll_us {
        cfg.busy_poll_us = u;
    }
    if let Some(b) = args.reply_burst_busy {
        cfg.reply_burst_busy = b;
    }
    if let Some(d) = &args.dir {
        cfg.dir = d.clone();
    }
    if let Some(f) = &args.dbfilename {
        cfg.dbfilename = f.clone();
    }
    if let Some(s) = &args.save {
        cfg.save = s.clone();
    }
    if let Some(a) = &args.appendonly {
        cfg.appendonly = match a.as_str() {
            "yes" => true,
            "no" => false,
            _ => anyhow::bail!("--appendonly takes yes or no"),
        };
    }
    if let Some(f) = &args.appendfsync {
        cfg.appendfsync = f.clone();
    }
    if let Some(r) = &args.replicaof {
        cfg.replicaof = r.clone();
    }
    cfg.validate()?;
    Ok(cfg)
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let cfg = match load(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("kvfleet-server: {e:#}");
            return ExitCode::from(64);
        }
    };
    match run(cfg, args.config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kvfleet-server: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(mut cfg: Config, file: Option<String>) -> anyhow::Result<()> {
    let threads = if cfg.threads == 0 {
        std::thread::available_parallelism().map_or(2, |n| n.get())
    } else {
        cfg.threads
    };
    cfg.threads = threads;
    // one single-worker runtime (own epoll, own timers) per thread; the
    // listener and the cron live on the first (decision 0013)
    let polls = Arc::new(Pollers::new(
        threads,
        Duration::from_micros(cfg.busy_poll_us.min(1000)),
    ));
    let runtimes = (0..threads)
        .map(|i| {
            let p = polls.clone();
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name(format!("kvfleet-w{i}"))
                .on_thread_park(move || p.before_park(i))
                .enable_all()
                .build()
        })
        .collect::<Result<Vec<_>, _>>()?;
    let handles: Vec<_> = runtimes.iter().map(|r| r.handle().clone()).collect();
    runtimes[0].block_on(async move {
        let listener = tokio::net::TcpListener::bind((cfg.bind.as_str(), cfg.port))
            .await
            .with_context(|| format!("binding {}:{}", cfg.bind, cfg.port))?;
        let local = listener.local_addr()?;
        let srv = Server::new(&cfg, file);
        srv.workers.install(handles, polls);
        srv.port
            .store(local.port() as u64, std::sync::atomic::Ordering::Relaxed);
        let t = std::time::Instant::now();
        if cfg.appendonly {
            // as Redis: with the AOF on, it is the data; the RDB file is not read
            if persist::aof::exists(&srv) {
                let n = persist::aof::load(&srv).map_err(|e| anyhow::anyhow!("not starting: {e}"))?;
                tracing::info!(commands = n, keys = srv.db.dbsize(), secs = t.elapsed().as_secs_f64(), "DB loaded from append only file");
            } else {
                persist::aof::rewrite(&srv).map_err(|e| anyhow::anyhow!("creating the AOF: {e}"))?;
            }
        } else {
            let path = persist::rdb_path(&srv);
            if path.exists() {
                let l = persist::load(&srv.db, &path)
                    .map_err(|e| anyhow::anyhow!("not starting: {e}"))?;
                srv.scripts
                    .restore_libraries(&l.functions)
                    .map_err(|e| anyhow::anyhow!("not starting: {}: {e}", path.display()))?;
                srv.persist.loaded_keys.store(l.keys, Relaxed);
                srv.persist.loaded_expired.store(l.expired, Relaxed);
                tracing::info!(path = %path.display(), keys = l.keys, expired = l.expired, secs = t.elapsed().as_secs_f64(), "DB loaded from disk");
                // a replica restarted on its own snapshot continues from
                // where it was (PSYNC) instead of a full sync; a master
                // starts a new history, as Redis 7.0 does
                if let (Some((id, off)), false) = (l.repl, cfg.replicaof.is_empty()) {
                    let mut g = srv.persist.feed.inner.lock();
                    g.repl.replid = id;
                    g.repl.offset = off;
                }
            }
        }
        if let Some((host, port)) = cfg.replicaof.split_once(' ') {
            let port = port.trim().parse().context("replicaof: bad port")?;
            kvfleet_server::repl::replicaof(&srv, Some((host.to_string(), port)));
        }
        tracing::info!(addr = %local, threads, "Ready to accept connections");
        let stop = async {
            tokio::select! {
                _ = shutdown_signal() => {}
                _ = srv.shutdown.notified() => {}
            }
        };
        kvfleet_server::listener::run(srv.clone(), listener, stop).await;
        persist::aof::stop(&srv);
        // Redis saves on shutdown when save points are configured
        if !srv.shutdown_saved.load(Relaxed) && !srv.rt.read().save.trim().is_empty() {
            persist::save(&srv).map_err(|e| anyhow::anyhow!("saving on shutdown: {e}"))?;
        }
        Ok(())
    })
}

/// SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("signal handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
