//! Per-request bounds: a concurrency permit (or shed with 503) and a body read bounded in size and time.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::{Body, Incoming};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Why the body could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    /// Over the configured limit (413).
    TooLarge,
    /// The client was too slow (408).
    TimedOut,
    /// The connection broke or the framing was invalid (400).
    Broken,
}

/// Takes a permit for one request, or `None` when the server is at its concurrency limit.
pub fn admit(concurrency: &Arc<Semaphore>) -> Option<OwnedSemaphorePermit> {
    concurrency.clone().try_acquire_owned().ok()
}

/// Reads the whole body, refusing it early when Content-Length is over `max`.
pub async fn read_body(body: Incoming, max: usize, time: Duration) -> Result<Bytes, BodyError> {
    // The lower size hint is the Content-Length, so an honest oversized request is refused unread.
    if body.size_hint().lower() > max as u64 {
        return Err(BodyError::TooLarge);
    }
    match tokio::time::timeout(time, Limited::new(body, max).collect()).await {
        Err(_) => Err(BodyError::TimedOut),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e))
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(BodyError::TooLarge)
        }
        Ok(Err(_)) => Err(BodyError::Broken),
    }
}
