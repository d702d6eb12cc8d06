//! End-to-end suites against real binaries: one test binary, one module per topic.

mod clients;
mod differential;
mod protocol;
mod server_features;
