//! How many log lines a stranger can cause: lines about requests nobody proved came from Twilio
//! (a bad or missing signature, a slow or oversized body, a malformed request, an unknown path, a
//! probe) and about failed accepts pass a token bucket, [`BURST`] at once and [`PER_SECOND`] a
//! second after; the rest are counted by status and summed up in one line every [`SUMMARY_EVERY`]
//! (and at shutdown). Lines about signature-verified requests never come here: every genuine
//! webhook is logged. The metrics count every request either way.
//!
//! The bucket is one atomic (GCRA: the time the bucket would next be empty, compared and swapped),
//! and each count another, so the request path takes no lock. Not pure: reads the clock and logs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Lines let through at once after a quiet spell.
pub const BURST: u64 = 10;
/// Lines let through per second under a steady flood.
pub const PER_SECOND: u64 = 2;
/// How often the count of what was held back is logged (when anything was).
pub const SUMMARY_EVERY: Duration = Duration::from_secs(10);

/// What a held-back line was about; the order of [`KINDS`].
const KINDS: [&str; 13] = [
    "400", "403", "404", "405", "408", "413", "414", "415", "431", "503", "2xx", "other", "accept",
];

/// The kind a response status counts under.
fn kind(status: u16) -> usize {
    match status {
        400 => 0,
        403 => 1,
        404 => 2,
        405 => 3,
        408 => 4,
        413 => 5,
        414 => 6,
        415 => 7,
        431 => 8,
        503 => 9,
        200..=299 => 10,
        _ => 11,
    }
}

/// Index of failed accepts in [`KINDS`].
const ACCEPT: usize = 12;

/// The bucket and the counts of one server.
#[derive(Debug)]
pub struct UnverifiedLog {
    epoch: Instant,
    /// Nanoseconds after `epoch` at which the bucket is full again (GCRA's theoretical arrival
    /// time).
    full_at: AtomicU64,
    held_back: [AtomicU64; KINDS.len()],
}

impl Default for UnverifiedLog {
    fn default() -> Self {
        UnverifiedLog {
            epoch: Instant::now(),
            full_at: AtomicU64::new(0),
            held_back: Default::default(),
        }
    }
}

const INTERVAL_NS: u64 = 1_000_000_000 / PER_SECOND;

impl UnverifiedLog {
    /// Whether to log the line about an unverified request answered `status`; when not, it is
    /// counted for the next summary.
    pub fn admit(&self, status: u16) -> bool {
        self.admit_kind(kind(status))
    }

    /// Whether to log a failed accept (a flood of connections can cause one every few ms).
    pub fn admit_accept_error(&self) -> bool {
        self.admit_kind(ACCEPT)
    }

    fn admit_kind(&self, kind: usize) -> bool {
        let now = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let mut full_at = self.full_at.load(Ordering::Relaxed);
        loop {
            let next = full_at.max(now).saturating_add(INTERVAL_NS);
            if next > now.saturating_add(BURST * INTERVAL_NS) {
                self.held_back[kind].fetch_add(1, Ordering::Relaxed);
                return false;
            }
            match self.full_at.compare_exchange_weak(
                full_at,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(seen) => full_at = seen,
            }
        }
    }

    /// Takes the counts held back since the last call: `(total, "403=1200 408=11000")`.
    fn take(&self) -> (u64, String) {
        let mut total = 0;
        let mut by_kind = Vec::new();
        for (name, count) in KINDS.iter().zip(&self.held_back) {
            let n = count.swap(0, Ordering::Relaxed);
            if n > 0 {
                total += n;
                by_kind.push(format!("{name}={n}"));
            }
        }
        (total, by_kind.join(" "))
    }

    /// Logs how many lines were held back since the last summary, by kind, if any were.
    pub fn summarise(&self) {
        let (suppressed, by_status) = self.take();
        if suppressed > 0 {
            tracing::info!(
                target: "twiml_failover::request",
                suppressed,
                by_status,
                "log lines about unverified requests held back (every request is still counted in \
                 twiml_failover_requests_total)"
            );
        }
    }

    /// Summarises every [`SUMMARY_EVERY`]; runs until aborted.
    pub async fn summarise_every(&self, period: Duration) {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.summarise();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_steady_rate_and_everything_else_is_counted_by_kind() {
        let log = UnverifiedLog::default();
        let started = Instant::now();
        let mut admitted = 0;
        for i in 0..10_000u32 {
            let status = if i % 2 == 0 { 403 } else { 408 };
            admitted += u64::from(log.admit(status));
        }
        // All within a few ms: the burst, and perhaps one more if the loop took half a second.
        let extra = started.elapsed().as_nanos() as u64 / INTERVAL_NS;
        assert!(
            (BURST..=BURST + extra).contains(&admitted),
            "{admitted} admitted"
        );
        assert!(!log.admit_accept_error());
        let (total, by_kind) = log.take();
        assert_eq!(total + admitted, 10_001);
        assert!(by_kind.starts_with("403="), "{by_kind}");
        assert!(
            by_kind.contains(" 408=") && by_kind.ends_with(" accept=1"),
            "{by_kind}"
        );
        assert_eq!(log.take(), (0, String::new()), "taking resets the counts");
    }

    #[test]
    fn the_bucket_refills_at_the_steady_rate() {
        let log = UnverifiedLog::default();
        while log.admit(404) {}
        std::thread::sleep(Duration::from_nanos(INTERVAL_NS + 50_000_000));
        assert!(log.admit(404), "one line after one interval");
        assert!(!log.admit(404));
    }

    #[test]
    fn statuses_map_to_their_kind() {
        for (status, name) in [
            (403, "403"),
            (431, "431"),
            (200, "2xx"),
            (204, "2xx"),
            (401, "other"),
        ] {
            assert_eq!(KINDS[kind(status)], name);
        }
    }
}
