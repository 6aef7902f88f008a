//! The embedded journal: one SQLite file in WAL mode with `synchronous=FULL`, so a committed
//! transaction survives a process kill and a power cut; the file and SQLite's own beside it are
//! `0600` (see `private_files`).

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::types::Type;
use rusqlite::{params, Connection, OptionalExtension, Row};

use super::{
    params_from_json, params_to_json, stored_role, Appended, Event, JournalError, NewEvent, Stats,
    Store, Unavailable,
};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    idempotency_key    TEXT    NOT NULL UNIQUE,
    received_at_ms     INTEGER NOT NULL,
    role               TEXT    NOT NULL,
    method             TEXT    NOT NULL,
    url                TEXT    NOT NULL,
    path               TEXT    NOT NULL,
    params             TEXT    NOT NULL,
    error_code         TEXT,
    error_url          TEXT,
    conversation       TEXT    NOT NULL,
    account_sid        TEXT,
    delivered_at_ms    INTEGER,
    attempts           INTEGER NOT NULL DEFAULT 0,
    next_attempt_at_ms INTEGER NOT NULL,
    last_error         TEXT
);
CREATE INDEX IF NOT EXISTS events_undelivered ON events (id) WHERE delivered_at_ms IS NULL;
CREATE INDEX IF NOT EXISTS events_received ON events (received_at_ms);
CREATE INDEX IF NOT EXISTS events_delivered ON events (delivered_at_ms)
    WHERE delivered_at_ms IS NOT NULL;
";

const COLUMNS: &str =
    "id, received_at_ms, role, method, url, path, params, error_code, error_url, \
     idempotency_key, conversation, account_sid, delivered_at_ms, attempts, next_attempt_at_ms, \
     last_error";

fn err(e: rusqlite::Error) -> JournalError {
    JournalError::new(format!("sqlite: {e}"))
}

/// A connection to a SQLite journal file.
pub struct SqliteStore {
    conn: Connection,
}

impl SqliteStore {
    /// Opens the file (creating it and the schema if needed).
    pub fn open(path: &Path) -> Result<SqliteStore, JournalError> {
        // One connection opens at a time in this process, so the file `prepare_sqlite` may create
        // (and close) is not yet open, and locked, on another thread.
        static OPENING: Mutex<()> = Mutex::new(());
        let opening = OPENING.lock().unwrap_or_else(|e| e.into_inner());
        super::private_files::prepare_sqlite(path)
            .map_err(|e| JournalError::new(format!("sqlite {}: {e}", path.display())))?;
        let conn = Connection::open(path)
            .map_err(|e| JournalError::new(format!("sqlite {}: {e}", path.display())))?;
        drop(opening);
        // Other connections (stats, forwarder, CLI) may hold the write lock for a moment.
        conn.busy_timeout(Duration::from_secs(5)).map_err(err)?;
        // WAL: readers never block the writer. FULL: the WAL is fsynced at every commit, so an
        // acknowledged event survives power loss, not only a process kill.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        Ok(SqliteStore { conn })
    }
}

/// Start-up's check: the folder exists and the file can be opened and written (a write lock
/// taken and given back). Only a lock held by another process for longer than the busy timeout is
/// [`Unavailable::ForNow`]; anything else will not mend by itself.
pub fn probe(path: &Path) -> Result<(), Unavailable> {
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !folder.is_dir() {
        return Err(Unavailable::Never(JournalError::new(format!(
            "sqlite {}: the folder {} does not exist",
            path.display(),
            folder.display()
        ))));
    }
    // SQLite writes the database and its -wal and -shm files beside it: find out now, with a
    // plain message, rather than from SQLite's "unable to open database file".
    let trial = folder.join(format!(".twiml-failover-probe-{}", std::process::id()));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&trial)
    {
        Ok(_) => {
            let _ = std::fs::remove_file(&trial);
        }
        Err(e) => {
            return Err(Unavailable::Never(JournalError::new(format!(
                "sqlite {}: cannot create files in {} ({e}); SQLite writes the database and its \
                 -wal and -shm files there",
                path.display(),
                folder.display()
            ))))
        }
    }
    let never = |e: JournalError| Unavailable::Never(e);
    let store = SqliteStore::open(path).map_err(never)?;
    match store.conn.execute_batch("BEGIN IMMEDIATE; ROLLBACK") {
        Ok(()) => Ok(()),
        Err(rusqlite::Error::SqliteFailure(e, _))
            if matches!(
                e.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
            ) =>
        {
            Err(Unavailable::ForNow(JournalError::new(format!(
                "sqlite {}: locked by another process",
                path.display()
            ))))
        }
        Err(e) => Err(never(JournalError::new(format!(
            "sqlite {}: {e}",
            path.display()
        )))),
    }
}

fn event_from_row(row: &Row<'_>) -> rusqlite::Result<(Event, String)> {
    let params: String = row.get(6)?;
    let attempts: i64 = row.get(13)?;
    Ok((
        Event {
            id: row.get(0)?,
            webhook: NewEvent {
                received_at_ms: row.get(1)?,
                role: {
                    let role: String = row.get(2)?;
                    stored_role(&role).map_err(|e| {
                        rusqlite::Error::FromSqlConversionFailure(2, Type::Text, e.into())
                    })?
                },
                method: row.get(3)?,
                url: row.get(4)?,
                path: row.get(5)?,
                params: Vec::new(),
                error_code: row.get(7)?,
                error_url: row.get(8)?,
                idempotency_key: row.get(9)?,
                conversation: row.get(10)?,
                account_sid: row.get(11)?,
            },
            delivered_at_ms: row.get(12)?,
            attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
            next_attempt_at_ms: row.get(14)?,
            last_error: row.get(15)?,
        },
        params,
    ))
}

fn finish(rows: Vec<(Event, String)>) -> Result<Vec<Event>, JournalError> {
    rows.into_iter()
        .map(|(mut event, params)| {
            event.webhook.params = params_from_json(&params)?;
            Ok(event)
        })
        .collect()
}

fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl SqliteStore {
    fn query(&self, sql: &str, args: impl rusqlite::Params) -> Result<Vec<Event>, JournalError> {
        let mut stmt = self.conn.prepare_cached(sql).map_err(err)?;
        let rows = stmt
            .query_map(args, event_from_row)
            .map_err(err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(err)?;
        finish(rows)
    }
}

impl Store for SqliteStore {
    fn append(&mut self, batch: &[NewEvent]) -> Result<Vec<Appended>, JournalError> {
        // IMMEDIATE takes the write lock up front, so the transaction cannot fail half-way on a
        // lock upgrade.
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(err)?;
        let mut out = Vec::with_capacity(batch.len());
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO events (idempotency_key, received_at_ms, role, method, url, path, \
                     params, error_code, error_url, conversation, account_sid, next_attempt_at_ms) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?2) RETURNING id",
                )
                .map_err(err)?;
            let mut existing = tx
                .prepare_cached("SELECT id FROM events WHERE idempotency_key = ?1")
                .map_err(err)?;
            for e in batch {
                // A duplicate is looked up before the insert: a conflicting INSERT would use up an
                // AUTOINCREMENT id (SQLite does), and `journal list` would show a gap for each
                // Twilio retry. The write lock taken above keeps the lookup true until the commit.
                let duplicate: Option<i64> = existing
                    .query_row([&e.idempotency_key], |row| row.get(0))
                    .optional()
                    .map_err(err)?;
                if let Some(id) = duplicate {
                    out.push(Appended::Duplicate(id));
                    continue;
                }
                let id: i64 = insert
                    .query_row(
                        params![
                            e.idempotency_key,
                            e.received_at_ms,
                            e.role.as_str(),
                            e.method,
                            e.url,
                            e.path,
                            params_to_json(&e.params),
                            e.error_code,
                            e.error_url,
                            e.conversation,
                            e.account_sid,
                        ],
                        |row| row.get(0),
                    )
                    .map_err(err)?;
                out.push(Appended::New(id));
            }
        }
        tx.commit().map_err(err)?;
        Ok(out)
    }

    fn undelivered(&mut self, after_id: i64, n: usize) -> Result<Vec<Event>, JournalError> {
        self.query(
            &format!(
                "SELECT {COLUMNS} FROM events WHERE delivered_at_ms IS NULL AND id > ?1 \
                 ORDER BY id LIMIT ?2"
            ),
            params![after_id, limit(n)],
        )
    }

    fn mark_delivered(&mut self, id: i64, at_ms: i64) -> Result<(), JournalError> {
        self.conn
            .prepare_cached(
                "UPDATE events SET delivered_at_ms = ?2 WHERE id = ?1 AND delivered_at_ms IS NULL",
            )
            .and_then(|mut s| s.execute(params![id, at_ms]))
            .map_err(err)?;
        Ok(())
    }

    fn record_failure(
        &mut self,
        id: i64,
        error: &str,
        next_attempt_at_ms: i64,
    ) -> Result<(), JournalError> {
        self.conn
            .prepare_cached(
                "UPDATE events SET attempts = attempts + 1, last_error = ?2, \
                 next_attempt_at_ms = ?3 WHERE id = ?1",
            )
            .and_then(|mut s| s.execute(params![id, error, next_attempt_at_ms]))
            .map_err(err)?;
        Ok(())
    }

    fn stats(&mut self) -> Result<Stats, JournalError> {
        let (total, undelivered, oldest): (i64, i64, Option<i64>) = self
            .conn
            .query_row(
                "SELECT (SELECT count(*) FROM events), \
                        (SELECT count(*) FROM events WHERE delivered_at_ms IS NULL), \
                        (SELECT min(received_at_ms) FROM events WHERE delivered_at_ms IS NULL)",
                [],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )
            .map_err(err)?;
        let total = u64::try_from(total).unwrap_or(0);
        let undelivered = u64::try_from(undelivered).unwrap_or(0);
        Ok(Stats {
            total,
            undelivered,
            oldest_undelivered_ms: oldest,
            delivered: total.saturating_sub(undelivered),
        })
    }

    fn list(&mut self, since_ms: Option<i64>, n: usize) -> Result<Vec<Event>, JournalError> {
        self.query(
            &format!(
                "SELECT {COLUMNS} FROM events WHERE received_at_ms >= ?1 \
                 ORDER BY received_at_ms, id LIMIT ?2"
            ),
            params![since_ms.unwrap_or(i64::MIN), limit(n)],
        )
    }

    fn get(&mut self, id: i64) -> Result<Option<Event>, JournalError> {
        Ok(self
            .query(&format!("SELECT {COLUMNS} FROM events WHERE id = ?1"), [id])?
            .pop())
    }

    fn prune_delivered(&mut self, before_ms: i64) -> Result<u64, JournalError> {
        let n = self
            .conn
            .execute(
                "DELETE FROM events WHERE delivered_at_ms IS NOT NULL AND delivered_at_ms < ?1",
                [before_ms],
            )
            .map_err(err)?;
        Ok(n as u64)
    }

    fn prune_received(&mut self, before_ms: i64) -> Result<u64, JournalError> {
        let n = self
            .conn
            .execute("DELETE FROM events WHERE received_at_ms < ?1", [before_ms])
            .map_err(err)?;
        Ok(n as u64)
    }

    fn ping(&mut self) -> Result<(), JournalError> {
        // The writer's next commit needs the write lock (and the -wal file): check exactly that.
        self.conn
            .execute_batch("BEGIN IMMEDIATE; ROLLBACK")
            .map_err(err)
    }
}
