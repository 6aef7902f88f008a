//! Caller data at rest, against the real binary under umask 022 and 000 (issue 23): the SQLite
//! journal with its `-wal` and `-shm`, the spill folder it creates and the spill files it writes
//! are `0600`/`0700`; journal and spill files found readable by others are tightened, and the log
//! says so.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use common::process::Serve;

/// A PostgreSQL URL where nothing listens: every write fails at once.
const DOWN: &str = "postgres://twiml@127.0.0.1:9/journal?connect_timeout=1";

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

fn serve(umask: &str, journal: &str, spill: &Path) -> Serve {
    let templates = common::shipped_templates();
    let config = common::example_config();
    let args = [
        "--templates",
        templates.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
        "--watch",
        "false",
        "--lame-duck",
        "0",
        "--journal",
        journal,
        "--journal-spill-dir",
        spill.to_str().unwrap(),
    ];
    Serve::try_start_with_umask(Some(umask), &args, &[])
        .unwrap_or_else(|(status, log)| panic!("serve exited at start-up ({status:?}):\n{log}"))
}

fn acknowledged(server: &Serve, body: &'static str) {
    let answer = server.sms(body).unwrap_or_default();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

fn wait_for(what: &str, server: &Serve, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "{what}:\n{}", server.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn journal_and_spill_files_are_0600_and_folders_0700_whatever_the_umask() {
    for umask in ["022", "000"] {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("journal.db");
        let spill = dir.path().join("spill/nested");
        let url = format!("sqlite://{}", db.display());

        let mut server = serve(umask, &url, &spill);
        acknowledged(&server, "first");
        for file in ["journal.db", "journal.db-wal", "journal.db-shm"] {
            assert_eq!(mode(&dir.path().join(file)), 0o600, "umask {umask}: {file}");
        }
        assert_eq!(
            mode(&spill),
            0o700,
            "umask {umask}: the spill folder it made"
        );
        assert_eq!(server.terminate(), 0, "{}", server.log());

        // The store down at exit: the events go to a spill file, 0600.
        let mut down = serve(umask, DOWN, &spill);
        acknowledged(&down, "spilled");
        assert_eq!(down.terminate(), 3, "{}", down.log());
        let files = twiml_failover::journal::spill::pending(&spill).unwrap();
        assert_eq!(files.len(), 1, "{}", down.log());
        assert_eq!(mode(&files[0]), 0o600, "umask {umask}: spill file");
    }
}

#[test]
fn files_readable_by_others_are_tightened_and_the_log_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("journal.db");
    let spill = dir.path().join("spill");
    let url = format!("sqlite://{}", db.display());
    // A journal from before: world-readable, like the umask made it.
    let mut old = serve("022", &url, &spill);
    acknowledged(&old, "old");
    assert_eq!(old.terminate(), 0, "{}", old.log());
    let loose = std::fs::Permissions::from_mode(0o644);
    std::fs::set_permissions(&db, loose.clone()).unwrap();
    // A spill file written before, and a folder others can open.
    let stale = spill.join("spill-1-1-0.jsonl");
    std::fs::write(&stale, "").unwrap();
    std::fs::set_permissions(&stale, loose).unwrap();
    std::fs::set_permissions(&spill, std::fs::Permissions::from_mode(0o755)).unwrap();

    // The spill file stays until the store takes it: a store that is down keeps it there.
    let mut down = serve("022", DOWN, &spill);
    // The warning reaches the log a few ms after the change.
    wait_for(
        "the spill file was not tightened, or not said so",
        &down,
        || mode(&stale) == 0o600 && down.log().contains("now 0600"),
    );
    let log = down.log();
    assert!(
        log.contains("journal file was readable by other users; now 0600"),
        "{log}"
    );
    assert!(
        log.contains("other users can open this folder of journal data"),
        "{log}"
    );
    assert_eq!(
        mode(&spill),
        0o755,
        "a folder is the operator's: warned about, not changed"
    );
    down.terminate();

    let mut server = serve("022", &url, &spill);
    acknowledged(&server, "new");
    assert_eq!(mode(&db), 0o600);
    wait_for("no warning about the journal", &server, || {
        server.log().contains("now 0600")
    });
    assert_eq!(server.terminate(), 0, "{}", server.log());
}
