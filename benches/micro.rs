//! Micro-benchmarks of the per-request work, so a regression shows before the end-to-end number
//! moves: decoding the form body, verifying the signature, rendering the SMS answer, and
//! formatting and writing the request's log line (tracing-subscriber's text and JSON formats, and
//! the text format through `serve`'s non-blocking writer).
//!
//! `cargo bench --bench micro`

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use http::{HeaderMap, Method, Uri};
use twiml_failover::commands::template_inputs::load_template_settings;
use twiml_failover::keyring::{KeyRing, Secret};
use twiml_failover::signature::{sign, verify, Algorithm};
use twiml_failover::templates::Templates;
use twiml_failover::twilio::xml;
use twiml_failover::twilio::Role;
use twiml_failover::verify::authenticate;
use twiml_failover::webhook::{decode, parse_form, Params, UrlRules};

const TOKEN: &str = "bench-token-not-a-secret-0123456789ab";
const URL: &str = "http://127.0.0.1:18080/sms";

/// The inbound SMS parameters of benches/make_request.py: what Twilio sends for one message.
const SMS: &[(&str, &str)] = &[
    ("ToCountry", "US"),
    ("ToState", "CA"),
    ("SmsMessageSid", "SM1f0e8ae6ade43cb3c0ce4525424e404f"),
    ("NumMedia", "0"),
    ("ToCity", "SAN FRANCISCO"),
    ("FromZip", "94105"),
    ("SmsSid", "SM1f0e8ae6ade43cb3c0ce4525424e404f"),
    ("FromState", "CA"),
    ("SmsStatus", "received"),
    ("FromCity", "SAN FRANCISCO"),
    (
        "Body",
        "Running late, see you at the cafe in 10 minutes. Can you order me a flat white please?",
    ),
    ("FromCountry", "US"),
    ("To", "+14155550100"),
    ("MessagingServiceSid", "MG9752274e9e519418a7406176694466fa"),
    ("ToZip", "94105"),
    ("NumSegments", "1"),
    ("ReferralNumMedia", "0"),
    ("MessageSid", "SM1f0e8ae6ade43cb3c0ce4525424e404f"),
    ("AccountSid", "ACae0e8ac8c1d5f3e9f4c1b2a3d4e5f607"),
    ("From", "+14155550123"),
    ("ApiVersion", "2010-04-01"),
];

fn owned_params() -> Params {
    SMS.iter().copied().collect()
}

fn signature(c: &mut Criterion) {
    let sig = sign(Algorithm::HmacSha1, TOKEN.as_bytes(), URL, SMS);
    let params = owned_params();
    let keys: [&[u8]; 1] = [TOKEN.as_bytes()];
    c.bench_function("signature/verify_sms", |b| {
        b.iter(|| {
            assert!(verify(
                Algorithm::HmacSha1,
                black_box(&keys),
                black_box(URL),
                black_box(&params),
                black_box(&sig)
            ))
        })
    });

    // What the server does per request: decode the body and URL, then authenticate.
    let body = bytes::Bytes::from(serde_urlencoded::to_string(SMS).expect("encodes"));
    let uri: Uri = "/sms".parse().expect("valid path");
    let mut headers = HeaderMap::new();
    headers.insert("host", "127.0.0.1:18080".parse().expect("valid"));
    headers.insert(
        "content-type",
        "application/x-www-form-urlencoded".parse().expect("valid"),
    );
    headers.insert("x-twilio-signature", sig.parse().expect("valid"));
    let ring = KeyRing {
        primary: Some(Secret::new(TOKEN)),
        ..KeyRing::default()
    };
    let rules = UrlRules {
        public_url: None,
        scheme: "http",
        trust_forwarded: false,
    };
    c.bench_function("webhook/parse_form_sms", |b| {
        b.iter(|| parse_form(black_box(&body)).expect("parses"))
    });
    c.bench_function("webhook/decode_and_authenticate_sms", |b| {
        b.iter(|| {
            let hook = decode(rules, &Method::POST, &uri, &headers, body.clone()).expect("decodes");
            authenticate(&ring, &headers, &hook).expect("genuine");
            hook
        })
    });
}

fn render(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let settings = load_template_settings(Some(&root.join("twiml-failover.toml")))
        .expect("example config loads");
    let templates = Templates::load(&root.join("twiml-templates"), Role::Primary, &settings)
        .expect("shipped templates load");
    let params = Arc::new(owned_params());
    c.bench_function("templates/answer_sms", |b| {
        b.iter(|| {
            templates
                .answer(black_box("sms"), params.clone())
                .expect("renders")
        })
    });
    // The strict parse every answer passes before it is sent, alone.
    let answer = templates
        .answer("sms", params.clone())
        .expect("renders")
        .twiml;
    c.bench_function("templates/well_formed_sms_answer", |b| {
        b.iter(|| xml::parse(black_box(&answer)).is_ok())
    });
}

/// The request log line as `server::handler` writes it for a signed SMS webhook.
fn request_line() {
    let method = Method::POST;
    let path = "/sms";
    tracing::info!(
        target: "twiml_failover::request",
        method = %method,
        path,
        status = 200u16,
        latency_us = 412u64,
        role = "primary",
        call_sid = None::<&str>,
        message_sid = Some("SM1f0e8ae6ade43cb3c0ce4525424e404f"),
        fallback = false,
        served_by = Some("primary"),
    );
}

/// Logs the line through `subscriber`.
fn log_with(c: &mut Criterion, name: &str, subscriber: impl tracing::Subscriber + Send + Sync) {
    tracing::subscriber::with_default(subscriber, || {
        c.bench_function(name, |b| b.iter(request_line));
    });
}

/// The formatters `serve` uses (as `logging::init` sets them up), into a sink so
/// only formatting is measured; then the text format through the writer `serve` uses, whose thread
/// writes into a sink, so the cost a request pays for its line shows.
fn log_line(c: &mut Criterion) {
    let fmt = || {
        tracing_subscriber::fmt()
            .with_writer(std::io::sink)
            .with_ansi(false)
            .with_timer(twiml_failover::logging::Timestamp)
    };
    log_with(c, "log/request_line_text", fmt().finish());
    log_with(
        c,
        "log/request_line_json",
        fmt().json().flatten_event(true).finish(),
    );
    let (writer, worker, dropped) = twiml_failover::logging::non_blocking(std::io::sink());
    log_with(
        c,
        "log/request_line_text_written",
        fmt().with_writer(writer).finish(),
    );
    drop(worker);
    // Criterion's loop outruns the writer thread at times; those lines were dropped, not waited for.
    eprintln!(
        "log/request_line_text_written: {} line(s) dropped",
        dropped.dropped_lines()
    );
}

criterion_group!(benches, signature, render, log_line);
criterion_main!(benches);
