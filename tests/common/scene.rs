//! The monitor's test scene, shared by tests/monitor.rs and tests/manifests.rs (each includes it
//! with `#[path]` beside `mod common` and the fake REST API `mod fake`): a CA made with rcgen,
//! `serve` instances over TLS on loopback, an account on the fake API wired to them by
//! `numbers apply`, and the checks that the monitor's probes never entered a journal. I/O
//! (processes, files, sockets).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::{CertificateDer, ServerName};

use crate::common;
use crate::common::process::Serve;
use crate::fake::{number, Fake, State, ACCOUNT};

/// The value of the sample `name{labels}` (labels as exported, in order), if exported.
pub fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.trim().parse().unwrap())
}

/// The sum of every sample of `name` whose labels contain each of `labels`.
pub fn total(metrics: &str, name: &str, labels: &[&str]) -> f64 {
    metrics
        .lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|r| r.starts_with('{') || r.starts_with(' '))
        })
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum()
}

// Certificates, made here with rcgen: a CA the monitor trusts (--probe-ca-file), and leaves for
// an IP address valid until a given day.

pub struct Ca {
    pub issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    pub der: CertificateDer<'static>,
    pub file: PathBuf,
}

impl Ca {
    /// A new CA, its certificate written in `dir`.
    pub fn new(dir: &Path) -> Ca {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "monitor test CA");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let file = dir.join("ca.pem");
        std::fs::write(&file, cert.pem()).unwrap();
        Ca {
            der: cert.der().clone(),
            issuer: rcgen::Issuer::new(params, key),
            file,
        }
    }

    /// A leaf for `host` (an IP address) valid from a year before `not_after` until then: (PEM
    /// certificate, PEM key).
    pub fn leaf(&self, host: &str, not_after: time::OffsetDateTime) -> (String, String) {
        let mut params = rcgen::CertificateParams::new(vec![host.to_string()]).unwrap();
        params.not_before = not_after - time::Duration::days(365);
        params.not_after = not_after;
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    pub fn probe_ca_flag(&self) -> [&str; 2] {
        ["--probe-ca-file", self.file.to_str().unwrap()]
    }
}

/// `GET path` over TLS trusting only `ca`; the whole answer.
pub fn https_get(addr: SocketAddr, ca: &CertificateDer<'static>, path: &str) -> String {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = ServerName::IpAddress(addr.ip().into());
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(3)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
    write!(
        tls,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = Vec::new();
    // A server may close without close_notify once the answer is out.
    let _ = tls.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// A running `serve` over TLS and the CA that signed its certificate.
pub struct Tls {
    pub serve: Serve,
    pub ca: CertificateDer<'static>,
}

impl Tls {
    pub fn base(&self) -> String {
        format!("https://{}", self.serve.addr)
    }

    pub fn metrics(&self) -> String {
        let answer = https_get(self.serve.addr, &self.ca, "/metrics");
        answer.split_once("\r\n\r\n").unwrap().1.to_string()
    }

    pub fn log(&self) -> String {
        self.serve.log()
    }
}

/// `serve` on the shipped templates at `host` over TLS (a leaf from `ca`, 90 days), with a
/// SQLite journal in `dir` and JSON logs.
pub fn serve(host: &str, dir: &Path, env: &[(&str, &str)], ca: &Ca) -> Tls {
    let listen = format!("{host}:0");
    let journal = format!("sqlite://{}", dir.join(format!("{host}.db")).display());
    let (cert, key) = ca.leaf(
        host,
        time::OffsetDateTime::now_utc() + time::Duration::days(90),
    );
    let (cert_file, key_file) = (
        dir.join(format!("{host}.crt")),
        dir.join(format!("{host}.key")),
    );
    std::fs::write(&cert_file, cert).unwrap();
    std::fs::write(&key_file, key).unwrap();
    let serve = Serve::shipped_with(
        &[
            "--listen",
            &listen,
            "--watch",
            "false",
            "--log-format",
            "json",
            "--journal",
            &journal,
            "--tls-cert",
            cert_file.to_str().unwrap(),
            "--tls-key",
            key_file.to_str().unwrap(),
        ],
        env,
    );
    Tls {
        serve,
        ca: ca.der.clone(),
    }
}

/// The probes never entered the server's journal, were never counted as fallback traffic, and
/// were counted apart: at least `at_least` answered under `route="probe"`.
pub fn assert_probes_apart(server: &Tls, at_least: f64) {
    let m = server.metrics();
    let probes = total(&m, "twiml_failover_requests_total", &["route=\"probe\""]);
    assert!(probes >= at_least, "{probes} probes counted:\n{m}");
    assert_eq!(
        total(&m, "twiml_failover_requests_total", &["route=\"webhook\""]),
        0.0,
        "{m}"
    );
    assert_eq!(
        total(&m, "twiml_failover_fallback_requests_total", &[]),
        0.0,
        "{m}"
    );
    assert_eq!(
        total(&m, "twiml_failover_journal_writes_total", &[]),
        0.0,
        "{m}"
    );
    assert_eq!(
        sample(&m, "twiml_failover_journal_commit_events_sum"),
        Some(0.0),
        "{m}"
    );
    let log = server.log();
    assert!(!log.contains("\"fallback\":true"), "{log}");
    assert!(log.contains("\"probe\":true"), "{log}");
}

/// An account of `n` numbers, wired by `numbers apply` to `primary` and `fallback`; the wiring
/// file is written in `dir`.
pub fn wired_account(n: usize, primary: &str, fallback: &str, dir: &Path) -> (Fake, PathBuf) {
    let numbers = (1..=n)
        .map(|i| number(i, &format!("+1555000000{i}"), &format!("line {i}")))
        .collect();
    let fake = Fake::start(State {
        token: Some(common::TOKEN.to_string()),
        numbers,
        ..State::default()
    });
    let wiring = dir.join("wiring.toml");
    std::fs::write(
        &wiring,
        format!("primary_base = \"{primary}\"\nfallback_base = \"{fallback}\"\n"),
    )
    .unwrap();
    apply(&fake, &wiring);
    (fake, wiring)
}

/// The usual scene: a primary `serve` on 127.0.0.1 and a fallback on 127.0.0.2 (with
/// `fallback_env`), over TLS from `ca`, and an account of `n` numbers wired to them.
pub struct Scene {
    pub primary: Tls,
    pub fallback: Tls,
    pub fake: Fake,
    pub wiring: PathBuf,
    pub ca: Ca,
    pub _dir: tempfile::TempDir,
}

pub fn scene(n: usize, fallback_env: &[(&str, &str)]) -> Scene {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path());
    let primary = serve("127.0.0.1", dir.path(), &[], &ca);
    let fallback = serve("127.0.0.2", dir.path(), fallback_env, &ca);
    let (fake, wiring) = wired_account(n, &primary.base(), &fallback.base(), dir.path());
    Scene {
        primary,
        fallback,
        fake,
        wiring,
        ca,
        _dir: dir,
    }
}

pub fn apply(fake: &Fake, wiring: &Path) {
    let out = Command::new(env!("CARGO_BIN_EXE_twiml-failover"))
        .args(["numbers", "apply", "--yes"])
        .env_clear()
        .env("TWIML_FAILOVER_NUMBERS_WIRING", wiring)
        .env("TWIML_FAILOVER_TWILIO_API_BASE", fake.base())
        .env("TWIML_FAILOVER_NUMBERS_RATE", "100")
        .env("TWILIO_ACCOUNT_SID", ACCOUNT)
        .env("TWILIO_AUTH_TOKEN", common::TOKEN)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
