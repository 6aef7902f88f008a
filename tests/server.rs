//! End to end over real sockets on port 0: routes, status codes, signatures, roles, escaping.

mod common;

use common::*;
use twiml_failover::signature::{body_sha256_hex, sign, Algorithm, NO_PARAMS};

#[tokio::test]
async fn probes_and_metrics() {
    let server = TestServer::role("primary").await;
    let r = request(server.addr, "GET", "/healthz", &[], "").await;
    assert_eq!((r.status, r.body.as_str()), (200, "ok\n"));
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    let r = request(server.addr, "GET", "/readyz", &[], "").await;
    assert_eq!(r.status, 200);
    let r = request(server.addr, "GET", "/metrics", &[], "").await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("twiml_failover_build_info"));
    assert!(r
        .header("content-type")
        .unwrap()
        .contains("openmetrics-text"));
    let r = request(server.addr, "POST", "/healthz", &[], "").await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
    server.stop().await;
}

#[tokio::test]
async fn signed_voice_and_sms_get_twiml() {
    let server = TestServer::role("primary").await;
    let r = post_signed(
        server.addr,
        &server.url("/voice"),
        "/voice",
        TOKEN,
        &call_params(),
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("content-type"), Some("text/xml; charset=utf-8"));
    assert!(r.body.starts_with("<?xml"));
    assert_eq!(elements(&r.body)[..3], ["Response", "Gather", "Say"]);

    let mut menu = call_params();
    menu.push(("Digits", "1"));
    let r = post_signed(server.addr, &server.url("/menu"), "/menu", TOKEN, &menu).await;
    assert_eq!(r.status, 200);
    assert!(
        elements(&r.body).contains(&"Dial".to_string()),
        "{}",
        r.body
    );
    assert!(
        r.body.contains("+15555550100"),
        "agent number from [vars]: {}",
        r.body
    );

    let r = post_signed(
        server.addr,
        &server.url("/sms"),
        "/sms",
        TOKEN,
        &sms_params("hi"),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(elements(&r.body), ["Response", "Message"]);
    server.stop().await;
}

#[tokio::test]
async fn bad_signatures_get_a_bare_403() {
    let server = TestServer::role("primary").await;
    let params = call_params();
    let body = form(&params);
    let ct = ("Content-Type", "application/x-www-form-urlencoded");
    let good = sign(
        Algorithm::HmacSha1,
        TOKEN.as_bytes(),
        &server.url("/voice"),
        &params,
    );
    let wrong_token = sign(
        Algorithm::HmacSha1,
        b"other",
        &server.url("/voice"),
        &params,
    );
    let other_path = sign(
        Algorithm::HmacSha1,
        TOKEN.as_bytes(),
        &server.url("/sms"),
        &params,
    );
    let mut answers = Vec::new();
    answers.push(request(server.addr, "POST", "/voice", &[ct], &body).await);
    for sig in [
        wrong_token.as_str(),
        other_path.as_str(),
        "",
        "garbage",
        &good[1..],
    ] {
        answers.push(
            request(
                server.addr,
                "POST",
                "/voice",
                &[ct, ("X-Twilio-Signature", sig)],
                &body,
            )
            .await,
        );
    }
    // Tampered body under the genuine signature.
    let tampered = body.replace("ringing", "in-progress");
    answers.push(
        request(
            server.addr,
            "POST",
            "/voice",
            &[ct, ("X-Twilio-Signature", &good)],
            &tampered,
        )
        .await,
    );
    // Two signature headers.
    answers.push(
        request(
            server.addr,
            "POST",
            "/voice",
            &[
                ct,
                ("X-Twilio-Signature", &good),
                ("X-Twilio-Signature", &good),
            ],
            &body,
        )
        .await,
    );
    for r in answers {
        assert_eq!(r.status, 403, "{r:?}");
        assert_eq!(r.body, "forbidden\n");
        assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    }
    let metrics = server.app.metrics().encode();
    assert!(
        metrics.contains("signature_failures_total{reason=\"missing\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("signature_failures_total{reason=\"mismatch\"} 6"),
        "{metrics}"
    );
    server.stop().await;
}

#[tokio::test]
async fn status_callbacks_and_error_statuses() {
    let server = TestServer::role("primary").await;
    let params = [("CallSid", "CA1"), ("CallStatus", "completed")];
    let r = post_signed(
        server.addr,
        &server.url("/status"),
        "/status",
        TOKEN,
        &params,
    )
    .await;
    assert_eq!(r.status, 204);
    assert!(r.header("content-type").is_some());
    let r = post_signed(
        server.addr,
        &server.url("/status/calls"),
        "/status/calls",
        TOKEN,
        &params,
    )
    .await;
    assert_eq!(r.status, 204);
    // 404 only after the signature checks out, so unsigned probing learns nothing.
    let r = post_signed(
        server.addr,
        &server.url("/nope"),
        "/nope",
        TOKEN,
        &call_params(),
    )
    .await;
    assert_eq!(r.status, 404);
    let r = request(server.addr, "POST", "/nope", &[], "").await;
    assert_eq!(r.status, 403);
    let r = request(server.addr, "DELETE", "/voice", &[], "").await;
    assert_eq!((r.status, r.header("allow")), (405, Some("GET, POST")));
    let r = request(
        server.addr,
        "POST",
        "/voice",
        &[("Content-Type", "text/plain")],
        "x",
    )
    .await;
    assert_eq!(r.status, 415);
    let ct = ("Content-Type", "application/x-www-form-urlencoded");
    let r = request(server.addr, "POST", "/voice", &[ct], "Body=%FF%FE").await;
    assert_eq!(r.status, 400);
    let big = "a=".to_string() + &"x".repeat(70 * 1024);
    let r = request(server.addr, "POST", "/voice", &[ct], &big).await;
    assert_eq!(r.status, 413);
    // Chunked bodies have no Content-Length: the limit applies while reading.
    let chunk = "x".repeat(40 * 1024);
    let chunked = format!(
        "POST /voice HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{chunk}\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
        chunk.len(),
        chunk.len()
    );
    let r = parse_reply(&raw(server.addr, chunked.as_bytes()).await);
    assert_eq!(r.status, 413);
    let r = request(server.addr, "POST", "/../../etc/passwd", &[], "").await;
    assert_eq!(r.status, 404);
    server.stop().await;
}

#[tokio::test]
async fn get_and_json_webhooks() {
    let server = TestServer::role("primary").await;
    let target = "/voice?CallSid=CA1&From=%2B15550100&To=%2B15550199";
    let sig = sign(
        Algorithm::HmacSha1,
        TOKEN.as_bytes(),
        &server.url(target),
        &NO_PARAMS,
    );
    let r = request(
        server.addr,
        "GET",
        target,
        &[("X-Twilio-Signature", &sig)],
        "",
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");

    let body = r#"{"CallSid":"CA1","From":"+15550100"}"#;
    let target = format!("/voice?bodySHA256={}", body_sha256_hex(body.as_bytes()));
    let sig = sign(
        Algorithm::HmacSha1,
        TOKEN.as_bytes(),
        &server.url(&target),
        &NO_PARAMS,
    );
    let json = ("Content-Type", "application/json");
    let r = request(
        server.addr,
        "POST",
        &target,
        &[json, ("X-Twilio-Signature", &sig)],
        body,
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    let r = request(
        server.addr,
        "POST",
        &target,
        &[json, ("X-Twilio-Signature", &sig)],
        r#"{"CallSid":"CA2","From":"+15550100"}"#,
    )
    .await;
    assert_eq!(r.status, 403);
    // A JSON body without bodySHA256 is never genuine, even with a valid URL signature.
    let sig = sign(
        Algorithm::HmacSha1,
        TOKEN.as_bytes(),
        &server.url("/voice"),
        &NO_PARAMS,
    );
    let r = request(
        server.addr,
        "POST",
        "/voice",
        &[json, ("X-Twilio-Signature", &sig)],
        body,
    )
    .await;
    assert_eq!(r.status, 403);
    server.stop().await;
}

#[tokio::test]
async fn caller_input_never_becomes_markup() {
    let server = TestServer::role("primary").await;
    for hostile in [
        "</Message><Redirect>http://evil.example/</Redirect><Message>",
        "\"/><Injected a=\"",
        "'/><Injected a='",
        "]]><Injected/>",
        "&amp;&lt;&#0;\u{1}\u{b}\u{1f}\u{fffe}",
    ] {
        let mut params = sms_params("hello");
        params.retain(|(k, _)| *k != "Body");
        params.push(("Body", hostile));
        let r = post_signed(server.addr, &server.url("/sms"), "/sms", TOKEN, &params).await;
        assert_eq!(r.status, 200);
        assert_eq!(elements(&r.body), ["Response", "Message"], "{}", r.body);
        // Every parameter the voice templates print, through every one of them.
        let mut call = call_params();
        for (k, v) in call.iter_mut() {
            if *k == "To" {
                *v = hostile;
            }
        }
        call.push(("Digits", hostile));
        let r = post_signed(server.addr, &server.url("/menu"), "/menu", TOKEN, &call).await;
        assert_eq!(r.status, 200);
        assert!(
            !elements(&r.body).iter().any(|e| e == "Injected"),
            "{}",
            r.body
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn secondary_token_subaccounts_and_shared_keys() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        "[vars]\ncompany = \"X\"\nagent_number = \"+1555\"\nbackup_number = \"+1556\"\n\
         [accounts.AC11111111111111111111111111111111]\nenv = \"SUB_TOKEN\"\n\
         [shared_keys.key-1]\nenv = \"SHARED_SECRET\"\n",
    )
    .unwrap();
    let mut a = args("primary");
    a.config = Some(cfg);
    let server = TestServer::start(config(&a)).await;
    let url = server.url("/voice");
    let r = post_signed(server.addr, &url, "/voice", SECONDARY, &call_params()).await;
    assert_eq!(r.status, 200);

    let mut sub = call_params();
    sub.retain(|(k, _)| *k != "AccountSid");
    sub.push(("AccountSid", "AC11111111111111111111111111111111"));
    let r = post_signed(server.addr, &url, "/voice", "sub-account-token", &sub).await;
    assert_eq!(r.status, 200);
    // The parent's token does not sign for the subaccount.
    let r = post_signed(server.addr, &url, "/voice", TOKEN, &sub).await;
    assert_eq!(r.status, 403);

    let params = call_params();
    let ct = ("Content-Type", "application/x-www-form-urlencoded");
    for (alg, name) in [
        (Algorithm::HmacSha256, "HMAC_SHA256"),
        (Algorithm::HmacSha1, "HMAC_SHA1"),
    ] {
        let sig = sign(alg, b"shared-key-secret", &url, &params);
        let settings = format!("key=key-1,algorithm={name}");
        let r = request(
            server.addr,
            "POST",
            "/voice",
            &[
                ct,
                ("X-Twilio-Signature", &sig),
                ("X-Twilio-Webhooks-Signature-Settings", &settings),
            ],
            &form(&params),
        )
        .await;
        assert_eq!(r.status, 200, "{name}");
    }
    let sig = sign(Algorithm::HmacSha256, b"shared-key-secret", &url, &params);
    for settings in [
        "key=key-2,algorithm=HMAC_SHA256",
        "key=key-1,algorithm=HMAC_MD5",
    ] {
        let r = request(
            server.addr,
            "POST",
            "/voice",
            &[
                ct,
                ("X-Twilio-Signature", &sig),
                ("X-Twilio-Webhooks-Signature-Settings", settings),
            ],
            &form(&params),
        )
        .await;
        assert_eq!(r.status, 403, "{settings}");
    }
    server.stop().await;
}

#[tokio::test]
async fn public_url_is_what_gets_verified() {
    let mut a = args("fallback");
    a.public_url = Some("https://fallback.example.net/twilio/".into());
    let server = TestServer::start(config(&a)).await;
    let mut params = call_params();
    params.push(("ErrorCode", "11205"));
    params.push(("ErrorUrl", "https://voice.example.com/voice"));
    let signed = "https://fallback.example.net/twilio/voice";
    let r = post_signed(server.addr, signed, "/voice", TOKEN, &params).await;
    assert_eq!(r.status, 200, "{r:?}");
    // With the default port, as some Twilio products sign it.
    let r = post_signed(
        server.addr,
        "https://fallback.example.net:443/twilio/voice",
        "/voice",
        TOKEN,
        &params,
    )
    .await;
    assert_eq!(r.status, 200);
    // The internal address is not what Twilio signed.
    let r = post_signed(server.addr, &server.url("/voice"), "/voice", TOKEN, &params).await;
    assert_eq!(r.status, 403);
    let metrics = server.app.metrics().encode();
    assert!(
        metrics.contains("fallback_requests_total{error_code=\"11205\"} 2"),
        "{metrics}"
    );
    server.stop().await;
}

#[tokio::test]
async fn fallback_answers_every_path_with_the_channel_default() {
    let server = TestServer::role("fallback").await;
    let mut call = call_params();
    call.push(("ErrorCode", "11200"));
    call.push(("ErrorUrl", "https://voice.example.com/menu"));
    for path in ["/menu", "/some/unknown/path", "/voice"] {
        let r = post_signed(server.addr, &server.url(path), path, TOKEN, &call).await;
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(elements(&r.body), ["Response", "Say", "Dial"], "{path}");
        assert!(r.body.contains("+15555550199"), "backup number: {}", r.body);
    }
    let r = post_signed(
        server.addr,
        &server.url("/menu"),
        "/menu",
        TOKEN,
        &sms_params("hi"),
    )
    .await;
    assert_eq!(elements(&r.body), ["Response", "Message"]);
    // Neither a call nor a message: nothing to default to.
    let r = post_signed(
        server.addr,
        &server.url("/menu"),
        "/menu",
        TOKEN,
        &[("Foo", "bar")],
    )
    .await;
    assert_eq!(r.status, 404);
    server.stop().await;
}

#[tokio::test]
async fn a_failing_primary_template_is_answered_from_the_fallback_set() {
    let root = tempfile::tempdir().unwrap();
    for (role, voice) in [
        ("primary", "<Response><Say>primary{% if Digits == \"42\" %}{{ Digits | int // 0 }}{% endif %}</Say></Response>"),
        ("fallback", "<Response><Say>fallback</Say></Response>"),
    ] {
        let d = root.path().join(role);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("voice.xml"), voice).unwrap();
        std::fs::write(d.join("sms.xml"), "<Response/>").unwrap();
    }
    let mut a = args("primary");
    a.templates = Some(root.path().to_path_buf());
    a.config = None;
    let server = TestServer::start(config(&a)).await;
    let mut call = call_params();
    call.push(("Digits", "1"));
    let r = post_signed(server.addr, &server.url("/voice"), "/voice", TOKEN, &call).await;
    assert_eq!(r.body, "<Response><Say>primary</Say></Response>");
    call.pop();
    call.push(("Digits", "42"));
    let r = post_signed(server.addr, &server.url("/voice"), "/voice", TOKEN, &call).await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, "<Response><Say>fallback</Say></Response>")
    );
    assert!(server
        .app
        .metrics()
        .encode()
        .contains("degraded_answers_total 1"));
    server.stop().await;
}
