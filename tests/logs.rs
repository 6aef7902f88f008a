//! What the log says, against the real binary: a 403 names the URL the signature was checked
//! against and the variants tried, never the token or the expected signature; request values
//! cannot forge fields in the text format; a listener reachable from outside without
//! `--public-url` is warned about at start-up.

mod common;

use std::time::{Duration, Instant};

use common::process::Serve;
use common::{form, sms_params, TOKEN};
use twiml_failover::signature::{sign, Algorithm};

fn serve(extra: &[&str]) -> Serve {
    let mut args = vec!["--watch", "false"];
    args.extend_from_slice(extra);
    Serve::shipped(&args)
}

/// Waits (bounded) for a log line containing `needle` and returns it.
fn line_with(server: &Serve, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = server.log();
        if let Some(line) = log.lines().find(|l| l.contains(needle)) {
            return line.to_string();
        }
        assert!(Instant::now() < deadline, "no line with {needle:?}:\n{log}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_403_names_the_url_checked_and_the_variants_tried_but_no_secret() {
    let server = serve(&[]);
    let params = sms_params("hi");
    // Signed for the URL Twilio would have if the load balancer's name were used.
    let signed_for = "https://lb.example.com/sms";
    let wrong = sign(Algorithm::HmacSha1, TOKEN.as_bytes(), signed_for, &params);
    let checked = format!("http://{}/sms", server.addr);
    let expected = sign(Algorithm::HmacSha1, TOKEN.as_bytes(), &checked, &params);
    let body = form(&params);
    let request = format!(
        "POST /sms HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         X-Twilio-Signature: {wrong}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        server.addr,
        body.len()
    );
    let answer = server
        .send(request.as_bytes(), Duration::from_secs(5))
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    let line = line_with(&server, "status=403");
    // The second form drops the port, as Twilio's SDKs also accept.
    let without_port = format!("http://{}/sms", server.addr.ip());
    assert!(line.contains(r#"reason="signature mismatch""#), "{line}");
    assert!(line.contains(r#"signed_url_from="host header""#), "{line}");
    assert!(
        line.contains(&format!(r#"tried_urls="{checked} {without_port}""#)),
        "{line}"
    );
    eprintln!("{line}");
    assert!(
        line.contains(r#"tried_keys="HMAC_SHA1 auth token x1""#),
        "{line}"
    );
    let log = server.log();
    assert!(!log.contains(TOKEN), "the token is never logged");
    assert!(
        !log.contains(&expected),
        "the expected signature is never logged"
    );
}

#[test]
fn request_values_cannot_forge_log_fields() {
    let server = serve(&[]);
    let request = format!(
        "GET /x\"reason=\"forged HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        server.addr
    );
    let answer = server.send(request.as_bytes(), Duration::from_secs(5));
    let line = line_with(&server, "forged");
    assert!(
        answer.is_some_and(|a| a.starts_with("HTTP/1.1 4")),
        "{line}"
    );
    assert!(line.contains(r#"path="/x\"reason=\"forged""#), "{line}");
    assert!(!line.contains(r#" reason="forged"#), "{line}");
}

#[test]
fn paths_that_look_like_fields_or_lines_stay_one_quoted_value() {
    let server = serve(&[]);
    // A raw space or line break cannot reach the log: the request line does not parse.
    for raw in ["/y status=200 x=", "/y\nWARN twiml_failover: forged"] {
        let request = format!(
            "GET {raw} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            server.addr
        );
        let answer = server.send(request.as_bytes(), Duration::from_secs(5));
        assert!(answer.is_some_and(|a| a.starts_with("HTTP/1.1 400")));
    }
    // What can: quotes, `=`, and percent-encoded spaces and line breaks, which stay encoded.
    for (path, logged) in [
        (
            r#"/sms"%20status=200%20x=""#,
            r#"path="/sms\"%20status=200%20x=\"""#,
        ),
        ("/sms\"status=200", r#"path="/sms\"status=200""#),
        (
            "/z%0AWARN%20x:%20forged%0D%0A",
            r#"path="/z%0AWARN%20x:%20forged%0D%0A""#,
        ),
    ] {
        server.get(path).expect("answered");
        let line = line_with(&server, logged);
        // Outside the quoted path, the line has its own status and nothing the path said.
        let rest = line.replace(logged, "");
        assert_eq!(rest.matches("status=").count(), 1, "{line}");
        assert!(rest.contains(" status=404 "), "{line}");
    }
    let log = server.log();
    assert!(
        log.lines().all(|l| l.starts_with("20")),
        "every line starts with its timestamp:\n{log}"
    );
}

#[test]
fn a_listener_beyond_loopback_without_public_url_is_warned_about() {
    let server = serve(&["--listen", "0.0.0.0:0"]);
    line_with(&server, "no --public-url");
    let quiet = serve(&[]);
    std::thread::sleep(Duration::from_millis(200));
    assert!(!quiet.log().contains("no --public-url"), "{}", quiet.log());
}
