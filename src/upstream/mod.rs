//! Upstream mode: the primary verifies and journals a webhook, then gives the enterprise's own TwiML
//! app a bounded time to answer it, and answers from its templates at once when the app cannot.
//! Owns the settings (their flags and `[upstream]` keys: [`UpstreamSection`]), where an answer came
//! from ([`Source`]), and the request path's two calls:
//! [`Upstream::prepare`] (does this path go upstream, and the upstream's signed copy) and
//! [`Upstream::answer`] (the budget counted from the webhook's arrival, bulkhead, then circuit
//! breaker, then at most one attempt by that deadline, plus one fast retry when the connection was
//! refused, and only then: a connect timeout or a connection lost after the request went out is
//! never tried again, so a caller never waits out two connect timeouts; and the metrics). I/O
//! here; building the request ([`request`]) and judging the answer ([`verdict`]) are pure.
//!
//! The breaker is the one the forwarder uses ([`crate::breaker`]): consecutive failures open it,
//! one probe after the cool-down decides. The bulkhead is a semaphore taken with `try_acquire`:
//! beyond `max_in_flight` a webhook is answered locally at once, never queued behind a slow app.

pub mod metrics;
pub mod request;
pub mod verdict;

use std::convert::Infallible;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use merge::Merge;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use wildmatch::WildMatch;

use crate::breaker::{Breaker, State};
use crate::net;
use crate::setting::{given, pair, positive, seconds, secs, unusable, Unusable};
use crate::twilio::document::MAX_DOCUMENT_BYTES;
use crate::twilio::{Channel, Role};
use crate::verify::Signer;

pub use metrics::UpstreamMetrics;
pub use verdict::Answered;

/// Twilio's hard limit on every call-related request ("Connection Overrides").
pub const TWILIO_VOICE_LIMIT: Duration = Duration::from_secs(15);
/// What a budget must leave of Twilio's 15 s for the local answer and the network.
pub const LOCAL_MARGIN: Duration = Duration::from_secs(1);

/// How the upstream's copy is signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureMode {
    /// `X-Twilio-Signature` recomputed for the upstream URL with the key Twilio used, so an app
    /// that validates against the URL it is reached at keeps working unchanged.
    Resign,
    /// Twilio's signature passed through unchanged, for apps that validate against the public URL.
    Pass,
}

impl SignatureMode {
    /// Parses `resign` or `pass`.
    pub fn parse(raw: &str) -> Result<SignatureMode, String> {
        match raw {
            "resign" => Ok(SignatureMode::Resign),
            "pass" => Ok(SignatureMode::Pass),
            other => Err(format!("{other:?}: use resign or pass")),
        }
    }
}

/// TLS to the upstream: which roots to trust, and an optional client certificate (mTLS).
#[derive(Debug, Clone, Default)]
pub struct TlsSettings {
    /// PEM CA certificates to trust instead of the bundled web PKI roots.
    pub ca_file: Option<PathBuf>,
    /// PEM certificate chain and private key presented to the upstream.
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

/// Everything upstream mode needs, checked from its flags ([`UpstreamSection`]).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Base URL without a trailing `/`; the request's path and query are appended.
    pub url: String,
    /// Path patterns (`*` any run of characters) that go upstream; default all.
    pub paths: Vec<String>,
    /// Path patterns always answered from templates, even when `paths` matches.
    pub local_paths: Vec<String>,
    /// Time from the request's arrival to the upstream's complete answer.
    pub budget: Duration,
    /// Establishing a TCP (and TLS) connection, per attempt.
    pub connect_timeout: Duration,
    /// Requests to the upstream in flight at most (the bulkhead).
    pub max_in_flight: usize,
    /// How the upstream's copy is signed.
    pub signature: SignatureMode,
    /// TLS to the upstream.
    pub tls: TlsSettings,
    /// Consecutive failures that open the breaker.
    pub breaker_failures: u32,
    /// How long an open breaker answers everything locally before one probe.
    pub breaker_cooldown: Duration,
    /// The share of failures among the last [`BREAKER_WINDOW`] results that also opens the
    /// breaker; `None`: consecutive failures only.
    pub breaker_ratio: Option<f64>,
}

/// How many recent results `breaker_ratio` is judged over.
pub const BREAKER_WINDOW: usize = 20;

impl Settings {
    /// The defaults for `url`: all paths, a 3 s budget (inside `rt=4000` on the primary URL),
    /// 1 s to connect, 64 in flight, re-signed, breaker 5 failures / 10 s.
    pub fn new(url: String) -> Settings {
        Settings {
            url: url.trim_end_matches('/').to_string(),
            paths: vec!["*".into()],
            local_paths: Vec::new(),
            budget: Duration::from_secs(3),
            connect_timeout: Duration::from_secs(1),
            max_in_flight: 64,
            signature: SignatureMode::Resign,
            tls: TlsSettings::default(),
            breaker_failures: 5,
            breaker_cooldown: Duration::from_secs(10),
            breaker_ratio: None,
        }
    }

    /// Why these settings cannot work, naming the setting; `None` when they can.
    pub fn problem(&self) -> Option<(&'static str, String)> {
        if self.budget + LOCAL_MARGIN > TWILIO_VOICE_LIMIT {
            return Some((
                "upstream-budget",
                format!(
                    "{:?} leaves under {LOCAL_MARGIN:?} of Twilio's {TWILIO_VOICE_LIMIT:?} voice limit \
                     for the local answer",
                    self.budget
                ),
            ));
        }
        if self.breaker_ratio.is_some_and(|r| !(r > 0.0 && r <= 1.0)) {
            return Some((
                "upstream-breaker-ratio",
                "must be above 0 and at most 1".into(),
            ));
        }
        if self.connect_timeout > self.budget {
            return Some((
                "upstream-connect-timeout",
                "must not exceed --upstream-budget".into(),
            ));
        }
        for (setting, patterns) in [
            ("upstream-paths", &self.paths),
            ("upstream-local-paths", &self.local_paths),
        ] {
            if let Some(bad) = patterns.iter().find(|p| !p.starts_with(['/', '*'])) {
                return Some((setting, format!("{bad:?}: a pattern starts with / or *")));
            }
        }
        None
    }

    /// True when a webhook for `path` goes upstream.
    pub fn goes_upstream(&self, path: &str) -> bool {
        let matches =
            |patterns: &[String]| patterns.iter().any(|p| WildMatch::new(p).matches(path));
        matches(&self.paths) && !matches(&self.local_paths)
    }
}

/// `[upstream]`: upstream mode ([`Settings`]), primary only.
#[derive(Debug, Default, Clone, Args, Deserialize, Serialize, Merge)]
#[serde(deny_unknown_fields)]
#[merge(strategy = merge::option::overwrite_none)]
pub struct UpstreamSection {
    /// Upstream mode (primary only): the TwiML app webhooks go to first; the request's path and
    /// query are appended to this base URL. See docs/upstream.md.
    #[arg(long, value_name = "URL")]
    #[serde(rename(deserialize = "url"))]
    pub upstream: Option<String>,
    /// Comma-separated path patterns (`*` matches anything) sent upstream.
    #[arg(long = "upstream-paths", value_name = "PATTERNS")]
    pub paths: Option<Patterns>,
    /// Comma-separated path patterns always answered from templates.
    #[arg(long = "upstream-local-paths", value_name = "PATTERNS")]
    pub local_paths: Option<Patterns>,
    /// Seconds from a webhook's arrival to the upstream's complete answer; at most 14.
    #[arg(long = "upstream-budget", value_name = "SECONDS")]
    pub budget: Option<f64>,
    /// Seconds to connect to the upstream.
    #[arg(long = "upstream-connect-timeout", value_name = "SECONDS")]
    pub connect_timeout: Option<f64>,
    /// Requests to the upstream in flight at most; beyond, answered locally at once.
    #[arg(long = "upstream-max-in-flight", value_name = "N")]
    pub max_in_flight: Option<usize>,
    /// `resign` (X-Twilio-Signature for the upstream URL) or `pass` (Twilio's, unchanged).
    #[arg(long = "upstream-signature", value_name = "MODE")]
    pub signature: Option<String>,
    /// PEM CA certificates trusted for the upstream instead of the web PKI roots.
    #[arg(long = "upstream-ca-file", value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate chain presented to the upstream (mTLS); with --upstream-client-key.
    #[arg(long = "upstream-client-cert", value_name = "FILE")]
    pub client_cert: Option<PathBuf>,
    /// PEM private key for --upstream-client-cert.
    #[arg(long = "upstream-client-key", value_name = "FILE")]
    pub client_key: Option<PathBuf>,
    /// Failures in a row (timeout, connect, 5xx) that open the upstream breaker.
    #[arg(long = "upstream-breaker-failures", value_name = "N")]
    pub breaker_failures: Option<u32>,
    /// Seconds an open breaker answers locally before one probe.
    #[arg(long, value_name = "SECONDS")]
    #[serde(rename(deserialize = "breaker_cooldown"))]
    pub upstream_breaker_cooldown: Option<f64>,
    /// Also open the breaker when this share (0-1] of the last 20 results failed.
    #[arg(long = "upstream-breaker-ratio", value_name = "RATIO")]
    pub breaker_ratio: Option<f64>,
}

/// Path patterns: comma-separated in a flag or its variable (blanks around a comma dropped), a
/// list in the config file.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(transparent)]
pub struct Patterns(pub Vec<String>);

impl FromStr for Patterns {
    type Err = Infallible;
    fn from_str(raw: &str) -> Result<Patterns, Infallible> {
        let patterns = raw.split(',').map(str::trim).filter(|p| !p.is_empty());
        Ok(Patterns(patterns.map(String::from).collect()))
    }
}

impl UpstreamSection {
    /// The defaults, as flags would give them: [`Settings::new`]'s.
    pub fn defaults() -> UpstreamSection {
        let upstream = Settings::new(String::new());
        let signature = ["resign", "pass"]
            .into_iter()
            .find(|name| SignatureMode::parse(name).ok() == Some(upstream.signature));
        UpstreamSection {
            paths: Some(Patterns(upstream.paths)),
            local_paths: Some(Patterns(upstream.local_paths)),
            budget: secs(upstream.budget),
            connect_timeout: secs(upstream.connect_timeout),
            max_in_flight: Some(upstream.max_in_flight),
            signature: signature.map(String::from),
            breaker_failures: Some(upstream.breaker_failures),
            upstream_breaker_cooldown: secs(upstream.breaker_cooldown),
            ..UpstreamSection::default()
        }
    }

    /// `None` without `--upstream`; then checked together ([`Settings::problem`]).
    pub fn settle(self, role: Role) -> Result<Option<Settings>, Unusable> {
        let Some(url) = self.upstream else {
            return Ok(None);
        };
        if role != Role::Primary {
            let message =
                "only with --role primary: the fallback answers when the primary's cloud is gone";
            return Err(unusable("upstream", message));
        }
        let url = net::url::Target::parse(&url).map_err(|m| unusable("upstream", m))?;
        let mut s = Settings::new(url.url);
        s.paths = given("upstream-paths", self.paths)?.0;
        s.local_paths = given("upstream-local-paths", self.local_paths)?.0;
        s.budget = seconds("upstream-budget", self.budget)?;
        s.connect_timeout = seconds("upstream-connect-timeout", self.connect_timeout)?;
        s.max_in_flight = positive("upstream-max-in-flight", self.max_in_flight)?;
        let signature = given("upstream-signature", self.signature)?;
        s.signature =
            SignatureMode::parse(&signature).map_err(|m| unusable("upstream-signature", m))?;
        s.tls.ca_file = self.ca_file;
        s.tls.client_cert = pair(
            self.client_cert,
            self.client_key,
            ("upstream-client-key", "--upstream-client-cert needs it"),
            ("upstream-client-cert", "--upstream-client-key needs it"),
        )?;
        s.breaker_failures = positive("upstream-breaker-failures", self.breaker_failures)?;
        s.breaker_cooldown = seconds("upstream-breaker-cooldown", self.upstream_breaker_cooldown)?;
        s.breaker_ratio = self.breaker_ratio;
        match s.problem() {
            Some((setting, message)) => Err(unusable(setting, message)),
            None => Ok(Some(s)),
        }
    }
}

/// Why the upstream's answer was not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// No complete answer within the budget.
    Timeout,
    /// No connection (refused, DNS, TLS, connect timeout).
    Connect,
    /// The connection broke after the request was sent, or the answer's framing was ambiguous.
    Broken,
    /// A 5xx answer.
    Status5xx,
    /// A 4xx answer.
    Status4xx,
    /// Any other non-2xx answer (1xx, 3xx: Twilio would not follow a redirect to TwiML here).
    StatusOther,
    /// Not a content type Twilio reads TwiML from (`text/xml`, `application/xml`, `text/html`, a
    /// call's `text/plain` TwiML), or a charset that would change the document ([`verdict`]).
    ContentType,
    /// Not valid TwiML for the channel (the same check as a template's answer).
    InvalidTwiml,
    /// Over Twilio's 64 kB document limit.
    TooLarge,
    /// The circuit breaker is open: the upstream was not asked.
    BreakerOpen,
    /// `max_in_flight` requests are already out: the upstream was not asked.
    BulkheadFull,
}

impl Reason {
    /// The label in metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            Reason::Timeout => "timeout",
            Reason::Connect => "connect",
            Reason::Broken => "broken",
            Reason::Status5xx => "status_5xx",
            Reason::Status4xx => "status_4xx",
            Reason::StatusOther => "status_other",
            Reason::ContentType => "content_type",
            Reason::InvalidTwiml => "invalid_twiml",
            Reason::TooLarge => "too_large",
            Reason::BreakerOpen => "breaker_open",
            Reason::BulkheadFull => "bulkhead_full",
        }
    }

    /// True when the app failed to answer at all, which is what opens the breaker. An answer that
    /// came back but was judged unusable says the app is up: it is degraded, not counted.
    fn is_failure(self) -> bool {
        matches!(
            self,
            Reason::Timeout | Reason::Connect | Reason::Broken | Reason::Status5xx
        )
    }
}

/// Where an answer came from: the response header, the log line and the metric say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The upstream's answer: its document and cookies ([`verdict::Answered`]).
    Upstream,
    /// A template, because the path is answered locally.
    Template,
    /// A template, because the upstream's answer could not be used.
    Degraded(Reason),
}

/// Every `outcome` label ([`Source::outcome`]): the metric's series exist from start-up.
pub const OUTCOMES: [&str; 13] = [
    "upstream",
    "template",
    "timeout",
    "connect",
    "broken",
    "status_5xx",
    "status_4xx",
    "status_other",
    "content_type",
    "invalid_twiml",
    "too_large",
    "breaker_open",
    "bulkhead_full",
];

impl Source {
    /// `upstream`, `template`, or the degradation reason: the metric's `outcome` label.
    pub fn outcome(self) -> &'static str {
        match self {
            Source::Upstream => "upstream",
            Source::Template => "template",
            Source::Degraded(reason) => reason.label(),
        }
    }

    /// `upstream`, `template` or `degraded`: the log line's `source`.
    pub fn kind(self) -> &'static str {
        match self {
            Source::Upstream => "upstream",
            Source::Template => "template",
            Source::Degraded(_) => "degraded",
        }
    }

    /// The header value: `upstream`, `template`, or `degraded; reason=<label>`.
    pub fn header(self) -> http::HeaderValue {
        match self {
            Source::Degraded(reason) => {
                http::HeaderValue::from_str(&format!("degraded; reason={}", reason.label()))
                    .expect("labels are visible ASCII")
            }
            other => http::HeaderValue::from_static(other.kind()),
        }
    }
}

impl Source {
    /// Where the answer to a webhook that went upstream came from.
    pub fn of(result: &Result<Answered, Reason>) -> Source {
        match result {
            Ok(_) => Source::Upstream,
            Err(reason) => Source::Degraded(*reason),
        }
    }
}

/// The upstream's copy of one verified webhook, ready to send ([`Upstream::prepare`]).
#[derive(Debug)]
pub struct Prepared {
    request: net::Request,
    /// A status callback: any 2xx answer will do, there is no TwiML to judge.
    callback: bool,
}

/// The breaker and the state last reported, so each transition is logged once.
#[derive(Debug)]
struct Guarded {
    breaker: Breaker,
    reported: State,
}

/// The upstream client with its breaker, bulkhead and metrics; one per server.
#[derive(Debug)]
pub struct Upstream {
    settings: Settings,
    client: net::Client,
    breaker: Mutex<Guarded>,
    bulkhead: Arc<Semaphore>,
    metrics: UpstreamMetrics,
}

impl Upstream {
    /// Builds the client (reading the TLS files) for validated settings.
    pub fn new(settings: Settings) -> Result<Upstream, String> {
        let tls = net::tls::client_config(
            settings.tls.ca_file.as_deref(),
            settings
                .tls
                .client_cert
                .as_ref()
                .map(|(cert, key)| (cert.as_path(), key.as_path())),
        )?;
        let client = net::Client::with_tls(
            net::Settings {
                connect_timeout: settings.connect_timeout,
                read_timeout: None,
                // Only `send`'s default: every upstream call passes its own deadline, the budget
                // counted from the webhook's arrival (`answer`).
                request_timeout: settings.budget,
                max_body_bytes: MAX_DOCUMENT_BYTES,
                max_idle_per_host: settings.max_in_flight,
            },
            &tls,
        );
        let mut breaker = Breaker::new(settings.breaker_failures, settings.breaker_cooldown);
        if let Some(ratio) = settings.breaker_ratio {
            breaker = breaker.with_ratio(ratio, BREAKER_WINDOW);
        }
        Ok(Upstream {
            breaker: Mutex::new(Guarded {
                breaker,
                reported: State::Closed,
            }),
            bulkhead: Arc::new(Semaphore::new(settings.max_in_flight)),
            metrics: UpstreamMetrics::default(),
            client,
            settings,
        })
    }

    /// The metric handles, for registration.
    pub fn metrics(&self) -> &UpstreamMetrics {
        &self.metrics
    }

    /// The upstream's copy of a verified webhook, signed with the key Twilio used (or with
    /// Twilio's signature passed through); `None` when the settings answer its path locally.
    /// `callback`: a status callback, whose answer only needs to be a 2xx.
    pub fn prepare(
        &self,
        incoming: &request::Incoming<'_>,
        signer: Signer<'_>,
        callback: bool,
    ) -> Option<Prepared> {
        if !self.settings.goes_upstream(incoming.path()) {
            return None;
        }
        let request = request::build(
            &self.settings.url,
            self.settings.signature,
            signer,
            incoming,
        );
        Some(Prepared { request, callback })
    }

    /// A webhook whose path the settings answer locally: counted, and named for the log line and
    /// the response header.
    pub fn local(&self) -> Source {
        self.metrics.outcome(Source::Template.outcome());
        Source::Template
    }

    /// Asks the upstream; `Ok` only for an answer Twilio can use. The budget runs from
    /// `arrived_at`, when the webhook reached us; `channel` is the webhook's, the TwiML's judge.
    pub async fn answer(
        &self,
        prepared: Prepared,
        channel: Option<Channel>,
        arrived_at: Instant,
    ) -> Result<Answered, Reason> {
        let deadline = arrived_at + self.settings.budget;
        self.call(prepared.request, channel, prepared.callback, deadline)
            .await
    }

    /// Bulkhead, breaker, the attempt (and the one retry), the verdict and the metrics. Never
    /// waits past `deadline`.
    async fn call(
        &self,
        req: net::Request,
        channel: Option<Channel>,
        callback: bool,
        deadline: Instant,
    ) -> Result<Answered, Reason> {
        let result = async {
            // The bulkhead before the breaker: a half-open probe taken and then refused a
            // permit would never report back.
            let Ok(_permit) = self.bulkhead.clone().try_acquire_owned() else {
                return Err(Reason::BulkheadFull);
            };
            if !self.with_breaker(|b, now| b.try_acquire(now)) {
                return Err(Reason::BreakerOpen);
            }
            // If this future is dropped before it reports (the caller hung up), a probe must
            // not stay out forever; see `Pending`.
            let mut pending = Pending {
                upstream: self,
                done: false,
            };
            let started = Instant::now();
            let mut sent = self.client.send_until(req.clone(), deadline).await;
            if sent.as_ref().is_err_and(refused)
                && deadline.saturating_duration_since(Instant::now())
                    > self.settings.connect_timeout
            {
                // A refused connection sent nothing, and a pod may just have gone.
                sent = self.client.send_until(req, deadline).await;
            }
            let sent = sent.map_err(|e| reason(&e));
            self.metrics.duration(started.elapsed().as_secs_f64());
            let result = sent.and_then(|response| {
                if callback {
                    verdict::judge_status(&response).map(|()| Answered::from(response))
                } else {
                    verdict::judge(response, channel)
                }
            });
            pending.done = true;
            match result {
                Err(reason) if reason.is_failure() => self.with_breaker(|b, now| b.failure(now)),
                _ => self.with_breaker(|b, _| b.success()),
            }
            result
        }
        .await;
        self.metrics.outcome(match result {
            Ok(_) => Source::Upstream.outcome(),
            Err(reason) => reason.label(),
        });
        result
    }

    /// Runs `f` on the breaker, then logs and publishes a change of state once.
    fn with_breaker<T>(&self, f: impl FnOnce(&mut Breaker, Instant) -> T) -> T {
        let now = Instant::now();
        let mut guarded = self.breaker.lock().unwrap_or_else(|e| e.into_inner());
        let out = f(&mut guarded.breaker, now);
        let state = guarded.breaker.state(now);
        if state != guarded.reported {
            guarded.reported = state;
            self.metrics.breaker(state.as_gauge());
            match state {
                State::Open => tracing::warn!(
                    upstream = %self.settings.url,
                    cooldown_s = self.settings.breaker_cooldown.as_secs_f64(),
                    "upstream breaker open: answering from templates"
                ),
                State::HalfOpen => {
                    tracing::info!(upstream = %self.settings.url, "upstream breaker half-open: probing")
                }
                State::Closed => {
                    tracing::info!(upstream = %self.settings.url, "upstream breaker closed")
                }
            }
        }
        out
    }
}

/// An attempt that has passed the breaker and not yet reported its result. Dropped unreported (the
/// caller hung up), it says nothing about the app while the breaker is closed (a load test's end
/// once opened it with dozens of such "failures"), but a half-open breaker's probe counts as failed
/// so the breaker reopens instead of waiting forever for it.
struct Pending<'a> {
    upstream: &'a Upstream,
    done: bool,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.upstream.with_breaker(|b, now| {
                if b.state(now) == State::HalfOpen {
                    b.failure(now);
                }
            });
        }
    }
}

/// True for the one failure worth a second attempt: the app refused the connection, so nothing
/// was sent and the refusal came at once.
fn refused(e: &net::Error) -> bool {
    matches!(e, net::Error::Connect(f) if f.kind == net::ConnectKind::Refused)
}

/// The reason an attempt that produced no answer gives.
fn reason(e: &net::Error) -> Reason {
    match e {
        net::Error::Timeout(_) | net::Error::HeadTimeout(_) => Reason::Timeout,
        net::Error::Connect(_) => Reason::Connect,
        net::Error::Body(b) if matches!(b.failure, net::BodyFailure::TooLarge(_)) => {
            Reason::TooLarge
        }
        net::Error::Invalid(_)
        | net::Error::NotHttp(_)
        | net::Error::Io(_)
        | net::Error::Body(_) => Reason::Broken,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_outcome_has_its_series_from_start_up() {
        let reasons = [
            Reason::Timeout,
            Reason::Connect,
            Reason::Broken,
            Reason::Status5xx,
            Reason::Status4xx,
            Reason::StatusOther,
            Reason::ContentType,
            Reason::InvalidTwiml,
            Reason::TooLarge,
            Reason::BreakerOpen,
            Reason::BulkheadFull,
        ];
        // No wildcard: a new reason fails to compile here until it is listed above and in OUTCOMES.
        for r in reasons {
            match r {
                Reason::Timeout
                | Reason::Connect
                | Reason::Broken
                | Reason::Status5xx
                | Reason::Status4xx
                | Reason::StatusOther
                | Reason::ContentType
                | Reason::InvalidTwiml
                | Reason::TooLarge
                | Reason::BreakerOpen
                | Reason::BulkheadFull => {}
            }
        }
        let mut all: Vec<&str> = [Source::Upstream, Source::Template]
            .into_iter()
            .chain(reasons.map(Source::Degraded))
            .map(Source::outcome)
            .collect();
        all.sort_unstable();
        let mut listed = OUTCOMES.to_vec();
        listed.sort_unstable();
        assert_eq!(all, listed);
    }

    #[test]
    fn paths_and_local_paths() {
        let mut s = Settings::new("http://app:8080/twilio/".into());
        assert_eq!(s.url, "http://app:8080/twilio");
        assert!(s.goes_upstream("/voice"));
        s.paths = vec!["/ivr/*".into(), "/sms".into()];
        s.local_paths = vec!["/ivr/static*".into()];
        assert!(s.goes_upstream("/ivr/menu"));
        assert!(s.goes_upstream("/sms"));
        assert!(!s.goes_upstream("/voice"));
        assert!(!s.goes_upstream("/ivr/static/hours"));
        assert_eq!(s.problem(), None);
    }

    #[test]
    fn a_budget_must_fit_twilios_voice_limit() {
        let mut s = Settings::new("http://app".into());
        s.budget = Duration::from_secs(14);
        assert_eq!(s.problem(), None);
        s.budget = Duration::from_millis(14_001);
        assert_eq!(s.problem().unwrap().0, "upstream-budget");
        s.budget = Duration::from_millis(500);
        assert_eq!(s.problem().unwrap().0, "upstream-connect-timeout");
        s.budget = Duration::from_secs(3);
        s.paths = vec!["voice".into()];
        assert_eq!(s.problem().unwrap().0, "upstream-paths");
    }

    #[test]
    fn sources_name_themselves() {
        assert_eq!(Source::Upstream.header(), "upstream");
        assert_eq!(Source::Template.header(), "template");
        let degraded = Source::Degraded(Reason::BreakerOpen);
        assert_eq!(degraded.header(), "degraded; reason=breaker_open");
        assert_eq!(
            (degraded.kind(), degraded.outcome()),
            ("degraded", "breaker_open")
        );
        assert!(Reason::Timeout.is_failure() && !Reason::InvalidTwiml.is_failure());
    }

    #[test]
    fn only_a_refused_connection_is_tried_again() {
        let connect = |kind| {
            net::Error::Connect(net::ConnectFailure {
                kind,
                detail: String::new(),
            })
        };
        let body = |failure| {
            net::Error::Body(Box::new(net::BodyError {
                status: 200,
                headers: http::HeaderMap::new(),
                failure,
            }))
        };
        let cases = [
            (connect(net::ConnectKind::Refused), true, Reason::Connect),
            (connect(net::ConnectKind::Timeout), false, Reason::Connect),
            (connect(net::ConnectKind::Resolve), false, Reason::Connect),
            (connect(net::ConnectKind::Tls), false, Reason::Connect),
            (connect(net::ConnectKind::Other), false, Reason::Connect),
            (net::Error::Io("reset".into()), false, Reason::Broken),
            (net::Error::NotHttp("x".into()), false, Reason::Broken),
            (
                net::Error::HeadTimeout(Duration::from_secs(1)),
                false,
                Reason::Timeout,
            ),
            (
                net::Error::Timeout(Duration::from_secs(1)),
                false,
                Reason::Timeout,
            ),
            (
                body(net::BodyFailure::Cut("eof".into())),
                false,
                Reason::Broken,
            ),
            (
                body(net::BodyFailure::Framing("both".into())),
                false,
                Reason::Broken,
            ),
            (body(net::BodyFailure::TooLarge(1)), false, Reason::TooLarge),
        ];
        for (error, retried, why) in cases {
            assert_eq!(
                (refused(&error), reason(&error)),
                (retried, why),
                "{error:?}"
            );
        }
    }
}
