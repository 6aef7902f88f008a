//! The shipped deployments, run as shipped: each deployment's manifests are rendered by
//! `deploy/checks.py shipped` (kubectl kustomize of the Kubernetes overlays, the CloudFormation
//! task definition with its defaults, the Cloud Run service), and the container's command,
//! arguments and environment are taken exactly as rendered. Only what a deployer supplies is
//! substituted: test secrets (PostgreSQL from .ci/postgres.sh, a test auth token), the database
//! address RDS would create, the public URL parameter, and the forward target (a local one). The
//! binary then runs in a root file system built like the image (the binary, templates, config,
//! and each manifest volume at its mount path: ConfigMaps and Secrets as files, the Cloud SQL
//! connection as the server's unix-socket folder, a volume every replica shares (EFS, a
//! ReadWriteMany claim, an NFS share) as one host folder), remounted read-only with only the
//! manifest's writable volumes writable, as the image's user with no capabilities (`chroot` +
//! `setpriv` in a mount namespace). Signed webhooks must be answered, journaled in PostgreSQL and
//! forwarded; the probes and the scrape path must answer; where the spill folder is shared, a
//! second replica runs on the same folder and a spill file left there is taken back once; SIGTERM
//! must end each with status 0.
//!
//! The monitor's manifests (deploy/kubernetes/monitor, deploy/aws/monitor.yaml's task definition,
//! deploy/cloudrun/monitor.yaml) run the same way against the fake Twilio REST API of
//! tests/numbers/fake.rs, with an account of one number wired to a primary and a fallback `serve`
//! on loopback (tests/common/scene.rs, as tests/monitor.rs uses them). Supplied as a deployer
//! supplies them: the REST credentials (a test API key, which the fake accepts, and the auth token
//! that signs the probes), the wiring file (the Kubernetes ConfigMap's content, the image's copy on
//! AWS and Cloud Run) naming the loopback servers as the public URLs. Substituted, and set on top
//! of the manifest's environment: `TWIML_FAILOVER_TWILIO_API_BASE` (the documented test-only
//! override, loopback only) for api.twilio.com, since the binary's TLS roots are compiled in
//! (webpki-roots) and no test CA in the root file system could make it trust a fake
//! api.twilio.com; and `TWIML_FAILOVER_MONITOR_PROBE_CA_FILE`, the test CA that signed the
//! loopback servers' certificates, which stand in for the public URLs' publicly trusted ones.
//! The monitor must start as the manifest's user, read the account, probe the fallback (signed
//! probes answered, counted apart and never journaled), answer its metrics, `/status` and the
//! manifest's probes on the manifest's port, and end with status 0 on SIGTERM.
//!
//! Needs root (mount namespace, chroot, setpriv), kubectl with kustomize v5, Python with PyYAML and
//! cfn-lint, and PostgreSQL; it listens on the manifests' own port 8080. `bash .ci/smoke.sh` runs it
//! in a network namespace of its own (CI does); a plain `cargo test` shows it as ignored.

mod common;
// The fake REST API and the monitor's scene, shared with tests/monitor.rs.
#[allow(dead_code)]
#[path = "numbers/fake.rs"]
mod fake;
#[allow(dead_code)]
#[path = "common/scene.rs"]
mod scene;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use twiml_failover::journal::{spill, NewEvent};
use twiml_failover::signature::{sign, Algorithm};
use twiml_failover::twilio::Role;

/// One deployment at a time: they all listen on the manifests' port.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The public URL the AWS stack is given (its parameter has no default).
const AWS_PUBLIC_URL: &str = "https://fallback.example.net";
/// The database every deployment journals to (the AWS and Cloud Run manifests name it).
const DB: &str = "twiml_failover";
/// The monitor's test API key, which the fake REST API accepts.
const API_KEY: &str = "SK00000000000000000000000000000001";
const API_SECRET: &str = "monitor-test-api-secret-not-a-secret";
/// Where the monitor's containers find the test CA that signed the loopback servers' certificates.
const PROBE_CA: &str = "/etc/ssl/certs/monitor-test-ca.pem";

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run bash .ci/smoke.sh"))
}

/// `deploy/checks.py shipped KIND PATH`: the container as the deployment runs it.
fn shipped(kind: &str, path: &str) -> Value {
    let python = std::env::var("SMOKE_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = Command::new(python)
        .args(["deploy/checks.py", "shipped", kind, path])
        .current_dir(manifest_dir())
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "checks.py shipped {kind} {path}:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The test PostgreSQL server's port and admin URL.
struct Postgres {
    admin: String,
    port: String,
    socket: String,
    ca: String,
    password: String,
}

impl Postgres {
    /// A fresh `twiml_failover` database owned by a `twiml_failover` role with a new password.
    fn fresh() -> Postgres {
        let admin = env("TWIML_FAILOVER_TEST_POSTGRES");
        let port = admin
            .rsplit('@')
            .next()
            .unwrap()
            .split(['/', '?'])
            .next()
            .unwrap()
            .rsplit(':')
            .next()
            .unwrap()
            .to_string();
        let password = format!("smoke-{}", std::process::id());
        let mut c = postgres::Client::connect(&admin, postgres::NoTls).unwrap();
        c.batch_execute(&format!("DROP DATABASE IF EXISTS {DB} WITH (FORCE)"))
            .unwrap();
        c.batch_execute(&format!(
            "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{DB}') THEN \
             CREATE ROLE {DB} LOGIN; END IF; END $$; ALTER ROLE {DB} PASSWORD '{password}'"
        ))
        .unwrap();
        c.batch_execute(&format!("CREATE DATABASE {DB} OWNER {DB}"))
            .unwrap();
        Postgres {
            port,
            socket: env("TWIML_FAILOVER_PG_SOCKET"),
            ca: std::fs::read_to_string(env("TWIML_FAILOVER_TEST_POSTGRES_CA")).unwrap(),
            password,
            admin,
        }
    }

    fn journal(&self) -> postgres::Client {
        let (head, _) = self.admin.rsplit_once('/').unwrap();
        postgres::Client::connect(&format!("{head}/{DB}"), postgres::NoTls).unwrap()
    }

    /// What a deployer puts in a Secret, by key (Kubernetes, AWS JSON keys) or by Secret Manager
    /// secret name (Cloud Run's `latest`). `None`: an optional key that is absent.
    fn secret(&self, name: &str, key: &str) -> Option<String> {
        Some(match key {
            "auth-token" | "auth_token" => common::TOKEN.to_string(),
            "secondary-auth-token" => return None,
            "secondary_auth_token" => String::new(),
            "host" => "127.0.0.1".into(),
            "port" => self.port.clone(),
            "dbname" => DB.into(),
            "username" => DB.into(),
            "password" => self.password.clone(),
            "ca.crt" => self.ca.clone(),
            "latest" if name.contains("password") => self.password.clone(),
            "latest" if name == "twilio-auth-token" => common::TOKEN.to_string(),
            // The monitor's REST credentials (an API key) and the account they read.
            "account-sid" | "account_sid" => fake::ACCOUNT.into(),
            "api-key" | "api_key" => API_KEY.into(),
            "api-secret" | "api_secret" => API_SECRET.into(),
            "latest" if name == "twilio-account-sid" => fake::ACCOUNT.into(),
            "latest" if name == "twilio-monitor-api-key" => API_KEY.into(),
            "latest" if name == "twilio-monitor-api-secret" => API_SECRET.into(),
            _ => panic!("no test value for key {key} of secret {name}"),
        })
    }
}

/// What the target received: each request's headers (lower-case names) and body.
type Received = Vec<(BTreeMap<String, String>, String)>;

/// A forward target on loopback that answers 200 and keeps what it got.
struct Target {
    url: String,
    got: Arc<Mutex<Received>>,
}

impl Target {
    fn start() -> Target {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/events", listener.local_addr().unwrap());
        let got: Arc<Mutex<Received>> = Arc::default();
        let keep = got.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let keep = keep.clone();
                std::thread::spawn(move || serve_target(stream, &keep));
            }
        });
        Target { url, got }
    }
}

fn serve_target(stream: TcpStream, got: &Mutex<Received>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut headers = BTreeMap::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
        let length: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        got.lock()
            .unwrap()
            .push((headers, String::from_utf8_lossy(&body).into_owned()));
        if writer
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            .is_err()
        {
            return;
        }
    }
}

/// What a deployer supplies besides the database and the secrets, and the named substitutions.
#[derive(Default)]
struct Supplied {
    /// Set on top of the manifest's environment.
    env: BTreeMap<String, String>,
    /// Files by path in the root file system, replacing the image's (its wiring file) or added.
    files: BTreeMap<String, String>,
    /// The ConfigMaps a deployer creates (not rendered): name, then key, then content.
    configmaps: BTreeMap<String, BTreeMap<String, String>>,
}

/// Single-quotes for sh (the paths here never hold a quote).
fn q(s: &str) -> String {
    assert!(!s.contains('\''), "{s}");
    format!("'{s}'")
}

/// The root file system and the command that runs the binary in it, built from `spec`.
struct Container {
    env: BTreeMap<String, String>,
    script: String,
    user: (u32, u32),
    writable: Vec<String>,
    _staging: tempfile::TempDir,
}

/// `shared`: the host folder a manifest's shared volume (EFS, a ReadWriteMany claim, an NFS share)
/// stands for, the same for every container built with it.
fn container(
    spec: &Value,
    pg: &Postgres,
    target: &Target,
    shared: &Path,
    supplied: &Supplied,
) -> Container {
    let image = &spec["image"];
    let staging = tempfile::tempdir().unwrap();
    let stage = staging.path().join("stage");
    let root = staging.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let user = match spec["user"].as_array().or(image["user"].as_array()) {
        Some(ids) => (
            ids[0].as_u64().unwrap() as u32,
            ids[1].as_u64().unwrap() as u32,
        ),
        None => panic!("no user"),
    };
    let put = |path: &str| -> PathBuf {
        let p = stage.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        p
    };
    // The environment: the image's, then the manifest's on top, exactly as rendered but for what
    // a deployer supplies.
    let mut env = BTreeMap::new();
    for source in [&image["env"], &spec["env"]] {
        for (name, v) in source.as_object().unwrap() {
            let value = match (&v["value"], &v["secret"]) {
                (Value::String(value), _) => value.clone(),
                (_, Value::Array(r)) => {
                    match pg.secret(r[0].as_str().unwrap(), r[1].as_str().unwrap()) {
                        Some(value) => value,
                        None => continue,
                    }
                }
                _ => panic!("{name}: {v}"),
            };
            let value = match name.as_str() {
                "TWIML_FAILOVER_FORWARD_TO" => target.url.clone(),
                _ => value
                    .replace("@PublicUrl@", AWS_PUBLIC_URL)
                    .replace("@DatabaseHost@", "127.0.0.1")
                    .replace("@DatabasePort@", &pg.port),
            };
            assert!(
                value.matches('@').count() < 2,
                "{name}={value}: not substituted"
            );
            env.insert(name.clone(), value);
        }
    }
    env.extend(supplied.env.clone());
    // The image's files.
    let entrypoint = image["entrypoint"][0].as_str().unwrap().to_string();
    let mut mounts = String::new();
    for (dest, file) in image["files"].as_object().unwrap() {
        let from = file["from"].as_str().unwrap();
        if *dest == entrypoint {
            continue; // the binary under test, bound below
        }
        if let Some(text) = supplied.files.get(dest) {
            std::fs::write(put(dest), text).unwrap();
        } else if let Some(url) = from.strip_prefix("fetched:") {
            // Only the RDS CA bundle is fetched; the test server's CA stands in for it.
            assert!(url.ends_with("global-bundle.pem"), "{url}");
            std::fs::write(put(dest), &pg.ca).unwrap();
        } else if manifest_dir().join(from).exists() {
            copy(&manifest_dir().join(from), &put(dest));
        } else {
            // A folder the build stage made (the spill folder's parent), owned as the image says.
            std::fs::create_dir_all(put(dest)).unwrap();
            if let Some(owner) = file["chown"].as_str() {
                mounts += &format!("/usr/bin/chown -R {owner} \"$R\"{}\n", q(dest));
            }
        }
    }
    let image_files = image["files"].as_object().unwrap();
    for (dest, text) in &supplied.files {
        if !image_files.contains_key(dest) {
            std::fs::write(put(dest), text).unwrap();
        }
    }
    // The manifest's volumes.
    let mut writable = Vec::new();
    for m in spec["mounts"].as_array().unwrap() {
        let path = m["path"].as_str().unwrap();
        match m["kind"].as_str().unwrap() {
            "files" => {
                // A ConfigMap volume hides what the image has at its path.
                let _ = std::fs::remove_dir_all(put(path));
                if let Some(files) = m["files"].as_object() {
                    for (name, text) in files {
                        std::fs::write(put(&format!("{path}/{name}")), text.as_str().unwrap())
                            .unwrap();
                    }
                } else {
                    // One the deployer creates: its items from what the test supplies.
                    let name = m["configmap"].as_str().unwrap();
                    let data = &supplied.configmaps[name];
                    for item in m["items"].as_array().unwrap() {
                        let (key, file) = (item[0].as_str().unwrap(), item[1].as_str().unwrap());
                        std::fs::write(put(&format!("{path}/{file}")), &data[key]).unwrap();
                    }
                }
            }
            "secret" => {
                let secret = m["secret"].as_str().unwrap();
                for item in m["items"].as_array().unwrap() {
                    let (key, file) = (item[0].as_str().unwrap(), item[1].as_str().unwrap());
                    if let Some(value) = pg.secret(secret, key) {
                        let at = format!("{path}/{file}");
                        std::fs::write(put(&at), value).unwrap();
                        // Secret files: readable by the pod's group only (fsGroup), like 0440.
                        mounts += &format!(
                            "/usr/bin/chgrp {} \"$R\"{at}; /usr/bin/chmod 0440 \"$R\"{at}\n",
                            user.1,
                            at = q(&at)
                        );
                    }
                }
            }
            "scratch" => {
                std::fs::create_dir_all(put(path)).unwrap();
                mounts += &format!(
                    "/usr/bin/mount -t tmpfs -o mode=0700,uid={},gid={},size=64m tmpfs \"$R\"{}\n",
                    user.0,
                    user.1,
                    q(path)
                );
                writable.push(path.to_string());
            }
            "shared" => {
                // One folder for every replica, owned by the image's user (as the access point or
                // the share's chown makes it): the same host folder bound into each container.
                std::fs::create_dir_all(put(path)).unwrap();
                mounts += &format!(
                    "/usr/bin/chown {}:{} {shared}; /usr/bin/chmod 0700 {shared}\n\
                     /usr/bin/mount --bind {shared} \"$R\"{}\n",
                    user.0,
                    user.1,
                    q(path),
                    shared = q(shared.to_str().unwrap()),
                );
                writable.push(path.to_string());
            }
            "cloudsql" => {
                // The Cloud SQL connection's socket, named for PostgreSQL's default port as Cloud
                // Run names it: the test server's own socket, bound there (connecting to a socket
                // needs no write to the file system, so read-only).
                let socket = format!("{path}/.s.PGSQL.5432");
                std::fs::write(put(&socket), "").unwrap();
                mounts += &format!(
                    "/usr/bin/mount --bind -o ro {} \"$R\"{}\n",
                    q(&format!("{}/.s.PGSQL.{}", pg.socket, pg.port)),
                    q(&socket)
                );
            }
            other => panic!("volume kind {other}"),
        }
        if !m["writable"].as_bool().unwrap() {
            continue;
        }
        assert!(
            writable.contains(&path.to_string()),
            "{path}: writable but not scratch or shared"
        );
    }
    // What a distroless image has besides: the user, the dynamic loader and C library the debug
    // binary (unlike the image's static one) needs, /dev and /proc.
    std::fs::write(
        put("/etc/passwd"),
        format!("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:{}:{}:nonroot:/home/nonroot:/sbin/nologin\n", user.0, user.1),
    )
    .unwrap();
    for dir in [
        "/usr/lib",
        "/usr/lib64",
        "/usr/bin",
        "/dev",
        "/proc",
        "/tmp",
    ] {
        std::fs::create_dir_all(put(&format!("{dir}/x"))).unwrap();
        std::fs::remove_dir(stage.join(dir.trim_start_matches('/')).join("x")).unwrap();
    }
    std::os::unix::fs::symlink("usr/lib", stage.join("lib")).unwrap();
    std::os::unix::fs::symlink("usr/lib64", stage.join("lib64")).unwrap();
    std::fs::write(put(&entrypoint), "").unwrap();
    std::fs::write(put("/usr/bin/setpriv"), "").unwrap();
    for dev in ["null", "zero", "urandom", "random"] {
        std::fs::write(put(&format!("/dev/{dev}")), "").unwrap();
    }
    let binary = env!("CARGO_BIN_EXE_twiml-failover");
    let mut argv: Vec<String> = image["entrypoint"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    // Kubernetes `args` and ECS `Command` replace the image's CMD.
    let cmd = match &spec["cmd"] {
        Value::Array(a) => a.clone(),
        _ => image["cmd"].as_array().unwrap().clone(),
    };
    argv.extend(cmd.iter().map(|v| v.as_str().unwrap().to_string()));
    assert!(
        spec["args"].is_null(),
        "a manifest that replaces the entrypoint"
    );
    let script = format!(
        "set -e\n\
         R={root}\n\
         /usr/bin/mount -t tmpfs -o mode=0755,size=64m tmpfs \"$R\"\n\
         /usr/bin/cp -a {stage}/. \"$R\"/\n\
         {mounts}\
         for d in usr/lib usr/lib64 proc; do /usr/bin/mount --bind -o ro /$d \"$R\"/$d; done\n\
         for f in null zero urandom random; do /usr/bin/mount --bind /dev/$f \"$R\"/dev/$f; done\n\
         /usr/bin/mount --bind -o ro {binary} \"$R\"{entry}\n\
         /usr/bin/mount --bind -o ro /usr/bin/setpriv \"$R\"/usr/bin/setpriv\n\
         /usr/bin/mount -o remount,ro \"$R\"\n\
         exec /usr/sbin/chroot \"$R\" /usr/bin/setpriv --reuid {uid} --regid {gid} --clear-groups \
         --inh-caps=-all --bounding-set=-all --no-new-privs -- {argv}\n",
        root = q(root.to_str().unwrap()),
        stage = q(stage.to_str().unwrap()),
        binary = q(binary),
        entry = q(&entrypoint),
        uid = user.0,
        gid = user.1,
        argv = argv.iter().map(|a| q(a)).collect::<Vec<_>>().join(" "),
    );
    Container {
        env,
        script,
        user,
        writable,
        _staging: staging,
    }
}

fn copy(from: &Path, to: &Path) {
    if from.is_dir() {
        common::process::copy_dir(from, to);
    } else {
        std::fs::copy(from, to).unwrap();
    }
}

/// `GET path` on the manifests' port; the status and body.
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.get(9..12)?.parse().ok()?;
    Some((status, out.split_once("\r\n\r\n")?.1.to_string()))
}

/// A signed SMS webhook for the deployment's public URL, sent to its port.
fn sms(port: u16, public_url: &str, sid: &str) -> String {
    let params = [
        ("AccountSid", "AC00000000000000000000000000000001"),
        ("MessageSid", sid),
        ("From", "+15550100001"),
        ("To", "+15550199999"),
        ("Body", "smoke test"),
    ];
    let sig = sign(
        Algorithm::HmacSha1,
        common::TOKEN.as_bytes(),
        &format!("{public_url}/sms"),
        &params,
    );
    let body = common::form(&params);
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "POST /sms HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         X-Twilio-Signature: {sig}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// Kills the container when a check fails, so the next deployment finds its port free.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn status_of(pid: u32) -> BTreeMap<String, String> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

/// The process (exec'd in place all the way down) runs as the manifest's user with no capability,
/// no secret on its command line, on a read-only root where only the manifest's writable volumes
/// are writable.
fn assert_confined(kind: &str, path: &str, pid: u32, c: &Container, secrets: &[&str]) {
    let status = status_of(pid);
    let (uid, gid) = c.user;
    assert_eq!(
        status["Uid"],
        format!("{uid}\t{uid}\t{uid}\t{uid}"),
        "{status:?}"
    );
    assert_eq!(
        status["Gid"],
        format!("{gid}\t{gid}\t{gid}\t{gid}"),
        "{status:?}"
    );
    for caps in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(status[caps], "0000000000000000", "{caps}");
    }
    assert_eq!(status["NoNewPrivs"], "1");
    // No secret on the command line, where every user of the machine could read it.
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let cmdline = String::from_utf8_lossy(&cmdline);
    assert!(
        secrets.iter().all(|secret| !cmdline.contains(secret)),
        "{cmdline}"
    );
    // Its root is read-only; what it may write is the manifest's writable volumes only.
    let mountinfo = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
    let mut rw = Vec::new();
    for line in mountinfo.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let (point, options) = (fields[4], fields[5]);
        if point == "/" {
            assert!(
                options.split(',').any(|o| o == "ro"),
                "root not read-only: {line}"
            );
        }
        if options.split(',').any(|o| o == "rw") && !point.starts_with("/dev/") {
            rw.push(point.to_string());
        }
    }
    assert_eq!(
        rw, c.writable,
        "{kind} {path}: writable mounts\n{mountinfo}"
    );
}

/// The paths of the probes the manifest declares.
fn declared_probes(spec: &Value) -> Vec<&str> {
    spec["probes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect()
}

/// Waits (at most 30 s) until `GET path` answers 200 on `port`; fails at once if `child` exits.
fn wait_for_200(child: &mut Child, port: u16, path: &str, what: &str, log: &dyn Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while get(port, path).map(|(s, _)| s) != Some(200) {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("{what}: exited {status} at start-up:\n{}", log());
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {path} never answered 200:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// SIGTERM, then its exit status (within 30 s).
fn terminate(child: &mut Child) -> std::process::ExitStatus {
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "no exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs the container's script in a mount namespace of its own, its log in `log`.
fn start(c: &Container, log: &Path) -> Killed {
    Killed(
        Command::new("/usr/bin/unshare")
            .args([
                "--mount",
                "--propagation",
                "private",
                "/bin/sh",
                "-c",
                &c.script,
            ])
            .env_clear()
            .envs(&c.env)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .expect("unshare runs"),
    )
}

/// A manifest whose spill folder is shared by every replica: a second replica of the same
/// container on the same folder (both on the manifests' port, a reuseport group), and a spill file
/// left there as a replica replaced during an outage leaves it: one of the two takes it back into
/// the journal, once.
fn second_replica_takes_back(
    spec: &Value,
    pg: &Postgres,
    target: &Target,
    shared: &Path,
    first_log: &Path,
) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("serve.log");
    let mut c = container(spec, pg, target, shared, &Supplied::default());
    // Each replica has a network of its own where it runs; here both share the test's, so the
    // second takes the next port (the only setting not as shipped).
    let listen = c
        .env
        .get_mut("TWIML_FAILOVER_LISTEN")
        .expect("listen is set");
    *listen = listen.replace(":8080", ":8081");
    let mut second = start(&c, &log);
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !read(&log).contains("listening") {
        assert!(
            second.0.try_wait().unwrap().is_none(),
            "second replica exited:\n{}",
            read(&log)
        );
        assert!(Instant::now() < deadline, "second replica never listened");
        std::thread::sleep(Duration::from_millis(100));
    }
    let url = format!("{}/sms", c.env["TWIML_FAILOVER_PUBLIC_URL"]);
    let role = Role::from_name(&c.env["TWIML_FAILOVER_ROLE"]).expect("a role");
    let events: Vec<NewEvent> = (1..=3)
        .map(|i| {
            let key = format!("spilled-by-a-replaced-replica-{i}");
            common::sms_event(&key, role, &url)
        })
        .collect();
    let file = spill::write(shared, &events).unwrap();
    // Written as the replicas' user would have written it.
    std::os::unix::fs::chown(&file, Some(c.user.0), Some(c.user.1)).unwrap();
    let mut journal = pg.journal();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let taken: i64 = journal
            .query_one(
                "SELECT count(*) FROM twiml_failover_events WHERE idempotency_key LIKE 'spilled-by-%'",
                &[],
            )
            .unwrap()
            .get(0);
        let lines = [read(first_log), read(&log)]
            .iter()
            .map(|l| {
                l.matches("spilled events taken back into the journal")
                    .count()
            })
            .sum::<usize>();
        if taken == 3 && lines == 1 && spill::pending(shared).unwrap().is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "spill file not taken back once: {taken} journaled, {lines} lines:\n{}\n---\n{}",
            read(first_log),
            read(&log)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = terminate(&mut second.0);
    assert_eq!(status.code(), Some(0), "{}", read(&log));
    eprintln!("a spill file left in the shared folder was taken back by one of two replicas, once");
}

fn run(kind: &str, path: &str) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let spec = shipped(kind, path);
    let pg = Postgres::fresh();
    let target = Target::start();
    let log_dir = tempfile::tempdir().unwrap();
    let shared = log_dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    let c = container(&spec, &pg, &target, &shared, &Supplied::default());
    let log = log_dir.path().join("serve.log");
    let mut child = start(&c, &log);
    let child = &mut child.0;
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let port = spec["port"].as_u64().unwrap() as u16;
    let probes = declared_probes(&spec);
    wait_for_200(child, port, probes[0], &format!("{kind} {path}"), &read_log);

    let pid = child.id();
    assert_confined(kind, path, pid, &c, &[&pg.password, common::TOKEN]);

    // Signed webhooks: answered, journaled, forwarded.
    let public = c.env["TWIML_FAILOVER_PUBLIC_URL"].clone();
    let sids: Vec<String> = (1..=3).map(|i| format!("SM{:032}", i)).collect();
    for sid in &sids {
        let answer = sms(port, &public, sid);
        assert!(
            answer.starts_with("HTTP/1.1 200") && answer.contains("<Message>"),
            "{kind} {path}: {answer}\n{}",
            read_log()
        );
    }
    let mut journal = pg.journal();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let rows: Vec<String> = journal
            .query(
                "SELECT conversation FROM twiml_failover_events ORDER BY id",
                &[],
            )
            .map(|rows| rows.iter().map(|r| r.get(0)).collect())
            .unwrap_or_default();
        let forwarded = target.got.lock().unwrap().len();
        if rows == sids && forwarded == sids.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{kind} {path}: journaled {rows:?}, forwarded {forwarded}:\n{}",
            read_log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    for (headers, body) in target.got.lock().unwrap().iter() {
        let params: Vec<(String, String)> = serde_urlencoded::from_str(body).unwrap();
        let params: Vec<(&str, &str)> = params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let expected = sign(
            Algorithm::HmacSha1,
            common::TOKEN.as_bytes(),
            &target.url,
            &params,
        );
        assert_eq!(
            headers["x-twilio-signature"], expected,
            "re-signed for the target"
        );
    }

    // Probes and the scrape path, where the manifests point.
    for probe in &probes {
        assert_eq!(get(port, probe).map(|(s, _)| s), Some(200), "{probe}");
    }
    let scrape = &spec["scrape"];
    let wanted = [
        "twiml_failover_journal_up 1",
        "twiml_failover_journal_writes_total{result=\"new\"} 3",
        // Counted once the target's answer is read, a moment after the target has the event.
        "twiml_failover_forward_delivered_total 3",
        "twiml_failover_forward_breaker_state 0",
    ];
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, metrics) = get(
            scrape["port"].as_u64().unwrap() as u16,
            scrape["path"].as_str().unwrap(),
        )
        .expect("scrape answers");
        assert_eq!(status, 200);
        let missing: Vec<&str> = wanted
            .iter()
            .copied()
            .filter(|l| !metrics.contains(l))
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{kind} {path}: no {missing:?}:\n{metrics}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let shares = spec["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["kind"] == "shared");
    if shares {
        second_replica_takes_back(&spec, &pg, &target, &shared, &log);
    }

    let status = terminate(child);
    assert_eq!(status.code(), Some(0), "{kind} {path}:\n{}", read_log());
    let (uid, _) = c.user;
    eprintln!(
        "{kind} {path}: as uid {uid}, read-only root, writable {:?}: 3 webhooks answered, journaled, forwarded; {} answered",
        c.writable,
        probes.join(", ")
    );
}

/// A monitor manifest, run as shipped against the fake REST API: an account of one number wired
/// to a primary and a fallback `serve` on loopback (127.0.0.1 and 127.0.0.2, over TLS from a test
/// CA). The monitor must start as the manifest's user, read the account with the manifest's
/// credentials, probe the fallback with a signed webhook it answers and never journals, answer its
/// metrics, status and probes on the manifest's port, and end with status 0 on SIGTERM.
fn run_monitor(kind: &str, path: &str) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let spec = shipped(kind, path);
    // For the image's RDS CA bundle only: the monitor has no journal.
    let pg = Postgres::fresh();
    let target = Target::start();
    let scene = scene::scene(1, &[]);
    // Reads with the manifest's API key only: the auth token `numbers apply` used no longer
    // opens the fake API (it still signs the probes, as the fallback checks).
    scene.fake.with(|st| {
        st.api_key = Some((API_KEY.into(), API_SECRET.into()));
        st.token = Some("not-what-the-monitor-reads-with".into());
    });
    // The deployer's wiring file: the image's copy (AWS, Cloud Run) or the ConfigMap (Kubernetes).
    let wiring = std::fs::read_to_string(&scene.wiring).unwrap();
    let supplied = Supplied {
        env: BTreeMap::from([
            ("TWIML_FAILOVER_TWILIO_API_BASE".into(), scene.fake.base()),
            (
                "TWIML_FAILOVER_MONITOR_PROBE_CA_FILE".into(),
                PROBE_CA.into(),
            ),
        ]),
        files: BTreeMap::from([
            ("/etc/twiml-failover/wiring.toml".into(), wiring.clone()),
            (
                PROBE_CA.into(),
                std::fs::read_to_string(&scene.ca.file).unwrap(),
            ),
        ]),
        configmaps: BTreeMap::from([(
            "twiml-failover-wiring".into(),
            BTreeMap::from([("wiring.toml".into(), wiring)]),
        )]),
    };
    let log_dir = tempfile::tempdir().unwrap();
    let c = container(&spec, &pg, &target, log_dir.path(), &supplied);
    let log = log_dir.path().join("monitor.log");
    let mut child = start(&c, &log);
    let child = &mut child.0;
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let port = spec["port"].as_u64().unwrap() as u16;
    wait_for_200(
        child,
        port,
        "/healthz",
        &format!("{kind} {path}"),
        &read_log,
    );
    let pid = child.id();
    assert_confined(
        kind,
        path,
        pid,
        &c,
        &[API_SECRET, common::TOKEN, &pg.password],
    );

    // The first round starts at once: the account read with the manifest's API key, both URLs of
    // the number probed.
    let deadline = Instant::now() + Duration::from_secs(30);
    let status: Value = loop {
        if let Some((200, body)) = get(port, "/status") {
            break serde_json::from_str(&body).unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "{kind} {path}: no round:\n{}",
            read_log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status["round"], 1, "{status:#}");
    assert_eq!(status["api"]["complete"], true, "{status:#}");
    assert_eq!(status["ok"], true, "{status:#}\n{}", read_log());
    assert_eq!(status["numbers"][0]["voice"]["source"]["kind"], "number");
    let reads: Vec<u16> = scene
        .fake
        .with(|st| st.requests.iter().map(|r| r.status).collect());
    let applied = reads.len() - status["api"]["requests"].as_u64().unwrap() as usize;
    assert!(
        !reads[applied..].is_empty() && reads[applied..].iter().all(|s| *s == 200),
        "{kind} {path}: the monitor's reads were answered {:?}",
        &reads[applied..]
    );
    let fallbacks: Vec<&Value> = status["urls"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u["role"] == "fallback")
        .collect();
    assert_eq!(fallbacks.len(), 2, "{status:#}");
    for u in &fallbacks {
        assert!(
            u["url"]
                .as_str()
                .unwrap()
                .starts_with(&scene.fallback.base()),
            "{u:#}"
        );
        assert_eq!(u["ok"], true, "{u:#}");
        assert_eq!(u["check"], "webhook", "{u:#}");
    }
    // Signed probes the fallback answered, counted apart and never journaled.
    scene::assert_probes_apart(&scene.fallback, 2.0);

    // The scrape path and the probes, where the manifest points.
    let scrape = &spec["scrape"];
    let (code, metrics) = get(
        scrape["port"].as_u64().unwrap() as u16,
        scrape["path"].as_str().unwrap(),
    )
    .expect("scrape answers");
    assert_eq!(code, 200);
    assert_eq!(
        scene::total(
            &metrics,
            "twiml_failover_monitor_probe_success",
            &["role=\"fallback\"", "check=\"webhook\""]
        ),
        2.0,
        "{metrics}"
    );
    assert!(
        metrics.contains("twiml_failover_monitor_rounds_total{result=\"complete\"} 1"),
        "{metrics}"
    );
    let probes = declared_probes(&spec);
    for probe in &probes {
        assert_eq!(get(port, probe).map(|(s, _)| s), Some(200), "{probe}");
    }
    let started = read_log()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["message"] == "monitor started");
    assert!(started.is_some(), "{}", read_log());

    let status = terminate(child);
    assert_eq!(status.code(), Some(0), "{kind} {path}:\n{}", read_log());
    eprintln!(
        "{kind} {path}: monitor as uid {}, read-only root, writable {:?}: account read with the API key, \
         2 fallback URLs probed with signed webhooks answered and not journaled; /status, {} and {} answered; exit 0 on SIGTERM",
        c.user.0,
        c.writable,
        scrape["path"].as_str().unwrap(),
        if probes.is_empty() { "no probe declared".to_string() } else { probes.join(", ") },
    );
}

#[test]
#[ignore = "needs root, kubectl, Python with PyYAML and cfn-lint, PostgreSQL: bash .ci/smoke.sh"]
fn kubernetes_primary_as_shipped() {
    run("kubernetes", "deploy/kubernetes/overlays/primary");
}

#[test]
#[ignore = "needs root, kubectl, Python with PyYAML and cfn-lint, PostgreSQL: bash .ci/smoke.sh"]
fn kubernetes_fallback_as_shipped() {
    run("kubernetes", "deploy/kubernetes/overlays/fallback");
}

#[test]
#[ignore = "needs root, kubectl, Python with PyYAML and cfn-lint, PostgreSQL: bash .ci/smoke.sh"]
fn kubernetes_primary_with_cloudnative_pg_as_shipped() {
    run("kubernetes", "deploy/kubernetes/overlays/primary-cnpg");
}

#[test]
#[ignore = "needs root, kubectl, Python with PyYAML and cfn-lint, PostgreSQL: bash .ci/smoke.sh"]
fn kubernetes_primary_with_a_shared_spill_folder_as_shipped() {
    run(
        "kubernetes",
        "deploy/kubernetes/overlays/primary-shared-spill",
    );
}

#[test]
#[ignore = "needs root, kubectl, Python with PyYAML and cfn-lint, PostgreSQL: bash .ci/smoke.sh"]
fn aws_fallback_as_shipped() {
    run("aws", "deploy/aws/fallback.yaml");
}

#[test]
#[ignore = "needs root, kubectl, Python with PyYAML and cfn-lint, PostgreSQL: bash .ci/smoke.sh"]
fn cloud_run_fallback_as_shipped() {
    run("cloudrun", "deploy/cloudrun/service.yaml");
}

#[test]
#[ignore = "needs root, kubectl, Python with PyYAML and cfn-lint, PostgreSQL: bash .ci/smoke.sh"]
fn kubernetes_monitor_as_shipped() {
    run_monitor("kubernetes", "deploy/kubernetes/monitor");
}

#[test]
#[ignore = "needs root, kubectl, Python with PyYAML and cfn-lint, PostgreSQL: bash .ci/smoke.sh"]
fn aws_monitor_as_shipped() {
    run_monitor("aws", "deploy/aws/monitor.yaml");
}

#[test]
#[ignore = "needs root, kubectl, Python with PyYAML and cfn-lint, PostgreSQL: bash .ci/smoke.sh"]
fn cloud_run_monitor_as_shipped() {
    run_monitor("cloudrun", "deploy/cloudrun/monitor.yaml");
}

/// The tests above are ignored in a plain `cargo test`; CI runs them for real.
#[test]
fn ci_runs_the_smoke_test() {
    let run = std::fs::read_to_string(manifest_dir().join(".ci/run")).unwrap();
    assert!(
        run.contains("bash .ci/smoke.sh"),
        ".ci/run must run .ci/smoke.sh"
    );
}
