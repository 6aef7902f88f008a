//! One conformance suite for every journal store: SQLite always, PostgreSQL when
//! `TWIML_FAILOVER_TEST_POSTGRES` holds a URL (CI starts a real server with `.ci/postgres.sh`).

mod common;

use common::{fresh_postgres_db, postgres_url};
use twiml_failover::journal::{self, Appended, JournalUrl, NewEvent, Store};
use twiml_failover::twilio::Role;

fn event(key: &str, conversation: &str, received_at_ms: i64) -> NewEvent {
    NewEvent {
        received_at_ms,
        role: Role::Fallback,
        method: "POST".into(),
        url: "https://fallback.example.net/sms?x=1".into(),
        path: "/sms".into(),
        params: vec![
            ("MessageSid".into(), conversation.into()),
            ("Body".into(), "héllo \"quoted\" & <b>".into()),
            ("Body".into(), "second value".into()),
            ("x".into(), "1".into()),
        ],
        error_code: Some("11205".into()),
        error_url: Some("https://voice.example.com/sms".into()),
        idempotency_key: key.into(),
        conversation: conversation.into(),
        account_sid: None,
    }
}

/// Everything the trait promises, against a fresh, empty store.
fn conformance(store: &mut dyn Store) {
    assert_eq!(store.stats().unwrap().total, 0, "store must start empty");

    // Append: a batch in order, with a key repeated inside the batch.
    let batch = vec![
        event("k1", "SM1", 1000),
        event("k2", "SM2", 2000),
        event("k1", "SM1", 1000),
        event("k3", "SM1", 3000),
    ];
    let out = store.append(&batch).unwrap();
    let (Appended::New(id1), Appended::New(id2), Appended::Duplicate(dup), Appended::New(id3)) =
        (out[0], out[1], out[2], out[3])
    else {
        panic!("unexpected append results {out:?}");
    };
    assert_eq!(dup, id1);
    // In arrival order, and without a gap where the duplicate was: `journal list` shows 1, 2, 3.
    assert_eq!((id2, id3), (id1 + 1, id1 + 2), "ids follow arrival order");

    // A retry in a later batch is a duplicate of the first row, and uses up no id either.
    assert_eq!(
        store.append(&[event("k2", "SM2", 9999)]).unwrap(),
        vec![Appended::Duplicate(id2)]
    );
    let mixed = store
        .append(&[event("k3", "SM1", 3000), event("k3b", "SM1", 3500)])
        .unwrap();
    let Appended::New(next) = mixed[1] else {
        panic!("unexpected append results {mixed:?}");
    };
    assert_eq!((mixed[0], next), (Appended::Duplicate(id3), id3 + 1));
    store.mark_delivered(next, 3600).unwrap();
    assert_eq!(store.prune_delivered(3601).unwrap(), 1);
    assert_eq!(store.append(&[]).unwrap(), vec![]);

    // What went in comes out, byte for byte.
    let got = store.get(id1).unwrap().expect("event 1 stored");
    assert_eq!(got.webhook, batch[0]);
    assert_eq!(got.id, id1);
    assert_eq!(got.delivered_at_ms, None);
    assert_eq!(got.attempts, 0);
    assert_eq!(got.next_attempt_at_ms, 1000);
    assert_eq!(got.last_error, None);
    assert!(store.get(id3 + 1000).unwrap().is_none());

    let stats = store.stats().unwrap();
    assert_eq!(
        (
            stats.total,
            stats.undelivered,
            stats.delivered,
            stats.oldest_undelivered_ms
        ),
        (3, 3, 0, Some(1000))
    );

    // Undelivered: by id, after a cursor, limited.
    let ids = |v: Vec<journal::Event>| v.iter().map(|e| e.id).collect::<Vec<_>>();
    assert_eq!(ids(store.undelivered(0, 10).unwrap()), [id1, id2, id3]);
    assert_eq!(ids(store.undelivered(id1, 1).unwrap()), [id2]);

    // Failures are counted; delivery is idempotent and keeps the first time.
    store.record_failure(id1, "503 from target", 5000).unwrap();
    store.record_failure(id1, "timeout", 7000).unwrap();
    let e = store.get(id1).unwrap().unwrap();
    assert_eq!(
        (e.attempts, e.last_error.as_deref(), e.next_attempt_at_ms),
        (2, Some("timeout"), 7000)
    );
    store.mark_delivered(id1, 8000).unwrap();
    store.mark_delivered(id1, 9000).unwrap();
    assert_eq!(store.get(id1).unwrap().unwrap().delivered_at_ms, Some(8000));
    assert_eq!(ids(store.undelivered(0, 10).unwrap()), [id2, id3]);
    let stats = store.stats().unwrap();
    assert_eq!(
        (
            stats.total,
            stats.undelivered,
            stats.delivered,
            stats.oldest_undelivered_ms
        ),
        (3, 2, 1, Some(2000))
    );

    // List: by receipt time, from a point, limited.
    assert_eq!(ids(store.list(None, 10).unwrap()), [id1, id2, id3]);
    assert_eq!(ids(store.list(Some(2000), 10).unwrap()), [id2, id3]);
    assert_eq!(ids(store.list(Some(2001), 1).unwrap()), [id3]);

    // Prune removes only delivered events delivered before the cut-off.
    store.mark_delivered(id3, 10_000).unwrap();
    assert_eq!(store.prune_delivered(9000).unwrap(), 1);
    assert!(store.get(id1).unwrap().is_none());
    assert!(store.get(id3).unwrap().is_some());
    assert_eq!(store.prune_delivered(20_000).unwrap(), 1);
    assert_eq!(store.stats().unwrap().total, 1);

    // Ids are never reused after a prune, so a forwarder's cursor stays valid.
    let Appended::New(id4) = store.append(&[event("k4", "SM4", 11_000)]).unwrap()[0] else {
        panic!("k4 must be new");
    };
    assert!(id4 > id3);
    // A pruned key may be journaled again (retention bounds the dedup window).
    assert!(matches!(
        store.append(&[event("k1", "SM1", 12_000)]).unwrap()[0],
        Appended::New(_)
    ));
    // Retention without forwarding: everything received before the cut-off goes, delivered or not.
    let before = store.stats().unwrap().total;
    assert_eq!(store.prune_received(12_000).unwrap(), 2);
    assert_eq!(store.stats().unwrap().total, before - 2);
    assert!(
        store.get(id2).unwrap().is_none(),
        "undelivered, but past retention"
    );

    // Large batches go in one transaction.
    let many: Vec<NewEvent> = (0..500)
        .map(|i| event(&format!("bulk-{i}"), &format!("SMB{}", i % 7), 20_000 + i))
        .collect();
    let out = store.append(&many).unwrap();
    assert!(out.iter().all(|a| matches!(a, Appended::New(_))));
    assert!(out.windows(2).all(|w| w[0].id() < w[1].id()));
    assert_eq!(store.stats().unwrap().total, 501);
}

#[test]
fn sqlite_store_conforms_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let url = JournalUrl::Sqlite(dir.path().join("journal.db"));
    let mut store = journal::open(&url).unwrap();
    conformance(store.as_mut());
    drop(store);
    let mut again = journal::open(&url).unwrap();
    assert_eq!(again.stats().unwrap().total, 501);
}

#[test]
fn sqlite_store_reports_an_unwritable_path() {
    let e = journal::open(&JournalUrl::Sqlite("/proc/no/such/dir/j.db".into()))
        .err()
        .expect("cannot open");
    assert!(e.to_string().contains("/proc/no/such/dir/j.db"), "{e}");
}

#[test]
#[cfg_attr(
    not(postgres_tests),
    ignore = "needs PostgreSQL: eval \"$(bash .ci/postgres.sh)\" && cargo test"
)]
fn postgres_store_conforms() {
    let base = postgres_url();
    let url: JournalUrl = fresh_postgres_db(&base, "tf_conformance").parse().unwrap();
    let mut store = journal::open(&url).unwrap();
    conformance(store.as_mut());
    // A second connection (another replica) sees the same journal and shares the dedup.
    let mut other = journal::open(&url).unwrap();
    assert_eq!(other.stats().unwrap().total, 501);
    assert!(matches!(
        other.append(&[event("bulk-3", "SMB3", 0)]).unwrap()[0],
        Appended::Duplicate(_)
    ));
}

#[test]
fn postgres_errors_hide_the_password() {
    let url: JournalUrl = "postgres://user:hunter2@127.0.0.1:1/db?connect_timeout=2"
        .parse()
        .unwrap();
    let e = journal::open(&url)
        .err()
        .expect("nothing listens on port 1");
    assert!(!e.to_string().contains("hunter2"), "{e}");
}

#[test]
#[cfg_attr(
    not(postgres_tests),
    ignore = "needs PostgreSQL: eval \"$(bash .ci/postgres.sh)\" && cargo test"
)]
fn postgres_over_tls_verifies_the_server() {
    let base = postgres_url();
    // .ci/postgres.sh exports both: a server without the CA is a set-up error, not a skip.
    let ca = std::env::var("TWIML_FAILOVER_TEST_POSTGRES_CA")
        .expect("TWIML_FAILOVER_TEST_POSTGRES_CA: eval \"$(bash .ci/postgres.sh)\" && cargo test");
    let with = |query: &str| -> JournalUrl {
        let sep = if base.contains('?') { '&' } else { '?' };
        format!("{base}{sep}{query}").parse().unwrap()
    };
    let mut store = journal::open(&with(&format!("sslmode=verify-full&sslrootcert={ca}")))
        .expect("TLS with the test CA");
    store.stats().unwrap();
    // The test CA is not a public root: without it the certificate must be refused.
    let e = journal::open(&with("sslmode=require"))
        .err()
        .expect("unknown issuer refused");
    assert!(e.to_string().contains("certificate"), "{e}");
}
