//! serve's HTTP listener, by hand over hyper because `axum::serve` has no header-read timeout
//! and no connection cap: one client sending half a request would otherwise hold a connection
//! (and a graceful shutdown) forever, and a crowd of them every file descriptor. HTTP/1.1 only,
//! as the API and the origin are served (players and SDKs speak it; TLS ends at a proxy).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tracing::{debug, info, warn};

/// How connections are served and closed.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub max_connections: usize,
    /// After the close signal, how long open connections may take to finish.
    pub close_grace: Duration,
}

/// Serves `app` on `listener` until `close` turns true, then lets open connections finish
/// their current request for at most `close_grace` and drops the rest.
pub async fn serve(listener: TcpListener, app: Router, limits: Limits, mut close: watch::Receiver<bool>) {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    loop {
        // At the cap, stop accepting: new clients wait in the kernel's backlog.
        let permit = tokio::select! {
            p = Arc::clone(&permits).acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = closed(&mut close) => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(r) => r,
                Err(e) => {
                    // EMFILE and the like: back off instead of spinning.
                    warn!("accepting a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = closed(&mut close) => break,
        };
        let service = TowerToHyperService::new(app.clone());
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
        let conn = http.serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                debug!(%peer, "connection: {e}");
            }
            drop(permit);
        });
    }
    drop(listener);
    let open = limits.max_connections.max(1) - permits.available_permits();
    info!(open, grace = ?limits.close_grace, "closing HTTP connections");
    if tokio::time::timeout(limits.close_grace, graceful.shutdown()).await.is_err() {
        warn!("HTTP connections still open after {:?}: dropped", limits.close_grace);
    }
}

/// Resolves once `close` is true (or its sender is gone).
async fn closed(close: &mut watch::Receiver<bool>) {
    let _ = close.wait_for(|c| *c).await.is_ok();
}
