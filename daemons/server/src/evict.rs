//! `maxmemory` eviction: Redis's approximated policies by random sampling.
//!
//! Before a command that may grow memory runs over the limit, we sample
//! `maxmemory-samples` keys from random non-empty slots, evict the best
//! candidate for the policy, and repeat until under the limit or nothing is
//! evictable (then the command gets `-OOM`).

use std::sync::atomic::Ordering::Relaxed;

use crate::server::Server;
use kvfleet_model::NUM_SLOTS;

/// Evicts until `used_memory <= max`; returns keys evicted.
pub fn evict(srv: &Server, max: u64) -> usize {
    if srv.used_memory() <= max {
        return 0;
    }
    let (policy, samples) = {
        let rt = srv.rt.read();
        (rt.maxmemory_policy.clone(), rt.maxmemory_samples.max(1))
    };
    if policy == "noeviction" {
        return 0;
    }
    let volatile = policy.starts_with("volatile");
    let mut evicted = 0;
    // bounded, so a keyspace with nothing evictable cannot spin forever
    for _ in 0..10_000 {
        if srv.used_memory() <= max {
            break;
        }
        // (slot, key, rank): lower rank evicts first
        let mut best: Option<(usize, Box<[u8]>, u64)> = None;
        let mut tries = 0;
        let mut seen = 0;
        while seen < samples && tries < NUM_SLOTS * 2 {
            tries += 1;
            let si = fastrand::usize(..NUM_SLOTS);
            let s = srv.db.slots[si].lock();
            if s.map.is_empty() || (volatile && s.volatile == 0) {
                continue;
            }
            // One key per slot visited: slots are uniform, so this samples the
            // whole keyspace even when slots hold a key or two each.
            let i = if volatile {
                let Some(i) = s.random_volatile() else {
                    continue;
                };
                i
            } else {
                fastrand::usize(..s.map.len())
            };
            let e = &s.map[i];
            seen += 1;
            let rank = match policy.as_str() {
                "allkeys-lru" | "volatile-lru" => e.access() as u64,
                "allkeys-lfu" | "volatile-lfu" => crate::db::lfu_decayed(e.access()) as u64,
                "volatile-ttl" => e.expire_at(),
                _ => fastrand::u64(..),
            };
            if best.as_ref().is_none_or(|b| rank < b.2) {
                best = Some((si, e.key().into(), rank));
            }
        }
        let Some((si, key, _)) = best else { break };
        let mut s = srv.db.slots[si].lock();
        if s.remove(&key).is_some() {
            evicted += 1;
            srv.stats.evicted.fetch_add(1, Relaxed);
            if srv.persist.feed.active() {
                // as Redis: an eviction is a DEL in the write stream
                let mut cmd = Vec::new();
                crate::persist::feed::encode(&mut cmd, &[b"DEL", &key]);
                srv.persist.feed.append(&cmd);
            }
        }
        drop(s);
        srv.signal_key(&key);
    }
    evicted
}
