//! Fetching TwiML the way Twilio does: signed form request, connect and read timeouts, retries on
//! the `rp` conditions within `tt`, and the error code Twilio would report when it gives up.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::overrides::Overrides;
use crate::net::url::Target;
use crate::signature::{self, Algorithm};
use crate::templates::twiml::{self, Channel, MAX_DOCUMENT_BYTES};

/// How a request is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Method {
    /// Form body; what Twilio uses unless told otherwise.
    #[serde(rename = "POST")]
    Post,
    /// Parameters in the query string, which is then part of the signed URL.
    #[serde(rename = "GET")]
    Get,
}

/// One webhook request as Twilio would make it.
#[derive(Debug, Clone)]
pub struct Request {
    /// Where to, fragment removed.
    pub target: Target,
    /// POST or GET.
    pub method: Method,
    /// Form parameters.
    pub params: Vec<(String, String)>,
    /// The auth token that signs it.
    pub token: String,
    /// Which TwiML the answer must be.
    pub channel: Channel,
}

/// A Twilio error code with what caused it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    /// The code Twilio reports (and sends as `ErrorCode` to the fallback).
    pub code: u16,
    /// What happened, in words.
    pub detail: String,
}

impl Failure {
    fn new(code: u16, detail: impl Into<String>) -> Failure {
        Failure {
            code,
            detail: detail.into(),
        }
    }

    /// Twilio's name for the code.
    pub fn title(&self) -> &'static str {
        match self.code {
            11100 => "invalid URL format",
            11200 => "HTTP retrieval failure",
            11205 => "HTTP connection failure",
            11206 => "HTTP protocol violation",
            11210 => "HTTP bad host name",
            11220 => "SSL/TLS handshake error",
            11235 => "certificate invalid: domain mismatch",
            11236 => "certificate invalid: expired",
            11237 => "certificate invalid: no path to a trusted root",
            11750 => "TwiML response body too large",
            12100 => "document parse failure",
            12300 => "invalid Content-Type",
            _ => "error",
        }
    }
}

/// Which `rp` condition an attempt's failure falls under, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retryable {
    Connect,
    ReadTimeout,
    Status4xx,
    Status5xx,
    No,
}

/// One attempt: how long it took and how it ended.
#[derive(Debug, Clone, Serialize)]
pub struct Attempt {
    /// Milliseconds from the start of this attempt.
    pub elapsed_ms: u64,
    /// HTTP status, when an answer came.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Why it failed; absent when it produced TwiML.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
}

/// The outcome of a whole fetch, retries included.
#[derive(Debug, Clone, Serialize)]
pub struct Fetch {
    /// The URL requested (no fragment).
    pub url: String,
    /// The settings in force.
    pub overrides: Overrides,
    /// The time all attempts were allowed (tt, capped at 15 s for voice).
    pub budget_ms: u64,
    /// Every attempt, in order.
    pub attempts: Vec<Attempt>,
    /// Milliseconds from the first attempt to the last one's end.
    pub elapsed_ms: u64,
    /// The answer's Content-Type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// Where a twiml-failover primary in upstream mode says its answer came from
    /// (`X-Twiml-Failover-Source`: `upstream`, `template`, `degraded; reason=...`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The TwiML document, when one was retrieved and parsed.
    #[serde(skip)]
    pub twiml: Option<String>,
    /// Why Twilio would give up on this URL; absent on success.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Fetches TwiML like Twilio: attempts until one succeeds, the retry policy says stop, or the
/// budget (`tt`, voice capped at 15 s) runs out.
pub async fn fetch(req: &Request, overrides: &Overrides) -> Fetch {
    let budget = overrides.budget(req.channel == Channel::Voice);
    let start = Instant::now();
    let deadline = start + budget;
    let mut attempts = Vec::new();
    let mut last: Result<Answer, (Failure, Retryable)>;
    loop {
        let attempt_start = Instant::now();
        last = match tokio::time::timeout_at(deadline.into(), attempt(req, overrides)).await {
            Ok(r) => r,
            Err(_) => Err((
                Failure::new(
                    11205,
                    format!(
                        "no answer within the total time of {:.1} s (tt{})",
                        budget.as_secs_f64(),
                        if budget < overrides.total_timeout {
                            ", capped by the 15 s voice limit"
                        } else {
                            ""
                        }
                    ),
                ),
                Retryable::No,
            )),
        };
        attempts.push(Attempt {
            elapsed_ms: ms(attempt_start.elapsed()),
            status: last.as_ref().ok().map(|a| a.status),
            failure: last.as_ref().err().map(|(f, _)| f.clone()),
        });
        let retry = match &last {
            Ok(_) => false,
            Err((_, why)) => {
                let p = overrides.policy;
                match why {
                    Retryable::Connect => p.connect,
                    Retryable::ReadTimeout => p.read_timeout,
                    Retryable::Status4xx => p.status_4xx,
                    Retryable::Status5xx => p.status_5xx,
                    Retryable::No => false,
                }
            }
        };
        let attempts_left = attempts.len() <= overrides.retries as usize;
        if !(retry && attempts_left && Instant::now() < deadline) {
            break;
        }
    }
    let elapsed_ms = ms(start.elapsed());
    let base = Fetch {
        url: req.target.url.clone(),
        overrides: overrides.clone(),
        budget_ms: ms(budget),
        attempts,
        elapsed_ms,
        content_type: None,
        source: None,
        twiml: None,
        failure: None,
    };
    match last {
        Ok(answer) => Fetch {
            content_type: answer.content_type,
            source: answer.source,
            twiml: Some(answer.body),
            ..base
        },
        Err((failure, _)) => Fetch {
            failure: Some(failure),
            ..base
        },
    }
}

/// A successful answer: status and a body Twilio would parse as TwiML.
struct Answer {
    status: u16,
    content_type: Option<String>,
    source: Option<String>,
    body: String,
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// The client TLS settings; the one copy lives in [`crate::net`], shared with the forwarder.
fn tls_failure(e: &std::io::Error) -> Failure {
    use rustls::CertificateError as C;
    let inner = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>());
    let code = match inner {
        Some(rustls::Error::InvalidCertificate(C::NotValidForName))
        | Some(rustls::Error::InvalidCertificate(C::NotValidForNameContext { .. })) => 11235,
        Some(rustls::Error::InvalidCertificate(C::Expired))
        | Some(rustls::Error::InvalidCertificate(C::ExpiredContext { .. })) => 11236,
        Some(rustls::Error::InvalidCertificate(C::UnknownIssuer)) => 11237,
        _ => 11220,
    };
    Failure::new(code, format!("TLS handshake failed: {e}"))
}

async fn connect(target: &Target, ct: Duration) -> Result<Box<dyn Io>, (Failure, Retryable)> {
    let connect = async {
        let addrs: Vec<_> = tokio::net::lookup_host((target.host.as_str(), target.port))
            .await
            .map_err(|e| {
                (
                    Failure::new(11210, format!("cannot resolve {}: {e}", target.host)),
                    Retryable::Connect,
                )
            })?
            .collect();
        let tcp = TcpStream::connect(&addrs[..]).await.map_err(|e| {
            let what = if e.kind() == std::io::ErrorKind::ConnectionRefused {
                "connection refused".to_string()
            } else {
                format!("cannot connect: {e}")
            };
            (Failure::new(11205, what), Retryable::Connect)
        })?;
        let _ = tcp.set_nodelay(true);
        if !target.tls {
            return Ok(Box::new(tcp) as Box<dyn Io>);
        }
        let name = rustls::pki_types::ServerName::try_from(target.host.clone()).map_err(|e| {
            (
                Failure::new(11220, format!("bad TLS server name: {e}")),
                Retryable::No,
            )
        })?;
        let tls = tokio_rustls::TlsConnector::from(crate::net::tls_config())
            .connect(name, tcp)
            .await
            .map_err(|e| (tls_failure(&e), Retryable::Connect))?;
        Ok(Box::new(tls) as Box<dyn Io>)
    };
    // The connect timeout covers establishing the connection, TLS included (`rp=ct` retries both).
    match tokio::time::timeout(ct, connect).await {
        Ok(r) => r,
        Err(_) => Err((
            Failure::new(
                11205,
                format!(
                    "connect timeout: no TCP connection within {} ms (ct)",
                    ct.as_millis()
                ),
            ),
            Retryable::Connect,
        )),
    }
}

fn idempotency_token() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("drill-{}-{nanos:x}-{n}", std::process::id())
}

/// Builds the request line target, the signed URL and the body for `req`.
fn encode(req: &Request) -> (String, String, Option<String>) {
    let form = serde_urlencoded::to_string(&req.params).unwrap_or_default();
    match req.method {
        Method::Post => {
            let sig = signature::sign(
                Algorithm::HmacSha1,
                req.token.as_bytes(),
                &req.target.url,
                &req.params,
            );
            (req.target.path_and_query.clone(), sig, Some(form))
        }
        Method::Get => {
            let sep = if req.target.url.contains('?') {
                '&'
            } else {
                '?'
            };
            let url = format!("{}{sep}{form}", req.target.url);
            let sig = signature::sign(
                Algorithm::HmacSha1,
                req.token.as_bytes(),
                &url,
                &signature::NO_PARAMS,
            );
            let sep = if req.target.path_and_query.contains('?') {
                '&'
            } else {
                '?'
            };
            (
                format!("{}{sep}{form}", req.target.path_and_query),
                sig,
                None,
            )
        }
    }
}

async fn attempt(req: &Request, o: &Overrides) -> Result<Answer, (Failure, Retryable)> {
    let io = connect(&req.target, o.connect_timeout).await?;
    let (mut sender, conn) = http1::handshake(TokioIo::new(io)).await.map_err(|e| {
        (
            Failure::new(11205, format!("HTTP handshake failed: {e}")),
            Retryable::Connect,
        )
    })?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let (path, sig, body) = encode(req);
    let builder = hyper::Request::builder()
        .method(match req.method {
            Method::Post => "POST",
            Method::Get => "GET",
        })
        .uri(path)
        .header("host", &req.target.authority)
        .header("x-twilio-signature", sig)
        .header("i-twilio-idempotency-token", idempotency_token())
        .header("x-home-region", "us1")
        .header("user-agent", "TwilioProxy/1.1 (twiml-failover drill)")
        .header("accept", "*/*")
        .header("connection", "close");
    let request = match body {
        Some(form) => builder
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::from(form))),
        None => builder.body(Full::new(Bytes::new())),
    }
    .map_err(|e| {
        (
            Failure::new(11100, format!("invalid URL: {e}")),
            Retryable::No,
        )
    })?;

    let response = match tokio::time::timeout(o.read_timeout, sender.send_request(request)).await {
        Err(_) => {
            return Err((
                Failure::new(
                    11205,
                    format!(
                        "read timeout: no response within {} ms (rt)",
                        o.read_timeout.as_millis()
                    ),
                ),
                Retryable::ReadTimeout,
            ))
        }
        Ok(Err(e)) if e.is_parse() => {
            return Err((
                Failure::new(11206, format!("not a valid HTTP response: {e}")),
                Retryable::No,
            ))
        }
        Ok(Err(e)) => {
            return Err((
                Failure::new(11200, format!("connection failed before an answer: {e}")),
                Retryable::No,
            ))
        }
        Ok(Ok(r)) => r,
    };
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let source = response
        .headers()
        .get(crate::upstream::SOURCE_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.chars().take(64).collect());
    let mut body = response.into_body();
    let mut bytes = Vec::new();
    // Twilio's read timeout applies between packets too; a partial answer is not retried.
    loop {
        match tokio::time::timeout(o.read_timeout, body.frame()).await {
            Err(_) => {
                return Err((
                    Failure::new(
                        11205,
                        format!(
                            "read timeout: HTTP {status} answer stalled for {} ms (rt) mid-body",
                            o.read_timeout.as_millis()
                        ),
                    ),
                    Retryable::No,
                ))
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                return Err((
                    Failure::new(11200, format!("HTTP {status} answer cut short: {e}")),
                    Retryable::No,
                ))
            }
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    bytes.extend_from_slice(&data);
                    if bytes.len() > MAX_DOCUMENT_BYTES {
                        break;
                    }
                }
            }
        }
    }
    classify(status, content_type.as_deref(), &bytes, req.channel).map(|body| Answer {
        status,
        content_type,
        source,
        body,
    })
}

/// Decides, as Twilio would, whether an HTTP answer is TwiML to execute or a failure that sends
/// the call to the fallback URL. Schema problems (Twilio's 12200 warning) do not fail here.
fn classify(
    status: u16,
    content_type: Option<&str>,
    body: &[u8],
    channel: Channel,
) -> Result<String, (Failure, Retryable)> {
    match status {
        200..=299 => {}
        300..=399 => {
            return Err((
                Failure::new(
                    11200,
                    format!(
                        "HTTP {status} redirect: the drill does not follow HTTP redirects \
                         (Twilio follows up to 10); configure the final URL"
                    ),
                ),
                Retryable::No,
            ))
        }
        400..=499 => {
            return Err((
                Failure::new(11200, format!("HTTP {status} answer")),
                Retryable::Status4xx,
            ))
        }
        500..=599 => {
            return Err((
                Failure::new(11200, format!("HTTP {status} answer")),
                Retryable::Status5xx,
            ))
        }
        _ => {
            return Err((
                Failure::new(11200, format!("unexpected HTTP status {status}")),
                Retryable::No,
            ))
        }
    }
    let Some(content_type) = content_type else {
        return Err((
            Failure::new(11200, "the answer has no Content-Type"),
            Retryable::No,
        ));
    };
    let media = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let xml = matches!(media.as_str(), "text/xml" | "application/xml" | "text/html");
    if !xml && media != "text/plain" {
        let why = if media.starts_with("audio/") && channel == Channel::Voice {
            "an audio answer (Twilio plays it and hangs up; no TwiML)"
        } else {
            "not a TwiML content type (text/xml, application/xml, text/html)"
        };
        return Err((
            Failure::new(12300, format!("Content-Type {content_type:?}: {why}")),
            Retryable::No,
        ));
    }
    if body.len() > MAX_DOCUMENT_BYTES {
        return Err((
            Failure::new(
                11750,
                format!("the answer is over {MAX_DOCUMENT_BYTES} bytes"),
            ),
            Retryable::No,
        ));
    }
    let Ok(text) = std::str::from_utf8(body) else {
        return Err((
            Failure::new(12100, "the answer is not UTF-8"),
            Retryable::No,
        ));
    };
    // Structure only: well-formed, declaration first, one <Response> root.
    if let Some(p) = twiml::lint(text, None).problems.first() {
        let detail = if xml {
            format!("TwiML does not parse: {} (byte {})", p.message, p.offset)
        } else {
            // Twilio reads (voice) or texts back (messaging) a plain-text answer that is not TwiML.
            format!(
                "text/plain answer that is not TwiML: Twilio would {} it instead of executing it",
                match channel {
                    Channel::Voice => "read out",
                    Channel::Messaging => "send back",
                }
            )
        };
        return Err((Failure::new(12100, detail), Retryable::No));
    }
    Ok(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &[u8] = b"<?xml version=\"1.0\"?><Response><Say>hi</Say></Response>";

    fn code(r: Result<String, (Failure, Retryable)>) -> (u16, Retryable) {
        let (f, why) = r.unwrap_err();
        (f.code, why)
    }

    #[test]
    fn twiml_content_types_pass() {
        for ct in [
            "text/xml",
            "text/xml; charset=utf-8",
            "Application/XML",
            "text/html",
            "text/plain",
        ] {
            assert!(classify(200, Some(ct), DOC, Channel::Voice).is_ok(), "{ct}");
        }
    }

    #[test]
    fn failures_get_twilio_codes_and_retry_classes() {
        let v = Channel::Voice;
        assert_eq!(
            code(classify(500, Some("text/xml"), DOC, v)),
            (11200, Retryable::Status5xx)
        );
        assert_eq!(
            code(classify(429, Some("text/xml"), DOC, v)),
            (11200, Retryable::Status4xx)
        );
        assert_eq!(code(classify(302, None, b"", v)), (11200, Retryable::No));
        assert_eq!(code(classify(200, None, DOC, v)), (11200, Retryable::No));
        assert_eq!(
            code(classify(200, Some("application/json"), DOC, v)),
            (12300, Retryable::No)
        );
        assert_eq!(code(classify(200, Some("audio/mpeg"), DOC, v)).0, 12300);
        assert_eq!(
            code(classify(200, Some("text/xml"), b"<Response>", v)).0,
            12100
        );
        assert_eq!(code(classify(200, Some("text/xml"), b"", v)).0, 12100);
        assert_eq!(
            code(classify(
                200,
                Some("text/xml"),
                b" <?xml version=\"1.0\"?><Response/>",
                v
            ))
            .0,
            12100
        );
        assert_eq!(
            code(classify(200, Some("text/xml"), b"<Reply/>", v)).0,
            12100
        );
        assert_eq!(
            code(classify(200, Some("text/plain"), b"hello", v)).0,
            12100
        );
        let big = format!("<Response>{}</Response>", " ".repeat(MAX_DOCUMENT_BYTES));
        assert_eq!(
            code(classify(200, Some("text/xml"), big.as_bytes(), v)).0,
            11750
        );
    }

    #[test]
    fn schema_warnings_do_not_fail_the_fetch() {
        let doc = b"<Response><Say>voice in an SMS answer</Say></Response>";
        assert!(classify(200, Some("text/xml"), doc, Channel::Messaging).is_ok());
    }

    #[test]
    fn post_signs_the_url_and_form_get_signs_the_query() {
        let req = Request {
            target: Target::parse("http://h:1/voice?x=1").unwrap(),
            method: Method::Post,
            params: vec![
                ("Digits".into(), "1".into()),
                ("CallSid".into(), "CA1".into()),
            ],
            token: "t".into(),
            channel: Channel::Voice,
        };
        let (path, sig, body) = encode(&req);
        assert_eq!(path, "/voice?x=1");
        assert_eq!(body.as_deref(), Some("Digits=1&CallSid=CA1"));
        let params = [("CallSid", "CA1"), ("Digits", "1")];
        assert!(signature::verify(
            Algorithm::HmacSha1,
            &[b"t"],
            "http://h:1/voice?x=1",
            &params,
            &sig
        ));
        let get = Request {
            method: Method::Get,
            ..req
        };
        let (path, sig, body) = encode(&get);
        assert_eq!(path, "/voice?x=1&Digits=1&CallSid=CA1");
        assert!(body.is_none());
        assert!(signature::verify(
            Algorithm::HmacSha1,
            &[b"t"],
            "http://h:1/voice?x=1&Digits=1&CallSid=CA1",
            &signature::NO_PARAMS,
            &sig
        ));
    }
}
