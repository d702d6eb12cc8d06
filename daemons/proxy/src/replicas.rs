//! Replica health for zone-aware reads: every `replica_check_ms`, each
//! replica's `INFO replication` (and its master's offset) decides whether it
//! may take reads. Only replicas a check has found fit get any; until then,
//! and whenever a check fails, reads stay on the master.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use crate::Proxy;
use crate::backend::info;

/// `(healthy, serving)` from a replica's `INFO replication`: serving when it
/// is a replica holding a full copy; healthy when also its link is up and it
/// is at most `max_lag` bytes behind `master_offset`.
pub fn assess(
    i: &HashMap<String, String>,
    master_offset: Option<u64>,
    max_lag: u64,
) -> (bool, bool) {
    let get = |k: &str| i.get(k).map(String::as_str);
    let serving = get("role") == Some("slave") && get("master_sync_in_progress") == Some("0");
    let offset = get("slave_repl_offset").and_then(|v| v.parse::<u64>().ok());
    let close = match (master_offset, offset) {
        (Some(m), Some(r)) => m.saturating_sub(r) <= max_lag,
        _ => false,
    };
    (
        serving && get("master_link_status") == Some("up") && close,
        serving,
    )
}

pub async fn check_loop(px: Arc<Proxy>) {
    let (every, max_lag) = {
        let c = px.cfg.read();
        (
            Duration::from_millis(c.replica_check_ms),
            c.replica_max_lag_bytes,
        )
    };
    let opts = px.backends.opts().clone();
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let r = px.routing.get();
        for g in r.groups.iter().filter(|g| !g.replicas.is_empty()) {
            let master_offset = info(&g.master.addr, "replication", &opts)
                .await
                .ok()
                .and_then(|m| m.get("master_repl_offset")?.parse::<u64>().ok());
            for rep in &g.replicas {
                let (healthy, serving) = match info(&rep.server.addr, "replication", &opts).await {
                    Ok(m) => assess(&m, master_offset, max_lag),
                    Err(_) => (false, false),
                };
                if rep.healthy.swap(healthy, Relaxed) != healthy {
                    tracing::info!(group = %g.name, replica = %rep.server.addr, healthy, "replica read eligibility changed");
                }
                rep.serving.store(serving, Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn lagging_syncing_or_unlinked_replicas_take_no_reads() {
        let good = [
            ("role", "slave"),
            ("master_link_status", "up"),
            ("master_sync_in_progress", "0"),
            ("slave_repl_offset", "1000"),
        ];
        assert_eq!(assess(&info(&good), Some(1500), 1000), (true, true));
        assert_eq!(
            assess(&info(&good), Some(5000), 1000),
            (false, true),
            "lags 4000 bytes"
        );
        assert_eq!(
            assess(&info(&good), None, 1000),
            (false, true),
            "master unknown"
        );
        let mut down = good;
        down[1] = ("master_link_status", "down");
        assert_eq!(assess(&info(&down), Some(1000), 1000), (false, true));
        let mut syncing = good;
        syncing[2] = ("master_sync_in_progress", "1");
        assert_eq!(assess(&info(&syncing), Some(1000), 1000), (false, false));
        assert_eq!(
            assess(&info(&[("role", "master")]), Some(0), 1000),
            (false, false)
        );
    }
}
