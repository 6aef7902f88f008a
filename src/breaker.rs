//! A circuit breaker, around the forward target and the upstream app. Pure; the caller passes the
//! time.
//!
//! Closed: requests flow. After `threshold` consecutive failures it opens (or, with
//! [`Breaker::with_ratio`], when failures reach a share of the last `window` results): nothing is
//! sent for `cooldown`. Then it is half-open: exactly one probe goes out; its success closes the breaker,
//! its failure opens it again. A target that is coming back up thus gets one request, not the
//! whole backlog at once.

use std::time::{Duration, Instant};

/// The breaker's state, as exposed in metrics (`0` closed, `1` open, `2` half-open).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Requests flow.
    Closed,
    /// Nothing is sent until the cool-down ends.
    Open,
    /// One probe decides.
    HalfOpen,
}

impl State {
    /// The gauge value.
    pub fn as_gauge(self) -> i64 {
        match self {
            State::Closed => 0,
            State::Open => 1,
            State::HalfOpen => 2,
        }
    }
}

/// Counts consecutive failures and decides whether a request may go out.
#[derive(Debug, Clone)]
pub struct Breaker {
    threshold: u32,
    cooldown: Duration,
    failures: u32,
    open_until: Option<Instant>,
    probing: bool,
    /// The share of failures among the last `window` results that opens it, when set.
    ratio: Option<(f64, usize)>,
    /// The last results while closed (`true`: failed), at most `window`.
    recent: std::collections::VecDeque<bool>,
}

impl Breaker {
    /// A closed breaker that opens after `threshold` (at least 1) consecutive failures.
    pub fn new(threshold: u32, cooldown: Duration) -> Breaker {
        Breaker {
            threshold: threshold.max(1),
            cooldown,
            failures: 0,
            open_until: None,
            probing: false,
            ratio: None,
            recent: std::collections::VecDeque::new(),
        }
    }

    /// Also opens when at least `ratio` (0 < ratio <= 1) of the last `window` results while
    /// closed were failures, so a target failing every other request opens it too.
    pub fn with_ratio(mut self, ratio: f64, window: usize) -> Breaker {
        self.ratio = Some((ratio, window.max(1)));
        self
    }

    /// Remembers one result for the ratio; true when the ratio says open.
    fn record(&mut self, failed: bool) -> bool {
        let Some((ratio, window)) = self.ratio else {
            return false;
        };
        if self.recent.len() == window {
            self.recent.pop_front();
        }
        self.recent.push_back(failed);
        let failures = self.recent.iter().filter(|f| **f).count();
        self.recent.len() == window && failures as f64 >= ratio * window as f64
    }

    /// The state at `now`.
    pub fn state(&self, now: Instant) -> State {
        match self.open_until {
            None => State::Closed,
            Some(until) if now < until => State::Open,
            Some(_) => State::HalfOpen,
        }
    }

    /// Asks to send one request at `now`; `true` means go (and, when half-open, it is the probe).
    pub fn try_acquire(&mut self, now: Instant) -> bool {
        match self.state(now) {
            State::Closed => true,
            State::Open => false,
            State::HalfOpen if self.probing => false,
            State::HalfOpen => {
                self.probing = true;
                true
            }
        }
    }

    /// True when [`Breaker::try_acquire`] would let a request go at `now` (without taking the probe).
    pub fn would_allow(&self, now: Instant) -> bool {
        match self.state(now) {
            State::Closed => true,
            State::Open => false,
            State::HalfOpen => !self.probing,
        }
    }

    /// When a request may next be allowed, if the breaker is holding them back.
    pub fn reopens_at(&self, now: Instant) -> Option<Instant> {
        match self.state(now) {
            State::Open => self.open_until,
            _ => None,
        }
    }

    /// A request succeeded: the target works, so close.
    pub fn success(&mut self) {
        if self.open_until.is_none() {
            self.record(false);
        }
        self.failures = 0;
        self.open_until = None;
        self.probing = false;
    }

    /// A request failed at `now`.
    pub fn failure(&mut self, now: Instant) {
        match self.state(now) {
            State::Closed => {
                self.failures = self.failures.saturating_add(1);
                let by_ratio = self.record(true);
                if self.failures >= self.threshold || by_ratio {
                    self.open(now);
                }
            }
            // A request sent before the breaker opened; the cool-down already runs.
            State::Open => {}
            State::HalfOpen => self.open(now),
        }
    }

    fn open(&mut self, now: Instant) {
        self.open_until = Some(now + self.cooldown);
        self.probing = false;
        self.recent.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COOL: Duration = Duration::from_secs(10);

    #[test]
    fn opens_after_consecutive_failures_only() {
        let t = Instant::now();
        let mut b = Breaker::new(3, COOL);
        b.failure(t);
        b.failure(t);
        b.success();
        b.failure(t);
        b.failure(t);
        assert_eq!(b.state(t), State::Closed);
        assert!(b.try_acquire(t));
        b.failure(t);
        assert_eq!(b.state(t), State::Open);
        assert!(!b.would_allow(t));
        assert!(!b.try_acquire(t));
        assert_eq!(b.reopens_at(t), Some(t + COOL));
    }

    #[test]
    fn half_open_lets_exactly_one_probe_through() {
        let t = Instant::now();
        let mut b = Breaker::new(1, COOL);
        b.failure(t);
        assert!(!b.try_acquire(t + COOL / 2));
        let later = t + COOL;
        assert_eq!(b.state(later), State::HalfOpen);
        assert_eq!(b.reopens_at(later), None);
        assert!(b.would_allow(later));
        assert!(b.try_acquire(later));
        assert!(!b.would_allow(later));
        assert!(!b.try_acquire(later));
        assert!(!b.try_acquire(later + COOL));
        b.success();
        assert_eq!(b.state(later), State::Closed);
        assert!(b.try_acquire(later));
        assert!(b.try_acquire(later));
    }

    #[test]
    fn failed_probe_opens_again_for_a_full_cooldown() {
        let t = Instant::now();
        let mut b = Breaker::new(2, COOL);
        b.failure(t);
        b.failure(t);
        let probe = t + COOL + Duration::from_secs(1);
        assert!(b.try_acquire(probe));
        b.failure(probe);
        assert_eq!(b.state(probe), State::Open);
        assert_eq!(b.reopens_at(probe), Some(probe + COOL));
        assert!(b.try_acquire(probe + COOL));
    }

    #[test]
    fn late_failures_while_open_do_not_extend_the_cooldown() {
        let t = Instant::now();
        let mut b = Breaker::new(1, COOL);
        b.failure(t);
        b.failure(t + Duration::from_secs(5));
        assert_eq!(b.reopens_at(t), Some(t + COOL));
        assert_eq!(State::HalfOpen.as_gauge(), 2);
    }

    #[test]
    fn a_ratio_opens_on_a_flapping_target_that_never_fails_twice_in_a_row() {
        let t = Instant::now();
        let mut b = Breaker::new(5, COOL).with_ratio(0.5, 6);
        for _ in 0..2 {
            b.failure(t);
            b.success();
        }
        b.failure(t);
        assert_eq!(
            b.state(t),
            State::Closed,
            "5 of 6 results seen, not yet a window"
        );
        b.success();
        assert_eq!(b.state(t), State::Closed, "a success never opens it");
        b.failure(t);
        assert_eq!(b.state(t), State::Open, "3 of the last 6 failed");
        // After the probe closes it, the window starts empty.
        assert!(b.try_acquire(t + COOL));
        b.success();
        b.failure(t + COOL);
        assert_eq!(b.state(t + COOL), State::Closed);
    }
}
