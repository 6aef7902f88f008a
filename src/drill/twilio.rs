//! Fetching TwiML the way Twilio does: signed form request, connect and read timeouts, retries on
//! the `rp` conditions within `tt`, and the error code Twilio would report when it gives up. The
//! requests go through [`crate::net`]; what is here is pure (encoding, classifying an answer, the
//! Twilio code for each [`net::Error`]) apart from [`fetch`]'s loop.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{ACCEPT, CONNECTION, CONTENT_TYPE, HOST, USER_AGENT};
use http::HeaderName;
use serde::Serialize;

use crate::net::{self, url::Target, BodyFailure, ConnectKind};
use crate::signature::{self, Algorithm};
use crate::twilio::document::{self, MAX_DOCUMENT_BYTES};
use crate::twilio::media::Media;
use crate::twilio::overrides::Overrides;
use crate::twilio::{Channel, SOURCE_HEADER};

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
    // A connection per attempt, as Twilio makes them (`connection: close`, none kept idle).
    let client = net::Client::new(net::Settings {
        connect_timeout: overrides.connect_timeout,
        read_timeout: Some(overrides.read_timeout),
        request_timeout: budget,
        max_body_bytes: MAX_DOCUMENT_BYTES,
        max_idle_per_host: 0,
    });
    let start = Instant::now();
    let deadline = start + budget;
    let mut attempts = Vec::new();
    let mut last: Result<Answer, (Failure, Retryable)>;
    loop {
        let attempt_start = Instant::now();
        let attempt = attempt(req, &client, overrides, budget);
        last = match tokio::time::timeout_at(deadline.into(), attempt).await {
            Ok(r) => r,
            Err(_) => Err(out_of_time(overrides, budget)),
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

/// Every attempt together got no answer within `budget` (tt, or the voice cap).
fn out_of_time(o: &Overrides, budget: Duration) -> (Failure, Retryable) {
    let capped = if budget < o.total_timeout {
        ", capped by the 15 s voice limit"
    } else {
        ""
    };
    let detail = format!(
        "no answer within the total time of {:.1} s (tt{capped})",
        budget.as_secs_f64()
    );
    (Failure::new(11205, detail), Retryable::No)
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

async fn attempt(
    req: &Request,
    client: &net::Client,
    o: &Overrides,
    budget: Duration,
) -> Result<Answer, (Failure, Retryable)> {
    let (path, sig, form) = encode(req);
    let header = HeaderName::from_static;
    let mut headers = vec![
        (HOST, req.target.authority.clone()),
        (header("x-twilio-signature"), sig),
        (header("i-twilio-idempotency-token"), idempotency_token()),
        (header("x-home-region"), "us1".to_string()),
        (
            USER_AGENT,
            "TwilioProxy/1.1 (twiml-failover drill)".to_string(),
        ),
        (ACCEPT, "*/*".to_string()),
        (CONNECTION, "close".to_string()),
    ];
    let method = match req.method {
        Method::Post => http::Method::POST,
        Method::Get => http::Method::GET,
    };
    if form.is_some() {
        headers.push((
            CONTENT_TYPE,
            "application/x-www-form-urlencoded".to_string(),
        ));
    }
    let request = net::Request {
        method,
        url: req.target.with_path(&path),
        headers,
        body: form.map_or_else(Bytes::new, Bytes::from),
    };
    let answer = match client.send(request).await {
        Ok(answer) => answer,
        Err(e) => return Err(failure(e, req.channel, o, budget)),
    };
    let content_type = answer
        .headers
        .get("content-type")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let source = answer
        .header(SOURCE_HEADER)
        .map(|v| v.chars().take(64).collect());
    let status = answer.status;
    classify(status, content_type.as_deref(), &answer.body, req.channel).map(|body| Answer {
        status,
        content_type,
        source,
        body,
    })
}

/// The Twilio error code for an attempt that got no whole answer, and whether `rp` may retry it.
fn failure(
    e: net::Error,
    channel: Channel,
    o: &Overrides,
    budget: Duration,
) -> (Failure, Retryable) {
    let rt = o.read_timeout.as_millis();
    let (code, detail, retry) = match e {
        net::Error::Invalid(e) => (11100, format!("invalid URL: {e}"), Retryable::No),
        // Every connect failure, the TLS handshake's included (`ct` covers it), is `rp=ct`'s.
        net::Error::Connect(c) => {
            let handshake = |detail| format!("TLS handshake failed: {detail}");
            let (code, detail) = match c.kind {
                ConnectKind::Resolve => (11210, c.detail),
                ConnectKind::Refused => (11205, "connection refused".to_string()),
                ConnectKind::Timeout => (
                    11205,
                    format!(
                        "connect timeout: no TCP connection within {} ms (ct)",
                        o.connect_timeout.as_millis()
                    ),
                ),
                ConnectKind::Other => (11205, format!("cannot connect: {}", c.detail)),
                ConnectKind::CertificateName => (11235, handshake(c.detail)),
                ConnectKind::CertificateExpired => (11236, handshake(c.detail)),
                ConnectKind::CertificateIssuer => (11237, handshake(c.detail)),
                ConnectKind::Tls | ConnectKind::Certificate => (11220, handshake(c.detail)),
            };
            (code, detail, Retryable::Connect)
        }
        net::Error::Timeout(_) => return out_of_time(o, budget),
        net::Error::HeadTimeout(_) => (
            11205,
            format!("read timeout: no response within {rt} ms (rt)"),
            Retryable::ReadTimeout,
        ),
        net::Error::NotHttp(e) => (
            11206,
            format!("not a valid HTTP response: {e}"),
            Retryable::No,
        ),
        net::Error::Io(e) => (
            11200,
            format!("connection failed before an answer: {e}"),
            Retryable::No,
        ),
        net::Error::Body(b) => match b.failure {
            // Twilio's read timeout applies between packets too; a partial answer is not retried.
            BodyFailure::Stalled(_) => (
                11205,
                format!(
                    "read timeout: HTTP {} answer stalled for {rt} ms (rt) mid-body",
                    b.status
                ),
                Retryable::No,
            ),
            BodyFailure::Cut(e) => (
                11200,
                format!("HTTP {} answer cut short: {e}", b.status),
                Retryable::No,
            ),
            BodyFailure::Framing(e) => (
                11200,
                format!("HTTP {} answer with ambiguous framing: {e}", b.status),
                Retryable::No,
            ),
            // What the status and Content-Type say comes first, as for a whole answer.
            BodyFailure::TooLarge(_) => {
                return match classify_head(b.status, b.header("content-type"), channel) {
                    Ok(_) => too_large(),
                    Err(failure) => failure,
                }
            }
        },
    };
    (Failure::new(code, detail), retry)
}

/// Decides, as Twilio would, whether an HTTP answer is TwiML to execute or a failure that sends
/// the call to the fallback URL. Schema problems (Twilio's 12200 warning) do not fail here.
fn classify(
    status: u16,
    content_type: Option<&str>,
    body: &[u8],
    channel: Channel,
) -> Result<String, (Failure, Retryable)> {
    let xml = classify_head(status, content_type, channel)?;
    classify_body(xml, body, channel)
}

/// The status and Content-Type part of [`classify`]: `Ok(true)` for an XML type, `Ok(false)`
/// for text/plain.
fn classify_head(
    status: u16,
    content_type: Option<&str>,
    channel: Channel,
) -> Result<bool, (Failure, Retryable)> {
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
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let Some(media) = Media::of(&essence) else {
        let why = if essence.starts_with("audio/") && channel == Channel::Voice {
            "an audio answer (Twilio plays it and hangs up; no TwiML)"
        } else {
            "not a TwiML content type (text/xml, application/xml, text/html)"
        };
        return Err((
            Failure::new(12300, format!("Content-Type {content_type:?}: {why}")),
            Retryable::No,
        ));
    };
    Ok(media == Media::Xml)
}

fn too_large() -> (Failure, Retryable) {
    let detail = format!("the answer is over {MAX_DOCUMENT_BYTES} bytes");
    (Failure::new(11750, detail), Retryable::No)
}

/// The body part of [`classify`], once the head passed.
fn classify_body(xml: bool, body: &[u8], channel: Channel) -> Result<String, (Failure, Retryable)> {
    if body.len() > MAX_DOCUMENT_BYTES {
        return Err(too_large());
    }
    let Ok(text) = std::str::from_utf8(body) else {
        return Err((
            Failure::new(12100, "the answer is not UTF-8"),
            Retryable::No,
        ));
    };
    // Structure only: well-formed, declaration first, one <Response> root.
    if let Some(p) = document::check(text, None).problems.first() {
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
    fn each_stage_of_a_failed_exchange_gets_its_twilio_code() {
        let o = crate::twilio::overrides::parse(None).0;
        let budget = o.budget(true);
        let code = |e: net::Error| {
            let (f, why) = failure(e, Channel::Voice, &o, budget);
            (f.code, why)
        };
        let connect = |kind| {
            code(net::Error::Connect(net::ConnectFailure {
                kind,
                detail: "x".into(),
            }))
        };
        let c = Retryable::Connect;
        assert_eq!(connect(ConnectKind::Resolve), (11210, c));
        assert_eq!(connect(ConnectKind::Refused), (11205, c));
        assert_eq!(connect(ConnectKind::Timeout), (11205, c));
        assert_eq!(connect(ConnectKind::Other), (11205, c));
        assert_eq!(connect(ConnectKind::Tls), (11220, c));
        assert_eq!(connect(ConnectKind::CertificateName), (11235, c));
        assert_eq!(connect(ConnectKind::CertificateExpired), (11236, c));
        assert_eq!(connect(ConnectKind::CertificateIssuer), (11237, c));
        assert_eq!(connect(ConnectKind::Certificate), (11220, c));
        let rt = o.read_timeout;
        assert_eq!(
            code(net::Error::HeadTimeout(rt)),
            (11205, Retryable::ReadTimeout)
        );
        assert_eq!(
            code(net::Error::NotHttp("x".into())),
            (11206, Retryable::No)
        );
        assert_eq!(code(net::Error::Io("x".into())), (11200, Retryable::No));
        assert_eq!(code(net::Error::Timeout(budget)), (11205, Retryable::No));
        let body = |status, content_type: &str, failure| {
            let mut headers = http::HeaderMap::new();
            headers.insert("content-type", content_type.parse().unwrap());
            code(net::Error::Body(Box::new(net::BodyError {
                status,
                headers,
                failure,
            })))
        };
        let big = BodyFailure::TooLarge(MAX_DOCUMENT_BYTES);
        assert_eq!(body(200, "text/xml", big.clone()), (11750, Retryable::No));
        // The status and the Content-Type are judged before the size, as for a whole answer.
        assert_eq!(
            body(503, "text/xml", big.clone()),
            (11200, Retryable::Status5xx)
        );
        assert_eq!(body(200, "application/json", big), (12300, Retryable::No));
        assert_eq!(
            body(200, "text/xml", BodyFailure::Stalled(rt)),
            (11205, Retryable::No)
        );
        assert_eq!(
            body(200, "text/xml", BodyFailure::Cut("eof".into())),
            (11200, Retryable::No)
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
