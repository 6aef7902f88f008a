//! One spill folder shared by several servers (a network volume every replica mounts), against the
//! real binary: a server that exits during a journal outage spills there and another, still
//! running, takes the file back once the journal answers; servers starting together on a folder
//! of many files take each file exactly once (every event journaled once, none imported twice);
//! a file whose importer died mid-import is taken over.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::process::Serve;
use twiml_failover::journal::{self, spill, JournalUrl, NewEvent};
use twiml_failover::twilio::Role;

/// `serve` on `journal` with the shared spill folder, logging JSON lines.
fn serve(journal: &str, spill_dir: &Path) -> Serve {
    Serve::spilling(journal, spill_dir, &["--log-format", "json"])
}

fn sid(i: usize) -> String {
    format!("SM{i:032}")
}

/// The events' idempotency keys journaled at `url`, sorted (each once if no key repeats).
fn journaled(url: &JournalUrl) -> Vec<String> {
    let mut store = journal::open(url).unwrap();
    let mut keys: Vec<String> = store
        .list(None, 100_000)
        .unwrap()
        .into_iter()
        .map(|e| e.webhook.conversation)
        .collect();
    keys.sort();
    keys
}

/// Each "taken back" line of a server's JSON log: (the file's name, events, new, duplicate).
fn taken_back(log: &str) -> Vec<(String, u64, u64, u64)> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["message"].as_str() == Some("spilled events taken back into the journal"))
        .map(|f| {
            (
                f["file"].as_str().unwrap().to_string(),
                f["events"].as_u64().unwrap(),
                f["new"].as_u64().unwrap(),
                f["duplicate"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// Waits (at most `limit`) until the folder has no spill file left, claimed or not.
fn wait_empty(dir: &Path, limit: Duration, servers: &[&Serve]) {
    let deadline = Instant::now() + limit;
    while !spill::pending(dir).unwrap().is_empty() {
        assert!(
            Instant::now() < deadline,
            "spill files left: {:?}\n{}",
            spill::pending(dir).unwrap(),
            servers
                .iter()
                .map(|s| s.log())
                .collect::<Vec<_>>()
                .join("\n---\n")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_server_that_exits_during_an_outage_leaves_its_events_to_another_on_the_folder() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("journal.db");
    let shared = dir.path().join("spill");
    let url = format!("sqlite://{}", db.display());
    let mut leaving = serve(&url, &shared);
    let mut staying = serve(&url, &shared);
    leaving.acknowledge_sms(0..5);
    staying.acknowledge_sms(5..10);
    // The outage: another process (this test) holds the journal's write lock.
    let lock = rusqlite::Connection::open(&db).unwrap();
    lock.execute_batch("BEGIN IMMEDIATE").unwrap();
    leaving.acknowledge_sms(10..40);
    staying.acknowledge_sms(40..50);
    // Replaced (a rollout, a scale-in) while the journal is down: it spills into the shared folder.
    assert_eq!(leaving.terminate(), 3, "{}", leaving.log());
    let files = spill::pending(&shared).unwrap();
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(spill::read(&files[0]).unwrap().len(), 30);
    let name = files[0].file_name().unwrap().to_str().unwrap().to_string();
    // The journal answers again; the server still running takes the file back on its next sweep.
    drop(lock);
    let back = Instant::now();
    wait_empty(&shared, Duration::from_secs(20), &[&staying]);
    let took = back.elapsed();
    let all: Vec<String> = (0..50).map(sid).collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    while journaled(&JournalUrl::Sqlite(db.clone())) != all {
        assert!(Instant::now() < deadline, "{}", staying.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    // Logged just after the file is deleted.
    while taken_back(&staying.log()).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        taken_back(&staying.log()),
        [(name, 30, 30, 0)],
        "{}",
        staying.log()
    );
    assert_eq!(staying.terminate(), 0, "{}", staying.log());
    eprintln!("30 events spilled by one server, taken back by the other {took:?} after the journal answered");
}

/// Writes `files` spill files of `per_file` events each (keys `F<f>-<e>`) into `dir`.
fn fill(dir: &Path, files: usize, per_file: usize) -> Vec<String> {
    let mut keys = Vec::new();
    for f in 0..files {
        let events: Vec<NewEvent> = (0..per_file)
            .map(|e| {
                let key = format!("F{f:04}-{e:03}");
                keys.push(key.clone());
                common::sms_event(&key, Role::Fallback, "https://fallback.example.net/sms")
            })
            .collect();
        spill::write(dir, &events).unwrap();
    }
    keys.sort();
    keys
}

/// Two servers started at once on one folder of many files: each file taken by exactly one of
/// them, each event journaled once.
fn two_importers_race(url: &str) {
    let dir = tempfile::tempdir().unwrap();
    let shared = dir.path().join("spill");
    std::fs::create_dir(&shared).unwrap();
    let (files, per_file) = (300, 20);
    let keys = fill(&shared, files, per_file);
    // The journal (and its table) exists before they race to it.
    drop(journal::open(&url.parse().unwrap()).unwrap());
    let (mut a, mut b) = std::thread::scope(|s| {
        let a = s.spawn(|| serve(url, &shared));
        let b = s.spawn(|| serve(url, &shared));
        (a.join().unwrap(), b.join().unwrap())
    });
    wait_empty(&shared, Duration::from_secs(120), &[&a, &b]);
    // Every file is deleted after its last batch committed and before its line is logged.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (from_a, from_b) = loop {
        let (from_a, from_b) = (taken_back(&a.log()), taken_back(&b.log()));
        if from_a.len() + from_b.len() >= files || Instant::now() > deadline {
            break (from_a, from_b);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut per_name: BTreeMap<&str, usize> = BTreeMap::new();
    for (name, events, new, duplicate) in from_a.iter().chain(&from_b) {
        *per_name.entry(name).or_default() += 1;
        assert_eq!(
            (*events, *new, *duplicate),
            (per_file as u64, per_file as u64, 0)
        );
    }
    assert_eq!(per_name.len(), files, "every file taken back");
    assert!(per_name.values().all(|&n| n == 1), "a file taken twice");
    let journaled = journaled(&url.parse().unwrap());
    assert!(
        journaled == keys,
        "{} events journaled of {}",
        journaled.len(),
        keys.len()
    );
    assert!(
        !from_a.is_empty() && !from_b.is_empty(),
        "both importers took files (a race): {} and {}",
        from_a.len(),
        from_b.len()
    );
    assert_eq!(a.terminate(), 0, "{}", a.log());
    assert_eq!(b.terminate(), 0, "{}", b.log());
    eprintln!(
        "{} events in {files} files: {} files taken by one server, {} by the other, each once",
        files * per_file,
        from_a.len(),
        from_b.len()
    );
}

#[test]
fn two_servers_racing_on_many_files_take_each_once_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    two_importers_race(&format!(
        "sqlite://{}",
        dir.path().join("journal.db").display()
    ));
}

#[test]
#[cfg_attr(
    not(postgres_tests),
    ignore = "needs PostgreSQL: eval \"$(bash .ci/postgres.sh)\" && cargo test"
)]
fn two_servers_racing_on_many_files_take_each_once_postgres() {
    let url = common::fresh_postgres_db(&common::postgres_url(), "tf_spill_race");
    two_importers_race(&url);
}

#[test]
fn a_file_whose_importer_died_mid_import_is_taken_over() {
    let dir = tempfile::tempdir().unwrap();
    let shared = dir.path().join("spill");
    std::fs::create_dir(&shared).unwrap();
    let keys = fill(&shared, 1, 10);
    // Claimed by an importer of another replica that was killed before it finished, long ago.
    let file = &spill::pending(&shared).unwrap()[0];
    let claimed = format!("{}.claimed-00000000deadbeef", file.display());
    std::fs::rename(file, &claimed).unwrap();
    let long_ago = std::time::SystemTime::now() - spill::STALE_CLAIM_BY_CLOCK * 2;
    std::fs::File::open(&claimed)
        .unwrap()
        .set_modified(long_ago)
        .unwrap();
    let db = dir.path().join("journal.db");
    let mut server = serve(&format!("sqlite://{}", db.display()), &shared);
    wait_empty(&shared, Duration::from_secs(20), &[&server]);
    assert!(journaled(&JournalUrl::Sqlite(db)) == keys);
    assert!(server.log().contains("taking it over"), "{}", server.log());
    assert_eq!(server.terminate(), 0, "{}", server.log());
}
