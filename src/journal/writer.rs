//! Group commit: request handlers hand events over a bounded channel to the writer thread and wait
//! (bounded) for the commit that holds theirs; the writer gives one batch at a time to the store
//! thread, which owns the store connection. Whatever queued up while a commit was in flight goes into
//! the next transaction, so one fsync covers many webhooks.
//!
//! When the store fails, events are not dropped: they stay in memory, in arrival order, and the
//! writer retries them (backoff up to 5 s, reconnecting) until they are written. Their callers are
//! told at once that the write failed, so the caller still gets its TwiML without waiting. Only
//! when that buffer is full are new events refused, and counted.
//!
//! The writer itself never waits on the store, so however the store hangs (a SQLite file another
//! process keeps locked, a PostgreSQL server that accepts and never answers, or is stopped), it
//! answers [`Journal::drain`] by its deadline: with the events it holds, those in the batch the store
//! thread is still busy with included. Should that batch commit after all, its events are both
//! journaled and handed over; the spill import appends by idempotency key, so they are not
//! journaled twice.

use std::collections::VecDeque;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{self as channel, Receiver, Sender, TryRecvError, TrySendError};
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

    /// The event's id, when it is in the journal.
    pub fn id(&self) -> Option<i64> {
        match self {
            Written::New(id) | Written::Duplicate(id) => Some(*id),
            Written::Failed(_) | Written::Timeout | Written::Overloaded => None,
        }
    }
}

type Ack = oneshot::Sender<Result<Appended, JournalError>>;

/// What the store thread answers for one batch.
type Outcome = Result<Vec<Appended>, JournalError>;

// Drains are rare; boxing the common variant would cost an allocation per webhook.
#[allow(clippy::large_enum_variant)]
enum Message {
    Write(NewEvent, Ack),
    /// Try the buffer once more now, then hand over the events still unwritten (at exit), at the
    /// latest at the deadline, even with a batch still in the store's hands.
    Drain(Instant, mpsc::Sender<Vec<NewEvent>>),
}

/// Time beyond a drain's deadline its caller waits for the answer: the writer thread never waits on
/// the store, so this only covers scheduling.
const REPLY_GRACE: Duration = Duration::from_millis(500);

/// The handle request handlers use; cheap to share.
#[derive(Debug)]
pub struct Journal {
    tx: Sender<Message>,
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
    /// Starts the writer, store and stats threads. The store is opened on those threads, so a
    /// journal that is down at start-up delays nothing (its events are buffered and retried).
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
        let (tx, rx) = channel::bounded(settings.queue.max(1));
        // One batch at a time is in the store's hands, so neither channel ever holds more.
        let (jobs, batches) = channel::bounded(1);
        let (outcomes, done) = channel::bounded(1);
        let store = StoreThread {
            open: open_writer,
            store: None,
        };
        thread::Builder::new()
            .name("journal-store".into())
            .spawn(move || store.run(batches, outcomes))?;
        let appended = Arc::new(Notify::new());
        let writer = Writer {
            jobs,
            done,
            appended: appended.clone(),
            url: url.clone(),
            settings: settings.clone(),
            metrics: metrics.clone(),
            events: VecDeque::new(),
            acks: VecDeque::new(),
            in_flight: None,
            failing_since: None,
            retry_at: None,
            failures: 0,
            failed_attempts: 0,
            up: metrics.snapshot().up,
            ping_at: Instant::now() + settings.ping_every,
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

    /// At exit: has the writer try once more to write what it holds, then takes the events it
    /// could not write out of it (to spill them to disk). Returns within `wait` (and a moment) even
    /// when the store does not answer: the events of the batch it is stuck on are handed over too.
    /// `None` only when the writer thread is gone.
    pub fn drain(&self, wait: Duration) -> Option<Vec<NewEvent>> {
        let (tx, rx) = mpsc::channel();
        let deadline = Instant::now() + wait;
        self.tx
            .send_deadline(Message::Drain(deadline, tx), deadline + REPLY_GRACE)
            .ok()?;
        rx.recv_timeout(deadline.saturating_duration_since(Instant::now()) + REPLY_GRACE)
            .ok()
    }
}

/// Callers waiting for the writer's next attempt to take the events it could not write, each with
/// the count of failed attempts when it asked and a deadline: it is answered once everything is
/// written, an attempt has failed since, or the deadline has come.
#[derive(Default)]
struct Drains {
    waiting: Vec<(u64, Instant, mpsc::Sender<Vec<NewEvent>>)>,
}

impl Drains {
    fn is_empty(&self) -> bool {
        self.waiting.is_empty()
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

/// Owns the store connection and appends the batches it is given, one at a time. The only thread
/// that waits on the store; when the store hangs, this thread hangs with it, and nothing else.
struct StoreThread {
    open: Opener,
    store: Option<Box<dyn Store>>,
}

impl StoreThread {
    fn run(mut self, batches: Receiver<Arc<Vec<NewEvent>>>, outcomes: Sender<Outcome>) {
        for batch in batches {
            let outcome = self.append(&batch);
            // Let go of the batch first, so the writer can take its events back without a copy.
            drop(batch);
            if outcomes.send(outcome).is_err() {
                return;
            }
        }
    }

    fn append(&mut self, batch: &[NewEvent]) -> Outcome {
        let store = match &mut self.store {
            Some(store) => store,
            None => self.store.insert((self.open)()?),
        };
        // An empty batch is the idle writer's health check.
        let outcome = match batch.is_empty() {
            true => store.ping().map(|()| Vec::new()),
            false => store.append(batch),
        };
        if outcome.is_err() {
            // Reconnect next time: the connection may be what broke.
            self.store = None;
        }
        outcome
    }
}

/// The batch the store thread is working on.
struct InFlight {
    batch: Arc<Vec<NewEvent>>,
    acks: Vec<Option<Ack>>,
    started: Instant,
    /// Handed over at exit while the store still had it: its outcome changes nothing here.
    handed_over: bool,
}

struct Writer {
    jobs: Sender<Arc<Vec<NewEvent>>>,
    done: Receiver<Outcome>,
    appended: Arc<Notify>,
    url: JournalUrl,
    settings: Settings,
    metrics: JournalMetrics,
    /// Events not yet given to the store thread, oldest first (after those in flight).
    events: VecDeque<NewEvent>,
    /// Their callers, in step with `events`; `None` once the caller has been answered.
    acks: VecDeque<Option<Ack>>,
    in_flight: Option<InFlight>,
    failing_since: Option<Instant>,
    retry_at: Option<Instant>,
    /// Writes failed in a row.
    failures: u32,
    /// Writes failed since start (what a drain waits to see change).
    failed_attempts: u64,
    /// What `journal_up` says; changes are logged once each.
    up: bool,
    /// When an idle writer next checks the store (an empty batch to the store thread).
    ping_at: Instant,
}

/// What woke the writer; lives for one turn of the loop, so the size of a message is no cost.
#[allow(clippy::large_enum_variant)]
enum Woke {
    Message(Result<Message, channel::RecvError>),
    Done(Result<Outcome, channel::RecvError>),
    Timeout,
}

impl Writer {
    fn run(mut self, rx: Receiver<Message>) {
        let mut drains = Drains::default();
        loop {
            let woke = match self.wake_at(&drains) {
                Some(at) => channel::select! {
                    recv(rx) -> m => Woke::Message(m),
                    recv(self.done) -> d => Woke::Done(d),
                    default(at.saturating_duration_since(Instant::now())) => Woke::Timeout,
                },
                None => channel::select! {
                    recv(rx) -> m => Woke::Message(m),
                    recv(self.done) -> d => Woke::Done(d),
                },
            };
            match woke {
                Woke::Message(Ok(m)) => self.take(m, &mut drains),
                Woke::Message(Err(_)) => return self.last_attempt(),
                Woke::Done(Ok(outcome)) => self.finished(outcome),
                Woke::Done(Err(_)) => {
                    // The store thread is gone (a store panicked): nothing can be written any
                    // more; events stay buffered for the exit's spill file.
                    self.done = channel::never();
                    self.finished(Err(JournalError::new("journal store thread stopped")));
                }
                Woke::Timeout => {}
            }
            // Everything that queued while we waited joins the next batch.
            self.gather(&rx, &mut drains);
            self.answer(&mut drains);
            self.start_if_due(&drains);
            self.ping_if_due();
            self.metrics.buffered(self.unwritten());
        }
    }

    /// Events held and not known to be committed.
    fn unwritten(&self) -> usize {
        let flying = self
            .in_flight
            .as_ref()
            .filter(|f| !f.handed_over)
            .map_or(0, |f| f.batch.len());
        flying + self.events.len()
    }

    /// When to look again without a message: the retry time (when events wait for one), the
    /// earliest drain deadline, or the next health check when idle.
    fn wake_at(&self, drains: &Drains) -> Option<Instant> {
        let idle = self.in_flight.is_none() && self.events.is_empty();
        let retry = self.retry_at.filter(|_| self.in_flight.is_none() && !idle);
        let drain = drains.waiting.iter().map(|(_, at, _)| *at).min();
        let ping = idle.then_some(self.ping_at);
        [retry, drain, ping].into_iter().flatten().min()
    }

    /// Checks an idle store, so `journal_up` (and `/readyz`) tell the truth between webhooks: an
    /// empty batch, which the store thread answers with a ping.
    fn ping_if_due(&mut self) {
        if self.in_flight.is_some() || !self.events.is_empty() || Instant::now() < self.ping_at {
            return;
        }
        self.ping_at = Instant::now() + self.settings.ping_every;
        let batch = Arc::new(Vec::new());
        self.in_flight = Some(InFlight {
            batch: batch.clone(),
            acks: Vec::new(),
            started: Instant::now(),
            handed_over: false,
        });
        if self.jobs.try_send(batch).is_err() {
            self.finished(Err(JournalError::new("journal store thread stopped")));
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

    /// Takes what is queued. When a batch is about to go to the store and is still small, yields a
    /// few times first: request handlers sharing the CPU get to submit theirs, so one commit covers
    /// them. (While a commit is in flight, whatever comes waits for it anyway.)
    fn gather(&mut self, rx: &Receiver<Message>, drains: &mut Drains) {
        let mut yields = 0;
        let most_yields = match self.in_flight {
            None => self.settings.gather_yields,
            Some(_) => 0,
        };
        while self.events.len() < self.settings.max_batch {
            match rx.try_recv() {
                Ok(m) => self.take(m, drains),
                Err(TryRecvError::Empty) if yields < most_yields => {
                    yields += 1;
                    thread::yield_now();
                }
                Err(_) => break,
            }
        }
    }

    fn take(&mut self, message: Message, drains: &mut Drains) {
        match message {
            Message::Write(event, ack) => {
                if self.unwritten() >= self.settings.max_buffered {
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
            Message::Drain(deadline, reply) => {
                drains.waiting.push((self.failed_attempts, deadline, reply));
            }
        }
    }

    /// Gives the store thread the oldest events (one batch) when nothing is in its hands and a
    /// retry is due or someone waits for an attempt; otherwise, while backing off, answers new
    /// callers at once instead of making them wait.
    fn start_if_due(&mut self, drains: &Drains) {
        if self.in_flight.is_some() || self.events.is_empty() {
            return;
        }
        let due = self.retry_at.is_none_or(|at| Instant::now() >= at);
        if !due && drains.is_empty() {
            self.fail_waiters("journal unavailable; event kept in memory for retry");
            return;
        }
        let n = self.events.len().min(self.settings.max_batch);
        let batch = Arc::new(self.events.drain(..n).collect::<Vec<_>>());
        let acks = self.acks.drain(..n).collect();
        let flight = InFlight {
            batch: batch.clone(),
            acks,
            started: Instant::now(),
            handed_over: false,
        };
        self.in_flight = Some(flight);
        // Never full: the store thread takes a batch only from here, one at a time.
        if self.jobs.try_send(batch).is_err() {
            self.finished(Err(JournalError::new("journal store thread stopped")));
        }
    }

    /// Takes the store thread's outcome for the batch in flight.
    fn finished(&mut self, outcome: Outcome) {
        let Some(flight) = self.in_flight.take() else {
            return;
        };
        // Any answer from the store counts as a check; a commit is as good as a ping.
        self.ping_at = Instant::now() + self.settings.ping_every;
        if flight.batch.is_empty() {
            match &outcome {
                Ok(_) => self.set_up(true, None),
                Err(e) => self.set_up(false, Some(e)),
            }
            return;
        }
        if flight.handed_over {
            if outcome.is_ok() {
                tracing::info!(
                    events = flight.batch.len(),
                    "a batch handed over at exit was committed after all; the spill import finds \
                     its events journaled and adds none twice"
                );
            }
            return;
        }
        match outcome {
            Ok(results) => {
                let n = flight.batch.len();
                self.metrics
                    .commit(n, flight.started.elapsed().as_secs_f64());
                self.set_up(true, None);
                self.appended.notify_one();
                for (ack, appended) in flight.acks.into_iter().zip(results) {
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
            }
            Err(e) => {
                // Back at the front, in order. The store thread let go of the batch before it
                // answered, so this takes the events back without copying them.
                let batch =
                    Arc::try_unwrap(flight.batch).unwrap_or_else(|shared| (*shared).clone());
                for (event, ack) in batch.into_iter().zip(flight.acks).rev() {
                    self.events.push_front(event);
                    self.acks.push_front(ack);
                }
                self.failed(e);
            }
        }
    }

    fn failed(&mut self, e: JournalError) {
        self.set_up(false, Some(&e));
        if self.failing_since.is_none() {
            self.failing_since = Some(Instant::now());
        }
        self.failures = self.failures.saturating_add(1);
        self.failed_attempts += 1;
        let retry_in = BACKOFF.ceiling(self.failures);
        tracing::error!(
            journal = %self.url,
            error = %e,
            buffered = self.events.len(),
            retry_in_ms = retry_in.as_millis() as u64,
            "journal write failed; events kept in memory and retried"
        );
        self.retry_at = Some(Instant::now() + retry_in);
        self.fail_waiters(&e.0);
    }

    /// Answers the drains whose attempt is over: everything written, or an attempt failed since
    /// they asked, or their deadline, whatever the store is doing.
    fn answer(&mut self, drains: &mut Drains) {
        // A batch already handed over no longer counts as in flight.
        let settled = |since: u64, this: &Writer| {
            this.in_flight.as_ref().is_none_or(|f| f.handed_over)
                && (this.events.is_empty() || this.failed_attempts > since)
        };
        let now = Instant::now();
        let (done, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut drains.waiting)
            .into_iter()
            .partition(|(since, deadline, _)| settled(*since, self) || now >= *deadline);
        drains.waiting = waiting;
        if done.is_empty() {
            return;
        }
        let events = self.hand_over();
        for (_, _, reply) in done {
            let _ = reply.send(events.clone());
        }
    }

    /// Takes every unwritten event out of the writer, the batch the store still has included.
    fn hand_over(&mut self) -> Vec<NewEvent> {
        self.fail_waiters("process exiting; event handed over for the spill file");
        self.acks.clear();
        let mut events = Vec::with_capacity(self.unwritten());
        if let Some(flight) = self
            .in_flight
            .as_mut()
            .filter(|f| !f.handed_over && !f.batch.is_empty())
        {
            tracing::error!(
                events = flight.batch.len(),
                waited_ms = flight.started.elapsed().as_millis() as u64,
                journal = %self.url,
                "the journal store has not answered a write at exit; its events are handed over \
                 with the rest"
            );
            flight.handed_over = true;
            for ack in flight.acks.iter_mut() {
                if let Some(ack) = ack.take() {
                    let _ = ack.send(Err(JournalError::new("process exiting")));
                }
            }
            events.extend(flight.batch.iter().cloned());
        }
        events.extend(self.events.drain(..));
        // Before the answer, so whoever sees the events handed over sees the gauge at 0.
        self.metrics.buffered(0);
        events
    }

    fn fail_waiters(&mut self, message: &str) {
        // Before the answers go out, so whoever sees an error also sees the event counted.
        self.metrics.buffered(self.unwritten());
        for ack in self.acks.iter_mut() {
            if let Some(ack) = ack.take() {
                let _ = ack.send(Err(JournalError::new(message)));
            }
        }
    }

    /// Every handle is gone: one last try for what is left (bounded: nothing waits for this
    /// thread), then say what is lost.
    fn last_attempt(mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let failed = self.failed_attempts;
        loop {
            if self.in_flight.is_none() {
                if self.events.is_empty() || self.failed_attempts > failed {
                    break;
                }
                self.retry_at = None;
                self.start_if_due(&Drains::default());
                continue;
            }
            match self.done.recv_deadline(deadline) {
                Ok(outcome) => self.finished(outcome),
                Err(_) => break,
            }
        }
        let lost = self.unwritten();
        if lost > 0 {
            tracing::error!(lost, "journal writer stopping with unwritten events");
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
            if let Err(mpsc::RecvTimeoutError::Disconnected) = stop.recv_timeout(self.every) {
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
    use crate::twilio::Role;

    /// A store in memory that can be switched off.
    #[derive(Default)]
    struct Fake {
        down: bool,
        /// Appends wait while set, as on a locked file or a server that stopped answering.
        hang: bool,
        keys: Vec<String>,
    }

    struct FakeStore(Arc<Mutex<Fake>>);

    impl Store for FakeStore {
        fn append(&mut self, batch: &[NewEvent]) -> Result<Vec<Appended>, JournalError> {
            while self.0.lock().unwrap().hang {
                std::thread::sleep(Duration::from_millis(5));
            }
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
            role: Role::Primary,
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
        assert_eq!(journal.drain(Duration::from_secs(5)), Some(Vec::new()));
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
        assert_eq!(journal.drain(Duration::from_secs(5)), Some(Vec::new()));
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
    async fn a_store_that_hangs_gets_a_bounded_time_then_every_event_is_handed_over() {
        let fake: Arc<Mutex<Fake>> = Arc::default();
        fake.lock().unwrap().hang = true;
        let (journal, metrics) = start(&fake, quick());
        let first = journal.submit(event("1"));
        // The store thread takes the first batch and hangs; the next ones wait behind it.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let later: Vec<Pending> = ["2", "3"]
            .iter()
            .map(|k| journal.submit(event(k)))
            .collect();
        let started = Instant::now();
        let left = journal.drain(Duration::from_millis(300)).unwrap();
        let waited = started.elapsed();
        assert!(
            (Duration::from_millis(300)..Duration::from_millis(800)).contains(&waited),
            "{waited:?}"
        );
        let keys: Vec<_> = left.iter().map(|e| e.idempotency_key.as_str()).collect();
        assert_eq!(keys, ["1", "2", "3"], "in order, the stuck batch first");
        assert!(matches!(journal.wait(first).await, Written::Failed(_)));
        for p in later {
            assert!(matches!(journal.wait(p).await, Written::Failed(_)));
        }
        assert!(metrics
            .encode()
            .contains("twiml_failover_journal_buffered_events 0"));
        // The store comes back and commits what it had: those events are now both journaled and
        // handed over, which the spill import's idempotency keys absorb; nothing is handed over
        // twice.
        fake.lock().unwrap().hang = false;
        let deadline = Instant::now() + Duration::from_secs(5);
        while fake.lock().unwrap().keys.is_empty() {
            assert!(Instant::now() < deadline, "the stuck append never finished");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(fake.lock().unwrap().keys, ["1"]);
        assert_eq!(journal.drain(Duration::from_secs(1)), Some(Vec::new()));
        let _ = journal.wait(journal.submit(event("4"))).await;
        assert_eq!(journal.drain(Duration::from_secs(5)), Some(Vec::new()));
        assert_eq!(fake.lock().unwrap().keys, ["1", "4"]);
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
        assert_eq!(journal.drain(Duration::from_secs(5)), Some(Vec::new()));
        assert_eq!(fake.lock().unwrap().keys, ["1", "2"]);
    }
}
