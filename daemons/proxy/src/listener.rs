//! Accepts clients, refusing those over `max_clients` with Redis's error.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

use crate::Proxy;

pub async fn run(
    px: Arc<Proxy>,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((mut s, _)) => {
                    if px.clients.lock().len() >= px.cfg.read().max_clients {
                        px.stats.rejected_connections.fetch_add(1, Relaxed);
                        tokio::spawn(async move {
                            let _ = s.write_all(b"-ERR max number of clients reached\r\n").await;
                        });
                        continue;
                    }
                    tokio::spawn(crate::client::serve(px.clone(), s));
                }
                Err(e) => {
                    // out of file descriptors and the like: back off instead of spinning
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            _ = &mut shutdown => {
                tracing::info!("shutting down");
                return;
            }
        }
    }
}
