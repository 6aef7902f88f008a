//! The spill file: events the journal could not take before the process exited, kept on local disk
//! and taken back into the journal at the next start. File I/O only; no network.
//!
//! One file per exit, `spill-<unix ms>-<pid>-<n>.jsonl`: one JSON [`NewEvent`] per line, written to a
//! temporary name (`0600`: it holds caller data), fsynced, renamed into place and the folder
//! fsynced, so a file that exists is whole. Importing appends through the store like any batch:
//! idempotency keys make an event that was journaled after all (or a file imported twice) a
//! duplicate, not a second row. A file is removed only after every event in it is committed.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use super::{open, private_files, JournalError, JournalUrl, NewEvent};

/// Events per import transaction.
const IMPORT_BATCH: usize = 1024;

/// Writes `events` to a new spill file in `dir` and makes it durable; returns its path.
pub fn write(dir: &Path, events: &[NewEvent]) -> std::io::Result<PathBuf> {
    // Two spills in the same millisecond must not share a name: the rename into place would
    // replace the first file, and its events would be lost.
    static SPILLS: AtomicU64 = AtomicU64::new(0);
    let name = format!(
        "spill-{}-{}-{}.jsonl",
        super::time::now_ms(),
        std::process::id(),
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
    let probe = dir.join(format!(".spill-probe-{}", std::process::id()));
    drop(private_files::create_new(&probe)?);
    std::fs::remove_file(&probe)
}

/// The spill files in `dir`, oldest first (partial files of an interrupted write are skipped).
pub fn pending(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("spill-") && n.ends_with(".jsonl"))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Reads one spill file.
pub fn read(path: &Path) -> Result<Vec<NewEvent>, JournalError> {
    // The folder is the operator's: a FIFO or device named like a spill file must not block.
    let file = crate::operator_file::open_regular(path).map_err(JournalError::new)?;
    let mut events = Vec::new();
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(JournalError::new)?;
        if line.is_empty() {
            continue;
        }
        let event = serde_json::from_str(&line)
            .map_err(|e| JournalError::new(format!("{}:{}: {e}", path.display(), n + 1)))?;
        events.push(event);
    }
    Ok(events)
}

/// Appends every spill file in `dir` to the journal at `url` and removes each once committed;
/// returns how many events were imported (new or duplicate).
pub fn import(dir: &Path, url: &JournalUrl) -> Result<usize, JournalError> {
    let files = pending(dir).map_err(JournalError::new)?;
    if files.is_empty() {
        return Ok(0);
    }
    let mut store = open(url)?;
    let mut imported = 0;
    for path in files {
        let events = read(&path)?;
        for batch in events.chunks(IMPORT_BATCH) {
            store.append(batch)?;
        }
        std::fs::remove_file(&path).map_err(JournalError::new)?;
        imported += events.len();
        tracing::info!(file = %path.display(), events = events.len(), "spilled events taken back into the journal");
    }
    Ok(imported)
}

/// The spill import on a thread of its own: every spill file taken back into the journal, retried
/// every `retry` until it succeeds, so a journal that is still down at start-up delays nothing and
/// loses nothing. Owned by whoever started it, and ended with [`Import::stop`].
#[derive(Debug)]
pub struct Import {
    /// Sent (or dropped) to end the retries.
    stop: mpsc::Sender<()>,
    /// Disconnects when the thread has ended.
    ended: mpsc::Receiver<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Import {
    /// Starts importing `dir` into the journal at `url`.
    pub fn start(dir: PathBuf, url: JournalUrl, retry: Duration) -> std::io::Result<Import> {
        let (stop, stopped) = mpsc::channel();
        let (ending, ended) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("journal-spill-import".into())
            .spawn(move || {
                let _ending = ending;
                // Here rather than in `prepare_dir`: the log is set up by now.
                private_files::warn_if_shared(&dir);
                private_files::tighten_all(&pending(&dir).unwrap_or_default());
                loop {
                    match import(&dir, &url) {
                        Ok(_) => return,
                        Err(e) => {
                            tracing::error!(dir = %dir.display(), error = %e, "cannot take spilled events back yet; retrying");
                        }
                    }
                    if stopped.recv_timeout(retry) != Err(RecvTimeoutError::Timeout) {
                        return;
                    }
                }
            })?;
        Ok(Import {
            stop,
            ended,
            thread,
        })
    }

    /// Stops retrying and waits at most `wait` for an import in progress; returns whether the
    /// thread ended. One still inside a store that does not answer is left to the process exit:
    /// its files stay until a later start takes them (a file is removed only once committed).
    pub fn stop(self, wait: Duration) -> bool {
        let _ = self.stop.send(());
        match self.ended.recv_timeout(wait) {
            Err(RecvTimeoutError::Timeout) => false,
            Ok(()) | Err(RecvTimeoutError::Disconnected) => {
                let _ = self.thread.join();
                true
            }
        }
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
        assert_eq!(import(dir.path(), &url).unwrap(), 4);
        assert!(pending(dir.path()).unwrap().is_empty());
        let mut store = open(&url).unwrap();
        let stored = store.list(None, 10).unwrap();
        assert_eq!(stored.len(), 2);
        assert_eq!(stored[0].webhook, events[0]);
        assert_eq!(import(dir.path(), &url).unwrap(), 0);
    }

    /// One spill file in a new folder, its import started into the SQLite file `db` there (with
    /// an hour between retries).
    fn importing_into(db: &str) -> (tempfile::TempDir, Import) {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &[event("SM1:sms")]).unwrap();
        let url = JournalUrl::Sqlite(dir.path().join(db));
        let retry = Duration::from_secs(3600);
        let import = Import::start(dir.path().into(), url, retry).unwrap();
        (dir, import)
    }

    #[test]
    fn an_import_that_keeps_failing_stops_when_asked() {
        let (dir, import) = importing_into("no/such/dir/j.db");
        let asked = std::time::Instant::now();
        assert!(import.stop(Duration::from_secs(5)), "the thread ended");
        assert!(
            asked.elapsed() < Duration::from_secs(5),
            "not the retry wait"
        );
        assert_eq!(pending(dir.path()).unwrap().len(), 1, "the file is kept");
    }

    #[test]
    fn an_import_that_succeeds_ends_by_itself() {
        let (dir, import) = importing_into("j.db");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !pending(dir.path()).unwrap().is_empty() {
            assert!(std::time::Instant::now() < deadline, "never imported");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(import.stop(Duration::from_secs(5)));
    }

    #[test]
    fn a_store_that_fails_keeps_the_file() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &[event("SM1:sms")]).unwrap();
        let url = JournalUrl::Sqlite(dir.path().join("no/such/dir/j.db"));
        assert!(import(dir.path(), &url).is_err());
        assert_eq!(pending(dir.path()).unwrap().len(), 1);
    }
}
