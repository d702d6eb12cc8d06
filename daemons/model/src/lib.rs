//! Types every kvfleet component shares: the slot function, the command table
//! and the cluster topology.
//!
//! Nothing here does I/O; the codec lives in `kvfleet-resp`.

pub mod commands;
pub mod slot;
pub mod topology;

pub use slot::{NUM_SLOTS, hash_key, slot};
pub use topology::{Group, Replica, Topology, TopologyError};
