//! Group commit: one thread owns one store connection; request handlers hand it events over a
//! bounded channel and wait (bounded) for the commit that holds theirs. Whatever queued up while a
//! commit was in flight goes into the next transaction, so one fsync covers many webhooks.
//!
//! When the store fails, events are not dropped: they stay in memory, in arrival order, and the
//! writer retries them (backoff up to 5 s, reconnecting) until they are written. Their callers are
//! told at once that the write failed, so the caller still gets its TwiML without waiting. Only
//! when that buffer is full are new events refused, and counted.

use std::collections::VecDeque;
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, Notify};

use super::time::now_ms;
use super::{open, Appended, JournalError, JournalUrl, NewEvent, Store};
use crate::backoff::Backoff;
use crate::metrics::JournalMetrics;

/// Writer tuning.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How long a request waits for its commit before answering anyway.
    pub timeout: Duration,
    /// Most events in one transaction.
    pub max_batch: usize,
    /// Events waiting for the writer; beyond it requests do not wait (counted `overloaded`).
    pub queue: usize,
    /// Events kept in memory while the store is failing; beyond it new events are dropped.
    pub max_buffered: usize,
    /// How often the backlog gauges are refreshed.
    pub stats_every: Duration,
    /// Times the writer yields the CPU to let more events queue before a commit.
    pub gather_yields: u32,
    /// Whether something delivers the events (`--forward-to`): then the backlog gauges are kept
    /// and the forwarder prunes delivered events; otherwise events received longer than
    /// `retention` ago are pruned here.
    pub forwarding: bool,
    /// How long events are kept (see `forwarding`).
    pub retention: Duration,
    /// How often an idle writer checks that the store still answers (`journal_up`).
    pub ping_every: Duration,
    /// How often the journal's state is logged (`journal status`, for log-based alerts).
    pub status_every: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            timeout: Duration::from_secs(1),
            max_batch: 1024,
            queue: 16_384,
            max_buffered: 100_000,
            stats_every: Duration::from_secs(5),
            // Measured with benches/journal.sh: 4 raised req/s by half with the server on one CPU.
            gather_yields: 4,
            forwarding: true,
            retention: Duration::from_secs(7 * 86_400),
            ping_every: Duration::from_secs(5),
            status_every: Duration::from_secs(30),
        }
    }
}

/// What became of one event, as the request handler sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    /// Committed now under this id.
    New(i64),
    /// Already journaled (a Twilio retry) under this id.
    Duplicate(i64),
    /// Not committed: the store failed (the writer keeps it in memory and retries).
    Failed(String),
    /// Not committed within the timeout (it may still be, later).
    Timeout,
    /// Not queued: the writer's queue is full.
    Overloaded,
}

impl Written {
    /// The metric label.
    pub fn label(&self) -> &'static str {
        match self {
            Written::New(_) => "new",
            Written::Duplicate(_) => "duplicate",
            Written::Failed(_) => "error",
            Written::Timeout => "timeout",
            Written::Overloaded => "overloaded",
        }
    }
}

type Ack = oneshot::Sender<Result<Appended, JournalError>>;

// Flushes are rare; boxing the common variant would cost an allocation per webhook.
#[allow(clippy::large_enum_variant)]
enum Message {
    Write(NewEvent, Ack),
    /// Try the buffer once more now, then report how many events are still unwritten.
    Flush(mpsc::Sender<usize>),
    /// Try the buffer once more now, then hand over the events still unwritten (at exit).
    Drain(mpsc::Sender<Vec<NewEvent>>),
}

/// The handle request handlers use; cheap to share.
#[derive(Debug)]
pub struct Journal {
    tx: SyncSender<Message>,
    timeout: Duration,
    metrics: JournalMetrics,
    url: JournalUrl,
    /// Pinged after every commit, so the forwarder picks new events up at once.
    appended: Arc<Notify>,
    /// Dropped with the handle, which ends the stats thread.
    _stop_stats: mpsc::Sender<()>,
}

/// An event handed to the writer, not yet known to be committed.
#[derive(Debug)]
pub struct Pending {
    state: PendingState,
    timeout: Duration,
}

#[derive(Debug)]
enum PendingState {
    Queued(oneshot::Receiver<Result<Appended, JournalError>>),
    Refused(Written),
}

impl Journal {
    /// Starts the writer and stats threads. The store is opened on those threads, so a journal
    /// that is down at start-up delays nothing (its events are buffered and retried).
    pub fn start(
        url: JournalUrl,
        settings: Settings,
        metrics: JournalMetrics,
    ) -> std::io::Result<Journal> {
        let (writer_url, stats_url) = (url.clone(), url.clone());
        Journal::start_with(
            url,
            Box::new(move || open(&writer_url)),
            Box::new(move || open(&stats_url)),
            settings,
            metrics,
        )
    }

    /// Like `start`, with the way each thread opens its store given (tests use a fake store).
    pub fn start_with(
        url: JournalUrl,
        open_writer: Opener,
        open_stats: Opener,
        settings: Settings,
        metrics: JournalMetrics,
    ) -> std::io::Result<Journal> {
        let (tx, rx) = mpsc::sync_channel(settings.queue.max(1));
        let appended = Arc::new(Notify::new());
        let writer = Writer {
            open: open_writer,
            appended: appended.clone(),
            url: url.clone(),
            store: None,
            settings: settings.clone(),
            metrics: metrics.clone(),
            events: VecDeque::new(),
            acks: VecDeque::new(),
            failing_since: None,
            retry_at: None,
            failures: 0,
            up: metrics.snapshot().up,
        };
        thread::Builder::new()
            .name("journal-writer".into())
            .spawn(move || writer.run(rx))?;
        let maintenance = Maintenance {
            open: open_stats,
            metrics: metrics.clone(),
            every: settings.stats_every,
            forwarding: settings.forwarding,
            retention: settings.retention,
            status_every: settings.status_every,
        };
        let (stop_stats, stopped) = mpsc::channel();
        thread::Builder::new()
            .name("journal-stats".into())
            .spawn(move || maintenance.run(stopped))?;
        Ok(Journal {
            appended,
            _stop_stats: stop_stats,
            tx,
            timeout: settings.timeout,
            metrics,
            url,
        })
    }

    /// Where the journal is (password hidden by `Display`).
    pub fn url(&self) -> &JournalUrl {
        &self.url
    }

    /// The journal's gauges now (`/readyz` shows whether the store answers).
    pub fn health(&self) -> crate::metrics::JournalSnapshot {
        self.metrics.snapshot()
    }

    /// Notified (`notify_one`, so a ping is never lost) after each commit of new events.
    pub fn appended(&self) -> Arc<Notify> {
        self.appended.clone()
    }

    /// Hands an event to the writer without waiting.
    pub fn submit(&self, event: NewEvent) -> Pending {
        let (ack, done) = oneshot::channel();
        let state = match self.tx.try_send(Message::Write(event, ack)) {
            Ok(()) => PendingState::Queued(done),
            Err(TrySendError::Full(_)) => PendingState::Refused(Written::Overloaded),
            Err(TrySendError::Disconnected(_)) => {
                PendingState::Refused(Written::Failed("journal writer stopped".into()))
            }
        };
        Pending {
            state,
            timeout: self.timeout,
        }
    }

    /// Waits (bounded) for a submitted event's commit and counts the result.
    pub async fn wait(&self, pending: Pending) -> Written {
        let written = match pending.state {
            PendingState::Refused(w) => w,
            PendingState::Queued(done) => match tokio::time::timeout(pending.timeout, done).await {
                Ok(Ok(Ok(Appended::New(id)))) => Written::New(id),
                Ok(Ok(Ok(Appended::Duplicate(id)))) => Written::Duplicate(id),
                Ok(Ok(Err(e))) => Written::Failed(e.0),
                Ok(Err(_)) => Written::Failed("journal writer stopped".into()),
                Err(_) => Written::Timeout,
            },
        };
        self.metrics.write(written.label());
        written
    }

    /// Asks the writer to write what it holds, waiting at most `wait`; returns how many events
    /// are still unwritten (lost if the process exits now).
    pub fn flush(&self, wait: Duration) -> usize {
        let (tx, rx) = mpsc::channel();
        let deadline = Instant::now() + wait;
        loop {
            match self.tx.try_send(Message::Flush(tx.clone())) {
                Ok(()) => break,
                Err(TrySendError::Full(_)) if Instant::now() < deadline => {
                    thread::sleep(Duration::from_millis(10));
                }
                Err(_) => return usize::MAX,
            }
        }
        rx.recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or(usize::MAX)
    }

    /// At exit: has the writer try once more to write what it holds, then takes the events it
    /// could not write out of it (to spill them to disk). `None` when the writer did not answer
    /// within `wait` (stuck in the store): its events are then out of reach.
    pub fn drain(&self, wait: Duration) -> Option<Vec<NewEvent>> {
        let (tx, rx) = mpsc::channel();
        let deadline = Instant::now() + wait;
        let mut message = Message::Drain(tx);
        loop {
            match self.tx.try_send(message) {
                Ok(()) => break,
                Err(TrySendError::Full(m)) if Instant::now() < deadline => {
                    message = m;
                    thread::sleep(Duration::from_millis(10));
                }
                Err(_) => return None,
            }
        }
        rx.recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .ok()
    }
}

/// Callers waiting for the writer's next attempt.
#[derive(Default)]
struct Flushes {
    /// Want the count of events still unwritten.
    counts: Vec<mpsc::Sender<usize>>,
    /// Want the unwritten events themselves.
    drains: Vec<mpsc::Sender<Vec<NewEvent>>>,
}

impl Flushes {
    fn is_empty(&self) -> bool {
        self.counts.is_empty() && self.drains.is_empty()
    }
}

/// Retry delays after a failed write: 100 ms doubling up to 5 s, without jitter (one writer per
/// process: there is no crowd of retries to spread).
const BACKOFF: Backoff = Backoff {
    base: Duration::from_millis(100),
    cap: Duration::from_secs(5),
};

/// Opens a store connection (on the thread that will use it).
pub type Opener = Box<dyn FnMut() -> Result<Box<dyn Store>, JournalError> + Send>;

struct Writer {
    open: Opener,
    appended: Arc<Notify>,
    url: JournalUrl,
    store: Option<Box<dyn Store>>,
    settings: Settings,
    metrics: JournalMetrics,
    /// Events not yet committed, oldest first.
    events: VecDeque<NewEvent>,
    /// Their callers, in step with `events`; `None` once the caller has been answered.
    acks: VecDeque<Option<Ack>>,
    failing_since: Option<Instant>,
    retry_at: Option<Instant>,
    /// Writes failed in a row.
    failures: u32,
    /// What `journal_up` says; changes are logged once each.
    up: bool,
}

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Message>) {
        let mut flushes = Flushes::default();
        loop {
            // Wait for work: until the next health check when idle, until the retry time when
            // holding failed events.
            let first = match (self.events.is_empty(), self.retry_at) {
                (true, _) => rx.recv_timeout(self.settings.ping_every),
                (false, Some(at)) => rx.recv_timeout(at.saturating_duration_since(Instant::now())),
                (false, None) => Err(RecvTimeoutError::Timeout),
            };
            match first {
                Ok(m) => self.take(m, &mut flushes),
                Err(RecvTimeoutError::Timeout) if self.events.is_empty() => {
                    self.ping();
                    continue;
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    self.attempt();
                    self.report_loss();
                    return;
                }
            }
            // Everything that queued while we waited or committed joins this batch.
            self.gather(&rx, &mut flushes);
            let due = self.retry_at.is_none_or(|at| Instant::now() >= at);
            if due || !flushes.is_empty() {
                self.attempt();
            } else {
                // Still backing off: answer the new callers now instead of making them wait.
                self.fail_waiters("journal unavailable; event kept in memory for retry");
            }
            for f in flushes.counts.drain(..) {
                let _ = f.send(self.events.len());
            }
            if !flushes.drains.is_empty() {
                self.fail_waiters("process exiting; event handed over for the spill file");
                self.acks.clear();
                let events: Vec<NewEvent> = self.events.drain(..).collect();
                // Before the answer, so whoever sees the events handed over sees the gauge at 0.
                self.metrics.buffered(0);
                for d in flushes.drains.drain(..) {
                    let _ = d.send(events.clone());
                }
            }
            self.metrics.buffered(self.events.len());
        }
    }

    /// Takes what is queued into the batch. When the batch is still small, yields a few times
    /// first: request handlers sharing the CPU get to submit theirs, so one commit covers them.
    fn gather(&mut self, rx: &mpsc::Receiver<Message>, flushes: &mut Flushes) {
        let mut yields = 0;
        while self.events.len() < self.settings.max_batch {
            match rx.try_recv() {
                Ok(m) => self.take(m, flushes),
                Err(TryRecvError::Empty) if yields < self.settings.gather_yields => {
                    yields += 1;
                    thread::yield_now();
                }
                Err(_) => break,
            }
        }
    }

    fn take(&mut self, message: Message, flushes: &mut Flushes) {
        match message {
            Message::Write(event, ack) => {
                if self.events.len() >= self.settings.max_buffered {
                    self.metrics.dropped();
                    tracing::error!(
                        idempotency_key = event.idempotency_key.as_str(),
                        // A number, so log-based alerts can sum it (deploy/aws, deploy/cloudrun).
                        dropped = 1u64,
                        "journal retry buffer full; event dropped"
                    );
                    let _ = ack.send(Err(JournalError::new(
                        "journal unavailable and retry buffer full",
                    )));
                } else {
                    self.events.push_back(event);
                    self.acks.push_back(Some(ack));
                }
            }
            Message::Flush(reply) => flushes.counts.push(reply),
            Message::Drain(reply) => flushes.drains.push(reply),
        }
    }

    /// Commits the oldest events (one batch), or schedules a retry.
    fn attempt(&mut self) {
        while !self.events.is_empty() {
            let n = self.events.len().min(self.settings.max_batch);
            if self.store.is_none() {
                match (self.open)() {
                    Ok(store) => self.store = Some(store),
                    Err(e) => {
                        self.failed(e);
                        return;
                    }
                }
            }
            let started = Instant::now();
            let result = match self.store.as_mut() {
                Some(store) => store.append(&self.events.make_contiguous()[..n]),
                None => continue,
            };
            match result {
                Ok(results) => {
                    self.metrics.commit(n, started.elapsed().as_secs_f64());
                    self.set_up(true, None);
                    self.appended.notify_one();
                    self.events.drain(..n);
                    self.metrics.buffered(self.events.len());
                    for (ack, appended) in self.acks.drain(..n).zip(results) {
                        if let Some(ack) = ack {
                            let _ = ack.send(Ok(appended));
                        }
                    }
                    if let Some(since) = self.failing_since.take() {
                        tracing::info!(
                            down_for_s = since.elapsed().as_secs(),
                            "journal writes succeed again; buffered events written"
                        );
                    }
                    self.retry_at = None;
                    self.failures = 0;
                    // Commit only one batch per turn while callers wait; the rest are already
                    // answered (buffered during an outage) and may take a few turns.
                    if self.acks.iter().any(Option::is_some) {
                        continue;
                    }
                }
                Err(e) => {
                    self.failed(e);
                    return;
                }
            }
            if self.events.is_empty() {
                return;
            }
        }
    }

    /// Checks an idle store, so `journal_up` (and `/readyz`) tell the truth between webhooks.
    fn ping(&mut self) {
        let result = match self.store.as_mut() {
            Some(store) => store.ping(),
            None => (self.open)().map(|store| {
                self.store = Some(store);
            }),
        };
        match result {
            Ok(()) => self.set_up(true, None),
            Err(e) => {
                self.store = None;
                self.set_up(false, Some(&e));
            }
        }
    }

    fn set_up(&mut self, up: bool, error: Option<&JournalError>) {
        self.metrics.up(up);
        if up == self.up {
            return;
        }
        self.up = up;
        match error {
            None => tracing::info!(journal = %self.url, "journal store answers again"),
            Some(e) => tracing::error!(
                journal = %self.url,
                error = %e,
                "journal store does not answer; webhooks are still answered, their events held in \
                 memory and retried"
            ),
        }
    }

    fn failed(&mut self, e: JournalError) {
        self.set_up(false, Some(&e));
        if self.failing_since.is_none() {
            self.failing_since = Some(Instant::now());
        }
        self.failures = self.failures.saturating_add(1);
        let retry_in = BACKOFF.ceiling(self.failures);
        tracing::error!(
            journal = %self.url,
            error = %e,
            buffered = self.events.len(),
            retry_in_ms = retry_in.as_millis() as u64,
            "journal write failed; events kept in memory and retried"
        );
        // Reconnect next time: the connection may be what broke.
        self.store = None;
        self.retry_at = Some(Instant::now() + retry_in);
        self.fail_waiters(&e.0);
    }

    fn fail_waiters(&mut self, message: &str) {
        // Before the answers go out, so whoever sees an error also sees the event counted.
        self.metrics.buffered(self.events.len());
        for ack in self.acks.iter_mut() {
            if let Some(ack) = ack.take() {
                let _ = ack.send(Err(JournalError::new(message)));
            }
        }
    }

    fn report_loss(&self) {
        if !self.events.is_empty() {
            tracing::error!(
                lost = self.events.len(),
                "journal writer stopping with unwritten events"
            );
        }
    }
}

/// The journal's upkeep on a connection of its own: the backlog gauges when something forwards,
/// retention when nothing does (the forwarder prunes what it delivered).
struct Maintenance {
    open: Opener,
    metrics: JournalMetrics,
    every: Duration,
    forwarding: bool,
    retention: Duration,
    status_every: Duration,
}

impl Maintenance {
    fn run(mut self, stop: mpsc::Receiver<()>) {
        let mut store: Option<Box<dyn Store>> = None;
        // Pruning is due at once, then every tenth of the retention (1 min .. 1 h).
        let mut prune_at = Instant::now();
        let mut status_at = Instant::now();
        loop {
            if store.is_none() {
                store = (self.open)().ok();
            }
            if let Some(s) = store.as_mut() {
                if let Err(e) = self.tick(s.as_mut(), &mut prune_at) {
                    tracing::warn!(error = %e, "journal upkeep query failed");
                    store = None;
                }
            }
            if Instant::now() >= status_at {
                self.log_status();
                status_at = Instant::now() + self.status_every;
            }
            if let Err(RecvTimeoutError::Disconnected) = stop.recv_timeout(self.every) {
                return;
            }
        }
    }

    /// One line with the journal's gauges, named like the metrics, for platforms that alert on
    /// logs instead of scraping `/metrics` (CloudWatch metric filters, Cloud Logging metrics).
    fn log_status(&self) {
        let now = self.metrics.snapshot();
        let forwarding = self.forwarding.then_some(now);
        tracing::info!(
            journal_up = u8::from(now.up),
            journal_buffered_events = now.buffered,
            journal_dropped_total = now.dropped,
            journal_backlog_events = forwarding.map(|n| n.backlog),
            journal_oldest_undelivered_age_seconds =
                forwarding.map(|n| n.oldest_undelivered_age_seconds),
            "journal status"
        );
    }

    fn tick(&self, store: &mut dyn Store, prune_at: &mut Instant) -> Result<(), JournalError> {
        if self.forwarding {
            let stats = store.stats()?;
            let age = stats
                .oldest_undelivered_ms
                .map_or(0.0, |t| (now_ms() - t).max(0) as f64 / 1000.0);
            self.metrics.backlog(stats.undelivered, age);
            return Ok(());
        }
        if Instant::now() >= *prune_at {
            let keep_ms = i64::try_from(self.retention.as_millis()).unwrap_or(i64::MAX);
            let pruned = store.prune_received(now_ms().saturating_sub(keep_ms))?;
            if pruned > 0 {
                tracing::info!(pruned, "pruned journaled events past retention");
            }
            *prune_at = Instant::now() + prune_interval(self.retention);
        }
        Ok(())
    }
}

/// How often retention is enforced: a tenth of the retention, between a minute and an hour.
pub fn prune_interval(retention: Duration) -> Duration {
    (retention / 10).clamp(Duration::from_secs(60), Duration::from_secs(3600))
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::journal::{Event, Stats};
    use crate::metrics::Metrics;

    /// A store in memory that can be switched off.
    #[derive(Default)]
    struct Fake {
        down: bool,
        keys: Vec<String>,
    }

    struct FakeStore(Arc<Mutex<Fake>>);

    impl Store for FakeStore {
        fn append(&mut self, batch: &[NewEvent]) -> Result<Vec<Appended>, JournalError> {
            let mut f = self.0.lock().unwrap();
            if f.down {
                return Err(JournalError::new("store down"));
            }
            Ok(batch
                .iter()
                .map(
                    |e| match f.keys.iter().position(|k| *k == e.idempotency_key) {
                        Some(i) => Appended::Duplicate(i as i64 + 1),
                        None => {
                            f.keys.push(e.idempotency_key.clone());
                            Appended::New(f.keys.len() as i64)
                        }
                    },
                )
                .collect())
        }
        fn undelivered(&mut self, _: i64, _: usize) -> Result<Vec<Event>, JournalError> {
            Ok(Vec::new())
        }
        fn mark_delivered(&mut self, _: i64, _: i64) -> Result<(), JournalError> {
            Ok(())
        }
        fn record_failure(&mut self, _: i64, _: &str, _: i64) -> Result<(), JournalError> {
            Ok(())
        }
        fn stats(&mut self) -> Result<Stats, JournalError> {
            let n = self.0.lock().unwrap().keys.len() as u64;
            Ok(Stats {
                total: n,
                undelivered: n,
                ..Stats::default()
            })
        }
        fn list(&mut self, _: Option<i64>, _: usize) -> Result<Vec<Event>, JournalError> {
            Ok(Vec::new())
        }
        fn get(&mut self, _: i64) -> Result<Option<Event>, JournalError> {
            Ok(None)
        }
        fn prune_delivered(&mut self, _: i64) -> Result<u64, JournalError> {
            Ok(0)
        }
        fn prune_received(&mut self, _: i64) -> Result<u64, JournalError> {
            Ok(0)
        }
        fn ping(&mut self) -> Result<(), JournalError> {
            match self.0.lock().unwrap().down {
                true => Err(JournalError::new("store down")),
                false => Ok(()),
            }
        }
    }

    fn event(key: &str) -> NewEvent {
        NewEvent {
            received_at_ms: 0,
            role: "primary".into(),
            method: "POST".into(),
            url: "http://x/sms".into(),
            path: "/sms".into(),
            params: Vec::new(),
            error_code: None,
            error_url: None,
            idempotency_key: key.into(),
            conversation: key.into(),
            account_sid: None,
        }
    }

    fn start(fake: &Arc<Mutex<Fake>>, settings: Settings) -> (Journal, Metrics) {
        let mut metrics = Metrics::new("primary");
        metrics.enable_journal();
        metrics.enable_forward();
        let (a, b) = (fake.clone(), fake.clone());
        let journal = Journal::start_with(
            "sqlite:///fake.db".parse().unwrap(),
            Box::new(move || Ok(Box::new(FakeStore(a.clone())) as Box<dyn Store>)),
            Box::new(move || Ok(Box::new(FakeStore(b.clone())) as Box<dyn Store>)),
            settings,
            metrics.journal.clone(),
        )
        .unwrap();
        (journal, metrics)
    }

    fn quick() -> Settings {
        Settings {
            stats_every: Duration::from_millis(20),
            ping_every: Duration::from_millis(20),
            ..Settings::default()
        }
    }

    #[tokio::test]
    async fn an_idle_writer_finds_out_when_the_store_goes_and_comes_back() {
        let fake: Arc<Mutex<Fake>> = Arc::default();
        let (_journal, metrics) = start(&fake, quick());
        let wait_for = |line: &'static str| {
            let metrics = &metrics;
            async move {
                let deadline = Instant::now() + Duration::from_secs(5);
                while !metrics.encode().contains(line) {
                    assert!(Instant::now() < deadline, "never: {line}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        };
        wait_for("twiml_failover_journal_up 1").await;
        // No webhook arrives: the idle check alone notices.
        fake.lock().unwrap().down = true;
        wait_for("twiml_failover_journal_up 0").await;
        fake.lock().unwrap().down = false;
        wait_for("twiml_failover_journal_up 1").await;
    }

    #[tokio::test]
    async fn each_caller_learns_its_own_row_and_retries_are_duplicates() {
        let fake = Arc::default();
        let (journal, metrics) = start(&fake, quick());
        let pending: Vec<Pending> = ["a", "b", "a", "c"]
            .iter()
            .map(|k| journal.submit(event(k)))
            .collect();
        let mut results = Vec::new();
        for p in pending {
            results.push(journal.wait(p).await);
        }
        assert_eq!(
            results,
            [
                Written::New(1),
                Written::New(2),
                Written::Duplicate(1),
                Written::New(3)
            ]
        );
        assert_eq!(journal.flush(Duration::from_secs(5)), 0);
        let text = metrics.encode();
        assert!(
            text.contains("journal_writes_total{result=\"new\"} 3"),
            "{text}"
        );
        assert!(text.contains("journal_writes_total{result=\"duplicate\"} 1"));
    }

    #[tokio::test]
    async fn an_outage_answers_at_once_and_writes_everything_later_in_order() {
        let fake: Arc<Mutex<Fake>> = Arc::default();
        fake.lock().unwrap().down = true;
        let (journal, metrics) = start(&fake, quick());
        for k in ["1", "2", "3"] {
            let written = journal.wait(journal.submit(event(k))).await;
            assert!(matches!(written, Written::Failed(_)), "{written:?}");
        }
        assert!(metrics
            .encode()
            .contains("twiml_failover_journal_buffered_events 3"));
        fake.lock().unwrap().down = false;
        // Newer events queue behind the buffered ones.
        let fourth = journal.submit(event("4"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while fake.lock().unwrap().keys.len() < 4 {
            assert!(Instant::now() < deadline, "buffered events never written");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(fake.lock().unwrap().keys, ["1", "2", "3", "4"]);
        assert!(matches!(
            journal.wait(fourth).await,
            Written::New(4) | Written::Failed(_)
        ));
        assert_eq!(journal.flush(Duration::from_secs(5)), 0);
        assert!(metrics
            .encode()
            .contains("twiml_failover_journal_buffered_events 0"));
        // The stats thread reports the backlog from the store.
        while !metrics
            .encode()
            .contains("twiml_failover_journal_backlog_events 4")
        {
            assert!(Instant::now() < deadline, "backlog gauge never refreshed");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[test]
    fn retention_is_enforced_often_enough_but_not_constantly() {
        let h = |n: u64| Duration::from_secs(n * 3600);
        assert_eq!(prune_interval(h(7 * 24)), h(1));
        assert_eq!(prune_interval(h(2)), Duration::from_secs(720));
        assert_eq!(
            prune_interval(Duration::from_secs(300)),
            Duration::from_secs(60)
        );
    }

    #[tokio::test]
    async fn drain_hands_over_what_the_store_would_not_take() {
        let fake: Arc<Mutex<Fake>> = Arc::default();
        fake.lock().unwrap().down = true;
        let (journal, metrics) = start(&fake, quick());
        for k in ["1", "2"] {
            let _ = journal.wait(journal.submit(event(k))).await;
        }
        let left = journal.drain(Duration::from_secs(5)).unwrap();
        let keys: Vec<_> = left.iter().map(|e| e.idempotency_key.as_str()).collect();
        assert_eq!(keys, ["1", "2"]);
        assert!(metrics
            .encode()
            .contains("twiml_failover_journal_buffered_events 0"));
        // With the store up, nothing is left to hand over.
        fake.lock().unwrap().down = false;
        let _ = journal.wait(journal.submit(event("3"))).await;
        assert_eq!(journal.drain(Duration::from_secs(5)), Some(Vec::new()));
        assert_eq!(fake.lock().unwrap().keys, ["3"]);
    }

    #[tokio::test]
    async fn a_full_buffer_drops_and_counts() {
        let fake: Arc<Mutex<Fake>> = Arc::default();
        fake.lock().unwrap().down = true;
        let settings = Settings {
            max_buffered: 2,
            ..quick()
        };
        let (journal, metrics) = start(&fake, settings);
        for k in ["1", "2", "3"] {
            let _ = journal.wait(journal.submit(event(k))).await;
        }
        let text = metrics.encode();
        assert!(
            text.contains("twiml_failover_journal_dropped_total 1"),
            "{text}"
        );
        fake.lock().unwrap().down = false;
        assert_eq!(journal.flush(Duration::from_secs(5)), 0);
        assert_eq!(fake.lock().unwrap().keys, ["1", "2"]);
    }
}
