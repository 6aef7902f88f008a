//! Graceful drain: a restart under steady load loses no request, and in-flight requests finish.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use tokio::net::TcpListener;

/// Two instances share one listening socket, as with socket handover or a rolling restart behind a
/// load balancer: the old one drains while the new one takes the traffic. Clients keep their
/// connections alive; every request they write must be answered 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_under_steady_load_loses_no_request() {
    let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    socket.set_nonblocking(true).unwrap();
    let addr = socket.local_addr().unwrap();
    let start_on_socket = |socket: &std::net::TcpListener| {
        let service = twiml_failover::service::Service::load(config(&args("primary"))).unwrap();
        let listener = TcpListener::from_std(socket.try_clone().unwrap()).unwrap();
        let running = service.start_on(listener, std::future::pending()).unwrap();
        (running.app().clone(), running)
    };
    let (old_app, old) = start_on_socket(&socket);

    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for _ in 0..8 {
        let (stop, answered) = (stop.clone(), answered.clone());
        let request = signed_sms_request(addr, "steady load");
        clients.push(tokio::spawn(async move {
            let mut client = KeepAlive::new(addr);
            let mut problems = Vec::new();
            let mut sent = 0;
            while !stop.load(Ordering::Relaxed) && sent < 200_000 {
                sent += 1;
                match client.send(&request).await {
                    Exchange::Answered(r) if r.status == 200 => {
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                    other => problems.push(format!("{other:?}")),
                }
            }
            problems
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (new_app, new) = start_on_socket(&socket);
    let before_restart = answered.load(Ordering::Relaxed);
    tokio::time::timeout(Duration::from_secs(10), old.shutdown())
        .await
        .expect("old instance drained within its timeout");
    assert_eq!(
        old_app.readiness().phase(),
        twiml_failover::readiness::Phase::Draining
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let mut problems = Vec::new();
    for c in clients {
        problems.extend(c.await.unwrap());
    }
    let total = answered.load(Ordering::Relaxed);
    assert!(
        problems.is_empty(),
        "{} failed requests: {:?}",
        problems.len(),
        &problems[..problems.len().min(5)]
    );
    assert!(
        before_restart > 50 && total > before_restart + 50,
        "{before_restart} then {total}"
    );
    let served_by_new = new_app.metrics().encode();
    assert!(served_by_new.contains("requests_total{route=\"webhook\",status=\"200\"}"));
    new.shutdown().await;
}

/// A request whose body is still arriving when shutdown starts is answered, with
/// `Connection: close`, and `/readyz` says 503 meanwhile.
#[tokio::test]
async fn in_flight_requests_finish_and_readyz_turns_503() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut a = args("primary");
    a.lame_duck = Some(0.3);
    let mut server = TestServer::start(config(&a)).await;
    let request = signed_sms_request(server.addr, "in flight");
    let split = request.len() - 10;
    let mut slow = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    slow.write_all(&request[..split]).await.unwrap();
    // Keep a second, idle keep-alive connection open to see that it does not block the drain.
    let mut idle = KeepAlive::new(server.addr);
    assert!(matches!(idle.send(&request).await, Exchange::Answered(r) if r.status == 200));
    tokio::time::sleep(Duration::from_millis(50)).await;
    server.begin_shutdown();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        server.app.readiness().phase(),
        twiml_failover::readiness::Phase::Draining
    );
    // Lame duck: a new connection is still served, and /readyz on it says 503 and close.
    let ready = common::request(server.addr, "GET", "/readyz", &[], "").await;
    assert_eq!(ready.status, 503);
    assert_eq!(ready.header("connection"), Some("close"));
    tokio::time::sleep(Duration::from_millis(700)).await;
    // Then new connections are not taken (their SYN is dropped, then refused), never reset.
    let late = tokio::time::timeout(
        Duration::from_secs(3),
        tokio::net::TcpStream::connect(server.addr),
    )
    .await;
    assert!(matches!(late, Ok(Err(_))), "{late:?}");
    // The idle connection may still send a request: it is answered, with Connection: close.
    match idle.send(&request).await {
        Exchange::Answered(r) => {
            assert_eq!(r.status, 200);
            assert_eq!(r.header("connection"), Some("close"));
        }
        other => panic!("{other:?}"),
    }
    slow.write_all(&request[split..]).await.unwrap();
    let mut out = String::new();
    slow.read_to_string(&mut out).await.unwrap();
    let reply = parse_reply(&out);
    assert_eq!(reply.status, 200, "{out}");
    assert_eq!(reply.header("connection"), Some("close"));
    tokio::time::timeout(Duration::from_secs(10), server.stop())
        .await
        .expect("drained");
}
