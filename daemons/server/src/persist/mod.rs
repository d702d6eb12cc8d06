//! Persistence: RDB files from the forkless snapshot, loading at start,
//! save points, and the state `INFO persistence` reports.

pub mod aof;
pub mod codec;
pub mod feed;
pub mod snapshot;

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};

use kvfleet_rdb::{Item, Loader};

use crate::db::{Db, Entry};
use crate::server::Server;
use crate::util::now_ms;

/// What `INFO persistence` and `INFO stats` report about saving.
#[derive(Debug)]
pub struct Persist {
    /// One snapshot at a time.
    pub running: parking_lot::Mutex<()>,
    pub bgsave_in_progress: AtomicBool,
    /// Unix seconds the running background save started.
    pub bgsave_started: AtomicU64,
    pub last_bgsave_ok: AtomicBool,
    pub last_bgsave_secs: AtomicI64,
    pub saves: AtomicU64,
    /// The snapshot's start pause, µs (Redis's fork time field).
    pub latest_fork_usec: AtomicU64,
    pub total_forks: AtomicU64,
    pub loaded_keys: AtomicU64,
    pub loaded_expired: AtomicU64,
    /// The write stream (AOF).
    pub feed: feed::Feed,
    pub aof_rewrite_in_progress: AtomicBool,
    pub aof_rewrites: AtomicU64,
    pub aof_last_rewrite_ok: AtomicBool,
    pub sync_full: AtomicU64,
    pub sync_partial_ok: AtomicU64,
    pub sync_partial_err: AtomicU64,
}

impl Default for Persist {
    fn default() -> Persist {
        Persist {
            running: Default::default(),
            bgsave_in_progress: AtomicBool::new(false),
            bgsave_started: AtomicU64::new(0),
            last_bgsave_ok: AtomicBool::new(true),
            last_bgsave_secs: AtomicI64::new(-1),
            saves: AtomicU64::new(0),
            latest_fork_usec: AtomicU64::new(0),
            total_forks: AtomicU64::new(0),
            loaded_keys: AtomicU64::new(0),
            loaded_expired: AtomicU64::new(0),
            feed: Default::default(),
            aof_rewrite_in_progress: AtomicBool::new(false),
            aof_rewrites: AtomicU64::new(0),
            aof_last_rewrite_ok: AtomicBool::new(true),
            sync_full: AtomicU64::new(0),
            sync_partial_ok: AtomicU64::new(0),
            sync_partial_err: AtomicU64::new(0),
        }
    }
}

/// `dir`/`dbfilename`.
pub fn rdb_path(srv: &Server) -> PathBuf {
    let rt = srv.rt.read();
    PathBuf::from(&rt.dir).join(&rt.dbfilename)
}

/// The aux fields Redis 7.0 writes (tools read `redis-ver` and `ctime`).
/// `repl`: the replication id and offset the data corresponds to (taken at
/// the snapshot's instant), so a restarted replica can continue with
/// PSYNC instead of a full sync.
pub(crate) fn aux_fields(srv: &Server, repl: Option<(&str, u64)>) -> Vec<(&'static str, String)> {
    let mut v = vec![
        ("redis-ver", crate::REDIS_VERSION.to_string()),
        ("redis-bits", "64".into()),
        ("ctime", (now_ms() / 1000).to_string()),
        ("used-mem", crate::alloc::allocated().to_string()),
    ];
    if let Some((id, off)) = repl {
        v.push(("repl-stream-db", "0".into()));
        v.push(("repl-id", id.to_string()));
        v.push(("repl-offset", off.to_string()));
    }
    v.push(("aof-base", "0".into()));
    v.push(("kvfleet-run-id", srv.run_id.clone()));
    v
}

/// The replication position to record in an RDB taken now (called at the
/// snapshot's instant): a replica's, or a master's once it has a backlog.
fn repl_position(srv: &Server) -> Option<(String, u64)> {
    let g = srv.persist.feed.inner.lock();
    (g.repl.active || g.repl.mirror).then(|| (g.repl.replid.clone(), g.repl.offset))
}

/// Takes a snapshot and writes it to `dir/dbfilename` (through a temporary
/// file and a rename, so a crash never leaves half a file under the name).
pub fn save(srv: &Server) -> Result<(), String> {
    let _one = srv.persist.running.lock();
    let path = rdb_path(srv);
    let tmp = path.with_file_name(format!("temp-{}.rdb", std::process::id()));
    let dirty = srv.stats.dirty.load(Relaxed);
    let mut repl = None;
    let st = snapshot::start_with(&srv.db, || repl = repl_position(srv));
    srv.persist
        .latest_fork_usec
        .store(st.pause.as_micros() as u64, Relaxed);
    srv.persist.total_forks.fetch_add(1, Relaxed);
    let result = (|| {
        let f = File::create(&tmp).map_err(|e| format!("creating {}: {e}", tmp.display()))?;
        let w = BufWriter::with_capacity(1 << 20, AutoSync { f, unsynced: 0 });
        let aux = aux_fields(srv, repl.as_ref().map(|(id, off)| (id.as_str(), *off)));
        // (the config guard must not live through the save)
        let compress = srv.rt.read().rdbcompression;
        let w = snapshot::write(
            &srv.db,
            &st,
            &aux,
            &srv.scripts.lib_codes.lock().clone(),
            compress,
            w,
        )
        .map_err(|e| format!("writing {}: {e}", tmp.display()))?;
        let f = w.into_inner().map_err(|e| e.to_string())?.f;
        f.sync_all().map_err(|e| e.to_string())?;
        std::fs::rename(&tmp, &path).map_err(|e| format!("renaming to {}: {e}", path.display()))
    })();
    match &result {
        Ok(()) => {
            srv.stats.dirty.fetch_sub(dirty, Relaxed);
            srv.lastsave.store(now_ms() / 1000, Relaxed);
            srv.persist.saves.fetch_add(1, Relaxed);
            tracing::info!(path = %path.display(), keys = st.keys, pause_us = st.pause.as_micros() as u64, "DB saved on disk");
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            tracing::warn!(error = %e, "save failed");
        }
    }
    result
}

/// Flush written data to disk every this many bytes (Redis's
/// `rdb-save-incremental-fsync`): one large flush at the end stalls the
/// machine's I/O, and on this VM the serving threads with it (10–30 ms GETs).
const AUTOSYNC_BYTES: usize = 4 << 20;

pub(crate) struct AutoSync {
    pub(crate) f: File,
    pub(crate) unsynced: usize,
}

impl std::io::Write for AutoSync {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        let n = self.f.write(b)?;
        self.unsynced += n;
        if self.unsynced >= AUTOSYNC_BYTES {
            self.f.sync_data()?;
            self.unsynced = 0;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.f.flush()
    }
}

/// Runs `job` on a thread of its own at low priority unless `running`
/// says one is already going (then `busy` is the error); clears it after.
fn background(
    srv: &Server,
    running: fn(&Persist) -> &AtomicBool,
    busy: &'static str,
    name: &str,
    job: impl FnOnce(&Arc<Server>) + Send + 'static,
) -> Result<(), &'static str> {
    let Some(srv) = srv.me.upgrade() else {
        return Err("ERR server shutting down");
    };
    if running(&srv.persist)
        .compare_exchange(false, true, Relaxed, Relaxed)
        .is_err()
    {
        return Err(busy);
    }
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            // serialising is bulk work (lowered once the snapshot started)
            crate::priority::mark_background();
            job(&srv);
            running(&srv.persist).store(false, Relaxed);
        })
        .map_err(|_| "ERR can't start a background thread")?;
    Ok(())
}

/// Starts a background save; `Err` when one is already running.
pub fn bgsave(srv: &Server) -> Result<(), &'static str> {
    let started = now_ms() / 1000;
    background(
        srv,
        |p| &p.bgsave_in_progress,
        "ERR Background save already in progress",
        "bgsave",
        move |srv| {
            srv.persist.bgsave_started.store(started, Relaxed);
            let t = std::time::Instant::now();
            let ok = save(srv).is_ok();
            let p = &srv.persist;
            p.last_bgsave_ok.store(ok, Relaxed);
            p.last_bgsave_secs
                .store(t.elapsed().as_secs() as i64, Relaxed);
        },
    )
}

/// Save points (`save "3600 1 300 100"`): whether one is due now.
pub fn save_point_due(srv: &Server) -> bool {
    let points = srv.rt.read().save.clone();
    let dirty = srv.stats.dirty.load(Relaxed);
    if dirty == 0 || srv.persist.bgsave_in_progress.load(Relaxed) {
        return false;
    }
    let elapsed = (now_ms() / 1000).saturating_sub(srv.lastsave.load(Relaxed));
    let nums: Vec<u64> = points
        .split_whitespace()
        .filter_map(|n| n.parse().ok())
        .collect();
    nums.chunks_exact(2)
        .any(|p| elapsed >= p[0] && dirty >= p[1])
}

/// Parses a `save` setting; `Err` names what is wrong.
pub fn parse_save(s: &str) -> Result<(), String> {
    let parts: Vec<&str> = s.split_whitespace().collect();
    if !parts.len().is_multiple_of(2) || parts.iter().any(|p| p.parse::<u64>().is_err()) {
        return Err("Invalid save parameters".into());
    }
    Ok(())
}

/// Stores one loaded record; `Ok(false)` when it had already expired.
pub(crate) fn insert_record(db: &Db, r: kvfleet_rdb::Record, now: u64) -> Result<bool, String> {
    if r.db != 0 {
        return Err(format!(
            "holds keys of database {}; kvfleet has one database (0)",
            r.db
        ));
    }
    let at = r.expire_ms.unwrap_or(0);
    if at != 0 && at <= now {
        return Ok(false);
    }
    let v = codec::to_value(r.value)
        .map_err(|e| format!("key '{}': {e}", String::from_utf8_lossy(&r.key)))?;
    let slot = kvfleet_model::slot(&r.key) as usize;
    db.slots[slot].lock().insert(Entry::new(&r.key, v, at));
    Ok(true)
}

/// Starts a background AOF rewrite; `Err` when one is already running.
pub fn bgrewriteaof(srv: &Server) -> Result<(), &'static str> {
    background(
        srv,
        |p| &p.aof_rewrite_in_progress,
        "ERR Background append only file rewriting already in progress",
        "aofrewrite",
        |srv| {
            let r = aof::rewrite(srv);
            if let Err(e) = &r {
                tracing::warn!(error = %e, "AOF rewrite failed");
            }
            srv.persist.aof_last_rewrite_ok.store(r.is_ok(), Relaxed);
            srv.persist.aof_rewrites.fetch_add(1, Relaxed);
        },
    )
}

/// What [`load`] found.
#[derive(Debug, Default)]
pub struct Loaded {
    pub keys: u64,
    pub expired: u64,
    /// `repl-id`/`repl-offset`: the replication position the data is at.
    pub repl: Option<(String, u64)>,
    /// Function libraries' code (loaded by the caller into the interpreter).
    pub functions: Vec<Vec<u8>>,
}

/// Loads `path` into an empty keyspace. Any error — bad magic, unknown
/// version, corruption, checksum mismatch, a type we cannot hold — fails
/// the whole load: the server must not start on half a file.
pub fn load(db: &Db, path: &std::path::Path) -> Result<Loaded, String> {
    let f = File::open(path).map_err(|e| format!("opening {}: {e}", path.display()))?;
    let mut l = Loader::new(BufReader::with_capacity(1 << 20, f))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let now = now_ms();
    let (mut loaded, mut expired) = (0u64, 0u64);
    let (mut repl_id, mut repl_offset) = (None, None);
    let mut functions = Vec::new();
    loop {
        let item = l.next_item().map_err(|e| {
            format!(
                "{}: {e} (after {} bytes, {loaded} keys)",
                path.display(),
                l.position()
            )
        })?;
        match item {
            Some(Item::Record(r)) => match insert_record(db, r, now) {
                Ok(true) => loaded += 1,
                Ok(false) => expired += 1,
                Err(e) => return Err(format!("{}: {e}", path.display())),
            },
            Some(Item::Function(code)) => functions.push(code),
            Some(Item::Aux(k, v)) => match &k[..] {
                b"repl-id" => repl_id = String::from_utf8(v).ok().filter(|id| id.len() == 40),
                b"repl-offset" => {
                    repl_offset = std::str::from_utf8(&v).ok().and_then(|o| o.parse().ok())
                }
                _ => {}
            },
            Some(Item::Eof) | None => break,
        }
    }
    Ok(Loaded {
        keys: loaded,
        expired,
        repl: repl_id.zip(repl_offset),
        functions,
    })
}
