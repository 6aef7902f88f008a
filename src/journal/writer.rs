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
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            timeout: Duration::from_secs(1),
            max_batch: 1024,
            queue: 16_384,
            max_buffered: 100_000,
            stats_every: Duration::from_secs(5),
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
        let (tx, rx) = mpsc::sync_channel(settings.queue.max(1));
        let appended = Arc::new(Notify::new());
        let writer = Writer {
            appended: appended.clone(),
            url: url.clone(),
            store: None,
            settings: settings.clone(),
            metrics: metrics.clone(),
            buffer: VecDeque::new(),
            failing_since: None,
            retry_at: None,
            backoff: INITIAL_BACKOFF,
        };
        thread::Builder::new()
            .name("journal-writer".into())
            .spawn(move || writer.run(rx))?;
        let (stats_url, stats_metrics, every) =
            (url.clone(), metrics.clone(), settings.stats_every);
        let (stop_stats, stopped) = mpsc::channel();
        thread::Builder::new()
            .name("journal-stats".into())
            .spawn(move || refresh_stats(stats_url, stats_metrics, every, stopped))?;
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
}

const INITIAL_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

struct Writer {
    appended: Arc<Notify>,
    url: JournalUrl,
    store: Option<Box<dyn Store>>,
    settings: Settings,
    metrics: JournalMetrics,
    /// Events not yet committed, oldest first; the ack is gone once the caller has been answered.
    buffer: VecDeque<(NewEvent, Option<Ack>)>,
    failing_since: Option<Instant>,
    retry_at: Option<Instant>,
    backoff: Duration,
}

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Message>) {
        let mut flushes: Vec<mpsc::Sender<usize>> = Vec::new();
        loop {
            // Wait for work: forever when idle, until the retry time when holding failed events.
            let first = match (self.buffer.is_empty(), self.retry_at) {
                (true, _) => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
                (false, Some(at)) => rx.recv_timeout(at.saturating_duration_since(Instant::now())),
                (false, None) => Err(RecvTimeoutError::Timeout),
            };
            match first {
                Ok(m) => self.take(m, &mut flushes),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    self.attempt();
                    self.report_loss();
                    return;
                }
            }
            // Everything that queued while we waited or committed joins this batch.
            while self.buffer.len() < self.settings.max_batch {
                match rx.try_recv() {
                    Ok(m) => self.take(m, &mut flushes),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => break,
                }
            }
            let due = self.retry_at.is_none_or(|at| Instant::now() >= at);
            if due || !flushes.is_empty() {
                self.attempt();
            } else {
                // Still backing off: answer the new callers now instead of making them wait.
                self.fail_waiters("journal unavailable; event kept in memory for retry");
            }
            for f in flushes.drain(..) {
                let _ = f.send(self.buffer.len());
            }
            self.metrics.buffered(self.buffer.len());
        }
    }

    fn take(&mut self, message: Message, flushes: &mut Vec<mpsc::Sender<usize>>) {
        match message {
            Message::Write(event, ack) => {
                if self.buffer.len() >= self.settings.max_buffered {
                    self.metrics.dropped();
                    tracing::error!(
                        idempotency_key = %event.idempotency_key,
                        "journal retry buffer full; event dropped"
                    );
                    let _ = ack.send(Err(JournalError::new(
                        "journal unavailable and retry buffer full",
                    )));
                } else {
                    self.buffer.push_back((event, Some(ack)));
                }
            }
            Message::Flush(reply) => flushes.push(reply),
        }
    }

    /// Commits the oldest events (one batch), or schedules a retry.
    fn attempt(&mut self) {
        while !self.buffer.is_empty() {
            let n = self.buffer.len().min(self.settings.max_batch);
            let batch = self.batch(n);
            if self.store.is_none() {
                match open(&self.url) {
                    Ok(store) => self.store = Some(store),
                    Err(e) => {
                        self.failed(e);
                        return;
                    }
                }
            }
            let result = match self.store.as_mut() {
                Some(store) => store.append(&batch),
                None => continue,
            };
            match result {
                Ok(results) => {
                    self.appended.notify_one();
                    for ((_, ack), appended) in self.buffer.drain(..n).zip(results) {
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
                    self.backoff = INITIAL_BACKOFF;
                    // Commit only one batch per turn while callers wait; the rest are already
                    // answered (buffered during an outage) and may take a few turns.
                    if self.buffer.iter().any(|(_, ack)| ack.is_some()) {
                        continue;
                    }
                }
                Err(e) => {
                    self.failed(e);
                    return;
                }
            }
            if self.buffer.is_empty() {
                return;
            }
        }
    }

    fn failed(&mut self, e: JournalError) {
        if self.failing_since.is_none() {
            self.failing_since = Some(Instant::now());
        }
        tracing::error!(
            journal = %self.url,
            error = %e,
            buffered = self.buffer.len(),
            retry_in_ms = self.backoff.as_millis() as u64,
            "journal write failed; events kept in memory and retried"
        );
        // Reconnect next time: the connection may be what broke.
        self.store = None;
        self.retry_at = Some(Instant::now() + self.backoff);
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        self.fail_waiters(&e.0);
    }

    fn batch(&self, n: usize) -> Vec<NewEvent> {
        self.buffer.iter().take(n).map(|(e, _)| e.clone()).collect()
    }

    fn fail_waiters(&mut self, message: &str) {
        for (_, ack) in self.buffer.iter_mut() {
            if let Some(ack) = ack.take() {
                let _ = ack.send(Err(JournalError::new(message)));
            }
        }
    }

    fn report_loss(&self) {
        if !self.buffer.is_empty() {
            tracing::error!(
                lost = self.buffer.len(),
                "journal writer stopping with unwritten events"
            );
        }
    }
}

/// Keeps the backlog gauges current from a stats query on a connection of its own.
fn refresh_stats(
    url: JournalUrl,
    metrics: JournalMetrics,
    every: Duration,
    stop: mpsc::Receiver<()>,
) {
    let mut store: Option<Box<dyn Store>> = None;
    loop {
        if store.is_none() {
            store = open(&url).ok();
        }
        if let Some(s) = store.as_mut() {
            match s.stats() {
                Ok(stats) => {
                    let age = stats
                        .oldest_undelivered_ms
                        .map_or(0.0, |t| (now_ms() - t).max(0) as f64 / 1000.0);
                    metrics.backlog(stats.undelivered, age);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "journal stats query failed");
                    store = None;
                }
            }
        }
        if let Err(RecvTimeoutError::Disconnected) = stop.recv_timeout(every) {
            return;
        }
    }
}
