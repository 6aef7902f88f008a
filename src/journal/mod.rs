//! The durable journal: every accepted webhook written to a store before it is answered, so an
//! internal system can be given it later (at least once), whatever happened in between.
//!
//! [`Store`] is one synchronous connection to a journal (SQLite embedded, or PostgreSQL); [`writer`]
//! group-commits the server's events through one of them; [`record`] builds an event from a verified
//! request; [`spill`] keeps what the store did not take at exit; [`private_files`] keeps the files
//! holding caller data `0600`. It is storage only: delivering the events is [`crate::forward`]'s,
//! which reads them from here.

pub mod inspect;
pub mod postgres;
pub mod private_files;
pub mod record;
pub mod spill;
pub mod sqlite;
pub mod time;
pub mod writer;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::twilio::Role;

/// A webhook as accepted (after signature verification), before it has an id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewEvent {
    /// When it arrived, unix epoch milliseconds.
    pub received_at_ms: i64,
    /// Which role answered it.
    pub role: Role,
    /// `POST` or `GET`.
    pub method: String,
    /// The URL Twilio signed (no fragment).
    pub url: String,
    /// The request path, e.g. `/sms`.
    pub path: String,
    /// Every parameter, body then query, in arrival order, repeats kept.
    pub params: Vec<(String, String)>,
    /// Twilio's `ErrorCode`, present when Twilio invoked the fallback URL.
    pub error_code: Option<String>,
    /// Twilio's `ErrorUrl` (the primary URL that failed).
    pub error_url: Option<String>,
    /// `I-Twilio-Idempotency-Token`, else `<Sid>:<kind>`: one journal row per key.
    pub idempotency_key: String,
    /// The ordering group: CallSid, else MessageSid, else the idempotency key.
    pub conversation: String,
    /// The request's AccountSid (picks the signing token when forwarding).
    pub account_sid: Option<String>,
}

/// The role a stored row names; a row this server did not write may name none.
fn stored_role(text: &str) -> Result<Role, JournalError> {
    Role::from_name(text)
        .ok_or_else(|| JournalError::new(format!("unknown role {text:?} in a row")))
}

/// A journaled event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    /// The store's id: increasing, never reused.
    pub id: i64,
    /// The webhook as it was received.
    #[serde(flatten)]
    pub webhook: NewEvent,
    /// When the forwarder delivered it, if it has.
    pub delivered_at_ms: Option<i64>,
    /// Failed delivery attempts so far.
    pub attempts: u32,
    /// Not to be tried again before this time (unix ms).
    pub next_attempt_at_ms: i64,
    /// The last delivery failure.
    pub last_error: Option<String>,
}

/// What `append` did with one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// Written now, with this id.
    New(i64),
    /// Its idempotency key was already journaled, under this id.
    Duplicate(i64),
}

impl Appended {
    /// The id of the row holding the event.
    pub fn id(self) -> i64 {
        match self {
            Appended::New(id) | Appended::Duplicate(id) => id,
        }
    }
}

/// Backlog numbers for `journal stats` and the gauges.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Events in the journal.
    pub total: u64,
    /// Events not yet delivered.
    pub undelivered: u64,
    /// `received_at_ms` of the oldest undelivered event.
    pub oldest_undelivered_ms: Option<i64>,
    /// Events delivered (and not yet pruned).
    pub delivered: u64,
}

/// A journal failure; the message is short and never holds a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("journal: {0}")]
pub struct JournalError(pub String);

impl JournalError {
    /// Wraps any error's message.
    pub fn new(message: impl fmt::Display) -> Self {
        JournalError(message.to_string())
    }
}

/// One connection to a journal store. Synchronous: each user opens its own connection and runs it
/// on its own thread (or `spawn_blocking`).
pub trait Store: Send {
    /// Appends a batch in ONE transaction (group commit); duplicates by idempotency key (also within
    /// the batch) are not inserted again. Results are in batch order.
    fn append(&mut self, batch: &[NewEvent]) -> Result<Vec<Appended>, JournalError>;
    /// Undelivered events with id > `after_id`, oldest first (by id), at most `limit`.
    fn undelivered(&mut self, after_id: i64, limit: usize) -> Result<Vec<Event>, JournalError>;
    /// Marks an event delivered (idempotent: the first time is kept).
    fn mark_delivered(&mut self, id: i64, at_ms: i64) -> Result<(), JournalError>;
    /// Records a failed attempt: attempts += 1, last_error, next_attempt_at_ms.
    fn record_failure(
        &mut self,
        id: i64,
        error: &str,
        next_attempt_at_ms: i64,
    ) -> Result<(), JournalError>;
    /// Counts for the backlog.
    fn stats(&mut self) -> Result<Stats, JournalError>;
    /// Events received at or after `since_ms` (all when `None`), oldest first, at most `limit`.
    fn list(&mut self, since_ms: Option<i64>, limit: usize) -> Result<Vec<Event>, JournalError>;
    /// One event by id.
    fn get(&mut self, id: i64) -> Result<Option<Event>, JournalError>;
    /// Deletes delivered events delivered before `before_ms`; returns how many.
    fn prune_delivered(&mut self, before_ms: i64) -> Result<u64, JournalError>;
    /// Deletes every event received before `before_ms`, delivered or not (retention when nothing
    /// forwards); returns how many.
    fn prune_received(&mut self, before_ms: i64) -> Result<u64, JournalError>;
    /// Checks that the store still answers (and, for SQLite, that its write lock can be taken).
    fn ping(&mut self) -> Result<(), JournalError>;
}

/// Why a journal could not be used when the server started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unavailable {
    /// Retrying may mend it (the server is down, restarting, unreachable): serve, buffer, retry.
    ForNow(JournalError),
    /// It cannot work as configured (no such folder, not writable, wrong credentials, a
    /// certificate that does not verify): refuse to start.
    Never(JournalError),
}

/// Start-up's check of the journal at `url`: opens it (creating it or its table) once, on a thread
/// of its own, waiting at most `timeout` (a server that accepts and never answers is "for now").
pub fn probe(url: &JournalUrl, timeout: Duration) -> Result<(), Unavailable> {
    let url = url.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("journal-probe".into())
        .spawn(move || {
            let result = match &url {
                JournalUrl::Sqlite(path) => sqlite::probe(path),
                JournalUrl::Postgres(target) => postgres::probe(target, timeout),
            };
            let _ = tx.send(result);
        });
    if let Err(e) = spawned {
        return Err(Unavailable::ForNow(JournalError::new(e)));
    }
    rx.recv_timeout(timeout + Duration::from_secs(1))
        .unwrap_or_else(|_| {
            Err(Unavailable::ForNow(JournalError::new(format!(
                "no answer within {} s",
                timeout.as_secs() + 1
            ))))
        })
}

/// Where the journal lives: `sqlite:///abs/path.db`, `sqlite://relative.db`, `postgres://...` or
/// `postgresql://...` (completed from libpq's `PG*` variables, see [`postgres::Target`]). `Display`
/// and `Debug` hide any password.
#[derive(Clone, PartialEq, Eq)]
pub enum JournalUrl {
    /// An embedded SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL server.
    Postgres(postgres::Target),
}

impl JournalUrl {
    /// Parses `raw`; a PostgreSQL URL is completed from `sources` (environment, password file).
    pub fn with_sources(raw: &str, sources: &postgres::Sources<'_>) -> Result<JournalUrl, String> {
        if let Some(path) = raw.strip_prefix("sqlite://") {
            if path.is_empty() || path == "/" {
                return Err("sqlite URL needs a file: sqlite:///abs/path.db".into());
            }
            if path.contains(['?', '#']) {
                return Err("sqlite URL takes no ?options or #fragment".into());
            }
            if sources.password.is_some() {
                return Err("a password file is for a postgres journal only".into());
            }
            return Ok(JournalUrl::Sqlite(PathBuf::from(path)));
        }
        if raw.starts_with("postgres://") || raw.starts_with("postgresql://") {
            // Resolved now so a typo stops start-up instead of every write.
            return postgres::Target::new(raw, sources)
                .map(JournalUrl::Postgres)
                .map_err(|e| e.0);
        }
        Err("use sqlite:///path/to/journal.db or postgres://user@host/db".into())
    }

    /// What the journal resolved to, for the start-up log line: the SQLite path, or the
    /// PostgreSQL host, port, user, database and sslmode in effect (never the password).
    pub fn describe(&self) -> String {
        match self {
            JournalUrl::Sqlite(path) => format!("sqlite {}", path.display()),
            JournalUrl::Postgres(target) => format!("postgres {target}"),
        }
    }
}

impl FromStr for JournalUrl {
    type Err = String;

    /// The URL alone, without the environment (`serve` and `journal` complete it from there).
    fn from_str(raw: &str) -> Result<Self, String> {
        JournalUrl::with_sources(raw, &postgres::Sources::none())
    }
}

impl fmt::Display for JournalUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JournalUrl::Sqlite(path) => write!(f, "sqlite://{}", path.display()),
            JournalUrl::Postgres(target) => f.write_str(&redact_password(target.url())),
        }
    }
}

impl fmt::Debug for JournalUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JournalUrl({self})")
    }
}

/// `postgres://user:secret@host/db?password=x` → `postgres://user:***@host/db?password=***`.
fn redact_password(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let (authority_end, _) = rest
        .char_indices()
        .find(|(_, c)| matches!(c, '/' | '?'))
        .unwrap_or((rest.len(), ' '));
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => authority.to_string(),
        },
        None => authority.to_string(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                    _ => pair.to_string(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_string(),
    };
    format!("{scheme}://{authority}{tail}")
}

/// Opens (and creates or migrates) the journal at `url`.
pub fn open(url: &JournalUrl) -> Result<Box<dyn Store>, JournalError> {
    Ok(match url {
        JournalUrl::Sqlite(path) => Box::new(sqlite::SqliteStore::open(path)?),
        JournalUrl::Postgres(target) => Box::new(postgres::PostgresStore::connect(target)?),
    })
}

/// Parameters as stored: a JSON array of `[name, value]` pairs, order and repeats kept.
fn params_to_json(params: &[(String, String)]) -> String {
    serde_json::to_string(params).unwrap_or_else(|_| "[]".into())
}

fn params_from_json(text: &str) -> Result<Vec<(String, String)>, JournalError> {
    serde_json::from_str(text).map_err(|e| JournalError::new(format!("stored params: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse() {
        assert_eq!(
            "sqlite:///var/lib/j.db".parse(),
            Ok(JournalUrl::Sqlite("/var/lib/j.db".into()))
        );
        assert_eq!(
            "sqlite://j.db".parse(),
            Ok(JournalUrl::Sqlite("j.db".into()))
        );
        assert!("sqlite://".parse::<JournalUrl>().is_err());
        assert!("mysql://x".parse::<JournalUrl>().is_err());
        assert!("/tmp/x.db".parse::<JournalUrl>().is_err());
        let pg: JournalUrl = "postgresql://app:s3cret@db:5432/journal?sslmode=disable"
            .parse()
            .unwrap();
        assert_eq!(
            pg.to_string(),
            "postgresql://app:***@db:5432/journal?sslmode=disable"
        );
        assert!(!format!("{pg:?}").contains("s3cret"));
        assert_eq!(
            pg.describe(),
            "postgres host=db port=5432 user=app dbname=journal sslmode=disable"
        );
        assert!(
            "postgres://".parse::<JournalUrl>().is_err(),
            "no user, no host"
        );
    }

    #[test]
    fn passwords_are_hidden_everywhere() {
        assert_eq!(
            redact_password("postgres://u@h/d?password=x&user=u"),
            "postgres://u@h/d?password=***&user=u"
        );
        assert_eq!(redact_password("postgres://h"), "postgres://h");
        assert_eq!(
            redact_password("postgres://u:p:q@h?x=1"),
            "postgres://u:***@h?x=1"
        );
    }

    #[test]
    fn params_round_trip_with_repeats_and_order() {
        let p = vec![
            ("B".to_string(), "2".to_string()),
            ("A".into(), "é \"x\"".into()),
            ("B".into(), "1".into()),
        ];
        assert_eq!(params_from_json(&params_to_json(&p)).unwrap(), p);
    }
}
