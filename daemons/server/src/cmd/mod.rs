//! Command dispatch: table lookup, arity and auth checks, MULTI queueing,
//! slot ownership, locking the slots a command's keys hash to, then the
//! family handler (`cmd/<family>.rs`), then stats and key signals.
//!
//! Handlers are plain functions that write their reply into the connection's
//! output buffer; they return `Err` before writing anything on failure.

pub mod bitmap;
pub mod conn_cmds;
pub mod geo;
pub mod hash;
pub mod hll;
pub mod introspect;
pub mod keys;
pub mod list;
pub mod multi;
pub mod pubsub;
pub mod scripting;
pub mod server_cmds;
pub mod set;
pub mod sort;
pub mod stream;
pub mod string;
pub mod zset;

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Instant;

use bytes::BytesMut;
use indexmap::IndexSet;
use parking_lot::MutexGuard;
use smallvec::SmallVec;
use tokio::sync::Notify;

use crate::db::value::{HashVal, ListVal, SetVal};
use crate::db::{Entry, Slot, Value, ZSet};
use crate::server::{ClientHandle, Server, SlowEntry};
use crate::util;
use kvfleet_model::commands::{COMMANDS, CommandSpec, flag};
use kvfleet_resp::encode;

/// A command failure, rendered as a RESP error line.
#[derive(Debug, Clone)]
pub struct CmdError(pub Cow<'static, str>);

pub type CmdResult = Result<(), CmdError>;

pub const WRONGTYPE: CmdError = CmdError(Cow::Borrowed(
    "WRONGTYPE Operation against a key holding the wrong kind of value",
));
pub const NOT_INT: CmdError =
    CmdError(Cow::Borrowed("ERR value is not an integer or out of range"));
pub const NOT_FLOAT: CmdError = CmdError(Cow::Borrowed("ERR value is not a valid float"));
pub const SYNTAX: CmdError = CmdError(Cow::Borrowed("ERR syntax error"));
pub const NO_KEY: CmdError = CmdError(Cow::Borrowed("ERR no such key"));
pub const OUT_OF_RANGE: CmdError = CmdError(Cow::Borrowed("ERR index out of range"));
pub const NOT_POSITIVE: CmdError =
    CmdError(Cow::Borrowed("ERR value is out of range, must be positive"));

/// Returned by a handler that must reach keys it did not declare (SORT's
/// BY/GET patterns, a STORE in another slot) before it has done anything:
/// the command runs again with every slot locked, in slot order.
pub const NEEDS_ALL_SLOTS: CmdError = CmdError(Cow::Borrowed("ERR internal: needs every slot"));

/// Whether a queued command may need [`NEEDS_ALL_SLOTS`] (EXEC then locks
/// every slot for the transaction): SORT with options, a GEORADIUS STORE.
pub fn may_reach_undeclared(name: &str, args: &[&[u8]]) -> bool {
    match name {
        "sort" | "sort_ro" => args.len() > 2,
        // a script may touch keys it did not declare
        "eval" | "evalsha" | "eval_ro" | "evalsha_ro" | "fcall" | "fcall_ro" => true,
        "georadius" | "georadiusbymember" => args
            .iter()
            .any(|a| a.eq_ignore_ascii_case(b"store") || a.eq_ignore_ascii_case(b"storedist")),
        _ => false,
    }
}

pub fn err(s: impl Into<Cow<'static, str>>) -> CmdError {
    CmdError(s.into())
}

pub type Handler = fn(&mut Ctx<'_, '_>, &[&[u8]]) -> CmdResult;

/// A blocked command's request: the keys to wait on and the deadline.
#[derive(Debug)]
pub struct BlockReq {
    pub keys: Vec<Box<[u8]>>,
    /// Absolute deadline; `None` waits forever.
    pub deadline: Option<Instant>,
}

/// Per-connection state that commands read and change.
pub struct ConnState {
    pub handle: Arc<ClientHandle>,
    pub resp3: bool,
    pub authed: bool,
    pub multi: Option<Vec<Vec<Box<[u8]>>>>,
    pub multi_err: bool,
    pub in_exec: bool,
    /// WATCHed keys, and whether each was live then (so EXEC can tell
    /// that one has since expired, which aborts it as in Redis 7.0).
    pub watched: Vec<(Box<[u8]>, bool)>,
    pub watch_dirty: Arc<AtomicBool>,
    pub channels: IndexSet<Box<[u8]>>,
    pub patterns: IndexSet<Box<[u8]>>,
    pub block: Option<BlockReq>,
    pub block_timed_out: bool,
    pub notify: Arc<Notify>,
    /// Set by QUIT and protocol errors: close after flushing replies.
    pub close: bool,
    /// Wall clock (ms) for this batch of requests: expiry checks use it.
    pub now_ms: u64,
    /// End of the previous command (or start of the batch): each command's
    /// duration costs one clock read.
    pub clock: Instant,
    /// Per-command (index, calls, usec) not yet added to the shared counters;
    /// flushed once per batch so cores do not fight over counter cache lines.
    pending_stats: Vec<(usize, u64, u64)>,
    keys_buf: Vec<usize>,
    slots_buf: Vec<u16>,
    /// Commands for the write stream: inside EXEC, the transaction's so far.
    pub feed_buf: Vec<u8>,
    /// Set by a handler whose effect replicas must get in another form than
    /// the command itself (consumer groups: Redis's XCLAIM/XGROUP SETID
    /// rewrite); replaces it in the write stream.
    pub propagate: Option<Vec<u8>>,
    /// What `REPLCONF` said: the replica's port, and whether it takes `$EOF:` RDBs.
    pub replconf_port: u64,
    pub replconf_eof: bool,
    /// The link to this replica's master: its writes are allowed.
    pub from_master: bool,
    /// The replication offset just past this client's last write (WAIT's target).
    pub woff: u64,
    /// WAIT: (replicas wanted, offset they must reach, deadline); the reply
    /// comes from the connection loop.
    pub wait: Option<(usize, u64, Option<std::time::Instant>)>,
    /// PSYNC/SYNC: the connection becomes a replica link after this reply.
    pub handoff: Option<crate::repl::Psync>,
    /// A blocked XREAD's IDs as first resolved (`$` must not move on re-run).
    pub xread_ids: Vec<crate::db::stream::StreamId>,
}

impl ConnState {
    pub fn new(handle: Arc<ClientHandle>, authed: bool) -> Self {
        ConnState {
            handle,
            resp3: false,
            authed,
            multi: None,
            multi_err: false,
            in_exec: false,
            watched: Vec::new(),
            watch_dirty: Arc::new(AtomicBool::new(false)),
            channels: IndexSet::new(),
            patterns: IndexSet::new(),
            block: None,
            block_timed_out: false,
            notify: Arc::new(Notify::new()),
            close: false,
            now_ms: util::now_ms(),
            clock: Instant::now(),
            pending_stats: Vec::new(),
            keys_buf: Vec::new(),
            slots_buf: Vec::new(),
            feed_buf: Vec::new(),
            propagate: None,
            replconf_port: 0,
            replconf_eof: false,
            from_master: false,
            wait: None,
            woff: 0,
            handoff: None,
            xread_ids: Vec::new(),
        }
    }

    pub fn subscribed(&self) -> bool {
        !self.channels.is_empty() || !self.patterns.is_empty()
    }
}

pub(crate) type Guards<'s> = SmallVec<[(u16, MutexGuard<'s, Slot>); 2]>;

/// The keyspace as one command sees it: the slots locked for it, and lazy
/// expiry at this command's clock. Kept apart from the reply buffer so a
/// handler can write a value straight from the table into the reply.
pub struct Keys<'s> {
    pub srv: &'s Server,
    pub now: u64,
    guards: Guards<'s>,
    /// Every slot is locked (EXEC of a whole-keyspace command).
    all_locked: bool,
    /// A read-only command: counts hits/misses, and its reads skip the
    /// snapshot's copy-on-write.
    count_hits: bool,
}

/// What a handler sees: the server, its connection, the reply buffer and the keyspace.
pub struct Ctx<'s, 'c> {
    pub srv: &'s Server,
    pub conn: &'c mut ConnState,
    pub out: &'c mut BytesMut,
    pub now: u64,
    /// Changes made (for `rdb_changes_since_last_save` and key signals).
    pub dirty: u64,
    pub spec: &'static CommandSpec,
    pub db: Keys<'s>,
}

macro_rules! typed_access {
    ($get:ident, $get_or_new:ident, $variant:ident, $ty:ty) => {
        /// The value at `key` if it has this type; `WRONGTYPE` otherwise.
        pub fn $get(&mut self, key: &[u8]) -> Result<Option<&mut $ty>, CmdError> {
            match self.get(key) {
                None => Ok(None),
                Some(e) => match e.value_mut() {
                    Some(Value::$variant(v)) => Ok(Some(v)),
                    _ => Err(WRONGTYPE),
                },
            }
        }

        /// As above, creating an empty value when the key is missing. An
        /// existing key's access time is stamped, as Redis's write lookups
        /// do (LRU/LFU eviction must see keys that are only written).
        pub fn $get_or_new(&mut self, key: &[u8]) -> Result<&mut $ty, CmdError> {
            let now = self.now;
            let slot = self.slot_mut(key);
            let idx = match slot.find_touched(key, now) {
                Some(i) => i,
                None => {
                    slot.insert(Entry::new(key, Value::$variant(Default::default()), 0));
                    slot.map.get_index_of(key).expect("just inserted")
                }
            };
            match slot.map[idx].value_mut() {
                Some(Value::$variant(v)) => Ok(v),
                _ => Err(WRONGTYPE),
            }
        }
    };
}

impl<'s> Keys<'s> {
    /// The locked slot of `key` (locking it if the command did not declare it).
    #[inline]
    pub fn slot_mut(&mut self, key: &[u8]) -> &mut Slot {
        if self.guards.len() == 1 && !self.all_locked {
            return &mut self.guards[0].1;
        }
        let s = kvfleet_model::slot(key);
        let i = match self.guards.binary_search_by_key(&s, |g| g.0) {
            Ok(i) => i,
            Err(i) => {
                self.guards
                    .insert(i, (s, self.srv.db.slots[s as usize].lock()));
                i
            }
        };
        &mut self.guards[i].1
    }

    /// Whether this command holds every slot's lock.
    pub fn all_locked(&self) -> bool {
        self.all_locked
    }

    /// Lends the held guards to a script's inner commands.
    pub(crate) fn take_guards(&mut self) -> Guards<'s> {
        std::mem::take(&mut self.guards)
    }

    /// Takes back the guards (with any slots the script locked since).
    pub(crate) fn put_guards(&mut self, g: Guards<'s>) {
        self.guards = g;
    }

    /// Visits every slot, using the held guards when all are locked.
    pub fn for_each_slot(&mut self, mut f: impl FnMut(u16, &mut Slot)) {
        if self.all_locked {
            for (id, g) in self.guards.iter_mut() {
                f(*id, g);
            }
        } else {
            for (i, s) in self.srv.db.slots.iter().enumerate() {
                f(i as u16, &mut s.lock());
            }
        }
    }

    /// Runs `f` on slot `idx`, through the held guard when this command
    /// already holds it (inside EXEC), else by locking it briefly.
    pub fn with_slot<R>(&mut self, idx: usize, f: impl FnOnce(&mut Slot) -> R) -> R {
        match self.guards.binary_search_by_key(&(idx as u16), |g| g.0) {
            Ok(i) => f(&mut self.guards[i].1),
            Err(_) => f(&mut self.srv.db.slots[idx].lock()),
        }
    }

    /// The live entry at `key` (lazily expiring it), stamping its access time.
    #[inline]
    pub fn get(&mut self, key: &[u8]) -> Option<&mut Entry> {
        let (now, hits) = (self.now, self.count_hits);
        let slot = self.slot_mut(key);
        match slot.find(key, now) {
            Some(i) => {
                if hits {
                    slot.hits += 1;
                }
                // read-only commands only stamp the access time
                let e = if hits {
                    slot.map.for_read(i)
                } else {
                    &mut slot.map[i]
                };
                e.set_access(crate::db::touched(e.access()));
                Some(e)
            }
            None => {
                if hits {
                    slot.misses += 1;
                }
                None
            }
        }
    }

    /// Read-only view of a key in an already-locked slot: expired entries
    /// read as missing (not deleted), so several keys can be borrowed at once
    /// (set algebra reads all its inputs in place instead of copying them).
    pub fn view(&self, key: &[u8]) -> Option<&Entry> {
        let s = kvfleet_model::slot(key);
        let i = self.guards.binary_search_by_key(&s, |g| g.0).ok()?;
        self.guards[i]
            .1
            .map
            .get(key)
            .filter(|e| !e.expired(self.now))
    }

    /// The live entry without counting an access (TYPE, TTL, OBJECT).
    pub fn peek(&mut self, key: &[u8]) -> Option<&mut Entry> {
        let now = self.now;
        let slot = self.slot_mut(key);
        let i = slot.find(key, now)?;
        Some(&mut slot.map[i])
    }

    pub fn exists(&mut self, key: &[u8]) -> bool {
        let now = self.now;
        self.slot_mut(key).find(key, now).is_some()
    }

    pub fn remove(&mut self, key: &[u8]) -> Option<Entry> {
        let now = self.now;
        let slot = self.slot_mut(key);
        let i = slot.find(key, now)?;
        slot.remove_index(i)
    }

    /// Stores `value` at `key`, dropping any expiry (SET semantics: a key
    /// that existed keeps its access history, `Slot::overwrite`).
    pub fn set(&mut self, key: &[u8], value: Value) {
        let now = self.now;
        self.slot_mut(key).overwrite(Entry::new(key, value, 0), now);
    }

    /// As [`Keys::set`] for a string, packed straight from the argument bytes.
    pub fn set_str(&mut self, key: &[u8], value: &[u8]) {
        let now = self.now;
        self.slot_mut(key)
            .overwrite(Entry::string(key, value, 0), now);
    }

    /// Deletes `key` if its container became empty (Redis never keeps empty ones).
    pub fn remove_if_empty(&mut self, key: &[u8]) {
        let slot = self.slot_mut(key);
        if let Some(i) = slot.map.get_index_of(key)
            && slot.map[i].is_empty_container()
        {
            slot.remove_index(i);
        }
    }

    pub fn str_value(&mut self, key: &[u8]) -> Result<Option<&[u8]>, CmdError> {
        match self.get(key) {
            None => Ok(None),
            Some(e) => e.str().map(Some).ok_or(WRONGTYPE),
        }
    }

    typed_access!(hash, hash_or_new, Hash, HashVal);
    typed_access!(list, list_or_new, List, ListVal);
    typed_access!(set_val, set_or_new, Set, SetVal);
    typed_access!(zset, zset_or_new, ZSet, ZSet);
    typed_access!(
        stream,
        stream_or_new,
        Stream,
        Box<crate::db::stream::Stream>
    );
}

impl Ctx<'_, '_> {
    /// Asks the connection to park this command until a key is written or the timeout passes.
    /// Inside MULTI, or after the timeout, handlers reply null instead.
    pub fn may_block(&self) -> bool {
        !self.conn.in_exec && !self.conn.block_timed_out
    }

    /// The tail of every "remove members" command: drop the key if its
    /// container emptied, count the change, reply with how many went.
    pub fn reply_removed(&mut self, key: &[u8], n: i64) {
        if n > 0 {
            self.db.remove_if_empty(key);
            self.dirty += 1;
        }
        self.int(n);
    }

    /// Parks the command on `keys` when it may block, else (inside EXEC, or
    /// once the timeout has passed) replies with the null array.
    pub fn block_or_null(&mut self, keys: &[&[u8]], timeout: Option<std::time::Duration>) {
        if self.may_block() {
            self.block(keys, timeout);
        } else {
            self.null_array();
        }
    }

    /// Registers the wait while this command still holds its slot locks, so a
    /// push that lands right after cannot be missed.
    pub fn block(&mut self, keys: &[&[u8]], timeout: Option<std::time::Duration>) {
        let keys: Vec<Box<[u8]>> = keys.iter().map(|k| Box::from(*k)).collect();
        self.srv.block_on(&keys, &self.conn.notify);
        self.conn.block = Some(BlockReq {
            keys,
            deadline: timeout.map(|t| Instant::now() + t),
        });
    }

    // === replies ===

    pub fn resp3(&self) -> bool {
        self.conn.resp3
    }
    pub fn ok(&mut self) {
        self.out.extend_from_slice(b"+OK\r\n");
    }
    pub fn simple(&mut self, s: &[u8]) {
        encode::simple(self.out, s);
    }
    pub fn int(&mut self, n: i64) {
        encode::int(self.out, n);
    }
    pub fn bulk(&mut self, b: &[u8]) {
        encode::bulk(self.out, b);
    }
    pub fn null(&mut self) {
        encode::null(self.out, self.conn.resp3);
    }
    pub fn null_array(&mut self) {
        encode::null_array(self.out, self.conn.resp3);
    }
    pub fn array(&mut self, n: usize) {
        encode::array(self.out, n);
    }
    pub fn map(&mut self, n: usize) {
        encode::map(self.out, n, self.conn.resp3);
    }
    pub fn set_hdr(&mut self, n: usize) {
        encode::set(self.out, n, self.conn.resp3);
    }
    pub fn double(&mut self, d: f64) {
        let s = util::g17(d);
        encode::double_str(self.out, &s, self.conn.resp3);
    }
    pub fn opt_bulk(&mut self, b: Option<&[u8]>) {
        match b {
            Some(b) => self.bulk(b),
            None => self.null(),
        }
    }
    /// A `HELP` subcommand's reply: one status line per entry.
    pub fn help_lines(&mut self, lines: &[&str]) {
        self.array(lines.len());
        lines.iter().for_each(|l| self.simple(l.as_bytes()));
    }
    pub fn verbatim(&mut self, s: &[u8]) {
        encode::verbatim(self.out, s, self.conn.resp3);
    }
}

/// Binds a table row to its handler. A unit test checks every row has one.
pub fn handler(name: &str) -> Option<Handler> {
    use conn_cmds as c;
    use server_cmds as s;
    Some(match name {
        "ping" => c::ping,
        "echo" => c::echo,
        "quit" => c::quit,
        "select" => c::select,
        "hello" => c::hello,
        "auth" => c::auth,
        "client" => c::client,
        "reset" => c::reset,
        "command" => s::command,
        "config" => s::config,
        "info" => s::info,
        "dbsize" => s::dbsize,
        "flushall" | "flushdb" => s::flushall,
        "slowlog" => s::slowlog,
        "time" => s::time,
        "debug" => s::debug,
        "lastsave" => s::lastsave,
        "save" => s::save,
        "bgsave" => s::bgsave,
        "bgrewriteaof" => s::bgrewriteaof,
        "replconf" => s::replconf,
        "psync" | "sync" => s::psync,
        "role" => s::role,
        "replicaof" | "slaveof" => s::replicaof,
        "wait" => s::wait,
        "failover" => s::failover,
        "shutdown" => s::shutdown,
        "slots" => s::slots,
        "multi" => multi::multi,
        "exec" => multi::exec_placeholder,
        "discard" => multi::discard,
        "watch" => multi::watch,
        "unwatch" => multi::unwatch,
        "subscribe" => pubsub::subscribe,
        "unsubscribe" => pubsub::unsubscribe,
        "psubscribe" => pubsub::psubscribe,
        "punsubscribe" => pubsub::punsubscribe,
        "publish" => pubsub::publish,
        "pubsub" => pubsub::pubsub,
        n => {
            return keys::handler(n)
                .or_else(|| string::handler(n))
                .or_else(|| bitmap::handler(n))
                .or_else(|| hll::handler(n))
                .or_else(|| sort::handler(n))
                .or_else(|| stream::handler(n))
                .or_else(|| geo::handler(n))
                .or_else(|| introspect::handler(n))
                .or_else(|| scripting::handler(n))
                .or_else(|| hash::handler(n))
                .or_else(|| list::handler(n))
                .or_else(|| set::handler(n))
                .or_else(|| zset::handler(n));
        }
    })
}

static HANDLERS: std::sync::LazyLock<Vec<Handler>> = std::sync::LazyLock::new(|| {
    COMMANDS
        .iter()
        .map(|c| handler(c.name).unwrap_or(unbound))
        .collect()
});

fn unbound(_: &mut Ctx<'_, '_>, _: &[&[u8]]) -> CmdResult {
    Err(err("ERR command not implemented"))
}

fn unknown_command(args: &[&[u8]]) -> CmdError {
    let mut s = format!(
        "ERR unknown command '{}', with args beginning with: ",
        trunc(args[0])
    );
    for a in &args[1..] {
        s.push_str(&format!("'{}' ", trunc(a)));
    }
    err(s)
}

/// Redis quotes at most 128 bytes of a name in its errors.
pub fn trunc(b: &[u8]) -> String {
    String::from_utf8_lossy(&b[..b.len().min(128)]).into_owned()
}

/// Redis's two subcommand errors: a known subcommand with the wrong number of
/// arguments, or an unknown one.
pub fn sub_error(cmd: &str, sub: &[u8], known: &[&str]) -> CmdError {
    let lower = String::from_utf8_lossy(sub).to_ascii_lowercase();
    if known.contains(&lower.as_str()) {
        arity_error(&format!("{cmd}|{lower}"))
    } else {
        err(format!(
            "ERR unknown subcommand '{}'. Try {} HELP.",
            trunc(sub),
            cmd.to_uppercase()
        ))
    }
}

pub fn arity_error(name: &str) -> CmdError {
    err(format!(
        "ERR wrong number of arguments for '{name}' command"
    ))
}

/// Write the error reply for a failed command and count it.
fn reply_err(srv: &Server, out: &mut BytesMut, e: &CmdError) {
    srv.stats.errors.fetch_add(1, Relaxed);
    encode::error(out, e.0.as_bytes());
}

/// Runs one command from a client. Replies go to `out`; a blocked command
/// leaves `conn.block` set and writes nothing.
pub fn dispatch(srv: &Server, conn: &mut ConnState, out: &mut BytesMut, args: &[&[u8]]) {
    let Some(idx) = srv.lookup(args[0]) else {
        if conn.multi.is_some() {
            conn.multi_err = true;
        }
        return reply_err(srv, out, &unknown_command(args));
    };
    let spec = &COMMANDS[idx];
    if !spec.arity_ok(args.len()) {
        if conn.multi.is_some() {
            conn.multi_err = true;
        }
        srv.cmd_stats[idx].rejected.fetch_add(1, Relaxed);
        return reply_err(srv, out, &arity_error(spec.name));
    }
    if !conn.authed && !spec.has(flag::NO_AUTH) {
        if conn.multi.is_some() {
            conn.multi_err = true;
        }
        return reply_err(srv, out, &err("NOAUTH Authentication required."));
    }
    if !conn.resp3
        && conn.subscribed()
        && !matches!(
            spec.name,
            "subscribe" | "unsubscribe" | "psubscribe" | "punsubscribe" | "ping" | "quit" | "reset"
        )
    {
        return reply_err(
            srv,
            out,
            &err(format!(
                "ERR Can't execute '{}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context",
                spec.name
            )),
        );
    }
    if spec.has(flag::WRITE) && !conn.from_master {
        let refused = if srv.follow.is_replica() {
            srv.repl_policy
                .read_only
                .load(Relaxed)
                .then_some("READONLY You can't write against a read only replica.")
        } else {
            (!srv.repl_policy.enough_replicas())
                .then_some("NOREPLICAS Not enough good replicas to write.")
        };
        if let Some(e) = refused {
            if conn.multi.is_some() {
                conn.multi_err = true;
            }
            return reply_err(srv, out, &err(e));
        }
    }
    if spec.name == "exec" {
        return multi::exec(srv, conn, out);
    }
    if conn.multi.is_some() && !spec.has(flag::NO_MULTI) && spec.name != "quit" {
        if let Err(e) = precheck(srv, spec) {
            conn.multi_err = true;
            return reply_err(srv, out, &e);
        }
        if let Some(q) = conn.multi.as_mut() {
            q.push(args.iter().map(|a| Box::from(*a)).collect());
        }
        out.extend_from_slice(b"+QUEUED\r\n");
        return;
    }
    run(srv, conn, out, idx, args, None);
}

/// The memory check, made before any slot is locked (eviction locks slots itself).
fn precheck(srv: &Server, spec: &CommandSpec) -> CmdResult {
    let max = srv.maxmemory.load(Relaxed);
    if max > 0 && spec.has(flag::DENYOOM) {
        crate::evict::evict(srv, max);
        if srv.used_memory() > max {
            return Err(err(
                "OOM command not allowed when used memory > 'maxmemory'.",
            ));
        }
    }
    Ok(())
}

/// Executes a command outside or inside EXEC. `held` carries EXEC's guards.
pub fn run<'s>(
    srv: &'s Server,
    conn: &mut ConnState,
    out: &mut BytesMut,
    idx: usize,
    args: &[&[u8]],
    held: Option<(&mut Guards<'s>, bool)>,
) {
    let spec = &COMMANDS[idx];
    let mut keys = std::mem::take(&mut conn.keys_buf);
    keys.clear();
    spec.key_indexes(args, &mut keys);
    let first_try = held.is_none();
    let mut result = execute(srv, conn, out, idx, args, &keys, held);
    if first_try && matches!(&result, Err(e) if e.0 == NEEDS_ALL_SLOTS.0) {
        let mut all: Guards<'_> = srv
            .db
            .slots
            .iter()
            .enumerate()
            .map(|(i, s)| (i as u16, s.lock()))
            .collect();
        result = execute(srv, conn, out, idx, args, &keys, Some((&mut all, true)));
    }
    let st = &srv.cmd_stats[idx];
    if let Err(e) = &result {
        st.failed.fetch_add(1, Relaxed);
        reply_err(srv, out, e);
    }
    conn.keys_buf = keys;
    if conn.block.is_some() {
        return;
    }
    let end = Instant::now();
    let usec = end.duration_since(conn.clock).as_micros() as u64;
    conn.clock = end;
    match conn.pending_stats.iter_mut().find(|p| p.0 == idx) {
        Some(p) => {
            p.1 += 1;
            p.2 += usec;
        }
        None => conn.pending_stats.push((idx, 1, usec)),
    }
    conn.handle.last_cmd.store(idx, Relaxed);
    let slower = srv.slowlog_slower_than.load(Relaxed);
    if slower >= 0 && usec as i64 >= slower {
        slowlog_add(srv, conn, args, usec);
    }
}

fn execute<'s>(
    srv: &'s Server,
    conn: &mut ConnState,
    out: &mut BytesMut,
    idx: usize,
    args: &[&[u8]],
    keys: &[usize],
    held: Option<(&mut Guards<'s>, bool)>,
) -> CmdResult {
    let spec = &COMMANDS[idx];
    if held.is_none() {
        precheck(srv, spec)?;
    }
    let mut slots = std::mem::take(&mut conn.slots_buf);
    slots.clear();
    slots.extend(keys.iter().map(|&i| kvfleet_model::slot(args[i])));
    slots.sort_unstable();
    slots.dedup();
    let moved = slots.iter().find(|&&s| !srv.is_owned(s)).copied();
    if let Some(s) = moved {
        conn.slots_buf = slots;
        let addr = srv.moved_addr.read().clone();
        return Err(err(format!("MOVED {s} {addr}")));
    }
    let mut held = held;
    let (guards, all_locked) = match &mut held {
        Some((g, all)) => (std::mem::take(*g), *all),
        None => {
            let mut g = Guards::new();
            for &s in &slots {
                match lock_slot(srv, s) {
                    Ok(l) => g.push((s, l)),
                    Err(e) => {
                        conn.slots_buf = slots;
                        return Err(e);
                    }
                }
            }
            (g, false)
        }
    };
    conn.slots_buf = slots;
    let now = conn.now_ms;
    let mut ctx = Ctx {
        srv,
        conn,
        out,
        now,
        dirty: 0,
        spec,
        db: Keys {
            srv,
            now,
            guards,
            all_locked,
            count_hits: spec.has(flag::READONLY),
        },
    };
    let reply_at = ctx.out.len();
    let r = HANDLERS[idx](&mut ctx, args);
    let dirty = ctx.dirty;
    let own = ctx.conn.propagate.take();
    if srv.persist.feed.active() {
        // appended while the command's slots are still locked: first the
        // keys that expired under it, then its own effect
        let mut cmds = std::mem::take(&mut ctx.conn.feed_buf);
        for (_, slot) in ctx.db.guards.iter_mut() {
            crate::persist::feed::Feed::expired_dels(slot, &mut cmds);
        }
        if dirty > 0 {
            match own {
                Some(own) => cmds.extend_from_slice(&own),
                None => crate::persist::feed::replay(
                    spec.name,
                    args,
                    &mut ctx.db,
                    &ctx.out[reply_at..],
                    &mut cmds,
                ),
            }
        }
        if ctx.conn.in_exec || cmds.is_empty() {
            ctx.conn.feed_buf = cmds;
        } else {
            let off = srv.persist.feed.append(&cmds);
            if dirty > 0 {
                ctx.conn.woff = off;
            }
            cmds.clear();
            ctx.conn.feed_buf = cmds;
        }
    }
    let guards = std::mem::take(&mut ctx.db.guards);
    match held {
        Some((g, _)) => *g = guards,
        None => drop(guards),
    }
    if dirty > 0 {
        srv.stats.dirty.fetch_add(dirty, Relaxed);
        if spec.has(flag::ALL_SLOTS) {
            srv.signal_all();
        }
        for &i in keys {
            srv.signal_key(args[i]);
        }
    }
    r
}

/// Locks one slot. A slot held past `busy-reply-threshold` by a running
/// script answers BUSY instead of blocking this worker thread on it.
#[inline]
fn lock_slot(srv: &Server, s: u16) -> Result<MutexGuard<'_, Slot>, CmdError> {
    let m = &srv.db.slots[s as usize];
    if let Some(g) = m.try_lock() {
        return Ok(g);
    }
    loop {
        if let Some(g) = m.try_lock_for(std::time::Duration::from_millis(2)) {
            return Ok(g);
        }
        if let Some(e) = srv.scripts.busy_error() {
            return Err(e);
        }
    }
}

/// Adds a connection's batched command counts to the shared counters.
pub fn flush_stats(srv: &Server, conn: &mut ConnState) {
    let mut total = 0;
    for (idx, calls, usec) in conn.pending_stats.drain(..) {
        let st = &srv.cmd_stats[idx];
        st.calls.fetch_add(calls, Relaxed);
        st.usec.fetch_add(usec, Relaxed);
        total += calls;
    }
    if total > 0 {
        srv.stats.commands.fetch_add(total, Relaxed);
    }
}

fn slowlog_add(srv: &Server, conn: &ConnState, args: &[&[u8]], usec: u64) {
    let max = srv.rt.read().slowlog_max_len;
    let mut argv: Vec<Vec<u8>> = Vec::new();
    let n = args.len().min(32);
    for (i, a) in args[..n].iter().enumerate() {
        if i == 31 && args.len() > 32 {
            argv.push(format!("... ({} more arguments)", args.len() - 31).into_bytes());
            break;
        }
        if a.len() > 128 {
            let mut v = a[..128].to_vec();
            v.extend_from_slice(format!("... ({} more bytes)", a.len() - 128).as_bytes());
            argv.push(v);
        } else {
            argv.push(a.to_vec());
        }
    }
    let mut log = srv.slowlog.lock();
    let id = log.next_id;
    log.next_id += 1;
    log.entries.push_front(SlowEntry {
        id,
        ts: util::now_ms() / 1000,
        usec,
        args: argv,
        addr: conn.handle.addr.clone(),
        name: conn.handle.name.lock().clone().unwrap_or_default(),
    });
    log.entries.truncate(max);
}

// === argument helpers shared by the families ===

pub fn int_arg(a: &[u8]) -> Result<i64, CmdError> {
    util::parse_i64(a).ok_or(NOT_INT)
}

pub fn float_arg(a: &[u8]) -> Result<f64, CmdError> {
    util::parse_f64(a).ok_or(NOT_FLOAT)
}

/// Case-insensitive option match.
#[inline]
pub fn is(a: &[u8], opt: &str) -> bool {
    a.eq_ignore_ascii_case(opt.as_bytes())
}

/// The optional `count` of LPOP/SPOP/ZPOPMIN-style commands at `a[2]`:
/// negative is Redis's "must be positive" error, more arguments a syntax error.
pub fn pop_count(a: &[&[u8]]) -> Result<Option<usize>, CmdError> {
    match a.len() {
        2 => Ok(None),
        3 => match int_arg(a[2])? {
            c if c < 0 => Err(NOT_POSITIVE),
            c => Ok(Some(c as usize)),
        },
        _ => Err(SYNTAX),
    }
}

/// Blocking timeout in seconds (a float in Redis 7).
pub fn timeout_arg(a: &[u8]) -> Result<Option<std::time::Duration>, CmdError> {
    let t = util::parse_f64(a).ok_or_else(|| err("ERR timeout is not a float or out of range"))?;
    if t < 0.0 {
        return Err(err("ERR timeout is negative"));
    }
    if !t.is_finite() || t > 1e12 {
        return Err(err("ERR timeout is out of range"));
    }
    Ok(if t == 0.0 {
        None
    } else {
        Some(std::time::Duration::from_secs_f64(t))
    })
}

/// Redis's SCAN-family `COUNT`/`MATCH`/`TYPE` options.
pub struct ScanOpts<'b> {
    pub count: usize,
    pub pattern: Option<&'b [u8]>,
    pub typ: Option<&'b [u8]>,
    pub novalues: bool,
}

pub fn scan_opts<'b>(args: &[&'b [u8]], allow_type: bool) -> Result<ScanOpts<'b>, CmdError> {
    let mut o = ScanOpts {
        count: 10,
        pattern: None,
        typ: None,
        novalues: false,
    };
    let mut i = 0;
    while i < args.len() {
        let rest = args.len() - i - 1;
        if is(args[i], "count") && rest >= 1 {
            let c = int_arg(args[i + 1])?;
            if c < 1 {
                return Err(SYNTAX);
            }
            o.count = c as usize;
            i += 2;
        } else if is(args[i], "match") && rest >= 1 {
            let p = args[i + 1];
            o.pattern = if p == b"*" { None } else { Some(p) };
            i += 2;
        } else if allow_type && is(args[i], "type") && rest >= 1 {
            o.typ = Some(args[i + 1]);
            i += 2;
        } else {
            return Err(SYNTAX);
        }
    }
    Ok(o)
}

/// Parses a SCAN cursor as Redis does (unsigned, strict).
/// Parses a SCAN cursor as Redis's `strtoul` does (a leading '-' wraps around).
pub fn cursor_arg(a: &[u8]) -> Result<u64, CmdError> {
    let (neg, digits) = match a.first() {
        Some(b'-') => (true, &a[1..]),
        Some(b'+') => (false, &a[1..]),
        _ => (false, a),
    };
    let v = std::str::from_utf8(digits)
        .ok()
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(|| err("ERR invalid cursor"))?;
    Ok(if neg { v.wrapping_neg() } else { v })
}

/// Resolves Redis's negative range indexes against `len`; `None` when empty.
pub fn clamp_range(start: i64, end: i64, len: usize) -> Option<(usize, usize)> {
    let len = len as i64;
    let mut s = if start < 0 { len + start } else { start };
    let mut e = if end < 0 { len + end } else { end };
    if s < 0 {
        s = 0;
    }
    if s > e || s >= len {
        return None;
    }
    if e >= len {
        e = len - 1;
    }
    Some((s as usize, e as usize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_row_has_a_handler() {
        let missing: Vec<_> = COMMANDS
            .iter()
            .filter(|c| handler(c.name).is_none())
            .map(|c| c.name)
            .collect();
        assert!(missing.is_empty(), "rows without handler: {missing:?}");
    }
}
