//! Prometheus metrics: registered once at start-up, updated through handles, exposed at `/metrics`.
//!
//! `/metrics` carries no secrets and no caller data, but it does reveal traffic levels: expose the
//! port only to the scraper (see deploy/).

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

/// The content type of the exposition.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorCodeLabel {
    error_code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

type HistogramFamily = Family<RouteLabel, Histogram, fn() -> Histogram>;

fn duration_histogram() -> Histogram {
    // 50 µs .. ~1.6 s: a template answer takes microseconds; anything near a second is trouble.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
}

/// Every metric the server records.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    duration: HistogramFamily,
    signature_failures: Family<ReasonLabel, Counter>,
    fallback_requests: Family<ErrorCodeLabel, Counter>,
    degraded_answers: Counter,
    template_reloads: Family<ResultLabel, Counter>,
    template_watch: Gauge,
    certificate_reloads: Family<ResultLabel, Counter>,
    load_shed: Counter,
    /// Journal handles, shared with the journal's writer and stats threads.
    pub journal: JournalMetrics,
    /// Forwarder handles, shared with the deliverer task.
    pub forward: ForwardMetrics,
}

/// The forwarder's metrics; cheap to clone (handles to the same series).
#[derive(Debug, Clone, Default)]
pub struct ForwardMetrics {
    attempts: Family<ResultLabel, Counter>,
    delivered: Counter,
    breaker: Gauge,
}

/// What one delivery attempt can end in (`forward_attempts_total{result}`); all exist from start-up.
pub const FORWARD_RESULTS: [&str; 5] = [
    "delivered",
    "http_error",
    "connect_error",
    "timeout",
    "io_error",
];

impl ForwardMetrics {
    fn register(&self, registry: &mut Registry) {
        for result in FORWARD_RESULTS {
            let _ = self.attempts.get_or_create(&ResultLabel { result });
        }
        registry.register(
            "forward_attempts",
            "Attempts to deliver a journaled event to the forward target, by result",
            self.attempts.clone(),
        );
        registry.register(
            "forward_delivered",
            "Journaled events delivered to the forward target",
            self.delivered.clone(),
        );
        registry.register(
            "forward_breaker_state",
            "Circuit breaker around the forward target: 0 closed, 1 open, 2 half-open",
            self.breaker.clone(),
        );
    }

    /// Records one delivery attempt: `delivered`, or the failure's kind.
    pub fn attempt(&self, result: &'static str) {
        self.attempts.get_or_create(&ResultLabel { result }).inc();
        if result == "delivered" {
            self.delivered.inc();
        }
    }

    /// Sets the circuit breaker's state gauge.
    pub fn breaker(&self, state: i64) {
        self.breaker.set(state);
    }
}

/// The journal's metrics; cheap to clone (handles to the same series).
#[derive(Debug, Clone)]
pub struct JournalMetrics {
    up: Gauge,
    writes: Family<ResultLabel, Counter>,
    backlog: Gauge,
    oldest_undelivered_age: Gauge<f64, std::sync::atomic::AtomicU64>,
    buffered: Gauge,
    dropped: Counter,
    commit_events: Histogram,
    commit_duration: Histogram,
}

impl Default for JournalMetrics {
    fn default() -> Self {
        JournalMetrics {
            up: Gauge::default(),
            writes: Family::default(),
            backlog: Gauge::default(),
            oldest_undelivered_age: Gauge::default(),
            buffered: Gauge::default(),
            dropped: Counter::default(),
            // 1 .. 1024 events: how well commits are grouped.
            commit_events: Histogram::new(exponential_buckets(1.0, 2.0, 11)),
            commit_duration: duration_histogram(),
        }
    }
}

/// What the journal can do with a webhook (`journal_writes_total{result}`); all exist from start-up.
pub const JOURNAL_WRITE_RESULTS: [&str; 5] = ["new", "duplicate", "error", "timeout", "overloaded"];

impl JournalMetrics {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "journal_up",
            "1 while the journal store answers (checked by every commit, and every few seconds \
             when idle); 0 while it does not: webhooks are still answered, their events held in \
             memory and retried",
            self.up.clone(),
        );
        for result in JOURNAL_WRITE_RESULTS {
            let _ = self.writes.get_or_create(&ResultLabel { result });
        }
        registry.register(
            "journal_writes",
            "Webhooks the handler journaled, by result (new, duplicate, error, timeout, overloaded)",
            self.writes.clone(),
        );
        registry.register(
            "journal_buffered_events",
            "Events held in memory because the journal store failed; retried until written",
            self.buffered.clone(),
        );
        registry.register(
            "journal_dropped",
            "Events lost because the in-memory retry buffer was full",
            self.dropped.clone(),
        );
        registry.register(
            "journal_commit_events",
            "Events per journal transaction (group commit)",
            self.commit_events.clone(),
        );
        registry.register(
            "journal_commit_duration_seconds",
            "Time to append and commit one journal transaction",
            self.commit_duration.clone(),
        );
    }

    /// The backlog gauges: only where something delivers the events (`--forward-to`), so they
    /// never climb for events nothing will deliver.
    fn register_backlog(&self, registry: &mut Registry) {
        registry.register(
            "journal_backlog_events",
            "Journaled events not yet delivered to the forward target (refreshed every few seconds)",
            self.backlog.clone(),
        );
        registry.register(
            "journal_oldest_undelivered_age_seconds",
            "Age of the oldest journaled event not yet delivered to the forward target, 0 when none",
            self.oldest_undelivered_age.clone(),
        );
    }

    /// Sets whether the store answers.
    pub fn up(&self, up: bool) {
        self.up.set(i64::from(up));
    }

    /// The journal's state as the gauges say now, for `/readyz` and the status log line.
    pub fn snapshot(&self) -> JournalSnapshot {
        JournalSnapshot {
            up: self.up.get() == 1,
            buffered: u64::try_from(self.buffered.get()).unwrap_or(0),
            dropped: self.dropped.get(),
            backlog: u64::try_from(self.backlog.get()).unwrap_or(0),
            oldest_undelivered_age_seconds: self.oldest_undelivered_age.get(),
        }
    }

    /// Records one successful journal transaction.
    pub fn commit(&self, events: usize, seconds: f64) {
        self.commit_events.observe(events as f64);
        self.commit_duration.observe(seconds);
    }

    /// Records what the journal did with one webhook.
    pub fn write(&self, result: &'static str) {
        self.writes.get_or_create(&ResultLabel { result }).inc();
    }

    /// Sets the backlog gauges from a stats query.
    pub fn backlog(&self, undelivered: u64, oldest_age_seconds: f64) {
        self.backlog
            .set(i64::try_from(undelivered).unwrap_or(i64::MAX));
        self.oldest_undelivered_age.set(oldest_age_seconds);
    }

    /// Sets how many events wait in memory for the store to come back.
    pub fn buffered(&self, events: usize) {
        self.buffered.set(i64::try_from(events).unwrap_or(i64::MAX));
    }

    /// Records an event that could not even be buffered.
    pub fn dropped(&self) {
        self.dropped.inc();
    }
}

/// The journal gauges at one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JournalSnapshot {
    /// `journal_up`.
    pub up: bool,
    /// `journal_buffered_events`.
    pub buffered: u64,
    /// `journal_dropped_total`.
    pub dropped: u64,
    /// `journal_backlog_events` (forwarding only).
    pub backlog: u64,
    /// `journal_oldest_undelivered_age_seconds` (forwarding only).
    pub oldest_undelivered_age_seconds: f64,
}

/// `log_lines_dropped_total`: read from the log writer's own counter at each scrape, so it is
/// current even while a stalled log reader holds the writer thread.
#[derive(Debug)]
struct LogLinesDropped;

impl Collector for LogLinesDropped {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let counter = ConstCounter::new(crate::logging::dropped_lines());
        let metric = encoder.encode_descriptor(
            "log_lines_dropped",
            "Log lines dropped because log output could not keep up",
            None,
            counter.metric_type(),
        )?;
        counter.encode(metric)
    }
}

/// The ErrorCodes Twilio calls a fallback URL with (docs/production.md, shared notes on Twilio's
/// protocol): HTTP retrieval and connection failures, DNS, redirects, TLS, body too large, bad
/// TwiML or content type. Their `fallback_requests_total` series exist from start-up at 0, so the
/// first fallback request already shows as an increase; any other code gets its series when it
/// first arrives.
pub const FALLBACK_ERROR_CODES: [&str; 15] = [
    "11200", "11205", "11206", "11210", "11215", "11217", "11220", "11235", "11236", "11237",
    "11251", "11750", "12100", "12200", "12300",
];

/// The `requests_total{route,status}` series that exist from start-up: the answers webhook and
/// status routes give in normal operation and when shedding load (the error-ratio alert divides
/// one by the other).
const STARTUP_REQUEST_SERIES: [(&str, u16); 6] = [
    ("webhook", 200),
    ("webhook", 403),
    ("webhook", 503),
    ("status", 204),
    ("status", 403),
    ("status", 503),
];

/// `twiml_failover_build_info{version, role}`: `primary`, `fallback` (`serve`) or `monitor`, so
/// an alert can say which is absent.
pub fn register_build_info(registry: &mut Registry, role: &str) {
    registry.register(
        "build",
        "Build information",
        Info::new(vec![
            ("version", env!("CARGO_PKG_VERSION").to_string()),
            ("role", role.to_string()),
        ]),
    );
}

impl Metrics {
    /// Registers all metrics; `role` goes into `twiml_failover_build_info`. Every series an alert
    /// or the docs name exists from here on (counters at 0), so `increase()` sees the first event.
    pub fn new(role: &str) -> Metrics {
        let mut registry = Registry::with_prefix("twiml_failover");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests answered, by route and status",
            requests.clone(),
        );
        let duration: HistogramFamily = Family::new_with_constructor(duration_histogram);
        registry.register(
            "request_duration_seconds",
            "Time from request head to answer, by route",
            duration.clone(),
        );
        let signature_failures = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "signature_failures",
            "Requests refused with 403, by reason",
            signature_failures.clone(),
        );
        let fallback_requests = Family::<ErrorCodeLabel, Counter>::default();
        registry.register(
            "fallback_requests",
            "Webhooks that came through Twilio's fallback URL, by Twilio ErrorCode",
            fallback_requests.clone(),
        );
        let degraded_answers = Counter::default();
        registry.register(
            "degraded_answers",
            "Answers from the fallback set because a template failed at run time",
            degraded_answers.clone(),
        );
        let template_reloads = Family::<ResultLabel, Counter>::default();
        registry.register(
            "template_reloads",
            "Template set reloads, by result",
            template_reloads.clone(),
        );
        let template_watch = Gauge::default();
        registry.register(
            "template_watch_active",
            "1 while every watched folder (templates, TLS) is watched for changes; 0 when one is \
             gone or cannot be watched (then only SIGHUP reloads), and with --watch false",
            template_watch.clone(),
        );
        let certificate_reloads = Family::<ResultLabel, Counter>::default();
        registry.register(
            "certificate_reloads",
            "TLS certificate reloads, by result",
            certificate_reloads.clone(),
        );
        let load_shed = Counter::default();
        registry.register(
            "load_shed",
            "Requests answered 503 at once because the concurrency limit was reached",
            load_shed.clone(),
        );
        registry.register_collector(Box::new(LogLinesDropped));
        register_build_info(&mut registry, role);
        let metrics = Metrics {
            journal: JournalMetrics::default(),
            forward: ForwardMetrics::default(),
            registry,
            requests,
            duration,
            signature_failures,
            fallback_requests,
            degraded_answers,
            template_reloads,
            template_watch,
            certificate_reloads,
            load_shed,
        };
        metrics.create_startup_series();
        metrics
    }

    /// The labelled series an alert or the docs name, at 0 before their first event.
    fn create_startup_series(&self) {
        for (route, status) in STARTUP_REQUEST_SERIES {
            let _ = self
                .requests
                .get_or_create(&RequestLabels { route, status });
            let _ = self.duration.get_or_create(&RouteLabel { route });
        }
        for reason in crate::verify::REASONS {
            let _ = self
                .signature_failures
                .get_or_create(&ReasonLabel { reason });
        }
        for code in FALLBACK_ERROR_CODES {
            let _ = self.fallback_requests.get_or_create(&ErrorCodeLabel {
                error_code: code.to_string(),
            });
        }
        for result in ["ok", "error"] {
            let _ = self.template_reloads.get_or_create(&ResultLabel { result });
            let _ = self
                .certificate_reloads
                .get_or_create(&ResultLabel { result });
        }
    }

    /// Exposes the journal's series (only servers with a journal show them).
    pub fn enable_journal(&mut self) {
        self.journal.register(&mut self.registry);
    }

    /// Exposes the forwarder's series and the journal's backlog gauges (only servers with
    /// `--forward-to` show them).
    pub fn enable_forward(&mut self) {
        self.forward.register(&mut self.registry);
        self.journal.register_backlog(&mut self.registry);
    }

    /// Exposes upstream mode's series (only servers with `--upstream` show them).
    pub fn enable_upstream(&mut self, upstream: &crate::upstream::UpstreamMetrics) {
        upstream.register(&mut self.registry);
    }

    /// Records one answered request.
    pub fn request(&self, route: &'static str, status: u16, seconds: f64) {
        self.requests
            .get_or_create(&RequestLabels { route, status })
            .inc();
        self.duration
            .get_or_create(&RouteLabel { route })
            .observe(seconds);
    }

    /// Records a 403 and its reason.
    pub fn signature_failure(&self, reason: &'static str) {
        self.signature_failures
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    /// Records a webhook that Twilio sent to the fallback URL, with its ErrorCode.
    pub fn fallback_request(&self, error_code: &str) {
        // The label is bounded: Twilio's codes are 5 digits; anything else is counted as "other".
        let code = if !error_code.is_empty()
            && error_code.len() <= 6
            && error_code.bytes().all(|b| b.is_ascii_digit())
        {
            error_code.to_string()
        } else {
            "other".to_string()
        };
        self.fallback_requests
            .get_or_create(&ErrorCodeLabel { error_code: code })
            .inc();
    }

    /// Records an answer that came from the fallback set after a template failed.
    pub fn degraded_answer(&self) {
        self.degraded_answers.inc();
    }

    /// Sets whether the file watcher currently sees every folder it should.
    pub fn template_watch(&self, active: bool) {
        self.template_watch.set(i64::from(active));
    }

    /// Records a template reload attempt.
    pub fn template_reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.template_reloads
            .get_or_create(&ResultLabel { result })
            .inc();
    }

    /// Records a TLS certificate reload attempt.
    pub fn certificate_reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.certificate_reloads
            .get_or_create(&ResultLabel { result })
            .inc();
    }

    /// Records a request shed by the concurrency limit.
    pub fn load_shed(&self) {
        self.load_shed.inc();
    }

    /// The exposition text.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(4096);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposes_what_was_recorded() {
        let mut m = Metrics::new("fallback");
        m.enable_journal();
        m.enable_forward();
        m.request("webhook", 200, 0.001);
        m.signature_failure("mismatch");
        m.fallback_request("11205");
        m.fallback_request("<script>");
        m.template_reload(false);
        m.load_shed();
        m.journal.write("timeout");
        m.journal.backlog(7, 1.5);
        m.journal.dropped();
        m.journal.commit(3, 0.001);
        m.forward.attempt("delivered");
        m.forward.attempt("timeout");
        m.forward.breaker(1);
        let text = m.encode();
        for line in [
            "twiml_failover_requests_total{route=\"webhook\",status=\"200\"} 1",
            "twiml_failover_signature_failures_total{reason=\"mismatch\"} 1",
            "twiml_failover_fallback_requests_total{error_code=\"11205\"} 1",
            "twiml_failover_fallback_requests_total{error_code=\"other\"} 1",
            "twiml_failover_template_reloads_total{result=\"error\"} 1",
            "twiml_failover_load_shed_total 1",
            // Nothing logs through `serve`'s writer in a unit test.
            "twiml_failover_log_lines_dropped_total 0",
            "twiml_failover_forward_attempts_total{result=\"delivered\"} 1",
            "twiml_failover_forward_attempts_total{result=\"timeout\"} 1",
            "twiml_failover_forward_delivered_total 1",
            "twiml_failover_forward_breaker_state 1",
            "twiml_failover_journal_writes_total{result=\"timeout\"} 1",
            "twiml_failover_journal_backlog_events 7",
            "twiml_failover_journal_oldest_undelivered_age_seconds 1.5",
            "twiml_failover_journal_buffered_events 0",
            "twiml_failover_journal_dropped_total 1",
            "twiml_failover_journal_commit_events_sum 3.0",
            "twiml_failover_journal_commit_duration_seconds_count 1",
            "twiml_failover_build_info{version=\"",
            "role=\"fallback\"",
            "twiml_failover_request_duration_seconds_count{route=\"webhook\"} 1",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
    }
}
