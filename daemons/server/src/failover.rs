//! `FAILOVER`: a planned switchover with no acknowledged write lost, as
//! Redis 7.0 does it. The master holds client writes, waits until a replica
//! (the named one, or any) has acknowledged its whole stream, then becomes
//! a replica of it, sending `PSYNC <replid> <offset> FAILOVER`: the target
//! promotes itself before answering, and since it holds the same history
//! under its previous id, the old master continues with `+CONTINUE` (no
//! full sync). Held writes then get `-READONLY`, and clients move on to the
//! new master.

use std::sync::atomic::{AtomicU8, Ordering::Relaxed};
use std::time::Instant;

use crate::server::Server;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    None,
    WaitForSync,
    InProgress,
}

impl State {
    /// As `INFO replication` spells it (`master_failover_state`).
    pub fn name(self) -> &'static str {
        match self {
            State::None => "no-failover",
            State::WaitForSync => "waiting-for-sync",
            State::InProgress => "failover-in-progress",
        }
    }
}

#[derive(Debug, Default)]
struct Plan {
    target: Option<(String, u16)>,
    deadline: Option<Instant>,
    force: bool,
}

#[derive(Debug, Default)]
pub struct Failover {
    state: AtomicU8,
    plan: parking_lot::Mutex<Plan>,
}

/// A parsed `FAILOVER [TO host port [FORCE]] [ABORT] [TIMEOUT ms]`.
#[derive(Debug, Default)]
pub struct Request {
    /// The port as given: one out of range matches no replica, as in Redis.
    pub target: Option<(String, i64)>,
    pub timeout_ms: Option<u64>,
    pub force: bool,
    pub abort: bool,
}

impl Failover {
    pub fn state(&self) -> State {
        match self.state.load(Relaxed) {
            1 => State::WaitForSync,
            2 => State::InProgress,
            _ => State::None,
        }
    }

    fn set(&self, s: State) {
        self.state.store(
            match s {
                State::None => 0,
                State::WaitForSync => 1,
                State::InProgress => 2,
            },
            Relaxed,
        );
    }

    /// Starts a failover (errors as Redis words them).
    pub fn start(&self, srv: &Server, req: Request) -> Result<(), String> {
        if req.abort {
            if self.state() == State::None {
                return Err("ERR No failover in progress.".into());
            }
            self.abort(srv, "Failover manually aborted");
            return Ok(());
        }
        if srv.follow.is_replica() {
            return Err("ERR FAILOVER is not valid when server is a replica.".into());
        }
        let replicas = crate::repl::replica_addrs(srv);
        if replicas.is_empty() {
            return Err("ERR FAILOVER requires connected replicas.".into());
        }
        if self.state() != State::None {
            return Err("ERR FAILOVER already in progress.".into());
        }
        if req.force && (req.timeout_ms.is_none() || req.target.is_none()) {
            return Err(
                "ERR FAILOVER with force option requires both a timeout and target HOST and IP."
                    .into(),
            );
        }
        if let Some(t) = &req.target {
            match replicas.iter().find(|r| r.0 == t.0 && r.1 as i64 == t.1) {
                None => return Err("ERR FAILOVER target HOST and PORT is not a replica.".into()),
                Some(r) if !r.2 => return Err("ERR FAILOVER target replica is not online.".into()),
                Some(_) => {}
            }
        }
        tracing::info!(target = ?req.target, "FAILOVER requested");
        *self.plan.lock() = Plan {
            // a port that matched a replica is a u16
            target: req.target.map(|(h, p)| (h, p as u16)),
            deadline: req
                .timeout_ms
                .map(|ms| Instant::now() + std::time::Duration::from_millis(ms)),
            force: req.force,
        };
        self.set(State::WaitForSync);
        srv.pause.set_failover(true);
        crate::repl::request_acks(srv);
        Ok(())
    }

    /// Called from the cron: hands over once the target caught up, or
    /// gives up (or forces it) at the deadline.
    pub fn tick(&self, srv: &Server) {
        if self.state() != State::WaitForSync {
            return;
        }
        let mut plan = self.plan.lock();
        if plan.deadline.is_some_and(|d| Instant::now() >= d) {
            if plan.force
                && let Some(t) = plan.target.clone()
            {
                tracing::info!(target = ?t, "FAILOVER timeout exceeded, failing over");
                drop(plan);
                self.hand_over(srv, t);
            } else {
                drop(plan);
                self.abort(srv, "Replica never caught up before timeout");
            }
            return;
        }
        let offset = srv.persist.feed.inner.lock().repl.offset;
        let caught_up = crate::repl::replica_addrs(srv)
            .into_iter()
            .filter(|r| r.3 == offset)
            .find(|r| {
                plan.target
                    .as_ref()
                    .is_none_or(|t| t.0 == r.0 && t.1 == r.1)
            });
        match caught_up {
            Some((host, port, ..)) => {
                plan.target = Some((host.clone(), port));
                drop(plan);
                tracing::info!(target = %format!("{host}:{port}"), "failover target is synced, failing over");
                self.hand_over(srv, (host, port));
            }
            None => {
                drop(plan);
                crate::repl::request_acks(srv);
            }
        }
    }

    fn hand_over(&self, srv: &Server, target: (String, u16)) {
        self.set(State::InProgress);
        crate::repl::replicaof(srv, Some(target));
    }

    /// The link to the new master answered PSYNC: done.
    pub fn link_established(&self, srv: &Server) {
        if self.state() == State::InProgress {
            tracing::info!("FAILOVER complete");
            self.clear(srv);
        }
    }

    pub fn abort(&self, srv: &Server, why: &str) {
        let state = self.state();
        if state == State::None {
            return;
        }
        tracing::warn!(reason = why, "FAILOVER aborted");
        if state == State::InProgress {
            crate::repl::replicaof(srv, None);
        }
        self.clear(srv);
    }

    fn clear(&self, srv: &Server) {
        *self.plan.lock() = Plan::default();
        self.set(State::None);
        srv.pause.set_failover(false);
    }
}
