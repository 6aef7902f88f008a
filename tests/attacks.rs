//! What a client without a valid signature can do must not take what genuine webhooks need
//! (issue 13): slow bodies hold no handler permit and are cut by a minimum rate, a full body
//! budget makes the oldest slow read give way, and connections do not live forever.

mod common;

use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Opens a connection that sends a head announcing 60,000 bytes of body and `sent` of them.
async fn slow_body(addr: std::net::SocketAddr, sent: usize) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut req = format!(
        "POST /sms HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 60000\r\n\r\n"
    )
    .into_bytes();
    req.extend(std::iter::repeat_n(b'a', sent));
    s.write_all(&req).await.unwrap();
    s
}

/// The status the server answers on `s`, or 0 if it closes without one within `limit`.
async fn status_within(s: &mut TcpStream, limit: Duration) -> u16 {
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + limit;
    while let Ok(Ok(n @ 1..)) = tokio::time::timeout(
        deadline.saturating_duration_since(Instant::now()),
        s.read(&mut buf),
    )
    .await
    {
        out.extend_from_slice(&buf[..n]);
        if out.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    parse_reply(&String::from_utf8_lossy(&out)).status
}

async fn genuine(server: &TestServer) -> u16 {
    post_signed(
        server.addr,
        &server.url("/sms"),
        "/sms",
        TOKEN,
        &sms_params("genuine"),
    )
    .await
    .status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_hold_no_permit_and_are_cut_at_the_minimum_rate() {
    let mut a = args("primary");
    a.limits.max_concurrency = Some(2);
    a.limits.max_body_reads = Some(8);
    a.limits.body_grace = Some(0.5);
    let server = TestServer::start(config(&a)).await;
    let mut slow = Vec::new();
    for _ in 0..200 {
        slow.push(slow_body(server.addr, 1).await);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    // 200 slow bodies against 2 permits and 8 body slots: every genuine webhook is answered.
    for _ in 0..20 {
        assert_eq!(genuine(&server).await, 200);
    }
    // Every one is answered 408 once the grace period is over (1 byte is below 4096 B/s): the 8
    // that got a body slot, and the others that waited for one meanwhile.
    let started = Instant::now();
    let mut statuses = std::collections::BTreeMap::new();
    for s in slow.iter_mut() {
        *statuses
            .entry(status_within(s, Duration::from_secs(3)).await)
            .or_insert(0) += 1;
    }
    assert_eq!(statuses.get(&408), Some(&200), "{statuses:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_body_budget_cuts_the_oldest_slow_read_to_make_room() {
    let mut a = args("primary");
    a.limits.max_body_reads = Some(2);
    a.limits.min_body_rate = Some(0);
    a.limits.body_grace = Some(0.2);
    let server = TestServer::start(config(&a)).await;
    let mut oldest = slow_body(server.addr, 100).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut second = slow_body(server.addr, 100).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A webhook whose body arrives in one piece never needs the budget.
    assert_eq!(genuine(&server).await, 200);
    // A third incomplete body does: the oldest read past the grace period gives way.
    let _third = slow_body(server.addr, 100).await;
    assert_eq!(
        status_within(&mut oldest, Duration::from_secs(2)).await,
        408
    );
    assert_eq!(
        status_within(&mut second, Duration::from_millis(300)).await,
        0,
        "only one read had to give way"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keep_alive_connection_is_closed_at_its_maximum_age() {
    let mut a = args("primary");
    a.limits.max_connection_age = Some(0.5);
    let server = TestServer::start(config(&a)).await;
    let mut client = KeepAlive::new(server.addr);
    let get = format!("GET /healthz HTTP/1.1\r\nHost: {}\r\n\r\n", server.addr).into_bytes();
    let started = Instant::now();
    let closed_after = loop {
        match client.send(&get).await {
            Exchange::Answered(r) if r.header("connection") == Some("close") => {
                assert_eq!(r.status, 200);
                break started.elapsed();
            }
            Exchange::Answered(r) => assert_eq!(r.status, 200),
            other => panic!("{other:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(3), "never closed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        closed_after >= Duration::from_millis(400),
        "{closed_after:?}"
    );
    server.stop().await;
}
