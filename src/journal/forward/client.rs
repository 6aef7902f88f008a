//! Sends forwarded requests to the target over kept-alive HTTP/1.1 connections (TLS for https),
//! built on hyper's client connection like the drill's.

use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::request::Forward;
use crate::net::url::Target;

/// Most of an answer's body that is read (then the connection is dropped instead of reused).
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Why an attempt did not deliver.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// No connection could be made.
    #[error("cannot connect: {0}")]
    Connect(String),
    /// The target answered with a status other than 2xx.
    #[error("HTTP {0}")]
    Status(u16),
    /// No complete answer within the attempt timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The connection failed after the request was written.
    #[error("{0}")]
    Io(String),
}

impl SendError {
    /// A short metric label for the kind of failure.
    pub fn label(&self) -> &'static str {
        match self {
            SendError::Connect(_) => "connect_error",
            SendError::Status(_) => "http_error",
            SendError::Timeout(_) => "timeout",
            SendError::Io(_) => "io_error",
        }
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A client for one target URL, keeping idle connections for reuse.
#[derive(Debug)]
pub struct Client {
    target: Target,
    idle: Mutex<Vec<SendRequest<Full<Bytes>>>>,
    max_idle: usize,
}

impl Client {
    /// A client for `url` (absolute http or https, no fragment) keeping up to `max_idle` connections.
    pub fn new(url: &str, max_idle: usize) -> Result<Client, String> {
        Ok(Client {
            target: Target::parse(url)?,
            idle: Mutex::new(Vec::new()),
            max_idle,
        })
    }

    /// The URL requests are sent (and signed) for.
    pub fn url(&self) -> &str {
        &self.target.url
    }

    /// POSTs `forward`; `Ok(status)` only for a 2xx answer received within `timeout`.
    pub async fn post(&self, forward: &Forward, timeout: Duration) -> Result<u16, SendError> {
        match tokio::time::timeout(timeout, self.exchange(forward)).await {
            Ok(result) => result,
            Err(_) => Err(SendError::Timeout(timeout)),
        }
    }

    async fn exchange(&self, forward: &Forward) -> Result<u16, SendError> {
        let mut req = self.request(forward)?;
        // A kept-alive connection the target closed meanwhile hands the request back unsent;
        // only then is it tried again, on another connection.
        while let Some(mut sender) = self.take_idle() {
            if sender.ready().await.is_err() {
                continue;
            }
            match sender.try_send_request(req).await {
                Ok(response) => return self.finish(sender, response).await,
                Err(mut e) => match e.take_message() {
                    Some(unsent) => req = unsent,
                    None => return Err(SendError::Io(e.into_error().to_string())),
                },
            }
        }
        let mut sender = self.connect().await?;
        sender
            .ready()
            .await
            .map_err(|e| SendError::Connect(e.to_string()))?;
        let response = sender
            .send_request(req)
            .await
            .map_err(|e| SendError::Io(e.to_string()))?;
        self.finish(sender, response).await
    }

    fn request(&self, forward: &Forward) -> Result<hyper::Request<Full<Bytes>>, SendError> {
        let mut builder = hyper::Request::post(self.target.path_and_query.as_str())
            .header("host", &self.target.authority)
            .header("content-type", "application/x-www-form-urlencoded")
            .header(
                "user-agent",
                concat!("twiml-failover/", env!("CARGO_PKG_VERSION")),
            );
        for (name, value) in &forward.headers {
            builder = builder.header(*name, value);
        }
        builder
            .body(Full::new(Bytes::from(forward.body.clone())))
            .map_err(|e| SendError::Io(format!("cannot build the request: {e}")))
    }

    /// Reads the answer; a fully read answer leaves the connection reusable.
    async fn finish(
        &self,
        sender: SendRequest<Full<Bytes>>,
        response: hyper::Response<hyper::body::Incoming>,
    ) -> Result<u16, SendError> {
        let status = response.status().as_u16();
        let mut body = response.into_body();
        let mut read = 0usize;
        let mut complete = false;
        while read <= MAX_ANSWER_BYTES {
            match body.frame().await {
                None => {
                    complete = true;
                    break;
                }
                Some(Ok(frame)) => read += frame.data_ref().map_or(0, Bytes::len),
                // The status arrived; a broken body does not change what the target decided.
                Some(Err(_)) => break,
            }
        }
        if complete {
            self.put_idle(sender);
        }
        if (200..300).contains(&status) {
            Ok(status)
        } else {
            Err(SendError::Status(status))
        }
    }

    fn take_idle(&self) -> Option<SendRequest<Full<Bytes>>> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(sender) = idle.pop() {
            if !sender.is_closed() {
                return Some(sender);
            }
        }
        None
    }

    fn put_idle(&self, sender: SendRequest<Full<Bytes>>) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < self.max_idle && !sender.is_closed() {
            idle.push(sender);
        }
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, SendError> {
        let t = &self.target;
        let tcp = TcpStream::connect((t.host.as_str(), t.port))
            .await
            .map_err(|e| SendError::Connect(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let io: Box<dyn Io> = if t.tls {
            let name = rustls::pki_types::ServerName::try_from(t.host.clone())
                .map_err(|e| SendError::Connect(format!("bad TLS server name: {e}")))?;
            let tls = tokio_rustls::TlsConnector::from(crate::net::tls_config())
                .connect(name, tcp)
                .await
                .map_err(|e| SendError::Connect(format!("TLS handshake: {e}")))?;
            Box::new(tls)
        } else {
            Box::new(tcp)
        };
        let (sender, conn) = http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| SendError::Connect(e.to_string()))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }
}
