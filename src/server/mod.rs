//! The HTTP server: accept connections within bounds, serve each with hyper, drain on shutdown.
//!
//! [`run`] takes a listener that is already bound, so tests bind port 0 and read the address first.

mod handler;
pub mod limits;
pub mod respond;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::app::App;

/// How long connections still open at the drain deadline get to finish their current answer.
const FORCED_CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Largest request head (request line + headers) accepted; hyper answers 431 beyond it.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Serves `listener` until `shutdown` resolves, then drains: `/readyz` turns 503, no new
/// connections are accepted, in-flight requests are answered within the drain timeout.
pub async fn run(listener: TcpListener, app: Arc<App>, shutdown: impl Future<Output = ()>) {
    let limits = app.config.limits.clone();
    let mut http = http1::Builder::new();
    // Without a timer hyper silently drops the header timeout; with it, slow or idle clients are cut.
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(MAX_HEAD_BYTES);
    let graceful = GracefulShutdown::new();
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    app.readiness.set_ready();
    tokio::pin!(shutdown);
    loop {
        // Waiting for a connection slot before accepting leaves excess clients in the backlog.
        let permit = tokio::select! {
            permit = connections.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(e) => {
                    // Out of file descriptors and similar: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service = service_fn(move |req| handler::handle(app.clone(), "http", req));
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection closed with an error");
            }
            drop(permit);
        });
    }
    app.readiness.start_draining();
    drop(listener);
    drain(&app, &connections, graceful).await;
}

/// Waits for every connection to finish, then force-closes what is left at the drain deadline.
///
/// HTTP/1 connections are not closed from here: a connection accepted a moment ago may hold a
/// request hyper has not parsed yet, and closing it would lose that request. Instead every answer
/// given while draining says `Connection: close`, and idle keep-alive connections end at the header
/// timeout. Only at the deadline does hyper's graceful shutdown cut the stragglers.
async fn drain(app: &App, connections: &Arc<Semaphore>, graceful: GracefulShutdown) {
    let limits = &app.config.limits;
    tracing::info!(timeout_s = limits.drain_timeout.as_secs_f64(), "draining");
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    // Every open connection holds a permit, so getting them all back means all are closed.
    match tokio::time::timeout(limits.drain_timeout, connections.acquire_many(all)).await {
        Ok(_) => tracing::info!("drained; all connections closed"),
        Err(_) => {
            tracing::warn!("drain timeout reached; closing remaining connections");
            let _ = tokio::time::timeout(FORCED_CLOSE_GRACE, graceful.shutdown()).await;
        }
    }
}
