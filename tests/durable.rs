//! The durable side of a running `Service` (the journal's writer, the import of spilled events, the
//! forwarder) is started and stopped as one value: a spill import still retrying against a journal
//! that is down ends with the shutdown instead of being left behind (issue 25).

mod common;

use std::time::{Duration, Instant};

use common::*;
use twiml_failover::journal::{spill, NewEvent};
use twiml_failover::service::Exit;
use twiml_failover::twilio::Role;

/// A PostgreSQL URL where nothing listens: start-up serves around it, every write fails at once.
const DOWN: &str = "postgres://twiml@127.0.0.1:9/journal?connect_timeout=1";

/// Threads of this process named as the spill import names its thread (the kernel keeps 15 bytes).
fn spill_import_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("Linux /proc")
        .flatten()
        .filter(|task| {
            std::fs::read_to_string(task.path().join("comm"))
                .is_ok_and(|name| name.trim_end() == "journal-spill-i")
        })
        .count()
}

fn spilled_event() -> NewEvent {
    NewEvent {
        received_at_ms: 1_764_547_200_000,
        role: Role::Primary,
        method: "POST".into(),
        url: "https://example.com/sms".into(),
        path: "/sms".into(),
        params: vec![("Body".into(), "hi".into())],
        error_code: None,
        error_url: None,
        idempotency_key: "SM1:sms".into(),
        conversation: "SM1".into(),
        account_sid: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_a_spill_import_that_is_still_retrying() {
    let dir = tempfile::tempdir().unwrap();
    let spill_dir = dir.path().join("spill");
    std::fs::create_dir(&spill_dir).unwrap();
    spill::write(&spill_dir, &[spilled_event()]).unwrap();
    let mut args = args("primary");
    args.journal.url = Some(DOWN.into());
    args.journal.spill_dir = Some(spill_dir.clone());
    let server = TestServer::start(config(&args)).await;
    // The thread names itself once it runs.
    let deadline = Instant::now() + Duration::from_secs(5);
    while spill_import_threads() == 0 {
        assert!(Instant::now() < deadline, "the import never ran");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(spill_import_threads(), 1, "one import while serving");

    let asked = Instant::now();
    let exit = server.stop().await;
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "{:?}",
        asked.elapsed()
    );
    assert_eq!(
        exit,
        Exit::Clean,
        "nothing was acknowledged, nothing is lost"
    );
    assert_eq!(spill_import_threads(), 0, "no spill import is left behind");
    assert_eq!(
        spill::pending(&spill_dir).unwrap().len(),
        1,
        "the file stays for the next start"
    );
}
