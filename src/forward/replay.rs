//! `journal replay`: send journaled events again (delivered or not) to a URL, signed like the
//! deliverer's, one at a time in journal order. Replay does not change what the journal records.

use std::collections::HashSet;

use super::client::Client;
use super::request;
use super::Shared;
use crate::journal::{Event, JournalError, Store};
use crate::keyring::KeyRing;

/// Events read per store query.
const PAGE: usize = 500;

/// What a replay did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Events the target accepted (2xx).
    pub sent: u64,
    /// Events it did not.
    pub failed: u64,
    /// The first few failures: event id and why.
    pub failures: Vec<(i64, String)>,
}

/// Failures kept for the summary.
const FAILURES_SHOWN: usize = 10;

/// Replays from one journal connection.
pub struct Replay {
    store: Shared,
}

impl Replay {
    /// Replays from `store`.
    pub fn new(store: Box<dyn Store>) -> Replay {
        Replay {
            store: Shared::new(store),
        }
    }

    /// Counts the events a replay from `since_ms` would send (for a progress bar's length).
    pub async fn count(&self, since_ms: Option<i64>) -> Result<u64, JournalError> {
        let mut pager = Pager::new(self.store.clone(), since_ms);
        let mut n = 0;
        while let Some(page) = pager.next().await? {
            n += page.len() as u64;
        }
        Ok(n)
    }

    /// Sends every event received at or after `since_ms` to `client`'s URL, one at a time;
    /// `progress` is called after each event with the running summary.
    pub async fn run(
        &self,
        client: &Client,
        keyring: &KeyRing,
        since_ms: Option<i64>,
        mut progress: impl FnMut(&Summary),
    ) -> Result<Summary, JournalError> {
        let mut pager = Pager::new(self.store.clone(), since_ms);
        let mut summary = Summary::default();
        while let Some(page) = pager.next().await? {
            for event in page {
                let result = match request::build(&event, client.url(), keyring) {
                    Ok(forward) => client.post(&forward).await.map_err(|e| e.to_string()),
                    Err(e) => Err(format!("cannot sign: {e}")),
                };
                match result {
                    Ok(_) => summary.sent += 1,
                    Err(e) => {
                        summary.failed += 1;
                        if summary.failures.len() < FAILURES_SHOWN {
                            summary.failures.push((event.id, e));
                        }
                    }
                }
                progress(&summary);
            }
        }
        Ok(summary)
    }
}

/// Reads every event from a time on, in journal order (received time, then id), page by page.
struct Pager {
    store: Shared,
    since: Option<i64>,
    /// Paging restarts at the last page's received time; these ids at that time were returned.
    done_at_boundary: HashSet<i64>,
    finished: bool,
}

impl Pager {
    fn new(store: Shared, since: Option<i64>) -> Pager {
        Pager {
            store,
            since,
            done_at_boundary: HashSet::new(),
            finished: false,
        }
    }

    /// The next events not returned before; `None` at the end.
    async fn next(&mut self) -> Result<Option<Vec<Event>>, JournalError> {
        let mut limit = PAGE;
        while !self.finished {
            let since = self.since;
            let page = self.store.run(move |s| s.list(since, limit)).await?;
            let full = page.len() >= limit;
            self.finished = !full;
            let Some(last_ms) = page.last().map(|e| e.webhook.received_at_ms) else {
                return Ok(None);
            };
            let fresh: Vec<Event> = page
                .into_iter()
                .filter(|e| !self.done_at_boundary.contains(&e.id))
                .collect();
            if fresh.is_empty() {
                // A whole page received in one millisecond, all returned already: read more of it.
                limit = limit.saturating_mul(2);
                continue;
            }
            if self.since != Some(last_ms) {
                self.done_at_boundary.clear();
                self.since = Some(last_ms);
            }
            self.done_at_boundary.extend(
                fresh
                    .iter()
                    .filter(|e| e.webhook.received_at_ms == last_ms)
                    .map(|e| e.id),
            );
            return Ok(Some(fresh));
        }
        Ok(None)
    }
}
