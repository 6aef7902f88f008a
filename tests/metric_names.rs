//! No alert is silently dead: every metric an alert rule, the Grafana dashboard or the docs name is
//! exported by `serve`'s `/metrics` from start-up (with the settings that enable its feature;
//! `monitor`'s own metrics are held to a running monitor by tests/monitor.rs), and every log field
//! the AWS metric filters and the Cloud Run log-based metrics read is in the JSON lines the binary
//! writes. Against the real binary: the Kubernetes PrometheusRule, deploy/grafana, deploy/aws/
//! fallback.yaml's metric filters and alarms, deploy/cloudrun/monitoring, README.md,
//! deploy/README.md and docs/*.md.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use common::process::Serve;

fn repo(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every JSON log field a filter reads: `$.name` (CloudWatch) or `jsonPayload.name` (Cloud Logging).
fn log_fields(text: &str, prefix: &str) -> BTreeSet<String> {
    text.match_indices(prefix)
        .map(|(at, _)| {
            text[at + prefix.len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect::<String>()
        })
        .filter(|f| !f.is_empty())
        .collect()
}

/// The sample names of an HTTP answer holding an OpenMetrics exposition.
fn exported(answer: &str) -> BTreeSet<String> {
    let (_, metrics) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
    common::exported(metrics)
}

/// Names in prose that are not metrics: the journal's table, and the Cloud Run log-based metrics
/// (checked below against the log fields they read).
fn not_metrics() -> BTreeSet<String> {
    let mut names: BTreeSet<String> = ["twiml_failover_events".to_string()].into();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/cloudrun/monitoring/log-metrics");
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        names.insert(name.trim_end_matches(".yaml").to_string());
    }
    names
}

/// Log fields only written under pressure this test does not create (100,000 events held in
/// memory), with the source that writes them.
const FIELDS_WRITTEN_UNDER_PRESSURE: [(&str, &str, &str); 1] =
    [("dropped", "src/journal/writer.rs", "dropped = 1u64")];

fn json_fields(log: &str) -> BTreeSet<String> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v.as_object().cloned())
        .flat_map(|o| o.keys().cloned().collect::<Vec<_>>())
        .collect()
}

fn wait_for(server: &Serve, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !server.log().contains(what) {
        assert!(
            Instant::now() < deadline,
            "no {what:?} in the log:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A signed `POST /voice` as Twilio sends it to a fallback URL: with ErrorCode and ErrorUrl.
fn fallback_request(server: &Serve) -> String {
    let params = [
        ("CallSid", "CA00000000000000000000000000000001"),
        ("From", "+15550100001"),
        ("To", "+15550199999"),
        ("ErrorCode", "11205"),
        ("ErrorUrl", "https://voice.example.com/voice"),
    ];
    server.post_signed("/voice", &params).expect("answered")
}

/// Starts `serve` with every feature a rule or doc names a metric of: journal, forwarding, spill
/// folder, upstream mode, JSON logs. Nothing listens at the forward and upstream targets.
fn everything_on(journal: &str, spill: &Path) -> Serve {
    Serve::shipped(&[
        "--watch",
        "false",
        "--log-format",
        "json",
        "--journal",
        journal,
        "--journal-spill-dir",
        spill.to_str().unwrap(),
        "--forward-to",
        "http://127.0.0.1:9/events",
        "--upstream",
        "http://127.0.0.1:9/app",
    ])
}

#[test]
fn every_metric_the_rules_and_docs_name_is_exported_from_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let journal = format!("sqlite://{}", dir.path().join("j.db").display());
    let server = everything_on(&journal, dir.path());
    // Before any traffic: what an alert or a dashboard sees right after a deploy.
    let metrics = exported(&server.get("/metrics").unwrap());
    let skip = not_metrics();
    // The monitor's own metrics: tests/monitor.rs, against a monitor that has made a round.
    let named: BTreeSet<(String, &str)> = common::named_metrics()
        .into_iter()
        .filter(|(name, _)| !name.starts_with("twiml_failover_monitor_"))
        .collect();
    assert!(named.len() > 20, "found too few names: {named:?}");
    let missing = common::not_exported(
        named.iter().filter(|(name, _)| !skip.contains(name)),
        &metrics,
    );
    assert!(
        missing.is_empty(),
        "named but not exported at start-up:\n{}\n\nexported:\n{metrics:#?}",
        missing.join("\n")
    );
}

#[test]
fn every_log_field_the_aws_and_cloud_run_alerts_read_is_logged() {
    let aws = repo("deploy/aws/fallback.yaml");
    let mut fields = log_fields(&aws, "$.");
    let monitoring = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/cloudrun/monitoring");
    for sub in ["log-metrics", "alert-policies"] {
        for entry in std::fs::read_dir(monitoring.join(sub)).unwrap() {
            let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            // The monitor's lines: tests/monitor.rs holds those to what the monitor logs.
            if text.contains("service_name=\"twiml-failover-monitor\"") {
                continue;
            }
            fields.extend(log_fields(&text, "jsonPayload."));
        }
    }
    for expected in [
        "journal_up",
        "journal_backlog_events",
        "lost",
        "spilled",
        "fallback",
    ] {
        assert!(fields.contains(expected), "{expected} not read: {fields:?}");
    }

    // A server with every feature: its status line, and a webhook through the fallback URL.
    let dir = tempfile::tempdir().unwrap();
    let journal = format!("sqlite://{}", dir.path().join("j.db").display());
    let server = everything_on(&journal, dir.path());
    wait_for(&server, "journal status");
    assert!(fallback_request(&server).starts_with("HTTP/1.1 200"));
    wait_for(&server, "\"error_code\":\"11205\"");
    let mut logged = json_fields(&server.log());
    let metrics = exported(&server.get("/metrics").unwrap());

    // Exits with events the store did not take: `spilled`, then (without a folder) `lost`.
    let down = "postgres://twiml@127.0.0.1:9/journal";
    for spill in [true, false] {
        let folder = tempfile::tempdir().unwrap();
        let mut args = vec![
            "--watch",
            "false",
            "--log-format",
            "json",
            "--journal",
            down,
        ];
        if spill {
            args.extend(["--journal-spill-dir", folder.path().to_str().unwrap()]);
        }
        let mut stopping = Serve::shipped(&args);
        assert!(stopping.sms("hi").unwrap().starts_with("HTTP/1.1 200"));
        stopping.signal("TERM");
        let status = stopping.wait_exit(Duration::from_secs(30)).expect("exits");
        assert_eq!(status.code(), Some(if spill { 3 } else { 1 }));
        logged.extend(json_fields(&stopping.log()));
    }

    for field in &fields {
        if let Some((_, source, writes)) = FIELDS_WRITTEN_UNDER_PRESSURE
            .iter()
            .find(|(f, _, _)| f == field)
        {
            assert!(
                repo(source).contains(writes),
                "{source} no longer writes {field}"
            );
            continue;
        }
        assert!(
            logged.contains(field),
            "{field} is read by a log-based alert but never logged; logged: {logged:?}"
        );
        // The status line's fields carry the metrics, named the same without the prefix.
        if field.starts_with("journal_") {
            let metric = format!("twiml_failover_{field}");
            assert!(
                metrics.contains(&metric),
                "{field}: no {metric} in /metrics"
            );
        }
    }
}
