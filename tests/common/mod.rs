//! Shared helpers for the end-to-end tests: start the server in-process on port 0, sign and send
//! requests over a raw TCP connection, and read the answer.
#![allow(dead_code)]

pub mod process;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use twiml_failover::config::Config;
use twiml_failover::config::ServeArgs;
use twiml_failover::server::app::App;
use twiml_failover::service::{Exit, Running, Service};
use twiml_failover::signature::{sign, Algorithm};

/// Runs the real binary with only `env` in its environment; returns (exit code, stdout, stderr).
pub fn run_bin(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    run_bin_in(Path::new("."), args, env)
}

/// [`run_bin`] in `dir` (where the binary looks for `./twiml-failover.toml`).
pub fn run_bin_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_twiml-failover"))
        .args(args)
        .current_dir(dir)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .expect("the binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// An accepted SMS webhook as the journal keeps it (and a spill file holds it), received now, whose
/// idempotency key, conversation and MessageSid are `key`.
pub fn sms_event(
    key: &str,
    role: twiml_failover::twilio::Role,
    url: &str,
) -> twiml_failover::journal::NewEvent {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    twiml_failover::journal::NewEvent {
        received_at_ms: now_ms,
        role,
        method: "POST".into(),
        url: url.into(),
        path: "/sms".into(),
        params: vec![("MessageSid".into(), key.into())],
        error_code: None,
        error_url: None,
        idempotency_key: key.into(),
        conversation: key.into(),
        account_sid: None,
    }
}

/// The fake primary auth token every test signs with.
pub const TOKEN: &str = "test-token-0123456789abcdef";
/// A fake secondary token.
pub const SECONDARY: &str = "test-secondary-token-fedcba98";

/// The repository's shipped templates.
pub fn shipped_templates() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("twiml-templates")
}

/// The repository's example config (for `[vars]`).
pub fn example_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("twiml-failover.toml")
}

/// Serve flags for the shipped templates and example config in `role`.
pub fn args(role: &str) -> ServeArgs {
    ServeArgs {
        role: Some(role.into()),
        templates: Some(shipped_templates()),
        config: Some(example_config()),
        // The file watcher only where a test asks for it (tests/reload.rs).
        watch: Some(false),
        ..ServeArgs::default()
    }
}

/// Loads a config from flags with the test tokens in the environment.
pub fn config(args: &ServeArgs) -> Config {
    let env = |name: &str| match name {
        "TWILIO_AUTH_TOKEN" => Some(TOKEN.to_string()),
        "TWILIO_SECONDARY_AUTH_TOKEN" => Some(SECONDARY.to_string()),
        "SUB_TOKEN" => Some("sub-account-token".to_string()),
        "SHARED_SECRET" => Some("shared-key-secret".to_string()),
        _ => None,
    };
    Config::load(args, &env).expect("test config loads")
}

/// A server running in this process: the same [`Service`] the binary runs.
pub struct TestServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its shared state.
    pub app: Arc<App>,
    running: Running,
}

impl TestServer {
    /// Starts the service on a fresh 127.0.0.1:0 listener.
    pub async fn start(config: Config) -> TestServer {
        let service = Service::load(config).expect("templates load");
        // Bound as the binary binds, so shutdowns refuse new handshakes the same way.
        let listener =
            twiml_failover::server::listener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let running = service
            .start_on(listener, std::future::pending())
            .expect("the service starts");
        TestServer {
            addr: running.addr(),
            app: running.app().clone(),
            running,
        }
    }

    /// Starts the shipped templates in `role`.
    pub async fn role(role: &str) -> TestServer {
        TestServer::start(config(&args(role))).await
    }

    /// Triggers a graceful shutdown (like SIGTERM) without waiting for it.
    pub fn begin_shutdown(&mut self) {
        self.running.begin_shutdown();
    }

    /// Shuts down and waits for every step of it: drain, forwarder, journal.
    pub async fn stop(self) -> Exit {
        self.running.shutdown().await
    }

    /// The URL the server rebuilds for `path` when no public URL is set.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

/// An HTTP answer read off the wire.
#[derive(Debug)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Headers, names lowercased.
    pub headers: Vec<(String, String)>,
    /// Body text.
    pub body: String,
}

impl Reply {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends raw bytes on a new connection and reads until the server closes it.
pub async fn raw(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses the first HTTP/1.1 answer in `text`.
pub fn parse_reply(text: &str) -> Reply {
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text, ""));
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(body.len());
    Reply {
        status,
        headers,
        body: body.get(..len).unwrap_or(body).to_string(),
    }
}

/// Form-encodes parameters.
pub fn form(params: &[(&str, &str)]) -> String {
    serde_urlencoded::to_string(params).unwrap()
}

/// Sends one request with `Connection: close` and parses the reply.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Reply {
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    req.push_str(body);
    parse_reply(&raw(addr, req.as_bytes()).await)
}

/// POSTs a form signed with `token` over `signed_url` (what Twilio was configured with).
pub async fn post_signed(
    addr: SocketAddr,
    signed_url: &str,
    target: &str,
    token: &str,
    params: &[(&str, &str)],
) -> Reply {
    let sig = sign(Algorithm::HmacSha1, token.as_bytes(), signed_url, params);
    request(
        addr,
        "POST",
        target,
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("X-Twilio-Signature", &sig),
        ],
        &form(params),
    )
    .await
}

/// A realistic incoming-call parameter set.
pub fn call_params() -> Vec<(&'static str, &'static str)> {
    vec![
        ("AccountSid", "AC00000000000000000000000000000001"),
        ("ApiVersion", "2010-04-01"),
        ("CallSid", "CA00000000000000000000000000000001"),
        ("CallStatus", "ringing"),
        ("Direction", "inbound"),
        ("From", "+15550100001"),
        ("To", "+15550199999"),
    ]
}

/// A realistic incoming-SMS parameter set.
pub fn sms_params(body: &'static str) -> Vec<(&'static str, &'static str)> {
    vec![
        ("AccountSid", "AC00000000000000000000000000000001"),
        ("ApiVersion", "2010-04-01"),
        ("MessageSid", "SM00000000000000000000000000000001"),
        ("SmsSid", "SM00000000000000000000000000000001"),
        ("From", "+15550100001"),
        ("To", "+15550199999"),
        ("Body", body),
        ("NumMedia", "0"),
        ("NumSegments", "1"),
    ]
}

/// Parses a TwiML answer and returns its element names in document order (fails on bad XML).
pub fn elements(twiml: &str) -> Vec<String> {
    let mut reader = quick_xml::Reader::from_str(twiml);
    let mut names = Vec::new();
    loop {
        match reader.read_event() {
            Ok(quick_xml::events::Event::Start(e)) | Ok(quick_xml::events::Event::Empty(e)) => {
                names.push(e.name().as_ref().to_string())
            }
            Ok(quick_xml::events::Event::Eof) => break,
            Ok(_) => {}
            Err(e) => panic!("not well-formed TwiML ({e}): {twiml}"),
        }
    }
    names
}

/// A client that keeps its connection alive until the server says `Connection: close`.
pub struct KeepAlive {
    addr: SocketAddr,
    conn: Option<tokio::io::BufReader<TcpStream>>,
}

/// How one keep-alive exchange ended.
#[derive(Debug)]
pub enum Exchange {
    /// An answer came back.
    Answered(Reply),
    /// The connection could not be opened: the request never reached a server.
    Refused,
    /// The request was written but no answer came: a lost request.
    Lost(String),
}

impl KeepAlive {
    /// A client for `addr`; connects lazily.
    pub fn new(addr: SocketAddr) -> Self {
        KeepAlive { addr, conn: None }
    }

    /// Sends one request (reconnecting if needed) and reads exactly one answer.
    pub async fn send(&mut self, request: &[u8]) -> Exchange {
        use tokio::io::AsyncBufReadExt;
        if self.conn.is_none() {
            match TcpStream::connect(self.addr).await {
                Ok(s) => self.conn = Some(tokio::io::BufReader::new(s)),
                Err(_) => return Exchange::Refused,
            }
        }
        let conn = self.conn.as_mut().unwrap();
        if let Err(e) = conn.get_mut().write_all(request).await {
            self.conn = None;
            return Exchange::Lost(format!("write: {e}"));
        }
        let mut head = String::new();
        loop {
            let mut line = String::new();
            match conn.read_line(&mut line).await {
                Ok(0) => {
                    self.conn = None;
                    return Exchange::Lost(format!("closed after {} bytes of head", head.len()));
                }
                Ok(_) => {}
                Err(e) => {
                    self.conn = None;
                    return Exchange::Lost(format!("read: {e}"));
                }
            }
            head.push_str(&line);
            if line == "\r\n" {
                break;
            }
        }
        let reply = parse_reply(&head);
        let len: usize = reply
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        if let Err(e) = conn.read_exact(&mut body).await {
            self.conn = None;
            return Exchange::Lost(format!("body: {e}"));
        }
        let reply = Reply {
            body: String::from_utf8_lossy(&body).into_owned(),
            ..reply
        };
        if reply.header("connection") == Some("close") {
            self.conn = None;
        }
        Exchange::Answered(reply)
    }
}

/// A signed `POST /sms` for a server reached at `addr` without a public URL, keep-alive.
pub fn signed_sms_request(addr: SocketAddr, body_text: &'static str) -> Vec<u8> {
    let params = sms_params(body_text);
    let url = format!("http://{addr}/sms");
    let sig = sign(Algorithm::HmacSha1, TOKEN.as_bytes(), &url, &params);
    let body = form(&params);
    format!(
        "POST /sms HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\nX-Twilio-Signature: {sig}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The CI PostgreSQL URL. Tests that need it are `ignored` unless `TWIML_FAILOVER_TEST_POSTGRES`
/// was set when they were built (see build.rs); run by hand without it, they fail rather than pass.
pub fn postgres_url() -> String {
    match std::env::var("TWIML_FAILOVER_TEST_POSTGRES") {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "TWIML_FAILOVER_TEST_POSTGRES is not set: eval \"$(bash .ci/postgres.sh)\" && cargo test"
        ),
    }
}

/// Creates an empty database `name` on the server at `base` and returns its URL.
pub fn fresh_postgres_db(base: &str, name: &str) -> String {
    let mut admin = postgres::Client::connect(base, postgres::NoTls).expect("postgres reachable");
    // Each statement alone: DROP/CREATE DATABASE refuse to run inside a transaction block.
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .unwrap();
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .unwrap();
    let (head, tail) = base.split_at(base.rfind('/').expect("URL has /dbname"));
    match tail.split_once('?') {
        Some((_, q)) => format!("{head}/{name}?{q}"),
        None => format!("{head}/{name}"),
    }
}

/// The python that has twilio-python: `$PYTHON`, else the venv tests/oracle/setup.sh makes (pip
/// outside a venv is refused on PEP 668 systems), else the system's. A missing SDK fails the test:
/// a comparison that did not run must not count as passed (`cargo test -- --skip NAME` skips it
/// knowingly, and says so).
pub fn oracle_python() -> String {
    let venv = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/oracle/.venv/bin/python");
    let python = std::env::var("PYTHON").unwrap_or_else(|_| {
        if std::path::Path::new(venv).exists() {
            venv.into()
        } else {
            "python3".into()
        }
    });
    let ok = std::process::Command::new(&python)
        .args(["-c", "import twilio"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "the twilio Python SDK is needed: run tests/oracle/setup.sh \
         (or skip this test knowingly: cargo test -- --skip NAME)"
    );
    python
}

/// Every `twiml_failover_<name>` in `text`.
pub fn metric_names(text: &str) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("twiml_failover_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        let name = tail[..end].trim_end_matches('_');
        // "the twiml_failover_ prefix" in prose names no metric.
        if name != "twiml_failover" {
            names.insert(name.to_string());
        }
        rest = &tail[end..];
    }
    names
}

/// Every metric name the alert rules, the Grafana dashboard, the READMEs and docs/*.md name, with
/// the file naming it.
pub fn named_metrics() -> std::collections::BTreeSet<(String, &'static str)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<String> = [
        "deploy/kubernetes/monitoring/prometheusrule.yaml",
        "deploy/grafana/twiml-failover.json",
        "deploy/README.md",
        "README.md",
    ]
    .map(String::from)
    .into();
    for entry in std::fs::read_dir(root.join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            files.push(format!(
                "docs/{}",
                path.file_name().unwrap().to_str().unwrap()
            ));
        }
    }
    let mut named = std::collections::BTreeSet::new();
    for file in files {
        let text =
            std::fs::read_to_string(root.join(&file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        let file: &'static str = Box::leak(file.into_boxed_str());
        named.extend(metric_names(&text).into_iter().map(|n| (n, file)));
    }
    named
}

/// The sample names of an OpenMetrics exposition (the body of `GET /metrics`).
pub fn exported(metrics: &str) -> std::collections::BTreeSet<String> {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap().to_string())
        .collect()
}

/// Each of `named` (name, the file naming it) that `exported` lacks, as `name (named in file)`. A
/// histogram is named by its base name and exported as _bucket, _sum and _count.
pub fn not_exported<'a>(
    named: impl IntoIterator<Item = &'a (String, &'static str)>,
    exported: &std::collections::BTreeSet<String>,
) -> Vec<String> {
    named
        .into_iter()
        .filter(|(name, _)| {
            !exported.contains(name.as_str()) && !exported.contains(&format!("{name}_bucket"))
        })
        .map(|(name, file)| format!("{name} (named in {file})"))
        .collect()
}
