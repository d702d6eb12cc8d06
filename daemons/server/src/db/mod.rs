//! The keyspace: 1024 slot tables, each behind its own mutex.
//!
//! Partitioning by slot is what makes per-slot counting, scanning, deleting and
//! (later) migrating cheap, and it is also our concurrency unit: a command locks
//! only the slots its keys hash to, so both cores serve requests at once. A
//! slot table is an `IndexMap` because dense indexes give O(1) random sampling
//! (eviction, active expiry, RANDOMKEY) and stable cursors for SCAN.
//! See docs/decisions/0001-keyspace-and-threading.md.

pub mod value;

use indexmap::IndexMap;
use parking_lot::Mutex;

pub use value::{Bytes, Hasher, Key, Score, Value, ZSet};

use kvfleet_model::NUM_SLOTS;

/// One key's record. 40 bytes plus the key and value allocations.
#[derive(Debug, Clone)]
pub struct Entry {
    pub value: Value,
    /// Absolute expiry in Unix milliseconds; 0 means none.
    pub expire_at: u64,
    /// Last access, seconds on the server's LRU clock.
    pub lru: u32,
    /// Logarithmic access counter for the LFU policies (Redis's `LFU_INIT_VAL` is 5).
    pub lfu: u8,
}

impl Entry {
    pub fn new(value: Value) -> Self {
        Entry {
            value,
            expire_at: 0,
            lru: lru_clock(),
            lfu: 5,
        }
    }

    #[inline]
    pub fn expired(&self, now: u64) -> bool {
        self.expire_at != 0 && self.expire_at <= now
    }
}

static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
static LRU_CLOCK: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// Seconds since the process started, as last set by [`tick_lru_clock`]: a
/// plain load, because reading a clock on every key access costs more than
/// the access (Redis caches its `lruclock` in the cron for the same reason).
#[inline]
pub fn lru_clock() -> u32 {
    LRU_CLOCK.load(std::sync::atomic::Ordering::Relaxed)
}

/// Advances the LRU clock; the cron calls it every cycle.
pub fn tick_lru_clock() {
    let s = START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_secs() as u32;
    LRU_CLOCK.store(s, std::sync::atomic::Ordering::Relaxed);
}

/// One slot's table and counters. All fields change under the slot's mutex.
#[derive(Debug, Default)]
pub struct Slot {
    pub map: IndexMap<Key, Entry, Hasher>,
    /// Keys with an expiry, so active expiry skips slots with none.
    pub volatile: usize,
    pub expired: u64,
    pub hits: u64,
    pub misses: u64,
}

impl Slot {
    /// Index of a live key, deleting it first if it has expired (lazy expiry).
    #[inline]
    pub fn find(&mut self, key: &[u8], now: u64) -> Option<usize> {
        let idx = self.map.get_index_of(key)?;
        if self.map[idx].expired(now) {
            self.remove_index(idx);
            self.expired += 1;
            return None;
        }
        Some(idx)
    }

    pub fn get_mut(&mut self, key: &[u8], now: u64) -> Option<&mut Entry> {
        let idx = self.find(key, now)?;
        Some(&mut self.map[idx])
    }

    pub fn remove_index(&mut self, idx: usize) -> Option<(Key, Entry)> {
        let (k, e) = self.map.swap_remove_index(idx)?;
        if e.expire_at != 0 {
            self.volatile -= 1;
        }
        Some((k, e))
    }

    pub fn remove(&mut self, key: &[u8]) -> Option<Entry> {
        let idx = self.map.get_index_of(key)?;
        self.remove_index(idx).map(|(_, e)| e)
    }

    /// Inserts or replaces the whole entry.
    pub fn insert(&mut self, key: &[u8], entry: Entry) {
        if entry.expire_at != 0 {
            self.volatile += 1;
        }
        if let Some(old) = self.map.get_mut(key) {
            if old.expire_at != 0 {
                self.volatile -= 1;
            }
            *old = entry;
        } else {
            // indexmap grows its entry vector to the hash index's capacity (up to
            // 1.8x the live entries at 64 bytes each); growing by a quarter keeps
            // the slack near 12% for the cost of a few more, amortised, copies.
            if self.map.len() == self.map.capacity() {
                self.map.reserve_exact((self.map.len() / 4).max(8));
            }
            self.map.insert(Key::from_slice(key), entry);
        }
    }

    pub fn set_expire(&mut self, idx: usize, at: u64) {
        let e = &mut self.map[idx];
        match (e.expire_at != 0, at != 0) {
            (false, true) => self.volatile += 1,
            (true, false) => self.volatile -= 1,
            _ => {}
        }
        e.expire_at = at;
    }

    pub fn clear(&mut self) -> usize {
        let n = self.map.len();
        self.map = IndexMap::default();
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
                self.remove_index(i);
                self.expired += 1;
                expired += 1;
            }
        }
        (sampled, expired)
    }
}

/// The whole keyspace.
pub struct Db {
    pub slots: Box<[Mutex<Slot>]>,
}

impl Default for Db {
    fn default() -> Self {
        Self::new()
    }
}

impl Db {
    pub fn new() -> Self {
        Db {
            slots: (0..NUM_SLOTS)
                .map(|_| Mutex::new(Slot::default()))
                .collect(),
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
