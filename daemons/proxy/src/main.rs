//! `kvfleet-proxy`: flags and config at the edge; the proxy itself is the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

use kvfleet_model::Topology;
use kvfleet_proxy::{Config, Proxy};

#[derive(Parser, Debug)]
#[command(
    name = "kvfleet-proxy",
    version,
    about = "kvfleet's RESP gateway: routes by slot to groups of servers"
)]
struct Args {
    /// TOML config file (see kvfleet-proxy.example.toml).
    #[arg(long)]
    config: Option<PathBuf>,
    #[arg(long)]
    port: Option<u16>,
    #[arg(long)]
    bind: Option<String>,
    /// Topology file (groups, masters, slot ranges).
    #[arg(long)]
    topology: Option<PathBuf>,
    /// A group's master, `host:port`; repeat for more groups. The 1024 slots
    /// are spread evenly over them, in order. Used when there is no topology file.
    #[arg(long = "group")]
    groups: Vec<String>,
    /// Password clients must give.
    #[arg(long)]
    password: Option<String>,
    #[arg(long)]
    conns_per_backend: Option<usize>,
    /// Worker threads (0 = one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// Port for Prometheus `/metrics` (0 = off).
    #[arg(long)]
    metrics_port: Option<u16>,
}

fn load(args: &Args) -> anyhow::Result<(Config, Topology, Option<PathBuf>)> {
    let mut cfg = match &args.config {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            Config::from_toml_str(&text).with_context(|| p.display().to_string())?
        }
        None => Config::default(),
    };
    if let Some(p) = args.port {
        cfg.port = p;
    }
    if let Some(b) = &args.bind {
        cfg.bind = b.clone();
    }
    if let Some(p) = &args.password {
        cfg.password = p.clone();
    }
    if let Some(p) = args.metrics_port {
        cfg.metrics_port = p;
    }
    if let Some(n) = args.threads {
        cfg.threads = n;
    }
    if let Some(n) = args.conns_per_backend {
        cfg.conns_per_backend = n;
    }
    if let Some(t) = &args.topology {
        cfg.topology = t.display().to_string();
    }
    cfg.validate()?;
    if !cfg.topology.is_empty() {
        if !args.groups.is_empty() {
            anyhow::bail!("give either a topology file or --group flags, not both");
        }
        let path = PathBuf::from(&cfg.topology);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let topo = Topology::from_toml_str(&text).with_context(|| path.display().to_string())?;
        return Ok((cfg, topo, Some(path)));
    }
    if args.groups.is_empty() {
        anyhow::bail!("no backends: give --topology FILE or one --group HOST:PORT per group");
    }
    Ok((cfg, Topology::even(&args.groups)?, None))
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let (cfg, topo, path) = match load(&args) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("kvfleet-proxy: {e:#}");
            return ExitCode::from(64);
        }
    };
    match run(cfg, topo, path) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kvfleet-proxy: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(cfg: Config, topo: Topology, path: Option<PathBuf>) -> anyhow::Result<()> {
    let threads = match cfg.threads {
        0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
        n => n,
    };
    // One thread: the current-thread scheduler (no work-stealing machinery,
    // wakes stay local); it measured faster than a one-worker pool.
    let rt = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()?
    };
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind((cfg.bind.as_str(), cfg.port))
            .await
            .with_context(|| format!("binding {}:{}", cfg.bind, cfg.port))?;
        let local = listener.local_addr()?;
        let metrics = match cfg.metrics_port {
            0 => None,
            p => Some(
                tokio::net::TcpListener::bind((cfg.bind.as_str(), p))
                    .await
                    .with_context(|| format!("binding metrics port {p}"))?,
            ),
        };
        let px = Proxy::new(cfg, topo, path);
        px.port.store(local.port() as u64, std::sync::atomic::Ordering::Relaxed);
        tokio::spawn(reload_on_sighup(px.clone()));
        tokio::spawn(kvfleet_proxy::replicas::check_loop(px.clone()));
        let sampler = px.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_millis(100));
            loop {
                tick.tick().await;
                sampler.stats.sample_ops();
            }
        });
        if let Some(l) = metrics {
            tracing::info!(addr = %l.local_addr()?, "serving /metrics");
            tokio::spawn(kvfleet_proxy::metrics::serve(px.clone(), l));
        }
        tracing::info!(addr = %local, epoch = px.routing.get().topo.epoch, "Ready to accept connections");
        kvfleet_proxy::listener::run(px, listener, shutdown_signal()).await;
        Ok(())
    })
}

/// SIGHUP re-reads the topology file, like `PROXY RELOAD`.
async fn reload_on_sighup(px: std::sync::Arc<Proxy>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        return;
    };
    while hup.recv().await.is_some() {
        match px.reload() {
            Ok(epoch) => tracing::info!(epoch, "reloaded on SIGHUP"),
            Err(e) => tracing::warn!(error = %e, "reload on SIGHUP failed"),
        }
    }
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

#[global_allocator]
static ALLOC: kvfleet_alloc::MiMalloc = kvfleet_alloc::MiMalloc;
