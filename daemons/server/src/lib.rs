//! kvfleet-server: a Redis-compatible data node on a slot-partitioned keyspace.
//!
//! Request path, in call order: [`listener`] (accept) → [`conn`] (read,
//! parse, batch replies) → [`cmd`] (table lookup, locking, handlers in
//! `cmd/<family>.rs`) → [`db`] (slot tables, values, expiry). Beside it:
//! [`persist`] (forkless snapshots, RDB, the write stream and AOF),
//! [`repl`] (PSYNC replication, both sides), [`failover`], [`pause`] and
//! [`script`] (Lua: EVAL and function libraries).

pub mod alloc;
pub mod busypoll;
pub mod cmd;
pub mod config;
pub mod conn;
pub mod cron;
pub mod db;
pub mod evict;
pub mod failover;
pub mod listener;
pub mod pause;
pub mod persist;
pub mod priority;
pub mod quota;
pub mod repl;
pub mod script;
pub mod server;
pub mod util;
pub mod workers;

/// The Redis version we answer as (HELLO, INFO): clients gate features on it.
pub const REDIS_VERSION: &str = "7.0.15";
