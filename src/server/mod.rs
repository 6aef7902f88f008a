//! The HTTP server: accept connections within bounds, serve each with hyper, drain on shutdown.
//!
//! [`run`] takes a listener that is already bound, so tests bind port 0 and read the address first.

mod handler;
pub mod limits;
pub mod respond;
pub mod tls;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::app::App;

/// How long connections still open at the drain deadline get to finish their current answer.
const FORCED_CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Concurrent streams per HTTP/2 connection.
const MAX_H2_STREAMS: u32 = 128;

/// Largest request head (request line + headers) accepted; hyper answers 431 beyond it.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Serves `listener` until `shutdown` resolves, then drains: `/readyz` turns 503, no new
/// connections are accepted, in-flight requests are answered within the drain timeout.
pub async fn run(listener: TcpListener, app: Arc<App>, shutdown: impl Future<Output = ()>) {
    let limits = app.config.limits.clone();
    let mut h1 = http1::Builder::new();
    // Without a timer hyper silently drops the header timeout; with it, slow or idle clients are cut.
    h1.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(MAX_HEAD_BYTES);
    let mut h2 = http2::Builder::new(TokioExecutor::new());
    // HTTP/2 has no header timeout; bound streams and header size, and ping idle peers.
    h2.timer(TokioTimer::new())
        .max_concurrent_streams(MAX_H2_STREAMS)
        .max_header_list_size(limits::MAX_HEADER_BYTES as u32)
        .keep_alive_interval(Some(limits.header_timeout))
        .keep_alive_timeout(limits.header_timeout);
    let (h1, h2) = (Arc::new(h1), Arc::new(h2));
    let acceptor = match app.tls.as_ref().map(|tls| tls.acceptor()).transpose() {
        Ok(acceptor) => acceptor,
        Err(e) => {
            tracing::error!(error = %e, "cannot set up TLS");
            return;
        }
    };
    let scheme = if acceptor.is_some() { "https" } else { "http" };
    let h1_graceful = GracefulShutdown::new();
    let h2_graceful = GracefulShutdown::new();
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
        let service = service_fn(move |req| handler::handle(app.clone(), scheme, req));
        let (h1, h2) = (h1.clone(), h2.clone());
        let (h1_watcher, h2_watcher) = (h1_graceful.watcher(), h2_graceful.watcher());
        let acceptor = acceptor.clone();
        let handshake_timeout = limits.tls_handshake_timeout;
        tokio::spawn(async move {
            let result = match acceptor {
                None => {
                    h1_watcher
                        .watch(h1.serve_connection(TokioIo::new(stream), service))
                        .await
                }
                Some(acceptor) => {
                    let tls = match tokio::time::timeout(handshake_timeout, acceptor.accept(stream))
                        .await
                    {
                        Ok(Ok(tls)) => tls,
                        Ok(Err(e)) => {
                            tracing::debug!(error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!("TLS handshake timed out");
                            return;
                        }
                    };
                    // The protocol comes from ALPN, so no unbounded protocol sniffing happens.
                    if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
                        h2_watcher
                            .watch(h2.serve_connection(TokioIo::new(tls), service))
                            .await
                    } else {
                        h1_watcher
                            .watch(h1.serve_connection(TokioIo::new(tls), service))
                            .await
                    }
                }
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, "connection closed with an error");
            }
            drop(permit);
        });
    }
    app.readiness.start_draining();
    drop(listener);
    // HTTP/2 clients learn of the drain from GOAWAY and retry unanswered streams elsewhere.
    tokio::spawn(h2_graceful.shutdown());
    drain(&app, &connections, h1_graceful).await;
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
