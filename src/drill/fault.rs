//! The fault server behind `--simulate-primary-failure`: a throwaway primary on 127.0.0.1:0 that
//! fails in one chosen way, so a rehearsal exercises the real fallback without touching production.

use std::net::SocketAddr;

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// How the simulated primary fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Fault {
    /// Nothing listens: connections are refused (a dead host or a stopped process).
    Refuse,
    /// Accepts the connection and never answers (a hung process or a black-holed network).
    Timeout,
    /// Answers HTTP 500.
    #[value(name = "500")]
    #[serde(rename = "500")]
    Http500,
    /// Answers 200 text/xml with XML that does not parse.
    BadXml,
}

/// A running fault server; dropping it stops it.
pub struct FaultServer {
    /// Where it listens (for `Refuse`: a port that was just freed, so it refuses).
    pub addr: SocketAddr,
    task: Option<JoinHandle<()>>,
}

impl Drop for FaultServer {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

const BAD_XML: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response>\n  <Say>Simulated \
                       primary failure: this document never closes its Say\n</Response>\n";

/// Starts a fault server on 127.0.0.1:0.
pub async fn start(fault: Fault) -> std::io::Result<FaultServer> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    if fault == Fault::Refuse {
        // Closing the listener leaves the port unbound, so connects get RST at once.
        drop(listener);
        return Ok(FaultServer { addr, task: None });
    }
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            match fault {
                // Keep the socket open and silent; it closes when the server is dropped.
                Fault::Timeout => held.push(stream),
                _ => {
                    tokio::spawn(answer(stream, fault));
                }
            }
        }
    });
    Ok(FaultServer {
        addr,
        task: Some(task),
    })
}

async fn answer(mut stream: TcpStream, fault: Fault) {
    // Read the request head and body before answering, so the client sees a clean response
    // rather than a reset; a bounded buffer and a short wait are enough for a drill request.
    let mut buf = vec![0u8; 64 * 1024];
    let mut len = 0;
    let read = async {
        while len < buf.len() {
            match stream.read(&mut buf[len..]).await {
                Ok(0) | Err(_) => break,
                Ok(n) => len += n,
            }
            if request_complete(&buf[..len]) {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), read).await;
    let (status, content_type, body) = match fault {
        Fault::Http500 => (
            "500 Internal Server Error",
            "text/plain; charset=utf-8",
            "simulated primary failure\n",
        ),
        _ => ("200 OK", "text/xml; charset=utf-8", BAD_XML),
    };
    let reply = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(reply.as_bytes()).await;
    let _ = stream.shutdown().await;
}

fn request_complete(data: &[u8]) -> bool {
    let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&data[..end]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    data.len() >= end + 4 + length
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_completeness() {
        assert!(!request_complete(
            b"POST / HTTP/1.1\r\nContent-Length: 3\r\n"
        ));
        assert!(!request_complete(
            b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nab"
        ));
        assert!(request_complete(
            b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"
        ));
        assert!(request_complete(b"GET / HTTP/1.1\r\n\r\n"));
    }

    #[test]
    fn bad_xml_really_is_bad() {
        assert!(!crate::twilio::document::check(BAD_XML, None)
            .problems
            .is_empty());
    }
}
