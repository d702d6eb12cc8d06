//! End-to-end suites against real binaries: one test binary, one module per topic.

mod clients;
mod differential;
mod persist;
mod protocol;
mod proxy;
mod random_ops;
mod replication;
mod scripting;
mod server_features;
mod streams;
mod workers;
