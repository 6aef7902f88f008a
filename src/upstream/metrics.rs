//! Upstream mode's metrics: every webhook answer's outcome, the time the upstream took, and the
//! breaker's state. Registered only when `--upstream` is set.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

/// Cheap to clone: handles to the same series.
#[derive(Debug, Clone)]
pub struct UpstreamMetrics {
    requests: Family<OutcomeLabel, Counter>,
    duration: Histogram,
    breaker: Gauge,
}

impl Default for UpstreamMetrics {
    fn default() -> Self {
        UpstreamMetrics {
            requests: Family::default(),
            // 1 ms .. ~16 s: a budget is seconds, Twilio's limit 15 s.
            duration: Histogram::new(exponential_buckets(0.001, 2.0, 15)),
            breaker: Gauge::default(),
        }
    }
}

impl UpstreamMetrics {
    /// Adds the series to `registry`, each outcome at 0 (so the degraded-ratio alert sees the
    /// first failure as an increase).
    pub fn register(&self, registry: &mut Registry) {
        for outcome in super::OUTCOMES {
            let _ = self.requests.get_or_create(&OutcomeLabel { outcome });
        }
        registry.register(
            "upstream_requests",
            "Webhooks in upstream mode, by where the answer came from: upstream, template (a local \
             path), or the reason the upstream's answer was not used",
            self.requests.clone(),
        );
        registry.register(
            "upstream_duration_seconds",
            "Time the upstream took, for requests that were sent",
            self.duration.clone(),
        );
        registry.register(
            "upstream_breaker_state",
            "Circuit breaker around the upstream: 0 closed, 1 open, 2 half-open",
            self.breaker.clone(),
        );
    }

    /// Counts one webhook's outcome.
    pub fn outcome(&self, outcome: &'static str) {
        self.requests.get_or_create(&OutcomeLabel { outcome }).inc();
    }

    /// Records how long the upstream took.
    pub fn duration(&self, seconds: f64) {
        self.duration.observe(seconds);
    }

    /// Sets the breaker's state gauge.
    pub fn breaker(&self, state: i64) {
        self.breaker.set(state);
    }
}
