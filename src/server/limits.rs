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

/// Longest request target accepted; a GET webhook with a 1600-character Body fits several times.
pub const MAX_URI_BYTES: usize = 16 * 1024;
/// Largest total of header names and values accepted.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

/// Checks the request head against the URI and header size bounds (414 / 431).
pub fn check_head<B>(req: &http::Request<B>) -> Result<(), http::StatusCode> {
    if req.uri().path_and_query().map_or(0, |pq| pq.as_str().len()) > MAX_URI_BYTES {
        return Err(http::StatusCode::URI_TOO_LONG);
    }
    let header_bytes: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len())
        .sum();
    if header_bytes > MAX_HEADER_BYTES {
        return Err(http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    }
    Ok(())
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
