//! The worker runtimes, where each connection lives, and the governor that
//! decides how many runtimes serve clients (decision 0013).
//!
//! Each runtime has one worker thread (a `multi_thread(1)` runtime, so
//! `block_in_place` still hands the worker on when a script runs long) and
//! its own epoll. A connection lives on one runtime; under light load every
//! connection is on the first, so no second thread wakes per request and
//! competes with co-located clients for the cores. The governor, run by the
//! cron, activates the next runtime only while every active one is busy and
//! the host has an idle core, moves half of the busiest runtime's recently
//! active connections there, and gathers them back when the load would fit
//! on one runtime fewer.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::net::TcpStream;
use tokio::runtime::Handle;

use crate::busypoll::Pollers;
use crate::server::{ClientHandle, KIND_NORMAL, Server};

/// `ClientHandle::move_to` when no move is asked for.
pub const NO_MOVE: usize = usize::MAX;

/// Every active runtime at least this busy (share of wall time spent running
/// tasks) for `SPREAD_AFTER`, and the host this many cores idle: activate
/// the next runtime. One worker at P=1 beside redis-benchmark is 60–85%
/// busy (EVALSHA to GEOADD; the client's core is the limit there, and a
/// second worker only adds wake-ups), at P=16 ~99%.
const SPREAD_BUSY: f64 = 0.9;
const SPREAD_IDLE_CORES: f64 = 0.25;
const SPREAD_AFTER: Duration = Duration::from_millis(300);
/// The active runtimes' load would fit on one fewer at this share each, for
/// `GATHER_AFTER`: retire the last one. Below `SPREAD_BUSY`, so a load that
/// just spread (≥ 90% of one worker, now on two) does not gather again; not
/// far below it, so a moderate load that found two workers active (say, a
/// P=1 run that starts just after a pipelined one) goes back to one: one
/// worker at P=1 beside redis-benchmark is ~60% busy, two share ~65%.
const GATHER_BUSY: f64 = 0.75;
const GATHER_AFTER: Duration = Duration::from_secs(1);
/// Two active runtimes this far apart, the busier past `SPREAD_BUSY`, for
/// `SKEW_AFTER`: move a quarter of its active connections to the idler one.
const SKEW: f64 = 0.3;
const SKEW_AFTER: Duration = Duration::from_millis(500);
/// A spread must pay: the commands served per second, averaged over
/// `TRIAL_FOR` after `TRIAL_SETTLE`, at least `SPREAD_GAIN` times what they
/// were while the workers were hot; otherwise the spread is undone and the
/// governor holds off spreading for `HOLD_MIN`, doubling up to `HOLD_MAX`
/// while spreads keep failing. Busy time cannot tell a worker that waits
/// for another (every client on one hot key contends for its slot's lock:
/// ZADD on one key at P=16 runs 0.85x as fast on two workers as on one)
/// from one that does work.
const SPREAD_GAIN: f64 = 1.05;
const TRIAL_SETTLE: Duration = Duration::from_millis(200);
const TRIAL_FOR: Duration = Duration::from_millis(800);
const HOLD_MIN: Duration = Duration::from_secs(10);
const HOLD_MAX: Duration = Duration::from_secs(300);
/// A connection that read within this long counts as active when choosing
/// which to move.
const ACTIVE_MS: u64 = 1000;
/// A runtime at least this busy, on a host with this many cores idle
/// (counting its own polling as idle), polls before sleeping
/// (`crate::busypoll`): such a worker runs out of work after most request
/// rounds, and each time it sleeps the client's next write pays for waking
/// it. Beside redis-benchmark at P=1 the host has only 0.15–0.2 core idle,
/// and polling still lowers the client's CPU per request.
const POLL_BUSY: f64 = 0.5;
const POLL_IDLE_CORES: f64 = 0.1;
/// How often the governor re-reads the cgroup's CPU quota (`crate::quota`).
const QUOTA_EVERY: Duration = Duration::from_secs(1);
/// The workers' busy shares over the last period sum to at least this share
/// of the CPU quota: the quota is what limits the process, every worker
/// counts as saturated (replies in bursts, decision 0015) and no core is
/// idle for a spread. A worker capped at half a core reads only 0.93–1.00
/// busy (time stopped by the quota inside a task counts, asleep in epoll
/// does not), so the busy rule alone left it bursting some periods and not
/// others.
const QUOTA_BOUND: f64 = 0.9;

pub struct Workers {
    handles: OnceLock<Box<[Handle]>>,
    polls: OnceLock<Arc<Pollers>>,
    /// Off (`adaptive-threads no`): every runtime serves from the start.
    adaptive: bool,
    /// Runtimes `0..active` take new connections.
    active: AtomicUsize,
    /// Connections on each runtime.
    conns: Box<[AtomicUsize]>,
    /// Each runtime's busy share over the governor's last period, permille (INFO).
    busy: Box<[AtomicU32]>,
    /// A runtime at least this busy (permille) holds its replies until it
    /// has served every ready client (`Workers::saturated`); `u32::MAX`: never.
    burst_busy: u32,
    /// Replies each runtime held for a burst (INFO), a cache line each: each
    /// is written by its own runtime's thread.
    bursts: Box<[Counter]>,
    /// Connections moved between runtimes (INFO).
    pub moves: AtomicU64,
    /// Spreads undone because they did not pay (INFO).
    pub undone: AtomicU64,
    /// Every client left since the governor's last tick.
    no_clients: AtomicBool,
    /// The cgroup's CPU quota as last read, millicores; 0: none.
    quota_milli: AtomicU64,
    /// The process used `QUOTA_BOUND` of its quota over the last period.
    quota_bound: AtomicBool,
    gov: Mutex<Governor>,
}

/// A counter on a cache line of its own.
#[repr(align(128))]
#[derive(Default)]
struct Counter(AtomicU64);

struct Governor {
    last: Option<Instant>,
    swept: Instant,
    busy_total: Vec<Duration>,
    /// `/proc/stat`'s idle and total jiffies at the last tick.
    cpu: Option<(u64, u64)>,
    /// The runtimes' time spent busy polling, at the last tick.
    spun: Duration,
    hot_since: Option<Instant>,
    cold_since: Option<Instant>,
    skew_since: Option<Instant>,
    /// `srv.stats.commands` at the last tick.
    commands: u64,
    /// Commands per second while hot: sum and periods.
    hot_rate: (f64, u32),
    /// The last spread, until it has shown whether it paid.
    trial: Option<Trial>,
    /// No spreading before this (a spread that did not pay).
    hold_until: Option<Instant>,
    /// The next hold's length.
    hold: Duration,
    /// When the cgroup's CPU quota was last read (`Workers::quota_milli`).
    quota_read: Option<Instant>,
}

/// A spread being judged (`SPREAD_GAIN`).
#[derive(Debug)]
struct Trial {
    at: Instant,
    /// Active runtimes after it.
    k: usize,
    /// Commands per second before it.
    before: f64,
    /// Commands per second since it settled: sum and periods.
    after: (f64, u32),
}

impl Default for Governor {
    fn default() -> Self {
        Governor {
            last: None,
            swept: Instant::now(),
            busy_total: Vec::new(),
            cpu: None,
            spun: Duration::ZERO,
            hot_since: None,
            cold_since: None,
            skew_since: None,
            commands: 0,
            hot_rate: (0.0, 0),
            trial: None,
            hold_until: None,
            hold: HOLD_MIN,
            quota_read: None,
        }
    }
}

impl Workers {
    /// `burst_busy`: the busy share (0–1) from which a runtime writes its
    /// replies in bursts (decision 0015); above 1 never.
    pub fn new(threads: usize, adaptive: bool, burst_busy: f64) -> Workers {
        let threads = threads.max(1);
        Workers {
            handles: OnceLock::new(),
            polls: OnceLock::new(),
            adaptive,
            active: AtomicUsize::new(if adaptive { 1 } else { threads }),
            conns: (0..threads).map(|_| AtomicUsize::new(0)).collect(),
            busy: (0..threads).map(|_| AtomicU32::new(0)).collect(),
            burst_busy: if burst_busy > 1.0 {
                u32::MAX
            } else {
                (burst_busy.max(0.0) * 1000.0).round() as u32
            },
            bursts: (0..threads).map(|_| Counter::default()).collect(),
            moves: AtomicU64::new(0),
            undone: AtomicU64::new(0),
            no_clients: AtomicBool::new(false),
            quota_milli: AtomicU64::new(0),
            quota_bound: AtomicBool::new(false),
            gov: Mutex::new(Governor::default()),
        }
    }

    /// The runtimes' handles, one per `threads`, and their pollers; without
    /// them (tests that build a `Server` on their own runtime) every
    /// connection stays where it was accepted and nothing polls.
    pub fn install(&self, handles: Vec<Handle>, polls: Arc<Pollers>) {
        assert_eq!(
            handles.len(),
            self.conns.len(),
            "one handle per worker runtime"
        );
        let _ = self.handles.set(handles.into_boxed_slice());
        let _ = self.polls.set(polls);
    }

    /// The cgroup's CPU quota in cores at the governor's last tick (0: none).
    pub fn cpu_quota(&self) -> f64 {
        self.quota_milli.load(Relaxed) as f64 / 1000.0
    }

    /// The runtimes' busy pollers, if installed.
    pub fn polls(&self) -> Option<&Pollers> {
        self.polls.get().map(|p| &**p)
    }

    pub fn threads(&self) -> usize {
        self.conns.len()
    }

    pub fn adaptive(&self) -> bool {
        self.adaptive
    }

    pub fn active(&self) -> usize {
        self.active.load(Relaxed).min(self.conns.len())
    }

    /// Whether runtime `rt` was saturated over the governor's last period:
    /// its clients then wait on it, and its replies go out in a burst
    /// (`crate::conn`, decision 0015).
    pub fn saturated(&self, rt: usize) -> bool {
        self.busy
            .get(rt)
            .is_some_and(|b| b.load(Relaxed) >= self.burst_busy)
            || (self.burst_busy != u32::MAX && self.quota_bound.load(Relaxed))
    }

    /// Whether the process used most of its CPU quota over the last period.
    pub fn quota_bound(&self) -> bool {
        self.quota_bound.load(Relaxed)
    }

    /// Counts a reply held for a burst on runtime `rt`.
    pub fn burst(&self, rt: usize) {
        if let Some(c) = self.bursts.get(rt) {
            c.0.fetch_add(1, Relaxed);
        }
    }

    /// Replies runtime `rt` held for a burst since start.
    pub fn bursts(&self, rt: usize) -> u64 {
        self.bursts.get(rt).map_or(0, |c| c.0.load(Relaxed))
    }

    /// Each runtime's connection count and busy share (permille) over the last period.
    pub fn snapshot(&self) -> Vec<(usize, u32)> {
        self.conns
            .iter()
            .zip(self.busy.iter())
            .map(|(c, b)| (c.load(Relaxed), b.load(Relaxed)))
            .collect()
    }

    /// The active runtime with the fewest connections.
    fn place(&self) -> usize {
        (0..self.active())
            .min_by_key(|&i| self.conns[i].load(Relaxed))
            .unwrap_or(0)
    }

    /// Starts serving an accepted connection on the runtime it belongs to.
    pub fn serve(srv: &Arc<Server>, sock: TcpStream) {
        let w = &srv.workers;
        let i = w.place();
        w.conns[i].fetch_add(1, Relaxed);
        match w.handles.get() {
            Some(h) if i != 0 => match sock.into_std() {
                // the socket leaves this runtime's epoll for the other's
                Ok(std) => {
                    h[i].spawn(resume(srv.clone(), std, i, None));
                }
                Err(e) => {
                    w.conns[i].fetch_sub(1, Relaxed);
                    tracing::warn!(error = %e, "could not hand a connection to its worker");
                }
            },
            _ => {
                tokio::spawn(crate::conn::serve(srv.clone(), sock, i));
            }
        }
    }

    /// Where a connection asked to move to `to` goes: `None` if there is
    /// no such runtime (then it stays).
    pub(crate) fn runtime(&self, to: usize) -> Option<&Handle> {
        self.handles.get().and_then(|h| h.get(to))
    }

    /// A connection left runtime `from` for `to`.
    pub(crate) fn moved(&self, from: usize, to: usize) {
        self.conns[to].fetch_add(1, Relaxed);
        self.moves.fetch_add(1, Relaxed);
        self.closed(from);
    }

    /// A connection that ends (or leaves) gives up its place. The last
    /// active runtime left without clients retires at once: there is
    /// nothing to move, and a load that ends as another starts (a client
    /// pool reconnecting, one benchmark after another) would otherwise
    /// start spread over workers it may not need, until the gather rule
    /// sees it, which it may not if spreading itself costs enough.
    pub(crate) fn closed(&self, rt: usize) {
        if self.conns[rt].fetch_sub(1, Relaxed) != 1 || !self.adaptive {
            return;
        }
        if self.conns.iter().all(|c| c.load(Relaxed) == 0) {
            self.no_clients.store(true, Relaxed);
        }
        let mut k = self.active.load(Relaxed);
        while k > 1 && self.conns[k - 1].load(Relaxed) == 0 {
            match self.active.compare_exchange(k, k - 1, Relaxed, Relaxed) {
                Ok(_) => k -= 1,
                Err(now) => k = now,
            }
        }
    }

    /// One governor step; the cron calls it every period.
    pub fn tick(&self, srv: &Server) {
        let Some(handles) = self.handles.get() else {
            return;
        };
        let now = Instant::now();
        let mut g = self.gov.lock();
        let totals: Vec<Duration> = handles
            .iter()
            .map(|h| h.metrics().worker_total_busy_duration(0))
            .collect();
        let idle = host_idle_cores(&mut g.cpu);
        let spun = self.polls().map_or(Duration::ZERO, Pollers::spun);
        let spun_dt = spun.saturating_sub(std::mem::replace(&mut g.spun, spun));
        let commands = srv.stats.commands.load(Relaxed);
        let done = commands.saturating_sub(std::mem::replace(&mut g.commands, commands));
        let Some(last) = g.last.replace(now) else {
            g.busy_total = totals;
            return;
        };
        let dt = now.duration_since(last).as_secs_f64().max(1e-3);
        let rate = done as f64 / dt;
        if self.no_clients.swap(false, Relaxed) {
            // every client left since the last tick: whatever comes next is
            // a new load, and its spread a new trial
            g.hold_until = None;
            g.hold = HOLD_MIN;
        }
        let load: Vec<f64> = totals
            .iter()
            .zip(&g.busy_total)
            .map(|(t, l)| (t.saturating_sub(*l).as_secs_f64() / dt).min(1.0))
            .collect();
        g.busy_total = totals;
        for (b, l) in self.busy.iter().zip(&load) {
            b.store((l * 1000.0) as u32, Relaxed);
        }
        let k = self.active();
        // under a CPU quota the idle cores are not ours to spin on; re-read
        // each second (a container can be resized live)
        if g.quota_read
            .is_none_or(|t| now.duration_since(t) >= QUOTA_EVERY)
        {
            g.quota_read = Some(now);
            let q = crate::quota::cpu_quota();
            let milli = q.map_or(0, |q| (q * 1000.0).round().max(1.0) as u64);
            if self.quota_milli.swap(milli, Relaxed) != milli {
                match q {
                    Some(q) => tracing::info!(cores = q, "a CPU quota applies: no busy polling"),
                    None => tracing::info!("no CPU quota applies: busy polling allowed"),
                }
            }
        }
        let quota = Some(self.cpu_quota()).filter(|&q| q > 0.0);
        // the cores our own polling took would be idle without it; under a
        // quota, no more than it leaves us. The workers' busy time stands in
        // for the CPU they used: never less (time the quota stopped a task
        // counts), and no clock to read (rustix's CPU clock goes through its
        // own vDSO parser, which crashes under valgrind)
        let idle = idle.map(|i| i + spun_dt.as_secs_f64() / dt);
        let (bound, idle) = under_quota(quota, load.iter().sum(), idle);
        self.quota_bound.store(bound, Relaxed);
        if let Some(p) = self.polls() {
            for (i, l) in load.iter().enumerate() {
                if let Some(p) = p.get(i) {
                    p.set(i < k && should_poll(*l, idle, quota));
                }
            }
        }
        match g.plan(&load, k, self.adaptive, idle, rate, now) {
            Some(Step::Spread { from }) => {
                tracing::info!(active = k + 1, load = ?&load[..k], idle_cores = ?idle, "spreading clients over one more worker");
                self.active.store(k + 1, Relaxed);
                shift(srv, from, k, 2);
            }
            Some(Step::Gather) => {
                tracing::info!(active = k - 1, load = ?&load[..k], "gathering clients on one worker fewer");
                self.active.store(k - 1, Relaxed);
                self.gather(srv, k - 1);
            }
            Some(Step::Undo { before, after }) => {
                let hold = g.hold_until.map(|t| t.duration_since(now));
                tracing::info!(
                    active = k - 1,
                    before,
                    after,
                    ?hold,
                    "a spread did not raise the commands served per second: undone"
                );
                self.undone.fetch_add(1, Relaxed);
                self.active.store(k - 1, Relaxed);
                self.gather(srv, k - 1);
            }
            Some(Step::Balance { from, to }) => shift(srv, from, to, 4),
            None => {
                // a connection accepted while its runtime was being retired
                if now.duration_since(g.swept) >= Duration::from_secs(1) {
                    g.swept = now;
                    for j in k..handles.len() {
                        if self.conns[j].load(Relaxed) > 0 {
                            self.gather(srv, j);
                        }
                    }
                }
            }
        }
    }

    /// `DEBUG WORKERS n`: serve on `n` runtimes now, moving connections as
    /// the governor would (the governor may change it again under load).
    pub fn set_active(&self, srv: &Server, n: usize) {
        let n = n.clamp(1, self.threads());
        let _g = self.gov.lock();
        let k = self.active();
        self.active.store(n, Relaxed);
        for to in k..n {
            let from = (0..to)
                .max_by_key(|&i| self.conns[i].load(Relaxed))
                .unwrap_or(0);
            shift(srv, from, to, 2);
        }
        for from in (n..k).rev() {
            self.gather(srv, from);
        }
    }

    /// Moves every connection on runtime `from` to the active ones.
    fn gather(&self, srv: &Server, from: usize) {
        let mut counts: Vec<usize> = (0..self.active())
            .map(|i| self.conns[i].load(Relaxed))
            .collect();
        for c in movable(srv, from) {
            let to = (0..counts.len()).min_by_key(|&i| counts[i]).unwrap_or(0);
            counts[to] += 1;
            c.ask_move(to);
        }
    }
}

/// What the governor does this period.
#[derive(Debug, PartialEq)]
enum Step {
    /// Activate the next runtime and move half of `from`'s active connections there.
    Spread { from: usize },
    /// Retire the last active runtime, moving its connections to the others.
    Gather,
    /// Gather, because the last spread did not raise the commands served
    /// per second (`before` and `after` it).
    Undo { before: f64, after: f64 },
    /// Move a quarter of `from`'s active connections to `to`.
    Balance { from: usize, to: usize },
}

impl Governor {
    /// Decides from each runtime's busy share over the last period (`load`,
    /// one per runtime), `k` active, and the host's idle cores.
    fn plan(
        &mut self,
        load: &[f64],
        k: usize,
        adaptive: bool,
        idle: Option<f64>,
        rate: f64,
        now: Instant,
    ) -> Option<Step> {
        if load.len() < 2 || k == 0 {
            return None;
        }
        if let Some(t) = &mut self.trial {
            if t.k != k {
                // changed by other means (DEBUG WORKERS, its clients gone)
                self.trial = None;
            } else {
                let age = now.duration_since(t.at);
                if age > TRIAL_SETTLE {
                    t.after.0 += rate;
                    t.after.1 += 1;
                }
                if age < TRIAL_SETTLE + TRIAL_FOR {
                    return None;
                }
                let (before, after) = (t.before, t.after.0 / f64::from(t.after.1.max(1)));
                self.trial = None;
                self.hot_since = None;
                self.cold_since = None;
                self.skew_since = None;
                if after < before * SPREAD_GAIN {
                    self.hold_until = Some(now + self.hold);
                    self.hold = (self.hold * 2).min(HOLD_MAX);
                    return Some(Step::Undo { before, after });
                }
                self.hold = HOLD_MIN;
            }
        }
        let act = &load[..k];
        let busiest = (0..k).max_by(|&a, &b| act[a].total_cmp(&act[b]))?;
        let idlest = (0..k).min_by(|&a, &b| act[a].total_cmp(&act[b]))?;
        let hot = adaptive
            && k < load.len()
            && act.iter().all(|&b| b >= SPREAD_BUSY)
            && idle.is_none_or(|i| i >= SPREAD_IDLE_CORES)
            && self.hold_until.is_none_or(|t| now >= t);
        if hot {
            self.hot_rate.0 += rate;
            self.hot_rate.1 += 1;
        } else {
            self.hot_rate = (0.0, 0);
        }
        if held(&mut self.hot_since, hot, now, SPREAD_AFTER) {
            self.cold_since = None;
            self.skew_since = None;
            self.trial = Some(Trial {
                at: now,
                k: k + 1,
                before: self.hot_rate.0 / f64::from(self.hot_rate.1.max(1)),
                after: (0.0, 0),
            });
            self.hot_rate = (0.0, 0);
            return Some(Step::Spread { from: busiest });
        }
        let cold = adaptive && k > 1 && act.iter().sum::<f64>() < GATHER_BUSY * (k - 1) as f64;
        if held(&mut self.cold_since, cold, now, GATHER_AFTER) {
            self.hot_since = None;
            self.skew_since = None;
            return Some(Step::Gather);
        }
        let skewed = k > 1 && act[busiest] >= SPREAD_BUSY && act[busiest] - act[idlest] >= SKEW;
        if held(&mut self.skew_since, skewed, now, SKEW_AFTER) {
            return Some(Step::Balance {
                from: busiest,
                to: idlest,
            });
        }
        None
    }
}

/// Whether `cond` has held for `after`, tracked in `since`; resets once it fires.
fn held(since: &mut Option<Instant>, cond: bool, now: Instant, after: Duration) -> bool {
    if !cond {
        *since = None;
        return false;
    }
    let s = *since.get_or_insert(now);
    if now.duration_since(s) >= after {
        *since = None;
        return true;
    }
    false
}

/// Ordinary clients on runtime `rt` (replica and master links stay where they are).
fn movable(srv: &Server, rt: usize) -> Vec<Arc<ClientHandle>> {
    srv.clients
        .lock()
        .values()
        .filter(|c| {
            c.rt.load(Relaxed) == rt
                && c.kind.load(Relaxed) == KIND_NORMAL
                && c.move_to.load(Relaxed) == NO_MOVE
                && !c.killed.load(Relaxed)
        })
        .cloned()
        .collect()
}

/// Moves about one in `every` of the recently active connections on `from`
/// to `to` (of all of them if none was active; at least one of two or
/// more), so the load splits about evenly.
fn shift(srv: &Server, from: usize, to: usize, every: usize) {
    let all = movable(srv, from);
    let since = crate::util::now_ms().saturating_sub(ACTIVE_MS);
    let active: Vec<_> = all
        .iter()
        .filter(|c| c.last_ms.load(Relaxed) >= since)
        .collect();
    let pick = if active.is_empty() {
        all.iter().collect()
    } else {
        active
    };
    let n = (pick.len() / every).max(usize::from(pick.len() >= 2));
    if n == 0 {
        return;
    }
    for c in pick.iter().step_by(pick.len() / n).take(n) {
        c.ask_move(to);
    }
}

/// Whether an active runtime this busy polls before sleeping, with `idle`
/// cores idle on the host (its own polling counted as idle) and the cgroup's
/// CPU `quota`.
fn should_poll(load: f64, idle: Option<f64>, quota: Option<f64>) -> bool {
    quota.is_none() && load >= POLL_BUSY && idle.is_some_and(|i| i >= POLL_IDLE_CORES)
}

/// Under CPU `quota` (cores), the workers `busy` (their busy shares
/// summed), with `idle` cores idle on the host: whether the quota binds (`QUOTA_BOUND`), and the idle cores
/// that are ours to use (no more than the quota leaves).
fn under_quota(quota: Option<f64>, busy: f64, idle: Option<f64>) -> (bool, Option<f64>) {
    match quota {
        None => (false, idle),
        Some(q) => (
            busy >= QUOTA_BOUND * q,
            idle.map(|i| i.min((q - busy).max(0.0))),
        ),
    }
}

/// Cores idle since the last call, from `/proc/stat` (`None` the first time
/// or where it cannot be read: the governor then does not ask).
fn host_idle_cores(last: &mut Option<(u64, u64)>) -> Option<f64> {
    // one read into a buffer of the usual size (read_to_string's small
    // probing reads would make the kernel render the file ten times a tick)
    let mut text = String::with_capacity(64 << 10);
    std::io::Read::read_to_string(&mut std::fs::File::open("/proc/stat").ok()?, &mut text).ok()?;
    let line = text.lines().next()?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let idle = v.get(3)? + v.get(4).copied().unwrap_or(0);
    let total: u64 = v.iter().take(8).sum();
    let cores = text
        .lines()
        .skip(1)
        .take_while(|l| l.starts_with("cpu"))
        .count()
        .max(1);
    let prev = last.replace((idle, total))?;
    let dt = total.saturating_sub(prev.1);
    if dt == 0 {
        return None;
    }
    Some(idle.saturating_sub(prev.0) as f64 / dt as f64 * cores as f64)
}

/// Carries a connection on in the runtime it was handed to: registers the
/// socket with this runtime's epoll, then serves it (a new one, or the
/// session it had). Boxed: a connection's future would otherwise contain itself.
pub(crate) fn resume(
    srv: Arc<Server>,
    std: std::net::TcpStream,
    rt: usize,
    session: Option<Box<crate::conn::Session>>,
) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(async move {
        match TcpStream::from_std(std) {
            Ok(sock) => match session {
                Some(s) => crate::conn::drive(srv, sock, rt, s).await,
                None => crate::conn::serve(srv, sock, rt).await,
            },
            Err(e) => {
                tracing::warn!(error = %e, "could not register a connection with its worker");
                match session {
                    Some(s) => crate::conn::end(&srv, rt, s),
                    None => srv.workers.closed(rt),
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `plan` every 100 ms with the same loads for `ms`; the steps it took.
    fn run(g: &mut Governor, load: &[f64], k: usize, idle: Option<f64>, ms: u64) -> Vec<Step> {
        let t0 = Instant::now();
        (0..=ms / 100)
            .filter_map(|i| {
                g.plan(
                    load,
                    k,
                    true,
                    idle,
                    0.0,
                    t0 + Duration::from_millis(i * 100),
                )
            })
            .collect()
    }

    /// As `run`, from `t0 + from_ms`, with `rate` commands per second.
    fn run_at(
        g: &mut Governor,
        t0: Instant,
        (from_ms, ms): (u64, u64),
        load: &[f64],
        k: usize,
        rate: f64,
    ) -> Vec<Step> {
        (from_ms / 100..=(from_ms + ms) / 100)
            .filter_map(|i| {
                g.plan(
                    load,
                    k,
                    true,
                    Some(0.6),
                    rate,
                    t0 + Duration::from_millis(i * 100),
                )
            })
            .collect()
    }

    #[test]
    fn a_spread_that_pays_stays() {
        let mut g = Governor::default();
        let t0 = Instant::now();
        assert_eq!(
            run_at(&mut g, t0, (0, 300), &[0.99, 0.0], 1, 400e3),
            vec![Step::Spread { from: 0 }]
        );
        // 1.4x the commands per second on two workers
        assert_eq!(
            run_at(&mut g, t0, (400, 5000), &[0.99, 0.99], 2, 560e3),
            vec![]
        );
        assert!(g.trial.is_none());
    }

    #[test]
    fn a_spread_that_does_not_pay_is_undone_and_held_off() {
        let mut g = Governor::default();
        let t0 = Instant::now();
        assert_eq!(
            run_at(&mut g, t0, (0, 300), &[0.99, 0.0], 1, 440e3),
            vec![Step::Spread { from: 0 }]
        );
        // one hot key: both busy, fewer commands served
        let steps = run_at(&mut g, t0, (400, 1000), &[0.99, 0.99], 2, 380e3);
        assert!(
            matches!(steps[..], [Step::Undo { before, after }] if before == 440e3 && after == 380e3),
            "{steps:?}"
        );
        // hot again on one worker: held off for 10 s, then tried again
        assert_eq!(
            run_at(&mut g, t0, (1500, 9000), &[0.99, 0.0], 1, 440e3),
            vec![]
        );
        assert_eq!(
            run_at(&mut g, t0, (10600, 1000), &[0.99, 0.0], 1, 440e3),
            vec![Step::Spread { from: 0 }]
        );
        // failing again holds off twice as long
        let steps = run_at(&mut g, t0, (11700, 1100), &[0.99, 0.99], 2, 450e3);
        assert!(matches!(steps[..], [Step::Undo { .. }]), "{steps:?}");
        assert_eq!(
            run_at(&mut g, t0, (12900, 19500), &[0.99, 0.0], 1, 440e3),
            vec![]
        );
        assert_eq!(
            run_at(&mut g, t0, (33000, 500), &[0.99, 0.0], 1, 440e3),
            vec![Step::Spread { from: 0 }]
        );
    }

    #[test]
    fn polls_when_busy_with_a_core_idle_and_no_quota() {
        assert!(should_poll(0.6, Some(0.2), None));
        assert!(!should_poll(0.4, Some(0.2), None), "not busy enough");
        assert!(!should_poll(0.6, Some(0.05), None), "no core idle");
        assert!(!should_poll(0.6, None, None), "idle unknown");
        assert!(!should_poll(0.9, Some(1.0), Some(1.5)), "under a quota");
    }

    #[test]
    fn one_worker_stays_until_busy_with_a_core_idle() {
        let mut g = Governor::default();
        // P=1 beside redis-benchmark: 60-85% busy, some of a core idle
        assert_eq!(run(&mut g, &[0.62, 0.0], 1, Some(0.7), 5000), vec![]);
        assert_eq!(run(&mut g, &[0.86, 0.0], 1, Some(0.5), 5000), vec![]);
        // saturated, but the host has no idle core (the client uses it)
        assert_eq!(run(&mut g, &[0.99, 0.0], 1, Some(0.1), 5000), vec![]);
        // saturated for less than SPREAD_AFTER
        assert_eq!(run(&mut g, &[0.99, 0.0], 1, Some(0.6), 200), vec![]);
        let mut g = Governor::default();
        assert_eq!(
            run(&mut g, &[0.99, 0.0], 1, Some(0.6), 300),
            vec![Step::Spread { from: 0 }]
        );
        // all workers active: nothing to spread to
        assert_eq!(run(&mut g, &[0.99, 0.99], 2, Some(0.6), 2000), vec![]);
    }

    #[test]
    fn gathers_only_when_the_load_fits_on_fewer_for_a_while() {
        let mut g = Governor::default();
        // two at 45% each would be 90% on one: stay spread
        assert_eq!(run(&mut g, &[0.45, 0.45], 2, Some(1.0), 5000), vec![]);
        assert_eq!(run(&mut g, &[0.35, 0.35], 2, Some(1.0), 900), vec![]);
        let mut g = Governor::default();
        assert_eq!(
            run(&mut g, &[0.35, 0.35], 2, Some(1.0), 1000),
            vec![Step::Gather]
        );
        // what spreading one worker at the threshold leaves stays spread
        let mut g = Governor::default();
        assert_eq!(run(&mut g, &[0.43, 0.43], 2, Some(0.3), 5000), vec![]);
        // a spread load that halves per worker does not gather again (no flapping)
        let mut g = Governor::default();
        assert_eq!(run(&mut g, &[0.7, 0.7], 2, Some(0.2), 5000), vec![]);
    }

    #[test]
    fn balances_a_skewed_pair() {
        let mut g = Governor::default();
        assert_eq!(
            run(&mut g, &[0.95, 0.3], 2, Some(0.5), 500),
            vec![Step::Balance { from: 0, to: 1 }]
        );
        let mut g = Governor::default();
        assert_eq!(run(&mut g, &[0.95, 0.8], 2, Some(0.5), 5000), vec![]);
    }

    #[test]
    fn the_last_worker_retires_when_its_last_client_goes() {
        let w = Workers::new(3, true, 0.97);
        w.active.store(3, Relaxed);
        for (i, n) in [(0, 2), (1, 1), (2, 1)] {
            w.conns[i].store(n, Relaxed);
        }
        // the middle one empties: the last still has a client
        w.closed(1);
        assert_eq!(w.active(), 3);
        // the last empties: it and the empty one below it retire
        w.closed(2);
        assert_eq!(w.active(), 1);
        // the first never retires
        w.closed(0);
        w.closed(0);
        assert_eq!(w.active(), 1);
        // nor does anything when the workers are fixed
        let w = Workers::new(2, false, 0.97);
        w.conns[1].store(1, Relaxed);
        w.closed(1);
        assert_eq!(w.active(), 2);
        // a move that empties the last one retires it too
        let w = Workers::new(2, true, 0.97);
        w.active.store(2, Relaxed);
        w.conns[1].store(1, Relaxed);
        w.moved(1, 0);
        assert_eq!((w.active(), w.conns[0].load(Relaxed)), (1, 1));
    }

    #[test]
    fn a_worker_at_97_percent_sends_its_replies_in_bursts() {
        let w = Workers::new(2, true, 0.97);
        w.busy[0].store(980, Relaxed);
        // P=1 beside redis-benchmark reads 0.6-0.86: not the bottleneck
        w.busy[1].store(969, Relaxed);
        assert!(w.saturated(0));
        assert!(!w.saturated(1));
        assert!(!w.saturated(7), "no such runtime");
        // the threshold is the operator's: 0 always, above 1 never
        let always = Workers::new(1, true, 0.0);
        assert!(always.saturated(0));
        let never = Workers::new(1, true, 1.5);
        never.busy[0].store(1000, Relaxed);
        assert!(!never.saturated(0));
        never.burst(0);
        never.burst(3);
        assert_eq!((never.bursts(0), never.bursts(3)), (1, 0));
    }

    #[test]
    fn a_quota_binds_near_its_use_and_leaves_only_its_rest_idle() {
        // half a core: a worker busy through it (or stopped by it) is bound
        // and leaves nothing idle for a spread
        for busy in [0.46, 0.95] {
            let (bound, idle) = under_quota(Some(0.5), busy, Some(1.2));
            assert!(bound, "{busy}");
            assert!(idle.unwrap() < SPREAD_IDLE_CORES, "{idle:?}");
        }
        assert_eq!(under_quota(Some(0.5), 0.3, Some(1.2)), (false, Some(0.2)));
        // four cores, one used: not bound, the host's idle cores count
        assert_eq!(under_quota(Some(4.0), 1.0, Some(0.8)), (false, Some(0.8)));
        assert_eq!(under_quota(Some(4.0), 1.0, Some(3.5)), (false, Some(3.0)));
        // no quota: the host decides
        assert_eq!(under_quota(None, 1.9, Some(0.1)), (false, Some(0.1)));
        // a quota-bound worker bursts whatever its busy share, unless
        // bursts are off
        let w = Workers::new(2, true, 0.97);
        assert!(!w.saturated(0));
        w.quota_bound.store(true, Relaxed);
        assert!(w.saturated(0) && w.saturated(1));
        let never = Workers::new(2, true, 1.5);
        never.quota_bound.store(true, Relaxed);
        assert!(!never.saturated(0));
    }

    #[test]
    fn fixed_workers_never_spread_or_gather() {
        let mut g = Governor::default();
        let t0 = Instant::now();
        for i in 0..50 {
            let now = t0 + Duration::from_millis(i * 100);
            assert_eq!(g.plan(&[0.99, 0.0], 1, false, Some(1.0), 0.0, now), None);
            assert_eq!(g.plan(&[0.1, 0.1], 2, false, Some(1.0), 0.0, now), None);
        }
    }
}
