//! How [`super::Client`] reaches a server: name resolution, TCP, then TLS for https, all within
//! the connect timeout; and the read timeout on the connection it hands to hyper. A failure comes
//! out as a [`ConnectFailure`] whose [`ConnectKind`] says which step failed. I/O.
//!
//! Three layers, because hyper_util's connector does not name its steps: [`Resolver`] makes a
//! failed lookup its own error type, [`Tcp`] sorts the TCP connector's errors before hyper-rustls
//! wraps them, and [`Connector`] sorts what the TLS handshake left and bounds the whole.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper::rt::{Read, ReadBufCursor, Write};
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
}

impl Connector {
    /// TCP (and TLS with `tls` for https URLs) within `timeout`, reads bounded by `read_timeout`.
    pub(super) fn new(
        tls: &rustls::ClientConfig,
        timeout: Duration,
        read_timeout: Option<Duration>,
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
        let (timeout, read_timeout) = (self.timeout, self.read_timeout);
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
                Ok(Ok(stream)) => Ok(Timed::new(stream, read_timeout)),
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

/// A connection whose reads fail with [`ReadTimeout`] once the server has sent nothing for
/// `limit` while hyper waits on it: Twilio's read timeout, before the head and between body
/// bytes alike. An idle kept-alive connection is also waited on, so it is closed after `limit`.
pub(super) struct Timed<S> {
    io: S,
    limit: Option<Duration>,
    /// Armed by the first read that has to wait, disarmed by any read that completes.
    silence: Option<Pin<Box<tokio::time::Sleep>>>,
    armed: bool,
}

impl<S> Timed<S> {
    fn new(io: S, limit: Option<Duration>) -> Timed<S> {
        Timed {
            io,
            limit,
            silence: None,
            armed: false,
        }
    }
}

impl<S: Read + Unpin> Read for Timed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let read = Pin::new(&mut this.io).poll_read(cx, buf);
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
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
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
        self.io.connected()
    }
}
