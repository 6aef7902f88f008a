//! One request as named stages, top to bottom: accept (route, the head's bounds) → limits (the body
//! within its budget, then a permit) → decode → verify → journal (the event handed to the writer)
//! → answer (from upstream, or from templates) → respond (the journal's word, the metrics and one
//! log line; for a request that failed before its signature was verified, the line only within
//! `unverified_log`'s rate). A stage continues with what the next one needs or refuses with a
//! status ([`Refused`]). Never returns an error to hyper (that would drop the connection without
//! an answer).

use std::borrow::Cow;
use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::request::Parts;
use http::{Request, StatusCode, Version};
use hyper::body::Incoming;
use tokio::sync::OwnedSemaphorePermit;

use super::app::App;
use super::limits::{self, BodyError, BodyRules};
use super::respond::{self, Reply};
use crate::journal::record::{self, Received};
use crate::journal::time::now_ms;
use crate::journal::writer::{Pending, Written};
use crate::readiness::Phase;
use crate::route::{route, Route};
use crate::templates::{AnswerError, ServedBy};
use crate::twilio::{self, Channel};
use crate::upstream::{request, Prepared, Source};
use crate::verify::{attempted, authenticate, Signer};
use crate::webhook::{decode, single_header, DecodeError, Params, Payload, UrlRules, Webhook};

/// What the request log line says beyond method, path and status.
#[derive(Debug, Default)]
struct Outcome {
    /// The verified parameters, once decoded: the line's CallSid and MessageSid.
    params: Option<Arc<Params>>,
    error_code: Option<String>,
    error_url: Option<String>,
    served_by: Option<ServedBy>,
    reason: Option<String>,
    journal: Option<Written>,
    /// On a refused signature: where the signed URL came from, and what was tried.
    signature: Option<SignatureLog>,
    /// In upstream mode: where the answer came from.
    source: Option<Source>,
    /// The signature was checked and valid: the line is always written.
    verified: bool,
    /// The monitor's probe ([`twilio::PROBE_PARAM`]): counted under its own route label.
    probe: bool,
}

/// The fields a 403's log line adds, so an operator can see why a signature did not match.
#[derive(Debug)]
struct SignatureLog {
    url_from: &'static str,
    tried: String,
    keys: String,
}

/// Why a stage stopped the request: the status the caller gets, and the log line's reason.
#[derive(Debug)]
struct Refused {
    status: StatusCode,
    reason: String,
}

impl Outcome {
    /// A verified parameter, fit for the log line.
    fn param(&self, name: &str) -> Option<Cow<'_, str>> {
        self.params.as_ref()?.get(name).map(loggable)
    }
}

impl Refused {
    fn new(status: StatusCode, reason: impl Into<String>) -> Refused {
        Refused {
            status,
            reason: reason.into(),
        }
    }

    /// The answer: the fixed error body, or an empty 204 for a status callback.
    fn reply(&self) -> Reply {
        match self.status {
            StatusCode::NO_CONTENT => respond::no_content(),
            status => respond::error(status),
        }
    }
}

/// Answers one request from `peer` that reached the `scheme` listener: accept, then respond.
pub async fn handle(
    app: Arc<App>,
    scheme: &'static str,
    peer: Option<IpAddr>,
    req: Request<Incoming>,
) -> Result<Reply, Infallible> {
    let started = Instant::now();
    // The head stays here for the log line; the stages borrow it.
    let (head, body) = req.into_parts();
    let route = route(&head.method, head.uri.path());
    let mut outcome = Outcome::default();
    let mut response = match limits::check_head(&head) {
        Err(status) => {
            outcome.reason = Some("request head too large".into());
            respond::error(status)
        }
        Ok(()) => match &route {
            Route::Healthz => respond::text(StatusCode::OK, "ok\n"),
            Route::Readyz => readyz(&app),
            Route::Metrics => respond::metrics(app.metrics().encode()),
            Route::NotFound => respond::error(StatusCode::NOT_FOUND),
            Route::MethodNotAllowed(allow) => respond::method_not_allowed(allow),
            Route::Status | Route::Template(_) => {
                let kind = Kind::of(&route);
                let from = Arrived {
                    scheme,
                    peer,
                    started,
                };
                webhook(&app, from, &head, body, kind, &mut outcome).await
            }
        },
    };
    respond(&app, &head, started, &route, &mut response, &outcome);
    Ok(response)
}

/// Where and when a webhook arrived.
#[derive(Debug, Clone, Copy)]
struct Arrived {
    /// The listener's scheme (`http` or `https`).
    scheme: &'static str,
    peer: Option<IpAddr>,
    started: Instant,
}

/// The respond stage: the headers every answer gets, the request metrics and the log line.
fn respond(
    app: &App,
    head: &Parts,
    started: Instant,
    route: &Route<'_>,
    response: &mut Reply,
    outcome: &Outcome,
) {
    // While draining, tell HTTP/1 clients to reconnect (to the next instance) after this answer.
    if app.readiness().phase() == Phase::Draining && head.version < Version::HTTP_2 {
        response.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
    }
    if let Some(source) = outcome.source {
        response
            .headers_mut()
            .insert(twilio::SOURCE_HEADER, source.header());
    }
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    let label = if outcome.probe {
        "probe"
    } else {
        route.label()
    };
    app.metrics().request(label, status, elapsed.as_secs_f64());
    // Anyone can send requests that fail before the signature check; their lines are rate-limited
    // (and counted) so a stranger cannot fill the operator's logs. Every genuine request is logged.
    if outcome.verified || app.unverified_log().admit(status) {
        log_line(app, head, status, elapsed, outcome);
    }
}

/// The one line each request leaves in the log.
fn log_line(app: &App, head: &Parts, status: u16, elapsed: Duration, outcome: &Outcome) {
    tracing::info!(
        target: "twiml_failover::request",
        // A method is one token (hyper refuses space, `"` and `=` in it), so it shows bare; the
        // path is a string, which the text format quotes and escapes: it cannot pass for another
        // field or line.
        method = %head.method,
        path = first_chars(head.uri.path(), 200),
        status,
        latency_us = elapsed.as_micros() as u64,
        role = app.settings().role.as_str(),
        call_sid = outcome.param("CallSid").as_deref(),
        message_sid = outcome.param("MessageSid").as_deref(),
        // Only on a fallback hit: absent says "not one" as well, for less work per line.
        fallback = outcome.error_code.is_some().then_some(true),
        probe = outcome.probe.then_some(true),
        error_code = outcome.error_code.as_deref(),
        error_url = outcome.error_url.as_deref(),
        served_by = outcome.served_by.map(ServedBy::label),
        source = outcome.source.map(Source::kind),
        upstream_outcome = outcome.source.map(Source::outcome),
        reason = outcome.reason.as_deref(),
        journal = outcome.journal.as_ref().map(Written::label),
        journal_id = outcome.journal.as_ref().and_then(Written::id),
        signed_url_from = outcome.signature.as_ref().map(|s| s.url_from),
        tried_urls = outcome.signature.as_ref().map(|s| s.tried.as_str()),
        tried_keys = outcome.signature.as_ref().map(|s| s.keys.as_str()),
    );
}

/// `/readyz`: 200 while serving, 503 while starting or draining. A journal store that does not
/// answer leaves it 200: every replica shares that store, so taking them all out of the load
/// balancer would turn a journal outage into callers getting no answer at all; the body says so
/// instead (and `journal_up` is 0), while events are held in memory and retried.
fn readyz(app: &App) -> Reply {
    let (status, mut body) = if app.readiness().is_ready() {
        (StatusCode::OK, String::from("ready\n"))
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, String::from("not ready\n"))
    };
    if let Some(journal) = app.journal() {
        let health = journal.health();
        if health.up {
            body.push_str("journal: up\n");
        } else {
            body.push_str(&format!(
                "journal: down; {} event(s) held in memory and retried\n",
                health.buffered
            ));
        }
    }
    respond::text(status, body)
}

/// At most the first `max` characters of `value`.
fn first_chars(value: &str, max: usize) -> &str {
    match value.char_indices().nth(max) {
        Some((end, _)) => &value[..end],
        None => value,
    }
}

/// Keeps attacker-influenced values in logs short and on one line.
fn loggable(value: &str) -> Cow<'_, str> {
    // Control characters are C0, DEL and C1 (U+0080-U+009F, UTF-8 lead byte C2): a byte scan
    // clears most values without decoding them, and one with a C2 byte is looked at closely.
    let clean = |v: &str| !v.bytes().any(|b| b < 0x20 || b == 0x7f || b == 0xc2);
    if value.len() <= 200 && (clean(value) || !value.chars().any(char::is_control)) {
        return Cow::Borrowed(value);
    }
    Cow::Owned(
        value
            .chars()
            .filter(|c| !c.is_control())
            .take(200)
            .collect(),
    )
}

/// Which kind of webhook a route asks for: one a template answers (by this name), or a status
/// callback.
#[derive(Debug, Clone, Copy)]
enum Kind<'r> {
    Template(&'r str),
    Callback,
}

impl<'r> Kind<'r> {
    fn of(route: &'r Route<'_>) -> Kind<'r> {
        match route {
            Route::Template(name) => Kind::Template(name),
            _ => Kind::Callback,
        }
    }

    fn template(self) -> Option<&'r str> {
        match self {
            Kind::Template(name) => Some(name),
            Kind::Callback => None,
        }
    }
}

/// The webhook's stages, from the body to the answer; a refusal becomes its error answer.
async fn webhook(
    app: &App,
    from: Arrived,
    parts: &Parts,
    body: Incoming,
    kind: Kind<'_>,
    log: &mut Outcome,
) -> Reply {
    let answered = async {
        let body = read_body(app, body).await?;
        let _permit = admit(app)?;
        let hook = decode_request(app, from.scheme, parts, body.clone())?;
        let signer = verify(app, parts, &hook, log)?;
        if hook.param(twilio::PROBE_PARAM).is_some() {
            return probe(app, kind, hook, log);
        }
        let upstream = prepare_upstream(app, parts, from.peer, &hook, body, signer, kind);
        alert(app, kind, &hook, log);
        let (url, params) = parameters(hook, kind)?;
        tracing::debug!(params = ?params, "webhook parameters");
        let params = Arc::new(params);
        log.params = Some(params.clone());
        if kind.template().is_none() && app.journal().is_none() && upstream.is_none() {
            return Ok(respond::no_content());
        }
        // Handed to the journal writer before answering, so the commit and the answer overlap.
        let pending = journal(app, parts, &url, &params);
        let answer = answer(app, kind, upstream, params, from.started, log).await;
        record(app, pending, log).await;
        Ok::<_, Refused>(answer)
    };
    match answered.await {
        Ok(answer) => answer,
        Err(refused) => {
            let reply = refused.reply();
            log.reason = Some(refused.reason);
            reply
        }
    }
}

/// Limits, first half: the whole body, within its size, time, rate and the shared budget.
async fn read_body(app: &App, body: Incoming) -> Result<Bytes, Refused> {
    let limits = &app.settings().limits;
    let rules = BodyRules {
        max: limits.max_body_bytes,
        timeout: limits.request_timeout,
        min_rate: limits.min_body_rate,
        grace: limits.body_grace,
    };
    limits::read_body(body, app.bodies(), rules)
        .await
        .map_err(|e| {
            let status = match e {
                BodyError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
                BodyError::TimedOut | BodyError::TooSlow => StatusCode::REQUEST_TIMEOUT,
                BodyError::Broken => StatusCode::BAD_REQUEST,
            };
            Refused::new(status, format!("body: {e:?}"))
        })
}

/// Limits, second half: the permit for the work after the body, so nothing a slow client does
/// holds one.
fn admit(app: &App) -> Result<OwnedSemaphorePermit, Refused> {
    limits::admit(app.concurrency()).ok_or_else(|| {
        app.metrics().load_shed();
        Refused::new(StatusCode::SERVICE_UNAVAILABLE, "concurrency limit reached")
    })
}

/// Decode: the URL Twilio signed and the parameters, not yet trusted.
fn decode_request(
    app: &App,
    scheme: &'static str,
    parts: &Parts,
    body: Bytes,
) -> Result<Webhook, Refused> {
    let rules = UrlRules {
        public_url: app.settings().public_url.as_ref(),
        scheme,
        trust_forwarded: app.settings().trust_forwarded_headers,
    };
    decode(rules, &parts.method, &parts.uri, &parts.headers, body)
        .map_err(|e| Refused::new(decode_status(&e), e.to_string()))
}

/// Verify: the signature, by one of the keyring's keys; from here on the line is always written.
fn verify<'a>(
    app: &'a App,
    parts: &Parts,
    hook: &Webhook,
    log: &mut Outcome,
) -> Result<Signer<'a>, Refused> {
    match authenticate(&app.settings().keyring, &parts.headers, hook) {
        Ok(signer) => {
            log.verified = true;
            Ok(signer)
        }
        Err(e) => {
            app.metrics().signature_failure(e.label());
            log.signature = signature_log(app, &parts.headers, hook);
            Err(Refused::new(
                StatusCode::FORBIDDEN,
                loggable(&e.to_string()).into_owned(),
            ))
        }
    }
}

/// The monitor's probe (docs/monitor.md): verified like any webhook and answered from the templates
/// (so the answer is what a caller would get), but never journaled, never sent to the upstream app
/// or forwarded, never counted as a fallback hit or as traffic.
fn probe(app: &App, kind: Kind<'_>, hook: Webhook, log: &mut Outcome) -> Result<Reply, Refused> {
    log.probe = true;
    let (_, params) = parameters(hook, kind)?;
    let params = Arc::new(params);
    log.params = Some(params.clone());
    Ok(match kind {
        Kind::Template(name) => render(app, name, params, false, log),
        Kind::Callback => respond::no_content(),
    })
}

/// What a refused signature was checked against (no key, token or expected signature).
fn signature_log(app: &App, headers: &http::HeaderMap, hook: &Webhook) -> Option<SignatureLog> {
    let tried = attempted(&app.settings().keyring, headers, hook)?;
    let url_from = if app.settings().public_url.is_some() {
        "public-url"
    } else if app.settings().trust_forwarded_headers
        && (headers.contains_key("x-forwarded-host") || headers.contains_key("x-forwarded-proto"))
    {
        "x-forwarded headers"
    } else {
        "host header"
    };
    let urls: Vec<String> = tried
        .urls
        .iter()
        .map(|u| loggable(u).into_owned())
        .collect();
    Some(SignatureLog {
        url_from,
        tried: urls.join(" "),
        keys: format!(
            "{} {} x{}",
            tried.algorithm, tried.key_kind, tried.key_count
        ),
    })
}

/// Upstream mode: the upstream's copy of what was verified, built before the parameters are
/// taken; `None` without upstream mode or for a path answered locally.
fn prepare_upstream(
    app: &App,
    parts: &Parts,
    peer: Option<IpAddr>,
    hook: &Webhook,
    body: Bytes,
    signer: Signer<'_>,
    kind: Kind<'_>,
) -> Option<Prepared> {
    let upstream = app.upstream()?;
    let form = match &hook.payload {
        Payload::Form(params) => Some(params),
        Payload::Query | Payload::Json(_) => None,
    };
    let incoming = request::Incoming {
        method: &parts.method,
        path_and_query: parts.uri.path_and_query().map_or("/", |pq| pq.as_str()),
        headers: &parts.headers,
        body,
        signed_url: &hook.url,
        form,
        peer,
    };
    upstream.prepare(&incoming, signer, kind.template().is_none())
}

/// Twilio adds ErrorCode and ErrorUrl only when it calls the fallback URL: that is an alert.
fn alert(app: &App, kind: Kind<'_>, hook: &Webhook, log: &mut Outcome) {
    let Some(code) = kind.template().and_then(|_| hook.param("ErrorCode")) else {
        return;
    };
    if let Some(url) = hook.param("ErrorUrl") {
        app.metrics().fallback_request(code);
        log.error_code = Some(loggable(code).into_owned());
        log.error_url = Some(loggable(url).into_owned());
    }
}

/// The signed URL and everything a template may see; a status callback whose JSON body cannot be
/// read still gets its 204.
fn parameters(mut hook: Webhook, kind: Kind<'_>) -> Result<(String, Params), Refused> {
    let url = std::mem::take(&mut hook.url);
    match hook.into_params() {
        Ok(params) => Ok((url, params)),
        Err(e) => {
            let status = match kind {
                Kind::Template(_) => decode_status(&e),
                Kind::Callback => StatusCode::NO_CONTENT,
            };
            Err(Refused::new(status, e.to_string()))
        }
    }
}

/// Journal: the event handed to the writer, when there is a journal.
fn journal(app: &App, parts: &Parts, url: &str, params: &Params) -> Option<Pending> {
    let journal = app.journal()?;
    Some(journal.submit(record::new_event(Received {
        received_at_ms: now_ms(),
        role: app.settings().role,
        method: parts.method.as_str(),
        url,
        path: parts.uri.path(),
        params,
        // Twilio's retry-stable token, when sent exactly once as text.
        idempotency_token: single_header(&parts.headers, record::IDEMPOTENCY_HEADER),
    })))
}

/// Answer: from the upstream when the webhook went there and its answer is usable, else from the
/// templates; a status callback gets 204 whatever the upstream said.
async fn answer(
    app: &App,
    kind: Kind<'_>,
    upstream: Option<Prepared>,
    params: Arc<Params>,
    started: Instant,
    log: &mut Outcome,
) -> Reply {
    let (Some(prepared), Some(u)) = (upstream, app.upstream()) else {
        let Kind::Template(name) = kind else {
            return respond::no_content();
        };
        log.source = app.upstream().map(|u| u.local());
        return render(app, name, params, false, log);
    };
    let channel = Channel::of_webhook(params.get("CallSid"), params.get("MessageSid"));
    // Boxed: the upstream call's state is large, and held inline it would be copied with every
    // move of every request's future, upstream mode or not.
    let result = Box::pin(u.answer(prepared, channel, started)).await;
    log.source = Some(Source::of(&result));
    match (kind, result) {
        (Kind::Template(_), Ok(answered)) => respond::upstream(answered),
        (Kind::Template(name), Err(_)) => render(app, name, params, true, log),
        // The app's answer to a status callback is irrelevant to Twilio.
        (Kind::Callback, _) => respond::no_content(),
    }
}

/// Renders `name`; `upstream_failed` takes the local rules of upstream mode (a path the primary
/// set has no template for still gets the fallback set's answer).
fn render(
    app: &App,
    name: &str,
    params: Arc<Params>,
    upstream_failed: bool,
    log: &mut Outcome,
) -> Reply {
    let templates = app.templates();
    let answer = if upstream_failed {
        templates.answer_locally(name, params)
    } else {
        templates.answer(name, params)
    };
    match answer {
        Ok(answer) => {
            log.served_by = Some(answer.served_by);
            if let Some(first) = answer.degraded_from {
                app.metrics().degraded_answer();
                tracing::warn!(
                    template = name,
                    error = first.to_string(),
                    "template failed; answered from the fallback set"
                );
            }
            respond::twiml(answer.twiml)
        }
        Err(AnswerError::NotFound) => {
            log.reason = Some("no template".into());
            respond::error(StatusCode::NOT_FOUND)
        }
        Err(AnswerError::Failed(e)) => {
            // 503 makes Twilio try the number's fallback URL at once. A string, quoted in the log:
            // the error may quote a value from the request.
            let reason = e.to_string();
            tracing::error!(template = name, error = reason, "no template could answer");
            log.reason = Some(reason);
            respond::error(StatusCode::SERVICE_UNAVAILABLE)
        }
    }
}

/// Respond, first half: what the journal said, on the log line. The caller comes first: it is
/// answered whatever the journal said.
async fn record(app: &App, pending: Option<Pending>, log: &mut Outcome) {
    let (Some(journal), Some(pending)) = (app.journal(), pending) else {
        return;
    };
    let written = journal.wait(pending).await;
    match &written {
        Written::New(_) | Written::Duplicate(_) => {}
        Written::Failed(e) => log.reason = Some(format!("journal: {}", loggable(e))),
        Written::Timeout => log.reason = Some("journal: commit timed out".into()),
        Written::Overloaded => log.reason = Some("journal: writer queue full".into()),
    }
    log.journal = Some(written);
}

fn decode_status(e: &DecodeError) -> StatusCode {
    match e {
        DecodeError::Malformed(_) => StatusCode::BAD_REQUEST,
        DecodeError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
    }
}
