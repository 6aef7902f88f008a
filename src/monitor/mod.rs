//! `twiml-failover monitor`: every interval (jittered), a round reads the account's wiring within a
//! request budget ([`reads`]), judges each selected number per channel as `numbers audit` does,
//! probes each distinct URL Twilio would call as Twilio would ([`probe`]), and publishes the
//! verdicts ([`verdict`] → [`status`]) as metrics ([`metrics`]), a JSON status ([`http`]) and one
//! log line per change of state. docs/monitor.md is the contract.
//!
//! Pure: [`args`] (the flags and their checks), [`verdict`], [`status`], [`metrics`]. I/O:
//! [`reads`] (the REST API), [`probe`] (the probed servers), [`http`] (the listener) and the round
//! loop here. The command (environment, terminal, exit status) is [`crate::commands::monitor`].

pub mod args;
pub mod http;
pub mod metrics;
pub mod probe;
pub mod reads;
pub mod status;
pub mod verdict;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

pub use args::MonitorArgs;
use http::Published;
use probe::{Check, Outcome, Probe, Prober};
use reads::Reads;
use status::{ApiStatus, Status};
use verdict::{Change, Found, History, State, Targets};

use crate::drill::twilio::Failure;
use crate::numbers::audit;
use crate::numbers::plan::Selection;
use crate::numbers::rest::Api;
use crate::numbers::wiring::Wiring;
use crate::twilio::Role;

/// Everything a monitor needs, read and checked by the command.
#[derive(Debug)]
pub struct Setup {
    /// The flags (already checked).
    pub args: MonitorArgs,
    /// The intended wiring.
    pub wiring: Wiring,
    /// The REST client.
    pub api: Api,
    /// The auth token that signs probes; `None`: reachability checks only.
    pub token: Option<String>,
    /// The roots probes trust.
    pub roots: rustls::RootCertStore,
}

/// The running monitor: its reads, its memory of the last verdicts, what it publishes.
#[derive(Debug)]
pub struct Monitor {
    args: MonitorArgs,
    wiring: Wiring,
    selection: Selection,
    api: Api,
    reads: Reads,
    prober: Arc<Prober>,
    history: History,
    published: Arc<Published>,
    /// Rounds made so far.
    rounds: u64,
    /// Why the last round's reads failed, to say it once.
    api_error: Option<String>,
}

/// Logs a change at `warn` when it is bad news, at `info` when it is good news.
macro_rules! said {
    ($bad:expr, $($field:tt)*) => {
        if $bad {
            tracing::warn!(target: "twiml_failover::monitor", $($field)*)
        } else {
            tracing::info!(target: "twiml_failover::monitor", $($field)*)
        }
    };
}

fn log(change: &Change) {
    match change {
        Change::Number {
            number,
            sid,
            channel,
            was,
            now,
            problems,
            detail,
        } => said!(
            *now == State::Failing,
            number = number.as_str(),
            sid = sid.as_str(),
            channel = channel.as_str(),
            was = was.as_str(),
            now = now.as_str(),
            problems = problems.as_str(),
            detail = detail.as_str(),
            "number verdict changed"
        ),
        Change::Probe {
            key,
            was,
            now,
            error_code,
            detail,
        } => said!(
            *now == State::Failing,
            url = key.url.as_str(),
            channel = key.channel.as_str(),
            role = key.role.as_str(),
            was = was.as_str(),
            now = now.as_str(),
            error_code = *error_code,
            detail = detail.as_deref(),
            "probe state changed"
        ),
        Change::Certificate {
            host,
            was,
            now,
            not_after,
            detail,
        } => said!(
            *now != verdict::CertState::Valid,
            host = host.as_str(),
            was = was.as_str(),
            now = now.as_str(),
            not_after = not_after.map(status::rfc3339_text).as_deref(),
            detail = detail.as_deref(),
            "certificate state changed"
        ),
    }
}

/// One line per round, the only one: the per-round series the CloudWatch and Cloud Monitoring
/// alarms count ("two rounds in a row" is their evaluation window, as Prometheus's is the
/// failing_rounds gauge), which state-change lines cannot give.
fn log_round(status: &Status) {
    let fallback_urls_failing = status
        .urls
        .iter()
        .filter(|u| u.role == Role::Fallback && !u.ok)
        .count();
    tracing::info!(
        target: "twiml_failover::monitor",
        round = status.round,
        ok = status.ok,
        fallback_urls_failing,
        summary = status.summary.as_str(),
        "round finished"
    );
}

/// The wait before the next round: `interval` plus or minus `jitter` of it, at random.
fn jittered(interval: Duration, jitter: f64) -> Duration {
    let factor = 1.0 + jitter * (fastrand::f64() * 2.0 - 1.0);
    interval.mul_f64(factor.max(0.0))
}

impl Monitor {
    /// A monitor that has made no round yet.
    pub fn new(setup: Setup) -> Monitor {
        let account = setup.api.account.clone();
        let metrics = metrics::Metrics::new(setup.args.interval().as_secs_f64());
        Monitor {
            selection: setup.args.selection(),
            prober: Arc::new(Prober::new(Arc::new(setup.roots), setup.token, account)),
            args: setup.args,
            wiring: setup.wiring,
            api: setup.api,
            reads: Reads::default(),
            history: History::default(),
            published: Arc::new(Published::new(metrics)),
            rounds: 0,
            api_error: None,
        }
    }

    /// What the listener shows.
    pub fn published(&self) -> Arc<Published> {
        self.published.clone()
    }

    /// One round: reads, audit, probes, verdicts; logs what changed, sets the metrics and
    /// publishes the status.
    pub async fn round(&mut self) -> Status {
        let started_at = SystemTime::now();
        let started = Instant::now();
        let a = &self.args;
        let reads = self
            .reads
            .round(
                &self.api,
                self.rounds,
                a.full_read_every,
                a.api_budget,
                a.page_size,
            )
            .await;
        self.rounds += 1;
        if reads.error != self.api_error {
            match &reads.error {
                Some(e) => {
                    tracing::warn!(target: "twiml_failover::monitor", error = e.as_str(), "api reads failing")
                }
                None => tracing::info!(target: "twiml_failover::monitor", "api reads recovered"),
            }
            self.api_error = reads.error.clone();
        }
        let account = self.reads.account();
        let audits = account
            .as_ref()
            .map(|acc| audit::audit(acc, &self.wiring, |n| self.selection.contains(n)));
        let missing = account
            .as_ref()
            .map(|acc| self.selection.missing(acc))
            .unwrap_or_default();
        let targets = verdict::targets(
            audits.as_deref().unwrap_or_default(),
            &self.wiring,
            &self.args.signed_probe,
            self.args.max_urls,
        );
        let outcomes = self.probe_all(&targets).await;
        let api = ApiStatus {
            requests: reads.requests,
            throttled: reads.throttled,
            errors: reads.errors,
            budget: self.args.api_budget,
            complete: reads.complete,
            full_read: reads.full,
            oldest_page_age_seconds: self.reads.oldest_page_age().map(|d| d.as_secs_f64()),
            error: reads.stopped.clone(),
        };
        let (status, changes) = self.history.update(Found {
            round: self.rounds,
            started_at,
            finished_at: SystemTime::now(),
            audits: audits.as_deref(),
            targets: &targets,
            outcomes: &outcomes,
            api,
            missing,
            warning: self.args.certificate_warning(),
        });
        for change in &changes {
            log(change);
        }
        log_round(&status);
        self.published
            .metrics
            .record(&status, started.elapsed().as_secs_f64());
        self.published.publish(status.clone());
        status
    }

    /// Probes every target, at most `--probes-in-flight` at once; outcomes in the targets' order.
    async fn probe_all(&self, targets: &Targets) -> Vec<Outcome> {
        let slots = Arc::new(Semaphore::new(self.args.probes_in_flight));
        let mut running = JoinSet::new();
        for (i, p) in targets.probes.iter().cloned().enumerate() {
            let (prober, slots) = (self.prober.clone(), slots.clone());
            running.spawn(async move {
                let _slot = slots.acquire_owned().await;
                (i, prober.probe(&p).await)
            });
        }
        let mut out: Vec<Option<Outcome>> = vec![None; targets.probes.len()];
        while let Some(done) = running.join_next().await {
            if let Ok((i, outcome)) = done {
                out[i] = Some(outcome);
            }
        }
        out.into_iter()
            .zip(&targets.probes)
            .map(|(o, p)| o.unwrap_or_else(|| lost(p)))
            .collect()
    }

    /// Rounds until `stop` resolves; the first at once, then every interval, jittered.
    pub async fn run(mut self, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => return,
                _ = self.round() => {}
            }
            let wait = jittered(self.args.interval(), self.args.jitter);
            tokio::select! {
                _ = &mut stop => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}

/// The outcome of a probe whose task did not finish (it cannot panic, but a lost one must not
/// pass).
fn lost(p: &Probe) -> Outcome {
    Outcome {
        check: if p.signed {
            Check::Webhook
        } else {
            Check::Reachability
        },
        failure: Some(Failure {
            code: 11200,
            detail: "the probe did not finish".into(),
            http_status: None,
        }),
        first_byte: None,
        total: Duration::ZERO,
        read_timeout: Duration::ZERO,
        total_timeout: Duration::ZERO,
        certificate: None,
        note: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_stay_within_the_jitter() {
        let interval = Duration::from_secs(300);
        for _ in 0..1000 {
            let w = jittered(interval, 0.1);
            assert!(
                w >= Duration::from_secs(270) && w <= Duration::from_secs(330),
                "{w:?}"
            );
        }
        assert_eq!(jittered(interval, 0.0), interval);
    }
}
