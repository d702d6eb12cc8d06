//! The keyspace: 1024 slot tables, each behind its own mutex.
//!
//! Partitioning by slot is what makes per-slot counting, scanning, deleting and
//! (later) migrating cheap, and it is also our concurrency unit: a command locks
//! only the slots its keys hash to, so both cores serve requests at once. A
//! slot table is a dense `Table` because dense indexes give O(1) random
//! sampling (eviction, active expiry, RANDOMKEY) and stable cursors for SCAN.
//! See docs/decisions/0001-keyspace-and-threading.md.

pub mod entry;
pub mod hash;
pub mod set;
pub mod stream;
pub mod table;
pub mod value;
pub mod zset;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::Relaxed};

use parking_lot::Mutex;

pub use entry::{Entry, ValueRef};
pub use table::{Table, bump_snapshot_epoch, snapshot_epoch};
pub use value::{Bytes, Hasher, Value};
pub use zset::{Score, ZSet};

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

/// Publishes the settings the keyspace reads on its hot paths, at start
/// and after `CONFIG SET`: what access stamps mean from now on
/// (`maxmemory-policy`, `lfu-*`; like Redis, stamps written under the other
/// policy read as noise until their keys are touched again) and when a
/// hash or a sorted set stops being packed.
pub fn apply_config(cfg: &crate::config::Config) {
    LFU_MODE.store(cfg.maxmemory_policy.ends_with("-lfu"), Relaxed);
    LFU_LOG_FACTOR.store(cfg.lfu_log_factor, Relaxed);
    LFU_DECAY_TIME.store(cfg.lfu_decay_time, Relaxed);
    zset::MAX_PACKED_ENTRIES.store(cfg.zset_max_listpack_entries, Relaxed);
    zset::MAX_PACKED_VALUE.store(cfg.zset_max_listpack_value, Relaxed);
    hash::MAX_PACKED_ENTRIES.store(cfg.hash_max_listpack_entries, Relaxed);
    hash::MAX_PACKED_VALUE.store(cfg.hash_max_listpack_value, Relaxed);
    set::MAX_INTSET_ENTRIES.store(cfg.set_max_intset_entries, Relaxed);
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

/// One bit per record position, set while that record has an expiry: active
/// expiry and the volatile-* eviction policies sample among volatile keys
/// only (Redis keeps them in a dict of their own) without reading the other
/// records, so a few keys with a TTL among many without are still reclaimed
/// promptly. Positions move only by a table's swap-remove, which `Slot`
/// mirrors here.
#[derive(Debug, Default)]
pub struct VolatileBits(Vec<u64>);

impl VolatileBits {
    #[inline]
    fn set(&mut self, i: usize, on: bool) {
        let (w, m) = (i / 64, 1u64 << (i % 64));
        if w >= self.0.len() {
            if !on {
                return;
            }
            self.0.resize(w + 1, 0);
        }
        if on {
            self.0[w] |= m;
        } else {
            self.0[w] &= !m;
        }
    }

    #[inline]
    pub fn get(&self, i: usize) -> bool {
        self.0.get(i / 64).is_some_and(|w| w >> (i % 64) & 1 == 1)
    }

    /// The first set position at or after `from`, wrapping around.
    pub fn next_from(&self, from: usize) -> Option<usize> {
        let words = self.0.len();
        if words == 0 {
            return None;
        }
        let (start, bit) = ((from / 64) % words, from % 64);
        for k in 0..=words {
            let w = (start + k) % words;
            let bits = match k {
                0 => self.0[w] & (!0u64 << bit),
                // back at the first word: the bits below `from`
                _ if k == words => self.0[w] & !(!0u64 << bit),
                _ => self.0[w],
            };
            if bits != 0 {
                return Some(w * 64 + bits.trailing_zeros() as usize);
            }
        }
        None
    }
}

/// One slot's table and counters. All fields change under the slot's mutex.
#[derive(Debug, Default)]
pub struct Slot {
    pub map: Table,
    /// Keys with an expiry, so active expiry skips slots with none.
    pub volatile: usize,
    /// Which positions of `map` hold those keys.
    pub volatile_at: VolatileBits,
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

    /// As `find`, stamping the key's access time: Redis's write lookups
    /// (EXPIRE, PERSIST, GETEX, SET on a key that exists) touch the key.
    #[inline]
    pub fn find_touched(&mut self, key: &[u8], now: u64) -> Option<usize> {
        let idx = self.find(key, now)?;
        let e = &mut self.map[idx];
        e.set_access(touched(e.access()));
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
        let last = self.map.len().checked_sub(1)?;
        let e = self.map.swap_remove_index(idx)?;
        if e.expire_at() != 0 {
            self.volatile -= 1;
        }
        // the last record took `idx`
        let moved = self.volatile_at.get(last);
        self.volatile_at.set(idx, moved);
        self.volatile_at.set(last, false);
        Some(e)
    }

    pub fn remove(&mut self, key: &[u8]) -> Option<Entry> {
        let idx = self.map.get_index_of(key)?;
        self.remove_index(idx)
    }

    /// Inserts or replaces the whole record.
    pub fn insert(&mut self, entry: Entry) {
        self.insert_pos(entry);
    }

    /// Inserts or replaces; the record's position and the one it replaced.
    fn insert_pos(&mut self, entry: Entry) -> (usize, Option<Entry>) {
        let vol = entry.expire_at() != 0;
        if vol {
            self.volatile += 1;
        }
        let (pos, old) = self.map.insert_at(entry);
        if let Some(old) = &old
            && old.expire_at() != 0
        {
            self.volatile -= 1;
        }
        self.volatile_at.set(pos, vol);
        (pos, old)
    }

    /// As `insert` with SET's semantics: a record that replaces a live one
    /// takes over its access history, touched (Redis's `dbSetValue` keeps
    /// the old LFU counter; a refreshed hot key must not look new to LFU
    /// eviction).
    pub fn overwrite(&mut self, entry: Entry, now: u64) {
        // one probe: the replaced record, if live, hands its stamp over
        if let (pos, Some(old)) = self.insert_pos(entry)
            && !old.expired(now)
        {
            self.map[pos].set_access(touched(old.access()));
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
        self.volatile_at.set(idx, at != 0);
    }

    pub fn clear(&mut self) -> usize {
        let n = self.map.len();
        self.map.clear();
        self.volatile = 0;
        self.volatile_at = VolatileBits::default();
        n
    }

    /// Empties the slot, handing its table over (FLUSHALL ASYNC drops it on
    /// another thread).
    pub fn take(&mut self) -> Table {
        self.volatile = 0;
        self.volatile_at = VolatileBits::default();
        std::mem::take(&mut self.map)
    }

    /// The position of a random key with an expiry, if any.
    #[inline]
    pub fn random_volatile(&self) -> Option<usize> {
        if self.volatile == 0 || self.map.is_empty() {
            return None;
        }
        self.volatile_at
            .next_from(fastrand::usize(..self.map.len()))
    }

    /// Samples up to `samples` random keys with an expiry (no more than the
    /// slot has) and deletes the expired ones; returns (sampled, expired).
    pub fn expire_sample(&mut self, samples: usize, now: u64) -> (usize, usize) {
        let mut expired = 0;
        let mut sampled = 0;
        for _ in 0..samples.min(self.volatile) {
            let Some(i) = self.random_volatile() else {
                break;
            };
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

    /// Inserts, replacements, expiry changes and swap-removes in random
    /// order keep the volatile bits equal to the records' expiries.
    #[test]
    fn volatile_bits_follow_every_record_move() {
        let mut s = Slot::default();
        let key = |i: usize| format!("k{i}").into_bytes();
        let mut rng = fastrand::Rng::with_seed(7);
        for step in 0..20_000 {
            let k = key(rng.usize(..500));
            match rng.u8(..4) {
                0 => s.insert(Entry::string(&k, b"v", rng.u64(..3) * 1000)),
                1 => {
                    s.remove(&k);
                }
                2 => {
                    if let Some(i) = s.map.get_index_of(&k) {
                        s.set_expire(i, rng.u64(..3) * 1000);
                    }
                }
                _ => {
                    if let Some(i) = s.random_volatile() {
                        assert_ne!(s.map[i].expire_at(), 0, "step {step}");
                        s.remove_index(i);
                    }
                }
            }
            let want: Vec<bool> = s.map.iter().map(|e| e.expire_at() != 0).collect();
            let got: Vec<bool> = (0..s.map.len()).map(|i| s.volatile_at.get(i)).collect();
            assert_eq!(got, want, "step {step}");
            assert_eq!(s.volatile, want.iter().filter(|v| **v).count());
            assert!(!s.volatile_at.get(s.map.len()), "a bit past the end");
        }
        assert!(!s.take().is_empty());
        assert_eq!((s.volatile, s.volatile_at.next_from(0)), (0, None));
    }

    #[test]
    fn next_volatile_position_wraps_around() {
        let mut b = VolatileBits::default();
        assert_eq!(b.next_from(0), None);
        for i in [3, 64, 130] {
            b.set(i, true);
        }
        assert_eq!(b.next_from(0), Some(3));
        assert_eq!(b.next_from(4), Some(64));
        assert_eq!(b.next_from(64), Some(64));
        assert_eq!(b.next_from(65), Some(130));
        // past the last set bit: around to the first
        assert_eq!(b.next_from(131), Some(3));
        assert_eq!(b.next_from(191), Some(3));
        b.set(3, false);
        b.set(64, false);
        // only bits below `from` in its own word are left
        assert_eq!(b.next_from(131), Some(130));
    }
}
