//! Closing a listening socket without resetting connections the kernel has already accepted.
//!
//! The race: the kernel completes TCP handshakes on its own and queues the connections until the
//! process calls accept(). Closing the socket resets every connection still in that queue: the
//! client sent its request and gets RST, although nothing refused it. Breaking out of the accept
//! loop and dropping the listener (what most servers do) therefore loses the last few connections
//! of a restart under load.
//!
//! So, before closing, new handshakes are refused at the socket: a classic BPF socket filter drops
//! every segment that has SYN set and ACK clear (on Linux the filter sees the TCP header at offset
//! 0 for a listening socket). Handshakes already under way still complete (their final ACK passes),
//! queued connections are accepted and served until the queue has been empty for a moment, and
//! only then is the socket closed. A client whose SYN was dropped retransmits it about a second
//! later and is then refused (nothing listens) or reaches the next process on the same port: an
//! error it can see before it sends anything, never a reset after sending a request. Without the
//! filter (other systems, or if attaching fails) the queue is still emptied before closing, which
//! narrows the race to connections arriving in the last moment.

use std::future::Future;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

/// How long the accept queue must stay empty before the socket is closed: longer than a handshake
/// takes between a load balancer and its target (a round trip inside one network).
const QUIET: Duration = Duration::from_millis(200);

/// Longest time spent emptying the queue, in case handshakes keep completing (no filter).
const MAX_EMPTYING: Duration = Duration::from_secs(2);

/// Refuses new handshakes, hands every connection already queued to `serve`, then closes.
/// Returns how many queued connections were accepted.
pub async fn close<F, Fut>(listener: TcpListener, mut serve: F) -> usize
where
    F: FnMut(TcpStream) -> Fut,
    Fut: Future<Output = ()>,
{
    if let Err(e) = refuse_new_handshakes(&listener) {
        tracing::warn!(error = %e, "cannot refuse new handshakes; closing the listener anyway");
    }
    let deadline = tokio::time::Instant::now() + MAX_EMPTYING;
    let mut accepted = 0;
    while tokio::time::Instant::now() < deadline {
        match tokio::time::timeout(QUIET, listener.accept()).await {
            Ok(Ok((stream, _))) => {
                accepted += 1;
                serve(stream).await;
            }
            Ok(Err(e)) => tracing::debug!(error = %e, "accept failed while closing"),
            Err(_) => break,
        }
    }
    drop(listener);
    accepted
}

/// Attaches the SYN-dropping filter (Linux).
#[cfg(target_os = "linux")]
fn refuse_new_handshakes(listener: &TcpListener) -> std::io::Result<()> {
    use socket2::{SockFilter, SockRef};
    // BPF opcodes (linux/filter.h): BPF_LD|BPF_B|BPF_ABS, BPF_JMP|BPF_JSET|BPF_K, BPF_RET|BPF_K.
    const LDB_ABS: u16 = 0x30;
    const JSET_K: u16 = 0x45;
    const RET_K: u16 = 0x06;
    const TCP_FLAGS_OFFSET: u32 = 13;
    const SYN: u32 = 0x02;
    const ACK: u32 = 0x10;
    let program = [
        // A = the TCP flags byte.
        SockFilter::new(LDB_ABS, 0, 0, TCP_FLAGS_OFFSET),
        // ACK set (handshake completion, data): keep.
        SockFilter::new(JSET_K, 2, 0, ACK),
        // SYN without ACK (a new handshake): drop.
        SockFilter::new(JSET_K, 0, 1, SYN),
        SockFilter::new(RET_K, 0, 0, 0),
        SockFilter::new(RET_K, 0, 0, u32::MAX),
    ];
    SockRef::from(listener).attach_filter(&program)
}

#[cfg(not(target_os = "linux"))]
fn refuse_new_handshakes(_listener: &TcpListener) -> std::io::Result<()> {
    Err(std::io::Error::other("not supported on this system"))
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[tokio::test]
    async fn after_the_filter_queued_connections_are_served_and_new_ones_not_reset() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // Completed by the kernel, never accepted yet.
        let queued = TcpStream::connect(addr).await.unwrap();
        refuse_new_handshakes(&listener).unwrap();
        // A new handshake now gets no answer at all (its SYN is dropped), rather than a reset.
        let late = tokio::time::timeout(Duration::from_millis(300), TcpStream::connect(addr)).await;
        assert!(
            late.is_err(),
            "connect should hang while SYNs are dropped: {late:?}"
        );
        let (served, _) = listener.accept().await.unwrap();
        assert_eq!(served.peer_addr().unwrap(), queued.local_addr().unwrap());
    }
}
