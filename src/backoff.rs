//! Retry delays: exponential backoff, with full jitter where many retries are in flight (the
//! forwarder) and without where one caller retries (the journal writer). Pure; the random source
//! is passed in.
//!
//! Full jitter (a uniform draw between zero and the exponential ceiling) spreads the retries of
//! many events that failed together, so a recovering target sees a trickle instead of a wave.

use std::time::Duration;

/// How retry delays grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Ceiling of the first retry's delay.
    pub base: Duration,
    /// Largest ceiling any retry's delay can have.
    pub cap: Duration,
}

impl Backoff {
    /// The ceiling for retry number `attempt` (1 = the first retry): `min(cap, base * 2^(attempt-1))`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(32);
        let ceiling = self
            .base
            .checked_mul(1u32 << doublings.min(31))
            .unwrap_or(self.cap);
        ceiling.min(self.cap)
    }

    /// A delay drawn uniformly from `[0, ceiling(attempt)]`.
    pub fn delay(&self, attempt: u32, rng: &mut fastrand::Rng) -> Duration {
        let ceiling = u64::try_from(self.ceiling(attempt).as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(rng.u64(0..=ceiling))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: Backoff = Backoff {
        base: Duration::from_millis(500),
        cap: Duration::from_secs(60),
    };

    #[test]
    fn ceiling_doubles_then_stops_at_the_cap() {
        let ms: Vec<u128> = (1..=9).map(|a| B.ceiling(a).as_millis()).collect();
        assert_eq!(
            ms,
            [500, 1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000]
        );
        assert_eq!(B.ceiling(0), B.base);
        assert_eq!(B.ceiling(u32::MAX), B.cap);
    }

    #[test]
    fn delays_stay_within_the_ceiling_and_spread_out() {
        let mut rng = fastrand::Rng::with_seed(7);
        for attempt in 1..40 {
            let ceiling = B.ceiling(attempt);
            let delays: Vec<Duration> = (0..200).map(|_| B.delay(attempt, &mut rng)).collect();
            assert!(delays.iter().all(|d| *d <= ceiling), "attempt {attempt}");
            // Jitter: 200 draws over a range of hundreds of milliseconds are not all alike.
            let distinct: std::collections::HashSet<_> = delays.iter().collect();
            assert!(distinct.len() > 50, "attempt {attempt}: {}", distinct.len());
            // Full jitter reaches both ends of the range, not just a band near the ceiling.
            assert!(delays.iter().any(|d| *d < ceiling / 4), "attempt {attempt}");
            assert!(
                delays.iter().any(|d| *d > ceiling * 3 / 4),
                "attempt {attempt}"
            );
        }
    }

    #[test]
    fn same_seed_same_delays() {
        let draw = |seed| {
            let mut rng = fastrand::Rng::with_seed(seed);
            (1..10).map(|a| B.delay(a, &mut rng)).collect::<Vec<_>>()
        };
        assert_eq!(draw(42), draw(42));
        assert_ne!(draw(42), draw(43));
    }

    #[test]
    fn zero_base_means_immediate_retries() {
        let b = Backoff {
            base: Duration::ZERO,
            cap: Duration::from_secs(1),
        };
        let mut rng = fastrand::Rng::with_seed(1);
        assert_eq!(b.delay(5, &mut rng), Duration::ZERO);
    }
}
