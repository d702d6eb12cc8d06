//! Lua scripting: one Lua 5.1 interpreter per server (as Redis has), the
//! script cache, function libraries, and the run state other connections
//! consult while a script runs.
//!
//! A script runs inside its command's handler, with the slots of its
//! declared keys locked (decision 0009). Its `redis.call`s go through the
//! same `cmd::run` path as EXEC's queued commands, with those guards held;
//! a key outside them is taken with a try-lock, and before the script's
//! first write a miss makes the whole script run again with every slot
//! locked instead.

pub mod bit;
pub mod cjson;
pub mod functions;
pub mod msgpack;
pub mod reply;
pub mod structlib;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use mlua::{Function, HookTriggers, Lua, LuaOptions, MultiValue, StdLib, Table, Value, VmState};
use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::cmd::{CmdError, Ctx, Guards, err};
use crate::server::Server;
use kvfleet_model::commands::{COMMANDS, flag};

/// How often (in VM instructions) a running script checks for SCRIPT KILL
/// and for having run long enough to hold other clients.
const HOOK_EVERY: u32 = 100_000;
/// A script running this long makes other clients' commands wait in their
/// buffers (and, past `busy-reply-threshold`, answer BUSY) instead of
/// blocking worker threads on its slot locks.
const GATE_AFTER_MS: u64 = 20;

pub const NOSCRIPT: &str = "NOSCRIPT No matching script. Please use EVAL.";
const BUSY_EVAL: &str =
    "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.";
const BUSY_FUNCTION: &str =
    "BUSY Redis is busy running a script. You can only call FUNCTION KILL or SHUTDOWN NOSAVE.";

/// Shebang / registration flags (Redis 7).
pub mod sflag {
    pub const NO_WRITES: u8 = 1;
    pub const ALLOW_OOM: u8 = 2;
    pub const ALLOW_STALE: u8 = 4;
    pub const NO_CLUSTER: u8 = 8;
    pub const ALLOW_CROSS_SLOT: u8 = 16;
    /// An EVAL body without a shebang: Redis 6 rules.
    pub const COMPAT: u8 = 128;
    pub const NAMES: &[(u8, &str)] = &[
        (NO_WRITES, "no-writes"),
        (ALLOW_OOM, "allow-oom"),
        (ALLOW_STALE, "allow-stale"),
        (NO_CLUSTER, "no-cluster"),
        (ALLOW_CROSS_SLOT, "allow-cross-slot-keys"),
    ];
}

/// What every interpreter shares: how many long scripts hold the gate,
/// the busy threshold, and the signal that one ended.
pub struct Shared {
    gates: AtomicUsize,
    threshold_ms: AtomicU64,
    done: Notify,
}

/// One interpreter's running script, as other connections see it.
pub struct RunState {
    epoch: Instant,
    /// ms since `epoch` + 1 when the running script began; 0 when none runs.
    started: AtomicU64,
    /// It has run past [`GATE_AFTER_MS`]: other clients go through [`Scripting::gate`].
    gate: AtomicBool,
    kill: AtomicBool,
    /// It has written: SCRIPT KILL refuses (UNKILLABLE).
    wrote: AtomicBool,
    eval: AtomicBool,
    from_master: AtomicBool,
    /// The kill hook fires on every instruction (so `pcall` cannot swallow it).
    hook_fast: AtomicBool,
    /// The running function's name and command (FUNCTION STATS).
    current: Mutex<Option<(String, Vec<Vec<u8>>)>>,
    /// The interpreter's heap after its last use (INFO's used_memory_lua).
    heap: AtomicUsize,
    /// ms since `epoch` + 1 when FUNCTION LOAD began running a library's
    /// top level; 0 otherwise. Past [`LOAD_TIMEOUT_MS`] the load fails.
    load_started: AtomicU64,
    shared: Arc<Shared>,
}

impl RunState {
    fn new(shared: Arc<Shared>) -> RunState {
        RunState {
            epoch: Instant::now(),
            started: AtomicU64::new(0),
            gate: AtomicBool::new(false),
            kill: AtomicBool::new(false),
            wrote: AtomicBool::new(false),
            eval: AtomicBool::new(true),
            from_master: AtomicBool::new(false),
            hook_fast: AtomicBool::new(false),
            current: Mutex::new(None),
            heap: AtomicUsize::new(0),
            load_started: AtomicU64::new(0),
            shared,
        }
    }

    fn elapsed_ms(&self) -> Option<u64> {
        match self.started.load(Relaxed) {
            0 => None,
            s => Some((self.epoch.elapsed().as_millis() as u64 + 1).saturating_sub(s)),
        }
    }

    /// It has run past `busy-reply-threshold`.
    fn busy(&self) -> bool {
        let t = self.shared.threshold_ms.load(Relaxed);
        t > 0 && self.elapsed_ms().is_some_and(|e| e >= t)
    }

    fn busy_error(&self) -> CmdError {
        err(if self.eval.load(Relaxed) {
            BUSY_EVAL
        } else {
            BUSY_FUNCTION
        })
    }

    /// Milliseconds a FUNCTION LOAD has been running its library's top level.
    fn load_elapsed_ms(&self) -> Option<u64> {
        match self.load_started.load(Relaxed) {
            0 => None,
            s => Some((self.epoch.elapsed().as_millis() as u64 + 1).saturating_sub(s)),
        }
    }

    fn begin(&self) {
        self.started
            .store(self.epoch.elapsed().as_millis() as u64 + 1, Relaxed);
    }

    fn engage(&self) {
        if !self.gate.swap(true, Relaxed) {
            self.shared.gates.fetch_add(1, Relaxed);
        }
    }

    fn finish(&self) {
        self.started.store(0, Relaxed);
        if self.gate.swap(false, Relaxed) {
            self.shared.gates.fetch_sub(1, Relaxed);
            self.shared.done.notify_waiters();
        }
    }
}

/// What the gate decides for a command arriving while a long script runs.
pub enum Gate {
    Run,
    Hold,
    Busy(CmdError),
}

/// A compiled EVAL body in one interpreter.
pub struct Script {
    pub func: Function,
    pub flags: u8,
    /// It touched keys it did not declare: later runs lock every slot at once.
    pub undeclared: bool,
}

pub struct Engine {
    pub lua: Lua,
    /// Hidden state shared with the prelude (`err`: an error table a Rust
    /// function raised; `reg`: FUNCTION LOAD's registrations).
    k: Table,
    run: Function,
    /// The read-only globals scripts run in, and the table behind it
    /// (KEYS and ARGV are set there per run).
    pub env: Table,
    /// What library code runs in: the same globals without KEYS and ARGV.
    pub fn_env: Table,
    visible: Table,
    arg_tables: RefCell<Option<ArgTables>>,
    bufs: std::cell::Cell<CallBufs>,
    /// `loading(true)` shows library code the load-time globals instead.
    loading: Function,
    pub scripts: HashMap<[u8; 40], Script, crate::db::value::Hasher>,
    pub libs: functions::Libraries,
    state: Arc<RunState>,
    /// The registry generations this interpreter's caches reflect.
    script_gen: u64,
    pub(crate) lib_gen: u64,
}

/// EVAL bodies every interpreter compiles from: SCRIPT LOAD on one
/// connection serves EVALSHA on any thread.
#[derive(Default)]
struct Registry {
    scripts: HashMap<[u8; 40], Arc<[u8]>>,
}

/// One worker thread's interpreter: only that thread touches it (mlua
/// without its `send` feature: no lock or atomic count per Lua API call).
struct EngineSlot {
    /// `None` before first use, and while an [`EngineGuard`] holds it.
    engine: RefCell<Option<Box<Engine>>>,
    created: std::cell::Cell<bool>,
    state: Arc<RunState>,
}

thread_local! {
    /// This thread's interpreter for each server (by [`Scripting::id`]).
    static MINE: RefCell<Vec<(u64, Rc<EngineSlot>)>> = const { RefCell::new(Vec::new()) };
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// The scripting side of a server: an interpreter per worker thread (so
/// scripts on different slots run in parallel, decision 0009), the shared
/// script registry and library set, and what other connections consult
/// while a script runs.
pub struct Scripting {
    id: u64,
    shared: Arc<Shared>,
    registry: Mutex<Registry>,
    /// Bumped by SCRIPT FLUSH / library changes: interpreters resync.
    script_gen: AtomicU64,
    lib_gen: AtomicU64,
    /// Every interpreter's run state (what SCRIPT KILL, BUSY and FUNCTION
    /// STATS consult from other threads).
    engines: Mutex<Vec<Arc<RunState>>>,
    /// The libraries' code (the set every interpreter loads; snapshots
    /// read it without waiting for an interpreter), and how many
    /// functions they register (FUNCTION STATS).
    pub lib_codes: Mutex<Vec<Vec<u8>>>,
    pub function_count: AtomicUsize,
    /// Serialises library changes (each: sync, change, publish).
    pub lib_write: Mutex<()>,
}

impl Default for Scripting {
    fn default() -> Self {
        Scripting {
            id: NEXT_ID.fetch_add(1, Relaxed),
            shared: Arc::new(Shared {
                gates: AtomicUsize::new(0),
                threshold_ms: AtomicU64::new(5000),
                done: Notify::new(),
            }),
            registry: Mutex::new(Registry::default()),
            script_gen: AtomicU64::new(0),
            lib_gen: AtomicU64::new(0),
            engines: Mutex::new(Vec::new()),
            lib_codes: Mutex::new(Vec::new()),
            function_count: AtomicUsize::new(0),
            lib_write: Mutex::new(()),
        }
    }
}

/// This thread's interpreter, taken out of its slot while in use (and put
/// back on drop).
pub struct EngineGuard {
    eng: Option<Box<Engine>>,
    slot: Rc<EngineSlot>,
}

impl Drop for EngineGuard {
    fn drop(&mut self) {
        if let Some(eng) = &self.eng {
            self.slot.state.heap.store(eng.lua.used_memory(), Relaxed);
        }
        *self.slot.engine.borrow_mut() = self.eng.take();
    }
}

/// What INFO memory reports of scripting.
pub struct MemoryStats {
    /// Every interpreter's heap (one per worker thread, EVAL and functions alike).
    pub vm: usize,
    pub cached_scripts: usize,
    pub scripts_bytes: usize,
    pub functions: usize,
    pub libraries: usize,
    pub libraries_bytes: usize,
}

impl std::ops::Deref for EngineGuard {
    type Target = Engine;
    fn deref(&self) -> &Engine {
        self.eng.as_ref().expect("held until drop")
    }
}

impl std::ops::DerefMut for EngineGuard {
    fn deref_mut(&mut self) -> &mut Engine {
        self.eng.as_mut().expect("held until drop")
    }
}

impl Scripting {
    /// This thread's interpreter, created on first use and brought up to
    /// date with SCRIPT FLUSH and library changes made elsewhere.
    pub fn engine(&self) -> Result<EngineGuard, CmdError> {
        let slot = MINE.with(|m| {
            let mut m = m.borrow_mut();
            if let Some((_, s)) = m.iter().find(|(id, _)| *id == self.id) {
                return s.clone();
            }
            let s = Rc::new(EngineSlot {
                engine: RefCell::new(None),
                created: std::cell::Cell::new(false),
                state: Arc::new(RunState::new(self.shared.clone())),
            });
            self.engines.lock().push(s.state.clone());
            m.push((self.id, s.clone()));
            s
        });
        let taken = slot.engine.borrow_mut().take();
        let eng = match taken {
            Some(e) => e,
            None if !slot.created.get() => {
                let e =
                    Box::new(Engine::new(slot.state.clone()).map_err(|e| err(format!("ERR {e}")))?);
                slot.created.set(true);
                e
            }
            // nothing that runs inside a script asks for the interpreter again
            None => return Err(err("ERR the script interpreter is in use")),
        };
        let mut g = EngineGuard {
            eng: Some(eng),
            slot,
        };
        let sg = self.script_gen.load(Relaxed);
        if g.script_gen != sg {
            g.scripts.clear();
            g.script_gen = sg;
        }
        let lg = self.lib_gen.load(Relaxed);
        if g.lib_gen != lg {
            let codes = self.lib_codes.lock().clone();
            g.libs = functions::Libraries::default();
            for c in &codes {
                if let Err(e) = g.load_library(c, true) {
                    tracing::warn!(error = %e, "a library failed to load in a worker's interpreter");
                }
            }
            g.lib_gen = lg;
        }
        Ok(g)
    }

    /// A cached EVAL body (for EVALSHA on a thread that has not compiled it).
    pub fn cached(&self, sha: &[u8; 40]) -> Option<Arc<[u8]>> {
        self.registry.lock().scripts.get(sha).cloned()
    }

    /// Records an EVAL body every thread may now run by its sha.
    pub fn remember(&self, sha: [u8; 40], body: &[u8]) {
        self.registry
            .lock()
            .scripts
            .entry(sha)
            .or_insert_with(|| body.into());
    }

    pub fn exists(&self, sha: &[u8; 40]) -> bool {
        self.registry.lock().scripts.contains_key(sha)
    }

    /// SCRIPT FLUSH: every interpreter drops its compiled scripts.
    pub fn flush_scripts(&self) {
        self.registry.lock().scripts.clear();
        self.script_gen.fetch_add(1, Relaxed);
    }

    /// INFO memory's scripting fields.
    pub fn memory_stats(&self) -> MemoryStats {
        let (cached_scripts, scripts_bytes) = {
            let r = self.registry.lock();
            (
                r.scripts.len(),
                r.scripts.values().map(|b| b.len() + 40).sum(),
            )
        };
        let (libraries, libraries_bytes) = {
            let l = self.lib_codes.lock();
            (l.len(), l.iter().map(Vec::len).sum())
        };
        MemoryStats {
            vm: self.states().iter().map(|s| s.heap.load(Relaxed)).sum(),
            cached_scripts,
            scripts_bytes,
            functions: self.function_count.load(Relaxed),
            libraries,
            libraries_bytes,
        }
    }

    /// Publishes `eng`'s library set as the one every interpreter loads.
    pub fn publish_libraries(&self, eng: &mut Engine) {
        *self.lib_codes.lock() = eng.library_codes();
        self.function_count.store(eng.libs.funcs.len(), Relaxed);
        eng.lib_gen = self.lib_gen.fetch_add(1, Relaxed) + 1;
    }

    pub fn threshold_ms(&self) -> u64 {
        self.shared.threshold_ms.load(Relaxed)
    }

    pub fn set_threshold_ms(&self, ms: u64) {
        self.shared.threshold_ms.store(ms, Relaxed);
    }

    fn states(&self) -> Vec<Arc<RunState>> {
        self.engines.lock().clone()
    }

    /// The longest-running script, if any runs.
    fn oldest(&self) -> Option<Arc<RunState>> {
        self.states()
            .into_iter()
            .filter(|s| s.started.load(Relaxed) != 0)
            .max_by_key(|s| s.elapsed_ms())
    }

    /// BUSY when a running script is past the threshold.
    pub fn busy_error(&self) -> Option<CmdError> {
        self.oldest().filter(|s| s.busy()).map(|s| s.busy_error())
    }

    /// One relaxed load: whether a long script is running.
    #[inline]
    pub fn gate_engaged(&self) -> bool {
        self.shared.gates.load(Relaxed) > 0
    }

    /// Decides for a command arriving while a long script runs.
    #[cold]
    pub fn gate(&self, srv: &Server, args: &[&[u8]]) -> Gate {
        let Some(s) = self.oldest() else {
            return Gate::Run;
        };
        if allowed_while_busy(srv, args) {
            return Gate::Run;
        }
        if s.busy() {
            Gate::Busy(s.busy_error())
        } else {
            Gate::Hold
        }
    }

    /// Waits until a running script ends or the oldest passes the busy threshold.
    pub async fn wait(&self, kill: &Notify) -> bool {
        let done = self.shared.done.notified();
        tokio::pin!(done);
        done.as_mut().enable();
        let Some(elapsed) = self.oldest().and_then(|s| s.elapsed_ms()) else {
            return true;
        };
        let left = self.threshold_ms().saturating_sub(elapsed).max(1);
        tokio::select! {
            _ = done => true,
            _ = tokio::time::sleep(Duration::from_millis(left)) => true,
            _ = kill.notified() => false,
        }
    }

    /// SCRIPT KILL / FUNCTION KILL: Redis's checks, on the longest-running script.
    pub fn kill(&self, eval: bool) -> Result<(), CmdError> {
        let Some(s) = self.oldest() else {
            return Err(err("NOTBUSY No scripts in execution right now."));
        };
        if s.from_master.load(Relaxed) {
            return Err(err(
                "UNKILLABLE The busy script was sent by a master instance in the context of replication and cannot be killed.",
            ));
        }
        if s.wrote.load(Relaxed) {
            return Err(err(
                "UNKILLABLE Sorry the script already executed write commands against the dataset. You can either wait the script termination or kill the server in a hard way using the SHUTDOWN NOSAVE command.",
            ));
        }
        match (eval, s.eval.load(Relaxed)) {
            (true, false) => return Err(err(BUSY_FUNCTION)),
            (false, true) => return Err(err(BUSY_EVAL)),
            _ => {}
        }
        s.kill.store(true, Relaxed);
        Ok(())
    }

    /// Whether a script is running now.
    pub fn running(&self) -> bool {
        self.oldest().is_some()
    }

    /// Whether an EVAL script is the longest-running script (FUNCTION STATS refuses then).
    pub fn running_eval(&self) -> bool {
        self.oldest().is_some_and(|s| s.eval.load(Relaxed))
    }

    /// The running function: name, command, milliseconds so far.
    pub fn running_info(&self) -> Option<(String, Vec<Vec<u8>>, u64)> {
        let s = self.oldest()?;
        let ms = s.elapsed_ms()?;
        let cur = s.current.lock();
        cur.as_ref().map(|(n, c)| (n.clone(), c.clone(), ms))
    }

    /// A master's snapshot: its libraries replace ours.
    pub fn replace_libraries(&self, codes: &[Vec<u8>]) -> Result<(), String> {
        let _w = self.lib_write.lock();
        let mut eng = self.engine().map_err(|e| e.0.into_owned())?;
        eng.libs = functions::Libraries::default();
        for c in codes {
            eng.load_library(c, true)?;
        }
        self.publish_libraries(&mut eng);
        Ok(())
    }

    /// Loads the libraries an RDB file carried.
    pub fn restore_libraries(&self, codes: &[Vec<u8>]) -> Result<(), String> {
        if codes.is_empty() {
            return Ok(());
        }
        let _w = self.lib_write.lock();
        let mut eng = self.engine().map_err(|e| e.0.into_owned())?;
        for c in codes {
            eng.load_library(c, true)?;
        }
        self.publish_libraries(&mut eng);
        Ok(())
    }
}

/// Redis's "allow-busy" commands: what a client may still do while a script
/// is past the threshold.
fn allowed_while_busy(srv: &Server, args: &[&[u8]]) -> bool {
    let Some(i) = srv.lookup(args[0]) else {
        return true; // the unknown-command error, at once
    };
    let sub = |s: &str| {
        args.get(1)
            .is_some_and(|a| a.eq_ignore_ascii_case(s.as_bytes()))
    };
    match COMMANDS[i].name {
        "auth" | "discard" | "hello" | "multi" | "quit" | "replconf" | "reset" | "shutdown"
        | "unwatch" | "watch" => true,
        "script" => sub("kill"),
        "function" => sub("kill") || sub("stats"),
        _ => false,
    }
}

fn hook(
    state: Arc<RunState>,
    k: Table,
) -> impl Fn(&Lua, &mlua::debug::Debug<'_>) -> mlua::Result<VmState> {
    move |lua, debug| {
        let load_timeout = state
            .load_elapsed_ms()
            .is_some_and(|ms| ms >= LOAD_TIMEOUT_MS);
        if state.kill.load(Relaxed) || load_timeout {
            if !state.hook_fast.swap(true, Relaxed) {
                // from now on every instruction fails, so pcall cannot catch it for long
                let _ = lua.set_hook(
                    HookTriggers::new().every_nth_instruction(1),
                    hook(state.clone(), k.clone()),
                );
            }
            // the prelude's wrappers and error handler finish the run
            if debug.source().source.as_deref() == Some(PRELUDE) {
                return Ok(VmState::Continue);
            }
            if load_timeout {
                return Err(raise(lua, &k, "ERR FUNCTION LOAD timeout"));
            }
            return Err(mlua::Error::runtime(KILLED));
        }
        if !state.gate.load(Relaxed) && state.elapsed_ms().unwrap_or(0) >= GATE_AFTER_MS {
            state.engage();
            release_worker();
        }
        Ok(VmState::Continue)
    }
}

/// Hands the tasks queued on this tokio worker to the rest of the runtime
/// once a script turns out long: they would otherwise wait for the script
/// (a task in tokio's LIFO slot cannot be stolen; with one worker nothing
/// else runs at all), and their clients would get neither BUSY nor SCRIPT KILL.
/// `block_in_place` moves the worker's core to another thread; the no-op
/// task wakes a parked worker, which then steals whatever the core still
/// holds. Costs one thread hand-off per long script, nothing for short ones.
fn release_worker() {
    use tokio::runtime::{Handle, RuntimeFlavor};
    let Ok(handle) = Handle::try_current() else {
        return;
    };
    if handle.runtime_flavor() != RuntimeFlavor::MultiThread {
        return;
    }
    tokio::task::block_in_place(|| {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        handle.spawn(async move {
            let _ = tx.send(());
        });
        let _ = rx.recv_timeout(Duration::from_secs(1));
    });
}

/// How long a library's top level may run in FUNCTION LOAD (Redis's 500 ms).
const LOAD_TIMEOUT_MS: u64 = 500;

impl Engine {
    /// Back to the every-100k-instructions hook after a kill or load timeout.
    fn reset_hook(&self) {
        if self.state.hook_fast.swap(false, Relaxed) {
            let _ = self.lua.set_hook(
                HookTriggers::new().every_nth_instruction(HOOK_EVERY),
                hook(self.state.clone(), self.k.clone()),
            );
        }
    }

    /// Runs a library's top level for FUNCTION LOAD, failing it past [`LOAD_TIMEOUT_MS`].
    pub(crate) fn run_library_top(&self, f: Function) -> mlua::Result<(bool, Value)> {
        self.reset_hook();
        self.state
            .load_started
            .store(self.state.epoch.elapsed().as_millis() as u64 + 1, Relaxed);
        let r = self
            .run
            .call::<(bool, Value)>((f, Value::Nil, Value::Nil, false));
        self.state.load_started.store(0, Relaxed);
        self.reset_hook();
        r
    }
}

/// The prelude's chunk name: its frames are skipped in error positions.
const PRELUDE: &str = "=kvfleet";

const KILLED: &str = "Script killed by user with SCRIPT KILL...";

/// Redis's 48-bit generator (rand.c), so `math.random` has Redis's sequence shape.
struct Lrand48(u64);

impl Lrand48 {
    const MAX: u64 = i32::MAX as u64;
    fn seed(&mut self, s: i32) {
        self.0 = ((s as u32 as u64) << 16) | 0x330E;
    }
    fn next(&mut self) -> f64 {
        self.0 = (self.0.wrapping_mul(0x5DEECE66D).wrapping_add(0xB)) & ((1 << 48) - 1);
        let r = self.0 >> 17;
        (r % Self::MAX) as f64 / Self::MAX as f64
    }
}

/// Raises Redis's error table `{err = msg}` from a Rust function: the table
/// waits in `K.err` for the prelude's handlers (Rust raises userdata).
pub(crate) fn raise(lua: &Lua, k: &Table, msg: &str) -> mlua::Error {
    if let Ok(t) = lua.create_table() {
        let _ = t.raw_set("err", msg);
        pend(k, t);
    }
    mlua::Error::runtime(msg.to_string())
}

thread_local! {
    /// `K.err` may hold an error table: cleared after the run (only then:
    /// clearing costs a table write per run).
    static PENDING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Leaves `err` in `K.err` for the prelude's handlers.
fn pend(k: &Table, err: impl mlua::IntoLua) {
    PENDING.with(|p| p.set(true));
    let _ = k.raw_set("err", err);
}

/// `(int) lua_tonumber(v)`, as Redis reads its numeric arguments.
fn c_int(lua: &Lua, v: Value) -> i64 {
    lua.coerce_number(v)
        .ok()
        .flatten()
        .map_or(0, |n| reply::c_i64(n.trunc()))
}

/// What the callbacks made once per interpreter (`redis.call`, `pcall`,
/// `setresp`, `acl_check_cmd`, `math.random`) need of the running script.
trait RunEnv {
    fn call(&mut self, lua: &Lua, args: MultiValue) -> mlua::Result<(bool, Value)>;
    fn set_resp3(&mut self, on: bool);
    fn knows(&self, command: &[u8]) -> bool;
}

/// The running script's state, lent for the length of one run.
struct Current<'a>(&'a mut (dyn RunEnv + 'a));

impl<'a, 'b> scoped_tls_hkt::ReborrowMut<'a> for Current<'b> {
    type Result = Current<'a>;
    fn reborrow_mut(&'a mut self) -> Current<'a> {
        Current(&mut *self.0)
    }
}

scoped_tls_hkt::scoped_thread_local!(
    /// Set by [`Engine::run`] for the length of a run: the callbacks read
    /// the run here, so a run creates no closures (per-run scoped
    /// callbacks cost a fifth of EVALSHA). It reads as unset while a
    /// callback holds it, so a nested use finds no run.
    static mut CURRENT: for<'a> Current<'a>
);

/// Runs `f` on this thread's running script; `None` outside a run.
fn with_current<R>(f: impl FnOnce(&mut dyn RunEnv) -> R) -> Option<R> {
    if !CURRENT.is_set() {
        return None;
    }
    Some(CURRENT.with(|c| f(c.0)))
}

/// Whether a script runs on this thread now.
fn in_run() -> bool {
    CURRENT.is_set()
}

/// Redis's "can only be called inside a script invocation" error for `what`.
fn outside(lua: &Lua, k: &Table, what: &str) -> mlua::Error {
    raise(
        lua,
        k,
        &format!("ERR {what} can only be called inside a script invocation"),
    )
}

/// The redis.* functions that may raise (a Lua wrapper would lose the
/// caller's frame to a tail call, and with it the error's line).
fn redis_api(lua: &Lua, k: &Table, api: &Table) -> mlua::Result<()> {
    let kk = k.clone();
    api.set(
        "call",
        lua.create_function(move |lua, a: MultiValue| {
            match with_current(|env| env.call(lua, a)) {
                None => Err(outside(lua, &kk, "redis.call/pcall")),
                Some(Err(e)) => Err(e),
                Some(Ok((false, v))) => Ok(v),
                Some(Ok((true, v))) => {
                    pend(&kk, v);
                    Err(mlua::Error::runtime("redis.call failed"))
                }
            }
        })?,
    )?;
    let kk = k.clone();
    api.set(
        "pcall",
        lua.create_function(move |lua, a: MultiValue| {
            match with_current(|env| env.call(lua, a)) {
                None => Err(outside(lua, &kk, "redis.call/pcall")),
                Some(r) => r.map(|(_, v)| v),
            }
        })?,
    )?;
    let kk = k.clone();
    api.set(
        "sha1hex",
        lua.create_function(move |lua, a: MultiValue| {
            if a.len() != 1 {
                return Err(raise(lua, &kk, "ERR wrong number of arguments"));
            }
            let s = lua.coerce_string(a[0].clone())?;
            let bytes = s.map(|s| s.as_bytes().to_vec()).unwrap_or_default();
            lua.create_string(sha1_smol::Sha1::from(&bytes[..]).digest().to_string())
        })?,
    )?;
    let kk = k.clone();
    api.set(
        "log",
        lua.create_function(move |lua, a: MultiValue| {
            if a.len() < 2 {
                return Err(raise(
                    lua,
                    &kk,
                    "ERR redis.log() requires two arguments or more.",
                ));
            }
            if lua.coerce_number(a[0].clone()).ok().flatten().is_none() {
                return Err(raise(
                    lua,
                    &kk,
                    "ERR First argument must be a number (log level).",
                ));
            }
            let level = c_int(lua, a[0].clone());
            if !(0..=3).contains(&level) {
                return Err(raise(lua, &kk, "ERR Invalid debug level."));
            }
            let mut msg = String::new();
            for v in a.iter().skip(1) {
                if let Ok(Some(s)) = lua.coerce_string(v.clone()) {
                    if !msg.is_empty() {
                        msg.push(' ');
                    }
                    msg.push_str(&s.to_string_lossy());
                }
            }
            match level {
                0 | 1 => tracing::debug!(target: "script", "{msg}"),
                2 => tracing::info!(target: "script", "{msg}"),
                _ => tracing::warn!(target: "script", "{msg}"),
            }
            Ok(())
        })?,
    )?;
    // setresp, set_repl, acl_check_cmd: checked here, carried out by K.op
    let kk = k.clone();
    api.set(
        "setresp",
        lua.create_function(move |lua, a: MultiValue| {
            if !in_run() {
                return Err(outside(lua, &kk, "redis.setresp"));
            }
            if a.len() != 1 {
                return Err(raise(
                    lua,
                    &kk,
                    "ERR redis.setresp() requires one argument.",
                ));
            }
            let n = c_int(lua, a[0].clone());
            if n != 2 && n != 3 {
                return Err(raise(lua, &kk, "ERR RESP version must be 2 or 3."));
            }
            with_current(|env| env.set_resp3(n == 3));
            Ok(())
        })?,
    )?;
    let kk = k.clone();
    api.set(
        "set_repl",
        lua.create_function(move |lua, a: MultiValue| {
            if !in_run() {
                return Err(outside(lua, &kk, "redis.set_repl"));
            }
            if a.len() != 1 {
                return Err(raise(lua, &kk, "ERR redis.set_repl() requires two arguments."));
            }
            let n = c_int(lua, a[0].clone());
            if !(0..=3).contains(&n) {
                return Err(raise(
                    lua,
                    &kk,
                    "ERR Invalid replication flags. Use REPL_AOF, REPL_REPLICA, REPL_ALL or REPL_NONE.",
                ));
            }
            Ok(())
        })?,
    )?;
    let kk = k.clone();
    api.set(
        "acl_check_cmd",
        lua.create_function(move |lua, a: MultiValue| {
            if !in_run() {
                return Err(outside(lua, &kk, "redis.acl_check_cmd"));
            }
            if a.is_empty() {
                return Err(raise(
                    lua,
                    &kk,
                    "ERR Please specify at least one argument for this redis lib call",
                ));
            }
            let known =
                with_current(|env| matches!(&a[0], Value::String(s) if env.knows(&s.as_bytes())))
                    .unwrap_or(false);
            if !known {
                return Err(raise(
                    lua,
                    &kk,
                    "ERR Invalid command passed to redis.acl_check_cmd()",
                ));
            }
            Ok(true)
        })?,
    )?;
    functions::register_api(lua, k, api)
}

impl Engine {
    fn new(state: Arc<RunState>) -> mlua::Result<Engine> {
        let libs = StdLib::TABLE | StdLib::STRING | StdLib::MATH;
        let lua = Lua::new_with(libs, LuaOptions::default())?;
        let k = lua.create_table()?;
        let api = lua.create_table()?;
        redis_api(&lua, &k, &api)?;
        let rng = Arc::new(Mutex::new(Lrand48(0x1234_ABCD_330E)));
        let r = rng.clone();
        api.set(
            "random",
            lua.create_function(move |_, ()| Ok(in_run().then(|| r.lock().next())))?,
        )?;
        api.set(
            "randomseed",
            lua.create_function(move |_, s: i64| {
                if !in_run() {
                    return Ok(false);
                }
                rng.lock().seed(s as i32);
                Ok(true)
            })?,
        )?;
        api.set(
            "where",
            lua.create_function(|lua, ()| {
                // the innermost frame that is neither C nor this prelude
                for level in 1.. {
                    let Some((what, src, line)) = lua.inspect_stack(level, |d| {
                        let s = d.source();
                        let src = s.source.map(|c| c.into_owned());
                        (s.what, src, d.current_line())
                    }) else {
                        break;
                    };
                    if what != "C" && src.as_deref() != Some(PRELUDE) {
                        return Ok((src, line));
                    }
                }
                Ok((None, None))
            })?,
        )?;
        api.set(
            "errmsg",
            lua.create_function(|_, e: Value| {
                Ok(match e {
                    Value::Error(e) => Some(lua_message(&e)),
                    _ => None,
                })
            })?,
        )?;
        api.set("cjson", cjson::open(&lua)?)?;
        api.set("cmsgpack", msgpack::open(&lua)?)?;
        api.set("bit", bit::open(&lua)?)?;
        api.set("struct", structlib::open(&lua)?)?;
        let (env, fn_env, visible, run, loading): (Table, Table, Table, Function, Function) = lua
            .load(include_str!("prelude.lua"))
            .set_name(PRELUDE)
            .call((k.clone(), api, crate::REDIS_VERSION, version_num()))?;
        lua.set_hook(
            HookTriggers::new().every_nth_instruction(HOOK_EVERY),
            hook(state.clone(), k.clone()),
        )?;
        Ok(Engine {
            lua,
            k,
            run,
            env,
            fn_env,
            visible,
            arg_tables: RefCell::new(None),
            bufs: std::cell::Cell::new(CallBufs::default()),
            loading,
            scripts: HashMap::default(),
            libs: functions::Libraries::default(),
            state,
            script_gen: 0,
            lib_gen: 0,
        })
    }

    /// Compiles an EVAL body into this interpreter (a no-op when it is
    /// already there).
    pub fn compile(&mut self, sha: [u8; 40], body: &[u8]) -> Result<(), CmdError> {
        if self.scripts.contains_key(&sha) {
            return Ok(());
        }
        let (flags, skip) = parse_shebang(body)?;
        let func = self
            .lua
            .load(&body[skip..])
            .set_name("@user_script")
            .set_environment(self.env.clone())
            .into_function()
            .map_err(|e| {
                err(format!(
                    "ERR Error compiling script (new function): {}",
                    lua_message(&e)
                ))
            })?;
        self.scripts.insert(
            sha,
            Script {
                func,
                flags,
                undeclared: false,
            },
        );
        Ok(())
    }
}

fn version_num() -> i64 {
    let mut n = 0;
    for p in crate::REDIS_VERSION.split('.') {
        n = n * 256 + p.parse::<i64>().unwrap_or(0);
    }
    n
}

pub fn sha1_hex(body: &[u8]) -> [u8; 40] {
    let hex = sha1_smol::Sha1::from(body).digest().to_string();
    let mut out = [0u8; 40];
    out.copy_from_slice(hex.as_bytes());
    out
}

/// The text Lua gave for a compile or runtime error.
pub fn lua_message(e: &mlua::Error) -> String {
    match e {
        mlua::Error::SyntaxError { message, .. } => message.clone(),
        mlua::Error::RuntimeError(m) => m.clone(),
        mlua::Error::CallbackError { cause, .. } => lua_message(cause),
        other => other.to_string(),
    }
}

/// `#!lua flags=a,b` at the top of an EVAL body: its flags, and how many
/// bytes to skip (the line feed stays, so line numbers hold).
pub fn parse_shebang(body: &[u8]) -> Result<(u8, usize), CmdError> {
    if !body.starts_with(b"#!") {
        return Ok((sflag::COMPAT, 0));
    }
    let Some(end) = body.iter().position(|&b| b == b'\n') else {
        return Err(err("ERR Invalid script shebang"));
    };
    let line = String::from_utf8_lossy(&body[..end]);
    let mut parts = line.split_ascii_whitespace();
    let engine = parts.next().unwrap_or("");
    if engine != "#!lua" {
        return Err(err(format!(
            "ERR Unexpected engine in script shebang: {engine}"
        )));
    }
    let mut flags = 0;
    for p in parts {
        let Some(list) = p.strip_prefix("flags=") else {
            return Err(err(format!("ERR Unknown lua shebang option: {p}")));
        };
        for f in list.split(',').filter(|f| !f.is_empty()) {
            match sflag::NAMES.iter().find(|(_, n)| *n == f) {
                Some((b, _)) => flags |= b,
                None => {
                    return Err(err(format!("ERR Unexpected flag in script shebang: {f}")));
                }
            }
        }
    }
    Ok((flags, end))
}

/// How one run is set up.
pub struct RunSpec<'a> {
    /// The sha (EVAL) or function name, for error messages.
    pub name: &'a str,
    pub eval: bool,
    pub flags: u8,
    /// `*_RO` command, or a `no-writes` script.
    pub read_only: bool,
    pub keys: &'a [&'a [u8]],
    pub args: &'a [&'a [u8]],
}

/// EVAL's KEYS and ARGV: kept for the next run while scripts leave them as
/// they found them (two fresh tables cost a sixth of a short script's run).
/// A table a script changed beyond its elements (more of them, other keys,
/// a metatable) is dropped, so every run sees what Redis's fresh ones show.
struct ArgTables {
    keys: Table,
    args: Table,
    nkeys: usize,
    nargs: usize,
}

/// Puts `items` at 1..=n in `t`, clearing what a previous fill of `prev` left beyond.
fn fill(lua: &Lua, t: &Table, items: &[&[u8]], prev: usize) -> mlua::Result<()> {
    for (i, s) in items.iter().enumerate() {
        t.raw_set(i + 1, lua.create_string(s)?)?;
    }
    for i in items.len() + 1..=prev {
        t.raw_set(i, Value::Nil)?;
    }
    Ok(())
}

/// Why a run ended without a reply.
pub enum RunError {
    /// A key outside the locked slots was needed before any write: run
    /// again with every slot locked.
    NeedsAllSlots,
    Failed(CmdError),
}

/// The state `redis.call` works on during one run.
struct CallEnv<'a, 's> {
    srv: &'s Server,
    conn: &'a mut crate::cmd::ConnState,
    guards: Guards<'s>,
    all: bool,
    /// Inner replies in RESP3 (`redis.setresp(3)`).
    resp3: bool,
    read_only: bool,
    state: &'a RunState,
    wrote: bool,
    needs_all: bool,
    bufs: CallBufs,
}

/// `redis.call`'s working buffers, kept by the interpreter from run to run.
#[derive(Default)]
struct CallBufs {
    /// The inner command's reply, before it becomes a Lua value.
    scratch: bytes::BytesMut,
    argv: Vec<Vec<u8>>,
    keys: Vec<usize>,
}

impl CallBufs {
    /// What is worth keeping: a script that moved megabytes does not pin
    /// them in its interpreter.
    fn trimmed(mut self) -> CallBufs {
        const KEEP: usize = 64 << 10;
        if self.scratch.capacity() > KEEP {
            self.scratch = bytes::BytesMut::new();
        }
        if self.argv.iter().map(Vec::capacity).sum::<usize>() > KEEP || self.argv.len() > 64 {
            self.argv = Vec::new();
        }
        self
    }
}

impl Engine {
    /// Runs `func` for the command in `ctx`, writing its reply to `ctx.out`.
    pub fn run(
        &self,
        ctx: &mut Ctx<'_, '_>,
        func: &Function,
        spec: &RunSpec<'_>,
    ) -> Result<(), RunError> {
        let lua = &self.lua;
        let fail = |e: mlua::Error| RunError::Failed(err(format!("ERR {}", lua_message(&e))));
        let strings = |items: &[&[u8]]| -> mlua::Result<Table> {
            let t = lua.create_table_with_capacity(items.len(), 0)?;
            fill(lua, &t, items, 0)?;
            Ok(t)
        };
        let (keys, args) = if spec.eval {
            // EVAL: the tables the last run left untouched, refilled
            let mut slot = self.arg_tables.borrow_mut();
            let t = match slot.take() {
                Some(t) => t,
                None => {
                    let (keys, args) = (strings(&[]).map_err(fail)?, strings(&[]).map_err(fail)?);
                    self.visible.raw_set("KEYS", &keys).map_err(fail)?;
                    self.visible.raw_set("ARGV", &args).map_err(fail)?;
                    ArgTables {
                        keys,
                        args,
                        nkeys: 0,
                        nargs: 0,
                    }
                }
            };
            fill(lua, &t.keys, spec.keys, t.nkeys).map_err(fail)?;
            fill(lua, &t.args, spec.args, t.nargs).map_err(fail)?;
            (t.keys, t.args)
        } else {
            (
                strings(spec.keys).map_err(fail)?,
                strings(spec.args).map_err(fail)?,
            )
        };
        let state = &*self.state;
        self.reset_hook();
        state.kill.store(false, Relaxed);
        state.wrote.store(false, Relaxed);
        state.eval.store(spec.eval, Relaxed);
        state.from_master.store(ctx.conn.from_master, Relaxed);
        if !spec.eval {
            let mut cmd: Vec<Vec<u8>> = vec![b"FCALL".to_vec(), spec.name.as_bytes().to_vec()];
            cmd.push(spec.keys.len().to_string().into_bytes());
            cmd.extend(spec.keys.iter().chain(spec.args).map(|a| a.to_vec()));
            *state.current.lock() = Some((spec.name.to_string(), cmd));
        }
        state.begin();
        let was_in_exec = std::mem::replace(&mut ctx.conn.in_exec, true);
        let mut env = CallEnv {
            srv: ctx.srv,
            conn: &mut *ctx.conn,
            guards: ctx.db.take_guards(),
            all: ctx.db.all_locked(),
            resp3: false,
            read_only: spec.read_only,
            state,
            wrote: false,
            needs_all: false,
            bufs: self.bufs.take(),
        };
        let result = CURRENT.set(Current(&mut env), || {
            self.run.call::<(bool, Value, bool)>((
                func,
                &keys,
                &args,
                !spec.eval,
                spec.eval.then_some(spec.keys.len()),
                spec.args.len(),
            ))
        });
        let (nk, na) = (spec.keys.len(), spec.args.len());
        if spec.eval && matches!(result, Ok((_, _, true))) {
            *self.arg_tables.borrow_mut() = Some(ArgTables {
                keys,
                args,
                nkeys: nk,
                nargs: na,
            });
        }
        let result = result.map(|(ok, v, _)| (ok, v));
        if PENDING.with(|p| p.replace(false)) {
            let _ = self.k.raw_set("err", Value::Nil);
        }
        if !spec.eval {
            *state.current.lock() = None;
        }
        state.finish();
        let killed = state.kill.swap(false, Relaxed);
        let (resp3, needs_all) = (env.resp3, env.needs_all);
        self.bufs.replace(env.bufs.trimmed());
        ctx.db.put_guards(env.guards);
        ctx.conn.in_exec = was_in_exec;
        if !was_in_exec && !ctx.conn.feed_buf.is_empty() {
            // the script's effects, atomic in the stream (slots still locked)
            let mut cmds = Vec::with_capacity(ctx.conn.feed_buf.len() + 32);
            cmds.extend_from_slice(b"*1\r\n$5\r\nMULTI\r\n");
            cmds.append(&mut ctx.conn.feed_buf);
            cmds.extend_from_slice(b"*1\r\n$4\r\nEXEC\r\n");
            ctx.conn.woff = ctx.srv.persist.feed.append(&cmds);
        }
        if needs_all {
            return Err(RunError::NeedsAllSlots);
        }
        match result {
            Ok((true, v)) => {
                let client_resp3 = ctx.conn.resp3;
                reply::lua_to_resp(ctx.out, &v, client_resp3, resp3, 0);
                Ok(())
            }
            Ok((false, e)) => Err(RunError::Failed(error_reply(&e, spec.name, killed))),
            Err(_) if killed => Err(RunError::Failed(err(format!(
                "ERR {KILLED} script: {}",
                spec.name
            )))),
            Err(e) => Err(RunError::Failed(err(format!(
                "ERR Error running script {}, {}",
                spec.name,
                lua_message(&e)
            )))),
        }
    }
}

/// The client's error line for a failed run: the error table's message,
/// and where in the script it was raised.
fn error_reply(e: &Value, name: &str, killed: bool) -> CmdError {
    let Value::Table(t) = e else {
        let msg = match e {
            Value::String(s) => s.to_string_lossy(),
            _ => "execution failure".to_string(),
        };
        return err(format!("ERR Error running script {name}, {msg:.100}"));
    };
    let mut msg = match t.raw_get::<Value>("err") {
        Ok(Value::String(s)) => s.to_string_lossy(),
        Ok(Value::Integer(i)) => i.to_string(),
        Ok(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    };
    if killed {
        msg = format!("ERR {KILLED}");
    }
    let source = t
        .raw_get::<Option<mlua::LuaString>>("source")
        .ok()
        .flatten();
    let line = t.raw_get::<Value>("line").ok();
    if let (Some(src), Some(line)) = (source, line) {
        let line = match line {
            Value::Integer(i) => i.to_string(),
            Value::Number(n) => n.to_string(),
            Value::String(s) => s.to_string_lossy(),
            _ => String::new(),
        };
        if !line.is_empty() {
            msg = format!("{msg} script: {name}, on {}:{line}.", src.to_string_lossy());
        }
    }
    err(msg.replace(['\r', '\n'], " "))
}

fn err_table(lua: &Lua, msg: &str) -> mlua::Result<(bool, Value)> {
    let t = lua.create_table()?;
    t.raw_set("err", msg)?;
    Ok((true, Value::Table(t)))
}

impl RunEnv for CallEnv<'_, '_> {
    fn call(&mut self, lua: &Lua, args: MultiValue) -> mlua::Result<(bool, Value)> {
        call(self, lua, args.into_iter())
    }
    fn set_resp3(&mut self, on: bool) {
        self.resp3 = on;
    }
    fn knows(&self, command: &[u8]) -> bool {
        self.srv.lookup(command).is_some()
    }
}

/// One `redis.call`: Redis's checks for scripts, the slots, then the command
/// through `cmd::run` with the script's guards; its reply becomes a Lua value.
fn call(
    env: &mut CallEnv<'_, '_>,
    lua: &Lua,
    args: impl Iterator<Item = Value>,
) -> mlua::Result<(bool, Value)> {
    if env.needs_all {
        return err_table(lua, "ERR kvfleet: script restarts with every slot locked");
    }
    let mut n = 0;
    let mut num = itoa::Buffer::new();
    for v in args {
        if env.bufs.argv.len() <= n {
            env.bufs.argv.push(Vec::new());
        }
        let a = &mut env.bufs.argv[n];
        a.clear();
        match v {
            Value::String(s) => a.extend_from_slice(&s.as_bytes()),
            Value::Integer(i) => a.extend_from_slice(num.format(i).as_bytes()),
            Value::Number(f) => a.extend_from_slice(&crate::util::g17(f)),
            _ => {
                return err_table(
                    lua,
                    "ERR Lua redis lib command arguments must be strings or integers",
                );
            }
        }
        n += 1;
    }
    if n == 0 {
        return err_table(
            lua,
            "ERR Please specify at least one argument for this redis lib call",
        );
    }
    let srv = env.srv;
    let argv: smallvec::SmallVec<[&[u8]; 8]> = env.bufs.argv[..n].iter().map(|a| &a[..]).collect();
    let Some(idx) = srv.lookup(argv[0]) else {
        return err_table(lua, "ERR Unknown Redis command called from script");
    };
    let spec = &COMMANDS[idx];
    if !spec.arity_ok(n) {
        return err_table(
            lua,
            "ERR Wrong number of args calling Redis command from script",
        );
    }
    if spec.has(flag::NOSCRIPT) {
        return err_table(lua, "ERR This Redis command is not allowed from script");
    }
    let write = spec.has(flag::WRITE);
    if env.read_only && (write || spec.name == "publish") {
        return err_table(
            lua,
            "ERR Write commands are not allowed from read-only scripts.",
        );
    }
    if write && !env.wrote && !env.conn.from_master {
        if srv.follow.is_replica() && srv.repl_policy.read_only.load(Relaxed) {
            return err_table(lua, "READONLY You can't write against a read only replica.");
        }
        if !srv.follow.is_replica() && !srv.repl_policy.enough_replicas() {
            return err_table(lua, "NOREPLICAS Not enough good replicas to write.");
        }
    }
    if spec.has(flag::DENYOOM) && !env.wrote && !env.conn.from_master {
        let max = srv.maxmemory.load(Relaxed);
        if max > 0 && srv.used_memory() > max {
            return err_table(
                lua,
                "OOM command not allowed when used memory > 'maxmemory'.",
            );
        }
    }
    if !env.all {
        if crate::cmd::may_reach_undeclared(spec.name, &argv) || spec.has(flag::ALL_SLOTS) {
            if !env.wrote {
                env.needs_all = true;
                return err_table(lua, "ERR kvfleet: script restarts with every slot locked");
            }
            return err_table(
                lua,
                "ERR this command needs every slot: declare the script's keys or start it with a read",
            );
        }
        // (a buffer kept across calls; an early error return just drops it)
        let mut keys = std::mem::take(&mut env.bufs.keys);
        keys.clear();
        spec.key_indexes(&argv, &mut keys);
        for &i in &keys {
            let s = kvfleet_model::slot(argv[i]);
            if let Err(at) = env.guards.binary_search_by_key(&s, |g| g.0) {
                let m = &srv.db.slots[s as usize];
                let g = match m.try_lock() {
                    Some(g) => g,
                    None if !env.wrote => {
                        env.needs_all = true;
                        return err_table(
                            lua,
                            "ERR kvfleet: script restarts with every slot locked",
                        );
                    }
                    None => match m.try_lock_for(Duration::from_secs(1)) {
                        Some(g) => g,
                        None => {
                            return err_table(
                                lua,
                                "ERR Script attempted to access a key it did not declare, which another command holds",
                            );
                        }
                    },
                };
                env.guards.insert(at, (s, g));
            }
        }
        env.bufs.keys = keys;
    }
    if write {
        env.wrote = true;
        env.state.wrote.store(true, Relaxed);
    }
    let mut out = std::mem::take(&mut env.bufs.scratch);
    out.clear();
    let client_resp3 = std::mem::replace(&mut env.conn.resp3, env.resp3);
    let all = env.all;
    crate::cmd::run(
        srv,
        env.conn,
        &mut out,
        idx,
        &argv,
        Some((&mut env.guards, all)),
    );
    env.conn.resp3 = client_resp3;
    let r = reply::resp_to_lua(lua, &out);
    env.bufs.scratch = out;
    r
}
