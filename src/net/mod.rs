//! The one outgoing HTTP client: hyper's pooled client over rustls (ring, the web PKI roots), with
//! a connect timeout, a whole-exchange timeout and a cap on the answer's size. I/O.
//!
//! Built for every caller that talks to another server: the Twilio REST API (`numbers`, `drill
//! --number`) today; the drill's fetches and the journal forwarder are its next users (issue 14).
//! Callers see plain data ([`Request`], [`Response`]) and one error type, [`Error`], whose variants
//! say which stage failed so each caller can word its own message.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as Pool;
use hyper_util::rt::TokioExecutor;

pub mod url;

/// The client TLS settings (ring, web PKI roots), built once and shared by every client.
pub fn tls_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let roots = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            let config = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
            Arc::new(config)
        })
        .clone()
}

/// Limits of one client.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Establishing a TCP connection, per attempt.
    pub connect_timeout: Duration,
    /// The whole exchange: connecting, sending, and reading the answer to its end.
    pub request_timeout: Duration,
    /// Largest answer body read; a longer one is an [`Error::TooLarge`].
    pub max_body_bytes: usize,
    /// Idle connections kept per host for reuse.
    pub max_idle_per_host: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            connect_timeout: Duration::from_secs(5),
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
    /// Extra headers (the client adds `host` and `content-length`).
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
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Why an exchange produced no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The URL or a header cannot form a request.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// No connection (DNS, TCP, TLS); nothing was sent.
    #[error("cannot connect: {0}")]
    Connect(String),
    /// No complete answer within the request timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The answer's body is over the limit.
    #[error("answer over {0} bytes")]
    TooLarge(usize),
    /// The connection failed after the request was (perhaps) sent.
    #[error("{0}")]
    Io(String),
}

/// A pooled client; cheap to clone, connections are reused across clones.
#[derive(Clone)]
pub struct Client {
    pool: Pool<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
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
        Client::with_tls(settings, &tls_config())
    }

    /// A client with these limits and its own TLS settings (a private CA, a client certificate).
    pub fn with_tls(settings: Settings, tls: &rustls::ClientConfig) -> Client {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(settings.connect_timeout));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls.clone())
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let pool = Pool::builder(TokioExecutor::new())
            .pool_max_idle_per_host(settings.max_idle_per_host)
            .build(https);
        Client { pool, settings }
    }

    /// Sends `req` and reads the whole answer, within the request timeout.
    pub async fn send(&self, req: Request) -> Result<Response, Error> {
        let timeout = self.settings.request_timeout;
        match tokio::time::timeout(timeout, self.exchange(req)).await {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout(timeout)),
        }
    }

    async fn exchange(&self, req: Request) -> Result<Response, Error> {
        let mut builder = hyper::Request::builder()
            .method(req.method)
            .uri(req.url.as_str());
        for (name, value) in &req.headers {
            builder = builder.header(name, value);
        }
        let request = builder
            .body(Full::new(req.body))
            .map_err(|e| Error::Invalid(e.to_string()))?;
        let answer = self.pool.request(request).await.map_err(|e| {
            if e.is_connect() {
                Error::Connect(chain(&e))
            } else {
                Error::Io(chain(&e))
            }
        })?;
        let (parts, body) = answer.into_parts();
        let limit = self.settings.max_body_bytes;
        let body = Limited::new(body, limit)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    Error::TooLarge(limit)
                } else {
                    Error::Io(e.to_string())
                }
            })?
            .to_bytes();
        Ok(Response {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
        })
    }
}

/// An error with its causes, `a: b: c`, since hyper's own message is only the outermost.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn refused_connection_is_a_connect_error() {
        // Bind then drop: the port is (almost certainly) closed.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let client = Client::new(Settings::default());
        let err = client
            .send(Request {
                method: http::Method::GET,
                url: format!("http://127.0.0.1:{port}/"),
                headers: Vec::new(),
                body: Bytes::new(),
            })
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Connect(_)), "{err:?}");
    }

    fn get(url: String) -> Request {
        Request {
            method: http::Method::GET,
            url,
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    /// A server answering `200 ok` (or never, when `silent`), counting its connections.
    async fn server(silent: bool) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let connections = std::sync::Arc::new(AtomicUsize::new(0));
        let count = connections.clone();
        tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |_req| async move {
                        if silent {
                            std::future::pending::<()>().await;
                        }
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                            Bytes::from_static(b"ok"),
                        )))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        (url, connections)
    }

    #[tokio::test]
    async fn connections_are_reused() {
        let (url, connections) = server(false).await;
        let client = Client::new(Settings::default());
        for _ in 0..3 {
            let answer = client.send(get(url.clone())).await.unwrap();
            assert_eq!((answer.status, &answer.body[..]), (200, &b"ok"[..]));
        }
        assert_eq!(connections.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_silent_server_times_out_and_a_long_answer_is_cut() {
        let (url, _) = server(true).await;
        let client = Client::new(Settings {
            request_timeout: Duration::from_millis(200),
            ..Settings::default()
        });
        let err = client.send(get(url)).await.unwrap_err();
        assert_eq!(err, Error::Timeout(Duration::from_millis(200)));
        let (url, _) = server(false).await;
        let small = Client::new(Settings {
            max_body_bytes: 1,
            ..Settings::default()
        });
        assert_eq!(small.send(get(url)).await.unwrap_err(), Error::TooLarge(1));
    }

    #[tokio::test]
    async fn bad_url_is_invalid() {
        let client = Client::new(Settings::default());
        let err = client
            .send(Request {
                method: http::Method::GET,
                url: "not a url".into(),
                headers: Vec::new(),
                body: Bytes::new(),
            })
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Invalid(_)), "{err:?}");
    }
}
