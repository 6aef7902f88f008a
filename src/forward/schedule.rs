//! Which undelivered events may be sent now: the head of each conversation, once its retry time
//! has come. Pure.
//!
//! Events are considered oldest first (by id). The first undelivered event of a conversation is its
//! head; every later event of that conversation waits until the head is delivered, so a target sees
//! each conversation in order even while earlier events are being retried.

use std::collections::HashSet;

/// One pass over the undelivered events, possibly fed page by page in id order.
#[derive(Debug, Default)]
pub struct Scan {
    seen: HashSet<String>,
    next_due_ms: Option<i64>,
}

impl Scan {
    /// A pass with no conversation seen yet.
    pub fn new() -> Scan {
        Scan::default()
    }

    /// Considers the next event in id order; `true` when it may be sent at `now_ms`.
    ///
    /// `in_flight` events are being sent already: not eligible, but they still hold their
    /// conversation back.
    pub fn consider(
        &mut self,
        conversation: &str,
        next_attempt_at_ms: i64,
        in_flight: bool,
        now_ms: i64,
    ) -> bool {
        if self.seen.contains(conversation) {
            return false;
        }
        self.seen.insert(conversation.to_string());
        if in_flight {
            return false;
        }
        if next_attempt_at_ms > now_ms {
            self.next_due_ms = Some(
                self.next_due_ms
                    .map_or(next_attempt_at_ms, |d| d.min(next_attempt_at_ms)),
            );
            return false;
        }
        true
    }

    /// The earliest retry time among conversation heads that were not yet due.
    pub fn next_due_ms(&self) -> Option<i64> {
        self.next_due_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (conversation, next_attempt_at_ms, in_flight) in id order → which indices are eligible.
    fn eligible(events: &[(&str, i64, bool)], now: i64) -> (Vec<usize>, Option<i64>) {
        let mut scan = Scan::new();
        let picked = events
            .iter()
            .enumerate()
            .filter(|(_, (c, at, busy))| scan.consider(c, *at, *busy, now))
            .map(|(i, _)| i)
            .collect();
        (picked, scan.next_due_ms())
    }

    #[test]
    fn only_the_head_of_each_conversation_goes() {
        let events = [
            ("A", 0, false),
            ("B", 0, false),
            ("A", 0, false),
            ("C", 0, false),
        ];
        assert_eq!(eligible(&events, 100), (vec![0, 1, 3], None));
    }

    #[test]
    fn a_head_waiting_for_its_retry_holds_its_conversation_back() {
        let events = [
            ("A", 500, false),
            ("A", 0, false),
            ("B", 0, false),
            ("C", 300, false),
        ];
        assert_eq!(eligible(&events, 100), (vec![2], Some(300)));
        assert_eq!(eligible(&events, 500), (vec![0, 2, 3], None));
    }

    #[test]
    fn an_event_in_flight_holds_its_conversation_back() {
        let events = [
            ("A", 0, true),
            ("A", 0, false),
            ("B", 0, true),
            ("C", 0, false),
        ];
        assert_eq!(eligible(&events, 100), (vec![3], None));
    }

    #[test]
    fn pages_share_what_was_seen() {
        let mut scan = Scan::new();
        assert!(scan.consider("A", 0, false, 10));
        // Next page: a later event of A must still wait.
        assert!(!scan.consider("A", 0, false, 10));
        assert!(scan.consider("B", 10, false, 10));
    }
}
