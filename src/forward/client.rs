//! The forwarder's use of the one HTTP client ([`crate::net`]): the POST for one journaled event,
//! and whether the target's answer means delivered ([`SendError`] when not). I/O through `net`,
//! which keeps connections alive and resends a request a closed idle connection handed back.

use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST, USER_AGENT};
use http::HeaderName;

use super::request::Forward;
use crate::net::{self, url::Target};

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

/// A client for one target URL, keeping idle connections for reuse.
#[derive(Debug)]
pub struct Client {
    target: Target,
    http: net::Client,
}

impl Client {
    /// A client for `url` (absolute http or https, no fragment) keeping up to `max_idle`
    /// connections, each attempt bounded by `timeout` (connecting included).
    pub fn new(url: &str, max_idle: usize, timeout: Duration) -> Result<Client, String> {
        Ok(Client {
            target: Target::parse(url)?,
            http: net::Client::new(net::Settings {
                connect_timeout: timeout,
                read_timeout: None,
                request_timeout: timeout,
                max_body_bytes: MAX_ANSWER_BYTES,
                max_idle_per_host: max_idle,
            }),
        })
    }

    /// The URL requests are sent (and signed) for.
    pub fn url(&self) -> &str {
        &self.target.url
    }

    /// POSTs `forward`; `Ok(status)` only for a 2xx answer received within the timeout.
    pub async fn post(&self, forward: &Forward) -> Result<u16, SendError> {
        let mut headers = vec![
            (HOST, self.target.authority.clone()),
            (
                CONTENT_TYPE,
                "application/x-www-form-urlencoded".to_string(),
            ),
            (
                USER_AGENT,
                concat!("twiml-failover/", env!("CARGO_PKG_VERSION")).to_string(),
            ),
        ];
        headers.extend(
            (forward.headers.iter())
                .map(|(name, value)| (HeaderName::from_static(name), value.clone())),
        );
        let request = net::Request {
            method: http::Method::POST,
            url: self.target.with_path(&self.target.path_and_query),
            headers,
            body: Bytes::from(forward.body.clone()),
        };
        match self.http.send(request).await {
            Ok(answer) => decided(answer.status),
            // The status arrived: a long or broken body after it does not change what the target
            // decided (read as a failure, a 2xx would be resent forever).
            Err(net::Error::Body(body)) => decided(body.status),
            Err(net::Error::Connect(e)) => Err(SendError::Connect(e.to_string())),
            Err(net::Error::Timeout(limit) | net::Error::HeadTimeout(limit)) => {
                Err(SendError::Timeout(limit))
            }
            Err(e @ (net::Error::Invalid(_) | net::Error::NotHttp(_) | net::Error::Io(_))) => {
                Err(SendError::Io(e.to_string()))
            }
        }
    }
}

fn decided(status: u16) -> Result<u16, SendError> {
    if (200..300).contains(&status) {
        Ok(status)
    } else {
        Err(SendError::Status(status))
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A target that reads each request, then writes `answer` and closes.
    async fn target(answer: Vec<u8>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/events", listener.local_addr().unwrap());
        tokio::spawn(async move {
            loop {
                let (mut tcp, _) = listener.accept().await.unwrap();
                let answer = answer.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 65536];
                    let _ = tcp.read(&mut buf).await;
                    let _ = tcp.write_all(&answer).await;
                });
            }
        });
        url
    }

    async fn post(answer: &[u8]) -> Result<u16, SendError> {
        let url = target(answer.to_vec()).await;
        let client = Client::new(&url, 1, Duration::from_secs(5)).unwrap();
        let forward = Forward {
            body: "CallSid=CA1".into(),
            headers: vec![("x-twiml-failover-event-id", "1".into())],
        };
        client.post(&forward).await
    }

    #[tokio::test]
    async fn the_status_decides_whatever_the_body_does_after_it() {
        let big = [
            &b"HTTP/1.1 200 OK\r\ncontent-length: 70000\r\n\r\n"[..],
            &[b'x'; 70000],
        ]
        .concat();
        assert_eq!(post(&big).await, Ok(200));
        let cut = b"HTTP/1.1 202 Accepted\r\ncontent-length: 10\r\n\r\nabc";
        assert_eq!(post(cut).await, Ok(202));
        let refused = b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 10\r\n\r\nabc";
        assert_eq!(post(refused).await, Err(SendError::Status(503)));
        let garbage = post(b"SSH-2.0-OpenSSH_9.6\r\n\r\n").await.unwrap_err();
        assert_eq!(garbage.label(), "io_error");
    }
}
