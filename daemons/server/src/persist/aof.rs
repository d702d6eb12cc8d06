//! The append-only file, in Redis 7's multi-part layout: `appenddirname/`
//! holds a base (an RDB file from the forkless snapshot), incremental files
//! of commands written since, and a manifest naming them. A rewrite makes a
//! new base from a snapshot and switches new writes to a new incremental
//! file at the snapshot's instant, so nothing is written twice or lost.
//! Redis 7.0 loads our directory and we load its (tested both ways).

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use kvfleet_resp::{Limits, RequestParser};

use crate::cmd::ConnState;
use crate::server::{ClientHandle, Server};

/// `appendfsync`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fsync {
    Always,
    EverySec,
    No,
}

impl Fsync {
    pub fn parse(s: &str) -> Option<Fsync> {
        Some(match s.to_ascii_lowercase().as_str() {
            "always" => Fsync::Always,
            "everysec" => Fsync::EverySec,
            "no" => Fsync::No,
            _ => return None,
        })
    }
}

/// The incremental file being appended to.
#[derive(Debug)]
pub struct AofFile {
    file: File,
    pub policy: Fsync,
    pub size: u64,
    /// Written since the last fsync (`everysec` syncs from the cron).
    pub unsynced: bool,
}

impl AofFile {
    pub fn write(&mut self, b: &[u8]) -> std::io::Result<()> {
        if b.is_empty() {
            return Ok(());
        }
        self.file.write_all(b)?;
        self.size += b.len() as u64;
        match self.policy {
            Fsync::Always => self.file.sync_data()?,
            _ => self.unsynced = true,
        }
        Ok(())
    }

    /// Flushes to disk now if anything is unsynced.
    pub fn sync(&mut self) -> std::io::Result<()> {
        if self.unsynced {
            self.unsynced = false;
            self.file.sync_data()?;
        }
        Ok(())
    }

    /// For `everysec`: a second descriptor of the file to fsync without
    /// holding the feed's lock (appends go on meanwhile), when anything is
    /// unsynced.
    pub fn sync_handle(&mut self) -> Option<File> {
        if !self.unsynced {
            return None;
        }
        self.unsynced = false;
        self.file.try_clone().ok()
    }
}

/// One line of the manifest.
#[derive(Debug, Clone, PartialEq)]
struct Part {
    name: String,
    seq: u64,
    /// `b` base, `h` history (obsolete, to delete), `i` incremental.
    kind: char,
}

fn read_manifest(path: &Path) -> Result<Vec<Part>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut parts = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
    {
        let w: Vec<&str> = line.split_whitespace().collect();
        let field = |k: &str| {
            w.chunks(2)
                .find(|c| c[0] == k && c.len() == 2)
                .map(|c| c[1].to_string())
        };
        let (Some(name), Some(seq), Some(kind)) = (field("file"), field("seq"), field("type"))
        else {
            return Err(format!("{}: bad line '{line}'", path.display()));
        };
        parts.push(Part {
            name,
            seq: seq
                .parse()
                .map_err(|_| format!("{}: bad seq in '{line}'", path.display()))?,
            kind: kind.chars().next().unwrap_or('?'),
        });
    }
    Ok(parts)
}

fn write_manifest(path: &Path, parts: &[Part]) -> std::io::Result<()> {
    let mut text = String::new();
    for p in parts {
        text.push_str(&format!("file {} seq {} type {}\n", p.name, p.seq, p.kind));
    }
    let tmp = path.with_extension("manifest.tmp");
    let mut f = File::create(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

struct Layout {
    dir: PathBuf,
    file: String,
    policy: Fsync,
    load_truncated: bool,
}

fn layout(srv: &Server) -> Layout {
    let rt = srv.rt.read();
    Layout {
        dir: PathBuf::from(&rt.dir).join(&rt.appenddirname),
        file: rt.appendfilename.clone(),
        policy: Fsync::parse(&rt.appendfsync).unwrap_or(Fsync::EverySec),
        load_truncated: rt.aof_load_truncated,
    }
}

impl Layout {
    fn manifest(&self) -> PathBuf {
        self.dir.join(format!("{}.manifest", self.file))
    }
    fn base(&self, seq: u64) -> String {
        format!("{}.{seq}.base.rdb", self.file)
    }
    fn incr(&self, seq: u64) -> String {
        format!("{}.{seq}.incr.aof", self.file)
    }
    fn open_incr(&self, name: &str) -> std::io::Result<AofFile> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(name))?;
        let size = file.metadata()?.len();
        Ok(AofFile {
            file,
            policy: self.policy,
            size,
            unsynced: false,
        })
    }
}

/// Whether an AOF exists to load at start.
pub fn exists(srv: &Server) -> bool {
    layout(srv).manifest().exists()
}

/// Loads the AOF (base, then every incremental file in order) into the
/// empty keyspace and keeps appending to the last incremental file. A bad
/// file stops the start; a command cut off at the end of the last file is
/// dropped (and the file truncated there) when `aof_load_truncated` is on.
pub fn load(srv: &Arc<Server>) -> Result<u64, String> {
    let l = layout(srv);
    let parts = read_manifest(&l.manifest())?;
    let mut commands = 0;
    let incrs: Vec<&Part> = parts.iter().filter(|p| p.kind == 'i').collect();
    if let Some(base) = parts.iter().find(|p| p.kind == 'b') {
        let path = l.dir.join(&base.name);
        if base.name.ends_with(".rdb") {
            let l = super::load(&srv.db, &path)?;
            srv.scripts.restore_libraries(&l.functions)?;
        } else {
            commands += replay_file(srv, &path, false)?;
        }
    }
    for (i, p) in incrs.iter().enumerate() {
        let last = i + 1 == incrs.len();
        commands += replay_file(srv, &l.dir.join(&p.name), last && l.load_truncated)?;
    }
    let name = match incrs.last() {
        Some(p) => p.name.clone(),
        None => {
            // a base without increments: start one
            let seq = parts.iter().map(|p| p.seq).max().unwrap_or(0).max(1);
            let name = l.incr(seq);
            let mut v = parts.clone();
            v.push(Part {
                name: name.clone(),
                seq,
                kind: 'i',
            });
            write_manifest(&l.manifest(), &v).map_err(|e| e.to_string())?;
            name
        }
    };
    let f = l.open_incr(&name).map_err(|e| format!("{name}: {e}"))?;
    let mut g = srv.persist.feed.inner.lock();
    g.aof = Some(f);
    srv.persist.feed.update_active(&g);
    Ok(commands)
}

/// Runs the commands of one AOF file through the command path, as a client
/// would, with nothing fed back into the AOF (it is not active yet).
fn replay_file(srv: &Arc<Server>, path: &Path, truncate_tail: bool) -> Result<u64, String> {
    let show = path.display();
    let mut data = Vec::new();
    File::open(path)
        .and_then(|f| BufReader::new(f).read_to_end(&mut data))
        .map_err(|e| format!("{show}: {e}"))?;
    let mut start = 0;
    if data.starts_with(b"REDIS") {
        // an RDB preamble (Redis's base files with aof-use-rdb-preamble)
        let mut l = kvfleet_rdb::Loader::new(&data[..]).map_err(|e| format!("{show}: {e}"))?;
        let now = crate::util::now_ms();
        let mut functions = Vec::new();
        while let Some(item) = l.next_item().map_err(|e| format!("{show}: {e}"))? {
            match item {
                kvfleet_rdb::Item::Record(r) => {
                    super::insert_record(&srv.db, r, now).map_err(|e| format!("{show}: {e}"))?;
                }
                kvfleet_rdb::Item::Function(code) => functions.push(code),
                _ => {}
            }
        }
        srv.scripts
            .restore_libraries(&functions)
            .map_err(|e| format!("{show}: {e}"))?;
        start = l.position() as usize + 8;
    }
    let handle = ClientHandle::internal(0);
    let mut conn = ConnState::new(handle, true);
    let mut out = BytesMut::new();
    let mut parser = RequestParser::new();
    let limits = Limits {
        max_bulk_len: usize::MAX,
        authenticated: true,
    };
    let mut n = 0;
    let mut pos = start;
    // where the last complete command (outside MULTI) ended
    let mut good = start;
    loop {
        match parser.parse(&data[pos..], &limits) {
            Ok(Some(len)) => {
                let args: Vec<&[u8]> = (0..parser.args.len())
                    .map(|i| parser.arg(&data[pos..], i))
                    .collect();
                pos += len;
                if args.is_empty() {
                    continue;
                }
                out.clear();
                conn.now_ms = crate::util::now_ms();
                crate::cmd::dispatch(srv, &mut conn, &mut out, &args);
                if out.first() == Some(&b'-') {
                    return Err(format!(
                        "{show}: command {} at byte {}: {}",
                        String::from_utf8_lossy(args[0]),
                        pos - len,
                        String::from_utf8_lossy(&out[1..out.len().saturating_sub(2)])
                    ));
                }
                n += 1;
                if conn.multi.is_none() {
                    good = pos;
                }
            }
            Ok(None) if pos == data.len() && conn.multi.is_none() => break,
            Ok(None) if truncate_tail => {
                tracing::warn!(file = %show, valid = good, size = data.len(), "AOF ends in an incomplete command; truncating it there (aof_load_truncated)");
                OpenOptions::new()
                    .write(true)
                    .open(path)
                    .and_then(|f| f.set_len(good as u64))
                    .map_err(|e| format!("{show}: truncating: {e}"))?;
                break;
            }
            Ok(None) => {
                return Err(format!(
                    "{show}: ends in an incomplete command at byte {good} (set aof_load_truncated to load up to there)"
                ));
            }
            Err(e) => return Err(format!("{show}: bad command at byte {pos}: {e}")),
        }
    }
    Ok(n)
}

/// Creates the AOF from the current keyspace (CONFIG SET appendonly yes, or
/// a start with appendonly on and no AOF), or rewrites it (BGREWRITEAOF).
/// At the snapshot's instant new writes switch to a new incremental file;
/// the manifest names the old parts plus the new increment until the new
/// base is written, then only the new ones.
pub fn rewrite(srv: &Server) -> Result<(), String> {
    let l = layout(srv);
    std::fs::create_dir_all(&l.dir).map_err(|e| format!("{}: {e}", l.dir.display()))?;
    let _one = srv.persist.running.lock();
    let old = if l.manifest().exists() {
        read_manifest(&l.manifest())?
    } else {
        Vec::new()
    };
    let seq = old.iter().map(|p| p.seq).max().unwrap_or(0) + 1;
    let (base, incr) = (l.base(seq), l.incr(seq));
    let mut next = l.open_incr(&incr).map_err(|e| format!("{incr}: {e}"))?;
    next.write(b"*2\r\n$6\r\nSELECT\r\n$1\r\n0\r\n")
        .map_err(|e| e.to_string())?;
    let mut interim = old.clone();
    interim.push(Part {
        name: incr.clone(),
        seq,
        kind: 'i',
    });
    write_manifest(&l.manifest(), &interim).map_err(|e| e.to_string())?;
    let feed = &srv.persist.feed;
    let t = Instant::now();
    let st = super::snapshot::start_with(&srv.db, || {
        // every slot is locked: nothing runs between the snapshot and the switch
        let mut g = feed.inner.lock();
        let buf = std::mem::take(&mut g.buf);
        if let Some(f) = g.aof.as_mut() {
            let _ = f.write(&buf);
            let _ = f.sync();
        }
        g.aof = Some(next);
        feed.update_active(&g);
    });
    srv.persist.latest_fork_usec.store(
        st.pause.as_micros() as u64,
        std::sync::atomic::Ordering::Relaxed,
    );
    let path = l.dir.join(&base);
    let result = (|| {
        let f = File::create(&path).map_err(|e| e.to_string())?;
        let w = std::io::BufWriter::with_capacity(1 << 20, super::AutoSync { f, unsynced: 0 });
        let compress = srv.rt.read().rdbcompression;
        let w = super::snapshot::write(
            &srv.db,
            &st,
            &super::aux_fields(srv, None),
            &srv.scripts.lib_codes.lock().clone(),
            compress,
            w,
        )
        .map_err(|e| e.to_string())?;
        w.into_inner()
            .map_err(|e| e.to_string())?
            .f
            .sync_all()
            .map_err(|e| e.to_string())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&path);
        return Err(format!("writing {}: {e}", path.display()));
    }
    let parts = vec![
        Part {
            name: base,
            seq,
            kind: 'b',
        },
        Part {
            name: incr,
            seq,
            kind: 'i',
        },
    ];
    write_manifest(&l.manifest(), &parts).map_err(|e| e.to_string())?;
    for p in old {
        let _ = std::fs::remove_file(l.dir.join(&p.name));
    }
    tracing::info!(
        keys = st.keys,
        secs = t.elapsed().as_secs_f64(),
        "AOF rewritten"
    );
    Ok(())
}

/// CONFIG SET appendonly no: stop appending (the files stay).
pub fn stop(srv: &Server) {
    let feed = &srv.persist.feed;
    feed.flush();
    let mut g = feed.inner.lock();
    if let Some(f) = g.aof.as_mut() {
        let _ = f.sync();
    }
    g.aof = None;
    feed.update_active(&g);
}
