//! Readiness as a typed state: starting, ready, draining. `/readyz` answers 200 only while ready.

use std::sync::atomic::{AtomicU8, Ordering};

/// The server's lifecycle phase as seen by load balancers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Templates not loaded yet.
    Starting,
    /// Serving traffic.
    Ready,
    /// Shutting down: finish in-flight requests, take no new ones.
    Draining,
}

/// Shared, lock-free readiness state. Draining is final.
#[derive(Debug)]
pub struct Readiness(AtomicU8);

impl Default for Readiness {
    fn default() -> Self {
        Readiness(AtomicU8::new(Phase::Starting as u8))
    }
}

impl Readiness {
    /// The current phase.
    pub fn phase(&self) -> Phase {
        match self.0.load(Ordering::Acquire) {
            0 => Phase::Starting,
            1 => Phase::Ready,
            _ => Phase::Draining,
        }
    }

    /// Marks the server ready, unless it is already draining.
    pub fn set_ready(&self) {
        let _ = self.0.compare_exchange(
            Phase::Starting as u8,
            Phase::Ready as u8,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }

    /// Starts draining; `/readyz` answers 503 from now on.
    pub fn start_draining(&self) {
        self.0.store(Phase::Draining as u8, Ordering::Release);
    }

    /// True while the server should receive traffic.
    pub fn is_ready(&self) -> bool {
        self.phase() == Phase::Ready
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draining_is_final() {
        let r = Readiness::default();
        assert!(!r.is_ready());
        r.set_ready();
        assert!(r.is_ready());
        r.start_draining();
        r.set_ready();
        assert_eq!(r.phase(), Phase::Draining);
    }
}
