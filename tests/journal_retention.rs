//! Retention and the backlog gauges without `--forward-to`, against the real binary: events past
//! retention are pruned although nothing delivered them, and no gauge climbs for events nothing
//! will deliver.

mod common;

use std::time::{Duration, Instant};

use common::process::Serve;
use twiml_failover::journal::{self, JournalUrl, NewEvent};
use twiml_failover::twilio::Role;

fn event(key: &str, received_at_ms: i64) -> NewEvent {
    NewEvent {
        received_at_ms,
        role: Role::Primary,
        method: "POST".into(),
        url: "https://x/sms".into(),
        path: "/sms".into(),
        params: Vec::new(),
        error_code: None,
        error_url: None,
        idempotency_key: key.into(),
        conversation: key.into(),
        account_sid: None,
    }
}

#[test]
fn without_forwarding_old_events_are_pruned_and_no_backlog_is_shown() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("journal.db");
    let url = JournalUrl::Sqlite(db.clone());
    let now = twiml_failover::journal::time::now_ms();
    let mut store = journal::open(&url).unwrap();
    store
        .append(&[
            event("old", now - 2 * 3_600_000),
            event("recent", now - 60_000),
        ])
        .unwrap();
    let journal_url = format!("sqlite://{}", db.display());
    let server = Serve::shipped(&[
        "--journal",
        &journal_url,
        "--journal-retention",
        "1h",
        "--watch",
        "false",
    ]);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let keys: Vec<String> = store
            .list(None, 10)
            .unwrap()
            .into_iter()
            .map(|e| e.webhook.idempotency_key)
            .collect();
        if keys == ["recent"] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never pruned: {keys:?}\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let metrics = server.get("/metrics").unwrap();
    assert!(metrics.contains("journal_buffered_events"), "{metrics}");
    assert!(!metrics.contains("journal_backlog_events"), "{metrics}");
    assert!(!metrics.contains("oldest_undelivered"), "{metrics}");
}
