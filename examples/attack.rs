//! The load test's clients (benches/attack.sh, benches/memory.sh): attackers that know only the
//! URL, and genuine signed webhooks measured while they attack.
//!
//! ```text
//! attack slow-body   ADDR CONNS SECONDS [AT_ONCE]  POST /sms, Content-Length 60000: AT_ONCE bytes
//!                                                  (default 1), then 1 byte a second; reconnects
//! attack slow-header ADDR CONNS SECONDS [HEAD]     a head of HEAD bytes (default 40), never ended
//! attack idle        ADDR CONNS SECONDS            connect and send nothing
//! attack h2          ADDR CONNS STREAMS SECONDS CERT   TLS + ALPN h2; STREAMS slow-body streams each
//!                                                  (0: an idle connection that answers pings)
//! attack genuine     ADDR RATE SECONDS             signed POST /sms (TWILIO_AUTH_TOKEN), one new
//!                                                  connection per request, at a fixed rate
//! attack bad-signature ADDR RATE SECONDS           the same, signed with another token (403)
//! attack cert        DIR                           write DIR/cert.pem and DIR/key.pem (localhost)
//! ```
//! With `ATTACK_CERT=PATH` (the server's certificate) every HTTP/1.1 mode speaks TLS.
//! Attackers print `RESULT mode=... opened=N cut=N` (connections opened, and closed by the server);
//! `genuine` and `bad-signature` print `RESULT sent=N ok=N other=N failed=N p50_ms=.. p99_ms=..
//! max_ms=..` (`ok`: 200, `other`: any other status, `failed`: none).

use std::convert::Infallible;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Counters shared by one attack's connections.
#[derive(Default)]
struct Tally {
    opened: AtomicUsize,
    cut: AtomicUsize,
}

/// A body of `left` bytes that arrives one byte a second.
struct SlowBody {
    left: u64,
    tick: tokio::time::Interval,
}

impl Body for SlowBody {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        ready!(self.tick.poll_tick(cx));
        self.left -= 1;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"a")))))
    }
    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.left)
    }
}

fn arg<T: std::str::FromStr>(args: &[String], i: usize, name: &str) -> Result<T, String> {
    args.get(i)
        .ok_or(format!("missing {name}"))?
        .parse()
        .map_err(|_| format!("bad {name}"))
}

/// Keeps `conns` connections running `one` until `seconds` pass; a connection the server cuts is
/// opened again.
async fn hold<F, Fut>(conns: usize, seconds: f64, tally: Arc<Tally>, one: F)
where
    F: Fn(Arc<Tally>) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let end = Instant::now() + Duration::from_secs_f64(seconds);
    let mut tasks = Vec::new();
    for i in 0..conns {
        let (one, tally) = (one.clone(), tally.clone());
        tasks.push(tokio::spawn(async move {
            // Spread the connects a little so the accept queue is not the first thing measured.
            tokio::time::sleep(Duration::from_micros(200 * i as u64)).await;
            while Instant::now() < end {
                let _ = tokio::time::timeout_at(end.into(), one(tally.clone())).await;
                if Instant::now() < end {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

/// A plain or TLS connection.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

/// Connects, over TLS (HTTP/1.1 by ALPN) when `ATTACK_CERT` names the server's certificate.
async fn connect(addr: &str) -> Option<Box<dyn Io>> {
    let tcp = TcpStream::connect(addr).await.ok()?;
    let _ = tcp.set_nodelay(true);
    match std::env::var("ATTACK_CERT") {
        Err(_) => Some(Box::new(tcp)),
        Ok(cert) => {
            let connector = tls_connector(&cert, b"http/1.1").ok()?;
            let name = rustls_pki_types::ServerName::try_from("localhost").ok()?;
            Some(Box::new(connector.connect(name, tcp).await.ok()?))
        }
    }
}

/// Writes `first`, then one byte a second until the server closes.
async fn trickle(addr: String, first: Vec<u8>, tally: Arc<Tally>) {
    let Some(mut s) = connect(&addr).await else {
        tokio::time::sleep(Duration::from_millis(200)).await;
        return;
    };
    tally.opened.fetch_add(1, Ordering::Relaxed);
    if s.write_all(&first).await.is_err() {
        tally.cut.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let (mut r, mut w) = tokio::io::split(s);
    let reader = tokio::spawn(async move {
        let mut buf = [0u8; 1024];
        while let Ok(n) = r.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    });
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {
                if w.write_all(b"a").await.is_err() {
                    break;
                }
            }
            _ = &mut Box::pin(async { while !reader.is_finished() { tokio::time::sleep(Duration::from_millis(50)).await } }) => break,
        }
    }
    tally.cut.fetch_add(1, Ordering::Relaxed);
}

async fn h2_connection(
    addr: String,
    streams: usize,
    connector: tokio_rustls::TlsConnector,
    tally: Arc<Tally>,
) {
    let Ok(tcp) = TcpStream::connect(&addr).await else {
        tokio::time::sleep(Duration::from_millis(200)).await;
        return;
    };
    let name = rustls_pki_types::ServerName::try_from("localhost").expect("a DNS name");
    let Ok(tls) = connector.connect(name, tcp).await else {
        return;
    };
    tally.opened.fetch_add(1, Ordering::Relaxed);
    let Ok((sender, conn)) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls)).await
    else {
        return;
    };
    let driver = tokio::spawn(conn);
    let mut tasks = Vec::new();
    for _ in 0..streams {
        let mut sender = sender.clone();
        let addr = addr.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                if sender.ready().await.is_err() {
                    return;
                }
                let body = SlowBody {
                    left: 60_000,
                    tick: tokio::time::interval(Duration::from_secs(1)),
                };
                let req = http::Request::post(format!("https://{addr}/sms"))
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(body)
                    .expect("a valid request");
                match sender.send_request(req).await {
                    Ok(r) => {
                        let _ = r.into_body().collect().await;
                    }
                    Err(_) => return,
                }
            }
        }));
    }
    let _ = driver.await;
    for t in tasks {
        t.abort();
    }
    tally.cut.fetch_add(1, Ordering::Relaxed);
}

fn tls_connector(cert: &str, alpn: &[u8]) -> Result<tokio_rustls::TlsConnector, String> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_file_iter(cert).map_err(|e| e.to_string())? {
        roots
            .add(c.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// A `POST /sms` signed with the server's token, or (`genuine` false) with another one.
fn signed_request(addr: &str, genuine: bool) -> Result<Vec<u8>, String> {
    let token = match genuine {
        true => std::env::var("TWILIO_AUTH_TOKEN").map_err(|_| "set TWILIO_AUTH_TOKEN")?,
        false => "a-stranger-does-not-know-the-token".into(),
    };
    let params: Vec<(String, String)> = [
        ("AccountSid", "AC00000000000000000000000000000000"),
        ("ApiVersion", "2010-04-01"),
        ("Body", "genuine webhook under attack"),
        ("From", "+15550100100"),
        ("MessageSid", "SM00000000000000000000000000000000"),
        ("NumMedia", "0"),
        ("NumSegments", "1"),
        ("SmsMessageSid", "SM00000000000000000000000000000000"),
        ("SmsSid", "SM00000000000000000000000000000000"),
        ("SmsStatus", "received"),
        ("To", "+15550100199"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let scheme = if std::env::var("ATTACK_CERT").is_ok() {
        "https"
    } else {
        "http"
    };
    let url = format!("{scheme}://{addr}/sms");
    let sig = twiml_failover::signature::sign(
        twiml_failover::signature::Algorithm::HmacSha1,
        token.as_bytes(),
        &url,
        &params,
    );
    let body = serde_urlencoded::to_string(&params).map_err(|e| e.to_string())?;
    Ok(format!(
        "POST /sms HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         X-Twilio-Signature: {sig}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes())
}

/// One genuine request on a new connection: its status (0 when it failed) and latency.
async fn genuine_once(addr: &str, request: &[u8]) -> (u16, Duration) {
    let start = Instant::now();
    let exchange = async {
        let mut s = connect(addr).await?;
        s.write_all(request).await.ok()?;
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        // A TLS peer may end without close_notify: what arrived before counts.
        while let Ok(n @ 1..) = s.read(&mut buf).await {
            out.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8_lossy(&out);
        text.split(' ').nth(1)?.parse::<u16>().ok()
    };
    let status = tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .ok()
        .flatten()
        .unwrap_or(0);
    (status, start.elapsed())
}

async fn at_rate(args: &[String], genuine: bool) -> Result<(), String> {
    let addr: String = arg(args, 0, "ADDR")?;
    let rate: f64 = arg(args, 1, "RATE")?;
    let seconds: f64 = arg(args, 2, "SECONDS")?;
    let request = Arc::new(signed_request(&addr, genuine)?);
    let count = (rate * seconds) as usize;
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::new();
    for i in 0..count {
        tokio::time::sleep_until(start + Duration::from_secs_f64(i as f64 / rate)).await;
        let (addr, request) = (addr.clone(), request.clone());
        tasks.push(tokio::spawn(
            async move { genuine_once(&addr, &request).await },
        ));
    }
    let mut latencies = Vec::new();
    let (mut ok, mut other, mut failed) = (0, 0, 0);
    for t in tasks {
        let (status, took) = t.await.map_err(|e| e.to_string())?;
        match status {
            200 => ok += 1,
            0 => failed += 1,
            _ => other += 1,
        }
        latencies.push(took);
    }
    latencies.sort();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p).ceil() as usize).saturating_sub(1))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    println!(
        "RESULT sent={count} ok={ok} other={other} failed={failed} ok_pct={:.2} p50_ms={:.1} p99_ms={:.1} max_ms={:.1}",
        if count > 0 { ok as f64 * 100.0 / count as f64 } else { 0.0 },
        pct(0.50),
        pct(0.99),
        pct(1.0)
    );
    Ok(())
}

async fn run(args: Vec<String>) -> Result<(), String> {
    let mode = args.first().cloned().unwrap_or_default();
    let rest = &args[1.min(args.len())..];
    let tally = Arc::new(Tally::default());
    match mode.as_str() {
        "genuine" => return at_rate(rest, true).await,
        "bad-signature" => return at_rate(rest, false).await,
        "cert" => {
            let dir: String = arg(rest, 0, "DIR")?;
            let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()])
                .map_err(|e| e.to_string())?;
            std::fs::write(format!("{dir}/cert.pem"), cert.cert.pem())
                .map_err(|e| e.to_string())?;
            std::fs::write(format!("{dir}/key.pem"), cert.signing_key.serialize_pem())
                .map_err(|e| e.to_string())?;
            return Ok(());
        }
        "slow-body" | "slow-header" | "idle" => {
            let addr: String = arg(rest, 0, "ADDR")?;
            let conns: usize = arg(rest, 1, "CONNS")?;
            let seconds: f64 = arg(rest, 2, "SECONDS")?;
            let first = match mode.as_str() {
                "slow-body" => {
                    let at_once: usize = rest.get(3).map_or(Ok(1), |_| arg(rest, 3, "AT_ONCE"))?;
                    let mut r = format!(
                        "POST /sms HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 60000\r\n\r\n"
                    )
                    .into_bytes();
                    r.extend(std::iter::repeat_n(b'a', at_once.min(60_000)));
                    r
                }
                "slow-header" => {
                    let size: usize = rest.get(3).map_or(Ok(40), |_| arg(rest, 3, "HEAD"))?;
                    let mut r = b"POST /sms HTTP/1.1\r\nX-Slow: ".to_vec();
                    r.extend(std::iter::repeat_n(b'a', size.saturating_sub(r.len())));
                    r
                }
                _ => Vec::new(),
            };
            if mode == "idle" {
                hold(conns, seconds, tally.clone(), move |tally| {
                    let addr = addr.clone();
                    async move {
                        let Some(mut s) = connect(&addr).await else {
                            return;
                        };
                        tally.opened.fetch_add(1, Ordering::Relaxed);
                        let mut buf = [0u8; 64];
                        let _ = s.read(&mut buf).await;
                        tally.cut.fetch_add(1, Ordering::Relaxed);
                    }
                })
                .await;
            } else {
                let first = Arc::new(first);
                hold(conns, seconds, tally.clone(), move |tally| {
                    trickle(addr.clone(), first.to_vec(), tally)
                })
                .await;
            }
        }
        "h2" => {
            let addr: String = arg(rest, 0, "ADDR")?;
            let conns: usize = arg(rest, 1, "CONNS")?;
            let streams: usize = arg(rest, 2, "STREAMS")?;
            let seconds: f64 = arg(rest, 3, "SECONDS")?;
            let cert: String = arg(rest, 4, "CERT")?;
            let connector = tls_connector(&cert, b"h2")?;
            hold(conns, seconds, tally.clone(), move |tally| {
                h2_connection(addr.clone(), streams, connector.clone(), tally)
            })
            .await;
        }
        _ => return Err("usage: see the comment at the top of examples/attack.rs".into()),
    }
    println!(
        "RESULT mode={mode} opened={} cut={}",
        tally.opened.load(Ordering::Relaxed),
        tally.cut.load(Ordering::Relaxed)
    );
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("attack: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("attack: {e}");
            ExitCode::from(2)
        }
    }
}
