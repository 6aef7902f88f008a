//! Upstream mode end to end: the real binary in front of a fake TwiML app on loopback whose mode we
//! switch (valid, slow past the budget, 500, broken XML, `<Say>` to an SMS, 100 kB, refusing
//! connections, flapping, hanging). For each: what Twilio gets (status, body, time), the source
//! header, the log line, the metric, and the journal entry committed before the answer. The app's
//! received signature is judged by the official twilio-python `RequestValidator`.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use common::process::Serve;
use common::{form, TOKEN};
use twiml_failover::signature::{sign, Algorithm};

const PUBLIC: &str = "https://voice.example.com";
const UPSTREAM_VOICE: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
    <Response><Say>Hello from the app</Say></Response>";
const UPSTREAM_SMS: &str = "<Response><Message>Hello from the app</Message></Response>";

/// How the fake app answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Valid TwiML for the request's channel.
    Valid,
    /// Valid, after this long.
    Slow(Duration),
    /// 500.
    Error,
    /// 200 with XML that does not parse.
    BrokenXml,
    /// 200 with `<Say>`, whatever the channel.
    Say,
    /// 200 with a 100 kB document.
    Huge,
    /// 500 and valid, alternately.
    Flaps,
    /// Never answers.
    Hangs,
}

/// One request the app received.
#[derive(Debug, Clone)]
struct Hit {
    method: String,
    target: String,
    headers: HashMap<String, String>,
    body: String,
}

/// The fake TwiML app: listens on loopback (or not, when down) on its own runtime.
struct App {
    addr: SocketAddr,
    mode: Arc<Mutex<Mode>>,
    hits: Arc<Mutex<Vec<Hit>>>,
    runtime: tokio::runtime::Runtime,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl App {
    fn start(mode: Mode) -> App {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        let mut app = App {
            addr,
            mode: Arc::new(Mutex::new(mode)),
            hits: Arc::default(),
            runtime,
            server: None,
        };
        app.server = Some(
            app.runtime
                .spawn(serve(listener, app.mode.clone(), app.hits.clone())),
        );
        app
    }

    fn base(&self) -> String {
        format!("http://{}/app", self.addr)
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    /// Stops listening and cuts open connections: connections are refused from now on.
    fn down(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
            let _ = self.runtime.block_on(server);
        }
    }
}

async fn serve(listener: TcpListener, mode: Arc<Mutex<Mode>>, hits: Arc<Mutex<Vec<Hit>>>) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let (mode, hits) = (mode.clone(), hits.clone());
        let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
            let (mode, hits) = (mode.clone(), hits.clone());
            async move {
                let method = req.method().to_string();
                let target = req.uri().to_string();
                let headers = req
                    .headers()
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                    .collect();
                let body = req.into_body().collect().await?.to_bytes();
                let body = String::from_utf8_lossy(&body).into_owned();
                let sms = body.contains("MessageSid");
                let current = *mode.lock().unwrap();
                let n = {
                    let mut hits = hits.lock().unwrap();
                    hits.push(Hit {
                        method,
                        target,
                        headers,
                        body,
                    });
                    hits.len()
                };
                let valid = if sms { UPSTREAM_SMS } else { UPSTREAM_VOICE };
                let (status, text) = match current {
                    Mode::Valid => (200, valid.to_string()),
                    Mode::Slow(d) => {
                        tokio::time::sleep(d).await;
                        (200, valid.to_string())
                    }
                    Mode::Error => (500, "oops".into()),
                    Mode::BrokenXml => (200, "<Response><Say>half".into()),
                    Mode::Say => (200, UPSTREAM_VOICE.into()),
                    Mode::Huge => (
                        200,
                        format!("<Response><Say>{}</Say></Response>", "a".repeat(100_000)),
                    ),
                    Mode::Flaps if n % 2 == 1 => (500, "flap".into()),
                    Mode::Flaps => (200, valid.to_string()),
                    Mode::Hangs => std::future::pending().await,
                };
                let mut answer = hyper::Response::new(Full::new(Bytes::from(text)));
                *answer.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                answer
                    .headers_mut()
                    .insert("content-type", "text/xml".parse().unwrap());
                Ok::<_, hyper::Error>(answer)
            }
        });
        connections.spawn(async move {
            // No keep-alive: after `down()` the next webhook must meet a refused connection, not a
            // pooled one the app's end already closed (that race reads as `broken`, not `connect`).
            let _ = http1::Builder::new()
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// What Twilio got.
#[derive(Debug)]
struct Reply {
    status: u16,
    source: String,
    body: String,
    took: Duration,
}

/// Sends a webhook to `path` signed for the public URL, with `params`; parses the answer.
fn webhook(serve: &Serve, path: &str, params: &[(&str, &str)]) -> Reply {
    let sig = sign(
        Algorithm::HmacSha1,
        TOKEN.as_bytes(),
        &format!("{PUBLIC}{path}"),
        params,
    );
    let body = form(params);
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: voice.example.com\r\nConnection: close\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nX-Twilio-Signature: {sig}\r\n\
         I-Twilio-Idempotency-Token: idem-{}\r\nContent-Length: {}\r\n\r\n{body}",
        params[0].1,
        body.len()
    );
    let started = Instant::now();
    let text = serve
        .send(request.as_bytes(), Duration::from_secs(20))
        .expect("an answer");
    let took = started.elapsed();
    let reply = common::parse_reply(&text);
    Reply {
        status: reply.status,
        source: reply
            .header("x-twiml-failover-source")
            .unwrap_or("")
            .to_string(),
        body: reply.body,
        took,
    }
}

fn call(sid: &str) -> Vec<(&str, &str)> {
    vec![
        ("CallSid", sid),
        ("AccountSid", "AC00000000000000000000000000000001"),
        ("From", "+15550100001"),
        ("To", "+15550199999"),
    ]
}

fn sms(sid: &str) -> Vec<(&str, &str)> {
    vec![
        ("MessageSid", sid),
        ("AccountSid", "AC00000000000000000000000000000001"),
        ("From", "+15550100001"),
        ("Body", "hi"),
    ]
}

fn start(app: &App, extra: &[&str], journal: Option<&str>) -> Serve {
    let base = app.base();
    let mut args = vec![
        "--role",
        "primary",
        "--public-url",
        PUBLIC,
        "--upstream",
        &base,
    ];
    if let Some(url) = journal {
        args.extend(["--journal", url]);
    }
    args.extend(extra);
    Serve::shipped(&args)
}

/// The value of `name` on the `/metrics` series line starting with `series`.
fn metric(serve: &Serve, series: &str) -> f64 {
    let text = serve.get("/metrics").unwrap();
    text.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .map_or(0.0, |v| v.parse().unwrap())
}

/// The request log lines for `sid`.
fn log_line(serve: &Serve, sid: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let log = serve.log();
        if let Some(line) = log
            .lines()
            .find(|l| l.contains(sid) && l.contains("status="))
        {
            return line.to_string();
        }
        assert!(Instant::now() < deadline, "no log line for {sid}:\n{log}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn every_mode_gets_an_answer_within_the_budget_and_says_where_it_came_from() {
    let mut app = App::start(Mode::Valid);
    let dir = tempfile::tempdir().unwrap();
    let journal = format!("sqlite://{}", dir.path().join("j.db").display());
    let serve = start(
        &app,
        &[
            "--upstream-budget",
            "0.5",
            "--upstream-connect-timeout",
            "0.2",
            "--upstream-breaker-failures",
            "1000",
        ],
        Some(&journal),
    );
    let budget = Duration::from_millis(500);
    // (mode, channel is SMS, expected source header, expected body marker)
    let cases = [
        (Mode::Valid, false, "upstream", "Hello from the app"),
        (Mode::Valid, true, "upstream", "Hello from the app"),
        (
            Mode::Slow(Duration::from_millis(1500)),
            false,
            "degraded; reason=timeout",
            "<Say",
        ),
        (Mode::Error, false, "degraded; reason=status_5xx", "<Say"),
        (
            Mode::BrokenXml,
            false,
            "degraded; reason=invalid_twiml",
            "<Say",
        ),
        (
            Mode::Say,
            true,
            "degraded; reason=invalid_twiml",
            "<Message",
        ),
        (Mode::Huge, false, "degraded; reason=too_large", "<Say"),
    ];
    let mut answered = 0;
    for (i, (mode, is_sms, source, marker)) in cases.into_iter().enumerate() {
        app.set(mode);
        let sid = format!("{}{:032}", if is_sms { "SM" } else { "CA" }, i);
        let params = if is_sms { sms(&sid) } else { call(&sid) };
        let path = if is_sms { "/sms" } else { "/voice" };
        let reply = webhook(&serve, path, &params);
        answered += 1;
        assert_eq!(reply.status, 200, "{mode:?}: {reply:?}");
        assert_eq!(reply.source, source, "{mode:?}");
        assert!(reply.body.contains(marker), "{mode:?}: {}", reply.body);
        if source == "upstream" {
            let expected = if is_sms { UPSTREAM_SMS } else { UPSTREAM_VOICE };
            assert_eq!(reply.body, expected, "the app's answer, unchanged");
        } else {
            assert!(!reply.body.contains("from the app"), "{mode:?}");
        }
        // Within the budget plus a margin for a busy two-core machine.
        assert!(
            reply.took < budget + Duration::from_millis(400),
            "{mode:?}: {:?}",
            reply.took
        );
        let line = log_line(&serve, &sid);
        let kind = source.split(';').next().unwrap();
        assert!(line.contains(&format!("source=\"{kind}\"")), "{line}");
        let outcome = source.rsplit('=').next().unwrap();
        assert!(
            line.contains(&format!("upstream_outcome=\"{outcome}\"")),
            "{line}"
        );
        // The journal committed the event before the answer left.
        assert!(line.contains("journal=\"new\""), "{line}");
        let mut store = twiml_failover::journal::open(&journal.parse().unwrap()).unwrap();
        assert_eq!(store.list(None, 1000).unwrap().len(), answered, "{mode:?}");
    }
    // The app received exactly what Twilio sent, plus the forwarding headers.
    let hit = &app.hits()[0];
    assert_eq!(
        (hit.method.as_str(), hit.target.as_str()),
        ("POST", "/app/voice")
    );
    assert_eq!(hit.body, form(&call(&format!("CA{:032}", 0))));
    assert_eq!(hit.headers["x-forwarded-proto"], "https");
    assert_eq!(hit.headers["x-forwarded-host"], "voice.example.com");
    assert_eq!(hit.headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(
        hit.headers["i-twilio-idempotency-token"],
        format!("idem-CA{:032}", 0)
    );
    assert!(!hit.headers.contains_key("connection") || hit.headers["connection"] != "close");

    // Refused connections: answered locally at once (one fast retry fits the budget).
    app.down();
    let sid = format!("CA{:032}", 90);
    let reply = webhook(&serve, "/voice", &call(&sid));
    assert_eq!(
        (reply.status, reply.source.as_str()),
        (200, "degraded; reason=connect")
    );
    assert!(reply.took < budget, "{:?}", reply.took);
    assert!(log_line(&serve, &sid).contains("upstream_outcome=\"connect\""));

    let series =
        |outcome: &str| format!("twiml_failover_upstream_requests_total{{outcome=\"{outcome}\"}}");
    assert_eq!(metric(&serve, &series("upstream")), 2.0);
    assert_eq!(metric(&serve, &series("invalid_twiml")), 2.0);
    for outcome in ["timeout", "status_5xx", "too_large", "connect"] {
        assert_eq!(metric(&serve, &series(outcome)), 1.0, "{outcome}");
    }
    assert!(metric(&serve, "twiml_failover_upstream_duration_seconds_count") >= 7.0);
}

#[test]
fn a_flapping_app_is_answered_for_each_webhook_and_paths_can_stay_local() {
    let app = App::start(Mode::Flaps);
    let serve = start(
        &app,
        &[
            "--upstream-breaker-failures",
            "1000",
            "--upstream-local-paths",
            "/menu",
        ],
        None,
    );
    let mut sources = Vec::new();
    for i in 0..4 {
        let reply = webhook(&serve, "/voice", &call(&format!("CA{i:032}")));
        assert_eq!(reply.status, 200);
        sources.push(reply.source);
    }
    assert_eq!(
        sources,
        [
            "degraded; reason=status_5xx",
            "upstream",
            "degraded; reason=status_5xx",
            "upstream"
        ]
    );
    // At most one attempt per webhook: no retry on a 500.
    assert_eq!(app.hits().len(), 4);
    let reply = webhook(&serve, "/menu", &call(&format!("CA{:032}", 9)));
    assert_eq!((reply.status, reply.source.as_str()), (200, "template"));
    assert_eq!(app.hits().len(), 4, "a local path never reaches the app");
    // Status callbacks go to the app too; Twilio gets 204 whatever it answered.
    let reply = webhook(&serve, "/status", &call(&format!("CA{:032}", 10)));
    assert_eq!(reply.status, 204);
    assert_eq!(app.hits().last().unwrap().target, "/app/status");
}

#[test]
fn a_failure_ratio_opens_the_breaker_on_an_app_that_never_fails_twice_in_a_row() {
    let app = App::start(Mode::Flaps);
    let serve = start(&app, &["--upstream-breaker-ratio", "0.5"], None);
    // 500, 200, 500, ...: the 21st result (a 500) makes 10 failures of the last 20.
    for i in 0..21 {
        let reply = webhook(&serve, "/voice", &call(&format!("CA{i:032}")));
        assert_ne!(reply.source, "degraded; reason=breaker_open", "request {i}");
    }
    let reply = webhook(&serve, "/voice", &call(&format!("CA{:032}", 21)));
    assert_eq!(reply.source, "degraded; reason=breaker_open");
    assert_eq!(app.hits().len(), 21);
}

#[test]
fn the_breaker_opens_answers_locally_without_the_app_and_closes_after_a_healthy_probe() {
    let app = App::start(Mode::Error);
    let serve = start(
        &app,
        &[
            "--upstream-breaker-failures",
            "3",
            "--upstream-breaker-cooldown",
            "1",
        ],
        None,
    );
    let gauge = "twiml_failover_upstream_breaker_state ";
    for i in 0..3 {
        let reply = webhook(&serve, "/voice", &call(&format!("CA{i:032}")));
        assert_eq!(reply.source, "degraded; reason=status_5xx");
    }
    assert_eq!(metric(&serve, gauge), 1.0);
    for i in 3..6 {
        let reply = webhook(&serve, "/voice", &call(&format!("CA{i:032}")));
        assert_eq!(
            (reply.status, reply.source.as_str()),
            (200, "degraded; reason=breaker_open")
        );
        assert!(reply.took < Duration::from_millis(300), "{:?}", reply.took);
    }
    assert_eq!(
        app.hits().len(),
        3,
        "nothing reaches the app while the breaker is open"
    );
    app.set(Mode::Valid);
    std::thread::sleep(Duration::from_millis(1100));
    let reply = webhook(&serve, "/voice", &call(&format!("CA{:032}", 6)));
    assert_eq!(reply.source, "upstream", "the probe");
    assert_eq!(app.hits().len(), 4);
    assert_eq!(metric(&serve, gauge), 0.0);
    let reply = webhook(&serve, "/voice", &call(&format!("CA{:032}", 7)));
    assert_eq!(reply.source, "upstream");
    // Transitions are logged once, not per request (the log is written behind the answers).
    log_line(&serve, &format!("CA{:032}", 7));
    let log = serve.log();
    assert_eq!(log.matches("upstream breaker open").count(), 1, "{log}");
    assert_eq!(log.matches("upstream breaker closed").count(), 1, "{log}");
}

#[test]
fn beyond_the_bulkhead_a_webhook_is_answered_locally_at_once() {
    let app = App::start(Mode::Hangs);
    let serve = Arc::new(start(
        &app,
        &["--upstream-max-in-flight", "2", "--upstream-budget", "2"],
        None,
    ));
    let hanging: Vec<_> = (0..2)
        .map(|i| {
            let serve = serve.clone();
            std::thread::spawn(move || webhook(&serve, "/voice", &call(&format!("CA{i:032}"))))
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(2);
    while app.hits().len() < 2 {
        assert!(
            Instant::now() < deadline,
            "the two webhooks never reached the app"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let reply = webhook(&serve, "/voice", &call(&format!("CA{:032}", 2)));
    assert_eq!(
        (reply.status, reply.source.as_str()),
        (200, "degraded; reason=bulkhead_full")
    );
    assert!(reply.took < Duration::from_millis(300), "{:?}", reply.took);
    assert_eq!(app.hits().len(), 2);
    for h in hanging {
        let reply = h.join().unwrap();
        assert_eq!(
            (reply.status, reply.source.as_str()),
            (200, "degraded; reason=timeout")
        );
        assert!(reply.took < Duration::from_millis(2600), "{:?}", reply.took);
    }
}

/// twilio-python's verdict on a request the app received, signed for `url`.
fn twilio_python_accepts(python: &str, url: &str, hit: &Hit) -> bool {
    let script = "import sys, urllib.parse\n\
        from twilio.request_validator import RequestValidator\n\
        url, body, sig = sys.argv[1], sys.argv[2], sys.argv[3]\n\
        params = dict(urllib.parse.parse_qsl(body, keep_blank_values=True))\n\
        ok = RequestValidator(sys.argv[4]).validate(url, params, sig)\n\
        print('valid' if ok else 'invalid')\n";
    let out = Command::new(python)
        .args([
            "-c",
            script,
            url,
            &hit.body,
            &hit.headers["x-twilio-signature"],
            TOKEN,
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout.trim() == "valid"
}

#[test]
fn twilio_python_validates_the_signature_the_app_receives() {
    let Some(python) = common::oracle_python() else {
        return;
    };
    let app = App::start(Mode::Valid);
    let path = "/voice?lang=en&x=%20y";
    for mode in ["resign", "pass"] {
        let serve = start(&app, &["--upstream-signature", mode], None);
        let reply = webhook(&serve, path, &call("CA00000000000000000000000000000001"));
        assert_eq!(reply.source, "upstream", "{mode}");
        let hit = app.hits().pop().unwrap();
        assert_eq!(hit.target, "/app/voice?lang=en&x=%20y");
        let upstream_url = format!("{}{path}", app.base());
        let public_url = format!("{PUBLIC}{path}");
        let (good, bad) = match mode {
            "resign" => (&upstream_url, &public_url),
            _ => (&public_url, &upstream_url),
        };
        assert!(twilio_python_accepts(&python, good, &hit), "{mode}: {good}");
        assert!(!twilio_python_accepts(&python, bad, &hit), "{mode}: {bad}");
    }
}

#[test]
fn settings_that_cannot_work_are_refused_at_start_naming_the_setting() {
    let app = App::start(Mode::Valid);
    for (extra, setting) in [
        (&["--upstream-budget", "14.5"][..], "upstream-budget"),
        (
            &["--upstream-connect-timeout", "5"][..],
            "upstream-connect-timeout",
        ),
        (&["--upstream-signature", "maybe"][..], "upstream-signature"),
        (&["--upstream-paths", "voice"][..], "upstream-paths"),
        (&["--role", "fallback"][..], "upstream"),
    ] {
        let mut args = vec![
            "--templates",
            concat!(env!("CARGO_MANIFEST_DIR"), "/twiml-templates"),
        ];
        let base = app.base();
        args.extend(["--upstream", &base]);
        if !extra.contains(&"--role") {
            args.extend(["--role", "primary"]);
        }
        args.extend(extra);
        let err = Serve::try_start(&args, &[]).err().expect("refused");
        assert!(
            err.1.contains(&format!("{setting}:")),
            "{extra:?}: {}",
            err.1
        );
    }
}

#[test]
fn tls_to_the_app_trusts_the_given_ca_file_and_only_it() {
    // The app: a twiml-failover primary serving HTTPS with a self-signed certificate for localhost.
    let dir = tempfile::tempdir().unwrap();
    let pair = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (cert, key) = (dir.path().join("app.crt"), dir.path().join("app.key"));
    std::fs::write(&cert, pair.cert.pem()).unwrap();
    std::fs::write(&key, pair.signing_key.serialize_pem()).unwrap();
    let app = Serve::shipped(&[
        "--role",
        "primary",
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    let base = format!("https://localhost:{}", app.addr.port());
    let sid = "CA00000000000000000000000000000001";
    // Trusting its certificate: the app validates the re-signed request and answers.
    let proxy = Serve::shipped(&[
        "--role",
        "primary",
        "--public-url",
        PUBLIC,
        "--upstream",
        &base,
        "--upstream-ca-file",
        cert.to_str().unwrap(),
    ]);
    let reply = webhook(&proxy, "/voice", &call(sid));
    assert_eq!(
        (reply.status, reply.source.as_str()),
        (200, "upstream"),
        "{}",
        app.log()
    );
    // Without it (the web PKI roots), the handshake fails: a local answer at once.
    let proxy = Serve::shipped(&[
        "--role",
        "primary",
        "--public-url",
        PUBLIC,
        "--upstream",
        &base,
    ]);
    let reply = webhook(&proxy, "/voice", &call(sid));
    assert_eq!(
        (reply.status, reply.source.as_str()),
        (200, "degraded; reason=connect")
    );
    // A client certificate for mTLS is read at start-up; a missing key file stops it, named.
    let config = common::example_config();
    let err = Serve::try_start(
        &[
            "--role",
            "primary",
            "--config",
            config.to_str().unwrap(),
            "--templates",
            concat!(env!("CARGO_MANIFEST_DIR"), "/twiml-templates"),
            "--upstream",
            &base,
            "--upstream-client-cert",
            cert.to_str().unwrap(),
            "--upstream-client-key",
            "/nonexistent/client.key",
        ],
        &[],
    )
    .err()
    .expect("refused");
    assert!(
        err.1.contains("upstream:") && err.1.contains("client.key"),
        "{}",
        err.1
    );
    let ok = Serve::shipped(&[
        "--role",
        "primary",
        "--upstream",
        &base,
        "--upstream-client-cert",
        cert.to_str().unwrap(),
        "--upstream-client-key",
        key.to_str().unwrap(),
    ]);
    drop(ok);
}
