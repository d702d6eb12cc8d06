//! kvfleet-proxy: a stateless RESP gateway in front of groups of servers.
//!
//! The request path: `listener` accepts, `client` parses a batch of commands,
//! looks each up in `table`, routes it by slot to a group's master through
//! `backend`'s shared pipelined connections (or answers it in `local`), and
//! writes replies back in the client's order, merging split commands in
//! `merge`. `routing` holds the topology in use; `stats` the counters that
//! INFO, SLOWLOG and `metrics` (Prometheus) report.

pub mod backend;
pub mod client;
pub mod config;
pub mod listener;
pub mod local;
pub mod merge;
pub mod metrics;
pub mod pubsub;
pub mod replicas;
pub mod routing;
pub mod stats;
pub mod table;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};

pub use config::Config;
use kvfleet_model::Topology;

/// What CLIENT LIST and CLIENT KILL need of a connection.
pub struct ClientInfo {
    pub id: u64,
    pub addr: String,
    pub name: Mutex<String>,
    pub created: Instant,
    /// Table index of the last command, `usize::MAX` before the first.
    pub last_cmd: AtomicUsize,
    pub kill: tokio::sync::Notify,
}

/// State every connection shares.
pub struct Proxy {
    pub cfg: RwLock<Config>,
    pub routing: routing::Current,
    pub backends: backend::Backends,
    pub stats: Arc<stats::Stats>,
    pub clients: Mutex<HashMap<u64, Arc<ClientInfo>>>,
    pub next_id: AtomicU64,
    pub started: Instant,
    pub auth_required: AtomicBool,
    /// Where the topology came from, for reloads; `None` for `--group` flags.
    pub topology_path: Option<PathBuf>,
    pub port: AtomicU64,
    pub slowlog_slower_than: AtomicI64,
    /// This proxy's zone (config `zone`).
    pub zone: String,
    /// When a `-MOVED` last triggered a reload (ms since start), to rate-limit them.
    last_auto_reload: AtomicU64,
}

impl Proxy {
    pub fn new(cfg: Config, topo: Topology, topology_path: Option<PathBuf>) -> Arc<Proxy> {
        let stats = Arc::new(stats::Stats::new(table::table().cmds.len()));
        let opts = backend::BackendOpts {
            password: cfg.backend_password.clone(),
            connect_timeout: Duration::from_millis(cfg.connect_timeout_ms),
            reply_timeout: Duration::from_millis(cfg.backend_timeout_ms),
            dns_refresh: Duration::from_secs(cfg.dns_refresh_secs.max(1)),
            conns: cfg.conns_per_backend,
        };
        let backends = backend::Backends::new(opts, stats.clone());
        let routing = routing::Current::new(routing::Routing::build(topo, &backends));
        Arc::new(Proxy {
            auth_required: AtomicBool::new(!cfg.password.is_empty()),
            port: AtomicU64::new(cfg.port as u64),
            slowlog_slower_than: AtomicI64::new(cfg.slowlog_log_slower_than),
            zone: cfg.zone.clone(),
            last_auto_reload: AtomicU64::new(0),
            cfg: RwLock::new(cfg),
            routing,
            backends,
            stats,
            clients: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            started: Instant::now(),
            topology_path,
        })
    }

    /// Re-reads the topology file and applies it if its epoch is not lower
    /// than the current one. Returns the epoch in use afterwards.
    pub fn reload(&self) -> Result<u64, String> {
        let Some(path) = &self.topology_path else {
            return Err("no topology file (the proxy was started with --group)".into());
        };
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let topo = Topology::from_toml_str(&text).map_err(|e| e.to_string())?;
        self.apply(topo)
    }

    /// A server said a slot moved: re-read the topology, at most once a second.
    pub fn auto_reload(&self) {
        let now = self.started.elapsed().as_millis() as u64 + 1000;
        let last = self.last_auto_reload.load(Relaxed);
        if self.topology_path.is_some()
            && now >= last + 1000
            && self
                .last_auto_reload
                .compare_exchange(last, now, Relaxed, Relaxed)
                .is_ok()
            && let Err(e) = self.reload()
        {
            tracing::warn!(error = %e, "reload after -MOVED failed");
        }
    }

    /// Swaps in `topo` unless it is older than what is in use.
    pub fn apply(&self, topo: Topology) -> Result<u64, String> {
        let cur = self.routing.get().topo.epoch;
        if topo.epoch < cur {
            return Err(format!(
                "topology epoch {} is lower than the current {cur}; not applied",
                topo.epoch
            ));
        }
        let epoch = topo.epoch;
        self.routing
            .set(routing::Routing::build(topo, &self.backends));
        tracing::info!(epoch, "topology applied");
        Ok(epoch)
    }
}
