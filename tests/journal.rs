//! The journal end to end: every webhook answered 200 is in the journal even when the process is
//! SIGKILLed mid-stream; Twilio's retries are journaled once; a journal that cannot be written
//! still lets the caller have its TwiML, and the event is written once the store is back.

mod common;

use std::collections::HashSet;
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{
    args, config, form, fresh_postgres_db, postgres_url, request, Exchange, KeepAlive, TestServer,
    TOKEN,
};
use twiml_failover::config::ServeArgs;
use twiml_failover::journal::{self, JournalUrl, Store};
use twiml_failover::signature::{sign, Algorithm};
use twiml_failover::twilio::Role;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts the real binary with a journal and waits until it is ready.
fn spawn_server(journal: &str, port: u16) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_twiml-failover"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--templates")
        .arg(common::shipped_templates())
        .arg("--config")
        .arg(common::example_config())
        .args(["--journal", journal, "--watch", "false"])
        // Generous: this test is about what a 200 promises, not about a slow CI disk.
        .args(["--journal-timeout", "10"])
        .env("TWILIO_AUTH_TOKEN", TOKEN)
        .env("TWIML_FAILOVER_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("binary starts");
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            use std::io::{Read, Write};
            let _ = s.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            let mut out = String::new();
            let _ = s.read_to_string(&mut out);
            if out.starts_with("HTTP/1.1 200") {
                return child;
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("server on port {port} exited at start-up: {status}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("server on port {port} never became ready");
}

/// A signed keep-alive `POST /sms` with its own MessageSid.
fn sms_request(addr: SocketAddr, sid: &str) -> Vec<u8> {
    let params = [
        ("AccountSid", "AC00000000000000000000000000000001"),
        ("MessageSid", sid),
        ("SmsSid", sid),
        ("From", "+15550100001"),
        ("To", "+15550199999"),
        ("Body", "kill test & <stuff>"),
    ];
    let url = format!("http://{addr}/sms");
    let sig = sign(Algorithm::HmacSha1, TOKEN.as_bytes(), &url, &params);
    let body = form(&params);
    format!(
        "POST /sms HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         X-Twilio-Signature: {sig}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// MessageSids of every journaled event.
fn journaled_sids(store: &mut dyn Store) -> HashSet<String> {
    store
        .list(None, 10_000_000)
        .unwrap()
        .into_iter()
        .filter_map(|e| {
            e.webhook
                .params
                .iter()
                .find(|(k, _)| k == "MessageSid")
                .map(|(_, v)| v.clone())
        })
        .collect()
}

/// Streams signed SMS webhooks from several clients, SIGKILLs the server mid-stream, restarts it on
/// the same journal, several times; then every acknowledged MessageSid must be in the journal.
async fn acknowledged_means_journaled(journal_url: &str) {
    const ROUNDS: usize = 4;
    const CLIENTS: usize = 8;
    let acked: Arc<Mutex<HashSet<String>>> = Arc::default();
    let mut lost_in_flight = 0;
    for round in 0..ROUNDS {
        let port = free_port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let mut child = spawn_server(journal_url, port);
        let stop = Arc::new(AtomicBool::new(false));
        let mut clients = Vec::new();
        for client in 0..CLIENTS {
            let (stop, acked) = (stop.clone(), acked.clone());
            clients.push(tokio::spawn(async move {
                let mut conn = KeepAlive::new(addr);
                let mut lost = 0;
                for n in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let sid = format!("SM{round:02}{client:02}{n:028}");
                    match conn.send(&sms_request(addr, &sid)).await {
                        Exchange::Answered(reply) => {
                            assert_eq!(reply.status, 200, "{}", reply.body);
                            assert!(reply.body.contains("<Message>"), "{}", reply.body);
                            acked.lock().unwrap().insert(sid);
                        }
                        // The server is dead: this request was never acknowledged.
                        Exchange::Refused => break,
                        Exchange::Lost(_) => lost += 1,
                    }
                }
                lost
            }));
        }
        // Let the stream run, then kill without warning while requests are in flight.
        let before = acked.lock().unwrap().len();
        let deadline = Instant::now() + Duration::from_secs(10);
        while acked.lock().unwrap().len() < before + 200 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        child.kill().expect("SIGKILL");
        child.wait().unwrap();
        stop.store(true, Ordering::Relaxed);
        for c in clients {
            lost_in_flight += c.await.unwrap();
        }
        assert!(
            acked.lock().unwrap().len() >= before + 200,
            "round {round}: the stream did not get going"
        );
    }
    // Restart once more on the same journal (recovery must not lose anything either).
    let port = free_port();
    let mut child = spawn_server(journal_url, port);
    child.kill().unwrap();
    child.wait().unwrap();

    let url: JournalUrl = journal_url.parse().unwrap();
    // The stores are synchronous (the postgres driver runs its own runtime).
    let (journaled, total) = tokio::task::block_in_place(|| {
        let mut store = journal::open(&url).unwrap();
        (
            journaled_sids(store.as_mut()),
            store.stats().unwrap().total as usize,
        )
    });
    let acked = acked.lock().unwrap();
    let missing: Vec<&String> = acked.iter().filter(|s| !journaled.contains(*s)).collect();
    eprintln!(
        "{} acknowledged, {} journaled, {} lost in flight (killed before the answer)",
        acked.len(),
        journaled.len(),
        lost_in_flight
    );
    assert!(
        missing.is_empty(),
        "{} acknowledged but not journaled, e.g. {:?}",
        missing.len(),
        missing.first()
    );
    // Each event once: the journal holds no more rows than distinct events sent.
    assert_eq!(total, journaled.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_mid_stream_loses_no_acknowledged_webhook_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("journal.db").display());
    acknowledged_means_journaled(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[cfg_attr(
    not(postgres_tests),
    ignore = "needs PostgreSQL: eval \"$(bash .ci/postgres.sh)\" && cargo test"
)]
async fn sigkill_mid_stream_loses_no_acknowledged_webhook_postgres() {
    let base = postgres_url();
    let url = tokio::task::block_in_place(|| fresh_postgres_db(&base, "tf_sigkill"));
    acknowledged_means_journaled(&url).await;
}

fn with_journal(role: &str, url: &str) -> ServeArgs {
    let mut args = args(role);
    args.journal.url = Some(url.to_string());
    args
}

async fn post(
    server: &TestServer,
    path: &str,
    params: &[(&str, &str)],
    extra: &[(&str, &str)],
) -> common::Reply {
    let sig = sign(
        Algorithm::HmacSha1,
        TOKEN.as_bytes(),
        &server.url(path),
        params,
    );
    let mut headers = vec![
        ("Content-Type", "application/x-www-form-urlencoded"),
        ("X-Twilio-Signature", sig.as_str()),
    ];
    headers.extend_from_slice(extra);
    request(server.addr, "POST", path, &headers, &form(params)).await
}

async fn metrics(server: &TestServer) -> String {
    request(server.addr, "GET", "/metrics", &[], "").await.body
}

#[tokio::test]
async fn twilio_retries_are_journaled_once_and_everything_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("j.db").display());
    let server = TestServer::start(config(&with_journal("fallback", &url))).await;
    let sms = [
        ("MessageSid", "SM0000000000000000000000000000000a"),
        ("AccountSid", "AC00000000000000000000000000000001"),
        ("Body", "hi"),
        ("ErrorCode", "11205"),
        ("ErrorUrl", "https://voice.example.com/sms"),
    ];
    let token = [("I-Twilio-Idempotency-Token", "idem-1")];
    for _ in 0..2 {
        let reply = post(&server, "/sms", &sms, &token).await;
        assert_eq!(reply.status, 200);
    }
    // Status callbacks of one call in different states are separate events; a repeat is not.
    for status in ["ringing", "completed", "completed"] {
        let cb = [
            ("CallSid", "CA0000000000000000000000000000000b"),
            ("CallStatus", status),
        ];
        assert_eq!(post(&server, "/status?leg=1", &cb, &[]).await.status, 204);
    }
    let m = metrics(&server).await;
    assert!(
        m.contains("twiml_failover_journal_writes_total{result=\"new\"} 3"),
        "{m}"
    );
    assert!(
        m.contains("twiml_failover_journal_writes_total{result=\"duplicate\"} 2"),
        "{m}"
    );

    let mut store = journal::open(&url.parse().unwrap()).unwrap();
    let events = store.list(None, 100).unwrap();
    assert_eq!(events.len(), 3, "{events:#?}");
    // The retries took no id: `journal list` shows 1, 2, 3, and `journal show 2` finds one.
    let ids: Vec<i64> = events.iter().map(|e| e.id).collect();
    assert_eq!(ids, [1, 2, 3]);
    let sms_event = &events[0].webhook;
    assert_eq!(sms_event.idempotency_key, "idem-1");
    assert_eq!(sms_event.role, Role::Fallback);
    assert_eq!(sms_event.method, "POST");
    assert_eq!(sms_event.url, server.url("/sms"));
    assert_eq!(sms_event.error_code.as_deref(), Some("11205"));
    assert_eq!(
        sms_event.error_url.as_deref(),
        Some("https://voice.example.com/sms")
    );
    assert_eq!(sms_event.conversation, "SM0000000000000000000000000000000a");
    assert_eq!(
        sms_event.account_sid.as_deref(),
        Some("AC00000000000000000000000000000001")
    );
    assert_eq!(sms_event.params.len(), 5);
    let ringing = &events[1].webhook;
    assert_eq!(ringing.path, "/status");
    assert!(
        ringing
            .idempotency_key
            .starts_with("CA0000000000000000000000000000000b:/status:ringing:"),
        "{}",
        ringing.idempotency_key
    );
    assert!(
        ringing.params.contains(&("leg".into(), "1".into())),
        "query kept"
    );
    assert!(events[2]
        .webhook
        .idempotency_key
        .contains(":/status:completed:"));
    server.stop().await;
}

/// A SQLite journal another process keeps locked (past the 5 s busy timeout): the caller is
/// answered at once, `journal_up` and `/readyz` say the store is down, the event is held in memory,
/// and it is written once the lock is gone, without anyone sending it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journal_locked_still_answers_then_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("j.db");
    let url = format!("sqlite://{}", db.display());
    let server = TestServer::start(config(&with_journal("primary", &url))).await;
    assert!(metrics(&server)
        .await
        .contains("twiml_failover_journal_up 1"));
    let locker = rusqlite::Connection::open(&db).unwrap();
    locker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let sms = [
        ("MessageSid", "SM0000000000000000000000000000000c"),
        ("Body", "still here"),
    ];
    let started = Instant::now();
    let reply = post(&server, "/sms", &sms, &[]).await;
    assert_eq!(reply.status, 200);
    assert!(reply.body.contains("still here"), "{}", reply.body);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "answered within the journal timeout"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let m = metrics(&server).await;
        if m.contains("twiml_failover_journal_buffered_events 1")
            && m.contains("twiml_failover_journal_up 0")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the failed write never showed:\n{m}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ready = request(server.addr, "GET", "/readyz", &[], "").await;
    assert_eq!(
        ready.status, 200,
        "a journal outage keeps the server in rotation"
    );
    assert!(
        ready
            .body
            .contains("journal: down; 1 event(s) held in memory"),
        "{}",
        ready.body
    );

    // The store comes back: the buffered event is written without anyone sending it again.
    locker.execute_batch("ROLLBACK").unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let events = tokio::task::block_in_place(|| {
            journal::open(&url.parse().unwrap())
                .and_then(|mut store| store.list(None, 10))
                .unwrap_or_default()
        });
        if let Some(e) = events.first() {
            assert_eq!(e.webhook.conversation, "SM0000000000000000000000000000000c");
            break;
        }
        assert!(Instant::now() < deadline, "buffered event never written");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let m = metrics(&server).await;
        if m.contains("twiml_failover_journal_buffered_events 0")
            && m.contains("twiml_failover_journal_up 1")
        {
            break;
        }
        assert!(Instant::now() < deadline, "gauges never recovered:\n{m}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ready = request(server.addr, "GET", "/readyz", &[], "").await;
    assert_eq!(ready.body, "ready\njournal: up\n");
    server.stop().await;
}

#[tokio::test]
async fn without_a_journal_nothing_is_journaled_or_exposed() {
    let server = TestServer::role("primary").await;
    let cb = [
        ("CallSid", "CA0000000000000000000000000000000d"),
        ("CallStatus", "ringing"),
    ];
    assert_eq!(post(&server, "/status", &cb, &[]).await.status, 204);
    assert!(server.app.journal().is_none());
    assert!(!metrics(&server).await.contains("journal"));
    server.stop().await;
}

fn run_cli(args: &[&str]) -> (i32, String, String) {
    common::run_bin(args, &[])
}

#[test]
fn journal_commands_show_what_was_stored() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("j.db").display());
    let mut store = journal::open(&url.parse().unwrap()).unwrap();
    let now = twiml_failover::journal::time::now_ms();
    let event = |key: &str, at: i64| twiml_failover::journal::NewEvent {
        received_at_ms: at,
        role: Role::Fallback,
        method: "POST".into(),
        url: "https://f.example/sms".into(),
        path: "/sms".into(),
        params: vec![("Body".into(), "two\nlines".into())],
        error_code: Some("11200".into()),
        error_url: None,
        idempotency_key: key.into(),
        conversation: "SM1".into(),
        account_sid: None,
    };
    store
        .append(&[event("old", now - 3_600_000), event("new", now - 1000)])
        .unwrap();
    store.mark_delivered(1, now).unwrap();
    drop(store);

    let (code, out, err) = run_cli(&["journal", "stats", "--journal", &url]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("total        2") && out.contains("undelivered  1"),
        "{out}"
    );
    let (_, out, _) = run_cli(&["journal", "stats", "--journal", &url, "--format", "json"]);
    let stats: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(stats["delivered"], 1);

    let (_, out, _) = run_cli(&["journal", "list", "--journal", &url, "--since", "10m"]);
    assert_eq!(
        out.lines().count(),
        2,
        "header + the recent event only:\n{out}"
    );
    assert!(out.contains("new") && !out.contains("old"), "{out}");
    let (_, out, _) = run_cli(&["journal", "--journal", &url, "--format", "json", "list"]);
    let keys: Vec<String> = out
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["idempotency_key"].to_string()
        })
        .collect();
    assert_eq!(keys, ["\"old\"", "\"new\""]);

    let (code, out, _) = run_cli(&["journal", "show", "2", "--journal", &url]);
    assert_eq!(code, 0);
    assert!(out.contains(r#""Body" = "two\nlines""#), "{out}");
    // Nothing forwards here: the event is unsent, with no attempt scheduled (not "pending").
    assert!(
        out.contains("state            unsent\n") && out.contains("next attempt     -\n"),
        "{out}"
    );
    let (_, out, _) = run_cli(&[
        "journal",
        "show",
        "2",
        "--journal",
        &url,
        "--format",
        "json",
    ]);
    let shown: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (&shown["state"], &shown["next_attempt_at"]),
        (&serde_json::json!("unsent"), &serde_json::Value::Null)
    );
    let (code, _, err) = run_cli(&["journal", "show", "99", "--journal", &url]);
    assert_eq!(code, 1);
    assert!(
        err.starts_with("twiml-failover: no event 99: not in this journal (ids are never reused")
            && err.contains("`journal list` shows the events it holds"),
        "{err}"
    );

    let config = dir.path().join("c.toml");
    std::fs::write(&config, format!("[journal]\nurl = \"{url}\"\n")).unwrap();
    let (code, out, err) = run_cli(&["journal", "stats", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("total        2"), "{out}");

    // A mistyped path is an error, not a new empty journal.
    let typo = format!("sqlite://{}", dir.path().join("typo.db").display());
    let (code, _, err) = run_cli(&["journal", "stats", "--journal", &typo]);
    assert_eq!(code, 2);
    assert!(err.contains("no journal at"), "{err}");
    assert!(!dir.path().join("typo.db").exists());
    let (code, _, err) = run_cli(&["journal", "stats"]);
    assert_eq!(code, 2);
    assert!(err.contains("--journal"), "{err}");
    let (code, _, err) = run_cli(&["journal", "list", "--journal", &url, "--since", "soon"]);
    assert_eq!(code, 2);
    assert!(err.contains("since"), "{err}");
}

/// A TCP proxy to the test database that can be cut (connections dropped, new ones refused).
struct CuttableProxy {
    addr: SocketAddr,
    up: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl CuttableProxy {
    async fn start(upstream: SocketAddr) -> CuttableProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(AtomicBool::new(true));
        let links: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let (up2, links2) = (up.clone(), links.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !up2.load(Ordering::SeqCst) {
                    continue; // dropped: the database is "down"
                }
                let link = tokio::spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                links2.lock().unwrap().push(link);
            }
        });
        CuttableProxy { addr, up, links }
    }

    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(postgres_tests),
    ignore = "needs PostgreSQL: eval \"$(bash .ci/postgres.sh)\" && cargo test"
)]
async fn postgres_down_still_answers_then_catches_up_in_order() {
    let base = postgres_url();
    let direct = tokio::task::block_in_place(|| fresh_postgres_db(&base, "tf_down"));
    // postgres://user:pw@127.0.0.1:PORT/db: route the server through the proxy.
    let authority = direct.split('@').nth(1).unwrap().split('/').next().unwrap();
    let upstream: SocketAddr = authority.parse().expect("test URL uses IP:port");
    let proxy = CuttableProxy::start(upstream).await;
    let proxied = direct.replacen(authority, &proxy.addr.to_string(), 1);
    let server = TestServer::start(config(&with_journal("fallback", &proxied))).await;
    let sms = |sid: &'static str| [("MessageSid", sid), ("Body", "hello")];

    assert_eq!(post(&server, "/sms", &sms("SM1"), &[]).await.status, 200);
    proxy.cut();
    for sid in ["SM2", "SM3"] {
        let reply = post(&server, "/sms", &sms(sid), &[]).await;
        assert_eq!(
            reply.status, 200,
            "the caller is answered while the database is down"
        );
        assert!(reply.body.contains("<Message>"));
    }
    let m = metrics(&server).await;
    assert!(
        m.contains("twiml_failover_journal_writes_total{result=\"error\"} 2"),
        "{m}"
    );
    assert!(
        m.contains("twiml_failover_journal_buffered_events 2"),
        "{m}"
    );
    assert!(m.contains("twiml_failover_journal_up 0"), "{m}");
    proxy.restore();

    let url: JournalUrl = direct.parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let conversations = loop {
        let events = tokio::task::block_in_place(|| {
            let mut store = journal::open(&url).unwrap();
            store.list(None, 100).unwrap()
        });
        if events.len() == 3 {
            break events
                .into_iter()
                .map(|e| e.webhook.conversation)
                .collect::<Vec<_>>();
        }
        assert!(Instant::now() < deadline, "buffered events never written");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(conversations, ["SM1", "SM2", "SM3"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !metrics(&server)
        .await
        .contains("twiml_failover_journal_up 1")
    {
        assert!(Instant::now() < deadline, "journal_up never went back to 1");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.stop().await;
}
