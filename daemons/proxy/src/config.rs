//! `kvfleet-proxy` configuration: a TOML file, every field optional, flags
//! override. The topology (which group owns which slots) is a separate file,
//! because the ConfigServer will replace it while this file stays put.

use serde::Deserialize;

pub const DEFAULT_PORT: u16 = 6380;
pub const DEFAULT_CONNS_PER_BACKEND: usize = 1;
pub const DEFAULT_MAX_CLIENTS: usize = 10_000;
pub const DEFAULT_MAX_PENDING: usize = 10_000;
pub const DEFAULT_BACKEND_TIMEOUT_MS: u64 = 10_000;
pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 1_000;
pub const DEFAULT_DNS_REFRESH_SECS: u64 = 30;
pub const DEFAULT_SLOWLOG_SLOWER_THAN: i64 = 10_000;
pub const DEFAULT_SLOWLOG_MAX_LEN: usize = 128;
pub const DEFAULT_THREADS: usize = 1;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on. Default `127.0.0.1`.
    pub bind: String,
    /// Client port. Default 6380.
    pub port: u16,
    /// Password clients must give with `AUTH`; empty means none. Default empty.
    pub password: String,
    /// Password the proxy gives backends; empty means none. Default empty.
    pub backend_password: String,
    /// Topology file (groups, masters, slot ranges). Default none: `--group` flags instead.
    pub topology: String,
    /// Shared pipelined connections per backend server and protocol. Default
    /// 1: one connection gathers the most clients' commands into each write
    /// (fewer system calls on the proxy and on the server); raise it with `threads`.
    pub conns_per_backend: usize,
    /// Simultaneous clients; more are refused with an error. Default 10000.
    pub max_clients: usize,
    /// Requests one client may have in flight before the proxy stops reading
    /// from it (backpressure). Default 10000.
    pub max_pending: usize,
    /// A client whose replies waiting in the proxy exceed this many bytes
    /// (it sends but does not read) is closed; 0 means no limit. Default 256 MiB.
    pub max_pending_bytes: usize,
    /// Close clients idle this many seconds; 0 means never. Default 0.
    pub client_timeout: u64,
    /// A backend connection with requests in flight and no reply for this
    /// long is closed and its requests fail. Default 10000 ms.
    pub backend_timeout_ms: u64,
    /// Default 1000 ms.
    pub connect_timeout_ms: u64,
    /// Backend host names are looked up again this often; a connection whose
    /// peer is no longer among the answers is replaced. Default 30 s.
    pub dns_refresh_secs: u64,
    /// Whether FLUSHALL / FLUSHDB reach the backends (they wipe every group). Default true.
    pub allow_flushall: bool,
    /// Slow log threshold in microseconds, measured at the proxy; negative disables. Default 10000.
    pub slowlog_log_slower_than: i64,
    /// Default 128.
    pub slowlog_max_len: usize,
    /// Worker threads; 0 means one per core. Default 1: on a host shared with
    /// servers and clients one thread wastes least on cross-thread wake-ups;
    /// see docs/proxy.md for the measurements.
    pub threads: usize,
    /// Port of the Prometheus `/metrics` endpoint (on `bind`); 0 means off. Default 0.
    pub metrics_port: u16,
    /// This proxy's availability zone, for `prefer-replica-same-zone`. Default empty.
    pub zone: String,
    /// Where reads go: `master`, or `prefer-replica-same-zone` (a healthy
    /// replica in this zone, else the master, else a healthy replica
    /// elsewhere). Writes always go to the master. Default `master`.
    pub read_policy: String,
    /// A replica further behind its master than this many bytes of the
    /// replication stream gets no reads. Default 1048576.
    pub replica_max_lag_bytes: u64,
    /// How often replicas' health and lag are checked. Default 1000 ms.
    pub replica_check_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            bind: "127.0.0.1".into(),
            port: DEFAULT_PORT,
            password: String::new(),
            backend_password: String::new(),
            topology: String::new(),
            conns_per_backend: DEFAULT_CONNS_PER_BACKEND,
            max_clients: DEFAULT_MAX_CLIENTS,
            max_pending: DEFAULT_MAX_PENDING,
            max_pending_bytes: 256 << 20,
            client_timeout: 0,
            backend_timeout_ms: DEFAULT_BACKEND_TIMEOUT_MS,
            connect_timeout_ms: DEFAULT_CONNECT_TIMEOUT_MS,
            dns_refresh_secs: DEFAULT_DNS_REFRESH_SECS,
            allow_flushall: true,
            slowlog_log_slower_than: DEFAULT_SLOWLOG_SLOWER_THAN,
            slowlog_max_len: DEFAULT_SLOWLOG_MAX_LEN,
            threads: DEFAULT_THREADS,
            metrics_port: 0,
            zone: String::new(),
            read_policy: "master".into(),
            replica_max_lag_bytes: 1 << 20,
            replica_check_ms: 1000,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid config: {0}")]
    Toml(#[from] toml::de::Error),
    #[error("invalid config: {0}")]
    Invalid(String),
}

impl Config {
    pub fn from_toml_str(s: &str) -> Result<Config, ConfigError> {
        let c: Config = toml::from_str(s)?;
        c.validate()?;
        Ok(c)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: &str| Err(ConfigError::Invalid(m.into()));
        if self.conns_per_backend == 0 || self.conns_per_backend > 64 {
            return bad("conns_per_backend must be 1-64");
        }
        if self.max_pending == 0 {
            return bad("max_pending must be at least 1");
        }
        if !matches!(
            self.read_policy.as_str(),
            "master" | "prefer-replica-same-zone"
        ) {
            return bad("read_policy must be master or prefer-replica-same-zone");
        }
        if self.backend_timeout_ms == 0
            || self.connect_timeout_ms == 0
            || self.replica_check_ms == 0
        {
            return bad("timeouts must be positive");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_file_states_every_default() {
        let text = include_str!("../kvfleet-proxy.example.toml");
        assert_eq!(Config::from_toml_str(text).unwrap(), Config::default());
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(Config::from_toml_str("conns_per_backend = 0").is_err());
        assert!(Config::from_toml_str("nonsense = 1").is_err());
    }
}
