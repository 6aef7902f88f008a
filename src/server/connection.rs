//! One connection's life: take a slot, TLS handshake, serve with hyper, and close it when it is
//! asked to make room, has been idle too long (HTTP/2), has reached its maximum age (HTTP/2
//! GOAWAY; HTTP/1 `Connection: close` on the next answer), or the server drains.
//!
//! Closing is always hyper's graceful shutdown first (HTTP/1: `Connection: close` on the answer in
//! progress, or close when between requests; HTTP/2: GOAWAY), then, if the peer does not finish,
//! the connection is dropped after a bounded grace.

use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::graceful::GracefulConnection;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{sleep_until, Instant};
use tokio_rustls::TlsAcceptor;

use super::app::App;
use super::handler;
use super::slots::{Held, Slot, Slots};

/// What every connection shares.
pub struct Settings {
    pub app: Arc<App>,
    pub h1: http1::Builder,
    pub h2: http2::Builder<TokioExecutor>,
    pub acceptor: Option<TlsAcceptor>,
    pub stage: watch::Receiver<Stage>,
}

/// The server's lifecycle as connections see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Normal operation.
    Serving,
    /// Lame duck and drain: HTTP/2 connections get GOAWAY; HTTP/1 answers say `Connection: close`.
    Draining,
    /// Drain deadline: everything still open is closed.
    Closing,
}

/// Time an idle connection asked to make room gets before it is dropped.
const EVICT_GRACE: Duration = Duration::from_millis(250);

/// Waits for a slot for `stream`, then serves it on its own task.
pub async fn spawn(stream: TcpStream, settings: Arc<Settings>, slots: &Arc<Slots>) {
    let held = slots.take().await;
    let _ = stream.set_nodelay(true);
    tokio::spawn(serve(stream, settings, held));
}

async fn serve(stream: TcpStream, settings: Arc<Settings>, held: Held) {
    let slot = held.slot().clone();
    let peer = stream.peer_addr().ok().map(|a| a.ip());
    let Some(acceptor) = settings.acceptor.clone() else {
        let conn = settings.h1.serve_connection(
            TokioIo::new(stream),
            service(&settings, &slot, "http", peer),
        );
        return supervise(conn, &slot, false, &settings).await;
    };
    let limits = &settings.app.settings().limits;
    let handshake = tokio::time::timeout(limits.tls_handshake_timeout, acceptor.accept(stream));
    let tls = tokio::select! {
        done = handshake => match done {
            Ok(Ok(tls)) => tls,
            // A peer's error, so a string: quoted in the log like every caller-driven value.
            Ok(Err(e)) => return tracing::debug!(error = e.to_string(), "TLS handshake failed"),
            Err(_) => return tracing::debug!("TLS handshake timed out"),
        },
        // A handshake in progress is idle: it gives way like any other idle connection.
        () = slot.evicted() => return,
    };
    // The protocol comes from ALPN, so no unbounded protocol sniffing happens.
    if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
        let conn = settings
            .h2
            .serve_connection(TokioIo::new(tls), service(&settings, &slot, "https", peer));
        supervise(conn, &slot, true, &settings).await;
    } else {
        let conn = settings
            .h1
            .serve_connection(TokioIo::new(tls), service(&settings, &slot, "https", peer));
        supervise(conn, &slot, false, &settings).await;
    }
    drop(held);
}

/// The request handler, marking the slot busy while each request is handled.
fn service(
    settings: &Arc<Settings>,
    slot: &Arc<Slot>,
    scheme: &'static str,
    peer: Option<std::net::IpAddr>,
) -> impl hyper::service::Service<
    http::Request<hyper::body::Incoming>,
    Response = super::respond::Reply,
    Error = std::convert::Infallible,
    Future = impl std::future::Future<
        Output = Result<super::respond::Reply, std::convert::Infallible>,
    > + Send
                 + 'static,
> + Clone {
    let (app, slot) = (settings.app.clone(), slot.clone());
    let max_age = app.settings().limits.max_connection_age;
    service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let busy = slot.begin();
        let (app, slot) = (app.clone(), slot.clone());
        async move {
            let version = req.version();
            let mut answer = handler::handle(app, scheme, peer, req).await;
            // HTTP/1 past its maximum age: this answer ends the connection. Closing it between
            // requests instead would race a client that is sending its next request just then.
            if version < http::Version::HTTP_2 && slot.opened().elapsed() >= max_age {
                if let Ok(answer) = &mut answer {
                    answer.headers_mut().insert(
                        http::header::CONNECTION,
                        http::HeaderValue::from_static("close"),
                    );
                }
            }
            drop(busy);
            answer
        }
    })
}

/// Drives `conn` to its end, closing it gracefully when it must make room, idles past the idle
/// timeout (HTTP/2 only: HTTP/1 keep-alive ends at hyper's header timeout), reaches its maximum
/// age, or the server drains; drops it when the peer does not finish in time.
async fn supervise<C>(conn: C, slot: &Slot, h2: bool, settings: &Settings)
where
    C: GracefulConnection,
    C::Error: std::fmt::Display,
{
    let limits = &settings.app.settings().limits;
    let mut stage = settings.stage.clone();
    let mut stage_open = true;
    tokio::pin!(conn);
    let far = Instant::now() + Duration::from_secs(86_400 * 365);
    let age_deadline = slot.opened() + limits.max_connection_age;
    // After a graceful shutdown starts: the moment the connection is dropped if still open.
    let mut drop_at: Option<Instant> = None;
    let mut idle_check = Instant::now() + limits.idle_timeout;
    let stop = |conn: std::pin::Pin<&mut C>, drop_at: &mut Option<Instant>, grace: Duration| {
        if drop_at.is_none() {
            conn.graceful_shutdown();
        }
        let at = Instant::now() + grace;
        *drop_at = Some(drop_at.map_or(at, |d| d.min(at)));
    };
    // A request that outlives graceful shutdown still has its own timeout; this bounds the rest.
    let finish_grace = limits.request_timeout + limits.header_timeout;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = e.to_string(), "connection closed with an error");
                }
                return;
            }
            () = slot.evicted() => stop(conn.as_mut(), &mut drop_at, EVICT_GRACE),
            // HTTP/1 learns its age from the answers (see `service`).
            () = sleep_until(age_deadline), if h2 && drop_at.is_none() => {
                stop(conn.as_mut(), &mut drop_at, finish_grace);
            }
            () = sleep_until(idle_check), if h2 && drop_at.is_none() => {
                match slot.idle_since() {
                    Some(since) if since + limits.idle_timeout <= Instant::now() => {
                        stop(conn.as_mut(), &mut drop_at, EVICT_GRACE);
                    }
                    Some(since) => idle_check = since + limits.idle_timeout,
                    None => idle_check = Instant::now() + limits.idle_timeout,
                }
            }
            changed = stage.changed(), if stage_open => {
                let now = if changed.is_ok() { *stage.borrow_and_update() } else { Stage::Closing };
                stage_open = changed.is_ok();
                match now {
                    Stage::Serving => {}
                    // HTTP/1 connections are not closed here: one accepted a moment ago may hold
                    // a request hyper has not parsed yet. Answers say `Connection: close` instead
                    // (the handler adds it while draining) and idle ones end at the header timeout.
                    Stage::Draining if h2 => stop(conn.as_mut(), &mut drop_at, finish_grace),
                    Stage::Draining => {}
                    Stage::Closing => stop(conn.as_mut(), &mut drop_at, super::FORCED_CLOSE_GRACE),
                }
            }
            () = sleep_until(drop_at.unwrap_or(far)), if drop_at.is_some() => return,
        }
    }
}
