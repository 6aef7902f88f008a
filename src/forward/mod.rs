//! Store and forward: a background deliverer that POSTs each journaled event to an internal URL,
//! at least once, in order per conversation, with backoff, a bound on requests in flight and a
//! circuit breaker; plus retention pruning and `journal replay`; and its flags and `[forward]` keys
//! ([`ForwardSection`]), checked here.
//!
//! The deliverer owns one store connection (run on blocking threads) and is woken by the journal
//! writer through a [`Notify`] as soon as an event is committed, and by a poll timer otherwise
//! (events journaled by another replica into a shared PostgreSQL only show up through the poll).

pub mod client;
pub mod leader;
pub mod replay;
pub mod request;
pub mod schedule;

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use merge::Merge;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio::task::JoinSet;

use self::client::{Client, SendError};
use self::schedule::Scan;
use crate::backoff::Backoff;
use crate::breaker::{self, Breaker};
use crate::journal::time::now_ms;
use crate::journal::{self, Event, JournalError, JournalUrl, Store};
use crate::keyring::KeyRing;
use crate::metrics::ForwardMetrics;
use crate::net::url::Target;
use crate::setting::{positive, seconds, secs, unusable, Unusable};

/// Undelivered events read per store query while looking for eligible ones.
const PAGE: usize = 64;
/// Most undelivered events a deep pass looks at (bounds the cost of a huge backlog).
const MAX_SCAN: usize = 8192;

/// How long stopping waits for attempts in flight.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// How the deliverer behaves; built from `--forward-*` flags ([`ForwardSection`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The internal URL events are POSTed (and signed) for.
    pub url: String,
    /// Requests in flight at most.
    pub concurrency: usize,
    /// Time one attempt may take, connection included.
    pub timeout: Duration,
    /// Retry delays.
    pub backoff: Backoff,
    /// Consecutive failures that open the breaker.
    pub breaker_threshold: u32,
    /// How long an open breaker holds requests back before one probe.
    pub breaker_cooldown: Duration,
    /// How often the store is polled when nothing wakes the deliverer.
    pub poll_interval: Duration,
    /// Delivered events older than this are pruned.
    pub retention: Duration,
}

impl Settings {
    /// Defaults for `url`: 4 in flight, 10 s per attempt, retries from 1 s up to 5 min, breaker
    /// open for 30 s after 5 consecutive failures, poll every second, keep delivered events 7 days.
    pub fn new(url: impl Into<String>) -> Settings {
        Settings {
            url: url.into(),
            concurrency: 4,
            timeout: Duration::from_secs(10),
            backoff: Backoff {
                base: Duration::from_secs(1),
                cap: Duration::from_secs(300),
            },
            breaker_threshold: 5,
            breaker_cooldown: Duration::from_secs(30),
            poll_interval: Duration::from_secs(1),
            retention: Duration::from_secs(7 * 86_400),
        }
    }
}

/// `[forward]`: store and forward ([`Settings`]).
#[derive(Debug, Default, Clone, Args, Deserialize, Serialize, Merge)]
#[serde(deny_unknown_fields)]
#[merge(strategy = merge::option::overwrite_none)]
pub struct ForwardSection {
    /// Internal URL each journaled event is POSTed to, signed like Twilio would (needs --journal).
    #[arg(long = "forward-to", value_name = "URL")]
    pub to: Option<String>,
    /// Forwarded requests in flight at most.
    #[arg(long = "forward-concurrency", value_name = "N")]
    pub concurrency: Option<usize>,
    /// Seconds one forward attempt may take, connecting included.
    #[arg(long, value_name = "SECONDS")]
    #[serde(rename(deserialize = "timeout"))]
    pub forward_timeout: Option<f64>,
    /// Longest wait in seconds before retrying one event (backoff with full jitter).
    #[arg(long = "forward-max-backoff", value_name = "SECONDS")]
    pub max_backoff: Option<f64>,
    /// Seconds the circuit breaker holds requests back once failures in a row opened it.
    #[arg(long = "forward-breaker-cooldown", value_name = "SECONDS")]
    pub breaker_cooldown: Option<f64>,
}

impl ForwardSection {
    /// The defaults, as flags would give them: [`Settings::new`]'s.
    pub fn defaults() -> ForwardSection {
        let forward = Settings::new("");
        ForwardSection {
            concurrency: Some(forward.concurrency),
            forward_timeout: secs(forward.timeout),
            max_backoff: secs(forward.backoff.cap),
            breaker_cooldown: secs(forward.breaker_cooldown),
            ..ForwardSection::default()
        }
    }

    /// `None` without `--forward-to`, which needs the journal it forwards from (`retention` is
    /// the journal's, `None` without one).
    pub fn settle(self, retention: Option<Duration>) -> Result<Option<Settings>, Unusable> {
        let Some(url) = self.to else {
            return Ok(None);
        };
        let url = Target::parse(&url)
            .map_err(|m| unusable("forward-to", m))?
            .url;
        let Some(retention) = retention else {
            let message = "needs --journal: events are forwarded from the journal";
            return Err(unusable("forward-to", message));
        };
        let defaults = Settings::new(url);
        let cap = seconds("forward-max-backoff", self.max_backoff)?;
        Ok(Some(Settings {
            concurrency: positive("forward-concurrency", self.concurrency)?,
            timeout: seconds("forward-timeout", self.forward_timeout)?,
            // The first retry's ceiling never exceeds the cap.
            backoff: Backoff {
                base: defaults.backoff.base.min(cap),
                cap,
            },
            breaker_cooldown: seconds("forward-breaker-cooldown", self.breaker_cooldown)?,
            retention,
            ..defaults
        }))
    }
}

/// A store connection shared by the deliverer's tasks; each use runs on a blocking thread. Opened
/// from its URL on first use and again after a failure (the database may have restarted).
#[derive(Clone)]
struct Shared(Arc<Mutex<Connection>>);

struct Connection {
    url: Option<JournalUrl>,
    store: Option<Box<dyn Store>>,
    leadership: Option<leader::Leadership>,
}

impl Shared {
    /// An open connection that is not reopened.
    fn new(store: Box<dyn Store>) -> Shared {
        Shared(Arc::new(Mutex::new(Connection {
            url: None,
            store: Some(store),
            leadership: None,
        })))
    }

    /// A connection opened when first needed; `lead` makes it the one that also holds the
    /// forwarder's leadership.
    fn lazy(url: JournalUrl, lead: bool) -> Shared {
        Shared(Arc::new(Mutex::new(Connection {
            leadership: lead.then(|| leader::Leadership::new(&url)),
            url: Some(url),
            store: None,
        })))
    }

    /// Closes the connection on a blocking thread: the PostgreSQL driver must not be dropped on
    /// an async worker (it blocks on a runtime of its own).
    async fn close(&self) {
        let shared = self.0.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let mut conn = shared.lock().unwrap_or_else(|p| p.into_inner());
            conn.url = None;
            drop(conn.store.take());
            if let Some(l) = conn.leadership.as_mut() {
                l.release();
            }
        })
        .await;
    }

    /// Whether this process is the journal's forwarder (see [`leader`]).
    async fn lead(&self) -> Result<bool, JournalError> {
        let shared = self.0.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = shared.lock().unwrap_or_else(|p| p.into_inner());
            conn.leadership.as_mut().map_or(Ok(true), |l| l.check())
        })
        .await
        .map_err(|e| JournalError::new(format!("store task failed: {e}")))?
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn Store) -> Result<T, JournalError> + Send + 'static,
    ) -> Result<T, JournalError> {
        let shared = self.0.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = shared.lock().unwrap_or_else(|p| p.into_inner());
            let conn = &mut *conn;
            let store = match (&mut conn.store, &conn.url) {
                (Some(store), _) => store,
                (store @ None, Some(url)) => store.insert(journal::open(url)?),
                (None, None) => return Err(JournalError::new("journal connection lost")),
            };
            let result = f(store.as_mut());
            if result.is_err() && conn.url.is_some() {
                conn.store = None;
            }
            result
        })
        .await
        .map_err(|e| JournalError::new(format!("store task failed: {e}")))?
    }
}

/// What one delivery attempt came to.
struct Done {
    id: i64,
    result: Result<(), SendError>,
}

/// The running deliverer: stop it with [`Deliverer::stop`] after the server has drained.
#[derive(Debug)]
pub struct Deliverer {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Deliverer {
    /// Starts delivering from the journal at `url` (on connections of its own) to
    /// `settings.url`; `wake` is pinged (with `notify_one`) by the journal writer after each commit.
    pub fn spawn(
        url: JournalUrl,
        settings: Settings,
        keyring: KeyRing,
        metrics: ForwardMetrics,
        wake: Arc<Notify>,
    ) -> Result<Deliverer, String> {
        let client = Client::new(&settings.url, settings.concurrency, settings.timeout)?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        // Outcomes are recorded on connections of their own, so scheduling reads never wait for a
        // commit; PostgreSQL commits of different connections also proceed in parallel.
        let recorders = match url {
            JournalUrl::Postgres(_) => settings.concurrency,
            JournalUrl::Sqlite(_) => 1,
        };
        let mut prune_every =
            tokio::time::interval(journal::writer::prune_interval(settings.retention));
        prune_every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let breaker = Breaker::new(settings.breaker_threshold, settings.breaker_cooldown);
        let run = Run {
            recorders: (0..recorders)
                .map(|_| Shared::lazy(url.clone(), false))
                .collect(),
            store: Shared::lazy(url, true),
            client: Arc::new(client),
            keyring: Arc::new(keyring),
            metrics,
            settings,
            breaker_state: breaker::State::Closed,
            last_error: None,
            leading: None,
            lead_checked: None,
            breaker,
            rng: fastrand::Rng::new(),
            in_flight: HashSet::new(),
            tasks: JoinSet::new(),
            prune_every,
            store_failing: false,
            last_deep: None,
        };
        let task = tokio::spawn(run.run(wake, async {
            let _ = stopped.await;
        }));
        Ok(Deliverer {
            stop: Some(stop),
            task,
        })
    }

    /// Stops taking new events, waits (at most 5 s) for attempts in flight and returns. Whatever is undelivered stays in the journal for the next start.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

struct Run {
    store: Shared,
    /// Where delivery outcomes are written (see [`Deliverer::spawn`]).
    recorders: Vec<Shared>,
    client: Arc<Client>,
    keyring: Arc<KeyRing>,
    metrics: ForwardMetrics,
    settings: Settings,
    breaker_state: breaker::State,
    /// Why the latest attempt failed, for the log line when the breaker opens.
    last_error: Option<String>,
    /// Whether this replica forwards the journal (`None` before the first check).
    leading: Option<bool>,
    lead_checked: Option<Instant>,
    // The scheduler's loop state, owned here so each phase of `run` is a method.
    breaker: Breaker,
    rng: fastrand::Rng,
    /// Events with an attempt in progress.
    in_flight: HashSet<i64>,
    tasks: JoinSet<Done>,
    prune_every: tokio::time::Interval,
    /// Whether the latest read of the journal failed (logged once per outage).
    store_failing: bool,
    /// When the last deep pass looked past the first page.
    last_deep: Option<Instant>,
}

/// What woke the scheduler.
enum Woke {
    /// An attempt finished (or its task failed).
    Finished(Result<Done, tokio::task::JoinError>),
    /// A commit, the poll timer, or a due retry: look for work.
    Look,
    /// Time to prune delivered events.
    Prune,
}

impl Run {
    /// The scheduler: start what is due, wait for a reason to look again, repeat; on `shutdown`,
    /// stop (see [`Run::stop`]).
    async fn run(mut self, wake: Arc<Notify>, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        tracing::info!(to = %self.client.url(), concurrency = self.settings.concurrency, "forwarding journaled events");
        loop {
            let wake_at = self.start_due().await;
            self.observe_breaker();
            let woke = tokio::select! {
                Some(done) = self.tasks.join_next() => Woke::Finished(done),
                () = wake.notified() => Woke::Look,
                () = tokio::time::sleep_until(wake_at.into()) => Woke::Look,
                _ = self.prune_every.tick() => Woke::Prune,
                () = &mut shutdown => break,
            };
            match woke {
                Woke::Finished(Ok(done)) => self.finished(done),
                // A task that panicked leaves its id in flight; the event stays undelivered in the
                // journal and is picked up again after a restart.
                Woke::Finished(Err(_)) | Woke::Look => {}
                Woke::Prune => self.prune().await,
            }
        }
        self.stop().await;
    }

    /// Starts attempts for the events that are due, as far as free slots, the breaker and
    /// leadership allow; returns when to look again at the latest.
    async fn start_due(&mut self) -> Instant {
        let now = Instant::now();
        let mut wake_at = now + self.settings.poll_interval;
        let slots = self
            .settings
            .concurrency
            .saturating_sub(self.in_flight.len());
        if slots > 0 && self.breaker.would_allow(now) && self.leading().await {
            // Most passes follow a delivery and only need the oldest page (where the
            // conversation's next event usually is); heads of other conversations further back
            // in a backlog are found by a deep pass, at most once per poll interval. Without
            // this, a backlog of one busy conversation costs a full scan per delivery.
            let deep = self
                .last_deep
                .is_none_or(|at| now >= at + self.settings.poll_interval);
            if deep {
                self.last_deep = Some(now);
            }
            let limit = if deep { MAX_SCAN } else { PAGE };
            match self.pick(slots, limit).await {
                Ok((events, next_due_ms)) => {
                    if self.store_failing {
                        tracing::info!("journal readable again");
                        self.store_failing = false;
                    }
                    for event in events {
                        if !self.breaker.try_acquire(Instant::now()) {
                            break;
                        }
                        self.in_flight.insert(event.id);
                        // Drawn now so the task needs no random source of its own.
                        let retry_in = self
                            .settings
                            .backoff
                            .delay(event.attempts + 1, &mut self.rng);
                        let attempt = self.deliver(event, retry_in);
                        self.tasks.spawn(attempt);
                    }
                    if let Some(due) = next_due_ms {
                        let wait = u64::try_from(due - now_ms()).unwrap_or(0);
                        wake_at = wake_at.min(now + Duration::from_millis(wait));
                    }
                }
                Err(e) => {
                    if !self.store_failing {
                        tracing::error!(error = %e, "cannot read the journal; retrying");
                        self.store_failing = true;
                    }
                }
            }
        }
        if let Some(reopen) = self.breaker.reopens_at(Instant::now()) {
            wake_at = wake_at.min(reopen).max(Instant::now());
        }
        wake_at
    }

    /// Waits (at most [`STOP_GRACE`]) for attempts in flight, then closes the store connections.
    async fn stop(mut self) {
        if !self.tasks.is_empty() {
            tracing::info!(
                in_flight = self.tasks.len(),
                "forwarder stopping; waiting for attempts in flight"
            );
        }
        let deadline = Instant::now() + STOP_GRACE;
        loop {
            match tokio::time::timeout_at(deadline.into(), self.tasks.join_next()).await {
                Ok(Some(Ok(done))) => self.finished(done),
                Ok(Some(Err(_))) => {}
                Ok(None) => break,
                Err(_) => {
                    // Cut short, these events stay undelivered and are sent again next time.
                    tracing::warn!(
                        abandoned = self.tasks.len(),
                        "forwarder stopping with attempts in flight"
                    );
                    self.tasks.abort_all();
                    break;
                }
            }
        }
        self.store.close().await;
        for recorder in &self.recorders {
            recorder.close().await;
        }
        tracing::info!("forwarder stopped");
    }

    /// Whether this replica is the journal's forwarder, asked at most once per poll interval.
    async fn leading(&mut self) -> bool {
        let now = Instant::now();
        if let (Some(leading), Some(at)) = (self.leading, self.lead_checked) {
            if now < at + self.settings.poll_interval {
                return leading;
            }
        }
        self.lead_checked = Some(now);
        let leading = match self.store.lead().await {
            Ok(leading) => leading,
            Err(e) => {
                tracing::debug!(error = %e, "cannot take the forwarder lock");
                false
            }
        };
        match (self.leading, leading) {
            (Some(false), true) => tracing::info!("this replica now forwards the journal"),
            (None | Some(true), false) => {
                tracing::info!(
                    "another replica forwards the journal (or it is unreachable); standing by"
                )
            }
            _ => {}
        }
        self.leading = Some(leading);
        leading
    }

    /// Eligible events (heads of their conversations, due, not in flight), at most `slots`,
    /// looking at no more than about `limit` undelivered events.
    async fn pick(
        &self,
        slots: usize,
        limit: usize,
    ) -> Result<(Vec<Event>, Option<i64>), JournalError> {
        let in_flight = self.in_flight.clone();
        self.store
            .run(move |store| {
                let now = now_ms();
                let mut scan = Scan::new();
                let mut picked = Vec::new();
                let mut after = 0;
                let mut seen = 0;
                while picked.len() < slots && seen < limit {
                    let page = store.undelivered(after, PAGE)?;
                    let full = page.len() == PAGE;
                    seen += page.len();
                    for event in page {
                        after = event.id;
                        let busy = in_flight.contains(&event.id);
                        if picked.len() < slots
                            && scan.consider(
                                &event.webhook.conversation,
                                event.next_attempt_at_ms,
                                busy,
                                now,
                            )
                        {
                            picked.push(event);
                        }
                    }
                    if !full {
                        break;
                    }
                }
                Ok((picked, scan.next_due_ms()))
            })
            .await
    }

    /// One attempt: send, then record the outcome in the journal before the conversation's next
    /// event may go (so order holds even across a crash).
    fn deliver(
        &self,
        event: Event,
        retry_in: Duration,
    ) -> impl Future<Output = Done> + Send + 'static {
        let client = self.client.clone();
        let keyring = self.keyring.clone();
        let slot = usize::try_from(event.id).unwrap_or(0) % self.recorders.len().max(1);
        let store = self.recorders.get(slot).unwrap_or(&self.store).clone();
        async move {
            let id = event.id;
            let result = match request::build(&event, client.url(), &keyring) {
                Ok(forward) => client.post(&forward).await.map(|_| ()),
                Err(e) => Err(SendError::Io(format!("cannot sign: {e}"))),
            };
            let recorded = match &result {
                Ok(()) => store.run(move |s| s.mark_delivered(id, now_ms())).await,
                Err(e) => {
                    let error = e.to_string();
                    let next = now_ms()
                        .saturating_add(i64::try_from(retry_in.as_millis()).unwrap_or(i64::MAX));
                    store.run(move |s| s.record_failure(id, &error, next)).await
                }
            };
            if let Err(e) = recorded {
                // Delivered but not marked: it will be sent again (at least once, never lost).
                tracing::error!(event_id = id, error = %e, "cannot record the delivery outcome");
            }
            match &result {
                Ok(()) => tracing::debug!(event_id = id, "delivered"),
                Err(e) => {
                    tracing::debug!(event_id = id, error = %e, attempt = event.attempts + 1, retry_in_ms = retry_in.as_millis() as u64, "delivery failed")
                }
            }
            Done { id, result }
        }
    }

    fn finished(&mut self, done: Done) {
        self.in_flight.remove(&done.id);
        match done.result {
            Ok(()) => {
                self.metrics.attempt("delivered");
                self.breaker.success();
            }
            Err(e) => {
                self.metrics.attempt(e.label());
                self.breaker.failure(Instant::now());
                self.last_error = Some(e.to_string());
            }
        }
        self.observe_breaker();
    }

    fn observe_breaker(&mut self) {
        let state = self.breaker.state(Instant::now());
        if state != self.breaker_state {
            match state {
                breaker::State::Open => tracing::warn!(
                    to = %self.client.url(),
                    error = self.last_error.as_deref(),
                    cooldown_s = self.settings.breaker_cooldown.as_secs_f64(),
                    "forward target failing; circuit breaker open"
                ),
                breaker::State::HalfOpen => {
                    tracing::info!("circuit breaker half-open; probing the forward target")
                }
                breaker::State::Closed => {
                    tracing::info!("forward target answering; circuit breaker closed")
                }
            }
            self.breaker_state = state;
        }
        self.metrics.breaker(state.as_gauge());
    }

    async fn prune(&self) {
        let keep_ms = i64::try_from(self.settings.retention.as_millis()).unwrap_or(i64::MAX);
        let before = now_ms().saturating_sub(keep_ms);
        match self.store.run(move |s| s.prune_delivered(before)).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(pruned = n, "pruned delivered events past retention"),
            Err(e) => tracing::warn!(error = %e, "cannot prune the journal"),
        }
    }
}
