//! Holding clients' commands: `CLIENT PAUSE` (an operator's switchover
//! window) and FAILOVER (writes wait while the replica catches up). A held
//! command waits, unexecuted, in its connection's buffer until the pause
//! ends; replica and master links are never held.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use kvfleet_model::commands::{COMMANDS, flag};
use tokio::sync::Notify;

use crate::util::now_ms;

#[derive(Debug, Default)]
pub struct Pause {
    /// Some pause is on: the only thing the command path reads otherwise.
    engaged: AtomicBool,
    /// `CLIENT PAUSE`: until when (Unix ms; 0 = none), and whether all
    /// commands wait or only writes.
    until_ms: AtomicU64,
    all: AtomicBool,
    /// FAILOVER holds writes until it ends.
    failover: AtomicBool,
    /// Woken when a pause ends.
    pub ended: Notify,
}

/// Commands that hold under a write pause besides those flagged `write`:
/// they may write or propagate (Redis's "may-replicate" set).
const MAY_REPLICATE: &[&str] = &[
    "publish", "spublish", "eval", "evalsha", "fcall", "pfcount", "wait",
];

impl Pause {
    /// `CLIENT PAUSE ms [WRITE|ALL]`: a later call replaces the mode and
    /// extends (never shortens) the deadline, as Redis does.
    pub fn client_pause(&self, ms: u64, all: bool) {
        let until = now_ms().saturating_add(ms);
        self.until_ms.fetch_max(until, Relaxed);
        self.all.store(all, Relaxed);
        self.engaged.store(true, Relaxed);
    }

    /// `CLIENT UNPAUSE`.
    pub fn client_unpause(&self) {
        self.until_ms.store(0, Relaxed);
        self.all.store(false, Relaxed);
        self.refresh();
    }

    pub fn set_failover(&self, on: bool) {
        self.failover.store(on, Relaxed);
        if on {
            self.engaged.store(true, Relaxed);
        } else {
            self.refresh();
        }
    }

    /// Whether writes are held now (active expiry and replica pings wait too:
    /// a paused master's offset must stand still).
    pub fn writes_paused(&self) -> bool {
        self.engaged.load(Relaxed) && (self.failover.load(Relaxed) || self.client_active())
    }

    fn client_active(&self) -> bool {
        let until = self.until_ms.load(Relaxed);
        until != 0 && now_ms() < until
    }

    fn refresh(&self) {
        let on = self.failover.load(Relaxed) || self.client_active();
        self.engaged.store(on, Relaxed);
        if !on {
            self.ended.notify_waiters();
        }
    }

    /// Whether this command (`queued`: the transaction EXEC would run) must
    /// wait. One relaxed load when nothing is paused.
    #[inline]
    pub fn holds(
        &self,
        args: &[&[u8]],
        queued: Option<&[Vec<Box<[u8]>>]>,
        srv: &crate::server::Server,
    ) -> bool {
        if !self.engaged.load(Relaxed) {
            return false;
        }
        self.holds_slow(args, queued, srv)
    }

    #[cold]
    fn holds_slow(
        &self,
        args: &[&[u8]],
        queued: Option<&[Vec<Box<[u8]>>]>,
        srv: &crate::server::Server,
    ) -> bool {
        let client = self.client_active();
        if !client && !self.failover.load(Relaxed) {
            self.refresh();
            return false;
        }
        if client && self.all.load(Relaxed) {
            return true;
        }
        let writes = |name: &[u8]| {
            srv.lookup(name).is_some_and(|i| {
                let c = &COMMANDS[i];
                c.has(flag::WRITE) || MAY_REPLICATE.contains(&c.name)
            })
        };
        let Some(first) = args.first() else {
            return false;
        };
        if first.eq_ignore_ascii_case(b"exec") {
            // a transaction waits if it would write
            return queued.is_some_and(|q| q.iter().any(|c| c.first().is_some_and(|n| writes(n))));
        }
        // queued commands run at EXEC: that is where they wait
        queued.is_none() && writes(first)
    }

    /// Waits until the pause that held a command is over (or the client
    /// is killed: then `false`).
    pub async fn wait(&self, kill: &Notify) -> bool {
        loop {
            let ended = self.ended.notified();
            tokio::pin!(ended);
            ended.as_mut().enable();
            if !self.engaged.load(Relaxed) {
                return true;
            }
            let until = self.until_ms.load(Relaxed);
            let sleep = async {
                if until == 0 {
                    std::future::pending::<()>().await
                } else {
                    let left = until.saturating_sub(now_ms());
                    tokio::time::sleep(std::time::Duration::from_millis(left + 1)).await
                }
            };
            tokio::select! {
                _ = ended => {}
                _ = sleep => self.refresh(),
                _ = kill.notified() => return false,
            }
        }
    }
}
