//! `monitor` end to end: the real binary against the fake Twilio REST API (`numbers/fake.rs`,
//! its answers checked against Twilio's OpenAPI schemas) and real `serve`
//! instances on loopback (primary on 127.0.0.1, fallback on 127.0.0.2: other hosts, as the wiring
//! wants). Each case asserts the status endpoint, the metrics and the state-change log lines, and
//! that the probes never entered a journal.

mod common;
// Shared with tests/numbers.rs, which uses what this file does not.
#[allow(dead_code)]
#[path = "numbers/fake.rs"]
mod fake;
#[path = "common/scene.rs"]
mod scene;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fake::{number, service, sid, Fake, State, ACCOUNT};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use scene::{apply, assert_probes_apart, sample, scene, serve, total, wired_account, Ca, Scene};
use serde_json::{json, Value};

/// A running `twiml-failover monitor --log-format json`, killed when dropped.
struct Monitor {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Monitor {
    /// Rounds every second (no jitter), `extra` flags, waits for `monitor started`.
    fn start(fake: &Fake, wiring: &Path, extra: &[&str]) -> Monitor {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("monitor.log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_twiml-failover"))
            .arg("monitor")
            .args([
                "--listen",
                "127.0.0.1:0",
                "--interval",
                "1",
                "--jitter",
                "0",
                "--log-format",
                "json",
            ])
            .args(extra)
            .env_clear()
            .env("TWIML_FAILOVER_NUMBERS_WIRING", wiring)
            .env("TWIML_FAILOVER_TWILIO_API_BASE", fake.base())
            .env("TWIML_FAILOVER_MONITOR_RATE", "100")
            .env("TWILIO_ACCOUNT_SID", ACCOUNT)
            .env("TWILIO_AUTH_TOKEN", common::TOKEN)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut text = String::new();
        while Instant::now() < deadline {
            text = std::fs::read_to_string(&log).unwrap_or_default();
            let listen = lines(&text)
                .into_iter()
                .find(|l| l["message"] == "monitor started")
                .and_then(|l| l["listen"].as_str().and_then(|a| a.parse().ok()));
            if let Some(addr) = listen {
                return Monitor {
                    child,
                    addr,
                    log,
                    _dir: dir,
                };
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("monitor did not start:\n{text}");
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The log lines whose message is `message`.
    fn said(&self, message: &str) -> Vec<Value> {
        lines(&self.log())
            .into_iter()
            .filter(|l| l["message"] == message)
            .collect()
    }

    /// The log lines whose message is `message`, once there are at least `n` (the log is written
    /// behind the status: waits at most 10 s).
    fn said_at_least(&self, message: &str, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let lines = self.said(message);
            if lines.len() >= n || Instant::now() >= deadline {
                return lines;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn get(&self, path: &str) -> (u16, String) {
        let mut s = TcpStream::connect_timeout(&self.addr, Duration::from_secs(3)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.addr
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        let (head, body) = out.split_once("\r\n\r\n").expect("an HTTP answer");
        let code = head.split(' ').nth(1).unwrap().parse().unwrap();
        (code, body.to_string())
    }

    fn status(&self) -> Option<Value> {
        let (code, body) = self.get("/status");
        (code == 200).then(|| serde_json::from_str(&body).unwrap())
    }

    fn metrics(&self) -> String {
        self.get("/metrics").1
    }

    /// Waits (at most 30 s) for a round after round `after` and answers its status.
    fn round_after(&self, after: u64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(s) = self.status() {
                if s["round"].as_u64().unwrap() > after {
                    return s;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no round after {after}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits (at most 30 s) for a round whose status satisfies `ok`.
    fn until(&self, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut last = Value::Null;
        loop {
            if let Some(s) = self.status() {
                if ok(&s) {
                    return s;
                }
                last = s;
            }
            assert!(
                Instant::now() < deadline,
                "never {what}; last status:\n{last:#}\nlog:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// A TLS server on `host` whose leaf (from `ca`) expires at `not_after`; it answers every
/// request with `answer` (a whole HTTP response).
fn tls_server(
    ca: &Ca,
    host: &str,
    not_after: time::OffsetDateTime,
    answer: &'static str,
) -> SocketAddr {
    counting_tls_server(ca, host, not_after, answer).0
}

/// [`tls_server`], and how many requests reached it (bytes read after the handshake).
fn counting_tls_server(
    ca: &Ca,
    host: &str,
    not_after: time::OffsetDateTime,
    answer: &'static str,
) -> (SocketAddr, Arc<AtomicUsize>) {
    let (cert_pem, key_pem) = ca.leaf(host, not_after);
    let chain = vec![CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap()];
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    let config = Arc::new(config);
    let listener = std::net::TcpListener::bind(format!("{host}:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(AtomicUsize::new(0));
    let counted = requests.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(500) {
            let Ok(mut tcp) = stream else { continue };
            tcp.set_read_timeout(Some(Duration::from_secs(2))).ok();
            let Ok(mut conn) = rustls::ServerConnection::new(config.clone()) else {
                continue;
            };
            let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
            let mut buf = [0u8; 8192];
            if tls.read(&mut buf).is_ok_and(|n| n > 0) {
                counted.fetch_add(1, Ordering::SeqCst);
                let _ = tls.write_all(answer.as_bytes());
            }
            conn.send_close_notify();
            let _ = conn.complete_io(&mut tcp);
        }
    });
    (addr, requests)
}

const EMPTY_TWIML: &str = "HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: 21\r\n\
                           Connection: close\r\n\r\n<Response></Response>";

fn url_status<'a>(status: &'a Value, url: &str) -> &'a Value {
    status["urls"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["url"].as_str().unwrap().starts_with(url))
        .unwrap_or_else(|| panic!("no {url} in {status:#}"))
}

fn kinds(channel: &Value) -> Vec<String> {
    channel["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["kind"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_healthy_account_passes_then_a_console_edit_alerts_once_and_apply_clears_it() {
    let Scene {
        primary,
        fallback,
        fake,
        wiring,
        ca,
        _dir,
    } = scene(2, &[]);
    let monitor = Monitor::start(&fake, &wiring, &ca.probe_ca_flag());

    let s = monitor.round_after(0);
    assert_eq!(s["ok"], true, "{s:#}");
    assert_eq!(s["api"]["complete"], true, "{s:#}");
    assert_eq!(s["numbers"].as_array().unwrap().len(), 2);
    for n in s["numbers"].as_array().unwrap() {
        assert_eq!(n["ok"], true, "{n:#}");
        assert_eq!(n["voice"]["source"]["kind"], "number", "{n:#}");
    }
    // Four distinct URLs: voice and SMS, primary and fallback, each a signed webhook.
    let urls = s["urls"].as_array().unwrap();
    assert_eq!(urls.len(), 4, "{s:#}");
    for u in urls {
        assert_eq!(u["ok"], true, "{u:#}");
        assert_eq!(u["check"], "webhook", "{u:#}");
        assert_eq!(u["numbers"], 2, "{u:#}");
        assert!(u["first_byte_ms"].as_u64().is_some(), "{u:#}");
    }
    let m = monitor.metrics();
    assert_eq!(
        sample(&m, "twiml_failover_monitor_numbers"),
        Some(2.0),
        "{m}"
    );
    assert_eq!(
        total(&m, "twiml_failover_monitor_numbers_failing", &[]),
        0.0,
        "{m}"
    );
    assert!(
        m.contains("twiml_failover_monitor_numbers_failing{problem=\"no_fallback_url\"} 0"),
        "every problem's series exists at 0:\n{m}"
    );
    assert_eq!(
        total(
            &m,
            "twiml_failover_monitor_probe_success",
            &["check=\"webhook\""]
        ),
        4.0,
        "{m}"
    );
    assert!(
        total(
            &m,
            "twiml_failover_monitor_rounds_total",
            &["result=\"complete\""]
        ) >= 1.0
    );
    assert!(
        sample(
            &m,
            "twiml_failover_monitor_last_complete_round_timestamp_seconds"
        )
        .unwrap()
            > 0.0
    );
    assert_eq!(
        sample(&m, "twiml_failover_monitor_interval_seconds"),
        Some(1.0)
    );
    // A healthy first round says nothing per number.
    assert!(
        monitor.said("number verdict changed").is_empty(),
        "{}",
        monitor.log()
    );

    // "In the Console": number 1 loses its voice fallback URL.
    fake.with(|st| st.numbers[0]["voice_fallback_url"] = json!(""));
    let s = monitor.until("number 1 failing", |s| s["ok"] == false);
    let n1 = &s["numbers"][0];
    assert_eq!(n1["ok"], false, "{s:#}");
    assert!(
        kinds(&n1["voice"]).contains(&"no_fallback_url".to_string()),
        "{n1:#}"
    );
    assert_eq!(s["numbers"][1]["ok"], true, "{s:#}");
    let failing_round = s["round"].as_u64().unwrap();
    let m = monitor.metrics();
    assert_eq!(
        sample(
            &m,
            "twiml_failover_monitor_numbers_failing{problem=\"no_fallback_url\"}"
        ),
        Some(1.0),
        "{m}"
    );
    let (code, failing) = monitor.get("/status?failing");
    assert_eq!(code, 200);
    let failing: Value = serde_json::from_str(&failing).unwrap();
    assert_eq!(
        failing["numbers"].as_array().unwrap().len(),
        1,
        "{failing:#}"
    );

    // Two more rounds: the change is logged once, not per round.
    monitor.round_after(failing_round + 2);
    let changed = monitor.said("number verdict changed");
    assert_eq!(changed.len(), 1, "{}", monitor.log());
    assert_eq!(changed[0]["number"], "+15550000001");
    assert_eq!(changed[0]["channel"], "voice");
    assert_eq!(changed[0]["was"], "ok");
    assert_eq!(changed[0]["now"], "failing");
    assert!(changed[0]["problems"]
        .as_str()
        .unwrap()
        .contains("no_fallback_url"));

    // `numbers apply` writes the wiring back; the next round clears the alert, said once.
    apply(&fake, &wiring);
    let s = monitor.until("ok again", |s| s["ok"] == true);
    monitor.round_after(s["round"].as_u64().unwrap() + 1);
    let changed = monitor.said("number verdict changed");
    assert_eq!(changed.len(), 2, "{}", monitor.log());
    assert_eq!(changed[1]["was"], "failing");
    assert_eq!(changed[1]["now"], "ok");
    let m = monitor.metrics();
    assert_eq!(
        total(&m, "twiml_failover_monitor_numbers_failing", &[]),
        0.0,
        "{m}"
    );

    assert_probes_apart(&primary, 2.0);
    assert_probes_apart(&fallback, 2.0);
    fake.assert_spec_conform();
}

fn fallback_probe_failing(s: &Value) -> bool {
    s["urls"]
        .as_array()
        .unwrap()
        .iter()
        .any(|u| u["role"] == "fallback" && u["ok"] == false)
}

#[test]
fn a_fallback_with_another_token_is_named_by_its_403() {
    // The fallback's token was rotated on one side only.
    let Scene {
        primary,
        fallback,
        fake,
        wiring,
        ca,
        _dir,
    } = scene(
        1,
        &[("TWILIO_AUTH_TOKEN", "another-token-not-the-account-s")],
    );
    let monitor = Monitor::start(&fake, &wiring, &ca.probe_ca_flag());
    let s = monitor.until("fallback failing", fallback_probe_failing);
    assert_eq!(s["ok"], false);
    for channel in ["voice", "sms"] {
        let u = s["urls"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["role"] == "fallback" && u["channel"] == channel)
            .unwrap();
        assert_eq!(u["error_code"], 11200, "{u:#}");
        assert_eq!(u["http_status"], 403, "{u:#}");
        assert!(
            kinds(&s["numbers"][0][channel]).contains(&"fallback_failing".into()),
            "{s:#}"
        );
    }
    let m = monitor.metrics();
    assert_eq!(
        sample(
            &m,
            "twiml_failover_monitor_numbers_failing{problem=\"fallback_failing\"}"
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        total(
            &m,
            "twiml_failover_monitor_probe_error_code",
            &["role=\"fallback\""]
        ),
        2.0 * 11200.0,
        "{m}"
    );
    let changed = monitor.said_at_least("probe state changed", 2);
    assert!(
        changed
            .iter()
            .any(|l| l["role"] == "fallback" && l["now"] == "failing" && l["error_code"] == 11200),
        "{}",
        monitor.log()
    );
    assert_probes_apart(&primary, 2.0);
    // The refused probes never reached the fallback's templates, let alone its journal.
    let m = fallback.metrics();
    assert_eq!(total(&m, "twiml_failover_journal_writes_total", &[]), 0.0);
    assert!(
        total(&m, "twiml_failover_signature_failures_total", &[]) >= 2.0,
        "{m}"
    );
}

#[test]
fn a_fallback_that_answers_what_twilio_cannot_execute_fails_with_12100() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path());
    let primary = serve("127.0.0.1", dir.path(), &[], &ca);
    let addr = tls_server(
        &ca,
        "127.0.0.2",
        time::OffsetDateTime::now_utc() + time::Duration::days(90),
        "HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: 23\r\nConnection: close\r\n\r\n<Response><Say>oops</Sa",
    );
    let (fake, wiring) = wired_account(1, &primary.base(), &format!("https://{addr}"), dir.path());
    let monitor = Monitor::start(&fake, &wiring, &ca.probe_ca_flag());
    let s = monitor.until("fallback failing", fallback_probe_failing);
    let u = url_status(&s, &format!("https://{addr}/voice"));
    assert_eq!(u["error_code"], 12100, "{u:#}");
    assert_eq!(u["check"], "webhook", "{u:#}");
    assert!(kinds(&s["numbers"][0]["voice"]).contains(&"fallback_failing".into()));
    let m = monitor.metrics();
    assert!(
        m.contains(&format!(
            "twiml_failover_monitor_probe_error_code{{url=\"https://{addr}/voice\",channel=\"voice\",role=\"fallback\"}} 12100"
        )),
        "{m}"
    );
    assert_probes_apart(&primary, 2.0);
}

#[test]
fn a_fallback_that_goes_down_fails_two_rounds_and_is_said_once() {
    let Scene {
        primary,
        mut fallback,
        fake,
        wiring,
        ca,
        _dir,
    } = scene(1, &[]);
    let monitor = Monitor::start(&fake, &wiring, &ca.probe_ca_flag());
    let s = monitor.round_after(0);
    assert_eq!(s["ok"], true, "{s:#}");
    assert_probes_apart(&fallback, 2.0);

    fallback.serve.terminate();
    let s = monitor.until("two failing rounds", |s| {
        s["urls"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["role"] == "fallback" && u["failing_rounds"].as_u64() >= Some(2))
    });
    let u = url_status(&s, &format!("{}/voice", fallback.base()));
    assert_eq!(u["error_code"], 11205, "{u:#}");
    let m = monitor.metrics();
    assert!(
        total(
            &m,
            "twiml_failover_monitor_probe_failing_rounds",
            &["role=\"fallback\"", "channel=\"voice\""]
        ) >= 2.0,
        "{m}"
    );
    let went_down: Vec<Value> = monitor
        .said("probe state changed")
        .into_iter()
        .filter(|l| l["role"] == "fallback" && l["channel"] == "voice")
        .collect();
    assert_eq!(went_down.len(), 1, "{}", monitor.log());
    assert_eq!(went_down[0]["was"], "ok");
    assert_eq!(went_down[0]["now"], "failing");
    assert_eq!(went_down[0]["error_code"], 11205);
    // The one line per round, which the AWS and Cloud Run alarms count (two rounds in a row): no
    // failing fallback URL while it answered, then one or more in each of the last two rounds.
    let round = s["round"].as_u64().unwrap() as usize;
    let rounds = monitor.said_at_least("round finished", round);
    assert!(rounds.len() >= round, "{}", monitor.log());
    assert_eq!(rounds[0]["fallback_urls_failing"], 0, "{}", monitor.log());
    for line in &rounds[round - 2..round] {
        assert!(line["fallback_urls_failing"].as_u64() >= Some(1), "{line}");
    }
    assert_probes_apart(&primary, 2.0);
    assert_aws_filters_read_what_is_logged(&monitor);
}

/// deploy/aws/monitor.yaml's metric filters read fields the monitor's JSON lines carry, and match
/// messages it writes.
fn assert_aws_filters_read_what_is_logged(monitor: &Monitor) {
    let template = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/aws/monitor.yaml"),
    )
    .unwrap();
    let logged: std::collections::BTreeSet<String> = lines(&monitor.log())
        .iter()
        .filter_map(|l| l.as_object())
        .flat_map(|o| o.keys().cloned())
        .collect();
    let source =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/monitor/mod.rs"))
            .unwrap();
    let mut read = 0;
    for pattern in template
        .lines()
        .filter_map(|l| l.trim().strip_prefix("FilterPattern: "))
    {
        for (at, _) in pattern.match_indices("$.") {
            let field: String = pattern[at + 2..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            assert!(logged.contains(&field), "{field} never logged: {logged:?}");
            read += 1;
        }
        if let Some((_, rest)) = pattern.split_once("$.message = \"") {
            let message = rest.split('"').next().unwrap();
            assert!(
                source.contains(&format!("\"{message}\"")),
                "the monitor never logs {message:?}"
            );
        }
    }
    assert!(read >= 7, "{read} fields read");
    // And deploy/cloudrun/monitoring's log metric on the monitor's lines.
    let metric = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(
        "deploy/cloudrun/monitoring/log-metrics/twiml_failover_monitor_fallback_failing_rounds.yaml",
    ))
    .unwrap();
    let fields: Vec<String> = metric
        .match_indices("jsonPayload.")
        .map(|(at, _)| {
            metric[at + 12..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect()
        })
        .collect();
    assert_eq!(fields, ["message", "fallback_urls_failing"]);
    assert!(fields.iter().all(|f| logged.contains(f)), "{logged:?}");
    assert!(metric.contains("jsonPayload.message=\"round finished\""));
}

#[test]
fn a_messaging_service_added_over_a_number_takes_its_sms() {
    let Scene {
        primary,
        fallback: _fallback,
        fake,
        wiring,
        ca,
        _dir,
    } = scene(2, &[]);
    let monitor = Monitor::start(&fake, &wiring, &ca.probe_ca_flag());
    assert_eq!(monitor.round_after(0)["ok"], true);

    // Someone adds number 2 to a new Service whose inbound URL is another app (a CRM, on
    // 127.0.0.3), with no fallback.
    let far = time::OffsetDateTime::now_utc() + time::Duration::days(90);
    let (crm, crm_requests) = counting_tls_server(&ca, "127.0.0.3", far, EMPTY_TWIML);
    let crm_url = format!("https://{crm}/inbound");
    let mg = sid("MG", 1);
    fake.with(|st| {
        let mut svc = service(1, "marketing", false);
        svc["inbound_request_url"] = json!(crm_url);
        st.services.push(svc);
        // Membership shows in the Service's PhoneNumbers list only: the number's
        // sms_application_sid is an AP… sid in Twilio's OpenAPI description.
        st.members.insert(mg.clone(), vec![sid("PN", 2)]);
    });
    let s = monitor.until("number 2 failing", |s| s["numbers"][1]["ok"] == false);
    let sms = &s["numbers"][1]["sms"];
    assert_eq!(sms["source"]["kind"], "service", "{sms:#}");
    assert_eq!(sms["source"]["sid"], mg.as_str(), "{sms:#}");
    let k = kinds(sms);
    assert!(k.contains(&"no_fallback_url".into()), "{k:?}");
    assert_eq!(s["numbers"][0]["ok"], true, "{s:#}");
    let changed = monitor.said_at_least("number verdict changed", 1);
    assert_eq!(changed.len(), 1, "{}", monitor.log());
    assert_eq!(changed[0]["number"], "+15550000002");
    assert_eq!(changed[0]["channel"], "sms");
    let m = monitor.metrics();
    assert_eq!(
        sample(
            &m,
            "twiml_failover_monitor_numbers_failing{problem=\"no_fallback_url\"}"
        ),
        Some(1.0),
        "{m}"
    );
    // Another app's URL (the CRM) gets the reachability and certificate checks only: a
    // synthetic SMS could make it act.
    let u = url_status(&s, &crm_url);
    assert_eq!(u["check"], "reachability", "{u:#}");
    assert_eq!(u["ok"], true, "{u:#}");
    assert_eq!(u["certificate"]["valid"], true, "{u:#}");
    assert_eq!(
        crm_requests.load(Ordering::SeqCst),
        0,
        "no request reached the CRM"
    );
    // Unless the operator opts in with its prefix.
    let prefix = format!("https://{crm}/");
    let opted = Monitor::start(
        &fake,
        &wiring,
        &[&ca.probe_ca_flag()[..], &["--signed-probe", &prefix]].concat(),
    );
    let s = opted.round_after(0);
    assert_eq!(url_status(&s, &crm_url)["check"], "webhook", "{s:#}");
    assert!(crm_requests.load(Ordering::SeqCst) >= 1);
    assert_probes_apart(&primary, 2.0);
    fake.assert_spec_conform();
}

#[test]
fn api_429s_are_waited_out_and_a_refused_round_is_said_once_then_recovered() {
    let Scene {
        primary: _primary,
        fallback: _fallback,
        fake,
        wiring,
        ca,
        _dir,
    } = scene(1, &[]);
    // Two 429s first, each asking for a second: waited out within the round.
    fake.with(|st| {
        st.requests.clear();
        st.throttle = 2;
        st.retry_after = 1;
    });
    let monitor = Monitor::start(
        &fake,
        &wiring,
        &[&ca.probe_ca_flag()[..], &["--api-budget", "20"]].concat(),
    );
    let s = monitor.round_after(0);
    assert_eq!(s["api"]["complete"], true, "{s:#}");
    assert_eq!(s["api"]["throttled"], 2, "{s:#}");
    assert_eq!(s["ok"], true, "{s:#}");
    let throttled: Vec<Instant> = fake.with(|st| {
        st.requests
            .iter()
            .filter(|r| r.status == 429)
            .map(|r| r.at)
            .collect()
    });
    let after: Vec<Instant> = fake.with(|st| st.requests.iter().map(|r| r.at).collect());
    assert_eq!(throttled.len(), 2);
    // Retry-After honoured: the retry came at least a second after the 429.
    assert!(after[2].duration_since(throttled[1]) >= Duration::from_millis(950));
    let m = monitor.metrics();
    assert_eq!(
        sample(
            &m,
            "twiml_failover_monitor_api_requests_total{result=\"throttled\"}"
        ),
        Some(2.0),
        "{m}"
    );

    // The API refuses for longer than the round can wait: the round is incomplete, said once,
    // the verdicts stay on the cached pages, and the budget caps the requests.
    let before = fake.with(|st| st.requests.len());
    fake.with(|st| st.throttle = 1000);
    let s = monitor.until("reads failing", |s| s["api"]["complete"] == false);
    assert!(s["api"]["requests"].as_u64().unwrap() <= 20, "{s:#}");
    assert_eq!(s["numbers"].as_array().unwrap().len(), 1, "{s:#}");
    assert_eq!(
        s["numbers"][0]["ok"], true,
        "the cached wiring still judges: {s:#}"
    );
    let m = monitor.metrics();
    assert!(
        sample(
            &m,
            "twiml_failover_monitor_rounds_total{result=\"incomplete\"}"
        )
        .unwrap()
            >= 1.0,
        "{m}"
    );
    fake.with(|st| st.throttle = 0);
    monitor.until("reads complete again", |s| s["api"]["complete"] == true);
    assert_eq!(
        monitor.said_at_least("api reads failing", 1).len(),
        1,
        "{}",
        monitor.log()
    );
    assert_eq!(
        monitor.said_at_least("api reads recovered", 1).len(),
        1,
        "{}",
        monitor.log()
    );
    let during = fake.with(|st| st.requests.len()) - before;
    assert!(during > 0);
    fake.assert_spec_conform();
}

#[test]
fn expired_and_soon_expiring_certificates_are_problems_with_their_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path());
    let now = time::OffsetDateTime::now_utc();
    let later = tls_server(
        &ca,
        "127.0.0.1",
        now + time::Duration::days(90),
        EMPTY_TWIML,
    );
    let expired = tls_server(&ca, "127.0.0.2", now - time::Duration::days(2), EMPTY_TWIML);
    let soon = tls_server(&ca, "127.0.0.2", now + time::Duration::days(5), EMPTY_TWIML);
    // Primary URLs on a healthy certificate; number 1 falls back to an expired one, number 2 to
    // one expiring in 5 days.
    let primary = format!("https://{later}");
    let wiring = dir.path().join("wiring.toml");
    std::fs::write(
        &wiring,
        format!("primary_base = \"{primary}\"\nfallback_base = \"https://{soon}\"\n"),
    )
    .unwrap();
    let mut numbers = Vec::new();
    for (i, fb) in [(1, expired), (2, soon)] {
        let mut n = number(i, &format!("+1555000000{i}"), &format!("line {i}"));
        n["voice_url"] = json!(format!(
            "{primary}/voice#ct=1000&rt=4000&tt=6000&rc=1&rp=ct"
        ));
        n["sms_url"] = json!(format!("{primary}/sms#ct=1000&rt=4000&tt=6000&rc=1&rp=ct"));
        n["voice_fallback_url"] = json!(format!("https://{fb}/voice"));
        n["sms_fallback_url"] = json!(format!("https://{fb}/sms"));
        n["status_callback"] = json!(format!("{primary}/status"));
        numbers.push(n);
    }
    let fake = Fake::start(State {
        token: Some(common::TOKEN.to_string()),
        numbers,
        ..State::default()
    });
    let monitor = Monitor::start(&fake, &wiring, &ca.probe_ca_flag());
    let s = monitor.round_after(0);

    let cert_of = |addr: SocketAddr| {
        s["urls"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["url"] == format!("https://{addr}/voice"))
            .unwrap_or_else(|| panic!("{s:#}"))["certificate"]
            .clone()
    };
    let gone = cert_of(expired);
    assert_eq!(gone["valid"], false, "{gone:#}");
    assert!(gone["days_left"].as_f64().unwrap() < 0.0, "{gone:#}");
    let near = cert_of(soon);
    assert_eq!(near["valid"], true, "{near:#}");
    let days = near["days_left"].as_f64().unwrap();
    assert!((4.0..=5.1).contains(&days), "{near:#}");
    let u = url_status(&s, &format!("https://{expired}/voice"));
    assert_eq!(u["ok"], false, "{u:#}");
    assert_eq!(u["error_code"], 11236, "{u:#}");
    for n in 0..2 {
        assert!(
            kinds(&s["numbers"][n]["voice"]).contains(&"certificate_expiring".into()),
            "{s:#}"
        );
    }
    let m = monitor.metrics();
    let expiry = |addr: SocketAddr| {
        sample(
            &m,
            &format!(
                "twiml_failover_monitor_certificate_expiry_timestamp_seconds{{host=\"{addr}\"}}"
            ),
        )
        .unwrap_or_else(|| panic!("{m}"))
    };
    let unix = |t: time::OffsetDateTime| t.unix_timestamp() as f64;
    assert!((expiry(expired) - unix(now - time::Duration::days(2))).abs() < 2.0);
    assert!((expiry(soon) - unix(now + time::Duration::days(5))).abs() < 2.0);
    assert!((expiry(later) - unix(now + time::Duration::days(90))).abs() < 2.0);
    assert_eq!(
        sample(
            &m,
            &format!("twiml_failover_monitor_certificate_valid{{host=\"{expired}\"}}")
        ),
        Some(0.0),
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            "twiml_failover_monitor_numbers_failing{problem=\"certificate_expiring\"}"
        ),
        Some(2.0),
        "{m}"
    );
    let certs = monitor.said_at_least("certificate state changed", 2);
    let said = |addr: SocketAddr, now: &str| {
        certs
            .iter()
            .filter(|l| l["host"] == addr.to_string() && l["now"] == now)
            .count()
    };
    assert_eq!(said(expired, "invalid"), 1, "{}", monitor.log());
    assert_eq!(said(soon, "expiring"), 1, "{}", monitor.log());
    assert_eq!(said(later, "expiring") + said(later, "invalid"), 0);
    // Said once: another round adds no line.
    monitor.round_after(s["round"].as_u64().unwrap() + 1);
    assert_eq!(monitor.said("certificate state changed").len(), certs.len());
}

#[test]
fn every_monitor_metric_the_rules_dashboard_and_docs_name_is_exported() {
    let Scene {
        primary: _primary,
        fallback: _fallback,
        fake,
        wiring,
        ca,
        _dir,
    } = scene(1, &[]);
    let monitor = Monitor::start(&fake, &wiring, &ca.probe_ca_flag());
    monitor.round_after(0);
    let m = monitor.metrics();
    assert!(
        m.contains("twiml_failover_build_info{") && m.contains("role=\"monitor\""),
        "{m}"
    );
    let metrics = common::exported(&m);
    let named: Vec<(String, &str)> = common::named_metrics()
        .into_iter()
        .filter(|(name, _)| name.starts_with("twiml_failover_monitor_"))
        .collect();
    assert!(named.len() >= 15, "found too few names: {named:?}");
    let missing = common::not_exported(&named, &metrics);
    assert!(
        missing.is_empty(),
        "named but not exported by the monitor:\n{}\n\nexported:\n{metrics:#?}",
        missing.join("\n")
    );
}

/// The benchmark of benches/monitor.sh (ignored in the suite): one `monitor --once` round over a
/// fake account of MONITOR_NUMBERS numbers (10,000) and 20 Messaging Services of 50 numbers each,
/// every number wired to one primary and one fallback on loopback (TLS, answering TwiML). Prints
/// the API requests made, the wall time and the process's peak resident memory (VmHWM, sampled
/// every 5 ms until it exits).
#[test]
#[ignore = "a benchmark: bash benches/monitor.sh"]
fn bench_one_round_over_a_large_account() {
    let count: usize = std::env::var("MONITOR_NUMBERS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_000);
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path());
    let far = time::OffsetDateTime::now_utc() + time::Duration::days(90);
    let primary = format!("https://{}", tls_server(&ca, "127.0.0.1", far, EMPTY_TWIML));
    let fallback = format!("https://{}", tls_server(&ca, "127.0.0.2", far, EMPTY_TWIML));
    let wiring = dir.path().join("wiring.toml");
    std::fs::write(
        &wiring,
        format!("primary_base = \"{primary}\"\nfallback_base = \"{fallback}\"\n"),
    )
    .unwrap();
    let overrides = "#ct=1000&rt=4000&tt=6000&rc=1&rp=ct";
    let mut state = State {
        token: Some(common::TOKEN.to_string()),
        ..State::default()
    };
    for i in 1..=count {
        let mut n = number(i, &format!("+1555{i:07}"), &format!("line {i}"));
        n["voice_url"] = json!(format!("{primary}/voice{overrides}"));
        n["sms_url"] = json!(format!("{primary}/sms{overrides}"));
        n["voice_fallback_url"] = json!(format!("{fallback}/voice"));
        n["sms_fallback_url"] = json!(format!("{fallback}/sms"));
        n["status_callback"] = json!(format!("{primary}/status"));
        state.numbers.push(n);
    }
    for s in 1..=20usize {
        let mut svc = service(s, &format!("service {s}"), true);
        svc["inbound_request_url"] = json!(format!("{primary}/sms{overrides}"));
        svc["fallback_url"] = json!(format!("{fallback}/sms"));
        let members: Vec<String> = (0..50).map(|k| sid("PN", (s - 1) * 50 + k + 1)).collect();
        state.services.push(svc);
        state.members.insert(sid("MG", s), members);
    }
    let fake = Fake::start(state);
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_twiml-failover"))
        .args(["monitor", "--once", "--log-format", "json"])
        .args(ca.probe_ca_flag())
        .env_clear()
        .env("TWIML_FAILOVER_NUMBERS_WIRING", &wiring)
        .env("TWIML_FAILOVER_TWILIO_API_BASE", fake.base())
        .env("TWILIO_ACCOUNT_SID", ACCOUNT)
        .env("TWILIO_AUTH_TOKEN", common::TOKEN)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(dir.path().join("status.json")).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak_kib = 0u64;
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        if let Ok(text) = std::fs::read_to_string(&status_file) {
            if let Some(kib) = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
            {
                peak_kib = peak_kib.max(kib);
            }
        }
        assert!(started.elapsed() < Duration::from_secs(600), "no exit");
        std::thread::sleep(Duration::from_millis(5));
    };
    let wall = started.elapsed();
    let status: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("status.json")).unwrap())
            .unwrap();
    assert_eq!(exit.code(), Some(0), "{}", status["summary"]);
    assert_eq!(status["numbers"].as_array().unwrap().len(), count);
    let requests = fake.with(|s| s.requests.len());
    fake.assert_spec_conform();
    println!(
        "monitor round: {count} numbers, 20 Messaging Services: {requests} API requests, {} URLs probed, \
         wall {:.2} s, peak RSS {:.1} MiB",
        status["urls"].as_array().unwrap().len(),
        wall.as_secs_f64(),
        peak_kib as f64 / 1024.0
    );
}
