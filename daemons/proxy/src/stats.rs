//! Counters, per-command latency histograms and the slow log.
//!
//! Every request updates its command's counters, so they are sharded by
//! worker thread (each shard on its own cache lines) and summed when read:
//! two cores bumping one `GET` counter would otherwise bounce its line on
//! every request.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

use parking_lot::Mutex;

/// Log-linear buckets: 8 per power of two of microseconds (≤ 12.5% error),
/// up to 2^40 µs.
const SUB: u32 = 8;
const BUCKETS: usize = (SUB as usize) * 38;

fn bucket(us: u64) -> usize {
    if us < SUB as u64 {
        return us as usize;
    }
    let e = 63 - us.leading_zeros(); // >= 3
    let sub = (us >> (e - 3)) as u32 & (SUB - 1);
    (((e - 2) * SUB + sub) as usize).min(BUCKETS - 1)
}

/// The largest value a bucket holds.
fn bucket_top(i: usize) -> u64 {
    if i < SUB as usize {
        return i as u64;
    }
    let e = i as u32 / SUB + 2;
    let sub = i as u64 % SUB as u64;
    ((SUB as u64 + sub + 1) << (e - 3)) - 1
}

#[derive(Default)]
pub struct CmdStat {
    pub calls: AtomicU64,
    pub usec: AtomicU64,
    pub errors: AtomicU64,
    pub max_us: AtomicU64,
    hist: Box<[AtomicU64]>,
}

impl CmdStat {
    fn new() -> Self {
        CmdStat {
            hist: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            ..Default::default()
        }
    }
}

#[repr(align(128))]
struct Shard {
    cmds: Vec<CmdStat>,
}

/// Summed view of one command's figures.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct CmdSummary {
    pub calls: u64,
    pub usec: u64,
    pub errors: u64,
    pub max_us: u64,
    /// Upper bounds of p50, p99, p99.9, p99.99 in microseconds.
    pub pct: [u64; 4],
    pub hist: Vec<u64>,
}

pub struct SlowEntry {
    pub id: u64,
    pub at: u64,
    pub usec: u64,
    pub args: Vec<Vec<u8>>,
}

pub struct Stats {
    shards: Vec<Shard>,
    next_shard: AtomicUsize,
    pub connections_received: AtomicU64,
    pub rejected_connections: AtomicU64,
    pub backend_errors: AtomicU64,
    /// Clients closed for holding more than `max_pending_bytes` of replies.
    pub output_limit_kills: AtomicU64,
    pub net_in: AtomicU64,
    pub net_out: AtomicU64,
    pub slowlog: Mutex<VecDeque<SlowEntry>>,
    pub slowlog_next_id: AtomicU64,
    /// Commands per second over the last ~1.6 s, as Redis's
    /// `instantaneous_ops_per_sec` (see [`Stats::sample_ops`]).
    pub ops_per_sec: AtomicU64,
    ops_samples: Mutex<(u64, VecDeque<u64>)>,
}

thread_local! {
    static SHARD: std::cell::Cell<usize> = const { std::cell::Cell::new(usize::MAX) };
}

impl Stats {
    pub fn new(commands: usize) -> Stats {
        let n = std::thread::available_parallelism().map_or(2, |n| n.get());
        Stats {
            shards: (0..n)
                .map(|_| Shard {
                    cmds: (0..commands).map(|_| CmdStat::new()).collect(),
                })
                .collect(),
            next_shard: AtomicUsize::new(0),
            connections_received: AtomicU64::new(0),
            rejected_connections: AtomicU64::new(0),
            backend_errors: AtomicU64::new(0),
            output_limit_kills: AtomicU64::new(0),
            net_in: AtomicU64::new(0),
            net_out: AtomicU64::new(0),
            slowlog: Mutex::new(VecDeque::new()),
            slowlog_next_id: AtomicU64::new(0),
            ops_per_sec: AtomicU64::new(0),
            ops_samples: Mutex::new((0, VecDeque::new())),
        }
    }

    fn shard(&self) -> &Shard {
        let i = SHARD.with(|s| {
            if s.get() == usize::MAX {
                s.set(self.next_shard.fetch_add(1, Relaxed) % self.shards.len());
            }
            s.get()
        });
        &self.shards[i % self.shards.len()]
    }

    #[inline]
    pub fn record(&self, cmd: usize, us: u64, error: bool) {
        let c = &self.shard().cmds[cmd];
        c.calls.fetch_add(1, Relaxed);
        c.usec.fetch_add(us, Relaxed);
        if error {
            c.errors.fetch_add(1, Relaxed);
        }
        c.hist[bucket(us)].fetch_add(1, Relaxed);
        if us > c.max_us.load(Relaxed) {
            c.max_us.fetch_max(us, Relaxed);
        }
    }

    pub fn summary(&self, cmd: usize) -> CmdSummary {
        let mut s = CmdSummary {
            hist: vec![0; BUCKETS],
            ..Default::default()
        };
        for sh in &self.shards {
            let c = &sh.cmds[cmd];
            s.calls += c.calls.load(Relaxed);
            s.usec += c.usec.load(Relaxed);
            s.errors += c.errors.load(Relaxed);
            s.max_us = s.max_us.max(c.max_us.load(Relaxed));
            for (d, h) in s.hist.iter_mut().zip(c.hist.iter()) {
                *d += h.load(Relaxed);
            }
        }
        let total: u64 = s.hist.iter().sum();
        for (k, q) in [0.5, 0.99, 0.999, 0.9999].iter().enumerate() {
            let want = ((total as f64) * q).ceil() as u64;
            let mut seen = 0;
            for (i, n) in s.hist.iter().enumerate() {
                seen += n;
                if seen >= want.max(1) {
                    s.pct[k] = bucket_top(i).min(s.max_us);
                    break;
                }
            }
        }
        s
    }

    /// Upper bound in microseconds of histogram bucket `i`, for exporters.
    pub fn bucket_bound(i: usize) -> u64 {
        bucket_top(i)
    }

    /// Commands answered so far, all commands.
    pub fn total_calls(&self) -> u64 {
        self.shards
            .iter()
            .flat_map(|s| s.cmds.iter())
            .map(|c| c.calls.load(Relaxed))
            .sum()
    }

    /// Called every 100 ms: keeps 16 samples of the rate, like Redis's
    /// `trackInstantaneousMetric`, and publishes their mean.
    pub fn sample_ops(&self) {
        let total = self.total_calls();
        let mut g = self.ops_samples.lock();
        let (last, samples) = &mut *g;
        let rate = total.saturating_sub(*last) * 10;
        *last = total;
        samples.push_back(rate);
        if samples.len() > 16 {
            samples.pop_front();
        }
        let mean = samples.iter().sum::<u64>() / samples.len() as u64;
        self.ops_per_sec.store(mean, Relaxed);
    }

    pub fn reset(&self) {
        for sh in &self.shards {
            for c in &sh.cmds {
                c.calls.store(0, Relaxed);
                c.usec.store(0, Relaxed);
                c.errors.store(0, Relaxed);
                c.max_us.store(0, Relaxed);
                c.hist.iter().for_each(|h| h.store(0, Relaxed));
            }
        }
    }

    pub fn slowlog_push(&self, usec: u64, args: &[&[u8]], max_len: usize) {
        let e = SlowEntry {
            id: self.slowlog_next_id.fetch_add(1, Relaxed),
            at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            usec,
            // Redis keeps at most 32 arguments of at most 128 bytes each
            args: args
                .iter()
                .take(32)
                .map(|a| a[..a.len().min(128)].to_vec())
                .collect(),
        };
        let mut log = self.slowlog.lock();
        log.push_front(e);
        log.truncate(max_len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_bound_their_values() {
        let mut last = 0;
        for us in [0, 1, 7, 8, 9, 15, 16, 100, 1000, 12_345, 1 << 30] {
            let b = bucket(us);
            assert!(b >= last, "{us}");
            assert!(
                bucket_top(b) >= us,
                "{us} above its bucket's top {}",
                bucket_top(b)
            );
            assert!(bucket_top(b) <= us + us / 8 + 1, "{us}: bucket too coarse");
            last = b;
        }
    }

    #[test]
    fn ops_per_sec_is_the_mean_of_recent_100ms_samples() {
        let s = Stats::new(2);
        for _ in 0..50 {
            s.record(1, 10, false);
        }
        s.sample_ops();
        assert_eq!(s.ops_per_sec.load(Relaxed), 500);
        s.sample_ops(); // a quiet 100 ms halves the mean
        assert_eq!(s.ops_per_sec.load(Relaxed), 250);
    }

    #[test]
    fn percentiles_come_from_every_shard() {
        let s = Stats::new(1);
        for i in 0..1000u64 {
            s.record(0, if i < 990 { 100 } else { 5000 }, i == 0);
        }
        let m = s.summary(0);
        assert_eq!((m.calls, m.errors, m.max_us), (1000, 1, 5000));
        assert!((100..=112).contains(&m.pct[0]), "p50 {}", m.pct[0]);
        assert!((100..=112).contains(&m.pct[1]), "p99 {}", m.pct[1]);
        assert!((4096..=5000).contains(&m.pct[2]), "p99.9 {}", m.pct[2]);
    }
}
