//! Accept loop: connection cap, accept-error backoff, one task per client,
//! and the background cron.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

use crate::server::Server;

pub async fn run(
    srv: Arc<Server>,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::spawn(crate::cron::run(srv.clone()));
    tokio::pin!(shutdown);
    let mut backoff = Duration::from_millis(5);
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = &mut shutdown => {
                tracing::info!("shutting down");
                return;
            }
        };
        match accepted {
            Ok((mut sock, _)) => {
                backoff = Duration::from_millis(5);
                let max = srv.rt.read().maxclients;
                if srv.clients.lock().len() >= max {
                    srv.stats.rejected_connections.fetch_add(1, Relaxed);
                    tokio::spawn(async move {
                        let _ = sock
                            .write_all(b"-ERR max number of clients reached\r\n")
                            .await;
                    });
                    continue;
                }
                crate::workers::Workers::serve(&srv, sock);
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}
