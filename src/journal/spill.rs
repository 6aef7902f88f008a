//! The spill folder: events the journal could not take before the process exited, kept in files and
//! taken back into the journal by whichever server sweeps the folder next. The folder may be shared
//! by every replica (a network file system: EFS, Filestore, a ReadWriteMany volume), so a replica
//! replaced during a database outage leaves its events to the others. File I/O only; the importer
//! appends through the journal store it is given.
//!
//! One file per exit, `spill-<unix ms>-<instance>-<n>.jsonl` (the instance a random 64-bit id per
//! process: every container's server may be pid 1): one JSON [`NewEvent`] per line, written to a
//! temporary name (`0600`: it holds caller data), fsynced, renamed into place and the folder
//! fsynced, so a file that exists is whole.
//!
//! Taking files back relies on one thing every POSIX and NFS file system gives: a `rename` is
//! atomic, and of two renames of the same name only one finds it (exclusive create, `O_EXCL`, is not
//! relied upon). An importer **claims** a file by renaming it to `<name>.claimed-<its instance>`
//! before reading it, so two importers never take the same file at once; it deletes only its own
//! claim, once every event in it is committed. A claim's modification time is its heartbeat,
//! touched before every batch; a claim whose time has not moved for [`STALE_CLAIM`] (its importer
//! died or hangs) is claimed over by another, and one already [`STALE_CLAIM_BY_CLOCK`] old is
//! taken at once. Should a slow importer and the one that took over both append the same events,
//! the idempotency keys make the second a duplicate, not a second row: nothing is lost and nothing
//! is journaled twice. An importer that cannot finish a file (the store went away) renames it back.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use super::{open, private_files, Appended, JournalError, JournalUrl, NewEvent, Store};

/// Events per import transaction.
const IMPORT_BATCH: usize = 1024;
/// How long a claim may go without its heartbeat, as this importer sees it, before another
/// importer takes the file over: a batch commits in milliseconds when the store answers.
pub const STALE_CLAIM: Duration = Duration::from_secs(60);
/// A claim whose heartbeat is this old by this machine's clock is taken over when first seen (a
/// replica that died mid-import long ago): far beyond any clock skew between replicas.
pub const STALE_CLAIM_BY_CLOCK: Duration = Duration::from_secs(600);
/// Between a spill file's name and its claimant's instance.
const CLAIM_MARK: &str = ".claimed-";

/// This process's id in spill and claim names: random, so that replicas on one folder never share
/// a name (their pids and clocks may be equal).
fn instance() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| format!("{:016x}", fastrand::u64(..)))
}

/// Writes `events` to a new spill file in `dir` and makes it durable; returns its path.
pub fn write(dir: &Path, events: &[NewEvent]) -> std::io::Result<PathBuf> {
    // Two spills in the same millisecond must not share a name: the rename into place would
    // replace the first file, and its events would be lost.
    static SPILLS: AtomicU64 = AtomicU64::new(0);
    let name = format!(
        "spill-{}-{}-{}.jsonl",
        super::time::now_ms(),
        instance(),
        SPILLS.fetch_add(1, Ordering::Relaxed)
    );
    let path = dir.join(&name);
    let partial = dir.join(format!(".{name}.partial"));
    // Made again if it went away since start-up: the events have nowhere else to go.
    private_files::ensure_dir(dir)?;
    let mut out = std::io::BufWriter::new(private_files::create_new(&partial)?);
    for event in events {
        serde_json::to_writer(&mut out, event)?;
        out.write_all(b"\n")?;
    }
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    std::fs::rename(&partial, &path)?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(path)
}

/// At start-up: makes `dir` (`0700` when created here) and proves a file can be written in it, so
/// a folder that cannot take the events is found now, not at exit when they have nowhere else to go.
pub fn prepare_dir(dir: &Path) -> std::io::Result<()> {
    private_files::ensure_dir(dir)?;
    let probe = dir.join(format!(".spill-probe-{}", instance()));
    drop(private_files::create_new(&probe)?);
    std::fs::remove_file(&probe)
}

/// A spill file as found in the folder.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Found {
    path: PathBuf,
    /// Its name as written (`spill-….jsonl`), claimed or not.
    name: String,
    /// The instance whose claim it is, if any.
    claimant: Option<String>,
}

/// `spill-….jsonl` or `spill-….jsonl.claimed-<instance>`; partial writes (`.spill-…`) and
/// anything else are not spill files.
fn parse(path: PathBuf) -> Option<Found> {
    let file_name = path.file_name()?.to_str()?;
    let (name, claimant) = match file_name.split_once(CLAIM_MARK) {
        Some((name, by)) if !by.is_empty() && by.bytes().all(|b| b.is_ascii_hexdigit()) => {
            (name, Some(by.to_string()))
        }
        Some(_) => return None,
        None => (file_name, None),
    };
    if !name.starts_with("spill-") || !name.ends_with(".jsonl") {
        return None;
    }
    let name = name.to_string();
    Some(Found {
        path,
        name,
        claimant,
    })
}

/// The spill files in `dir`, oldest first by their written name.
fn scan(dir: &Path) -> std::io::Result<Vec<Found>> {
    let mut found: Vec<Found> = std::fs::read_dir(dir)?
        .flatten()
        .filter_map(|e| parse(e.path()))
        .collect();
    found.sort_by(|a, b| a.name.cmp(&b.name).then(a.path.cmp(&b.path)));
    Ok(found)
}

/// The spill files in `dir` whose events may not all be in the journal yet, claimed by an
/// importer or not, oldest first (partial files of an interrupted write are skipped).
pub fn pending(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    Ok(scan(dir)?.into_iter().map(|f| f.path).collect())
}

/// Why a spill file could not be read.
enum Unreadable {
    /// The file system failed; the file may be fine.
    Io(JournalError),
    /// A line is not an event: no retry will read it.
    Malformed(JournalError),
}

fn read_events(path: &Path) -> Result<Vec<NewEvent>, Unreadable> {
    // The folder is the operator's: a FIFO or device named like a spill file must not block.
    let file = crate::operator_file::open_regular(path)
        .map_err(|e| Unreadable::Io(JournalError::new(e)))?;
    let mut events = Vec::new();
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| Unreadable::Io(JournalError::new(e)))?;
        if line.is_empty() {
            continue;
        }
        let event = serde_json::from_str(&line).map_err(|e| {
            Unreadable::Malformed(JournalError::new(format!(
                "{}:{}: {e}",
                path.display(),
                n + 1
            )))
        })?;
        events.push(event);
    }
    Ok(events)
}

/// Reads one spill file.
pub fn read(path: &Path) -> Result<Vec<NewEvent>, JournalError> {
    read_events(path).map_err(|e| match e {
        Unreadable::Io(e) | Unreadable::Malformed(e) => e,
    })
}

/// What one sweep of the folder took back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    /// Files imported and deleted.
    pub files: usize,
    /// Events in them.
    pub events: usize,
    /// Of those, events the journal did not have yet.
    pub new: usize,
}

/// Sets the modification time of `path` to now: a claim's heartbeat. Fails when the path is gone
/// (another importer took the claim over).
fn touch(path: &Path) -> Result<(), JournalError> {
    let file = crate::operator_file::open_regular(path).map_err(JournalError::new)?;
    file.set_modified(SystemTime::now())
        .map_err(JournalError::new)
}

/// One importer's view of a folder: its instance, and the other importers' claims it has seen
/// with when their heartbeat last moved.
struct Sweeper {
    dir: PathBuf,
    me: String,
    stale_after: Duration,
    claims: HashMap<PathBuf, (SystemTime, Instant)>,
}

impl Sweeper {
    fn new(dir: PathBuf) -> Sweeper {
        Sweeper {
            dir,
            me: instance().to_string(),
            stale_after: STALE_CLAIM,
            claims: HashMap::new(),
        }
    }

    /// Whether another importer's claim has gone quiet: its heartbeat has not moved for
    /// `stale_after` as seen from here, or is older than [`STALE_CLAIM_BY_CLOCK`] by this clock.
    fn stale(&mut self, path: &Path, now: Instant) -> bool {
        let Ok(beat) = std::fs::metadata(path).and_then(|m| m.modified()) else {
            return false;
        };
        if SystemTime::now()
            .duration_since(beat)
            .is_ok_and(|age| age >= STALE_CLAIM_BY_CLOCK)
        {
            return true;
        }
        let seen = self.claims.entry(path.to_owned()).or_insert((beat, now));
        if seen.0 != beat {
            *seen = (beat, now);
        }
        now.duration_since(seen.1) >= self.stale_after
    }

    /// Claims and imports every spill file that is free, this importer's own, or claimed by an
    /// importer gone quiet; stops early once `stop` says so.
    fn sweep(&mut self, url: &JournalUrl, stop: &dyn Fn() -> bool) -> Result<Swept, JournalError> {
        let found = scan(&self.dir).map_err(JournalError::new)?;
        let now = Instant::now();
        self.claims
            .retain(|path, _| found.iter().any(|f| &f.path == path));
        let mut todo = Vec::new();
        for f in found {
            let take = match &f.claimant {
                None => true,
                Some(by) if *by == self.me => true,
                Some(_) => self.stale(&f.path, now),
            };
            if take {
                todo.push(f);
            }
        }
        let mut swept = Swept::default();
        if todo.is_empty() {
            return Ok(swept);
        }
        // Connected before anything is claimed: while the store is down no file changes hands.
        let mut store = open(url)?;
        for f in todo {
            if stop() {
                break;
            }
            let claim = self.dir.join(format!("{}{CLAIM_MARK}{}", f.name, self.me));
            if f.path != claim {
                // The heartbeat first: a renamed file keeps its old time, which others would
                // take for a claim gone quiet.
                if touch(&f.path).is_err() {
                    continue;
                }
                match std::fs::rename(&f.path, &claim) {
                    Ok(()) => {}
                    // Another importer claimed it first.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(JournalError::new(format!("{}: {e}", f.path.display()))),
                }
                if f.claimant.is_some() {
                    tracing::warn!(file = %f.name, claimed_by = f.claimant.as_deref(), "a spill file's importer went quiet; taking it over");
                }
            }
            self.claims.remove(&f.path);
            if let Some(taken) = self.import_claimed(&claim, &f.name, store.as_mut(), stop)? {
                swept.files += 1;
                swept.events += taken.0;
                swept.new += taken.1;
            }
        }
        Ok(swept)
    }

    /// Imports the file this importer claimed as `claim` and deletes it; `None` when it was not
    /// finished here (taken over, stopped, or set aside as unreadable). On a store failure the
    /// file is handed back under its own name for the next sweep, here or elsewhere.
    fn import_claimed(
        &self,
        claim: &Path,
        name: &str,
        store: &mut dyn Store,
        stop: &dyn Fn() -> bool,
    ) -> Result<Option<(usize, usize)>, JournalError> {
        let release = || {
            let _ = std::fs::rename(claim, self.dir.join(name));
        };
        let events = match read_events(claim) {
            Ok(events) => events,
            Err(Unreadable::Io(e)) => {
                release();
                return Err(e);
            }
            Err(Unreadable::Malformed(e)) => {
                // Kept for the operator, out of every importer's way: retrying cannot mend it.
                let aside = self.dir.join(format!("{name}.unreadable"));
                let _ = std::fs::rename(claim, &aside);
                tracing::error!(file = %aside.display(), error = %e, "spill file is not readable as events; set aside");
                return Ok(None);
            }
        };
        let mut new = 0;
        for batch in events.chunks(IMPORT_BATCH) {
            if stop() {
                release();
                return Ok(None);
            }
            if touch(claim).is_err() {
                // Another importer took the claim over; it imports the file (what this one
                // committed already is a duplicate there).
                return Ok(None);
            }
            match store.append(batch) {
                Ok(appended) => {
                    new += appended
                        .iter()
                        .filter(|a| matches!(a, Appended::New(_)))
                        .count();
                }
                Err(e) => {
                    release();
                    return Err(e);
                }
            }
        }
        match std::fs::remove_file(claim) {
            Ok(()) => {}
            // Taken over after the last batch: the other importer finds every event journaled.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(JournalError::new(format!("{}: {e}", claim.display()))),
        }
        tracing::info!(
            file = name,
            events = events.len(),
            new,
            duplicate = events.len() - new,
            "spilled events taken back into the journal"
        );
        Ok(Some((events.len(), new)))
    }
}

/// Takes back every spill file in `dir` that no live importer holds into the journal at `url`
/// (one sweep), and deletes each once committed.
pub fn import(dir: &Path, url: &JournalUrl) -> Result<Swept, JournalError> {
    Sweeper::new(dir.to_owned()).sweep(url, &|| false)
}

/// The stop signal shared with the importer's thread.
#[derive(Default)]
struct StopFlag {
    stopped: Mutex<bool>,
    wake: Condvar,
}

impl StopFlag {
    fn is_set(&self) -> bool {
        *self.stopped.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set(&self) {
        *self.stopped.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.wake.notify_all();
    }

    /// Sleeps `period` or until set; whether it was set.
    fn wait(&self, period: Duration) -> bool {
        let guard = self.stopped.lock().unwrap_or_else(|e| e.into_inner());
        let (guard, _) = self
            .wake
            .wait_timeout_while(guard, period, |stopped| !*stopped)
            .unwrap_or_else(|e| e.into_inner());
        *guard
    }
}

/// The spill import: sweeps a spill folder on a thread of its own for as long as the server runs,
/// at start-up and then every `every`, so files other replicas leave in a shared folder are taken
/// back while this one serves, and a journal that is down delays nothing and loses nothing. Owned
/// by whoever started it, and ended with [`Import::stop`].
pub struct Import {
    stop: Arc<StopFlag>,
    /// Disconnects when the thread has ended.
    ended: std::sync::mpsc::Receiver<()>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Import {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Import")
    }
}

impl Import {
    /// Starts sweeping `dir` into the journal at `url`.
    pub fn start(dir: PathBuf, url: JournalUrl, every: Duration) -> std::io::Result<Import> {
        let stop = Arc::new(StopFlag::default());
        let flag = stop.clone();
        let (finished, ended) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("journal-spill-import".into())
            .spawn(move || {
                // Dropped when the thread ends, which `stop` waits for.
                let _finished = finished;
                // Here rather than in `prepare_dir`: the log is set up by now.
                private_files::warn_if_shared(&dir);
                private_files::tighten_all(&pending(&dir).unwrap_or_default());
                let mut sweeper = Sweeper::new(dir);
                loop {
                    if let Err(e) = sweeper.sweep(&url, &|| flag.is_set()) {
                        tracing::error!(dir = %sweeper.dir.display(), error = %e, "cannot take spilled events back yet; retrying");
                    }
                    if flag.wait(every) {
                        return;
                    }
                }
            })?;
        Ok(Import {
            stop,
            ended,
            thread: Some(thread),
        })
    }

    /// Tells the thread to stop without waiting: it claims no file after this (so a spill file
    /// written from now on is left to the next importer), and hands back the file it holds at its
    /// next batch.
    pub fn ask_to_stop(&self) {
        self.stop.set();
    }

    /// Stops it and waits at most `wait` for the file being imported to be finished or handed
    /// back; whether the thread ended in time (if not, it is inside a store that does not answer,
    /// and its claim is taken over by another importer once it goes quiet).
    pub fn stop(mut self, wait: Duration) -> bool {
        self.ask_to_stop();
        match self.ended.recv_timeout(wait) {
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => false,
            Ok(()) | Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                if let Some(thread) = self.thread.take() {
                    let _ = thread.join();
                }
                true
            }
        }
    }
}

impl Drop for Import {
    fn drop(&mut self) {
        self.stop.set();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::twilio::Role;

    fn event(key: &str) -> NewEvent {
        NewEvent {
            received_at_ms: 1_764_547_200_000,
            role: Role::Primary,
            method: "POST".into(),
            url: "https://x/sms".into(),
            path: "/sms".into(),
            params: vec![("Body".into(), "é \"x\"\n2".into())],
            error_code: None,
            error_url: None,
            idempotency_key: key.into(),
            conversation: key.into(),
            account_sid: Some("AC1".into()),
        }
    }

    fn stored(url: &JournalUrl) -> Vec<String> {
        let mut store = open(url).unwrap();
        store
            .list(None, 10_000)
            .unwrap()
            .into_iter()
            .map(|e| e.webhook.idempotency_key)
            .collect()
    }

    #[test]
    fn a_spill_round_trips_and_a_second_import_adds_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let events = vec![event("SM1:sms"), event("SM2:sms")];
        let path = write(dir.path(), &events).unwrap();
        assert_eq!(read(&path).unwrap(), events);
        let db = dir.path().join("j.db");
        let url = JournalUrl::Sqlite(db);
        // The same events spilled twice (e.g. a file restored from a backup) are journaled once.
        let again = write(dir.path(), &events).unwrap();
        assert_ne!(path, again);
        assert_eq!(pending(dir.path()).unwrap(), [path, again]);
        let swept = import(dir.path(), &url).unwrap();
        assert_eq!(
            swept,
            Swept {
                files: 2,
                events: 4,
                new: 2
            }
        );
        assert!(pending(dir.path()).unwrap().is_empty());
        let mut store = open(&url).unwrap();
        let stored = store.list(None, 10).unwrap();
        assert_eq!(stored.len(), 2);
        assert_eq!(stored[0].webhook, events[0]);
        assert_eq!(import(dir.path(), &url).unwrap(), Swept::default());
    }

    #[test]
    fn a_store_that_fails_keeps_the_file_unclaimed() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), &[event("SM1:sms")]).unwrap();
        let url = JournalUrl::Sqlite(dir.path().join("no/such/dir/j.db"));
        assert!(import(dir.path(), &url).is_err());
        assert_eq!(pending(dir.path()).unwrap(), [path]);
    }

    #[test]
    fn names_are_unique_per_process_and_claims_and_partials_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let a = write(dir.path(), &[event("SM1:sms")]).unwrap();
        let name = a.file_name().unwrap().to_str().unwrap().to_string();
        assert!(name.contains(&format!("-{}-", instance())), "{name}");
        let claimed = dir.path().join(format!("{name}.claimed-00ff"));
        std::fs::rename(&a, &claimed).unwrap();
        for other in [
            format!(".{name}.partial"),
            format!("{name}.claimed-"),
            format!("{name}.claimed-xyz"),
            format!("{name}.unreadable"),
            "notes.txt".into(),
        ] {
            std::fs::write(dir.path().join(other), "x").unwrap();
        }
        let found = scan(dir.path()).unwrap();
        assert_eq!(
            found,
            [Found {
                path: claimed.clone(),
                name,
                claimant: Some("00ff".into())
            }]
        );
        assert_eq!(pending(dir.path()).unwrap(), [claimed]);
    }

    #[test]
    fn a_live_claim_is_left_alone_and_a_quiet_one_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let url = JournalUrl::Sqlite(dir.path().join("j.db"));
        let path = write(dir.path(), &[event("SM1:sms"), event("SM2:sms")]).unwrap();
        // Another importer claimed it and then stopped beating.
        let claimed = PathBuf::from(format!("{}{CLAIM_MARK}0123456789abcdef", path.display()));
        std::fs::rename(&path, &claimed).unwrap();
        let mut sweeper = Sweeper::new(dir.path().to_owned());
        sweeper.stale_after = Duration::from_millis(300);
        assert_eq!(sweeper.sweep(&url, &|| false).unwrap(), Swept::default());
        assert_eq!(pending(dir.path()).unwrap(), std::slice::from_ref(&claimed));
        // Its heartbeat moves: still alive.
        std::thread::sleep(Duration::from_millis(200));
        touch(&claimed).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(sweeper.sweep(&url, &|| false).unwrap(), Swept::default());
        // Quiet for longer than allowed: taken over and imported.
        std::thread::sleep(Duration::from_millis(350));
        let swept = sweeper.sweep(&url, &|| false).unwrap();
        assert_eq!((swept.files, swept.new), (1, 2));
        assert!(pending(dir.path()).unwrap().is_empty());
        assert_eq!(stored(&url), ["SM1:sms", "SM2:sms"]);
    }

    #[test]
    fn a_claim_quiet_by_the_clock_is_taken_at_first_sight() {
        let dir = tempfile::tempdir().unwrap();
        let url = JournalUrl::Sqlite(dir.path().join("j.db"));
        let path = write(dir.path(), &[event("SM1:sms")]).unwrap();
        let claimed = PathBuf::from(format!("{}{CLAIM_MARK}dead", path.display()));
        std::fs::rename(&path, &claimed).unwrap();
        let long_ago = SystemTime::now() - STALE_CLAIM_BY_CLOCK - Duration::from_secs(1);
        std::fs::File::open(&claimed)
            .unwrap()
            .set_modified(long_ago)
            .unwrap();
        assert_eq!(import(dir.path(), &url).unwrap().new, 1);
        assert!(pending(dir.path()).unwrap().is_empty());
    }

    #[test]
    fn an_unreadable_file_is_set_aside_and_the_others_are_taken_back() {
        let dir = tempfile::tempdir().unwrap();
        let url = JournalUrl::Sqlite(dir.path().join("j.db"));
        let bad = dir.path().join("spill-1-bad-0.jsonl");
        std::fs::write(&bad, "{not json\n").unwrap();
        write(dir.path(), &[event("SM1:sms")]).unwrap();
        let swept = import(dir.path(), &url).unwrap();
        assert_eq!((swept.files, swept.new), (1, 1));
        assert!(pending(dir.path()).unwrap().is_empty());
        assert!(dir.path().join("spill-1-bad-0.jsonl.unreadable").exists());
    }

    #[test]
    fn importers_racing_on_one_folder_take_each_file_once() {
        let dir = tempfile::tempdir().unwrap();
        let url = JournalUrl::Sqlite(dir.path().join("j.db"));
        drop(open(&url).unwrap());
        let mut keys = Vec::new();
        for f in 0..40 {
            let events: Vec<NewEvent> = (0..25).map(|e| event(&format!("SM{f}-{e}"))).collect();
            keys.extend(events.iter().map(|e| e.idempotency_key.clone()));
            write(dir.path(), &events).unwrap();
        }
        // Four importers, each with an instance of its own, on the one folder at once.
        let totals: Vec<Swept> = std::thread::scope(|s| {
            let racers: Vec<_> = (0..4)
                .map(|i| {
                    let (dir, url) = (dir.path().to_owned(), url.clone());
                    s.spawn(move || {
                        let mut sweeper = Sweeper::new(dir);
                        sweeper.me = format!("{i:016x}");
                        sweeper.sweep(&url, &|| false).unwrap()
                    })
                })
                .collect();
            racers.into_iter().map(|r| r.join().unwrap()).collect()
        });
        let files: usize = totals.iter().map(|t| t.files).sum();
        let events: usize = totals.iter().map(|t| t.events).sum();
        let new: usize = totals.iter().map(|t| t.new).sum();
        assert_eq!((files, events, new), (40, 1000, 1000), "{totals:?}");
        assert!(pending(dir.path()).unwrap().is_empty());
        let mut journaled = stored(&url);
        journaled.sort();
        keys.sort();
        assert_eq!(journaled, keys);
    }

    #[test]
    fn the_importer_sweeps_again_and_stops_when_told() {
        let dir = tempfile::tempdir().unwrap();
        let url = JournalUrl::Sqlite(dir.path().join("j.db"));
        let import = Import::start(
            dir.path().to_owned(),
            url.clone(),
            Duration::from_millis(50),
        )
        .unwrap();
        // Left by another replica after this one started.
        std::thread::sleep(Duration::from_millis(100));
        write(dir.path(), &[event("SM9:sms")]).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !pending(dir.path()).unwrap().is_empty() {
            assert!(Instant::now() < deadline, "never swept again");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(import.stop(Duration::from_secs(5)));
        assert_eq!(stored(&url), ["SM9:sms"]);
    }

    #[test]
    fn an_import_that_keeps_failing_stops_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &[event("SM1:sms")]).unwrap();
        let url = JournalUrl::Sqlite(dir.path().join("no/such/dir/j.db"));
        let import = Import::start(dir.path().into(), url, Duration::from_secs(3600)).unwrap();
        let asked = Instant::now();
        assert!(import.stop(Duration::from_secs(5)), "the thread ended");
        assert!(
            asked.elapsed() < Duration::from_secs(5),
            "not the sweep wait"
        );
        assert_eq!(pending(dir.path()).unwrap().len(), 1, "the file is kept");
    }
}
