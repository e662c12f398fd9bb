//! Serving a router: connection limits, graceful shutdown, signals.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;

use crate::Result;

/// Connection-level limits of [`serve_with`].
#[derive(Debug, Clone)]
pub struct ServeLimits {
    /// Most time a client may take to send a request's headers; also how long an idle
    /// keep-alive connection stays open.
    pub header_timeout: Duration,
    /// Most connections open at once; later clients wait in the listen backlog.
    pub max_connections: usize,
    /// On shutdown, how long requests in flight may take to finish before they are cancelled.
    pub shutdown_timeout: Duration,
}

impl Default for ServeLimits {
    fn default() -> Self {
        ServeLimits {
            header_timeout: Duration::from_secs(30),
            max_connections: 1024,
            shutdown_timeout: Duration::from_secs(30),
        }
    }
}

/// [`serve_with`] default limits.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    serve_with(listener, app, shutdown, ServeLimits::default()).await
}

/// Serve `app` (HTTP/1.1) on `listener` within `limits` until `shutdown` resolves; then stop
/// accepting, let the requests in flight finish for at most `limits.shutdown_timeout`, and
/// cancel what is left.
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    limits: ServeLimits,
) -> Result<()> {
    use tokio_util::sync::CancellationToken;
    let max = limits.max_connections.clamp(1, tokio::sync::Semaphore::MAX_PERMITS);
    let slots = Arc::new(tokio::sync::Semaphore::new(max));
    let drain = CancellationToken::new();
    let cancel = CancellationToken::new();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            biased;
            _ = &mut shutdown => break,
            p = Arc::clone(&slots).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let stream = tokio::select! {
            biased;
            _ = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let svc = hyper_util::service::TowerToHyperService::new(app.clone());
        let (drain, cancel) = (drain.clone(), cancel.clone());
        let header_timeout = limits.header_timeout;
        tokio::spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(header_timeout);
            // With upgrades: WebSocket routes (`agentgen envs serve`'s `/ws`) take over the
            // connection after the handshake.
            let conn =
                builder.serve_connection(hyper_util::rt::TokioIo::new(stream), svc).with_upgrades();
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = cancel.cancelled() => {}
                _ = drain.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    tokio::select! {
                        _ = conn.as_mut() => {}
                        _ = cancel.cancelled() => {}
                    }
                }
            }
            drop(permit);
        });
    }
    drop(listener);
    drain.cancel();
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    if tokio::time::timeout(limits.shutdown_timeout, slots.acquire_many(all)).await.is_err() {
        let open = max - slots.available_permits();
        tracing::warn!(
            "shutdown: {open} connection(s) still busy after {:?}; cancelling them",
            limits.shutdown_timeout
        );
        cancel.cancel();
    }
    Ok(())
}

/// Resolves on SIGINT or SIGTERM (Ctrl-C elsewhere).
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
            (Ok(mut int), Ok(mut term)) => {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
