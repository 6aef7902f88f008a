//! The monitor's Prometheus metrics (docs/monitor.md, "Metrics"), set from each round's
//! [`Status`]. Numbers are only counted, by problem; the per-URL series are one per distinct URL
//! probed and are removed when no selected number uses the URL any more, so cardinality follows the
//! URLs (at most `--max-urls`), not the numbers. No I/O.

use std::collections::BTreeSet;
use std::sync::atomic::AtomicU64;
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Metric, Registry};

use super::status::{CertificateStatus, Kind, Status, UrlStatus};

type FloatGauge = Gauge<f64, AtomicU64>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct ProblemLabel {
    problem: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct UrlLabels {
    url: String,
    channel: &'static str,
    role: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct CheckLabels {
    url: String,
    channel: &'static str,
    role: &'static str,
    check: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct PhaseLabels {
    url: String,
    channel: &'static str,
    role: &'static str,
    phase: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct HostLabel {
    host: String,
}

/// The series a round set, so the next can remove those it no longer sets.
#[derive(Debug, Default)]
struct Present {
    urls: BTreeSet<UrlLabels>,
    checks: BTreeSet<CheckLabels>,
    phases: BTreeSet<PhaseLabels>,
    hosts: BTreeSet<HostLabel>,
}

/// Every metric the monitor exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    rounds: Family<ResultLabel, Counter>,
    last_complete: FloatGauge,
    round_duration: FloatGauge,
    api_requests: Family<ResultLabel, Counter>,
    wiring_age: FloatGauge,
    numbers: Gauge,
    numbers_failing: Family<ProblemLabel, Gauge>,
    urls: Gauge,
    probe_success: Family<CheckLabels, Gauge>,
    probe_failing_rounds: Family<UrlLabels, Gauge>,
    probe_error_code: Family<UrlLabels, Gauge>,
    probe_duration: Family<PhaseLabels, FloatGauge>,
    probe_timeout: Family<PhaseLabels, FloatGauge>,
    probes: Family<ResultLabel, Counter>,
    certificate_expiry: Family<HostLabel, FloatGauge>,
    certificate_valid: Family<HostLabel, Gauge>,
    present: std::sync::Mutex<Present>,
}

fn unix(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Registers one of the monitor's metrics, under `monitor_` (after the registry's prefix).
fn add(r: &mut Registry, name: &str, help: &str, metric: impl Metric) {
    r.register(format!("monitor_{name}"), help, metric);
}

/// A count as a gauge's value.
fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Metrics {
    /// Registers every metric; the counters and the per-problem gauges exist from here on at 0,
    /// so alerts and `increase()` see the first event.
    pub fn new(interval_seconds: f64) -> Metrics {
        let mut registry = Registry::with_prefix("twiml_failover");
        crate::metrics::register_build_info(&mut registry, "monitor");
        let m = Metrics {
            rounds: Family::default(),
            last_complete: FloatGauge::default(),
            round_duration: FloatGauge::default(),
            api_requests: Family::default(),
            wiring_age: FloatGauge::default(),
            numbers: Gauge::default(),
            numbers_failing: Family::default(),
            urls: Gauge::default(),
            probe_success: Family::default(),
            probe_failing_rounds: Family::default(),
            probe_error_code: Family::default(),
            probe_duration: Family::default(),
            probe_timeout: Family::default(),
            probes: Family::default(),
            certificate_expiry: Family::default(),
            certificate_valid: Family::default(),
            present: Default::default(),
            registry: Registry::default(),
        };
        m.register_rounds(&mut registry, interval_seconds);
        m.register_numbers(&mut registry);
        m.register_probes(&mut registry);
        m.register_certificates(&mut registry);
        m.create_at_zero();
        Metrics { registry, ..m }
    }

    /// The rounds and the Twilio API reads they make.
    fn register_rounds(&self, r: &mut Registry, interval_seconds: f64) {
        let interval = FloatGauge::default();
        interval.set(interval_seconds);
        add(
            r,
            "rounds",
            "Rounds made, by result: complete, or incomplete when an API read failed",
            self.rounds.clone(),
        );
        add(
            r,
            "last_complete_round_timestamp_seconds",
            "When the last complete round ended (Unix time)",
            self.last_complete.clone(),
        );
        add(
            r,
            "interval_seconds",
            "Time between rounds (--interval)",
            interval,
        );
        add(
            r,
            "round_duration_seconds",
            "How long the last round took",
            self.round_duration.clone(),
        );
        add(
            r,
            "api_requests",
            "Twilio REST API requests made, by result (ok, throttled: 429, error)",
            self.api_requests.clone(),
        );
        add(
            r,
            "wiring_age_seconds",
            "Age of the oldest page of the account's wiring the verdicts use",
            self.wiring_age.clone(),
        );
    }

    /// The selected numbers, counted by problem.
    fn register_numbers(&self, r: &mut Registry) {
        add(r, "numbers", "Numbers selected", self.numbers.clone());
        add(
            r,
            "numbers_failing",
            "Numbers with this problem on either channel",
            self.numbers_failing.clone(),
        );
    }

    /// The per-URL probe series, and the probes counted.
    fn register_probes(&self, r: &mut Registry) {
        add(
            r,
            "urls",
            "Distinct URLs probed in the last round",
            self.urls.clone(),
        );
        add(
            r,
            "probe_success",
            "1 when the URL's last probe passed, by check: webhook (signed) or reachability",
            self.probe_success.clone(),
        );
        add(
            r,
            "probe_failing_rounds",
            "Rounds in a row the URL's probe has failed",
            self.probe_failing_rounds.clone(),
        );
        add(
            r,
            "probe_error_code",
            "Twilio ErrorCode of the URL's last failed probe, 0 when it passed",
            self.probe_error_code.clone(),
        );
        add(
            r,
            "probe_duration_seconds",
            "The URL's last probe: time to the answer's head (first_byte) and in all (total)",
            self.probe_duration.clone(),
        );
        add(
            r,
            "probe_timeout_seconds",
            "What Twilio allows the URL for each phase: #rt= (first_byte) and #tt= (total)",
            self.probe_timeout.clone(),
        );
        add(r, "probes", "Probes made, by result", self.probes.clone());
    }

    /// The per-host certificate series.
    fn register_certificates(&self, r: &mut Registry) {
        add(
            r,
            "certificate_expiry_timestamp_seconds",
            "notAfter of the certificate a probed host presented (Unix time)",
            self.certificate_expiry.clone(),
        );
        add(
            r,
            "certificate_valid",
            "1 when the host's certificate chain was valid at the last probe",
            self.certificate_valid.clone(),
        );
    }

    /// Creates every counter series and per-problem gauge at 0, so alerts and `increase()` see
    /// the first event.
    fn create_at_zero(&self) {
        for result in ["complete", "incomplete"] {
            let _ = self.rounds.get_or_create(&ResultLabel { result });
        }
        for result in ["ok", "throttled", "error"] {
            let _ = self.api_requests.get_or_create(&ResultLabel { result });
        }
        for result in ["ok", "failed"] {
            let _ = self.probes.get_or_create(&ResultLabel { result });
        }
        for kind in Kind::all() {
            let _ = self.numbers_failing.get_or_create(&ProblemLabel {
                problem: kind.name(),
            });
        }
    }

    /// Sets everything a round found.
    pub fn record(&self, s: &Status, round_seconds: f64) {
        self.record_round(s, round_seconds);
        self.record_numbers(s);
        self.urls.set(count(s.urls.len()));
        let mut now = Present::default();
        for u in &s.urls {
            self.record_url(u, &mut now);
        }
        self.remove_gone(now);
    }

    /// The round itself: its result, duration and API reads.
    fn record_round(&self, s: &Status, round_seconds: f64) {
        let complete = s.api.complete;
        self.rounds
            .get_or_create(&ResultLabel {
                result: if complete { "complete" } else { "incomplete" },
            })
            .inc();
        if complete {
            self.last_complete.set(unix(s.finished_at));
        }
        self.round_duration.set(round_seconds);
        let errors = s.api.errors;
        let throttled = s.api.throttled;
        let ok = s.api.requests.saturating_sub(errors + throttled);
        for (result, n) in [("ok", ok), ("throttled", throttled), ("error", errors)] {
            self.api_requests
                .get_or_create(&ResultLabel { result })
                .inc_by(n);
        }
        if let Some(age) = s.api.oldest_page_age_seconds {
            self.wiring_age.set(age);
        }
    }

    /// The numbers selected, and how many fail with each problem.
    fn record_numbers(&self, s: &Status) {
        self.numbers.set(count(s.numbers.len()));
        for (kind, n) in s.failing_by_kind() {
            self.numbers_failing
                .get_or_create(&ProblemLabel {
                    problem: kind.name(),
                })
                .set(count(n));
        }
    }

    /// One probed URL's series, each added to `now` so the next round keeps it.
    fn record_url(&self, u: &UrlStatus, now: &mut Present) {
        let (channel, role) = (u.channel.as_str(), u.role.as_str());
        let url = UrlLabels {
            url: u.url.clone(),
            channel,
            role,
        };
        let check = CheckLabels {
            url: u.url.clone(),
            channel,
            role,
            check: u.check.as_str(),
        };
        self.probe_success
            .get_or_create(&check)
            .set(i64::from(u.ok));
        self.probe_failing_rounds
            .get_or_create(&url)
            .set(i64::from(u.failing_rounds));
        self.probe_error_code
            .get_or_create(&url)
            .set(i64::from(u.error_code.unwrap_or(0)));
        self.record_phases(u, now);
        self.probes
            .get_or_create(&ResultLabel {
                result: if u.ok { "ok" } else { "failed" },
            })
            .inc();
        if let Some(c) = &u.certificate {
            self.record_certificate(c, now);
        }
        now.urls.insert(url);
        now.checks.insert(check);
    }

    /// A URL's time to the first byte and in all, with what Twilio allows for each; a phase the
    /// probe did not reach has no duration.
    fn record_phases(&self, u: &UrlStatus, now: &mut Present) {
        let phase = |phase| PhaseLabels {
            url: u.url.clone(),
            channel: u.channel.as_str(),
            role: u.role.as_str(),
            phase,
        };
        let seconds = |ms: u64| ms as f64 / 1000.0;
        for (p, took, allowed) in [
            ("first_byte", u.first_byte_ms, u.read_timeout_ms),
            ("total", Some(u.total_ms), u.total_timeout_ms),
        ] {
            let labels = phase(p);
            self.probe_timeout
                .get_or_create(&labels)
                .set(seconds(allowed));
            match took {
                Some(ms) => {
                    self.probe_duration.get_or_create(&labels).set(seconds(ms));
                }
                None => {
                    self.probe_duration.remove(&labels);
                }
            }
            now.phases.insert(labels);
        }
    }

    /// The expiry and validity of the certificate a probed host presented.
    fn record_certificate(&self, c: &CertificateStatus, now: &mut Present) {
        let host = HostLabel {
            host: c.host.clone(),
        };
        if let Some(t) = c.not_after {
            self.certificate_expiry.get_or_create(&host).set(unix(t));
        }
        self.certificate_valid
            .get_or_create(&host)
            .set(i64::from(c.valid));
        now.hosts.insert(host);
    }

    /// Removes the series the last round set and this one did not, then remembers this round's.
    fn remove_gone(&self, now: Present) {
        let mut before = self.present.lock().unwrap_or_else(|e| e.into_inner());
        for gone in before.urls.difference(&now.urls) {
            self.probe_failing_rounds.remove(gone);
            self.probe_error_code.remove(gone);
        }
        for gone in before.checks.difference(&now.checks) {
            self.probe_success.remove(gone);
        }
        for gone in before.phases.difference(&now.phases) {
            self.probe_duration.remove(gone);
            self.probe_timeout.remove(gone);
        }
        for gone in before.hosts.difference(&now.hosts) {
            self.certificate_expiry.remove(gone);
            self.certificate_valid.remove(gone);
        }
        *before = now;
    }

    /// The exposition text.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(4096);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
