//! State shared by every connection: the keyspace, run-time config, clients,
//! pub/sub, blocked-client and WATCH registries, statistics and the slow log.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{
    AtomicBool, AtomicI64, AtomicU8, AtomicU64, AtomicUsize, Ordering::Relaxed,
};
use std::time::Instant;

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use tokio::sync::{Notify, mpsc};

use crate::config::Config;
use crate::db::Db;
use kvfleet_model::NUM_SLOTS;
use kvfleet_model::commands::COMMANDS;

/// What other tasks need to see of a client (CLIENT LIST/KILL, pub/sub delivery).
#[derive(Debug)]
pub struct ClientHandle {
    pub id: u64,
    pub addr: String,
    pub laddr: String,
    pub name: Mutex<Option<Vec<u8>>>,
    pub lib_name: Mutex<Option<Vec<u8>>>,
    pub lib_ver: Mutex<Option<Vec<u8>>>,
    pub created: Instant,
    pub last_ms: AtomicU64,
    pub last_cmd: AtomicUsize,
    pub resp: AtomicU8,
    pub subs: AtomicUsize,
    pub psubs: AtomicUsize,
    pub multi: AtomicI64,
    pub killed: AtomicBool,
    pub kill: Notify,
    /// Pub/sub messages, already encoded for this client's protocol.
    pub push: mpsc::UnboundedSender<Bytes>,
    /// Bytes queued in `push` and not yet written: the output buffer limit applies to it.
    pub pending: AtomicUsize,
    /// When the soft limit was first exceeded (ms), 0 if under it.
    pub soft_since: AtomicU64,
    /// `KIND_NORMAL`, or a replication link (CLIENT LIST flags, KILL TYPE).
    pub kind: AtomicU8,
    /// The worker runtime serving this connection.
    pub rt: AtomicUsize,
    /// The runtime the governor asked it to move to (`workers::NO_MOVE`).
    pub move_to: AtomicUsize,
}

pub const KIND_NORMAL: u8 = 0;
/// A replica's link to us (flag `S`).
pub const KIND_REPLICA: u8 = 1;
/// Our link to our master (flag `M`).
pub const KIND_MASTER: u8 = 2;

impl ClientHandle {
    /// A client of the server's own (AOF loading, the master link): no
    /// socket, nobody reads its pushes.
    pub fn internal(id: u64) -> Arc<ClientHandle> {
        let (push, _) = tokio::sync::mpsc::unbounded_channel();
        ClientHandle::new(id, String::new(), String::new(), push)
    }

    pub fn new(
        id: u64,
        addr: String,
        laddr: String,
        push: tokio::sync::mpsc::UnboundedSender<bytes::Bytes>,
    ) -> Arc<ClientHandle> {
        Arc::new(ClientHandle {
            id,
            addr,
            laddr,
            name: Default::default(),
            lib_name: Default::default(),
            lib_ver: Default::default(),
            created: Instant::now(),
            last_ms: crate::util::now_ms().into(),
            last_cmd: usize::MAX.into(),
            resp: 2.into(),
            subs: 0.into(),
            psubs: 0.into(),
            multi: (-1).into(),
            killed: false.into(),
            kill: Default::default(),
            push,
            pending: 0.into(),
            soft_since: 0.into(),
            kind: KIND_NORMAL.into(),
            rt: 0.into(),
            move_to: crate::workers::NO_MOVE.into(),
        })
    }

    /// Asks the connection to move to runtime `to` at its next safe point;
    /// an idle one is woken for it.
    pub fn ask_move(&self, to: usize) {
        self.move_to.store(to, Relaxed);
        let _ = self.push.send(Bytes::new());
    }

    pub fn kill(&self) {
        self.killed.store(true, Relaxed);
        self.kill.notify_one();
        // an idle connection waits on its push queue, not on `kill` (a
        // `Notified` there would cost two mutex round trips per request)
        let _ = self.push.send(Bytes::new());
    }
}

#[derive(Debug, Default)]
pub struct CmdStat {
    pub calls: AtomicU64,
    pub usec: AtomicU64,
    pub rejected: AtomicU64,
    pub failed: AtomicU64,
}

#[derive(Debug, Default)]
pub struct Stats {
    pub commands: AtomicU64,
    pub connections: AtomicU64,
    pub rejected_connections: AtomicU64,
    pub net_in: AtomicU64,
    pub net_out: AtomicU64,
    pub evicted: AtomicU64,
    pub dirty: AtomicU64,
    pub errors: AtomicU64,
    pub pubsub_messages: AtomicU64,
    /// ops/sec over the last cron window
    pub ops_per_sec: AtomicU64,
}

#[derive(Debug, Clone)]
pub struct SlowEntry {
    pub id: u64,
    pub ts: u64,
    pub usec: u64,
    pub args: Vec<Vec<u8>>,
    pub addr: String,
    pub name: Vec<u8>,
}

#[derive(Debug, Default)]
pub struct SlowLog {
    pub next_id: u64,
    pub entries: VecDeque<SlowEntry>,
}

/// Key (or channel) → the parties waiting on it.
pub type KeyMap<T> = HashMap<Box<[u8]>, Vec<T>>;
/// A pattern subscription: (pattern, subscriber).
pub type PatternSub = (Box<[u8]>, Arc<ClientHandle>);

/// Clients blocked on keys (BLPOP and friends), woken after a write to a key.
#[derive(Debug, Default)]
pub struct Blocking {
    pub count: AtomicUsize,
    pub waiters: Mutex<KeyMap<Arc<Notify>>>,
}

/// WATCHed keys: a write to one sets every watcher's dirty flag.
#[derive(Debug, Default)]
pub struct Watches {
    pub count: AtomicUsize,
    pub keys: Mutex<KeyMap<Arc<AtomicBool>>>,
}

#[derive(Debug, Default)]
pub struct PubSub {
    pub channels: RwLock<KeyMap<Arc<ClientHandle>>>,
    pub patterns: RwLock<Vec<PatternSub>>,
}

pub struct Server {
    pub db: Db,
    /// The live configuration: `CONFIG SET` writes it, `CONFIG GET` reads it.
    pub rt: RwLock<Config>,
    /// Hot-path copies of run-time settings.
    pub maxmemory: AtomicU64,
    pub auth_required: AtomicBool,
    pub proto_max_bulk_len: AtomicUsize,
    pub slowlog_slower_than: AtomicI64,
    /// `timeout` (seconds idle before a client is closed; 0 = never), read by
    /// every connection each time it waits.
    pub idle_timeout: AtomicU64,
    pub stats: Stats,
    pub cmd_stats: Vec<CmdStat>,
    pub cmd_index: HashMap<&'static [u8], usize, crate::db::Hasher>,
    pub clients: Mutex<HashMap<u64, Arc<ClientHandle>>>,
    pub next_id: AtomicU64,
    pub pubsub: PubSub,
    pub blocking: Blocking,
    pub watches: Watches,
    pub slowlog: Mutex<SlowLog>,
    pub owned: Box<[AtomicBool]>,
    pub moved_addr: RwLock<String>,
    pub start: Instant,
    pub run_id: String,
    pub port: AtomicU64,
    pub config_file: Option<String>,
    pub bind: String,
    /// The worker runtimes and which connection lives on which.
    pub workers: crate::workers::Workers,
    pub lastsave: AtomicU64,
    pub persist: crate::persist::Persist,
    pub repl_policy: crate::repl::Policy,
    pub pause: crate::pause::Pause,
    /// The Lua interpreter, script cache, libraries, and the running script's state.
    pub scripts: crate::script::Scripting,
    pub failover: crate::failover::Failover,
    /// SHUTDOWN asks the listener to stop; `shutdown_saved` says it already
    /// saved (or was told not to), so the exit path does not save again.
    pub shutdown: Notify,
    pub shutdown_saved: AtomicBool,
    /// The master this server replicates, when it is a replica.
    pub follow: crate::repl::Follow,
    /// This server, for work that outlives a command (BGSAVE's thread).
    pub me: std::sync::Weak<Server>,
}

impl Server {
    pub fn new(cfg: &Config, config_file: Option<String>) -> Arc<Server> {
        let owned: Box<[AtomicBool]> = (0..NUM_SLOTS)
            .map(|_| AtomicBool::new(cfg.slots.is_empty()))
            .collect();
        for (a, b) in crate::config::parse_slot_ranges(&cfg.slots).unwrap_or_default() {
            for s in a..=b {
                owned[s as usize].store(true, Relaxed);
            }
        }
        let rt = cfg.clone();
        crate::db::apply_config(&rt);
        let run_id = (0..40)
            .map(|_| char::from_digit(fastrand::u32(..16), 16).expect("hex digit"))
            .collect();
        let persist = crate::persist::Persist::default();
        persist
            .feed
            .inner
            .lock()
            .repl
            .set_limit(cfg.repl_backlog_size as usize);
        Arc::new_cyclic(|me| Server {
            repl_policy: crate::repl::Policy::new(cfg),
            pause: Default::default(),
            scripts: Default::default(),
            failover: Default::default(),
            shutdown: Notify::new(),
            shutdown_saved: AtomicBool::new(false),
            follow: Default::default(),
            me: me.clone(),
            db: Db::new(),
            auth_required: AtomicBool::new(!rt.requirepass.is_empty()),
            proto_max_bulk_len: AtomicUsize::new(rt.proto_max_bulk_len),
            slowlog_slower_than: AtomicI64::new(rt.slowlog_log_slower_than),
            idle_timeout: AtomicU64::new(rt.timeout),
            rt: RwLock::new(rt),
            maxmemory: AtomicU64::new(cfg.maxmemory),
            stats: Stats::default(),
            cmd_stats: COMMANDS.iter().map(|_| CmdStat::default()).collect(),
            cmd_index: COMMANDS
                .iter()
                .enumerate()
                .map(|(i, c)| (c.name.as_bytes(), i))
                .collect(),
            clients: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            pubsub: PubSub::default(),
            blocking: Blocking::default(),
            watches: Watches::default(),
            slowlog: Mutex::new(SlowLog::default()),
            owned,
            moved_addr: RwLock::new(cfg.moved_addr.clone()),
            start: Instant::now(),
            run_id,
            port: AtomicU64::new(cfg.port as u64),
            config_file,
            bind: cfg.bind.clone(),
            workers: crate::workers::Workers::new(
                cfg.threads,
                cfg.adaptive_threads,
                cfg.reply_burst_busy,
            ),
            lastsave: AtomicU64::new(crate::util::now_ms() / 1000),
            persist,
        })
    }

    /// Index of a command in `COMMANDS`, case-insensitively, without allocating.
    #[inline]
    pub fn lookup(&self, name: &[u8]) -> Option<usize> {
        let mut buf = [0u8; 32];
        if name.len() > buf.len() {
            return None;
        }
        let lower = &mut buf[..name.len()];
        lower.copy_from_slice(name);
        lower.make_ascii_lowercase();
        self.cmd_index.get(&lower[..]).copied()
    }

    /// Wakes clients blocked on `key` after a write to it.
    pub fn signal_key(&self, key: &[u8]) {
        if self.blocking.count.load(Relaxed) > 0
            && let Some(ws) = self.blocking.waiters.lock().get(key)
        {
            ws.iter().for_each(|n| n.notify_one());
        }
        if self.watches.count.load(Relaxed) > 0
            && let Some(ws) = self.watches.keys.lock().get(key)
        {
            ws.iter().for_each(|f| f.store(true, Relaxed));
        }
    }

    /// FLUSHALL/FLUSHDB: every watcher is dirty.
    pub fn signal_all(&self) {
        if self.watches.count.load(Relaxed) > 0 {
            for ws in self.watches.keys.lock().values() {
                ws.iter().for_each(|f| f.store(true, Relaxed));
            }
        }
    }

    pub fn block_on(&self, keys: &[Box<[u8]>], n: &Arc<Notify>) {
        let mut w = self.blocking.waiters.lock();
        for k in keys {
            w.entry(k.clone()).or_default().push(n.clone());
        }
        self.blocking.count.fetch_add(1, Relaxed);
    }

    pub fn unblock(&self, keys: &[Box<[u8]>], n: &Arc<Notify>) {
        let mut w = self.blocking.waiters.lock();
        for k in keys {
            if let Some(v) = w.get_mut(k) {
                v.retain(|x| !Arc::ptr_eq(x, n));
                if v.is_empty() {
                    w.remove(k);
                }
            }
        }
        self.blocking.count.fetch_sub(1, Relaxed);
    }

    pub fn blocked_clients(&self) -> usize {
        self.blocking.count.load(Relaxed)
    }

    pub fn used_memory(&self) -> u64 {
        crate::alloc::allocated() as u64
    }

    pub fn is_owned(&self, slot: u16) -> bool {
        self.owned[slot as usize].load(Relaxed)
    }
}
