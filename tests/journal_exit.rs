//! What happens to acknowledged webhooks when `serve` exits while the journal store is down,
//! against the real binary: without a spill folder the exit status says they were lost; with one
//! they are written there, and the next start takes them back into the journal (twice is harmless).

mod common;

use std::time::{Duration, Instant};

use common::process::Serve;
use twiml_failover::journal::{self, spill, JournalUrl};

/// A PostgreSQL URL where nothing listens: every write fails at once (connection refused).
const DOWN: &str = "postgres://twiml@127.0.0.1:9/journal?connect_timeout=1";

fn serve_with(journal: &str, spill_dir: Option<&std::path::Path>) -> Serve {
    let mut args = vec!["--journal", journal, "--watch", "false"];
    if let Some(dir) = spill_dir {
        args.extend(["--journal-spill-dir", dir.to_str().unwrap()]);
    }
    Serve::shipped(&args)
}

/// Sends `n` signed webhooks, each with its own MessageSid, and checks each got 200.
fn acknowledge(server: &Serve, n: usize) {
    for i in 0..n {
        let sid = format!("SM{i:032}");
        let params = [
            ("AccountSid", "AC00000000000000000000000000000001"),
            ("MessageSid", sid.as_str()),
            ("From", "+15005550006"),
            ("To", "+15005550001"),
            ("Body", "hi"),
        ];
        let answer = server.post_signed("/sms", &params);
        assert!(
            answer
                .as_deref()
                .is_some_and(|a| a.starts_with("HTTP/1.1 200")),
            "{answer:?}"
        );
    }
}

fn stop(server: &mut Serve) -> i32 {
    server.signal("TERM");
    let status = server
        .wait_exit(Duration::from_secs(30))
        .unwrap_or_else(|| panic!("no exit within 30 s after SIGTERM:\n{}", server.log()));
    status.code().unwrap_or(-1)
}

#[test]
fn store_down_at_exit_without_spill_folder_exits_non_zero_and_says_lost() {
    let mut server = serve_with(DOWN, None);
    acknowledge(&server, 30);
    assert_eq!(stop(&mut server), 1, "{}", server.log());
    assert!(server.log().contains("lost=30"), "{}", server.log());
}

#[test]
fn store_down_at_exit_spills_and_the_next_start_takes_them_back() {
    let spill_dir = tempfile::tempdir().unwrap();
    let mut server = serve_with(DOWN, Some(spill_dir.path()));
    acknowledge(&server, 30);
    assert_eq!(stop(&mut server), 3, "{}", server.log());
    let files = spill::pending(spill_dir.path()).unwrap();
    assert_eq!(files.len(), 1, "one file per exit");
    assert_eq!(spill::read(&files[0]).unwrap().len(), 30);
    // A copy stands for a file taken back twice (e.g. restored from a backup).
    let copy = spill_dir.path().join("spill-0-copy.jsonl");
    std::fs::copy(&files[0], &copy).unwrap();

    let store_dir = tempfile::tempdir().unwrap();
    let db = store_dir.path().join("journal.db");
    let url = format!("sqlite://{}", db.display());
    let mut next = serve_with(&url, Some(spill_dir.path()));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !spill::pending(spill_dir.path()).unwrap().is_empty() {
        assert!(
            Instant::now() < deadline,
            "spill never taken back:\n{}",
            next.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut store = journal::open(&JournalUrl::Sqlite(db)).unwrap();
    let events = store.list(None, 100).unwrap();
    assert_eq!(events.len(), 30, "each event once");
    assert!(events
        .iter()
        .all(|e| e.event.path == "/sms" && e.event.role == "primary"));
    assert_eq!(stop(&mut next), 0, "{}", next.log());
}
