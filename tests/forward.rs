//! Store and forward, end to end: a forward target that goes down (refuses connections, then
//! answers 503) and comes back; every journaled event must arrive exactly once, in order per
//! conversation, signed for the target's URL. Also `journal replay`.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use twiml_failover::backoff::Backoff;
use twiml_failover::forward::{Deliverer, Settings};
use twiml_failover::journal::{self, JournalUrl, NewEvent, Store};
use twiml_failover::keyring::{KeyRing, Secret};
use twiml_failover::metrics::Metrics;
use twiml_failover::service::Exit;
use twiml_failover::signature::{self, Algorithm};
use twiml_failover::twilio::Role;

use common::TOKEN;

/// One request the target received.
#[derive(Debug, Clone)]
struct Hit {
    /// What the target answered.
    status: u16,
    headers: HashMap<String, String>,
    params: Vec<(String, String)>,
}

impl Hit {
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", String::as_str)
    }
}

#[derive(Debug, Default)]
struct TargetState {
    /// Answer 503 instead of 200.
    unavailable: bool,
    /// Answer 503 to every n-th request (a flaky target).
    fail_every: Option<usize>,
    hits: Vec<Hit>,
}

/// A forward target we control: up (200), unavailable (503) or down (connections refused).
struct Target {
    addr: SocketAddr,
    state: Arc<Mutex<TargetState>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl Target {
    async fn start() -> Target {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(TargetState::default()));
        let server = Some(tokio::spawn(serve(listener, state.clone())));
        Target {
            addr,
            state,
            server,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/internal/twilio?src=failover", self.addr)
    }

    /// Stops listening and cuts every open connection: new connections are refused.
    async fn down(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
            let _ = server.await;
        }
    }

    /// Listens again on the same port.
    async fn up(&mut self) {
        if self.server.is_none() {
            let listener = TcpListener::bind(self.addr).await.unwrap();
            self.server = Some(tokio::spawn(serve(listener, self.state.clone())));
        }
    }

    fn set_unavailable(&self, unavailable: bool) {
        self.state.lock().unwrap().unavailable = unavailable;
    }

    fn set_flaky(&self, fail_every: Option<usize>) {
        self.state.lock().unwrap().fail_every = fail_every;
    }

    fn hits(&self) -> Vec<Hit> {
        self.state.lock().unwrap().hits.clone()
    }

    /// The requests answered 200: what the target accepted.
    fn accepted(&self) -> Vec<Hit> {
        self.hits()
            .into_iter()
            .filter(|h| h.status == 200)
            .collect()
    }
}

/// Accepts until aborted; aborting drops the set of connection tasks, which closes them all.
async fn serve(listener: TcpListener, state: Arc<Mutex<TargetState>>) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let state = state.clone();
        let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
            let state = state.clone();
            async move {
                let headers = req
                    .headers()
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.as_str().to_string(),
                            String::from_utf8_lossy(v.as_bytes()).into_owned(),
                        )
                    })
                    .collect();
                let body = req.into_body().collect().await?.to_bytes();
                let params: Vec<(String, String)> =
                    serde_urlencoded::from_bytes(&body).unwrap_or_default();
                let mut state = state.lock().unwrap();
                let flaky = state
                    .fail_every
                    .is_some_and(|n| state.hits.len() % n == n - 1);
                let status = if state.unavailable || flaky { 503 } else { 200 };
                state.hits.push(Hit {
                    status,
                    headers,
                    params,
                });
                Ok::<_, hyper::Error>(
                    hyper::Response::builder()
                        .status(status)
                        .body(Full::new(Bytes::from_static(b"ok")))
                        .unwrap(),
                )
            }
        });
        connections.spawn(async move {
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Quick retries and a short breaker cool-down so the test does not wait out production delays.
fn settings(url: String) -> Settings {
    Settings {
        concurrency: 6,
        timeout: Duration::from_secs(5),
        backoff: Backoff {
            base: Duration::from_millis(20),
            cap: Duration::from_millis(200),
        },
        breaker_threshold: 3,
        breaker_cooldown: Duration::from_millis(150),
        poll_interval: Duration::from_millis(200),
        ..Settings::new(url)
    }
}

fn keyring() -> KeyRing {
    let mut ring = KeyRing {
        primary: Some(Secret::new(TOKEN)),
        ..KeyRing::default()
    };
    ring.accounts.insert(
        "AC00000000000000000000000000000009".into(),
        vec![Secret::new("sub-account-token")],
    );
    ring
}

fn sms(conversation: usize, seq: usize, account: &str) -> NewEvent {
    let sid = format!("SM{conversation:032}");
    let key = format!("{sid}-{seq}");
    NewEvent {
        received_at_ms: journal::time::now_ms(),
        role: Role::Fallback,
        method: "POST".into(),
        url: "https://fallback.example.com/sms".into(),
        path: "/sms".into(),
        params: vec![
            ("AccountSid".into(), account.into()),
            ("MessageSid".into(), sid.clone()),
            ("Body".into(), format!("message {seq} & more")),
            ("Seq".into(), seq.to_string()),
        ],
        error_code: Some("11200".into()),
        error_url: None,
        idempotency_key: key,
        conversation: sid,
        account_sid: Some(account.into()),
    }
}

fn sqlite(dir: &tempfile::TempDir) -> JournalUrl {
    format!("sqlite://{}", dir.path().join("journal.db").display())
        .parse()
        .unwrap()
}

/// Waits (bounded, to fail instead of hanging) until `done` holds.
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..600 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("gave up waiting: {what}");
}

/// Checks what the target accepted against what was journaled, in `order` (keys per conversation).
fn assert_delivered_once_in_order(
    target: &Target,
    order: &BTreeMap<String, Vec<String>>,
    url: &str,
) {
    let accepted = target.accepted();
    let mut by_key: HashMap<&str, usize> = HashMap::new();
    for hit in &accepted {
        *by_key
            .entry(hit.header("x-twiml-failover-idempotency-key"))
            .or_default() += 1;
    }
    let duplicates: Vec<_> = by_key.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        duplicates.is_empty(),
        "delivered more than once: {duplicates:?}"
    );
    let expected: usize = order.values().map(Vec::len).sum();
    assert_eq!(accepted.len(), expected, "every event delivered");
    for (conversation, keys) in order {
        let got: Vec<&str> = accepted
            .iter()
            .filter(|h| {
                h.params
                    .iter()
                    .any(|(k, v)| k == "MessageSid" && v == conversation)
            })
            .map(|h| h.header("x-twiml-failover-idempotency-key"))
            .collect();
        assert_eq!(&got, keys, "order of conversation {conversation}");
    }
    for hit in target.hits() {
        let account = hit
            .params
            .iter()
            .find(|(k, _)| k == "AccountSid")
            .map(|(_, v)| v.as_str());
        let token = if account == Some("AC00000000000000000000000000000009") {
            "sub-account-token"
        } else {
            TOKEN
        };
        let sig = hit.header("x-twilio-signature");
        assert!(
            signature::verify(
                Algorithm::HmacSha1,
                &[token.as_bytes()],
                url,
                &hit.params,
                sig
            ),
            "forwarded signature must validate for {url}"
        );
        assert_eq!(
            hit.header("content-type"),
            "application/x-www-form-urlencoded"
        );
        assert_eq!(hit.header("x-twiml-failover-role"), "fallback");
        assert!(hit.header("x-twiml-failover-received-at").ends_with('Z'));
        assert!(hit
            .header("x-twiml-failover-event-id")
            .parse::<i64>()
            .is_ok());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliverer_rides_out_a_target_outage() {
    let dir = tempfile::tempdir().unwrap();
    outage(sqlite(&dir)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(postgres_tests),
    ignore = "needs PostgreSQL: eval \"$(bash .ci/postgres.sh)\" && cargo test"
)]
async fn deliverer_rides_out_a_target_outage_postgres() {
    let base = common::postgres_url();
    let url = tokio::task::block_in_place(|| common::fresh_postgres_db(&base, "tf_forward"));
    outage(url.parse().unwrap()).await;
}

/// The target refuses connections, answers 503, then fails every third request, while events
/// keep being journaled; at the end each arrived once, in order per conversation, signed.
async fn outage(url: JournalUrl) {
    // The stores are synchronous (the postgres driver runs its own runtime): keep them off the
    // async workers.
    let mut writer = tokio::task::block_in_place(|| journal::open(&url).unwrap());
    let mut target = Target::start().await;
    let mut metrics = Metrics::new("fallback");
    metrics.enable_forward();
    let metrics = Arc::new(metrics);
    let wake = Arc::new(Notify::new());
    let deliverer = Deliverer::spawn(
        url.clone(),
        settings(target.url()),
        keyring(),
        metrics.forward.clone(),
        wake.clone(),
    )
    .unwrap();

    let mut order: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut append = |store: &mut Box<dyn Store>, seq: usize| {
        let conversation = seq % 3;
        let account = if conversation == 2 {
            "AC00000000000000000000000000000009"
        } else {
            "AC00000000000000000000000000000001"
        };
        let event = sms(conversation, seq, account);
        order
            .entry(event.conversation.clone())
            .or_default()
            .push(event.idempotency_key.clone());
        tokio::task::block_in_place(|| store.append(&[event]).unwrap());
        wake.notify_one();
    };

    // Up: the first events go straight through.
    for seq in 0..10 {
        append(&mut writer, seq);
    }
    eventually("first events delivered", || target.accepted().len() == 10).await;

    // Down: connections refused while events keep arriving.
    target.down().await;
    for seq in 10..40 {
        append(&mut writer, seq);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eventually("breaker opened", || {
        metrics
            .encode()
            .contains("twiml_failover_forward_breaker_state 1")
    })
    .await;

    // Up but failing: 503 answers are failures too.
    target.set_unavailable(true);
    target.up().await;
    for seq in 40..60 {
        append(&mut writer, seq);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eventually("a 503 was seen", || {
        target.hits().iter().any(|h| h.status == 503)
    })
    .await;

    // Flaky: every third request fails while a burst arrives; failed events are retried later,
    // and the conversation's later events must wait for them.
    target.set_unavailable(false);
    target.set_flaky(Some(3));
    for seq in 60..90 {
        append(&mut writer, seq);
    }
    eventually("flaky failures seen", || {
        target.hits().iter().filter(|h| h.status == 503).count() > 10
    })
    .await;

    // Back: everything arrives.
    target.set_flaky(None);
    eventually("every event delivered", || {
        tokio::task::block_in_place(|| writer.stats().unwrap().undelivered == 0)
    })
    .await;
    deliverer.stop().await;

    assert_delivered_once_in_order(&target, &order, &target.url());
    let text = metrics.encode();
    assert!(
        text.contains("twiml_failover_forward_delivered_total 90"),
        "{text}"
    );
    assert!(text.contains("result=\"connect_error\""), "{text}");
    assert!(text.contains("result=\"http_error\""), "{text}");
    assert!(
        text.contains("twiml_failover_forward_breaker_state 0"),
        "{text}"
    );
    let stats = tokio::task::block_in_place(move || writer.stats().unwrap());
    assert_eq!((stats.total, stats.delivered), (90, 90));
}

/// The server's config: fallback role, a SQLite journal, forwarding to `to` with quick retries.
fn server_config(journal: &str, to: &str) -> twiml_failover::config::Config {
    let mut a = common::args("fallback");
    a.journal.url = Some(journal.into());
    a.forward = twiml_failover::config::ForwardSection {
        to: Some(to.into()),
        concurrency: Some(4),
        max_backoff: Some(0.2),
        breaker_cooldown: Some(0.15),
        ..Default::default()
    };
    common::config(&a)
}

/// A server with its deliverer running (the service starts it for `--forward-to`).
struct Forwarding {
    server: common::TestServer,
}

impl Forwarding {
    async fn start(journal: &str, to: &str) -> Forwarding {
        let server = common::TestServer::start(server_config(journal, to)).await;
        Forwarding { server }
    }

    /// Graceful stop, like SIGTERM: drain the server, stop the deliverer, flush the journal.
    async fn stop(self) {
        assert_eq!(self.server.stop().await, Exit::Clean);
    }

    /// Sends one signed SMS webhook (with Twilio's idempotency token) and returns the status.
    async fn sms(&self, path: &str, conversation: usize, token: &str, body: &str) -> u16 {
        let sid = format!("SM{conversation:032}");
        let params: Vec<(&str, &str)> = vec![
            ("AccountSid", "AC00000000000000000000000000000001"),
            ("MessageSid", &sid),
            ("From", "+15550100001"),
            ("To", "+15550199999"),
            ("Body", body),
            ("ErrorCode", "11200"),
            ("ErrorUrl", "https://primary.example.com/sms"),
        ];
        let url = self.server.url(path);
        let sig = signature::sign(Algorithm::HmacSha1, TOKEN.as_bytes(), &url, &params);
        common::request(
            self.server.addr,
            "POST",
            path,
            &[
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("X-Twilio-Signature", &sig),
                ("I-Twilio-Idempotency-Token", token),
            ],
            &common::form(&params),
        )
        .await
        .status
    }
}

/// Sends `count` webhooks spread over 4 conversations, each acknowledged with 200, and records
/// the order per conversation; every fifth one is sent twice, as a Twilio retry would be.
async fn stream(
    f: &Forwarding,
    from: usize,
    count: usize,
    order: &mut BTreeMap<String, Vec<String>>,
) {
    for seq in from..from + count {
        let conversation = seq % 4;
        let token = format!("idem-{seq}");
        let path = if seq % 3 == 0 { "/status" } else { "/sms" };
        let body = format!("message {seq}");
        let status = f.sms(path, conversation, &token, &body).await;
        let acknowledged = if path == "/status" { 204 } else { 200 };
        assert_eq!(status, acknowledged, "webhook {seq}");
        if seq % 5 == 0 {
            assert_eq!(f.sms(path, conversation, &token, &body).await, acknowledged);
        }
        order
            .entry(format!("SM{conversation:032}"))
            .or_default()
            .push(token);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_webhooks_reach_a_target_that_was_down_once_each_in_order() {
    let dir = tempfile::tempdir().unwrap();
    through_server(&sqlite(&dir).to_string()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(postgres_tests),
    ignore = "needs PostgreSQL: eval \"$(bash .ci/postgres.sh)\" && cargo test"
)]
async fn signed_webhooks_reach_a_target_that_was_down_once_each_in_order_postgres() {
    let base = common::postgres_url();
    let url = tokio::task::block_in_place(|| common::fresh_postgres_db(&base, "tf_forward_e2e"));
    through_server(&url).await;
}

/// Signed webhooks into the server while the target is up, down across a graceful restart, then
/// answering 503, then up again.
async fn through_server(journal: &str) {
    // `Display` hides a password, so the server is given the URL as written.
    let journal_url: JournalUrl = journal.parse().unwrap();
    let stats = |url: &JournalUrl| {
        tokio::task::block_in_place(|| journal::open(url).unwrap().stats().unwrap())
    };
    let mut target = Target::start().await;
    let mut order = BTreeMap::new();

    let f = Forwarding::start(journal, &target.url()).await;
    stream(&f, 0, 12, &mut order).await;
    eventually("first webhooks forwarded", || target.accepted().len() == 12).await;

    // The target goes away while webhooks keep coming; each is still acknowledged at once.
    target.down().await;
    stream(&f, 12, 30, &mut order).await;
    // A graceful restart with the target still down: nothing is lost, it waits in the journal.
    f.stop().await;
    let undelivered = stats(&journal_url).undelivered;
    assert!(
        undelivered >= 30,
        "undelivered events stay journaled: {undelivered}"
    );

    let f = Forwarding::start(journal, &target.url()).await;
    target.set_unavailable(true);
    target.up().await;
    stream(&f, 42, 20, &mut order).await;
    eventually("the 503s were seen", || {
        target.hits().iter().any(|h| h.status == 503)
    })
    .await;
    target.set_unavailable(false);
    let expected: usize = order.values().map(Vec::len).sum();
    eventually("everything forwarded", || {
        target.accepted().len() >= expected
    })
    .await;
    eventually("journal caught up", || stats(&journal_url).undelivered == 0).await;
    let metrics = f.server.app.metrics().encode();
    f.stop().await;

    // The target's own check: the same token, the target's URL, unchanged parameters.
    assert_delivered_once_in_order(&target, &order, &target.url());
    assert!(
        metrics.contains("twiml_failover_forward_breaker_state 0"),
        "{metrics}"
    );
    let stats = stats(&journal_url);
    assert_eq!((stats.total, stats.delivered), (62, 62));
}

/// Runs the binary with the test token in its environment.
fn run(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_twiml-failover"))
        .args(args)
        .env("TWILIO_AUTH_TOKEN", TOKEN)
        .env_remove("TWIML_FAILOVER_FORWARD_TO")
        .env_remove("TWIML_FAILOVER_CONFIG")
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_resends_everything_since_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite(&dir);
    let mut store = journal::open(&url).unwrap();
    let mut early = sms(1, 0, "AC00000000000000000000000000000001");
    early.received_at_ms = 1_000_000;
    store.append(&[early]).unwrap();
    let mut order: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for seq in 1..=25 {
        let account = if seq % 5 == 0 {
            "AC00000000000000000000000000000009"
        } else {
            "AC00000000000000000000000000000001"
        };
        let event = sms(seq % 3, seq, account);
        order
            .entry(event.conversation.clone())
            .or_default()
            .push(event.idempotency_key.clone());
        store.append(&[event]).unwrap();
    }
    // Delivered or not makes no difference to a replay.
    let first = store.undelivered(0, 100).unwrap()[1].id;
    store
        .mark_delivered(first, journal::time::now_ms())
        .unwrap();

    // The subaccount's token and the default target come from the config file, like the server's.
    let target = Target::start().await;
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!(
            "[accounts.AC00000000000000000000000000000009]\nenv = \"SUB_TOKEN\"\n\
             [forward]\nto = \"{}\"\n",
            target.url()
        ),
    )
    .unwrap();
    let journal_arg = url.to_string();
    let config_arg = config.display().to_string();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_twiml-failover"))
            .args([
                "journal",
                "replay",
                "--journal",
                &journal_arg,
                "--config",
                &config_arg,
                "--since",
                "1h",
            ])
            .env("TWILIO_AUTH_TOKEN", TOKEN)
            .env("SUB_TOKEN", "sub-account-token")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("25 sent, 0 failed"), "{stdout}");
    // `--since 1h` leaves out the old event; the rest arrive once each, in order, signed.
    assert_delivered_once_in_order(&target, &order, &target.url());

    // A target that is not there: every event fails, the exit code says so.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let nowhere = format!("http://{}/in", closed.local_addr().unwrap());
    drop(closed);
    let journal_arg = url.to_string();
    let out = tokio::task::spawn_blocking(move || {
        run(&[
            "journal",
            "replay",
            "--journal",
            &journal_arg,
            "--to",
            &nowhere,
            "--format",
            "json",
        ])
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["sent"], 0);
    assert_eq!(report["failed"], 26);
    assert!(report["failures"][0]["error"]
        .as_str()
        .unwrap()
        .contains("connect"));

    // Without a target anywhere, replay refuses to guess.
    let journal_arg = url.to_string();
    let out =
        tokio::task::spawn_blocking(move || run(&["journal", "replay", "--journal", &journal_arg]))
            .await
            .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--to"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(postgres_tests),
    ignore = "needs PostgreSQL: eval \"$(bash .ci/postgres.sh)\" && cargo test"
)]
async fn replicas_sharing_a_postgres_journal_deliver_each_event_once() {
    let base = common::postgres_url();
    let url: JournalUrl =
        tokio::task::block_in_place(|| common::fresh_postgres_db(&base, "tf_forward_replicas"))
            .parse()
            .unwrap();
    let mut writer = tokio::task::block_in_place(|| journal::open(&url).unwrap());
    let target = Target::start().await;
    let metrics = Metrics::new("fallback");
    let replica = |wake: &Arc<Notify>| {
        Deliverer::spawn(
            url.clone(),
            settings(target.url()),
            keyring(),
            metrics.forward.clone(),
            wake.clone(),
        )
        .unwrap()
    };
    let (wake_a, wake_b) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let a = replica(&wake_a);
    let b = replica(&wake_b);
    let mut order: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut append = |store: &mut Box<dyn Store>, seq: usize| {
        let event = sms(seq % 4, seq, "AC00000000000000000000000000000001");
        order
            .entry(event.conversation.clone())
            .or_default()
            .push(event.idempotency_key.clone());
        tokio::task::block_in_place(|| store.append(&[event]).unwrap());
        // Both replicas hear of it (each would, from its own writer, in a real deployment).
        wake_a.notify_one();
        wake_b.notify_one();
    };
    for seq in 0..40 {
        append(&mut writer, seq);
    }
    eventually("delivered by one of the two", || {
        target.accepted().len() >= 40
            && tokio::task::block_in_place(|| writer.stats().unwrap().undelivered == 0)
    })
    .await;
    // Whichever led goes away; the other takes over.
    a.stop().await;
    for seq in 40..60 {
        append(&mut writer, seq);
    }
    eventually("delivered after a replica left", || {
        target.accepted().len() >= 60
            && tokio::task::block_in_place(|| writer.stats().unwrap().undelivered == 0)
    })
    .await;
    b.stop().await;
    tokio::task::block_in_place(move || drop(writer));
    assert_delivered_once_in_order(&target, &order, &target.url());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_prunes_only_old_delivered_events() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite(&dir);
    let mut store = journal::open(&url).unwrap();
    let now = journal::time::now_ms();
    let day = 86_400_000;
    let ids: Vec<i64> = (0..3)
        .map(|seq| {
            let mut event = sms(seq, seq, "AC00000000000000000000000000000001");
            event.received_at_ms = now - 30 * day;
            store.append(&[event]).unwrap()[0].id()
        })
        .collect();
    store.mark_delivered(ids[0], now - 8 * day).unwrap();
    store.mark_delivered(ids[1], now - 6 * day).unwrap();
    // ids[2] is a month old but undelivered: never pruned, delivered now instead.
    let target = Target::start().await;
    let deliverer = Deliverer::spawn(
        url.clone(),
        Settings {
            retention: Duration::from_secs(7 * 86_400),
            ..settings(target.url())
        },
        keyring(),
        Metrics::new("fallback").forward.clone(),
        Arc::new(Notify::new()),
    )
    .unwrap();
    eventually("pruned and delivered", || {
        let s = store.stats().unwrap();
        (s.total, s.undelivered) == (2, 0)
    })
    .await;
    deliverer.stop().await;
    assert!(store.get(ids[0]).unwrap().is_none(), "8 days old: pruned");
    assert!(store.get(ids[1]).unwrap().is_some(), "6 days old: kept");
    assert_eq!(target.accepted().len(), 1);
}

/// The real binary serving the fallback role with a journal and forwarding to `to`.
struct Binary {
    child: std::process::Child,
    addr: SocketAddr,
}

impl Binary {
    /// Starts it on a free port and waits for `/readyz`.
    async fn start(journal: &str, to: &str) -> Binary {
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_twiml-failover"))
            .arg("serve")
            .args(["--listen", &addr.to_string(), "--role", "fallback"])
            .arg("--templates")
            .arg(common::shipped_templates())
            .arg("--config")
            .arg(common::example_config())
            .args(["--journal", journal, "--journal-timeout", "10"])
            .args(["--forward-to", to, "--forward-max-backoff", "0.2"])
            .args(["--forward-breaker-cooldown", "0.2", "--watch", "false"])
            .env("TWILIO_AUTH_TOKEN", TOKEN)
            .env("TWIML_FAILOVER_LOG", "error")
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut binary = Binary { child, addr };
        for _ in 0..400 {
            if tokio::net::TcpStream::connect(addr).await.is_ok()
                && common::request(addr, "GET", "/readyz", &[], "")
                    .await
                    .status
                    == 200
            {
                return binary;
            }
            if let Ok(Some(status)) = binary.child.try_wait() {
                panic!("server exited at start-up: {status}");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        binary.kill();
        panic!("server never became ready");
    }

    /// SIGKILL: no drain, no flush, no goodbye.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Signed SMS webhooks from `clients` keep-alive clients until `stop`; returns the acknowledged
/// MessageSids and counts them in `count` as they come.
async fn sms_stream(
    addr: SocketAddr,
    tag: usize,
    clients: usize,
    stop: Arc<std::sync::atomic::AtomicBool>,
    count: Arc<std::sync::atomic::AtomicUsize>,
) -> Vec<tokio::task::JoinHandle<Vec<String>>> {
    (0..clients)
        .map(|client| {
            let (stop, count) = (stop.clone(), count.clone());
            tokio::spawn(async move {
                let mut conn = common::KeepAlive::new(addr);
                let mut acked = Vec::new();
                for n in 0.. {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                    let sid = format!("SM{tag:02}{client:02}{n:028}");
                    let params = [
                        ("AccountSid", "AC00000000000000000000000000000001"),
                        ("MessageSid", sid.as_str()),
                        ("Body", "kill & forward"),
                    ];
                    let url = format!("http://{addr}/sms");
                    let sig = signature::sign(Algorithm::HmacSha1, TOKEN.as_bytes(), &url, &params);
                    let body = common::form(&params);
                    let request = format!(
                        "POST /sms HTTP/1.1\r\nHost: {addr}\r\nContent-Type: \
                         application/x-www-form-urlencoded\r\nX-Twilio-Signature: {sig}\r\n\
                         Content-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    match conn.send(request.as_bytes()).await {
                        common::Exchange::Answered(reply) if reply.status == 200 => {
                            count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            acked.push(sid)
                        }
                        common::Exchange::Answered(reply) => {
                            panic!("{}: {}", reply.status, reply.body)
                        }
                        common::Exchange::Refused => break,
                        common::Exchange::Lost(_) => {}
                    }
                }
                acked
            })
        })
        .collect()
}

/// The reviewer's check: SIGKILL the fallback repeatedly under a stream of webhooks, with the
/// forward target down for part of it; what the target finally received equals what was
/// acknowledged (no gaps; resends after a kill are possible and counted, never silent).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_under_load_then_the_target_has_every_acknowledged_webhook() {
    let dir = tempfile::tempdir().unwrap();
    sigkill_under_load(&sqlite(&dir).to_string()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[cfg_attr(
    not(postgres_tests),
    ignore = "needs PostgreSQL: eval \"$(bash .ci/postgres.sh)\" && cargo test"
)]
async fn sigkill_under_load_then_the_target_has_every_acknowledged_webhook_postgres() {
    let base = common::postgres_url();
    let url = tokio::task::block_in_place(|| common::fresh_postgres_db(&base, "tf_forward_kill"));
    sigkill_under_load(&url).await;
}

async fn sigkill_under_load(journal: &str) {
    let journal_url: JournalUrl = journal.parse().unwrap();
    let stats =
        || tokio::task::block_in_place(|| journal::open(&journal_url).unwrap().stats().unwrap());
    let mut target = Target::start().await;
    let mut acked: Vec<String> = Vec::new();
    for round in 0..3 {
        let mut server = Binary::start(journal, &target.url()).await;
        if round == 1 {
            target.down().await;
        }
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let clients = sms_stream(server.addr, round, 3, stop.clone(), count.clone()).await;
        // Kill mid-stream once it is well under way (bounded, so a stuck server fails the test).
        eventually("the stream is under way", || {
            count.load(std::sync::atomic::Ordering::Relaxed) >= 200
        })
        .await;
        server.kill();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for c in clients {
            acked.extend(c.await.unwrap());
        }
        if round == 1 {
            target.up().await;
        }
    }
    assert!(acked.len() >= 600, "the stream got going: {}", acked.len());
    // One last start (then a plain SIGKILL again) drains the backlog.
    let mut server = Binary::start(journal, &target.url()).await;
    eventually("backlog delivered", || stats().undelivered == 0).await;
    server.kill();

    let mut received: HashMap<String, usize> = HashMap::new();
    for hit in target.accepted() {
        let sid = hit
            .params
            .iter()
            .find(|(k, _)| k == "MessageSid")
            .map(|(_, v)| v.clone())
            .unwrap();
        assert!(
            signature::verify(
                Algorithm::HmacSha1,
                &[TOKEN.as_bytes()],
                &target.url(),
                &hit.params,
                hit.header("x-twilio-signature")
            ),
            "forwarded signature validates"
        );
        *received.entry(sid).or_default() += 1;
    }
    let missing: Vec<&String> = acked
        .iter()
        .filter(|s| !received.contains_key(*s))
        .collect();
    let resent = received.values().filter(|n| **n > 1).count();
    eprintln!(
        "{} acknowledged, {} distinct received by the target, {} received more than once (sent, \
         then killed before marked delivered)",
        acked.len(),
        received.len(),
        resent
    );
    assert!(
        missing.is_empty(),
        "acknowledged but never forwarded: {}",
        missing.len()
    );
    // Nothing the target got was invented: every distinct event is a journaled one.
    assert_eq!(received.len() as u64, stats().total);
}
