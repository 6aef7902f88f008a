//! Restarts of the real binary under load from clients that open a new connection per request,
//! as webhook senders do (issue 13): no connection the kernel accepted may be reset or left
//! unanswered. Connections refused while no process listens are counted apart: the client sees
//! those before it sends anything.

mod common;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn start(addr: SocketAddr) -> Child {
    let templates = shipped_templates();
    let config = example_config();
    Command::new(env!("CARGO_BIN_EXE_twiml-failover"))
        .args(["serve", "--listen", &addr.to_string(), "--watch", "false"])
        .args(["--lame-duck", "0.3", "--drain-timeout", "5"])
        .arg("--templates")
        .arg(templates)
        .arg("--config")
        .arg(config)
        .env_clear()
        .env("TWILIO_AUTH_TOKEN", TOKEN)
        .env("TWIML_FAILOVER_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the binary starts")
}

#[derive(Default)]
struct Counts {
    answered: AtomicUsize,
    refused: AtomicUsize,
    lost: Mutex<Vec<String>>,
}

/// One request on a new connection, counted.
async fn one(addr: SocketAddr, request: &[u8], counts: &Counts) {
    let Ok(mut s) = TcpStream::connect(addr).await else {
        counts.refused.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(2)).await;
        return;
    };
    let exchange = async {
        s.write_all(request)
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut out = Vec::new();
        s.read_to_end(&mut out)
            .await
            .map_err(|e| format!("read: {e}"))?;
        let status = parse_reply(&String::from_utf8_lossy(&out)).status;
        if status == 200 {
            Ok(())
        } else {
            Err(format!("status {status} after {} bytes", out.len()))
        }
    };
    match tokio::time::timeout(Duration::from_secs(10), exchange).await {
        Ok(Ok(())) => {
            counts.answered.fetch_add(1, Ordering::Relaxed);
        }
        Ok(Err(e)) => counts.lost.lock().unwrap().push(e),
        Err(_) => counts.lost.lock().unwrap().push("no answer in 10 s".into()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_restarts_under_new_connection_load_reset_or_lose_nothing() {
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut request = signed_sms_request(addr, "restart");
    // One request per connection: the client closes after the answer.
    let head_end = request.windows(2).position(|w| w == b"\r\n").unwrap() + 2;
    request.splice(head_end..head_end, b"Connection: close\r\n".iter().copied());
    let request = Arc::new(request);
    let counts = Arc::new(Counts::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..6 {
        let (request, counts, stop) = (request.clone(), counts.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                one(addr, &request, &counts).await;
            }
        }));
    }
    let mut answered_per_run = Vec::new();
    for _ in 0..20 {
        let before = counts.answered.load(Ordering::Relaxed);
        let mut child = start(addr);
        let up = Instant::now();
        while counts.answered.load(Ordering::Relaxed) == before {
            assert!(up.elapsed() < Duration::from_secs(10), "never answered");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let exited = tokio::task::spawn_blocking(move || child.wait())
            .await
            .unwrap();
        assert!(exited.unwrap().success());
        answered_per_run.push(counts.answered.load(Ordering::Relaxed) - before);
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let lost = counts.lost.lock().unwrap();
    eprintln!(
        "answered {} (per run {answered_per_run:?}), refused while nothing listened {}, lost {}",
        counts.answered.load(Ordering::Relaxed),
        counts.refused.load(Ordering::Relaxed),
        lost.len()
    );
    assert!(
        lost.is_empty(),
        "{} lost: {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    assert!(
        answered_per_run.iter().all(|&n| n > 10),
        "{answered_per_run:?}"
    );
}
