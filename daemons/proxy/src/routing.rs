//! The routing in use: slot → group → master's connections.
//!
//! Clients keep an `Arc<Routing>` and compare a version number once per batch
//! to pick up a new one, so a reload swaps routing under live clients
//! without a lock on the request path.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use parking_lot::RwLock;

use crate::backend::{Backends, Server};
use kvfleet_model::Topology;

pub struct ReplicaRoute {
    pub server: Arc<Server>,
    pub zone: String,
    /// Link up, not syncing, and within the lag cutoff at the last check.
    pub healthy: AtomicBool,
    /// Answers and holds a full copy (maybe stale): used when the master is down.
    pub serving: AtomicBool,
}

pub struct GroupRoute {
    pub name: String,
    pub master: Arc<Server>,
    pub replicas: Vec<ReplicaRoute>,
}

impl GroupRoute {
    /// Where a read goes under `prefer-replica-same-zone`: a healthy replica
    /// in `zone`, else the master while it is reachable, else a healthy
    /// replica in another zone, else the master (whose error the client gets).
    pub fn read_target(&self, zone: &str) -> &Arc<Server> {
        let healthy = |r: &&ReplicaRoute| r.healthy.load(Relaxed);
        fn pick(it: Vec<&ReplicaRoute>) -> Option<&Arc<Server>> {
            (!it.is_empty()).then(|| &it[fastrand::usize(..it.len())].server)
        }
        let same: Vec<_> = self
            .replicas
            .iter()
            .filter(healthy)
            .filter(|r| r.zone == zone)
            .collect();
        if let Some(s) = pick(same) {
            return s;
        }
        let master_down = self.master.state.connected.load(Relaxed) == 0
            && self.master.state.errors.load(Relaxed) > 0;
        if master_down {
            let other: Vec<_> = self.replicas.iter().filter(healthy).collect();
            if let Some(s) = pick(other) {
                return s;
            }
            // stale beats unavailable for a cache while the master is gone
            let serving: Vec<_> = self
                .replicas
                .iter()
                .filter(|r| r.serving.load(Relaxed))
                .collect();
            if let Some(s) = pick(serving) {
                return s;
            }
        }
        &self.master
    }
}

pub struct Routing {
    pub topo: Topology,
    /// Group index of each slot.
    pub owners: Vec<u16>,
    pub groups: Vec<GroupRoute>,
}

impl Routing {
    /// Builds from a validated topology.
    pub fn build(topo: Topology, backends: &Backends) -> Routing {
        let owners = topo.slot_owners().expect("validated topology");
        let groups = topo
            .groups
            .iter()
            .map(|g| GroupRoute {
                name: g.name.clone(),
                master: backends.get(&g.master),
                replicas: g
                    .replicas
                    .iter()
                    .map(|r| ReplicaRoute {
                        server: backends.get(&r.addr),
                        zone: r.zone.clone(),
                        healthy: AtomicBool::new(false),
                        serving: AtomicBool::new(false),
                    })
                    .collect(),
            })
            .collect();
        Routing {
            topo,
            owners,
            groups,
        }
    }

    #[inline]
    pub fn group_of(&self, slot: u16) -> usize {
        self.owners[slot as usize] as usize
    }
}

pub struct Current {
    routing: RwLock<Arc<Routing>>,
    version: AtomicU64,
}

impl Current {
    pub fn new(r: Routing) -> Current {
        Current {
            routing: RwLock::new(Arc::new(r)),
            version: AtomicU64::new(1),
        }
    }

    pub fn get(&self) -> Arc<Routing> {
        self.routing.read().clone()
    }

    pub fn version(&self) -> u64 {
        self.version.load(Relaxed)
    }

    pub fn set(&self, r: Routing) {
        *self.routing.write() = Arc::new(r);
        self.version.fetch_add(1, Relaxed);
    }
}
