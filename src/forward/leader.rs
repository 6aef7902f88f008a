//! One forwarder per journal. A PostgreSQL journal shared by several replicas is delivered by the
//! replica that holds a session advisory lock, so events are not sent once per replica and each
//! conversation keeps a single order; when that replica dies its session ends, the lock is free and
//! another replica takes over. A SQLite journal belongs to one process, which always leads.

use std::time::Duration;

use postgres::Client;

use crate::journal::postgres::Target;
use crate::journal::{JournalError, JournalUrl};

/// The advisory lock key ("twiml-failover forwarder"); the journal's table set-up uses another.
const LOCK_KEY: i64 = 7_300_413;

/// Whether this process may deliver; blocking (run it off the async workers).
pub struct Leadership {
    postgres: Option<Target>,
    client: Option<Client>,
    held: bool,
}

impl Leadership {
    /// Leadership over the journal at `url`.
    pub fn new(url: &JournalUrl) -> Leadership {
        Leadership {
            postgres: match url {
                JournalUrl::Postgres(target) => Some(target.clone()),
                JournalUrl::Sqlite(_) => None,
            },
            client: None,
            held: false,
        }
    }

    /// True while this process holds the forwarder lock (taking it when free).
    pub fn check(&mut self) -> Result<bool, JournalError> {
        let Some(target) = &self.postgres else {
            return Ok(true);
        };
        let alive = self
            .client
            .as_mut()
            .is_some_and(|c| c.is_valid(Duration::from_secs(2)).is_ok());
        if !alive {
            // A lost session released the lock; whoever takes it next leads.
            self.held = false;
            self.client = Some(target.client()?);
        }
        if !self.held {
            if let Some(client) = self.client.as_mut() {
                let row = client
                    .query_one("SELECT pg_try_advisory_lock($1)", &[&LOCK_KEY])
                    .map_err(pg)?;
                self.held = row.get(0);
            }
        }
        Ok(self.held)
    }

    /// Gives the lock up (by ending the session).
    pub fn release(&mut self) {
        self.client = None;
        self.held = false;
    }
}

fn pg(e: postgres::Error) -> JournalError {
    JournalError::new(format!("postgres: {e}"))
}
