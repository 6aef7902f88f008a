//! The one outgoing HTTP client: hyper's pooled client over rustls (ring, the web PKI roots), with
//! a connect timeout, a read timeout, a whole-exchange timeout, a cap on the answer's size, and an
//! answer's framing checked ([`framing`]). I/O.
//!
//! Every caller that talks to another server uses it: the Twilio REST API (`numbers`, `drill
//! --number`), upstream mode, the journal forwarder and the drill's fetches. Callers see plain
//! data ([`Request`], [`Response`]) and one error type, [`Error`], whose variants say which stage
//! failed (connecting and which step of it, waiting for the head, reading the body) so each caller
//! can word its own message. A request a kept-alive connection handed back unsent (the server had
//! closed it) is sent again on another connection: hyper_util's pool does that by itself. A
//! connection whose answer was ambiguously framed is never used again.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::connect::{capture_connection, CaptureConnection};
use hyper_util::client::legacy::Client as Pool;
use hyper_util::rt::TokioExecutor;

mod connect;
pub mod framing;
pub mod tls;
pub mod url;

pub use connect::{ConnectFailure, ConnectKind};

/// Limits of one client.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Resolving, connecting and the TLS handshake, per new connection.
    pub connect_timeout: Duration,
    /// The longest the server may stay silent once connected, before the answer's head
    /// ([`Error::HeadTimeout`]) or within its body ([`BodyFailure::Stalled`]); `None` for no limit
    /// but the request timeout. Idle kept-alive connections are closed after it too.
    pub read_timeout: Option<Duration>,
    /// The whole exchange: connecting, sending, and reading the answer to its end.
    pub request_timeout: Duration,
    /// Largest answer body read; a longer one is a [`BodyFailure::TooLarge`].
    pub max_body_bytes: usize,
    /// Idle connections kept per host for reuse; 0 for a new connection per request.
    pub max_idle_per_host: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            connect_timeout: Duration::from_secs(5),
            read_timeout: None,
            request_timeout: Duration::from_secs(30),
            max_body_bytes: 16 * 1024 * 1024,
            max_idle_per_host: 4,
        }
    }
}

/// One request: method, absolute URL, headers, body.
#[derive(Debug, Clone)]
pub struct Request {
    /// `GET`, `POST`, ...
    pub method: http::Method,
    /// Absolute `http://` or `https://` URL.
    pub url: String,
    /// Extra headers (the client adds `host`, unless given, and `content-length`).
    pub headers: Vec<(http::HeaderName, String)>,
    /// The body; empty for none.
    pub body: Bytes,
}

/// A complete answer.
#[derive(Debug, Clone)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// The answer's headers.
    pub headers: http::HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

impl Response {
    /// A header's value as text, if present and visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        header_text(&self.headers, name)
    }
}

/// A header's value as text, if present and visible ASCII; for [`Response`] and [`BodyError`].
fn header_text<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Why an exchange produced no complete answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The URL or a header cannot form a request.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// No connection; nothing was sent.
    #[error("cannot connect: {0}")]
    Connect(ConnectFailure),
    /// No complete answer within the request timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// Connected, but the server sent no answer head within the read timeout.
    #[error("no answer: nothing received for {} ms", .0.as_millis())]
    HeadTimeout(Duration),
    /// What came back is not an HTTP answer.
    #[error("not a valid HTTP answer: {0}")]
    NotHttp(String),
    /// The connection failed after the request was (perhaps) sent, before an answer head.
    #[error("{0}")]
    Io(String),
    /// The head arrived (the status says what the server decided) but not the whole body.
    #[error("{0}")]
    Body(Box<BodyError>),
}

/// An answer whose head arrived but whose body did not, whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("HTTP {status} answer: {failure}")]
pub struct BodyError {
    /// HTTP status code.
    pub status: u16,
    /// The answer's headers.
    pub headers: http::HeaderMap,
    /// What went wrong with the body.
    pub failure: BodyFailure,
}

impl BodyError {
    /// A header's value as text, if present and visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        header_text(&self.headers, name)
    }
}

/// What went wrong with an answer's body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyFailure {
    /// Longer than the client's cap; the rest was not read.
    #[error("body over {0} bytes")]
    TooLarge(usize),
    /// The server went silent mid-body for the read timeout.
    #[error("body stalled for {} ms", .0.as_millis())]
    Stalled(Duration),
    /// The connection failed or closed mid-body.
    #[error("body cut short: {0}")]
    Cut(String),
    /// Where the answer ends is ambiguous (both lengths, or bytes after it); the connection is
    /// not used again.
    #[error("ambiguous framing: {0}")]
    Framing(String),
}

/// A pooled client; cheap to clone, connections are reused across clones.
#[derive(Clone)]
pub struct Client {
    pool: Pool<connect::Connector, Full<Bytes>>,
    settings: Settings,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("settings", &self.settings)
            .finish()
    }
}

impl Client {
    /// A client with these limits, trusting the web PKI roots.
    pub fn new(settings: Settings) -> Client {
        Client::with_tls(settings, &tls::default_config())
    }

    /// A client with these limits and its own TLS settings (a private CA, a client certificate).
    pub fn with_tls(settings: Settings, tls: &rustls::ClientConfig) -> Client {
        // The whole answer with room for its head and chunk sizes; beyond it nothing is judged.
        let tap_limit = settings
            .max_body_bytes
            .saturating_mul(2)
            .saturating_add(256 * 1024);
        let connector = connect::Connector::new(
            tls,
            settings.connect_timeout,
            settings.read_timeout,
            tap_limit,
        );
        let pool = Pool::builder(TokioExecutor::new())
            .pool_max_idle_per_host(settings.max_idle_per_host)
            .build(connector);
        Client { pool, settings }
    }

    /// Sends `req` and reads the whole answer, within the request timeout.
    pub async fn send(&self, req: Request) -> Result<Response, Error> {
        self.within(req, self.settings.request_timeout, &mut None)
            .await
    }

    /// Sends `req` and reads the whole answer by `deadline` (instead of the request timeout): for
    /// a caller whose time started before this call, as upstream mode's budget does.
    pub async fn send_until(&self, req: Request, deadline: Instant) -> Result<Response, Error> {
        let left = deadline.saturating_duration_since(Instant::now());
        self.within(req, left, &mut None).await
    }

    /// [`Client::send`], and how long the answer's head took to arrive from the start (connecting
    /// included; `None` when no head came): Twilio's read timeout is on that first byte.
    pub async fn send_timed(&self, req: Request) -> (Result<Response, Error>, Option<Duration>) {
        let mut head = None;
        let result = self
            .within(req, self.settings.request_timeout, &mut head)
            .await;
        (result, head)
    }

    /// The exchange within `time`; `head` gets when the answer's head arrived.
    async fn within(
        &self,
        req: Request,
        time: Duration,
        head: &mut Option<Duration>,
    ) -> Result<Response, Error> {
        match tokio::time::timeout(time, self.exchange(req, head)).await {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout(time)),
        }
    }

    async fn exchange(&self, req: Request, head: &mut Option<Duration>) -> Result<Response, Error> {
        let started = std::time::Instant::now();
        let head_request = req.method == http::Method::HEAD;
        let mut builder = hyper::Request::builder()
            .method(req.method)
            .uri(req.url.as_str());
        for (name, value) in &req.headers {
            builder = builder.header(name, value);
        }
        let mut request = builder
            .body(Full::new(req.body))
            .map_err(|e| Error::Invalid(e.to_string()))?;
        let connection = capture_connection(&mut request);
        let answer = self.pool.request(request).await.map_err(head_error)?;
        *head = Some(started.elapsed());
        let (parts, body) = answer.into_parts();
        let tap = parts.extensions.get::<connect::Tap>().cloned();
        let framing_error = |parts: http::response::Parts, why: String| {
            poison(&connection);
            Error::Body(Box::new(BodyError {
                status: parts.status.as_u16(),
                headers: parts.headers,
                failure: BodyFailure::Framing(why),
            }))
        };
        if let Some(why) = framing::ambiguous(&parts.headers) {
            return Err(framing_error(parts, why));
        }
        let limit = self.settings.max_body_bytes;
        let body = match Limited::new(body, limit).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) => {
                let failure = if e.is::<http_body_util::LengthLimitError>() {
                    BodyFailure::TooLarge(limit)
                } else if let Some(silence) = find::<connect::ReadTimeout>(&*e) {
                    BodyFailure::Stalled(silence.0)
                } else {
                    BodyFailure::Cut(chain(&*e))
                };
                return Err(Error::Body(Box::new(BodyError {
                    status: parts.status.as_u16(),
                    headers: parts.headers,
                    failure,
                })));
            }
        };
        let received = tap.and_then(|tap| tap.take());
        if let Some(extra) = received.and_then(|r| framing::trailing(&r, head_request)) {
            if extra > 0 {
                return Err(framing_error(
                    parts,
                    format!("{extra} bytes after the body"),
                ));
            }
        }
        Ok(Response {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
        })
    }
}

/// Resolves the URL's host, connects and, for `https://`, completes the TLS handshake with `tls`,
/// all within `timeout`, then closes the connection without sending anything: reachability and the
/// certificate, where a request could make the server act. The same steps, and the same
/// [`ConnectFailure`] kinds, as a request's connection. Returns how long it took.
pub async fn handshake(
    url: &str,
    timeout: Duration,
    tls: &rustls::ClientConfig,
) -> Result<Duration, Error> {
    use tower_service::Service;
    let uri: http::Uri = url.parse().map_err(|e| Error::Invalid(format!("{e}")))?;
    let started = std::time::Instant::now();
    let mut connector = connect::Connector::new(tls, timeout, None, 0);
    std::future::poll_fn(|cx| connector.poll_ready(cx))
        .await
        .map_err(Error::Connect)?;
    let stream = connector.call(uri).await.map_err(Error::Connect)?;
    let took = started.elapsed();
    drop(stream);
    Ok(took)
}

/// Keeps hyper_util's pool from handing out this request's connection again.
fn poison(connection: &CaptureConnection) {
    if let Some(connected) = connection.connection_metadata().as_ref() {
        connected.poison();
    }
}

/// Sorts a failure before the answer's head by the stage that failed.
fn head_error(e: hyper_util::client::legacy::Error) -> Error {
    if e.is_connect() {
        let failure = find::<ConnectFailure>(&e).cloned();
        return Error::Connect(failure.unwrap_or_else(|| ConnectFailure {
            kind: ConnectKind::Other,
            detail: chain(&e),
        }));
    }
    if let Some(silence) = find::<connect::ReadTimeout>(&e) {
        return Error::HeadTimeout(silence.0);
    }
    if find::<hyper::Error>(&e).is_some_and(hyper::Error::is_parse) {
        return Error::NotHttp(chain(&e));
    }
    Error::Io(chain(&e))
}

/// An error with its causes, `a: b: c`, since hyper's own message is only the outermost.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// The first `T` among `e` and its causes. An `io::Error`'s `source()` skips the error it wraps
/// (a rustls alert, a read timeout), so the walk looks inside those itself.
fn find<'a, T: std::error::Error + 'static>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut next = Some(e);
    while let Some(current) = next {
        if let Some(found) = current.downcast_ref::<T>() {
            return Some(found);
        }
        next = match current.downcast_ref::<std::io::Error>() {
            Some(io) => io
                .get_ref()
                .map(|inner| inner as &(dyn std::error::Error + 'static)),
            None => current.source(),
        };
    }
    None
}

#[cfg(test)]
mod tests;
