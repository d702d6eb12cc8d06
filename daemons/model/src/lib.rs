//! Types every kvfleet component shares: the slot function and the command table.
//!
//! Nothing here does I/O. Topology and config types will join as the proxy and
//! ConfigServer land; the codec lives in `kvfleet-resp`.

pub mod commands;
pub mod slot;

pub use slot::{NUM_SLOTS, hash_key, slot};
