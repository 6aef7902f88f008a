//! One request, top to bottom: route → limits → read body (bounded budget) → permit → decode → verify signature → render →
//! respond, then the metrics and one log line (for a request that failed before its signature was
//! verified, only within `unverified_log`'s rate). Never returns an error to hyper (that would drop the
//! connection without an answer).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use http::{Request, StatusCode};
use hyper::body::Incoming;

use super::app::App;
use super::limits::{self, BodyError, BodyRules};
use super::respond::{self, Reply};
use crate::journal::record::{self, Received};
use crate::journal::time::now_ms;
use crate::journal::writer::Written;
use crate::readiness::Phase;
use crate::route::{route, Route};
use crate::templates::{AnswerError, ServedBy};
use crate::twilio::{self, Channel};
use crate::upstream::{request, Source};
use crate::verify::{attempted, authenticate};
use crate::webhook::{decode, single_header, DecodeError, Params, Payload, UrlRules, Webhook};

/// The address a request came from, as seen by the listener: a request extension the connection
/// adds, so that the upstream request can name it in `X-Forwarded-For`.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub std::net::IpAddr);

/// What the request log line says beyond method, path and status.
#[derive(Debug, Default)]
struct Outcome {
    call_sid: Option<String>,
    message_sid: Option<String>,
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
}

/// The fields a 403's log line adds, so an operator can see why a signature did not match.
#[derive(Debug)]
struct SignatureLog {
    url_from: &'static str,
    tried: String,
    keys: String,
}

/// Answers one request.
pub async fn handle(
    app: Arc<App>,
    scheme: &'static str,
    req: Request<Incoming>,
) -> Result<Reply, Infallible> {
    let started = Instant::now();
    let method = req.method().clone();
    let version = req.version();
    // A cheap clone (shared bytes) so the log line can borrow the path after `req` is consumed.
    let uri = req.uri().clone();
    let route = route(&method, uri.path());
    let mut outcome = Outcome::default();
    let mut response = match limits::check_head(&req) {
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
                webhook(&app, scheme, req, &route, started, &mut outcome).await
            }
        },
    };
    // While draining, tell HTTP/1 clients to reconnect (to the next instance) after this answer.
    if app.readiness().phase() == Phase::Draining && version < http::Version::HTTP_2 {
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
    app.metrics()
        .request(route.label(), status, elapsed.as_secs_f64());
    // Anyone can send requests that fail before the signature check; their lines are rate-limited
    // (and counted) so a stranger cannot fill the operator's logs. Every genuine request is logged.
    if !outcome.verified && !app.unverified_log().admit(status) {
        return Ok(response);
    }
    let fallback = outcome.error_code.is_some();
    let path = first_chars(uri.path(), 200);
    tracing::info!(
        target: "twiml_failover::request",
        // A method is one token (hyper refuses space, `"` and `=` in it), so it shows bare; the
        // path is a string, which the text format quotes and escapes: it cannot pass for another
        // field or line.
        method = %method,
        path,
        status,
        latency_us = elapsed.as_micros() as u64,
        role = app.settings().role.as_str(),
        call_sid = outcome.call_sid.as_deref(),
        message_sid = outcome.message_sid.as_deref(),
        fallback,
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
    Ok(response)
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
fn loggable(value: &str) -> String {
    if value.len() <= 200 && !value.chars().any(char::is_control) {
        return value.to_owned();
    }
    value
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect()
}

async fn webhook(
    app: &App,
    scheme: &'static str,
    req: Request<Incoming>,
    route: &Route,
    started: Instant,
    outcome: &mut Outcome,
) -> Reply {
    let limits = &app.settings().limits;
    let (parts, body) = req.into_parts();
    let rules = BodyRules {
        max: limits.max_body_bytes,
        timeout: limits.request_timeout,
        min_rate: limits.min_body_rate,
        grace: limits.body_grace,
    };
    let body = match limits::read_body(body, app.bodies(), rules).await {
        Ok(body) => body,
        Err(e) => {
            outcome.reason = Some(format!("body: {e:?}"));
            return respond::error(match e {
                BodyError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
                BodyError::TimedOut | BodyError::TooSlow => StatusCode::REQUEST_TIMEOUT,
                BodyError::Broken => StatusCode::BAD_REQUEST,
            });
        }
    };
    // The permit for the work after the body: nothing a slow client does holds one.
    let Some(_permit) = limits::admit(app.concurrency()) else {
        app.metrics().load_shed();
        outcome.reason = Some("concurrency limit reached".into());
        return respond::error(StatusCode::SERVICE_UNAVAILABLE);
    };
    let rules = UrlRules {
        public_url: app.settings().public_url.as_ref(),
        scheme,
        trust_forwarded: app.settings().trust_forwarded_headers,
    };
    // The upstream gets the body as Twilio sent it (a cheap clone: shared bytes).
    let raw_body = body.clone();
    let hook = match decode(rules, &parts.method, &parts.uri, &parts.headers, body) {
        Ok(hook) => hook,
        Err(e) => {
            outcome.reason = Some(e.to_string());
            return respond::error(decode_status(&e));
        }
    };
    let signer = match authenticate(&app.settings().keyring, &parts.headers, &hook) {
        Ok(signer) => signer,
        Err(e) => {
            app.metrics().signature_failure(e.label());
            outcome.reason = Some(loggable(&e.to_string()));
            outcome.signature = signature_log(app, &parts.headers, &hook);
            return respond::error(StatusCode::FORBIDDEN);
        }
    };
    outcome.verified = true;
    outcome.call_sid = hook.param("CallSid").map(loggable);
    outcome.message_sid = hook.param("MessageSid").map(loggable);
    let journal = app.journal();
    let template = match route {
        Route::Template(name) => Some(name),
        _ => None,
    };
    // Upstream mode: only what is verified goes on, built before the parameters are taken.
    let upstream = app.upstream().and_then(|u| {
        if !u.settings().goes_upstream(parts.uri.path()) {
            return None;
        }
        let form = match &hook.payload {
            Payload::Form(params) => Some(params),
            Payload::Query | Payload::Json(_) => None,
        };
        let incoming = request::Incoming {
            method: &parts.method,
            path_and_query: parts.uri.path_and_query().map_or("/", |pq| pq.as_str()),
            headers: &parts.headers,
            body: raw_body.clone(),
            signed_url: &hook.url,
            form,
            peer: parts.extensions.get::<Peer>().map(|p| p.0),
        };
        let settings = u.settings();
        Some((
            u,
            request::build(&settings.url, settings.signature, signer, &incoming),
        ))
    });
    if template.is_none() && journal.is_none() && upstream.is_none() {
        return respond::no_content();
    }
    // Twilio adds ErrorCode and ErrorUrl only when it calls the fallback URL: that is an alert.
    if let (Some(_), Some(code), Some(url)) =
        (template, hook.param("ErrorCode"), hook.param("ErrorUrl"))
    {
        app.metrics().fallback_request(code);
        outcome.error_code = Some(loggable(code));
        outcome.error_url = Some(loggable(url));
    }
    let url = journal.map(|_| hook.url.clone());
    let params = match hook.into_params() {
        Ok(params) => params,
        Err(e) => {
            outcome.reason = Some(e.to_string());
            return match template {
                Some(_) => respond::error(decode_status(&e)),
                None => respond::no_content(),
            };
        }
    };
    tracing::debug!(params = ?params, "webhook parameters");
    // Handed to the journal writer before rendering, so the commit and the render overlap.
    let pending = match (journal, url) {
        (Some(journal), Some(url)) => Some(journal.submit(record::new_event(Received {
            received_at_ms: now_ms(),
            role: app.settings().role,
            method: parts.method.as_str(),
            url: &url,
            path: parts.uri.path(),
            params: &params,
            idempotency_token: idempotency_token(&parts.headers),
        }))),
        _ => None,
    };
    let answer = match (template, upstream) {
        (name, Some((upstream, req))) => {
            let deadline = started + upstream.settings().budget;
            let channel = Channel::of_webhook(params.get("CallSid"), params.get("MessageSid"));
            let result = upstream.call(req, channel, name.is_none(), deadline).await;
            outcome.source = Some(match &result {
                Ok(_) => Source::Upstream,
                Err(reason) => Source::Degraded(*reason),
            });
            match (name, result) {
                (Some(_), Ok(answered)) => respond::upstream(answered),
                (Some(name), Err(_)) => render(app, name, Arc::new(params), true, outcome),
                // The app's answer to a status callback is irrelevant to Twilio.
                (None, _) => respond::no_content(),
            }
        }
        (Some(name), None) => {
            if let Some(upstream) = app.upstream() {
                upstream.metrics().outcome(Source::Template.outcome());
                outcome.source = Some(Source::Template);
            }
            render(app, name, Arc::new(params), false, outcome)
        }
        (None, None) => respond::no_content(),
    };
    if let (Some(journal), Some(pending)) = (journal, pending) {
        let written = journal.wait(pending).await;
        match &written {
            Written::New(_) | Written::Duplicate(_) => {}
            // The caller comes first: answer anyway, and say why on the log line.
            Written::Failed(e) => outcome.reason = Some(format!("journal: {}", loggable(e))),
            Written::Timeout => outcome.reason = Some("journal: commit timed out".into()),
            Written::Overloaded => outcome.reason = Some("journal: writer queue full".into()),
        }
        outcome.journal = Some(written);
    }
    answer
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
    let urls: Vec<String> = tried.urls.iter().map(|u| loggable(u)).collect();
    Some(SignatureLog {
        url_from,
        tried: urls.join(" "),
        keys: format!(
            "{} {} x{}",
            tried.algorithm, tried.key_kind, tried.key_count
        ),
    })
}

/// Twilio's retry-stable token, when sent exactly once as text.
fn idempotency_token(headers: &http::HeaderMap) -> Option<&str> {
    single_header(headers, record::IDEMPOTENCY_HEADER)
}

/// Renders `name`; `upstream_failed` takes the local rules of upstream mode (a path the primary
/// set has no template for still gets the fallback set's answer).
fn render(
    app: &App,
    name: &str,
    params: Arc<Params>,
    upstream_failed: bool,
    outcome: &mut Outcome,
) -> Reply {
    let templates = app.templates();
    let answer = if upstream_failed {
        templates.answer_locally(name, params)
    } else {
        templates.answer(name, params)
    };
    match answer {
        Ok(answer) => {
            outcome.served_by = Some(answer.served_by);
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
            outcome.reason = Some("no template".into());
            respond::error(StatusCode::NOT_FOUND)
        }
        Err(AnswerError::Failed(e)) => {
            // 503 makes Twilio try the number's fallback URL at once. A string, quoted in the log:
            // the error may quote a value from the request.
            let reason = e.to_string();
            tracing::error!(template = name, error = reason, "no template could answer");
            outcome.reason = Some(reason);
            respond::error(StatusCode::SERVICE_UNAVAILABLE)
        }
    }
}

fn decode_status(e: &DecodeError) -> StatusCode {
    match e {
        DecodeError::Malformed(_) => StatusCode::BAD_REQUEST,
        DecodeError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
    }
}
