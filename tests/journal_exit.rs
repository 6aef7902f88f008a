//! What happens to acknowledged webhooks when `serve` exits while the journal store is down or
//! stuck, against the real binary: without a spill folder the exit status says they were lost; with
//! one they are written there, and the next start takes them back into the journal (twice is
//! harmless). A store that does not answer at all (a SQLite file another process keeps locked, a
//! PostgreSQL server that accepts and never answers, or is stopped) gets a bounded time at exit,
//! then its events are spilled too (issue 23).

mod common;

use std::time::{Duration, Instant};

use common::process::Serve;
use twiml_failover::journal::{self, spill, JournalUrl};
use twiml_failover::twilio::Role;

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
    server.acknowledge_sms(0..n);
}

#[test]
fn store_down_at_exit_without_spill_folder_exits_non_zero_and_says_lost() {
    let mut server = serve_with(DOWN, None);
    acknowledge(&server, 30);
    assert_eq!(server.terminate(), 1, "{}", server.log());
    assert!(server.log().contains("lost=30"), "{}", server.log());
}

#[test]
fn store_down_at_exit_spills_and_the_next_start_takes_them_back() {
    let spill_dir = tempfile::tempdir().unwrap();
    let mut server = serve_with(DOWN, Some(spill_dir.path()));
    acknowledge(&server, 30);
    assert_eq!(server.terminate(), 3, "{}", server.log());
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
        .all(|e| e.webhook.path == "/sms" && e.webhook.role == Role::Primary));
    assert_eq!(next.terminate(), 0, "{}", next.log());
}

/// The MessageSid `acknowledge_sms` sends as number `i`.
fn sid(i: usize) -> String {
    format!("SM{i:032}")
}

/// A TCP endpoint that accepts connections and answers nothing, like a PostgreSQL server that is
/// SIGSTOPped or wedged; with an upstream, a proxy to it that can be frozen that way at any time
/// (connections stay open, nothing more goes through in either direction).
struct Stall {
    addr: std::net::SocketAddr,
    frozen: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Stall {
    fn start(upstream: Option<std::net::SocketAddr>) -> Stall {
        use std::sync::atomic::{AtomicBool, Ordering};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let frozen = std::sync::Arc::new(AtomicBool::new(upstream.is_none()));
        let flag = frozen.clone();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for client in listener.incoming().flatten() {
                let Some(upstream) = upstream else {
                    held.push(client);
                    continue;
                };
                let Ok(server) = std::net::TcpStream::connect(upstream) else {
                    continue;
                };
                for (from, to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    let flag = flag.clone();
                    std::thread::spawn(move || pump(from, to, &flag));
                }
            }
        });
        fn pump(mut from: std::net::TcpStream, mut to: std::net::TcpStream, frozen: &AtomicBool) {
            use std::io::{Read, Write};
            let mut buf = [0u8; 16 * 1024];
            while let Ok(n @ 1..) = from.read(&mut buf) {
                // Held, not dropped: the peer sees a server that stopped, not one that closed.
                while frozen.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(10));
                }
                if to.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
        Stall { addr, frozen }
    }

    fn freeze(&self) {
        self.frozen.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// SIGTERM, then checks that the exit status says "spilled", within `bound` plus 3 s for the drain
/// and the exit itself, and that nothing was lost; returns the time it took.
fn stop_spilled(server: &mut Serve, bound: Duration) -> Duration {
    let started = Instant::now();
    let code = server.terminate();
    let took = started.elapsed();
    let log = server.log();
    assert_eq!(code, 3, "{log}");
    assert!(took < bound + Duration::from_secs(3), "{took:?}\n{log}");
    assert!(!log.contains("lost"), "{log}");
    took
}

/// The keys of the events in the spill folder's one file.
fn spilled_conversations(dir: &std::path::Path) -> Vec<String> {
    let files = spill::pending(dir).unwrap();
    assert_eq!(files.len(), 1, "one file per exit");
    spill::read(&files[0])
        .unwrap()
        .into_iter()
        .map(|e| e.conversation)
        .collect()
}

/// The conversations (MessageSids) journaled at `url`, each once.
fn journaled(url: &JournalUrl) -> Vec<String> {
    let mut store = journal::open(url).unwrap();
    let mut sids: Vec<String> = store
        .list(None, 1000)
        .unwrap()
        .into_iter()
        .map(|e| e.webhook.conversation)
        .collect();
    sids.sort();
    sids
}

/// Restarts on `url` with the spill folder and waits until the spill is taken back.
fn take_back(url: &str, spill_dir: &std::path::Path) {
    let mut next = serve_with(url, Some(spill_dir));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !spill::pending(spill_dir).unwrap().is_empty() {
        assert!(
            Instant::now() < deadline,
            "spill never taken back:\n{}",
            next.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(next.terminate(), 0, "{}", next.log());
}

#[test]
fn a_sqlite_journal_locked_by_another_process_at_exit_spills_within_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("journal.db");
    let spill_dir = dir.path().join("spill");
    let url = format!("sqlite://{}", db.display());
    let mut server = Serve::spilling(&url, &spill_dir, &[]);
    server.acknowledge_sms(0..5);
    // Another process (this test) takes the write lock and keeps it.
    let lock = rusqlite::Connection::open(&db).unwrap();
    lock.execute_batch("BEGIN IMMEDIATE").unwrap();
    server.acknowledge_sms(5..15);
    let took = stop_spilled(&mut server, twiml_failover::service::JOURNAL_EXIT_WAIT);
    let expected: Vec<String> = (5..15).map(sid).collect();
    assert_eq!(spilled_conversations(&spill_dir), expected);
    eprintln!("locked SQLite: exit 3 after {took:?} with 10 events spilled");
    drop(lock);
    take_back(&url, &spill_dir);
    let all: Vec<String> = (0..15).map(sid).collect();
    assert_eq!(journaled(&JournalUrl::Sqlite(db)), all, "each event once");
}

#[test]
fn a_postgres_that_accepts_and_never_answers_at_exit_spills_within_the_bound() {
    let hole = Stall::start(None);
    let url = format!("postgres://twiml@{}/journal", hole.addr);
    let dir = tempfile::tempdir().unwrap();
    let spill_dir = dir.path().join("spill");
    // The forwarder waits on the same store: it must not hold the exit either.
    let mut server = Serve::spilling(&url, &spill_dir, &["--forward-to", "http://127.0.0.1:9/x"]);
    acknowledge(&server, 10);
    let took = stop_spilled(&mut server, twiml_failover::forward::STOP_GRACE);
    let expected: Vec<String> = (0..10).map(sid).collect();
    assert_eq!(spilled_conversations(&spill_dir), expected);
    eprintln!("silent PostgreSQL: exit 3 after {took:?} with 10 events spilled");
}

#[test]
#[cfg_attr(
    not(postgres_tests),
    ignore = "needs PostgreSQL: eval \"$(bash .ci/postgres.sh)\" && cargo test"
)]
fn a_postgres_that_stops_answering_mid_stream_loses_and_doubles_nothing() {
    let base = common::postgres_url();
    let direct = common::fresh_postgres_db(&base, "tf_stall_exit");
    let authority = direct.split('@').nth(1).unwrap().split('/').next().unwrap();
    let proxy = Stall::start(Some(authority.parse().expect("test URL uses IP:port")));
    let proxied = direct.replacen(authority, &proxy.addr.to_string(), 1);
    let dir = tempfile::tempdir().unwrap();
    let spill_dir = dir.path().join("spill");
    let mut server = Serve::spilling(&proxied, &spill_dir, &[]);
    server.acknowledge_sms(0..5);
    // As if the server were SIGSTOPped: connections stay open, nothing is answered.
    proxy.freeze();
    server.acknowledge_sms(5..15);
    stop_spilled(&mut server, twiml_failover::service::JOURNAL_EXIT_WAIT);
    let spilled = spilled_conversations(&spill_dir);
    let expected: Vec<String> = (5..15).map(sid).collect();
    assert_eq!(spilled, expected);
    take_back(&direct, &spill_dir);
    let all: Vec<String> = (0..15).map(sid).collect();
    assert_eq!(journaled(&direct.parse().unwrap()), all, "each event once");
}
