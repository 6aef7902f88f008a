//! Each stage [`super::Error`] names, met against a real local server: refused and unresolvable
//! hosts, a full accept queue, TLS with certificates of each fault (rcgen, trusted through a
//! test CA), servers that stall, lie, cut or flood. I/O (loopback only).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;

#[path = "../../tests/common/full_queue.rs"]
mod full_queue;
use full_queue::FullQueue;

fn get(url: String) -> Request {
    Request {
        method: http::Method::GET,
        url,
        headers: Vec::new(),
        body: Bytes::new(),
    }
}

fn fast(read_timeout: Option<Duration>) -> Client {
    Client::new(Settings {
        connect_timeout: Duration::from_millis(500),
        read_timeout,
        request_timeout: Duration::from_secs(5),
        ..Settings::default()
    })
}

fn connect_kind(err: Error) -> ConnectKind {
    match err {
        Error::Connect(failure) => failure.kind,
        other => panic!("not a connect error: {other:?}"),
    }
}

fn body_error(err: Error) -> BodyError {
    match err {
        Error::Body(body) => *body,
        other => panic!("not a body error: {other:?}"),
    }
}

/// A port nothing listens on: bound, then released.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A server answering `200 ok` (or never, when `silent`), counting its connections.
async fn server(silent: bool) -> (String, Arc<AtomicUsize>) {
    counting(move |tcp| serve_ok(hyper_util::rt::TokioIo::new(tcp), silent)).await
}

/// A local server that counts its connections and runs `serve` on each.
async fn counting<F, Fut>(serve: F) -> (String, Arc<AtomicUsize>)
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let connections = Arc::new(AtomicUsize::new(0));
    let count = connections.clone();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(serve(tcp));
        }
    });
    (url, connections)
}

async fn serve_ok<I>(io: I, silent: bool)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |_req| async move {
        if silent {
            std::future::pending::<()>().await;
        }
        Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(Bytes::from_static(
            b"ok",
        ))))
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(io, svc)
        .await;
}

/// A server that reads each request's head, writes `answer` as is, then closes the connection
/// (`hold: false`) or keeps it open without a further byte (`hold: true`).
async fn raw(answer: &'static [u8], hold: bool) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let (mut tcp, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tcp.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = tcp.write_all(answer).await;
                if hold {
                    std::future::pending::<()>().await;
                }
            });
        }
    });
    url
}

#[tokio::test]
async fn a_refused_connection_says_refused() {
    let err = fast(None)
        .send(get(format!("http://127.0.0.1:{}/", closed_port())))
        .await
        .unwrap_err();
    assert_eq!(connect_kind(err), ConnectKind::Refused);
}

#[tokio::test]
async fn an_unknown_host_is_a_resolution_failure() {
    // `.invalid` never resolves (RFC 2606).
    let err = fast(None)
        .send(get("http://no-such-host.invalid/".into()))
        .await
        .unwrap_err();
    assert_eq!(connect_kind(err), ConnectKind::Resolve);
}

#[tokio::test]
async fn a_full_accept_queue_is_a_connect_timeout() {
    let full = FullQueue::new();
    let addr = full.addr;
    let client = Client::new(Settings {
        connect_timeout: Duration::from_millis(300),
        ..Settings::default()
    });
    let err = client
        .send(get(format!("http://{addr}/")))
        .await
        .unwrap_err();
    assert_eq!(connect_kind(err), ConnectKind::Timeout);
}

#[tokio::test]
async fn https_to_a_plain_http_server_is_a_tls_failure() {
    let (url, _) = server(false).await;
    let err = fast(None)
        .send(get(url.replace("http://", "https://")))
        .await
        .unwrap_err();
    assert_eq!(connect_kind(err), ConnectKind::Tls);
}

/// A test CA, and a client that trusts only it.
struct Ca {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

impl Ca {
    /// `name` tells CAs apart: one with another CA's name would make a bad signature instead.
    fn new(name: &str) -> Ca {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let key = rcgen::KeyPair::generate().unwrap();
        Ca {
            issuer: rcgen::CertifiedIssuer::self_signed(params, key).unwrap(),
        }
    }

    fn client(&self) -> Client {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.issuer.der().clone()).unwrap();
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        Client::with_tls(
            Settings {
                connect_timeout: Duration::from_secs(2),
                ..Settings::default()
            },
            &tls,
        )
    }

    /// A certificate for `names`, valid until `not_after` (ymd), signed by this CA.
    fn leaf(&self, names: &[&str], not_after: (i32, u8, u8)) -> (Vec<u8>, Vec<u8>) {
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.der().to_vec(), key.serialize_der())
    }
}

/// An HTTPS server presenting `cert` that answers `200 ok`.
async fn tls_server((cert, key): (Vec<u8>, Vec<u8>)) -> SocketAddr {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![CertificateDer::from(cert)],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(tcp).await {
                    serve_ok(hyper_util::rt::TokioIo::new(tls), false).await;
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn certificate_faults_are_told_apart() {
    let ca = Ca::new("net test CA");
    let client = ca.client();
    let good = tls_server(ca.leaf(&["127.0.0.1"], (2100, 1, 1))).await;
    let answer = client.send(get(format!("https://{good}/"))).await.unwrap();
    assert_eq!((answer.status, &answer.body[..]), (200, &b"ok"[..]));

    let cases = [
        (
            ca.leaf(&["other.example"], (2100, 1, 1)),
            ConnectKind::CertificateName,
        ),
        (
            ca.leaf(&["127.0.0.1"], (2021, 1, 1)),
            ConnectKind::CertificateExpired,
        ),
        (
            Ca::new("another CA").leaf(&["127.0.0.1"], (2100, 1, 1)),
            ConnectKind::CertificateIssuer,
        ),
    ];
    for (cert, kind) in cases {
        let addr = tls_server(cert).await;
        let err = client
            .send(get(format!("https://{addr}/")))
            .await
            .unwrap_err();
        assert_eq!(connect_kind(err), kind);
    }
}

#[tokio::test]
async fn silence_before_the_head_is_a_head_timeout() {
    let url = raw(b"", true).await;
    let limit = Duration::from_millis(200);
    let err = fast(Some(limit)).send(get(url)).await.unwrap_err();
    assert_eq!(err, Error::HeadTimeout(limit));
}

#[tokio::test]
async fn silence_mid_body_is_a_stall_that_keeps_the_status() {
    let url = raw(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc", true).await;
    let limit = Duration::from_millis(200);
    let body = body_error(fast(Some(limit)).send(get(url)).await.unwrap_err());
    assert_eq!(body.status, 200);
    assert_eq!(body.failure, BodyFailure::Stalled(limit));
}

#[tokio::test]
async fn a_body_cut_short_keeps_the_status_and_headers() {
    let url = raw(
        b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 10\r\nx-why: drain\r\n\r\nabc",
        false,
    )
    .await;
    let body = body_error(fast(None).send(get(url)).await.unwrap_err());
    assert_eq!((body.status, body.header("x-why")), (503, Some("drain")));
    assert!(matches!(body.failure, BodyFailure::Cut(_)), "{body:?}");
}

#[tokio::test]
async fn a_body_over_the_cap_keeps_the_status() {
    let (url, _) = server(false).await;
    let small = Client::new(Settings {
        max_body_bytes: 1,
        ..Settings::default()
    });
    let body = body_error(small.send(get(url)).await.unwrap_err());
    assert_eq!(
        (body.status, body.header("content-length")),
        (200, Some("2"))
    );
    assert_eq!(body.failure, BodyFailure::TooLarge(1));
}

#[tokio::test]
async fn an_answer_that_is_not_http_is_told_from_a_dropped_connection() {
    let garbage = raw(b"SSH-2.0-OpenSSH_9.6\r\n\r\n", false).await;
    let err = fast(None).send(get(garbage)).await.unwrap_err();
    assert!(matches!(err, Error::NotHttp(_)), "{err:?}");
    let hang_up = raw(b"", false).await;
    let err = fast(None).send(get(hang_up)).await.unwrap_err();
    assert!(matches!(err, Error::Io(_)), "{err:?}");
}

#[tokio::test]
async fn a_silent_server_times_out() {
    let (url, _) = server(true).await;
    let client = Client::new(Settings {
        request_timeout: Duration::from_millis(200),
        ..Settings::default()
    });
    let err = client.send(get(url)).await.unwrap_err();
    assert_eq!(err, Error::Timeout(Duration::from_millis(200)));
}

#[tokio::test]
async fn connections_are_reused_unless_no_idle_ones_are_kept() {
    let (url, connections) = server(false).await;
    let client = Client::new(Settings::default());
    for _ in 0..3 {
        let answer = client.send(get(url.clone())).await.unwrap();
        assert_eq!((answer.status, &answer.body[..]), (200, &b"ok"[..]));
    }
    assert_eq!(connections.load(Ordering::SeqCst), 1);

    let (url, connections) = server(false).await;
    let client = Client::new(Settings {
        max_idle_per_host: 0,
        ..Settings::default()
    });
    for _ in 0..3 {
        client.send(get(url.clone())).await.unwrap();
    }
    assert_eq!(connections.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_kept_connection_the_server_closed_meanwhile_costs_no_request() {
    // Answers keep-alive; when told, closes the connection while it idles in the client's pool.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let (close, mut close_now) = tokio::sync::mpsc::unbounded_channel::<()>();
    let (closed, mut closes) = tokio::sync::mpsc::unbounded_channel::<()>();
    let connections = Arc::new(AtomicUsize::new(0));
    let count = connections.clone();
    tokio::spawn(async move {
        loop {
            let (mut tcp, _) = listener.accept().await.unwrap();
            count.fetch_add(1, Ordering::SeqCst);
            let mut buf = [0u8; 4096];
            let mut head = Vec::new();
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match tcp.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let _ = tcp
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                .await;
            if close_now.recv().await.is_none() {
                return;
            }
            drop(tcp);
            let _ = closed.send(());
        }
    });
    // hyper_util's trace says when its pool resends a request a closed connection handed back.
    let log = Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
    let sink = log.clone();
    let _guard = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || Sink(sink.clone()))
            .finish(),
    );
    let client = Client::new(Settings::default());
    for _ in 0..3 {
        let answer = client.send(get(url.clone())).await.unwrap();
        assert_eq!(answer.status, 200);
        // The connection goes back to the pool; then the server closes it, and the next request
        // goes out at once, before the client's connection task may have read the close.
        tokio::time::sleep(Duration::from_millis(20)).await;
        close.send(()).unwrap();
        closes.recv().await.unwrap();
    }
    assert_eq!(connections.load(Ordering::SeqCst), 3);
    let log = String::from_utf8_lossy(&log.lock().unwrap()).into_owned();
    assert!(
        log.contains("reuse idle connection")
            && log.contains("unstarted request canceled, trying again"),
        "the closed connection was not the one tried: the test no longer covers the resend\n{log}"
    );
}

/// Collects log lines in memory.
struct Sink(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Sink {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn bad_url_is_invalid() {
    let err = fast(None).send(get("not a url".into())).await.unwrap_err();
    assert!(matches!(err, Error::Invalid(_)), "{err:?}");
}

/// A keep-alive server answering every request of a connection with `answer` as is, counting its
/// connections.
async fn raw_keep_alive(answer: &'static [u8]) -> (String, Arc<AtomicUsize>) {
    counting(move |mut tcp| async move {
        let mut pending = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                pending.drain(..end + 4);
                if tcp.write_all(answer).await.is_err() {
                    return;
                }
            }
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => pending.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
}

#[tokio::test]
async fn ambiguous_framing_fails_and_its_connection_is_not_used_again() {
    let clean = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
    let both = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ntransfer-encoding: chunked\r\n\r\n\
                 2\r\nok\r\n0\r\n\r\n";
    let after = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n\r\n";
    let chunked_after = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\
                          2\r\nok\r\n0\r\n\r\n\r\n";
    // The same client, three requests each: a clean server is met on one kept connection.
    let client = Client::new(Settings::default());
    let (url, connections) = raw_keep_alive(clean).await;
    for _ in 0..3 {
        let answer = client.send(get(url.clone())).await.unwrap();
        assert_eq!(&answer.body[..], b"ok");
    }
    assert_eq!(connections.load(Ordering::SeqCst), 1, "the control: reused");
    for (answer, says) in [
        (&both[..], "both Content-Length and Transfer-Encoding"),
        (after, "19 bytes after the body"),
        (chunked_after, "2 bytes after the body"),
    ] {
        let (url, connections) = raw_keep_alive(answer).await;
        for _ in 0..3 {
            let failed = body_error(client.send(get(url.clone())).await.unwrap_err());
            assert_eq!(failed.status, 200);
            assert_eq!(failed.failure, BodyFailure::Framing(says.into()));
        }
        assert_eq!(connections.load(Ordering::SeqCst), 3, "{says}: reused");
    }
}
