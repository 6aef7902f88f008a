//! How [`super::Client`] reaches a server: name resolution, TCP, then TLS for https, all within
//! the connect timeout; and the connection it hands to hyper, with the read timeout and a [`Tap`]
//! on what the server sent. A failure comes out as a [`ConnectFailure`] whose [`ConnectKind`] says
//! which step failed. I/O.
//!
//! Three layers, because hyper_util's connector does not name its steps: [`Resolver`] makes a
//! failed lookup its own error type, [`Tcp`] sorts the TCP connector's errors before hyper-rustls
//! wraps them, and [`Connector`] sorts what the TLS handshake left and bounds the whole.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper::rt::{Read, ReadBuf, ReadBufCursor, Write};
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tower_service::Service;

use super::{chain, find};

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Which step of connecting failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectKind {
    /// The host name did not resolve to any address.
    Resolve,
    /// The server refused the TCP connection (nothing listens on that port).
    Refused,
    /// TCP and TLS together did not finish within the connect timeout.
    Timeout,
    /// The TLS handshake failed for a reason other than the server's certificate.
    Tls,
    /// The server's certificate is not valid for the host name asked for.
    CertificateName,
    /// The server's certificate has expired.
    CertificateExpired,
    /// The server's certificate does not lead to a trusted root.
    CertificateIssuer,
    /// The server's certificate is refused for another reason.
    Certificate,
    /// Any other failure before a connection existed (no route, reset, ...).
    Other,
}

/// No connection, and why; nothing was sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct ConnectFailure {
    /// The step that failed.
    pub kind: ConnectKind,
    /// The underlying error, for the log.
    pub detail: String,
}

impl ConnectFailure {
    fn new(kind: ConnectKind, detail: impl Into<String>) -> ConnectFailure {
        ConnectFailure {
            kind,
            detail: detail.into(),
        }
    }
}

/// The connector a [`super::Client`] pools connections from.
#[derive(Clone)]
pub(super) struct Connector {
    https: HttpsConnector<Tcp>,
    timeout: Duration,
    read_timeout: Option<Duration>,
    tap_limit: usize,
}

impl Connector {
    /// TCP (and TLS with `tls` for https URLs) within `timeout`, reads bounded by `read_timeout`,
    /// and a [`Tap`] keeping up to `tap_limit` bytes of each answer.
    pub(super) fn new(
        tls: &rustls::ClientConfig,
        timeout: Duration,
        read_timeout: Option<Duration>,
        tap_limit: usize,
    ) -> Connector {
        let mut http = HttpConnector::new_with_resolver(Resolver);
        http.enforce_http(false);
        http.set_nodelay(true);
        // Per address tried; the whole (TLS included) is bounded in `call`.
        http.set_connect_timeout(Some(timeout));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls.clone())
            .https_or_http()
            .enable_http1()
            .wrap_connector(Tcp(http));
        Connector {
            https,
            timeout,
            read_timeout,
            tap_limit,
        }
    }
}

impl Service<Uri> for Connector {
    type Response = Timed<MaybeHttpsStream<TokioIo<TcpStream>>>;
    type Error = ConnectFailure;
    type Future = BoxFuture<Result<Self::Response, ConnectFailure>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ConnectFailure>> {
        self.https
            .poll_ready(cx)
            .map_err(|e| ConnectFailure::new(ConnectKind::Other, chain(&*e)))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.https.call(uri);
        let (timeout, read_timeout, tap_limit) = (self.timeout, self.read_timeout, self.tap_limit);
        Box::pin(async move {
            match tokio::time::timeout(timeout, connecting).await {
                Err(_) => Err(ConnectFailure::new(
                    ConnectKind::Timeout,
                    format!("no connection within {} ms", timeout.as_millis()),
                )),
                Ok(Err(e)) => Err(match e.downcast::<ConnectFailure>() {
                    Ok(tcp) => *tcp,
                    Err(tls) => tls_failure(tls),
                }),
                Ok(Ok(stream)) => Ok(Timed::new(stream, read_timeout, tap_limit)),
            }
        })
    }
}

/// Anything hyper-rustls reports that is not from [`Tcp`] happened during the TLS handshake.
fn tls_failure(e: BoxError) -> ConnectFailure {
    use rustls::CertificateError as C;
    let kind = match find::<rustls::Error>(&*e) {
        Some(rustls::Error::InvalidCertificate(cert)) => match cert {
            C::NotValidForName | C::NotValidForNameContext { .. } => ConnectKind::CertificateName,
            C::Expired | C::ExpiredContext { .. } => ConnectKind::CertificateExpired,
            C::UnknownIssuer => ConnectKind::CertificateIssuer,
            _ => ConnectKind::Certificate,
        },
        _ => ConnectKind::Tls,
    };
    ConnectFailure::new(kind, chain(&*e))
}

/// hyper_util's TCP connector with its failures sorted; hyper-rustls passes them on boxed.
#[derive(Clone)]
pub(super) struct Tcp(HttpConnector<Resolver>);

impl Service<Uri> for Tcp {
    type Response = TokioIo<TcpStream>;
    type Error = ConnectFailure;
    type Future = BoxFuture<Result<TokioIo<TcpStream>, ConnectFailure>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ConnectFailure>> {
        self.0.poll_ready(cx).map_err(|e| tcp_failure(&e))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.0.call(uri);
        Box::pin(async move { connecting.await.map_err(|e| tcp_failure(&e)) })
    }
}

fn tcp_failure(e: &(dyn std::error::Error + 'static)) -> ConnectFailure {
    if let Some(unresolved) = find::<Unresolved>(e) {
        return ConnectFailure::new(ConnectKind::Resolve, unresolved.to_string());
    }
    let kind = match find::<io::Error>(e).map(io::Error::kind) {
        Some(io::ErrorKind::ConnectionRefused) => ConnectKind::Refused,
        Some(io::ErrorKind::TimedOut) => ConnectKind::Timeout,
        _ => ConnectKind::Other,
    };
    ConnectFailure::new(kind, chain(e))
}

/// The system resolver (through tokio), so that a failed lookup is an error of its own type
/// rather than an `io::Error` indistinguishable from a failed connect.
#[derive(Clone, Copy, Debug)]
pub(super) struct Resolver;

/// A name that resolved to no address.
#[derive(Debug, thiserror::Error)]
#[error("cannot resolve {host}: {reason}")]
pub(super) struct Unresolved {
    host: String,
    reason: String,
}

impl Service<Name> for Resolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = Unresolved;
    type Future = BoxFuture<Result<Self::Response, Unresolved>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Unresolved>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let host = name.as_str().to_string();
        Box::pin(async move {
            // Port 0: the TCP connector puts the URL's port on every address.
            let found = tokio::net::lookup_host((host.as_str(), 0)).await;
            match found.map(|addrs| addrs.collect::<Vec<_>>()) {
                Ok(addrs) if !addrs.is_empty() => Ok(addrs.into_iter()),
                Ok(_) => Err(Unresolved {
                    host,
                    reason: "no address".into(),
                }),
                Err(e) => Err(Unresolved {
                    host,
                    reason: e.to_string(),
                }),
            }
        })
    }
}

/// What a read fails with after the server was silent for the client's read timeout.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("nothing received for {} ms", .0.as_millis())]
pub(super) struct ReadTimeout(pub Duration);

/// What a connection received since its current request went out: the bytes of the answer and
/// anything that came with it, for [`super::framing::trailing`]. Shared between the connection
/// (which hyper owns) and the exchange that reads the answer, which finds it in the answer's
/// extensions.
#[derive(Clone, Debug)]
pub(super) struct Tap(Arc<Mutex<Received>>);

#[derive(Debug, Default)]
struct Received {
    bytes: Vec<u8>,
    /// More than the limit arrived: the bytes were let go and nothing is judged.
    overflow: bool,
    /// A read since the last write: the next write starts the next request.
    read_since_write: bool,
    limit: usize,
}

impl Tap {
    fn new(limit: usize) -> Tap {
        Tap(Arc::new(Mutex::new(Received {
            limit,
            ..Received::default()
        })))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Received> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn received(&self, bytes: &[u8]) {
        let mut r = self.lock();
        r.read_since_write = true;
        if r.overflow {
            return;
        }
        if r.bytes.len() + bytes.len() > r.limit {
            r.overflow = true;
            r.bytes = Vec::new();
        } else {
            r.bytes.extend_from_slice(bytes);
        }
    }

    fn writing(&self) {
        let mut r = self.lock();
        if r.read_since_write {
            r.read_since_write = false;
            r.overflow = false;
            r.bytes.clear();
        }
    }

    /// What arrived for the current request so far (`None` after an overflow); the memory goes
    /// with it, so an idle connection keeps none.
    pub(super) fn take(&self) -> Option<Vec<u8>> {
        let mut r = self.lock();
        let overflow = std::mem::take(&mut r.overflow);
        let bytes = std::mem::take(&mut r.bytes);
        (!overflow).then_some(bytes)
    }
}

/// Reads go through a buffer of this size, so the [`Tap`] sees them without unsafe code.
const SCRATCH: usize = 16 * 1024;

/// The connection hyper gets. Its reads fail with [`ReadTimeout`] once the server has sent
/// nothing for `limit` while hyper waits on it: Twilio's read timeout, before the head and between
/// body bytes alike. An idle kept-alive connection is also waited on, so it is closed after
/// `limit`. What it reads goes to its [`Tap`] too.
pub(super) struct Timed<S> {
    io: S,
    limit: Option<Duration>,
    /// Armed by the first read that has to wait, disarmed by any read that completes.
    silence: Option<Pin<Box<tokio::time::Sleep>>>,
    armed: bool,
    tap: Tap,
    scratch: Vec<u8>,
}

impl<S> Timed<S> {
    fn new(io: S, limit: Option<Duration>, tap_limit: usize) -> Timed<S> {
        Timed {
            io,
            limit,
            silence: None,
            armed: false,
            tap: Tap::new(tap_limit),
            scratch: Vec::new(),
        }
    }
}

impl<S: Read + Unpin> Timed<S> {
    /// Reads into hyper's buffer through `scratch`, handing a copy to the tap.
    fn read_tapped(
        &mut self,
        cx: &mut Context<'_>,
        mut buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let room = buf.remaining().min(SCRATCH);
        if room == 0 {
            return Pin::new(&mut self.io).poll_read(cx, buf);
        }
        if self.scratch.len() < room {
            self.scratch.resize(room, 0);
        }
        let mut scratch = ReadBuf::new(&mut self.scratch[..room]);
        let read = Pin::new(&mut self.io).poll_read(cx, scratch.unfilled());
        if let Poll::Ready(Ok(())) = read {
            let got = scratch.filled();
            if !got.is_empty() {
                self.tap.received(got);
                buf.put_slice(got);
            }
        }
        read
    }
}

impl<S: Read + Unpin> Read for Timed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let read = this.read_tapped(cx, buf);
        let Some(limit) = this.limit else {
            return read;
        };
        if read.is_ready() {
            this.armed = false;
            return read;
        }
        if !this.armed {
            let deadline = tokio::time::Instant::now() + limit;
            match &mut this.silence {
                Some(silence) => silence.as_mut().reset(deadline),
                None => this.silence = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
            this.armed = true;
        }
        let Some(silence) = this.silence.as_mut() else {
            return read;
        };
        match silence.as_mut().poll(cx) {
            Poll::Ready(()) => {
                this.armed = false;
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    ReadTimeout(limit),
                )))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: Write + Unpin> Write for Timed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.tap.writing();
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.tap.writing();
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

impl<S: Connection> Connection for Timed<S> {
    fn connected(&self) -> Connected {
        // hyper_util puts the extra into every answer's extensions.
        self.io.connected().extra(self.tap.clone())
    }
}
