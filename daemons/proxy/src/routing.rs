//! The routing in use: slot → group → master's connections.
//!
//! Clients keep an `Arc<Routing>` and compare a version number once per batch
//! to pick up a new one, so a reload swaps routing under live clients
//! without a lock on the request path.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use parking_lot::RwLock;

use crate::backend::{Backends, Server};
use kvfleet_model::Topology;

pub struct GroupRoute {
    pub name: String,
    pub master: Arc<Server>,
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
