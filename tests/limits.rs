//! Every resource has a bound: head time (slowloris), body time and size, requests in progress,
//! connections. Each is configurable and each test sets it small.

mod common;

use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_do_not_starve_genuine_ones_and_are_cut_at_the_header_timeout() {
    let mut a = args("primary");
    a.limits.header_timeout = Some(1.0);
    let server = TestServer::start(config(&a)).await;
    let mut slow = Vec::new();
    for _ in 0..500 {
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        s.write_all(b"POST /sms HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .await
            .unwrap();
        slow.push(s);
    }
    let r = post_signed(
        server.addr,
        &server.url("/sms"),
        "/sms",
        TOKEN,
        &sms_params("hi"),
    )
    .await;
    assert_eq!(r.status, 200);
    // The genuine answer came while the slow clients were still connected, not after they were cut.
    assert!(!closed_within(&mut slow[499], Duration::from_millis(10)).await);
    let mut cut = 0;
    for s in slow.iter_mut() {
        if closed_within(s, Duration::from_secs(3)).await {
            cut += 1;
        }
    }
    assert_eq!(
        cut, 500,
        "every slow client is disconnected by the header timeout"
    );
    server.stop().await;
}

#[tokio::test(start_paused = true)]
async fn header_timeout_runs_on_tokio_time() {
    // With the clock paused, the 5 s default passes in microseconds of real time.
    let server = TestServer::role("primary").await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
    let before = tokio::time::Instant::now();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf).await;
    let waited = before.elapsed();
    assert!(waited >= Duration::from_secs(5), "{waited:?}");
    assert!(waited < Duration::from_secs(6), "{waited:?}");
    server.stop().await;
}

#[tokio::test]
async fn requests_over_the_concurrency_limit_get_503_at_once() {
    let mut a = args("primary");
    a.limits.max_concurrency = Some(1);
    let server = TestServer::start(config(&a)).await;
    // A slow body holds no permit: the permit is taken once the body is complete.
    let request = signed_sms_request(server.addr, "slow body, no permit");
    let split = request.len() - 5;
    let mut holder = TcpStream::connect(server.addr).await.unwrap();
    holder.write_all(&request[..split]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let r = post_signed(
        server.addr,
        &server.url("/sms"),
        "/sms",
        TOKEN,
        &sms_params("x"),
    )
    .await;
    assert_eq!(r.status, 200, "a slow body must not take the only permit");
    // With the only permit taken by work in progress, the next webhook is shed at once.
    let taken = server
        .app
        .concurrency()
        .clone()
        .try_acquire_owned()
        .unwrap();
    let r = post_signed(
        server.addr,
        &server.url("/sms"),
        "/sms",
        TOKEN,
        &sms_params("x"),
    )
    .await;
    assert_eq!(r.status, 503);
    assert_eq!(r.body, "service unavailable\n");
    // Probes are not webhooks and are never shed.
    assert_eq!(request_status(&server, "/healthz").await, 200);
    drop(taken);
    holder.write_all(&request[split..]).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = holder.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    assert!(server
        .app
        .metrics()
        .encode()
        .contains("twiml_failover_load_shed_total 1"));
    server.stop().await;
}

async fn request_status(server: &TestServer, path: &str) -> u16 {
    request(server.addr, "GET", path, &[], "").await.status
}

#[tokio::test]
async fn a_body_slower_than_the_request_timeout_gets_408() {
    let mut a = args("primary");
    a.limits.request_timeout = Some(0.3);
    let server = TestServer::start(config(&a)).await;
    let request = signed_sms_request(server.addr, "slow body");
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    s.write_all(&request[..request.len() - 5]).await.unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut out))
        .await
        .expect("answered")
        .unwrap();
    assert_eq!(parse_reply(&out).status, 408, "{out}");
    server.stop().await;
}

#[tokio::test]
async fn the_body_limit_is_configurable() {
    let mut a = args("primary");
    a.limits.max_body_bytes = Some(100);
    let server = TestServer::start(config(&a)).await;
    let r = post_signed(
        server.addr,
        &server.url("/sms"),
        "/sms",
        TOKEN,
        &sms_params("x"),
    )
    .await;
    assert_eq!(r.status, 413, "a realistic SMS body is over 100 bytes");
    server.stop().await;
}

#[tokio::test]
async fn at_the_connection_limit_idle_connections_make_room_and_busy_ones_do_not() {
    let mut a = args("primary");
    a.limits.max_connections = Some(2);
    let server = TestServer::start(config(&a)).await;
    // One connection in the middle of a request (a body still arriving), one only connected.
    let request = signed_sms_request(server.addr, "busy");
    let split = request.len() - 5;
    let mut busy = TcpStream::connect(server.addr).await.unwrap();
    busy.write_all(&request[..split]).await.unwrap();
    let mut idle = TcpStream::connect(server.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // A third connection is served: the idle one is asked to close to make room.
    let r = tokio::time::timeout(
        Duration::from_secs(3),
        post_signed(
            server.addr,
            &server.url("/sms"),
            "/sms",
            TOKEN,
            &sms_params("x"),
        ),
    )
    .await
    .expect("served while both slots were taken");
    assert_eq!(r.status, 200);
    assert!(closed_within(&mut idle, Duration::from_secs(1)).await);
    busy.write_all(&request[split..]).await.unwrap();
    let mut buf = [0u8; 256];
    let n = busy.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    server.stop().await;
}
