//! The failover drill end to end: a real primary and a real fallback in-process on loopback, the
//! drill playing Twilio against them (library and real binary), and the fallback's own view of it.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::*;
use tokio::net::TcpListener;
use twiml_failover::drill::{self, Fault, Options, Report, Scenario, Side, Verdict};

fn opts(primary: &str, fallback: Option<&str>, scenarios: &[Scenario]) -> Options {
    Options {
        primary: Some(primary.to_string()),
        fallback: fallback.map(str::to_string),
        token: TOKEN.to_string(),
        scenarios: scenarios.to_vec(),
        ..Options::default()
    }
}

async fn metrics(server: &TestServer) -> String {
    request(server.addr, "GET", "/metrics", &[], "").await.body
}

/// A primary that accepts connections and never answers; counts the connections it got.
async fn hanging_primary() -> (String, Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            held.push(stream);
        }
    });
    (format!("http://{addr}/voice"), accepted, task)
}

fn only(report: &Report) -> &drill::ScenarioReport {
    assert_eq!(report.scenarios.len(), 1, "{}", report.to_text());
    &report.scenarios[0]
}

#[tokio::test]
async fn primary_up_answers_every_scenario_itself() {
    let primary = TestServer::role("primary").await;
    let fallback = TestServer::role("fallback").await;
    let o = opts(
        &format!("{}#ct=500&rt=1000", primary.url("/voice")),
        Some(&fallback.url("/voice")),
        &[Scenario::Voice, Scenario::Sms, Scenario::Gather],
    );
    let report = drill::run(&o).await.unwrap();
    let text = report.to_text();
    assert!(report.ok(), "{text}");
    for s in &report.scenarios {
        assert_eq!(s.answered_by, Some(Side::Primary), "{text}");
        assert_eq!(s.verdict, Verdict::Pass, "{text}");
        assert!(
            s.abandoned_because.is_none() && s.fallback.is_none(),
            "{text}"
        );
        assert!(s.twiml_problems.is_empty(), "{text}");
    }
    assert_eq!(report.scenarios[0].verbs, ["Gather", "Say", "Redirect"]);
    assert_eq!(report.scenarios[1].verbs, ["Message"]);
    assert_eq!(
        report.scenarios[1].primary.as_ref().unwrap().url,
        primary.url("/sms"),
        "the SMS URL is derived from the voice URL"
    );
    // The <Gather action="menu"> step resolves against /voice and presses 1: the agent is dialled.
    let follow = report.scenarios[2].follow.as_ref().unwrap();
    assert_eq!(follow.url.as_deref(), Some(primary.url("/menu").as_str()));
    assert_eq!(follow.digits.as_deref(), Some("1"));
    assert_eq!(follow.verbs, ["Say", "Dial"], "{text}");
    // Every series exists from start-up; none may have counted anything.
    let fallback_metrics = metrics(&fallback).await;
    assert!(fallback_metrics
        .lines()
        .filter(|l| l.starts_with("twiml_failover_fallback_requests_total{"))
        .all(|l| l.ends_with(" 0")));
    primary.stop().await;
    fallback.stop().await;
}

#[tokio::test]
async fn killed_primary_sends_11205_to_the_fallback_which_counts_it() {
    let primary = TestServer::role("primary").await;
    let primary_url = primary.url("/voice");
    primary.stop().await;
    let fallback = TestServer::role("fallback").await;
    let o = opts(
        &format!("{primary_url}#ct=500&rt=1000"),
        Some(&fallback.url("/voice")),
        &[Scenario::Voice, Scenario::Sms],
    );
    let report = drill::run(&o).await.unwrap();
    let text = report.to_text();
    assert!(report.ok(), "{text}");
    for s in &report.scenarios {
        assert_eq!(s.answered_by, Some(Side::Fallback), "{text}");
        assert_eq!(s.abandoned_because.as_ref().unwrap().code, 11205, "{text}");
        assert!(s
            .abandoned_because
            .as_ref()
            .unwrap()
            .detail
            .contains("refused"));
        // rc=1 with rp=ct: a refused connection is tried twice, as Twilio does.
        assert_eq!(s.primary.as_ref().unwrap().attempts.len(), 2, "{text}");
        let fb = s.fallback.as_ref().unwrap();
        assert_eq!(fb.attempts.len(), 1);
        assert_eq!(
            fb.attempts[0].status,
            Some(200),
            "signed fallback request accepted"
        );
        assert_eq!(s.verdict, Verdict::Pass);
    }
    assert_eq!(report.scenarios[0].verbs, ["Say", "Dial"]);
    assert_eq!(report.scenarios[1].verbs, ["Message"]);
    let m = metrics(&fallback).await;
    assert!(
        m.contains("twiml_failover_fallback_requests_total{error_code=\"11205\"} 2"),
        "{m}"
    );
    assert!(text.contains("abandoned: 11205 HTTP connection failure: connection refused"));
    fallback.stop().await;
}

#[tokio::test]
async fn hanging_primary_is_abandoned_after_the_read_timeout() {
    let (url, accepted, task) = hanging_primary().await;
    let fallback = TestServer::role("fallback").await;
    let o = opts(
        &format!("{url}#ct=500&rt=1000"),
        Some(&fallback.url("/voice")),
        &[Scenario::Voice],
    );
    let report = drill::run(&o).await.unwrap();
    let s = only(&report);
    let text = report.to_text();
    assert_eq!(s.answered_by, Some(Side::Fallback), "{text}");
    let failure = s.abandoned_because.as_ref().unwrap();
    assert_eq!(failure.code, 11205);
    assert!(failure.detail.starts_with("read timeout"), "{text}");
    let primary = s.primary.as_ref().unwrap();
    // The default rp=ct does not retry a read timeout.
    assert_eq!(primary.attempts.len(), 1, "{text}");
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    assert!(primary.elapsed_ms >= 1000, "{text}");
    assert!(s.time_to_answer_ms >= 1000, "{text}");
    assert_eq!(s.fallback.as_ref().unwrap().attempts[0].status, Some(200));
    let m = metrics(&fallback).await;
    assert!(
        m.contains("twiml_failover_fallback_requests_total{error_code=\"11205\"} 1"),
        "{m}"
    );
    task.abort();
    fallback.stop().await;
}

#[tokio::test]
async fn read_timeouts_are_retried_when_rp_says_so_until_tt_runs_out() {
    let (url, accepted, task) = hanging_primary().await;
    let o = opts(
        &format!("{url}#rt=500&rp=rt&rc=5&tt=1200"),
        None,
        &[Scenario::Voice],
    );
    let report = drill::run(&o).await.unwrap();
    let s = only(&report);
    let text = report.to_text();
    let primary = s.primary.as_ref().unwrap();
    // Two full 500 ms read timeouts fit in tt=1200; the third attempt is cut by tt, far short of rc=5.
    let attempts = primary.attempts.len();
    assert!((2..=3).contains(&attempts), "{text}");
    assert_eq!(accepted.load(Ordering::SeqCst), attempts);
    assert!(primary.elapsed_ms >= 1200, "{text}");
    assert_eq!(primary.attempts[0].failure.as_ref().unwrap().code, 11205);
    assert!(
        primary
            .failure
            .as_ref()
            .unwrap()
            .detail
            .contains("total time"),
        "{text}"
    );
    // No fallback URL: nobody answers and the drill says so.
    assert_eq!(s.answered_by, None);
    assert_eq!(s.verdict, Verdict::Fail);
    assert!(!report.ok());
    assert!(text.contains("no fallback URL is configured"), "{text}");
    task.abort();
}

#[tokio::test]
async fn broken_xml_primary_takes_the_12100_path() {
    let fallback = TestServer::role("fallback").await;
    let o = Options {
        primary: None,
        simulate: Some(Fault::BadXml),
        ..opts(
            "unused",
            Some(&fallback.url("/voice")),
            &[Scenario::Voice, Scenario::Sms],
        )
    };
    let report = drill::run(&o).await.unwrap();
    let text = report.to_text();
    assert!(report.ok(), "{text}");
    for s in &report.scenarios {
        assert_eq!(s.answered_by, Some(Side::Fallback), "{text}");
        let failure = s.abandoned_because.as_ref().unwrap();
        assert_eq!(failure.code, 12100, "{text}");
        assert!(failure.detail.contains("does not parse"), "{text}");
    }
    assert!(
        text.starts_with("simulated primary failure: bad-xml"),
        "{text}"
    );
    let m = metrics(&fallback).await;
    assert!(
        m.contains("twiml_failover_fallback_requests_total{error_code=\"12100\"} 2"),
        "{m}"
    );
    fallback.stop().await;
}

#[tokio::test]
async fn a_wrong_token_is_refused_by_the_fallback_and_fails_the_drill() {
    let fallback = TestServer::role("fallback").await;
    let o = Options {
        primary: None,
        simulate: Some(Fault::Refuse),
        token: "not-the-token".into(),
        ..opts("unused", Some(&fallback.url("/voice")), &[Scenario::Voice])
    };
    let report = drill::run(&o).await.unwrap();
    let s = only(&report);
    let fb = s.fallback.as_ref().unwrap();
    assert_eq!(fb.failure.as_ref().unwrap().code, 11200);
    assert!(fb.failure.as_ref().unwrap().detail.contains("403"));
    assert_eq!((s.answered_by, s.verdict), (None, Verdict::Fail));
    assert!(!report.ok());
    fallback.stop().await;
}

fn run_binary(args: Vec<String>) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_twiml-failover"))
        .args(args)
        .env_clear()
        .env("TWILIO_AUTH_TOKEN", TOKEN)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_drills_a_real_fallback_and_exits_by_verdict() {
    let fallback = TestServer::role("fallback").await;
    let fallback_url = fallback.url("/voice");
    let args: Vec<String> = [
        "drill",
        "--simulate-primary-failure",
        "500",
        "--fallback",
        &fallback_url,
        "--format",
        "json",
    ]
    .map(String::from)
    .to_vec();
    let out = tokio::task::spawn_blocking(move || run_binary(args))
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(json["simulated_primary_failure"], "500");
    let scenarios = json["scenarios"].as_array().unwrap();
    assert_eq!(scenarios.len(), 2, "voice and sms by default");
    for s in scenarios {
        assert_eq!(s["answered_by"], "fallback", "{s}");
        assert_eq!(s["abandoned_because"]["code"], 11200, "{s}");
        assert_eq!(s["verdict"], "pass", "{s}");
        assert_eq!(s["fallback"]["attempts"][0]["status"], 200, "{s}");
    }
    assert_eq!(scenarios[1]["channel"], "messaging");

    // Without a fallback URL the same failure leaves the caller with nothing: exit 1.
    let args: Vec<String> = [
        "drill",
        "--simulate-primary-failure",
        "500",
        "--scenario",
        "voice",
    ]
    .map(String::from)
    .to_vec();
    let out = tokio::task::spawn_blocking(move || run_binary(args))
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("verdict:  FAIL"), "{stdout}");

    // A WARN (here an override Twilio does not know) exits 0 by default and 1 with --fail-on warn,
    // which scheduled drills use.
    let warned = format!("{fallback_url}#zz=1");
    for (fail_on, code) in [(None, 0), (Some("warn"), 1), (Some("fail"), 0)] {
        let mut args: Vec<String> = [
            "drill",
            "--simulate-primary-failure",
            "500",
            "--scenario",
            "voice",
            "--fallback",
            &warned,
        ]
        .map(String::from)
        .to_vec();
        if let Some(level) = fail_on {
            args.extend(["--fail-on".to_string(), level.to_string()]);
        }
        let out = tokio::task::spawn_blocking(move || run_binary(args))
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("verdict:  WARN"), "{stdout}");
        assert_eq!(
            out.status.code(),
            Some(code),
            "--fail-on {fail_on:?}: {stdout}"
        );
    }

    // A usage error (no primary at all) is exit 2, not a verdict.
    let out = tokio::task::spawn_blocking(|| run_binary(vec!["drill".into()]))
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    fallback.stop().await;
}

#[tokio::test]
async fn https_to_a_plain_http_port_is_a_tls_handshake_failure() {
    // No TLS server here: an https:// URL pointed at the plain-HTTP fallback exercises the rustls
    // client (ring provider, webpki roots) up to the failed handshake and its error class.
    let fallback = TestServer::role("fallback").await;
    let primary = format!("https://{}/voice#ct=1000&rt=1000", fallback.addr);
    let o = opts(&primary, Some(&fallback.url("/voice")), &[Scenario::Voice]);
    let report = drill::run(&o).await.unwrap();
    let s = only(&report);
    let text = report.to_text();
    let failure = s.abandoned_because.as_ref().unwrap();
    assert_eq!(failure.code, 11220, "{text}");
    assert!(failure.detail.starts_with("TLS handshake failed"), "{text}");
    // A handshake failure is a connect-class failure: retried once under the default rp=ct.
    assert_eq!(s.primary.as_ref().unwrap().attempts.len(), 2, "{text}");
    assert_eq!(s.answered_by, Some(Side::Fallback), "{text}");
    fallback.stop().await;
}

#[tokio::test]
async fn the_drill_reports_which_layer_of_an_upstream_mode_primary_answered() {
    // An app that refuses connections: the primary answers from its templates, and says so.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let app = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let mut a = args("primary");
    a.upstream.upstream = Some(app);
    let primary = TestServer::start(config(&a)).await;
    let o = opts(&primary.url("/voice"), None, &[Scenario::Voice]);
    let report = drill::run(&o).await.unwrap();
    let text = report.to_text();
    let s = only(&report);
    assert_eq!(s.answered_by, Some(Side::Primary), "{text}");
    let fetch = s.primary.as_ref().unwrap();
    assert_eq!(fetch.source.as_deref(), Some("degraded; reason=connect"));
    assert!(text.contains("source: degraded; reason=connect"), "{text}");
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(
        json["scenarios"][0]["primary"]["source"],
        "degraded; reason=connect"
    );
    primary.stop().await;
}
