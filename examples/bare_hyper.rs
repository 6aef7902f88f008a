//! The benchmark's reference servers: hyper HTTP/1 on the same runtime as twiml-failover, answering
//! every request with one fixed `200 text/xml` document.
//!
//! `cargo run --release --example bare_hyper -- 127.0.0.1:8081 [fixed|read|verify]`
//!
//! - `fixed` (the default) reads nothing and does no work: the ceiling of this machine.
//! - `read` reads the body within twiml-failover's size and time bounds, then answers.
//! - `verify` does only what every server validating Twilio webhooks must do: read the body within
//!   a size and time bound, decode the form, and check `X-Twilio-Signature` against
//!   `TWILIO_AUTH_TOKEN` with twiml-failover's own code (403 on a mismatch). No template, no TwiML
//!   check, no log line, no metrics: the ceiling for any server that validates.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use twiml_failover::keyring::{KeyRing, Secret};
use twiml_failover::server::limits::{read_body, BodyBudget, BodyRules};
use twiml_failover::verify::authenticate;
use twiml_failover::webhook::{decode, UrlRules};

/// The same document twiml-failover renders for the benchmark's SMS, so both send as many bytes.
const BODY: &str =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response>\n  <Message>Thanks for your \
message to Example Corp: \"Running late, see you at the cafe in 10 minutes. Can you order me a \
flat white please?\". An agent will reply soon.</Message>\n</Response>\n";

/// twiml-failover's default body bounds, so `verify` pays for the same limits.
const MAX_BODY_BYTES: usize = 64 * 1024;
const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// The same body rules and budget as `serve`'s defaults.
const RULES: BodyRules = BodyRules {
    max: MAX_BODY_BYTES,
    timeout: BODY_TIMEOUT,
    min_rate: 4096,
    grace: Duration::from_secs(1),
};
static BUDGET: std::sync::LazyLock<BodyBudget> =
    std::sync::LazyLock::new(|| BodyBudget::new(1024, 16 * 1024 * 1024, Duration::from_secs(1)));

/// What each request gets done to it before the fixed answer.
#[derive(Clone)]
enum Mode {
    Fixed,
    Read,
    Verify(Arc<KeyRing>),
}

fn fixed(status: StatusCode) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(BODY.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/xml; charset=utf-8"),
    );
    response
}

async fn answer(_req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(fixed(StatusCode::OK))
}

async fn read(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(match read_body(req.into_body(), &BUDGET, RULES).await {
        Ok(_) => fixed(StatusCode::OK),
        Err(_) => fixed(StatusCode::BAD_REQUEST),
    })
}

async fn verify(
    keys: &KeyRing,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let Ok(body) = read_body(body, &BUDGET, RULES).await else {
        return Ok(fixed(StatusCode::BAD_REQUEST));
    };
    let rules = UrlRules {
        public_url: None,
        scheme: "http",
        trust_forwarded: false,
    };
    let Ok(hook) = decode(rules, &parts.method, &parts.uri, &parts.headers, body) else {
        return Ok(fixed(StatusCode::BAD_REQUEST));
    };
    Ok(match authenticate(keys, &parts.headers, &hook) {
        Ok(_) => fixed(StatusCode::OK),
        Err(_) => fixed(StatusCode::FORBIDDEN),
    })
}

fn main() -> std::io::Result<()> {
    let invalid = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, e);
    let mut args = std::env::args().skip(1);
    let addr: SocketAddr = args
        .next()
        .unwrap_or_else(|| "127.0.0.1:8081".into())
        .parse()
        .map_err(|e| invalid(format!("address: {e}")))?;
    let mode = match args.next().as_deref() {
        None | Some("fixed") => Mode::Fixed,
        Some("read") => Mode::Read,
        Some("verify") => {
            let token = std::env::var("TWILIO_AUTH_TOKEN")
                .map_err(|_| invalid("verify needs TWILIO_AUTH_TOKEN".into()))?;
            Mode::Verify(Arc::new(KeyRing {
                primary: Some(Secret::new(&token)),
                ..KeyRing::default()
            }))
        }
        Some(other) => {
            return Err(invalid(format!(
                "unknown mode {other:?}: fixed, read or verify"
            )))
        }
    };
    // The same runtime twiml-failover's `serve` builds: one worker per CPU it may run on.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = TcpListener::bind(addr).await?;
        loop {
            let (stream, _) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            let mode = mode.clone();
            tokio::spawn(async move {
                let io = TokioIo::new(stream);
                let builder = http1::Builder::new();
                let _ = match mode {
                    Mode::Fixed => builder.serve_connection(io, service_fn(answer)).await,
                    Mode::Read => builder.serve_connection(io, service_fn(read)).await,
                    Mode::Verify(keys) => {
                        let service = service_fn(move |req| {
                            let keys = keys.clone();
                            async move { verify(&keys, req).await }
                        });
                        builder.serve_connection(io, service).await
                    }
                };
            });
        }
    })
}
