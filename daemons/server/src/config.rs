//! `kvfleet-server` configuration: a TOML file, every field optional.
//!
//! Defaults are Redis 7.0's where Redis has the setting. Fields that
//! `CONFIG SET` may change at run time live in [`crate::server::Runtime`].

use serde::Deserialize;

pub const DEFAULT_BIND: &str = "127.0.0.1";
pub const DEFAULT_PORT: u16 = 6379;
pub const DEFAULT_MAXCLIENTS: usize = 10000;
pub const DEFAULT_MAXMEMORY_POLICY: &str = "noeviction";
pub const DEFAULT_MAXMEMORY_SAMPLES: usize = 5;
pub const DEFAULT_LFU_LOG_FACTOR: u32 = 10;
pub const DEFAULT_LFU_DECAY_TIME: u32 = 1;
pub const DEFAULT_HZ: u32 = 10;
pub const DEFAULT_PROTO_MAX_BULK_LEN: usize = 512 * 1024 * 1024;
pub const DEFAULT_SLOWLOG_SLOWER_THAN: i64 = 10_000;
pub const DEFAULT_SLOWLOG_MAX_LEN: usize = 128;
pub const DEFAULT_PUBSUB_HARD: usize = 32 * 1024 * 1024;
pub const DEFAULT_PUBSUB_SOFT: usize = 8 * 1024 * 1024;
pub const DEFAULT_PUBSUB_SOFT_SECONDS: u64 = 60;
pub const DEFAULT_SAVE: &str = "3600 1 300 100 60 10000";

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on. Default `127.0.0.1`.
    pub bind: String,
    /// TCP port. Default 6379.
    pub port: u16,
    /// Password for `AUTH`; empty means none. Default empty.
    pub requirepass: String,
    /// Maximum simultaneous clients. Default 10000.
    pub maxclients: usize,
    /// Memory limit in bytes; 0 means none. Default 0.
    pub maxmemory: u64,
    /// One of Redis's eviction policies. Default `noeviction`.
    pub maxmemory_policy: String,
    /// Keys sampled per eviction. Default 5.
    pub maxmemory_samples: usize,
    /// How slowly the LFU counter saturates (Redis's `lfu-log-factor`). Default 10.
    pub lfu_log_factor: u32,
    /// Minutes per step of LFU counter decay; 0 means no decay. Default 1.
    pub lfu_decay_time: u32,
    /// Sorted sets of up to this many members stay packed in one buffer
    /// (Redis's `zset-max-listpack-entries`, decision 0016). Default 128.
    pub zset_max_listpack_entries: usize,
    /// ... and of members up to this many bytes (at most 255). Default 64.
    pub zset_max_listpack_value: usize,
    /// A hash of up to this many pairs is packed in one buffer, as Redis's
    /// listpack (decision 0017). Default 512.
    pub hash_max_listpack_entries: usize,
    /// ... and of fields and values up to this many bytes (at most 255). Default 64.
    pub hash_max_listpack_value: usize,
    /// A set of up to this many integers is a sorted integer array, as
    /// Redis's intset (decision 0018). Default 512.
    pub set_max_intset_entries: usize,
    /// Close idle clients after this many seconds; 0 means never. Default 0.
    pub timeout: u64,
    /// Background task frequency (active expiry). Default 10.
    pub hz: u32,
    /// Largest bulk string accepted, bytes. Default 512 MB.
    pub proto_max_bulk_len: usize,
    /// Slow log threshold in microseconds; negative disables. Default 10000.
    pub slowlog_log_slower_than: i64,
    /// Slow log entries kept. Default 128.
    pub slowlog_max_len: usize,
    /// Pub/sub client output buffer hard limit, bytes. Default 32 MB.
    pub pubsub_hard_limit: usize,
    /// Pub/sub soft limit, bytes, tolerated for `pubsub_soft_seconds`. Default 8 MB.
    pub pubsub_soft_limit: usize,
    /// Default 60.
    pub pubsub_soft_seconds: u64,
    /// Worker threads, each with its own event loop; 0 means one per core. Default 0.
    pub threads: usize,
    /// Start on one worker and add the next only while the active ones are
    /// busy and a core is idle (decision 0013); `false` spreads clients over
    /// all `threads` from the start. Default true.
    pub adaptive_threads: bool,
    /// While a worker is at least half busy and a core is idle, poll this
    /// many microseconds for the next request before sleeping (decision
    /// 0014); 0 never polls, at most 1000. Default 20.
    pub busy_poll_us: u64,
    /// A worker at least this busy (share of the governor's last period)
    /// writes its replies in bursts, after serving every ready client
    /// (decision 0015); 0 always, above 1 never. Default 0.97.
    pub reply_burst_busy: f64,
    /// Slots this server owns, as ranges like `"0-511"`; empty means all. Default all.
    pub slots: Vec<String>,
    /// Address returned in `-MOVED` errors for slots owned elsewhere. Default empty.
    pub moved_addr: String,
    /// Working directory for RDB files. Default `.`.
    pub dir: String,
    /// RDB file name, loaded at start and written by SAVE/BGSAVE. Default `dump.rdb`.
    pub dbfilename: String,
    /// Save points, Redis's syntax: `"<seconds> <changes> ..."`; a background
    /// save runs when any is reached; empty disables. Default Redis's
    /// `"3600 1 300 100 60 10000"`.
    pub save: String,
    /// Store strings over 20 bytes LZF-compressed in RDB files (and AOF
    /// bases, and full syncs) when that makes them smaller. Default true.
    pub rdbcompression: bool,
    /// Append-only file: every write logged (Redis 7's multi-part layout in
    /// `dir/appenddirname`); loaded at start instead of the RDB file. Default false.
    pub appendonly: bool,
    /// `always` (fsync before each reply), `everysec`, or `no`. Default `everysec`.
    pub appendfsync: String,
    /// Default `appendonlydir`.
    pub appenddirname: String,
    /// Base name of the AOF parts. Default `appendonly.aof`.
    pub appendfilename: String,
    /// Load an AOF whose last command was cut off (a crash mid-write) up to
    /// that command, truncating the file there. Default true.
    pub aof_load_truncated: bool,
    /// `"host port"` of a master to replicate at start; empty = a master. Default empty.
    pub replicaof: String,
    /// Bytes of write stream kept for replicas' partial resyncs. Default 1 MB.
    pub repl_backlog_size: u64,
    /// Refuse writes (`-NOREPLICAS`) unless at least this many replicas
    /// acknowledged within `min_replicas_max_lag` seconds; 0 = off. Default 0.
    pub min_replicas_to_write: u64,
    /// Default 10.
    pub min_replicas_max_lag: u64,
    /// A replica's preference for promotion (lower first, 0 = never),
    /// reported as `slave_priority` for failover tooling. Default 100.
    pub replica_priority: u64,
    /// Replicas refuse client writes. Default true.
    pub replica_read_only: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            bind: DEFAULT_BIND.into(),
            port: DEFAULT_PORT,
            requirepass: String::new(),
            maxclients: DEFAULT_MAXCLIENTS,
            maxmemory: 0,
            maxmemory_policy: DEFAULT_MAXMEMORY_POLICY.into(),
            maxmemory_samples: DEFAULT_MAXMEMORY_SAMPLES,
            lfu_log_factor: DEFAULT_LFU_LOG_FACTOR,
            lfu_decay_time: DEFAULT_LFU_DECAY_TIME,
            zset_max_listpack_entries: 128,
            hash_max_listpack_entries: 512,
            hash_max_listpack_value: 64,
            set_max_intset_entries: 512,
            zset_max_listpack_value: 64,
            timeout: 0,
            hz: DEFAULT_HZ,
            proto_max_bulk_len: DEFAULT_PROTO_MAX_BULK_LEN,
            slowlog_log_slower_than: DEFAULT_SLOWLOG_SLOWER_THAN,
            slowlog_max_len: DEFAULT_SLOWLOG_MAX_LEN,
            pubsub_hard_limit: DEFAULT_PUBSUB_HARD,
            pubsub_soft_limit: DEFAULT_PUBSUB_SOFT,
            pubsub_soft_seconds: DEFAULT_PUBSUB_SOFT_SECONDS,
            threads: 0,
            adaptive_threads: true,
            busy_poll_us: 20,
            reply_burst_busy: 0.97,
            slots: Vec::new(),
            moved_addr: String::new(),
            dir: ".".into(),
            dbfilename: "dump.rdb".into(),
            save: DEFAULT_SAVE.into(),
            rdbcompression: true,
            appendonly: false,
            appendfsync: "everysec".into(),
            appenddirname: "appendonlydir".into(),
            appendfilename: "appendonly.aof".into(),
            aof_load_truncated: true,
            replicaof: String::new(),
            repl_backlog_size: crate::repl::BACKLOG_SIZE as u64,
            min_replicas_to_write: 0,
            min_replicas_max_lag: 10,
            replica_priority: 100,
            replica_read_only: true,
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

/// Redis's eviction policies.
pub const POLICIES: &[&str] = &[
    "noeviction",
    "allkeys-lru",
    "volatile-lru",
    "allkeys-lfu",
    "volatile-lfu",
    "allkeys-random",
    "volatile-random",
    "volatile-ttl",
];

impl Config {
    pub fn from_toml_str(s: &str) -> Result<Self, ConfigError> {
        let c: Config = toml::from_str(s)?;
        c.validate()?;
        Ok(c)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if !POLICIES.contains(&self.maxmemory_policy.as_str()) {
            return Err(ConfigError::Invalid(format!(
                "unknown maxmemory_policy '{}'",
                self.maxmemory_policy
            )));
        }
        if self.hz == 0 || self.hz > 500 {
            return Err(ConfigError::Invalid("hz must be 1..500".into()));
        }
        parse_slot_ranges(&self.slots).map_err(ConfigError::Invalid)?;
        crate::persist::parse_save(&self.save).map_err(ConfigError::Invalid)?;
        if crate::persist::aof::Fsync::parse(&self.appendfsync).is_none() {
            return Err(ConfigError::Invalid(
                "appendfsync must be always, everysec or no".into(),
            ));
        }
        if [&self.appenddirname, &self.appendfilename]
            .iter()
            .any(|n| n.is_empty() || n.contains('/'))
        {
            return Err(ConfigError::Invalid(
                "appenddirname and appendfilename must be names, not paths".into(),
            ));
        }
        if self.dbfilename.is_empty() || self.dbfilename.contains('/') {
            return Err(ConfigError::Invalid(
                "dbfilename must be a file name, not a path".into(),
            ));
        }
        Ok(())
    }
}

/// Parses `["0-511", "700"]` into a list of inclusive ranges.
pub fn parse_slot_ranges(v: &[String]) -> Result<Vec<(u16, u16)>, String> {
    let mut out = Vec::new();
    for r in v {
        let (a, b) = r.split_once('-').unwrap_or((r, r));
        let a: u16 = a
            .trim()
            .parse()
            .map_err(|_| format!("bad slot range '{r}'"))?;
        let b: u16 = b
            .trim()
            .parse()
            .map_err(|_| format!("bad slot range '{r}'"))?;
        if a > b || b as usize >= kvfleet_model::NUM_SLOTS {
            return Err(format!("bad slot range '{r}'"));
        }
        out.push((a, b));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_file_equals_defaults() {
        let s = include_str!("../kvfleet-server.example.toml");
        assert_eq!(Config::from_toml_str(s).unwrap(), Config::default());
    }

    #[test]
    fn bad_values_are_rejected_with_a_reason() {
        let e = Config::from_toml_str("maxmemory_policy = \"lru\"").unwrap_err();
        assert!(e.to_string().contains("maxmemory_policy"));
        assert!(Config::from_toml_str("nosuch = 1").is_err());
        assert!(Config::from_toml_str("slots = [\"5-1\"]").is_err());
    }
}
