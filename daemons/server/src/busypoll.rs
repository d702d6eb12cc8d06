//! Busy polling before a worker sleeps (decision 0014).
//!
//! A worker that finds no work parks in epoll; the next request then costs a
//! wake-up (an IPI and a context switch, tens of µs on a VM) before it is
//! read, and on loopback the client's write pays for waking it. Under a
//! steady load of many small requests one worker sleeps about once per ten
//! requests (it turns each round faster than Redis, so each epoll_wait finds
//! fewer ready sockets). While the governor sees the worker at least half
//! busy and the host has some CPU idle, the worker's park hook polls
//! for up to `busy_poll_us` whether any of its clients' sockets became
//! readable, and returns as soon as one did: tokio's own epoll then finds
//! it without sleeping. tokio's epoll is not reachable from the hook, so
//! each runtime keeps a second, level-triggered epoll with its client
//! sockets in it, polled with a zero timeout.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use rustix::event::{Timespec, epoll};

/// One runtime's poller.
pub struct Poller {
    ep: Option<OwnedFd>,
    /// Set by the governor: the worker is busy enough and a core is idle.
    on: AtomicBool,
    /// Nanoseconds spent polling (the governor counts them back as idle).
    spun_ns: AtomicU64,
    /// Polls that ended because a socket became readable / ran out the budget.
    pub hits: AtomicU64,
    pub misses: AtomicU64,
}

/// The pollers of all runtimes, made before the runtimes (their park hooks
/// hold it) and handed to the `Server` with them.
pub struct Pollers {
    budget: Duration,
    rt: Box<[Poller]>,
}

const ZERO: Timespec = Timespec {
    tv_sec: 0,
    tv_nsec: 0,
};

impl Pollers {
    /// `budget` zero turns busy polling off (no epoll is made).
    pub fn new(threads: usize, budget: Duration) -> Pollers {
        let rt = (0..threads)
            .map(|_| Poller {
                ep: if budget.is_zero() {
                    None
                } else {
                    epoll::create(epoll::CreateFlags::CLOEXEC)
                        .inspect_err(
                            |e| tracing::warn!(error = %e, "no busy polling: epoll_create failed"),
                        )
                        .ok()
                },
                on: AtomicBool::new(false),
                spun_ns: AtomicU64::new(0),
                hits: AtomicU64::new(0),
                misses: AtomicU64::new(0),
            })
            .collect();
        Pollers { budget, rt }
    }

    pub fn budget(&self) -> Duration {
        self.budget
    }

    pub fn get(&self, rt: usize) -> Option<&Poller> {
        self.rt.get(rt)
    }

    /// Time all runtimes spent polling so far.
    pub fn spun(&self) -> Duration {
        self.rt.iter().map(Poller::spun).sum()
    }

    /// A client socket now served on runtime `rt`.
    pub fn add(&self, rt: usize, sock: impl AsFd) {
        if let Some(ep) = self.rt.get(rt).and_then(|p| p.ep.as_ref()) {
            // level-triggered: unread data keeps it ready while the worker
            // would sleep; a failure only costs this socket its early exit
            let _ = epoll::add(
                ep,
                sock,
                epoll::EventData::new_u64(0),
                epoll::EventFlags::IN | epoll::EventFlags::RDHUP,
            );
        }
    }

    /// A client socket leaving runtime `rt` (closing it removes it too).
    pub fn remove(&self, rt: usize, sock: impl AsFd) {
        if let Some(ep) = self.rt.get(rt).and_then(|p| p.ep.as_ref()) {
            let _ = epoll::delete(ep, sock);
        }
    }

    /// The park hook of runtime `rt`.
    pub fn before_park(&self, rt: usize) {
        let Some(p) = self.rt.get(rt) else {
            return;
        };
        if !p.on.load(Relaxed) {
            return;
        }
        let Some(ep) = p.ep.as_ref() else {
            return;
        };
        let t0 = Instant::now();
        let mut ev = [epoll::Event {
            flags: epoll::EventFlags::empty(),
            data: epoll::EventData::new_u64(0),
        }];
        let hit = loop {
            match epoll::wait(ep, &mut ev[..], Some(&ZERO)) {
                Ok(n) if n > 0 => break true,
                Ok(_) => {}
                Err(_) => break false,
            }
            if t0.elapsed() >= self.budget {
                break false;
            }
            std::hint::spin_loop();
        };
        p.spun_ns.fetch_add(t0.elapsed().as_nanos() as u64, Relaxed);
        if hit { &p.hits } else { &p.misses }.fetch_add(1, Relaxed);
    }
}

impl Poller {
    /// The governor's verdict for the next period.
    pub fn set(&self, on: bool) {
        self.on.store(on && self.ep.is_some(), Relaxed);
    }

    pub fn is_on(&self) -> bool {
        self.on.load(Relaxed)
    }

    /// Time spent polling so far.
    pub fn spun(&self) -> Duration {
        Duration::from_nanos(self.spun_ns.load(Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn polls_until_a_socket_is_readable_or_the_budget_is_spent() {
        let budget = Duration::from_millis(50);
        let p = Pollers::new(2, budget);
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (server, _) = l.accept().unwrap();
        p.add(1, &server);
        let rt = p.get(1).unwrap();
        // off: returns at once, counts nothing
        p.before_park(1);
        assert_eq!(rt.hits.load(Relaxed) + rt.misses.load(Relaxed), 0);
        rt.set(true);
        // nothing to read: spends the budget
        let t = Instant::now();
        p.before_park(1);
        assert!(t.elapsed() >= budget);
        assert_eq!(rt.misses.load(Relaxed), 1);
        assert!(rt.spun() >= budget);
        // a request waiting: returns as soon as it sees it
        client.write_all(b"PING\r\n").unwrap();
        let t = Instant::now();
        p.before_park(1);
        assert!(t.elapsed() < budget, "{:?}", t.elapsed());
        assert_eq!(rt.hits.load(Relaxed), 1);
        // another runtime's poller does not see this runtime's sockets
        p.get(0).unwrap().set(true);
        p.before_park(0);
        assert_eq!(p.get(0).unwrap().misses.load(Relaxed), 1);
        // a socket that left stops ending polls early
        p.remove(1, &server);
        p.before_park(1);
        assert_eq!(rt.misses.load(Relaxed), 2);
    }

    #[test]
    fn a_zero_budget_never_polls() {
        let p = Pollers::new(1, Duration::ZERO);
        let rt = p.get(0).unwrap();
        rt.set(true);
        assert!(!rt.is_on());
        p.before_park(0);
        assert_eq!(rt.misses.load(Relaxed), 0);
    }
}
