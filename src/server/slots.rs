//! Connection slots: how many connections are open, which of them have a request in progress, and
//! which ones give way when every slot is taken. Bookkeeping only (no I/O): the server acts on it.
//!
//! A slot is *idle* while none of its requests is being handled: an HTTP/1 keep-alive connection
//! between requests or still sending its head, an HTTP/2 connection with no stream open, a TLS
//! handshake. When all slots are taken and a new connection is accepted, the idle ones that have
//! been idle the longest are asked to close. A genuine webhook turns its connection busy within
//! milliseconds of connecting, so a client cannot keep a slot by merely holding a connection open.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// Idle connections asked to close at once when a new connection finds every slot taken: enough
/// that a burst of newcomers is not served one eviction at a time.
const EVICT_BATCH: usize = 16;

/// How long a newcomer waits for an evicted connection to go before asking more to close.
const EVICT_RETRY: Duration = Duration::from_millis(250);

/// All connection slots of one server.
#[derive(Debug)]
pub struct Slots {
    permits: Arc<Semaphore>,
    max: usize,
    epoch: Instant,
    next_id: AtomicU64,
    /// Keyed by an increasing id: iteration order is age order.
    open: Mutex<BTreeMap<u64, Arc<Slot>>>,
}

/// One open connection's state as the slot registry sees it.
#[derive(Debug)]
pub struct Slot {
    epoch: Instant,
    opened: Instant,
    busy: AtomicU32,
    /// Milliseconds after `epoch` at which the last request ended (or the connection opened).
    last_active_ms: AtomicU64,
    evicted: AtomicBool,
    close: Notify,
}

/// A taken slot; dropping it frees the slot.
#[derive(Debug)]
pub struct Held {
    slots: Arc<Slots>,
    id: u64,
    slot: Arc<Slot>,
    _permit: OwnedSemaphorePermit,
}

/// Marks a slot busy while a request is handled.
#[derive(Debug)]
pub struct Busy(Arc<Slot>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.touch();
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.slots.lock().remove(&self.id);
    }
}

impl Held {
    /// The slot's state, shared with the connection's requests.
    pub fn slot(&self) -> &Arc<Slot> {
        &self.slot
    }
}

impl Slot {
    fn now_ms(&self) -> u64 {
        u64::try_from(Instant::now().duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    fn touch(&self) {
        self.last_active_ms.store(self.now_ms(), Ordering::Release);
    }

    /// When the connection was accepted.
    pub fn opened(&self) -> Instant {
        self.opened
    }

    /// Marks a request in progress until the guard drops.
    pub fn begin(self: &Arc<Self>) -> Busy {
        self.busy.fetch_add(1, Ordering::AcqRel);
        Busy(self.clone())
    }

    /// Since when no request has been in progress; `None` while one is.
    pub fn idle_since(&self) -> Option<Instant> {
        if self.busy.load(Ordering::Acquire) > 0 {
            return None;
        }
        let ms = self.last_active_ms.load(Ordering::Acquire);
        Some(self.epoch + Duration::from_millis(ms))
    }

    /// Resolves once the registry has asked this connection to make room.
    pub async fn evicted(&self) {
        self.close.notified().await;
    }
}

impl Slots {
    /// `max` slots.
    pub fn new(max: usize) -> Arc<Slots> {
        Arc::new(Slots {
            permits: Arc::new(Semaphore::new(max)),
            max,
            epoch: Instant::now(),
            next_id: AtomicU64::new(0),
            open: Mutex::new(BTreeMap::new()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<Slot>>> {
        // Nothing panics while holding the lock; a poisoned map is still consistent.
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn register(self: &Arc<Self>, permit: OwnedSemaphorePermit) -> Held {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let slot = Arc::new(Slot {
            epoch: self.epoch,
            opened: now,
            busy: AtomicU32::new(0),
            last_active_ms: AtomicU64::new(0),
            evicted: AtomicBool::new(false),
            close: Notify::new(),
        });
        slot.touch();
        self.lock().insert(id, slot.clone());
        Held {
            slots: self.clone(),
            id,
            slot,
            _permit: permit,
        }
    }

    /// A slot for a connection just accepted. When none is free, the connections idle the
    /// longest are asked to close, and this waits until one has.
    pub async fn take(self: &Arc<Self>) -> Held {
        loop {
            if let Ok(permit) = self.permits.clone().try_acquire_owned() {
                return self.register(permit);
            }
            let asked = self.evict_idle(EVICT_BATCH);
            tracing::debug!(
                asked,
                "all connection slots taken; closing idle connections"
            );
            let wait = tokio::time::timeout(EVICT_RETRY, self.permits.clone().acquire_owned());
            if let Ok(Ok(permit)) = wait.await {
                return self.register(permit);
            }
        }
    }

    /// Asks up to `n` idle connections, longest idle first, to close. Returns how many were asked.
    pub fn evict_idle(&self, n: usize) -> usize {
        let open = self.lock();
        let mut idle: Vec<(Instant, &Arc<Slot>)> = open
            .values()
            .filter(|s| !s.evicted.load(Ordering::Acquire))
            .filter_map(|s| s.idle_since().map(|t| (t, s)))
            .collect();
        let n = n.min(idle.len());
        if n == 0 {
            return 0;
        }
        if n < idle.len() {
            idle.select_nth_unstable_by_key(n - 1, |(t, _)| *t);
        }
        for (_, slot) in &idle[..n] {
            slot.evicted.store(true, Ordering::Release);
            // notify_one keeps the wake-up for a connection that is not waiting this instant.
            slot.close.notify_one();
        }
        n
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.max - self.permits.available_permits()
    }

    /// Resolves when every slot is free again, i.e. every connection has closed.
    pub async fn all_closed(&self) {
        let all = u32::try_from(self.max).unwrap_or(u32::MAX);
        let _ = self.permits.acquire_many(all).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_longest_idle_connections_give_way_and_busy_ones_never_do() {
        let slots = Slots::new(3);
        let a = slots.take().await;
        tokio::time::advance(Duration::from_secs(1)).await;
        let b = slots.take().await;
        tokio::time::advance(Duration::from_secs(1)).await;
        let c = slots.take().await;
        let _busy = a.slot().begin();
        assert_eq!(slots.open(), 3);
        // a is the oldest but busy: b (idle since t=1) is asked first, then c.
        assert_eq!(slots.evict_idle(1), 1);
        assert!(b.slot().evicted.load(Ordering::Acquire));
        assert!(!c.slot().evicted.load(Ordering::Acquire));
        assert_eq!(slots.evict_idle(5), 1);
        assert!(!a.slot().evicted.load(Ordering::Acquire));
        assert_eq!(slots.evict_idle(5), 0);
        drop(b);
        assert_eq!(slots.open(), 2);
        let d = tokio::time::timeout(Duration::from_secs(1), slots.take()).await;
        assert!(d.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_ending_restarts_the_idle_clock() {
        let slots = Slots::new(1);
        let held = slots.take().await;
        let busy = held.slot().begin();
        assert!(held.slot().idle_since().is_none());
        tokio::time::advance(Duration::from_secs(7)).await;
        drop(busy);
        let since = held.slot().idle_since().unwrap();
        assert!(Instant::now().duration_since(since) < Duration::from_millis(2));
    }
}
