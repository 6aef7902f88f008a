//! `numbers audit|plan|apply` and `drill --number`, end to end: the binary against a fake Twilio
//! REST API on port 0 (`numbers/fake.rs`) whose every answer is checked against the response
//! schemas extracted from Twilio's OpenAPI description (`twilio_oai/schemas.json`).

mod common;
#[path = "numbers/fake.rs"]
mod fake;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use fake::{app, number, service, sid, Fake, State, ACCOUNT, TOKEN};
use serde_json::{json, Value};

const WIRING: &str = "primary_base = \"https://voice.example.com\"\n\
                      fallback_base = \"https://fallback.example.net\"\n";
const VOICE: &str = "https://voice.example.com/voice#ct=1000&rt=4000&tt=6000&rc=1&rp=ct";
const SMS: &str = "https://voice.example.com/sms#ct=1000&rt=4000&tt=6000&rc=1&rp=ct";
const VOICE_FB: &str = "https://fallback.example.net/voice";
const SMS_FB: &str = "https://fallback.example.net/sms";
const STATUS: &str = "https://voice.example.com/status";

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run_with(fake: &Fake, args: &[&str], env: &[(&str, &str)]) -> Out {
    let dir = tempfile::tempdir().unwrap();
    let wiring = dir.path().join("wiring.toml");
    std::fs::write(&wiring, WIRING).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_twiml-failover"));
    cmd.arg("numbers")
        .args(args)
        .env_clear()
        .env("TWIML_FAILOVER_NUMBERS_WIRING", &wiring)
        .env("TWIML_FAILOVER_TWILIO_API_BASE", fake.base())
        .env("TWIML_FAILOVER_NUMBERS_RATE", "100")
        .env("TWILIO_ACCOUNT_SID", ACCOUNT)
        .env("TWILIO_AUTH_TOKEN", TOKEN)
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

fn run(fake: &Fake, args: &[&str]) -> Out {
    run_with(fake, args, &[])
}

fn wired(mut n: Value) -> Value {
    n["voice_url"] = json!(VOICE);
    n["voice_method"] = json!("POST");
    n["voice_fallback_url"] = json!(VOICE_FB);
    n["voice_fallback_method"] = json!("POST");
    n["sms_url"] = json!(SMS);
    n["sms_fallback_url"] = json!(SMS_FB);
    n["status_callback"] = json!(STATUS);
    n
}

fn posts(fake: &Fake) -> usize {
    fake.updates().len()
}

#[test]
fn the_schemas_reject_what_twilio_never_sends() {
    // The check is only worth something if it can fail.
    let root: Value = serde_json::from_str(include_str!("twilio_oai/schemas.json")).unwrap();
    let v = |name: &str| {
        jsonschema::validator_for(
            &json!({"$defs": root["$defs"], "$ref": format!("#/$defs/{name}")}),
        )
        .unwrap()
    };
    let n = number(1, "+15550000001", "x");
    assert!(v("incoming_phone_number").is_valid(&n));
    let mut extra = n.clone();
    extra["voice_fallback"] = json!("https://a");
    assert!(!v("incoming_phone_number").is_valid(&extra));
    let mut missing = n.clone();
    missing.as_object_mut().unwrap().remove("trunk_sid");
    assert!(!v("incoming_phone_number").is_valid(&missing));
    let mut bad_sid = n;
    bad_sid["sid"] = json!("PN1");
    assert!(!v("incoming_phone_number").is_valid(&bad_sid));
    assert!(!v("service").is_valid(&json!({"sid": sid("MG", 1)})));
}

#[test]
fn two_hundred_fifty_numbers_over_pages_audit_plan_apply_and_apply_again() {
    let numbers: Vec<Value> = (1..=250)
        .map(|i| number(i, &format!("+1555{i:07}"), &format!("store {i}")))
        .collect();
    let fake = Fake::start(State {
        numbers,
        ..State::default()
    });

    let audit = run(&fake, &["audit"]);
    assert_eq!(audit.code, 1, "{}", audit.stderr);
    let lines: Vec<&str> = audit.stdout.lines().collect();
    assert_eq!(lines.len(), 251);
    assert!(
        lines[0].starts_with("+15550000001 FAIL voice=number sms=number | voice: no primary URL;"),
        "{}",
        lines[0]
    );
    assert_eq!(lines[250], "250 numbers: 0 ok, 250 without a primary URL");
    // Three pages of 100, following next_page_uri.
    let pages: Vec<String> = fake.with(|s| {
        s.requests
            .iter()
            .filter(|r| r.path.contains("IncomingPhoneNumbers.json"))
            .map(|r| r.path.clone())
            .collect()
    });
    assert_eq!(pages.len(), 3, "{pages:?}");
    assert!(
        pages[2].contains("Page=2") && pages[2].contains("PageToken=PA"),
        "{pages:?}"
    );

    let plan = run(&fake, &["plan"]);
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    assert!(plan.stdout.starts_with(&format!(
        "number +15550000001 ({}):\n  VoiceUrl          (unset) -> {VOICE}\n  VoiceFallbackUrl  (unset) -> {VOICE_FB}\n  StatusCallback    (unset) -> {STATUS}\n  SmsUrl            (unset) -> {SMS}\n  SmsFallbackUrl    (unset) -> {SMS_FB}\n",
        sid("PN", 1)
    )), "{}", plan.stdout);
    assert!(plan
        .stdout
        .ends_with("Plan: 1250 field(s) to change on 250 resource(s).\n"));
    assert_eq!(posts(&fake), 0);

    let apply = run(&fake, &["apply", "--yes"]);
    assert_eq!(apply.code, 0, "{}{}", apply.stdout, apply.stderr);
    let updates = fake.updates();
    assert_eq!(updates.len(), 250);
    assert_eq!(
        updates[0],
        (
            format!(
                "/2010-04-01/Accounts/{ACCOUNT}/IncomingPhoneNumbers/{}.json",
                sid("PN", 1)
            ),
            vec![
                ("VoiceUrl".to_string(), VOICE.to_string()),
                ("VoiceFallbackUrl".into(), VOICE_FB.into()),
                ("StatusCallback".into(), STATUS.into()),
                ("SmsUrl".into(), SMS.into()),
                ("SmsFallbackUrl".into(), SMS_FB.into()),
            ]
        )
    );
    assert!(
        apply
            .stdout
            .ends_with("Applied: 250 resource(s) updated.\n"),
        "{}",
        apply.stdout
    );
    // --rate 100: the updates start 10 ms apart at least, so they cannot take less than that.
    let starts: Vec<_> = fake.with(|s| {
        s.requests
            .iter()
            .filter(|r| r.method == "POST")
            .map(|r| r.at)
            .collect()
    });
    let span = *starts.last().unwrap() - starts[0];
    let floor = Duration::from_millis(10 * (starts.len() as u64 - 1));
    assert!(
        span >= floor.mul_f64(0.9),
        "{} requests in {span:?}",
        starts.len()
    );

    let again = run(&fake, &["apply", "--yes"]);
    assert_eq!(again.code, 0);
    assert_eq!(posts(&fake), 250, "the second apply changed something");
    assert!(again.stdout.contains("No changes"), "{}", again.stdout);
    let audit = run(&fake, &["audit"]);
    assert_eq!(audit.code, 0, "{}", audit.stdout);
    assert!(audit.stdout.ends_with("250 numbers: 250 ok\n"));
    fake.assert_spec_conform();
}

/// Numbers whose channels are handled elsewhere: a Messaging Service with and without
/// `use_inbound_webhook_on_number`, a TwiML App, a SIP trunk; and two wiring mistakes.
fn mixed_account() -> State {
    let mut in_service = wired(number(1, "+15550000001", "sales"));
    in_service["sms_url"] = json!(null);
    let deferring = wired(number(2, "+15550000002", "support"));
    let mut on_app = wired(number(3, "+15550000003", "ivr"));
    on_app["voice_application_sid"] = json!(sid("AP", 1));
    on_app["voice_url"] = json!(null);
    let mut trunked = wired(number(4, "+15550000004", "pbx"));
    trunked["trunk_sid"] = json!(sid("TK", 1));
    trunked["voice_url"] = json!(null);
    trunked["voice_fallback_url"] = json!(null);
    let mut same_host = wired(number(5, "+15550000005", "billing"));
    same_host["voice_fallback_url"] = json!("https://voice.example.com/fallback/voice");
    let mut no_overrides = wired(number(6, "+15550000006", "billing 2"));
    no_overrides["voice_url"] = json!("https://voice.example.com/voice");

    let mut ivr = app(1, "IVR");
    ivr["voice_url"] = json!(VOICE);
    ivr["voice_fallback_url"] = json!(VOICE_FB);
    ivr["status_callback"] = json!(STATUS);
    let mut marketing = service(1, "Marketing", false);
    marketing["inbound_request_url"] = json!(SMS);
    let mut helpdesk = service(2, "Helpdesk", true);
    helpdesk["inbound_request_url"] = json!("https://crm.example.org/in");
    let mut members = BTreeMap::new();
    members.insert(sid("MG", 1), vec![sid("PN", 1)]);
    members.insert(sid("MG", 2), vec![sid("PN", 2)]);
    State {
        numbers: vec![
            in_service,
            deferring,
            on_app,
            trunked,
            same_host,
            no_overrides,
        ],
        apps: vec![ivr],
        services: vec![marketing, helpdesk],
        members,
        ..State::default()
    }
}

#[test]
fn services_apps_and_trunks_decide_who_is_judged_and_changed() {
    let fake = Fake::start(mixed_account());
    let audit = run(&fake, &["audit", "--format", "json"]);
    assert_eq!(audit.code, 1, "{}", audit.stderr);
    let v: Value = serde_json::from_str(&audit.stdout).unwrap();
    let row = |i: usize| &v["numbers"][i];
    let kinds = |i: usize, ch: &str| -> Vec<String> {
        row(i)[ch]["problems"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["kind"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        row(0)["sms"]["source"],
        json!({"kind": "service", "sid": sid("MG", 1)})
    );
    assert_eq!(kinds(0, "sms"), ["no_fallback_url"]);
    assert_eq!(row(1)["sms"]["source"], json!({"kind": "number"}));
    assert!(kinds(1, "sms").is_empty());
    assert_eq!(
        row(2)["voice"]["source"],
        json!({"kind": "application", "sid": sid("AP", 1)})
    );
    assert!(kinds(2, "voice").is_empty());
    assert_eq!(
        row(3)["voice"]["source"],
        json!({"kind": "trunk", "sid": sid("TK", 1)})
    );
    assert!(kinds(3, "voice").is_empty());
    assert_eq!(kinds(4, "voice"), ["fallback_same_host"]);
    assert_eq!(kinds(5, "voice"), ["no_overrides"]);
    assert_eq!(
        v["summary"],
        format!(
            "6 numbers: 3 ok, 1 messaging handled by Service {} without a fallback URL, 1 with the \
             fallback on the primary's host, 1 without connection overrides",
            sid("MG", 1)
        )
    );
    let text = run(&fake, &["audit"]);
    assert!(
        text.stdout.contains(&format!(
            "+15550000004 ok voice=trunk:{} sms=number\n",
            sid("TK", 1)
        )),
        "{}",
        text.stdout
    );

    let plan = run(&fake, &["plan"]);
    assert_eq!(
        plan.stdout,
        format!(
            "number +15550000005 ({pn5}):\n  VoiceFallbackUrl  https://voice.example.com/fallback/voice -> {VOICE_FB}\n\
             number +15550000006 ({pn6}):\n  VoiceUrl  https://voice.example.com/voice -> {VOICE}\n\
             service Marketing ({mg1}), for +15550000001:\n  FallbackUrl  (unset) -> {SMS_FB}\n\
             voice on a SIP trunk (no voice webhook to set): +15550000004\n\
             Plan: 3 field(s) to change on 3 resource(s).\n",
            pn5 = sid("PN", 5),
            pn6 = sid("PN", 6),
            mg1 = sid("MG", 1)
        )
    );

    // Only the selection is touched.
    let one = run(&fake, &["apply", "--yes", "+15550000005"]);
    assert_eq!(one.code, 0, "{}", one.stderr);
    assert_eq!(
        fake.updates(),
        [(
            format!(
                "/2010-04-01/Accounts/{ACCOUNT}/IncomingPhoneNumbers/{}.json",
                sid("PN", 5)
            ),
            vec![("VoiceFallbackUrl".to_string(), VOICE_FB.to_string())]
        )]
    );
    let rest = run(
        &fake,
        &[
            "apply",
            "--yes",
            "--match",
            "billing*",
            "--match",
            "+1555000000[1]",
        ],
    );
    assert_eq!(rest.code, 0, "{}", rest.stderr);
    let paths: Vec<String> = fake.updates().into_iter().map(|(p, _)| p).collect();
    assert_eq!(paths.len(), 2, "{paths:?}");
    assert!(paths[1].ends_with(&format!("IncomingPhoneNumbers/{}.json", sid("PN", 6))));
    let all = run(&fake, &["apply", "--yes"]);
    assert_eq!(all.code, 0, "{}", all.stderr);
    let last = fake.updates().pop().unwrap();
    assert_eq!(
        last,
        (
            format!("/v1/Services/{}", sid("MG", 1)),
            vec![("FallbackUrl".to_string(), SMS_FB.to_string())]
        )
    );
    assert_eq!(posts(&fake), 3);
    assert_eq!(run(&fake, &["apply", "--yes"]).code, 0);
    assert_eq!(posts(&fake), 3, "apply twice changed something");
    assert_eq!(run(&fake, &["audit"]).code, 0);
    fake.assert_spec_conform();
}

#[test]
fn overrides_that_differ_from_the_wiring_file_fail_the_audit_that_plan_rewrites() {
    // Valid overrides that leave the fallback its 5 s, but not the wiring file's: audit used to say
    // `ok` while plan rewrote the URL.
    let other = "https://voice.example.com/voice#ct=2000&rt=3000&tt=6000&rc=1&rp=ct";
    let mut drifted = wired(number(1, "+15550000001", "drifted"));
    drifted["voice_url"] = json!(other);
    let fake = Fake::start(State {
        numbers: vec![drifted, wired(number(2, "+15550000002", "as wired"))],
        ..State::default()
    });
    let audit = run(&fake, &["audit"]);
    assert_eq!(audit.code, 1, "{}", audit.stderr);
    assert_eq!(
        audit.stdout,
        format!(
            "+15550000001 FAIL voice=number sms=number | voice: primary is {other}, the wiring \
             file wants {VOICE} (`numbers plan` rewrites it)\n\
             +15550000002 ok voice=number sms=number\n\
             2 numbers: 1 ok, 1 with settings that differ from the wiring file\n"
        )
    );
    let json: Value =
        serde_json::from_str(&run(&fake, &["audit", "--format", "json"]).stdout).unwrap();
    assert_eq!(
        json["numbers"][0]["voice"]["problems"][0]["kind"],
        "differs_from_wiring"
    );
    let plan = run(&fake, &["plan"]);
    assert!(
        plan.stdout.starts_with(&format!(
            "number +15550000001 ({}):\n  VoiceUrl  {other} -> {VOICE}\n",
            sid("PN", 1)
        )),
        "{}",
        plan.stdout
    );
    assert!(plan
        .stdout
        .ends_with("Plan: 1 field(s) to change on 1 resource(s).\n"));
    assert_eq!(run(&fake, &["apply", "--yes"]).code, 0);
    let audit = run(&fake, &["audit"]);
    assert_eq!(audit.code, 0, "{}", audit.stdout);
    assert!(audit.stdout.ends_with("2 numbers: 2 ok\n"));
    fake.assert_spec_conform();
}

#[test]
fn a_shared_service_is_left_alone_when_it_serves_unselected_numbers() {
    let mut state = mixed_account();
    state
        .members
        .get_mut(&sid("MG", 1))
        .unwrap()
        .push(sid("PN", 6));
    let fake = Fake::start(state);
    let plan = run(&fake, &["plan", "+15550000001"]);
    assert_eq!(plan.code, 0);
    assert!(plan.stdout.contains(&format!(
        "left alone: service {}: also handles sms of 1 number(s) outside the selection (+15550000006); select them too",
        sid("MG", 1)
    )), "{}", plan.stdout);
    let unknown = run(&fake, &["plan", "+19990000000"]);
    assert_eq!(unknown.code, 2);
    assert!(
        unknown.stderr.contains("no such number in account"),
        "{}",
        unknown.stderr
    );
    fake.assert_spec_conform();
}

#[test]
fn a_429_storm_is_waited_out_then_given_up() {
    let fake = Fake::start(State {
        numbers: vec![wired(number(1, "+15550000001", "a"))],
        throttle: 2,
        retry_after: 1,
        ..State::default()
    });
    let audit = run(&fake, &["audit"]);
    assert_eq!(audit.code, 0, "{}", audit.stderr);
    let times: Vec<_> = fake.with(|s| s.requests.iter().map(|r| (r.status, r.at)).collect());
    assert_eq!(times[0].0, 429);
    assert_eq!(times[2].0, 200);
    for pair in times[..3].windows(2) {
        assert!(
            pair[1].1 - pair[0].1 >= Duration::from_millis(1000),
            "Retry-After not honoured"
        );
    }
    fake.with(|s| {
        s.throttle = 100;
        s.retry_after = 0;
    });
    let storm = run(&fake, &["audit"]);
    assert_eq!(storm.code, 2);
    assert!(
        storm.stderr.contains("HTTP 429 (Twilio error 20429: Too Many Requests; https://www.twilio.com/docs/errors/20429): still rate-limited after 5 waits"),
        "{}",
        storm.stderr
    );
    fake.assert_spec_conform();
}

#[test]
fn a_500_mid_apply_is_reported_and_the_rest_still_applied() {
    let fake = Fake::start(State {
        numbers: (1..=3)
            .map(|i| number(i, &format!("+1555000000{i}"), "n"))
            .collect(),
        fail_update: [sid("PN", 2)].into(),
        ..State::default()
    });
    let apply = run(&fake, &["apply", "--yes"]);
    assert_eq!(apply.code, 1);
    assert_eq!(posts(&fake), 3);
    assert!(apply.stdout.contains(&format!(
        "FAILED number +15550000002 ({}): POST {}/2010-04-01/Accounts/{ACCOUNT}/IncomingPhoneNumbers/{}.json: HTTP 500 (Twilio error 20500: Internal Server Error; https://www.twilio.com/docs/errors/20500)",
        sid("PN", 2), fake.base(), sid("PN", 2)
    )), "{}", apply.stdout);
    assert!(apply
        .stdout
        .contains("Applied 2 of 3 resource(s); 1 failed"));
    fake.with(|s| s.fail_update.clear());
    let again = run(&fake, &["apply", "--yes"]);
    assert_eq!(again.code, 0);
    let updates = fake.updates();
    assert_eq!(updates.len(), 4);
    assert!(updates[3].0.ends_with(&format!("{}.json", sid("PN", 2))));
    fake.assert_spec_conform();
}

#[test]
fn a_number_deleted_between_plan_and_apply_fails_alone() {
    let fake = Fake::start(State {
        numbers: (1..=3)
            .map(|i| number(i, &format!("+1555000000{i}"), "n"))
            .collect(),
        delete_on_first_update: Some(sid("PN", 2)),
        ..State::default()
    });
    let apply = run(&fake, &["apply", "--yes"]);
    assert_eq!(apply.code, 1, "{}", apply.stdout);
    assert!(apply.stdout.contains(&format!(
        "updated number +15550000001 ({}): 5 field(s)",
        sid("PN", 1)
    )));
    assert!(
        apply
            .stdout
            .contains("HTTP 404 (Twilio error 20404: The requested resource"),
        "{}",
        apply.stdout
    );
    assert!(apply
        .stdout
        .contains("no such resource in this account (deleted meanwhile"));
    assert!(apply
        .stdout
        .contains(&format!("updated number +15550000003 ({})", sid("PN", 3))));
    assert_eq!(run(&fake, &["apply", "--yes"]).code, 0);
    assert_eq!(posts(&fake), 3, "nothing left to change after the deletion");
    fake.assert_spec_conform();
}

#[test]
fn wrong_credentials_are_named_and_change_nothing() {
    let fake = Fake::start(State {
        numbers: vec![number(1, "+15550000001", "a")],
        ..State::default()
    });
    let out = run_with(
        &fake,
        &["apply", "--yes"],
        &[("TWILIO_AUTH_TOKEN", "wrong")],
    );
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains(&format!(
        "HTTP 401 (Twilio error 20003: Authenticate; https://www.twilio.com/docs/errors/20003): Twilio refused the credentials (auth token for {ACCOUNT})"
    )), "{}", out.stderr);
    assert!(!out.stderr.contains("wrong"));
    let key = run_with(
        &fake,
        &["audit"],
        &[("TWILIO_API_KEY", "SKabc"), ("TWILIO_API_SECRET", "s")],
    );
    assert!(
        key.stderr.contains("(API key secret for SKabc)"),
        "{}",
        key.stderr
    );
    let none = run_with(&fake, &["audit"], &[("TWILIO_AUTH_TOKEN", "")]);
    assert_eq!(none.code, 2);
    assert!(none.stderr.contains("no credentials"), "{}", none.stderr);
    assert_eq!(posts(&fake), 0);
    fake.assert_spec_conform();
}

#[test]
fn an_unreachable_api_and_a_restricted_key_are_named() {
    let fake = Fake::start(State {
        numbers: vec![number(1, "+15550000001", "a")],
        forbid_updates: true,
        ..State::default()
    });
    let apply = run(&fake, &["apply", "--yes"]);
    assert_eq!(apply.code, 1);
    assert!(apply.stdout.contains(
        "HTTP 403 (Twilio error 20403: Permission Denied; https://www.twilio.com/docs/errors/20403): \
         these credentials may not do this"
    ), "{}", apply.stdout);
    fake.with(|s| s.stuck_pagination = true);
    let stuck = run(&fake, &["audit"]);
    assert_eq!(stuck.code, 2);
    assert!(
        stuck
            .stderr
            .contains("pagination does not end (page 2 points to"),
        "{}",
        stuck.stderr
    );
    // A port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let base = format!("http://{closed}");
    let down = run_with(
        &fake,
        &["audit"],
        &[("TWIML_FAILOVER_TWILIO_API_BASE", &base)],
    );
    assert_eq!(down.code, 2);
    assert!(down.stderr.contains(&format!(
        "GET {base}/2010-04-01/Accounts/{ACCOUNT}/IncomingPhoneNumbers.json?PageSize=100: cannot reach the API: cannot connect"
    )), "{}", down.stderr);
    fake.assert_spec_conform();
}

#[test]
fn dry_run_prints_redacted_requests_and_apply_asks_first() {
    let fake = Fake::start(State {
        numbers: vec![number(1, "+15550000001", "a")],
        ..State::default()
    });
    let dry = run(&fake, &["apply", "--dry-run"]);
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    assert!(dry.stdout.contains(&format!(
        "DRY RUN: nothing is sent.\n\nPOST {}/2010-04-01/Accounts/{ACCOUNT}/IncomingPhoneNumbers/{}.json\n\
         Authorization: Basic <redacted: {ACCOUNT} + auth token>\n\
         Content-Type: application/x-www-form-urlencoded\n\nVoiceUrl=https%3A%2F%2Fvoice.example.com%2Fvoice%23ct%3D1000",
        fake.base(),
        sid("PN", 1)
    )), "{}", dry.stdout);
    assert!(!dry.stdout.contains(TOKEN));
    let ask = run(&fake, &["apply"]);
    assert_eq!(ask.code, 2);
    assert!(ask.stderr.contains("pass --yes"), "{}", ask.stderr);
    assert_eq!(posts(&fake), 0);
    let elsewhere = run_with(
        &fake,
        &["audit"],
        &[("TWIML_FAILOVER_TWILIO_API_BASE", "https://api.example.com")],
    );
    assert_eq!(elsewhere.code, 2);
    assert!(
        elsewhere.stderr.contains("only a loopback base"),
        "{}",
        elsewhere.stderr
    );
    fake.assert_spec_conform();
}

/// `drill --number NUMBER --format json` against the fake, signing with the test servers' token.
async fn drill_number(fake: &Fake, number: &str) -> std::process::Output {
    let (base, number) = (fake.base(), number.to_string());
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_twiml-failover"))
            .args(["drill", "--number", &number, "--format", "json"])
            .env_clear()
            .env("TWIML_FAILOVER_TWILIO_API_BASE", base)
            .env("TWILIO_ACCOUNT_SID", ACCOUNT)
            .env("TWILIO_AUTH_TOKEN", common::TOKEN)
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drill_number_rehearses_the_wiring_twilio_has() {
    let primary = common::TestServer::role("primary").await;
    let fallback = common::TestServer::role("fallback").await;
    let mut n = number(1, "+15550000001", "a");
    // No voice_url on the number: the App's URLs are what Twilio calls.
    n["voice_application_sid"] = json!(sid("AP", 1));
    n["sms_url"] = json!(primary.url("/sms"));
    n["sms_fallback_url"] = json!(fallback.url("/sms"));
    let mut a = app(1, "IVR");
    a["voice_url"] = json!(format!("{}#ct=1000", primary.url("/voice")));
    a["voice_fallback_url"] = json!(fallback.url("/voice"));
    // The fake runs its own runtime: started and dropped outside this one.
    let fake = tokio::task::block_in_place(|| {
        Fake::start(State {
            numbers: vec![n],
            apps: vec![a],
            token: Some(common::TOKEN.into()),
            ..State::default()
        })
    });
    let out = drill_number(&fake, "+15550000001").await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "+15550000001 voice: handled by App {}",
            sid("AP", 1)
        )),
        "{stderr}"
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["scenarios"][0]["primary"]["url"],
        json!(primary.url("/voice"))
    );
    assert_eq!(report["scenarios"][0]["answered_by"], "primary");
    assert_eq!(
        report["scenarios"][1]["primary"]["url"],
        json!(primary.url("/sms"))
    );
    let unknown = drill_number(&fake, "+15559999999").await;
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr)
        .contains(&format!("number: +15559999999 is not in account {ACCOUNT}")));
    primary.stop().await;
    fallback.stop().await;
    fake.assert_spec_conform();
    tokio::task::block_in_place(|| drop(fake));
}
