//! Background work at `hz`: active expiry (Redis's adaptive sampling), the
//! ops/sec gauge, and idle-client timeouts.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

use crate::server::Server;
use kvfleet_model::NUM_SLOTS;

/// `DEBUG SET-ACTIVE-EXPIRE 0` turns active expiry off (tests use it to see lazy expiry alone).
pub static ACTIVE_EXPIRE: AtomicBool = AtomicBool::new(true);

/// Volatile keys sampled per slot per round (at most the slot's count), and
/// the share of expired ones that makes us sample that slot again at once
/// (Redis's 20 and 25%).
const SAMPLES: usize = 20;
const REPEAT_PERCENT: usize = 25;
/// Share of each cycle's period active expiry may take (Redis's 25%).
const CPU_PERCENT: u32 = 25;
/// Keys a cycle samples before it stops while under `STALE_PERCENT` of them
/// had expired (Redis samples 20 per database per cycle; walking all 1024
/// slots every cycle cost 2-3% of a core with 100k volatile keys and nothing
/// to expire). Past that share the cycle goes on, within its time budget.
const CYCLE_SAMPLES: usize = 200;
const STALE_PERCENT: usize = 10;

pub async fn run(srv: Arc<Server>) {
    let mut last_cmds = 0u64;
    let mut last_t = Instant::now();
    let mut cursor = 0usize;
    let mut ping_tick = 0u64;
    loop {
        let hz = srv.rt.read().hz.max(1);
        let period = Duration::from_millis(1000 / hz as u64);
        tokio::time::sleep(period).await;
        crate::db::tick_lru_clock();
        srv.workers.tick(&srv);
        srv.failover.tick(&srv);
        // a replica's keys expire by its master's DELs; a paused master's
        // stream stands still
        if ACTIVE_EXPIRE.load(Relaxed) && !srv.follow.is_replica() && !srv.pause.writes_paused() {
            let budget = period * CPU_PERCENT / 100;
            let srv2 = srv.clone();
            // slot locks are short, but the walk is CPU work: keep it off the I/O loop
            cursor = tokio::task::spawn_blocking(move || active_expire(&srv2, cursor, budget))
                .await
                .unwrap_or(0);
        }
        let el = last_t.elapsed().as_secs_f64();
        if el >= 1.0 {
            let c = srv.stats.commands.load(Relaxed);
            srv.stats
                .ops_per_sec
                .store(((c - last_cmds) as f64 / el) as u64, Relaxed);
            last_cmds = c;
            last_t = Instant::now();
            kill_idle(&srv);
            // appendfsync everysec: fsync off the command path, on a second descriptor
            let handle = {
                let mut g = srv.persist.feed.inner.lock();
                match g.aof.as_mut() {
                    Some(f) if f.policy == crate::persist::aof::Fsync::EverySec => f.sync_handle(),
                    _ => None,
                }
            };
            if let Some(f) = handle {
                tokio::task::spawn_blocking(move || f.sync_data());
            }
            crate::repl::refresh_good(&srv);
            ping_tick += 1;
            if ping_tick.is_multiple_of(10) && !srv.pause.writes_paused() {
                crate::repl::ping_replicas(&srv);
            }
            if crate::persist::save_point_due(&srv) {
                let _ = crate::persist::bgsave(&srv);
            }
        }
    }
}

/// One cycle over the slots from `cursor`, within `budget`; returns where to resume.
pub fn active_expire(srv: &Server, mut cursor: usize, budget: Duration) -> usize {
    let start = Instant::now();
    let now = crate::util::now_ms();
    let (mut sampled_all, mut expired_all) = (0, 0);
    for _ in 0..NUM_SLOTS {
        let slot = cursor;
        cursor = (cursor + 1) % NUM_SLOTS;
        let mut s = srv.db.slots[slot].lock();
        loop {
            if s.volatile == 0 {
                break;
            }
            let (sampled, expired) = s.expire_sample(SAMPLES, now);
            sampled_all += sampled;
            expired_all += expired;
            if sampled == 0 || expired * 100 < sampled * REPEAT_PERCENT {
                break;
            }
            if start.elapsed() > budget {
                break;
            }
        }
        if !s.expired_log.is_empty() {
            let mut dels = Vec::new();
            crate::persist::feed::Feed::expired_dels(&mut s, &mut dels);
            srv.persist.feed.append(&dels);
        }
        drop(s);
        if start.elapsed() > budget
            || (sampled_all >= CYCLE_SAMPLES && expired_all * 100 < sampled_all * STALE_PERCENT)
        {
            break;
        }
    }
    cursor
}

fn kill_idle(srv: &Server) {
    let timeout = srv.idle_timeout.load(Relaxed);
    if timeout == 0 {
        return;
    }
    let now = crate::util::now_ms();
    for c in srv.clients.lock().values() {
        let subscribed = c.subs.load(Relaxed) + c.psubs.load(Relaxed) > 0;
        if !subscribed && now.saturating_sub(c.last_ms.load(Relaxed)) > timeout * 1000 {
            c.kill();
        }
    }
}
