//! The account's wiring, read through the REST API one round at a time within a request budget.
//! Every page is kept between rounds. The numbers, TwiML Apps and Messaging Services lists are
//! re-read every round (the Console edits them); each Service's numbers when the Service is new,
//! when a number names it (`sms_application_sid`) without being listed, and on the full re-read
//! every N rounds. A list cut short by the budget or an error is continued where it stopped the
//! next round; meanwhile the pages read before stand in. I/O (the API); which lists a round reads
//! is [`Reads::due`]'s, pure.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use crate::numbers::model::{set, Account, Application, Number, Service, ServiceNumber};
use crate::numbers::rest::{Api, ApiError, List, MAX_PAGES};

/// One page as read.
#[derive(Debug, Clone)]
struct Page<T> {
    items: Vec<T>,
    read_at: Instant,
}

/// A list's pages, in order, and how far a re-read has got.
#[derive(Debug, Clone)]
struct Cached<T> {
    pages: Vec<Page<T>>,
    /// A re-read in progress: the index of the next page and its URL.
    cursor: Option<(usize, String)>,
    /// The round it was last read to its end; `None` before.
    completed: Option<u64>,
}

impl<T> Default for Cached<T> {
    fn default() -> Self {
        Cached {
            pages: Vec::new(),
            cursor: None,
            completed: None,
        }
    }
}

impl<T> Cached<T> {
    fn items(&self) -> impl Iterator<Item = &T> {
        self.pages.iter().flat_map(|p| p.items.iter())
    }

    fn oldest(&self) -> Option<Instant> {
        self.pages.iter().map(|p| p.read_at).min()
    }
}

/// What one round's reads did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoundReads {
    /// Requests made this round (each retry counts).
    pub requests: u64,
    /// Of which answered 429.
    pub throttled: u64,
    /// Of which failed otherwise.
    pub errors: u64,
    /// Every list due was read to its end.
    pub complete: bool,
    /// This round re-read every list.
    pub full: bool,
    /// Why the reads stopped early: the budget, or an API error.
    pub stopped: Option<String>,
    /// The API error that stopped them (worded for the operator), if one did.
    pub error: Option<String>,
}

/// Why a list's read stopped before its end.
enum Stop {
    Budget,
    Api(ApiError),
}

/// The requests a round may still make.
struct Budget {
    start: u64,
    limit: u64,
}

impl Budget {
    fn spent(&self, api: &Api) -> u64 {
        api.stats().total().saturating_sub(self.start)
    }

    fn left(&self, api: &Api) -> bool {
        self.spent(api) < self.limit
    }
}

/// The pages read so far, and the rules for reading more.
#[derive(Debug, Default)]
pub struct Reads {
    numbers: Cached<Number>,
    applications: Cached<Application>,
    services: Cached<Service>,
    members: BTreeMap<String, Cached<ServiceNumber>>,
    /// Services whose numbers must be read this round whatever the schedule.
    stale_members: BTreeSet<String>,
}

impl Reads {
    /// Whether round `round` (from 0) is a full re-read with `full_every`.
    pub fn is_full(round: u64, full_every: u64) -> bool {
        round % full_every.max(1) == 0
    }

    /// The lists due in `round`, in reading order: the three top lists, then each listed
    /// Service's numbers that are new, stale, part-read, or due by the full re-read.
    pub fn due(&self, round: u64, full_every: u64) -> Vec<List> {
        let full = Reads::is_full(round, full_every);
        let mut due = vec![List::Numbers, List::Applications, List::Services];
        for s in self.services.items() {
            let cached = self.members.get(&s.sid);
            let needed = full
                || self.stale_members.contains(&s.sid)
                || cached.is_none_or(|c| c.completed.is_none() || c.cursor.is_some());
            if needed {
                due.push(List::ServiceNumbers(s.sid.clone()));
            }
        }
        due
    }

    /// How long ago `list` was last read to its end, as a sort key: a list part-read comes
    /// first, then one never read, then the one read longest ago.
    fn staleness(&self, list: &List) -> (bool, i64) {
        fn key<T>(c: Option<&Cached<T>>) -> (bool, i64) {
            c.map_or((true, -1), |c| {
                (c.cursor.is_none(), c.completed.map_or(-1, |r| r as i64))
            })
        }
        match list {
            List::Numbers => key(Some(&self.numbers)),
            List::Applications => key(Some(&self.applications)),
            List::Services => key(Some(&self.services)),
            List::ServiceNumbers(mg) => key(self.members.get(mg)),
        }
    }

    /// One round: reads the lists [`Reads::due`] names, until the end or `budget` requests,
    /// `page_size` items per page. The three top lists first (which Services exist and which
    /// numbers name one decide which Services' numbers are due), each group stalest first, so a
    /// budget too small for every list still reads each in turn.
    pub async fn round(
        &mut self,
        api: &Api,
        round: u64,
        full_every: u64,
        budget: u64,
        page_size: u32,
    ) -> RoundReads {
        let before = api.stats();
        let budget = Budget {
            start: before.total(),
            limit: budget,
        };
        let mut stop = None;
        let mut top = vec![List::Numbers, List::Applications, List::Services];
        top.sort_by_key(|l| self.staleness(l));
        for list in top {
            if let Err(s) = self.read(api, &list, round, &budget, page_size).await {
                stop = Some(s);
                break;
            }
        }
        self.forget_unlisted_services();
        self.mark_stale_members();
        if stop.is_none() {
            let mut members: Vec<List> = self.due(round, full_every).into_iter().skip(3).collect();
            members.sort_by_key(|l| self.staleness(l));
            for list in members {
                if let Err(s) = self.read(api, &list, round, &budget, page_size).await {
                    stop = Some(s);
                    break;
                }
            }
        }
        let after = api.stats();
        let (stopped, error) = match &stop {
            None => (None, None),
            Some(Stop::Budget) => (
                Some(format!(
                    "the budget of {} requests ran out; the next round goes on from there",
                    budget.limit
                )),
                None,
            ),
            Some(Stop::Api(e)) => (Some(e.to_string()), Some(e.to_string())),
        };
        RoundReads {
            requests: after.total() - before.total(),
            throttled: after.throttled - before.throttled,
            errors: after.failed - before.failed,
            complete: stop.is_none(),
            full: Reads::is_full(round, full_every),
            stopped,
            error,
        }
    }

    /// Reads one list from its cursor (or its first page) to its end or until the budget is
    /// spent.
    async fn read(
        &mut self,
        api: &Api,
        list: &List,
        round: u64,
        budget: &Budget,
        page_size: u32,
    ) -> Result<(), Stop> {
        match list {
            List::Numbers => {
                read_list(api, list, &mut self.numbers, round, budget, page_size).await
            }
            List::Applications => {
                read_list(api, list, &mut self.applications, round, budget, page_size).await
            }
            List::Services => {
                read_list(api, list, &mut self.services, round, budget, page_size).await
            }
            List::ServiceNumbers(mg) => {
                let cached = self.members.entry(mg.clone()).or_default();
                let result = read_list(api, list, cached, round, budget, page_size).await;
                if result.is_ok() {
                    self.stale_members.remove(mg);
                }
                result
            }
        }
    }

    /// Drops the numbers of Services the account no longer lists.
    fn forget_unlisted_services(&mut self) {
        let listed: BTreeSet<&str> = self.services.items().map(|s| s.sid.as_str()).collect();
        self.members.retain(|mg, _| listed.contains(mg.as_str()));
        self.stale_members.retain(|mg| listed.contains(mg.as_str()));
    }

    /// A number that names a Service (`sms_application_sid` = `MG…`, which Twilio sets when the
    /// number joins one) that does not list it, or that a Service lists while naming another
    /// handler, makes that Service's numbers stale: read again this round.
    fn mark_stale_members(&mut self) {
        let mut listed: BTreeMap<&str, &str> = BTreeMap::new();
        for (mg, cached) in &self.members {
            for m in cached.items() {
                listed.insert(m.sid.as_str(), mg.as_str());
            }
        }
        let mut stale = Vec::new();
        for n in self.numbers.items() {
            let named = set(&n.sms_application_sid);
            match (named, listed.get(n.sid.as_str())) {
                (Some(mg), in_service) if mg.starts_with("MG") && in_service != Some(&mg) => {
                    stale.push(mg.to_string());
                    stale.extend(in_service.map(|s| s.to_string()));
                }
                (Some(other), Some(mg)) if !other.starts_with("MG") => stale.push(mg.to_string()),
                _ => {}
            }
        }
        self.stale_members.extend(stale);
    }

    /// The account as the pages read so far describe it; `None` before the numbers list was
    /// read to its end once. A number on two pages (the list moved between reads) is taken from
    /// the page read last.
    pub fn account(&self) -> Option<Account> {
        self.numbers.completed?;
        let mut pages: Vec<&Page<Number>> = self.numbers.pages.iter().collect();
        pages.sort_by_key(|p| p.read_at);
        let mut newest: BTreeMap<&str, &Number> = BTreeMap::new();
        for p in &pages {
            for n in &p.items {
                newest.insert(n.sid.as_str(), n);
            }
        }
        let mut seen = BTreeSet::new();
        let numbers = self
            .numbers
            .items()
            .filter(|n| seen.insert(n.sid.as_str()))
            .filter_map(|n| newest.get(n.sid.as_str()).map(|n| (*n).clone()))
            .collect();
        let mut service_of = BTreeMap::new();
        for (mg, cached) in &self.members {
            for m in cached.items() {
                service_of.insert(m.sid.clone(), mg.clone());
            }
        }
        Some(Account {
            numbers,
            applications: self
                .applications
                .items()
                .map(|a| (a.sid.clone(), a.clone()))
                .collect(),
            services: self
                .services
                .items()
                .map(|s| (s.sid.clone(), s.clone()))
                .collect(),
            service_of,
        })
    }

    /// How old the oldest page in use is.
    pub fn oldest_page_age(&self) -> Option<Duration> {
        let oldest = [
            self.numbers.oldest(),
            self.applications.oldest(),
            self.services.oldest(),
        ]
        .into_iter()
        .chain(self.members.values().map(Cached::oldest))
        .flatten()
        .min()?;
        Some(oldest.elapsed())
    }
}

/// Reads `list` into `cached` from its cursor, or from its first page.
async fn read_list<T: DeserializeOwned>(
    api: &Api,
    list: &List,
    cached: &mut Cached<T>,
    round: u64,
    budget: &Budget,
    page_size: u32,
) -> Result<(), Stop> {
    let (mut index, mut url) = cached
        .cursor
        .take()
        .unwrap_or_else(|| (0, api.first_page(list, page_size)));
    loop {
        if !budget.left(api) {
            cached.cursor = Some((index, url));
            return Err(Stop::Budget);
        }
        let page = match api.page::<T>(list, &url).await {
            Ok(page) => page,
            Err(e) => {
                cached.cursor = Some((index, url));
                return Err(Stop::Api(e));
            }
        };
        let fresh = Page {
            items: page.items,
            read_at: Instant::now(),
        };
        if index < cached.pages.len() {
            cached.pages[index] = fresh;
        } else {
            cached.pages.push(fresh);
        }
        let Some(next) = page.next else {
            cached.pages.truncate(index + 1);
            cached.completed = Some(round);
            return Ok(());
        };
        // A page that points at itself, or a list without end, is refused rather than followed.
        index += 1;
        if next == url || index >= MAX_PAGES {
            cached.pages.truncate(index);
            return Err(Stop::Api(ApiError::BadAnswer {
                what: format!("GET {url}"),
                cause: format!("pagination does not end (page {index} points to {next})"),
            }));
        }
        url = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(sid: &str) -> Service {
        Service {
            sid: sid.into(),
            ..Service::default()
        }
    }

    fn page<T>(items: Vec<T>) -> Page<T> {
        Page {
            items,
            read_at: Instant::now(),
        }
    }

    fn done<T>(items: Vec<T>) -> Cached<T> {
        Cached {
            pages: vec![page(items)],
            cursor: None,
            completed: Some(0),
        }
    }

    #[test]
    fn services_numbers_are_read_when_new_stale_part_read_or_on_the_full_round() {
        let mut r = Reads {
            services: done(vec![service("MG1"), service("MG2")]),
            ..Reads::default()
        };
        let members = |due: Vec<List>| -> Vec<String> {
            due.into_iter()
                .filter_map(|l| match l {
                    List::ServiceNumbers(mg) => Some(mg),
                    _ => None,
                })
                .collect()
        };
        // New: never read.
        assert_eq!(members(r.due(1, 12)), ["MG1", "MG2"]);
        r.members.insert("MG1".into(), done(vec![]));
        r.members.insert("MG2".into(), done(vec![]));
        assert!(members(r.due(1, 12)).is_empty());
        // The full re-read every 12 rounds, from round 0.
        assert_eq!(members(r.due(12, 12)), ["MG1", "MG2"]);
        assert!(Reads::is_full(0, 12) && !Reads::is_full(5, 12));
        // A number that names MG2 without MG2 listing it.
        r.numbers = done(vec![Number {
            sid: "PN1".into(),
            sms_application_sid: Some("MG2".into()),
            ..Number::default()
        }]);
        r.mark_stale_members();
        assert_eq!(members(r.due(1, 12)), ["MG2"]);
        // Part-read (the budget ran out inside it).
        r.stale_members.clear();
        r.members.get_mut("MG1").unwrap().cursor = Some((1, "next".into()));
        assert_eq!(members(r.due(1, 12)), ["MG1"]);
        // A Service no longer listed is forgotten.
        r.services = done(vec![service("MG2")]);
        r.forget_unlisted_services();
        assert_eq!(r.members.keys().collect::<Vec<_>>(), ["MG2"]);
    }

    #[test]
    fn the_account_takes_each_number_once_from_its_newest_page() {
        let n = |sid: &str, url: &str| Number {
            sid: sid.into(),
            voice_url: Some(url.into()),
            ..Number::default()
        };
        let mut r = Reads::default();
        assert!(r.account().is_none(), "nothing read yet");
        let old = page(vec![n("PN1", "old"), n("PN2", "a")]);
        std::thread::sleep(Duration::from_millis(2));
        // The list moved: PN2 was read again on the next page, later.
        let new = page(vec![n("PN2", "b"), n("PN3", "c")]);
        r.numbers = Cached {
            pages: vec![old, new],
            cursor: None,
            completed: Some(3),
        };
        r.members.insert(
            "MG1".into(),
            done(vec![ServiceNumber {
                sid: "PN3".into(),
                phone_number: "+1".into(),
            }]),
        );
        let a = r.account().unwrap();
        let got: Vec<(&str, &str)> = a
            .numbers
            .iter()
            .map(|n| (n.sid.as_str(), n.voice_url.as_deref().unwrap()))
            .collect();
        assert_eq!(got, [("PN1", "old"), ("PN2", "b"), ("PN3", "c")]);
        assert_eq!(a.service_of["PN3"], "MG1");
        assert!(r.oldest_page_age().unwrap() >= Duration::from_millis(2));
    }
}
