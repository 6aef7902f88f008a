//! HTTPS: HTTP/1.1 and HTTP/2 by ALPN, certificate rotation without a restart, a bad pair refused
//! while the old certificate keeps serving, and a bounded handshake.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::{CertificateDer, ServerName};
use twiml_failover::signature::{sign, Algorithm};

struct Pair {
    cert_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
}

fn self_signed() -> Pair {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    Pair {
        cert_pem: ck.cert.pem(),
        key_pem: ck.signing_key.serialize_pem(),
        der: ck.cert.der().clone(),
    }
}

fn write_pair(dir: &std::path::Path, pair: &Pair) {
    std::fs::write(dir.join("tls.crt"), &pair.cert_pem).unwrap();
    std::fs::write(dir.join("tls.key"), &pair.key_pem).unwrap();
}

/// Connects trusting only `trusted`, offering `alpn`; `None` when the handshake fails.
async fn connect(
    addr: std::net::SocketAddr,
    trusted: &CertificateDer<'static>,
    alpn: &[u8],
) -> Option<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(trusted.clone()).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .ok()
}

fn signed_request(addr: std::net::SocketAddr) -> http::Request<Full<Bytes>> {
    let params = sms_params("over TLS");
    // Without --public-url the server rebuilds https://<Host>/sms for an HTTPS listener.
    let host = format!("localhost:{}", addr.port());
    let sig = sign(
        Algorithm::HmacSha1,
        TOKEN.as_bytes(),
        &format!("https://{host}/sms"),
        &params,
    );
    http::Request::post(format!("https://{host}/sms"))
        .header("host", &host)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-twilio-signature", sig)
        .body(Full::new(Bytes::from(form(&params))))
        .unwrap()
}

async fn tls_server(dir: &std::path::Path) -> TestServer {
    let mut a = args("primary");
    a.tls.cert = Some(dir.join("tls.crt"));
    a.tls.key = Some(dir.join("tls.key"));
    let mut c = config(&a);
    c.limits.tls_handshake_timeout = Duration::from_millis(300);
    TestServer::start(c).await
}

#[tokio::test]
async fn serves_http1_and_http2_by_alpn() {
    let dir = tempfile::tempdir().unwrap();
    let pair = self_signed();
    write_pair(dir.path(), &pair);
    let server = tls_server(dir.path()).await;

    let tls = connect(server.addr, &pair.der, b"http/1.1")
        .await
        .expect("handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut req = signed_request(server.addr);
    *req.uri_mut() = "/sms".parse().unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&body).contains("over TLS"));

    let tls = connect(server.addr, &pair.der, b"h2")
        .await
        .expect("handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let resp = sender
        .send_request(signed_request(server.addr))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), http::Version::HTTP_2);
    assert_eq!(resp.headers()["content-type"], "text/xml; charset=utf-8");
    server.stop().await;
}

#[tokio::test]
async fn certificates_rotate_without_a_restart_and_bad_pairs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = (self_signed(), self_signed());
    write_pair(dir.path(), &first);
    let server = tls_server(dir.path()).await;
    let watcher = tokio::spawn(twiml_failover::reload::on_file_change(
        server.app.clone(),
        vec![dir.path().to_path_buf()],
    ));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(connect(server.addr, &first.der, b"http/1.1")
        .await
        .is_some());
    assert!(connect(server.addr, &second.der, b"http/1.1")
        .await
        .is_none());

    // A key that does not belong to the certificate: refused, the first pair keeps serving.
    std::fs::write(dir.path().join("tls.crt"), &second.cert_pem).unwrap();
    std::fs::write(dir.path().join("tls.key"), &first.key_pem).unwrap();
    let metrics = || server.app.metrics().encode();
    for _ in 0..100 {
        if metrics().contains("certificate_reloads_total{result=\"error\"}") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        metrics().contains("certificate_reloads_total{result=\"error\"}"),
        "{}",
        metrics()
    );
    assert!(connect(server.addr, &first.der, b"http/1.1")
        .await
        .is_some());

    // The matching key arrives: new handshakes get the second certificate.
    std::fs::write(dir.path().join("tls.key"), &second.key_pem).unwrap();
    let mut rotated = false;
    for _ in 0..100 {
        if connect(server.addr, &second.der, b"http/1.1")
            .await
            .is_some()
        {
            rotated = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(rotated, "new certificate never served");
    assert!(connect(server.addr, &first.der, b"http/1.1")
        .await
        .is_none());
    watcher.abort();
    server.stop().await;
}

#[tokio::test]
async fn a_silent_client_is_cut_at_the_handshake_timeout_and_others_still_connect() {
    use tokio::io::AsyncReadExt;
    let dir = tempfile::tempdir().unwrap();
    let pair = self_signed();
    write_pair(dir.path(), &pair);
    let server = tls_server(dir.path()).await;
    let mut silent = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    assert!(connect(server.addr, &pair.der, b"h2").await.is_some());
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut buf))
        .await
        .expect("closed by the server")
        .unwrap_or(0);
    assert_eq!(n, 0);
    server.stop().await;
}

#[test]
fn a_bad_pair_stops_start_up_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tls.crt"), "not a certificate").unwrap();
    std::fs::write(dir.path().join("tls.key"), "not a key").unwrap();
    let mut a = args("primary");
    a.tls.cert = Some(dir.path().join("tls.crt"));
    a.tls.key = Some(dir.path().join("tls.key"));
    let err = twiml_failover::service::Service::load(config(&a))
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("tls: ") && err.contains("tls.crt"), "{err}");
}

/// An HTTP/2 connection with no open stream is closed at the idle timeout even though its client
/// answers every ping, and while all slots are taken by such connections a new caller still gets in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_http2_connections_are_closed_and_make_room_for_callers() {
    let dir = tempfile::tempdir().unwrap();
    let pair = self_signed();
    write_pair(dir.path(), &pair);
    let mut a = args("primary");
    a.tls.cert = Some(dir.path().join("tls.crt"));
    a.tls.key = Some(dir.path().join("tls.key"));
    a.limits.idle_timeout = Some(0.5);
    a.limits.max_connections = Some(3);
    let server = TestServer::start(config(&a)).await;
    let mut drivers = Vec::new();
    for _ in 0..3 {
        let tls = connect(server.addr, &pair.der, b"h2")
            .await
            .expect("handshake");
        let (sender, conn) = hyper::client::conn::http2::handshake::<_, _, Full<Bytes>>(
            TokioExecutor::new(),
            TokioIo::new(tls),
        )
        .await
        .unwrap();
        drivers.push((sender, tokio::spawn(conn)));
    }
    // All three slots are idle HTTP/2 connections: a new caller makes the oldest give way.
    let tls = tokio::time::timeout(
        Duration::from_secs(2),
        connect(server.addr, &pair.der, b"h2"),
    )
    .await
    .expect("let in while all slots were taken")
    .expect("handshake");
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let resp = sender
        .send_request(signed_request(server.addr))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // The rest end at the idle timeout (the client driver resolves when the server closes).
    let started = std::time::Instant::now();
    for (_sender, driver) in drivers {
        tokio::time::timeout(Duration::from_secs(3), driver)
            .await
            .expect("closed by the server")
            .unwrap()
            .ok();
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    server.stop().await;
}
