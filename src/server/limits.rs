//! The server's resource bounds ([`Limits`]) and how a request meets them: the request head's size,
//! a body read bounded in size, time, rate and a shared budget, then a concurrency permit for the
//! verified work (or shed with 503); and their flags and `[limits]` keys ([`LimitsSection`]),
//! checked here. No I/O besides reading the body it is handed.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use clap::Args;
use http_body_util::BodyExt;
use hyper::body::{Body, Incoming};
use merge::Merge;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::setting::{given, positive, seconds, secs, unusable, Unusable};

/// Resource bounds of the server.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Time to receive a request head (also the keep-alive idle timeout).
    pub header_timeout: Duration,
    /// Time for a whole request, body and answer included.
    pub request_timeout: Duration,
    /// Requests in progress at once; more are shed with 503.
    pub max_concurrency: usize,
    /// Connections open at once; a new one past it makes the longest-idle ones close.
    pub max_connections: usize,
    /// Time to finish in-flight requests on shutdown.
    pub drain_timeout: Duration,
    /// Time a TLS handshake may take.
    pub tls_handshake_timeout: Duration,
    /// After SIGTERM/SIGINT: time `/readyz` answers 503 while the listener still accepts.
    pub lame_duck: Duration,
    /// Bodies read at once (before any signature check); past it the oldest slow read gives way.
    pub max_body_reads: usize,
    /// Bytes reserved at once by bodies being read (their Content-Length, or the body limit).
    pub body_buffer_bytes: usize,
    /// Slowest average body rate accepted once `body_grace` has passed (bytes per second).
    pub min_body_rate: u64,
    /// Time a body may take before the minimum rate applies.
    pub body_grace: Duration,
    /// Time a connection with no request in progress stays open (HTTP/2; HTTP/1 keep-alive ends
    /// sooner, at the header timeout).
    pub idle_timeout: Duration,
    /// Age after which a connection is asked to close (HTTP/1 `Connection: close`, HTTP/2 GOAWAY).
    pub max_connection_age: Duration,
    /// Concurrent streams per HTTP/2 connection.
    pub max_h2_streams: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 64 * 1024,
            header_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            max_concurrency: 1024,
            max_connections: 2048,
            drain_timeout: Duration::from_secs(25),
            tls_handshake_timeout: Duration::from_secs(5),
            lame_duck: Duration::from_secs(2),
            max_body_reads: 1024,
            body_buffer_bytes: 16 * 1024 * 1024,
            min_body_rate: 4096,
            body_grace: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(30),
            max_connection_age: Duration::from_secs(120),
            max_h2_streams: 16,
        }
    }
}

/// `[limits]`: the server's resource bounds ([`Limits`]); their flags have no prefix.
#[derive(Debug, Default, Clone, Args, Deserialize, Serialize, Merge)]
#[serde(deny_unknown_fields)]
#[merge(strategy = merge::option::overwrite_none)]
pub struct LimitsSection {
    /// Largest accepted request body in bytes.
    #[arg(long, value_name = "BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Seconds a client may take to send the request head.
    #[arg(long, value_name = "SECONDS")]
    pub header_timeout: Option<f64>,
    /// Seconds a whole request may take, body included.
    #[arg(long, value_name = "SECONDS")]
    pub request_timeout: Option<f64>,
    /// Requests handled at once; beyond it requests get 503 at once.
    #[arg(long, value_name = "N")]
    pub max_concurrency: Option<usize>,
    /// Open connections at most; when all are taken, the connections idle the longest are closed
    /// to make room for a new one.
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
    /// Request bodies read at once, before any signature check; when full, the oldest read past
    /// --body-grace is cut with 408 to make room.
    #[arg(long, value_name = "N")]
    pub max_body_reads: Option<usize>,
    /// Bytes all bodies being read may reserve together (each reserves its Content-Length, or
    /// --max-body-bytes).
    #[arg(long, value_name = "BYTES")]
    pub body_buffer_bytes: Option<usize>,
    /// Slowest average body rate in bytes per second once --body-grace has passed; slower
    /// bodies get 408; 0 turns it off.
    #[arg(long, value_name = "BYTES")]
    pub min_body_rate: Option<u64>,
    /// Seconds a body may take before --min-body-rate applies.
    #[arg(long, value_name = "SECONDS")]
    pub body_grace: Option<f64>,
    /// Seconds an HTTP/2 connection with no open stream stays open (HTTP/1 keep-alive ends at
    /// --header-timeout).
    #[arg(long, value_name = "SECONDS")]
    pub idle_timeout: Option<f64>,
    /// Seconds after which a connection is asked to close: HTTP/1 answers `Connection: close`,
    /// HTTP/2 sends GOAWAY.
    #[arg(long, value_name = "SECONDS")]
    pub max_connection_age: Option<f64>,
    /// Concurrent streams per HTTP/2 connection.
    #[arg(long, value_name = "N")]
    pub max_h2_streams: Option<u32>,
}

impl LimitsSection {
    /// The defaults, as flags would give them: [`Limits::default`].
    pub fn defaults() -> LimitsSection {
        let limits = Limits::default();
        LimitsSection {
            max_body_bytes: Some(limits.max_body_bytes),
            header_timeout: secs(limits.header_timeout),
            request_timeout: secs(limits.request_timeout),
            max_concurrency: Some(limits.max_concurrency),
            max_connections: Some(limits.max_connections),
            max_body_reads: Some(limits.max_body_reads),
            body_buffer_bytes: Some(limits.body_buffer_bytes),
            min_body_rate: Some(limits.min_body_rate),
            body_grace: secs(limits.body_grace),
            idle_timeout: secs(limits.idle_timeout),
            max_connection_age: secs(limits.max_connection_age),
            max_h2_streams: Some(limits.max_h2_streams),
        }
    }

    /// Each bound checked, then the body budget against the largest body.
    pub fn settle(self) -> Result<Limits, Unusable> {
        let limits = Limits {
            max_body_bytes: positive("max-body-bytes", self.max_body_bytes)?,
            header_timeout: seconds("header-timeout", self.header_timeout)?,
            request_timeout: seconds("request-timeout", self.request_timeout)?,
            max_concurrency: positive("max-concurrency", self.max_concurrency)?,
            max_connections: positive("max-connections", self.max_connections)?,
            max_body_reads: positive("max-body-reads", self.max_body_reads)?,
            body_buffer_bytes: positive("body-buffer-bytes", self.body_buffer_bytes)?,
            min_body_rate: given("min-body-rate", self.min_body_rate)?,
            body_grace: seconds("body-grace", self.body_grace)?,
            idle_timeout: seconds("idle-timeout", self.idle_timeout)?,
            max_connection_age: seconds("max-connection-age", self.max_connection_age)?,
            max_h2_streams: positive("max-h2-streams", self.max_h2_streams)?,
            ..Limits::default()
        };
        if limits.body_buffer_bytes < limits.max_body_bytes {
            return Err(unusable(
                "body-buffer-bytes",
                "must be at least --max-body-bytes, or no full-size body could be read",
            ));
        }
        Ok(limits)
    }
}

/// Why the body could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    /// Over the configured limit (413).
    TooLarge,
    /// The body took longer than the request timeout (408).
    TimedOut,
    /// The body came slower than the minimum rate, or gave way to newer reads under pressure (408).
    TooSlow,

    /// The connection broke or the framing was invalid (400).
    Broken,
}

/// Longest request target accepted; a GET webhook with a 1600-character Body fits several times.
pub const MAX_URI_BYTES: usize = 16 * 1024;
/// Largest total of header names and values accepted (Twilio sends about 1 KiB).
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// Checks the request head against the URI and header size bounds (414 / 431).
pub fn check_head(head: &http::request::Parts) -> Result<(), http::StatusCode> {
    if head.uri.path_and_query().map_or(0, |pq| pq.as_str().len()) > MAX_URI_BYTES {
        return Err(http::StatusCode::URI_TOO_LONG);
    }
    let header_bytes: usize = head
        .headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len())
        .sum();
    if header_bytes > MAX_HEADER_BYTES {
        return Err(http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    }
    Ok(())
}

/// Takes a permit for one request, or `None` when the server is at its concurrency limit.
/// Taken only once the body is complete, so a slow client never holds one.
pub fn admit(concurrency: &Arc<Semaphore>) -> Option<OwnedSemaphorePermit> {
    concurrency.clone().try_acquire_owned().ok()
}

/// How a body must arrive.
#[derive(Debug, Clone, Copy)]
pub struct BodyRules {
    /// Largest body.
    pub max: usize,
    /// Longest a body may take at all.
    pub timeout: Duration,
    /// Slowest average rate (bytes per second) once `grace` has passed; 0 is off.
    pub min_rate: u64,
    /// Time before `min_rate` applies.
    pub grace: Duration,
}

/// The budget shared by every body still arriving after its first piece: a count and a byte total,
/// both bounded, so that clients that have not proved who they are cannot hold more than this much
/// between them.
///
/// When it is full, the oldest read that has run longer than the grace period gives way (it is
/// answered 408): a webhook from Twilio arrives in one piece within milliseconds, so the reads
/// that are old under pressure are the slow ones. When every read is younger than the grace
/// period, the newcomer waits for room, at most until its own rate deadline (then 408).
#[derive(Debug)]
pub struct BodyBudget {
    reads: Mutex<Reads>,
    /// Wakes one read waiting for room each time a share is given back.
    freed: Notify,
    max_reads: usize,
    max_bytes: usize,
    grace: Duration,
}

#[derive(Debug, Default)]
struct Reads {
    next_id: u64,
    bytes: usize,
    /// Keyed by an increasing id, so the first entry is the oldest read.
    open: BTreeMap<u64, OpenRead>,
}

#[derive(Debug)]
struct OpenRead {
    started: Instant,
    bytes: usize,
    evicted: Arc<Notify>,
}

/// One body's share of the budget, given back on drop.
#[derive(Debug)]
pub struct Reservation<'a> {
    budget: &'a BodyBudget,
    id: u64,
    evicted: Arc<Notify>,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        let mut reads = self.budget.lock();
        if let Some(read) = reads.open.remove(&self.id) {
            reads.bytes -= read.bytes;
        }
        drop(reads);
        // One waiter per share: waking them all would be a stampede under attack.
        self.budget.freed.notify_one();
    }
}

impl BodyBudget {
    /// A budget of `max_reads` reads and `max_bytes` bytes; reads older than `grace` may be cut.
    pub fn new(max_reads: usize, max_bytes: usize, grace: Duration) -> BodyBudget {
        BodyBudget {
            reads: Mutex::new(Reads::default()),
            freed: Notify::new(),
            max_reads,
            max_bytes,
            grace,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Reads> {
        // No code panics while holding the lock; if one ever did, the counts are still whole.
        self.reads.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reserves `bytes` for a new read, cutting the oldest reads past the grace period if needed.
    pub fn reserve(&self, bytes: usize) -> Option<Reservation<'_>> {
        let now = Instant::now();
        let mut reads = self.lock();
        while reads.open.len() >= self.max_reads || reads.bytes + bytes > self.max_bytes {
            let (&id, oldest) = reads.open.iter().next()?;
            if now.duration_since(oldest.started) < self.grace {
                return None;
            }
            let oldest = reads.open.remove(&id)?;
            reads.bytes -= oldest.bytes;
            // notify_one keeps the wake-up even if the reader is not waiting at this instant.
            oldest.evicted.notify_one();
            // Its share went to this read, not to a waiter.
        }
        let id = reads.next_id;
        reads.next_id += 1;
        reads.bytes += bytes;
        let evicted = Arc::new(Notify::new());
        reads.open.insert(
            id,
            OpenRead {
                started: now,
                bytes,
                evicted: evicted.clone(),
            },
        );
        Some(Reservation {
            budget: self,
            id,
            evicted,
        })
    }

    /// Reads in progress and the bytes they reserve.
    #[cfg(test)]
    fn usage(&self) -> (usize, usize) {
        let reads = self.lock();
        (reads.open.len(), reads.bytes)
    }
}

/// A share of `budget`, waiting for one to be given back until `deadline` (then 408). Waiting
/// rather than refusing at once keeps a flood of slow bodies from turning into a flood of
/// reconnections (and TLS handshakes) that would cost more than holding them.
async fn wait_for_room(
    budget: &BodyBudget,
    bytes: usize,
    deadline: Instant,
) -> Result<Reservation<'_>, BodyError> {
    loop {
        // Registered before trying, so a share given back in between is not missed.
        let freed = budget.freed.notified();
        if let Some(reservation) = budget.reserve(bytes) {
            return Ok(reservation);
        }
        tokio::select! {
            () = freed => {}
            () = tokio::time::sleep_until(deadline) => return Err(BodyError::TooSlow),
        }
    }
}

/// Reads the whole body within `rules`.
///
/// Refused early when Content-Length is over the limit; cut with [`BodyError::TooSlow`] when the
/// average rate since the start falls below `min_rate` after the grace period (in the spirit of
/// Kestrel's MinRequestBodyDataRate). A body that arrives in one piece, as Twilio's do, never
/// touches the shared budget: its bytes are already here. Only a body still incomplete after its
/// first piece reserves its share of `budget` (and may have to give it up to a newer one).
pub async fn read_body(
    mut body: Incoming,
    budget: &BodyBudget,
    rules: BodyRules,
) -> Result<Bytes, BodyError> {
    if body.is_end_stream() {
        return Ok(Bytes::new());
    }
    let hint = body.size_hint();
    // The lower size hint is the Content-Length, so an honest oversized request is refused unread.
    if hint.lower() > rules.max as u64 {
        return Err(BodyError::TooLarge);
    }
    let declared = hint
        .exact()
        .map_or(rules.max, |n| usize::try_from(n).unwrap_or(rules.max));
    let mut reservation: Option<Reservation<'_>> = None;
    let started = Instant::now();
    let hard_deadline = started + rules.timeout;
    let mut first: Option<Bytes> = None;
    let mut rest = BytesMut::new();
    let mut received = 0usize;
    loop {
        // The moment the bytes so far stop meeting the minimum rate.
        let rate_deadline = match rules.min_rate {
            0 => hard_deadline,
            rate => {
                started
                    + rules
                        .grace
                        .max(Duration::from_secs_f64(received as f64 / rate as f64))
            }
        };
        let deadline = hard_deadline.min(rate_deadline);
        let evicted = async {
            match &reservation {
                Some(r) => r.evicted.notified().await,
                None => std::future::pending().await,
            }
        };
        let frame = tokio::select! {
            biased;
            () = evicted => return Err(BodyError::TooSlow),
            frame = tokio::time::timeout_at(deadline, body.frame()) => frame,
        };
        let data = match frame {
            Err(_) if deadline == hard_deadline => return Err(BodyError::TimedOut),
            Err(_) => return Err(BodyError::TooSlow),
            Ok(None) => break,
            Ok(Some(Err(_))) => return Err(BodyError::Broken),
            Ok(Some(Ok(frame))) => match frame.into_data() {
                Ok(data) => data,
                // Trailers carry nothing a webhook uses.
                Err(_) => continue,
            },
        };
        received += data.len();
        if received > rules.max {
            return Err(BodyError::TooLarge);
        }
        // Twilio's body arrives as one frame: keep it without copying; join only when split.
        match first.take() {
            None if rest.is_empty() => first = Some(data),
            None => rest.extend_from_slice(&data),
            Some(earlier) => {
                rest.reserve(earlier.len() + data.len());
                rest.extend_from_slice(&earlier);
                rest.extend_from_slice(&data);
            }
        }
        if body.is_end_stream() {
            break;
        }
        if reservation.is_none() {
            reservation = Some(wait_for_room(budget, declared, deadline).await?);
        }
    }
    drop(reservation);
    Ok(first.unwrap_or_else(|| rest.freeze()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_full_budget_cuts_the_oldest_read_past_the_grace_period_or_refuses() {
        let budget = BodyBudget::new(2, 100, Duration::from_secs(1));
        let old = budget.reserve(60).unwrap();
        tokio::time::advance(Duration::from_millis(500)).await;
        let young = budget.reserve(30).unwrap();
        // Over the bytes, and every read younger than the grace period: refused.
        assert!(budget.reserve(20).is_none());
        tokio::time::advance(Duration::from_millis(600)).await;
        // Over the count: the oldest read (1.1 s) gives way and learns it at once.
        let newer = budget.reserve(10).unwrap();
        tokio::time::timeout(Duration::from_millis(1), old.evicted.notified())
            .await
            .expect("the oldest read was told to stop");
        assert_eq!(budget.usage(), (2, 40));
        drop(old);
        assert_eq!(
            budget.usage(),
            (2, 40),
            "an evicted read gives back nothing twice"
        );
        drop((young, newer));
        assert_eq!(budget.usage(), (0, 0));
    }
}
