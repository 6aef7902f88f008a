//! The HTTP server: accept connections within bounds, serve each with hyper, and on shutdown go
//! lame duck, stop listening without dropping what the kernel already accepted, then drain. Lines
//! about requests nobody proved came from Twilio are rate-limited ([`unverified_log`]).
//!
//! [`run`] takes a listener that is already bound, so tests bind port 0 and read the address first.

pub mod app;
mod connection;
mod handler;
pub mod limits;
pub mod listener;
pub mod respond;
pub mod slots;
pub mod tls;
pub mod unverified_log;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;

use app::App;
use connection::{Settings, Stage};
use limits::Limits;
use slots::Slots;

/// How long connections still open at the drain deadline get to finish their current answer.
const FORCED_CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Largest request head (request line + headers) hyper buffers; it answers 431 beyond it. It is
/// also the most an unfinished head can make one connection hold, so it is kept to what the URI
/// bound plus a proxy's headers need (a GET webhook with a 1600-character Body fits several times).
const MAX_HEAD_BYTES: usize = 24 * 1024;

/// HTTP/2 flow-control windows: what one stream, and one whole connection, may send before we
/// read. A stream's window is a whole webhook body; the connection's window bounds what a client
/// can make us buffer however many streams it opens.
const H2_STREAM_WINDOW: u32 = 64 * 1024;
const H2_CONNECTION_WINDOW: u32 = 128 * 1024;

/// Serves `listener` until `shutdown` resolves, then:
/// 1. lame duck: `/readyz` answers 503 and answers say `Connection: close` (HTTP/2: GOAWAY) for
///    `--lame-duck` seconds while new connections are still accepted and served, so that load
///    balancers notice and stop sending;
/// 2. stops listening: new handshakes are refused (a socket filter, or unprivileged a reuseport
///    sink), what the kernel already queued is accepted and served, then the socket closes (see
///    `listener`);
/// 3. drains: in-flight requests are answered within the drain timeout.
pub async fn run(listener: TcpListener, app: Arc<App>, shutdown: impl Future<Output = ()>) {
    let limits = app.settings().limits.clone();
    let (h1, h2) = protocols(&limits);
    let acceptor = match app.tls().map(|tls| tls.acceptor()).transpose() {
        Ok(acceptor) => acceptor,
        Err(e) => {
            tracing::error!(error = %e, "cannot set up TLS");
            return;
        }
    };
    let (stage_tx, stage) = watch::channel(Stage::Serving);
    let settings = Arc::new(Settings {
        app: app.clone(),
        h1,
        h2,
        acceptor,
        stage,
    });
    let slots = Slots::new(limits.max_connections);
    let summaries = {
        let app = app.clone();
        tokio::spawn(async move {
            app.unverified_log()
                .summarise_every(unverified_log::SUMMARY_EVERY)
                .await;
        })
    };
    app.readiness().set_ready();

    accept_until(&listener, &settings, &slots, shutdown).await;
    app.readiness().start_draining();
    let _ = stage_tx.send(Stage::Draining);
    if !limits.lame_duck.is_zero() {
        tracing::info!(
            seconds = limits.lame_duck.as_secs_f64(),
            "lame duck: /readyz answers 503, still accepting"
        );
        accept_until(
            &listener,
            &settings,
            &slots,
            tokio::time::sleep(limits.lame_duck),
        )
        .await;
    }
    let closed = listener::close(listener, |stream| {
        let (settings, slots) = (settings.clone(), slots.clone());
        async move { connection::spawn(stream, settings, &slots).await }
    })
    .await;
    // Which way ran is in both lines: whether a restart could reset connections (`none`).
    let refused_by = closed.refusal.as_str();
    tracing::info!(
        new_handshakes_refused_by = refused_by,
        queued = closed.queued,
        timeout_s = limits.drain_timeout.as_secs_f64(),
        "stopped listening; draining"
    );
    match tokio::time::timeout(limits.drain_timeout, slots.all_closed()).await {
        Ok(()) => tracing::info!(
            new_handshakes_refused_by = refused_by,
            "drained; all connections closed"
        ),
        Err(_) => {
            tracing::warn!(
                new_handshakes_refused_by = refused_by,
                open = slots.open(),
                "drain timeout reached; closing remaining connections"
            );
            let _ = stage_tx.send(Stage::Closing);
            let _ = tokio::time::timeout(FORCED_CLOSE_GRACE, slots.all_closed()).await;
        }
    }
    summaries.abort();
    // The last count, so the summaries add up to every line held back.
    app.unverified_log().summarise();
}

/// hyper's HTTP/1 and HTTP/2 servers within `limits`.
fn protocols(limits: &Limits) -> (http1::Builder, http2::Builder<TokioExecutor>) {
    let mut h1 = http1::Builder::new();
    // Without a timer hyper silently drops the header timeout; with it, slow or idle clients are cut.
    h1.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(MAX_HEAD_BYTES);
    let mut h2 = http2::Builder::new(TokioExecutor::new());
    // HTTP/2 has no header timeout; bound streams, header size and buffered bytes, ping idle peers.
    h2.timer(TokioTimer::new())
        .max_concurrent_streams(limits.max_h2_streams)
        .max_header_list_size(MAX_HEAD_BYTES as u32)
        .initial_stream_window_size(H2_STREAM_WINDOW)
        .initial_connection_window_size(H2_CONNECTION_WINDOW)
        .keep_alive_interval(Some(limits.header_timeout))
        .keep_alive_timeout(limits.header_timeout);
    (h1, h2)
}

/// Accepts and serves connections until `stop` resolves. Each accepted connection is handed on
/// before `stop` is looked at again, so none is dropped between accept and serve.
async fn accept_until(
    listener: &TcpListener,
    settings: &Arc<Settings>,
    slots: &Arc<Slots>,
    stop: impl Future<Output = ()>,
) {
    tokio::pin!(stop);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(e) => {
                    // Out of file descriptors and similar: back off instead of spinning. A flood of
                    // connections causes these, so they are held to the unverified lines' rate.
                    if settings.app.unverified_log().admit_accept_error() {
                        tracing::warn!(error = %e, "accept failed");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => return,
        };
        // Waits for a slot (asking idle connections to make room) before the next accept, so
        // connections beyond the limit wait in the kernel's backlog, not in memory.
        connection::spawn(stream, settings.clone(), slots).await;
    }
}
