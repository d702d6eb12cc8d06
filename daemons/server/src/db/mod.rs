//! The keyspace: 1024 slot tables, each behind its own mutex.
//!
//! Partitioning by slot is what makes per-slot counting, scanning, deleting and
//! (later) migrating cheap, and it is also our concurrency unit: a command locks
//! only the slots its keys hash to, so both cores serve requests at once. A
//! slot table is an `IndexMap` because dense indexes give O(1) random sampling
//! (eviction, active expiry, RANDOMKEY) and stable cursors for SCAN.
//! See docs/decisions/0001-keyspace-and-threading.md.

pub mod entry;
pub mod stream;
pub mod table;
pub mod value;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::Relaxed};

use parking_lot::Mutex;

pub use entry::{Entry, ValueRef};
pub use table::{Table, bump_snapshot_epoch, snapshot_epoch};
pub use value::{Bytes, Hasher, Score, Value, ZSet};

use kvfleet_model::NUM_SLOTS;

static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
/// Seconds, offset so that an idle time restored from a payload or file
/// (up to ~48 days) fits below the clock of a process started just now.
const LRU_BASE: u32 = 1 << 22;
static LRU_CLOCK: AtomicU32 = AtomicU32::new(LRU_BASE);
static LFU_MODE: AtomicBool = AtomicBool::new(false);
/// Keep the keys that expire (a write stream is on: they go out as DELs, as
/// Redis propagates them, so replicas that do not expire on their own drop them).
static LOG_EXPIRED: AtomicBool = AtomicBool::new(false);

pub fn set_log_expired(on: bool) {
    LOG_EXPIRED.store(on, Relaxed);
}
static LFU_LOG_FACTOR: AtomicU32 = AtomicU32::new(10);
static LFU_DECAY_TIME: AtomicU32 = AtomicU32::new(1);

/// Seconds since the process started (plus `LRU_BASE`), as last set by [`tick_lru_clock`]: a
/// plain load, because reading a clock on every key access costs more than
/// the access (Redis caches its `lruclock` in the cron for the same reason).
#[inline]
pub fn lru_clock() -> u32 {
    LRU_CLOCK.load(Relaxed)
}

/// Advances the LRU clock; the cron calls it every cycle.
pub fn tick_lru_clock() {
    let s = START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_secs() as u32;
    LRU_CLOCK.store(LRU_BASE + s, Relaxed);
}

/// Sets what access stamps mean from now on (`maxmemory-policy`, `lfu-*`).
/// Like Redis, stamps written under the other policy read as noise until
/// their keys are touched again.
pub fn set_access_policy(cfg: &crate::config::Config) {
    LFU_MODE.store(cfg.maxmemory_policy.ends_with("-lfu"), Relaxed);
    LFU_LOG_FACTOR.store(cfg.lfu_log_factor, Relaxed);
    LFU_DECAY_TIME.store(cfg.lfu_decay_time, Relaxed);
}

pub fn lfu_mode() -> bool {
    LFU_MODE.load(Relaxed)
}

/// Redis's `LFU_INIT_VAL`: new keys start here so they are not evicted at once.
const LFU_INIT: u32 = 5;

fn minutes() -> u32 {
    (lru_clock() / 60) & 0xFFFF
}

/// The stamp of a new record: the LRU clock, or (like Redis's 24-bit field
/// under an LFU policy) minutes of the last decrement above an 8-bit counter.
#[inline]
pub fn new_access() -> u32 {
    if lfu_mode() {
        (minutes() << 8) | LFU_INIT
    } else {
        lru_clock()
    }
}

/// An LFU stamp with `counter`, decremented as of now (RESTORE ... FREQ).
pub fn lfu_stamp(counter: u8) -> u32 {
    (minutes() << 8) | counter as u32
}

/// The stamp after one more access.
#[inline]
pub fn touched(stamp: u32) -> u32 {
    if lfu_mode() {
        let c = lfu_log_incr(lfu_decayed(stamp));
        (minutes() << 8) | c as u32
    } else {
        lru_clock()
    }
}

/// The LFU counter less one for every `lfu-decay-time` minutes since it was
/// last decremented (Redis's `LFUDecrAndReturn`).
pub fn lfu_decayed(stamp: u32) -> u8 {
    let (ldt, c) = ((stamp >> 8) & 0xFFFF, (stamp & 0xFF) as u8);
    let now = minutes();
    let elapsed = if now >= ldt {
        now - ldt
    } else {
        0xFFFF - ldt + now
    };
    let periods = match LFU_DECAY_TIME.load(Relaxed) {
        0 => 0,
        d => elapsed / d,
    };
    c.saturating_sub(periods.min(255) as u8)
}

/// Redis's logarithmic increment: the higher the counter, the less likely a
/// hit moves it (`lfu-log-factor` 10 needs about a million hits for 255).
fn lfu_log_incr(c: u8) -> u8 {
    if c == 255 {
        return 255;
    }
    let base = c.saturating_sub(LFU_INIT as u8) as f64;
    let p = 1.0 / (base * LFU_LOG_FACTOR.load(Relaxed) as f64 + 1.0);
    if fastrand::f64() < p { c + 1 } else { c }
}

/// One slot's table and counters. All fields change under the slot's mutex.
#[derive(Debug, Default)]
pub struct Slot {
    pub map: Table,
    /// Keys with an expiry, so active expiry skips slots with none.
    pub volatile: usize,
    pub expired: u64,
    pub hits: u64,
    pub misses: u64,
    /// Keys expired here since the write stream last took them.
    pub expired_log: Vec<Box<[u8]>>,
}

impl Slot {
    /// Index of a live key, deleting it first if it has expired (lazy expiry).
    #[inline]
    pub fn find(&mut self, key: &[u8], now: u64) -> Option<usize> {
        let idx = self.map.get_index_of(key)?;
        if self.map[idx].expired(now) {
            self.expire_index(idx);
            return None;
        }
        Some(idx)
    }

    pub fn get_mut(&mut self, key: &[u8], now: u64) -> Option<&mut Entry> {
        let idx = self.find(key, now)?;
        Some(&mut self.map[idx])
    }

    /// Deletes an expired record (noting its key for the write stream).
    fn expire_index(&mut self, idx: usize) {
        if let Some(e) = self.remove_index(idx)
            && LOG_EXPIRED.load(Relaxed)
        {
            self.expired_log.push(e.key().into());
        }
        self.expired += 1;
    }

    pub fn remove_index(&mut self, idx: usize) -> Option<Entry> {
        let e = self.map.swap_remove_index(idx)?;
        if e.expire_at() != 0 {
            self.volatile -= 1;
        }
        Some(e)
    }

    pub fn remove(&mut self, key: &[u8]) -> Option<Entry> {
        let idx = self.map.get_index_of(key)?;
        self.remove_index(idx)
    }

    /// Inserts or replaces the whole record.
    pub fn insert(&mut self, entry: Entry) {
        if entry.expire_at() != 0 {
            self.volatile += 1;
        }
        if let Some(old) = self.map.insert(entry)
            && old.expire_at() != 0
        {
            self.volatile -= 1;
        }
    }

    pub fn set_expire(&mut self, idx: usize, at: u64) {
        let e = &mut self.map[idx];
        match (e.expire_at() != 0, at != 0) {
            (false, true) => self.volatile += 1,
            (true, false) => self.volatile -= 1,
            _ => {}
        }
        e.set_expire_at(at);
    }

    pub fn clear(&mut self) -> usize {
        let n = self.map.len();
        self.map.clear();
        self.volatile = 0;
        n
    }

    /// Deletes up to `samples` random expired keys; returns (sampled, expired).
    pub fn expire_sample(&mut self, samples: usize, now: u64) -> (usize, usize) {
        let mut expired = 0;
        let mut sampled = 0;
        for _ in 0..samples {
            let len = self.map.len();
            if len == 0 || self.volatile == 0 {
                break;
            }
            let i = fastrand::usize(..len);
            sampled += 1;
            if self.map[i].expired(now) {
                self.expire_index(i);
                expired += 1;
            }
        }
        (sampled, expired)
    }
}

/// A slot's lock on cache lines of its own: neighbouring slots are locked
/// from different cores, and sharing a line would bounce it between them.
#[repr(align(128))]
#[derive(Debug, Default)]
pub struct SlotLock(Mutex<Slot>);

impl std::ops::Deref for SlotLock {
    type Target = Mutex<Slot>;
    #[inline]
    fn deref(&self) -> &Mutex<Slot> {
        &self.0
    }
}

/// The whole keyspace.
pub struct Db {
    pub slots: Box<[SlotLock]>,
    /// Held by the master link while it applies commands and advances the
    /// replication offset, and by a snapshot's start: a snapshot's data and
    /// the offset it records always match.
    pub batch: parking_lot::Mutex<()>,
}

impl Default for Db {
    fn default() -> Self {
        Self::new()
    }
}

impl Db {
    pub fn new() -> Self {
        Db {
            slots: (0..NUM_SLOTS).map(|_| SlotLock::default()).collect(),
            batch: Default::default(),
        }
    }

    pub fn dbsize(&self) -> usize {
        self.slots.iter().map(|s| s.lock().map.len()).sum()
    }

    /// `(keys, volatile)` summed over slots.
    pub fn counts(&self) -> (usize, usize) {
        self.slots.iter().fold((0, 0), |(k, v), s| {
            let s = s.lock();
            (k + s.map.len(), v + s.volatile)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lfu_counter_decays_one_step_per_decay_period_across_the_16_bit_wrap() {
        // A stamp from 2 minutes before now, across the 16-bit wrap of minutes.
        LRU_CLOCK.store(0, Relaxed);
        let stamp = (0xFFFD << 8) | 9;
        LFU_DECAY_TIME.store(1, Relaxed);
        assert_eq!(lfu_decayed(stamp), 7);
        LFU_DECAY_TIME.store(2, Relaxed);
        assert_eq!(lfu_decayed(stamp), 8);
        LFU_DECAY_TIME.store(0, Relaxed);
        assert_eq!(lfu_decayed(stamp), 9);
        assert_eq!(lfu_decayed((0xFF00 << 8) | 3), 3, "never below zero");
        LFU_DECAY_TIME.store(1, Relaxed);
        assert_eq!(lfu_decayed((0xFF00 << 8) | 3), 0, "never below zero");
    }

    #[test]
    fn lfu_log_increment_saturates_slowly() {
        LFU_LOG_FACTOR.store(10, Relaxed);
        let mut c = LFU_INIT as u8;
        for _ in 0..1000 {
            c = lfu_log_incr(c);
        }
        // Redis's table for factor 10: 1K hits give about 18, far from 255
        assert!((8..40).contains(&c), "counter {c}");
        assert_eq!(lfu_log_incr(255), 255);
    }
}
