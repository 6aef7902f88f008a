//! The monitor's own small HTTP listener: `GET /metrics`, `/status` (`?failing` for the failing
//! numbers only), `/healthz` and `/readyz`. Bounded: at most [`MAX_CONNECTIONS`] at once, each
//! given [`HEAD_TIMEOUT`] to send its request head; nothing is read from a request but its head.
//! I/O.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use http::{Method, Response, StatusCode};
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::metrics::Metrics;
use super::status::Status;

/// Connections served at once; more wait in the listen backlog.
pub const MAX_CONNECTIONS: usize = 64;
/// Time a client has to send its request head.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);

/// What the listener shows: the metrics and the last round's status.
#[derive(Debug)]
pub struct Published {
    /// The monitor's metrics.
    pub metrics: Metrics,
    status: ArcSwapOption<Status>,
}

impl Published {
    /// Nothing published yet: `/readyz` answers 503 and `/status` 503 until the first round.
    pub fn new(metrics: Metrics) -> Published {
        Published {
            metrics,
            status: ArcSwapOption::empty(),
        }
    }

    /// The round's status, from now on.
    pub fn publish(&self, status: Status) {
        self.status.store(Some(Arc::new(status)));
    }

    /// The last status published.
    pub fn status(&self) -> Option<Arc<Status>> {
        self.status.load_full()
    }
}

type Reply = Response<Full<Bytes>>;

fn reply(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Reply {
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, content_type)
        .header(http::header::CACHE_CONTROL, "no-store")
        .body(Full::new(body.into()))
        .unwrap_or_default()
}

/// Answers one request.
fn answer(published: &Published, method: &Method, path: &str, query: Option<&str>) -> Reply {
    const TEXT: &str = "text/plain; charset=utf-8";
    if method != Method::GET && method != Method::HEAD {
        return reply(StatusCode::METHOD_NOT_ALLOWED, TEXT, "method not allowed\n");
    }
    match path {
        "/healthz" => reply(StatusCode::OK, TEXT, "ok\n"),
        "/readyz" => match published.status() {
            Some(_) => reply(StatusCode::OK, TEXT, "ready\n"),
            None => reply(
                StatusCode::SERVICE_UNAVAILABLE,
                TEXT,
                "no round finished yet\n",
            ),
        },
        "/metrics" => reply(
            StatusCode::OK,
            crate::metrics::CONTENT_TYPE,
            published.metrics.encode(),
        ),
        "/status" => match published.status() {
            Some(status) => {
                let failing = query.is_some_and(|q| q.split('&').any(|p| p == "failing"));
                let shown = if failing {
                    serde_json::to_string_pretty(&status.failing_only())
                } else {
                    serde_json::to_string_pretty(&*status)
                };
                reply(
                    StatusCode::OK,
                    "application/json",
                    shown.unwrap_or_default() + "\n",
                )
            }
            None => reply(
                StatusCode::SERVICE_UNAVAILABLE,
                TEXT,
                "no round finished yet\n",
            ),
        },
        _ => reply(StatusCode::NOT_FOUND, TEXT, "not found\n"),
    }
}

/// Binds `addr` now, so a taken port fails at start-up, and returns the address bound.
pub async fn bind(addr: SocketAddr) -> std::io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    Ok((listener, bound))
}

/// Serves until `stop` resolves.
pub async fn serve(
    listener: TcpListener,
    published: Arc<Published>,
    stop: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    tokio::pin!(stop);
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let accepted = tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((tcp, _)) = accepted else {
            // Out of file descriptors, or a connection reset before it was taken: go on.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let published = published.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let r = answer(
                    &published,
                    req.method(),
                    req.uri().path(),
                    req.uri().query(),
                );
                async move { Ok::<_, Infallible>(r) }
            });
            let _ = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .keep_alive(false)
                .serve_connection(TokioIo::new(tcp), service)
                .await;
            drop(permit);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_answer_as_documented() {
        let p = Published::new(Metrics::new(300.0));
        let get = Method::GET;
        assert_eq!(answer(&p, &get, "/healthz", None).status(), 200);
        assert_eq!(answer(&p, &get, "/readyz", None).status(), 503);
        assert_eq!(answer(&p, &get, "/status", None).status(), 503);
        assert_eq!(answer(&p, &get, "/nope", None).status(), 404);
        assert_eq!(answer(&p, &Method::POST, "/status", None).status(), 405);
        let metrics = answer(&p, &get, "/metrics", None);
        assert_eq!(metrics.status(), 200);
    }
}
