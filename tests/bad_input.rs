//! Hostile and broken input: each gets a clear 4xx (never a 5xx or a hang), and the server keeps
//! serving genuine requests afterwards.

mod common;

use common::*;
use twiml_failover::signature::{sign, Algorithm};

async fn still_serving(server: &TestServer) {
    let r = post_signed(
        server.addr,
        &server.url("/sms"),
        "/sms",
        TOKEN,
        &sms_params("ok?"),
    )
    .await;
    assert_eq!(r.status, 200, "server stopped serving: {r:?}");
}

fn status_of(raw_reply: &str) -> u16 {
    parse_reply(raw_reply).status
}

#[tokio::test]
async fn malformed_requests_get_4xx_and_the_server_keeps_serving() {
    let server = TestServer::role("primary").await;
    let host = server.addr;
    let long = "a".repeat(100 * 1024);
    let cases: Vec<(&str, String)> = vec![
        ("not HTTP at all", "\x16\x03\x01\x02\x00garbage\r\n\r\n".to_string()),
        (
            "truncated body (Content-Length larger than what arrives)",
            format!("POST /sms HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nBody=short"),
        ),
        (
            "two different Content-Length headers",
            format!("POST /sms HTTP/1.1\r\nHost: {host}\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nA=1"),
        ),
        (
            "two Content-Type headers",
            format!("POST /sms HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Type: application/json\r\nContent-Length: 3\r\n\r\nA=1"),
        ),
        (
            "two Host headers",
            format!("POST /sms HTTP/1.1\r\nHost: {host}\r\nHost: evil.example\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"),
        ),
        ("absurdly long URL", format!("GET /{long} HTTP/1.1\r\nHost: {host}\r\n\r\n")),
        (
            "absurdly long header value",
            format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\nX-Long: {long}\r\n\r\n"),
        ),
        (
            "invalid UTF-8 in the form body",
            format!("POST /sms HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 11\r\n\r\nBody=%C3%28"),
        ),
        (
            "invalid UTF-8 in the query",
            format!("GET /sms?Body=%FF HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
        ),
        (
            "invalid percent-encoding, unsigned",
            format!("POST /sms HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 11\r\n\r\nBody=%zz%4"),
        ),
        (
            "JSON that is not an object, unsigned",
            format!("POST /sms HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: 3\r\n\r\n[1]"),
        ),
        (
            "a charset Twilio does not use",
            format!("POST /sms HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded; charset=iso-8859-1\r\nContent-Length: 3\r\n\r\nA=1"),
        ),
        (
            "a bad chunked encoding",
            format!("POST /sms HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nA=1\r\n0\r\n\r\n"),
        ),
    ];
    for (what, request) in cases {
        let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let _ = stream.write_all(request.as_bytes()).await;
        // Truncated bodies: the client stops sending; half-close so the server sees the end.
        let _ = stream.shutdown().await;
        let mut out = Vec::new();
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            stream.read_to_end(&mut out),
        )
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within 5 s"));
        let reply = String::from_utf8_lossy(&out);
        let status = status_of(&reply);
        assert!(
            (400..500).contains(&status),
            "{what}: got {status}: {reply:.200}"
        );
        still_serving(&server).await;
    }
    server.stop().await;
}

#[tokio::test]
async fn invalid_percent_encoding_is_signed_as_received() {
    // Every SDK's form parser keeps an invalid escape literally; so do we, and the signature decides.
    let server = TestServer::role("primary").await;
    let params = [("MessageSid", "SM1"), ("Body", "%zz%4")];
    let sig = sign(
        Algorithm::HmacSha1,
        TOKEN.as_bytes(),
        &server.url("/sms"),
        &params,
    );
    let body = "MessageSid=SM1&Body=%zz%4";
    let r = request(
        server.addr,
        "POST",
        "/sms",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("X-Twilio-Signature", &sig),
        ],
        body,
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("%zz%4"), "{}", r.body);
    server.stop().await;
}

#[tokio::test]
async fn http_1_0_and_pipelining_work() {
    let server = TestServer::role("primary").await;
    let reply = raw(server.addr, b"GET /healthz HTTP/1.0\r\n\r\n").await;
    assert!(
        reply.starts_with("HTTP/1.0 200") || reply.starts_with("HTTP/1.1 200"),
        "{reply}"
    );

    let mut pipelined = signed_sms_request(server.addr, "first");
    pipelined.extend(signed_sms_request(server.addr, "second"));
    pipelined.extend_from_slice(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let replies = raw(server.addr, &pipelined).await;
    let first = replies.find("first").expect("first answered");
    let second = replies.find("second").expect("second answered");
    assert!(first < second, "answers in request order");
    assert_eq!(replies.matches("HTTP/1.1 200").count(), 3, "{replies}");
    server.stop().await;
}
