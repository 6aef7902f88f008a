//! Upstream mode end to end: the real binary in front of a fake TwiML app on loopback whose mode we
//! switch (valid, slow past the budget, 500, broken XML, `<Say>` to an SMS, 100 kB, refusing
//! connections, flapping, hanging, setting cookies, any Content-Type), and raw TCP apps for what
//! hyper would not send (ambiguous framing, a reset after the request, a full accept queue). For
//! each: what Twilio gets (status, body, headers, time), the source header, the log line, the
//! metric, and the journal entry committed before the answer. The app's received signature is
//! judged by the official twilio-python `RequestValidator`.

mod common;
#[path = "common/full_queue.rs"]
mod full_queue;

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
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
use full_queue::FullQueue;
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
    /// A conversation kept in cookies, as Twilio's "Create an SMS Conversation" guides do: the
    /// `step` cookie it got plus one, in the answer and in two `Set-Cookie` lines.
    Cookies,
    /// Valid TwiML with this Content-Type.
    Typed(&'static str),
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
                let mut content_type = "text/xml";
                let mut cookies = Vec::new();
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
                    Mode::Cookies => {
                        let step = hits.lock().unwrap()[n - 1]
                            .headers
                            .get("cookie")
                            .and_then(|c| c.split("; ").find_map(|kv| kv.strip_prefix("step=")))
                            .map_or(0, |v| v.parse::<u32>().unwrap())
                            + 1;
                        cookies.push(format!("step={step}; Max-Age=14400; Path=/"));
                        cookies.push("session=s-1; Path=/; HttpOnly".to_string());
                        let verb = if sms { "Message" } else { "Say" };
                        (
                            200,
                            format!("<Response><{verb}>step {step}</{verb}></Response>"),
                        )
                    }
                    Mode::Typed(ct) => {
                        content_type = ct;
                        (200, valid.to_string())
                    }
                };
                let mut answer = hyper::Response::new(Full::new(Bytes::from(text)));
                *answer.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                answer
                    .headers_mut()
                    .insert("content-type", content_type.parse().unwrap());
                for cookie in cookies {
                    answer
                        .headers_mut()
                        .append("set-cookie", cookie.parse().unwrap());
                }
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
    /// Every header line, names lower case, in order.
    headers: Vec<(String, String)>,
}

impl Reply {
    /// Every value of header `name`, in order.
    fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// Sends a webhook to `path` signed for the public URL, with `params`; parses the answer.
fn webhook(serve: &Serve, path: &str, params: &[(&str, &str)]) -> Reply {
    webhook_with(serve, path, params, &[])
}

/// [`webhook`] with extra header lines (Twilio's `Cookie`).
fn webhook_with(
    serve: &Serve,
    path: &str,
    params: &[(&str, &str)],
    extra: &[(&str, &str)],
) -> Reply {
    let sig = sign(
        Algorithm::HmacSha1,
        TOKEN.as_bytes(),
        &format!("{PUBLIC}{path}"),
        params,
    );
    let body = form(params);
    let extra: String = extra.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: voice.example.com\r\nConnection: close\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nX-Twilio-Signature: {sig}\r\n\
         I-Twilio-Idempotency-Token: idem-{}\r\n{extra}Content-Length: {}\r\n\r\n{body}",
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
        headers: reply.headers,
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
    let python = common::oracle_python();
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

/// Twilio's cookie jar as its support article "How do Twilio cookies work?" and the Messaging
/// TwiML docs describe it: the cookies an answer sets are kept per From/To pair and sent back in
/// one `Cookie` header with that pair's later webhooks (until they expire: 4 hours, or sooner by
/// `Max-Age`).
#[derive(Default)]
struct TwilioJar(HashMap<(String, String), BTreeMap<String, String>>);

impl TwilioJar {
    fn cookie(&self, from: &str, to: &str) -> Option<String> {
        let jar = self.0.get(&(from.to_string(), to.to_string()))?;
        let pairs: Vec<String> = jar.iter().map(|(k, v)| format!("{k}={v}")).collect();
        (!pairs.is_empty()).then(|| pairs.join("; "))
    }

    fn store(&mut self, from: &str, to: &str, set_cookies: &[&str]) {
        let jar = self.0.entry((from.into(), to.into())).or_default();
        for line in set_cookies {
            let mut attributes = line.split(';').map(str::trim);
            let (name, value) = attributes.next().unwrap().split_once('=').unwrap();
            let expired = attributes.any(|a| a.eq_ignore_ascii_case("max-age=0"));
            if expired {
                jar.remove(name);
            } else {
                jar.insert(name.into(), value.into());
            }
        }
    }

    /// One message from `from` to `to` through the primary, with the pair's cookies; stores what
    /// the answer sets.
    fn message(&mut self, serve: &Serve, sid: &str, from: &str, to: &str) -> Reply {
        let params = [
            ("MessageSid", sid),
            ("AccountSid", "AC00000000000000000000000000000001"),
            ("From", from),
            ("To", to),
            ("Body", "next"),
        ];
        let cookie = self.cookie(from, to);
        let extra: Vec<(&str, &str)> = cookie.iter().map(|c| ("Cookie", c.as_str())).collect();
        let reply = webhook_with(serve, "/sms", &params, &extra);
        self.store(from, to, &reply.all("set-cookie"));
        reply
    }
}

#[test]
fn the_apps_cookies_reach_twilio_and_come_back_per_conversation() {
    let app = App::start(Mode::Cookies);
    let serve = start(&app, &["--upstream-breaker-failures", "1000"], None);
    let mut twilio = TwilioJar::default();
    let (ann, bob, shop) = ("+15550100001", "+15550100002", "+15550199999");
    let set = [
        "step=1; Max-Age=14400; Path=/",
        "session=s-1; Path=/; HttpOnly",
    ];
    // Ann's conversation advances step by step; Bob's is his own.
    let steps = [(ann, 1), (ann, 2), (bob, 1), (ann, 3)];
    for (i, (from, step)) in steps.into_iter().enumerate() {
        let reply = twilio.message(&serve, &format!("SM{i:032}"), from, shop);
        assert_eq!(reply.source, "upstream", "{reply:?}");
        assert!(reply.body.contains(&format!("step {step}")), "{reply:?}");
        // Every Set-Cookie line, on its own line and unchanged.
        let step_cookie = format!("step={step}; Max-Age=14400; Path=/");
        assert_eq!(reply.all("set-cookie"), [step_cookie.as_str(), set[1]]);
    }
    // What the app received: no cookie first, then the pair's own.
    let cookies: Vec<Option<String>> = app
        .hits()
        .iter()
        .map(|h| h.headers.get("cookie").cloned())
        .collect();
    assert_eq!(
        cookies,
        [
            None,
            Some("session=s-1; step=1".into()),
            None,
            Some("session=s-1; step=2".into())
        ]
    );
    // Degraded: the template's answer sets no cookie, so Twilio keeps the pair's last one and the
    // app finds the conversation where it left it.
    app.set(Mode::Error);
    let reply = twilio.message(&serve, &format!("SM{:032}", 10), ann, shop);
    assert_eq!(reply.source, "degraded; reason=status_5xx");
    assert!(reply.all("set-cookie").is_empty(), "{reply:?}");
    app.set(Mode::Cookies);
    let reply = twilio.message(&serve, &format!("SM{:032}", 11), ann, shop);
    assert_eq!(reply.source, "upstream");
    assert!(reply.body.contains("step 4"), "{reply:?}");
    assert_eq!(
        app.hits().last().unwrap().headers["cookie"],
        "session=s-1; step=3"
    );
    // A call's answer carries the app's cookies as well.
    let reply = webhook_with(
        &serve,
        "/voice",
        &call(&format!("CA{:032}", 12)),
        &[("Cookie", "step=7")],
    );
    assert_eq!(reply.source, "upstream");
    assert!(reply.body.contains("step 8"), "{reply:?}");
    assert_eq!(reply.all("set-cookie")[0], "step=8; Max-Age=14400; Path=/");
}

#[test]
fn the_answer_is_typed_text_xml_utf8_never_with_the_apps_parameters() {
    let app = App::start(Mode::Valid);
    let serve = start(&app, &["--upstream-breaker-failures", "1000"], None);
    let cases = [
        (
            "text/html; charset=utf-7; x=\"<script>\"",
            "degraded; reason=content_type",
        ),
        ("text/xml; charset=utf-16", "degraded; reason=content_type"),
        ("application/json", "degraded; reason=content_type"),
        ("text/plain", "upstream"),
        ("text/html", "upstream"),
        ("application/xml; charset=UTF-8; x=\"<script>\"", "upstream"),
        ("text/xml; charset=iso-8859-1", "upstream"),
    ];
    for (i, (app_type, source)) in cases.into_iter().enumerate() {
        app.set(Mode::Typed(app_type));
        let reply = webhook(&serve, "/voice", &call(&format!("CA{i:032}")));
        assert_eq!(
            (reply.status, reply.source.as_str()),
            (200, source),
            "{app_type}"
        );
        assert_eq!(
            reply.all("content-type"),
            ["text/xml; charset=utf-8"],
            "{app_type}"
        );
        for (name, value) in &reply.headers {
            assert!(
                !value.contains("script") && !value.contains("utf-7"),
                "{app_type}: {name}: {value}"
            );
        }
        if source == "upstream" {
            assert_eq!(reply.body, UPSTREAM_VOICE);
        }
    }
    // A message answered in plain text would be texted back as it is: not TwiML to pass on.
    app.set(Mode::Typed("text/plain"));
    let reply = webhook(&serve, "/sms", &sms(&format!("SM{:032}", 20)));
    assert_eq!(reply.source, "degraded; reason=content_type");
}

/// What a raw app does with each request it reads.
#[derive(Clone, Copy)]
enum Raw {
    /// Writes these bytes, then waits for the next request on the connection.
    Answer(&'static str),
    /// Resets the connection (RST) once the request is in.
    Reset,
}

/// An app on a bare socket, for answers hyper would never write; counts its connections.
struct RawApp {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
}

impl RawApp {
    fn start(action: Raw) -> RawApp {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let (count, served) = (connections.clone(), requests.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                count.fetch_add(1, Ordering::SeqCst);
                let served = served.clone();
                std::thread::spawn(move || raw_connection(stream, action, &served));
            }
        });
        RawApp {
            addr,
            connections,
            requests,
        }
    }

    fn base(&self) -> String {
        format!("http://{}/app", self.addr)
    }
}

fn raw_connection(mut stream: std::net::TcpStream, action: Raw, served: &AtomicUsize) {
    let mut pending = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&pending[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            if pending.len() >= end + 4 + length {
                pending.drain(..end + 4 + length);
                served.fetch_add(1, Ordering::SeqCst);
                match action {
                    Raw::Answer(bytes) => {
                        if stream.write_all(bytes.as_bytes()).is_err() {
                            return;
                        }
                    }
                    Raw::Reset => {
                        let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
                        return;
                    }
                }
                continue;
            }
        }
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => pending.extend_from_slice(&buf[..n]),
        }
    }
}

/// The primary in front of `base` with a breaker that never opens.
fn start_for(base: &str, extra: &[&str]) -> Serve {
    let mut args = vec![
        "--role",
        "primary",
        "--public-url",
        PUBLIC,
        "--upstream",
        base,
        "--upstream-breaker-failures",
        "1000",
    ];
    args.extend(extra);
    Serve::shipped(&args)
}

const CLEAN: &str = "HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: 50\r\n\r\n\
    <Response><Say>Hello from the app</Say></Response>";
const BOTH_LENGTHS: &str = "HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: 50\r\n\
    Transfer-Encoding: chunked\r\n\r\n32\r\n<Response><Say>Hello from the app</Say></Response>\r\n\
    0\r\n\r\n";
/// A whole answer, then the head and body of another: a connection read on would answer the next
/// webhook with it.
const SMUGGLED: &str = "HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: 50\r\n\r\n\
    <Response><Say>Hello from the app</Say></Response>\
    HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: 40\r\n\r\n\
    <Response><Say>smuggled</Say></Response>";

#[test]
fn ambiguous_framing_is_broken_and_its_connection_is_never_used_again() {
    // The control: a clean keep-alive app is reached over one connection.
    let app = RawApp::start(Raw::Answer(CLEAN));
    let serve = start_for(&app.base(), &[]);
    for i in 0..3 {
        let reply = webhook(&serve, "/voice", &call(&format!("CA{i:032}")));
        assert_eq!(reply.source, "upstream");
        assert_eq!(reply.body, UPSTREAM_VOICE.split_once("?>").unwrap().1);
    }
    assert_eq!(app.connections.load(Ordering::SeqCst), 1);
    for answer in [BOTH_LENGTHS, SMUGGLED] {
        let app = RawApp::start(Raw::Answer(answer));
        let serve = start_for(&app.base(), &[]);
        for i in 0..3 {
            let reply = webhook(&serve, "/voice", &call(&format!("CA{i:032}")));
            assert_eq!(
                (reply.status, reply.source.as_str()),
                (200, "degraded; reason=broken")
            );
            assert!(!reply.body.contains("smuggled") && !reply.body.contains("from the app"));
            assert!(log_line(&serve, &format!("CA{i:032}")).contains("upstream_outcome=\"broken\""));
        }
        assert_eq!(app.requests.load(Ordering::SeqCst), 3, "one attempt each");
        assert_eq!(
            app.connections.load(Ordering::SeqCst),
            3,
            "a connection was used again after {answer:?}"
        );
    }
}

#[test]
fn a_connection_reset_after_the_request_is_broken_and_not_tried_again() {
    let app = RawApp::start(Raw::Reset);
    let serve = start_for(&app.base(), &["--upstream-budget", "2"]);
    for i in 0..2 {
        let reply = webhook(&serve, "/voice", &call(&format!("CA{i:032}")));
        assert_eq!(
            (reply.status, reply.source.as_str()),
            (200, "degraded; reason=broken")
        );
        assert!(reply.took < Duration::from_millis(500), "{:?}", reply.took);
    }
    assert_eq!(app.requests.load(Ordering::SeqCst), 2, "no second attempt");
    assert_eq!(app.connections.load(Ordering::SeqCst), 2);
}

#[test]
fn a_connect_timeout_is_not_tried_again_so_the_caller_waits_one_connect_timeout() {
    // An app whose accept queue is full: a connect hangs until the connect timeout.
    let full = FullQueue::new();
    // A budget with room for two connect timeouts: only a refusal may use it.
    let serve = start_for(
        &format!("http://{}/app", full.addr),
        &["--upstream-connect-timeout", "1", "--upstream-budget", "3"],
    );
    for i in 0..2 {
        let reply = webhook(&serve, "/voice", &call(&format!("CA{i:032}")));
        assert_eq!(
            (reply.status, reply.source.as_str()),
            (200, "degraded; reason=connect")
        );
        assert!(
            reply.took >= Duration::from_millis(950) && reply.took < Duration::from_millis(1800),
            "one connect timeout (1 s), not two: {:?}",
            reply.took
        );
    }
}
